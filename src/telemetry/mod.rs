//! Logs, metrics and the per-request record.
//!
//! One JSON log line per request (`target: "switchyard::request"`), Prometheus metrics on
//! `/metrics`. Process-global installs happen once, however many gateways a process builds.

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::time::Instant;

pub mod audit;
mod genai;
mod handles;
pub mod otlp;
pub mod recent;
mod request_log;
pub mod sink;
pub mod trace;
mod upkeep;

pub use upkeep::{UPKEEP_EVERY, upkeep};

use crate::{
    chat::Usage,
    error::ErrorClass,
    failover::Attempts,
    routing::{Deployment, Explain},
    usage::{
        cost::{Cost, Tokens},
        pricing::Price,
    },
};

/// Installs rustls' ring provider once; reqwest panics without one.
pub fn install_crypto_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Err means another provider is already installed, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Sets up JSON logs on stdout, filtered by `RUST_LOG` (default `info`).
///
/// Every line, the request log's and `tracing`'s, goes through the [`sink`]: appended to
/// a shared buffer that a writer thread writes in batches, so a request pays neither a
/// syscall nor a wake-up for its log line. The sink is not lossy: when stdout falls
/// behind, logging waits rather than drops. Keep the returned guard alive until exit;
/// dropping it writes what is buffered.
pub fn init_logging() -> Option<sink::SinkGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let guard = sink::install();
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(sink::MakeSinkWriter)
        .try_init();
    guard
}

/// The Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ])
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(genai::TOKEN_USAGE.to_owned()),
                    &genai::TOKEN_BUCKETS,
                )
            })
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Fails only if another recorder is installed; then ours renders nothing, which is
        // the honest answer for a process that chose another recorder.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Which surface a request came in on.
#[derive(Debug, Clone, Copy)]
pub enum Surface {
    Rest,
    Grpc,
    /// OpenAI's Responses API (`POST /v1/responses`).
    Responses,
    /// Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`).
    Messages,
}

impl Surface {
    fn as_str(self) -> &'static str {
        match self {
            Surface::Rest => "rest",
            Surface::Grpc => "grpc",
            Surface::Responses => "responses",
            Surface::Messages => "messages",
        }
    }
}

/// How a request ended, for the log and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    /// Ended with an error status (the HTTP status).
    Error(u16),
    /// A committed stream broke after content reached the client.
    StreamBroken,
    /// The client went away before the end.
    Cancelled,
}

/// The model label of a request whose model is not in the catalog (or not yet known):
/// metric labels come only from the catalog, so no caller can mint new series.
pub const UNKNOWN_MODEL: &str = "unknown";

/// What the request log says about one request. It is its own guard: it is written
/// exactly once, when it is dropped, with the outcome set last ([`Outcome::Cancelled`]
/// when nothing set one: the caller went away, or the call was dropped mid-way).
#[derive(Debug)]
pub struct RequestRecord {
    pub request_id: String,
    pub surface: Surface,
    /// What was asked: `chat` (the default) or `embeddings`.
    pub operation: &'static str,
    /// The catalog's name for the model, or [`UNKNOWN_MODEL`].
    model: std::sync::Arc<str>,
    pub stream: bool,
    started: Instant,
    pub provider: Option<std::sync::Arc<str>>,
    pub attempts: Attempts,
    pub usage: Option<Usage>,
    /// The usage is the gateway's estimate: the provider reported none (Gemini's
    /// embeddings).
    pub tokens_estimated: bool,
    pub ttft: Option<Duration>,
    /// The routing policy, what the hard filters removed and why, and the policy's time.
    pub policy: Option<std::sync::Arc<str>>,
    pub route: Option<String>,
    pub policy_us: Option<f64>,
    /// The pipeline stage that refused the call, if one did.
    pub refused_by: Option<&'static str>,
    /// What the response cache did; `None` when the call ended before the lookup.
    pub cache: Option<crate::cache::Status>,
    /// On a cache hit: what the original answer cost at its deployment's live price.
    pub saved_usd: Option<f64>,
    /// The caller key's name; `None` for anonymous calls.
    pub key: Option<std::sync::Arc<str>>,
    /// The client's address as the gateway decided it (`network::client_ip`).
    pub client_addr: Option<std::net::IpAddr>,
    /// How the caller authenticated (`bearer`, `hmac`, `jwt`, `none`); `None` when it
    /// did not.
    pub auth_method: Option<&'static str>,
    /// The caller's effective security level, once authenticated (the audit's).
    pub security_level: Option<&'static str>,
    /// The serving deployment's id (`provider/model`).
    deployment: Option<std::sync::Arc<str>>,
    /// The serving deployment's prices, for the call's cost.
    price: Option<Price>,
    /// The serving deployment's preset, for `gen_ai_provider_name`.
    kind: Option<&'static str>,
    outcome: Outcome,
    /// Whose fault an error outcome was (the `error_type` label).
    pub error_type: Option<ErrorClass>,
    /// The request's trace context: what attempts propagate, and its spans when traced.
    pub trace: Option<Box<otlp::RequestTrace>>,
    /// What the data controls did (redactions, content rules, the guard), when any ran.
    pub data: Option<Box<audit::DataAudit>>,
    /// Run once the record is written: what settles against the request's end (the
    /// limits' reservation, the usage ledger).
    on_end: EndHooks,
}

/// The hooks of one record (their count is what `Debug` shows).
#[derive(Default)]
struct EndHooks(Vec<EndHook>);

impl std::fmt::Debug for EndHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} end hooks", self.0.len())
    }
}

/// Something run with the request's end ([`RequestRecord::on_end`]).
pub type EndHook = Box<dyn FnOnce(&Ended<'_>) + Send>;

/// How a request ended, as the hooks of [`RequestRecord::on_end`] see it.
#[derive(Debug)]
pub struct Ended<'a> {
    pub request_id: &'a str,
    pub key: Option<&'a std::sync::Arc<str>>,
    /// The catalog's name for the model, or [`UNKNOWN_MODEL`].
    pub model: &'a std::sync::Arc<str>,
    pub provider: Option<&'a std::sync::Arc<str>>,
    pub deployment: Option<&'a std::sync::Arc<str>>,
    pub stream: bool,
    /// Whether any of the answer reached the caller (a cancelled or broken stream may
    /// have cost the provider's output before it ended).
    pub delivered: bool,
    pub outcome: Outcome,
    /// What the response cache did. A hit reached no provider: it has no usage, price
    /// or cost, and counts against no limit or budget.
    pub cache: Option<crate::cache::Status>,
    /// Usage as the provider reported it; `None` when it reported none.
    pub usage: Option<&'a Usage>,
    /// The serving deployment's prices when the call was served.
    pub price: Option<Price>,
    /// USD for the call, from `usage` and `price`; `None` when either is missing.
    pub cost_usd: Option<f64>,
    /// `usage` by billing component.
    pub tokens: Option<Tokens>,
    /// The cost by component (nano-USD); `None` when usage or price is missing.
    pub cost: Option<Cost>,
}

impl RequestRecord {
    /// Starts the record at request arrival, before the model is known.
    pub fn start(request_id: String, surface: Surface) -> Self {
        RequestRecord {
            request_id,
            surface,
            operation: "chat",
            model: std::sync::Arc::from(UNKNOWN_MODEL),
            stream: false,
            started: Instant::now(),
            provider: None,
            attempts: Attempts::default(),
            usage: None,
            tokens_estimated: false,
            ttft: None,
            policy: None,
            route: None,
            policy_us: None,
            refused_by: None,
            cache: None,
            saved_usd: None,
            key: None,
            auth_method: None,
            security_level: None,
            deployment: None,
            price: None,
            kind: None,
            outcome: Outcome::Cancelled,
            error_type: None,
            client_addr: None,
            trace: None,
            data: None,
            on_end: EndHooks::default(),
        }
    }

    /// Names the model by its catalog label (never the caller's raw string).
    pub fn labelled(&mut self, model: std::sync::Arc<str>, stream: bool) {
        self.model = model;
        self.stream = stream;
    }

    /// The model label the record carries.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// How the request ended; the last call wins.
    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn end(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    /// Notes the deployment that served: its provider, and its prices now (the live
    /// table's) for the cost.
    pub fn served_by(&mut self, d: &Deployment) {
        self.provider = Some(d.provider_name.clone());
        self.deployment = Some(d.id.clone());
        self.price = d.billed_price();
        self.kind = Some(d.kind);
    }

    /// Runs `hook` when the record is written (once, however the request ends), after
    /// the log line and metrics.
    pub fn on_end(&mut self, hook: EndHook) {
        self.on_end.0.push(hook);
    }

    /// Notes how the request was routed.
    pub fn routed(&mut self, explain: &Explain) {
        if explain.policy.is_empty() {
            return;
        }
        self.policy = Some(explain.policy.clone());
        self.route = explain.summary();
        self.policy_us = Some(explain.policy_time.as_secs_f64() * 1e6);
    }

    /// Marks the first byte of content sent to the client.
    pub fn first_byte(&mut self) {
        if self.ttft.is_none() {
            self.ttft = Some(self.started.elapsed());
        }
    }

    /// Ends the request with `error`, classified for the `error_type` label.
    pub fn failed(&mut self, error: &crate::error::Error) {
        self.error_type = Some(error.class());
        self.end(Outcome::Error(error.spec().status.as_u16()));
    }

    /// Writes the log line and metrics.
    fn write(&mut self) {
        let outcome = self.outcome;
        if outcome == Outcome::StreamBroken {
            // The provider broke a stream the caller was already reading.
            self.error_type = Some(ErrorClass::Provider);
        }
        let latency = self.started.elapsed();
        let usage = self.usage.as_ref();
        let tokens = usage.map(Tokens::of);
        let cost = tokens.zip(self.price).map(|(t, p)| p.cost(&t));
        let cost_usd = cost.map(|c| c.total_usd());
        if usage.is_none() && outcome == Outcome::Ok && self.deployment.is_some() {
            // Never a guess: the call's cost stays unknown (null) and is counted as such.
            tracing::warn!(
                request_id = %self.request_id,
                model = %self.model,
                deployment = self.deployment.as_deref(),
                "the provider reported no usage; the call's cost is unknown"
            );
        }
        let outcome_label = handles::outcome_label(outcome);
        let attempts = self.attempts.header_value();
        if request_log::enabled() {
            let part = |f: fn(&Cost) -> u64| cost.map(|c| crate::usage::cost::usd(f(&c)));
            request_log::Line {
                timestamp: request_log::Timestamp::now(),
                level: "INFO",
                message: "request",
                request_id: &self.request_id,
                surface: self.surface.as_str(),
                operation: self.operation,
                model: &self.model,
                provider: self.provider.as_deref().unwrap_or(""),
                stream: self.stream,
                outcome: &outcome_label,
                attempts: &attempts,
                error_type: self.error_type.map(ErrorClass::as_str),
                policy: self.policy.as_deref(),
                route: self.route.as_deref(),
                policy_us: self.policy_us,
                refused_by: self.refused_by,
                cache: self.cache.map(crate::cache::Status::as_str),
                saved_usd: self.saved_usd,
                key: self.key.as_deref(),
                client_addr: self.client_addr,
                auth_method: self.auth_method,
                security_level: self.security_level,
                deployment: self.deployment.as_deref(),
                latency_ms: latency.as_secs_f64() * 1000.0,
                ttft_ms: self.ttft.map(|t| t.as_secs_f64() * 1000.0),
                prompt_tokens: usage.map(|u| u.prompt_tokens),
                tokens_estimated: self.tokens_estimated,
                completion_tokens: usage.map(|u| u.completion_tokens),
                cached_tokens: usage.map(Usage::cached_tokens),
                cache_write_tokens: tokens.map(|t| t.cache_write),
                reasoning_tokens: usage.map(Usage::reasoning_tokens),
                cost_usd,
                cost_input_usd: part(|c| c.input),
                cost_cached_input_usd: part(|c| c.cached_input),
                cost_cache_write_usd: part(|c| c.cache_write),
                cost_output_usd: part(|c| c.output),
                data: self.data.as_deref(),
                target: request_log::TARGET,
            }
            .write();
        }
        self.gen_ai_metrics(latency);
        if let Some(trace) = self.trace.take() {
            otlp::finish(
                &trace,
                self,
                &Finished {
                    latency,
                    outcome_label: &outcome_label,
                    attempts_header: attempts,
                    usage,
                    cost_usd,
                },
            );
        }
        let m = handles::request(
            &self.model,
            self.provider.as_ref(),
            outcome,
            self.error_type,
        );
        m.requests.increment(1);
        m.duration.record(latency.as_secs_f64());
        if let Some(ttft) = self.ttft {
            m.first_byte.record(ttft.as_secs_f64());
        }
        for a in self.attempts.list() {
            handles::attempt(&a.provider, &a.outcome).increment(1);
        }
        if let Some(cost) = cost {
            m.cost_micros.increment((cost.total + 500) / 1_000);
        }
        if let Some(u) = usage {
            m.prompt_tokens.increment(u64::from(u.prompt_tokens));
            m.completion_tokens
                .increment(u64::from(u.completion_tokens));
        }
        let hooks = std::mem::take(&mut self.on_end.0);
        if !hooks.is_empty() {
            let ended = Ended {
                request_id: &self.request_id,
                key: self.key.as_ref(),
                model: &self.model,
                provider: self.provider.as_ref(),
                deployment: self.deployment.as_ref(),
                stream: self.stream,
                delivered: self.ttft.is_some(),
                outcome,
                cache: self.cache,
                usage,
                price: self.price,
                cost_usd,
                tokens,
                cost,
            };
            for hook in hooks {
                hook(&ended);
            }
        }
    }
}

/// What [`RequestRecord::write`] computed, for the spans.
struct Finished<'a> {
    latency: Duration,
    outcome_label: &'a str,
    attempts_header: String,
    usage: Option<&'a Usage>,
    cost_usd: Option<f64>,
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        self.write();
    }
}
