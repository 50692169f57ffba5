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

use crate::{config::FailoverConfig, error::Error, providers::ProviderError, routing::Deployment};

/// The answer and who gave it.
pub struct Served<T> {
    pub value: T,
    pub deployment: Deployment,
    pub attempts: Attempts,
}

/// Every attempt failed, or the caller's request was refused; the attempts made so far.
pub struct Failed {
    pub error: Error,
    pub attempts: Attempts,
}

/// Runs `attempt` against each deployment of `plan` in turn.
///
/// `attempt` gets the deployment and the time it may take; it is cut off when that time
/// runs out (counted as a timeout).
pub async fn run<T, F, Fut>(
    plan: &[Deployment],
    config: &FailoverConfig,
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
    let mut last: Option<(Deployment, ProviderError)> = None;

    for (n, deployment) in plan.iter().take(max_attempts).enumerate() {
        if n > 0 {
            let pause = backoff_delay(n as u32, config.backoff_initial, config.backoff_max);
            if Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        let now = Instant::now();
        let budget = config
            .attempt_timeout
            .min(deadline.saturating_duration_since(now));
        if budget.is_zero() {
            break;
        }
        let outcome = match tokio::time::timeout(budget, attempt(deployment.clone())).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Timeout),
        };
        let elapsed = now.elapsed();
        match outcome {
            Ok(value) => {
                attempts.push(Attempt::ok(deployment, elapsed));
                return Ok(Served {
                    value,
                    deployment: deployment.clone(),
                    attempts,
                });
            }
            Err(error) => {
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
        Some((deployment, error)) => Error::upstream(deployment.provider_name, error),
        None => Error::DeadlineExceeded {
            deadline_ms: duration_ms(config.deadline),
        },
    };
    Err(Failed { error, attempts })
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
