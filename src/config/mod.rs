//! Configuration: the TOML file's types, validation into [`Config`], and the embedded default.
//!
//! Parsing and validation are separate steps: [`FileConfig`] mirrors the file exactly
//! (unknown keys are errors), and one `TryFrom` turns it into a [`Config`] whose every
//! value has been checked, with each error naming the offending key.

mod auth;
mod data;
mod default;
mod file;
mod network;
mod responses;
mod secret;
mod state;
mod telemetry;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub use auth::{Audience, DEFAULT_SIGNATURE_WINDOW, JwksSource, JwtAlgorithm, JwtConfig, JwtFile};
pub use data::{
    ContentRuleFile, DataConfig, KeyRedactionFile, ProfileFile, RedactionChoice, RedactionFile,
};
pub use default::{EmbeddedDefault, default_file, embedded_default, simulated};
pub use file::{
    AdminFile, AlertsFile, BreakerFile, DeploymentFile, FailoverFile, FileConfig, KeyFile,
    ModelFile, PricingFile, ProviderFile, RoutingFile, SecurityTierFile, ServerFile,
};
pub use network::{
    CorsFile, NetworkConfig, RequestLimits, SecurityFile, TlsFiles, allowlist as cidr_allowlist,
};
pub use responses::{ResponsesConfig, ResponsesFile};
pub use secret::Secret;
pub use state::{
    Budget, BudgetFile, CacheConfig, CacheFile, CacheScope, Limits, LimitsFile, OnRedisError,
    StateConfig, StateFile,
};
pub use telemetry::{TelemetryConfig, TelemetryFile};

use crate::{
    alerts::AlertConfig,
    health::BreakerConfig,
    providers::presets::{AZURE_API_VERSION, Preset, Wire},
    routing::Capabilities,
};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub failover: FailoverConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    pub routing: RoutingConfig,
    /// Tags each security level requires of a deployment.
    pub security_tiers: SecurityTiers,
    /// API keys; empty means the gateway takes anonymous calls.
    pub keys: Vec<KeyConfig>,
    /// Bearer token for `/admin/*`; `None` disables the admin endpoints.
    pub admin_key: Option<Secret>,
    pub pricing: PricingConfig,
    pub breaker: BreakerConfig,
    pub alerts: AlertConfig,
    /// Where shared state lives (`[state]`).
    pub state: StateConfig,
    /// The response cache (`[cache]`); off when the section is absent.
    pub cache: CacheConfig,
    /// The OTLP trace export (`[telemetry]`); read at start only.
    pub telemetry: TelemetryConfig,
    /// The Responses API's store (`[responses]`); read at start only.
    pub responses: ResponsesConfig,
    /// IP allowlist, trusted proxies, CORS, TLS, request limits (`network.rs`).
    pub network: NetworkConfig,
    /// Identity providers whose JWTs are accepted (`[[jwt]]`).
    pub jwt: Vec<JwtConfig>,
    /// How far a signed request's timestamp may be from the clock, either way.
    pub signature_window: Duration,
    /// `[redaction]`, `[[content_rules]]` and the models' guards, compiled.
    pub data: DataConfig,
    /// The folder relative paths in the config are resolved against (the config file's).
    pub dir: PathBuf,
}

/// `[routing]`, validated.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Where `<policy>.lua` scripts are read from, resolved against [`Config::dir`].
    pub scripts_dir: Option<PathBuf>,
    pub default_policy: String,
    pub instruction_budget: u32,
    pub memory_limit: usize,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            scripts_dir: None,
            default_policy: "failover".to_owned(),
            instruction_budget: 200_000,
            memory_limit: 8 * 1024 * 1024,
        }
    }
}

/// How sensitive a request's data is; each level admits only deployments with the tags
/// `[security_tiers]` requires of it. Ordered: `Low < Medium < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityLevel {
    Low,
    Medium,
    High,
}

impl SecurityLevel {
    pub const ALL: [SecurityLevel; 3] = [
        SecurityLevel::Low,
        SecurityLevel::Medium,
        SecurityLevel::High,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SecurityLevel::Low => "low",
            SecurityLevel::Medium => "medium",
            SecurityLevel::High => "high",
        }
    }

    /// Parses a level name, case-insensitively.
    pub fn parse(name: &str) -> Option<SecurityLevel> {
        SecurityLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(name.trim()))
    }
}

/// The tags each level requires (a level requires its own and every lower level's tags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityTiers {
    required: [Vec<String>; 3],
}

impl SecurityTiers {
    /// Every tag a deployment needs to serve `level`.
    pub fn required(&self, level: SecurityLevel) -> impl Iterator<Item = &str> {
        self.required[..=level as usize]
            .iter()
            .flatten()
            .map(String::as_str)
    }
}

/// One API key and what it may do.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub name: String,
    /// The bearer token, if the key has one.
    pub key: Option<Secret>,
    /// The secret its signed requests are signed with, if it signs.
    pub hmac_secret: Option<Secret>,
    /// During a rotation, the secret before `hmac_secret`: signatures under either verify.
    pub hmac_secret_previous: Option<Secret>,
    pub tags: Vec<String>,
    pub allowed_providers: Vec<String>,
    pub allowed_models: Vec<String>,
    pub max_security_level: SecurityLevel,
    pub security_level: SecurityLevel,
    /// The key's own limits (on every model it calls).
    pub limits: Limits,
    /// The key's limits on one model, by the model's name.
    pub model_limits: BTreeMap<String, Limits>,
    pub budget: Budget,
    /// Where the key may be used from; `None`: anywhere.
    pub ip_allowlist: Option<crate::network::cidr::CidrSet>,
}

/// `[pricing]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricingConfig {
    /// A file (resolved against [`Config::dir`]) or an http(s) URL.
    pub source: Option<String>,
    pub refresh: Duration,
}

impl Default for PricingConfig {
    fn default() -> Self {
        PricingConfig {
            source: None,
            refresh: Duration::from_secs(15 * 60),
        }
    }
}

/// Where and how the gateway listens.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub http_addr: SocketAddr,
    /// A separate gRPC listener; gRPC is also served on `http_addr`.
    pub grpc_addr: Option<SocketAddr>,
    pub max_body_bytes: usize,
    /// On shutdown, how long in-flight requests and streams may take to finish.
    pub drain_timeout: Duration,
    /// Requests (streams included) served at once; beyond it, 503 with `retry-after`.
    pub max_in_flight: usize,
    /// The time a client has to send a request body once its headers are in.
    pub body_timeout: Duration,
    /// Silence on a stream after which an SSE comment is sent; `None`: never.
    pub stream_keepalive: Option<Duration>,
}

/// Attempt timing: deadline, per-attempt timeout and backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverConfig {
    /// Total time a request may spend finding a deployment that answers.
    pub deadline: Duration,
    /// Time one attempt may take to answer (to the first content chunk for streams); also
    /// the longest silence allowed between chunks of a committed stream.
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_initial: Duration,
    /// Never more than 500 ms.
    pub backoff_max: Duration,
    /// At most this many attempts per request (0: one per deployment).
    pub max_attempts: usize,
}

/// One upstream endpoint.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    /// The preset (`openai`, `anthropic`, `deepseek`, `vllm`, ...).
    pub kind: &'static str,
    /// The wire format the preset speaks.
    pub wire: Wire,
    /// Base URL including the version prefix, without a trailing slash.
    pub base_url: String,
    /// Azure OpenAI's `api-version` (only for kind `azure`).
    pub api_version: Option<String>,
    pub api_key: Option<Secret>,
    /// Extra headers sent with every request (values may be `env:` references).
    pub headers: Vec<(String, Secret)>,
    /// Region and credentials for SigV4 signing (only for kind `bedrock`).
    pub aws: Option<AwsConfig>,
    /// Time to establish a connection; `None` takes `failover.connect_timeout`.
    pub connect_timeout: Option<Duration>,
    /// The largest JSON answer, stream event or frame read from this provider.
    pub max_response_bytes: usize,
}

/// An AWS region and the credentials requests to it are signed with.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// Present with temporary (STS) credentials; sent as `x-amz-security-token`.
    pub session_token: Option<Secret>,
}

impl ProviderConfig {
    /// The configured extra headers as name/value pairs, for the one place that sends them.
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_owned()))
            .collect()
    }
}

/// A model name callers use, and the deployments that serve it in order.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    /// The routing policy; `None` means `routing.default_policy`.
    pub policy: Option<String>,
    /// Parameters handed to the policy as `request.params`.
    pub params: BTreeMap<String, toml::Value>,
    pub deployments: Vec<DeploymentConfig>,
    /// When to send a second, hedged attempt; `None`: never.
    pub hedge: Option<Hedge>,
    /// A `latency_p95` alert is raised when the model's p95 latency crosses this.
    pub alert_p95: Option<Duration>,
    /// How long this model's answers are cached: `None` follows `cache.ttl_s`,
    /// `Some(ZERO)` never caches them (`cache_ttl_s = 0`).
    pub cache_ttl: Option<Duration>,
    /// Limits on the model across all keys.
    pub limits: Limits,
}

/// When a model's hedged attempt goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hedge {
    /// After the first attempt's deployment's live p95 latency (no hedge until it has
    /// enough samples to have one).
    P95,
    /// After a fixed delay.
    After(Duration),
}

/// One provider serving a model under its own model name.
#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    pub provider: String,
    pub model: String,
    /// The built-in table's entry for `model`, with the config's overrides applied.
    pub capabilities: Capabilities,
    /// USD per million tokens; `None` takes the pricing table's.
    pub price_in: Option<f64>,
    pub price_out: Option<f64>,
    pub price_cached: Option<f64>,
    pub quality: u32,
    pub tags: Vec<String>,
    pub region: Option<String>,
    pub weight: f64,
    pub timeouts: DeploymentTimeouts,
    /// Attempts in flight at once (streams until they end); `None`: no limit.
    pub max_concurrent: Option<u32>,
}

/// A deployment's own timeouts; `None` takes the `[failover]` ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeploymentTimeouts {
    /// One attempt, start to answer (to the first content chunk for streams).
    pub attempt: Option<Duration>,
    /// Streams: request sent to first content chunk.
    pub ttft: Option<Duration>,
    /// Streams: the longest silence between chunks after the first content chunk.
    pub idle: Option<Duration>,
}

impl DeploymentConfig {
    /// `provider/model`: how policies, headers and logs name this deployment.
    pub fn id(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

/// A configuration problem, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?;
        let mut config = Config::parse(&text)?;
        config.dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(config)
    }

    /// The policy `model` routes with.
    pub fn policy_of<'a>(&'a self, model: &'a ModelConfig) -> &'a str {
        model
            .policy
            .as_deref()
            .unwrap_or(&self.routing.default_policy)
    }

    /// `pricing.source` (validated when the config was parsed), a file resolved against
    /// the config's folder.
    pub fn pricing_source(&self) -> Option<crate::usage::pricing::PricingSource> {
        use crate::usage::pricing::PricingSource;
        match PricingSource::parse(self.pricing.source.as_deref()?).ok()? {
            PricingSource::File(path) => Some(PricingSource::File(self.dir.join(path))),
            url => Some(url),
        }
    }

    /// `state.dir` (the embedded ledger's folder), resolved against the config's folder.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(&self.state.dir)
    }

    /// `routing.scripts_dir`, resolved against the config's folder.
    pub fn scripts_dir(&self) -> Option<PathBuf> {
        self.routing.scripts_dir.as_ref().map(|d| self.dir.join(d))
    }

    /// Parses and validates config text, resolving `env:` references from the process.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let key = e.span().map_or_else(String::new, |span| {
                format!("at line {}", text[..span.start].matches('\n').count() + 1)
            });
            ConfigError::new(
                if key.is_empty() { "config".into() } else { key },
                e.message().to_owned(),
            )
        })?;
        Config::try_from(file)
    }
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            deadline: Duration::from_secs(120),
            attempt_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(25),
            backoff_max: Duration::from_millis(500),
            max_attempts: 0,
        }
    }
}

/// The most the backoff may ever wait between attempts.
pub const BACKOFF_CAP: Duration = Duration::from_millis(500);
/// The shortest keep-alive interval for REST streams (`server.stream_keepalive_ms`).
const MIN_STREAM_KEEPALIVE_MS: u64 = 100;
const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;
/// Requests served at once by default: far above what a 2-core box needs, low enough that
/// a flood is refused before it exhausts memory.
const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

impl TryFrom<FileConfig> for Config {
    type Error = ConfigError;

    fn try_from(file: FileConfig) -> Result<Self, ConfigError> {
        let data = data::data_config(&file)?;
        let server = ServerConfig {
            http_addr: parse_addr("server.http_addr", file.server.http_addr.as_deref())?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            grpc_addr: match file.server.grpc_addr.as_deref() {
                Some("") | Some("none") => None,
                other => parse_addr("server.grpc_addr", other)?
                    .or_else(|| Some(SocketAddr::from(([127, 0, 0, 1], 50051)))),
            },
            max_body_bytes: match file.server.max_body_bytes {
                Some(0) => {
                    return Err(ConfigError::new(
                        "server.max_body_bytes",
                        "must be greater than 0",
                    ));
                }
                Some(n) => n,
                None => DEFAULT_MAX_BODY,
            },
            drain_timeout: Duration::from_millis(file.server.drain_timeout_ms.unwrap_or(30_000)),
            max_in_flight: match file.server.max_in_flight {
                Some(0) => {
                    return Err(ConfigError::new(
                        "server.max_in_flight",
                        "must be greater than 0",
                    ));
                }
                Some(n) => n,
                None => DEFAULT_MAX_IN_FLIGHT,
            },
            body_timeout: match file.server.body_timeout_ms {
                Some(0) => {
                    return Err(ConfigError::new(
                        "server.body_timeout_ms",
                        "must be greater than 0",
                    ));
                }
                ms => Duration::from_millis(ms.unwrap_or(10_000)),
            },
            stream_keepalive: match file.server.stream_keepalive_ms.unwrap_or(15_000) {
                0 => None,
                ms if ms < MIN_STREAM_KEEPALIVE_MS => {
                    return Err(ConfigError::new(
                        "server.stream_keepalive_ms",
                        format!(
                            "must be 0 (off) or at least {MIN_STREAM_KEEPALIVE_MS}: a comment \
                             more often only costs the caller bytes"
                        ),
                    ));
                }
                ms => Some(Duration::from_millis(ms)),
            },
        };
        let failover = failover_config(&file.failover)?;

        let mut providers = Vec::with_capacity(file.providers.len());
        for (i, p) in file.providers.into_iter().enumerate() {
            let key = |field: &str| format!("providers[{i}].{field}");
            if p.name.trim().is_empty() {
                return Err(ConfigError::new(key("name"), "must not be empty"));
            }
            if providers.iter().any(|q: &ProviderConfig| q.name == p.name) {
                return Err(ConfigError::new(
                    key("name"),
                    format!("duplicate provider name `{}`", p.name),
                ));
            }
            let preset = Preset::find(&p.kind).ok_or_else(|| {
                ConfigError::new(
                    key("kind"),
                    format!(
                        "unknown kind `{}`; expected one of: {}",
                        p.kind,
                        Preset::kinds()
                    ),
                )
            })?;
            let aws = aws_config(&p, preset.wire, &key)?;
            let connect_timeout = match p.connect_timeout_ms {
                Some(0) => {
                    return Err(ConfigError::new(
                        key("connect_timeout_ms"),
                        "must be greater than 0",
                    ));
                }
                v => v.map(Duration::from_millis),
            };
            let max_response_bytes = match p.max_response_bytes {
                None => crate::providers::DEFAULT_MAX_RESPONSE_BYTES,
                Some(n) => usize::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
                    ConfigError::new(key("max_response_bytes"), "must be greater than 0")
                })?,
            };
            let base_url = match (p.base_url, preset.base_url, &aws) {
                (Some(url), _, _) => url,
                (None, Some(default), _) => default.to_owned(),
                (None, None, Some(aws)) => {
                    format!("https://bedrock-runtime.{}.amazonaws.com", aws.region)
                }
                (None, None, None) => {
                    return Err(ConfigError::new(
                        key("base_url"),
                        format!("kind `{}` has no default; set the endpoint", p.kind),
                    ));
                }
            };
            let base_url = base_url.trim_end_matches('/').to_owned();
            let api_version = match (p.api_version, preset.wire) {
                (Some(v), Wire::Azure) => Some(v),
                (None, Wire::Azure) => Some(AZURE_API_VERSION.to_owned()),
                (Some(_), _) => {
                    return Err(ConfigError::new(
                        key("api_version"),
                        "is only for kind `azure`",
                    ));
                }
                (None, _) => None,
            };
            if !(base_url.starts_with("http://") || base_url.starts_with("https://"))
                || reqwest::Url::parse(&base_url).is_err()
            {
                return Err(ConfigError::new(
                    key("base_url"),
                    format!("`{base_url}` is not an http(s) URL"),
                ));
            }
            let api_key = p
                .api_key
                .as_deref()
                .map(|v| Secret::resolve(v).map_err(|r| ConfigError::new(key("api_key"), r)))
                .transpose()?;
            let mut headers = Vec::with_capacity(p.headers.len());
            for (name, value) in p.headers {
                if http::HeaderName::try_from(name.as_str()).is_err() {
                    return Err(ConfigError::new(
                        key(&format!("headers.{name}")),
                        "is not a valid header name",
                    ));
                }
                let value = Secret::resolve(&value)
                    .map_err(|r| ConfigError::new(key(&format!("headers.{name}")), r))?;
                headers.push((name, value));
            }
            providers.push(ProviderConfig {
                name: p.name,
                kind: preset.kind,
                wire: preset.wire,
                base_url,
                api_version,
                api_key,
                headers,
                aws,
                connect_timeout,
                max_response_bytes,
            });
        }

        let mut models: Vec<ModelConfig> = Vec::with_capacity(file.models.len());
        for (i, m) in file.models.into_iter().enumerate() {
            let key = |field: &str| format!("models[{i}].{field}");
            if m.name.trim().is_empty() {
                return Err(ConfigError::new(key("name"), "must not be empty"));
            }
            if models.iter().any(|q| q.name == m.name) {
                return Err(ConfigError::new(
                    key("name"),
                    format!("duplicate model name `{}`", m.name),
                ));
            }
            if m.deployments.is_empty() {
                return Err(ConfigError::new(
                    key("deployments"),
                    "a model needs at least one deployment",
                ));
            }
            let mut deployments = Vec::with_capacity(m.deployments.len());
            for (j, d) in m.deployments.into_iter().enumerate() {
                if !providers.iter().any(|p| p.name == d.provider) {
                    return Err(ConfigError::new(
                        key(&format!("deployments[{j}].provider")),
                        format!("no provider named `{}`", d.provider),
                    ));
                }
                if d.model.trim().is_empty() {
                    return Err(ConfigError::new(
                        key(&format!("deployments[{j}].model")),
                        "must not be empty",
                    ));
                }
                let mut caps = Capabilities::of_model(&d.model);
                let set = |v: &mut bool, o: Option<bool>| *v = o.unwrap_or(*v);
                set(&mut caps.tools, d.tools);
                set(&mut caps.parallel_tool_calls, d.parallel_tool_calls);
                set(&mut caps.json_schema, d.json_schema);
                set(&mut caps.vision, d.vision);
                set(&mut caps.streaming, d.streaming);
                caps.context_window = d.context_window.or(caps.context_window);
                caps.max_output = d.max_output.or(caps.max_output);
                let dkey = |field: &str| key(&format!("deployments[{j}].{field}"));
                let price = |field: &str, v: Option<f64>| -> Result<Option<f64>, ConfigError> {
                    match v {
                        Some(p) if !(p.is_finite() && p >= 0.0) => Err(ConfigError::new(
                            dkey(field),
                            "must be a price in USD per million tokens, 0 or more",
                        )),
                        other => Ok(other),
                    }
                };
                let ms = |field: &str, v: Option<u64>| match v {
                    Some(0) => Err(ConfigError::new(dkey(field), "must be greater than 0")),
                    v => Ok(v.map(Duration::from_millis)),
                };
                let timeouts = DeploymentTimeouts {
                    attempt: ms("timeout_ms", d.timeout_ms)?,
                    ttft: ms("ttft_timeout_ms", d.ttft_timeout_ms)?,
                    idle: ms("idle_timeout_ms", d.idle_timeout_ms)?,
                };
                if d.max_concurrent == Some(0) {
                    return Err(ConfigError::new(
                        dkey("max_concurrent"),
                        "must be greater than 0",
                    ));
                }
                let weight = d.weight.unwrap_or(1.0);
                if !(weight.is_finite() && weight >= 0.0) {
                    return Err(ConfigError::new(dkey("weight"), "must be 0 or more"));
                }
                let deployment = DeploymentConfig {
                    price_in: price("price_in", d.price_in)?,
                    price_out: price("price_out", d.price_out)?,
                    price_cached: price("price_cached", d.price_cached)?,
                    quality: d.quality.unwrap_or(1),
                    tags: d.tags,
                    region: d.region,
                    weight,
                    timeouts,
                    max_concurrent: d.max_concurrent,
                    provider: d.provider,
                    model: d.model,
                    capabilities: caps,
                };
                if deployments
                    .iter()
                    .any(|q: &DeploymentConfig| q.id() == deployment.id())
                {
                    return Err(ConfigError::new(
                        dkey("model"),
                        format!("`{}` is listed twice for this model", deployment.id()),
                    ));
                }
                deployments.push(deployment);
            }
            if let Some(policy) = &m.policy {
                check_policy_name(&key("policy"), policy)?;
            }
            let positive = |field: &str, v: Option<u64>| match v {
                Some(0) => Err(ConfigError::new(key(field), "must be greater than 0")),
                v => Ok(v.map(Duration::from_millis)),
            };
            let hedge = match (m.hedge, positive("hedge_delay_ms", m.hedge_delay_ms)?) {
                (Some(false), Some(_)) => {
                    return Err(ConfigError::new(
                        key("hedge_delay_ms"),
                        "is set but `hedge = false`",
                    ));
                }
                (Some(false), None) | (None, None) => None,
                (_, Some(delay)) => Some(Hedge::After(delay)),
                (Some(true), None) => Some(Hedge::P95),
            };
            models.push(ModelConfig {
                name: m.name,
                policy: m.policy,
                params: m.params,
                deployments,
                hedge,
                alert_p95: positive("alert_p95_ms", m.alert_p95_ms)?,
                cache_ttl: m.cache_ttl_s.map(Duration::from_secs),
                limits: state::limits(&key("limits"), m.limits)?,
            });
        }
        if models.is_empty() {
            return Err(ConfigError::new("models", "at least one model is needed"));
        }
        let routing = routing_config(&file.routing)?;
        let security_tiers = security_tiers(file.security_tiers)?;
        let jwt = auth::jwt_configs(file.jwt)?;
        let signature_window = auth::signature_window(&file.security)?;
        let keys = keys(file.keys, &providers, &models)?;
        for (i, k) in keys.iter().enumerate() {
            auth::check_key_credentials(i, k, !jwt.is_empty())?;
        }
        for (i, j) in jwt.iter().enumerate() {
            for name in j.keys.iter().flatten() {
                if !keys.iter().any(|k| k.name == *name) {
                    return Err(ConfigError::new(
                        format!("jwt[{i}].keys"),
                        format!("names `{name}`, which is not a [[keys]] entry"),
                    ));
                }
            }
        }
        let admin_key = file
            .admin
            .api_key
            .as_deref()
            .map(|v| Secret::resolve(v).map_err(|r| ConfigError::new("admin.api_key", r)))
            .transpose()?;
        if admin_key.as_ref().is_some_and(|k| k.expose().len() < 16) {
            return Err(ConfigError::new(
                "admin.api_key",
                "must be at least 16 characters",
            ));
        }
        let pricing = PricingConfig {
            source: file.pricing.source.filter(|s| !s.trim().is_empty()),
            refresh: match file.pricing.refresh_secs {
                Some(0) => {
                    return Err(ConfigError::new(
                        "pricing.refresh_secs",
                        "must be greater than 0",
                    ));
                }
                Some(n) => Duration::from_secs(n),
                None => PricingConfig::default().refresh,
            },
        };
        if let Some(source) = &pricing.source {
            crate::usage::pricing::PricingSource::parse(source)
                .map_err(|e| ConfigError::new("pricing.source", e))?;
        }
        let breaker = breaker_config(&file.breaker)?;
        let alerts = alerts_config(&file.alerts)?;
        let state = state::state_config(&file.state)?;
        let cache = match &file.cache {
            Some(c) => state::cache_config(c)?,
            None => CacheConfig::default(),
        };
        let telemetry = telemetry::telemetry_config(&file.telemetry)?;
        let responses = responses::responses_config(&file.responses)?;
        let network = network::network_config(&file.server, &file.security)?;
        Ok(Config {
            server,
            failover,
            providers,
            models,
            routing,
            security_tiers,
            keys,
            admin_key,
            pricing,
            breaker,
            alerts,
            state,
            cache,
            telemetry,
            responses,
            network,
            jwt,
            signature_window,
            data,
            dir: PathBuf::from("."),
        })
    }
}

/// Policy names become file names: letters, digits, `-` and `_` only.
fn check_policy_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("`{name}` is not a policy name (letters, digits, - and _)"),
        ))
    }
}

fn routing_config(f: &RoutingFile) -> Result<RoutingConfig, ConfigError> {
    let d = RoutingConfig::default();
    let default_policy = f.default_policy.clone().unwrap_or(d.default_policy);
    check_policy_name("routing.default_policy", &default_policy)?;
    let instruction_budget = match f.instruction_budget {
        Some(n) if n < 1_000 => {
            return Err(ConfigError::new(
                "routing.instruction_budget",
                "must be at least 1000",
            ));
        }
        Some(n) => n,
        None => d.instruction_budget,
    };
    let memory_limit = match f.memory_limit_kib {
        Some(n) if n < 512 => {
            return Err(ConfigError::new(
                "routing.memory_limit_kib",
                "must be at least 512",
            ));
        }
        Some(n) => n * 1024,
        None => d.memory_limit,
    };
    Ok(RoutingConfig {
        scripts_dir: f
            .scripts_dir
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(PathBuf::from),
        default_policy,
        instruction_budget,
        memory_limit,
    })
}

fn security_tiers(file: BTreeMap<String, SecurityTierFile>) -> Result<SecurityTiers, ConfigError> {
    let mut tiers = SecurityTiers::default();
    for (name, tier) in file {
        let level = SecurityLevel::parse(&name).ok_or_else(|| {
            ConfigError::new(
                format!("security_tiers.{name}"),
                "is not a level; expected low, medium or high",
            )
        })?;
        if tier.require_tags.iter().any(|t| t.trim().is_empty()) {
            return Err(ConfigError::new(
                format!("security_tiers.{name}.require_tags"),
                "tags must not be empty",
            ));
        }
        tiers.required[level as usize] = tier.require_tags;
    }
    Ok(tiers)
}

fn keys(
    file: Vec<KeyFile>,
    providers: &[ProviderConfig],
    models: &[ModelConfig],
) -> Result<Vec<KeyConfig>, ConfigError> {
    let mut keys: Vec<KeyConfig> = Vec::with_capacity(file.len());
    for (i, k) in file.into_iter().enumerate() {
        let key = |field: &str| format!("keys[{i}].{field}");
        if k.name.trim().is_empty() {
            return Err(ConfigError::new(key("name"), "must not be empty"));
        }
        if keys.iter().any(|q| q.name == k.name) {
            return Err(ConfigError::new(
                key("name"),
                format!("duplicate key name `{}`", k.name),
            ));
        }
        let secret = k
            .key
            .as_deref()
            .map(|v| Secret::resolve(v).map_err(|r| ConfigError::new(key("key"), r)))
            .transpose()?;
        if let Some(secret) = &secret {
            if secret.expose().len() < 16 {
                return Err(ConfigError::new(
                    key("key"),
                    "must be at least 16 characters",
                ));
            }
            if keys.iter().any(|q| q.key.as_ref() == Some(secret)) {
                return Err(ConfigError::new(key("key"), "is the same as another key's"));
            }
        }
        let hmac_secret = k
            .hmac_secret
            .as_deref()
            .map(|v| Secret::resolve(v).map_err(|r| ConfigError::new(key("hmac_secret"), r)))
            .transpose()?;
        let hmac_secret_previous = k
            .hmac_secret_previous
            .as_deref()
            .map(|v| {
                Secret::resolve(v).map_err(|r| ConfigError::new(key("hmac_secret_previous"), r))
            })
            .transpose()?;
        if let Some(p) = k
            .allowed_providers
            .iter()
            .find(|p| !providers.iter().any(|q| &q.name == *p))
        {
            return Err(ConfigError::new(
                key("allowed_providers"),
                format!("no provider named `{p}`"),
            ));
        }
        let known_model = |m: &String| {
            models
                .iter()
                .any(|q| &q.name == m || q.deployments.iter().any(|d| &d.model == m))
        };
        if let Some(m) = k.allowed_models.iter().find(|m| !known_model(m)) {
            return Err(ConfigError::new(
                key("allowed_models"),
                format!("no model named `{m}`"),
            ));
        }
        let level = |field: &str, v: Option<&str>, default| match v {
            None => Ok(default),
            Some(v) => SecurityLevel::parse(v).ok_or_else(|| {
                ConfigError::new(key(field), format!("`{v}` is not low, medium or high"))
            }),
        };
        let max_security_level = level(
            "max_security_level",
            k.max_security_level.as_deref(),
            SecurityLevel::High,
        )?;
        let security_level = level(
            "security_level",
            k.security_level.as_deref(),
            SecurityLevel::Low,
        )?;
        if security_level > max_security_level {
            return Err(ConfigError::new(
                key("security_level"),
                "must not exceed max_security_level",
            ));
        }
        keys.push(KeyConfig {
            name: k.name,
            key: secret,
            hmac_secret,
            hmac_secret_previous,
            tags: k.tags,
            allowed_providers: k.allowed_providers,
            allowed_models: k.allowed_models,
            max_security_level,
            security_level,
            limits: state::limits(&key("limits"), k.limits)?,
            model_limits: {
                let mut by_model = BTreeMap::new();
                for (model, l) in k.model_limits {
                    if !models.iter().any(|m| m.name == model) {
                        return Err(ConfigError::new(
                            key(&format!("model_limits.{model}")),
                            format!("no model named `{model}`"),
                        ));
                    }
                    let l = state::limits(&key(&format!("model_limits.{model}")), Some(l))?;
                    by_model.insert(model, l);
                }
                by_model
            },
            budget: state::budget(&key("budget"), k.budget)?,
            ip_allowlist: network::allowlist(&key("ip_allowlist"), &k.ip_allowlist)?,
        });
    }
    Ok(keys)
}

fn alerts_config(f: &AlertsFile) -> Result<AlertConfig, ConfigError> {
    let d = AlertConfig::default();
    let webhook_url = f
        .webhook_url
        .as_deref()
        .map(|v| Secret::resolve(v).map_err(|r| ConfigError::new("alerts.webhook_url", r)))
        .transpose()?
        .map(|s| s.expose().to_owned());
    if let Some(url) = &webhook_url
        && !((url.starts_with("http://") || url.starts_with("https://"))
            && reqwest::Url::parse(url).is_ok())
    {
        // Not echoed: webhook URLs often carry a token.
        return Err(ConfigError::new(
            "alerts.webhook_url",
            "is not an http(s) URL",
        ));
    }
    Ok(AlertConfig {
        webhook_url,
        min_interval: f
            .min_interval_ms
            .map_or(d.min_interval, Duration::from_millis),
        attempts: match f.attempts {
            Some(0) => return Err(ConfigError::new("alerts.attempts", "must be at least 1")),
            Some(n) => n.min(10),
            None => d.attempts,
        },
    })
}

/// The most `[breaker] failures` or `throttles` may be.
const MAX_BREAKER_COUNT: u32 = 1000;

fn breaker_config(f: &BreakerFile) -> Result<BreakerConfig, ConfigError> {
    let d = BreakerConfig::default();
    // 0 disables the trigger; the cap keeps the throttle ring (one slot per 429 counted)
    // small, and a run longer than this would never open in practice anyway.
    let count = |key: &str, v: Option<u32>, default: u32| match v {
        Some(n) if n > MAX_BREAKER_COUNT => Err(ConfigError::new(
            format!("breaker.{key}"),
            format!("must be at most {MAX_BREAKER_COUNT} (0 disables this trigger)"),
        )),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let ms = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
    let config = BreakerConfig {
        failures: count("failures", f.failures, d.failures)?,
        throttles: count("throttles", f.throttles, d.throttles)?,
        throttle_window: ms(f.throttle_window_ms, d.throttle_window),
        cool_down: ms(f.cool_down_ms, d.cool_down),
        slow_start: ms(f.slow_start_ms, d.slow_start),
    };
    if config.cool_down.is_zero() {
        return Err(ConfigError::new(
            "breaker.cool_down_ms",
            "must be greater than 0",
        ));
    }
    Ok(config)
}

/// The AWS keys: required for kind `bedrock` (the session token optional), refused for
/// every other kind. Values may be `env:` references.
fn aws_config(
    p: &ProviderFile,
    wire: Wire,
    key: &dyn Fn(&str) -> String,
) -> Result<Option<AwsConfig>, ConfigError> {
    let fields = [
        ("region", &p.region),
        ("access_key_id", &p.access_key_id),
        ("secret_access_key", &p.secret_access_key),
        ("session_token", &p.session_token),
    ];
    if wire != Wire::Bedrock {
        return match fields.iter().find(|(_, v)| v.is_some()) {
            Some((name, _)) => Err(ConfigError::new(key(name), "is only for kind `bedrock`")),
            None => Ok(None),
        };
    }
    if p.api_key.is_some() {
        return Err(ConfigError::new(
            key("api_key"),
            "kind `bedrock` signs requests with access_key_id and secret_access_key",
        ));
    }
    let resolve = |name: &str, value: &Option<String>| -> Result<Option<Secret>, ConfigError> {
        value
            .as_deref()
            .map(|v| Secret::resolve(v).map_err(|r| ConfigError::new(key(name), r)))
            .transpose()
    };
    let required = |name: &str, value: &Option<String>| -> Result<Secret, ConfigError> {
        resolve(name, value)?
            .ok_or_else(|| ConfigError::new(key(name), "is required for kind `bedrock`"))
    };
    let region = required("region", &p.region)?.expose().to_owned();
    // The region names a host and the signing scope: `us-east-1`, `eu-central-2`, ...
    let well_formed = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !well_formed {
        return Err(ConfigError::new(
            key("region"),
            format!("`{region}` is not an AWS region like us-east-1"),
        ));
    }
    Ok(Some(AwsConfig {
        region,
        access_key_id: required("access_key_id", &p.access_key_id)?,
        secret_access_key: required("secret_access_key", &p.secret_access_key)?,
        session_token: resolve("session_token", &p.session_token)?,
    }))
}

fn parse_addr(key: &str, value: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    value
        .map(|v| {
            v.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(key, format!("`{v}` is not an address like 127.0.0.1:8080"))
            })
        })
        .transpose()
}

fn failover_config(f: &FailoverFile) -> Result<FailoverConfig, ConfigError> {
    let d = FailoverConfig::default();
    let ms = |key: &str, v: Option<u64>, default: Duration| -> Result<Duration, ConfigError> {
        match v {
            Some(0) => Err(ConfigError::new(
                format!("failover.{key}"),
                "must be greater than 0",
            )),
            Some(n) => Ok(Duration::from_millis(n)),
            None => Ok(default),
        }
    };
    let config = FailoverConfig {
        deadline: ms("deadline_ms", f.deadline_ms, d.deadline)?,
        attempt_timeout: ms(
            "attempt_timeout_ms",
            f.attempt_timeout_ms,
            d.attempt_timeout,
        )?,
        connect_timeout: ms(
            "connect_timeout_ms",
            f.connect_timeout_ms,
            d.connect_timeout,
        )?,
        backoff_initial: ms(
            "backoff_initial_ms",
            f.backoff_initial_ms,
            d.backoff_initial,
        )?,
        backoff_max: ms("backoff_max_ms", f.backoff_max_ms, d.backoff_max)?,
        max_attempts: f.max_attempts.unwrap_or(0),
    };
    if config.backoff_max > BACKOFF_CAP {
        return Err(ConfigError::new(
            "failover.backoff_max_ms",
            "must be at most 500",
        ));
    }
    if config.backoff_initial > config.backoff_max {
        return Err(ConfigError::new(
            "failover.backoff_initial_ms",
            "must not exceed backoff_max_ms",
        ));
    }
    Ok(config)
}

#[cfg(test)]
mod tests;
