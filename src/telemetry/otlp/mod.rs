//! OTLP trace export: spans encoded as protobuf from the request record when it is
//! written, queued without waiting, and POSTed (HTTP/protobuf) in batches by one
//! background task.
//!
//! The request path pays for writing its spans' bytes (one buffer, no message structs)
//! and one `try_send`; the export task only frames the queued bytes into one
//! `ExportTraceServiceRequest`. A full queue or an unreachable collector drops spans and
//! counts them (`switchyard_otlp_spans_dropped_total`), never delays a request.

mod export;
pub mod proto;
pub mod span;
#[cfg(test)]
mod tests;
pub mod wire;

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use self::{
    span::{Kind, SpanHead},
    wire::Wire,
};
use super::{
    RequestRecord,
    trace::{Propagation, SpanId, TraceParent, new_span_id, new_trace_id},
};
use crate::{
    background::Background,
    chat::{ChatChunk, ChatRequest, ChatResponse},
    config::TelemetryConfig,
};

/// The GenAI semantic conventions the spans follow (their schema URL says the same).
pub const SEMCONV_VERSION: &str = "1.37.0";
const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.37.0";

/// Requests whose spans may wait for export; past it, spans are dropped and counted.
pub const QUEUE_REQUESTS: usize = 2048;
/// Spans per export request at most.
pub const MAX_BATCH_SPANS: usize = 512;
/// How long the exporter waits for more spans after the first of a batch.
pub const BATCH_DELAY: Duration = Duration::from_millis(500);
/// One export's time limit.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Spans dropped: the queue was full, or the collector did not take them.
pub const DROPPED: &str = "switchyard_otlp_spans_dropped_total";
/// Spans the collector accepted.
pub const EXPORTED: &str = "switchyard_otlp_spans_exported_total";

/// The trace exporter: what is sampled, and the queue to the export task.
pub struct Tracer {
    ratio: f64,
    capture_content: bool,
    queue: mpsc::Sender<Encoded>,
    /// What is queued, so that the export task wakes once per batch, not per request.
    backlog: Arc<export::Backlog>,
}

/// One request's spans, encoded: `spans` entries of `ScopeSpans.spans` (field 2), ready to
/// be framed into an export.
#[derive(Debug)]
pub(super) struct Encoded {
    pub(super) spans: u32,
    pub(super) bytes: Vec<u8>,
}

/// About what a request span's bytes take without captured content (~900 with every
/// attribute), and an attempt span's (~300), so one allocation holds a request's spans.
const REQUEST_SPAN_BYTES: usize = 1024;
const ATTEMPT_SPAN_BYTES: usize = 384;

impl Tracer {
    /// Starts the export task on `background` when `config` names an endpoint (and a
    /// runtime is running); `None` otherwise.
    pub fn start(
        config: &TelemetryConfig,
        client: reqwest::Client,
        background: &Background,
    ) -> Option<Arc<Tracer>> {
        let url = config.traces_url.clone()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in &config.headers {
            // Both were checked by the config's validation.
            if let (Ok(name), Ok(mut value)) = (
                http::HeaderName::try_from(name.as_str()),
                http::HeaderValue::try_from(value.expose()),
            ) {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        let (queue, rx) = mpsc::channel(QUEUE_REQUESTS);
        let backlog = Arc::new(export::Backlog::default());
        let exporter = export::Exporter {
            backlog: backlog.clone(),
            client,
            url,
            headers,
            preamble: export::Preamble::new(&config.service_name),
            failing: false,
        };
        background.spawn_on(&runtime, move |stop| exporter.run(rx, stop));
        Some(Arc::new(Tracer {
            ratio: config.sampling_ratio,
            capture_content: config.capture_content,
            queue,
            backlog,
        }))
    }

    /// The trace of a request that arrived with `incoming` (its `traceparent`), when the
    /// request is sampled: a caller's sampled flag decides for it (parent-based), else
    /// `sampling_ratio`. A request not sampled still forwards the caller's trace context.
    pub fn begin(self: &Arc<Self>, incoming: Option<TraceParent>) -> Option<Box<RequestTrace>> {
        let sampled = match incoming {
            Some(parent) => parent.sampled,
            None => self.ratio >= 1.0 || fastrand::f64() < self.ratio,
        };
        if !sampled {
            return RequestTrace::forward(incoming);
        }
        Some(Box::new(RequestTrace {
            context: TraceParent {
                trace_id: incoming.map_or_else(new_trace_id, |p| p.trace_id),
                span_id: new_span_id(),
                sampled: true,
            },
            parent: incoming.map(|p| p.span_id),
            tracer: Some(self.clone()),
            start_unix_nano: unix_nanos_now(),
            details: Details::default(),
        }))
    }

    fn send(&self, spans: Encoded) {
        let n = spans.spans;
        // Counted before it is sent, so the export task never takes more than was counted.
        self.backlog.add(n);
        if self.queue.try_send(spans).is_err() {
            self.backlog.taken(n);
            metrics::counter!(DROPPED, "reason" => "queue_full").increment(u64::from(n));
        }
    }
}

/// The trace context of one request: what its attempts send upstream and, when it is
/// traced, what its spans will say.
#[derive(Debug)]
pub struct RequestTrace {
    /// The trace, and this request's span (the caller's span when only forwarding).
    context: TraceParent,
    /// The caller's span, the request span's parent.
    parent: Option<SpanId>,
    /// Where the spans go; `None`: not traced, the caller's context is only forwarded.
    tracer: Option<Arc<Tracer>>,
    start_unix_nano: u64,
    details: Details,
}

/// What a traced request's span says beyond the request record.
#[derive(Debug, Default)]
struct Details {
    request_model: String,
    max_tokens: Option<u32>,
    response_model: Option<String>,
    finish_reasons: Vec<String>,
    input: Option<String>,
    output: Option<String>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracer(ratio {})", self.ratio)
    }
}

impl RequestTrace {
    /// A caller's context, forwarded upstream unchanged by a request that is not traced.
    pub fn forward(incoming: Option<TraceParent>) -> Option<Box<RequestTrace>> {
        incoming.map(|context| {
            Box::new(RequestTrace {
                context,
                parent: None,
                tracer: None,
                start_unix_nano: 0,
                details: Details::default(),
            })
        })
    }

    /// How the attempts propagate the context.
    pub fn propagation(&self) -> Propagation {
        Propagation {
            parent: self.context,
            mint: self.tracer.is_some(),
        }
    }

    /// Whether spans are exported for this request.
    pub fn traced(&self) -> bool {
        self.tracer.is_some()
    }

    fn captures(&self) -> bool {
        self.tracer.as_ref().is_some_and(|t| t.capture_content)
    }

    /// Notes what the request asked for.
    pub fn on_request(&mut self, request: &ChatRequest) {
        if !self.traced() {
            return;
        }
        self.details.request_model = request.model.clone();
        self.details.max_tokens = request.max_completion_tokens.or(request.max_tokens);
        if self.captures() {
            self.details.input = serde_json::to_string(&request.messages).ok();
        }
    }

    /// Notes the model asked for, for a call that is not a chat completion (embeddings).
    pub fn on_model(&mut self, model: &str) {
        if self.traced() {
            self.details.request_model = model.to_owned();
        }
    }

    /// Notes a complete answer.
    pub fn on_response(&mut self, response: &ChatResponse) {
        if !self.traced() {
            return;
        }
        self.details.response_model = Some(response.model.clone());
        self.details.finish_reasons = response
            .choices
            .iter()
            .filter_map(|c| c.finish_reason.clone())
            .collect();
        if self.captures() {
            let messages: Vec<_> = response.choices.iter().map(|c| &c.message).collect();
            self.details.output = serde_json::to_string(&messages).ok();
        }
    }

    /// Notes a streamed chunk.
    pub fn on_chunk(&mut self, chunk: &ChatChunk) {
        if !self.traced() {
            return;
        }
        if self.details.response_model.is_none() && !chunk.model.is_empty() {
            self.details.response_model = Some(chunk.model.clone());
        }
        let capture = self.captures();
        for c in &chunk.choices {
            if let Some(reason) = &c.finish_reason {
                self.details.finish_reasons.push(reason.clone());
            }
            if capture && let Some(text) = &c.delta.content {
                self.details
                    .output
                    .get_or_insert_with(String::new)
                    .push_str(text);
            }
        }
    }
}

/// Encodes the spans of a finished request from its record and queues them.
pub(super) fn finish(trace: &RequestTrace, r: &RequestRecord, f: &super::Finished<'_>) {
    let Some(tracer) = &trace.tracer else {
        return;
    };
    let t = &trace.context;
    let d = &trace.details;
    let attempts = r.attempts.list();
    let content = d.input.as_ref().map_or(0, String::len)
        + d.output.as_ref().map_or(0, String::len)
        + r.route.as_ref().map_or(0, String::len);
    let mut bytes =
        Vec::with_capacity(REQUEST_SPAN_BYTES + ATTEMPT_SPAN_BYTES * attempts.len() + content);
    let wire = &mut Wire(&mut bytes);
    span::span(
        wire,
        SpanHead {
            trace_id: &t.trace_id,
            span_id: t.span_id,
            parent: trace.parent,
            operation: r.operation,
            model: &d.request_model,
            kind: Kind::Server,
            start_unix_nano: trace.start_unix_nano,
            duration: f.latency,
            error: r.error_type.map(|_| f.outcome_label),
        },
        |a| {
            a.str("gen_ai.operation.name", r.operation);
            if let Some(served) = attempts.iter().rev().find(|x| x.outcome == "ok") {
                a.str(
                    "gen_ai.provider.name",
                    span::provider_name(served.deployment.kind),
                );
                if !served.deployment.server.is_empty() {
                    a.str("server.address", &served.deployment.server);
                }
            }
            if !d.request_model.is_empty() {
                a.str("gen_ai.request.model", &d.request_model);
            }
            a.opt_str("gen_ai.response.model", d.response_model.as_deref());
            if let Some(u) = f.usage {
                a.int("gen_ai.usage.input_tokens", i64::from(u.prompt_tokens));
                a.int("gen_ai.usage.output_tokens", i64::from(u.completion_tokens));
            }
            if let Some(m) = d.max_tokens {
                a.int("gen_ai.request.max_tokens", i64::from(m));
            }
            if !d.finish_reasons.is_empty() {
                a.strs("gen_ai.response.finish_reasons", &d.finish_reasons);
            }
            if let Some(class) = r.error_type {
                a.str("error.type", f.outcome_label);
                a.str("switchyard.error_type", class.as_str());
            }
            a.opt_str("gen_ai.input.messages", d.input.as_deref());
            a.opt_str("gen_ai.output.messages", d.output.as_deref());
            a.str("switchyard.request_id", &r.request_id);
            a.str("switchyard.surface", r.surface.as_str());
            a.str("switchyard.model", &r.model);
            a.bool("switchyard.stream", r.stream);
            a.str("switchyard.outcome", f.outcome_label);
            a.opt_str("switchyard.provider", r.provider.as_deref());
            a.opt_str("switchyard.deployment", r.deployment.as_deref());
            a.str("switchyard.attempts", &f.attempts_header);
            a.opt_str("switchyard.policy", r.policy.as_deref());
            a.opt_str("switchyard.route", r.route.as_deref());
            a.opt_str(
                "switchyard.cache",
                r.cache.map(crate::cache::Status::as_str),
            );
            a.opt_str("switchyard.key", r.key.as_deref());
            if let Some(ip) = r.client_addr {
                a.ip("client.address", ip);
            }
            if let Some(cost) = f.cost_usd {
                a.double("switchyard.cost_usd", cost);
            }
            if let Some(saved) = r.saved_usd {
                a.double("switchyard.saved_usd", saved);
            }
            if let Some(ttft) = r.ttft {
                a.double("switchyard.ttft_ms", ttft.as_secs_f64() * 1000.0);
            }
        },
    );
    let mut spans = 1;
    for attempt in attempts {
        if attempt.span_id == [0; 8] {
            continue;
        }
        let offset = attempt.started.saturating_duration_since(r.started);
        span::attempt_span(
            wire,
            &t.trace_id,
            t.span_id,
            trace.start_unix_nano,
            offset,
            attempt,
            r.operation,
        );
        spans += 1;
    }
    tracer.send(Encoded { spans, bytes });
}

fn unix_nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
