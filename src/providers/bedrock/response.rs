//! Bedrock Converse response -> canonical (OpenAI) response.
//!
//! `output.message.content` blocks: `text` joins into `content`, `toolUse` becomes
//! `tool_calls` (input re-encoded as the JSON `arguments` string), `reasoningContent` goes
//! to `reasoning_content`. The answer carries no id or model: the id is the request id
//! AWS sends in `x-amzn-RequestId`, the model the deployment's. Usage (TokenUsage):
//! `inputTokens` excludes cache reads and writes, OpenAI's `prompt_tokens` includes them,
//! so prompt = input + cacheWrite + cacheRead, with reads as `cached_tokens` and writes as
//! `cache_creation_tokens` — each token counted once, as for Anthropic.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    chat::{
        ChatResponse, Choice, Extra, FunctionCall, Message, PromptTokensDetails, ToolCall, Usage,
    },
    providers::{ProviderError, unix_now, upstream},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse {
    output: Output,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
struct Output {
    message: OutputMessage,
}

#[derive(Deserialize)]
struct OutputMessage {
    #[serde(default)]
    content: Vec<ResponseBlock>,
}

/// A content block: exactly one of these keys is set.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ResponseBlock {
    text: Option<String>,
    tool_use: Option<ToolUse>,
    reasoning_content: Option<Reasoning>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse {
    tool_use_id: String,
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reasoning {
    reasoning_text: Option<ReasoningText>,
}

#[derive(Deserialize)]
struct ReasoningText {
    text: String,
}

/// `usage` as Converse reports it (TokenUsage), in a stream in the `metadata` event.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireUsage {
    #[serde(default)]
    pub input_tokens: u32,
    #[serde(default)]
    pub output_tokens: u32,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u32>,
    #[serde(default)]
    pub cache_write_input_tokens: Option<u32>,
}

impl WireUsage {
    /// The usage in OpenAI's terms, each token counted once.
    pub(super) fn to_usage(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let written = self.cache_write_input_tokens.unwrap_or(0);
        let prompt = self.input_tokens + read + written;
        let details = (self.cache_read_input_tokens.is_some()
            || self.cache_write_input_tokens.is_some())
        .then(|| PromptTokensDetails {
            cached_tokens: Some(read),
            cache_creation_tokens: Some(written),
            extra: Extra::new(),
        });
        Usage {
            prompt_tokens: prompt,
            completion_tokens: self.output_tokens,
            total_tokens: prompt + self.output_tokens,
            prompt_tokens_details: details,
            completion_tokens_details: None,
            extra: Extra::new(),
        }
    }
}

/// OpenAI's `finish_reason` for a Converse `stopReason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        // end_turn, stop_sequence and anything newer.
        _ => "stop",
    }
}

/// Parses a Converse response body into the canonical response.
pub fn decode_response(body: &[u8], model: &str, id: &str) -> Result<ChatResponse, ProviderError> {
    let r: ConverseResponse = upstream::decode(body)?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in r.output.message.content {
        if let Some(t) = block.text {
            text.push_str(&t);
        }
        if let Some(t) = block.reasoning_content.and_then(|r| r.reasoning_text) {
            reasoning.push_str(&t.text);
        }
        if let Some(call) = block.tool_use {
            tool_calls.push(ToolCall {
                id: call.tool_use_id,
                kind: "function".into(),
                function: FunctionCall {
                    name: call.name,
                    arguments: if call.input.is_null() {
                        "{}".into()
                    } else {
                        call.input.to_string()
                    },
                },
            });
        }
    }
    let message = Message::assistant(text, reasoning, tool_calls);
    Ok(ChatResponse {
        native: None,
        id: id.to_owned(),
        object: "chat.completion".into(),
        created: unix_now(),
        model: model.to_owned(),
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
