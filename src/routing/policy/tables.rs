//! Values into Lua tables (candidates, requests, config and JSON values) and the
//! policy's answer back out.

use std::{collections::HashMap, time::Duration};

use mlua::{Lua, Table, Value};

use super::{CallError, Facts};
use crate::{health::Snapshot, routing::Deployment};

/// Candidate indices in the order to try, each with its attempt timeout when set.
pub type Order = Vec<(usize, Option<Duration>)>;

/// A candidate's resident table and its `stats` sub-table (rewritten by [`write_stats`]).
pub fn candidate(lua: &Lua, d: &Deployment) -> mlua::Result<(Table, Table)> {
    let t = lua.create_table_with_capacity(0, 14)?;
    t.raw_set("id", &*d.id)?;
    t.raw_set("provider", &*d.provider_name)?;
    t.raw_set("kind", d.kind)?;
    t.raw_set("model", &*d.model)?;
    t.raw_set("price_in", d.price_in)?;
    t.raw_set("price_out", d.price_out)?;
    t.raw_set("price_cached", d.price_cached)?;
    t.raw_set("quality", d.quality)?;
    t.raw_set("region", d.region.as_deref())?;
    t.raw_set(
        "tags",
        lua.create_sequence_from(d.tags.iter().map(String::as_str))?,
    )?;
    t.raw_set("weight", d.weight)?;
    t.raw_set("position", d.position)?;
    let stats = lua.create_table_with_capacity(0, 6)?;
    t.raw_set("stats", &stats)?;
    Ok((t, stats))
}

/// Copies a live-stats snapshot into a candidate's `stats` table.
pub fn write_stats(stats: &Table, s: &Snapshot) -> mlua::Result<()> {
    stats.raw_set("ewma_ms", s.ewma_ms)?;
    stats.raw_set("p95_ms", s.p95_ms)?;
    stats.raw_set("ttft_ms", s.ttft_ms)?;
    stats.raw_set("error_rate", s.error_rate)?;
    stats.raw_set("samples", s.samples)?;
    stats.raw_set("circuit", s.circuit.as_str())?;
    Ok(())
}

/// A model's `request` and `candidates` arguments, resident in the VM and refilled per
/// call: a call builds no tables, so it leaves the collector nothing of ours to sweep.
pub struct Args {
    request: Table,
    capabilities: Table,
    headers: Table,
    /// `x-route-*` names set by the last call, to clear on the next.
    header_names: Vec<String>,
    candidates: Table,
    anonymous: Table,
}

impl Args {
    pub fn new(lua: &Lua, model: &str, params: &Table) -> mlua::Result<Args> {
        let request = lua.create_table_with_capacity(0, 10)?;
        request.raw_set("model", model)?;
        request.raw_set("params", params)?;
        let capabilities = lua.create_table_with_capacity(5, 0)?;
        request.raw_set("capabilities", &capabilities)?;
        let headers = lua.create_table()?;
        request.raw_set("headers", &headers)?;
        let anonymous = lua.create_table_with_capacity(0, 1)?;
        anonymous.raw_set("tags", lua.create_table()?)?;
        Ok(Args {
            request,
            capabilities,
            headers,
            header_names: Vec::new(),
            candidates: lua.create_table()?,
            anonymous,
        })
    }

    /// Fills both arguments for one call. `keys` caches each API key's table in this VM.
    pub fn fill(
        &mut self,
        lua: &Lua,
        facts: &Facts,
        survivors: impl ExactSizeIterator<Item = Table>,
        keys: &mut HashMap<String, Table>,
    ) -> mlua::Result<(Table, Table)> {
        let t = &self.request;
        t.raw_set("input_tokens", facts.input_tokens)?;
        t.raw_set("max_tokens", facts.max_tokens)?;
        t.raw_set("stream", facts.stream)?;
        t.raw_set("tier", facts.caller.level.as_str())?;
        let key = match &facts.caller.key {
            None => self.anonymous.clone(),
            Some(k) => match keys.get(&k.name) {
                Some(t) => t.clone(),
                None => {
                    let t = lua.create_table_with_capacity(0, 2)?;
                    t.raw_set("name", k.name.as_str())?;
                    t.raw_set(
                        "tags",
                        lua.create_sequence_from(k.tags.iter().map(String::as_str))?,
                    )?;
                    keys.insert(k.name.clone(), t.clone());
                    t
                }
            },
        };
        t.raw_set("key", key)?;
        let mut n = 0;
        for name in facts.needs.names() {
            n += 1;
            self.capabilities.raw_seti(n, name)?;
        }
        truncate(&self.capabilities, n)?;
        for name in self.header_names.drain(..) {
            self.headers.raw_set(name, mlua::Nil)?;
        }
        for (name, value) in &facts.caller.route_headers {
            self.headers.raw_set(name.as_str(), value.as_str())?;
            self.header_names.push(name.clone());
        }
        self.headers.raw_set(
            crate::auth::SECURITY_LEVEL_HEADER,
            facts.caller.level.as_str(),
        )?;
        let mut n = 0;
        for c in survivors {
            n += 1;
            self.candidates.raw_seti(n, c)?;
        }
        truncate(&self.candidates, n)?;
        Ok((self.request.clone(), self.candidates.clone()))
    }
}

/// Clears a sequence's entries after `len` (left by an earlier call, or a script).
fn truncate(t: &Table, len: usize) -> mlua::Result<()> {
    for i in (len + 1..=t.raw_len()).rev() {
        t.raw_seti(i, mlua::Nil)?;
    }
    Ok(())
}

/// `[[models]] params` as a Lua table.
pub fn toml_table(lua: &Lua, table: &toml::Table) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, table.len())?;
    for (k, v) in table {
        t.raw_set(k.as_str(), toml_value(lua, v)?)?;
    }
    Ok(t)
}

fn toml_value(lua: &Lua, v: &toml::Value) -> mlua::Result<Value> {
    Ok(match v {
        toml::Value::String(s) => Value::String(lua.create_string(s)?),
        toml::Value::Integer(i) => Value::Integer(*i),
        toml::Value::Float(f) => Value::Number(*f),
        toml::Value::Boolean(b) => Value::Boolean(*b),
        toml::Value::Datetime(d) => Value::String(lua.create_string(d.to_string())?),
        toml::Value::Array(a) => Value::Table(
            lua.create_sequence_from(
                a.iter()
                    .map(|v| toml_value(lua, v))
                    .collect::<mlua::Result<Vec<_>>>()?,
            )?,
        ),
        toml::Value::Table(t) => Value::Table(toml_table(lua, t)?),
    })
}

/// A JSON value as a Lua value (objects and arrays become tables; null becomes nil).
pub fn json_value(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    Ok(match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::String(lua.create_string(s)?),
        serde_json::Value::Array(a) => Value::Table(
            lua.create_sequence_from(
                a.iter()
                    .map(|v| json_value(lua, v))
                    .collect::<mlua::Result<Vec<_>>>()?,
            )?,
        ),
        serde_json::Value::Object(o) => {
            let t = lua.create_table_with_capacity(0, o.len())?;
            for (k, v) in o {
                t.raw_set(k.as_str(), json_value(lua, v)?)?;
            }
            Value::Table(t)
        }
    })
}

/// Fills the fields a case file left out with the defaults a live call would have.
pub fn default_fields(t: &Table, defaults: &[(&str, Value)]) -> mlua::Result<()> {
    for (k, v) in defaults {
        if t.raw_get::<Value>(*k)?.is_nil() {
            t.raw_set(*k, v.clone())?;
        }
    }
    Ok(())
}

/// The policy's answer: ids (or `{ id =, timeout_ms = }` tables) in order. `find` maps an
/// id to a candidate index; ids it does not know are returned separately (ignored).
pub fn read_order(
    answer: Value,
    find: impl Fn(&[u8]) -> Option<usize>,
) -> Result<(Order, Vec<String>), CallError> {
    let Value::Table(list) = answer else {
        return Err(CallError::Runtime(format!(
            "route returned a {}, not a list of candidate ids",
            answer.type_name()
        )));
    };
    let mut order: Vec<(usize, Option<Duration>)> = Vec::with_capacity(list.raw_len());
    let mut ignored = Vec::new();
    for item in list.sequence_values::<Value>() {
        let item = item.map_err(|e| CallError::Runtime(e.to_string()))?;
        let (id, timeout) = match &item {
            Value::String(s) => (s.clone(), None),
            Value::Table(t) => {
                let id: mlua::LuaString = t.raw_get("id").map_err(|_| {
                    CallError::Runtime("an entry of route's answer has no string `id`".to_owned())
                })?;
                let timeout = match t.raw_get::<Value>("timeout_ms") {
                    Ok(Value::Integer(ms)) if ms > 0 => {
                        Some(Duration::from_millis(ms.unsigned_abs()))
                    }
                    Ok(Value::Number(ms)) if ms.is_finite() && ms >= 1.0 => {
                        Some(Duration::from_secs_f64(ms / 1000.0))
                    }
                    Ok(Value::Nil) => None,
                    _ => {
                        return Err(CallError::Runtime(
                            "`timeout_ms` must be a positive number".to_owned(),
                        ));
                    }
                };
                (id, timeout)
            }
            other => {
                return Err(CallError::Runtime(format!(
                    "route's answer holds a {}, not a candidate id",
                    other.type_name()
                )));
            }
        };
        let bytes = id.as_bytes();
        match find(&bytes) {
            Some(i) if !order.iter().any(|(j, _)| *j == i) => order.push((i, timeout)),
            Some(_) => {}
            None => ignored.push(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }
    if order.is_empty() {
        return Err(CallError::Runtime(if ignored.is_empty() {
            "route returned no candidates".to_owned()
        } else {
            format!("route returned only non-candidates: {}", ignored.join(", "))
        }));
    }
    Ok((order, ignored))
}
