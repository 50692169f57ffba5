//! The hard filters: what runs before the policy and cannot be undone by it.
//!
//! In order: the key's allowed models, its allowed providers, the security level's
//! required tags, capabilities and context window, and open circuits. Each removal is
//! recorded with its reason. When a stage removes every deployment the request ends with
//! that stage's error, except the circuit stage: when every circuit is open, all stay in
//! (a request that might be served beats one refused for sure).

use std::sync::Arc;

use super::{Deployment, ModelRoute, Needs, Unmet};
use crate::{
    auth::Caller,
    chat::ChatRequest,
    config::{KeyConfig, SecurityTiers},
    error::Error,
    health::CircuitState,
};

/// A deployment a filter removed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub id: Arc<str>,
    pub reason: String,
}

/// What the filters left: indices into the model's deployments, in configured order.
#[derive(Debug, Default)]
pub struct Filtered {
    pub survivors: Vec<usize>,
    pub removed: Vec<Removed>,
    /// Removed because their circuit is open (also in `removed`): the caller is shown
    /// them as skipped.
    pub circuit_open: Vec<Deployment>,
}

impl Filtered {
    /// Keeps the survivors `reason` returns `None` for; the others are removed with it.
    fn keep(
        &mut self,
        deployments: &[Deployment],
        mut reason: impl FnMut(&Deployment) -> Option<String>,
    ) -> Vec<Removed> {
        let mut removed = Vec::new();
        self.survivors.retain(|&i| match reason(&deployments[i]) {
            None => true,
            Some(reason) => {
                removed.push(Removed {
                    id: deployments[i].id.clone(),
                    reason,
                });
                false
            }
        });
        removed
    }

    /// Runs one stage; if it leaves nothing, the request fails with `empty`'s error.
    fn stage(
        &mut self,
        deployments: &[Deployment],
        reason: impl FnMut(&Deployment) -> Option<String>,
        empty: impl FnOnce(&[Removed]) -> Error,
    ) -> Result<(), Error> {
        let removed = self.keep(deployments, reason);
        if self.survivors.is_empty() && !removed.is_empty() {
            return Err(empty(&removed));
        }
        self.removed.extend(removed);
        Ok(())
    }
}

/// Runs every hard filter over `model`'s deployments.
/// `request` is `None` for calls that are not chat completions: capabilities and the
/// context window are then judged on `needs` alone.
pub fn run(
    model: &ModelRoute,
    request: Option<&ChatRequest>,
    needs: &Needs,
    caller: &Caller,
    tiers: &SecurityTiers,
) -> Result<Filtered, Error> {
    let deployments = &*model.deployments;
    let mut f = Filtered {
        survivors: (0..deployments.len()).collect(),
        removed: Vec::new(),
        circuit_open: Vec::new(),
    };

    if let Some(key) = &caller.key {
        if !key.allowed_models.is_empty() && !key.allowed_models.iter().any(|m| *m == *model.name) {
            f.stage(
                deployments,
                |d| {
                    (!model_allowed(key, &model.name, d))
                        .then(|| format!("key `{}` may not use model `{}`", key.name, d.model))
                },
                |_| Error::Forbidden {
                    message: format!("key `{}` may not use model `{}`", key.name, model.name),
                    code: "model_not_allowed",
                },
            )?;
        }
        if !key.allowed_providers.is_empty() {
            f.stage(
                deployments,
                |d| {
                    (!provider_allowed(key, d)).then(|| {
                        format!(
                            "key `{}` may not use provider `{}`",
                            key.name, d.provider_name
                        )
                    })
                },
                |_| Error::Forbidden {
                    message: format!(
                        "key `{}` may not use any provider serving model `{}`",
                        key.name, model.name
                    ),
                    code: "no_permitted_deployment",
                },
            )?;
        }
    }

    let level = caller.level;
    if tiers.required(level).next().is_some() {
        let missing = |d: &Deployment| -> Vec<&str> {
            tiers
                .required(level)
                .filter(|t| !d.tags.iter().any(|have| have == t))
                .collect()
        };
        f.stage(
            deployments,
            |d| {
                let missing = missing(d);
                (!missing.is_empty()).then(|| {
                    format!(
                        "security level {} requires tags [{}]; lacks [{}]",
                        level.as_str(),
                        tiers.required(level).collect::<Vec<_>>().join(", "),
                        missing.join(", ")
                    )
                })
            },
            |_| Error::Forbidden {
                message: format!(
                    "no deployment of model `{}` meets security level `{}` (requires tags: {})",
                    model.name,
                    level.as_str(),
                    tiers.required(level).collect::<Vec<_>>().join(", ")
                ),
                code: "security_level_unavailable",
            },
        )?;
    }

    let mut unmet_all = Vec::new();
    let removed = f.keep(deployments, |d| {
        let unmet = match request {
            Some(request) => needs.unmet_for(&d.capabilities, &d.model, request),
            None => needs.unmet(&d.capabilities),
        }?;
        unmet_all.push(unmet);
        Some(match unmet {
            Unmet::Capability(name) => format!("does not support {name}"),
            Unmet::Context { window } => format!(
                "context window {window} is smaller than the ~{} tokens needed",
                needs.tokens
            ),
        })
    });
    if f.survivors.is_empty() && !removed.is_empty() {
        return Err(capability_error(&model.name, needs, &unmet_all));
    }
    f.removed.extend(removed);

    let now = tokio::time::Instant::now();
    let open = |d: &Deployment| d.health.state(now) == CircuitState::Open;
    if f.survivors.iter().any(|&i| !open(&deployments[i])) {
        let mut skipped = Vec::new();
        let removed = f.keep(deployments, |d| {
            open(d).then(|| {
                skipped.push(d.clone());
                "circuit open".to_owned()
            })
        });
        f.removed.extend(removed);
        f.circuit_open = skipped;
    }
    Ok(f)
}

/// Whether `key`'s model list admits deployment `d` of `model`: the list is empty, or it
/// names the model as callers use it, or the deployment's upstream model.
pub fn model_allowed(key: &KeyConfig, model: &str, d: &Deployment) -> bool {
    key.allowed_models.is_empty()
        || key
            .allowed_models
            .iter()
            .any(|m| *m == *model || **m == *d.model)
}

/// Whether `key`'s provider list admits `d`.
pub fn provider_allowed(key: &KeyConfig, d: &Deployment) -> bool {
    key.allowed_providers.is_empty()
        || key
            .allowed_providers
            .iter()
            .any(|p| **p == *d.provider_name)
}

/// The 400 for a request no deployment can take: the first missing capability, else the
/// context window.
fn capability_error(model: &str, needs: &Needs, unmet: &[Unmet]) -> Error {
    match unmet.iter().find_map(|u| match u {
        Unmet::Capability(name) => Some(*name),
        Unmet::Context { .. } => None,
    }) {
        Some(capability) => Error::Unsupported {
            model: model.to_owned(),
            capability,
        },
        None => Error::ContextLength {
            tokens: needs.tokens,
            window: unmet
                .iter()
                .filter_map(|u| match u {
                    Unmet::Context { window } => Some(*window),
                    Unmet::Capability(_) => None,
                })
                .max()
                .unwrap_or(0),
        },
    }
}
