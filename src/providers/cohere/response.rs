//! Cohere v2 chat response -> canonical (OpenAI) response.
//!
//! `message.content` text items join into `content` (thinking items into
//! `reasoning_content`); `tool_calls` already have OpenAI's shape. Usage: `tokens` are what
//! the model consumed and produced (the template included), `billed_units` what is billed;
//! the gateway reports `tokens`, falling back to `billed_units`.

use serde::Deserialize;

use crate::{
    chat::{ChatResponse, Choice, Extra, Message, ToolCall, Usage},
    providers::{ProviderError, unix_now, upstream},
};

#[derive(Deserialize)]
struct ChatResponseV2 {
    id: String,
    finish_reason: Option<String>,
    message: AssistantMessage,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct AssistantMessage {
    #[serde(default)]
    content: Vec<ContentItem>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

#[derive(Deserialize)]
struct ContentItem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
}

/// `usage`: real token counts and billed units.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    tokens: Option<Counts>,
    #[serde(default)]
    billed_units: Option<Counts>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Counts {
    #[serde(default)]
    input_tokens: Option<f64>,
    #[serde(default)]
    output_tokens: Option<f64>,
}

impl WireUsage {
    pub(super) fn to_usage(&self) -> Usage {
        let pick = |f: fn(&Counts) -> Option<f64>| {
            self.tokens
                .as_ref()
                .and_then(f)
                .or_else(|| self.billed_units.as_ref().and_then(f))
                .unwrap_or(0.0) as u32
        };
        let prompt = pick(|c| c.input_tokens);
        let completion = pick(|c| c.output_tokens);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            ..Usage::default()
        }
    }
}

/// OpenAI's `finish_reason` for a Cohere `finish_reason`.
pub fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "TOOL_CALL" => "tool_calls",
        // COMPLETE, STOP_SEQUENCE, ERROR, TIMEOUT and anything newer.
        _ => "stop",
    }
}

/// Parses a `/v2/chat` body into the canonical response.
pub fn decode_response(body: &[u8], requested_model: &str) -> Result<ChatResponse, ProviderError> {
    let r: ChatResponseV2 = upstream::decode(body)?;
    let mut text = String::new();
    let mut reasoning = String::new();
    for item in &r.message.content {
        match item.kind.as_str() {
            "thinking" => reasoning.push_str(
                item.thinking
                    .as_deref()
                    .or(item.text.as_deref())
                    .unwrap_or(""),
            ),
            _ => text.push_str(item.text.as_deref().unwrap_or("")),
        }
    }
    let message = Message::assistant(text, reasoning, r.message.tool_calls);
    Ok(ChatResponse {
        native: None,
        id: r.id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: requested_model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(
                finish_reason(r.finish_reason.as_deref().unwrap_or("COMPLETE")).into(),
            ),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage: Some(r.usage.unwrap_or_default().to_usage()),
        system_fingerprint: None,
        extra: Extra::new(),
    })
}
