//! The circuit breaker of one deployment: a state machine over explicit instants.
//!
//! Pure: no clock, no metrics. Each event returns the [`Change`] it made, if any, and
//! [`super::DeploymentHealth`] turns changes into the version bump, gauge, counter and log.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

/// Thresholds for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit; 0 disables this trigger.
    pub failures: u32,
    /// Upstream 429s within `throttle_window` that open the circuit; 0 disables this trigger.
    pub throttles: u32,
    pub throttle_window: Duration,
    /// How long the circuit stays open before a probe may go out.
    pub cool_down: Duration,
    /// After a successful probe, traffic ramps from 10% to all over this long; zero disables.
    pub slow_start: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            throttles: 3,
            throttle_window: Duration::from_secs(10),
            cool_down: Duration::from_secs(60),
            slow_start: Duration::from_secs(30),
        }
    }
}

/// The breaker's answer to "may I send an attempt now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Yes, as the one half-open trial request; record its outcome or release it.
    Probe,
    No,
}

/// The circuit as reported to routing and the admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Serving (in slow start, a share of traffic).
    Closed,
    /// Refusing: `admit` answers No until `open_until`.
    Open,
    /// Probing: the cool-down is over and the next `admit` gets the probe, or the probe is
    /// out and `admit` answers No until its outcome.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    /// The value of the `switchyard_breaker_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

/// Why the circuit opened (the `reason` in the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenReason {
    ConsecutiveFailures,
    Throttled,
    /// A single 429 whose retry-after asks us to hold off, below the throttle threshold.
    RetryAfter,
    ProbeFailed,
}

impl OpenReason {
    pub fn as_str(self) -> &'static str {
        match self {
            OpenReason::ConsecutiveFailures => "consecutive_failures",
            OpenReason::Throttled => "throttled",
            OpenReason::RetryAfter => "retry_after",
            OpenReason::ProbeFailed => "probe_failed",
        }
    }
}

/// What an event did to the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Now refusing traffic for `wait`: a transition to Open.
    Opened { reason: OpenReason, wait: Duration },
    /// Still refusing, but an upstream retry-after pushed the end later.
    Extended,
    /// The probe went out (Open -> HalfOpen).
    Probing,
    /// The probe was abandoned; the next `admit` gets the probe.
    ProbeReleased,
    /// Serving again.
    Closed,
}

/// Waits longer than this (a bogus retry-after, a typo in config) are cut to it, so that
/// instant arithmetic cannot overflow.
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// The share of traffic admitted the moment slow start begins.
const RAMP_FLOOR: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Serving. `ramp_from` is when the last probe succeeded, while slow start lasts.
    Closed { ramp_from: Option<Instant> },
    /// Refusing until `until`; after it, the next `admit` gets the probe.
    Open { until: Instant },
    /// One probe in flight. `until` is the cool-down it ended, restored if it is released.
    HalfOpen { until: Instant },
}

#[derive(Debug)]
pub(super) struct Breaker {
    config: BreakerConfig,
    state: State,
    /// Failures since the last success (Closed only).
    failures: u32,
    /// When recent 429s arrived, oldest first; at most `config.throttles` kept.
    throttles: VecDeque<Instant>,
    /// An upstream retry-after received while Closed: refuse until then.
    hold_until: Option<Instant>,
}

impl Breaker {
    pub(super) fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            state: State::Closed { ramp_from: None },
            failures: 0,
            throttles: VecDeque::with_capacity(config.throttles as usize),
            hold_until: None,
        }
    }

    /// New thresholds; the state, counts and deadlines already set are kept.
    pub(super) fn set_config(&mut self, config: BreakerConfig) {
        self.config = config;
        let keep = config.throttles as usize;
        while self.throttles.len() > keep {
            self.throttles.pop_front();
        }
        // So that recording a 429 never allocates.
        self.throttles
            .reserve(keep.saturating_sub(self.throttles.len()));
    }

    pub(super) fn on_success(&mut self, now: Instant) -> Option<Change> {
        match self.state {
            State::Closed { .. } => {
                self.failures = 0;
                self.expire_hold(now)
            }
            // A late answer to a request sent before the circuit opened: the probe decides.
            State::Open { .. } => None,
            State::HalfOpen { .. } => {
                let ramp_from = (!self.config.slow_start.is_zero()).then_some(now);
                self.close(ramp_from);
                Some(Change::Closed)
            }
        }
    }

    pub(super) fn on_failure(&mut self, now: Instant) -> Option<Change> {
        match self.state {
            State::Closed { .. } => {
                let expired = self.expire_hold(now);
                self.failures = self.failures.saturating_add(1);
                if self.config.failures > 0 && self.failures >= self.config.failures {
                    return Some(self.open(now, OpenReason::ConsecutiveFailures));
                }
                expired
            }
            State::Open { .. } => None,
            State::HalfOpen { .. } => Some(self.open(now, OpenReason::ProbeFailed)),
        }
    }

    pub(super) fn on_throttle(
        &mut self,
        now: Instant,
        retry_after: Option<Duration>,
    ) -> Option<Change> {
        let asked = retry_after.map(|wait| later(now, wait));
        match self.state {
            State::Closed { .. } => {
                let expired = self.expire_hold(now);
                let was_held = self.hold_until.is_some();
                self.hold_until = self.hold_until.max(asked);
                if self.note_throttle(now) {
                    return Some(self.open(now, OpenReason::Throttled));
                }
                match self.hold_until {
                    Some(until) if !was_held => Some(Change::Opened {
                        reason: OpenReason::RetryAfter,
                        wait: until.saturating_duration_since(now),
                    }),
                    Some(until) if asked == Some(until) => Some(Change::Extended),
                    _ => expired,
                }
            }
            State::Open { until } => {
                let extended = until.max(asked.unwrap_or(until));
                self.state = State::Open { until: extended };
                (extended > until).then_some(Change::Extended)
            }
            State::HalfOpen { .. } => {
                self.hold_until = asked;
                Some(self.open(now, OpenReason::ProbeFailed))
            }
        }
    }

    /// The gate before an attempt; `draw` is uniform in `0..1`, used only during slow start.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        draw: impl FnOnce() -> f64,
    ) -> (Admit, Option<Change>) {
        match self.state {
            State::Closed { ramp_from } => {
                if self.hold_until.is_some_and(|until| now < until) {
                    return (Admit::No, None);
                }
                let expired = self.expire_hold(now);
                let admit = match ramp_from {
                    None => Admit::Yes,
                    Some(_) => {
                        let ramp = self.ramp(now);
                        if ramp >= 1.0 {
                            self.state = State::Closed { ramp_from: None };
                            Admit::Yes
                        } else if draw() < ramp {
                            Admit::Yes
                        } else {
                            Admit::No
                        }
                    }
                };
                (admit, expired)
            }
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { until };
                (Admit::Probe, Some(Change::Probing))
            }
            State::Open { .. } | State::HalfOpen { .. } => (Admit::No, None),
        }
    }

    pub(super) fn release_probe(&mut self) -> Option<Change> {
        match self.state {
            State::HalfOpen { until } => {
                self.state = State::Open { until };
                Some(Change::ProbeReleased)
            }
            State::Closed { .. } | State::Open { .. } => None,
        }
    }

    /// The probe is out: only its outcome moves the circuit.
    pub(super) fn probing(&self) -> bool {
        matches!(self.state, State::HalfOpen { .. })
    }

    pub(super) fn state(&self, now: Instant) -> CircuitState {
        match self.state {
            State::Closed { .. } if self.held(now).is_some() => CircuitState::Open,
            State::Closed { .. } => CircuitState::Closed,
            // Reported ahead of the transition so that routing, which skips Open circuits,
            // still asks `admit` and the probe can go out.
            State::Open { until } if now >= until => CircuitState::HalfOpen,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// While the circuit reads Open: when the cool-down or upstream retry-after ends.
    pub(super) fn open_until(&self, now: Instant) -> Option<Instant> {
        match self.state {
            State::Closed { .. } => self.held(now),
            State::Open { until } => (now < until).then_some(until),
            State::HalfOpen { .. } => None,
        }
    }

    /// The share of traffic `admit` lets through: 1 when fully closed, rising linearly from
    /// 0.1 during slow start, 0 while refusing (open, held, or the probe out).
    pub(super) fn ramp(&self, now: Instant) -> f64 {
        match self.state {
            State::Closed { .. } if self.held(now).is_some() => 0.0,
            State::Closed {
                ramp_from: Some(from),
            } if !self.config.slow_start.is_zero() => {
                let elapsed = now.saturating_duration_since(from).as_secs_f64();
                let progress = (elapsed / self.config.slow_start.as_secs_f64()).min(1.0);
                RAMP_FLOOR + (1.0 - RAMP_FLOOR) * progress
            }
            State::Closed { .. } => 1.0,
            State::Open { .. } | State::HalfOpen { .. } => 0.0,
        }
    }

    fn held(&self, now: Instant) -> Option<Instant> {
        self.hold_until.filter(|until| now < *until)
    }

    /// Forgets a retry-after hold that has run out; the circuit reads Closed again.
    fn expire_hold(&mut self, now: Instant) -> Option<Change> {
        match self.hold_until {
            Some(until) if now >= until => {
                self.hold_until = None;
                Some(Change::Closed)
            }
            _ => None,
        }
    }

    /// Notes a 429 at `now`; true when that makes `throttles` within the window.
    fn note_throttle(&mut self, now: Instant) -> bool {
        let threshold = self.config.throttles as usize;
        if threshold == 0 {
            return false;
        }
        let window = self.config.throttle_window;
        while self
            .throttles
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= window)
        {
            self.throttles.pop_front();
        }
        if self.throttles.len() >= threshold {
            self.throttles.pop_front();
        }
        self.throttles.push_back(now);
        self.throttles.len() >= threshold
    }

    /// To Open for a fresh cool-down, or longer if upstream asked to wait longer.
    fn open(&mut self, now: Instant, reason: OpenReason) -> Change {
        let until = later(now, self.config.cool_down).max(self.hold_until.unwrap_or(now));
        self.state = State::Open { until };
        self.failures = 0;
        self.throttles.clear();
        self.hold_until = None;
        Change::Opened {
            reason,
            wait: until.saturating_duration_since(now),
        }
    }

    fn close(&mut self, ramp_from: Option<Instant>) {
        self.state = State::Closed { ramp_from };
        self.failures = 0;
        self.throttles.clear();
        self.hold_until = None;
    }
}

fn later(now: Instant, wait: Duration) -> Instant {
    // Overflow needs a wait of centuries; MAX_WAIT rules that out.
    now.checked_add(wait.min(MAX_WAIT)).unwrap_or(now)
}

#[cfg(test)]
mod tests;
