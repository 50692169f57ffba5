//! The gateway's background loops (alert sender, metrics upkeep, reload watchers, price
//! refresh): each spawned on one tracker, all stopped by one token.

use std::{future::Future, time::Duration};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// How long [`Background::stop`] waits for the loops to end.
pub const STOP_WAIT: Duration = Duration::from_secs(5);

/// Owns the gateway's background loops. Cheap to clone; clones share the loops.
#[derive(Debug, Clone, Default)]
pub struct Background {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Background {
    pub fn new() -> Background {
        Background::default()
    }

    /// Spawns `task(token)` on the tracker: the task ends when the token is cancelled.
    pub fn spawn<F>(&self, task: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task(self.shutdown.clone()));
    }

    /// As [`Background::spawn`], on the given runtime (for callers outside one).
    pub fn spawn_on<F>(
        &self,
        runtime: &tokio::runtime::Handle,
        task: impl FnOnce(CancellationToken) -> F,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn_on(task(self.shutdown.clone()), runtime);
    }

    /// The token every loop watches.
    pub fn token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The loops' tracker (empty and closed once [`Background::stop`] succeeded).
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Cancels every loop, closes the tracker, and waits up to `bound` for
    /// them to finish. Returns whether they all did.
    pub async fn stop(&self, bound: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        let stopped = tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_ok();
        if !stopped {
            tracing::warn!(
                still_running = self.tracker.len(),
                "background loops still running after shutdown"
            );
        }
        stopped
    }
}
