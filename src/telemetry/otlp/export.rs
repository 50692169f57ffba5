//! The export task: batches the queued spans and POSTs them to the collector as OTLP
//! HTTP/protobuf; a failure drops the batch and counts it.

use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    BATCH_DELAY, DROPPED, EXPORT_TIMEOUT, EXPORTED, MAX_BATCH_SPANS, SCHEMA_URL,
    proto::{
        collector::trace::v1::ExportTraceServiceRequest,
        common::v1::InstrumentationScope,
        resource::v1::Resource,
        trace::v1::{ResourceSpans, ScopeSpans, Span},
    },
    span::Attributes,
};

pub(super) fn resource(service_name: &str) -> Resource {
    let mut a = Attributes::default();
    a.str("service.name", service_name);
    a.str("service.version", env!("CARGO_PKG_VERSION"));
    a.str("telemetry.sdk.name", "switchyard");
    a.str("telemetry.sdk.language", "rust");
    Resource {
        attributes: a.0,
        ..Resource::default()
    }
}

/// The export task's state.
pub(super) struct Exporter {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
    pub(super) headers: http::HeaderMap,
    pub(super) resource: Resource,
    /// Whether the last export failed (a failure is logged once per run of them).
    pub(super) failing: bool,
}

impl Exporter {
    /// Batches what is queued and exports it until `stop`; then exports what is left,
    /// once, within [`EXPORT_TIMEOUT`].
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Vec<Span>>, stop: CancellationToken) {
        loop {
            let first = tokio::select! {
                () = stop.cancelled() => break,
                item = rx.recv() => match item {
                    Some(spans) => spans,
                    None => return,
                },
            };
            let mut batch = first;
            let until = tokio::time::Instant::now() + BATCH_DELAY;
            while batch.len() < MAX_BATCH_SPANS {
                tokio::select! {
                    biased;
                    item = rx.recv() => match item {
                        Some(spans) => batch.extend(spans),
                        None => break,
                    },
                    () = tokio::time::sleep_until(until) => break,
                    () = stop.cancelled() => break,
                }
            }
            self.export(batch).await;
        }
        let mut rest = Vec::new();
        while let Ok(spans) = rx.try_recv() {
            rest.extend(spans);
        }
        if !rest.is_empty() {
            self.export(rest).await;
        }
    }

    async fn export(&mut self, spans: Vec<Span>) {
        let n = spans.len() as u64;
        let body = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "switchyard".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..InstrumentationScope::default()
                    }),
                    spans,
                    schema_url: SCHEMA_URL.to_owned(),
                }],
                schema_url: SCHEMA_URL.to_owned(),
            }],
        }
        .encode_to_vec();
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
