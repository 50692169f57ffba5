//! Server-sent events: an incremental decoder, and the few lines that turn a provider's
//! event stream into a [`ChunkStream`] through that provider's [`StreamTranslator`].

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};

use super::{
    ChunkStream, DEFAULT_MAX_RESPONSE_BYTES, ProviderError, limits, upstream::transport_error,
};
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

/// Drives `translator` over an SSE body in which no event may be longer than
/// `max_event_bytes`.
pub fn translate<S, T>(bytes: S, translator: T, max_event_bytes: usize) -> ChunkStream
where
    S: futures_util::Stream<Item = Result<Bytes, crate::providers::client::Error>> + Send + 'static,
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
        sse: SseDecoder::new(max_event_bytes),
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
                        match event {
                            Ok(event) => st.pending.extend(st.translator.on_event(event)),
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
///
/// What it holds between reads — the unfinished line and the event being built — never
/// exceeds `max_event_bytes`: a provider that goes past it gets an error, not a buffer.
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    /// How far `buf` is known to hold no line terminator, so a long line arriving in many
    /// small reads is scanned once, not once per read.
    scanned: usize,
    event: Option<String>,
    data: Option<String>,
    max_event_bytes: usize,
    failed: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::new(DEFAULT_MAX_RESPONSE_BYTES)
    }
}

impl SseDecoder {
    /// A decoder for events of at most `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        SseDecoder {
            buf: BytesMut::new(),
            scanned: 0,
            event: None,
            data: None,
            max_event_bytes,
            failed: false,
        }
    }

    /// Feeds bytes; returns the events they complete. An event past the size limit is an
    /// error, the last item; every later push returns it again.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<SseEvent, ProviderError>> {
        if self.failed {
            return vec![Err(self.too_large())];
        }
        let mut out = Vec::new();
        let mut rest = bytes;
        // Take the input a limit's worth at a time, so one huge read never sits in the
        // buffer whole.
        while !rest.is_empty() {
            let take = rest.len().min(self.max_event_bytes.max(1));
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            while let Some((line_end, next)) = find_line_end(&self.buf, self.scanned) {
                let line = self.buf.split_to(next);
                self.scanned = 0;
                match self.on_line(&line[..line_end]) {
                    Ok(Some(ev)) => out.push(Ok(ev)),
                    Ok(None) => {}
                    Err(e) => return self.fail(out, e),
                }
            }
            // A lone CR at the end may still become a CRLF: look at it again.
            self.scanned = self.buf.len().saturating_sub(1);
            if self.buffered() > self.max_event_bytes {
                let e = self.too_large();
                return self.fail(out, e);
            }
        }
        out
    }

    /// Bytes received that do not yet form a complete line, or a started event.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.data.is_some()
    }

    /// The bytes held between reads: the unfinished line and the event being built.
    pub fn buffered(&self) -> usize {
        self.buf.len()
            + self.data.as_ref().map_or(0, String::len)
            + self.event.as_ref().map_or(0, String::len)
    }

    fn too_large(&self) -> ProviderError {
        limits::too_large("a stream event", self.max_event_bytes)
    }

    fn fail(
        &mut self,
        mut out: Vec<Result<SseEvent, ProviderError>>,
        e: ProviderError,
    ) -> Vec<Result<SseEvent, ProviderError>> {
        self.failed = true;
        self.buf = BytesMut::new();
        self.scanned = 0;
        self.data = None;
        self.event = None;
        out.push(Err(e));
        out
    }

    fn on_line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, ProviderError> {
        if line.is_empty() {
            // An event without data is dropped, its type with it (WHATWG: "If the data
            // buffer is an empty string, set ... the event type buffer to the empty string").
            let event = self.event.take();
            return Ok(self.data.take().map(|data| SseEvent { event, data }));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        if line.len() > self.max_event_bytes {
            return Err(self.too_large());
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
            "data" => {
                // Measured after the lossy conversion: an invalid byte becomes a
                // three-byte U+FFFD, so a line within the limit can still outgrow it.
                let len = self
                    .data
                    .as_ref()
                    .map_or(value.len(), |d| d.len() + 1 + value.len());
                if len > self.max_event_bytes {
                    return Err(self.too_large());
                }
                match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                }
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        Ok(None)
    }
}

/// Finds the end of the first line, looking from `from` on (the bytes before it hold no
/// terminator): (index of the terminator, index after it).
fn find_line_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let i = from + buf[from..].iter().position(|&b| b == b'\n' || b == b'\r')?;
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
