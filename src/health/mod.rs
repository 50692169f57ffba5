//! Live health of each deployment (`"provider/model"`): statistics and a circuit breaker,
//! kept in a [`Registry`] that outlives config reloads.
//!
//! # The breaker
//!
//! ```text
//!        a success resets the failure run
//!               +-----+
//!               |     v
//!     +--------------------+  `failures` failures in a row, or
//!     |       Closed       |  `throttles` 429s within `throttle_window`
//!     | admit: Yes; during |--------------------------------------------+
//!     | slow start, Yes    |                                            |
//!     | with p = ramp      |                                            v
//!     +--------------------+                                  +--------------------+
//!               ^                                             |        Open        |
//!               | the probe succeeds:                         | admit: No until    |
//!               | slow start begins, ramp                     | the cool-down ends |
//!               | 0.1 -> 1 over `slow_start`                  | (or a retry-after, |
//!               |                                             | if later)          |
//!     +--------------------+    cool-down over: the first     +--------------------+
//!     |      HalfOpen      |<------- admit gets Probe ---------------+    ^
//!     | one probe out;     |                                            |
//!     | admit: No          |-------- the probe fails or gets a 429: ----+
//!     +--------------------+         a fresh cool-down.
//!                                    release_probe: back, probe still due
//! ```
//!
//! Once the cool-down is over the circuit already reads HalfOpen (the probe is due), so that
//! routing, which skips Open circuits, still asks `admit`; the transition itself happens in
//! `admit`.
//!
//! A 429 with retry-after that leaves the circuit Closed (below the threshold) still holds
//! admission until that instant passes; the circuit reads Open meanwhile. A 429 with
//! retry-after while Open keeps it open at least that long. A 429 neither breaks nor extends
//! the failure run; it counts in the throttle window. Outcomes recorded while Open are
//! answers to requests sent before it opened and leave the circuit alone; so are those
//! recorded while HalfOpen, except the probe's own, recorded through its [`Lease`].
//!
//! Every transition to Open counts in `switchyard_breaker_open_total{deployment}` and logs a
//! warning with the reason; `switchyard_breaker_state{deployment}` is 0 closed, 1 half-open,
//! 2 open.
//!
//! Time is passed in, never read here: callers pass `tokio::time::Instant::now()`,
//! tests pass a base instant plus durations.

mod breaker;
mod stats;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, RwLock,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

pub use breaker::{Admit, BreakerConfig, CircuitState};

use breaker::{Breaker, Change};
use stats::Stats;

/// The health of every deployment seen, by id; one per gateway process, kept across reloads.
pub struct Registry {
    inner: RwLock<Inner>,
    on_open: OnOpen,
}

/// Told `(deployment id, reason)` whenever a circuit opens (the alerts hook).
pub type OpenListener = Arc<dyn Fn(&str, &str) + Send + Sync>;
type OnOpen = Arc<std::sync::OnceLock<OpenListener>>;

struct Inner {
    config: BreakerConfig,
    deployments: BTreeMap<String, Arc<DeploymentHealth>>,
    models: BTreeMap<String, Arc<ModelLatency>>,
}

impl Registry {
    pub fn new(config: BreakerConfig) -> Registry {
        Registry {
            on_open: OnOpen::default(),
            inner: RwLock::new(Inner {
                config,
                deployments: BTreeMap::new(),
                models: BTreeMap::new(),
            }),
        }
    }

    /// The health of `id`: the same `Arc` for the same id for the life of the registry.
    /// Calls `listener` whenever a circuit opens. Set once.
    pub fn on_open(&self, listener: OpenListener) {
        let _ = self.on_open.set(listener);
    }

    pub fn deployment(&self, id: &str) -> Arc<DeploymentHealth> {
        if let Some(found) = read(&self.inner).deployments.get(id) {
            return found.clone();
        }
        let mut inner = write(&self.inner);
        let config = inner.config;
        inner
            .deployments
            .entry(id.to_owned())
            .or_insert_with(|| {
                let health = DeploymentHealth::new(id, config, self.on_open.clone());
                metrics::gauge!("switchyard_breaker_state", "deployment" => health.id.clone())
                    .set(CircuitState::Closed.gauge());
                Arc::new(health)
            })
            .clone()
    }

    /// The answered-request latency of the model callers name `name`: the same `Arc` for
    /// the same name for the life of the registry.
    pub fn model_latency(&self, name: &str) -> Arc<ModelLatency> {
        if let Some(found) = read(&self.inner).models.get(name) {
            return found.clone();
        }
        write(&self.inner)
            .models
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(ModelLatency::new()))
            .clone()
    }

    /// New thresholds for every deployment, now and later; circuit states are kept.
    pub fn set_config(&self, config: BreakerConfig) {
        let mut inner = write(&self.inner);
        inner.config = config;
        for health in inner.deployments.values() {
            lock(&health.breaker).set_config(config);
        }
    }

    /// Every deployment, sorted by id.
    pub fn all(&self) -> Vec<(String, Arc<DeploymentHealth>)> {
        read(&self.inner)
            .deployments
            .iter()
            .map(|(id, health)| (id.clone(), health.clone()))
            .collect()
    }
}

/// The latency callers of one model see (to the answer, or the first content chunk of a
/// stream, failover included), watched against the model's `alert_p95_ms`.
pub struct ModelLatency {
    stats: Stats,
    /// The p95 was above the threshold at the last check: the alert is raised on crossing.
    above: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ModelLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelLatency {{ p95_ms: {} }}", self.p95_ms())
    }
}

/// The p95 is not judged on fewer samples than this.
const P95_MIN_SAMPLES: u64 = 20;
/// The p95 is recomputed every this many samples (it sorts the window).
const P95_EVERY: u64 = 8;

impl ModelLatency {
    fn new() -> ModelLatency {
        ModelLatency {
            stats: Stats::new(),
            above: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Records one answered request. Returns the p95 when this sample made it cross
    /// `threshold` upward; it must fall back below before it is reported again.
    pub fn observe(&self, latency: Duration, threshold: Duration) -> Option<Duration> {
        let samples = self.stats.success_counted(latency);
        if samples < P95_MIN_SAMPLES || !samples.is_multiple_of(P95_EVERY) {
            return None;
        }
        let p95 = Duration::from_secs_f64(self.stats.figures().p95_ms / 1000.0);
        let above = p95 > threshold;
        let was = self.above.swap(above, Ordering::AcqRel);
        (above && !was).then_some(p95)
    }

    /// The p95 over the last 256 answered requests, in ms; 0 with none.
    pub fn p95_ms(&self) -> f64 {
        self.stats.figures().p95_ms
    }
}

/// How an attempt ended, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Success {
        latency: Duration,
        /// Time to first token, for streams.
        ttft: Option<Duration>,
    },
    /// A stream whose first token was noted ([`Lease::first_token`]) ended cleanly: a
    /// success for the circuit, no new latency sample.
    Completed,
    /// Transport error, 5xx, timeout or malformed answer. The latency is not sampled: the
    /// latency figures describe answers.
    Failure { latency: Duration },
    /// Upstream 429.
    Throttled { retry_after: Option<Duration> },
}

/// A point-in-time view of one deployment, for routing and the admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Latency EWMA of successful attempts; 0 with no samples.
    pub ewma_ms: f64,
    /// p95 latency of the last 256 successful attempts; 0 with no samples.
    pub p95_ms: f64,
    /// EWMA of time to first token (streams); 0 with none.
    pub ttft_ms: f64,
    /// EWMA of failure (1) / success (0), throttles counting as failures.
    pub error_rate: f64,
    /// Successful attempts recorded.
    pub samples: u64,
    pub circuit: CircuitState,
    /// While Open: when the cool-down or upstream retry-after ends.
    pub open_until: Option<Instant>,
    /// Share of traffic admitted: 1 when fully closed, 0.1 -> 1 in slow start, 0 otherwise.
    pub ramp: f64,
    /// Attempts in flight now (streams until they end).
    pub in_flight: u32,
}

/// Live health of one deployment.
pub struct DeploymentHealth {
    id: Arc<str>,
    stats: Stats,
    breaker: Mutex<Breaker>,
    version: AtomicU64,
    on_open: OnOpen,
    in_flight: AtomicU32,
}

/// One attempt's hold on its deployment: counted in the deployment's in-flight figure, and
/// carrying the half-open probe when it is the probe, until dropped (a stream's when the
/// stream ends). Outcomes recorded through the lease are the probe's; a lease dropped with
/// its probe unanswered releases it, so the next request may probe.
pub struct Lease {
    health: Arc<DeploymentHealth>,
    probe: bool,
}

impl Lease {
    /// Records how the attempt ended, as the probe's outcome when this lease is the probe.
    pub fn record(&mut self, outcome: Outcome, now: Instant) {
        self.health.record_as(outcome, now, self.probe);
        self.probe = false;
    }

    /// A stream's first content chunk: sampled for the latency figures. The breaker hears
    /// how the stream ends ([`Outcome::Completed`] or a failure), except for a probe: its
    /// first token answers it (the circuit closes into slow start), so a long generation
    /// does not hold the circuit half-open; its end is then an ordinary outcome.
    pub fn first_token(&mut self, ttft: Duration, now: Instant) {
        if self.probe {
            self.record(
                Outcome::Success {
                    latency: ttft,
                    ttft: Some(ttft),
                },
                now,
            );
        } else {
            self.health.stats.success(ttft, Some(ttft));
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.probe {
            self.health.release_probe();
        }
        self.health.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl DeploymentHealth {
    fn new(id: &str, config: BreakerConfig, on_open: OnOpen) -> DeploymentHealth {
        DeploymentHealth {
            id: Arc::from(id),
            stats: Stats::new(),
            breaker: Mutex::new(Breaker::new(config)),
            version: AtomicU64::new(0),
            on_open,
            in_flight: AtomicU32::new(0),
        }
    }

    /// Takes an in-flight slot for an attempt that [`DeploymentHealth::admit`] let through
    /// with `admitted` (the probe, when it answered [`Admit::Probe`]), unless `limit`
    /// attempts are in flight already; then a probe is released and `None` returned.
    pub fn lease(self: &Arc<Self>, limit: Option<u32>, admitted: Admit) -> Option<Lease> {
        let probe = admitted == Admit::Probe;
        let limit = limit.unwrap_or(u32::MAX);
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            if probe {
                self.release_probe();
            }
            return None;
        }
        Some(Lease {
            health: self.clone(),
            probe,
        })
    }

    /// `"provider/model"`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records how an attempt that was not the probe ended, `now` being when it did. While
    /// the probe is out, such outcomes feed the statistics but not the circuit: they answer
    /// requests sent before it opened (a lease records the probe's own).
    pub fn record(&self, outcome: Outcome, now: Instant) {
        self.record_as(outcome, now, false);
    }

    fn record_as(&self, outcome: Outcome, now: Instant, probe: bool) {
        match outcome {
            Outcome::Success { latency, ttft } => self.stats.success(latency, ttft),
            Outcome::Completed => {}
            Outcome::Failure { .. } | Outcome::Throttled { .. } => self.stats.failure(),
        }
        self.apply(|b| {
            if b.probing() && !probe {
                return None;
            }
            match outcome {
                Outcome::Success { .. } | Outcome::Completed => b.on_success(now),
                Outcome::Failure { .. } => b.on_failure(now),
                Outcome::Throttled { retry_after } => b.on_throttle(now, retry_after),
            }
        });
    }

    /// The breaker's gate, asked before an attempt. Closed: Yes (in slow start, Yes with
    /// probability `ramp`). Open: No until the cool-down is over, then Probe to the first
    /// caller (the circuit goes HalfOpen) and No to the rest until the probe's outcome is
    /// recorded or it is released.
    pub fn admit(&self, now: Instant) -> Admit {
        let mut answer = Admit::No;
        self.apply(|b| {
            let (admit, change) = b.admit(now, fastrand::f64);
            answer = admit;
            change
        });
        answer
    }

    /// The probe was abandoned (the caller cancelled): the next `admit` may probe.
    pub fn release_probe(&self) {
        self.apply(Breaker::release_probe);
    }

    pub fn state(&self, now: Instant) -> CircuitState {
        lock(&self.breaker).state(now)
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let (circuit, open_until, ramp) = {
            let b = lock(&self.breaker);
            (b.state(now), b.open_until(now), b.ramp(now))
        };
        let f = self.stats.figures();
        Snapshot {
            ewma_ms: f.ewma_ms,
            p95_ms: f.p95_ms,
            ttft_ms: f.ttft_ms,
            error_rate: f.error_rate,
            samples: f.samples,
            circuit,
            open_until,
            ramp,
            in_flight: self.in_flight.load(Ordering::Acquire),
        }
    }

    /// The p50 and p95 latency of the last 256 successful attempts, in ms (0 with none).
    /// Sorts a copy of the window: for the status page, not for routing.
    pub fn latency_percentiles(&self) -> (f64, f64) {
        self.stats.percentiles()
    }

    /// Bumped on every change to the circuit made by `record`, `admit` or `release_probe`.
    /// A cached snapshot also goes stale by itself at `open_until` and while `ramp < 1`.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Runs `event` on the breaker; reports any change once the lock is released.
    fn apply(&self, event: impl FnOnce(&mut Breaker) -> Option<Change>) {
        let change = {
            let mut breaker = lock(&self.breaker);
            let change = event(&mut breaker);
            if change.is_some() {
                // Inside the lock, so a version never runs ahead of the state it names.
                self.version.fetch_add(1, Ordering::Release);
            }
            change
        };
        if let Some(change) = change {
            self.report(change);
        }
    }

    fn report(&self, change: Change) {
        let state = match change {
            Change::Opened { reason, wait } => {
                metrics::counter!("switchyard_breaker_open_total", "deployment" => self.id.clone())
                    .increment(1);
                tracing::warn!(
                    deployment = %self.id,
                    reason = reason.as_str(),
                    open_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "circuit opened"
                );
                if let Some(listener) = self.on_open.get() {
                    listener(&self.id, reason.as_str());
                }
                CircuitState::Open
            }
            Change::Extended => CircuitState::Open,
            // A released probe leaves the cool-down over: the circuit reads HalfOpen.
            Change::Probing | Change::ProbeReleased => CircuitState::HalfOpen,
            Change::Closed => {
                tracing::info!(deployment = %self.id, "circuit closed");
                CircuitState::Closed
            }
        };
        metrics::gauge!("switchyard_breaker_state", "deployment" => self.id.clone())
            .set(state.gauge());
    }
}

/// Locks, carrying on past a poisoned lock: every critical section here leaves the data
/// consistent at each step, so a panic elsewhere does not make it unsafe to read.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read(lock: &RwLock<Inner>) -> std::sync::RwLockReadGuard<'_, Inner> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(lock: &RwLock<Inner>) -> std::sync::RwLockWriteGuard<'_, Inner> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
