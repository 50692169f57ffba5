//! The attempt loop on paused time with scripted outcomes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::future::BoxFuture;
use http::StatusCode;

use super::*;
use crate::{
    chat::{ChatRequest, ChatResponse},
    providers::{ChunkStream, Provider},
};

/// A provider whose answer is scripted per call; it never does I/O.
struct Scripted;

impl Provider for Scripted {
    fn chat<'a>(
        &'a self,
        _: &'a ChatRequest,
        _: &'a str,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async { Err(ProviderError::Timeout) })
    }
    fn chat_stream<'a>(
        &'a self,
        _: &'a ChatRequest,
        _: &'a str,
    ) -> BoxFuture<'a, Result<ChunkStream, ProviderError>> {
        Box::pin(async { Err(ProviderError::Timeout) })
    }
}

fn plan(names: &[&str]) -> Vec<Planned> {
    names
        .iter()
        .map(|n| Deployment::bare(n, "m", Arc::new(Scripted)).into())
        .collect()
}

fn status(code: u16) -> ProviderError {
    ProviderError::Status {
        status: StatusCode::from_u16(code).unwrap(),
        message: format!("said {code}"),
        kind: None,
        code: None,
        param: None,
        retry_after: None,
    }
}

/// Outcome per provider name; `None` means "never answers".
type Script = HashMap<&'static str, Option<Result<&'static str, ProviderError>>>;

async fn drive(
    names: &[&str],
    script: Script,
    config: FailoverConfig,
) -> (
    Result<Served<&'static str>, Failed>,
    Vec<(String, Duration)>,
) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let started = tokio::time::Instant::now();
    let plan = plan(names);
    let script = Arc::new(script);
    let log = calls.clone();
    let settings = Settings {
        failover: config,
        stream: false,
        hedge: None,
        trace: None,
    };
    let result = run(&plan, &settings, move |d| {
        let script = script.clone();
        let log = log.clone();
        async move {
            log.lock()
                .unwrap()
                .push((d.provider_name.to_string(), started.elapsed()));
            match script.get(&*d.provider_name).cloned().flatten() {
                Some(r) => r,
                None => std::future::pending().await,
            }
        }
    })
    .await;
    let calls = calls.lock().unwrap().clone();
    (result, calls)
}

fn config() -> FailoverConfig {
    FailoverConfig {
        deadline: Duration::from_secs(10),
        attempt_timeout: Duration::from_secs(2),
        ..FailoverConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_move_on_and_the_attempts_are_recorded() {
    let script = Script::from([
        ("a", Some(Err(status(503)))),
        ("b", Some(Err(ProviderError::Connect("refused".into())))),
        ("c", Some(Ok("answer"))),
    ]);
    let (result, calls) = drive(&["a", "b", "c"], script, config()).await;
    let served = result.ok().unwrap();
    assert_eq!(served.value, "answer");
    assert_eq!(&*served.deployment.provider_name, "c");
    assert_eq!(
        served.attempts.header_value(),
        "a/m=503, b/m=connect, c/m=ok"
    );
    assert_eq!(calls.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn backoff_between_attempts_is_jittered_exponential_and_capped() {
    let script = Script::from([
        ("a", Some(Err(status(500)))),
        ("b", Some(Err(status(500)))),
        ("c", Some(Err(status(500)))),
        ("d", Some(Err(status(500)))),
        ("e", Some(Err(status(500)))),
        ("f", Some(Err(status(500)))),
    ]);
    let (_, calls) = drive(&["a", "b", "c", "d", "e", "f"], script, config()).await;
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].1 - w[0].1).collect();
    let initial = config().backoff_initial;
    for (i, gap) in gaps.iter().enumerate() {
        let step = (initial * (1 << i)).min(crate::config::BACKOFF_CAP);
        assert!(
            *gap >= step / 2 && *gap <= step,
            "gap {i} = {gap:?}, step {step:?}"
        );
    }
    assert!(gaps.iter().all(|g| *g <= Duration::from_millis(500)));
}

#[tokio::test(start_paused = true)]
async fn the_callers_own_4xx_is_never_retried() {
    let script = Script::from([("a", Some(Err(status(400)))), ("b", Some(Ok("never")))]);
    let (result, calls) = drive(&["a", "b"], script, config()).await;
    let failed = result.err().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(failed.error.spec().status, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn when_all_fail_the_last_providers_error_is_returned() {
    let script = Script::from([("a", Some(Err(status(503)))), ("b", Some(Err(status(429))))]);
    let (result, _) = drive(&["a", "b"], script, config()).await;
    let failed = result.err().unwrap();
    let Error::Upstream { provider, error } = &failed.error else {
        panic!("{:?}", failed.error)
    };
    assert_eq!(&**provider, "b");
    assert!(
        matches!(&**error, ProviderError::Status { status, message, .. }
            if status.as_u16() == 429 && message == "said 429")
    );
    assert_eq!(failed.attempts.header_value(), "a/m=503, b/m=429");
}

#[tokio::test(start_paused = true)]
async fn a_silent_provider_times_out_and_the_next_one_answers() {
    let script = Script::from([("a", None), ("b", Some(Ok("late but fine")))]);
    let (result, calls) = drive(&["a", "b"], script, config()).await;
    let served = result.ok().unwrap();
    assert_eq!(served.attempts.header_value(), "a/m=timeout, b/m=ok");
    assert!(calls[1].1 >= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_the_whole_request() {
    let cfg = FailoverConfig {
        deadline: Duration::from_secs(3),
        attempt_timeout: Duration::from_secs(2),
        ..FailoverConfig::default()
    };
    let script = Script::from([("a", None), ("b", None), ("c", None)]);
    let started = tokio::time::Instant::now();
    let (result, calls) = drive(&["a", "b", "c"], script, cfg).await;
    assert!(started.elapsed() <= Duration::from_secs(3));
    assert_eq!(
        calls.len(),
        2,
        "the second attempt gets what is left of the deadline"
    );
    let failed = result.err().unwrap();
    assert_eq!(failed.error.spec().status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_limits_the_plan() {
    let cfg = FailoverConfig {
        max_attempts: 2,
        ..config()
    };
    let script = Script::from([
        ("a", Some(Err(status(500)))),
        ("b", Some(Err(status(500)))),
        ("c", Some(Ok("unreached"))),
    ]);
    let (result, calls) = drive(&["a", "b", "c"], script, cfg).await;
    assert!(result.is_err());
    assert_eq!(calls.len(), 2);
}

/// Runs `names` with `hedge`; `a` never answers unless scripted, and each call's future
/// notes when it is dropped unfinished.
async fn drive_hedged(
    names: &[&str],
    script: Script,
    hedge: Option<Hedge>,
) -> (
    Result<Served<&'static str>, Failed>,
    Vec<(String, Duration)>,
    Arc<Mutex<Vec<String>>>,
) {
    struct Dropped(Option<(String, Arc<Mutex<Vec<String>>>)>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            if let Some((name, log)) = self.0.take() {
                log.lock().unwrap().push(name);
            }
        }
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let dropped = Arc::new(Mutex::new(Vec::new()));
    let started = tokio::time::Instant::now();
    let plan = plan(names);
    let script = Arc::new(script);
    let (log, drops) = (calls.clone(), dropped.clone());
    let settings = Settings {
        failover: config(),
        stream: false,
        hedge,
        trace: None,
    };
    let result = run(&plan, &settings, move |d| {
        let (script, log, drops) = (script.clone(), log.clone(), drops.clone());
        async move {
            let name = d.provider_name.to_string();
            log.lock().unwrap().push((name.clone(), started.elapsed()));
            let mut guard = Dropped(Some((name.clone(), drops)));
            let outcome = match script.get(name.as_str()).cloned().flatten() {
                Some(r) => r,
                None => std::future::pending().await,
            };
            guard.0 = None;
            outcome
        }
    })
    .await;
    let calls = calls.lock().unwrap().clone();
    (result, calls, dropped)
}

#[tokio::test(start_paused = true)]
async fn a_hedge_goes_out_after_the_delay_and_the_loser_is_cancelled() {
    let script = Script::from([("a", None), ("b", Some(Ok("hedged")))]);
    let delay = Duration::from_millis(100);
    let (result, calls, dropped) =
        drive_hedged(&["a", "b", "c"], script, Some(Hedge::After(delay))).await;
    let served = result.ok().unwrap();
    assert_eq!(served.value, "hedged");
    assert_eq!(served.attempts.header_value(), "b/m=ok, a/m=hedge_lost");
    assert_eq!(calls.len(), 2, "one hedge, not one per deployment");
    assert_eq!(calls[1].1, delay, "the hedge left at the delay");
    assert_eq!(
        *dropped.lock().unwrap(),
        ["a"],
        "the loser's call was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_that_keeps_losing_its_hedge_opens_its_circuit() {
    let stalled_plan = plan(&["a", "b"]);
    let settings = Settings {
        failover: config(),
        stream: false,
        hedge: Some(Hedge::After(Duration::from_millis(50))),
        trace: None,
    };
    let stalled = |d: Deployment| async move {
        if &*d.provider_name == "a" {
            std::future::pending().await
        } else {
            Ok("hedged")
        }
    };
    // The default breaker opens after five failures in a row.
    for _ in 0..5 {
        let served = run(&stalled_plan, &settings, stalled).await.ok().unwrap();
        assert_eq!(served.attempts.header_value(), "b/m=ok, a/m=hedge_lost");
    }
    let now = tokio::time::Instant::now();
    let state = |p: &[Planned], i: usize| p[i].deployment.health.state(now);
    assert_eq!(state(&stalled_plan, 0), health::CircuitState::Open);
    assert_eq!(state(&stalled_plan, 1), health::CircuitState::Closed);

    // A hedge outrun by the attempt it backed up is not held against it.
    let slow_plan = plan(&["slow", "slower"]);
    for _ in 0..5 {
        let served = run(&slow_plan, &settings, |d: Deployment| async move {
            let wait = if &*d.provider_name == "slow" { 80 } else { 500 };
            tokio::time::sleep(Duration::from_millis(wait)).await;
            Ok("first")
        })
        .await
        .ok()
        .unwrap();
        assert_eq!(
            served.attempts.header_value(),
            "slow/m=ok, slower/m=cancelled"
        );
    }
    let now = tokio::time::Instant::now();
    assert_eq!(state(&slow_plan, 1), health::CircuitState::Closed);
    assert_eq!(slow_plan[1].deployment.health.snapshot(now).error_rate, 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_healthy_first_attempt_merely_slower_than_its_hedge_is_not_a_failure() {
    // `a` answers in 300 ms as it always has (p95 300 ms); the hedge after 100 ms reaches
    // `b`, which answers in 150 ms. `a` is outrun at 250 ms, well within three times its
    // p95: it is slow, not stalled, and its circuit stays closed.
    let plan = plan(&["a", "b"]);
    let now = tokio::time::Instant::now();
    for _ in 0..HEDGE_MIN_SAMPLES {
        plan[0].deployment.health.record(
            health::Outcome::Success {
                latency: Duration::from_millis(300),
                ttft: None,
            },
            now,
        );
    }
    let settings = Settings {
        failover: config(),
        stream: false,
        hedge: Some(Hedge::After(Duration::from_millis(100))),
        trace: None,
    };
    for _ in 0..10 {
        let served = run(&plan, &settings, |d: Deployment| async move {
            let wait = if &*d.provider_name == "a" { 300 } else { 150 };
            tokio::time::sleep(Duration::from_millis(wait)).await;
            Ok(d.provider_name.clone())
        })
        .await
        .ok()
        .unwrap();
        assert_eq!(served.attempts.header_value(), "b/m=ok, a/m=cancelled");
    }
    let now = tokio::time::Instant::now();
    assert_eq!(
        plan[0].deployment.health.state(now),
        health::CircuitState::Closed
    );
    assert_eq!(plan[0].deployment.health.snapshot(now).error_rate, 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_imposed_by_the_deadline_is_not_held_against_the_deployment() {
    let cfg = FailoverConfig {
        deadline: Duration::from_secs(3),
        attempt_timeout: Duration::from_secs(2),
        ..FailoverConfig::default()
    };
    let plan = plan(&["a", "b"]);
    let settings = Settings {
        failover: cfg,
        stream: false,
        hedge: None,
        trace: None,
    };
    let failed = run(&plan, &settings, |_: Deployment| async move {
        std::future::pending::<Result<(), ProviderError>>().await
    })
    .await
    .err()
    .unwrap();
    assert_eq!(failed.attempts.header_value(), "a/m=timeout, b/m=timeout");
    let now = tokio::time::Instant::now();
    // `a` ran its full 2 s: a failure. `b` had the 1 s the deadline left: not one.
    assert!(plan[0].deployment.health.snapshot(now).error_rate > 0.0);
    assert_eq!(plan[1].deployment.health.snapshot(now).error_rate, 0.0);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_when_the_first_answers_in_time_or_the_p95_is_unknown() {
    let script = Script::from([("a", Some(Ok("first"))), ("b", Some(Ok("never")))]);
    let (result, calls, _) = drive_hedged(
        &["a", "b"],
        script,
        Some(Hedge::After(Duration::from_millis(100))),
    )
    .await;
    assert_eq!(result.ok().unwrap().value, "first");
    assert_eq!(calls.len(), 1);

    // On the p95 with no samples yet: no hedge, the attempt runs to its timeout.
    let script = Script::from([("a", None), ("b", Some(Ok("after timeout")))]);
    let (result, calls, _) = drive_hedged(&["a", "b"], script, Some(Hedge::P95)).await;
    let served = result.ok().unwrap();
    assert_eq!(served.attempts.header_value(), "a/m=timeout, b/m=ok");
    let next = calls[1].1 - config().attempt_timeout;
    assert!(
        next <= config().backoff_initial,
        "then the usual backoff: {next:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_hedge_defaults_to_the_first_deployments_live_p95() {
    let plan = plan(&["a", "b"]);
    let now = tokio::time::Instant::now();
    for ms in 1..=100 {
        plan[0].deployment.health.record(
            health::Outcome::Success {
                latency: Duration::from_millis(ms),
                ttft: None,
            },
            now,
        );
    }
    let settings = Settings {
        failover: config(),
        stream: false,
        hedge: Some(Hedge::P95),
        trace: None,
    };
    let started = tokio::time::Instant::now();
    let served = run(&plan, &settings, |d| async move {
        if &*d.provider_name == "a" {
            std::future::pending().await
        } else {
            Ok(started.elapsed())
        }
    })
    .await
    .ok()
    .unwrap();
    assert_eq!(served.value, Duration::from_millis(95), "hedged at the p95");
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_moves_on_without_backoff_and_a_503_backs_off() {
    let script = Script::from([
        ("a", Some(Err(ProviderError::Connect("refused".into())))),
        ("b", Some(Err(status(503)))),
        ("c", Some(Ok("answer"))),
    ]);
    let (result, calls) = drive(&["a", "b", "c"], script, config()).await;
    assert!(result.is_ok());
    assert_eq!(
        calls[1].1 - calls[0].1,
        Duration::ZERO,
        "no pause after a refusal"
    );
    let gap = calls[2].1 - calls[1].1;
    let step = config().backoff_initial * 2;
    assert!(
        gap >= step / 2 && gap <= step,
        "backoff after the 503: {gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deployment_at_its_limit_is_passed_over_and_all_busy_is_a_503() {
    let plan: Vec<Planned> = ["a", "b"]
        .iter()
        .map(|n| {
            let bare = Deployment::bare(n, "m", Arc::new(Scripted));
            let info = crate::routing::DeploymentInfo {
                max_concurrent: Some(1),
                ..(*bare).clone()
            };
            Deployment::new(info).into()
        })
        .collect();
    let settings = Settings {
        failover: config(),
        stream: false,
        hedge: None,
        trace: None,
    };
    let held = plan[0]
        .deployment
        .health
        .lease(Some(1), Admit::Yes)
        .unwrap();
    let served = run(
        &plan,
        &settings,
        |d| async move { Ok(d.provider_name.clone()) },
    )
    .await
    .ok()
    .unwrap();
    assert_eq!(&*served.value, "b");
    assert_eq!(served.attempts.header_value(), "a/m=busy, b/m=ok");
    drop(served);

    let _also_held = plan[1]
        .deployment
        .health
        .lease(Some(1), Admit::Yes)
        .unwrap();
    let failed = run(
        &plan,
        &settings,
        |d| async move { Ok(d.provider_name.clone()) },
    )
    .await
    .err()
    .unwrap();
    assert_eq!(failed.error.spec().status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed.error.retry_after(), Some(OVERLOADED_RETRY_AFTER));
    assert_eq!(failed.attempts.header_value(), "a/m=busy, b/m=busy");
    drop(held);
}
