//! Protobuf's wire format written by hand into one byte buffer: varints, field keys, and
//! length-delimited fields, so a span is encoded straight from the request record with no
//! message structs and no `String` per attribute.
//!
//! Fields are written in the order prost writes them (by field number), so the bytes are
//! the ones prost's generated types encode; `otlp/tests.rs` decodes and compares them.

use std::fmt::{self, Write as _};

/// Wire types (protobuf encoding, "Message Structure").
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// A buffer being written: an OTLP message, or a run of `ScopeSpans.spans` entries.
pub struct Wire<'a>(pub &'a mut Vec<u8>);

/// Bytes a varint of `v` takes.
pub const fn varint_len(v: u64) -> usize {
    // 1 for 0..=127, one more per further 7 bits.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Bytes a length-delimited field `field` of `len` bytes takes, key and length included.
pub const fn field_len(field: u32, len: usize) -> usize {
    varint_len((field as u64) << 3) + varint_len(len as u64) + len
}

/// `v` as a varint at the start of `out`; the bytes it took.
fn varint_into(mut v: u64, out: &mut [u8; 10]) -> usize {
    let mut n = 0;
    for slot in out.iter_mut() {
        n += 1;
        if v < 0x80 {
            *slot = v as u8;
            break;
        }
        *slot = (v as u8) | 0x80;
        v >>= 7;
    }
    n
}

// The small writers are `#[inline]`: a span is ~100 of them, and a call each costs as
// much as the write.
impl Wire<'_> {
    #[inline]
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    #[inline]
    fn key(&mut self, field: u32, wire_type: u32) {
        self.varint(u64::from(field << 3 | wire_type));
    }

    /// A length-delimited field's key and length; its `len` bytes are the caller's to write.
    #[inline]
    pub fn len_prefix(&mut self, field: u32, len: usize) {
        self.key(field, LEN);
        self.varint(len as u64);
    }

    #[inline]
    pub fn bytes(&mut self, field: u32, value: &[u8]) {
        self.len_prefix(field, value.len());
        self.0.extend_from_slice(value);
    }

    #[inline]
    pub fn str(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    /// A string field written from `value`'s `Display`, without a `String` in between.
    pub fn display(&mut self, field: u32, value: fmt::Arguments<'_>) {
        self.message(field, |w| {
            // Writing into a Vec cannot fail.
            let _ = w.write_fmt(value);
        });
    }

    #[inline]
    pub fn uint(&mut self, field: u32, value: u64) {
        self.key(field, VARINT);
        self.varint(value);
    }

    pub fn int(&mut self, field: u32, value: i64) {
        // int64: two's complement, as a 10-byte varint when negative.
        self.uint(field, value as u64);
    }

    pub fn bool(&mut self, field: u32, value: bool) {
        self.uint(field, u64::from(value));
    }

    #[inline]
    pub fn fixed64(&mut self, field: u32, value: u64) {
        self.key(field, FIXED64);
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    pub fn double(&mut self, field: u32, value: f64) {
        self.fixed64(field, value.to_bits());
    }

    pub fn fixed32(&mut self, field: u32, value: u32) {
        self.key(field, FIXED32);
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    /// An embedded message (or a string written in pieces): `body` writes its fields, and
    /// its length goes in front once known. One byte is set aside for it; a body of 128
    /// bytes or more moves over by the length's extra bytes.
    pub fn message(&mut self, field: u32, body: impl FnOnce(&mut Wire<'_>)) {
        self.message_sized(field, 1, body);
    }

    /// [`Wire::message`] with `guess` bytes set aside for the length (2 for a body
    /// expected to take 128 to 16,383 bytes); a wrong guess costs moving the body.
    pub fn message_sized(&mut self, field: u32, guess: usize, body: impl FnOnce(&mut Wire<'_>)) {
        self.key(field, LEN);
        let at = self.0.len();
        self.0.resize(at + guess, 0);
        body(&mut Wire(&mut *self.0));
        let len = self.0.len() - at - guess;
        let mut prefix = [0u8; 10];
        let n = varint_into(len as u64, &mut prefix);
        let prefix = &prefix[..n];
        if n == guess {
            self.0[at..at + n].copy_from_slice(prefix);
        } else {
            self.0.splice(at..at + guess, prefix.iter().copied());
        }
    }
}

impl fmt::Write for Wire<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_the_shortest_encoding() {
        for (v, bytes) in [
            (0u64, vec![0u8]),
            (1, vec![1]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut buf = Vec::new();
            Wire(&mut buf).varint(v);
            assert_eq!(buf, bytes, "{v}");
            assert_eq!(varint_len(v), bytes.len(), "{v}");
        }
    }

    #[test]
    fn a_long_message_gets_its_whole_length_in_front() {
        for n in [0usize, 1, 127, 128, 300, 20_000] {
            let body = vec![7u8; n];
            let mut want = vec![0xaa];
            Wire(&mut want).bytes(9, &body);
            assert_eq!(want.len() - 1, field_len(9, n), "{n}");
            for guess in [1, 2, 3] {
                let mut buf = vec![0xaa];
                Wire(&mut buf).message_sized(9, guess, |w| w.0.extend_from_slice(&body));
                assert_eq!(buf, want, "{n} bytes, {guess} set aside");
            }
        }
    }
}
