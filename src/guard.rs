//! The Lua guardrail hook: `[[models]] guard = "name"` runs `scripts/name.lua`'s
//! `guard(request)` before the request goes anywhere, in the routing sandbox (only
//! `table`, `string` and `math`, the routing instruction budget per call and its memory
//! ceiling per VM), for rules config cannot say.
//!
//! The script answers `true` (or nothing) to allow, or `false, "reason"` to deny: the
//! caller gets 403 `guardrail_denied` with the reason. A guard that fails (a runtime
//! error, the budget or memory exceeded, an answer of another type) denies: a safety check
//! that cannot decide does not let the request through. Scripts load and are checked (the
//! chunk runs and defines `guard`) with every snapshot, so editing one hot-reloads it
//! like a policy, and a broken edit is rejected while the old one keeps serving.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use mlua::{Function, Lua, Table, Value};

use crate::{
    auth::Caller,
    chat::{ChatRequest, Content},
    config::Config,
    error::Error,
    routing::policy::{self, sandbox::Vm},
};

/// The longest reason passed on to the caller, in characters.
const MAX_REASON: usize = 200;

/// A loaded guard script.
#[derive(Debug)]
pub struct GuardScript {
    pub name: Arc<str>,
    source: Arc<str>,
    /// Unique per load: a thread's VM is rebuilt when it changes.
    generation: u64,
    limits: policy::Limits,
}

/// The guards of one snapshot: model name to its script.
#[derive(Debug, Default)]
pub struct Guards {
    by_model: HashMap<String, Arc<GuardScript>>,
}

/// What a guard said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(String),
}

impl Guards {
    /// Loads every guard `config` names from `routing.scripts_dir`, each checked in a
    /// scratch sandbox.
    pub fn load(config: &Config) -> Result<Guards, Error> {
        let limits = policy::Limits {
            instructions: config.routing.instruction_budget,
            memory: config.routing.memory_limit,
        };
        let dir = config.scripts_dir();
        let mut scripts: BTreeMap<&str, Arc<GuardScript>> = BTreeMap::new();
        let mut by_model = HashMap::new();
        for (model, name) in &config.data.guards {
            let script = match scripts.get(name.as_str()) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(read(name, dir.as_deref(), limits)?);
                    scripts.insert(name, s.clone());
                    s
                }
            };
            by_model.insert(model.clone(), script);
        }
        Ok(Guards { by_model })
    }

    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty()
    }

    /// The guard of `model`, if it has one.
    pub fn of(&self, model: &str) -> Option<&Arc<GuardScript>> {
        self.by_model.get(model)
    }
}

fn read(
    name: &str,
    dir: Option<&std::path::Path>,
    limits: policy::Limits,
) -> Result<GuardScript, Error> {
    let err = |reason: String| Error::Internal {
        detail: format!("guard `{name}`: {reason}"),
    };
    let dir = dir.ok_or_else(|| err("routing.scripts_dir is not set".to_owned()))?;
    let path = dir.join(format!("{name}.lua"));
    let source =
        std::fs::read_to_string(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let script = GuardScript {
        name: Arc::from(name),
        source: Arc::from(source),
        generation: policy::next_generation(),
        limits,
    };
    Loaded::new(&script).map_err(|e| err(format!("{}: {e}", path.display())))?;
    Ok(script)
}

/// A guard loaded in one thread's VM.
struct Loaded {
    generation: u64,
    vm: Vm,
    guard: Function,
}

impl Loaded {
    fn new(script: &GuardScript) -> Result<Loaded, String> {
        let vm = Vm::new(script.limits).map_err(|e| e.to_string())?;
        let env = vm
            .load_script(&script.name, &script.source)
            .map_err(|e| e.to_string())?;
        let guard: Function = match env.get::<Value>("guard") {
            Ok(Value::Function(f)) => f,
            _ => return Err("the script defines no function `guard(request)`".to_owned()),
        };
        vm.seal(script.limits.memory).map_err(|e| e.to_string())?;
        Ok(Loaded {
            generation: script.generation,
            vm,
            guard,
        })
    }
}

thread_local! {
    /// Each thread's loaded guards, by name.
    static LOADED: RefCell<HashMap<Arc<str>, Loaded>> = RefCell::new(HashMap::new());
}

impl GuardScript {
    /// Runs the guard on `request` from `caller`.
    pub fn decide(&self, request: &ChatRequest, caller: &Caller) -> Verdict {
        LOADED.with(|cell| {
            let mut loaded = cell.borrow_mut();
            let stale = loaded
                .get(&self.name)
                .is_none_or(|l| l.generation != self.generation);
            if stale {
                match Loaded::new(self) {
                    Ok(l) => {
                        loaded.insert(self.name.clone(), l);
                    }
                    Err(e) => return self.failed(&e),
                }
            }
            let Some(l) = loaded.get(&self.name) else {
                return self.failed("not loaded");
            };
            let table = match request_table(l.vm.lua(), request, caller) {
                Ok(t) => t,
                Err(e) => return self.failed(&e.to_string()),
            };
            let answer: Result<(Value, Value), _> = l.vm.call(&l.guard, table);
            match answer {
                Ok((Value::Nil | Value::Boolean(true), _)) => Verdict::Allow,
                Ok((Value::Boolean(false), reason)) => {
                    let reason = match reason {
                        Value::String(s) => s.to_string_lossy(),
                        _ => String::new(),
                    };
                    let reason: String = reason.chars().take(MAX_REASON).collect();
                    Verdict::Deny(if reason.trim().is_empty() {
                        format!("denied by guard `{}`", self.name)
                    } else {
                        reason
                    })
                }
                Ok((other, _)) => self.failed(&format!(
                    "guard returned a {} (expected true, or false and a reason)",
                    other.type_name()
                )),
                Err(e) => {
                    if e.poisons_vm() {
                        loaded.remove(&self.name);
                    }
                    self.failed(&e.to_string())
                }
            }
        })
    }

    fn failed(&self, why: &str) -> Verdict {
        tracing::warn!(guard = %self.name, error = %why, "guard failed; the request is denied");
        metrics::counter!("switchyard_guard_errors_total", "guard" => self.name.to_string())
            .increment(1);
        Verdict::Deny(format!("guard `{}` could not decide", self.name))
    }
}

/// `request` for the guard: `model`, `key` (the caller key's name), `level`, `stream`,
/// `max_tokens`, `messages` (`role`, `content` as text, `tool_calls` as `{name,
/// arguments}`), `tools` (function names).
fn request_table(lua: &Lua, request: &ChatRequest, caller: &Caller) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("model", request.model.as_str())?;
    if let Some(k) = &caller.key {
        t.raw_set("key", k.name.as_str())?;
    }
    t.raw_set("level", caller.level.as_str())?;
    t.raw_set("stream", request.is_stream())?;
    if let Some(m) = request.max_completion_tokens.or(request.max_tokens) {
        t.raw_set("max_tokens", m)?;
    }
    let messages = lua.create_table_with_capacity(request.messages.len(), 0)?;
    for m in &request.messages {
        let mt = lua.create_table()?;
        mt.raw_set("role", m.role.as_str())?;
        let text = match &m.content {
            Some(Content::Text(t)) => t.clone(),
            Some(c @ Content::Parts(_)) => c.joined_text(),
            None => String::new(),
        };
        mt.raw_set("content", text)?;
        if let Some(calls) = &m.tool_calls {
            let ct = lua.create_table()?;
            for c in calls {
                let one = lua.create_table()?;
                one.raw_set("name", c.function.name.as_str())?;
                one.raw_set("arguments", c.function.arguments.as_str())?;
                ct.raw_push(one)?;
            }
            mt.raw_set("tool_calls", ct)?;
        }
        messages.raw_push(mt)?;
    }
    t.raw_set("messages", messages)?;
    let tools = lua.create_table()?;
    for tool in request.tools.iter().flatten() {
        tools.raw_push(tool.function.name.as_str())?;
    }
    t.raw_set("tools", tools)?;
    Ok(t)
}
