//! A stream as Anthropic's server-sent events, as a struct with explicit state
//! ([`EventEncoder`]) and the few lines that drive it over the pipeline's steps.
//!
//! Two ways a stream is written (Messages API reference, "Streaming messages"):
//! - passed through: the deployment speaks Messages, and every chunk carries the
//!   provider's own event (`native`), which goes out as it came, `message_start`, `ping`,
//!   `signature_delta` and all;
//! - translated: `message_start` (the gateway's `msg_` id, input usage not yet known),
//!   `ping`, then per block `content_block_start` / `content_block_delta` (`text_delta`,
//!   `thinking_delta`, `input_json_delta`) / `content_block_stop`, then `message_delta`
//!   (stop reason and the usage, input tokens included) and `message_stop`.
//!
//! Which one is decided by the first chunk that says anything: the pipeline sends its
//! role chunk as soon as a deployment's stream opens, before failover has settled on the
//! deployment that serves, so that chunk is held. A failure after the headers went out
//! is an `error` event in Anthropic's shape. A silence longer than
//! `server.stream_keepalive_ms` is filled with `ping` events, as Anthropic's own streams
//! do.

use std::time::Duration;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::value::RawValue;

use super::{
    encode::{OutBlock, REASONING, WireUsage, message_id, stop_reason, tool_input, tool_use_id},
    errors::AnthropicError,
};
use crate::{
    chat::{ChatChunk, Usage},
    error::Error,
    pipeline::{Delivered, Trailer},
};

const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing said yet (at most the pipeline's role chunk).
    Pending,
    /// The provider's own events go out.
    Native,
    /// Events are written from the canonical chunks.
    Translated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    Tool,
}

/// The state of one stream's encoding.
#[derive(Debug)]
pub struct EventEncoder {
    mode: Mode,
    id: String,
    model: String,
    /// The block open now: its index and kind.
    open: Option<(u32, BlockKind)>,
    next_block: u32,
    /// `(tool-call index, block index)` of each tool call seen.
    tools: Vec<(u32, u32)>,
    stop_reason: Option<&'static str>,
    usage: Option<Usage>,
}

impl Default for EventEncoder {
    fn default() -> Self {
        EventEncoder::new()
    }
}

impl EventEncoder {
    pub fn new() -> EventEncoder {
        EventEncoder {
            mode: Mode::Pending,
            id: String::new(),
            model: String::new(),
            open: None,
            next_block: 0,
            tools: Vec::new(),
            stop_reason: None,
            usage: None,
        }
    }

    /// The events one chunk means (empty for the held role chunk).
    pub fn on_chunk(&mut self, chunk: ChatChunk, out: &mut BytesMut) {
        if let Some(native) = &chunk.native
            && self.mode != Mode::Translated
        {
            self.mode = Mode::Native;
            out.extend_from_slice(native);
            return;
        }
        if self.mode == Mode::Native {
            // A chunk of the gateway's own in a passed-through stream carries nothing the
            // provider's events did not already say.
            return;
        }
        if self.mode == Mode::Pending {
            if self.id.is_empty() {
                self.id = message_id(&chunk.id);
            }
            if self.model.is_empty() {
                self.model.clone_from(&chunk.model);
            }
            if !chunk.has_content() && chunk.usage.is_none() {
                return;
            }
            self.start(out);
        }
        self.translate(chunk, out);
    }

    /// The stream ended cleanly: the open block closed, `message_delta`, `message_stop`.
    pub fn on_done(&mut self, out: &mut BytesMut) {
        match self.mode {
            Mode::Native => {}
            Mode::Pending => {
                self.start(out);
                self.finish(out);
            }
            Mode::Translated => self.finish(out),
        }
    }

    /// The stream broke: Anthropic's in-band `error` event.
    pub fn on_error(&mut self, error: &Error, request_id: &str, out: &mut BytesMut) {
        let shown = AnthropicError::of(error, request_id);
        let body = shown.body(request_id);
        event(out, "error", &RawJson(&body));
    }

    fn start(&mut self, out: &mut BytesMut) {
        self.mode = Mode::Translated;
        if self.id.is_empty() {
            self.id = message_id("");
        }
        #[derive(Serialize)]
        struct Start<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            message: StartMessage<'a>,
        }
        #[derive(Serialize)]
        struct StartMessage<'a> {
            id: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            role: &'static str,
            model: &'a str,
            content: [(); 0],
            stop_reason: Option<()>,
            stop_sequence: Option<()>,
            usage: WireUsage,
        }
        event(
            out,
            "message_start",
            &Start {
                kind: "message_start",
                message: StartMessage {
                    id: &self.id,
                    kind: "message",
                    role: "assistant",
                    model: &self.model,
                    content: [],
                    stop_reason: None,
                    stop_sequence: None,
                    usage: WireUsage::default(),
                },
            },
        );
        out.extend_from_slice(PING);
    }

    fn translate(&mut self, chunk: ChatChunk, out: &mut BytesMut) {
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        // Messages has one answer: the first choice is it.
        let Some(choice) = chunk.choices.into_iter().find(|c| c.index == 0) else {
            return;
        };
        let delta = choice.delta;
        if let Some(reasoning) = delta
            .extra
            .get(REASONING)
            .and_then(serde_json::Value::as_str)
            .filter(|r| !r.is_empty())
        {
            let index = self.block(BlockKind::Thinking, out);
            block_delta(
                out,
                index,
                &Delta::Thinking {
                    thinking: reasoning,
                },
            );
        }
        for text in [delta.content.as_deref(), delta.refusal.as_deref()]
            .into_iter()
            .flatten()
            .filter(|t| !t.is_empty())
        {
            let index = self.block(BlockKind::Text, out);
            block_delta(out, index, &Delta::Text { text });
        }
        for call in delta.tool_calls.into_iter().flatten() {
            let block = match self.tools.iter().find(|(t, _)| *t == call.index) {
                Some((_, b)) => *b,
                None => {
                    self.close(out);
                    let index = self.next_block;
                    self.next_block += 1;
                    self.tools.push((call.index, index));
                    let function = call.function.as_ref();
                    let id = call.id.as_deref().map_or_else(
                        || std::borrow::Cow::Owned(format!("toolu_{}_{}", self.id, call.index)),
                        tool_use_id,
                    );
                    block_start(
                        out,
                        index,
                        &OutBlock::ToolUse {
                            id,
                            name: function.and_then(|f| f.name.as_deref()).unwrap_or(""),
                            input: tool_input(""),
                        },
                    );
                    self.open = Some((index, BlockKind::Tool));
                    index
                }
            };
            if let Some(args) = call
                .function
                .and_then(|f| f.arguments)
                .filter(|a| !a.is_empty())
            {
                block_delta(
                    out,
                    block,
                    &Delta::InputJson {
                        partial_json: &args,
                    },
                );
            }
        }
        if let Some(reason) = choice.finish_reason.as_deref() {
            self.stop_reason = Some(stop_reason(Some(reason)));
        }
    }

    /// The index of an open block of `kind`, starting one (and closing the one before)
    /// when needed.
    fn block(&mut self, kind: BlockKind, out: &mut BytesMut) -> u32 {
        if let Some((index, open)) = self.open
            && open == kind
        {
            return index;
        }
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        let start = match kind {
            BlockKind::Thinking => OutBlock::Thinking {
                thinking: "",
                signature: "",
            },
            _ => OutBlock::Text { text: "" },
        };
        block_start(out, index, &start);
        self.open = Some((index, kind));
        index
    }

    fn close(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            #[derive(Serialize)]
            struct Stop {
                #[serde(rename = "type")]
                kind: &'static str,
                index: u32,
            }
            event(
                out,
                "content_block_stop",
                &Stop {
                    kind: "content_block_stop",
                    index,
                },
            );
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.close(out);
        #[derive(Serialize)]
        struct MessageDelta {
            #[serde(rename = "type")]
            kind: &'static str,
            delta: StopBody,
            usage: WireUsage,
        }
        #[derive(Serialize)]
        struct StopBody {
            stop_reason: &'static str,
            stop_sequence: Option<()>,
        }
        let usage = self.usage.as_ref().map(WireUsage::of).unwrap_or_default();
        event(
            out,
            "message_delta",
            &MessageDelta {
                kind: "message_delta",
                delta: StopBody {
                    stop_reason: self.stop_reason.unwrap_or("end_turn"),
                    stop_sequence: None,
                },
                usage,
            },
        );
        out.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    }
}

/// A `content_block_delta`'s `delta`.
#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

fn block_start(out: &mut BytesMut, index: u32, block: &OutBlock<'_>) {
    #[derive(Serialize)]
    struct Start<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        index: u32,
        content_block: &'a OutBlock<'a>,
    }
    event(
        out,
        "content_block_start",
        &Start {
            kind: "content_block_start",
            index,
            content_block: block,
        },
    );
}

fn block_delta(out: &mut BytesMut, index: u32, delta: &Delta<'_>) {
    #[derive(Serialize)]
    struct BlockDelta<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        index: u32,
        delta: &'a Delta<'a>,
    }
    event(
        out,
        "content_block_delta",
        &BlockDelta {
            kind: "content_block_delta",
            index,
            delta,
        },
    );
}

/// Bytes that are already JSON, written as they are.
struct RawJson<'a>(&'a [u8]);

impl Serialize for RawJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(self.0).map_err(serde::ser::Error::custom)?;
        let raw: &RawValue = serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// One `event:`/`data:` event. The values written here are plain data (strings, numbers,
/// raw JSON the gateway made), so serializing cannot fail; if it did, nothing half-written
/// is left in `out`.
fn event<T: Serialize>(out: &mut BytesMut, name: &str, data: &T) {
    let start = out.len();
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let mut writer = std::mem::take(out).writer();
    let written = serde_json::to_writer(&mut writer, data);
    *out = writer.into_inner();
    match written {
        Ok(()) => out.extend_from_slice(b"\n\n"),
        Err(e) => {
            tracing::error!(%e, event = name, "a stream event could not be serialized");
            out.truncate(start);
        }
    }
}

/// The SSE comments saying who served and every attempt, before the last event (clients
/// ignore comments; a person reading the raw stream sees how it ended).
fn trailer(trailer: &Trailer, out: &mut BytesMut) {
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    if let Some(p) = &trailer.provider {
        out.extend_from_slice(b": x-switchyard-provider: ");
        out.extend_from_slice(clean(p).as_bytes());
        out.extend_from_slice(b"\n");
    }
    if !trailer.attempts.is_empty() {
        out.extend_from_slice(b": x-switchyard-attempts: ");
        out.extend_from_slice(clean(&trailer.attempts).as_bytes());
        out.extend_from_slice(b"\n");
    }
    if trailer.provider.is_some() || !trailer.attempts.is_empty() {
        out.extend_from_slice(b"\n");
    }
}

/// The response body for a stream; `keep_alive`: the silence after which a `ping` is
/// sent.
pub fn body(
    chunks: impl Stream<Item = Delivered> + Send + 'static,
    request_id: String,
    keep_alive: Option<Duration>,
) -> Body {
    let mut encoder = EventEncoder::new();
    let events = with_keep_alive(chunks, keep_alive).map(move |step| {
        let mut out = BytesMut::new();
        match step {
            None => out.extend_from_slice(PING),
            Some(Delivered::Chunk(chunk)) => encoder.on_chunk(chunk, &mut out),
            Some(Delivered::Done(t)) => {
                trailer(&t, &mut out);
                encoder.on_done(&mut out);
            }
            Some(Delivered::Broken(error, t)) => {
                trailer(&t, &mut out);
                encoder.on_error(&error, &request_id, &mut out);
            }
        }
        Ok::<_, std::io::Error>(out.freeze())
    });
    // The held role chunk makes an empty piece: not worth a write.
    Body::from_stream(
        events.filter(|piece| {
            std::future::ready(piece.as_ref().map_or(true, |b: &Bytes| !b.is_empty()))
        }),
    )
}

/// The steps of `chunks`, with a `None` after every `every` of silence.
fn with_keep_alive(
    chunks: impl Stream<Item = Delivered> + Send + 'static,
    every: Option<Duration>,
) -> impl Stream<Item = Option<Delivered>> + Send {
    let chunks = Box::pin(chunks);
    futures_util::stream::unfold(chunks, move |mut chunks| async move {
        let next = match every {
            Some(every) => match tokio::time::timeout(every, chunks.next()).await {
                Ok(next) => next.map(Some),
                Err(_) => Some(None),
            },
            None => chunks.next().await.map(Some),
        };
        next.map(|step| (step, chunks))
    })
}

#[cfg(test)]
mod tests;
