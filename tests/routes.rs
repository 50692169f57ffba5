//! Live route overrides across real gateway processes on one real Redis: `switchyard
//! routes set|get|clear` reaches every replica within a second, invalid overrides are
//! refused, late replicas and file reloads keep them, the subscriber survives a Redis
//! restart, and without Redis the admin API overrides this replica alone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{
    process::{BIN, Served},
    redis::RedisServer,
    *,
};
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-0123456789";
const MODEL: &str = "gpt-4o-mini";
/// The bound the issue sets for a change to reach every replica.
const ONE_SECOND: Duration = Duration::from_secs(1);

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-routes-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Three providers `a`, `b`, `c` (configured in that order) behind model `gpt-4o-mini`.
struct Providers {
    a: Mock,
    b: Mock,
    c: Mock,
}

impl Providers {
    async fn start() -> Providers {
        Providers {
            a: Mock::start("a", "").await,
            b: Mock::start("b", "").await,
            c: Mock::start("c", "").await,
        }
    }

    /// The config text, on `redis` when given, with the admin API on.
    fn config(&self, redis: Option<&RedisServer>) -> String {
        let mut extra = String::from(FAST);
        if let Some(r) = redis {
            extra.push_str(&format!("[state]\nredis_url = \"{}\"\n", r.url()));
        }
        extra.push_str(&format!("[admin]\napi_key = \"{ADMIN}\"\n"));
        config_for(&[&self.a, &self.b, &self.c], &extra)
    }

    /// Writes the config into a fresh folder; its path.
    fn write(&self, name: &str, redis: Option<&RedisServer>) -> PathBuf {
        let file = tempdir(name).join("switchyard.toml");
        std::fs::write(&file, self.config(redis)).unwrap();
        file
    }
}

fn serve(file: &Path) -> Served {
    Served::start(&["--config", "switchyard.toml"], file.parent().unwrap())
}

/// Runs `switchyard routes ARGS --config FILE`: (success, stdout + stderr).
fn routes(file: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("routes")
        .args(args)
        .arg("--config")
        .arg(file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The provider that answered one chat request.
async fn provider(served: &Served) -> String {
    let resp = served.chat().await;
    assert_eq!(resp.status(), 200);
    header(&resp, "x-switchyard-provider").to_owned()
}

/// Asks until `want` answers; fails when that takes longer than `limit`.
async fn answers_within(served: &Served, want: &str, limit: Duration) {
    let started = tokio::time::Instant::now();
    loop {
        let got = provider(served).await;
        if got == want {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{} still answers from `{got}` after {:?}, not `{want}`",
            served.http,
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An admin call to a served gateway.
async fn admin(
    served: &Served,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, format!("http://{}{path}", served.http))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = within(req.send()).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn routes_set_reaches_every_replica_within_a_second_and_clear_restores_the_config() {
    let p = Providers::start().await;
    let redis = RedisServer::start();
    let file = p.write("three", Some(&redis));
    let replicas = [serve(&file), serve(&file), serve(&file)];
    for r in &replicas {
        assert_eq!(provider(r).await, "a");
    }

    let (ok, text) = routes(&file, &["set", MODEL, "b/upstream-b,a/upstream-a"]);
    assert!(ok, "{text}");
    assert!(text.contains("every replica applies it"), "{text}");
    for r in &replicas {
        answers_within(r, "b", ONE_SECOND).await;
    }
    let (ok, text) = routes(&file, &["get", MODEL]);
    assert!(ok && text.contains("b/upstream-b, a/upstream-a"), "{text}");
    let (_, body) = admin(
        &replicas[2],
        reqwest::Method::GET,
        "/admin/routes/gpt-4o-mini",
        None,
    )
    .await;
    assert_eq!(body["order"], json!(["b/upstream-b", "a/upstream-a"]));
    assert!(
        body["source"]
            .as_str()
            .unwrap()
            .starts_with("redis override set at"),
        "{body}"
    );

    let (ok, text) = routes(&file, &["clear", MODEL]);
    assert!(ok, "{text}");
    for r in &replicas {
        answers_within(r, "a", ONE_SECOND).await;
    }
    let (ok, text) = routes(&file, &["get"]);
    assert!(ok && text.contains("no route overrides"), "{text}");
}

#[tokio::test]
async fn concurrent_admin_changes_leave_every_replica_on_what_redis_holds() {
    let p = Providers::start().await;
    let redis = RedisServer::start();
    let file = p.write("race", Some(&redis));
    let replicas = [serve(&file), serve(&file)];
    let orders = [
        ["a/upstream-a", "b/upstream-b", "c/upstream-c"],
        ["b/upstream-b", "c/upstream-c", "a/upstream-a"],
        ["c/upstream-c", "a/upstream-a", "b/upstream-b"],
    ];
    let path = format!("/admin/routes/{MODEL}");
    for round in 0..8 {
        // Every order PUT to every replica at once: changes cross on each replica, its
        // own PUT's answer racing the subscriber's apply of the others'.
        let puts = replicas.iter().flat_map(|r| {
            orders.iter().map(|o| {
                admin(
                    r,
                    reqwest::Method::PUT,
                    &path,
                    Some(json!({ "deployments": o })),
                )
            })
        });
        for (status, body) in futures_util::future::join_all(puts).await {
            assert_eq!(status, 200, "{body}");
        }
        let stored = redis
            .cli(&["GET", &format!("switchyard:routes:{MODEL}")])
            .unwrap();
        let want = serde_json::from_str::<Value>(&stored).unwrap()["deployments"].clone();
        for r in &replicas {
            let started = tokio::time::Instant::now();
            loop {
                let (_, body) = admin(r, reqwest::Method::GET, &path, None).await;
                if body["order"] == want {
                    break;
                }
                assert!(
                    started.elapsed() < ONE_SECOND,
                    "round {round}: {} serves {} while Redis holds {want}",
                    r.http,
                    body["order"]
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn an_override_naming_an_unknown_deployment_is_refused_and_changes_nothing() {
    let p = Providers::start().await;
    let redis = RedisServer::start();
    let file = p.write("invalid", Some(&redis));
    let replica = serve(&file);

    let (ok, text) = routes(&file, &["set", MODEL, "z/upstream-z,a/upstream-a"]);
    assert!(!ok);
    assert!(
        text.contains("`z/upstream-z` is not a deployment of model `gpt-4o-mini`"),
        "{text}"
    );
    let (ok, text) = routes(&file, &["set", MODEL, "b/upstream-b", "--policy", "nope"]);
    assert!(!ok && text.contains("nope"), "{text}");
    assert_eq!(redis.cli(&["KEYS", "switchyard:routes:*"]).unwrap(), "");

    let (status, body) = admin(
        &replica,
        reqwest::Method::PUT,
        "/admin/routes/gpt-4o-mini",
        Some(json!({ "deployments": ["z/upstream-z"] })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("z/upstream-z"),
        "{body}"
    );
    assert_eq!(redis.cli(&["KEYS", "switchyard:routes:*"]).unwrap(), "");
    assert_eq!(provider(&replica).await, "a");
}

#[tokio::test]
async fn a_replica_started_after_a_change_applies_it_at_start_and_explain_names_it() {
    let p = Providers::start().await;
    let redis = RedisServer::start();
    let file = p.write("late", Some(&redis));
    let (ok, text) = routes(&file, &["set", MODEL, "c/upstream-c,b/upstream-b"]);
    assert!(ok, "{text}");

    let late = serve(&file);
    assert_eq!(
        provider(&late).await,
        "c",
        "the first request already routes by the override"
    );

    let request = file.parent().unwrap().join("request.json");
    std::fs::write(&request, hello(false).to_string()).unwrap();
    let out = Command::new(BIN)
        .args(["route", "--explain", "--config"])
        .arg(&file)
        .arg("--request")
        .arg(&request)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("order from: redis override set at"), "{text}");
    assert!(
        text.contains("1. c/upstream-c") && text.contains("2. b/upstream-b"),
        "{text}"
    );
    assert!(!text.contains("a/upstream-a"), "{text}");
}

#[tokio::test]
async fn a_file_reload_keeps_the_override_and_one_that_no_longer_fits_is_ignored() {
    let p = Providers::start().await;
    let redis = RedisServer::start();
    let file = p.write("reload", Some(&redis));
    let replica = serve(&file);
    let (ok, text) = routes(&file, &["set", MODEL, "b/upstream-b,a/upstream-a"]);
    assert!(ok, "{text}");
    answers_within(&replica, "b", ONE_SECOND).await;

    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &replica.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    // The same file with a changed setting: reloaded, the override kept.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("deadline_ms = 4000", "deadline_ms = 5000"),
    )
    .unwrap();
    hup();
    replica.wait_for("config reloaded");
    assert_eq!(provider(&replica).await, "b");

    // A config without `b`: the override no longer fits; it is logged and the configured
    // order serves (the model is never left without deployments).
    let text = std::fs::read_to_string(&file).unwrap();
    let without_b = text.replace("{ provider = \"b\", model = \"upstream-b\" }, ", "");
    assert_ne!(without_b, text);
    std::fs::write(&file, without_b).unwrap();
    hup();
    replica.wait_for("route override does not fit the config");
    replica.wait_for("config reloaded");
    assert_eq!(provider(&replica).await, "a");
}

#[tokio::test]
async fn without_redis_the_admin_api_overrides_this_replica_and_the_cli_points_to_it() {
    let p = Providers::start().await;
    let file = p.write("local", None);
    let replica = serve(&file);

    let (ok, text) = routes(&file, &["set", MODEL, "b/upstream-b"]);
    assert!(!ok);
    assert!(
        text.contains("no state.redis_url") && text.contains("/admin/routes"),
        "{text}"
    );

    let path = "/admin/routes/gpt-4o-mini";
    let (status, body) = admin(
        &replica,
        reqwest::Method::PUT,
        path,
        Some(json!({ "deployments": ["c/upstream-c", "a/upstream-a"], "policy": "static" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "this replica only (no state.redis_url)");
    assert_eq!(provider(&replica).await, "c");

    let (status, body) = admin(&replica, reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["order"], json!(["c/upstream-c", "a/upstream-a"]));
    assert_eq!(body["policy"], "static");
    assert!(
        body["source"]
            .as_str()
            .unwrap()
            .starts_with("admin (this replica only) override"),
        "{body}"
    );
    let (_, all) = admin(&replica, reqwest::Method::GET, "/admin/routes", None).await;
    assert_eq!(
        all["models"][0]["override"]["deployments"],
        json!(["c/upstream-c", "a/upstream-a"])
    );

    let (status, body) = admin(&replica, reqwest::Method::DELETE, path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cleared"], true);
    assert_eq!(provider(&replica).await, "a");
    let (_, body) = admin(&replica, reqwest::Method::GET, path, None).await;
    assert_eq!(body["source"], "config file");
    assert_eq!(body["override"], Value::Null);

    let resp = within(
        client()
            .post(format!("http://{}{path}", replica.http))
            .bearer_auth(ADMIN)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(header(&resp, "allow"), "GET, PUT, DELETE");
    // Without the admin key the routes are not there to probe.
    let resp = within(
        client()
            .get(format!("http://{}/admin/routes", replica.http))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn after_redis_is_killed_and_restarted_the_subscriber_reconnects_and_a_later_change_arrives()
{
    let p = Providers::start().await;
    let mut redis = RedisServer::start();
    let file = p.write("restart", Some(&redis));
    let replica = serve(&file);
    let (ok, text) = routes(&file, &["set", MODEL, "b/upstream-b,a/upstream-a"]);
    assert!(ok, "{text}");
    answers_within(&replica, "b", ONE_SECOND).await;

    redis.kill();
    // Redis down: the replica keeps the overrides it read, and a change is refused.
    assert_eq!(provider(&replica).await, "b");
    let (status, body) = admin(
        &replica,
        reqwest::Method::PUT,
        "/admin/routes/gpt-4o-mini",
        Some(json!({ "deployments": ["c/upstream-c"] })),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "redis_unavailable");
    assert_eq!(provider(&replica).await, "b");
    replica.wait_for("route overrides: subscription lost");

    redis.restart();
    replica.wait_for("route overrides: subscribed");
    let (ok, text) = routes(&file, &["set", MODEL, "c/upstream-c,a/upstream-a"]);
    assert!(ok, "{text}");
    answers_within(&replica, "c", ONE_SECOND).await;
}
