//! The config file exactly as written: every section optional, unknown keys rejected.

use std::collections::BTreeMap;

use serde::Deserialize;

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
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub http_addr: Option<String>,
    pub grpc_addr: Option<String>,
    pub max_body_bytes: Option<usize>,
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
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[[models]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub name: String,
    pub deployments: Vec<DeploymentFile>,
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
}
