//! Where entries live: a moka cache in process, bounded by bytes with a TTL per entry, or
//! Redis (`SET ... PX`), shared by every replica. Redis is never fronted by the
//! in-process cache, so an entry refreshed or expired in Redis is never served stale.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use moka::{Expiry, future::Cache};

use super::{Entry, Key};
use crate::state::State;

/// The gateway's store; outlives reloads.
pub(super) enum Store {
    /// Swapped whole when `cache.max_bytes` changes.
    Memory(ArcSwap<Memory>),
    Redis(Arc<State>),
}

pub(super) struct Memory {
    cache: Cache<Key, Arc<Stored>>,
    max_bytes: u64,
}

/// One in-process entry, with what moka weighs and expires it by.
pub(super) struct Stored {
    entry: Entry,
    ttl: Duration,
    bytes: u32,
}

/// A handle on the store for one read or write, cheap to clone and `'static`.
#[derive(Clone)]
pub(super) enum Target {
    Memory(Cache<Key, Arc<Stored>>),
    Redis(Arc<State>),
}

impl Store {
    pub(super) fn new(max_bytes: u64, state: &Arc<State>) -> Store {
        if state.redis().is_some() {
            Store::Redis(state.clone())
        } else {
            Store::Memory(ArcSwap::from_pointee(Memory::new(max_bytes)))
        }
    }

    /// Applies a new `cache.max_bytes`: the in-process cache is rebuilt empty when it
    /// changes (moka's capacity is fixed at build).
    pub(super) fn resize(&self, max_bytes: u64) {
        if let Store::Memory(memory) = self
            && memory.load().max_bytes != max_bytes
        {
            memory.store(Arc::new(Memory::new(max_bytes)));
        }
    }

    pub(super) fn target(&self) -> Target {
        match self {
            Store::Memory(memory) => Target::Memory(memory.load().cache.clone()),
            Store::Redis(state) => Target::Redis(state.clone()),
        }
    }
}

impl Memory {
    fn new(max_bytes: u64) -> Memory {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &Key, stored: &Arc<Stored>| stored.bytes)
            .expire_after(PerEntry)
            .build();
        Memory { cache, max_bytes }
    }
}

/// Each entry lives for its own TTL (the model's `cache_ttl_s` or `cache.ttl_s`),
/// counted again from a refresh (`Cache-Control: no-cache`).
struct PerEntry;

#[expect(
    clippy::disallowed_types,
    reason = "moka's Expiry trait names std's Instant; nothing here compares it"
)]
type MokaInstant = std::time::Instant;

impl Expiry<Key, Arc<Stored>> for PerEntry {
    fn expire_after_create(
        &self,
        _key: &Key,
        stored: &Arc<Stored>,
        _created_at: MokaInstant,
    ) -> Option<Duration> {
        Some(stored.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        stored: &Arc<Stored>,
        _updated_at: MokaInstant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(stored.ttl)
    }
}

impl Target {
    /// The entry under `key`; `None` when there is none, or Redis failed (counted).
    pub(super) async fn get(&self, key: &Key) -> Option<Entry> {
        match self {
            Target::Memory(cache) => cache.get(key).await.map(|s| s.entry.clone()),
            Target::Redis(state) => {
                let redis = state.redis()?;
                let name = key.redis_key();
                let got = redis
                    .run("cache_get", |mut conn| async move {
                        redis::cmd("GET")
                            .arg(&name)
                            .query_async::<Option<Vec<u8>>>(&mut conn)
                            .await
                    })
                    .await;
                let bytes = match got {
                    Ok(bytes) => bytes?,
                    Err(error) => {
                        failed("get", &error);
                        return None;
                    }
                };
                match serde_json::from_slice(&bytes) {
                    Ok(entry) => Some(entry),
                    Err(error) => {
                        failed("decode", &error);
                        None
                    }
                }
            }
        }
    }

    /// Stores `entry` under `key` for `ttl`, replacing what was there.
    pub(super) async fn put(&self, key: Key, entry: Entry, ttl: Duration) {
        let bytes = match serde_json::to_vec(&entry) {
            Ok(bytes) => bytes,
            Err(error) => {
                failed("encode", &error);
                return;
            }
        };
        match self {
            Target::Memory(cache) => {
                let stored = Stored {
                    entry,
                    ttl,
                    bytes: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                };
                cache.insert(key, Arc::new(stored)).await;
                stored_one();
            }
            Target::Redis(state) => {
                let Some(redis) = state.redis() else { return };
                let name = key.redis_key();
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                let set = redis
                    .run("cache_set", |mut conn| async move {
                        redis::cmd("SET")
                            .arg(&name)
                            .arg(bytes)
                            .arg("PX")
                            .arg(ms)
                            .query_async::<()>(&mut conn)
                            .await
                    })
                    .await;
                match set {
                    Ok(()) => stored_one(),
                    Err(error) => failed("set", &error),
                }
            }
        }
    }
}

/// Counts an entry written (`switchyard_cache_stores_total`).
fn stored_one() {
    metrics::counter!("switchyard_cache_stores_total").increment(1);
}

/// Counts a store failure; the call goes on as a miss (or unstored).
fn failed(op: &'static str, error: &dyn std::fmt::Display) {
    metrics::counter!("switchyard_cache_errors_total", "op" => op).increment(1);
    // Redis being down is counted, not logged per request (its own errors are counted
    // too); an entry that cannot be read or written is worth a line.
    if matches!(op, "get" | "set") {
        tracing::debug!(op, %error, "response cache store failed; going on without it");
    } else {
        tracing::warn!(op, %error, "response cache store failed; going on without it");
    }
}
