//! The self-check a script passes before it may serve: its `<name>.cases.json` cases, or,
//! without a case file, one smoke call that must return a usable order.
//!
//! A case file is a JSON array of
//! `{ "name", "request": {...}, "candidates": [...], "expect": [ids] | "expect_first": id }`;
//! fields a case leaves out take the values a live call would give them by default.

use mlua::{Lua, Table, Value};
use serde::Deserialize;

use super::{
    CallError,
    sandbox::{Limits, MAX_CANDIDATES, Vm},
    tables,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    request: serde_json::Map<String, serde_json::Value>,
    candidates: Vec<serde_json::Value>,
    expect: Option<Vec<String>>,
    expect_first: Option<String>,
}

/// Loads `source` in a scratch sandbox and runs its cases; the number run, or what failed.
pub fn run(name: &str, source: &str, cases: Option<&str>, limits: Limits) -> Result<usize, String> {
    let vm = Vm::new(limits).map_err(|e| format!("sandbox: {e}"))?;
    let env = vm
        .load_script(name, source)
        .map_err(|e| format!("load: {e}"))?;
    let route: mlua::Function = match env.raw_get::<Value>("route") {
        Ok(Value::Function(f)) => f,
        _ => return Err("defines no function `route(request, candidates)`".to_owned()),
    };
    vm.seal(limits.memory).map_err(|e| e.to_string())?;
    // Repeatable cases, even for policies that draw random numbers.
    vm.lua()
        .load("math.randomseed(42)")
        .exec()
        .map_err(|e| e.to_string())?;
    let cases: Vec<Case> = match cases {
        Some(text) => serde_json::from_str(text).map_err(|e| format!("cases file: {e}"))?,
        None => vec![smoke_case()],
    };
    for case in &cases {
        let ids: Vec<String> = case
            .candidates
            .iter()
            .map(|c| {
                c.get("id")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        let fail = |why: String| format!("case `{}`: {why}", case.name);
        if ids.len() > MAX_CANDIDATES {
            return Err(fail(format!("more than {MAX_CANDIDATES} candidates")));
        }
        let (request, candidates) =
            build(vm.lua(), case).map_err(|e| fail(format!("bad case: {e}")))?;
        let (order, timeouts, ignored) =
            invoke(&vm, &route, request, candidates, ids.len()).map_err(|e| fail(e.to_string()))?;
        let (order, _) =
            tables::decode(&order, timeouts, ignored).map_err(|e| fail(e.to_string()))?;
        let got: Vec<&str> = order.iter().map(|&(i, _)| ids[i].as_str()).collect();
        if let Some(expect) = &case.expect
            && got != *expect
        {
            return Err(fail(format!("expected {expect:?}, got {got:?}")));
        }
        if let Some(first) = &case.expect_first
            && got.first() != Some(&first.as_str())
        {
            return Err(fail(format!("expected {first} first, got {got:?}")));
        }
    }
    Ok(cases.len())
}

/// The case through the same invoke function live calls use (request fields as given).
fn invoke(
    vm: &Vm,
    route: &mlua::Function,
    request: Table,
    candidates: Table,
    n: usize,
) -> Result<(mlua::LuaString, Option<Table>, Option<Table>), CallError> {
    let lua = vm.lua();
    let index = lua
        .create_table()
        .map_err(|e| CallError::Runtime(e.to_string()))?;
    for (i, c) in candidates.sequence_values::<Table>().enumerate() {
        let id: mlua::LuaString = c
            .and_then(|c| c.raw_get("id"))
            .map_err(|e| CallError::Runtime(e.to_string()))?;
        index
            .raw_set(id, i + 1)
            .map_err(|e| CallError::Runtime(e.to_string()))?;
    }
    let out = lua
        .create_table()
        .map_err(|e| CallError::Runtime(e.to_string()))?;
    let mask = (0..n).fold(0i64, |m, i| m | (1 << i));
    vm.invoke((route, request, candidates, index, out, mask, mlua::Nil))
}

/// Without a case file: two plain candidates; any non-empty order of them passes.
fn smoke_case() -> Case {
    let candidate = |id: &str| serde_json::json!({ "id": id });
    Case {
        name: "smoke (no cases file)".to_owned(),
        request: serde_json::Map::new(),
        candidates: vec![candidate("a/m1"), candidate("b/m2")],
        expect: None,
        expect_first: None,
    }
}

/// The case's request and candidates as a live call would pass them.
fn build(lua: &Lua, case: &Case) -> mlua::Result<(Table, Table)> {
    let request = table(lua, &serde_json::Value::Object(case.request.clone()))?;
    let empty = || lua.create_table();
    tables::default_fields(
        &request,
        &[
            ("model", Value::String(lua.create_string("chat")?)),
            ("input_tokens", Value::Integer(0)),
            ("stream", Value::Boolean(false)),
            ("capabilities", Value::Table(empty()?)),
            ("tier", Value::String(lua.create_string("low")?)),
            ("key", Value::Table(empty()?)),
            ("headers", Value::Table(empty()?)),
            ("params", Value::Table(empty()?)),
        ],
    )?;
    let key: Table = request.raw_get("key")?;
    tables::default_fields(&key, &[("tags", Value::Table(empty()?))])?;

    let candidates = lua.create_table()?;
    for (i, c) in case.candidates.iter().enumerate() {
        let t = table(lua, c)?;
        let id: String = t.raw_get("id")?;
        let (provider, model) = id.split_once('/').unwrap_or((&id, &id));
        tables::default_fields(
            &t,
            &[
                ("provider", Value::String(lua.create_string(provider)?)),
                ("kind", Value::String(lua.create_string("openai")?)),
                ("model", Value::String(lua.create_string(model)?)),
                ("price_in", Value::Number(0.0)),
                ("price_out", Value::Number(0.0)),
                ("quality", Value::Integer(1)),
                ("tags", Value::Table(empty()?)),
                ("weight", Value::Number(1.0)),
                ("position", Value::Integer(i as i64 + 1)),
                ("stats", Value::Table(empty()?)),
            ],
        )?;
        let stats: Table = t.raw_get("stats")?;
        tables::default_fields(
            &stats,
            &[
                ("ewma_ms", Value::Number(0.0)),
                ("p95_ms", Value::Number(0.0)),
                ("ttft_ms", Value::Number(0.0)),
                ("error_rate", Value::Number(0.0)),
                ("samples", Value::Integer(0)),
                ("circuit", Value::String(lua.create_string("closed")?)),
            ],
        )?;
        candidates.raw_push(t)?;
    }
    Ok((request, candidates))
}

fn table(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Table> {
    match tables::json_value(lua, v)? {
        Value::Table(t) => Ok(t),
        _ => Err(mlua::Error::runtime("expected a JSON object")),
    }
}
