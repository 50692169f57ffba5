//! The Prometheus recorder's upkeep: histogram samples are folded into their buckets on a
//! timer, so a gateway nobody scrapes does not keep every sample it ever recorded.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

/// How often the recorder folds its histogram samples into buckets.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Runs the recorder's upkeep every `every` until `shutdown` is cancelled. Without it the
/// samples of every histogram pile up until the next scrape (~40 bytes a request).
pub async fn upkeep(handle: PrometheusHandle, every: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => handle.run_upkeep(),
        }
    }
}
