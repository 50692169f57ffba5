//! A finished request as OTLP spans: one SERVER span for the request, one CLIENT span
//! per attempt sent upstream, with the GenAI semantic-convention attributes (v1.37.0).

use std::time::Duration;

use super::proto::{
    common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value},
    trace::v1::{Span, Status, span::SpanKind, status::StatusCode},
};
use crate::{failover::Attempt, telemetry::trace::SpanId};

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

/// Attributes under construction.
#[derive(Default)]
pub struct Attributes(pub Vec<KeyValue>);

impl Attributes {
    fn put(&mut self, key: &str, value: Value) {
        self.0.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        });
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.put(key, Value::StringValue(value.to_owned()));
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    pub fn int(&mut self, key: &str, value: i64) {
        self.put(key, Value::IntValue(value));
    }

    pub fn double(&mut self, key: &str, value: f64) {
        self.put(key, Value::DoubleValue(value));
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.put(key, Value::BoolValue(value));
    }

    pub fn strs(&mut self, key: &str, values: &[String]) {
        let values = values
            .iter()
            .map(|v| AnyValue {
                value: Some(Value::StringValue(v.clone())),
            })
            .collect();
        self.put(key, Value::ArrayValue(ArrayValue { values }));
    }
}

/// What every span of one trace shares, and one span's own identity.
pub struct SpanHead<'a> {
    pub trace_id: &'a [u8; 16],
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub duration: Duration,
    /// `Some(message)`: the span ended in error.
    pub error: Option<String>,
}

/// Builds a span.
pub fn span(head: SpanHead<'_>, attributes: Attributes) -> Span {
    let end = head
        .start_unix_nano
        .saturating_add(u64::try_from(head.duration.as_nanos()).unwrap_or(u64::MAX));
    Span {
        trace_id: head.trace_id.to_vec(),
        span_id: head.span_id.to_vec(),
        parent_span_id: head.parent.map(|p| p.to_vec()).unwrap_or_default(),
        // Sampled (bit 0), and whether the parent is remote known (bit 8) and set (bit 9)
        // for a request span continuing a caller's trace.
        flags: 1,
        name: head.name,
        kind: head.kind as i32,
        start_time_unix_nano: head.start_unix_nano,
        end_time_unix_nano: end,
        attributes: attributes.0,
        status: Some(match head.error {
            Some(message) => Status {
                message,
                code: StatusCode::Error as i32,
            },
            None => Status {
                message: String::new(),
                code: StatusCode::Unset as i32,
            },
        }),
        ..Span::default()
    }
}

/// An attempt's CLIENT span, child of the request span.
pub fn attempt_span(
    trace_id: &[u8; 16],
    request_span: SpanId,
    request_start_unix_nano: u64,
    offset: Duration,
    a: &Attempt,
) -> Span {
    let d = &a.deployment;
    let mut attrs = Attributes(Vec::with_capacity(10));
    attrs.str("gen_ai.operation.name", "chat");
    attrs.str("gen_ai.provider.name", provider_name(d.kind));
    attrs.str("gen_ai.request.model", &d.model);
    if !d.server.is_empty() {
        attrs.str("server.address", &d.server);
    }
    attrs.str("switchyard.provider", &d.provider_name);
    attrs.str("switchyard.deployment", &d.id);
    attrs.str("switchyard.attempt.outcome", &a.outcome);
    let failed = a.outcome != "ok";
    if failed {
        attrs.str("error.type", &a.outcome);
    }
    span(
        SpanHead {
            trace_id,
            span_id: a.span_id,
            parent: Some(request_span),
            name: format!("chat {}", d.model),
            kind: SpanKind::Client,
            start_unix_nano: request_start_unix_nano
                .saturating_add(u64::try_from(offset.as_nanos()).unwrap_or(u64::MAX)),
            duration: a.elapsed,
            error: failed.then(|| a.outcome.clone()),
        },
        attrs,
    )
}
