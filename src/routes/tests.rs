//! Validation and application of route overrides against a config.

use std::collections::BTreeMap;

use super::*;

fn config() -> Config {
    Config::parse(
        "[[providers]]\nname = \"a\"\nkind = \"vllm\"\n\
         [[providers]]\nname = \"b\"\nkind = \"vllm\"\n\
         [[providers]]\nname = \"c\"\nkind = \"vllm\"\n\
         [[models]]\nname = \"m\"\ndeployments = [{ provider = \"a\", model = \"x\" }, \
         { provider = \"b\", model = \"x\" }, { provider = \"c\", model = \"x\" }]\n",
    )
    .unwrap()
}

fn route(ids: &[&str], policy: Option<&str>) -> RouteOverride {
    RouteOverride {
        deployments: ids.iter().map(|s| (*s).to_owned()).collect(),
        policy: policy.map(str::to_owned),
        set_at: 1_700_000_000,
    }
}

#[test]
fn an_override_may_reorder_and_subset_the_configured_deployments() {
    let c = config();
    assert_eq!(validate(&c, "m", &route(&["c/x", "a/x"], None)), Ok(()));
    assert_eq!(validate(&c, "m", &route(&["b/x"], Some("static"))), Ok(()));
    assert_eq!(validate(&c, "m", &route(&["b/x"], Some("cost"))), Ok(()));
}

#[test]
fn an_override_cannot_add_a_deployment_repeat_one_or_name_a_missing_policy_or_model() {
    let c = config();
    let e = validate(&c, "m", &route(&["a/x", "z/x"], None)).unwrap_err();
    assert!(e.contains("`z/x` is not a deployment of model `m`"), "{e}");
    assert!(e.contains("a/x, b/x, c/x"), "{e}");
    let e = validate(&c, "m", &route(&["a/x", "a/x"], None)).unwrap_err();
    assert!(e.contains("listed twice"), "{e}");
    let e = validate(&c, "m", &route(&[], None)).unwrap_err();
    assert!(e.contains("at least one deployment"), "{e}");
    let e = validate(&c, "m", &route(&["a/x"], Some("nope"))).unwrap_err();
    assert!(e.contains("nope"), "{e}");
    let e = validate(&c, "m", &route(&["a/x"], Some("../etc"))).unwrap_err();
    assert!(e.contains("not a policy name"), "{e}");
    let e = validate(&c, "other", &route(&["a/x"], None)).unwrap_err();
    assert!(e.contains("no model named `other`"), "{e}");
}

#[test]
fn effective_applies_the_overrides_that_fit_and_skips_the_rest() {
    let c = config();
    let mut all = BTreeMap::new();
    all.insert(
        "m".to_owned(),
        Applied {
            route: route(&["c/x", "a/x"], Some("static")),
            origin: Origin::Redis,
        },
    );
    all.insert(
        "gone".to_owned(),
        Applied {
            route: route(&["a/x"], None),
            origin: Origin::Redis,
        },
    );
    let (out, applied) = effective(&c, &all);
    let ids: Vec<String> = out.models[0].deployments.iter().map(|d| d.id()).collect();
    assert_eq!(ids, ["c/x", "a/x"]);
    assert_eq!(out.models[0].policy.as_deref(), Some("static"));
    assert_eq!(applied.len(), 1);
    assert!(
        applied[0].1.starts_with("redis override set at "),
        "{}",
        applied[0].1
    );
    // The file's config is untouched.
    assert_eq!(c.models[0].deployments.len(), 3);
}

#[test]
fn overrides_report_whether_a_change_changed_anything() {
    let o = Overrides::default();
    let a = Applied {
        route: route(&["a/x"], None),
        origin: Origin::Local,
    };
    assert!(o.set("m", Some(a.clone())));
    assert!(!o.set("m", Some(a.clone())));
    assert!(!o.replace(o.snapshot()));
    assert!(o.set("m", None));
    assert!(!o.set("m", None));
}
