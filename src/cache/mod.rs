//! The response cache: complete answers kept under a canonical key of the request, read
//! before routing and written after a clean answer. See `docs/cache.md`.
//!
//! - [`key`]: what is keyed and what is ignored, exhaustively;
//! - [`entry`]: what an entry holds, a stream folded into one, and its replay;
//! - [`store`]: moka in process, or Redis shared by every replica.
//!
//! The pipeline asks [`ResponseCache::look_up`] right after its stages; a hit becomes the
//! answer, a miss carries a [`Fill`] to the end of the call, which stores the answer off
//! the caller's path once it is complete.

mod embeddings;
mod entry;
mod key;
mod store;

use std::{sync::Arc, time::Duration};

pub use embeddings::{EmbedFill, EmbedHit, EmbedLookup, EmbedQuery};
pub use entry::{Assembler, Body, Entry, replay};
pub use key::{Key, Scope, embed_key, key};

use crate::{
    auth::Caller,
    background::Background,
    chat::{ChatChunk, ChatRequest, ChatResponse},
    config::{CacheConfig, CacheScope},
    gateway::Live,
    routing::{Deployment, ModelRoute, filter},
    state::State,
};

/// The response header (and gRPC metadata) saying what the cache did.
pub const CACHE_HEADER: &str = "x-switchyard-cache";

/// What the caller's `Cache-Control` asks of the cache; the strongest directive wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Directive {
    /// Read and write as configured.
    #[default]
    Normal,
    /// `no-cache`: do not answer from the cache, but store the fresh answer.
    NoCache,
    /// `no-store`: neither read nor write.
    NoStore,
}

impl Directive {
    /// The directive of one `Cache-Control` value (comma-separated, any case).
    pub fn parse(value: &str) -> Directive {
        value
            .split(',')
            .map(|d| d.trim())
            .fold(Directive::Normal, |strongest, d| {
                let this = if d.eq_ignore_ascii_case("no-store") {
                    Directive::NoStore
                } else if d.eq_ignore_ascii_case("no-cache") {
                    Directive::NoCache
                } else {
                    Directive::Normal
                };
                strongest.max(this)
            })
    }
}

/// What the cache did for a call (`x-switchyard-cache`, the request log's `cache`, the
/// `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Hit,
    Miss,
    /// The cache was not read: disabled, the model's `cache_ttl_s = 0`, an unknown model,
    /// a call asking for `logprobs` / `top_logprobs`, or the caller's `no-cache` /
    /// `no-store`.
    Bypass,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Hit => "hit",
            Status::Miss => "miss",
            Status::Bypass => "bypass",
        }
    }
}

/// The gateway's response cache. Lives on the gateway, outliving reloads.
pub struct ResponseCache {
    store: store::Store,
    /// Writes run here, so shutdown waits for them (each bounded by the Redis timeout).
    background: Background,
}

/// One call's question to the cache.
pub struct Query<'a> {
    pub live: &'a Live,
    pub caller: &'a Caller,
    pub directive: Directive,
    pub request: &'a ChatRequest,
}

/// The cache's answer to a [`Query`].
pub struct Lookup {
    pub status: Status,
    /// The stored answer, on a hit.
    pub hit: Option<Hit>,
    /// Where the call's answer goes once complete; `None` when it must not be stored.
    pub fill: Option<Fill>,
}

/// A stored answer that may serve this call.
pub struct Hit {
    /// The stored response under a new id (its `created` is the original's).
    pub response: ChatResponse,
    /// The deployment that produced it, as the live catalog has it.
    pub deployment: Deployment,
    /// What the original answer cost at the deployment's live price; `None` when either
    /// the usage or the price is unknown.
    pub saved_usd: Option<f64>,
}

impl Lookup {
    fn bypass(fill: Option<Fill>) -> Lookup {
        Lookup {
            status: Status::Bypass,
            hit: None,
            fill,
        }
    }
}

impl ResponseCache {
    /// The cache for `config`, in Redis when `state` has it, else in process.
    pub fn new(config: &CacheConfig, state: &Arc<State>, background: Background) -> Self {
        ResponseCache {
            store: store::Store::new(config.max_bytes, state),
            background,
        }
    }

    /// Applies a reloaded `[cache]`: a new `max_bytes` rebuilds the in-process store
    /// (empty). The rest is read from the live config per call.
    pub fn configure(&self, config: &CacheConfig) {
        self.store.resize(config.max_bytes);
    }

    /// Looks the call up: a hit, or what to do with its answer. Never fails: a store
    /// error is a miss. Counts `switchyard_cache_requests_total{result}` and, on a hit,
    /// `switchyard_cache_saved_usd_micros_total{model}`.
    pub async fn look_up(&self, q: Query<'_>) -> Lookup {
        let lookup = self.decide(&q).await;
        metrics::counter!("switchyard_cache_requests_total", "result" => lookup.status.as_str())
            .increment(1);
        if let Some(Hit {
            saved_usd: Some(usd),
            ..
        }) = &lookup.hit
        {
            // The model label comes from the catalog, never from the caller's string.
            if let Ok(model) = q.live.catalog.model(&q.request.model) {
                metrics::counter!(
                    "switchyard_cache_saved_usd_micros_total",
                    "model" => model.name.to_string()
                )
                .increment((usd * 1e6).round() as u64);
            }
        }
        lookup
    }

    async fn decide(&self, q: &Query<'_>) -> Lookup {
        let config = &q.live.config.cache;
        if !config.enabled || q.directive == Directive::NoStore || asks_for_logprobs(q.request) {
            return Lookup::bypass(None);
        }
        let Ok(model) = q.live.catalog.model(&q.request.model) else {
            return Lookup::bypass(None);
        };
        let ttl = model.cache_ttl.unwrap_or(config.ttl);
        if ttl.is_zero() {
            return Lookup::bypass(None);
        }
        let key = key(scope(config, q.caller), &model.name, q.request);
        let target = self.store.target();
        let fill = Some(Fill {
            target: target.clone(),
            background: self.background.clone(),
            key,
            ttl,
            assembler: Assembler::default(),
        });
        if q.directive == Directive::NoCache {
            return Lookup::bypass(fill);
        }
        let hit = match target.get(&key).await {
            Some(entry) => usable(entry, model, q),
            None => None,
        };
        Lookup {
            status: if hit.is_some() {
                Status::Hit
            } else {
                Status::Miss
            },
            hit,
            fill,
        }
    }
}

/// Who may share the call's entries.
fn scope<'a>(config: &CacheConfig, caller: &'a Caller) -> Scope<'a> {
    match (config.scope, &caller.key) {
        (CacheScope::Shared, _) => Scope::Shared,
        (CacheScope::Key, Some(k)) => Scope::Key(&k.name),
        (CacheScope::Key, None) => Scope::Anonymous,
    }
}

/// Whether the call asks for token log probabilities (`logprobs: true`, or any
/// `top_logprobs`). Such calls neither read nor write the cache: an entry folded from a
/// stream, and every replay, carries no logprobs, so a hit could not give them back.
fn asks_for_logprobs(request: &ChatRequest) -> bool {
    let set = |field: &str| {
        request
            .extra
            .get(field)
            .is_some_and(|v| !matches!(v, serde_json::Value::Null | serde_json::Value::Bool(false)))
    };
    set("logprobs") || set("top_logprobs")
}

/// The entry as a hit, when the deployment that produced it still serves the model and
/// the caller may use it (its key's model and provider lists, its security level's
/// tags): a cached answer never reaches a caller the routing filters would have kept
/// from that deployment, whatever the scope. Else a miss.
fn usable(entry: Entry, model: &ModelRoute, q: &Query<'_>) -> Option<Hit> {
    let deployment = permitted(&entry.deployment, model, q.live, q.caller)?;
    let Body::Chat(mut response) = entry.body else {
        return None;
    };
    response.native = entry.native.map(bytes::Bytes::from);
    let saved_usd = response
        .usage
        .as_ref()
        .zip(deployment.billed_price())
        .map(|(u, p)| p.cost(&crate::usage::cost::Tokens::of(u)).total_usd());
    // Each answer a caller gets is its own: a fresh id, the original `created`.
    response.id = format!(
        "chatcmpl-{:016x}{:08x}",
        fastrand::u64(..),
        fastrand::u32(..)
    );
    Some(Hit {
        response,
        deployment: deployment.clone(),
        saved_usd,
    })
}

/// The deployment `id` of `model` that produced an entry, when it still serves the model
/// and `caller` may use it (its key's model and provider lists, its security level's
/// tags).
fn permitted<'m>(
    id: &str,
    model: &'m ModelRoute,
    live: &Live,
    caller: &Caller,
) -> Option<&'m Deployment> {
    let deployment = model.deployments.iter().find(|d| *d.id == *id)?;
    if let Some(k) = &caller.key
        && !(filter::model_allowed(k, &model.name, deployment)
            && filter::provider_allowed(k, deployment))
    {
        return None;
    }
    let tiers = &live.config.security_tiers;
    if tiers
        .required(caller.level)
        .any(|t| !deployment.tags.iter().any(|have| have == t))
    {
        return None;
    }
    Some(deployment)
}

/// Where one call's answer is stored once it is complete; dropped unused when it is not
/// (an error, a broken or abandoned stream).
pub struct Fill {
    target: store::Target,
    background: Background,
    key: Key,
    ttl: Duration,
    /// A streamed answer, folded as its chunks pass.
    assembler: Assembler,
}

impl Fill {
    /// Stores a complete JSON answer from `deployment`, off the caller's path.
    pub fn store(self, response: &ChatResponse, deployment: &Deployment) {
        self.write(response.clone(), deployment);
    }

    /// Notes one chunk of a streamed answer, as the provider sent it (usage included).
    pub fn push(&mut self, chunk: &ChatChunk) {
        self.assembler.push(chunk);
    }

    /// Stores a stream that finished cleanly, off the caller's path.
    pub fn store_stream(mut self, deployment: &Deployment) {
        let response = std::mem::take(&mut self.assembler).finish();
        self.write(response, deployment);
    }

    fn write(self, response: ChatResponse, deployment: &Deployment) {
        let entry = Entry {
            deployment: deployment.id.to_string(),
            provider: deployment.provider_name.to_string(),
            native: response
                .native
                .as_ref()
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(str::to_owned),
            body: Body::Chat(response),
        };
        let Fill {
            target,
            background,
            key,
            ttl,
            ..
        } = self;
        background.spawn(move |_| async move { target.put(key, entry, ttl).await });
    }
}

#[cfg(test)]
mod tests;
