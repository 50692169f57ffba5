//! Input tokens before the call, for context checks and limits: tiktoken for OpenAI models
//! (o200k_base for GPT-4o, GPT-4.1, GPT-5 and the o-series; cl100k_base for GPT-4 and
//! GPT-3.5), a documented estimate for every other model ([`estimate`]). The provider's
//! reported usage is the truth after the call.
//!
//! An encoding takes 0.2–0.3 s (release) and some 35 MB to load, and most gateways never
//! need one: it is loaded on a background thread the first time a request comes near the
//! context window of a model that uses it ([`count`]), and no request waits for it — until
//! it is loaded, the provider decides.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use crate::chat::{ChatRequest, Content, ContentPart};

/// A tiktoken encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    O200k,
    Cl100k,
}

/// Tokens an image is counted as, whatever its size: OpenAI's figure for a 512x512
/// high-detail image (85 base + 170 per tile, four tiles).
pub const IMAGE_TOKENS: usize = 765;

impl Encoding {
    /// The encoding an OpenAI model uses, by name (a provider prefix like `openai/` is
    /// ignored); `None` for models of other families.
    pub fn for_model(model: &str) -> Option<Encoding> {
        let name = model.rsplit('/').next().unwrap_or(model);
        let o200k = [
            "gpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "o1",
            "o3",
            "o4",
            "chatgpt-4o",
        ];
        if o200k.iter().any(|p| name.starts_with(p)) {
            Some(Encoding::O200k)
        } else if name.starts_with("gpt-4") || name.starts_with("gpt-3.5") {
            Some(Encoding::Cl100k)
        } else {
            None
        }
    }

    fn slot(self) -> &'static OnceLock<Option<CoreBPE>> {
        static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        match self {
            Encoding::O200k => &O200K,
            Encoding::Cl100k => &CL100K,
        }
    }

    /// Loads the encoding now (blocking) unless it is loaded; `None` if it failed to load.
    pub fn load(self) -> Option<&'static CoreBPE> {
        self.slot()
            .get_or_init(|| {
                let loaded = match self {
                    Encoding::O200k => tiktoken_rs::o200k_base(),
                    Encoding::Cl100k => tiktoken_rs::cl100k_base(),
                };
                loaded
                    .map_err(|e| tracing::error!(error = %e, "tiktoken encoding failed to load"))
                    .ok()
            })
            .as_ref()
    }

    /// The encoding if it is loaded, without waiting.
    pub fn loaded(self) -> Option<&'static CoreBPE> {
        self.slot().get().and_then(Option::as_ref)
    }
}

impl Encoding {
    /// The encoding if it is loaded; otherwise starts loading it on a background thread
    /// (once) and returns `None` at once.
    pub fn loaded_or_start(self) -> Option<&'static CoreBPE> {
        if let Some(bpe) = self.loaded() {
            return Some(bpe);
        }
        static STARTED: [std::sync::Once; 2] = [std::sync::Once::new(), std::sync::Once::new()];
        STARTED[self as usize].call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("tiktoken-load".into())
                .spawn(move || {
                    self.load();
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start loading tiktoken");
            }
        });
        None
    }
}

/// Input tokens of `request` for a model using `encoding`, following OpenAI's counting
/// for chat: 3 tokens of framing per message, 1 more for a name, 3 to prime the reply,
/// plus the tool definitions as JSON; `None` while the encoding is loading (the first call
/// starts that).
pub fn count(request: &ChatRequest, encoding: Encoding) -> Option<u32> {
    let bpe = encoding.loaded_or_start()?;
    let mut n = 3usize;
    for m in &request.messages {
        n += 3 + m
            .name
            .as_ref()
            .map_or(0, |name| 1 + bpe.count_ordinary(name));
        match &m.content {
            Some(Content::Text(t)) => n += bpe.count_ordinary(t),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    n += match p {
                        ContentPart::Text { text, .. } => bpe.count_ordinary(text),
                        ContentPart::ImageUrl { .. } => IMAGE_TOKENS,
                        ContentPart::Other(v) => bpe.count_ordinary(&v.to_string()),
                    };
                }
            }
            None => {}
        }
        for call in m.tool_calls.iter().flatten() {
            n += bpe.count_ordinary(&call.function.name)
                + bpe.count_ordinary(&call.function.arguments);
        }
    }
    if let Some(tools) = &request.tools {
        n += bpe.count_ordinary(&serde_json::to_string(tools).unwrap_or_default());
    }
    Some(u32::try_from(n).unwrap_or(u32::MAX))
}

/// A documented estimate of input tokens for any model: four characters of text per token,
/// four tokens of framing per message, the tool definitions as JSON, and [`IMAGE_TOKENS`]
/// per image. It errs high: on English prose o200k_base needs 20–45% fewer tokens, while
/// Claude's and Gemini's tokenizers are closer to four characters a token. Routing never
/// refuses a request on the estimate alone unless it is clearly over a window (see
/// `routing::capabilities`).
pub fn estimate(request: &ChatRequest) -> u32 {
    let mut chars = 0usize;
    let mut tokens = 0usize;
    for m in &request.messages {
        tokens += 4;
        match &m.content {
            Some(Content::Text(t)) => chars += t.len(),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    match p {
                        ContentPart::Text { text, .. } => chars += text.len(),
                        ContentPart::ImageUrl { .. } => tokens += IMAGE_TOKENS,
                        ContentPart::Other(v) => chars += json_len(v),
                    }
                }
            }
            None => {}
        }
        for call in m.tool_calls.iter().flatten() {
            chars += call.function.name.len() + call.function.arguments.len();
        }
    }
    for t in request.tools.iter().flatten() {
        chars += t.function.name.len()
            + t.function.description.as_ref().map_or(0, String::len)
            + t.function.parameters.as_ref().map_or(0, json_len);
    }
    u32::try_from(tokens + chars.div_ceil(4)).unwrap_or(u32::MAX)
}

/// The length of `value` as compact JSON, counted without building the string: the
/// estimate runs on every request, and tool schemas can be large.
fn json_len(value: &serde_json::Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn req(v: serde_json::Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn json_len_is_the_compact_serialized_length() {
        let v = json!({"type": "object", "properties": {"city": {"type": "string"}}, "n": [1, 2.5, null]});
        assert_eq!(json_len(&v), v.to_string().len());
    }

    #[test]
    fn models_map_to_their_encodings() {
        assert_eq!(Encoding::for_model("gpt-4o-mini"), Some(Encoding::O200k));
        assert_eq!(Encoding::for_model("openai/gpt-4.1"), Some(Encoding::O200k));
        assert_eq!(Encoding::for_model("o3-mini"), Some(Encoding::O200k));
        assert_eq!(Encoding::for_model("gpt-4-turbo"), Some(Encoding::Cl100k));
        assert_eq!(Encoding::for_model("claude-sonnet-4-5"), None);
    }

    #[test]
    fn tiktoken_counts_follow_openais_chat_framing() {
        let bpe = Encoding::O200k.load().unwrap();
        // "Hello world" is two tokens in o200k_base.
        assert_eq!(bpe.count_ordinary("Hello world"), 2);
        let r = req(json!({"model": "m", "messages": [
            {"role": "system", "content": "Hello world"},
            {"role": "user", "content": "Hello world", "name": "ada"}
        ]}));
        let ada = bpe.count_ordinary("ada");
        assert_eq!(
            count(&r, Encoding::O200k),
            Some(3 + (3 + 2) + (3 + 2 + 1 + ada as u32))
        );
    }

    #[test]
    fn the_estimate_errs_high_but_within_half_of_tiktoken_on_prose() {
        Encoding::O200k.load().unwrap();
        let text = "The quick brown fox jumps over the lazy dog while the gateway routes each \
                    request to the cheapest deployment that meets its latency threshold. "
            .repeat(40);
        let r = req(json!({"model": "m", "messages": [{"role": "user", "content": text}]}));
        let exact = f64::from(count(&r, Encoding::O200k).unwrap());
        let est = f64::from(estimate(&r));
        assert!(
            est >= exact && est < exact * 1.5,
            "estimate {est} vs tiktoken {exact}"
        );
    }
}
