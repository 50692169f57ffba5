//! The chaos suite (issue 5): three simulated providers behind one model, each scenario
//! under a steady concurrent load over real sockets, every request bounded in time.
//!
//! Each scenario counts its requests (served, broken after commit, failed, hung), measures
//! the latency failover added over a healthy baseline, and checks what the config implies:
//! every request that could be served was, none hung, the added latency stayed within its
//! bound, the breakers of the failing deployments opened (and only theirs), and the alerts
//! followed. The suite prints one markdown table, the one in docs/resilience.md's "Chaos suite":
//! `cargo nextest run --test chaos --no-capture`.
//!
//! # The latency bound
//!
//! A request that meets `f` failing deployments before a healthy one waits out `f` backoff
//! pauses, each at most `backoff_max_ms`, and `f` failed attempts. In every scenario at
//! most one of those attempts is slow (the stalled or degrading deployment, bounded by its
//! time-to-first-token or attempt timeout); the others fail fast (refused connection, 503,
//! 429, reset: well under a millisecond on loopback), so together they fit in one attempt's
//! time limit. Hence the bound the issue states, per request:
//!
//! ```text
//! added <= f * backoff_max + one attempt's time limit
//! ```
//!
//! "Added" is measured against the healthy baseline: a served request's latency may exceed
//! the slowest healthy request of its kind (JSON or stream) by at most that bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a test fails loudly, and this one prints its table"
)]

#[path = "../common/mod.rs"]
mod common;

mod checks;
mod run;
mod table;

use std::time::Duration;

use checks::{
    Checks, broken_streams, degrading, hedged_stall, judge, quiet, recovering, stall, storm,
};
use run::{Ran, run};
use table::{Baseline, Table};
use tokio::time::Instant;

/// Clients sending at once, each one request at a time and at most one per `PACE`: a
/// steady ~400 requests/s that leaves the 2-core machine room to measure latency.
const CONCURRENCY: usize = 8;
const PACE: Duration = Duration::from_millis(20);
/// How long each scenario's load runs.
const RUN: Duration = Duration::from_millis(2500);

// `[failover]`: short timeouts and cool-downs so the suite is quick.
const ATTEMPT_TIMEOUT_MS: u64 = 400;
const DEADLINE_MS: u64 = 2000;
const CONNECT_TIMEOUT_MS: u64 = 100;
const BACKOFF_INITIAL_MS: u64 = 25;
const BACKOFF_MAX_MS: u64 = 100;
// `[breaker]`
const FAILURES: u64 = 3;
const THROTTLES: u64 = 3;
const THROTTLE_WINDOW_MS: u64 = 1000;
const COOL_DOWN_MS: u64 = 1000;
const SLOW_START_MS: u64 = 1000;

/// A request without a complete answer this long after it was sent has hung. The deadline
/// bounds the search for a deployment; once found, every answer here takes a few ms.
const CLIENT_LIMIT: Duration = Duration::from_millis(DEADLINE_MS + 500);
/// How often the admin endpoint and the mocks' counters are sampled.
const WATCH_EVERY: Duration = Duration::from_millis(50);
const ADMIN_KEY: &str = "chaos-suite-admin-key";
const MODEL: &str = "gpt-4o-mini";
const LETTERS: [&str; 3] = ["a", "b", "c"];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How a simulated provider starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    Healthy,
    /// Connection refused: a port held (bound, never listening) for the scenario, so no
    /// other socket of the suite can take it.
    Dead,
    /// The mock's default fault.
    Fault(&'static str),
}

/// Which requests the clients send.
#[derive(Debug, Clone, Copy)]
enum Mix {
    /// JSON and streams, alternately.
    Both,
    /// Streams only: the fault only affects streams.
    Streams,
}

struct Scenario {
    name: &'static str,
    /// Provider names start with it: metrics are process-wide, so each scenario's
    /// deployments need ids of their own.
    key: &'static str,
    providers: [Start; 3],
    /// Extra keys in each deployment's inline table.
    deployment_keys: [&'static str; 3],
    /// `[[models]] alert_p95_ms`.
    alert_p95_ms: Option<u64>,
    /// `[[models]] hedge_delay_ms`.
    hedge_delay_ms: Option<u64>,
    mix: Mix,
    run: Duration,
    /// Faults changed while the load runs: when, which provider, the new spec.
    script: Vec<(Duration, usize, &'static str)>,
    /// The deployments whose breaker must open; the others must stay closed throughout.
    failing: Vec<usize>,
    /// Failed attempts a request may meet before a healthy deployment (`f` in the bound).
    failing_ahead: u32,
    /// The longest one failed attempt may take: (JSON, stream).
    slow_attempt: (Duration, Duration),
    /// Streams broken after commit are expected here (bounded by the breaker).
    broken: bool,
    /// The breaker caps the failures each failing deployment causes (see `check_common`).
    failure_budget: bool,
    extra: fn(&Scenario, &Ran, &Baseline, &mut Checks),
}

impl Scenario {
    /// Three healthy providers; the scenarios change what they need.
    fn healthy(name: &'static str, key: &'static str) -> Scenario {
        let attempt = ms(ATTEMPT_TIMEOUT_MS);
        Scenario {
            name,
            key,
            providers: [Start::Healthy; 3],
            deployment_keys: [""; 3],
            alert_p95_ms: None,
            hedge_delay_ms: None,
            mix: Mix::Both,
            run: RUN,
            script: Vec::new(),
            failing: Vec::new(),
            failing_ahead: 1,
            slow_attempt: (attempt, attempt),
            broken: false,
            failure_budget: true,
            extra: |_, _, _, _| {},
        }
    }

    /// The most failover may add to one request (see the module doc).
    fn bound(&self, stream: bool) -> Duration {
        let attempt = if stream {
            self.slow_attempt.1
        } else {
            self.slow_attempt.0
        };
        ms(BACKOFF_MAX_MS) * self.failing_ahead + attempt
    }
}

/// The scenarios the issue names, in its order (plus a stream cut before any content,
/// the case that still fails over).
fn scenarios() -> Vec<Scenario> {
    let attempt = ms(ATTEMPT_TIMEOUT_MS);
    vec![
        Scenario {
            providers: [Start::Dead, Start::Healthy, Start::Healthy],
            failing: vec![0],
            ..Scenario::healthy("one dead (connection refused)", "dead1")
        },
        Scenario {
            providers: [Start::Dead, Start::Dead, Start::Healthy],
            failing: vec![0, 1],
            // Two refused connects and two pauses before the healthy third.
            failing_ahead: 2,
            ..Scenario::healthy("two dead (connection refused)", "dead2")
        },
        Scenario {
            providers: [
                Start::Fault("status=503"),
                Start::Fault("status=503"),
                Start::Healthy,
            ],
            failing: vec![0, 1],
            failing_ahead: 2,
            ..Scenario::healthy("two answering 503", "s503")
        },
        Scenario {
            // A retry-after longer than the cool-down, so honouring it shows.
            providers: [
                Start::Fault("status=429,retry_after=2"),
                Start::Fault("status=429,retry_after=2"),
                Start::Healthy,
            ],
            failing: vec![0, 1],
            failing_ahead: 2,
            // 429s hold the deployment rather than count as failures: checked in `storm`.
            failure_budget: false,
            extra: storm,
            ..Scenario::healthy("429 storm, retry-after 2 s", "s429")
        },
        Scenario {
            // Reset after the role chunk and two content chunks: mid-stream, after the
            // gateway committed to the stream at its first content chunk, so it cannot
            // fail over and ends the stream with an error event.
            providers: [
                Start::Fault("reset_after_chunks=3"),
                Start::Healthy,
                Start::Healthy,
            ],
            mix: Mix::Streams,
            failing: vec![0],
            broken: true,
            extra: broken_streams,
            ..Scenario::healthy("reset mid-stream (after 3 chunks)", "reset")
        },
        Scenario {
            // Stalls 5 s before its first byte: streams give up at the deployment's
            // time-to-first-token limit, JSON at the attempt timeout.
            providers: [
                Start::Fault("latency_ms=5000"),
                Start::Healthy,
                Start::Healthy,
            ],
            deployment_keys: ["ttft_timeout_ms = 200", "", ""],
            failing: vec![0],
            slow_attempt: (attempt, ms(200)),
            extra: stall,
            ..Scenario::healthy("stall before first byte", "stall")
        },
        Scenario {
            // The same stall with the model hedged: the next deployment is asked after
            // `HEDGE_DELAY_MS` instead of waiting out the stall, and the stalled one, outrun
            // every time, still opens its circuit (a first attempt that loses its hedge is
            // a failure). The bound checked is the unhedged one; the table shows what the
            // hedge makes of it (added ≈ the delay), and `hedged_stall` that no attempt
            // was left to time out.
            providers: [
                Start::Fault("latency_ms=5000"),
                Start::Healthy,
                Start::Healthy,
            ],
            deployment_keys: ["ttft_timeout_ms = 200", "", ""],
            hedge_delay_ms: Some(HEDGE_DELAY_MS),
            failing: vec![0],
            slow_attempt: (attempt, ms(200)),
            extra: hedged_stall,
            ..Scenario::healthy("stall before first byte, hedged after 50 ms", "hedge")
        },
        Scenario {
            // Role chunk and two content chunks, then a clean end of body without `[DONE]`:
            // after commit, so the stream must end with an error event, not a clean end.
            providers: [
                Start::Fault("cut_after_chunks=3"),
                Start::Healthy,
                Start::Healthy,
            ],
            mix: Mix::Streams,
            failing: vec![0],
            broken: true,
            extra: broken_streams,
            ..Scenario::healthy("cut after 3 chunks (after content)", "cut3")
        },
        Scenario {
            // Only the role chunk, then the end: no content yet, so this fails over.
            providers: [
                Start::Fault("cut_after_chunks=1"),
                Start::Healthy,
                Start::Healthy,
            ],
            mix: Mix::Streams,
            failing: vec![0],
            ..Scenario::healthy("cut after 1 chunk (before content)", "cut1")
        },
        Scenario {
            // +60 ms every 250 ms: past the deployment's 250 ms timeout from the fifth
            // step (300 ms, at 1.25 s) on.
            deployment_keys: [DEGRADING_TIMEOUT, "", ""],
            alert_p95_ms: Some(ALERT_P95_MS),
            script: (1..=9)
                .map(|k| (ms(250 * k), 0, DEGRADING_STEPS[k as usize - 1]))
                .collect(),
            failing: vec![0],
            slow_attempt: (ms(250), ms(250)),
            // Slow answers (within the timeout) interleave with timeouts as the latency
            // crosses it and reset the failure run, so no exact budget; `degrading` checks.
            failure_budget: false,
            extra: degrading,
            ..Scenario::healthy("slowly degrading latency", "slow")
        },
        Scenario {
            providers: [Start::Fault("status=503"), Start::Healthy, Start::Healthy],
            script: vec![(RECOVER_AT, 0, "")],
            run: ms(3000),
            failing: vec![0],
            extra: recovering,
            ..Scenario::healthy("recovering (breaker closes, slow start)", "recover")
        },
    ]
}

const DEGRADING_TIMEOUT: &str = "timeout_ms = 250";
const DEGRADING_STEPS: [&str; 9] = [
    "latency_ms=60",
    "latency_ms=120",
    "latency_ms=180",
    "latency_ms=240",
    "latency_ms=300",
    "latency_ms=360",
    "latency_ms=420",
    "latency_ms=480",
    "latency_ms=540",
];
/// The step (from 0) at which the degrading provider's latency first exceeds its 250 ms
/// timeout: 300 ms, at 1.25 s.
const DEGRADED_STEP: usize = 4;
const ALERT_P95_MS: u64 = 150;
const HEDGE_DELAY_MS: u64 = 50;
/// When the recovering provider's fault is cleared: before its first probe is due (a
/// cool-down after it opened, at the start).
const RECOVER_AT: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_suite() {
    let suite = Instant::now();
    let healthy = Scenario {
        alert_p95_ms: Some(ALERT_P95_MS),
        failing_ahead: 0,
        slow_attempt: (Duration::ZERO, Duration::ZERO),
        extra: quiet,
        ..Scenario::healthy("healthy baseline", "base")
    };
    let ran = run(&healthy).await;
    let baseline = Baseline::measure(&ran);
    let mut failures = Vec::new();
    let mut table = Table::default();
    table.row(&healthy, &ran, &baseline);
    failures.extend(judge(&healthy, &ran, &baseline, suite));

    for scenario in scenarios() {
        let started = Instant::now();
        let ran = run(&scenario).await;
        table.row(&scenario, &ran, &baseline);
        failures.extend(judge(&scenario, &ran, &baseline, started));
    }

    println!(
        "\n{}\nBaseline (3 healthy): JSON p50 {:.1} ms, max {:.1} ms; stream p50 {:.1} ms, \
         max {:.1} ms. Suite: {:.1} s.\n",
        table.0,
        baseline.json.p50,
        baseline.json.max,
        baseline.stream.p50,
        baseline.stream.max,
        suite.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
