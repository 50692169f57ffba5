//! What a deployment can do, what a request needs, and the hard filter between them.
//!
//! A built-in table knows the common models (context window, output limit, tools, vision,
//! json_schema); a deployment's config can override any of it; a model the table does not
//! know is assumed capable and unlimited, so the provider has the last word. A request is
//! routed only to deployments that have what it needs; when none has, the caller gets a 400
//! naming the capability, never a silently dropped parameter.

use crate::{
    chat::{ChatRequest, Content, ContentPart},
    usage::tokens::{self, Encoding},
};

/// What one deployment supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub tools: bool,
    pub parallel_tool_calls: bool,
    pub json_schema: bool,
    pub vision: bool,
    pub streaming: bool,
    /// Input + output tokens the model accepts; `None` when unknown.
    pub context_window: Option<u32>,
    /// Most output tokens in one answer; `None` when unknown.
    pub max_output: Option<u32>,
}

impl Capabilities {
    /// Everything, no known limits: for models the table does not know.
    pub const ANY: Capabilities = Capabilities {
        tools: true,
        parallel_tool_calls: true,
        json_schema: true,
        vision: true,
        streaming: true,
        context_window: None,
        max_output: None,
    };

    const fn full(context_window: u32, max_output: u32) -> Capabilities {
        Capabilities {
            context_window: Some(context_window),
            max_output: Some(max_output),
            ..Capabilities::ANY
        }
    }

    const fn text_only(self) -> Capabilities {
        Capabilities {
            vision: false,
            ..self
        }
    }

    const fn no_json_schema(self) -> Capabilities {
        Capabilities {
            json_schema: false,
            ..self
        }
    }

    /// The built-in entry for an upstream model name (longest matching prefix wins), or
    /// [`Capabilities::ANY`].
    pub fn of_model(model: &str) -> Capabilities {
        let name = bare_model_name(model);
        KNOWN
            .iter()
            .filter(|(prefix, _)| name.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(Capabilities::ANY, |(_, caps)| *caps)
    }
}

/// The model's own name: without a path (`accounts/x/models/`, `openai/`) or a Bedrock
/// inference-profile region and vendor (`us.anthropic.claude-...` -> `claude-...`).
pub(crate) fn bare_model_name(model: &str) -> &str {
    let name = model.rsplit('/').next().unwrap_or(model);
    let name = ["us.", "eu.", "apac.", "global.", "us-gov."]
        .iter()
        .find_map(|region| name.strip_prefix(region))
        .unwrap_or(name);
    [
        "anthropic.",
        "amazon.",
        "meta.",
        "mistral.",
        "cohere.",
        "deepseek.",
        "openai.",
    ]
    .iter()
    .find_map(|vendor| name.strip_prefix(vendor))
    .unwrap_or(name)
}

/// Known models, by name prefix; figures from each provider's model documentation.
const KNOWN: &[(&str, Capabilities)] = &[
    ("gpt-4o", Capabilities::full(128_000, 16_384)),
    ("gpt-4.1", Capabilities::full(1_047_576, 32_768)),
    ("gpt-5", Capabilities::full(400_000, 128_000)),
    ("o3", Capabilities::full(200_000, 100_000)),
    ("o4-mini", Capabilities::full(200_000, 100_000)),
    ("claude-opus-4", Capabilities::full(200_000, 32_000)),
    ("claude-sonnet-4", Capabilities::full(200_000, 64_000)),
    ("claude-haiku-4", Capabilities::full(200_000, 64_000)),
    ("claude-3-5-haiku", Capabilities::full(200_000, 8_192)),
    ("gemini-2.5", Capabilities::full(1_048_576, 65_536)),
    ("gemini-2.0-flash", Capabilities::full(1_048_576, 8_192)),
    (
        "deepseek-chat",
        Capabilities::full(128_000, 8_192)
            .text_only()
            .no_json_schema(),
    ),
    (
        "deepseek-reasoner",
        Capabilities::full(128_000, 64_000)
            .text_only()
            .no_json_schema(),
    ),
    (
        "mistral-large",
        Capabilities::full(128_000, 32_768).text_only(),
    ),
    ("mistral-small", Capabilities::full(128_000, 32_768)),
    (
        "llama-3.3-70b",
        Capabilities::full(131_072, 32_768)
            .text_only()
            .no_json_schema(),
    ),
    (
        "llama-3.1-8b",
        Capabilities::full(131_072, 8_192)
            .text_only()
            .no_json_schema(),
    ),
    ("qwen-plus", Capabilities::full(131_072, 8_192).text_only()),
    (
        "qwen-turbo",
        Capabilities::full(1_000_000, 8_192).text_only(),
    ),
    ("qwen-max", Capabilities::full(32_768, 8_192).text_only()),
    ("grok-3", Capabilities::full(131_072, 16_384).text_only()),
];

/// What a request needs from the deployment that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    pub tools: bool,
    pub parallel_tool_calls: bool,
    pub json_schema: bool,
    pub vision: bool,
    pub streaming: bool,
    /// Estimated input tokens plus the output asked for.
    pub tokens: u32,
    /// The output asked for (`max_completion_tokens` or `max_tokens`).
    pub output_tokens: u32,
}

/// How far off the estimate may be: within this fraction of a context window the estimate
/// alone does not decide. An OpenAI model's deployment is then judged on tiktoken's count;
/// any other is let through, and the provider has the last word — the gateway never refuses
/// a request that might fit.
const MARGIN: f64 = 0.25;

impl Needs {
    /// Reads what `request` needs, estimating its size ([`tokens::estimate`]).
    pub fn of(request: &ChatRequest) -> Needs {
        let output_tokens = request
            .max_completion_tokens
            .or(request.max_tokens)
            .unwrap_or(0);
        Needs {
            tools: request.tools.as_ref().is_some_and(|t| !t.is_empty()),
            parallel_tool_calls: request.parallel_tool_calls == Some(true),
            json_schema: request
                .response_format
                .as_ref()
                .is_some_and(|f| f.kind == "json_schema"),
            vision: request.messages.iter().any(|m| {
                matches!(&m.content, Some(Content::Parts(parts))
                    if parts.iter().any(|p| matches!(p, ContentPart::ImageUrl { .. })))
            }),
            streaming: request.is_stream(),
            tokens: tokens::estimate(request).saturating_add(output_tokens),
            output_tokens,
        }
    }

    /// As [`Needs::unmet`], but near a context window (see [`MARGIN`]) the estimate does
    /// not decide: an OpenAI model is judged on tiktoken's count of `request` (when the
    /// encoding is loaded), any other deployment is let through.
    pub fn unmet_for(
        &self,
        caps: &Capabilities,
        model: &str,
        request: &ChatRequest,
    ) -> Option<Unmet> {
        let unmet = self.unmet(caps);
        let Some(window) = caps.context_window else {
            return unmet;
        };
        let near = (f64::from(self.tokens) - f64::from(window)).abs() <= f64::from(window) * MARGIN;
        if !near || matches!(unmet, Some(Unmet::Capability(_))) {
            return unmet;
        }
        let counted = Encoding::for_model(model).and_then(|e| tokens::count(request, e));
        match counted {
            Some(input) if input.saturating_add(self.output_tokens) > window => {
                Some(Unmet::Context { window })
            }
            _ => None,
        }
    }

    /// The capabilities needed, by their policy-facing names.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        [
            (self.tools, "tools"),
            (self.parallel_tool_calls, "parallel_tool_calls"),
            (self.json_schema, "json_schema"),
            (self.vision, "vision"),
            (self.streaming, "streaming"),
        ]
        .into_iter()
        .filter_map(|(needed, name)| needed.then_some(name))
    }

    /// The first thing `caps` lacks, named for the caller.
    pub fn unmet(&self, caps: &Capabilities) -> Option<Unmet> {
        let missing = [
            (self.tools && !caps.tools, "tools"),
            (
                self.parallel_tool_calls && !caps.parallel_tool_calls,
                "parallel tool calls",
            ),
            (
                self.json_schema && !caps.json_schema,
                "structured output (json_schema)",
            ),
            (self.vision && !caps.vision, "image input (vision)"),
            (self.streaming && !caps.streaming, "streaming"),
        ];
        if let Some((_, name)) = missing.iter().find(|(lacks, _)| *lacks) {
            return Some(Unmet::Capability(name));
        }
        match caps.context_window {
            Some(window) if self.tokens > window => Some(Unmet::Context { window }),
            _ => None,
        }
    }
}

/// Why a deployment cannot take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    Capability(&'static str),
    Context { window: u32 },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn req(v: serde_json::Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn known_models_match_by_longest_prefix_and_unknown_ones_are_open() {
        assert_eq!(
            Capabilities::of_model("gpt-4o-mini").context_window,
            Some(128_000)
        );
        assert_eq!(
            Capabilities::of_model("gpt-4.1-mini").context_window,
            Some(1_047_576)
        );
        assert!(!Capabilities::of_model("deepseek-chat").vision);
        assert!(!Capabilities::of_model("accounts/x/models/llama-3.3-70b-instruct").json_schema);
        assert_eq!(Capabilities::of_model("my-finetune"), Capabilities::ANY);
        let bedrock = Capabilities::of_model("us.anthropic.claude-sonnet-4-5-20250929-v1:0");
        assert_eq!(bedrock.context_window, Some(200_000));
        assert_eq!(
            Capabilities::of_model("anthropic.claude-3-5-haiku-20241022-v1:0").max_output,
            Some(8_192)
        );
    }

    #[test]
    fn needs_name_the_first_missing_capability() {
        let r = req(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]}),
        );
        let needs = Needs::of(&r);
        assert!(needs.vision && !needs.tools);
        assert_eq!(
            needs.unmet(&Capabilities::of_model("deepseek-chat")),
            Some(Unmet::Capability("image input (vision)"))
        );
        assert_eq!(needs.unmet(&Capabilities::of_model("gpt-4o")), None);
    }

    #[test]
    fn a_request_larger_than_the_window_is_unmet() {
        let big = "word ".repeat(200_000);
        let r = req(json!({"model": "m", "messages": [{"role": "user", "content": big}]}));
        let needs = Needs::of(&r);
        assert!(
            needs.tokens > 200_000 && needs.tokens < 300_000,
            "{}",
            needs.tokens
        );
        assert_eq!(
            needs.unmet(&Capabilities::of_model("claude-sonnet-4-5")),
            Some(Unmet::Context { window: 200_000 })
        );
        assert_eq!(needs.unmet(&Capabilities::of_model("gemini-2.5-pro")), None);
    }

    #[test]
    fn near_the_window_an_openai_model_is_judged_by_tiktoken() {
        crate::usage::tokens::Encoding::O200k.load().unwrap();
        // Long common words: the 4-characters-a-token estimate overshoots by far.
        let text = "international ".repeat(40_000);
        let r = req(json!({"model": "m", "messages": [{"role": "user", "content": text}]}));
        let needs = Needs::of(&r);
        let caps = Capabilities::of_model("gpt-4o");
        assert_eq!(
            needs.unmet(&caps),
            Some(Unmet::Context { window: 128_000 }),
            "estimate {}",
            needs.tokens
        );
        assert_eq!(needs.unmet_for(&caps, "gpt-4o", &r), None);
        // A model without a known tokenizer is let through near its window: the provider
        // decides. Clearly over the window, it is not.
        let claude = Capabilities {
            context_window: Some(128_000),
            ..Capabilities::ANY
        };
        assert_eq!(needs.unmet_for(&claude, "claude-x", &r), None);
        let small = Capabilities {
            context_window: Some(50_000),
            ..Capabilities::ANY
        };
        assert_eq!(
            needs.unmet_for(&small, "claude-x", &r),
            Some(Unmet::Context { window: 50_000 })
        );
    }
}
