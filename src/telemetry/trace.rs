//! W3C trace context: the incoming `traceparent`, the ids the gateway mints, and the
//! header each upstream attempt carries.
//!
//! The attempt's header travels to the provider adapters in a task-local set around the
//! attempt's future by the attempt loop ([`crate::failover`]), so no adapter signature
//! carries it; [`crate::providers::upstream::Upstream`] (and Bedrock's signer) add it.

use std::fmt::Write as _;

/// A trace id (16 bytes) and a span id (8 bytes), as `traceparent` carries them.
pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

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

    /// The header value naming `span_id` as the parent, in this trace.
    pub fn header(&self, span_id: SpanId) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &span_id);
        out.push_str(if self.sampled { "-01" } else { "-00" });
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

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
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
        let header = http::HeaderValue::try_from(self.parent.header(span_id)).ok();
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
        assert_eq!(tp.header(tp.span_id), v);
        let unsampled = TraceParent::parse(&v.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
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
