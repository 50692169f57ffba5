//! The export task: batches the queued spans and POSTs them to the collector as OTLP
//! HTTP/protobuf; a failure drops the batch and counts it.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::{Notify, mpsc};
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

/// The spans in the queue, counted by the requests that queue them, and the export task's
/// wake-up once a batch's worth is waiting. The task waits on this, not on the queue, while
/// it fills a batch: a request then pays an atomic add, not a task wake-up.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    spans: AtomicUsize,
    full: Notify,
}

impl Backlog {
    /// `n` spans are about to be queued.
    pub(super) fn add(&self, n: u32) {
        let n = n as usize;
        let before = self.spans.fetch_add(n, Ordering::Relaxed);
        if before < MAX_BATCH_SPANS && before + n >= MAX_BATCH_SPANS {
            self.full.notify_one();
        }
    }

    /// `n` spans left the queue (taken by the export task, or never queued).
    pub(super) fn taken(&self, n: u32) {
        self.spans.fetch_sub(n as usize, Ordering::Relaxed);
    }
}

/// A batch being filled.
#[derive(Default)]
struct Batch {
    requests: Vec<Encoded>,
    spans: usize,
}

/// The queue's requests in batches, until `stop`; then what is left, once.
///
/// A batch starts with the first request queued after a quiet spell and takes what
/// follows until it holds [`MAX_BATCH_SPANS`] or [`BATCH_DELAY`] has passed. While it
/// fills, the task waits on the backlog's signal, not on the queue.
pub(super) struct Batches {
    rx: mpsc::Receiver<Encoded>,
    backlog: Arc<Backlog>,
    stop: CancellationToken,
    stopped: bool,
}

impl Batches {
    pub(super) fn new(
        rx: mpsc::Receiver<Encoded>,
        backlog: Arc<Backlog>,
        stop: CancellationToken,
    ) -> Self {
        Batches {
            rx,
            backlog,
            stop,
            stopped: false,
        }
    }

    /// The next batch; `None` once stopped and drained, or when every sender is gone.
    pub(super) async fn next(&mut self) -> Option<Vec<Encoded>> {
        if !self.stopped {
            tokio::select! {
                () = self.stop.cancelled() => self.stopped = true,
                item = self.rx.recv() => return Some(self.fill(item?).await),
            }
        }
        // Stopped: what is left, once.
        let mut batch = Batch::default();
        while let Ok(more) = self.rx.try_recv() {
            self.take(&mut batch, more);
        }
        (!batch.requests.is_empty()).then_some(batch.requests)
    }

    /// A batch that starts with `first`.
    async fn fill(&mut self, first: Encoded) -> Vec<Encoded> {
        let mut batch = Batch::default();
        self.take(&mut batch, first);
        let until = tokio::time::Instant::now() + BATCH_DELAY;
        loop {
            while batch.spans < MAX_BATCH_SPANS
                && let Ok(more) = self.rx.try_recv()
            {
                self.take(&mut batch, more);
            }
            if batch.spans >= MAX_BATCH_SPANS || tokio::time::Instant::now() >= until {
                break;
            }
            tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    self.stopped = true;
                    break;
                }
                () = self.backlog.full.notified() => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
        batch.requests
    }

    fn take(&self, batch: &mut Batch, item: Encoded) {
        self.backlog.taken(item.spans);
        batch.spans += item.spans as usize;
        batch.requests.push(item);
    }
}

/// The export task's state.
pub(super) struct Exporter {
    pub(super) backlog: Arc<Backlog>,
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
    pub(super) async fn run(mut self, rx: mpsc::Receiver<Encoded>, stop: CancellationToken) {
        let mut batches = Batches::new(rx, self.backlog.clone(), stop);
        while let Some(batch) = batches.next().await {
            self.export(&batch).await;
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
            Err(e) => Some(crate::providers::describe_failure(e)),
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
