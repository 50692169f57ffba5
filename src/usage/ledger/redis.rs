//! The ledger in Redis, shared by every replica: one hash per UTC hour,
//! `switchyard:usage:YYYYMMDDHH`, with a field per `key|model|deployment|component`
//! added to by `HINCRBY`, and a sorted set `switchyard:usage:hours` of the hours
//! (scored by their UNIX start). A batch is one Lua script (`add.lua`): all of it counts,
//! once — it first sets a marker under the batch's id and adds nothing when the marker is
//! already there, so a retry after a lost answer never counts twice — and N replicas'
//! increments add up. Hours expire after [`KEEP`].

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
    time::Duration,
};

use super::{Batch, Query, Report, Slot, Sums, calendar};
use crate::state::Redis;

/// Hour hashes live this long (a little over a year, for year-on-year questions).
pub const KEEP: i64 = 400 * 86_400;

/// The sorted set of stored hours.
pub const HOURS: &str = "switchyard:usage:hours";

/// The hash of one hour.
pub fn bucket_key(hour: i64) -> String {
    format!("switchyard:usage:{}", calendar::bucket_name(hour))
}

/// The components, in field order.
const COMPONENTS: [&str; 13] = [
    "requests",
    "errors",
    "unpriced",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_input_nusd",
    "cost_cached_input_nusd",
    "cost_cache_write_nusd",
    "cost_output_nusd",
    "cost_total_nusd",
];

/// `|` separates a field's parts, so names escape `%` and `|`.
fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('|', "%7C")
}

fn unescape(s: &str) -> String {
    s.replace("%7C", "|").replace("%25", "%")
}

/// Batch markers live this long: a retry comes within seconds; a day is ample.
pub const MARKER_TTL_S: u64 = 86_400;

/// The key marking batch `id` applied.
pub fn marker_key(id: &str) -> String {
    format!("switchyard:usage:batch:{id}")
}

/// The ledger's writes are off the request path: they may take longer than a request's
/// Redis call (up to 1,024 slots x 13 fields in one script).
pub const WRITE_TIMEOUT_MIN: Duration = Duration::from_secs(2);

static ADD: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("add.lua")));

/// Adds `batch` in one script, all of it, and only once per batch id: a retry of a batch
/// whose answer was lost (applied on the server, the reply late) adds nothing.
pub async fn add(redis: &Redis, batch: &Batch) -> Result<(), String> {
    let mut hours: Vec<i64> = Vec::new();
    let mut increments: Vec<(usize, String, String)> = Vec::new();
    for (slot, sums) in &batch.slots {
        let at = match hours.iter().position(|h| *h == slot.hour) {
            Some(at) => at,
            None => {
                hours.push(slot.hour);
                hours.len() - 1
            }
        };
        let prefix = format!(
            "{}|{}|{}|",
            escape(&slot.key),
            escape(&slot.model),
            escape(&slot.deployment)
        );
        for (name, value) in COMPONENTS.iter().zip(sums.components()) {
            // Zero is never sent: nothing to add.
            if value > 0 {
                let v = i64::try_from(value).unwrap_or(i64::MAX);
                increments.push((at + 1, format!("{prefix}{name}"), v.to_string()));
            }
        }
    }
    let mut call = ADD.prepare_invoke();
    call.key(marker_key(&batch.id)).key(HOURS);
    for h in &hours {
        call.key(bucket_key(*h));
    }
    call.arg(MARKER_TTL_S)
        .arg((calendar::now() - KEEP).to_string());
    for h in &hours {
        call.arg(calendar::bucket_name(*h))
            .arg(h.to_string())
            .arg((h + KEEP).to_string());
    }
    for (at, field, amount) in increments {
        call.arg(at).arg(field).arg(amount);
    }
    let timeout = redis.timeout().max(WRITE_TIMEOUT_MIN);
    redis
        .run_with_timeout("ledger_add", timeout, |mut conn| async move {
            call.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Reads the hours `query` covers (one pipeline of `HGETALL`s) and groups them.
pub async fn report(redis: &Redis, query: &Query) -> Result<Report, String> {
    let (first, to) = (query.first_hour(), query.to);
    let names: Vec<String> = redis
        .run("ledger_hours", |mut conn| async move {
            redis::cmd("ZRANGEBYSCORE")
                .arg(HOURS)
                .arg(first)
                .arg(format!("({to}"))
                .query_async(&mut conn)
                .await
        })
        .await
        .map_err(|e| e.to_string())?;
    let hours: Vec<i64> = names
        .iter()
        .filter_map(|n| calendar::parse_bucket_name(n))
        .collect();
    let mut pipe = redis::pipe();
    for h in &hours {
        pipe.hgetall(bucket_key(*h));
    }
    let buckets: Vec<HashMap<String, i64>> = if hours.is_empty() {
        Vec::new()
    } else {
        redis
            .run("ledger_read", |mut conn| async move {
                pipe.query_async(&mut conn).await
            })
            .await
            .map_err(|e| e.to_string())?
    };
    let mut slots: HashMap<Slot, Sums> = HashMap::new();
    for (hour, fields) in hours.iter().zip(buckets) {
        for (field, value) in fields {
            let parts: Vec<&str> = field.split('|').collect();
            let [key, model, deployment, component] = parts[..] else {
                continue;
            };
            let Some(i) = COMPONENTS.iter().position(|c| *c == component) else {
                continue;
            };
            let slot = Slot {
                hour: *hour,
                key: Arc::from(unescape(key)),
                model: Arc::from(unescape(model)),
                deployment: Arc::from(unescape(deployment)),
            };
            let sums = slots.entry(slot).or_default();
            let mut n = sums.components();
            n[i] += u64::try_from(value).unwrap_or(0);
            *sums = Sums::from_components(n);
        }
    }
    Ok(Report::from_slots(query.clone(), slots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_the_separator_survive() {
        assert_eq!(unescape(&escape("a|b%7C")), "a|b%7C");
        assert!(!escape("a|b").contains('|'));
        let s = Sums::from_components([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
        assert_eq!(s.components(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    }
}
