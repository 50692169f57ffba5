//! Server-sent events: an incremental decoder, and the few lines that turn a provider's
//! event stream into a [`ChunkStream`] through that provider's [`StreamTranslator`].

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{StreamExt, stream};

use super::{ChunkStream, ProviderError, upstream::transport_error};
use crate::chat::ChatChunk;

/// A provider's stream translation: one SSE event in, the chunks it means out, with the
/// state between events kept explicitly in `self`.
pub trait StreamTranslator: Send + 'static {
    /// Translates one event. An error is the last item: anything before it in the same
    /// event still counts.
    fn on_event(&mut self, event: SseEvent) -> Vec<Result<ChatChunk, ProviderError>>;

    /// Whether the stream is over (its terminator arrived, or an error ended it).
    fn is_ended(&self) -> bool;

    /// Called when the body ends: the chunks the end completes (formats without a
    /// terminator finish here), or an error when the stream was cut.
    fn on_eof(&mut self) -> Result<Vec<ChatChunk>, ProviderError>;
}

/// Drives `translator` over an SSE body.
pub fn translate<S, T>(bytes: S, translator: T) -> ChunkStream
where
    S: futures_util::Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    T: StreamTranslator,
{
    struct State<S, T> {
        bytes: std::pin::Pin<Box<S>>,
        sse: SseDecoder,
        translator: T,
        pending: VecDeque<Result<ChatChunk, ProviderError>>,
        finished: bool,
    }
    let state = State {
        bytes: Box::pin(bytes),
        sse: SseDecoder::default(),
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
                    for event in st.sse.push(&b) {
                        if st.translator.is_ended() {
                            break;
                        }
                        st.pending.extend(st.translator.on_event(event));
                    }
                }
                Some(Err(e)) => {
                    st.finished = true;
                    return Some((Err(transport_error(e)), st));
                }
                None => {
                    st.finished = true;
                    match st.translator.on_eof() {
                        Ok(chunks) => st.pending.extend(chunks.into_iter().map(Ok)),
                        Err(e) => return Some((Err(e), st)),
                    }
                }
            }
        }
    }))
}

/// One complete event. Only `event` and `data` matter to the providers we speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// An incremental SSE parser (per the WHATWG event-stream format: lines end in LF, CRLF or
/// CR; a blank line ends an event; `data` lines are joined with LF; `:` lines are comments).
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    event: Option<String>,
    data: Option<String>,
}

impl SseDecoder {
    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some((line_end, next)) = find_line_end(&self.buf) {
            let line = self.buf[..line_end].to_vec();
            self.buf.advance(next);
            if let Some(ev) = self.on_line(&line) {
                out.push(ev);
            }
        }
        out
    }

    /// Bytes received that do not yet form a complete line, or a started event.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.data.is_some()
    }

    fn on_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take()?;
            return Some(SseEvent {
                event: self.event.take(),
                data,
            });
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

/// Finds the end of the first line: (index of the terminator, index after it).
fn find_line_end(buf: &[u8]) -> Option<(usize, usize)> {
    let i = buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
    if buf[i] == b'\r' {
        // A CR at the very end may be the first half of a CRLF: wait for more.
        match buf.get(i + 1) {
            Some(b'\n') => Some((i, i + 2)),
            Some(_) => Some((i, i + 1)),
            None => None,
        }
    } else {
        Some((i, i + 1))
    }
}

#[cfg(test)]
mod tests;
