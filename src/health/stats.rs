//! Live statistics of one deployment: latency EWMA and p95, time to first token, error rate.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use super::lock;

/// Weight of the newest sample in every EWMA here: about the last ten samples matter.
pub(super) const ALPHA: f64 = 0.2;

/// Successful latencies kept for the p95.
pub(super) const WINDOW: usize = 256;

pub(super) struct Stats {
    /// Failure (1) / success (0) EWMA, as `f64` bits; starts at 0, so a new deployment is
    /// presumed healthy.
    error_rate: AtomicU64,
    latency: Mutex<Latency>,
}

struct Latency {
    ewma_ms: f64,
    ttft_ms: f64,
    samples: u64,
    ttft_samples: u64,
    /// The last `WINDOW` latencies; sample `n` sits at `n % WINDOW`.
    ring: [f64; WINDOW],
}

/// The values [`Stats`] contributes to a [`super::Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Figures {
    pub ewma_ms: f64,
    pub p95_ms: f64,
    pub ttft_ms: f64,
    pub error_rate: f64,
    pub samples: u64,
}

impl Stats {
    pub(super) fn new() -> Stats {
        Stats {
            error_rate: AtomicU64::new(0.0_f64.to_bits()),
            latency: Mutex::new(Latency {
                ewma_ms: 0.0,
                ttft_ms: 0.0,
                samples: 0,
                ttft_samples: 0,
                ring: [0.0; WINDOW],
            }),
        }
    }

    /// Records a success with no time to first token; returns the samples now recorded.
    pub(super) fn success_counted(&self, latency: Duration) -> u64 {
        self.success(latency, None);
        lock(&self.latency).samples
    }

    pub(super) fn success(&self, latency: Duration, ttft: Option<Duration>) {
        self.error(0.0);
        let ms = millis(latency);
        let mut l = lock(&self.latency);
        l.ewma_ms = fold(l.ewma_ms, l.samples, ms);
        let slot = (l.samples % WINDOW as u64) as usize;
        l.ring[slot] = ms;
        l.samples += 1;
        if let Some(ttft) = ttft {
            l.ttft_ms = fold(l.ttft_ms, l.ttft_samples, millis(ttft));
            l.ttft_samples += 1;
        }
    }

    /// A failure or a throttle.
    pub(super) fn failure(&self) {
        self.error(1.0);
    }

    pub(super) fn figures(&self) -> Figures {
        let (mut window, ewma_ms, ttft_ms, samples) = {
            let l = lock(&self.latency);
            (l.ring, l.ewma_ms, l.ttft_ms, l.samples)
        };
        let kept = &mut window[..samples.min(WINDOW as u64) as usize];
        Figures {
            ewma_ms,
            p95_ms: p95(kept),
            ttft_ms,
            error_rate: f64::from_bits(self.error_rate.load(Ordering::Relaxed)),
            samples,
        }
    }

    /// The p50 and p95 of the latency window, in ms (0 with no samples): for the status
    /// page, off the request path (it copies and sorts the window).
    pub(super) fn percentiles(&self) -> (f64, f64) {
        let (mut window, samples) = {
            let l = lock(&self.latency);
            (l.ring, l.samples)
        };
        let kept = &mut window[..samples.min(WINDOW as u64) as usize];
        if kept.is_empty() {
            return (0.0, 0.0);
        }
        kept.sort_unstable_by(f64::total_cmp);
        (nearest_rank(kept, 50), nearest_rank(kept, 95))
    }

    fn error(&self, sample: f64) {
        // The closure always returns Some, so this cannot fail.
        let _ = self
            .error_rate
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(ewma(f64::from_bits(bits), sample).to_bits())
            });
    }
}

/// The 95th percentile by nearest rank (the smallest value with at least 95% at or
/// below it); 0 for no samples. Sorts `values`.
fn p95(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    nearest_rank(values, 95)
}

/// The `percent`th percentile of sorted, non-empty `values` by nearest rank.
fn nearest_rank(values: &[f64], percent: usize) -> f64 {
    let rank = (values.len() * percent).div_ceil(100).max(1);
    values[rank - 1]
}

/// The EWMA after `sample`, given how many samples came before; the first sample is
/// taken as is rather than averaged with zero.
fn fold(average: f64, before: u64, sample: f64) -> f64 {
    if before == 0 {
        sample
    } else {
        ewma(average, sample)
    }
}

fn ewma(average: f64, sample: f64) -> f64 {
    average + ALPHA * (sample - average)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests;
