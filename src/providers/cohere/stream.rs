//! Cohere v2 chat stream events -> canonical chunks.
//!
//! Events (v2 "Streaming" and "Tool use streaming" guides), dispatched on `data.type`:
//! `message-start` (id), `content-start`/`content-delta`/`content-end` per content item
//! (text at `delta.message.content.text`; items of type `thinking` are reasoning),
//! `tool-plan-delta`, `tool-call-start` (id, name, first arguments) / `tool-call-delta`
//! (argument fragments) / `tool-call-end` with a per-call `index`, citations, and
//! `message-end` (`delta.finish_reason`, `delta.usage`, and `delta.error` when generation
//! failed). The stream has no terminator beyond `message-end`.

use serde::Deserialize;
use serde_json::Value;

use super::response::{WireUsage, finish_reason};
use crate::{
    chat::{ChatChunk, ChunkChoice, Delta, Extra, FunctionCallDelta, Role, ToolCallDelta},
    providers::{
        ProviderError, limits,
        sse::{SseEvent, StreamTranslator},
        unix_now, upstream,
    },
};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Event {
    MessageStart {
        #[serde(default)]
        id: Option<String>,
    },
    ContentStart {
        #[serde(default)]
        index: u32,
        #[serde(default)]
        delta: Option<Value>,
    },
    ContentDelta {
        #[serde(default)]
        index: u32,
        #[serde(default)]
        delta: Option<Value>,
    },
    ToolCallStart {
        #[serde(default)]
        index: u32,
        #[serde(default)]
        delta: Option<Value>,
    },
    ToolCallDelta {
        #[serde(default)]
        index: u32,
        #[serde(default)]
        delta: Option<Value>,
    },
    MessageEnd {
        #[serde(default)]
        delta: Option<EndDelta>,
    },
    /// content-end, tool-plan-delta, tool-call-end, citations, debug, and newer types.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct EndDelta {
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<String>,
}

/// The translation state of one Cohere stream.
#[derive(Debug)]
pub struct CohereStream {
    id: String,
    model: String,
    created: i64,
    /// Content-item indices that carry thinking rather than text.
    thinking_items: Vec<u32>,
    ended: bool,
    finished: bool,
}

impl CohereStream {
    /// A stream for `model` (Cohere's events do not name it).
    pub fn new(model: &str) -> Self {
        CohereStream {
            id: String::new(),
            model: model.to_owned(),
            created: unix_now(),
            thinking_items: Vec::new(),
            ended: false,
            finished: false,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&str>) -> ChatChunk {
        ChatChunk {
            native: None,
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish.map(str::to_owned),
                logprobs: None,
                extra: Extra::new(),
            }],
            usage: None,
            system_fingerprint: None,
            extra: Extra::new(),
        }
    }

    fn translate(&mut self, event: Event) -> Result<Vec<ChatChunk>, ProviderError> {
        let str_at = |delta: &Option<Value>, pointer: &str| {
            delta
                .as_ref()
                .and_then(|d| d.pointer(pointer))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(match event {
            Event::MessageStart { id } => {
                self.id = id.unwrap_or_else(|| format!("cohere-{:016x}", fastrand::u64(..)));
                vec![self.chunk(
                    Delta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        ..Delta::default()
                    },
                    None,
                )]
            }
            Event::ContentStart { index, delta } => {
                if str_at(&delta, "/message/content/type").as_deref() == Some("thinking") {
                    limits::room_for("thinking item", self.thinking_items.len())?;
                    self.thinking_items
                        .push(limits::index("content index", index)?);
                }
                Vec::new()
            }
            Event::ContentDelta { index, delta } => {
                let thinking = self.thinking_items.contains(&index);
                let piece = str_at(&delta, "/message/content/text")
                    .or_else(|| str_at(&delta, "/message/content/thinking"))
                    .unwrap_or_default();
                if piece.is_empty() {
                    return Ok(Vec::new());
                }
                let delta = if thinking {
                    let mut extra = Extra::new();
                    extra.insert("reasoning_content".into(), piece.into());
                    Delta {
                        extra,
                        ..Delta::default()
                    }
                } else {
                    Delta {
                        content: Some(piece),
                        ..Delta::default()
                    }
                };
                vec![self.chunk(delta, None)]
            }
            Event::ToolCallStart { index, delta } => {
                let call = ToolCallDelta {
                    index: limits::index("tool call index", index)?,
                    id: str_at(&delta, "/message/tool_calls/id"),
                    kind: Some("function".into()),
                    function: Some(FunctionCallDelta {
                        name: str_at(&delta, "/message/tool_calls/function/name"),
                        arguments: Some(
                            str_at(&delta, "/message/tool_calls/function/arguments")
                                .unwrap_or_default(),
                        ),
                    }),
                };
                vec![self.tool(call)]
            }
            Event::ToolCallDelta { index, delta } => {
                match str_at(&delta, "/message/tool_calls/function/arguments")
                    .filter(|a| !a.is_empty())
                {
                    Some(args) => vec![self.tool(ToolCallDelta {
                        index: limits::index("tool call index", index)?,
                        id: None,
                        kind: None,
                        function: Some(FunctionCallDelta {
                            name: None,
                            arguments: Some(args),
                        }),
                    })],
                    None => Vec::new(),
                }
            }
            Event::MessageEnd { delta } => {
                let delta = delta.unwrap_or(EndDelta {
                    finish_reason: None,
                    usage: None,
                    error: None,
                });
                if let Some(message) = delta.error.filter(|e| !e.is_empty()) {
                    return Err(ProviderError::InStream {
                        message,
                        kind: None,
                        code: None,
                    });
                }
                self.finished = true;
                self.ended = true;
                let finish = finish_reason(delta.finish_reason.as_deref().unwrap_or("COMPLETE"));
                let mut usage = self.chunk(Delta::default(), None);
                usage.choices.clear();
                usage.usage = Some(delta.usage.unwrap_or_default().to_usage());
                vec![self.chunk(Delta::default(), Some(finish)), usage]
            }
            Event::Other => Vec::new(),
        })
    }

    fn tool(&self, call: ToolCallDelta) -> ChatChunk {
        self.chunk(
            Delta {
                tool_calls: Some(vec![call]),
                ..Delta::default()
            },
            None,
        )
    }
}

impl StreamTranslator for CohereStream {
    fn on_event(&mut self, event: SseEvent) -> Vec<Result<ChatChunk, ProviderError>> {
        if event.data.trim() == "[DONE]" {
            return Vec::new();
        }
        let parsed = upstream::decode::<Event>(event.data.as_bytes());
        match parsed.and_then(|ev| self.translate(ev)) {
            Ok(chunks) => chunks.into_iter().map(Ok).collect(),
            Err(e) => {
                self.ended = true;
                vec![Err(e)]
            }
        }
    }

    fn is_ended(&self) -> bool {
        self.ended
    }

    fn on_eof(&mut self) -> Result<Vec<ChatChunk>, ProviderError> {
        if self.finished {
            Ok(Vec::new())
        } else {
            Err(ProviderError::Reset(
                "the stream ended without message-end".into(),
            ))
        }
    }
}
