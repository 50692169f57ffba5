//! switchyard: a self-hosted AI API gateway.
//!
//! Applications send OpenAI chat-completions calls (REST, so the official SDKs work with
//! only a new base URL) or typed gRPC calls; switchyard picks the deployment, fails over
//! when one breaks, and reports what it did.
//!
//! # Layout
//!
//! The modules follow the request path, in order:
//!
//! 1. **ingress** — [`api::openai`] (REST shim: routes, SSE, OpenAI error JSON) and
//!    [`api::grpc`] (the `switchyard.v1.Gateway` service) both parse into one canonical
//!    [`chat::ChatRequest`] and call [`gateway::Gateway`]; [`server`] serves both on
//!    every listener.
//! 2. **guard** — [`auth`] (API keys, the security level asked for), request validation,
//!    body limits and load shedding at `server.max_in_flight` (in [`api::openai`] and
//!    [`gateway`]); rate limits and redaction come later.
//! 3. **route** — [`routing::Catalog::route`]: the hard filters ([`routing::filter`]),
//!    then the model's Lua policy ([`routing::policy`]) orders the survivors, using each
//!    deployment's live [`health`] and prices ([`usage::pricing`]).
//! 4. **attempt** — [`failover::run`] tries them with capped, jittered backoff under a
//!    deadline, asking each deployment's breaker and concurrency limit first ([`health`]),
//!    and may race a hedged second attempt; [`providers`] holds the narrow [`providers::Provider`] trait and one module
//!    per wire format: [`providers::openai`] (OpenAI, Azure and the OpenAI-compatible
//!    family), [`providers::anthropic`], [`providers::gemini`], [`providers::cohere`],
//!    [`providers::bedrock`]. [`routing::capabilities`] filters out deployments that lack
//!    what the request needs before any attempt.
//! 5. **respond** — back through the surface that took the request: JSON, SSE chunks
//!    forwarded as they arrive, or gRPC messages; errors by the one table in [`error`].
//! 6. **account** — [`telemetry`]: one request-log line and Prometheus metrics per call;
//!    [`usage`]: token counting (tiktoken for OpenAI models, an estimate otherwise).
//!
//! Beside the path: [`config`] (file types, validation into `Config`, the embedded default),
//! [`reload`] (file watcher, SIGHUP and `/admin/reload`, all through
//! [`gateway::Gateway::rebuild`]), [`alerts`] (metric and webhook), [`background`] (every
//! background loop, stopped at shutdown), [`api::admin`]
//! and [`mock`] (simulated providers with fault injection, for the demo, tests and benches).

pub mod alerts;
pub mod api;
pub mod auth;
pub mod background;
pub mod chat;
pub mod config;
pub mod error;
pub mod failover;
pub mod gateway;
pub mod health;
pub mod mock;
pub mod pipeline;
pub mod providers;
pub mod reload;
pub mod routing;
pub mod server;
pub mod telemetry;
pub mod usage;
