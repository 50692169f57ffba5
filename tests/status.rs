//! The status page over real sockets: `GET /status/data` after traffic with one failing
//! provider shows the open circuit, the last hour's spend per model and per key, the cache
//! hit rate, the recent errors, alerts and reloads; the data is behind the admin key when
//! one is set, the page itself is not.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use common::{FAST, Mock, client, metric, serve, within};
use serde_json::{Value, json};
use switchyard::{config::Config, gateway::Gateway};
use tokio::sync::oneshot;

const ADMIN: &str = "status-admin-0123456789";
const TEAM_A: &str = "team-a-key-0123456789";
const TEAM_B: &str = "team-b-key-0123456789";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-status-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `chat` tries `down` (always 503) first, then `good`; `down-only` has only `down`
/// (another upstream model, so another circuit). Two failures open a circuit.
fn config(good: &Mock, down: &Mock, dir: &std::path::Path, admin: bool) -> String {
    let admin = if admin {
        format!("[admin]\napi_key = \"{ADMIN}\"\n")
    } else {
        String::new()
    };
    format!(
        "[server]\nhttp_addr = \"127.0.0.1:0\"\ngrpc_addr = \"none\"\n{FAST}\
         [breaker]\nfailures = 2\ncool_down_ms = 600000\n\
         {admin}[state]\ndir = {dir:?}\n[cache]\nscope = \"key\"\n\
         [[keys]]\nname = \"team-a\"\nkey = \"{TEAM_A}\"\n\
         [[keys]]\nname = \"team-b\"\nkey = \"{TEAM_B}\"\n\
         [[providers]]\nname = \"good\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-good\"\n\
         [[providers]]\nname = \"down\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-down\"\n\
         [[models]]\nname = \"chat\"\ndeployments = [\
           {{ provider = \"down\", model = \"upstream-down\", price_in = 1.0, price_out = 2.0 }}, \
           {{ provider = \"good\", model = \"upstream-good\", price_in = 3.0, price_out = 15.0 }}]\n\
         [[models]]\nname = \"down-only\"\ndeployments = [{{ provider = \"down\", model = \"upstream-solo\" }}]\n",
        good.base_url(),
        down.base_url(),
        dir = dir.display().to_string(),
    )
}

/// A gateway started from a config file (so it can reload), its ledger open.
struct Status {
    addr: SocketAddr,
    _gateway: Arc<Gateway>,
    _stop: oneshot::Sender<()>,
}

impl Status {
    async fn start(text: &str, dir: &std::path::Path, ledger: bool) -> Status {
        let file = dir.join("switchyard.toml");
        std::fs::write(&file, text).unwrap();
        let gateway = Arc::new(Gateway::new(Config::load(&file).unwrap()).unwrap());
        gateway.set_config_file(file);
        if ledger {
            gateway.open_ledger().unwrap();
        }
        let (addr, stop) = serve(gateway.clone()).await;
        Status {
            addr,
            _gateway: gateway,
            _stop: stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn chat(&self, key: &str, model: &str, prompt: &str) -> reqwest::Response {
        let body = json!({ "model": model, "messages": [{ "role": "user", "content": prompt }] });
        within(
            client()
                .post(self.url("/v1/chat/completions"))
                .bearer_auth(key)
                .json(&body)
                .send(),
        )
        .await
        .unwrap()
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> reqwest::Response {
        let mut req = client().get(self.url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        within(req.send()).await.unwrap()
    }

    async fn data(&self, bearer: Option<&str>) -> Value {
        let resp = self.get("/status/data", bearer).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        resp.json().await.unwrap()
    }

    /// Waits (bounded) until the cache holds `n` answers: they are written off the
    /// caller's path, so a repeat could otherwise come first.
    async fn stored(&self, n: u64) {
        within(async {
            loop {
                let text = self.get("/metrics", None).await.text().await.unwrap();
                if metric(&text, "switchyard_cache_stores_total", &[]) >= n as f64 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

fn find<'a>(list: &'a Value, field: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v[field] == value)
        .unwrap_or_else(|| panic!("no entry with {field}={value} in {list}"))
}

#[tokio::test]
async fn status_data_shows_the_open_circuit_spend_cache_and_errors_after_traffic() {
    let good = Mock::start("good", "").await;
    let down = Mock::start("down", "status=503").await;
    let dir = temp_dir("traffic");
    let gw = Status::start(&config(&good, &down, &dir, true), &dir, true).await;

    // Two calls fail over from `down` to `good`: the second failure opens down's circuit.
    for prompt in ["first", "second"] {
        let resp = gw.chat(TEAM_A, "chat", prompt).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let resp = gw.chat(TEAM_B, "chat", "third").await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    // The same call again, by the same key: answered from the cache.
    gw.stored(3).await;
    let resp = gw.chat(TEAM_A, "chat", "first").await;
    assert_eq!(resp.headers()["x-switchyard-cache"], "hit");
    resp.bytes().await.unwrap();
    // A model with no healthy deployment: the caller gets down's 503.
    let resp = gw.chat(TEAM_B, "down-only", "fourth").await;
    assert_eq!(resp.status(), 503);
    let failed_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    resp.bytes().await.unwrap();
    // A reload through the admin API lands in the reload history.
    let reload = within(
        client()
            .post(gw.url("/admin/reload"))
            .bearer_auth(ADMIN)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(reload.status(), 200);

    let d = gw.data(Some(ADMIN)).await;
    assert_eq!(d["object"], "switchyard.status");
    assert_eq!(d["version"], 1);

    let deployments = &d["deployments"];
    let open = find(deployments, "id", "down/upstream-down");
    assert_eq!(open["circuit"], "open", "{open}");
    assert!(open["open_for_ms"].as_u64().unwrap() > 0, "{open}");
    assert!(open["error_rate"].as_f64().unwrap() > 0.0, "{open}");
    assert_eq!(open["serves"], json!(["chat"]));
    let healthy = find(deployments, "id", "good/upstream-good");
    assert_eq!(healthy["circuit"], "closed");
    assert_eq!(healthy["samples"], 3);
    let (p50, p95) = (
        healthy["p50_ms"].as_f64().unwrap(),
        healthy["p95_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p95 >= p50, "{healthy}");
    assert_eq!(healthy["error_rate"], 0.0);
    // One failure is not enough to open the other upstream model's circuit.
    assert_eq!(
        find(deployments, "id", "down/upstream-solo")["circuit"],
        "closed"
    );

    let usage = &d["usage"];
    assert_eq!(usage["available"], true, "{usage}");
    let chat = find(&usage["models"], "model", "chat");
    assert_eq!(chat["requests"], 4, "{chat}");
    assert_eq!(chat["errors"], 0);
    assert!(chat["cost_usd"].as_f64().unwrap() > 0.0, "{chat}");
    assert!(chat["input_tokens"].as_u64().unwrap() > 0);
    assert!(chat["output_tokens"].as_u64().unwrap() > 0);
    let down_only = find(&usage["models"], "model", "down-only");
    assert_eq!(down_only["requests"], 1);
    assert_eq!(down_only["errors"], 1);
    assert_eq!(down_only["cost_usd"], 0.0);
    let a = find(&usage["keys"], "key", "team-a");
    let b = find(&usage["keys"], "key", "team-b");
    assert_eq!(a["requests"], 3);
    assert_eq!(b["requests"], 2);
    assert!(a["cost_usd"].as_f64().unwrap() > 0.0, "{a}");
    assert!(b["cost_usd"].as_f64().unwrap() > 0.0, "{b}");
    assert_eq!(usage["totals"]["requests"], 5);

    let cache = &d["cache"];
    assert_eq!(cache["enabled"], true);
    assert_eq!(cache["hits"], 1);
    assert_eq!(cache["requests"], 5);
    assert_eq!(cache["hit_rate"], 0.2);

    let error = &d["errors"][0];
    assert_eq!(error["request_id"], failed_id.as_str(), "{error}");
    assert_eq!(error["model"], "down-only");
    assert_eq!(error["key"], "team-b");
    assert_eq!(error["status"], 503);
    assert!(
        error["attempts"].as_str().unwrap().contains("down"),
        "{error}"
    );
    assert_eq!(d["errors"].as_array().unwrap().len(), 1, "{}", d["errors"]);

    let alerts = &d["alerts"];
    let opened = find(alerts, "kind", "breaker_open");
    assert_eq!(opened["subject"], "down/upstream-down");
    assert_eq!(opened["count"], 1);
    assert_eq!(
        find(alerts, "kind", "chain_exhausted")["subject"],
        "down-only"
    );

    let reload = &d["reloads"][0];
    assert_eq!(reload["trigger"], "admin");
    assert_eq!(reload["result"], "ok");
    assert_eq!(reload["models"], 2);
    assert_eq!(reload["error"], Value::Null);

    // Provider keys never reach the page's data.
    let text = d.to_string();
    assert!(!text.contains("sk-down") && !text.contains("sk-good"));
    assert!(!text.contains(TEAM_A) && !text.contains(ADMIN));
}

#[tokio::test]
async fn status_data_needs_the_admin_key_when_one_is_set_and_the_page_does_not() {
    let good = Mock::start("good", "").await;
    let down = Mock::start("down", "status=503").await;
    let dir = temp_dir("auth");
    let gw = Status::start(&config(&good, &down, &dir, true), &dir, true).await;

    for bearer in [None, Some("wrong-key-0123456789"), Some(TEAM_A)] {
        let resp = gw.get("/status/data", bearer).await;
        assert_eq!(resp.status(), 401, "{bearer:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    }
    gw.data(Some(ADMIN)).await;

    let page = gw.get("/status", None).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("data-auth=\"required\""));
    for (path, kind) in [
        ("/status/app.js", "text/javascript"),
        ("/status/style.css", "text/css"),
        ("/status/icon.svg", "image/svg+xml"),
    ] {
        let resp = gw.get(path, None).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
    }
    let post = within(client().post(gw.url("/status/data")).send())
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn without_an_admin_key_the_data_is_open_and_says_when_the_ledger_is_missing() {
    let good = Mock::start("good", "").await;
    let down = Mock::start("down", "status=503").await;
    let dir = temp_dir("open");
    let gw = Status::start(&config(&good, &down, &dir, false), &dir, false).await;

    let html = gw.get("/status", None).await.text().await.unwrap();
    assert!(html.contains("data-auth=\"none\""));
    let d = gw.data(None).await;
    assert_eq!(d["usage"]["available"], false);
    assert!(
        d["usage"]["error"]
            .as_str()
            .unwrap()
            .contains("ledger is not open")
    );
    assert_eq!(d["usage"]["models"], json!([]));
    assert_eq!(d["cache"]["hit_rate"], Value::Null);
    assert_eq!(d["deployments"].as_array().unwrap().len(), 3);
}
