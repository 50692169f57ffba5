//! The one request pipeline every surface feeds: ingress, the named stages, the attempt,
//! and the [`Answer`] a surface encodes.
//!
//! A surface (the REST shim, the gRPC service, the inbound APIs to come) is a codec
//! around it:
//! 1. [`Gateway::ingress`] takes one live snapshot, mints the request id, authenticates
//!    the caller from its headers, takes the request's place in `server.max_in_flight`
//!    and starts the request record — all before a body is read;
//! 2. the surface reads the body; a signed request's signature is checked over it
//!    ([`Call::verify_body`]: only signed requests hash their body), and the body is
//!    decoded into the canonical [`ChatRequest`];
//! 3. [`Gateway::serve`] labels the record with the catalog's name for the model, runs
//!    the [`stages`] in order, looks the request up in the response cache
//!    ([`crate::cache`]: a hit is the answer, replayed as a stream when one was asked
//!    for), routes, attempts ([`crate::failover`]) and returns an [`Answer`]: a complete
//!    response, an open stream, or a refusal. A complete answer is stored in the cache
//!    on a miss.
//!
//! The [`RequestRecord`] travels inside the [`Call`] and then inside the open stream; it
//! is written once, when it is dropped, whatever the outcome (success, error, a client
//! gone mid-stream, shed, drain). No surface finishes it.

mod cached;
pub mod count;
pub mod data;
mod embed;
pub mod stages;
mod stream;

use std::sync::Arc;

use futures_util::{Stream, StreamExt};

pub use embed::{EmbedAnswer, Embedded};
pub use stream::{Delivered, OpenStream, Trailer};

use crate::{
    auth::{Authenticated, Caller, CallerHeaders, PendingSignature, signed::BodyDigest},
    cache,
    chat::{ChatRequest, ChatResponse},
    error::Error,
    failover::{self, Failed, Served},
    gateway::{Admitted, Gateway, Live},
    routing::{Needs, Route},
    telemetry::{
        Outcome, RequestRecord, Surface, UNKNOWN_MODEL,
        recent::{self, RecentError},
    },
};

/// One admitted, authenticated call on its way through the pipeline.
pub struct Call {
    live: Arc<Live>,
    caller: Caller,
    /// A signed request until its signature is checked over the body; [`Gateway::serve`]
    /// refuses a call that still has one.
    pending: Option<Box<PendingSignature>>,
    /// The usage ledger's hook, held until a signed request's signature verifies.
    ledger_hook: Option<crate::telemetry::EndHook>,
    record: RequestRecord,
    admitted: Admitted,
    /// The figures of the tightest limits the call was admitted under, for the answer's
    /// `x-ratelimit-*` headers.
    rate_limits: crate::limits::Granted,
    /// The caller's `Cache-Control`.
    directive: cache::Directive,
    /// What the cache did (`Bypass` until the lookup runs).
    cache: cache::Status,
    /// Where the answer is stored once complete, after a miss or a `no-cache`.
    fill: Option<cache::Fill>,
    /// The originals the answer gets back, when redaction restores ([`data`]).
    restore: Option<Arc<crate::redaction::restore::Originals>>,
}

impl Call {
    /// The request id (sent by the caller when sane, else minted).
    pub fn request_id(&self) -> &str {
        &self.record.request_id
    }

    /// The snapshot the call started on and finishes on.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Who is calling.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Whether the call is a signed request whose body must be verified
    /// ([`Call::verify_body`]) before it is served.
    pub fn awaits_signature(&self) -> bool {
        self.pending.is_some()
    }

    /// Checks a signed request's signature over its body (the bytes read, or for gRPC the
    /// encoded message) and against replays; from then on the call is its key's. A call
    /// that is not signed passes as it is.
    pub async fn verify_body(&mut self, body: &BodyDigest) -> Result<(), Error> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let caller = self.live.keys.verify_signed(*pending, body).await?;
        crate::network::check_key(&caller, self.record.client_addr)?;
        self.record.key = caller.key.as_ref().map(|k| Arc::from(k.name.as_str()));
        self.record.auth_method = Some(caller.method.as_str());
        self.record.security_level = Some(caller.level.as_str());
        if let Some(hook) = self.ledger_hook.take() {
            self.record.on_end(hook);
        }
        self.caller = caller;
        Ok(())
    }

    /// Ends the call with `error` before any attempt (a body that could not be read or
    /// parsed, a stage's refusal).
    pub fn refuse(self, error: Error) -> Refusal {
        refuse(self.record, error, failover::Attempts::default())
    }
}

/// What the pipeline hands back to the surface to encode.
#[expect(
    clippy::large_enum_variant,
    reason = "moved once per request; boxing the common case would add an allocation"
)]
pub enum Answer {
    /// A whole response.
    Complete(Completed),
    /// A stream committed to one deployment.
    Stream(Streaming),
    /// No answer: why, for the surface's error shape.
    Refused(Refusal),
}

/// What every answer tells the caller besides its body: the headers (REST) or metadata
/// (gRPC) `x-request-id`, `x-switchyard-provider`, `x-switchyard-attempts` and
/// `x-switchyard-cache`.
#[derive(Debug, Clone)]
pub struct Head {
    pub request_id: String,
    /// The provider that served (on a cache hit: the one that produced the entry).
    pub provider: Arc<str>,
    /// The attempts, as `x-switchyard-attempts` lists them (empty on a cache hit).
    pub attempts: String,
    /// The `x-ratelimit-*` figures, when limits apply to the call.
    pub rate_limits: crate::limits::Granted,
    pub cache: cache::Status,
}

/// A complete response and its head.
pub struct Completed {
    pub head: Head,
    pub response: ChatResponse,
}

/// An open stream and its head. The stream owns the request record, the deployment's
/// lease and the gateway slot; dropping it (a caller gone) records a cancellation.
pub struct Streaming {
    pub head: Head,
    pub chunks: std::pin::Pin<Box<dyn Stream<Item = Delivered> + Send>>,
}

/// Why there is no answer, already recorded.
#[derive(Debug)]
pub struct Refusal {
    pub error: Error,
    pub request_id: String,
    /// The attempts made, as `x-switchyard-attempts` lists them (empty when none).
    pub attempts: String,
}

/// Records the refusal and hands it to the surface.
fn refuse(mut record: RequestRecord, error: Error, attempts: failover::Attempts) -> Refusal {
    if let Error::Upstream { provider, .. } = &error {
        record.provider = Some(provider.clone());
    }
    record.failed(&error);
    let attempts_header = attempts.header_value();
    record.attempts = attempts;
    Refusal {
        request_id: record.request_id.clone(),
        error,
        attempts: attempts_header,
    }
}

impl Gateway {
    /// The ingress step shared by every surface, before any body is read: one live
    /// snapshot, the request id (`sent_id` when sane), authentication from the headers,
    /// and the request's place in `server.max_in_flight`.
    pub async fn ingress(
        &self,
        surface: Surface,
        sent_id: Option<&str>,
        headers: CallerHeaders,
    ) -> Result<Call, Refusal> {
        let live = self.live();
        let mut record = RequestRecord::start(crate::api::request_id_from(sent_id), surface);
        let incoming = headers
            .traceparent
            .as_deref()
            .and_then(crate::telemetry::trace::TraceParent::parse);
        record.trace = match self.tracer() {
            Some(tracer) => tracer.begin(incoming),
            None => crate::telemetry::otlp::RequestTrace::forward(incoming),
        };
        let headers_cache = headers.cache;
        record.client_addr = headers.client_addr;
        let client_addr = headers.client_addr;
        let authenticated = live.keys.authenticate(headers).await.and_then(|a| match a {
            Authenticated::Caller(c) => {
                crate::network::check_key(&c, client_addr).map(|()| (c, None))
            }
            // A signed caller's key is known once its signature is (`verify_body`).
            Authenticated::Signed(pending) => Ok((Caller::anonymous(), Some(pending))),
        });
        let (caller, pending) = match authenticated {
            Ok(c) => c,
            Err(e) => return Err(refuse(record, e, failover::Attempts::default())),
        };
        let directive = headers_cache;
        let mut record = record;
        record.key = caller.key.as_ref().map(|k| Arc::from(k.name.as_str()));
        if pending.is_none() {
            record.auth_method = Some(caller.method.as_str());
            record.security_level = Some(caller.level.as_str());
        }
        // Authenticated calls only: a stranger's 401s must not mint ledger rows (a signed
        // request's hook waits for its signature).
        let mut ledger_hook = self.ledger().map(|l| l.hook());
        if pending.is_none()
            && let Some(hook) = ledger_hook.take()
        {
            record.on_end(hook);
        }
        let admitted = match self.admit(&live) {
            Ok(a) => a,
            Err(e) => {
                let about = (record.model().to_owned(), record.key.clone());
                let refusal = refuse(record, e, failover::Attempts::default());
                self.note_error(about, &refusal);
                return Err(refusal);
            }
        };
        Ok(Call {
            live,
            caller,
            pending,
            ledger_hook,
            record,
            admitted,
            rate_limits: crate::limits::Granted::default(),
            directive,
            cache: cache::Status::Bypass,
            fill: None,
            restore: None,
        })
    }

    /// Serves one decoded call: the stages in order, then routing and the attempts.
    pub async fn serve(self: &Arc<Self>, mut call: Call, mut request: ChatRequest) -> Answer {
        if call.pending.is_some() {
            // Fail closed: a surface that forgot the body check must not serve the call.
            return self.refused(call, crate::auth::signed::invalid());
        }
        let label = call
            .live
            .catalog
            .label(&request.model)
            .unwrap_or_else(|| Arc::from(UNKNOWN_MODEL));
        call.record.labelled(label, request.is_stream());
        if let Some(trace) = &mut call.record.trace {
            trace.on_model(&request.model);
        }
        if let Err((stage, error)) = stages::admit(&mut call, &mut request).await {
            call.record.refused_by = Some(stage);
            return self.refused(call, error);
        }
        // After the data stages: with `capture_content`, the span holds the prompt as the
        // provider sees it (redacted), never what redaction took out.
        if let Some(trace) = &mut call.record.trace {
            trace.on_request(&request);
        }
        // Hits cost nothing upstream: they are answered before routing, and before
        // anything that counts against limits or budgets.
        if let Some(hit) = self.look_up(&mut call, &request).await {
            return call.answer_from_cache(hit, &request);
        }
        if let Err((stage, error)) = stages::reserve(&mut call, &mut request).await {
            call.record.refused_by = Some(stage);
            return self.refused(call, error);
        }
        let route = match call
            .live
            .catalog
            .route(&request, &Needs::of(&request), &call.caller)
        {
            Ok(r) => r,
            Err(error) => return self.refused(call, error),
        };
        let started = tokio::time::Instant::now();
        let trace = call.record.trace.as_ref().map(|t| t.propagation());
        if request.is_stream() {
            let (opened_tx, opened) = tokio::sync::watch::channel(None);
            let choices = request.n.unwrap_or(1);
            let gateway = self.clone();
            let live = call.live.clone();
            let attempts = async move {
                let result = gateway
                    .attempt_stream(&live, &request, &route, trace, &opened_tx)
                    .await;
                gateway.after_attempts(&request.model, &route, &result, started);
                (with_explain(result, route), request)
            };
            self.open_stream(call, Box::pin(attempts), opened, choices)
                .await
        } else {
            let settings = settings(&call.live, &route, false, trace);
            let result = failover::run(&route.plan, &settings, |d| {
                let request = &request;
                async move { d.provider.chat(request, &d.model).await }
            })
            .await;
            self.after_attempts(&request.model, &route, &result, started);
            match with_explain(result, route) {
                Ok(served) => call.complete(served),
                Err(failed) => self.failed(call, failed),
            }
        }
    }
}

impl Gateway {
    /// Ends `call` with `error` (a stage's refusal, a routing error), noted among the
    /// recent errors.
    fn refused(&self, call: Call, error: Error) -> Answer {
        let about = (call.record.model().to_owned(), call.record.key.clone());
        let refusal = call.refuse(error);
        self.note_error(about, &refusal);
        Answer::Refused(refusal)
    }

    /// Ends `call` after its attempts failed, noted among the recent errors.
    fn failed(&self, call: Call, failed: Failed) -> Answer {
        Answer::Refused(self.failed_refusal(call, failed))
    }

    fn failed_refusal(&self, call: Call, failed: Failed) -> Refusal {
        let about = (call.record.model().to_owned(), call.record.key.clone());
        let refusal = call.failed(failed);
        self.note_error(about, &refusal);
        refusal
    }

    /// A stream's answer: as soon as a deployment's stream opens, the head and the role
    /// chunk go to the caller while the attempts go on to the first content (a failover
    /// until then stays invisible: every chunk carries the gateway's id). When every
    /// attempt fails before any stream opened, the caller gets the error status, as for a
    /// JSON answer (and SDKs retry a 429 or 5xx); after, the stream ends with the error
    /// event.
    async fn open_stream(
        self: &Arc<Self>,
        call: Call,
        mut attempts: PendingStream,
        mut opened: tokio::sync::watch::Receiver<Option<stream::Opened>>,
        choices: u32,
    ) -> Answer {
        let first = tokio::select! {
            biased;
            done = &mut attempts => Err(done),
            // Err: the attempts ended without opening a stream; the branch is then off.
            Ok(first) = opened.wait_for(Option::is_some) => Ok(first.clone()),
        };
        let (first, attempts): (Option<stream::Opened>, PendingStream) = match first {
            Err((Err(failed), _)) => return self.failed(call, failed),
            Err((Ok(served), request)) => {
                let first = stream::Opened {
                    provider: served.deployment.provider_name.clone(),
                    model: served.deployment.model.clone(),
                    attempts: served.attempts.header_value(),
                };
                (
                    Some(first),
                    Box::pin(std::future::ready((Ok(served), request))),
                )
            }
            Ok(first) => (first, attempts),
        };
        let Some(first) = first else {
            // `wait_for` only answers once a value is set.
            return self.failed(
                call,
                Failed::refused(Error::Internal {
                    detail: "a stream opened without its deployment".to_owned(),
                }),
            );
        };
        let mut call = call;
        // Until a deployment serves, the record names the one whose stream opened (a
        // caller leaving before the first content is logged against it).
        call.record.provider = Some(first.provider.clone());
        let minted = stream::Minted::new();
        let head = Head {
            request_id: call.record.request_id.clone(),
            provider: first.provider.clone(),
            // As of the opening: should the stream fail over before its first content, the
            // request log and the trace have every attempt.
            attempts: first.attempts.clone(),
            rate_limits: call.rate_limits,
            cache: call.cache,
        };
        let role = minted.role_chunk(&first.model, choices);
        let gateway = self.clone();
        let rest = async move {
            let (result, request) = attempts.await;
            match result {
                Ok(served) => {
                    let streaming = call.stream(served, request.wants_stream_usage());
                    let chunks = streaming.chunks.filter_map(move |step| {
                        std::future::ready(match step {
                            Delivered::Chunk(chunk) => minted.restamp(chunk).map(Delivered::Chunk),
                            other => Some(other),
                        })
                    });
                    Box::pin(chunks) as std::pin::Pin<Box<dyn Stream<Item = Delivered> + Send>>
                }
                Err(failed) => {
                    let provider = match &failed.error {
                        Error::Upstream { provider, .. } => Some(provider.clone()),
                        _ => None,
                    };
                    let refusal = gateway.failed_refusal(call, failed);
                    let trailer = Trailer {
                        provider,
                        attempts: refusal.attempts,
                    };
                    Box::pin(futures_util::stream::iter([Delivered::Broken(
                        refusal.error,
                        trailer,
                    )]))
                }
            }
        };
        let chunks = futures_util::stream::once(std::future::ready(Delivered::Chunk(role)))
            .chain(futures_util::stream::once(rest).flatten());
        Answer::Stream(Streaming {
            head,
            chunks: Box::pin(chunks),
        })
    }

    /// Notes a refusal of the request for `(model, key)` among the recent errors, as the
    /// caller saw it (an internal error's detail stays in the log). Only refusals pay
    /// this; a served request never does. Requests refused at authentication are not
    /// noted: anyone can send those, and they would push the gateway's own errors out.
    fn note_error(&self, (model, key): (String, Option<Arc<str>>), refusal: &Refusal) {
        let fields = refusal.error.openai_fields(&refusal.request_id);
        self.recent_errors().push(RecentError {
            at: recent::unix_now(),
            request_id: refusal.request_id.clone(),
            model,
            key: key.map(|k| k.to_string()),
            status: refusal.error.spec().status.as_u16(),
            kind: fields.kind,
            message: recent::cut(&fields.message, recent::MESSAGE_CHARS),
            attempts: refusal.attempts.clone(),
        });
    }
}

impl Call {
    /// Records what served, and the head every answer carries.
    fn served<T>(&mut self, served: &mut Served<T>) -> Head {
        let record = &mut self.record;
        record.served_by(&served.deployment);
        record.routed(&served.explain);
        let attempts = std::mem::take(&mut served.attempts);
        let head = Head {
            request_id: record.request_id.clone(),
            provider: served.deployment.provider_name.clone(),
            attempts: attempts.header_value(),
            rate_limits: self.rate_limits,
            cache: self.cache,
        };
        record.attempts = attempts;
        head
    }

    fn complete(mut self, mut served: Served<ChatResponse>) -> Answer {
        let head = self.served(&mut served);
        self.record.usage = served.value.usage.clone();
        // The cache keeps the answer as the provider gave it (placeholders, not originals).
        let stored = match data::finish_answer(&mut self, &mut served.value) {
            Ok(stored) => stored,
            Err(error) => {
                self.record.refused_by = Some(data::SCREEN);
                return Answer::Refused(self.refuse(error));
            }
        };
        if let Some(fill) = self.fill.take() {
            fill.store(stored.as_ref().unwrap_or(&served.value), &served.deployment);
        }
        if let Some(trace) = &mut self.record.trace {
            // The answer as the provider gave it: placeholders, not the restored originals.
            trace.on_response(stored.as_ref().unwrap_or(&served.value));
        }
        self.record.first_byte();
        self.record.end(Outcome::Ok);
        Answer::Complete(Completed {
            head,
            response: served.value,
        })
    }

    fn stream(mut self, mut served: Served<OpenStream>, include_usage: bool) -> Streaming {
        let head = self.served(&mut served);
        let filter = data::StreamFilter::for_call(&mut self);
        let open = served.value.hold(served.lease.take(), self.admitted);
        Streaming {
            head,
            chunks: Box::pin(open.deliver(
                self.record,
                include_usage,
                self.fill,
                filter,
                self.live.config.network.max_stream_duration,
            )),
        }
    }

    fn failed(mut self, failed: Failed) -> Refusal {
        self.record.routed(&failed.explain);
        refuse(self.record, failed.error, failed.attempts)
    }
}

/// The attempts of a stream, run until the first content (or every attempt failed),
/// with the request they were for.
type PendingStream = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Result<Served<OpenStream>, Failed>, ChatRequest)> + Send>,
>;

/// How the attempts of a request on this route run.
fn settings(
    live: &Live,
    route: &Route,
    stream: bool,
    trace: Option<crate::telemetry::trace::Propagation>,
) -> failover::Settings {
    failover::Settings {
        failover: live.config.failover,
        stream,
        hedge: route.hedge,
        trace,
    }
}

fn with_explain<T>(result: Result<Served<T>, Failed>, route: Route) -> Result<Served<T>, Failed> {
    // Deployments routing left out for an open circuit show as skipped, like those the
    // attempt loop passed over.
    match result {
        Ok(mut served) => {
            served.attempts.skipped_first(&route.skipped);
            served.explain = route.explain;
            Ok(served)
        }
        Err(mut failed) => {
            failed.attempts.skipped_first(&route.skipped);
            failed.explain = Box::new(route.explain);
            Err(failed)
        }
    }
}
