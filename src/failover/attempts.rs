//! The record of a request's attempts, for the response header, metadata, the log and
//! the trace.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::{providers::ProviderError, routing::Deployment, telemetry::trace::SpanId};

/// One attempt: which deployment, how it ended, when it started and how long it took.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub provider: Arc<str>,
    pub model: Arc<str>,
    /// `ok`, an upstream status (`503`) or a failure label (`connect`, `timeout`, `reset`,
    /// `malformed`, `stream_error`).
    pub outcome: String,
    pub elapsed: Duration,
    /// When it was sent (for one never sent, when it was passed over).
    pub started: Instant,
    /// Its span when the request is traced; zero for one never sent or not traced.
    pub span_id: SpanId,
    /// The deployment, for the trace (its preset and upstream host).
    pub deployment: Deployment,
}

impl Attempt {
    fn new(d: &Deployment, outcome: String, elapsed: Duration) -> Self {
        let now = Instant::now();
        Attempt {
            provider: d.provider_name.clone(),
            model: d.model.clone(),
            outcome,
            elapsed,
            started: now.checked_sub(elapsed).unwrap_or(now),
            span_id: [0; 8],
            deployment: d.clone(),
        }
    }

    /// The attempt's span (set by the attempt loop when the request is traced).
    pub(crate) fn in_span(mut self, span_id: SpanId) -> Self {
        self.span_id = span_id;
        self
    }

    pub(crate) fn ok(d: &Deployment, elapsed: Duration) -> Self {
        Attempt::new(d, "ok".to_owned(), elapsed)
    }

    /// Not tried: the deployment's circuit breaker refused it.
    pub(crate) fn skipped(d: &Deployment) -> Self {
        Attempt::new(d, "circuit_open".to_owned(), Duration::ZERO)
    }

    /// Not tried: the deployment had `max_concurrent` attempts in flight.
    pub(crate) fn busy(d: &Deployment) -> Self {
        Attempt::new(d, "busy".to_owned(), Duration::ZERO)
    }

    /// A hedge's loser: still running for `ran` when another attempt answered, then
    /// cancelled.
    pub(crate) fn cancelled(d: &Deployment, ran: Duration) -> Self {
        Attempt::new(d, "cancelled".to_owned(), ran)
    }

    /// A first attempt its hedge outran while it was stalled: counted as a failure.
    pub(crate) fn hedge_lost(d: &Deployment, elapsed: Duration) -> Self {
        Attempt::new(d, "hedge_lost".to_owned(), elapsed)
    }

    pub(crate) fn failed(d: &Deployment, error: &ProviderError, elapsed: Duration) -> Self {
        Attempt::new(d, error.label(), elapsed)
    }
}

/// The attempts of one request, in order.
#[derive(Debug, Clone, Default)]
pub struct Attempts(Vec<Attempt>);

impl Attempts {
    pub(crate) fn push(&mut self, attempt: Attempt) {
        self.0.push(attempt);
    }

    /// Puts `skipped` (deployments routing left out for an open circuit) first, as
    /// `circuit_open`.
    pub(crate) fn skipped_first(&mut self, skipped: &[Deployment]) {
        if !skipped.is_empty() {
            self.0.splice(0..0, skipped.iter().map(Attempt::skipped));
        }
    }

    /// The attempts, in order.
    pub fn list(&self) -> &[Attempt] {
        &self.0
    }

    /// The `x-switchyard-attempts` value: `provider/model=outcome` joined by `, `,
    /// e.g. `primary/gpt-4o-mini=503, backup/gpt-4o-mini=ok`.
    pub fn header_value(&self) -> String {
        let mut out = String::new();
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}/{}={}", a.provider, a.model, a.outcome);
        }
        out
    }
}
