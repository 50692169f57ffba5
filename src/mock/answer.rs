//! What the simulated model is asked and what it answers, whatever the wire format.
//!
//! Each format module reads its request into an [`Ask`] and renders the [`Answer`] in its
//! own shapes; the decision (text, structured JSON, or a tool call whose arguments validate
//! against the tool's schema) is made once, here.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::sample;

/// A request, as far as the simulated model cares.
#[derive(Debug, Default)]
pub(super) struct Ask {
    /// Offered tools: name and JSON Schema of the arguments.
    pub tools: Vec<(String, Value)>,
    /// A tool the caller forces.
    pub forced_tool: Option<String>,
    /// The caller forbade tool calls.
    pub tools_off: bool,
    /// The caller requires a tool call and allows several: with several tools offered,
    /// the simulated model calls each once (parallel tool calls).
    pub parallel: bool,
    /// Structured output: the schema the answer must validate against.
    pub schema: Option<Value>,
    pub last_user_text: String,
    pub max_tokens: Option<u64>,
    pub prompt_tokens: u64,
}

/// Why the answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finish {
    Stop,
    Length,
    ToolUse,
}

/// The simulated model's answer.
pub(super) struct Answer {
    pub content: Option<String>,
    /// `(name, JSON arguments)` of each call, in order.
    pub tool_calls: Vec<(String, Value)>,
    pub finish: Finish,
    /// Every prompt token (cached and cache-written included), as OpenAI counts them.
    pub prompt_tokens: u64,
    /// Every completion token, reasoning included.
    pub completion_tokens: u64,
    /// Of the prompt, read from the cache.
    pub cached_tokens: u64,
    /// Of the prompt, written to the cache.
    pub cache_write_tokens: u64,
    /// Of the completion, hidden reasoning.
    pub reasoning_tokens: u64,
}

impl Answer {
    /// The answer reporting `usage` (a fault's `usage=`) instead of its estimate.
    pub(super) fn reporting(mut self, usage: Option<super::MockUsage>) -> Answer {
        if let Some(u) = usage {
            self.prompt_tokens = u.prompt;
            self.cached_tokens = u.cached;
            self.cache_write_tokens = u.cache_write;
            self.completion_tokens = u.completion;
            self.reasoning_tokens = u.reasoning;
        }
        self
    }

    /// Prompt tokens neither read from nor written to the cache (Anthropic's and
    /// Bedrock's `input_tokens`).
    pub(super) fn fresh_prompt_tokens(&self) -> u64 {
        self.prompt_tokens - self.cached_tokens - self.cache_write_tokens
    }

    /// Decides the answer: a tool call when tools are offered and allowed, JSON when a
    /// schema is asked for, else text that names the mock and echoes the user.
    pub(super) fn to(ask: &Ask, name: &str) -> Answer {
        let chosen: Vec<&(String, Value)> = match &ask.forced_tool {
            _ if ask.tools_off => Vec::new(),
            Some(forced) => ask
                .tools
                .iter()
                .filter(|(n, _)| n == forced)
                .take(1)
                .collect(),
            None if ask.parallel => ask.tools.iter().collect(),
            None => ask.tools.iter().take(1).collect(),
        };
        if !chosen.is_empty() {
            let tool_calls: Vec<(String, Value)> = chosen
                .into_iter()
                .map(|(name, schema)| (name.clone(), sample(schema)))
                .collect();
            return Answer {
                completion_tokens: tool_calls
                    .iter()
                    .map(|(_, args)| (args.to_string().len() as u64).div_ceil(4))
                    .sum(),
                content: None,
                tool_calls,
                finish: Finish::ToolUse,
                prompt_tokens: ask.prompt_tokens,
                cached_tokens: 0,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
            };
        }
        if let Some(schema) = &ask.schema {
            let text = sample(schema).to_string();
            return Answer {
                completion_tokens: (text.len() as u64).div_ceil(4),
                content: Some(text),
                tool_calls: Vec::new(),
                finish: Finish::Stop,
                prompt_tokens: ask.prompt_tokens,
                cached_tokens: 0,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
            };
        }
        // Bounded, yet long enough for the load bench's burst: a prompt of 200 one-letter
        // words streams as about 200 chunks (one a word).
        let said: String = ask.last_user_text.chars().take(1000).collect();
        let mut text = format!("Hello from {name}! You said: {said}");
        let mut finish = Finish::Stop;
        if let Some(limit) = ask.max_tokens {
            let words: Vec<&str> = text.split(' ').collect();
            if words.len() as u64 > limit {
                text = words[..limit as usize].join(" ");
                finish = Finish::Length;
            }
        }
        Answer {
            completion_tokens: text.split(' ').count() as u64,
            content: Some(text),
            tool_calls: Vec::new(),
            finish,
            prompt_tokens: ask.prompt_tokens,
            cached_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        }
    }
}

/// The text of a message's `content`: a string, or the text of its parts/blocks.
pub(super) fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The text of the last turn whose `role` passes `is_user`, reading its `key` field
/// (`content`, or Gemini's `parts`).
pub(super) fn last_text(
    turns: &[Value],
    key: &str,
    is_user: impl Fn(Option<&str>) -> bool,
) -> String {
    turns
        .iter()
        .rev()
        .find(|t| is_user(t.get("role").and_then(Value::as_str)))
        .map(|t| text_of(t.get(key)))
        .unwrap_or_default()
}

/// The `malformed` fault for a whole answer: 200 with the start of a JSON body that never
/// closes (`prefix`, in the format's shape).
pub(super) fn malformed_json(prefix: &'static str) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(http::header::CONTENT_TYPE, "application/json")], prefix).into_response()
}

/// About four characters a token, plus a few tokens of framing per message.
pub(super) fn estimate_tokens(messages: &[Value]) -> u64 {
    messages
        .iter()
        .map(|m| 4 + (m.get("content").map_or(0, |c| c.to_string().len()) as u64).div_ceil(4))
        .sum()
}

/// Splits `s` into `n` pieces on character boundaries (streamed tool arguments).
pub(super) fn split_in(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let size = chars.len().div_ceil(n).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An empty JSON object schema, for tools declared without parameters.
pub(super) fn empty_object() -> Value {
    json!({"type": "object", "properties": {}})
}
