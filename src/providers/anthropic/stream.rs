//! Anthropic Messages stream events -> canonical chunks, as a struct with explicit state.
//!
//! Events (Messages API, "Streaming messages"): `message_start` (id, model, input usage),
//! `content_block_start` / `content_block_delta` (`text_delta`, `input_json_delta`,
//! `thinking_delta`) / `content_block_stop` per block, `message_delta` (stop reason,
//! cumulative usage), `message_stop` (the terminator), `ping`, and an in-band `error`.
//! Tool-use blocks get OpenAI tool-call indices in order of appearance, so streamed
//! arguments keep a stable index and id however blocks interleave.

use serde::Deserialize;

use super::response::{WireUsage, finish_reason};
use crate::{
    chat::{ChatChunk, ChunkChoice, Delta, Extra, FunctionCallDelta, Role, ToolCallDelta},
    providers::{
        ProviderError, limits,
        sse::{SseEvent, StreamTranslator},
        upstream,
    },
};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
    /// `ping`, `content_block_stop` and event types newer than this code.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    id: String,
    model: String,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The translation state of one Anthropic stream.
#[derive(Debug, Default)]
pub struct AnthropicStream {
    id: String,
    model: String,
    created: i64,
    /// `(content block index, tool-call index)` for each tool-use block seen.
    tool_blocks: Vec<(u32, u32)>,
    usage: WireUsage,
    stopped: bool,
    ended: bool,
    /// Passing through: every event's own bytes ride on a chunk ([`ChatChunk::native`]),
    /// an empty one for events that translate to nothing.
    native: bool,
}

impl AnthropicStream {
    /// The translation of a stream whose request was passed through (`true`): each event
    /// also carries its own bytes for the caller.
    pub fn passing_through(native: bool) -> Self {
        AnthropicStream {
            native,
            ..AnthropicStream::default()
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

    fn text(&self, text: String) -> ChatChunk {
        self.chunk(
            Delta {
                content: Some(text),
                ..Delta::default()
            },
            None,
        )
    }

    fn tool_delta(&self, call: ToolCallDelta) -> ChatChunk {
        self.chunk(
            Delta {
                tool_calls: Some(vec![call]),
                ..Delta::default()
            },
            None,
        )
    }

    fn translate(&mut self, event: Event) -> Result<Option<ChatChunk>, ProviderError> {
        Ok(match event {
            Event::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.created = crate::providers::unix_now();
                self.usage.update(&message.usage);
                Some(self.chunk(
                    Delta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        ..Delta::default()
                    },
                    None,
                ))
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                StartBlock::Text { text } if !text.is_empty() => Some(self.text(text)),
                StartBlock::ToolUse { id, name } => {
                    let index = limits::index("content block index", index)?;
                    let tool = limits::room_for("tool call index", self.tool_blocks.len())?;
                    self.tool_blocks.push((index, tool));
                    Some(self.tool_delta(ToolCallDelta {
                        index: tool,
                        id: Some(id),
                        kind: Some("function".into()),
                        function: Some(FunctionCallDelta {
                            name: Some(name),
                            arguments: Some(String::new()),
                        }),
                    }))
                }
                _ => None,
            },
            Event::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => Some(self.text(text)),
                BlockDelta::InputJsonDelta { partial_json } if partial_json.is_empty() => None,
                BlockDelta::InputJsonDelta { partial_json } => {
                    let tool = self
                        .tool_blocks
                        .iter()
                        .find(|(block, _)| *block == index)
                        .map(|(_, tool)| *tool)
                        .ok_or_else(|| {
                            ProviderError::Malformed(format!(
                                "input_json_delta for block {index}, which is not a tool_use block"
                            ))
                        })?;
                    Some(self.tool_delta(ToolCallDelta {
                        index: tool,
                        id: None,
                        kind: None,
                        function: Some(FunctionCallDelta {
                            name: None,
                            arguments: Some(partial_json),
                        }),
                    }))
                }
                BlockDelta::ThinkingDelta { thinking } => {
                    let mut extra = Extra::new();
                    extra.insert("reasoning_content".into(), thinking.into());
                    Some(self.chunk(
                        Delta {
                            extra,
                            ..Delta::default()
                        },
                        None,
                    ))
                }
                _ => None,
            },
            Event::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage.update(&u);
                }
                delta
                    .stop_reason
                    .map(|r| self.chunk(Delta::default(), Some(finish_reason(&r))))
            }
            Event::MessageStop => {
                self.stopped = true;
                self.ended = true;
                let mut last = self.chunk(Delta::default(), None);
                last.choices.clear();
                last.usage = Some(self.usage.to_usage());
                Some(last)
            }
            Event::Error { error } => {
                return Err(ProviderError::InStream {
                    message: error
                        .message
                        .unwrap_or_else(|| "the provider reported an error".into()),
                    kind: error.kind,
                    code: None,
                });
            }
            Event::Other => None,
        })
    }
}

impl StreamTranslator for AnthropicStream {
    fn on_event(&mut self, event: SseEvent) -> Vec<Result<ChatChunk, ProviderError>> {
        let parsed = upstream::decode::<Event>(event.data.as_bytes());
        match parsed.and_then(|ev| self.translate(ev)) {
            Ok(chunk) if self.native => {
                let mut chunk = chunk.unwrap_or_else(|| {
                    let mut empty = self.chunk(Delta::default(), None);
                    empty.choices.clear();
                    empty
                });
                chunk.native = Some(super::native::frame(event.event.as_deref(), &event.data));
                vec![Ok(chunk)]
            }
            Ok(chunk) => chunk.map(Ok).into_iter().collect(),
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
        if self.stopped {
            Ok(Vec::new())
        } else {
            Err(ProviderError::Reset(
                "the stream ended without message_stop".into(),
            ))
        }
    }
}
