//! The store of responses behind `store: true`, `previous_response_id` and
//! `GET`/`DELETE /v1/responses/{id}`: in process (moka, bounded by count and bytes, with a
//! TTL) or, when `state.redis_url` is set, in Redis (`SET ... PX`), so a conversation
//! continues on any replica.

use std::{sync::Arc, time::Duration};

use moka::future::Cache;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{config::ResponsesConfig, error::Error, state::State};

/// One stored response: whose it is, the object as the caller got it, and the
/// conversation that led to it (input items, then its output items) so that
/// `previous_response_id` rebuilds the whole conversation for any wire format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// The caller key's name; `None` for an anonymous caller.
    pub owner: Option<String>,
    /// The Responses object.
    pub response: Value,
    /// Every item of the conversation up to and including this response's output.
    pub items: Vec<Value>,
}

/// The gateway's response store; outlives reloads.
pub enum ResponseStore {
    Memory(Cache<String, Arc<Stored>>),
    Redis { state: Arc<State>, ttl: Duration },
}

/// The Redis key of a stored response.
fn redis_key(id: &str) -> String {
    format!("switchyard:responses:{id}")
}

impl ResponseStore {
    /// In Redis when the state has it, else in process within `config`'s bounds.
    pub fn new(config: &ResponsesConfig, state: &Arc<State>) -> ResponseStore {
        if state.redis().is_some() {
            return ResponseStore::Redis {
                state: state.clone(),
                ttl: config.ttl,
            };
        }
        // One capacity holds both bounds: every entry weighs at least its share of
        // `max_bytes` under `max_stored`, so neither the count nor the bytes can pass theirs.
        let floor =
            u32::try_from(config.max_bytes.div_ceil(config.max_stored).max(1)).unwrap_or(u32::MAX);
        let cache = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(move |_id: &String, stored: &Arc<Stored>| {
                let bytes = serde_json::to_vec(&**stored).map_or(0, |b| b.len());
                u32::try_from(bytes).unwrap_or(u32::MAX).max(floor)
            })
            .time_to_live(config.ttl)
            .build();
        ResponseStore::Memory(cache)
    }

    /// Keeps `stored` under `id`. A store that cannot be written is logged and counted:
    /// the answer has gone out already.
    pub async fn put(&self, id: &str, stored: Stored) {
        match self {
            ResponseStore::Memory(cache) => cache.insert(id.to_owned(), Arc::new(stored)).await,
            ResponseStore::Redis { state, ttl } => {
                let Some(redis) = state.redis() else { return };
                let bytes = match serde_json::to_vec(&stored) {
                    Ok(b) => b,
                    Err(e) => return failed("encode", &e),
                };
                let key = redis_key(id);
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                let set = redis
                    .run("responses_set", |mut conn| async move {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(bytes)
                            .arg("PX")
                            .arg(ms)
                            .query_async::<()>(&mut conn)
                            .await
                    })
                    .await;
                if let Err(e) = set {
                    failed("set", &e);
                }
            }
        }
    }

    /// The response `id` if it exists and is `owner`'s; a response of another key is
    /// not found, as OpenAI scopes responses to a project.
    pub async fn get(&self, id: &str, owner: Option<&str>) -> Result<Arc<Stored>, Error> {
        let found = match self {
            ResponseStore::Memory(cache) => cache.get(id).await,
            ResponseStore::Redis { state, .. } => {
                let Some(redis) = state.redis() else {
                    return Err(not_found(id));
                };
                let key = redis_key(id);
                let got = redis
                    .run("responses_get", |mut conn| async move {
                        redis::cmd("GET")
                            .arg(&key)
                            .query_async::<Option<Vec<u8>>>(&mut conn)
                            .await
                    })
                    .await
                    .map_err(|e| unavailable(&e))?;
                match got {
                    None => None,
                    Some(bytes) => Some(Arc::new(serde_json::from_slice(&bytes).map_err(|e| {
                        Error::Internal {
                            detail: format!("a stored response does not decode: {e}"),
                        }
                    })?)),
                }
            }
        };
        match found {
            Some(stored) if stored.owner.as_deref() == owner => Ok(stored),
            _ => Err(not_found(id)),
        }
    }

    /// Removes the response `id` when it is `owner`'s.
    pub async fn delete(&self, id: &str, owner: Option<&str>) -> Result<(), Error> {
        self.get(id, owner).await?;
        match self {
            ResponseStore::Memory(cache) => {
                cache.invalidate(id).await;
                Ok(())
            }
            ResponseStore::Redis { state, .. } => {
                let Some(redis) = state.redis() else {
                    return Err(not_found(id));
                };
                let key = redis_key(id);
                redis
                    .run("responses_del", |mut conn| async move {
                        redis::cmd("DEL")
                            .arg(&key)
                            .query_async::<u64>(&mut conn)
                            .await
                    })
                    .await
                    .map(drop)
                    .map_err(|e| unavailable(&e))
            }
        }
    }
}

fn not_found(id: &str) -> Error {
    Error::ResponseNotFound { id: id.to_owned() }
}

/// Redis cannot be read: the conversation cannot be rebuilt, and saying "not found"
/// would be a lie.
fn unavailable(e: &crate::state::RedisError) -> Error {
    tracing::debug!(%e, "the response store cannot be read");
    Error::Overloaded {
        message: "the response store is unavailable (Redis cannot be reached); try again \
                  shortly"
            .to_owned(),
        retry_after: Duration::from_secs(1),
    }
}

fn failed(op: &'static str, e: &dyn std::fmt::Display) {
    metrics::counter!("switchyard_responses_store_errors_total", "op" => op).increment(1);
    tracing::warn!(op, %e, "a response could not be stored");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(owner: Option<&str>) -> Stored {
        Stored {
            owner: owner.map(str::to_owned),
            response: serde_json::json!({"id": "resp_1"}),
            items: Vec::new(),
        }
    }

    fn memory(max_stored: u64) -> ResponseStore {
        let state = Arc::new(State::new(&crate::config::StateConfig::default()).unwrap());
        let config = ResponsesConfig {
            max_stored,
            ..ResponsesConfig::default()
        };
        ResponseStore::new(&config, &state)
    }

    #[tokio::test]
    async fn a_response_is_found_by_its_owner_only() {
        let store = memory(10);
        store.put("resp_1", stored(Some("team-a"))).await;
        assert!(store.get("resp_1", Some("team-a")).await.is_ok());
        assert!(matches!(
            store.get("resp_1", Some("team-b")).await,
            Err(Error::ResponseNotFound { .. })
        ));
        assert!(store.get("resp_1", None).await.is_err());
        assert!(store.delete("resp_1", Some("team-b")).await.is_err());
        store.delete("resp_1", Some("team-a")).await.unwrap();
        assert!(store.get("resp_1", Some("team-a")).await.is_err());
    }

    #[tokio::test]
    async fn the_count_bound_holds() {
        let store = memory(3);
        for i in 0..20 {
            store.put(&format!("resp_{i}"), stored(None)).await;
        }
        let ResponseStore::Memory(cache) = &store else {
            panic!("in process")
        };
        cache.run_pending_tasks().await;
        assert!(cache.entry_count() <= 3, "{}", cache.entry_count());
    }
}
