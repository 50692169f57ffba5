//! The usage ledger: requests, errors, tokens and cost by component, summed per caller
//! key × model × deployment × UTC hour, durable.
//!
//! The request path pays one channel send: each request's end hook turns its
//! [`Ended`] into an [`Entry`] and `try_send`s it to the writer task, which sums entries in
//! memory and writes the sums in one batch every [`FLUSH_EVERY`] or [`MAX_BATCH`] slots,
//! when asked ([`Ledger::flush`]) and when the gateway's background stops ([`writer`]). The store is
//! SQLite under `state.dir` ([`sqlite`]), or Redis when `state.redis_url` is set
//! ([`redis`]), where every replica adds into the same counters.

pub mod calendar;
mod query;
pub mod redis;
pub mod sqlite;
mod writer;

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};

pub use query::{Group, Query, Report, Row, render_table};

use super::cost::{Cost, Tokens};
use crate::{
    background::Background,
    state::State,
    telemetry::{EndHook, Ended, Outcome},
};

/// The writer writes what it has summed at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// ... or as soon as it holds this many distinct slots.
pub const MAX_BATCH: usize = 1024;

/// Entries queued for the writer at most; past it, entries are dropped and counted
/// (`switchyard_ledger_dropped_total`): the request path never waits for the ledger.
pub const QUEUE: usize = 65_536;

/// Where one entry is summed: a caller key ("" for anonymous calls), a model (the
/// catalog's name), a deployment ("" when none served) and an hour (UNIX seconds at its
/// start, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    pub hour: i64,
    pub key: Arc<str>,
    pub model: Arc<str>,
    pub deployment: Arc<str>,
}

/// What is summed per slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub requests: u64,
    /// Requests that did not end ok (an error status, a broken stream, a cancelled call).
    pub errors: u64,
    /// Served requests whose cost is unknown: no usage reported, or no price.
    pub unpriced: u64,
    pub tokens: Tokens,
    /// Nano-USD.
    pub cost: Cost,
}

impl Sums {
    /// Every figure, in the stores' fixed column order.
    pub fn components(&self) -> [u64; 13] {
        let (t, c) = (&self.tokens, &self.cost);
        [
            self.requests,
            self.errors,
            self.unpriced,
            t.input,
            t.cached_input,
            t.cache_write,
            t.output,
            t.reasoning,
            c.input,
            c.cached_input,
            c.cache_write,
            c.output,
            c.total,
        ]
    }

    /// The sums whose [`Sums::components`] are `n`.
    pub fn from_components(n: [u64; 13]) -> Sums {
        Sums {
            requests: n[0],
            errors: n[1],
            unpriced: n[2],
            tokens: Tokens {
                input: n[3],
                cached_input: n[4],
                cache_write: n[5],
                output: n[6],
                reasoning: n[7],
            },
            cost: Cost {
                input: n[8],
                cached_input: n[9],
                cache_write: n[10],
                output: n[11],
                total: n[12],
            },
        }
    }
}

impl std::ops::AddAssign for Sums {
    fn add_assign(&mut self, o: Sums) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.unpriced += o.unpriced;
        self.tokens += o.tokens;
        self.cost += o.cost;
    }
}

/// The ledger's deployment for requests answered from the response cache.
pub const CACHE_HIT_DEPLOYMENT: &str = "(cache)";

/// One request's contribution.
#[derive(Debug, Clone)]
pub struct Entry {
    pub slot: Slot,
    pub sums: Sums,
}

impl Entry {
    /// The entry of a request that ended at `now` (UNIX seconds).
    pub fn of(ended: &Ended<'_>, now: i64) -> Entry {
        let served = ended.deployment.is_some();
        let empty = || Arc::<str>::from("");
        Entry {
            slot: Slot {
                hour: calendar::hour_of(now),
                key: ended.key.cloned().unwrap_or_else(empty),
                model: ended.model.clone(),
                // A cache hit reached no deployment: its request is counted, at no cost.
                deployment: match (ended.deployment, ended.cache) {
                    (Some(d), _) => d.clone(),
                    (None, Some(crate::cache::Status::Hit)) => Arc::from(CACHE_HIT_DEPLOYMENT),
                    (None, _) => empty(),
                },
            },
            sums: Sums {
                requests: 1,
                errors: u64::from(ended.outcome != Outcome::Ok),
                unpriced: u64::from(served && ended.cost.is_none()),
                tokens: ended.tokens.unwrap_or_default(),
                cost: ended.cost.unwrap_or_default(),
            },
        }
    }
}

/// Where the sums are kept.
#[derive(Clone)]
pub enum Store {
    Sqlite(Arc<sqlite::SqliteLedger>),
    /// The shared state, whose Redis holds the ledger.
    Redis(Arc<State>),
}

/// The Redis of a [`Store::Redis`].
fn redis_of(state: &State) -> Result<&crate::state::Redis, String> {
    state
        .redis()
        .ok_or_else(|| "the ledger is in Redis but state.redis_url is not set".to_owned())
}

/// Sums to add in one write, under an id kept across its retries.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Unique to this batch (the writer's random prefix and a counter): a store that
    /// already applied it, its answer lost, does not apply it again.
    pub id: String,
    pub slots: Vec<(Slot, Sums)>,
}

impl Store {
    /// Adds `batch` to the stored sums, all or nothing. On Redis, a batch whose id was
    /// applied before adds nothing (a retry after a lost answer); SQLite's answer is never
    /// lost, so it needs no id.
    pub async fn add(&self, batch: &Batch) -> Result<(), String> {
        match self {
            Store::Sqlite(db) => {
                let (db, slots) = (db.clone(), batch.slots.clone());
                tokio::task::spawn_blocking(move || db.add(&slots))
                    .await
                    .map_err(|e| format!("ledger writer: {e}"))?
            }
            Store::Redis(s) => redis::add(redis_of(s)?, batch).await,
        }
    }

    /// The sums `query` asks for.
    pub async fn report(&self, query: Query) -> Result<Report, String> {
        match self {
            Store::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || db.report(&query))
                    .await
                    .map_err(|e| format!("ledger reader: {e}"))?
            }
            Store::Redis(s) => redis::report(redis_of(s)?, &query).await,
        }
    }

    /// Where it is, for messages (never a Redis URL).
    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(db) => db.path().display().to_string(),
            Store::Redis(_) => "Redis".to_owned(),
        }
    }
}

enum Msg {
    Entry(Entry),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// The gateway's ledger: the queue to its writer, and its store for reading.
pub struct Ledger {
    queue: mpsc::Sender<Msg>,
    store: Store,
}

impl Ledger {
    /// Starts the writer on `background`: it ends, after writing what is queued, when
    /// the background stops.
    pub fn start(store: Store, background: &Background) -> Ledger {
        let (queue, rx) = mpsc::channel(QUEUE);
        let writer = store.clone();
        background.spawn(move |stop| writer::run(writer, rx, stop));
        Ledger { queue, store }
    }

    /// The end hook that records one request: builds its entry and enqueues it.
    pub fn hook(&self) -> EndHook {
        let queue = self.queue.clone();
        Box::new(move |ended: &Ended<'_>| {
            let entry = Entry::of(ended, calendar::now());
            if queue.try_send(Msg::Entry(entry)).is_err() {
                metrics::counter!("switchyard_ledger_dropped_total").increment(1);
            }
        })
    }

    /// Writes what the writer holds now (requests recorded before this call included).
    pub async fn flush(&self) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.queue
            .send(Msg::Flush(ack))
            .await
            .map_err(|_| "the ledger writer has stopped".to_owned())?;
        done.await
            .map_err(|_| "the ledger writer has stopped".to_owned())?
    }

    /// The stored sums (after a flush, so they include every request recorded so far).
    pub async fn report(&self, query: Query) -> Result<Report, String> {
        // A stopped writer (shutdown) still leaves the store readable.
        let _ = self.flush().await;
        self.store.report(query).await
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

#[cfg(test)]
mod tests;
