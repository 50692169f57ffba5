//! OpenAI's Responses API as a pass-through (the [`crate::chat::native`] contract): a
//! request that came in as `POST /v1/responses` goes to a deployment that has the API
//! (OpenAI: `POST {base}/responses`; Azure: `POST {base}/openai/v1/responses`, the v1 API
//! that needs no `api-version`) as the caller wrote it, with the deployment's model and
//! the attempt's stream mode written in. The answer is decoded into the canonical types
//! (for usage, cost, the log, the cache and failover) and its bytes kept beside them: the
//! whole JSON body, or each SSE event as it came.
//!
//! Shapes: API reference "Create a model response", "The response object", "Streaming
//! events" (openai-python `types/responses/`).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;

use crate::{
    chat::{
        ChatChunk, ChatResponse, Choice, ChunkChoice, CompletionTokensDetails, Delta, Extra,
        FunctionCall, FunctionCallDelta, Message, PromptTokensDetails, ToolCall, ToolCallDelta,
        Usage, native::NativeRequest,
    },
    providers::{
        ProviderError,
        sse::{SseEvent, StreamTranslator},
    },
};

/// The body sent upstream: the caller's, with `model` and `stream` set for this attempt.
/// Sent byte for byte when both already say so; otherwise every other field's value is
/// copied as its raw JSON text (never re-encoded), the keys in sorted order.
pub fn encode(native: &NativeRequest, model: &str, stream: bool) -> Result<Vec<u8>, ProviderError> {
    use std::collections::BTreeMap;

    use serde_json::value::RawValue;
    let refused =
        |e: serde_json::Error| ProviderError::Untranslatable(format!("the Responses body: {e}"));
    let mut fields: BTreeMap<std::borrow::Cow<'_, str>, &RawValue> =
        serde_json::from_slice(&native.body).map_err(refused)?;
    let said = |k: &str| fields.get(k).map(|v| v.get());
    let same_model =
        said("model").and_then(|m| serde_json::from_str::<&str>(m).ok()) == Some(model);
    let same_stream = said("stream").is_some_and(|s| s == "true") == stream;
    if same_model && same_stream {
        return Ok(native.body.to_vec());
    }
    let model = serde_json::value::to_raw_value(model).map_err(refused)?;
    let on: &RawValue = serde_json::from_str("true").map_err(refused)?;
    fields.insert("model".into(), &model);
    if stream {
        fields.insert("stream".into(), on);
    } else {
        fields.remove("stream");
        fields.remove("stream_options");
    }
    serde_json::to_vec(&fields).map_err(refused)
}

/// A whole Responses object as the canonical answer, its bytes kept as `native`.
pub fn decode_response(body: Bytes) -> Result<ChatResponse, ProviderError> {
    let object: Value = serde_json::from_slice(&body)
        .map_err(|e| ProviderError::Malformed(format!("a Responses object: {e}")))?;
    if object.get("object").and_then(Value::as_str) != Some("response") {
        return Err(ProviderError::Malformed(
            "the answer is not a Responses object".into(),
        ));
    }
    if object.get("status").and_then(Value::as_str) == Some("failed") {
        return Err(failed(object.get("error")));
    }
    let (text, reasoning, calls) = output_of(object.get("output"));
    let finish = finish_reason(&object, !calls.is_empty());
    Ok(ChatResponse {
        id: str_of(&object, "id"),
        object: "chat.completion".to_owned(),
        created: object
            .get("created_at")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        model: str_of(&object, "model"),
        choices: vec![Choice {
            index: 0,
            message: Message::assistant(text, reasoning, calls),
            finish_reason: Some(finish.to_owned()),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage: object.get("usage").and_then(usage),
        system_fingerprint: None,
        extra: Extra::new(),
        native: Some(body),
    })
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// The text, reasoning summary and function calls of `output`.
fn output_of(output: Option<&Value>) -> (String, String, Vec<ToolCall>) {
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for item in output.and_then(Value::as_array).into_iter().flatten() {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = part.get("text").and_then(Value::as_str) {
                        text.push_str(t);
                    }
                }
            }
            Some("reasoning") => {
                for part in item
                    .get("summary")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = part.get("text").and_then(Value::as_str) {
                        reasoning.push_str(t);
                    }
                }
            }
            Some("function_call") => calls.push(ToolCall {
                id: str_of(item, "call_id"),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: str_of(item, "name"),
                    arguments: str_of(item, "arguments"),
                },
            }),
            _ => {}
        }
    }
    (text, reasoning, calls)
}

/// Chat's finish reason for a finished Responses object.
fn finish_reason(object: &Value, calls: bool) -> &'static str {
    match object
        .pointer("/incomplete_details/reason")
        .and_then(Value::as_str)
    {
        Some("max_output_tokens") => "length",
        Some("content_filter") => "content_filter",
        _ if calls => "tool_calls",
        _ => "stop",
    }
}

/// Responses usage as chat's.
fn usage(u: &Value) -> Option<Usage> {
    let n = |p: &str| {
        u.pointer(p)
            .and_then(Value::as_u64)
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
    };
    let input = n("/input_tokens")?;
    let output = n("/output_tokens").unwrap_or(0);
    Some(Usage {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: n("/total_tokens").unwrap_or(input.saturating_add(output)),
        prompt_tokens_details: n("/input_tokens_details/cached_tokens").map(|c| {
            PromptTokensDetails {
                cached_tokens: Some(c),
                cache_creation_tokens: None,
                extra: Extra::new(),
            }
        }),
        completion_tokens_details: n("/output_tokens_details/reasoning_tokens").map(|r| {
            CompletionTokensDetails {
                reasoning_tokens: Some(r),
                extra: Extra::new(),
            }
        }),
        extra: Extra::new(),
    })
}

fn failed(error: Option<&Value>) -> ProviderError {
    let field = |k: &str| {
        error
            .and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    ProviderError::InStream {
        message: field("message").unwrap_or_else(|| "the response failed".to_owned()),
        kind: None,
        code: field("code"),
    }
}

/// The Responses event stream: each event becomes a chunk carrying its own bytes, with
/// what it means for the canonical answer (text, reasoning and argument deltas, the
/// finish and usage); `response.completed`/`response.incomplete` end it, and
/// `response.failed` or `error` end it with an error.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    id: String,
    model: String,
    created: i64,
    /// The tool-call index of each function call's `output_index`.
    calls: HashMap<u64, u32>,
    ended: bool,
}

impl StreamDecoder {
    fn chunk(&self, native: Bytes) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices: Vec::new(),
            usage: None,
            system_fingerprint: None,
            extra: Extra::new(),
            native: Some(native),
        }
    }

    fn with_delta(&self, native: Bytes, delta: Delta, finish: Option<&str>) -> ChatChunk {
        let mut chunk = self.chunk(native);
        chunk.choices.push(ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish.map(str::to_owned),
            logprobs: None,
            extra: Extra::new(),
        });
        chunk
    }

    fn decode(
        &mut self,
        kind: &str,
        data: &Value,
        native: Bytes,
    ) -> Result<ChatChunk, ProviderError> {
        let text = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        Ok(match kind {
            "response.created" | "response.in_progress" => {
                if let Some(r) = data.get("response") {
                    self.id = str_of(r, "id");
                    self.model = str_of(r, "model");
                    self.created = r.get("created_at").and_then(Value::as_i64).unwrap_or(0);
                }
                self.chunk(native)
            }
            "response.output_text.delta" => self.with_delta(
                native,
                Delta {
                    content: Some(text("delta")),
                    ..Delta::default()
                },
                None,
            ),
            "response.refusal.delta" => self.with_delta(
                native,
                Delta {
                    refusal: Some(text("delta")),
                    ..Delta::default()
                },
                None,
            ),
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let mut extra = Extra::new();
                extra.insert("reasoning_content".to_owned(), Value::from(text("delta")));
                self.with_delta(
                    native,
                    Delta {
                        extra,
                        ..Delta::default()
                    },
                    None,
                )
            }
            "response.output_item.added"
                if data.pointer("/item/type").and_then(Value::as_str) == Some("function_call") =>
            {
                let output_index = data
                    .get("output_index")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let index = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
                self.calls.insert(output_index, index);
                let item = data.get("item").unwrap_or(&Value::Null);
                let call = ToolCallDelta {
                    index,
                    id: Some(str_of(item, "call_id")),
                    kind: Some("function".to_owned()),
                    function: Some(FunctionCallDelta {
                        name: Some(str_of(item, "name")),
                        arguments: Some(str_of(item, "arguments")),
                    }),
                };
                self.with_delta(
                    native,
                    Delta {
                        tool_calls: Some(vec![call]),
                        ..Delta::default()
                    },
                    None,
                )
            }
            "response.function_call_arguments.delta" => {
                let output_index = data
                    .get("output_index")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                match self.calls.get(&output_index) {
                    Some(&index) => {
                        let call = ToolCallDelta {
                            index,
                            id: None,
                            kind: None,
                            function: Some(FunctionCallDelta {
                                name: None,
                                arguments: Some(text("delta")),
                            }),
                        };
                        self.with_delta(
                            native,
                            Delta {
                                tool_calls: Some(vec![call]),
                                ..Delta::default()
                            },
                            None,
                        )
                    }
                    None => self.chunk(native),
                }
            }
            "response.completed" | "response.incomplete" => {
                self.ended = true;
                let r = data.get("response").unwrap_or(&Value::Null);
                let finish = finish_reason(r, !self.calls.is_empty());
                let mut chunk = self.with_delta(native, Delta::default(), Some(finish));
                chunk.usage = r.get("usage").and_then(usage);
                chunk
            }
            "response.failed" => {
                self.ended = true;
                return Err(failed(data.pointer("/response/error")));
            }
            "error" => {
                self.ended = true;
                return Err(ProviderError::InStream {
                    message: text("message"),
                    kind: None,
                    code: data.get("code").and_then(Value::as_str).map(str::to_owned),
                });
            }
            _ => self.chunk(native),
        })
    }
}

impl StreamTranslator for StreamDecoder {
    fn on_event(&mut self, event: SseEvent) -> Vec<Result<ChatChunk, ProviderError>> {
        let data = event.data.trim();
        if data.is_empty() {
            return Vec::new();
        }
        let parsed: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                self.ended = true;
                return vec![Err(ProviderError::Malformed(format!(
                    "a Responses event: {e}"
                )))];
            }
        };
        let kind = event
            .event
            .as_deref()
            .or_else(|| parsed.get("type").and_then(Value::as_str))
            .unwrap_or("")
            .to_owned();
        let native = match &event.event {
            Some(name) => Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
            None => Bytes::from(format!("data: {data}\n\n")),
        };
        vec![self.decode(&kind, &parsed, native)]
    }

    fn is_ended(&self) -> bool {
        self.ended
    }

    fn on_eof(&mut self) -> Result<Vec<ChatChunk>, ProviderError> {
        if self.ended {
            Ok(Vec::new())
        } else {
            Err(ProviderError::Reset(
                "the Responses stream ended without response.completed".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
