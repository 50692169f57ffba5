//! `[state]`, `[cache]`, and the `limits` and `budget` of keys and models: the file's
//! shapes and their validation.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{ConfigError, Secret};

/// `[state]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub redis_url: Option<String>,
    pub dir: Option<String>,
    pub on_redis_error: Option<String>,
    pub redis_timeout_ms: Option<u64>,
    pub hold_ttl_s: Option<u64>,
}

/// `[cache]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    pub enabled: Option<bool>,
    pub ttl_s: Option<u64>,
    pub max_bytes: Option<u64>,
    pub scope: Option<String>,
}

/// `limits = { rpm, tpm, max_concurrent }` of a key or a model, as written.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u64>,
}

/// `budget = { usd_per_day, usd_per_month }` of a key, as written.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetFile {
    pub usd_per_day: Option<f64>,
    pub usd_per_month: Option<f64>,
}

/// `[state]`, validated: where shared state lives.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// `None`: everything in process. Holds a password when the URL has one.
    pub redis_url: Option<Secret>,
    /// The embedded ledger's folder, resolved against the config file's folder.
    pub dir: PathBuf,
    /// What limits and budgets do while Redis cannot be reached.
    pub on_redis_error: OnRedisError,
    /// The longest any Redis call may take, reconnecting included.
    pub redis_timeout: Duration,
    /// How long a reservation holds (concurrency, budget) when nothing settles it: the
    /// holds of a replica that died free themselves after this.
    pub hold_ttl: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            redis_url: None,
            dir: PathBuf::from("switchyard-data"),
            on_redis_error: OnRedisError::Open,
            redis_timeout: Duration::from_millis(250),
            hold_ttl: Duration::from_secs(600),
        }
    }
}

/// `state.on_redis_error`: limits and budgets while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Admit, each replica enforcing the limits on its own counters meanwhile (budgets
    /// are not enforced): an outage degrades precision, never availability.
    Open,
    /// Refuse calls that a limit or budget applies to (503 `limits_unavailable`).
    Closed,
}

/// `[cache]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub enabled: bool,
    /// How long an entry lives; a model's `cache_ttl_s` overrides it.
    pub ttl: Duration,
    /// The in-process cache's bound, by entry size.
    pub max_bytes: u64,
    pub scope: CacheScope,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            ttl: Duration::from_secs(3600),
            max_bytes: 64 * 1024 * 1024,
            scope: CacheScope::Key,
        }
    }
}

/// Who may share a cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// Entries are never shared across caller keys.
    Key,
    /// All callers share entries.
    Shared,
}

/// Rate limits of a key, a model, or a key on a model; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests in any rolling 60 s.
    pub rpm: Option<u64>,
    /// Tokens (input and output) in any rolling 60 s.
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    pub max_concurrent: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.max_concurrent.is_some()
    }
}

/// A key's spend caps in USD per UTC calendar day and month; `None` is uncapped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    pub usd_per_day: Option<f64>,
    pub usd_per_month: Option<f64>,
}

impl Budget {
    /// Whether any cap is set.
    pub fn any(&self) -> bool {
        self.usd_per_day.is_some() || self.usd_per_month.is_some()
    }
}

pub(super) fn state_config(f: &StateFile) -> Result<StateConfig, ConfigError> {
    let d = StateConfig::default();
    let redis_url = f
        .redis_url
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|v| Secret::resolve(v).map_err(|r| ConfigError::new("state.redis_url", r)))
        .transpose()?;
    if let Some(url) = &redis_url {
        let ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|s| url.expose().starts_with(s))
            && redis::Client::open(url.expose()).is_ok();
        if !ok {
            // Never echo the URL: it may carry a password.
            return Err(ConfigError::new(
                "state.redis_url",
                "is not a Redis URL (redis://[user:password@]host:port/db)",
            ));
        }
    }
    let on_redis_error = match f.on_redis_error.as_deref() {
        None => d.on_redis_error,
        Some("open") => OnRedisError::Open,
        Some("closed") => OnRedisError::Closed,
        Some(other) => {
            return Err(ConfigError::new(
                "state.on_redis_error",
                format!("`{other}` is not `open` or `closed`"),
            ));
        }
    };
    let positive = |key: &str, v: Option<u64>| match v {
        Some(0) => Err(ConfigError::new(key, "must be greater than 0")),
        v => Ok(v),
    };
    Ok(StateConfig {
        redis_url,
        dir: f
            .dir
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map_or(d.dir, PathBuf::from),
        on_redis_error,
        redis_timeout: positive("state.redis_timeout_ms", f.redis_timeout_ms)?
            .map_or(d.redis_timeout, Duration::from_millis),
        hold_ttl: positive("state.hold_ttl_s", f.hold_ttl_s)?
            .map_or(d.hold_ttl, Duration::from_secs),
    })
}

pub(super) fn cache_config(f: &CacheFile) -> Result<CacheConfig, ConfigError> {
    let d = CacheConfig::default();
    let scope = match f.scope.as_deref() {
        None | Some("key") => CacheScope::Key,
        Some("shared") => CacheScope::Shared,
        Some(other) => {
            return Err(ConfigError::new(
                "cache.scope",
                format!("`{other}` is not `key` or `shared`"),
            ));
        }
    };
    let ttl = match f.ttl_s {
        Some(0) => {
            return Err(ConfigError::new(
                "cache.ttl_s",
                "must be greater than 0 (set `enabled = false` to turn the cache off)",
            ));
        }
        v => v.map_or(d.ttl, Duration::from_secs),
    };
    let max_bytes = match f.max_bytes {
        Some(0) => {
            return Err(ConfigError::new(
                "cache.max_bytes",
                "must be greater than 0",
            ));
        }
        v => v.unwrap_or(d.max_bytes),
    };
    Ok(CacheConfig {
        enabled: f.enabled.unwrap_or(true),
        ttl,
        max_bytes,
        scope,
    })
}

/// A `limits` table; `key` names it in errors (`keys[0].limits`).
pub(super) fn limits(key: &str, f: Option<LimitsFile>) -> Result<Limits, ConfigError> {
    let Some(f) = f else {
        return Ok(Limits::default());
    };
    let positive = |field: &str, v: Option<u64>| match v {
        Some(0) => Err(ConfigError::new(
            format!("{key}.{field}"),
            "must be greater than 0 (leave it out for no limit)",
        )),
        v => Ok(v),
    };
    Ok(Limits {
        rpm: positive("rpm", f.rpm)?,
        tpm: positive("tpm", f.tpm)?,
        max_concurrent: positive("max_concurrent", f.max_concurrent)?,
    })
}

/// A `budget` table; `key` names it in errors.
pub(super) fn budget(key: &str, f: Option<BudgetFile>) -> Result<Budget, ConfigError> {
    let Some(f) = f else {
        return Ok(Budget::default());
    };
    let usd = |field: &str, v: Option<f64>| match v {
        Some(x) if !(x.is_finite() && x > 0.0) => Err(ConfigError::new(
            format!("{key}.{field}"),
            "must be an amount in USD greater than 0",
        )),
        v => Ok(v),
    };
    Ok(Budget {
        usd_per_day: usd("usd_per_day", f.usd_per_day)?,
        usd_per_month: usd("usd_per_month", f.usd_per_month)?,
    })
}
