//! Anthropic Messages response -> canonical (OpenAI) response.
//!
//! Text blocks join into `content`; `tool_use` blocks become `tool_calls` (input
//! re-encoded as the JSON `arguments` string); thinking goes to `reasoning_content`.
//! Usage: Anthropic's `input_tokens` excludes cached input, OpenAI's `prompt_tokens`
//! includes it, so prompt = input + cache_creation + cache_read, with cache reads as
//! `cached_tokens` and cache writes as `cache_creation_tokens` — each token counted once.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    chat::{
        ChatResponse, Choice, Extra, FunctionCall, Message, PromptTokensDetails, ToolCall, Usage,
    },
    providers::{ProviderError, unix_now, upstream},
};

#[derive(Deserialize)]
struct MessagesResponse {
    id: String,
    model: String,
    #[serde(default)]
    content: Vec<ResponseBlock>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    Thinking {
        thinking: String,
    },
    #[serde(other)]
    Other,
}

/// `usage` as the Messages API reports it (in a stream: cumulative values).
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub input_tokens: Option<u32>,
    #[serde(default)]
    pub output_tokens: Option<u32>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u32>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u32>,
}

impl WireUsage {
    /// Takes every value `later` reports (stream usage is cumulative).
    pub(super) fn update(&mut self, later: &WireUsage) {
        let pick = |a: &mut Option<u32>, b: Option<u32>| {
            if b.is_some() {
                *a = b;
            }
        };
        pick(&mut self.input_tokens, later.input_tokens);
        pick(&mut self.output_tokens, later.output_tokens);
        pick(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        pick(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
    }

    /// The usage in OpenAI's terms, each token counted once.
    pub(super) fn to_usage(&self) -> Usage {
        let created = self.cache_creation_input_tokens.unwrap_or(0);
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let prompt = self.input_tokens.unwrap_or(0) + created + read;
        let completion = self.output_tokens.unwrap_or(0);
        let details = (self.cache_creation_input_tokens.is_some()
            || self.cache_read_input_tokens.is_some())
        .then(|| PromptTokensDetails {
            cached_tokens: Some(read),
            cache_creation_tokens: Some(created),
            extra: Extra::new(),
        });
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: details,
            completion_tokens_details: None,
            extra: Extra::new(),
        }
    }
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything newer.
        _ => "stop",
    }
}

/// Parses a Messages response body into the canonical response.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let r: MessagesResponse = upstream::decode(body)?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in r.content {
        match block {
            ResponseBlock::Text { text: t } => text.push_str(&t),
            ResponseBlock::Thinking { thinking } => reasoning.push_str(&thinking),
            ResponseBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            ResponseBlock::Other => {}
        }
    }
    let message = Message::assistant(text, reasoning, tool_calls);
    Ok(ChatResponse {
        native: None,
        id: r.id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: r.model,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(
                finish_reason(r.stop_reason.as_deref().unwrap_or("end_turn")).into(),
            ),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage: Some(r.usage.to_usage()),
        system_fingerprint: None,
        extra: Extra::new(),
    })
}
