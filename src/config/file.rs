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
        }
    }
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
