//! Exponential backoff with jitter between attempts, capped.

use std::time::Duration;

/// The pause before attempt number `retry` (1 for the first retry): `initial * 2^(retry-1)`
/// capped at `max`, of which a random half is waited ("equal jitter"), so concurrent
/// requests do not retry in lockstep yet always wait at least half the step.
pub fn backoff_delay(retry: u32, initial: Duration, max: Duration) -> Duration {
    let exp = retry.saturating_sub(1).min(16);
    let step = initial.saturating_mul(1 << exp).min(max);
    let half = step / 2;
    let jitter_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(fastrand::u64(0..=jitter_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_exponentially_and_never_exceeds_the_cap() {
        let initial = Duration::from_millis(25);
        let max = Duration::from_millis(500);
        for _ in 0..200 {
            let first = backoff_delay(1, initial, max);
            assert!(first >= Duration::from_micros(12_500) && first <= initial);
            let third = backoff_delay(3, initial, max);
            assert!(third >= Duration::from_millis(50) && third <= Duration::from_millis(100));
            let late = backoff_delay(30, initial, max);
            assert!(late >= Duration::from_millis(250) && late <= max);
        }
    }
}
