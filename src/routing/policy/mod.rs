//! Routing policies: Lua functions `route(request, candidates)` that order a model's
//! deployments, run in a sandbox ([`sandbox`]).
//!
//! # Design, from the numbers
//! Converting a candidate list into Lua tables per call costs more than the call itself
//! (measured in `benches/routing.rs`), and a VM shared between threads serialises
//! them. So every thread keeps its own VMs, one per catalog generation (a handful at
//! most), each holding every model's candidate tables resident. Per call only the request
//! table and the array of surviving candidates are built; the candidates' live stats are
//! rewritten in place at most every [`STATS_REFRESH`], and their prices when the live price
//! table's version moves (prices are not part of the catalog: a price refresh rebuilds
//! nothing). A reload makes a new generation, and each thread builds its new VM on its next
//! call (~0.1–0.5 ms, once).
//!
//! Scripts come from `routing.scripts_dir` or, failing that, the built-in copies of the
//! shipped `scripts/`. Each is loaded in a scratch sandbox and its `<name>.cases.json`
//! self-check run before a catalog using it is accepted.

mod cache;
pub mod sandbox;
mod selfcheck;
mod tables;

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use mlua::{Function, Table};
use tokio::time::Instant;

pub use sandbox::{CallError, Limits};
pub use selfcheck::run as self_check;

use super::Catalog;
use crate::{auth::Caller, config::Config, routing::Needs};

/// The policy name that runs no script: the configured order.
pub const STATIC: &str = "static";

/// How stale a VM's copy of the live stats may be.
pub const STATS_REFRESH: Duration = Duration::from_millis(100);

/// The shipped policies, built in: `(name, script, self-check cases)`.
const BUILT_IN: &[(&str, &str, &str)] = &[
    (
        "failover",
        include_str!("../../../scripts/failover.lua"),
        include_str!("../../../scripts/failover.cases.json"),
    ),
    (
        "cost",
        include_str!("../../../scripts/cost.lua"),
        include_str!("../../../scripts/cost.cases.json"),
    ),
    (
        "latency",
        include_str!("../../../scripts/latency.lua"),
        include_str!("../../../scripts/latency.cases.json"),
    ),
    (
        "security",
        include_str!("../../../scripts/security.lua"),
        include_str!("../../../scripts/security.cases.json"),
    ),
    (
        "weighted",
        include_str!("../../../scripts/weighted.lua"),
        include_str!("../../../scripts/weighted.cases.json"),
    ),
];

/// A loaded, self-checked policy script.
#[derive(Debug)]
pub struct Script {
    pub name: Arc<str>,
    pub source: Arc<str>,
    /// `built-in` or the file it was read from.
    pub origin: String,
    /// Self-check cases that passed at load.
    pub cases: usize,
    /// Set once this script's first failure has been logged (later ones are only counted).
    logged: AtomicBool,
}

/// Why a policy could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy `{policy}` ({origin}): {reason}")]
pub struct PolicyError {
    pub policy: String,
    pub origin: String,
    pub reason: String,
}

/// Loads and self-checks every policy `config` uses (`static` needs none).
pub fn load_scripts(config: &Config) -> Result<HashMap<String, Arc<Script>>, PolicyError> {
    let limits = Limits {
        instructions: config.routing.instruction_budget,
        memory: config.routing.memory_limit,
    };
    let dir = config.scripts_dir();
    let mut scripts = HashMap::new();
    let wanted = config
        .models
        .iter()
        .map(|m| config.policy_of(m))
        .chain([config.routing.default_policy.as_str()]);
    for name in wanted {
        if name == STATIC || scripts.contains_key(name) {
            continue;
        }
        let script = read_script(name, dir.as_deref(), limits)?;
        scripts.insert(name.to_owned(), Arc::new(script));
    }
    Ok(scripts)
}

/// Whether policy `name` can serve under `config`: it is `static`, or its script (from
/// `routing.scripts_dir` or built in) loads and passes its self-check.
pub fn check(config: &Config, name: &str) -> Result<(), PolicyError> {
    if name == STATIC {
        return Ok(());
    }
    let limits = Limits {
        instructions: config.routing.instruction_budget,
        memory: config.routing.memory_limit,
    };
    read_script(name, config.scripts_dir().as_deref(), limits).map(drop)
}

/// `dir/<name>.lua` (with `dir/<name>.cases.json` when present), else the built-in one.
fn read_script(
    name: &str,
    dir: Option<&std::path::Path>,
    limits: Limits,
) -> Result<Script, PolicyError> {
    let err = |origin: &str, reason: String| PolicyError {
        policy: name.to_owned(),
        origin: origin.to_owned(),
        reason,
    };
    let from_dir = dir
        .map(|d| d.join(format!("{name}.lua")))
        .filter(|p| p.exists());
    let (source, cases, origin) = match from_dir {
        Some(path) => {
            let origin = path.display().to_string();
            let source = std::fs::read_to_string(&path).map_err(|e| err(&origin, e.to_string()))?;
            let cases_path = path.with_extension("cases.json");
            let cases = match std::fs::read_to_string(&cases_path) {
                Ok(text) => Some(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(err(&origin, format!("{}: {e}", cases_path.display()))),
            };
            (source, cases, origin)
        }
        None => {
            let (_, source, cases) =
                BUILT_IN
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .ok_or_else(|| {
                        let looked = dir.map_or_else(
                            || "no routing.scripts_dir is set".to_owned(),
                            |d| format!("no {}", d.join(format!("{name}.lua")).display()),
                        );
                        err(
                            "not found",
                            format!(
                                "{looked}, and it is not a built-in policy ({}, or `{STATIC}`)",
                                BUILT_IN
                                    .iter()
                                    .map(|(n, _, _)| *n)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?;
            (
                source.to_string(),
                Some(cases.to_string()),
                "built-in".to_owned(),
            )
        }
    };
    let cases = self_check(name, &source, cases.as_deref(), limits).map_err(|r| err(&origin, r))?;
    Ok(Script {
        name: Arc::from(name),
        source: Arc::from(source),
        origin,
        cases,
        logged: AtomicBool::new(false),
    })
}

/// A fresh catalog generation number.
pub fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What the policy is told about the request besides the model's own data.
pub struct Facts<'a> {
    pub input_tokens: u32,
    pub max_tokens: Option<u32>,
    pub stream: bool,
    pub needs: &'a Needs,
    pub caller: &'a Caller,
}

/// A policy's answer: indices into the model's deployments with optional attempt
/// timeouts, or the configured order and the reason it was used.
#[derive(Debug, Default)]
pub struct Decision {
    pub order: tables::Order,
    pub fallback: Option<String>,
    pub ignored: Vec<String>,
    pub took: Duration,
}

/// Orders `survivors` (indices into model `index`'s deployments, in configured order)
/// with the model's policy. Never fails: a failing policy yields the configured order.
pub fn order(catalog: &Catalog, index: usize, survivors: &[usize], facts: &Facts) -> Decision {
    let model = &catalog.models[index];
    let static_order = || survivors.iter().map(|&i| (i, None)).collect();
    let Some(script) = &model.script else {
        return Decision {
            order: static_order(),
            ..Decision::default()
        };
    };
    let started = Instant::now();
    let result = with_vm(catalog, |local| {
        local.route(catalog, index, survivors, facts)
    });
    let took = started.elapsed();
    match result {
        Ok((order, ignored)) => Decision {
            order,
            fallback: None,
            ignored,
            took,
        },
        Err(error) => {
            metrics::counter!(
                "switchyard_policy_failures_total",
                "policy" => script.name.to_string(),
                "reason" => error.label()
            )
            .increment(1);
            if !script.logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    policy = %script.name,
                    model = %model.name,
                    %error,
                    "routing policy failed; using the configured order (logged once per load)"
                );
            }
            Decision {
                order: static_order(),
                fallback: Some(error.to_string()),
                ignored: Vec::new(),
                took,
            }
        }
    }
}

/// Generations a thread keeps VMs for: the live one and a few older snapshots still
/// finishing, without rebuilding on every alternation.
const VMS_PER_THREAD: usize = 3;

thread_local! {
    static VMS: RefCell<Vec<LocalVm>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's VM for `catalog`'s generation, building it if needed. A VM
/// that hit a limit is dropped afterwards, so the next call starts clean.
fn with_vm<R>(
    catalog: &Catalog,
    f: impl FnOnce(&mut LocalVm) -> Result<R, CallError>,
) -> Result<R, CallError> {
    VMS.with_borrow_mut(|vms| {
        let at = match vms.iter().position(|v| v.generation == catalog.generation) {
            Some(at) => at,
            None => {
                let vm = LocalVm::build(catalog)?;
                if vms.len() >= VMS_PER_THREAD {
                    vms.remove(0);
                }
                vms.push(vm);
                vms.len() - 1
            }
        };
        let result = f(&mut vms[at]);
        if let Err(e) = &result
            && e.poisons_vm()
        {
            vms.remove(at);
        }
        result
    })
}

/// One thread's VM for one catalog generation.
struct LocalVm {
    generation: u64,
    vm: sandbox::Vm,
    /// Per model (catalog index); `None` for `static` models.
    models: Vec<Option<LocalModel>>,
    /// Each API key's `request.key` table, built on first use.
    keys: HashMap<String, Table>,
}

/// A model's resident tables in one VM.
struct LocalModel {
    route: Function,
    /// The script declared `deterministic = true`: the same facts, stats and prices give
    /// the same answer, so answers are reused until the next stats refresh or price swap.
    deterministic: bool,
    cache: cache::DecisionCache,
    /// Each deployment's candidate table and its `stats` sub-table, in configured order.
    candidates: Vec<Table>,
    stats: Vec<Table>,
    args: tables::Args,
    refreshed: Option<Instant>,
    /// The price-table version the candidates' prices were written from.
    priced: Option<u64>,
}

impl LocalVm {
    fn build(catalog: &Catalog) -> Result<LocalVm, CallError> {
        let vm = sandbox::Vm::new(catalog.limits).map_err(|e| CallError::Runtime(e.to_string()))?;
        let mut envs: HashMap<&str, (Function, bool)> = HashMap::new();
        let mut models = Vec::with_capacity(catalog.models.len());
        for model in &catalog.models {
            let Some(script) = &model.script else {
                models.push(None);
                continue;
            };
            let (route, deterministic) = match envs.get(&*script.name) {
                Some(f) => f.clone(),
                None => {
                    let env = vm.load_script(&script.name, &script.source)?;
                    let f: Function = env.raw_get("route").map_err(|_| {
                        CallError::Runtime(format!("`{}` defines no route function", script.name))
                    })?;
                    let deterministic = env
                        .raw_get::<Option<bool>>("deterministic")
                        .ok()
                        .flatten()
                        .unwrap_or(false);
                    envs.insert(&script.name, (f.clone(), deterministic));
                    (f, deterministic)
                }
            };
            let lua = vm.lua();
            let (candidates, stats): (Vec<Table>, Vec<Table>) = model
                .deployments
                .iter()
                .map(|d| tables::candidate(lua, d))
                .collect::<mlua::Result<Vec<_>>>()
                .map_err(plain)?
                .into_iter()
                .unzip();
            // Written before the VM is sealed, so the keys are in place; rewritten on a swap.
            let priced = catalog.pricing.version();
            for (d, candidate) in model.deployments.iter().zip(&candidates) {
                tables::write_prices(candidate, &d.price()).map_err(plain)?;
            }
            let args = tables::Args::new(
                lua,
                &model.name,
                &tables::toml_table(lua, &model.params).map_err(plain)?,
                &candidates,
            )
            .map_err(plain)?;
            models.push(Some(LocalModel {
                route,
                deterministic,
                cache: cache::DecisionCache::default(),
                candidates,
                stats,
                args,
                refreshed: None,
                priced: Some(priced),
            }));
        }
        vm.seal(catalog.limits.memory).map_err(plain)?;
        Ok(LocalVm {
            generation: catalog.generation,
            vm,
            models,
            keys: HashMap::new(),
        })
    }

    fn route(
        &mut self,
        catalog: &Catalog,
        index: usize,
        survivors: &[usize],
        facts: &Facts,
    ) -> Result<(tables::Order, Vec<String>), CallError> {
        let deployments = &catalog.models[index].deployments;
        let local = self.models[index]
            .as_mut()
            .ok_or_else(|| CallError::Runtime("model has no script".to_owned()))?;
        // Prices are read from the live table, not the catalog: a price swap rewrites the
        // candidates' prices here, one atomic load per decision when nothing changed.
        let prices = catalog.pricing.version();
        if local.priced != Some(prices) {
            for (d, candidate) in deployments.iter().zip(&local.candidates) {
                tables::write_prices(candidate, &d.price()).map_err(plain)?;
            }
            local.priced = Some(prices);
            local.cache.clear();
        }
        let now = Instant::now();
        if local.refreshed.is_none_or(|at| now - at >= STATS_REFRESH) {
            for (d, stats) in deployments.iter().zip(&local.stats) {
                tables::write_stats(stats, &d.health.snapshot(now)).map_err(plain)?;
            }
            local.refreshed = Some(now);
            local.cache.clear();
        }
        if !local.deterministic {
            return local
                .args
                .call(&self.vm, &local.route, facts, survivors, &mut self.keys);
        }
        let slot = cache::slot(facts, survivors);
        if let Some(answer) = local.cache.get(slot, facts, survivors) {
            return Ok(answer.clone());
        }
        let answer = local
            .args
            .call(&self.vm, &local.route, facts, survivors, &mut self.keys)?;
        local.cache.insert(slot, facts, survivors, answer.clone());
        Ok(answer)
    }
}

fn plain(e: mlua::Error) -> CallError {
    match e {
        mlua::Error::MemoryError(_) => CallError::Memory,
        other => CallError::Runtime(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
