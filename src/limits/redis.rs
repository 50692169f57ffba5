//! The Redis engine: one atomic script per reserve (`reserve.lua`) and per settle
//! (`settle.lua`), covering every limit and the budget of the request, on the server's
//! clock.

use redis::Value;

use super::{Ask, Day, Granted, Refusal, Settle};
use crate::state::{Redis, RedisError};

/// Day keys outlive their day by one (a late settle still lands); month keys their month.
const DAY_TTL_S: u64 = 2 * 86_400;
const MONTH_TTL_S: u64 = 40 * 86_400;

pub struct Scripts {
    reserve: redis::Script,
    settle: redis::Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            reserve: redis::Script::new(include_str!("reserve.lua")),
            settle: redis::Script::new(include_str!("settle.lua")),
        }
    }

    pub async fn reserve(
        &self,
        redis: &Redis,
        ask: &Ask,
        rid: &str,
        hold_ms: u64,
        day: Day,
    ) -> Result<Result<Granted, Refusal>, RedisError> {
        let mut call = self.reserve.prepare_invoke();
        for key in keys(ask, day) {
            call.key(key);
        }
        call.arg(rid)
            .arg(hold_ms)
            .arg(ask.tokens)
            .arg(ask.cost_micros)
            .arg(ask.subjects.len());
        for s in &ask.subjects {
            call.arg(s.limits.rpm.unwrap_or(0))
                .arg(s.limits.tpm.unwrap_or(0))
                .arg(s.limits.max_concurrent.unwrap_or(0));
        }
        let (day_cap, month_cap) = ask.budget.as_ref().map_or((0, 0), |(_, b)| {
            (b.day_micros().unwrap_or(0), b.month_micros().unwrap_or(0))
        });
        call.arg(day_cap).arg(month_cap);
        let reply: Vec<Value> = redis
            .run("limits_reserve", |mut conn| async move {
                call.invoke_async(&mut conn).await
            })
            .await?;
        parse_reserve(&reply).ok_or_else(|| {
            RedisError::Failed("the reserve script answered in an unexpected shape".into())
        })
    }

    pub async fn settle(
        &self,
        redis: &Redis,
        ask: &Ask,
        rid: &str,
        settle: Settle,
        day: Day,
    ) -> Result<(), RedisError> {
        let mut call = self.settle.prepare_invoke();
        for key in keys(ask, day) {
            call.key(key);
        }
        call.arg(rid)
            .arg(
                settle
                    .tokens
                    .map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX)),
            )
            .arg(settle.cost_micros)
            .arg(ask.subjects.len());
        for s in &ask.subjects {
            call.arg(u8::from(s.limits.tpm.is_some()))
                .arg(u8::from(s.limits.max_concurrent.is_some()));
        }
        call.arg(u8::from(ask.budget.is_some()))
            .arg(DAY_TTL_S)
            .arg(MONTH_TTL_S);
        redis
            .run("limits_settle", |mut conn| async move {
                call.invoke_async::<i64>(&mut conn).await
            })
            .await
            .map(drop)
    }
}

/// The keys of a request's subjects (four each) and, when a budget applies, its four.
fn keys(ask: &Ask, day: Day) -> Vec<String> {
    let mut keys = Vec::with_capacity(4 * ask.subjects.len() + 4);
    for s in &ask.subjects {
        let base = format!("switchyard:limit:{}", s.id);
        keys.push(format!("{base}:r"));
        keys.push(format!("{base}:t"));
        keys.push(format!("{base}:tv"));
        keys.push(format!("{base}:c"));
    }
    if let Some((key, _)) = &ask.budget {
        let base = format!("switchyard:budget:{key}");
        let (d, m) = day.names();
        keys.push(format!("{base}:h"));
        keys.push(format!("{base}:hv"));
        keys.push(format!("{base}:d:{d}"));
        keys.push(format!("{base}:m:{m}"));
    }
    keys
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => Some(u64::try_from(*n).unwrap_or(0)),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn parse_reserve(reply: &[Value]) -> Option<Result<Granted, Refusal>> {
    let status = text(reply.first()?)?;
    let n = |i: usize| reply.get(i).and_then(int);
    if status == b"ok" {
        let mut g = Granted::default();
        if n(1)? > 0 {
            g.requests(n(1)?, n(2)?, n(3)?);
        }
        if n(4)? > 0 {
            g.tokens(n(4)?, n(5)?, n(6)?);
        }
        return Some(Ok(g));
    }
    let subject = usize::try_from(n(1)?).ok()?;
    let (limit, remaining, retry_ms) = (n(2)?, n(3)?, n(4)?);
    Some(Err(match status {
        b"requests" => Refusal::Requests {
            subject,
            limit,
            retry_ms,
        },
        b"tokens" => Refusal::Tokens {
            subject,
            limit,
            remaining,
            retry_ms,
        },
        b"tokens_never" => Refusal::TokensNever { subject, limit },
        b"concurrent" => Refusal::Concurrent { subject, limit },
        b"budget_day" => Refusal::BudgetDay { cap: limit },
        b"budget_month" => Refusal::BudgetMonth { cap: limit },
        _ => return None,
    }))
}
