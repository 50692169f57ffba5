//! Embeddings in the response cache: the same store, TTLs, scope, `Cache-Control` and
//! permission checks as chat completions, under a key of the input, `dimensions`,
//! `encoding_format` and extra fields ([`super::embed_key`]). A hit replays the stored
//! vectors; nothing reaches a provider, and no limit or budget is counted.

use std::time::Duration;

use super::{
    Body, Directive, Entry, Key, ResponseCache, Status, embed_key, permitted, scope, store,
};
use crate::{
    auth::Caller,
    background::Background,
    embeddings::{EmbedRequest, EmbedResponse},
    gateway::Live,
    routing::Deployment,
};

/// One embeddings call's question to the cache.
pub struct EmbedQuery<'a> {
    pub live: &'a Live,
    pub caller: &'a Caller,
    pub directive: Directive,
    pub request: &'a EmbedRequest,
}

/// The cache's answer to an [`EmbedQuery`].
pub struct EmbedLookup {
    pub status: Status,
    pub hit: Option<EmbedHit>,
    /// Where the answer goes once complete; `None` when it must not be stored.
    pub fill: Option<EmbedFill>,
}

/// Stored vectors that may serve this call.
pub struct EmbedHit {
    pub response: EmbedResponse,
    /// The deployment that produced them, as the live catalog has it.
    pub deployment: Deployment,
    /// What the original answer cost at the deployment's live price.
    pub saved_usd: Option<f64>,
}

/// Where one call's vectors are stored once they are complete.
pub struct EmbedFill {
    target: store::Target,
    background: Background,
    key: Key,
    ttl: Duration,
}

impl EmbedFill {
    /// Stores the answer from `deployment`, off the caller's path.
    pub fn store(self, response: &EmbedResponse, deployment: &Deployment) {
        let entry = Entry {
            native: None,
            deployment: deployment.id.to_string(),
            provider: deployment.provider_name.to_string(),
            body: Body::Embeddings(response.clone()),
        };
        let EmbedFill {
            target,
            background,
            key,
            ttl,
        } = self;
        background.spawn(move |_| async move { target.put(key, entry, ttl).await });
    }
}

impl ResponseCache {
    /// Looks an embeddings call up, counted like a chat lookup
    /// (`switchyard_cache_requests_total{result}`, the saved USD on a hit).
    pub async fn look_up_embeddings(&self, q: EmbedQuery<'_>) -> EmbedLookup {
        let lookup = self.decide_embeddings(&q).await;
        metrics::counter!("switchyard_cache_requests_total", "result" => lookup.status.as_str())
            .increment(1);
        if let Some(EmbedHit {
            saved_usd: Some(usd),
            ..
        }) = &lookup.hit
            && let Ok(model) = q.live.catalog.model(&q.request.model)
        {
            metrics::counter!(
                "switchyard_cache_saved_usd_micros_total",
                "model" => model.name.to_string()
            )
            .increment((usd * 1e6).round() as u64);
        }
        lookup
    }

    async fn decide_embeddings(&self, q: &EmbedQuery<'_>) -> EmbedLookup {
        let bypass = |fill| EmbedLookup {
            status: Status::Bypass,
            hit: None,
            fill,
        };
        let config = &q.live.config.cache;
        if !config.enabled || q.directive == Directive::NoStore {
            return bypass(None);
        }
        let Ok(model) = q.live.catalog.model(&q.request.model) else {
            return bypass(None);
        };
        let ttl = model.cache_ttl.unwrap_or(config.ttl);
        if ttl.is_zero() {
            return bypass(None);
        }
        let key = embed_key(scope(config, q.caller), &model.name, q.request);
        let target = self.store.target();
        let fill = Some(EmbedFill {
            target: target.clone(),
            background: self.background.clone(),
            key,
            ttl,
        });
        if q.directive == Directive::NoCache {
            return bypass(fill);
        }
        let hit = target.get(&key).await.and_then(|entry| {
            let deployment = permitted(&entry.deployment, model, q.live, q.caller)?;
            let Body::Embeddings(response) = entry.body else {
                return None;
            };
            let saved_usd = deployment.billed_price().map(|p| {
                p.cost(&crate::usage::cost::Tokens::of(
                    &response.usage.as_chat_usage(),
                ))
                .total_usd()
            });
            Some(EmbedHit {
                response,
                deployment: deployment.clone(),
                saved_usd,
            })
        });
        EmbedLookup {
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
