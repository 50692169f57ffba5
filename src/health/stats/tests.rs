//! Statistics computed on known inputs.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "expected {expected}, got {actual}"
    );
}

#[test]
fn no_samples_read_as_zero() {
    assert_eq!(
        Stats::new().figures(),
        Figures {
            ewma_ms: 0.0,
            p95_ms: 0.0,
            ttft_ms: 0.0,
            error_rate: 0.0,
            samples: 0,
        }
    );
}

#[test]
fn latency_ewma_starts_at_the_first_sample_then_weighs_the_newest_by_alpha() {
    let s = Stats::new();
    s.success(ms(100), None);
    close(s.figures().ewma_ms, 100.0);
    s.success(ms(200), None);
    // 100 + 0.2 * (200 - 100)
    close(s.figures().ewma_ms, 120.0);
    s.success(ms(300), None);
    // 120 + 0.2 * (300 - 120)
    close(s.figures().ewma_ms, 156.0);
    assert_eq!(s.figures().samples, 3);
}

#[test]
fn sub_millisecond_latencies_keep_their_fraction() {
    let s = Stats::new();
    s.success(Duration::from_micros(1_500), None);
    close(s.figures().ewma_ms, 1.5);
    close(s.figures().p95_ms, 1.5);
}

#[test]
fn p95_is_the_nearest_rank_of_what_was_recorded() {
    let s = Stats::new();
    // 1..=100 ms in a scrambled order (37 is coprime with 100).
    for i in 0..100u64 {
        s.success(ms((i * 37) % 100 + 1), None);
    }
    close(s.figures().p95_ms, 95.0);

    let s = Stats::new();
    for i in 1..=20 {
        s.success(ms(i), None);
    }
    close(s.figures().p95_ms, 19.0);

    let s = Stats::new();
    s.success(ms(42), None);
    close(s.figures().p95_ms, 42.0);
}

#[test]
fn p95_covers_only_the_last_256_successes() {
    let s = Stats::new();
    for i in 1..=300 {
        s.success(ms(i), None);
    }
    // The window holds 45..=300; rank ceil(256 * 0.95) = 244 is 45 + 243.
    close(s.figures().p95_ms, 288.0);
    assert_eq!(s.figures().samples, 300);

    let s = Stats::new();
    for _ in 0..WINDOW {
        s.success(ms(1_000), None);
    }
    for _ in 0..WINDOW {
        s.success(ms(10), None);
    }
    close(s.figures().p95_ms, 10.0);
}

#[test]
fn ttft_is_averaged_over_streams_only() {
    let s = Stats::new();
    s.success(ms(500), None);
    close(s.figures().ttft_ms, 0.0);
    s.success(ms(500), Some(ms(50)));
    close(s.figures().ttft_ms, 50.0);
    s.success(ms(500), None);
    s.success(ms(500), Some(ms(100)));
    // 50 + 0.2 * (100 - 50)
    close(s.figures().ttft_ms, 60.0);
    assert_eq!(s.figures().samples, 4);
}

#[test]
fn error_rate_is_an_ewma_of_failures_from_a_healthy_start() {
    let s = Stats::new();
    s.failure();
    close(s.figures().error_rate, 0.2);
    s.failure();
    // 0.2 + 0.2 * (1 - 0.2)
    close(s.figures().error_rate, 0.36);
    s.success(ms(10), None);
    // 0.36 * 0.8
    close(s.figures().error_rate, 0.288);
}

#[test]
fn failures_do_not_count_as_latency_samples() {
    let s = Stats::new();
    s.success(ms(100), None);
    s.failure();
    let f = s.figures();
    assert_eq!(f.samples, 1);
    close(f.ewma_ms, 100.0);
    close(f.p95_ms, 100.0);
}

#[test]
fn percentiles_are_the_nearest_ranks_of_the_window() {
    assert_eq!(Stats::new().percentiles(), (0.0, 0.0));
    let s = Stats::new();
    for i in 0..100u64 {
        s.success(ms((i * 37) % 100 + 1), None);
    }
    let (p50, p95) = s.percentiles();
    close(p50, 50.0);
    close(p95, 95.0);
    close(p95, s.figures().p95_ms);

    let s = Stats::new();
    for i in 1..=300 {
        s.success(ms(i), None);
    }
    // The window holds 45..=300: rank 128 is 172, rank 244 is 288.
    let (p50, p95) = s.percentiles();
    close(p50, 172.0);
    close(p95, 288.0);
}
