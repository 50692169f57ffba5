//! The Lua sandbox a policy runs in: only `table`, `string` and `math` and a trimmed base
//! library; an instruction budget per call and a memory ceiling per VM.
//!
//! Removed from the base library: `load`, `loadstring`, `dofile`, `loadfile`, `require`,
//! `collectgarbage`, `print`; from `string`: `dump` (no bytecode in or out: scripts are
//! loaded in text mode). Pattern functions refuse subjects over 16 KiB, because Lua's
//! matcher runs in C where the instruction budget cannot reach it.

use std::{cell::Cell, rc::Rc};

use mlua::chunk::ChunkMode;

use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, VmState};

/// How much one VM and one call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Lua VM instructions one call may run.
    pub instructions: u32,
    /// Bytes the VM may hold, on top of what it holds once set up.
    pub memory: usize,
}

/// The hook fires every this many instructions; the budget is counted in these steps.
const HOOK_EVERY: u32 = 1_000;

const PRELUDE: &str = r#"
local find, match, gmatch, gsub = string.find, string.match, string.gmatch, string.gsub
local MAX = 16384
local function subject(s)
  if type(s) == "string" and #s > MAX then
    error("string too long for pattern matching in a policy (max 16384 bytes)", 3)
  end
end
string.find = function(s, ...) subject(s) return find(s, ...) end
string.match = function(s, ...) subject(s) return match(s, ...) end
string.gmatch = function(s, ...) subject(s) return gmatch(s, ...) end
string.gsub = function(s, ...) subject(s) return gsub(s, ...) end
string.dump = nil
"#;

/// The one function Rust calls per decision. It refreshes the per-call request fields,
/// fills `out` with the surviving candidates (bit `i-1` of `mask` set: `all[i]` survives),
/// calls the policy, and reads its answer into a byte string of positions in `all` (plus
/// the timeouts and ignored ids, when there are any). One crossing from Rust into Lua per
/// decision, instead of one per field and element. Loaded before any script, so it holds
/// the library functions as they were.
const INVOKE: &str = r#"
local type, error, char, unpack, concat, move =
  type, error, string.char, table.unpack, table.concat, table.move
local buf = {}
return function(route, request, all, index, out, mask, tokens, max_tokens, stream, tier, key)
  if tokens ~= nil then
    request.input_tokens = tokens
    request.max_tokens = max_tokens
    request.stream = stream
    request.tier = tier
    request.key = key
    request.headers["x-security-level"] = tier
  end
  local total, n = #all, 0
  if mask == (1 << total) - 1 then
    move(all, 1, total, 1, out) -- nothing filtered out: one C call
    n = total
  else
    for i = 1, total do
      if mask & (1 << (i - 1)) ~= 0 then n = n + 1; out[n] = all[i] end
    end
  end
  for i = #out, n + 1, -1 do out[i] = nil end
  local answer = route(request, out)
  if type(answer) ~= "table" then
    error("route returned a " .. type(answer) .. ", not a list of candidate ids", 0)
  end
  local count, seen, timeouts, ignored = 0, 0, nil, nil
  local k, item = 1, answer[1]
  while item ~= nil do
    local id, timeout = item, nil
    local at = index[item] -- the common case: a candidate's id
    if at == nil then
      if type(item) == "table" then
        id, timeout = item.id, item.timeout_ms
        if type(id) ~= "string" then error("an entry of route's answer has no string `id`", 0) end
        if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 1)) then
          error("`timeout_ms` must be a positive number", 0)
        end
        at = index[id]
      elseif type(item) ~= "string" then
        error("route's answer holds a " .. type(item) .. ", not a candidate id", 0)
      end
    end
    if at and mask & (1 << (at - 1)) ~= 0 then
      local bit = 1 << (at - 1)
      if seen & bit == 0 then
        seen = seen | bit
        count = count + 1
        buf[count] = at
        if timeout then timeouts = timeouts or {}; timeouts[at] = timeout end
      end
    else
      ignored = ignored or {}
      ignored[#ignored + 1] = id
    end
    k = k + 1
    item = answer[k]
  end
  if count == 0 then
    if ignored then error("route returned only non-candidates: " .. concat(ignored, ", "), 0) end
    error("route returned no candidates", 0)
  end
  return char(unpack(buf, 1, count)), timeouts, ignored
end
"#;

/// Most candidates a Lua-routed model may have: survivors travel as bits of one integer.
pub const MAX_CANDIDATES: usize = 63;

/// Why a call did not return an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The instruction budget ran out.
    Budget,
    /// The VM hit its memory ceiling.
    Memory,
    /// The script raised an error (or returned something unusable).
    Runtime(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Budget => f.write_str("instruction budget exceeded"),
            CallError::Memory => f.write_str("memory limit exceeded"),
            CallError::Runtime(m) => f.write_str(m),
        }
    }
}

impl CallError {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            CallError::Budget => "instruction_budget",
            CallError::Memory => "memory_limit",
            CallError::Runtime(_) => "runtime_error",
        }
    }

    /// After a limit was hit the VM's state is suspect: rebuild it.
    pub fn poisons_vm(&self) -> bool {
        !matches!(self, CallError::Runtime(_))
    }
}

/// One sandboxed Lua state.
pub struct Vm {
    lua: Lua,
    /// [`INVOKE`].
    invoke: Function,
    /// Hook steps left in the current call.
    steps_left: Rc<Cell<u32>>,
    exhausted: Rc<Cell<bool>>,
    steps_per_call: u32,
}

impl Vm {
    /// A fresh sandbox. The memory ceiling is set by [`Vm::seal`], once resident tables
    /// are built.
    pub fn new(limits: Limits) -> mlua::Result<Vm> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::new(),
        )?;
        let globals = lua.globals();
        for name in [
            "load",
            "loadstring",
            "dofile",
            "loadfile",
            "require",
            "collectgarbage",
            "print",
        ] {
            globals.raw_set(name, mlua::Nil)?;
        }
        lua.load(PRELUDE)
            .set_name("=sandbox")
            .set_mode(ChunkMode::Text)
            .exec()?;
        let invoke: Function = lua
            .load(INVOKE)
            .set_name("=invoke")
            .set_mode(ChunkMode::Text)
            .eval()?;
        // Policies make short-lived tables: the generational collector sweeps them cheaply.
        lua.gc_set_mode(mlua::state::GcMode::Generational(
            mlua::state::GcGenParams::default(),
        ));
        let steps_left = Rc::new(Cell::new(0));
        let exhausted = Rc::new(Cell::new(false));
        let (left, flag) = (steps_left.clone(), exhausted.clone());
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_, _| match left.get() {
                0 => {
                    flag.set(true);
                    Err(mlua::Error::runtime("instruction budget exceeded"))
                }
                n => {
                    left.set(n - 1);
                    Ok(VmState::Continue)
                }
            },
        )?;
        Ok(Vm {
            lua,
            invoke,
            steps_left,
            exhausted,
            steps_per_call: limits.instructions.div_ceil(HOOK_EVERY).max(1),
        })
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Sets the memory ceiling to what the VM holds now plus `extra` bytes.
    pub fn seal(&self, extra: usize) -> mlua::Result<()> {
        self.lua.set_memory_limit(self.lua.used_memory() + extra)?;
        Ok(())
    }

    /// Runs a script's top level (text only) in its own environment, whose misses fall
    /// through to the sandbox globals, and returns that environment.
    pub fn load_script(&self, name: &str, source: &str) -> Result<Table, CallError> {
        let env = self.lua.create_table().map_err(classify_plain)?;
        let meta = self.lua.create_table().map_err(classify_plain)?;
        meta.raw_set("__index", self.lua.globals())
            .map_err(classify_plain)?;
        env.set_metatable(Some(meta)).map_err(classify_plain)?;
        let chunk = self
            .lua
            .load(source)
            .set_name(format!("={name}.lua"))
            .set_mode(ChunkMode::Text)
            .set_environment(env.clone());
        self.guarded(|| chunk.exec())?;
        Ok(env)
    }

    /// Calls [`INVOKE`] within the instruction budget.
    pub fn invoke<A: mlua::IntoLuaMulti>(
        &self,
        args: A,
    ) -> Result<(mlua::LuaString, Option<Table>, Option<Table>), CallError> {
        self.guarded(|| self.invoke.call(args))
    }

    /// Calls `f` (a function of a script this VM loaded) within the instruction budget.
    pub fn call<A: mlua::IntoLuaMulti, R: mlua::FromLuaMulti>(
        &self,
        f: &Function,
        args: A,
    ) -> Result<R, CallError> {
        self.guarded(|| f.call(args))
    }

    fn guarded<R>(&self, run: impl FnOnce() -> mlua::Result<R>) -> Result<R, CallError> {
        self.steps_left.set(self.steps_per_call);
        self.exhausted.set(false);
        run().map_err(|e| {
            if self.exhausted.get() {
                CallError::Budget
            } else {
                classify_plain(e)
            }
        })
    }
}

fn classify_plain(e: mlua::Error) -> CallError {
    match e {
        mlua::Error::MemoryError(_) => CallError::Memory,
        mlua::Error::CallbackError { cause, .. } => classify_plain((*cause).clone()),
        mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } => {
            CallError::Runtime(m)
        }
        other => CallError::Runtime(other.to_string()),
    }
}
