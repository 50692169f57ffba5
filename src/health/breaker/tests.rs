//! The breaker's state diagram, edge by edge, on explicit instants.

use super::*;

const COOL_DOWN: Duration = Duration::from_secs(60);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Defaults: 5 failures, 3 throttles in 10 s, 60 s cool-down, 30 s slow start.
fn breaker() -> Breaker {
    Breaker::new(BreakerConfig::default())
}

fn admit(b: &mut Breaker, now: Instant) -> Admit {
    b.admit(now, || 0.0).0
}

fn fail(b: &mut Breaker, now: Instant, times: u32) -> Option<Change> {
    let mut last = None;
    for _ in 0..times {
        last = b.on_failure(now);
    }
    last
}

fn opened(reason: OpenReason, wait: Duration) -> Option<Change> {
    Some(Change::Opened { reason, wait })
}

/// Opens at `t0` by failures and sends the probe at the end of the cool-down.
fn probing(t0: Instant) -> (Breaker, Instant) {
    let mut b = breaker();
    fail(&mut b, t0, 5);
    let t = t0 + COOL_DOWN;
    assert_eq!(b.admit(t, || 0.0), (Admit::Probe, Some(Change::Probing)));
    (b, t)
}

#[test]
fn defaults_are_the_documented_ones() {
    assert_eq!(
        BreakerConfig::default(),
        BreakerConfig {
            failures: 5,
            throttles: 3,
            throttle_window: secs(10),
            cool_down: secs(60),
            slow_start: secs(30),
        }
    );
}

#[test]
fn state_names_and_gauge_values() {
    assert_eq!(CircuitState::Closed.as_str(), "closed");
    assert_eq!(CircuitState::Open.as_str(), "open");
    assert_eq!(CircuitState::HalfOpen.as_str(), "half_open");
    assert_eq!(CircuitState::Closed.gauge(), 0.0);
    assert_eq!(CircuitState::HalfOpen.gauge(), 1.0);
    assert_eq!(CircuitState::Open.gauge(), 2.0);
}

#[test]
fn a_new_breaker_is_closed_and_admits() {
    let t0 = Instant::now();
    let mut b = breaker();
    assert_eq!(b.state(t0), CircuitState::Closed);
    assert_eq!(b.open_until(t0), None);
    assert_eq!(b.ramp(t0), 1.0);
    assert_eq!(b.admit(t0, || 0.999), (Admit::Yes, None));
}

#[test]
fn four_failures_stay_closed_the_fifth_opens_for_the_cool_down() {
    let t0 = Instant::now();
    let mut b = breaker();
    assert_eq!(fail(&mut b, t0, 4), None);
    assert_eq!(b.state(t0), CircuitState::Closed);
    assert_eq!(admit(&mut b, t0), Admit::Yes);

    assert_eq!(
        b.on_failure(t0),
        opened(OpenReason::ConsecutiveFailures, COOL_DOWN)
    );
    assert_eq!(b.state(t0), CircuitState::Open);
    assert_eq!(b.open_until(t0), Some(t0 + COOL_DOWN));
    assert_eq!(b.ramp(t0), 0.0);
    assert_eq!(b.admit(t0 + COOL_DOWN - ms(1), || 0.0), (Admit::No, None));
}

#[test]
fn a_success_resets_the_failure_run() {
    let t0 = Instant::now();
    let mut b = breaker();
    fail(&mut b, t0, 4);
    assert_eq!(b.on_success(t0), None);
    assert_eq!(fail(&mut b, t0, 4), None);
    assert_eq!(b.state(t0), CircuitState::Closed);
    assert_eq!(
        b.on_failure(t0),
        opened(OpenReason::ConsecutiveFailures, COOL_DOWN)
    );
}

#[test]
fn a_429_neither_breaks_nor_extends_the_failure_run() {
    let t0 = Instant::now();
    let mut b = breaker();
    fail(&mut b, t0, 4);
    assert_eq!(b.on_throttle(t0, None), None);
    assert_eq!(b.state(t0), CircuitState::Closed);
    assert_eq!(
        b.on_failure(t0),
        opened(OpenReason::ConsecutiveFailures, COOL_DOWN)
    );
}

#[test]
fn three_429s_inside_the_window_open() {
    let t0 = Instant::now();
    let mut b = breaker();
    assert_eq!(b.on_throttle(t0, None), None);
    assert_eq!(b.on_throttle(t0 + secs(4), None), None);
    assert_eq!(b.state(t0 + secs(4)), CircuitState::Closed);
    let third = t0 + ms(9_999);
    assert_eq!(
        b.on_throttle(third, None),
        opened(OpenReason::Throttled, COOL_DOWN)
    );
    assert_eq!(b.open_until(third), Some(third + COOL_DOWN));
}

#[test]
fn throttles_spread_wider_than_the_window_stay_closed() {
    let t0 = Instant::now();
    let mut b = breaker();
    b.on_throttle(t0, None);
    b.on_throttle(t0 + secs(6), None);
    // The first is exactly one window old by now, so it no longer counts.
    assert_eq!(b.on_throttle(t0 + secs(10), None), None);
    assert_eq!(b.on_throttle(t0 + secs(17), None), None);
    assert_eq!(b.state(t0 + secs(17)), CircuitState::Closed);
    // 10, 17 and 19 are inside one window.
    assert_eq!(
        b.on_throttle(t0 + secs(19), None),
        opened(OpenReason::Throttled, COOL_DOWN)
    );
}

#[test]
fn an_opening_retry_after_longer_than_the_cool_down_is_respected() {
    let t0 = Instant::now();
    let mut b = breaker();
    b.on_throttle(t0, None);
    b.on_throttle(t0, None);
    assert_eq!(
        b.on_throttle(t0, Some(secs(120))),
        opened(OpenReason::Throttled, secs(120))
    );
    assert_eq!(b.open_until(t0), Some(t0 + secs(120)));
    assert_eq!(admit(&mut b, t0 + COOL_DOWN), Admit::No);
    assert_eq!(admit(&mut b, t0 + secs(120) - ms(1)), Admit::No);
    assert_eq!(admit(&mut b, t0 + secs(120)), Admit::Probe);
}

#[test]
fn an_opening_retry_after_shorter_than_the_cool_down_keeps_the_cool_down() {
    let t0 = Instant::now();
    let mut b = breaker();
    b.on_throttle(t0, None);
    b.on_throttle(t0, None);
    assert_eq!(
        b.on_throttle(t0, Some(secs(5))),
        opened(OpenReason::Throttled, COOL_DOWN)
    );
    assert_eq!(b.open_until(t0), Some(t0 + COOL_DOWN));
    assert_eq!(admit(&mut b, t0 + secs(5)), Admit::No);
    assert_eq!(admit(&mut b, t0 + COOL_DOWN), Admit::Probe);
}

#[test]
fn a_retry_after_while_open_extends_but_never_shortens() {
    let t0 = Instant::now();
    let mut b = breaker();
    fail(&mut b, t0, 5);
    assert_eq!(
        b.on_throttle(t0 + secs(10), Some(secs(100))),
        Some(Change::Extended)
    );
    assert_eq!(b.open_until(t0), Some(t0 + secs(110)));
    assert_eq!(b.on_throttle(t0 + secs(20), Some(secs(5))), None);
    assert_eq!(b.on_throttle(t0 + secs(20), None), None);
    assert_eq!(b.open_until(t0), Some(t0 + secs(110)));
    assert_eq!(b.state(t0 + secs(100)), CircuitState::Open);
    assert_eq!(admit(&mut b, t0 + secs(109)), Admit::No);
    assert_eq!(admit(&mut b, t0 + secs(110)), Admit::Probe);
}

#[test]
fn a_single_429_with_retry_after_holds_until_it_passes() {
    let t0 = Instant::now();
    let mut b = breaker();
    assert_eq!(
        b.on_throttle(t0, Some(secs(20))),
        opened(OpenReason::RetryAfter, secs(20))
    );
    let just_before = t0 + secs(20) - ms(1);
    assert_eq!(b.state(just_before), CircuitState::Open);
    assert_eq!(b.open_until(just_before), Some(t0 + secs(20)));
    assert_eq!(b.ramp(just_before), 0.0);
    assert_eq!(b.admit(just_before, || 0.0), (Admit::No, None));

    let passed = t0 + secs(20);
    assert_eq!(b.state(passed), CircuitState::Closed);
    assert_eq!(b.open_until(passed), None);
    assert_eq!(b.admit(passed, || 0.0), (Admit::Yes, Some(Change::Closed)));
    assert_eq!(b.admit(passed, || 0.0), (Admit::Yes, None));
}

#[test]
fn a_later_retry_after_extends_a_hold_and_an_earlier_one_does_not() {
    let t0 = Instant::now();
    let mut b = Breaker::new(BreakerConfig {
        throttles: 0,
        ..BreakerConfig::default()
    });
    b.on_throttle(t0, Some(secs(20)));
    assert_eq!(
        b.on_throttle(t0 + secs(1), Some(secs(30))),
        Some(Change::Extended)
    );
    assert_eq!(b.on_throttle(t0 + secs(2), Some(secs(1))), None);
    assert_eq!(b.open_until(t0), Some(t0 + secs(31)));
    assert_eq!(admit(&mut b, t0 + secs(30)), Admit::No);
    assert_eq!(admit(&mut b, t0 + secs(31)), Admit::Yes);
}

#[test]
fn a_429_without_retry_after_below_the_threshold_changes_nothing() {
    let t0 = Instant::now();
    let mut b = breaker();
    assert_eq!(b.on_throttle(t0, None), None);
    assert_eq!(b.state(t0), CircuitState::Closed);
    assert_eq!(b.open_until(t0), None);
    assert_eq!(admit(&mut b, t0), Admit::Yes);
}

#[test]
fn a_hold_folds_into_the_cool_down_when_the_circuit_opens() {
    let t0 = Instant::now();
    let mut b = breaker();
    b.on_throttle(t0, Some(secs(90)));
    assert_eq!(
        fail(&mut b, t0 + secs(1), 5),
        opened(OpenReason::ConsecutiveFailures, secs(89))
    );
    assert_eq!(b.open_until(t0), Some(t0 + secs(90)));
}

#[test]
fn the_first_admit_after_the_cool_down_gets_the_one_probe() {
    let t0 = Instant::now();
    let mut b = breaker();
    fail(&mut b, t0, 5);
    assert_eq!(b.admit(t0 + COOL_DOWN - ms(1), || 0.0), (Admit::No, None));
    assert_eq!(b.state(t0 + COOL_DOWN - ms(1)), CircuitState::Open);
    // Cool-down over, nobody asked yet: reads HalfOpen (probe due), so routing asks.
    assert_eq!(b.state(t0 + COOL_DOWN), CircuitState::HalfOpen);
    assert_eq!(b.open_until(t0 + COOL_DOWN), None);

    let t = t0 + COOL_DOWN;
    assert_eq!(b.admit(t, || 0.0), (Admit::Probe, Some(Change::Probing)));
    assert_eq!(b.state(t), CircuitState::HalfOpen);
    assert_eq!(b.open_until(t), None);
    assert_eq!(b.ramp(t), 0.0);
    assert_eq!(b.admit(t, || 0.0), (Admit::No, None));
    assert_eq!(b.admit(t + secs(600), || 0.0), (Admit::No, None));
}

#[test]
fn a_successful_probe_closes_into_slow_start() {
    let t0 = Instant::now();
    let (mut b, t) = probing(t0);
    let done = t + secs(2);
    assert_eq!(b.on_success(done), Some(Change::Closed));
    assert_eq!(b.state(done), CircuitState::Closed);
    assert_eq!(b.open_until(done), None);
    assert_eq!(b.ramp(done), 0.1);
}

#[test]
fn a_failed_probe_reopens_for_a_fresh_cool_down() {
    let t0 = Instant::now();
    let (mut b, t) = probing(t0);
    let failed = t + secs(5);
    assert_eq!(
        b.on_failure(failed),
        opened(OpenReason::ProbeFailed, COOL_DOWN)
    );
    assert_eq!(b.state(failed), CircuitState::Open);
    assert_eq!(b.open_until(failed), Some(failed + COOL_DOWN));
    assert_eq!(admit(&mut b, failed + COOL_DOWN - ms(1)), Admit::No);
    assert_eq!(admit(&mut b, failed + COOL_DOWN), Admit::Probe);
}

#[test]
fn a_throttled_probe_reopens_and_respects_retry_after() {
    let t0 = Instant::now();
    let (mut b, t) = probing(t0);
    assert_eq!(
        b.on_throttle(t, Some(secs(90))),
        opened(OpenReason::ProbeFailed, secs(90))
    );
    assert_eq!(b.open_until(t), Some(t + secs(90)));

    let (mut b, t) = probing(t0);
    assert_eq!(
        b.on_throttle(t, None),
        opened(OpenReason::ProbeFailed, COOL_DOWN)
    );
}

#[test]
fn a_released_probe_lets_the_next_caller_probe() {
    let t0 = Instant::now();
    let (mut b, t) = probing(t0);
    assert_eq!(b.release_probe(), Some(Change::ProbeReleased));
    // Back to waiting for a caller, the probe due.
    assert_eq!(b.state(t), CircuitState::HalfOpen);
    assert_eq!(b.open_until(t), None);
    assert_eq!(b.admit(t, || 0.0), (Admit::Probe, Some(Change::Probing)));
    assert_eq!(admit(&mut b, t), Admit::No);
}

#[test]
fn releasing_without_a_probe_out_does_nothing() {
    let t0 = Instant::now();
    let mut b = breaker();
    assert_eq!(b.release_probe(), None);
    fail(&mut b, t0, 5);
    assert_eq!(b.release_probe(), None);
    assert_eq!(b.open_until(t0), Some(t0 + COOL_DOWN));
}

#[test]
fn late_outcomes_while_open_leave_the_circuit_alone() {
    let t0 = Instant::now();
    let mut b = breaker();
    fail(&mut b, t0, 5);
    assert_eq!(b.on_success(t0 + secs(1)), None);
    assert_eq!(b.on_failure(t0 + secs(2)), None);
    assert_eq!(b.on_throttle(t0 + secs(3), None), None);
    assert_eq!(b.state(t0 + secs(3)), CircuitState::Open);
    assert_eq!(b.open_until(t0), Some(t0 + COOL_DOWN));
}

#[test]
fn slow_start_ramps_linearly_from_a_tenth_to_all() {
    let t0 = Instant::now();
    let (mut b, t) = probing(t0);
    b.on_success(t);
    let eps = 1e-9;
    assert!((b.ramp(t) - 0.1).abs() < eps);
    assert!((b.ramp(t + secs(15)) - 0.55).abs() < eps);
    assert!((b.ramp(t + secs(30)) - 1.0).abs() < eps);
    assert!((b.ramp(t + secs(300)) - 1.0).abs() < eps);

    // Admitted when the draw falls under the ramp.
    let half = t + secs(15);
    assert_eq!(b.admit(half, || 0.549).0, Admit::Yes);
    assert_eq!(b.admit(half, || 0.551).0, Admit::No);
    // Ramp over: every caller is admitted, and slow start is done for good.
    assert_eq!(b.admit(t + secs(30), || 0.999).0, Admit::Yes);
    assert_eq!(b.admit(t + secs(31), || 0.999).0, Admit::Yes);
    assert_eq!(b.ramp(t), 1.0);
}

#[test]
fn zero_slow_start_closes_straight_to_full_traffic() {
    let t0 = Instant::now();
    let mut b = Breaker::new(BreakerConfig {
        slow_start: Duration::ZERO,
        ..BreakerConfig::default()
    });
    fail(&mut b, t0, 5);
    let t = t0 + COOL_DOWN;
    assert_eq!(admit(&mut b, t), Admit::Probe);
    b.on_success(t);
    assert_eq!(b.ramp(t), 1.0);
    assert_eq!(b.admit(t, || 0.999).0, Admit::Yes);
}

#[test]
fn failures_during_slow_start_still_open() {
    let t0 = Instant::now();
    let (mut b, t) = probing(t0);
    b.on_success(t);
    assert_eq!(
        fail(&mut b, t + secs(1), 5),
        opened(OpenReason::ConsecutiveFailures, COOL_DOWN)
    );
    assert_eq!(b.ramp(t + secs(1)), 0.0);
}

#[test]
fn zero_thresholds_disable_their_trigger() {
    let t0 = Instant::now();
    let mut b = Breaker::new(BreakerConfig {
        failures: 0,
        throttles: 0,
        ..BreakerConfig::default()
    });
    assert_eq!(fail(&mut b, t0, 100), None);
    for _ in 0..100 {
        assert_eq!(b.on_throttle(t0, None), None);
    }
    assert_eq!(b.state(t0), CircuitState::Closed);
}

#[test]
fn new_thresholds_apply_to_the_run_so_far() {
    let t0 = Instant::now();
    let mut b = breaker();
    fail(&mut b, t0, 4);
    b.set_config(BreakerConfig {
        failures: 10,
        ..BreakerConfig::default()
    });
    assert_eq!(fail(&mut b, t0, 5), None);
    assert_eq!(
        b.on_failure(t0),
        opened(OpenReason::ConsecutiveFailures, COOL_DOWN)
    );

    let mut b = breaker();
    b.on_throttle(t0, None);
    b.on_throttle(t0, None);
    b.set_config(BreakerConfig {
        throttles: 2,
        cool_down: secs(5),
        ..BreakerConfig::default()
    });
    assert_eq!(
        b.on_throttle(t0, None),
        opened(OpenReason::Throttled, secs(5))
    );
}

#[test]
fn an_absurd_retry_after_is_capped_at_a_day() {
    let t0 = Instant::now();
    let mut b = breaker();
    b.on_throttle(t0, Some(Duration::from_secs(u64::MAX)));
    assert_eq!(b.open_until(t0), Some(t0 + MAX_WAIT));
}
