//! ConverseStream frames -> canonical chunks, as a struct with explicit state, and the few
//! lines that drive it over an event-stream body.
//!
//! Frames (Bedrock API reference, ConverseStream and ConverseStreamOutput): `:message-type`
//! `event` with `:event-type` `messageStart`, `contentBlockStart` (a `toolUse` start with
//! its id and name), `contentBlockDelta` (`text`, `toolUse.input` as a fragment of JSON
//! text, `reasoningContent`), `contentBlockStop`, `messageStop` (`stopReason`) and
//! `metadata` (usage), which ends the stream; `exception` frames (`:exception-type`,
//! payload `{"message"}`) are in-band errors. A stream that ends before `messageStop` and
//! `metadata` was cut. Tool-use blocks get OpenAI tool-call indices in order of
//! appearance, so streamed arguments keep a stable index and id.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde::Deserialize;

use super::{
    eventstream::{Frame, FrameDecoder},
    response::{WireUsage, finish_reason},
};
use crate::{
    chat::{ChatChunk, ChunkChoice, Delta, Extra, FunctionCallDelta, Role, ToolCallDelta},
    providers::{ChunkStream, ProviderError, limits, truncate, upstream::transport_error},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    content_block_index: u32,
    start: StartBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody {
    tool_use: Option<ToolUseStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart {
    tool_use_id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    content_block_index: u32,
    delta: DeltaBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaBody {
    text: Option<String>,
    tool_use: Option<ToolUseDelta>,
    reasoning_content: Option<ReasoningDelta>,
}

#[derive(Deserialize)]
struct ToolUseDelta {
    input: String,
}

#[derive(Deserialize)]
struct ReasoningDelta {
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    stop_reason: String,
}

#[derive(Deserialize)]
struct Metadata {
    usage: WireUsage,
}

#[derive(Deserialize)]
struct Exception {
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// The translation state of one ConverseStream answer.
#[derive(Debug)]
pub struct BedrockStream {
    id: String,
    model: String,
    created: i64,
    /// `(content block index, tool-call index)` for each tool-use block seen.
    tool_blocks: Vec<(u32, u32)>,
    stopped: bool,
    ended: bool,
}

impl BedrockStream {
    /// A translator for an answer from `model`, whose chunks carry `id`.
    pub fn new(model: &str, id: &str) -> Self {
        BedrockStream {
            id: id.to_owned(),
            model: model.to_owned(),
            created: crate::providers::unix_now(),
            tool_blocks: Vec::new(),
            stopped: false,
            ended: false,
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

    fn tool_delta(&self, call: ToolCallDelta) -> ChatChunk {
        self.chunk(
            Delta {
                tool_calls: Some(vec![call]),
                ..Delta::default()
            },
            None,
        )
    }

    /// Translates one frame. An error is the last item and ends the stream.
    pub fn on_frame(&mut self, frame: &Frame) -> Vec<Result<ChatChunk, ProviderError>> {
        match self.translate(frame) {
            Ok(chunk) => chunk.map(Ok).into_iter().collect(),
            Err(e) => {
                self.ended = true;
                vec![Err(e)]
            }
        }
    }

    /// Whether the stream is over (`metadata` arrived, or an error ended it).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Called when the body ends: an error unless the stream was complete.
    pub fn on_eof(&mut self) -> Result<(), ProviderError> {
        if self.ended {
            Ok(())
        } else if self.stopped {
            Err(ProviderError::Reset(
                "the stream ended after messageStop without metadata".into(),
            ))
        } else {
            Err(ProviderError::Reset(
                "the stream ended without messageStop".into(),
            ))
        }
    }

    fn translate(&mut self, frame: &Frame) -> Result<Option<ChatChunk>, ProviderError> {
        match frame.header(":message-type") {
            Some("event") => {}
            Some("exception") => {
                let message = parse::<Exception>(frame)
                    .ok()
                    .and_then(|e| e.message)
                    .unwrap_or_else(|| "the provider reported an error".into());
                return Err(ProviderError::InStream {
                    message,
                    kind: None,
                    code: frame.header(":exception-type").map(str::to_owned),
                });
            }
            Some("error") => {
                return Err(ProviderError::InStream {
                    message: frame
                        .header(":error-message")
                        .unwrap_or("the provider reported an error")
                        .to_owned(),
                    kind: None,
                    code: frame.header(":error-code").map(str::to_owned),
                });
            }
            other => {
                return Err(ProviderError::Malformed(format!(
                    "event stream: unknown :message-type {other:?}"
                )));
            }
        }
        Ok(match frame.header(":event-type").unwrap_or("") {
            "messageStart" => Some(self.chunk(
                Delta {
                    role: Some(Role::Assistant),
                    content: Some(String::new()),
                    ..Delta::default()
                },
                None,
            )),
            "contentBlockStart" => {
                let start: BlockStart = parse(frame)?;
                let block = limits::index("contentBlockIndex", start.content_block_index)?;
                match start.start.tool_use {
                    None => None,
                    Some(tool) => {
                        let index = limits::room_for("tool call index", self.tool_blocks.len())?;
                        self.tool_blocks.push((block, index));
                        Some(self.tool_delta(ToolCallDelta {
                            index,
                            id: Some(tool.tool_use_id),
                            kind: Some("function".into()),
                            function: Some(FunctionCallDelta {
                                name: Some(tool.name),
                                arguments: Some(String::new()),
                            }),
                        }))
                    }
                }
            }
            "contentBlockDelta" => self.delta(parse(frame)?)?,
            "messageStop" => {
                let stop: MessageStop = parse(frame)?;
                self.stopped = true;
                Some(self.chunk(Delta::default(), Some(finish_reason(&stop.stop_reason))))
            }
            "metadata" => {
                let meta: Metadata = parse(frame)?;
                if !self.stopped {
                    return Err(ProviderError::Malformed(
                        "event stream: metadata before messageStop".into(),
                    ));
                }
                self.ended = true;
                let mut last = self.chunk(Delta::default(), None);
                last.choices.clear();
                last.usage = Some(meta.usage.to_usage());
                Some(last)
            }
            // contentBlockStop and event types newer than this code.
            _ => None,
        })
    }

    fn delta(&mut self, d: BlockDelta) -> Result<Option<ChatChunk>, ProviderError> {
        let index = d.content_block_index;
        let body = d.delta;
        if let Some(text) = body.text {
            return Ok(Some(self.chunk(
                Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                None,
            )));
        }
        if let Some(tool) = body.tool_use {
            if tool.input.is_empty() {
                return Ok(None);
            }
            let call = self
                .tool_blocks
                .iter()
                .find(|(block, _)| *block == index)
                .map(|(_, call)| *call)
                .ok_or_else(|| {
                    ProviderError::Malformed(format!(
                        "toolUse delta for block {index}, which did not start as a toolUse"
                    ))
                })?;
            return Ok(Some(self.tool_delta(ToolCallDelta {
                index: call,
                id: None,
                kind: None,
                function: Some(FunctionCallDelta {
                    name: None,
                    arguments: Some(tool.input),
                }),
            })));
        }
        if let Some(text) = body.reasoning_content.and_then(|r| r.text) {
            let mut extra = Extra::new();
            extra.insert("reasoning_content".into(), text.into());
            return Ok(Some(self.chunk(
                Delta {
                    extra,
                    ..Delta::default()
                },
                None,
            )));
        }
        Ok(None)
    }
}

fn parse<T: serde::de::DeserializeOwned>(frame: &Frame) -> Result<T, ProviderError> {
    serde_json::from_slice(&frame.payload).map_err(|e| {
        ProviderError::Malformed(format!(
            "{} event: {e} in {}",
            frame.header(":event-type").unwrap_or("stream"),
            truncate(&String::from_utf8_lossy(&frame.payload), 200)
        ))
    })
}

/// Drives `translator` over an event-stream body: the event-stream counterpart of
/// [`crate::providers::sse::translate`]. No frame may be longer than `max_frame` bytes.
pub fn translate<S>(bytes: S, translator: BedrockStream, max_frame: usize) -> ChunkStream
where
    S: futures_util::Stream<Item = Result<Bytes, crate::providers::client::Error>> + Send + 'static,
{
    struct State<S> {
        bytes: std::pin::Pin<Box<S>>,
        frames: FrameDecoder,
        translator: BedrockStream,
        pending: VecDeque<Result<ChatChunk, ProviderError>>,
        finished: bool,
    }
    let state = State {
        bytes: Box::pin(bytes),
        frames: FrameDecoder::new(max_frame),
        translator,
        pending: VecDeque::new(),
        finished: false,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.finished || st.translator.is_ended() {
                return None;
            }
            match st.bytes.next().await {
                Some(Ok(b)) => {
                    for frame in st.frames.push(&b) {
                        if st.translator.is_ended() {
                            break;
                        }
                        match frame {
                            Ok(frame) => st.pending.extend(st.translator.on_frame(&frame)),
                            Err(e) => {
                                st.finished = true;
                                st.pending.push_back(Err(e));
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    st.finished = true;
                    return Some((Err(transport_error(e)), st));
                }
                None => {
                    st.finished = true;
                    if let Err(e) = st.translator.on_eof() {
                        return Some((Err(e), st));
                    }
                }
            }
        }
    }))
}
