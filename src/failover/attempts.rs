//! The record of a request's attempts, for the response header, metadata and the log.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use crate::{providers::ProviderError, routing::Deployment};

/// One attempt: which deployment, how it ended, how long it took.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub provider: Arc<str>,
    pub model: Arc<str>,
    /// `ok`, an upstream status (`503`) or a failure label (`connect`, `timeout`, `reset`,
    /// `malformed`, `stream_error`).
    pub outcome: String,
    pub elapsed: Duration,
}

impl Attempt {
    pub(crate) fn ok(d: &Deployment, elapsed: Duration) -> Self {
        Attempt {
            provider: d.provider_name.clone(),
            model: d.model.clone(),
            outcome: "ok".to_owned(),
            elapsed,
        }
    }

    /// Not tried: the deployment's circuit breaker refused it.
    pub(crate) fn skipped(d: &Deployment) -> Self {
        Attempt {
            provider: d.provider_name.clone(),
            model: d.model.clone(),
            outcome: "circuit_open".to_owned(),
            elapsed: Duration::ZERO,
        }
    }

    /// Not tried: the deployment had `max_concurrent` attempts in flight.
    pub(crate) fn busy(d: &Deployment) -> Self {
        Attempt {
            provider: d.provider_name.clone(),
            model: d.model.clone(),
            outcome: "busy".to_owned(),
            elapsed: Duration::ZERO,
        }
    }

    /// A hedge's loser: still running when another attempt answered, then cancelled.
    pub(crate) fn cancelled(d: &Deployment) -> Self {
        Attempt {
            provider: d.provider_name.clone(),
            model: d.model.clone(),
            outcome: "cancelled".to_owned(),
            elapsed: Duration::ZERO,
        }
    }

    /// A first attempt its hedge outran while it was stalled: counted as a failure.
    pub(crate) fn hedge_lost(d: &Deployment, elapsed: Duration) -> Self {
        Attempt {
            provider: d.provider_name.clone(),
            model: d.model.clone(),
            outcome: "hedge_lost".to_owned(),
            elapsed,
        }
    }

    pub(crate) fn failed(d: &Deployment, error: &ProviderError, elapsed: Duration) -> Self {
        Attempt {
            provider: d.provider_name.clone(),
            model: d.model.clone(),
            outcome: error.label(),
            elapsed,
        }
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
