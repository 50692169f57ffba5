//! Live route overrides: a model's deployment order (and policy) set at run time, in Redis
//! for every replica or in this process alone, applied on top of the config file.
//!
//! An override orders (and may subset) the deployments the model's config already has; it
//! never adds a provider. The gateway keeps its overrides outside the live snapshot
//! ([`Overrides`]), and every rebuild — a file reload included — applies them to the
//! config it builds the catalog from ([`effective`]), so a reload keeps them. One that no
//! longer fits the config (a deployment or the model was removed) is logged and skipped
//! on that rebuild, and applies again if a later config fits it.
//!
//! [`shared`] is the Redis side (keys, channel, reads and writes), [`follow`] the
//! subscriber loop that keeps a replica in step, and [`command`] the `routes` CLI.

pub mod command;
pub mod follow;
pub mod shared;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{config::Config, routing::policy};

/// One model's override, as stored in Redis (JSON) and sent to `PUT /admin/routes/{model}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOverride {
    /// `provider/model` ids, in the order to try them; each one of the model's own.
    pub deployments: Vec<String>,
    /// The policy to route with; `None` keeps the config's.
    #[serde(default)]
    pub policy: Option<String>,
    /// When it was set (Unix seconds).
    #[serde(default)]
    pub set_at: u64,
}

impl RouteOverride {
    /// An override set now.
    pub fn now(deployments: Vec<String>, policy: Option<String>) -> RouteOverride {
        let set_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        RouteOverride {
            deployments,
            policy,
            set_at,
        }
    }

    /// `set_at` as an HTTP date, for people.
    pub fn set_at_text(&self) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(self.set_at))
    }
}

/// Where an override came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Redis (`state.redis_url`): shared by every replica.
    Redis,
    /// `PUT /admin/routes/{model}` on a gateway without Redis: this replica only.
    Local,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Redis => "redis",
            Origin::Local => "admin (this replica only)",
        }
    }
}

/// An override and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub route: RouteOverride,
    pub origin: Origin,
}

impl Applied {
    /// How `route --explain`, the admin API and the request log name the order's source.
    pub fn source(&self) -> String {
        format!(
            "{} override set at {}",
            self.origin.as_str(),
            self.route.set_at_text()
        )
    }
}

/// The overrides a gateway holds, by model name; outlives reloads.
#[derive(Debug, Default)]
pub struct Overrides {
    held: Mutex<BTreeMap<String, Applied>>,
    /// Taken across "read Redis, then apply what was read" (see [`follow`]), so those
    /// runs never interleave: the last one applied is the last one that read, and a
    /// replica always ends on what Redis holds after the last change.
    reading: tokio::sync::Mutex<()>,
}

impl Overrides {
    /// A copy of every override.
    pub fn snapshot(&self) -> BTreeMap<String, Applied> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The turn to read overrides from Redis and apply them; held until dropped.
    pub async fn read_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.reading.lock().await
    }

    /// Sets (`Some`) or clears (`None`) `model`'s override; whether anything changed.
    pub fn set(&self, model: &str, applied: Option<Applied>) -> bool {
        let mut map = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = map.get(model) != applied.as_ref();
        match applied {
            Some(a) => map.insert(model.to_owned(), a),
            None => map.remove(model),
        };
        changed
    }

    /// Replaces every override with `all` (a full read of Redis); whether anything changed.
    pub fn replace(&self, all: BTreeMap<String, Applied>) -> bool {
        let mut map = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = *map != all;
        *map = all;
        changed
    }
}

/// Checks `route` against `config` as a reload would: the model exists, every listed
/// deployment is one of its configured ones (each once, at least one), and the policy
/// exists, loads and passes its self-check. The error says what is wrong.
pub fn validate(config: &Config, model: &str, route: &RouteOverride) -> Result<(), String> {
    let Some(m) = config.models.iter().find(|m| m.name == model) else {
        return Err(format!("the config has no model named `{model}`"));
    };
    if route.deployments.is_empty() {
        return Err(format!(
            "an override lists at least one deployment (clear it to use the configured order \
             of `{model}`)"
        ));
    }
    let configured: Vec<String> = m.deployments.iter().map(|d| d.id()).collect();
    let mut seen = BTreeSet::new();
    for id in &route.deployments {
        if !configured.contains(id) {
            return Err(format!(
                "`{id}` is not a deployment of model `{model}` (it has: {}); an override orders \
                 the configured deployments, it cannot add one",
                configured.join(", ")
            ));
        }
        if !seen.insert(id.as_str()) {
            return Err(format!("`{id}` is listed twice"));
        }
    }
    if let Some(name) = &route.policy {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(format!(
                "`{name}` is not a policy name (letters, digits, - and _)"
            ));
        }
        if name != policy::STATIC {
            if route.deployments.len() > policy::sandbox::MAX_CANDIDATES {
                return Err(format!(
                    "a Lua policy routes at most {} deployments",
                    policy::sandbox::MAX_CANDIDATES
                ));
            }
            policy::check(config, name).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The config to build the catalog from: `config` with every override that fits it
/// applied (deployments reordered and subset, the policy replaced), and the source of
/// each applied one by model. One that does not fit is logged and skipped.
pub fn effective(
    config: &Config,
    overrides: &BTreeMap<String, Applied>,
) -> (Config, Vec<(String, Arc<str>)>) {
    let mut out = config.clone();
    let mut applied = Vec::new();
    for (model, a) in overrides {
        if let Err(error) = validate(config, model, &a.route) {
            tracing::warn!(
                model = %model,
                origin = a.origin.as_str(),
                %error,
                "route override does not fit the config; the configured order serves"
            );
            continue;
        }
        let Some(m) = out.models.iter_mut().find(|m| &m.name == model) else {
            continue;
        };
        let mut ordered = Vec::with_capacity(a.route.deployments.len());
        for id in &a.route.deployments {
            if let Some(d) = m.deployments.iter().find(|d| &d.id() == id) {
                ordered.push(d.clone());
            }
        }
        m.deployments = ordered;
        if let Some(p) = &a.route.policy {
            m.policy = Some(p.clone());
        }
        applied.push((model.clone(), Arc::from(a.source())));
    }
    (out, applied)
}

#[cfg(test)]
mod tests;
