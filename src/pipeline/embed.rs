//! Embeddings through the pipeline: the same ingress ([`Gateway::ingress`]), stages,
//! cache, limits, routing, attempts and record as a chat completion, for an
//! [`EmbedRequest`].
//!
//! The seam with the chat path is small: the stages that apply to any call are reused as
//! functions (`authorize` is the caller's check, `limit` is [`stages::reserve_tokens`]
//! with no output), routing is [`crate::routing::Catalog::route_other`] (the hard filters
//! and the policy, judged on the estimated input tokens) followed by one more hard
//! filter — deployments whose wire format cannot embed are removed, and a model with none
//! left is refused with a 400 — and the attempts are [`failover::run`] over
//! [`crate::providers::Provider::embed`]. The data controls (guard, content rules,
//! redaction) run on the texts seen as user messages ([`data_controls`]).

use std::sync::Arc;

use super::{
    Call, Head, Refusal, data, settings,
    stages::{self, Stage},
    with_explain,
};
use crate::{
    cache::{self, EmbedFill, EmbedQuery},
    chat::{ChatRequest, Content},
    embeddings::{self, EmbedInput, EmbedRequest, EmbedResponse, EncodingFormat},
    error::Error,
    failover::{self, Served},
    gateway::Gateway,
    routing::{Needs, Removed, Route},
    telemetry::{Outcome, UNKNOWN_MODEL},
};

/// What the pipeline hands an embeddings surface to encode.
pub enum EmbedAnswer {
    /// The vectors, and the encoding the caller asked for.
    Complete(Embedded),
    /// No answer: why, for the surface's error shape.
    Refused(Refusal),
}

/// An embeddings answer and its head.
pub struct Embedded {
    pub head: Head,
    pub response: EmbedResponse,
    pub encoding: EncodingFormat,
}

impl Gateway {
    /// Serves one decoded embeddings call: authorize and validate, the cache, the limits
    /// (input tokens estimated before, settled on the provider's usage after), routing to
    /// the model's deployments that can embed, and the attempts with failover.
    pub async fn serve_embeddings(
        self: &Arc<Self>,
        mut call: Call,
        request: EmbedRequest,
    ) -> EmbedAnswer {
        call.record.operation = "embeddings";
        if call.pending.is_some() {
            return self.embed_refused(call, crate::auth::signed::invalid());
        }
        let label = call
            .live
            .catalog
            .label(&request.model)
            .unwrap_or_else(|| Arc::from(UNKNOWN_MODEL));
        call.record.labelled(label, false);
        if let Some(trace) = &mut call.record.trace {
            trace.on_model(&request.model);
        }
        if let Err(error) = call.caller().authorize() {
            call.record.refused_by = Some(stages::Authorize::NAME);
            return self.embed_refused(call, error);
        }
        if let Err(error) = embeddings::validate(&request) {
            call.record.refused_by = Some(stages::Validate::NAME);
            return self.embed_refused(call, error);
        }
        let mut request = request;
        if let Err((stage, error)) = data_controls(&mut call, &mut request).await {
            call.record.refused_by = Some(stage);
            return self.embed_refused(call, error);
        }
        let encoding = request.encoding_format.unwrap_or_default();
        let lookup = self
            .cache()
            .look_up_embeddings(EmbedQuery {
                live: &call.live,
                caller: &call.caller,
                directive: call.directive,
                request: &request,
            })
            .await;
        call.cache = lookup.status;
        call.record.cache = Some(lookup.status);
        if let Some(hit) = lookup.hit {
            let head = Head {
                request_id: call.record.request_id.clone(),
                provider: hit.deployment.provider_name.clone(),
                attempts: String::new(),
                rate_limits: crate::limits::Granted::default(),
                cache: cache::Status::Hit,
            };
            call.record.saved_usd = hit.saved_usd;
            call.record.first_byte();
            call.record.end(Outcome::Ok);
            return EmbedAnswer::Complete(Embedded {
                head,
                response: hit.response,
                encoding,
            });
        }
        let input = embeddings::estimate_tokens(&request);
        if let Err(error) =
            stages::reserve_tokens(&mut call, &request.model, input, stages::Output::Nothing).await
        {
            call.record.refused_by = Some(stages::Limit::NAME);
            return self.embed_refused(call, error);
        }
        let needs = Needs {
            tokens: input,
            ..Needs::default()
        };
        let route = match call
            .live
            .catalog
            .route_other(&request.model, &needs, &call.caller)
            .and_then(|route| embedding_deployments(route, &request.model))
        {
            Ok(route) => route,
            Err(error) => return self.embed_refused(call, error),
        };
        let started = tokio::time::Instant::now();
        let trace = call.record.trace.as_ref().map(|t| t.propagation());
        let settings = settings(&call.live, &route, false, trace);
        let result = failover::run(&route.plan, &settings, |d| {
            let request = &request;
            async move { d.provider.embed(request, &d.model).await }
        })
        .await;
        self.after_attempts(&request.model, &route, &result, started);
        match with_explain(result, route) {
            Ok(served) => call.embedded(served, lookup.fill, encoding),
            Err(failed) => EmbedAnswer::Refused(self.failed_refusal(call, failed)),
        }
    }

    fn embed_refused(&self, call: Call, error: Error) -> EmbedAnswer {
        let about = (call.record.model().to_owned(), call.record.key.clone());
        let refusal = call.refuse(error);
        self.note_error(about, &refusal);
        EmbedAnswer::Refused(refusal)
    }
}

/// The chat data controls on the texts to embed, each seen as one user message: the
/// model's guard, the prompt's content rules and PII redaction (the redacted texts are
/// what is embedded and keyed in the cache; there is nothing to restore in a vector).
/// Token input has no text to check and passes. Nothing is built when no control applies.
async fn data_controls(call: &mut Call, request: &mut EmbedRequest) -> Result<(), stages::Refused> {
    let live = call.live.clone();
    let key = call.caller.key.as_ref().map(|k| k.name.as_str());
    let any = !live.guards.is_empty()
        || live.config.data.rules.prompt.is_some()
        || live.config.data.redaction(key, call.caller.level).is_some();
    let Some(texts) = request.input.texts().filter(|_| any) else {
        return Ok(());
    };
    let messages: Vec<serde_json::Value> = texts
        .iter()
        .map(|t| serde_json::json!({ "role": "user", "content": t }))
        .collect();
    // Built through serde so that the view follows the chat request's fields as they grow.
    let mut view: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": request.model,
        "messages": messages,
    }))
    .map_err(|e| {
        (
            stages::Validate::NAME,
            Error::Internal {
                detail: format!("an embeddings request as chat messages: {e}"),
            },
        )
    })?;
    run(data::Guard, call, &mut view).await?;
    run(data::Screen, call, &mut view).await?;
    run(data::Redact, call, &mut view).await?;
    // A vector cannot be restored: the originals are not kept.
    call.restore = None;
    let redacted: Vec<String> = view
        .messages
        .into_iter()
        .map(|m| match m.content {
            Some(Content::Text(t)) => t,
            _ => String::new(),
        })
        .collect();
    request.input = match (&request.input, <[String; 1]>::try_from(redacted)) {
        (EmbedInput::Text(_), Ok([one])) => EmbedInput::Text(one),
        (_, Ok(one)) => EmbedInput::Texts(one.into()),
        (_, Err(many)) => EmbedInput::Texts(many),
    };
    Ok(())
}

async fn run<S: Stage>(
    stage: S,
    call: &mut Call,
    view: &mut ChatRequest,
) -> Result<(), stages::Refused> {
    stage.run(call, view).await.map_err(|e| (S::NAME, e))
}

/// The hard filter of embeddings: the deployments whose wire format can embed their
/// model ([`crate::providers::Provider::embeds`]), the others listed as removed; when
/// none is left, a 400 naming the capability.
fn embedding_deployments(mut route: Route, model: &str) -> Result<Route, Error> {
    let mut removed = Vec::new();
    route.plan.retain(|p| {
        let d = &p.deployment;
        let keeps = d.provider.embeds(&d.model);
        if !keeps {
            removed.push(Removed {
                id: d.id.clone(),
                reason: "does not support embeddings".to_owned(),
            });
        }
        keeps
    });
    route.skipped.retain(|d| d.provider.embeds(&d.model));
    if route.plan.is_empty() {
        return Err(Error::Unsupported {
            model: model.to_owned(),
            capability: "embeddings",
        });
    }
    route.explain.removed.extend(removed);
    Ok(route)
}

impl Call {
    /// Marks the call as an embeddings call in its record, from ingress on (a body that
    /// fails to parse is logged as one too).
    pub fn for_embeddings(&mut self) {
        self.record.operation = "embeddings";
    }

    /// Records what served, stores the vectors on a miss, and hands back the answer.
    fn embedded(
        mut self,
        mut served: Served<EmbedResponse>,
        fill: Option<EmbedFill>,
        encoding: EncodingFormat,
    ) -> EmbedAnswer {
        let head = self.served(&mut served);
        let usage = served.value.usage;
        self.record.usage = Some(usage.as_chat_usage());
        self.record.tokens_estimated = usage.estimated;
        if let Some(fill) = fill {
            fill.store(&served.value, &served.deployment);
        }
        self.record.first_byte();
        self.record.end(Outcome::Ok);
        EmbedAnswer::Complete(Embedded {
            head,
            response: served.value,
            encoding,
        })
    }
}
