//! The embedded default: real providers for the API keys in the environment, else the
//! built-in simulated providers, so `cargo run --release` answers with no setup at all.

use std::net::SocketAddr;

use super::{Config, ConfigError, DeploymentFile, FileConfig, ModelFile, ProviderFile};
use crate::providers::presets::{AWS_ENV, PRESETS, Wire};

/// What the embedded default resolved to.
#[derive(Debug)]
pub enum EmbeddedDefault {
    /// At least one provider key was found.
    Real(Box<Config>),
    /// No keys: serve the built-in simulated providers (see [`simulated`]).
    Simulated,
}

/// Builds the default from whichever provider keys `env` holds.
pub fn embedded_default(
    env: impl Fn(&str) -> Option<String>,
) -> Result<EmbeddedDefault, ConfigError> {
    match default_file(env) {
        None => Ok(EmbeddedDefault::Simulated),
        Some(file) => Config::try_from(file).map(|c| EmbeddedDefault::Real(Box::new(c))),
    }
}

/// The providers and models the keys in `env` call for, as a config file whose secrets are
/// `env:` references; `None` when there are none.
pub fn default_file(env: impl Fn(&str) -> Option<String>) -> Option<FileConfig> {
    let mut file = FileConfig::default();
    let set = |var: &str| env(var).is_some_and(|v| !v.is_empty());
    for preset in PRESETS {
        if preset.default_models.is_empty() {
            continue;
        }
        let mut provider = ProviderFile::named(preset.kind);
        if preset.wire == Wire::Bedrock {
            let [region, key_id, secret, token] = AWS_ENV;
            if !(set(region) && set(key_id) && set(secret)) {
                continue;
            }
            provider.region = Some(format!("env:{region}"));
            provider.access_key_id = Some(format!("env:{key_id}"));
            provider.secret_access_key = Some(format!("env:{secret}"));
            provider.session_token = set(token).then(|| format!("env:{token}"));
        } else {
            let Some(var) = preset.key_env.filter(|v| set(v)) else {
                continue;
            };
            provider.api_key = Some(format!("env:{var}"));
        }
        file.providers.push(provider);
        for model in preset.default_models {
            file.models.push(ModelFile {
                name: (*model).to_owned(),
                policy: None,
                params: Default::default(),
                deployments: vec![DeploymentFile {
                    provider: preset.kind.to_owned(),
                    model: (*model).to_owned(),
                    ..DeploymentFile::default()
                }],
                ..ModelFile::default()
            });
        }
    }
    (!file.providers.is_empty()).then_some(file)
}

/// Model names the simulated default serves.
pub const SIMULATED_MODELS: &[&str] = &["gpt-4o-mini", "gpt-4o", "sim-chat"];

/// A config in front of two simulated providers (`sim-primary`, then `sim-backup`), each
/// model failing over from the first to the second.
pub fn simulated(primary: SocketAddr, backup: SocketAddr) -> Result<Config, ConfigError> {
    let provider = |name: &str, addr: SocketAddr| ProviderFile {
        kind: "openai".to_owned(),
        base_url: Some(format!("http://{addr}/v1")),
        ..ProviderFile::named(name)
    };
    let file = FileConfig {
        providers: vec![
            provider("sim-primary", primary),
            provider("sim-backup", backup),
        ],
        models: SIMULATED_MODELS
            .iter()
            .map(|m| ModelFile {
                name: (*m).to_owned(),
                policy: None,
                params: Default::default(),
                deployments: ["sim-primary", "sim-backup"]
                    .iter()
                    .map(|p| DeploymentFile {
                        provider: (*p).to_owned(),
                        model: (*m).to_owned(),
                        ..DeploymentFile::default()
                    })
                    .collect(),
                ..ModelFile::default()
            })
            .collect(),
        ..FileConfig::default()
    };
    Config::try_from(file)
}
