//! Replay protection for signed requests: every verified signature is remembered until
//! its timestamp leaves the window — in process always, and in Redis (`SET NX EX`) when
//! the state store is configured, so a replay to another replica is refused too.
//!
//! The in-process set is sharded (one short lock per shard, never a global one), bounded
//! ([`CAPACITY`] signatures), and each shard drops expired entries as it is written. A
//! full set refuses new signed requests (503) rather than forget a live signature: only a
//! caller holding a valid secret can fill it, and forgetting would open a replay.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use crate::{config::OnRedisError, error::Error, state::State};

/// Signatures remembered at most, across shards.
pub const CAPACITY: usize = 1 << 20;
const SHARDS: usize = 64;

/// The set of signatures seen inside the window; outlives reloads (a reload must not
/// open a replay window).
pub struct ReplayGuard {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// Picks a signature's shard.
    shard_of: foldhash::quality::RandomState,
    /// Redis, when the state store is configured (`None`: this process only).
    state: Option<Arc<State>>,
}

#[derive(Default)]
struct Shard {
    /// First 16 bytes of the signature (an HMAC-SHA256 output: as unique as the whole)
    /// -> until when (Unix seconds) it is remembered.
    seen: crate::FastMap<u128, i64>,
    by_expiry: BinaryHeap<Reverse<(i64, u128)>>,
}

impl Shard {
    fn prune(&mut self, now: i64) {
        while let Some(Reverse((until, id))) = self.by_expiry.peek().copied() {
            if until >= now {
                break;
            }
            self.by_expiry.pop();
            if self.seen.get(&id) == Some(&until) {
                self.seen.remove(&id);
            }
        }
    }
}

/// The refusal for a signature seen before.
pub fn replayed() -> Error {
    Error::Unauthorized {
        message: "Signed request refused: this signature was already used. Sign every request \
                  afresh (a retry needs a new timestamp and signature)."
            .to_owned(),
        code: "signature_replayed",
    }
}

impl ReplayGuard {
    pub fn new(state: Option<Arc<State>>) -> ReplayGuard {
        ReplayGuard::with_capacity(state, CAPACITY)
    }

    fn with_capacity(state: Option<Arc<State>>, capacity: usize) -> ReplayGuard {
        ReplayGuard {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            shard_of: foldhash::quality::RandomState::default(),
            state,
        }
    }

    /// Remembers `signature` until `until` (Unix seconds); refuses it when it was seen
    /// before, here or (with Redis) on any replica.
    pub async fn check(&self, signature: &[u8; 32], until: i64, now: i64) -> Result<(), Error> {
        self.check_local(signature, until, now)?;
        let Some((state, redis)) = self.state.as_ref().and_then(|s| Some((s, s.redis()?))) else {
            return Ok(());
        };
        let key = format!("switchyard:sig:{}", hex::encode(signature));
        let ttl = (until - now).max(1);
        let first = redis
            .run("replay", |mut conn| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
            .await;
        match first {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(replayed()),
            Err(e) => match state.on_redis_error() {
                // As with limits: each replica still refuses replays it saw itself.
                OnRedisError::Open => {
                    tracing::warn!(error = %e, "replay check on this replica only: Redis is unavailable");
                    Ok(())
                }
                OnRedisError::Closed => {
                    // Refused unchecked: the same signature may come back once Redis does.
                    self.forget_local(signature);
                    Err(Error::Overloaded {
                        message: "signed requests cannot be checked for replay now (Redis \
                                  cannot be reached); retry shortly"
                            .to_owned(),
                        retry_after: Duration::from_secs(1),
                    })
                }
            },
        }
    }

    fn forget_local(&self, signature: &[u8; 32]) {
        let (id, shard) = self.slot(signature);
        shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seen
            .remove(&id);
    }

    fn slot(&self, signature: &[u8; 32]) -> (u128, &Mutex<Shard>) {
        let mut id = [0u8; 16];
        id.copy_from_slice(&signature[..16]);
        (
            u128::from_le_bytes(id),
            // A keyed hash, seeded at random per process: a key holder grinding timestamps
            // cannot aim its signatures at one shard and fill it for everyone else.
            &self.shards
                [(std::hash::BuildHasher::hash_one(&self.shard_of, signature) as usize) % SHARDS],
        )
    }

    /// The in-process half of [`ReplayGuard::check`].
    pub fn check_local(&self, signature: &[u8; 32], until: i64, now: i64) -> Result<(), Error> {
        let (id, shard) = self.slot(signature);
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        shard.prune(now);
        if shard.seen.contains_key(&id) {
            return Err(replayed());
        }
        if shard.seen.len() >= self.per_shard {
            metrics::counter!("switchyard_replay_set_full_total").increment(1);
            return Err(Error::Overloaded {
                message: "too many signed requests inside the signature window; retry shortly"
                    .to_owned(),
                retry_after: Duration::from_secs(1),
            });
        }
        shard.seen.insert(id, until);
        shard.by_expiry.push(Reverse((until, id)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(capacity: usize) -> ReplayGuard {
        ReplayGuard::with_capacity(None, capacity)
    }

    fn sig(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn a_signature_is_refused_until_it_expires() {
        let g = guard(1024);
        g.check_local(&sig(1), 1300, 1000).unwrap();
        let e = g.check_local(&sig(1), 1300, 1299).unwrap_err();
        assert_eq!(e.spec().code, Some("signature_replayed"));
        assert_eq!(e.spec().status, 401);
        // Past its window it is forgotten (its timestamp is refused as expired anyway).
        g.check_local(&sig(1), 1700, 1301).unwrap();
        g.check_local(&sig(2), 1300, 1000).unwrap();
    }

    #[test]
    fn a_full_set_refuses_rather_than_forgets() {
        // One entry a shard: the shards are picked by a keyed hash, so the set is full
        // after at most one signature more than it has shards.
        let g = guard(SHARDS);
        let mut n = 0u8;
        let refused = loop {
            n += 1;
            if let Err(e) = g.check_local(&sig(n), 2000, 1000) {
                break e;
            }
        };
        assert_eq!(refused.spec().status, 503);
        assert!(usize::from(n) <= SHARDS + 1);
        // Nothing accepted was forgotten to make room.
        for i in 1..n {
            let e = g.check_local(&sig(i), 2000, 1000).unwrap_err();
            assert_eq!(e.spec().code, Some("signature_replayed"));
        }
        // Expired entries make room.
        g.check_local(&sig(n), 3000, 2001).unwrap();
    }
}
