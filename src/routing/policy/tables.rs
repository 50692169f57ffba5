//! Values into Lua tables (candidates, requests, config and JSON values) and the
//! policy's answer back out.

use std::{collections::HashMap, time::Duration};

use mlua::{Function, Lua, LuaString, Table, Value};

use super::{CallError, Facts, sandbox::Vm};
use crate::{health::Snapshot, routing::Deployment, usage::pricing::Price};

/// Candidate indices in the order to try, each with its attempt timeout when set.
pub type Order = Vec<(usize, Option<Duration>)>;

/// A candidate's resident table and its `stats` sub-table (rewritten by [`write_stats`]).
/// Its prices are written by [`write_prices`], from the live table at decision time.
pub fn candidate(lua: &Lua, d: &Deployment) -> mlua::Result<(Table, Table)> {
    let t = lua.create_table_with_capacity(0, 14)?;
    t.raw_set("id", &*d.id)?;
    t.raw_set("provider", &*d.provider_name)?;
    t.raw_set("kind", d.kind)?;
    t.raw_set("model", &*d.model)?;
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

/// Writes a candidate's prices (USD per million tokens) into its table.
pub fn write_prices(candidate: &Table, p: &Price) -> mlua::Result<()> {
    candidate.raw_set("price_in", p.input)?;
    candidate.raw_set("price_out", p.output)?;
    candidate.raw_set("price_cached", p.cached_input)?;
    Ok(())
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

/// A model's arguments, resident in the VM: the `request` table, every candidate in
/// configured order (`all`), an id -> position index, and the array the survivors are
/// copied into (`out`). Per call, Rust touches only what changed; the sandbox's invoke
/// function does the rest in one call.
pub struct Args {
    request: Table,
    capabilities: Table,
    capabilities_len: usize,
    headers: Table,
    /// `x-route-*` names set by the last call, to clear on the next.
    header_names: Vec<String>,
    all: Table,
    index: Table,
    out: Table,
    anonymous: Table,
}

impl Args {
    pub fn new(lua: &Lua, model: &str, params: &Table, candidates: &[Table]) -> mlua::Result<Args> {
        let request = lua.create_table_with_capacity(0, 10)?;
        request.raw_set("model", model)?;
        request.raw_set("params", params)?;
        let capabilities = lua.create_table_with_capacity(5, 0)?;
        request.raw_set("capabilities", &capabilities)?;
        let headers = lua.create_table()?;
        request.raw_set("headers", &headers)?;
        let anonymous = lua.create_table_with_capacity(0, 1)?;
        anonymous.raw_set("tags", lua.create_table()?)?;
        let index = lua.create_table_with_capacity(0, candidates.len())?;
        for (i, c) in candidates.iter().enumerate() {
            index.raw_set(c.raw_get::<mlua::LuaString>("id")?, i + 1)?;
        }
        Ok(Args {
            request,
            capabilities,
            capabilities_len: 0,
            headers,
            header_names: Vec::new(),
            all: lua.create_sequence_from(candidates.iter().cloned())?,
            index,
            out: lua.create_table_with_capacity(candidates.len(), 0)?,
            anonymous,
        })
    }

    /// One decision: refreshes what changed, then calls the policy through the sandbox's
    /// invoke function. `survivors` are positions (0-based) in `all`, below
    /// [`MAX_CANDIDATES`](super::sandbox::MAX_CANDIDATES). `keys` caches each API key's
    /// table in this VM.
    pub fn call(
        &mut self,
        vm: &Vm,
        route: &Function,
        facts: &Facts,
        survivors: &[usize],
        keys: &mut HashMap<String, Table>,
    ) -> Result<Answer, CallError> {
        let lua = vm.lua();
        let key = self.key(lua, facts, keys).map_err(plain)?;
        self.refresh_lists(facts).map_err(plain)?;
        let mask = survivors.iter().fold(0i64, |m, &i| m | (1 << i));
        let (order, timeouts, ignored) = vm.invoke((
            route,
            &self.request,
            &self.all,
            &self.index,
            &self.out,
            mask,
            facts.input_tokens,
            facts.max_tokens,
            facts.stream,
            facts.caller.level.as_str(),
            key,
        ))?;
        decode(&order, timeouts, ignored)
    }

    fn key(
        &self,
        lua: &Lua,
        facts: &Facts,
        keys: &mut HashMap<String, Table>,
    ) -> mlua::Result<Table> {
        let Some(k) = &facts.caller.key else {
            return Ok(self.anonymous.clone());
        };
        if let Some(t) = keys.get(&k.name) {
            return Ok(t.clone());
        }
        let t = lua.create_table_with_capacity(0, 2)?;
        t.raw_set("name", k.name.as_str())?;
        t.raw_set(
            "tags",
            lua.create_sequence_from(k.tags.iter().map(String::as_str))?,
        )?;
        keys.insert(k.name.clone(), t.clone());
        Ok(t)
    }

    /// Capabilities and `x-route-*` headers: rewritten only when this call or the last had any.
    fn refresh_lists(&mut self, facts: &Facts) -> mlua::Result<()> {
        let mut n = 0;
        for name in facts.needs.names() {
            n += 1;
            self.capabilities.raw_seti(n, name)?;
        }
        for i in (n + 1..=self.capabilities_len).rev() {
            self.capabilities.raw_seti(i, mlua::Nil)?;
        }
        self.capabilities_len = n;
        for name in self.header_names.drain(..) {
            self.headers.raw_set(name, mlua::Nil)?;
        }
        for (name, value) in &facts.caller.route_headers {
            self.headers.raw_set(name.as_str(), value.as_str())?;
            self.header_names.push(name.clone());
        }
        Ok(())
    }
}

/// Positions (0-based) in the order to try, each with its attempt timeout when set, and the
/// ids the policy named that were not candidates.
pub type Answer = (Order, Vec<String>);

/// Reads the invoke function's result.
pub fn decode(
    order: &LuaString,
    timeouts: Option<Table>,
    ignored: Option<Table>,
) -> Result<Answer, CallError> {
    let bytes = order.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    for &at in bytes.iter() {
        let timeout = match &timeouts {
            Some(t) => t
                .raw_get::<Option<f64>>(at)
                .map_err(plain)?
                .map(|ms| Duration::from_secs_f64(ms.min(86_400_000.0) / 1000.0)),
            None => None,
        };
        out.push((usize::from(at) - 1, timeout));
    }
    let ignored = match ignored {
        Some(t) => t
            .sequence_values::<LuaString>()
            .map(|s| s.map(|s| s.to_string_lossy()))
            .collect::<mlua::Result<Vec<_>>>()
            .map_err(plain)?,
        None => Vec::new(),
    };
    Ok((out, ignored))
}

fn plain(e: mlua::Error) -> CallError {
    match e {
        mlua::Error::MemoryError(_) => CallError::Memory,
        other => CallError::Runtime(other.to_string()),
    }
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
