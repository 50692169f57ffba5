//! `switchyard routes set|get|clear`: route overrides written to and read from the Redis
//! of a config's `state.redis_url` directly, validated against that config first. Each
//! returns the text to print.

use std::{collections::BTreeMap, path::Path, time::Duration};

use redis::aio::MultiplexedConnection;

use super::{RouteOverride, shared, validate};
use crate::config::Config;

/// The shortest time the command gives Redis, whatever `state.redis_timeout_ms` says (a
/// person waits here, not a request).
const MIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The config and a connection to its Redis.
struct Target {
    config: Config,
    conn: MultiplexedConnection,
    timeout: Duration,
}

/// Loads the config; refuses one without `state.redis_url`.
fn load(path: &Path) -> Result<Config, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    if config.state.redis_url.is_none() {
        return Err(format!(
            "{} has no state.redis_url: route overrides of a gateway without Redis live in \
             its process; use the admin endpoint of the running gateway \
             (PUT/GET/DELETE /admin/routes/{{model}})",
            path.display()
        ));
    }
    Ok(config)
}

async fn connect(config: Config) -> Result<Target, String> {
    let Some(url) = &config.state.redis_url else {
        return Err("no state.redis_url".to_owned());
    };
    // Never echo the URL: it may hold a password.
    let client = redis::Client::open(url.expose())
        .map_err(|_| "state.redis_url is not a Redis URL".to_owned())?;
    let timeout = config.state.redis_timeout.max(MIN_TIMEOUT);
    let conn = match tokio::time::timeout(timeout, client.get_multiplexed_async_connection()).await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return Err(format!(
                "cannot reach Redis: {}",
                crate::state::describe(&e)
            ));
        }
        Err(_) => return Err(format!("Redis did not answer within {timeout:?}")),
    };
    Ok(Target {
        config,
        conn,
        timeout,
    })
}

impl Target {
    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("Redis: {}", crate::state::describe(&e))),
            Err(_) => Err(format!("Redis did not answer within {:?}", self.timeout)),
        }
    }
}

/// `routes set MODEL a/x,b/y [--policy P]`.
pub async fn set(
    path: &Path,
    model: &str,
    deployments: &str,
    policy: Option<String>,
) -> Result<String, String> {
    let config = load(path)?;
    let ids: Vec<String> = deployments
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let route = RouteOverride::now(ids, policy);
    validate(&config, model, &route)
        .map_err(|e| format!("route override for `{model}` refused: {e}"))?;
    let target = connect(config).await?;
    let mut conn = target.conn.clone();
    target
        .bounded(shared::write(&mut conn, model, &route))
        .await?;
    Ok(format!(
        "{model}: {} (policy {}); written to Redis and announced: every replica applies it \
         within a second",
        route.deployments.join(", "),
        route.policy.as_deref().unwrap_or("from the config")
    ))
}

/// `routes get [MODEL]`.
pub async fn get(path: &Path, model: Option<&str>) -> Result<String, String> {
    let config = load(path)?;
    let target = connect(config).await?;
    let mut conn = target.conn.clone();
    let all: BTreeMap<String, RouteOverride> = match model {
        Some(m) => target
            .bounded(shared::read(&mut conn, m))
            .await?
            .map(|r| (m.to_owned(), r))
            .into_iter()
            .collect(),
        None => target.bounded(shared::read_all(&mut conn)).await?,
    };
    let mut out = String::new();
    if let Some(m) = model
        && all.is_empty()
    {
        let configured = target.config.models.iter().find(|c| c.name == m).map(|c| {
            c.deployments
                .iter()
                .map(|d| d.id())
                .collect::<Vec<_>>()
                .join(", ")
        });
        return Ok(match configured {
            Some(order) => format!("{m}: no override; the config's order serves ({order})\n"),
            None => format!("{m}: no override, and the config has no such model\n"),
        });
    }
    if all.is_empty() {
        return Ok("no route overrides\n".to_owned());
    }
    for (m, r) in &all {
        let fits = match validate(&target.config, m, r) {
            Ok(()) => String::new(),
            Err(e) => format!("  [does not fit this config, ignored: {e}]"),
        };
        out.push_str(&format!(
            "{m}: {} (policy {}) set at {}{fits}\n",
            r.deployments.join(", "),
            r.policy.as_deref().unwrap_or("from the config"),
            r.set_at_text()
        ));
    }
    Ok(out)
}

/// `routes clear MODEL`.
pub async fn clear(path: &Path, model: &str) -> Result<String, String> {
    let config = load(path)?;
    let target = connect(config).await?;
    let mut conn = target.conn.clone();
    target.bounded(shared::clear(&mut conn, model)).await?;
    Ok(format!(
        "{model}: override cleared; every replica returns to the configured order within a \
         second"
    ))
}

/// Every override in the config's Redis (for `route --explain`); an empty map without
/// `state.redis_url`.
pub async fn read_all(config: &Config) -> Result<BTreeMap<String, RouteOverride>, String> {
    if config.state.redis_url.is_none() {
        return Ok(BTreeMap::new());
    }
    let target = connect(config.clone()).await?;
    let mut conn = target.conn.clone();
    target.bounded(shared::read_all(&mut conn)).await
}
