//! The registry and `DeploymentHealth` as callers use them: records, the gate, snapshots,
//! versions, reloads and many threads.

use std::{
    sync::{Arc, Barrier},
    thread,
};

use super::*;

const COOL_DOWN: Duration = Duration::from_secs(60);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn registry() -> Registry {
    Registry::new(BreakerConfig::default())
}

fn fail(h: &DeploymentHealth, now: Instant, times: u32) {
    for _ in 0..times {
        h.record(
            Outcome::Failure {
                latency: Duration::from_millis(5),
            },
            now,
        );
    }
}

fn ok(latency_ms: u64) -> Outcome {
    Outcome::Success {
        latency: Duration::from_millis(latency_ms),
        ttft: None,
    }
}

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "expected {expected}, got {actual}"
    );
}

#[test]
fn the_same_id_gets_the_same_health() {
    let r = registry();
    let a = r.deployment("openai/gpt-4o");
    let b = r.deployment("openai/gpt-4o");
    let other = r.deployment("anthropic/claude");
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &other));
    assert_eq!(a.id(), "openai/gpt-4o");
}

#[test]
fn all_lists_every_deployment_sorted_by_id() {
    let r = registry();
    let b = r.deployment("openai/gpt-4o");
    let a = r.deployment("anthropic/claude");
    let c = r.deployment("openai/gpt-4o-mini");
    let all = r.all();
    let ids: Vec<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["anthropic/claude", "openai/gpt-4o", "openai/gpt-4o-mini"]
    );
    assert!(Arc::ptr_eq(&all[0].1, &a));
    assert!(Arc::ptr_eq(&all[1].1, &b));
    assert!(Arc::ptr_eq(&all[2].1, &c));
}

#[test]
fn set_config_keeps_state_and_applies_new_thresholds() {
    let t0 = Instant::now();
    let r = registry();
    let open = r.deployment("a/open");
    fail(&open, t0, 5);
    let running = r.deployment("a/running");
    fail(&running, t0, 3);

    r.set_config(BreakerConfig {
        failures: 4,
        cool_down: secs(10),
        ..BreakerConfig::default()
    });

    // The open circuit keeps the cool-down it opened with.
    assert!(Arc::ptr_eq(&open, &r.deployment("a/open")));
    assert_eq!(open.state(t0), CircuitState::Open);
    assert_eq!(open.snapshot(t0).open_until, Some(t0 + COOL_DOWN));
    assert_eq!(open.admit(t0 + secs(10)), Admit::No);
    // The run of 3 is kept and the new threshold of 4 applies to it.
    assert_eq!(running.state(t0), CircuitState::Closed);
    fail(&running, t0, 1);
    assert_eq!(running.state(t0), CircuitState::Open);
    assert_eq!(running.snapshot(t0).open_until, Some(t0 + secs(10)));
    // Deployments first seen after the reload get the new thresholds too.
    let fresh = r.deployment("a/fresh");
    fail(&fresh, t0, 4);
    assert_eq!(fresh.state(t0), CircuitState::Open);
}

#[test]
fn a_record_walks_the_whole_diagram() {
    let t0 = Instant::now();
    let h = registry().deployment("p/m");
    assert_eq!(h.admit(t0), Admit::Yes);
    fail(&h, t0, 5);
    assert_eq!(h.state(t0), CircuitState::Open);
    assert_eq!(h.admit(t0 + secs(30)), Admit::No);

    let t = t0 + COOL_DOWN;
    assert_eq!(h.admit(t), Admit::Probe);
    assert_eq!(h.state(t), CircuitState::HalfOpen);
    assert_eq!(h.admit(t), Admit::No);
    h.release_probe();
    assert_eq!(h.state(t), CircuitState::HalfOpen);
    assert_eq!(h.admit(t), Admit::Probe);
    let mut probe = h.lease(None, Admit::Probe).unwrap();

    probe.record(
        Outcome::Failure {
            latency: Duration::from_secs(30),
        },
        t + secs(1),
    );
    drop(probe);
    assert_eq!(h.state(t + secs(1)), CircuitState::Open);
    assert_eq!(h.snapshot(t).open_until, Some(t + secs(1) + COOL_DOWN));

    let t = t + secs(1) + COOL_DOWN;
    assert_eq!(h.admit(t), Admit::Probe);
    h.lease(None, Admit::Probe).unwrap().record(ok(100), t);
    assert_eq!(h.state(t), CircuitState::Closed);
    close(h.snapshot(t).ramp, 0.1);
}

#[test]
fn a_single_throttle_with_retry_after_reads_open_until_it_passes() {
    let t0 = Instant::now();
    let h = registry().deployment("p/m");
    h.record(
        Outcome::Throttled {
            retry_after: Some(secs(7)),
        },
        t0,
    );
    let s = h.snapshot(t0 + secs(1));
    assert_eq!(s.circuit, CircuitState::Open);
    assert_eq!(s.open_until, Some(t0 + secs(7)));
    close(s.ramp, 0.0);
    close(s.error_rate, 0.2);
    assert_eq!(h.admit(t0 + secs(6)), Admit::No);

    let s = h.snapshot(t0 + secs(7));
    assert_eq!(s.circuit, CircuitState::Closed);
    assert_eq!(s.open_until, None);
    assert_eq!(h.admit(t0 + secs(7)), Admit::Yes);
}

#[test]
fn exactly_one_of_many_threads_gets_the_probe() {
    const THREADS: usize = 16;
    const CALLS: usize = 1_000;
    let t0 = Instant::now();
    let h = registry().deployment("p/m");
    fail(&h, t0, 5);
    let after = t0 + COOL_DOWN + secs(1);
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (h, start) = (h.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut probes = 0;
                for _ in 0..CALLS {
                    match h.admit(after) {
                        Admit::Probe => probes += 1,
                        Admit::No => {}
                        Admit::Yes => panic!("admitted while the circuit is not closed"),
                    }
                }
                probes
            })
        })
        .collect();
    let probes: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(probes, 1);
    assert_eq!(h.state(after), CircuitState::HalfOpen);
}

#[test]
fn a_released_probe_goes_to_exactly_one_other_thread() {
    const THREADS: usize = 8;
    let t0 = Instant::now();
    let h = registry().deployment("p/m");
    fail(&h, t0, 5);
    let after = t0 + COOL_DOWN;
    assert_eq!(h.admit(after), Admit::Probe);
    h.release_probe();
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (h, start) = (h.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                (0..100).filter(|_| h.admit(after) == Admit::Probe).count()
            })
        })
        .collect();
    let probes: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(probes, 1);
}

#[test]
fn slow_start_admits_about_the_ramp_share() {
    const CALLS: u32 = 10_000;
    fastrand::seed(7);
    let t0 = Instant::now();
    let h = registry().deployment("p/m");
    fail(&h, t0, 5);
    let closed = t0 + COOL_DOWN;
    assert_eq!(h.admit(closed), Admit::Probe);
    h.lease(None, Admit::Probe).unwrap().record(ok(100), closed);

    let share = |at: Instant| {
        let yes = (0..CALLS).filter(|_| h.admit(at) == Admit::Yes).count();
        yes as f64 / f64::from(CALLS)
    };
    let at_start = share(closed);
    assert!(
        (0.05..=0.15).contains(&at_start),
        "share {at_start} at ramp 0.1"
    );
    let halfway = closed + secs(15);
    close(h.snapshot(halfway).ramp, 0.55);
    let at_half = share(halfway);
    assert!(
        (0.50..=0.60).contains(&at_half),
        "share {at_half} at ramp 0.55"
    );
    let done = closed + secs(30);
    close(h.snapshot(done).ramp, 1.0);
    close(share(done), 1.0);
}

#[test]
fn version_moves_with_the_circuit_only() {
    let t0 = Instant::now();
    let h = registry().deployment("p/m");
    assert_eq!(h.version(), 0);
    h.record(ok(10), t0);
    fail(&h, t0, 4);
    h.admit(t0);
    assert_eq!(h.version(), 0);

    fail(&h, t0, 1);
    assert_eq!(h.version(), 1);
    h.admit(t0);
    assert_eq!(h.version(), 1);
    h.admit(t0 + COOL_DOWN);
    assert_eq!(h.version(), 2);
    h.release_probe();
    assert_eq!(h.version(), 3);
    h.admit(t0 + COOL_DOWN);
    h.lease(None, Admit::Probe)
        .unwrap()
        .record(ok(10), t0 + COOL_DOWN);
    assert_eq!(h.version(), 5);
}

#[test]
fn snapshot_reports_stats_and_circuit_together() {
    let t0 = Instant::now();
    let h = registry().deployment("p/m");
    let fresh = h.snapshot(t0);
    assert_eq!(fresh.samples, 0);
    close(fresh.ewma_ms, 0.0);
    close(fresh.p95_ms, 0.0);
    close(fresh.ttft_ms, 0.0);
    close(fresh.error_rate, 0.0);
    assert_eq!(fresh.circuit, CircuitState::Closed);
    assert_eq!(fresh.open_until, None);
    close(fresh.ramp, 1.0);

    h.record(
        Outcome::Success {
            latency: Duration::from_millis(100),
            ttft: Some(Duration::from_millis(40)),
        },
        t0,
    );
    h.record(ok(200), t0);
    h.record(Outcome::Throttled { retry_after: None }, t0);
    fail(&h, t0, 1);
    let s = h.snapshot(t0);
    assert_eq!(s.samples, 2);
    close(s.ewma_ms, 120.0);
    close(s.p95_ms, 200.0);
    close(s.ttft_ms, 40.0);
    // 0, 0, then 1 twice: 0.2, then 0.2 + 0.2 * 0.8.
    close(s.error_rate, 0.36);
    assert_eq!(s.circuit, CircuitState::Closed);
}

#[test]
fn while_the_probe_is_out_only_its_outcome_moves_the_circuit() {
    let t0 = Instant::now();
    let h = registry().deployment("p/m");
    fail(&h, t0, 5);
    let t = t0 + COOL_DOWN;
    assert_eq!(h.admit(t), Admit::Probe);
    let mut probe = h.lease(None, Admit::Probe).unwrap();
    // Late answers to requests sent before the circuit opened: stats only.
    h.record(ok(10), t);
    fail(&h, t, 3);
    assert_eq!(h.state(t), CircuitState::HalfOpen);
    assert_eq!(h.snapshot(t).samples, 1);
    probe.record(ok(10), t);
    assert_eq!(h.state(t), CircuitState::Closed);
}

#[test]
fn a_lease_counts_in_flight_up_to_the_limit_and_a_dropped_probe_is_released() {
    let t0 = Instant::now();
    let h = registry().deployment("p/m");
    let first = h.lease(Some(2), Admit::Yes).unwrap();
    let second = h.lease(Some(2), Admit::Yes).unwrap();
    assert!(h.lease(Some(2), Admit::Yes).is_none());
    assert_eq!(h.snapshot(t0).in_flight, 2);
    drop(first);
    assert_eq!(h.snapshot(t0).in_flight, 1);
    assert!(h.lease(Some(2), Admit::Yes).is_some());
    drop(second);
    assert_eq!(h.snapshot(t0).in_flight, 0);

    fail(&h, t0, 5);
    let t = t0 + COOL_DOWN;
    assert_eq!(h.admit(t), Admit::Probe);
    let probe = h.lease(None, Admit::Probe).unwrap();
    assert_eq!(h.admit(t), Admit::No);
    drop(probe);
    assert_eq!(h.admit(t), Admit::Probe, "a dropped probe is due again");
    // A probe refused for the limit is released at once.
    let _busy = h.lease(Some(1), Admit::Yes).unwrap();
    assert!(h.lease(Some(1), Admit::Probe).is_none());
    assert_eq!(h.admit(t), Admit::Probe);
}

#[test]
fn a_stream_is_a_success_for_the_circuit_only_when_it_completes() {
    let t0 = Instant::now();
    let h = registry().deployment("p/m");
    for _ in 0..5 {
        let mut lease = h.lease(None, Admit::Yes).unwrap();
        lease.first_token(Duration::from_millis(20), t0);
        lease.record(
            Outcome::Failure {
                latency: Duration::ZERO,
            },
            t0,
        );
    }
    assert_eq!(
        h.state(t0),
        CircuitState::Open,
        "five broken streams open it"
    );
    assert_eq!(h.snapshot(t0).samples, 5, "each first token was sampled");

    let h = registry().deployment("p/other");
    fail(&h, t0, 4);
    let mut lease = h.lease(None, Admit::Yes).unwrap();
    lease.first_token(Duration::from_millis(20), t0);
    lease.record(Outcome::Completed, t0);
    fail(&h, t0, 4);
    assert_eq!(
        h.state(t0),
        CircuitState::Closed,
        "the completed stream broke the run"
    );
    assert_eq!(h.snapshot(t0).samples, 1);
}

#[test]
fn model_latency_alerts_once_on_crossing_and_again_after_recovering() {
    let r = registry();
    let m = r.model_latency("gpt");
    assert!(Arc::ptr_eq(&m, &r.model_latency("gpt")));
    let limit = Duration::from_millis(100);
    let fired = |latency: u64, n: usize| {
        (0..n)
            .filter_map(|_| m.observe(Duration::from_millis(latency), limit))
            .count()
    };
    assert_eq!(fired(10, 256), 0);
    // Crossing needs more than 5% of the window above the threshold.
    assert_eq!(fired(500, 12), 0);
    assert_eq!(fired(500, 20), 1, "raised once on crossing");
    assert_eq!(fired(500, 100), 0, "not again while above");
    assert_eq!(fired(10, 256), 0);
    assert!(m.p95_ms() < 100.0);
    assert_eq!(fired(500, 40), 1, "raised again after falling back below");
}

#[test]
fn a_streaming_probe_closes_the_circuit_at_its_first_token() {
    let t0 = Instant::now();
    let h = registry().deployment("p/m");
    fail(&h, t0, 5);
    let t = t0 + COOL_DOWN;
    assert_eq!(h.admit(t), Admit::Probe);
    let mut probe = h.lease(None, Admit::Probe).unwrap();
    probe.first_token(Duration::from_millis(30), t);
    assert_eq!(
        h.state(t),
        CircuitState::Closed,
        "not held half-open for the stream"
    );
    close(h.snapshot(t).ramp, 0.1);
    // The stream's end is an ordinary outcome now: a break is one failure of the run.
    probe.record(
        Outcome::Failure {
            latency: Duration::ZERO,
        },
        t,
    );
    assert_eq!(h.state(t), CircuitState::Closed);
    drop(probe);
    assert_eq!(h.snapshot(t).in_flight, 0);
}
