//! Simulated providers for the demo default, the tests and the benchmarks.
//!
//! `switchyard mock` speaks the OpenAI chat-completions wire format (JSON and SSE, tool
//! calls, structured output, usage) and misbehaves on request: faults come from the
//! `--fault` flag or per request from the `x-mock-fault` header ([`Fault`]). It serves its
//! own accept loop so that a `reset` fault is a real TCP reset, not an HTTP answer.
//! `GET /_mock/stats` reports what it received, for tests that assert passthrough.

mod fault;
mod openai;
mod sample;

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, routing::get, routing::post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Notify};
use tower::Service;

pub use fault::Fault;
pub use sample::sample;

/// How a mock server behaves when the request does not say otherwise.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// Applied to requests without an `x-mock-fault` header.
    pub fault: Fault,
    /// Shown in answers, to tell simulated providers apart.
    pub name: String,
}

/// What the mock has seen, for tests.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    streams_completed: AtomicU64,
    streams_cancelled: AtomicU64,
    last_request: Mutex<Option<Value>>,
    last_authorization: Mutex<Option<String>>,
}

struct MockState {
    options: MockOptions,
    stats: Stats,
    ids: AtomicU64,
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
        options,
        stats: Stats::default(),
        ids: AtomicU64::new(1),
    });
    let router = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .route("/models", get(openai::models))
        .route("/_mock/stats", get(stats))
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
    let auth = s
        .last_authorization
        .lock()
        .map(|g| g.clone())
        .unwrap_or(None);
    Json(json!({
        "requests": s.requests.load(Ordering::Relaxed),
        "streams_completed": s.streams_completed.load(Ordering::Relaxed),
        "streams_cancelled": s.streams_cancelled.load(Ordering::Relaxed),
        "last_request": last,
        "last_authorization": auth,
    }))
}
