//! AWS event-stream framing (`application/vnd.amazon.eventstream`), the binary stream
//! ConverseStream answers with: an incremental decoder fed arbitrary byte splits, and
//! the encoder the simulated provider uses.
//!
//! A frame (AWS "Event stream encoding"): a 12-byte prelude of total length (u32 BE),
//! headers length (u32 BE) and the CRC32 of those 8 bytes; the headers, each a name length
//! (u8), name, value type (u8) and value (type 7, a string, is a u16 BE length and UTF-8);
//! the payload; and a CRC32 of everything before it. A frame whose checksum or lengths do
//! not add up is malformed, and so is everything after it.

use bytes::{Buf, Bytes, BytesMut};

use crate::providers::ProviderError;

const PRELUDE: usize = 12;
const CHECKSUM: usize = 4;
/// The largest frame accepted: the format's limit is 16 MiB of payload plus 128 KiB of
/// headers; anything near it from Bedrock is a broken stream, not an answer.
pub const MAX_FRAME: usize = 16 * 1024 * 1024 + 128 * 1024 + PRELUDE + CHECKSUM;

/// The header value type for strings.
const STRING: u8 = 7;

/// One decoded frame: its string headers (other header types are skipped) and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl Frame {
    /// A string header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where the decoder is: waiting for a prelude, for the rest of a frame whose prelude was
/// checked, or stopped by a framing error.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Prelude,
    Body {
        total: usize,
        headers: usize,
    },
    Failed,
}

/// An incremental event-stream decoder. It holds at most one frame between reads, and no
/// frame longer than its limit.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    state: State,
    max_frame: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(MAX_FRAME)
    }
}

fn malformed(what: String) -> ProviderError {
    ProviderError::Malformed(format!("event stream: {what}"))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame` bytes (or than [`MAX_FRAME`]).
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            state: State::Prelude,
            max_frame: max_frame.min(MAX_FRAME),
        }
    }

    /// Feeds bytes; returns the frames they complete, in order. A framing error is the last
    /// item, and every later push returns it again.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<Frame, ProviderError>> {
        if self.state == State::Failed {
            return vec![Err(malformed("data after a framing error".into()))];
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let step = match self.state {
                State::Prelude if self.buf.len() >= PRELUDE => self.prelude().map(|()| None),
                State::Body { total, headers } if self.buf.len() >= total => {
                    self.state = State::Prelude;
                    let frame = self.buf.split_to(total).freeze();
                    decode_frame(frame, headers).map(Some)
                }
                _ => break,
            };
            match step {
                Ok(Some(frame)) => out.push(Ok(frame)),
                Ok(None) => {}
                Err(e) => {
                    self.state = State::Failed;
                    self.buf.clear();
                    out.push(Err(e));
                    break;
                }
            }
        }
        out
    }

    /// Bytes received that do not yet form a whole frame.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The bytes held between reads: the part of the next frame received so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Checks the prelude at the front of the buffer and moves to [`State::Body`].
    fn prelude(&mut self) -> Result<(), ProviderError> {
        let b = &self.buf[..PRELUDE];
        let (total, headers, crc) = (be32(b), be32(&b[4..]), be32(&b[8..]));
        if crc32fast::hash(&b[..8]) != crc {
            return Err(malformed("prelude checksum mismatch".into()));
        }
        let (total, headers) = (total as usize, headers as usize);
        if total > self.max_frame {
            return Err(malformed(format!(
                "a frame of {total} bytes is larger than the provider's max_response_bytes \
                 ({} bytes)",
                self.max_frame
            )));
        }
        if total < PRELUDE + CHECKSUM || headers > total - PRELUDE - CHECKSUM {
            return Err(malformed(format!(
                "impossible lengths (frame {total}, headers {headers})"
            )));
        }
        self.state = State::Body { total, headers };
        Ok(())
    }
}

/// Checks a whole frame's checksum and reads its headers and payload.
fn decode_frame(frame: Bytes, headers_len: usize) -> Result<Frame, ProviderError> {
    let end = frame.len() - CHECKSUM;
    if crc32fast::hash(&frame[..end]) != be32(&frame[end..]) {
        return Err(malformed("message checksum mismatch".into()));
    }
    let headers = decode_headers(&frame[PRELUDE..PRELUDE + headers_len])?;
    Ok(Frame {
        headers,
        payload: frame.slice(PRELUDE + headers_len..end),
    })
}

fn decode_headers(mut b: &[u8]) -> Result<Vec<(String, String)>, ProviderError> {
    let short = || malformed("a header runs past its section".into());
    let mut out = Vec::new();
    while b.has_remaining() {
        let name_len = usize::from(b.get_u8());
        if b.remaining() < name_len + 1 {
            return Err(short());
        }
        let name = String::from_utf8_lossy(&b[..name_len]).into_owned();
        b.advance(name_len);
        let kind = b.get_u8();
        // Fixed sizes by type: bool true/false, byte, short, int, long, timestamp, uuid.
        let fixed = match kind {
            0 | 1 => Some(0),
            2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 | 8 => Some(8),
            9 => Some(16),
            6 | STRING => None,
            other => {
                return Err(malformed(format!(
                    "header `{name}` has unknown type {other}"
                )));
            }
        };
        let len = match fixed {
            Some(n) => n,
            None if b.remaining() >= 2 => usize::from(b.get_u16()),
            None => return Err(short()),
        };
        if b.remaining() < len {
            return Err(short());
        }
        if kind == STRING {
            let value = std::str::from_utf8(&b[..len])
                .map_err(|_| malformed(format!("header `{name}` is not UTF-8")))?;
            out.push((name, value.to_owned()));
        }
        b.advance(len);
    }
    Ok(out)
}

/// Encodes one frame with string headers.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut head = Vec::new();
    for (name, value) in headers {
        // Names are at most 255 bytes and values 65535 by the format; ours are short.
        head.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        head.extend_from_slice(&name.as_bytes()[..name.len().min(255)]);
        head.push(STRING);
        let len = value.len().min(usize::from(u16::MAX));
        head.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
        head.extend_from_slice(&value.as_bytes()[..len]);
    }
    let total = PRELUDE + head.len() + payload.len() + CHECKSUM;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

#[cfg(test)]
mod tests;
