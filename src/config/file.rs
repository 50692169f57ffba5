//! The config file exactly as written: every section optional, unknown keys rejected.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::state::{BudgetFile, CacheFile, LimitsFile, StateFile};

/// `switchyard.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub failover: FailoverFile,
    #[serde(default)]
    pub providers: Vec<ProviderFile>,
    #[serde(default)]
    pub models: Vec<ModelFile>,
    #[serde(default)]
    pub routing: RoutingFile,
    /// `[security_tiers]`: level name (`low`, `medium`, `high`) -> what it requires.
    #[serde(default)]
    pub security_tiers: BTreeMap<String, SecurityTierFile>,
    #[serde(default)]
    pub keys: Vec<KeyFile>,
    #[serde(default)]
    pub admin: AdminFile,
    #[serde(default)]
    pub pricing: PricingFile,
    #[serde(default)]
    pub breaker: BreakerFile,
    #[serde(default)]
    pub alerts: AlertsFile,
    #[serde(default)]
    pub state: StateFile,
    /// Absent: no cache; present: on unless `enabled = false`.
    pub cache: Option<CacheFile>,
    #[serde(default)]
    pub telemetry: super::TelemetryFile,
    #[serde(default)]
    pub responses: super::ResponsesFile,
    #[serde(default)]
    pub security: super::SecurityFile,
    #[serde(default)]
    pub jwt: Vec<super::JwtFile>,
    #[serde(default)]
    pub redaction: super::RedactionFile,
    #[serde(default)]
    pub content_rules: Vec<super::ContentRuleFile>,
}

/// `[alerts]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    /// Where alerts are POSTed as JSON (`env:NAME` or a literal http(s) URL).
    pub webhook_url: Option<String>,
    /// The same alert is sent at most once per this interval (default 60000).
    pub min_interval_ms: Option<u64>,
    /// Delivery attempts per alert (default 3).
    pub attempts: Option<u32>,
}

/// `[routing]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingFile {
    /// Folder of `<policy>.lua` scripts (and their `<policy>.cases.json`), relative to the
    /// config file. Scripts here override the built-in ones of the same name.
    pub scripts_dir: Option<String>,
    /// The policy for models that name none (default `failover`).
    pub default_policy: Option<String>,
    /// Instructions one policy call may run (default 200000).
    pub instruction_budget: Option<u32>,
    /// Memory a policy VM may hold, in KiB (default 8192).
    pub memory_limit_kib: Option<usize>,
}

/// One entry of `[security_tiers]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityTierFile {
    /// A deployment serves this level only if it has every one of these tags.
    #[serde(default)]
    pub require_tags: Vec<String>,
}

/// `[[keys]]`: when any is configured, every request must carry one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub name: String,
    /// The bearer token: `env:NAME` or a literal.
    pub key: Option<String>,
    /// The secret signed requests of this key are signed with (`env:NAME` or a literal).
    pub hmac_secret: Option<String>,
    /// The secret before `hmac_secret`, still accepted while clients move over.
    pub hmac_secret_previous: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Providers this key may reach (empty: all).
    #[serde(default)]
    pub allowed_providers: Vec<String>,
    /// Model names (as callers use them, or upstream names) this key may reach (empty: all).
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// The highest `x-security-level` this key may ask for (default `high`).
    pub max_security_level: Option<String>,
    /// The level used when a request sends no `x-security-level` (default `low`).
    pub security_level: Option<String>,
    pub limits: Option<LimitsFile>,
    /// Limits of this key on one model: `model_limits = { "gpt-4o" = { rpm = 60 } }`.
    #[serde(default)]
    pub model_limits: BTreeMap<String, LimitsFile>,
    pub budget: Option<BudgetFile>,
    /// CIDR blocks this key may be used from (empty: anywhere).
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    /// A redaction profile's name, `off`, or a profile inline.
    pub redaction: Option<super::KeyRedactionFile>,
}

/// `[admin]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Bearer token for `/admin/*` (`env:NAME` or a literal, at least 16 characters);
    /// without it the admin endpoints answer 404.
    pub api_key: Option<String>,
}

/// `[pricing]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingFile {
    /// A price table (file path relative to the config, or an http(s) URL) that overrides
    /// the built-in one, re-read every `refresh_secs`.
    pub source: Option<String>,
    pub refresh_secs: Option<u64>,
}

/// `[breaker]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerFile {
    /// Consecutive failures that open the circuit (default 5; 0 never opens on failures;
    /// at most 1000).
    pub failures: Option<u32>,
    /// 429s within `throttle_window_ms` that open it (default 3; 0 disables; at most 1000).
    pub throttles: Option<u32>,
    pub throttle_window_ms: Option<u64>,
    pub cool_down_ms: Option<u64>,
    pub slow_start_ms: Option<u64>,
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub http_addr: Option<String>,
    pub grpc_addr: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// On shutdown, how long in-flight requests and streams may take to finish (default
    /// 30000).
    pub drain_timeout_ms: Option<u64>,
    /// Requests (streams included) the gateway serves at once; beyond it a request is
    /// answered 503 with `retry-after` at once (default 4096).
    pub max_in_flight: Option<usize>,
    /// How long a client may take to send a request body, from the end of its headers
    /// (default 10000): a slow upload is answered 408 and its slot freed.
    pub body_timeout_ms: Option<u64>,
    /// How long a stream may go without sending anything before the gateway sends an SSE
    /// comment (`: keep-alive`), so that proxies and load balancers with idle timeouts do
    /// not cut a stream while a model thinks (default 15000; 0 turns them off).
    pub stream_keepalive_ms: Option<u64>,
    /// Network controls (validated in `network.rs`): peers whose `X-Forwarded-For` is
    /// believed (CIDRs), TLS (PEM paths), limits on the request head and stream duration.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub max_header_count: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_url_bytes: Option<usize>,
    pub max_stream_duration_s: Option<u64>,
}

/// `[failover]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverFile {
    pub deadline_ms: Option<u64>,
    pub attempt_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub backoff_initial_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub max_attempts: Option<usize>,
}

/// `[[providers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    /// `env:NAME` or a literal (for local servers).
    pub api_key: Option<String>,
    /// Azure OpenAI `api-version` (kind `azure` only).
    pub api_version: Option<String>,
    /// AWS region (kind `bedrock` only), e.g. `us-east-1` or `env:AWS_REGION`.
    pub region: Option<String>,
    /// AWS access key id (kind `bedrock` only): `env:NAME` or a literal.
    pub access_key_id: Option<String>,
    /// AWS secret access key (kind `bedrock` only): `env:NAME` or a literal.
    pub secret_access_key: Option<String>,
    /// AWS session token for temporary credentials (kind `bedrock` only, optional).
    pub session_token: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Time to establish a connection to this provider (default
    /// `failover.connect_timeout_ms`).
    pub connect_timeout_ms: Option<u64>,
    /// The largest JSON answer, stream event or frame read from this provider (default
    /// 32 MiB); past it the attempt fails as malformed and the next deployment is tried.
    pub max_response_bytes: Option<u64>,
}

impl ProviderFile {
    /// A provider entry with only its name, and its kind the same.
    pub fn named(name: &str) -> ProviderFile {
        ProviderFile {
            name: name.to_owned(),
            kind: name.to_owned(),
            base_url: None,
            api_key: None,
            api_version: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            headers: BTreeMap::new(),
            connect_timeout_ms: None,
            max_response_bytes: None,
        }
    }
}

/// `[[models]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub name: String,
    /// The routing policy (a script name); default `routing.default_policy`.
    pub policy: Option<String>,
    /// Parameters handed to the policy as `request.params`.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    pub deployments: Vec<DeploymentFile>,
    /// Hedge: when the first attempt has not answered after the primary's live p95
    /// latency, send the request to the next deployment as well and take the first answer.
    pub hedge: Option<bool>,
    /// Hedge after this long instead of the p95 (implies `hedge = true`).
    pub hedge_delay_ms: Option<u64>,
    /// Raise a `latency_p95` alert when the model's p95 latency (time to answer, to the
    /// first content chunk for streams) crosses this.
    pub alert_p95_ms: Option<u64>,
    /// Overrides `cache.ttl_s` for this model; 0 turns caching off for it.
    pub cache_ttl_s: Option<u64>,
    /// Limits on the model across all keys.
    pub limits: Option<LimitsFile>,
    /// A guard script (`scripts_dir/<guard>.lua`) run on every request for the model.
    pub guard: Option<String>,
}

/// One entry of `models[].deployments`. The capability keys override what the built-in
/// model table says (see `routing::capabilities`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentFile {
    pub provider: String,
    pub model: String,
    pub context_window: Option<u32>,
    pub max_output: Option<u32>,
    pub tools: Option<bool>,
    pub parallel_tool_calls: Option<bool>,
    pub json_schema: Option<bool>,
    pub vision: Option<bool>,
    pub streaming: Option<bool>,
    /// USD per million input tokens; default from the pricing table.
    pub price_in: Option<f64>,
    /// USD per million output tokens; default from the pricing table.
    pub price_out: Option<f64>,
    /// USD per million cached input tokens; default from the pricing table.
    pub price_cached: Option<f64>,
    /// Quality tier, higher is better (default 1).
    pub quality: Option<u32>,
    /// Compliance tags (`soc2`, `hipaa`, `private`, ...), matched by security tiers.
    #[serde(default)]
    pub tags: Vec<String>,
    pub region: Option<String>,
    /// Share of traffic for the weighted policy (default 1).
    pub weight: Option<f64>,
    /// Time one attempt on this deployment may take (default `failover.attempt_timeout_ms`).
    pub timeout_ms: Option<u64>,
    /// Streams: time from sending the request to the first content chunk.
    pub ttft_timeout_ms: Option<u64>,
    /// Streams: the longest silence between chunks once content flows (default
    /// `failover.attempt_timeout_ms`).
    pub idle_timeout_ms: Option<u64>,
    /// Attempts this deployment may have in flight at once (streams until they end);
    /// beyond it the request goes to the next deployment. Default: no limit.
    pub max_concurrent: Option<u32>,
}
