//! Counting a request's input tokens without answering it (Anthropic's
//! `POST /v1/messages/count_tokens`): authenticated and admitted like a call, routed to
//! find the deployments that would serve it, and never counted against a limit or
//! budget (nothing is generated).
//!
//! Where the count comes from, in order: the provider's own count endpoint, asked of each
//! planned deployment that has one ([`Provider::count_tokens`]) until one answers; tiktoken
//! when the first planned deployment's model is an OpenAI model; the documented estimate
//! ([`crate::usage::tokens::estimate`]) otherwise. The answer says which.
//!
//! [`Provider::count_tokens`]: crate::providers::Provider::count_tokens

use std::sync::Arc;

use super::{Call, Refusal, stages};
use crate::{
    chat::ChatRequest,
    error::Error,
    gateway::Gateway,
    routing::Needs,
    telemetry::{Outcome, UNKNOWN_MODEL},
    usage::tokens::{self, Encoding},
};

/// Where a count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountSource {
    /// The provider's own count endpoint.
    Provider,
    /// tiktoken, with the encoding of the deployment's OpenAI model.
    Tiktoken,
    /// The documented estimate.
    Estimate,
}

impl CountSource {
    /// As the `x-switchyard-token-count` header says it.
    pub fn as_str(self) -> &'static str {
        match self {
            CountSource::Provider => "provider",
            CountSource::Tiktoken => "tiktoken",
            CountSource::Estimate => "estimate",
        }
    }
}

/// A request's input tokens and where the figure came from.
#[derive(Debug, Clone)]
pub struct Counted {
    pub input_tokens: u32,
    pub source: CountSource,
    /// The provider that counted, when one did.
    pub provider: Option<Arc<str>>,
    pub request_id: String,
}

impl Gateway {
    /// Counts `request`'s input tokens for the deployments its model routes to.
    pub async fn count_tokens(
        self: &Arc<Self>,
        mut call: Call,
        mut request: ChatRequest,
    ) -> Result<Counted, Refusal> {
        if call.pending.is_some() {
            return Err(call.refuse(crate::auth::signed::invalid()));
        }
        let label = call
            .live
            .catalog
            .label(&request.model)
            .unwrap_or_else(|| Arc::from(UNKNOWN_MODEL));
        call.record.labelled(label, false);
        if let Err((stage, error)) = stages::admit(&mut call, &mut request).await {
            call.record.refused_by = Some(stage);
            return Err(call.refuse(error));
        }
        let route = match call
            .live
            .catalog
            .route(&request, &Needs::of(&request), &call.caller)
        {
            Ok(r) => r,
            Err(error) => return Err(call.refuse(error)),
        };
        let request_id = call.record.request_id.clone();
        if let Some(native) = request.native.as_deref() {
            for planned in &route.plan {
                let d = &planned.deployment;
                let Some(counting) = d.provider.count_tokens(native, &d.model) else {
                    continue;
                };
                match counting.await {
                    Ok(n) => {
                        call.record.provider = Some(d.provider_name.clone());
                        call.record.end(Outcome::Ok);
                        return Ok(Counted {
                            input_tokens: n,
                            source: CountSource::Provider,
                            provider: Some(d.provider_name.clone()),
                            request_id,
                        });
                    }
                    // The caller's own mistake would be the same everywhere.
                    Err(e) if !e.is_retryable() => {
                        return Err(call.refuse(Error::upstream(d.provider_name.clone(), e)));
                    }
                    Err(e) => {
                        tracing::info!(request_id, provider = %d.provider_name, error = %e,
                            "count_tokens: the provider could not count; trying the next");
                    }
                }
            }
        }
        let encoding = route
            .plan
            .first()
            .and_then(|p| Encoding::for_model(&p.deployment.model));
        let counted = match encoding {
            Some(encoding) => {
                // The caller asked for a count: wait for the encoding (loaded once, off
                // the runtime's threads) rather than guess.
                let loaded = tokio::task::spawn_blocking(move || encoding.load().is_some())
                    .await
                    .unwrap_or(false);
                loaded
                    .then(|| tokens::count(&request, encoding))
                    .flatten()
                    .map(|n| (n, CountSource::Tiktoken))
            }
            None => None,
        };
        let (input_tokens, source) =
            counted.unwrap_or_else(|| (tokens::estimate(&request), CountSource::Estimate));
        call.record.end(Outcome::Ok);
        Ok(Counted {
            input_tokens,
            source,
            provider: None,
            request_id,
        })
    }
}
