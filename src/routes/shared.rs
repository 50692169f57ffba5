//! Route overrides in Redis: one key per model holding the override as JSON, and one
//! pub/sub channel on which every change announces the model it touched.
//!
//! Writers set or delete the key and publish the model's name in one `MULTI`; a replica
//! that hears the name reads the key (the key, not the message, is the truth, so messages
//! arriving out of order cannot leave a stale override).

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;

use super::RouteOverride;

/// The prefix of each model's key: `switchyard:routes:<model>`.
pub const KEY_PREFIX: &str = "switchyard:routes:";

/// The channel each change is announced on; the message is the model's name.
pub const CHANNEL: &str = "switchyard:routes";

/// The key of `model`'s override.
pub fn key(model: &str) -> String {
    format!("{KEY_PREFIX}{model}")
}

/// Parses a stored override; `None` (with a warning) when it is not one.
fn parse(model: &str, json: &str) -> Option<RouteOverride> {
    match serde_json::from_str(json) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(model, error = %e, "route override in Redis is not valid JSON; ignored");
            None
        }
    }
}

/// `model`'s override, if one is stored.
pub async fn read<C: ConnectionLike + Send>(
    conn: &mut C,
    model: &str,
) -> redis::RedisResult<Option<RouteOverride>> {
    let json: Option<String> = redis::cmd("GET").arg(key(model)).query_async(conn).await?;
    Ok(json.and_then(|j| parse(model, &j)))
}

/// Every stored override, by model.
pub async fn read_all<C: ConnectionLike + Send>(
    conn: &mut C,
) -> redis::RedisResult<BTreeMap<String, RouteOverride>> {
    // Glob characters in the prefix would need escaping; it has none.
    let pattern = format!("{KEY_PREFIX}*");
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    let mut all = BTreeMap::new();
    if keys.is_empty() {
        return Ok(all);
    }
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
    for (k, v) in keys.iter().zip(values) {
        let model = k.strip_prefix(KEY_PREFIX).unwrap_or(k);
        if let Some(route) = v.and_then(|j| parse(model, &j)) {
            all.insert(model.to_owned(), route);
        }
    }
    Ok(all)
}

/// Stores `model`'s override and announces it.
pub async fn write<C: ConnectionLike + Send>(
    conn: &mut C,
    model: &str,
    route: &RouteOverride,
) -> redis::RedisResult<()> {
    let json = serde_json::to_string(route).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            "cannot encode the override",
            e.to_string(),
        ))
    })?;
    redis::pipe()
        .atomic()
        .set(key(model), json)
        .ignore()
        .publish(CHANNEL, model)
        .ignore()
        .query_async(conn)
        .await
}

/// Deletes `model`'s override and announces it.
pub async fn clear<C: ConnectionLike + Send>(conn: &mut C, model: &str) -> redis::RedisResult<()> {
    redis::pipe()
        .atomic()
        .del(key(model))
        .ignore()
        .publish(CHANNEL, model)
        .ignore()
        .query_async(conn)
        .await
}
