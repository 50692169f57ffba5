//! OpenAI's Responses API in: `POST /v1/responses`, `GET /v1/responses/{id}` and
//! `DELETE /v1/responses/{id}` — a codec around the same pipeline as chat completions.
//!
//! 1. [`Gateway::ingress`] (auth, in-flight, the request record), the body read under the
//!    size limit and deadline, a signed request's signature checked over it;
//! 2. the body read ([`request`]); `previous_response_id` is resolved in the gateway's
//!    [`store`] (404 before any attempt when unknown or another key's), and the stored
//!    conversation plus the new input become the canonical request, with the caller's body
//!    attached as the native request for OpenAI/Azure deployments to take as it is;
//! 3. [`Gateway::serve`]; a pass-through answer (`ChatResponse::native`,
//!    `ChatChunk::native`) goes back byte for byte, any other is written as a Responses
//!    object ([`object`]) or event sequence ([`events`]);
//! 4. with `store` (default true) the response and its conversation are kept.

pub mod events;
pub mod object;
pub mod request;
pub mod store;

use std::sync::Arc;

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use serde_json::{Map, Value, json};

use self::{
    events::EventEncoder,
    object::Frame,
    request::ResponsesRequest,
    store::{ResponseStore, Stored},
};
use crate::{
    api::openai::{
        chat::{admit_body, head_headers},
        error_response, refusal_response,
        sse::{with_keep_alive, with_trailer},
    },
    auth::{Authenticated, CallerHeaders, signed::BodyDigest},
    chat::native::{NativeFormat, NativeRequest},
    error::Error,
    gateway::Gateway,
    network::{self, ClientAddr},
    pipeline::{Answer, Delivered},
    telemetry::Surface,
};

/// The Responses routes (merged into the REST router).
pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/v1/responses", post(create))
        .route("/v1/responses/{id}", get(retrieve).delete(delete))
}

/// What the answer needs to know about its request besides the pipeline's answer.
struct Pending {
    id: String,
    created_at: i64,
    echo: Map<String, Value>,
    /// Kept (`store`), with whose and the conversation so far.
    store: Option<(Option<String>, Vec<Value>)>,
    /// The caller's `previous_response_id`: a provider that was sent the conversation
    /// instead does not know it, so its answer is given it back.
    previous: Option<String>,
}

async fn create(
    State(gw): State<Arc<Gateway>>,
    client: ClientAddr,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let admitted = admit_body(
        &gw,
        Surface::Responses,
        client,
        &uri,
        &headers,
        body,
        |_| Ok(()),
    )
    .await;
    let (call, bytes) = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal_response(&refusal),
    };
    let owner = call.caller().key.as_ref().map(|k| k.name.clone());
    let (mut chat, pending) = match decode(&gw, &bytes, owner).await {
        Ok(d) => d,
        Err(e) => return refusal_response(&call.refuse(e)),
    };
    // Response content rules work on the canonical answer: the provider's own bytes would
    // go around them, so with rules on answers every deployment translates.
    if call.live().config.data.rules.response.is_some() {
        chat.native = None;
    }
    let request_id = call.request_id().to_owned();
    match gw.serve(call, chat).await {
        Answer::Complete(done) => {
            let (body, object) = match &done.response.native {
                Some(native) => {
                    let mut object: Value = serde_json::from_slice(native).unwrap_or(Value::Null);
                    match &pending.previous {
                        Some(previous) if object.is_object() => {
                            object["previous_response_id"] = json!(previous);
                            let body = serde_json::to_vec(&object)
                                .map_or_else(|_| native.clone(), Bytes::from);
                            (body, object)
                        }
                        _ => (native.clone(), object),
                    }
                }
                None => {
                    let frame = Frame {
                        id: &pending.id,
                        created_at: pending.created_at,
                        model: &done.response.model,
                        echo: &pending.echo,
                    };
                    let object = object::from_chat(&done.response, &frame);
                    match serde_json::to_vec(&object) {
                        Ok(b) => (Bytes::from(b), object),
                        Err(e) => {
                            let e = Error::Internal {
                                detail: format!("serializing a response: {e}"),
                            };
                            return error_response(&e, &request_id, "");
                        }
                    }
                }
            };
            keep(gw.responses(), pending.store, object).await;
            let mut resp = (StatusCode::OK, Body::from(body)).into_response();
            let h = resp.headers_mut();
            head_headers(h, &done.head);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Answer::Stream(open) => {
            let keep_alive = gw.live().config.server.stream_keepalive;
            let events = event_stream(gw.clone(), open.chunks, pending, request_id, keep_alive);
            let mut resp = Response::new(Body::from_stream(events));
            let h = resp.headers_mut();
            head_headers(h, &open.head);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            resp
        }
        Answer::Refused(refusal) => refusal_response(&refusal),
    }
}

/// The body read into the canonical request (with the native one attached), and what the
/// answer will need.
async fn decode(
    gw: &Gateway,
    bytes: &Bytes,
    owner: Option<String>,
) -> Result<(crate::chat::ChatRequest, Pending), Error> {
    let request = ResponsesRequest::parse(bytes)?;
    let history = match &request.previous_response_id {
        Some(id) => Some(gw.responses().get(id, owner.as_deref()).await?),
        None => None,
    };
    let new_items = request.input_items()?;
    let mut items = history
        .as_ref()
        .map(|h| h.items.clone())
        .unwrap_or_default();
    items.extend(new_items.iter().cloned());
    let mut chat = request::to_chat(&request, &items)?;
    let body = request::native_body(bytes, history.as_ref().map(|h| &h.items[..]), new_items)?;
    chat.native = Some(Arc::new(NativeRequest {
        format: NativeFormat::OpenAiResponses,
        body,
        headers: Vec::new(),
    }));
    let pending = Pending {
        id: object::mint("resp"),
        created_at: object::unix_now(),
        echo: object::echo(&request),
        store: request.store().then_some((owner, items)),
        previous: request.previous_response_id.clone(),
    };
    Ok((chat, pending))
}

/// Stores `object` (a finished response) with its conversation, when the caller asked.
async fn keep(store: &ResponseStore, kept: Option<(Option<String>, Vec<Value>)>, object: Value) {
    let Some((owner, mut items)) = kept else {
        return;
    };
    let Some(id) = object.get("id").and_then(Value::as_str).map(str::to_owned) else {
        return;
    };
    if let Some(output) = object.get("output").and_then(Value::as_array) {
        items.extend(output.iter().cloned());
    }
    store
        .put(
            &id,
            Stored {
                owner,
                response: object,
                items,
            },
        )
        .await;
}

/// Whether the stream's events are the provider's own or the gateway's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing but the gateway's opening role chunk yet.
    Undecided,
    Translated,
    PassThrough,
}

struct StreamState {
    gw: Arc<Gateway>,
    steps: std::pin::Pin<Box<dyn Stream<Item = Option<Delivered>> + Send>>,
    encoder: EventEncoder,
    mode: Mode,
    store: Option<(Option<String>, Vec<Value>)>,
    request_id: String,
    /// Pass-through: events forwarded, the provider's response id, and its final object.
    forwarded: u64,
    upstream_id: Option<String>,
    upstream_final: Option<Value>,
    /// The caller's `previous_response_id`, written into the provider's lifecycle events.
    previous: Option<String>,
    ended: bool,
}

/// The SSE body of a stream: the provider's own events on a pass-through, else the
/// Responses sequence written from the canonical chunks.
fn event_stream(
    gw: Arc<Gateway>,
    chunks: std::pin::Pin<Box<dyn Stream<Item = Delivered> + Send>>,
    pending: Pending,
    request_id: String,
    keep_alive: Option<std::time::Duration>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let state = StreamState {
        gw,
        steps: Box::pin(with_keep_alive(chunks, keep_alive)),
        encoder: EventEncoder::new(pending.id, pending.created_at, String::new(), pending.echo),
        mode: Mode::Undecided,
        store: pending.store,
        request_id,
        forwarded: 0,
        upstream_id: None,
        upstream_final: None,
        previous: pending.previous,
        ended: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.ended {
                return None;
            }
            let step = st.steps.next().await?;
            let out = st.step(step).await;
            if !out.is_empty() {
                return Some((out, st));
            }
        }
    })
    .flat_map(|out| futures_util::stream::iter(out.into_iter().map(Ok)))
}

impl StreamState {
    async fn step(&mut self, step: Option<Delivered>) -> Vec<Bytes> {
        match step {
            None => vec![Bytes::from_static(b": keep-alive\n\n")],
            Some(Delivered::Chunk(chunk)) => {
                if let Some(native) = &chunk.native
                    && self.mode != Mode::Translated
                {
                    self.mode = Mode::PassThrough;
                    return vec![self.note_native(native)];
                }
                if self.mode == Mode::PassThrough {
                    return Vec::new();
                }
                if self.mode == Mode::Undecided && !chunk.has_content() && chunk.usage.is_none() {
                    // The gateway's role chunk: wait to see whose events follow.
                    self.encoder.set_model(&chunk.model);
                    return Vec::new();
                }
                self.mode = Mode::Translated;
                self.encoder.on_chunk(&chunk)
            }
            Some(Delivered::Done(trailer)) => {
                self.ended = true;
                let (mut out, object) = if self.mode == Mode::PassThrough {
                    (Vec::new(), self.upstream_final.take())
                } else {
                    let (out, object) = self.encoder.on_done();
                    (out, Some(object))
                };
                if let Some(object) = object {
                    keep(self.gw.responses(), self.store.take(), object).await;
                }
                let last = out.pop().unwrap_or_default();
                out.push(with_trailer(&trailer, last));
                out
            }
            Some(Delivered::Broken(error, trailer)) => {
                self.ended = true;
                if self.mode == Mode::PassThrough {
                    self.encoder
                        .continue_after(self.forwarded, self.upstream_id.take());
                }
                let mut out = self.encoder.on_broken(&error, &self.request_id);
                let last = out.pop().unwrap_or_default();
                out.push(with_trailer(&trailer, last));
                out
            }
        }
    }

    /// Notes what a provider's own event says that the gateway needs (its response id,
    /// the final response to store) and returns the event to forward: as it came, unless
    /// a lifecycle event must be given back the caller's `previous_response_id`.
    fn note_native(&mut self, native: &Bytes) -> Bytes {
        self.forwarded += 1;
        let head = &native[..native.len().min(64)];
        let lifecycle = [
            &b"event: response.created"[..],
            b"event: response.in_progress",
            b"event: response.completed",
            b"event: response.incomplete",
            b"event: response.failed",
        ];
        let Some(kind) = lifecycle.iter().position(|w| head.starts_with(w)) else {
            return native.clone();
        };
        let name_end = native.iter().position(|b| *b == b'\n').unwrap_or(0);
        let Some(data) = native
            .split(|b| *b == b'\n')
            .find_map(|line| line.strip_prefix(b"data: ".as_slice()))
        else {
            return native.clone();
        };
        let Ok(mut event) = serde_json::from_slice::<Value>(data) else {
            return native.clone();
        };
        let Some(response) = event.get_mut("response") else {
            return native.clone();
        };
        match kind {
            0 => {
                self.upstream_id = response
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            2 | 3 => self.upstream_final = Some(response.clone()),
            _ => {}
        }
        let Some(previous) = &self.previous else {
            return native.clone();
        };
        response["previous_response_id"] = json!(previous);
        if let Some(done) = &mut self.upstream_final {
            done["previous_response_id"] = json!(previous);
        }
        let mut out = native[..=name_end].to_vec();
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(event.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

/// The caller's key name for a `GET`/`DELETE`, authenticated as any call is.
async fn owner(gw: &Gateway, caller: CallerHeaders) -> Result<Option<String>, Error> {
    let live = gw.live();
    let client_addr = caller.client_addr;
    let caller = match live.keys.authenticate(caller).await? {
        Authenticated::Caller(c) => c,
        Authenticated::Signed(pending) => {
            live.keys
                .verify_signed(*pending, &BodyDigest::of(b""))
                .await?
        }
    };
    network::check_key(&caller, client_addr)?;
    caller.authorize()?;
    Ok(caller.key.as_ref().map(|k| k.name.clone()))
}

fn caller_headers(
    headers: &HeaderMap,
    client: ClientAddr,
    uri: &Uri,
    method: &'static str,
) -> CallerHeaders {
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    network::caller_headers(headers, client).with_target(method, target)
}

async fn retrieve(
    State(gw): State<Arc<Gateway>>,
    client: ClientAddr,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let found = async {
        let owner = owner(&gw, caller_headers(&headers, client, &uri, "GET")).await?;
        gw.responses().get(&id, owner.as_deref()).await
    };
    match found.await {
        Ok(stored) => Json(&stored.response).into_response(),
        Err(e) => error_response(&e, "", ""),
    }
}

async fn delete(
    State(gw): State<Arc<Gateway>>,
    client: ClientAddr,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let deleted = async {
        let owner = owner(&gw, caller_headers(&headers, client, &uri, "DELETE")).await?;
        gw.responses().delete(&id, owner.as_deref()).await
    };
    match deleted.await {
        Ok(()) => Json(json!({ "id": id, "object": "response", "deleted": true })).into_response(),
        Err(e) => error_response(&e, "", ""),
    }
}
