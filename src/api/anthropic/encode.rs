//! The canonical answer -> an Anthropic Messages answer, for deployments of other formats
//! (a pass-through answer is returned as the provider's own bytes instead).
//!
//! Rules (Messages API reference, "Create a Message" response): `content` holds a
//! `thinking` block for the reasoning text (with an empty `signature`: only Anthropic signs
//! thinking, and a translated answer has nothing to sign), then the text, then one
//! `tool_use` block per tool call (`input`: the arguments object as the provider wrote
//! it); `stop_reason` from the finish reason ([`stop_reason`]); `usage.input_tokens`
//! excludes cached input, as Anthropic counts it, with the cache fields when the provider
//! reported them.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::chat::{ChatResponse, Usage};

/// The key OpenAI-compatible reasoning models (and every translating adapter) put the
/// reasoning text under.
pub const REASONING: &str = "reasoning_content";

/// Anthropic's `stop_reason` for a canonical finish reason.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        // `stop`, and whatever a provider invents.
        _ => "end_turn",
    }
}

/// A message id in Anthropic's form for an answer that has another provider's id.
pub fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        return id.to_owned();
    }
    let tail = id.strip_prefix("chatcmpl-").unwrap_or(id);
    let clean: String = tail
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect();
    if clean.is_empty() {
        format!("msg_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
    } else {
        format!("msg_{clean}")
    }
}

/// Tool-use ids must match `^[a-zA-Z0-9_-]+$`; other providers' ids are rewritten the
/// same way the Anthropic adapter rewrites them, so a result sent back still pairs up.
pub fn tool_use_id(id: &str) -> std::borrow::Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !id.is_empty() && id.chars().all(ok) {
        std::borrow::Cow::Borrowed(id)
    } else if id.is_empty() {
        std::borrow::Cow::Owned("_".to_owned())
    } else {
        std::borrow::Cow::Owned(id.chars().map(|c| if ok(c) { c } else { '_' }).collect())
    }
}

/// A tool call's arguments as the `input` object: as written when they are one, else an
/// empty object (a provider that streamed broken JSON has nothing better to give).
pub fn tool_input(arguments: &str) -> &RawValue {
    let text = match arguments.trim() {
        "" => "{}",
        text => text,
    };
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) if raw.get().starts_with('{') => raw,
        _ => empty_object(),
    }
}

fn empty_object() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| {
        RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| RawValue::NULL.to_owned())
    })
}

/// `usage` in Anthropic's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WireUsage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u32>,
}

impl WireUsage {
    /// Anthropic's `input_tokens` excludes the cache reads and writes OpenAI's
    /// `prompt_tokens` includes.
    pub fn of(usage: &Usage) -> WireUsage {
        let details = usage.prompt_tokens_details.as_ref();
        let read = usage.cached_tokens();
        let written = usage.cache_write_tokens();
        WireUsage {
            input_tokens: usage.prompt_tokens.saturating_sub(read + written),
            output_tokens: usage.completion_tokens,
            cache_creation_input_tokens: details.map(|_| written),
            cache_read_input_tokens: details.map(|_| read),
        }
    }
}

#[derive(Serialize)]
struct Answer<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<OutBlock<'a>>,
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
    usage: WireUsage,
}

/// One block of an answer's `content`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutBlock<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    Text {
        text: &'a str,
    },
    ToolUse {
        id: std::borrow::Cow<'a, str>,
        name: &'a str,
        input: &'a RawValue,
    },
}

/// The Messages JSON for a canonical answer (its first choice: Messages has one).
pub fn encode(response: &ChatResponse) -> Result<Vec<u8>, serde_json::Error> {
    let choice = response.choices.first();
    let mut content = Vec::new();
    if let Some(m) = choice.map(|c| &c.message) {
        if let Some(reasoning) = m
            .extra
            .get(REASONING)
            .and_then(serde_json::Value::as_str)
            .filter(|r| !r.is_empty())
        {
            content.push(OutBlock::Thinking {
                thinking: reasoning,
                signature: "",
            });
        }
        match &m.content {
            Some(crate::chat::Content::Text(t)) if !t.is_empty() => {
                content.push(OutBlock::Text { text: t });
            }
            Some(crate::chat::Content::Parts(parts)) => {
                for p in parts {
                    if let crate::chat::ContentPart::Text { text, .. } = p
                        && !text.is_empty()
                    {
                        content.push(OutBlock::Text { text });
                    }
                }
            }
            _ => {}
        }
        if let Some(refusal) = m.refusal.as_deref().filter(|r| !r.is_empty()) {
            content.push(OutBlock::Text { text: refusal });
        }
        for call in m.tool_calls.iter().flatten() {
            content.push(OutBlock::ToolUse {
                id: tool_use_id(&call.id),
                name: &call.function.name,
                input: tool_input(&call.function.arguments),
            });
        }
    }
    let answer = Answer {
        id: message_id(&response.id),
        kind: "message",
        role: "assistant",
        model: &response.model,
        content,
        stop_reason: stop_reason(choice.and_then(|c| c.finish_reason.as_deref())),
        stop_sequence: None,
        usage: response
            .usage
            .as_ref()
            .map(WireUsage::of)
            .unwrap_or_default(),
    };
    serde_json::to_vec(&answer)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn response(v: Value) -> ChatResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_openai_answer_with_reasoning_and_a_tool_call_reads_as_a_message() {
        let r = response(json!({
            "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{ "index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me look.", "reasoning_content": "Hmm.",
                "tool_calls": [{ "id": "functions.get:0", "type": "function",
                    "function": { "name": "get", "arguments": "{\"city\": \"Paris\"}" } }] } }],
            "usage": { "prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37,
                "prompt_tokens_details": { "cached_tokens": 10 } }
        }));
        let v: Value = serde_json::from_slice(&encode(&r).unwrap()).unwrap();
        assert_eq!(v["id"], "msg_abc");
        assert_eq!(v["type"], "message");
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(
            v["content"][0],
            json!({"type": "thinking", "thinking": "Hmm.", "signature": ""})
        );
        assert_eq!(
            v["content"][1],
            json!({"type": "text", "text": "Let me look."})
        );
        assert_eq!(
            v["content"][2],
            json!({"type": "tool_use", "id": "functions_get_0", "name": "get", "input": {"city": "Paris"}})
        );
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 20, "output_tokens": 7, "cache_creation_input_tokens": 0,
                   "cache_read_input_tokens": 10})
        );
    }

    #[test]
    fn finish_reasons_map_to_stop_reasons() {
        assert_eq!(stop_reason(Some("stop")), "end_turn");
        assert_eq!(stop_reason(Some("length")), "max_tokens");
        assert_eq!(stop_reason(Some("tool_calls")), "tool_use");
        assert_eq!(stop_reason(Some("content_filter")), "refusal");
        assert_eq!(stop_reason(None), "end_turn");
    }
}
