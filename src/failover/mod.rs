//! The attempt loop: try deployments in plan order until one answers, within a deadline.
//!
//! A loop that keeps every attempt's outcome: retryable failures (transport, 5xx, 429,
//! upstream auth) move on to the next deployment after a capped, jittered backoff (none
//! after a refused connection); the caller's own 4xx ends the loop at once; when every
//! attempt fails, the last provider's error is returned as it was. Each deployment's
//! breaker and concurrency limit are asked before it is tried, and with hedging a second
//! attempt may race the first.

mod attempts;
mod backoff;

use std::{future::Future, time::Duration};

use futures_util::{StreamExt, stream::FuturesUnordered};
use tokio::time::Instant;

pub use attempts::{Attempt, Attempts};
pub use backoff::backoff_delay;

use crate::{
    config::{FailoverConfig, Hedge},
    error::Error,
    health::{self, Admit, Lease},
    providers::ProviderError,
    routing::{Deployment, Explain, Planned},
    telemetry::trace::{Propagation, SpanId, UPSTREAM_TRACEPARENT},
};

/// The answer and who gave it.
pub struct Served<T> {
    pub value: T,
    pub deployment: Deployment,
    pub attempts: Attempts,
    /// How the plan was made (set by the gateway).
    pub explain: Explain,
    /// The winning attempt's hold on its deployment (always set by [`run`]): keep it while
    /// the answer is delivered. A stream records its end through it
    /// ([`health::Outcome::Completed`] or a failure); a non-stream attempt's outcome is
    /// recorded already.
    pub lease: Option<Lease>,
}

/// Every attempt failed, or the caller's request was refused; the attempts made so far.
pub struct Failed {
    pub error: Error,
    pub attempts: Attempts,
    /// How the plan was made, when routing got that far (set by the gateway).
    pub explain: Box<Explain>,
}

impl Failed {
    /// A request refused before any attempt.
    pub fn refused(error: Error) -> Failed {
        Failed {
            error,
            attempts: Attempts::default(),
            explain: Box::default(),
        }
    }
}

/// How one request's attempts run.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub failover: FailoverConfig,
    /// The attempt ends at the first content chunk: its latency is the time to first token,
    /// and the circuit hears the outcome when the stream ends, through the lease.
    pub stream: bool,
    /// When to send the request to the next deployment as well (the model's `hedge`).
    pub hedge: Option<Hedge>,
    /// The trace context each attempt sends upstream (`traceparent`), when there is one.
    pub trace: Option<Propagation>,
}

/// Hedging on the p95 waits for this many samples of the first deployment's latency.
const HEDGE_MIN_SAMPLES: u64 = 20;

/// How long a caller refused for load should wait.
pub const OVERLOADED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What an attempt's outcome tells the deployment's health; `None` for the caller's own
/// mistakes, which say nothing about the deployment.
pub fn health_outcome(error: &ProviderError, elapsed: Duration) -> Option<health::Outcome> {
    match error {
        ProviderError::Status {
            status,
            retry_after,
            ..
        } if status.as_u16() == 429 => Some(health::Outcome::Throttled {
            retry_after: *retry_after,
        }),
        e if e.is_retryable() && !matches!(e, ProviderError::Untranslatable(_)) => {
            Some(health::Outcome::Failure { latency: elapsed })
        }
        _ => None,
    }
}

/// Whether the next attempt should back off after this failure. Not when nothing reached
/// the provider (the connection was refused, the request untranslatable): there is no load
/// to back off from, and waiting would only add latency.
fn backs_off(error: &ProviderError) -> bool {
    !matches!(
        error,
        ProviderError::Connect(_) | ProviderError::Untranslatable(_)
    )
}

/// One launched attempt's end.
struct Finished<T> {
    step: usize,
    result: Result<T, ProviderError>,
    elapsed: Duration,
    /// It timed out on what was left of the request deadline, before its own timeout:
    /// that says nothing about the deployment.
    cut_short: bool,
}

/// Runs one attempt within `budget`, `own` being the deployment's own attempt timeout
/// (the budget is less when the deadline is near).
async fn attempt_within<T>(
    step: usize,
    attempt: impl Future<Output = Result<T, ProviderError>>,
    budget: Duration,
    own: Duration,
) -> Finished<T> {
    let started = Instant::now();
    let (result, cut_short) = match tokio::time::timeout(budget, attempt).await {
        Ok(result) => (result, false),
        Err(_) => (Err(ProviderError::Timeout), budget < own),
    };
    Finished {
        step,
        result,
        elapsed: started.elapsed(),
        cut_short,
    }
}

/// A first attempt outrun by its hedge had run this many times its deployment's p95
/// before it counts as a failure: slower than that it is stalled, not merely slow.
const OUTRUN_STALLED: f64 = 3.0;

/// Whether a first attempt on `d` that was still running after `ran` when its hedge
/// answered counts as a failure for its circuit. It does when it ran past
/// [`OUTRUN_STALLED`] times its p95, or when its p95 is unknown: a deployment that never
/// answers first gets no samples, and should not be asked first forever.
fn outrun_is_failure(d: &Deployment, ran: Duration) -> bool {
    let s = d.health.snapshot(Instant::now());
    s.samples < HEDGE_MIN_SAMPLES || ran.as_secs_f64() * 1000.0 > OUTRUN_STALLED * s.p95_ms
}

/// The plan's next deployment that may take an attempt, with its lease; those passed over
/// are recorded (`circuit_open`, or `busy` at their concurrency limit).
struct Cursor<'p> {
    plan: &'p [Planned],
    next: usize,
    busy: bool,
}

impl Cursor<'_> {
    fn take(&mut self, launched: usize, attempts: &mut Attempts) -> Option<(usize, Lease)> {
        while self.next < self.plan.len() {
            let n = self.next;
            self.next += 1;
            let d = &self.plan[n].deployment;
            let admit = d.health.admit(Instant::now());
            // The last hope is tried whatever its circuit says: nothing tried, nothing after.
            let last_hope = launched == 0 && n + 1 == self.plan.len();
            if admit == Admit::No && !last_hope {
                attempts.push(Attempt::skipped(d));
                continue;
            }
            match d.health.lease(d.max_concurrent, admit) {
                Some(lease) => return Some((n, lease)),
                None => {
                    self.busy = true;
                    attempts.push(Attempt::busy(d));
                }
            }
        }
        None
    }
}

/// Runs `attempt` against the deployments of `plan` in turn.
///
/// `attempt` gets the deployment; it is cut off when its time runs out (the plan's
/// per-attempt timeout, else the deployment's, else the configured one, within the
/// deadline), which counts as a timeout. Each deployment's breaker is asked first and one
/// that refuses is skipped, unless it is the last hope (nothing tried yet and nothing after
/// it); so is one at its `max_concurrent`. A retryable failure moves on to the next after a
/// capped, jittered backoff (none after a refused connection); the caller's own 4xx ends the
/// loop. With `hedge`, when the first attempt has not answered after the delay, the next
/// deployment is tried alongside it and the first answer wins; the loser is dropped, which
/// cancels its upstream call. Outcomes feed each deployment's health.
pub async fn run<T, F, Fut>(
    plan: &[Planned],
    settings: &Settings,
    mut attempt: F,
) -> Result<Served<T>, Failed>
where
    F: FnMut(Deployment) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    run_seeing(plan, settings, |d, _| attempt(d)).await
}

/// As [`run`], `attempt` also seeing the attempts recorded before it was launched (those
/// that failed or were skipped, and a hedge's first attempt, still running).
pub async fn run_seeing<T, F, Fut>(
    plan: &[Planned],
    settings: &Settings,
    mut attempt: F,
) -> Result<Served<T>, Failed>
where
    F: FnMut(Deployment, &Attempts) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let config = &settings.failover;
    let deadline = Instant::now() + config.deadline;
    let max_attempts = match config.max_attempts {
        0 => plan.len(),
        n => n.min(plan.len()),
    };
    let mut attempts = Attempts::default();
    let mut cursor = Cursor {
        plan,
        next: 0,
        busy: false,
    };
    let mut launched = 0usize;
    let mut hedged = false;
    let mut running = FuturesUnordered::new();
    // Plan steps launched and not yet finished, in launch order, with their leases (the
    // losers of a hedge are told through theirs: a probe's outcome moves its circuit) and
    // when they started.
    let mut pending: Vec<(usize, Lease, Instant, SpanId)> = Vec::new();
    let mut last: Option<(Deployment, ProviderError)> = None;
    // Each attempt carries its own `traceparent` (naming its span when the request is
    // traced) to the provider adapter, in a task-local around its future.
    let mut launch = |n: usize, running: &mut FuturesUnordered<_>, attempts: &Attempts| -> SpanId {
        let (span_id, header) = settings
            .trace
            .as_ref()
            .map_or(([0; 8], None), Propagation::attempt);
        let step = &plan[n];
        let own = step
            .timeout
            .or(step.deployment.timeouts.attempt)
            .unwrap_or(config.attempt_timeout);
        let budget = own.min(deadline.saturating_duration_since(Instant::now()));
        running.push(attempt_within(
            n,
            UPSTREAM_TRACEPARENT.scope(header, attempt(step.deployment.clone(), attempts)),
            budget,
            own,
        ));
        span_id
    };

    loop {
        if running.is_empty() {
            if launched >= max_attempts {
                break;
            }
            let Some((n, lease)) = cursor.take(launched, &mut attempts) else {
                break;
            };
            if launched > 0 && last.as_ref().is_some_and(|(_, e)| backs_off(e)) {
                let pause =
                    backoff_delay(launched as u32, config.backoff_initial, config.backoff_max);
                if Instant::now() + pause >= deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            if Instant::now() >= deadline {
                break;
            }
            let span_id = launch(n, &mut running, &attempts);
            pending.push((n, lease, Instant::now(), span_id));
            launched += 1;
        }
        // The hedge goes out once, beside the first attempt still running alone.
        let hedge_at = match settings.hedge {
            Some(hedge) if !hedged && running.len() == 1 && launched < max_attempts => pending
                .first()
                .and_then(|(n, ..)| hedge_delay(hedge, &plan[*n].deployment))
                .map(|delay| (Instant::now() + delay).min(deadline)),
            _ => None,
        };
        let finished = tokio::select! {
            biased;
            Some(finished) = running.next() => finished,
            () = sleep_until(hedge_at), if hedge_at.is_some() => {
                hedged = true;
                // A hedge needs time to answer: none within the last delay's worth of the
                // deadline (its timeout there would be the deadline's, not its own).
                let time_left = deadline.saturating_duration_since(Instant::now());
                let hedge_is_useful = pending.first().is_some_and(|(_, _, started, _)| {
                    time_left > started.elapsed()
                });
                if hedge_is_useful
                    && let Some((n, lease)) = cursor.take(launched, &mut attempts)
                {
                    let span_id = launch(n, &mut running, &attempts);
                    pending.push((n, lease, Instant::now(), span_id));
                    launched += 1;
                }
                continue;
            }
        };
        let Finished {
            step,
            result,
            elapsed,
            cut_short,
        } = finished;
        // Launch order: attempts before the finished one in `pending` started earlier.
        let Some(position) = pending.iter().position(|(n, ..)| *n == step) else {
            continue; // every launched attempt is pending until it finishes
        };
        let (_, mut lease, _, span_id) = pending.remove(position);
        let deployment = &plan[step].deployment;
        let at = Instant::now();
        match result {
            Ok(value) => {
                if settings.stream {
                    lease.first_token(elapsed, at);
                } else {
                    lease.record(
                        health::Outcome::Success {
                            latency: elapsed,
                            ttft: None,
                        },
                        at,
                    );
                }
                attempts.push(Attempt::ok(deployment, elapsed).in_span(span_id));
                // A hedge's loser is dropped with `running`, cancelling its call. One that
                // started first and was outrun while stalled counts as a failure for its
                // circuit (`hedge_lost`): otherwise hedging would hide a stalled deployment
                // from its breaker for good, and every request would pay the hedge delay.
                for (i, (n, mut loser, started, loser_span)) in pending.drain(..).enumerate() {
                    let d = &plan[n].deployment;
                    let ran = started.elapsed();
                    let lost = if i < position && outrun_is_failure(d, ran) {
                        loser.record(health::Outcome::Failure { latency: ran }, at);
                        Attempt::hedge_lost(d, ran)
                    } else {
                        Attempt::cancelled(d, ran)
                    };
                    attempts.push(lost.in_span(loser_span));
                }
                return Ok(Served {
                    value,
                    deployment: deployment.clone(),
                    attempts,
                    explain: Explain::default(),
                    lease: Some(lease),
                });
            }
            Err(error) => {
                // The caller's own mistake, or a timeout imposed by the request's deadline,
                // says nothing about the deployment; a probe it was is released with the
                // lease, for the next request.
                if let Some(o) = health_outcome(&error, elapsed).filter(|_| !cut_short) {
                    lease.record(o, at);
                }
                attempts.push(Attempt::failed(deployment, &error, elapsed).in_span(span_id));
                let retryable = error.is_retryable();
                last = Some((deployment.clone(), error));
                if !retryable {
                    for (n, _, started, other) in &pending {
                        let d = &plan[*n].deployment;
                        attempts.push(Attempt::cancelled(d, started.elapsed()).in_span(*other));
                    }
                    break;
                }
            }
        }
    }
    drop(running);

    let error = match last {
        Some((deployment, error)) => Error::upstream(deployment.provider_name.clone(), error),
        None if cursor.busy && launched == 0 => Error::Overloaded {
            message: "every deployment of this model is at its concurrency limit; retry \
                      shortly"
                .to_owned(),
            retry_after: OVERLOADED_RETRY_AFTER,
        },
        None => Error::DeadlineExceeded {
            deadline_ms: duration_ms(config.deadline),
        },
    };
    Err(Failed {
        error,
        attempts,
        explain: Box::default(),
    })
}

/// When the hedge goes out after the first attempt on `d` started; `None`: not (yet) known.
fn hedge_delay(hedge: Hedge, d: &Deployment) -> Option<Duration> {
    match hedge {
        Hedge::After(delay) => Some(delay),
        Hedge::P95 => {
            let s = d.health.snapshot(Instant::now());
            (s.samples >= HEDGE_MIN_SAMPLES && s.p95_ms > 0.0)
                .then(|| Duration::from_secs_f64(s.p95_ms / 1000.0))
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
