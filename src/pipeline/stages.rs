//! The named stages between ingress and routing, in two runs around the cache lookup.
//!
//! A stage sees the admitted call and the decoded request and either lets it through
//! (possibly changed: redaction will rewrite messages) or refuses it.
//! - [`admit`], before the lookup:
//!   1. [`Authorize`] — the security level the request asks for is within its key's;
//!   2. [`Validate`] — the request is one any provider could serve.
//!   3. [`Guard`](super::data::Guard) — the model's Lua guard allows the request;
//!   4. [`Screen`](super::data::Screen) — the prompt passes the content rules;
//!   5. [`Redact`](super::data::Redact) — PII is replaced by placeholders before the
//!      cache key is made and before anything leaves ([`super::data`] says why here).
//! - the cache lookup ([`super::Gateway::serve`]; a hit is an answer, not a refusal, so
//!   it is not a stage);
//! - [`reserve`], after a miss — what only a provider call costs:
//!   6. [`Limit`] — the request's place under every rate limit and budget that applies,
//!   reserved all or nothing, settled when the request ends ([`crate::limits`]). Cache
//!   hits never reach it: they count against no limit or budget.
//!
//! Each is a type implementing [`Stage`] and one line in a run; the surfaces do not
//! change.

use std::future::Future;

use super::Call;
use crate::{
    chat::ChatRequest,
    error::Error,
    limits::{self, Ask},
    routing::Needs,
    usage::cost::Tokens,
};

/// One step of the pipeline. The future is `Send` so a stage may await (a cache or a
/// limiter in Redis) inside any surface's task.
pub trait Stage {
    /// The name the docs and the crate's layout use.
    const NAME: &'static str;

    /// Lets the call through, or refuses it with the caller's error.
    fn run(
        &self,
        call: &mut Call,
        request: &mut ChatRequest,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// What one run of stages ends with: the first refusal, named by its stage (the request
/// log's `refused_by`).
pub type Refused = (&'static str, Error);

/// The stages before the cache lookup, in order.
pub async fn admit(call: &mut Call, request: &mut ChatRequest) -> Result<(), Refused> {
    through(Authorize, call, request).await?;
    through(Validate, call, request).await?;
    through(super::data::Guard, call, request).await?;
    through(super::data::Screen, call, request).await?;
    through(super::data::Redact, call, request).await
}

/// The stages after a cache miss, in order.
pub async fn reserve(call: &mut Call, request: &mut ChatRequest) -> Result<(), Refused> {
    through(Limit, call, request).await
}

async fn through<S: Stage>(
    stage: S,
    call: &mut Call,
    request: &mut ChatRequest,
) -> Result<(), (&'static str, Error)> {
    stage.run(call, request).await.map_err(|e| (S::NAME, e))
}

/// The caller's key may ask for the security level the request names (the caller was
/// authenticated at ingress, before the body was read).
pub struct Authorize;

impl Stage for Authorize {
    const NAME: &'static str = "authorize";

    async fn run(&self, call: &mut Call, _request: &mut ChatRequest) -> Result<(), Error> {
        call.caller().authorize()
    }
}

/// The request is one any provider could serve: a model and at least one message.
pub struct Validate;

impl Stage for Validate {
    const NAME: &'static str = "validate";

    async fn run(&self, _call: &mut Call, request: &mut ChatRequest) -> Result<(), Error> {
        validate(request)
    }
}

/// The request's place under its key's, its model's and its key-on-model's limits and
/// its key's budget, reserved at once; the reservation settles with the request record
/// (real usage and cost, or released when the call failed or the caller went away).
pub struct Limit;

impl Stage for Limit {
    const NAME: &'static str = "limit";

    async fn run(&self, call: &mut Call, request: &mut ChatRequest) -> Result<(), Error> {
        if !call.live.rules.any() {
            return Ok(());
        }
        let needs = Needs::of(request);
        let input = needs.tokens.saturating_sub(needs.output_tokens);
        let output = match needs.output_tokens {
            0 => Output::Default,
            asked => Output::Asked(asked),
        };
        reserve_tokens(call, &request.model, input, output).await
    }
}

/// The output a reservation counts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// What the request asked for (`max_tokens`).
    Asked(u32),
    /// Nothing asked: the default output estimate.
    Default,
    /// The call produces no output tokens (embeddings).
    Nothing,
}

/// Reserves the call's place under the limits and budget of `model` (the name the caller
/// asked for) for `input` tokens and `output`: the [`Limit`] stage, and the same for calls
/// that are not chat completions (embeddings). Settled by the request record's end hook.
pub async fn reserve_tokens(
    call: &mut Call,
    model: &str,
    input: u32,
    output: Output,
) -> Result<(), Error> {
    let live = call.live.clone();
    if !live.rules.any() {
        return Ok(());
    }
    let key = call.caller.key.as_deref();
    // Unknown models are refused by routing; they have no limits of their own.
    let Ok(model) = live.catalog.model(model) else {
        return Ok(());
    };
    let (subjects, budget) = live.rules.applying(key, &model.name);
    if subjects.is_empty() && budget.is_none() {
        return Ok(());
    }
    // The output asked for; when none is, the default output estimate (or the
    // model's cap when it is lower), never more than a minute of the tightest `tpm`
    // holds: a request that did not ask for much output is not "too large".
    let output = if let Output::Asked(n) = output {
        u64::from(n)
    } else if output == Output::Nothing {
        0
    } else {
        let cap = model
            .deployments
            .iter()
            .filter_map(|d| d.capabilities.max_output)
            .max()
            .map_or(limits::DEFAULT_OUTPUT_ESTIMATE, |c| {
                c.min(limits::DEFAULT_OUTPUT_ESTIMATE)
            });
        let room = subjects
            .iter()
            .filter_map(|s| s.limits.tpm)
            .min()
            .map_or(u64::MAX, |tpm| tpm.saturating_sub(u64::from(input)));
        u64::from(cap).min(room)
    };
    let tokens = u64::from(input) + output;
    // Priced at the dearest deployment the call might land on; only a budget needs
    // it (a price lookup per deployment is not free).
    let cost_usd = match &budget {
        None => 0.0,
        Some(_) => model
            .deployments
            .iter()
            .map(|d| {
                let tokens = Tokens {
                    input: u64::from(input),
                    output,
                    ..Tokens::default()
                };
                d.price().cost(&tokens).total_usd()
            })
            .fold(0.0, f64::max),
    };
    let ask = Ask {
        subjects,
        budget,
        tokens,
        cost_micros: (cost_usd * 1e6).ceil() as u64,
    };
    if let Some((reservation, granted)) = live.limiter.reserve(ask).await? {
        call.rate_limits = granted;
        call.record
            .on_end(Box::new(move |ended| reservation.settle(ended)));
    }
    Ok(())
}

fn validate(request: &ChatRequest) -> Result<(), Error> {
    if request.model.trim().is_empty() {
        return Err(Error::bad_param("model", "`model` must not be empty"));
    }
    if request.messages.is_empty() {
        return Err(Error::bad_param(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
