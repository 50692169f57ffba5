//! Gemini `GenerateContentResponse` -> canonical (OpenAI) response; the same shapes carry
//! each frame of a stream, so [`super::stream`] reuses them.
//!
//! Candidates become choices; text parts join into `content`, `thought` parts into
//! `reasoning_content`, `functionCall` parts into `tool_calls` (Gemini's `id` when it sends
//! one, else a fresh `call_...` id). Usage: `promptTokenCount` already includes cached
//! content (`cachedContentTokenCount` -> `cached_tokens`); thinking tokens are billed as
//! output, so completion = candidates + thoughts (`reasoning_tokens` = thoughts).

use serde::Deserialize;
use serde_json::Value;

use crate::{
    chat::{
        ChatResponse, Choice, CompletionTokensDetails, Extra, FunctionCall, Message,
        PromptTokensDetails, Role, ToolCall, Usage,
    },
    providers::{ProviderError, limits, upstream},
};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub response_id: Option<String>,
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    /// Set on an in-band error frame of a stream: `{"error": {"code", "message", "status"}}`.
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate {
    #[serde(default)]
    pub content: Option<CandidateContent>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub index: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CandidateContent {
    #[serde(default)]
    pub parts: Vec<Part>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Part {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub thought: Option<bool>,
    #[serde(default)]
    pub function_call: Option<FunctionCallPart>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FunctionCallPart {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub args: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: Option<u32>,
    #[serde(default)]
    pub candidates_token_count: Option<u32>,
    #[serde(default)]
    pub cached_content_token_count: Option<u32>,
    #[serde(default)]
    pub thoughts_token_count: Option<u32>,
}

impl UsageMetadata {
    pub(super) fn to_usage(&self) -> Usage {
        let prompt = self.prompt_token_count.unwrap_or(0);
        let thoughts = self.thoughts_token_count.unwrap_or(0);
        let completion = self.candidates_token_count.unwrap_or(0) + thoughts;
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: self
                .cached_content_token_count
                .map(|c| PromptTokensDetails {
                    cached_tokens: Some(c),
                    cache_creation_tokens: None,
                    extra: Extra::new(),
                }),
            completion_tokens_details: self.thoughts_token_count.map(|t| CompletionTokensDetails {
                reasoning_tokens: Some(t),
                extra: Extra::new(),
            }),
            extra: Extra::new(),
        }
    }
}

impl FunctionCallPart {
    /// As an OpenAI tool call: Gemini's id if it sent one, else a fresh one.
    pub(super) fn to_tool_call(&self) -> ToolCall {
        ToolCall {
            id: self.id.clone().unwrap_or_else(new_call_id),
            kind: "function".into(),
            function: FunctionCall {
                name: self.name.clone(),
                arguments: self
                    .args
                    .as_ref()
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
            },
        }
    }
}

/// A unique tool-call id for calls Gemini sent without one.
pub(super) fn new_call_id() -> String {
    format!("call_{:016x}", fastrand::u64(..))
}

/// OpenAI's `finish_reason` for a Gemini `finishReason`.
pub fn finish_reason(reason: &str, called_tools: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if called_tools => "tool_calls",
        // STOP, OTHER, MALFORMED_FUNCTION_CALL, LANGUAGE and anything newer.
        _ => "stop",
    }
}

/// Parses a `generateContent` body into the canonical response.
pub fn decode_response(body: &[u8], requested_model: &str) -> Result<ChatResponse, ProviderError> {
    let r: GenerateResponse = upstream::decode(body)?;
    let mut choices = Vec::with_capacity(r.candidates.len().max(1));
    for (i, c) in r.candidates.iter().enumerate() {
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut calls = Vec::new();
        for p in c.content.iter().flat_map(|c| &c.parts) {
            match (&p.text, &p.function_call) {
                (Some(t), _) if p.thought == Some(true) => reasoning.push_str(t),
                (Some(t), _) => text.push_str(t),
                (None, Some(call)) => calls.push(call.to_tool_call()),
                (None, None) => {}
            }
        }
        let finish = finish_reason(
            c.finish_reason.as_deref().unwrap_or("STOP"),
            !calls.is_empty(),
        );
        choices.push(Choice {
            index: match c.index {
                Some(index) => limits::index("candidate index", index)?,
                None => limits::room_for("candidate index", i)?,
            },
            message: Message::assistant(text, reasoning, calls),
            finish_reason: Some(finish.into()),
            logprobs: None,
            extra: Extra::new(),
        });
    }
    if choices.is_empty() {
        // The prompt itself was blocked: no candidates, only a block reason.
        let reason = r
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.clone())
            .unwrap_or_else(|| "no candidates".into());
        let mut message = Message::text(Role::Assistant, "");
        message.refusal = Some(format!("the provider blocked the prompt: {reason}"));
        choices.push(Choice {
            index: 0,
            message,
            finish_reason: Some("content_filter".into()),
            logprobs: None,
            extra: Extra::new(),
        });
    }
    Ok(ChatResponse {
        native: None,
        id: r
            .response_id
            .clone()
            .unwrap_or_else(|| format!("gen-{:016x}", fastrand::u64(..))),
        object: "chat.completion".into(),
        created: crate::providers::unix_now(),
        model: r
            .model_version
            .clone()
            .unwrap_or_else(|| requested_model.to_owned()),
        choices,
        usage: r.usage_metadata.as_ref().map(UsageMetadata::to_usage),
        system_fingerprint: None,
        extra: Extra::new(),
    })
}
