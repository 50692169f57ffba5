//! switchyard: a self-hosted AI API gateway.
//!
//! Applications send OpenAI chat-completions calls (REST, so the official SDKs work with
//! only a new base URL) or typed gRPC calls; switchyard picks the deployment, fails over
//! when one breaks, and reports what it did.
//!
//! # Layout
//!
//! The modules follow the request path, in order. [`pipeline`] is the path itself; a
//! surface only decodes into it and encodes what it hands back.
//!
//! 1. **ingress** — [`pipeline`]'s [`gateway::Gateway::ingress`], shared by every surface
//!    and run before any body is read: one live snapshot, the request id, authentication
//!    from the headers ([`auth`]: a bearer key, a JWT, or a signed request's headers), the
//!    request's place in `server.max_in_flight`, and the request record. Then the surface
//!    decodes: [`api::openai`] (the REST shim reads the body under a size limit and
//!    `server.body_timeout_ms`), [`api::responses`] (OpenAI's Responses API, its store
//!    resolving `previous_response_id`), [`api::anthropic`] (Anthropic's Messages API, the
//!    body also kept as the native request for pass-through) or [`api::grpc`] (the
//!    `switchyard.v1.Gateway` service);
//!    a signed request's signature is checked over the body and against replays
//!    ([`pipeline::Call::verify_body`]); both decode into one canonical
//!    [`chat::ChatRequest`] (`POST /v1/embeddings` and the `Embed` RPC into an
//!    [`embeddings::EmbedRequest`], served by the same stages, cache, limits, routing and
//!    attempts through `Gateway::serve_embeddings`); [`server`] serves both on every listener (TLS when
//!    configured), behind [`network::GuardLayer`]: the request head's limits, the client's
//!    address (trusted proxies), CORS and the gateway's IP allowlist, for every path; a
//!    key's own allowlist is checked at ingress.
//! 2. **stages** — [`gateway::Gateway::serve`] runs [`pipeline::stages`], each a
//!    [`pipeline::stages::Stage`], in two runs around the response cache. First `admit`:
//!    `authorize` (the security level asked for is within the key's), `validate`, then
//!    the data controls of [`pipeline::data`]: `guard` (the model's Lua guard, [`guard`]),
//!    `content_rules` (the prompt's, [`content_rules`]) and `redact` (PII replaced by
//!    placeholders, [`redaction`], before the cache key is made and before anything
//!    leaves; answers are restored and checked by the answer's rules on the way back).
//!    Then the cache ([`cache`]): a hit is the answer (replayed as SSE for a stream) and
//!    ends the path here, counting against no limit or budget; a miss is stored once its
//!    answer is complete. After a miss, `reserve`: `limit` reserves the request's place
//!    under every rate limit and budget that applies, all or nothing ([`limits`]: in
//!    process, or one atomic script in [`state`]'s Redis), settled by the request
//!    record's end hook.
//! 3. **route** — [`routing::Catalog::route`]: the hard filters ([`routing::filter`],
//!    with [`routing::capabilities`]: what the request needs), then the model's Lua policy
//!    ([`routing::policy`]) orders the survivors, using each deployment's live [`health`]
//!    and the live price table ([`usage::pricing`]); the policy may reorder or drop
//!    candidates, never add one.
//! 4. **attempt** — [`failover::run`] tries them with capped, jittered backoff under a
//!    deadline, asking each deployment's breaker and concurrency limit first ([`health`]),
//!    and may race a hedged second attempt; [`providers`] holds the narrow
//!    [`providers::Provider`] trait and one module per wire format:
//!    [`providers::openai`] (OpenAI, Azure and the OpenAI-compatible family),
//!    [`providers::anthropic`], [`providers::gemini`], [`providers::cohere`],
//!    [`providers::bedrock`], every upstream read under the caps of [`providers::limits`].
//! 5. **respond** — the [`pipeline::Answer`] (a complete response, an open stream that
//!    carries its deployment's lease, or a refusal) is encoded by the surface that took
//!    the request: JSON, SSE chunks forwarded as they arrive, or gRPC messages; errors by
//!    the one table in [`error`].
//! 6. **account** — [`telemetry`]: the request record writes one request-log line, the
//!    Prometheus metrics and, when the request is traced, its OTLP spans (queued for the
//!    export task) when it is dropped, whatever the outcome; metric labels come only
//!    from the catalog and config. [`usage`]: token counting (tiktoken for OpenAI models,
//!    an estimate otherwise), prices, the cost by component ([`usage::cost`]), and the
//!    usage ledger ([`usage::ledger`]), fed by each record's end hook through a queue to a
//!    background writer (SQLite under `state.dir`, or Redis).
//!
//! Beside the path: [`config`] (file types, validation into `Config`, the embedded
//! default), [`state`] (shared state: in process, or one self-reconnecting Redis
//! connection whose every call is time-bounded), [`reload`] (file watcher, SIGHUP and
//! `/admin/reload`, all through [`gateway::Gateway::rebuild`], the one way the live state
//! changes), [`routes`] (live overrides of a model's deployment order, in Redis for every
//! replica, applied to every snapshot the gateway builds), [`alerts`] (metric and
//! webhook), [`background`] (every background loop — alert sender, watchers, price
//! refresh, metrics upkeep, ledger writer, route follower — stopped at shutdown),
//! [`api::admin`], [`api::status`] (the status page and its data, which only read the
//! gateway's state) and [`mock`] (simulated providers with fault injection, for the demo,
//! tests and benches).

pub mod alerts;
pub mod api;
pub mod auth;
pub mod background;
pub mod cache;
pub mod chat;
pub mod config;
pub mod content_rules;
pub mod embeddings;
pub mod error;
pub mod failover;
pub mod gateway;
pub mod guard;
pub mod health;
pub mod limits;
pub mod mock;
pub mod network;
pub mod pipeline;
pub mod providers;
pub mod redaction;
pub mod reload;
pub mod routes;
pub mod routing;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod usage;

/// A `HashMap` with a fast, non-cryptographic hasher, for maps looked up on every request
/// whose keys callers cannot choose at will (config names, key digests, metric labels).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
