//! Server-sent events decoding: bytes in, complete events out, state kept between reads.

use bytes::{Buf, BytesMut};

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
