//! The ledger's writer task: sums entries per slot and writes the sums in batches, each
//! batch under an id of its own that it keeps until the store takes it.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Batch, Entry, FLUSH_EVERY, MAX_BATCH, Msg, Slot, Store, Sums};

/// Sums entries and writes them in batches until `stop`; then writes what is queued.
pub(super) async fn run(store: Store, mut rx: mpsc::Receiver<Msg>, stop: CancellationToken) {
    let mut w = Writer::new(store);
    let mut ticker = tokio::time::interval(FLUSH_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            msg = rx.recv() => match msg {
                Some(Msg::Entry(e)) => {
                    w.sum(e);
                    if w.is_full() {
                        let _ = w.write().await;
                    }
                }
                Some(Msg::Flush(ack)) => {
                    let _ = ack.send(w.write().await);
                }
                None => break,
            },
            _ = ticker.tick() => {
                let _ = w.write().await;
            }
        }
    }
    // Shutdown: nothing new is accepted; what was sent before is summed and written.
    rx.close();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Entry(e) => w.sum(e),
            Msg::Flush(ack) => drop(ack),
        }
    }
    if let Err(e) = w.write().await {
        tracing::error!(error = %e, "usage ledger: the last batch could not be written");
    }
}

/// The writer's state.
pub(super) struct Writer {
    store: Store,
    /// Entries summed since the last batch was cut.
    pub(super) summing: HashMap<Slot, Sums>,
    /// A batch the store did not take (an error, or no answer in time), retried as it is,
    /// under its id, before anything newer. Nothing is added to it: it may have been
    /// applied already.
    pub(super) unsent: Option<Batch>,
    ids: BatchIds,
    failing: bool,
}

impl Writer {
    pub(super) fn new(store: Store) -> Writer {
        Writer {
            store,
            summing: HashMap::new(),
            unsent: None,
            ids: BatchIds::new(),
            failing: false,
        }
    }

    pub(super) fn sum(&mut self, e: Entry) {
        *self.summing.entry(e.slot).or_default() += e.sums;
    }

    /// Whether enough is summed to write before the next tick. Never while a batch is
    /// unsent (the store failing): then only the ticker retries, so an outage does not
    /// turn every new entry into a write attempt; entries keep being summed meanwhile.
    pub(super) fn is_full(&self) -> bool {
        self.summing.len() >= MAX_BATCH && self.unsent.is_none()
    }

    /// Writes the unsent batch, then what is summed, in batches of at most [`MAX_BATCH`]
    /// slots. Stops at the first failure, keeping that batch unsent; warns once per
    /// failing spell.
    pub(super) async fn write(&mut self) -> Result<(), String> {
        loop {
            let batch = match self.unsent.take() {
                Some(b) => b,
                None if self.summing.is_empty() => return Ok(()),
                None => self.cut(),
            };
            match self.store.add(&batch).await {
                Ok(()) => {
                    metrics::counter!("switchyard_ledger_writes_total", "result" => "ok")
                        .increment(1);
                    if std::mem::take(&mut self.failing) {
                        tracing::info!(store = %self.store.describe(), "usage ledger writes again");
                    }
                }
                Err(e) => {
                    metrics::counter!("switchyard_ledger_writes_total", "result" => "error")
                        .increment(1);
                    if !std::mem::replace(&mut self.failing, true) {
                        tracing::warn!(
                            store = %self.store.describe(), error = %e, slots = batch.slots.len(),
                            "usage ledger write failed; keeping the batch to retry"
                        );
                    }
                    self.unsent = Some(batch);
                    return Err(e);
                }
            }
        }
    }

    /// A new batch of at most [`MAX_BATCH`] of the summed slots.
    fn cut(&mut self) -> Batch {
        let slots: Vec<(Slot, Sums)> = if self.summing.len() <= MAX_BATCH {
            self.summing.drain().collect()
        } else {
            let keys: Vec<Slot> = self.summing.keys().take(MAX_BATCH).cloned().collect();
            keys.into_iter()
                .filter_map(|k| self.summing.remove_entry(&k))
                .collect()
        };
        Batch {
            id: self.ids.next(),
            slots,
        }
    }
}

/// Batch ids: a random prefix per writer, so replicas (and restarts) never share one, and
/// a counter.
struct BatchIds {
    prefix: u64,
    next: u64,
}

impl BatchIds {
    fn new() -> BatchIds {
        BatchIds {
            prefix: fastrand::u64(..),
            next: 0,
        }
    }

    fn next(&mut self) -> String {
        self.next += 1;
        format!("{:016x}-{}", self.prefix, self.next)
    }
}
