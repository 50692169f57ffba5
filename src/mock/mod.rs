//! Simulated providers for the demo default, the tests and the benchmarks.
//!
//! `switchyard mock` speaks one provider's wire format ([`MockFormat`]: OpenAI chat
//! completions, Anthropic Messages, Gemini, Cohere or Bedrock Converse; JSON and streams,
//! tool calls, structured output, usage)
//! and misbehaves on request: faults come from the `--fault` flag or per request from the
//! `x-mock-fault` header ([`Fault`]). It serves its own accept loop so that a `reset` fault
//! is a real TCP reset, not an HTTP answer. `GET /_mock/stats` reports what it received,
//! for tests that assert passthrough and translation.
//!
//! # Changing the fault while it serves
//!
//! Like Toxiproxy, the default fault (the one `--fault` sets) can be changed at run time,
//! so a test or an operator can break a provider, ramp its latency or let it recover
//! without restarting it:
//!
//! ```text
//! PUT /_mock/fault   body: a fault spec as plain text, e.g. `status=503` or
//!                    `latency_ms=800`; an empty body means no fault
//!                    -> 200 {"spec": "status=503", "status": 503, ...}
//!                    -> 400 in the format's own error shape for a bad spec (the
//!                       fault in force is kept)
//! GET /_mock/fault   -> 200, the fault in force, in the same JSON
//! ```
//!
//! The change applies to requests that arrive after it (an `x-mock-fault` header still
//! wins); requests already being answered keep the fault they started with. Each request
//! reads the fault with one lock-free load.

mod answer;
mod anthropic;
mod bedrock;
mod cohere;
mod embeddings;
mod fault;
mod gemini;
mod openai;
mod responses;
mod sample;
mod stream;

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use axum::{Json, Router, routing::get, routing::post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Notify};
use tower::Service;

pub use bedrock::{EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY};
pub use fault::{Fault, MockUsage};
pub use sample::sample;

/// The wire format a mock speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MockFormat {
    /// `POST /v1/chat/completions` (also without `/v1`).
    #[default]
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /openai/deployments/{deployment}/chat/completions?api-version=...` with an
    /// `api-key` header, answering in the OpenAI format.
    Azure,
    /// `POST /v1beta/models/{model}:generateContent` / `:streamGenerateContent?alt=sse`.
    Gemini,
    /// `POST /v2/chat`.
    Cohere,
    /// `POST /model/{model}/converse` and `/model/{model}/converse-stream`, SigV4-signed,
    /// streams as AWS event-stream frames.
    Bedrock,
}

impl MockFormat {
    /// Parses a `--format` value.
    pub fn parse(name: &str) -> Result<MockFormat, String> {
        match name {
            "openai" => Ok(MockFormat::OpenAi),
            "anthropic" => Ok(MockFormat::Anthropic),
            "azure" => Ok(MockFormat::Azure),
            "gemini" => Ok(MockFormat::Gemini),
            "cohere" => Ok(MockFormat::Cohere),
            "bedrock" => Ok(MockFormat::Bedrock),
            other => Err(format!(
                "unknown format `{other}`; expected openai, anthropic, azure, gemini, cohere \
                 or bedrock"
            )),
        }
    }
}

/// How a mock server behaves when the request does not say otherwise.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// Applied to requests without an `x-mock-fault` header, until `PUT /_mock/fault`
    /// replaces it.
    pub fault: Fault,
    /// Shown in answers, to tell simulated providers apart.
    pub name: String,
    pub format: MockFormat,
}

/// What the mock has seen, for tests.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    streams_completed: AtomicU64,
    streams_cancelled: AtomicU64,
    last_request: Mutex<Option<Value>>,
    /// The last body as received (lossy UTF-8), for tests of byte-for-byte pass-through.
    last_body: Mutex<Option<String>>,
    last_headers: Mutex<serde_json::Map<String, Value>>,
}

struct MockState {
    options: MockOptions,
    /// The default fault in force: `options.fault` at start, then what `PUT /_mock/fault`
    /// set.
    fault: ArcSwap<Fault>,
    stats: Stats,
    ids: AtomicU64,
    /// The conversation items of each stored Responses answer (`previous_response_id`).
    responses: Mutex<std::collections::HashMap<String, Vec<Value>>>,
}

impl MockState {
    fn name(&self) -> String {
        if self.options.name.is_empty() {
            "switchyard mock".to_owned()
        } else {
            self.options.name.clone()
        }
    }
}

/// An error answer: `body` (in the format's shape) with `status`, and `retry-after` when
/// the fault set one.
fn error_answer(
    status: http::StatusCode,
    body: &Value,
    retry_after: Option<u64>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = (status, Json(body)).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    resp
}

/// Renders an error answer in a format's shape.
type ErrorAnswer = fn(http::StatusCode, &str, Option<u64>) -> axum::response::Response;

/// What every chat endpoint does first: count and record the request, pick the fault
/// (the `x-mock-fault` header wins over `--fault`), wait, reset, or answer a status fault.
/// Returns the fault for the stream and the body, parsed when it is JSON.
async fn preamble(
    state: &MockState,
    conn: &ConnReset,
    headers: &http::HeaderMap,
    body: &[u8],
    error: ErrorAnswer,
) -> Result<(Fault, Option<Value>), axum::response::Response> {
    let stats = &state.stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut g) = stats.last_headers.lock() {
        *g = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), Value::from(v.to_str().ok()?))))
            .collect();
    }
    let fault = match headers.get("x-mock-fault").and_then(|v| v.to_str().ok()) {
        Some(spec) => Fault::parse(spec).map_err(|e| {
            error(
                http::StatusCode::BAD_REQUEST,
                &format!("x-mock-fault: {e}"),
                None,
            )
        })?,
        // One lock-free load; a `Fault` holds no heap data, so the clone is a copy.
        None => Fault::clone(&state.fault.load()),
    };
    if let Ok(mut g) = stats.last_body.lock() {
        *g = Some(String::from_utf8_lossy(body).into_owned());
    }
    let request: Option<Value> = serde_json::from_slice(body).ok();
    if let (Some(r), Ok(mut g)) = (&request, stats.last_request.lock()) {
        *g = Some(r.clone());
    }
    if !fault.latency.is_zero() {
        tokio::time::sleep(fault.latency).await;
    }
    if fault.reset {
        conn.reset().await;
    }
    if let Some(code) = fault.status {
        let status =
            http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = fault.retry_after.or((code == 429).then_some(1));
        let message = format!("simulated {code} from {}", state.name());
        return Err(error(status, &message, retry_after));
    }
    Ok((fault, request))
}

/// Per connection: lets a handler reset the TCP connection it is answering on.
#[derive(Clone)]
struct ConnReset(Arc<Notify>);

impl ConnReset {
    /// Resets the connection (linger 0 makes the close an RST) and never returns.
    async fn reset(&self) -> ! {
        self.0.notify_one();
        std::future::pending().await
    }
}

/// Serves the mock on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    options: MockOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let state = Arc::new(MockState {
        fault: ArcSwap::from_pointee(options.fault.clone()),
        options,
        stats: Stats::default(),
        ids: AtomicU64::new(1),
        responses: Mutex::default(),
    });
    let router = match state.options.format {
        MockFormat::OpenAi => Router::new()
            .route("/v1/chat/completions", post(openai::chat_completions))
            .route("/chat/completions", post(openai::chat_completions))
            .route("/v1/responses", post(responses::responses))
            .route("/responses", post(responses::responses))
            .route("/v1/models", get(openai::models))
            .route("/models", get(openai::models)),
        MockFormat::Anthropic => Router::new()
            .route("/v1/messages", post(anthropic::messages))
            .route("/v1/messages/count_tokens", post(anthropic::count_tokens)),
        MockFormat::Azure => Router::new()
            .route(
                "/openai/deployments/{deployment}/chat/completions",
                post(openai::azure_chat_completions),
            )
            .route("/openai/v1/responses", post(responses::azure_responses)),
        MockFormat::Gemini => {
            Router::new().route("/v1beta/models/{model_method}", post(gemini::models))
        }
        MockFormat::Cohere => Router::new().route("/v2/chat", post(cohere::chat)),
        MockFormat::Bedrock => Router::new()
            .route("/model/{model}/converse", post(bedrock::converse))
            .route(
                "/model/{model}/converse-stream",
                post(bedrock::converse_stream),
            )
            .route("/model/{model}/invoke", post(bedrock::invoke))
            .route(
                "/model/{model}/invoke-with-response-stream",
                post(bedrock::invoke_stream),
            ),
    };
    let router = embeddings::routes(state.options.format, router)
        .route("/_mock/stats", get(stats))
        .route("/_mock/fault", get(current_fault).put(set_fault))
        // Providers take far larger bodies than axum's 2 MB default (long contexts, images):
        // the gateway's own limit is what the tests exercise, not the mock's.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(state);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        // With linger 0 a close sends RST: what a `reset` fault needs. The mock closes a
        // connection only when resetting or after the client has closed, so this costs nothing.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        let reset = ConnReset(Arc::new(Notify::new()));
        let router = router.clone();
        tokio::spawn(async move {
            let notify = reset.0.clone();
            let svc =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(reset.clone());
                    let mut router = router.clone();
                    async move { router.call(req).await }
                });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                () = notify.notified() => {}
            }
        });
    }
}

/// The largest request body the mock reads.
const MAX_REQUEST_BYTES: usize = 64 << 20;

/// Binds `addr` and serves the mock in a background task; returns the bound address.
pub async fn spawn(addr: &str, options: MockOptions) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, options, std::future::pending()));
    Ok(local)
}

async fn stats(axum::extract::State(state): axum::extract::State<Arc<MockState>>) -> Json<Value> {
    let s = &state.stats;
    let last = s.last_request.lock().map(|g| g.clone()).unwrap_or(None);
    let headers = s.last_headers.lock().map(|g| g.clone()).unwrap_or_default();
    let body = s.last_body.lock().map(|g| g.clone()).unwrap_or(None);
    let auth = headers.get("authorization").cloned();
    Json(json!({
        "requests": s.requests.load(Ordering::Relaxed),
        "streams_completed": s.streams_completed.load(Ordering::Relaxed),
        "streams_cancelled": s.streams_cancelled.load(Ordering::Relaxed),
        "last_request": last,
        "last_body": body,
        "last_authorization": auth,
        "last_headers": headers,
    }))
}

/// `GET /_mock/fault`: the default fault in force.
async fn current_fault(
    axum::extract::State(state): axum::extract::State<Arc<MockState>>,
) -> Json<Value> {
    Json(state.fault.load().to_json())
}

/// `PUT /_mock/fault`: replaces the default fault with the spec in the body (empty: none).
async fn set_fault(
    axum::extract::State(state): axum::extract::State<Arc<MockState>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let error = error_for(state.options.format);
    let Ok(spec) = std::str::from_utf8(&body) else {
        return error(
            http::StatusCode::BAD_REQUEST,
            "/_mock/fault: the body must be a UTF-8 fault spec",
            None,
        );
    };
    match Fault::parse(spec) {
        Ok(fault) => {
            let json = fault.to_json();
            state.fault.store(Arc::new(fault));
            Json(json).into_response()
        }
        Err(e) => error(
            http::StatusCode::BAD_REQUEST,
            &format!("/_mock/fault: {e}"),
            None,
        ),
    }
}

/// The error answer in a format's shape.
fn error_for(format: MockFormat) -> ErrorAnswer {
    match format {
        MockFormat::OpenAi | MockFormat::Azure => openai::error,
        MockFormat::Anthropic => anthropic::error,
        MockFormat::Gemini => gemini::error,
        MockFormat::Cohere => cohere::error,
        MockFormat::Bedrock => bedrock::error,
    }
}

#[cfg(test)]
mod tests;
