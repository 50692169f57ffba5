//! The embedded default: real providers for the API keys in the environment, else the
//! built-in simulated providers, so `cargo run --release` answers with no setup at all.

use std::net::SocketAddr;

use super::{Config, ConfigError, DeploymentFile, FileConfig, ModelFile, ProviderFile, ServerFile};
use crate::providers::presets::PRESETS;

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
    let mut file = FileConfig::default();
    for preset in PRESETS {
        let Some(var) = preset.key_env else { continue };
        if preset.default_models.is_empty() {
            continue;
        }
        if env(var).is_none_or(|v| v.is_empty()) {
            continue;
        }
        file.providers.push(ProviderFile {
            name: preset.kind.to_owned(),
            kind: preset.kind.to_owned(),
            base_url: None,
            api_key: Some(format!("env:{var}")),
            api_version: None,
            headers: Default::default(),
        });
        for model in preset.default_models {
            file.models.push(ModelFile {
                name: (*model).to_owned(),
                deployments: vec![DeploymentFile {
                    provider: preset.kind.to_owned(),
                    model: (*model).to_owned(),
                    ..DeploymentFile::default()
                }],
            });
        }
    }
    if file.providers.is_empty() {
        return Ok(EmbeddedDefault::Simulated);
    }
    Config::try_from(file).map(|c| EmbeddedDefault::Real(Box::new(c)))
}

/// Model names the simulated default serves.
pub const SIMULATED_MODELS: &[&str] = &["gpt-4o-mini", "gpt-4o", "sim-chat"];

/// A config in front of two simulated providers (`sim-primary`, then `sim-backup`), each
/// model failing over from the first to the second.
pub fn simulated(primary: SocketAddr, backup: SocketAddr) -> Result<Config, ConfigError> {
    let provider = |name: &str, addr: SocketAddr| ProviderFile {
        name: name.to_owned(),
        kind: "openai".to_owned(),
        base_url: Some(format!("http://{addr}/v1")),
        api_key: None,
        api_version: None,
        headers: Default::default(),
    };
    let file = FileConfig {
        server: ServerFile::default(),
        failover: Default::default(),
        providers: vec![
            provider("sim-primary", primary),
            provider("sim-backup", backup),
        ],
        models: SIMULATED_MODELS
            .iter()
            .map(|m| ModelFile {
                name: (*m).to_owned(),
                deployments: ["sim-primary", "sim-backup"]
                    .iter()
                    .map(|p| DeploymentFile {
                        provider: (*p).to_owned(),
                        model: (*m).to_owned(),
                        ..DeploymentFile::default()
                    })
                    .collect(),
            })
            .collect(),
    };
    Config::try_from(file)
}
