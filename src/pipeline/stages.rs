//! The named stages between ingress and routing, run in order by [`run`].
//!
//! A stage sees the admitted call and the decoded request and either lets it through
//! (possibly changed: redaction will rewrite messages) or refuses it. Today:
//! 1. [`Authorize`] — the security level the request asks for is within its key's;
//! 2. [`Validate`] — the request is one any provider could serve.
//!
//! The cache lookup follows them in [`super::Gateway::serve`] (a hit is an answer, not a
//! refusal, so it is not a stage); cache hits count against no limit or budget, so the
//! limits reservation goes after it, then redaction. Each is a type implementing
//! [`Stage`] and one line in [`run`]; the surfaces do not change.

use std::future::Future;

use super::Call;
use crate::{chat::ChatRequest, error::Error};

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

/// Runs every stage in order; the first refusal ends the call, named by its stage (the
/// request log's `refused_by`).
pub async fn run(call: &mut Call, request: &mut ChatRequest) -> Result<(), (&'static str, Error)> {
    through(Authorize, call, request).await?;
    through(Validate, call, request).await?;
    Ok(())
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
