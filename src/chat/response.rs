//! The chat-completions response, stream chunk and usage.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::{Content, Extra, FunctionCall, Message, Role, ToolCall};

/// A non-streamed chat completion (`object: "chat.completion"`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatResponse {
    pub id: String,
    #[serde(default = "completion_object")]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
    /// The provider's answer body byte for byte, when the request was passed through in
    /// its native format ([`super::native`]); never (de)serialized.
    #[serde(skip)]
    pub native: Option<bytes::Bytes>,
}

fn completion_object() -> String {
    "chat.completion".to_owned()
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_owned()
}

/// One choice of a completion.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    #[serde(serialize_with = "answer_message")]
    pub message: Message,
    /// `stop`, `length`, `tool_calls`, `content_filter`; null while unknown.
    pub finish_reason: Option<String>,
    /// Always written, null when absent: the spec requires the field.
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Writes an answer's message as the spec's `ChatCompletionResponseMessage` has it:
/// `content` and `refusal` are required (nullable), so they are written as null when
/// absent, where a request's message omits them.
fn answer_message<S: Serializer>(message: &Message, serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct AnswerMessage<'a> {
        role: Role,
        content: &'a Option<Content>,
        refusal: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_calls: &'a Option<Vec<ToolCall>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_call_id: &'a Option<String>,
        #[serde(flatten)]
        extra: &'a Extra,
    }
    AnswerMessage {
        role: message.role,
        content: &message.content,
        refusal: &message.refusal,
        name: &message.name,
        tool_calls: &message.tool_calls,
        tool_call_id: &message.tool_call_id,
        extra: &message.extra,
    }
    .serialize(serializer)
}

/// One chunk of a streamed completion (`object: "chat.completion.chunk"`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChatChunk {
    pub id: String,
    #[serde(default = "chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
    /// The provider's own stream event(s) this chunk was decoded from, byte for byte,
    /// when the request was passed through in its native format ([`super::native`]);
    /// never (de)serialized.
    #[serde(skip)]
    pub native: Option<bytes::Bytes>,
}

impl ChatChunk {
    /// Whether this chunk carries anything a client shows or acts on: content, reasoning
    /// text (`reasoning_content`), a refusal, a tool call or a finish reason. A chunk with
    /// only the role does not count.
    pub fn has_content(&self) -> bool {
        self.choices.iter().any(|c| {
            c.finish_reason.is_some()
                || c.delta.content.as_deref().is_some_and(|s| !s.is_empty())
                || c.delta.refusal.as_deref().is_some_and(|s| !s.is_empty())
                || c.delta.tool_calls.as_ref().is_some_and(|t| !t.is_empty())
                || c.delta
                    .extra
                    .get("reasoning_content")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|s| !s.is_empty())
        })
    }
}

/// One choice of a stream chunk.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    pub finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// What a chunk adds to the message.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<super::Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A fragment of a tool call: the first names it, the rest extend its arguments.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// The function part of a tool-call fragment.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl From<FunctionCall> for FunctionCallDelta {
    fn from(call: FunctionCall) -> Self {
        FunctionCallDelta {
            name: Some(call.name),
            arguments: Some(call.arguments),
        }
    }
}

/// Token usage as the provider reported it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Usage {
    /// Input tokens served from the provider's prompt cache.
    pub fn cached_tokens(&self) -> u32 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
    }

    /// Input tokens written to the provider's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`, Bedrock's `cacheWriteInputTokens`); 0 when none.
    pub fn cache_write_tokens(&self) -> u32 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cache_creation_tokens)
            .unwrap_or(0)
    }

    /// Output tokens spent on hidden reasoning.
    pub fn reasoning_tokens(&self) -> u32 {
        self.completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0)
    }
}

/// `usage.prompt_tokens_details`. `prompt_tokens` counts every prompt token once:
/// the fresh ones, `cached_tokens` (read from the provider's cache) and
/// `cache_creation_tokens` (written to it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct PromptTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u32>,
    /// Prompt tokens written to the provider's cache (billed above input by Anthropic
    /// and Bedrock). Not in OpenAI's schema: written only when a provider reports cache
    /// writes, under the name the gateway has always used for them, so clients that
    /// know OpenAI's fields ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_tokens: Option<u32>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct CompletionTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u32>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_answer_writes_the_fields_the_spec_requires_as_null_when_absent() {
        let answer = ChatResponse {
            native: None,
            id: "chatcmpl-1".into(),
            object: completion_object(),
            created: 1,
            model: "m".into(),
            choices: vec![Choice {
                index: 0,
                message: Message::assistant(String::new(), String::new(), Vec::new()),
                finish_reason: Some("stop".into()),
                logprobs: None,
                extra: Extra::new(),
            }],
            usage: None,
            system_fingerprint: None,
            extra: Extra::new(),
        };
        let mut answer = serde_json::to_value(&answer).unwrap();
        let choice = &answer["choices"][0];
        assert_eq!(choice["logprobs"], Value::Null);
        assert!(choice.as_object().unwrap().contains_key("logprobs"));
        let message = choice["message"].as_object().unwrap();
        assert_eq!(message["refusal"], Value::Null);
        assert_eq!(message["content"], json!(""));
        assert!(!message.contains_key("tool_calls"));
        // Read back, the same answer: null and absent mean the same thing.
        answer["choices"][0]["message"]["content"] = Value::Null;
        let read: ChatResponse = serde_json::from_value(answer).unwrap();
        assert!(read.choices[0].message.content.is_none());
        assert!(read.choices[0].message.refusal.is_none());
    }

    #[test]
    fn a_requests_message_omits_what_it_does_not_have() {
        let message = serde_json::to_value(Message::text(Role::User, "hi")).unwrap();
        assert_eq!(message, json!({"role": "user", "content": "hi"}));
    }
}
