//! The attempt loop: try deployments in plan order until one answers, within a deadline.
//!
//! A plain loop that keeps every attempt's outcome: retryable failures (transport, 5xx,
//! 429, upstream auth) move on to the next deployment after a capped, jittered backoff; the
//! caller's own 4xx ends the loop at once; when every attempt fails, the last provider's
//! error is returned as it was.

mod attempts;
mod backoff;

use std::{future::Future, time::Duration};

use tokio::time::Instant;

pub use attempts::{Attempt, Attempts};
pub use backoff::backoff_delay;

use crate::{
    config::FailoverConfig,
    error::Error,
    health::{self, Admit},
    providers::ProviderError,
    routing::{Deployment, Explain, Planned},
};

/// The answer and who gave it.
pub struct Served<T> {
    pub value: T,
    pub deployment: Deployment,
    pub attempts: Attempts,
    /// How the plan was made (set by the gateway).
    pub explain: Explain,
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

/// Releases a half-open probe whose attempt was abandoned (the caller went away), so the
/// next request may probe instead.
struct ProbeGuard<'a>(Option<&'a health::DeploymentHealth>);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.0 {
            h.release_probe();
        }
    }
}

/// What an attempt's outcome tells the deployment's health; `None` for the caller's own
/// mistakes, which say nothing about the deployment.
fn health_outcome(error: &ProviderError, elapsed: Duration) -> Option<health::Outcome> {
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

/// Runs `attempt` against each deployment of `plan` in turn.
///
/// `attempt` gets the deployment; it is cut off when its time runs out (the plan's
/// per-attempt timeout, else the configured one, within the deadline), which counts as a
/// timeout. Each deployment's breaker is asked first: one that refuses is skipped, unless
/// it is the last hope (nothing tried yet and nothing after it). Outcomes feed each
/// deployment's health; `stream` says the attempt ends at the first token (its latency is
/// the time to first token).
pub async fn run<T, F, Fut>(
    plan: &[Planned],
    config: &FailoverConfig,
    stream: bool,
    mut attempt: F,
) -> Result<Served<T>, Failed>
where
    F: FnMut(Deployment) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let started = Instant::now();
    let deadline = started + config.deadline;
    let max_attempts = match config.max_attempts {
        0 => plan.len(),
        n => n.min(plan.len()),
    };
    let mut attempts = Attempts::default();
    let mut tried = 0usize;
    let mut last: Option<(Deployment, ProviderError)> = None;

    for (n, step) in plan.iter().enumerate() {
        if tried >= max_attempts {
            break;
        }
        let deployment = &step.deployment;
        let admit = deployment.health.admit(Instant::now().into_std());
        let last_hope = tried == 0 && n + 1 == plan.len();
        if admit == Admit::No && !last_hope {
            attempts.push(Attempt::skipped(deployment));
            continue;
        }
        let mut probe = ProbeGuard((admit == Admit::Probe).then_some(&*deployment.health));
        if tried > 0 {
            let pause = backoff_delay(tried as u32, config.backoff_initial, config.backoff_max);
            if Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        tried += 1;
        let now = Instant::now();
        let budget = step
            .timeout
            .or(deployment.timeouts.attempt)
            .unwrap_or(config.attempt_timeout)
            .min(deadline.saturating_duration_since(now));
        if budget.is_zero() {
            break;
        }
        let outcome = match tokio::time::timeout(budget, attempt(deployment.clone())).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Timeout),
        };
        let elapsed = now.elapsed();
        let at = Instant::now().into_std();
        match outcome {
            Ok(value) => {
                deployment.health.record(
                    health::Outcome::Success {
                        latency: elapsed,
                        ttft: stream.then_some(elapsed),
                    },
                    at,
                );
                probe.0 = None;
                attempts.push(Attempt::ok(deployment, elapsed));
                return Ok(Served {
                    value,
                    deployment: deployment.clone(),
                    attempts,
                    explain: Explain::default(),
                });
            }
            Err(error) => {
                // The caller's own mistake says nothing about the deployment; a probe it
                // was is released (by the guard) for the next request.
                if let Some(o) = health_outcome(&error, elapsed) {
                    deployment.health.record(o, at);
                    probe.0 = None;
                }
                attempts.push(Attempt::failed(deployment, &error, elapsed));
                let retryable = error.is_retryable();
                last = Some((deployment.clone(), error));
                if !retryable {
                    break;
                }
            }
        }
    }

    let error = match last {
        Some((deployment, error)) => Error::upstream(deployment.provider_name.clone(), error),
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

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
