//! A finished request as OTLP spans: one SERVER span for the request, one CLIENT span
//! per attempt sent upstream, with the GenAI semantic-convention attributes (v1.37.0),
//! encoded as protobuf `ScopeSpans.spans` entries straight from the request record.

use std::{fmt, time::Duration};

use super::wire::{Wire, field_len, varint_len};
use crate::{
    failover::Attempt,
    telemetry::trace::{SpanId, TraceId},
};

/// The `gen_ai.provider.name` of a preset, from the convention's well-known values; a
/// preset it does not list keeps its own name.
pub fn provider_name(kind: &'static str) -> &'static str {
    match kind {
        "azure" => "azure.ai.openai",
        "bedrock" => "aws.bedrock",
        "gemini" => "gcp.gemini",
        "mistral" => "mistral_ai",
        "xai" => "x_ai",
        other => other,
    }
}

/// A span's kind, as `Span.SpanKind` numbers it.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Server = 2,
    Client = 3,
}

/// `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;
/// `Span.flags`: sampled (bit 0). Bits 8 and 9 (whether the parent is remote) are left
/// unset: unknown.
const FLAGS: u32 = 1;

/// Attributes being written, each a `KeyValue` of the message's attributes field. Keys
/// are static: a key costs a copy of its bytes, never an allocation.
pub struct Attributes<'a, 'b> {
    wire: &'a mut Wire<'b>,
    field: u32,
}

impl<'a, 'b> Attributes<'a, 'b> {
    /// The attributes of a message whose `repeated KeyValue attributes` is `field`.
    pub fn new(wire: &'a mut Wire<'b>, field: u32) -> Self {
        Attributes { wire, field }
    }

    /// A `KeyValue`: the key, and an `AnyValue` whose one field `value` writes.
    fn put(&mut self, key: &'static str, value: impl FnOnce(&mut Wire<'_>)) {
        self.wire.message(self.field, |kv| {
            kv.str(1, key);
            kv.message(2, value);
        });
    }

    /// The start of a `KeyValue` whose `AnyValue` holds one field of `value_len` bytes
    /// (key and length included): lengths summed up front, nothing to move afterwards.
    #[inline]
    fn head(&mut self, key: &'static str, value_len: usize) {
        let any = 1 + varint_len(value_len as u64) + value_len;
        self.wire
            .len_prefix(self.field, field_len(1, key.len()) + any);
        self.wire.str(1, key);
        self.wire.len_prefix(2, value_len);
    }

    #[inline]
    pub fn str(&mut self, key: &'static str, value: &str) {
        self.head(key, field_len(1, value.len()));
        self.wire.str(1, value);
    }

    #[inline]
    pub fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    /// An address as text, as its `Display` writes it (an IPv4 address digit by digit,
    /// without the formatting machinery).
    pub fn ip(&mut self, key: &'static str, ip: std::net::IpAddr) {
        let std::net::IpAddr::V4(v4) = ip else {
            return self.display(key, format_args!("{ip}"));
        };
        let mut text = [0u8; 15];
        let mut n = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            // At most 4 x 3 digits and 3 dots: within the 15 bytes.
            if i > 0 {
                text[n] = b'.';
                n += 1;
            }
            if octet >= 100 {
                text[n] = b'0' + octet / 100;
                n += 1;
            }
            if octet >= 10 {
                text[n] = b'0' + octet / 10 % 10;
                n += 1;
            }
            text[n] = b'0' + octet % 10;
            n += 1;
        }
        self.head(key, field_len(1, n));
        self.wire.bytes(1, &text[..n]);
    }

    /// A string attribute written from `value`'s `Display`.
    pub fn display(&mut self, key: &'static str, value: fmt::Arguments<'_>) {
        self.put(key, |v| v.display(1, value));
    }

    pub fn bool(&mut self, key: &'static str, value: bool) {
        self.head(key, 2);
        self.wire.bool(2, value);
    }

    pub fn int(&mut self, key: &'static str, value: i64) {
        self.head(key, 1 + varint_len(value as u64));
        self.wire.int(3, value);
    }

    pub fn double(&mut self, key: &'static str, value: f64) {
        self.head(key, 9);
        self.wire.double(4, value);
    }

    /// A string array (`ArrayValue` of string `AnyValue`s).
    pub fn strs(&mut self, key: &'static str, values: &[String]) {
        self.put(key, |v| {
            v.message(5, |array| {
                for s in values {
                    array.message(1, |any| any.str(1, s));
                }
            });
        });
    }
}

/// What every span of one trace shares, and one span's own identity.
pub struct SpanHead<'a> {
    pub trace_id: &'a TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    /// The GenAI operation (`chat`, `embeddings`): the span is named `{operation} {model}`,
    /// or `{operation}` when the model is empty.
    pub operation: &'static str,
    pub model: &'a str,
    pub kind: Kind,
    pub start_unix_nano: u64,
    pub duration: Duration,
    /// `Some(message)`: the span ended in error.
    pub error: Option<&'a str>,
}

/// Writes one span, as a `ScopeSpans.spans` entry (field 2), whose attributes `attributes`
/// writes. Fields go in field-number order, as prost writes them.
pub fn span(
    wire: &mut Wire<'_>,
    head: SpanHead<'_>,
    attributes: impl FnOnce(&mut Attributes<'_, '_>),
) {
    let end = head
        .start_unix_nano
        .saturating_add(u64::try_from(head.duration.as_nanos()).unwrap_or(u64::MAX));
    // A span takes 128 to 16,383 bytes unless content is captured: two length bytes.
    wire.message_sized(2, 2, |s| {
        s.bytes(1, head.trace_id);
        s.bytes(2, &head.span_id);
        if let Some(parent) = &head.parent {
            s.bytes(4, parent);
        }
        s.message(5, |name| {
            name.0.extend_from_slice(head.operation.as_bytes());
            if !head.model.is_empty() {
                name.0.push(b' ');
                name.0.extend_from_slice(head.model.as_bytes());
            }
        });
        s.uint(6, head.kind as u64);
        s.fixed64(7, head.start_unix_nano);
        s.fixed64(8, end);
        attributes(&mut Attributes::new(s, 9));
        s.message(15, |status| {
            if let Some(message) = head.error {
                if !message.is_empty() {
                    status.str(2, message);
                }
                status.uint(3, STATUS_ERROR);
            }
        });
        s.fixed32(16, FLAGS);
    });
}

/// An attempt's CLIENT span, child of the request span.
pub fn attempt_span(
    wire: &mut Wire<'_>,
    trace_id: &TraceId,
    request_span: SpanId,
    request_start_unix_nano: u64,
    offset: Duration,
    a: &Attempt,
    operation: &'static str,
) {
    let d = &a.deployment;
    let failed = a.outcome != "ok";
    span(
        wire,
        SpanHead {
            trace_id,
            span_id: a.span_id,
            parent: Some(request_span),
            operation,
            model: &d.model,
            kind: Kind::Client,
            start_unix_nano: request_start_unix_nano
                .saturating_add(u64::try_from(offset.as_nanos()).unwrap_or(u64::MAX)),
            duration: a.elapsed,
            error: failed.then_some(a.outcome.as_str()),
        },
        |attrs| {
            attrs.str("gen_ai.operation.name", operation);
            attrs.str("gen_ai.provider.name", provider_name(d.kind));
            attrs.str("gen_ai.request.model", &d.model);
            if !d.server.is_empty() {
                attrs.str("server.address", &d.server);
            }
            attrs.str("switchyard.provider", &d.provider_name);
            attrs.str("switchyard.deployment", &d.id);
            attrs.str("switchyard.attempt.outcome", &a.outcome);
            if failed {
                attrs.str("error.type", &a.outcome);
            }
        },
    );
}
