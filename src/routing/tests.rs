//! The hard filters and the explanation, on a catalog with the static order.

use std::time::Duration;

use super::*;
use crate::{
    auth::CallerHeaders,
    auth::Keys,
    config::{Config, SecurityLevel},
    health::Outcome,
};

const CONFIG: &str = r#"
[security_tiers]
medium = { require_tags = ["soc2"] }
high = { require_tags = ["hipaa"] }
[[keys]]
name = "team-a"
key = "sk-team-a-0123456789"
allowed_providers = ["a", "c"]
[[keys]]
name = "team-b"
key = "sk-team-b-0123456789"
allowed_models = ["m2"]
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
[[providers]]
name = "c"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "k"
[[models]]
name = "chat"
policy = "static"
deployments = [
  { provider = "a", model = "m1", tags = ["soc2", "hipaa"] },
  { provider = "b", model = "m2", tags = ["soc2"] },
  { provider = "c", model = "qwen-max" },
]
"#;

struct Fixture {
    catalog: Catalog,
    keys: Keys,
}

fn fixture() -> Fixture {
    let config = Config::parse(CONFIG).unwrap();
    let client = crate::providers::Clients::new(Duration::from_secs(1)).unwrap();
    let health = health::Registry::new(config.breaker);
    Fixture {
        catalog: Catalog::build(
            &config,
            &client,
            &health,
            &Arc::new(Pricing::new(PriceTable::builtin())),
        )
        .unwrap(),
        keys: Keys::new(&config.keys),
    }
}

fn request(extra: serde_json::Value) -> ChatRequest {
    let mut v =
        serde_json::json!({ "model": "chat", "messages": [{"role": "user", "content": "hi"}] });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).unwrap()
}

impl Fixture {
    fn route(&self, headers: &[(&str, &str)], req: &ChatRequest) -> Result<Route, Error> {
        let caller = self.keys.caller(CallerHeaders::collect(
            headers.iter().map(|(n, v)| (*n, v.as_bytes())),
        ))?;
        self.catalog.route(req, &Needs::of(req), &caller)
    }
}

fn ids(route: &Route) -> Vec<&str> {
    route.plan.iter().map(|p| &*p.deployment.id).collect()
}

const TEAM_A: (&str, &str) = ("authorization", "Bearer sk-team-a-0123456789");
const TEAM_B: (&str, &str) = ("authorization", "Bearer sk-team-b-0123456789");

#[test]
fn a_keys_allowed_providers_and_models_filter_the_candidates() {
    let f = fixture();
    let req = request(serde_json::json!({}));
    let a = f.route(&[TEAM_A], &req).unwrap();
    assert_eq!(ids(&a), ["a/m1", "c/qwen-max"]);
    assert_eq!(&*a.explain.removed[0].id, "b/m2");
    assert!(a.explain.removed[0].reason.contains("provider `b`"));
    let b = f.route(&[TEAM_B], &req).unwrap();
    assert_eq!(ids(&b), ["b/m2"]);
}

#[test]
fn each_security_level_admits_only_tagged_deployments() {
    let f = fixture();
    let req = request(serde_json::json!({}));
    let low = f.route(&[TEAM_A], &req).unwrap();
    assert_eq!(low.plan.len(), 2);
    let medium = f.route(&[("x-security-level", "medium")], &req);
    // Anonymous calls are refused outright: keys are configured.
    assert_eq!(medium.unwrap_err().spec().status.as_u16(), 401);
    let high = f
        .route(&[TEAM_A, ("x-security-level", "high")], &req)
        .unwrap();
    assert_eq!(ids(&high), ["a/m1"]);
    let summary = high.explain.summary().unwrap();
    assert!(
        summary.contains("c/qwen-max removed: security level high requires tags [soc2, hipaa]"),
        "{summary}"
    );
    // Team B may only use b/m2, which lacks hipaa: nothing is left, and it says why.
    let err = f
        .route(&[TEAM_B, ("x-security-level", "high")], &req)
        .unwrap_err();
    assert_eq!(err.spec().status.as_u16(), 403);
    assert!(err.to_string().contains("security level `high`"), "{err}");
}

#[test]
fn capabilities_filter_before_the_policy_with_a_reason() {
    let f = fixture();
    let image = serde_json::json!({ "messages": [{ "role": "user", "content": [
        { "type": "image_url", "image_url": { "url": "data:image/png;base64,AA==" } } ] }] });
    let route = f.route(&[TEAM_A], &request(image)).unwrap();
    assert_eq!(ids(&route), ["a/m1"]);
    assert!(
        route
            .explain
            .removed
            .iter()
            .any(|r| r.reason.contains("vision"))
    );
}

#[test]
fn open_circuits_are_removed_unless_nothing_else_is_left() {
    let f = fixture();
    let req = request(serde_json::json!({}));
    let now = tokio::time::Instant::now();
    let deployments = &f.catalog.model("chat").unwrap().deployments;
    for _ in 0..10 {
        deployments[0].health.record(
            Outcome::Failure {
                latency: Duration::ZERO,
            },
            now,
        );
    }
    let route = f.route(&[TEAM_A], &req).unwrap();
    assert_eq!(ids(&route), ["c/qwen-max"]);
    assert_eq!(route.explain.removed[1].reason, "circuit open");
    for _ in 0..10 {
        deployments[2].health.record(
            Outcome::Failure {
                latency: Duration::ZERO,
            },
            now,
        );
    }
    let route = f.route(&[TEAM_A], &req).unwrap();
    assert_eq!(ids(&route), ["a/m1", "c/qwen-max"]);
}

#[test]
fn a_level_above_the_keys_maximum_never_reaches_routing() {
    let mut config = Config::parse(CONFIG).unwrap();
    config.keys[0].max_security_level = SecurityLevel::Medium;
    let keys = Keys::new(&config.keys);
    let err = keys
        .caller(CallerHeaders::collect(
            [TEAM_A, ("x-security-level", "high")]
                .iter()
                .map(|(n, v)| (*n, v.as_bytes())),
        ))
        .unwrap_err();
    assert_eq!(err.spec().status.as_u16(), 403);
}

#[test]
fn a_policy_answer_keeps_only_the_survivors_each_once() {
    let f = fixture();
    let model = f.catalog.model("chat").unwrap();
    // `b/m2` (index 1) did not pass the filters; the answer names it, and `c` twice.
    let survivors = [0, 2];
    let mut decision = policy::Decision {
        order: vec![
            (1, None),
            (2, Some(Duration::from_millis(500))),
            (0, None),
            (2, None),
        ],
        ..policy::Decision::default()
    };
    let planned = plan(model, &survivors, &mut decision);
    let ids: Vec<&str> = planned.iter().map(|p| &*p.deployment.id).collect();
    assert_eq!(ids, ["c/qwen-max", "a/m1"], "a policy added a candidate");
    assert_eq!(planned[0].timeout, Some(Duration::from_millis(500)));
    assert_eq!(decision.ignored, ["b/m2"]);
    assert!(decision.fallback.is_none());

    // An answer naming nothing that survived: the survivors in configured order.
    let mut decision = policy::Decision {
        order: vec![(1, None)],
        ..policy::Decision::default()
    };
    let planned = plan(model, &survivors, &mut decision);
    let ids: Vec<&str> = planned.iter().map(|p| &*p.deployment.id).collect();
    assert_eq!(ids, ["a/m1", "c/qwen-max"]);
    assert!(decision.fallback.is_some());
}
