//! W3C trace context: the incoming `traceparent`, the ids the gateway mints, and the
//! header each upstream attempt carries.
//!
//! The attempt's header travels to the provider adapters in a task-local set around the
//! attempt's future by the attempt loop ([`crate::failover`]), so no adapter signature
//! carries it; [`crate::providers::upstream::Upstream`] (and Bedrock's signer) add it.

/// A trace id (16 bytes) and a span id (8 bytes), as `traceparent` carries them.
pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// The header's name, built once.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// A parsed `traceparent` (version 00): `00-<trace-id>-<parent-id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a `traceparent` header value; `None` for anything W3C Trace Context says to
    /// ignore (wrong length or version, all-zero ids, non-hex). A future version's header
    /// is read by its first four fields, as the spec asks.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let b = value.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = u8::from_str_radix(value.get(0..2)?, 16).ok()?;
        if version == 0xff
            || (version == 0 && b.len() != 55)
            || (version > 0 && b.len() > 55 && b[55] != b'-')
        {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex_into(value.get(3..35)?, &mut trace_id)?;
        hex_into(value.get(36..52)?, &mut span_id)?;
        let flags = u8::from_str_radix(value.get(53..55)?, 16).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The header value naming `span_id` as the parent, in this trace:
    /// `00-<trace-id>-<span-id>-<flags>`, 55 bytes, written without formatting.
    pub fn header(&self, span_id: SpanId) -> [u8; HEADER_LEN] {
        let mut out = [b'-'; HEADER_LEN];
        let (version, rest) = out.split_at_mut(2);
        version.copy_from_slice(b"00");
        let (trace, rest) = rest[1..].split_at_mut(32);
        push_hex(trace, &self.trace_id);
        let (span, flags) = rest[1..].split_at_mut(16);
        push_hex(span, &span_id);
        flags[1..].copy_from_slice(if self.sampled { b"01" } else { b"00" });
        out
    }
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    // Lowercase only, as the spec writes it; uppercase is invalid.
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    hex::decode_to_slice(s, out).ok()
}

/// The length of a version-00 `traceparent`.
pub const HEADER_LEN: usize = 55;

/// Writes `bytes` as lowercase hex into `out` (twice their length).
fn push_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// A new, non-zero trace id.
pub fn new_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

/// A new, non-zero span id.
pub fn new_span_id() -> SpanId {
    fastrand::u64(1..).to_be_bytes()
}

/// What the attempt loop needs to give each attempt its `traceparent`.
#[derive(Debug, Clone, Copy)]
pub struct Propagation {
    /// The trace, and the parent every attempt's header names when `mint` is false.
    pub parent: TraceParent,
    /// Whether each attempt gets a span of its own (the request is traced): its header
    /// then names the attempt's span. Otherwise the caller's `traceparent` is forwarded
    /// as it came.
    pub mint: bool,
}

impl Propagation {
    /// The attempt's span id (zero when attempts have no spans) and its header value.
    pub fn attempt(&self) -> (SpanId, Option<http::HeaderValue>) {
        let span_id = if self.mint {
            new_span_id()
        } else {
            self.parent.span_id
        };
        let header = http::HeaderValue::from_bytes(&self.parent.header(span_id)).ok();
        (if self.mint { span_id } else { [0; 8] }, header)
    }
}

tokio::task_local! {
    /// The `traceparent` of the attempt running in this task, if any.
    pub static UPSTREAM_TRACEPARENT: Option<http::HeaderValue>;
}

/// The `traceparent` the current attempt sends upstream, if any.
pub fn upstream_traceparent() -> Option<http::HeaderValue> {
    UPSTREAM_TRACEPARENT.try_with(Clone::clone).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_the_w3c_example() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(v).unwrap();
        assert!(tp.sampled);
        assert_eq!(tp.header(tp.span_id), v.as_bytes());
        let other = tp.header([0xab, 0xcd, 0, 1, 2, 3, 4, 0xff]);
        assert_eq!(
            std::str::from_utf8(&other).unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-abcd0001020304ff-01"
        );
        let unsampled = TraceParent::parse(&v.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
        assert_eq!(
            unsampled.header(tp.span_id),
            v.replace("-01", "-00").as_bytes()
        );
    }

    #[test]
    fn refuses_what_the_spec_says_to_ignore() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        // A later version may add fields after the flags.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }
}
