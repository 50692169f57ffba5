//! The export task: batches the queued spans and POSTs them to the collector as OTLP
//! HTTP/protobuf; a failure drops the batch and counts it.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    BATCH_DELAY, DROPPED, EXPORT_TIMEOUT, EXPORTED, Encoded, MAX_BATCH_SPANS, SCHEMA_URL,
    span::Attributes,
    wire::{Wire, field_len},
};

/// What every export says before its spans: `ResourceSpans.resource` (field 1) and
/// `ScopeSpans.scope` (field 1), encoded once.
pub(super) struct Preamble {
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Preamble {
    pub(super) fn new(service_name: &str) -> Self {
        let mut resource = Vec::new();
        Wire(&mut resource).message(1, |r| {
            let mut a = Attributes::new(r, 1);
            a.str("service.name", service_name);
            a.str("service.version", env!("CARGO_PKG_VERSION"));
            a.str("telemetry.sdk.name", "switchyard");
            a.str("telemetry.sdk.language", "rust");
        });
        let mut scope = Vec::new();
        Wire(&mut scope).message(1, |s| {
            s.str(1, "switchyard");
            s.str(2, env!("CARGO_PKG_VERSION"));
        });
        Preamble { resource, scope }
    }

    /// One `ExportTraceServiceRequest` of one resource and one scope holding `batch`'s
    /// spans. Lengths are summed first, so the body is written once, in one allocation.
    pub(super) fn request(&self, batch: &[Encoded]) -> Vec<u8> {
        let spans: usize = batch.iter().map(|e| e.bytes.len()).sum();
        let schema = field_len(3, SCHEMA_URL.len());
        let scope_spans = self.scope.len() + spans + schema;
        let resource_spans = self.resource.len() + field_len(2, scope_spans) + schema;
        let mut body = Vec::with_capacity(field_len(1, resource_spans));
        let mut w = Wire(&mut body);
        w.len_prefix(1, resource_spans);
        w.0.extend_from_slice(&self.resource);
        w.len_prefix(2, scope_spans);
        w.0.extend_from_slice(&self.scope);
        for e in batch {
            w.0.extend_from_slice(&e.bytes);
        }
        w.str(3, SCHEMA_URL);
        w.str(3, SCHEMA_URL);
        body
    }
}

/// The export task's state.
pub(super) struct Exporter {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
    pub(super) headers: http::HeaderMap,
    pub(super) preamble: Preamble,
    /// Whether the last export failed (a failure is logged once per run of them).
    pub(super) failing: bool,
}

impl Exporter {
    /// Batches what is queued and exports it until `stop`; then exports what is left,
    /// once, within [`EXPORT_TIMEOUT`].
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Encoded>, stop: CancellationToken) {
        loop {
            let first = tokio::select! {
                () = stop.cancelled() => break,
                item = rx.recv() => match item {
                    Some(spans) => spans,
                    None => return,
                },
            };
            let mut spans = first.spans as usize;
            let mut batch = vec![first];
            let until = tokio::time::Instant::now() + BATCH_DELAY;
            while spans < MAX_BATCH_SPANS {
                tokio::select! {
                    biased;
                    item = rx.recv() => match item {
                        Some(more) => {
                            spans += more.spans as usize;
                            batch.push(more);
                        }
                        None => break,
                    },
                    () = tokio::time::sleep_until(until) => break,
                    () = stop.cancelled() => break,
                }
            }
            self.export(&batch).await;
        }
        let mut rest = Vec::new();
        while let Ok(more) = rx.try_recv() {
            rest.push(more);
        }
        if !rest.is_empty() {
            self.export(&rest).await;
        }
    }

    async fn export(&mut self, batch: &[Encoded]) {
        let n: u64 = batch.iter().map(|e| u64::from(e.spans)).sum();
        let body = self.preamble.request(batch);
        let sent = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .timeout(EXPORT_TIMEOUT)
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(resp) if resp.status().is_success() => None,
            Ok(resp) => Some(format!("the collector answered {}", resp.status())),
            Err(e) => Some(crate::providers::upstream::transport_error(e).to_string()),
        };
        match failure {
            None => {
                metrics::counter!(EXPORTED).increment(n);
                if self.failing {
                    tracing::info!("OTLP export recovered");
                }
                self.failing = false;
            }
            Some(reason) => {
                metrics::counter!(DROPPED, "reason" => "export_failed").increment(n);
                if !self.failing {
                    tracing::warn!(%reason, spans = n, "OTLP export failed; spans dropped until it recovers");
                }
                self.failing = true;
            }
        }
    }
}
