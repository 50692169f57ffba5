//! The engine: built-in policies pass their cases, the sandbox refuses escapes, failures
//! fall back to the configured order, and hard filters hold whatever a script returns.

use std::path::PathBuf;

use super::{sandbox::Vm, *};
use crate::{
    auth::Caller,
    chat::ChatRequest,
    config::{Config, SecurityLevel},
    health,
    routing::Catalog,
    usage::pricing::{PriceTable, Pricing},
};

const LIMITS: Limits = Limits {
    instructions: 200_000,
    memory: 4 * 1024 * 1024,
};

/// Runs `body` (a `route` function's body) once on two candidates.
fn call(body: &str) -> Result<usize, String> {
    let source = format!("function route(request, candidates)\n{body}\nend");
    self_check("t", &source, None, LIMITS)
}

#[test]
fn every_built_in_policy_passes_its_cases() {
    for (name, source, cases) in BUILT_IN {
        let n =
            self_check(name, source, Some(cases), LIMITS).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(n >= 4, "{name} has only {n} cases");
    }
}

#[test]
fn a_failing_case_rejects_the_script() {
    let cases = r#"[{ "name": "wants b first", "candidates": [{"id": "a/m"}, {"id": "b/m"}],
                      "expect": ["b/m", "a/m"] }]"#;
    let err = self_check(
        "t",
        "function route(r, c) return { c[1].id, c[2].id } end",
        Some(cases),
        LIMITS,
    )
    .unwrap_err();
    assert!(
        err.contains("wants b first") && err.contains("expected"),
        "{err}"
    );
}

#[test]
fn sandbox_escapes_are_refused() {
    let attempts = [
        (
            "os.execute",
            "os.execute('touch /tmp/pwned') return {'a/m1'}",
        ),
        ("io.open", "io.open('/etc/passwd') return {'a/m1'}"),
        ("require", "require('os') return {'a/m1'}"),
        ("load", "load('return 1')() return {'a/m1'}"),
        ("dofile", "dofile('/etc/passwd') return {'a/m1'}"),
        (
            "string.dump",
            "local f = string.dump(route) return {'a/m1'}",
        ),
        ("collectgarbage", "collectgarbage('stop') return {'a/m1'}"),
        ("debug", "debug.sethook() return {'a/m1'}"),
        ("package", "package.loadlib('x', 'y') return {'a/m1'}"),
    ];
    for (what, body) in attempts {
        let err = call(body).unwrap_err();
        assert!(err.contains("nil"), "{what}: {err}");
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());
}

#[test]
fn bytecode_is_refused_at_load() {
    // "\x1bLua" is the bytecode signature; text mode refuses it.
    let err = self_check("t", "\x1bLuaT\x00", None, LIMITS).unwrap_err();
    assert!(err.contains("load"), "{err}");
}

#[test]
fn memory_bombs_and_endless_loops_are_stopped() {
    let err = call("local s = string.rep('x', 1 << 30) return {'a/m1'}").unwrap_err();
    assert!(err.contains("memory"), "{err}");
    let err = call("local t = {} for i = 1, 1e9 do t[i] = i end return {'a/m1'}").unwrap_err();
    assert!(err.contains("memory") || err.contains("budget"), "{err}");
    let err = call("while true do end").unwrap_err();
    assert!(err.contains("instruction budget"), "{err}");
    let err =
        call("local s = string.rep('a', 20000) s:find('.-.-.-b') return {'a/m1'}").unwrap_err();
    assert!(err.contains("too long for pattern matching"), "{err}");
}

#[test]
fn the_instruction_budget_is_per_call() {
    let vm = Vm::new(LIMITS).unwrap();
    let env = vm
        .load_script(
            "t",
            "function route(r, c) if r.spin then while true do end end return {'a/m1'} end",
        )
        .unwrap();
    let f: mlua::Function = env.raw_get("route").unwrap();
    vm.seal(LIMITS.memory).unwrap();
    let lua = vm.lua();
    // One candidate, `a/m1`, through the invoke wrapper live decisions use.
    let candidate = lua.create_table().unwrap();
    candidate.raw_set("id", "a/m1").unwrap();
    let all = lua.create_sequence_from([candidate]).unwrap();
    let index = lua.create_table().unwrap();
    index.raw_set("a/m1", 1).unwrap();
    let decide = |request: mlua::Table| {
        let out = lua.create_table().unwrap();
        vm.invoke((&f, request, &all, &index, out, 1i64, mlua::Nil))
            .map(|_| ())
    };
    let spin = lua.create_table().unwrap();
    spin.raw_set("spin", true).unwrap();
    let calm = lua.create_table().unwrap();
    assert_eq!(decide(spin).unwrap_err(), CallError::Budget);
    // The budget is per call: the next call runs in full.
    assert!(decide(calm).is_ok());
}

/// A scripts folder of its own for one test.
fn scripts_dir(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-policy-{}-{}",
        std::process::id(),
        next_generation()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn catalog(policy: &str, dir: &std::path::Path) -> Result<Catalog, crate::error::Error> {
    let deployments = r#"
  { provider = "a", model = "m1", tags = ["soc2"], price_in = 5.0, price_out = 20.0 },
  { provider = "b", model = "m2", price_in = 0.1, price_out = 0.4 },"#;
    let pricing = Arc::new(Pricing::new(PriceTable::builtin()));
    catalog_of(policy, dir, deployments, &pricing)
}

/// Model `chat` on providers `a` and `b` with `deployments`, routed by `policy`.
fn catalog_of(
    policy: &str,
    dir: &std::path::Path,
    deployments: &str,
    pricing: &Arc<Pricing>,
) -> Result<Catalog, crate::error::Error> {
    let text = format!(
        r#"
[routing]
scripts_dir = "{}"
[security_tiers]
high = {{ require_tags = ["soc2"] }}
[[providers]]
name = "a"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "k"
[[providers]]
name = "b"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "k"
[[models]]
name = "chat"
policy = "{policy}"
deployments = [{deployments}
]
"#,
        dir.display()
    );
    let config = Config::parse(&text).unwrap();
    let client = crate::providers::Clients::new(std::time::Duration::from_secs(1)).unwrap();
    let health = health::Registry::new(config.breaker);
    Catalog::build(&config, &client, &health, pricing)
}

fn request(extra: serde_json::Value) -> ChatRequest {
    let mut v =
        serde_json::json!({ "model": "chat", "messages": [{"role": "user", "content": "hi"}] });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).unwrap()
}

fn ids(route: &crate::routing::Route) -> Vec<String> {
    route
        .plan
        .iter()
        .map(|p| p.deployment.id.to_string())
        .collect()
}

#[test]
fn the_cost_policy_orders_cheapest_first_on_a_live_catalog() {
    let dir = scripts_dir(&[]);
    let catalog = catalog("cost", &dir).unwrap();
    let req = request(serde_json::json!({}));
    let route = catalog
        .route(&req, &crate::routing::Needs::of(&req), &Caller::anonymous())
        .unwrap();
    assert_eq!(ids(&route), ["b/m2", "a/m1"]);
    assert!(route.explain.fallback.is_none());
    assert_eq!(&*route.explain.policy, "cost");
}

#[test]
fn a_runtime_error_falls_back_to_the_configured_order() {
    let dir = scripts_dir(&[(
        "flaky.lua",
        "function route(r, c)\n if r.headers['x-route-boom'] then error('boom') end\n \
         return { c[#c].id }\nend",
    )]);
    let catalog = catalog("flaky", &dir).unwrap();
    let req = request(serde_json::json!({}));
    let needs = crate::routing::Needs::of(&req);
    let calm = catalog.route(&req, &needs, &Caller::anonymous()).unwrap();
    assert_eq!(ids(&calm), ["b/m2"]);
    let mut caller = Caller::anonymous();
    caller
        .route_headers
        .push(("x-route-boom".into(), "1".into()));
    let boom = catalog.route(&req, &needs, &caller).unwrap();
    assert_eq!(ids(&boom), ["a/m1", "b/m2"]);
    assert!(boom.explain.fallback.as_deref().unwrap().contains("boom"));
}

#[test]
fn a_script_cannot_bring_back_what_the_security_tier_removed() {
    let dir = scripts_dir(&[(
        "sneaky.lua",
        "function route(r, c) return {'b/m2', 'a/m1'} end",
    )]);
    let catalog = catalog("sneaky", &dir).unwrap();
    let req = request(serde_json::json!({}));
    let mut caller = Caller::anonymous();
    caller.level = SecurityLevel::High;
    let route = catalog
        .route(&req, &crate::routing::Needs::of(&req), &caller)
        .unwrap();
    assert_eq!(ids(&route), ["a/m1"]);
    assert_eq!(route.explain.ignored, ["b/m2"]);
    assert_eq!(&*route.explain.removed[0].id, "b/m2");
    assert!(route.explain.removed[0].reason.contains("soc2"));
}

#[test]
fn a_broken_script_fails_the_build() {
    let dir = scripts_dir(&[("broken.lua", "function route(r, c) return {")]);
    let err = catalog("broken", &dir).err().unwrap();
    assert!(format!("{err:?}").contains("broken"), "{err:?}");
    let err = catalog("missing", &dir).err().unwrap();
    assert!(
        format!("{err:?}").contains("not a built-in policy"),
        "{err:?}"
    );
}

#[test]
fn scripts_in_the_folder_override_the_built_in_ones() {
    let dir = scripts_dir(&[("cost.lua", "function route(r, c) return { c[1].id } end")]);
    let catalog = catalog("cost", &dir).unwrap();
    let req = request(serde_json::json!({}));
    let route = catalog
        .route(&req, &crate::routing::Needs::of(&req), &Caller::anonymous())
        .unwrap();
    assert_eq!(ids(&route), ["a/m1"]);
}

#[test]
fn the_readme_example_policy_loads_and_answers() {
    let readme = include_str!("../../../README.md");
    let start = readme.find("```lua\n").unwrap() + "```lua\n".len();
    let source = &readme[start..start + readme[start..].find("```").unwrap()];
    let cases = r#"[{ "name": "home region first",
        "request": { "input_tokens": 100, "headers": { "x-route-region": "eu" } },
        "candidates": [
          { "id": "us/m", "price_in": 0.1, "price_out": 0.1, "region": "us-east-1" },
          { "id": "eu/m", "price_in": 5.0, "price_out": 5.0, "region": "eu-west-1" } ],
        "expect": ["eu/m", "us/m"] }]"#;
    assert_eq!(self_check("readme", source, Some(cases), LIMITS), Ok(1));
}

/// A script that alternates its answer on every call, claiming (or not) to be deterministic.
const FLIP: &str = "calls = 0\nfunction route(r, c)\n  calls = calls + 1\n  \
                    if calls % 2 == 0 then return { c[2].id, c[1].id } end\n  \
                    return { c[1].id, c[2].id }\nend\n";

#[test]
fn deterministic_policies_reuse_answers_until_the_stats_refresh_and_others_never() {
    let dir = scripts_dir(&[
        ("flip.lua", FLIP),
        ("steady.lua", &format!("deterministic = true\n{FLIP}")),
    ]);
    let req = request(serde_json::json!({}));
    let needs = crate::routing::Needs::of(&req);
    let orders = |policy: &str| {
        let catalog = catalog(policy, &dir).unwrap();
        (0..4)
            .map(|_| ids(&catalog.route(&req, &needs, &Caller::anonymous()).unwrap()))
            .collect::<Vec<_>>()
    };
    let flip = orders("flip");
    assert_ne!(
        flip[0], flip[1],
        "a non-deterministic policy runs every time"
    );
    let steady = orders("steady");
    assert!(steady.iter().all(|o| *o == steady[0]), "{steady:?}");
    // Other request facts are another decision.
    let catalog = catalog("steady", &dir).unwrap();
    let first = catalog.route(&req, &needs, &Caller::anonymous()).unwrap();
    let mut caller = Caller::anonymous();
    caller
        .route_headers
        .push(("x-route-tenant".into(), "t1".into()));
    let other = catalog.route(&req, &needs, &caller).unwrap();
    assert_ne!(ids(&first), ids(&other));
}

#[test]
fn a_live_call_over_its_limits_falls_back_and_the_next_call_runs_clean() {
    let dir = scripts_dir(&[(
        "greedy.lua",
        "function route(r, c)\n  local h = r.headers\n  \
         if h['x-route-spin'] then while true do end end\n  \
         if h['x-route-hog'] then local s = string.rep('x', 1 << 26) end\n  \
         return { c[2].id, c[1].id }\nend\n",
    )]);
    let catalog = catalog("greedy", &dir).unwrap();
    let req = request(serde_json::json!({}));
    let needs = crate::routing::Needs::of(&req);
    for (header, reason) in [
        ("x-route-spin", "instruction budget"),
        ("x-route-hog", "memory"),
    ] {
        let mut caller = Caller::anonymous();
        caller.route_headers.push((header.into(), "1".into()));
        let route = catalog.route(&req, &needs, &caller).unwrap();
        assert_eq!(ids(&route), ["a/m1", "b/m2"], "{header}: configured order");
        let fallback = route.explain.fallback.unwrap();
        assert!(fallback.contains(reason), "{header}: {fallback}");
        // The VM that hit the limit was dropped; the next decision is the policy's again.
        let calm = catalog.route(&req, &needs, &Caller::anonymous()).unwrap();
        assert_eq!(ids(&calm), ["b/m2", "a/m1"], "after {header}");
        assert!(calm.explain.fallback.is_none());
    }
}

/// A price table pricing `m1` and `m2` (USD per million input and output tokens).
fn prices(m1: (f64, f64), m2: (f64, f64)) -> PriceTable {
    PriceTable::parse(&format!(
        "[models.\"m1\"]\ninput = {}\noutput = {}\n[models.\"m2\"]\ninput = {}\noutput = {}\n",
        m1.0, m1.1, m2.0, m2.1
    ))
    .unwrap()
}

#[test]
fn a_price_swap_reaches_the_next_decision_and_the_bill_without_a_rebuild() {
    let dir = scripts_dir(&[]);
    let pricing = Arc::new(Pricing::new(prices((5.0, 20.0), (0.1, 0.4))));
    let unpriced = r#"
  { provider = "a", model = "m1" },
  { provider = "b", model = "m2" },"#;
    let catalog = catalog_of("cost", &dir, unpriced, &pricing).unwrap();
    let req = request(serde_json::json!({}));
    let needs = crate::routing::Needs::of(&req);
    let route = catalog.route(&req, &needs, &Caller::anonymous()).unwrap();
    assert_eq!(ids(&route), ["b/m2", "a/m1"]);

    // The refresh task swaps the table: m2 is now the dear one. Same catalog, same VM.
    pricing.replace(prices((0.1, 0.4), (5.0, 20.0)));
    let route = catalog.route(&req, &needs, &Caller::anonymous()).unwrap();
    assert_eq!(ids(&route), ["a/m1", "b/m2"], "the policy saw stale prices");
    let m2 = &catalog.model("chat").unwrap().deployments[1];
    let billed = m2.billed_price().unwrap();
    assert_eq!((billed.input, billed.output), (5.0, 20.0));

    // A price the config sets wins over the table's.
    let pinned = r#"
  { provider = "a", model = "m1" },
  { provider = "b", model = "m2", price_in = 0.01, price_out = 0.01 },"#;
    let catalog = catalog_of("cost", &dir, pinned, &pricing).unwrap();
    let route = catalog.route(&req, &needs, &Caller::anonymous()).unwrap();
    assert_eq!(ids(&route), ["b/m2", "a/m1"]);
}

#[tokio::test(start_paused = true)]
async fn the_policy_sees_new_live_stats_when_tokio_time_passes() {
    // Orders candidates with answered attempts first.
    let dir = scripts_dir(&[(
        "answered.lua",
        "function route(r, c)\n local first, rest = {}, {}\n for _, x in ipairs(c) do\n \
         if x.stats.samples > 0 then first[#first + 1] = x.id else rest[#rest + 1] = x.id end\n \
         end\n for _, id in ipairs(rest) do first[#first + 1] = id end\n return first\nend",
    )]);
    let catalog = catalog("answered", &dir).unwrap();
    let req = request(serde_json::json!({}));
    let needs = crate::routing::Needs::of(&req);
    let route = catalog.route(&req, &needs, &Caller::anonymous()).unwrap();
    assert_eq!(ids(&route), ["a/m1", "b/m2"]);

    let b = &catalog.model("chat").unwrap().deployments[1];
    let answered = health::Outcome::Success {
        latency: Duration::from_millis(20),
        ttft: None,
    };
    b.health.record(answered, tokio::time::Instant::now());
    // Stats are copied into the VM at most every STATS_REFRESH, by the one clock: paused
    // tokio time that moves past it refreshes them.
    tokio::time::advance(STATS_REFRESH).await;
    let route = catalog.route(&req, &needs, &Caller::anonymous()).unwrap();
    assert_eq!(ids(&route), ["b/m2", "a/m1"], "the VM kept stale stats");
}

#[test]
fn a_cached_decision_is_served_only_for_the_same_facts_even_when_slots_collide() {
    let needs = crate::routing::Needs::default();
    let low = Caller::anonymous();
    let mut high = Caller::anonymous();
    high.level = SecurityLevel::High;
    let facts = |caller| Facts {
        input_tokens: 100,
        max_tokens: Some(10),
        stream: false,
        needs: &needs,
        caller,
    };
    let mut cache = cache::DecisionCache::default();
    // One slot for two different requests: a 64-bit hash collision, forced.
    let slot = 7;
    let low_answer = (vec![(1, None), (0, None)], Vec::new());
    cache.insert(slot, &facts(&low), &[0, 1], low_answer.clone());
    assert_eq!(cache.get(slot, &facts(&low), &[0, 1]), Some(&low_answer));
    assert_eq!(
        cache.get(slot, &facts(&high), &[0, 1]),
        None,
        "another request's decision was served on a hash match"
    );
    assert_eq!(cache.get(slot, &facts(&low), &[1]), None);
    // The slot now holds the other request's answer; the first is a miss, not served.
    let high_answer = (vec![(0, None)], Vec::new());
    cache.insert(slot, &facts(&high), &[0, 1], high_answer.clone());
    assert_eq!(cache.get(slot, &facts(&high), &[0, 1]), Some(&high_answer));
    assert_eq!(cache.get(slot, &facts(&low), &[0, 1]), None);
}
