//! The Lua guardrail hook end to end: `[[models]] guard` allows or denies (403
//! `guardrail_denied` with the script's reason) before anything is sent, a failing guard
//! denies, and an edited script is picked up on reload while a broken edit is rejected.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use std::{path::PathBuf, sync::Arc};

use common::*;
use serde_json::{Value, json};
use switchyard::{config::Config, gateway::Gateway, reload};

const GUARD: &str = r#"
function guard(request)
  for _, m in ipairs(request.messages) do
    if string.find(string.lower(m.content), "refund", 1, true) then
      return false, "refunds go through the billing team"
    end
  end
  if request.max_tokens and request.max_tokens > 1000 then
    return false, "at most 1000 tokens on " .. request.model
  end
  return true
end
"#;

struct Setup {
    dir: PathBuf,
    gateway: Arc<Gateway>,
    url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn setup(mock: &Mock, guard: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("switchyard-guard-{}", fastrand::u64(..)));
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(dir.join("scripts/support.lua"), guard).unwrap();
    let config = config_for(
        &[mock],
        &format!("{FAST}[routing]\nscripts_dir = \"scripts\"\n"),
    )
    .replace(
        "name = \"gpt-4o-mini\"\n",
        "name = \"gpt-4o-mini\"\nguard = \"support\"\n",
    );
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, config).unwrap();
    let gateway = Arc::new(Gateway::new(Config::load(&path).unwrap()).unwrap());
    gateway.set_config_file(path);
    let (addr, stop) = serve(gateway.clone()).await;
    Setup {
        dir,
        gateway,
        url: format!("http://{addr}/v1/chat/completions"),
        _stop: stop,
    }
}

async fn post(s: &Setup, body: &Value) -> reqwest::Response {
    within(client().post(&s.url).json(body).send())
        .await
        .unwrap()
}

fn ask(text: &str) -> Value {
    json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": text }] })
}

#[tokio::test]
async fn a_guard_allows_or_denies_with_its_reason() {
    let mock = Mock::start("a", "").await;
    let s = setup(&mock, GUARD).await;
    assert_eq!(post(&s, &ask("hello")).await.status(), 200);
    let resp = post(&s, &ask("I want a REFUND")).await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "guardrail_denied");
    assert_eq!(v["error"]["message"], "refunds go through the billing team");
    let mut big = ask("hello");
    big["max_tokens"] = json!(5000);
    let v: Value = post(&s, &big).await.json().await.unwrap();
    assert_eq!(v["error"]["message"], "at most 1000 tokens on gpt-4o-mini");
    assert_eq!(mock.stats().await["requests"], 1);
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test]
async fn a_failing_guard_denies() {
    let mock = Mock::start("a", "").await;
    let s = setup(
        &mock,
        "function guard(r)\n  if r.messages[1].content == 'loop' then while true do end end\n  \
         return r.nothing.here\nend\n",
    )
    .await;
    for text in ["loop", "error"] {
        let resp = post(&s, &ask(text)).await;
        assert_eq!(resp.status(), 403, "{text}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "guardrail_denied");
        assert_eq!(v["error"]["message"], "guard `support` could not decide");
    }
    assert_eq!(mock.stats().await["requests"], 0);
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test]
async fn an_edited_guard_is_picked_up_on_reload_and_a_broken_one_rejected() {
    let mock = Mock::start("a", "").await;
    let s = setup(&mock, GUARD).await;
    assert_eq!(post(&s, &ask("hello")).await.status(), 200);
    std::fs::write(
        s.dir.join("scripts/support.lua"),
        "function guard(r) return false, 'closed for maintenance' end\n",
    )
    .unwrap();
    reload::reload(&s.gateway, "test").unwrap();
    let v: Value = post(&s, &ask("hello")).await.json().await.unwrap();
    assert_eq!(v["error"]["message"], "closed for maintenance");
    // A script with no `guard` is rejected; the last good one keeps serving.
    std::fs::write(s.dir.join("scripts/support.lua"), "x = 1\n").unwrap();
    assert!(reload::reload(&s.gateway, "test").is_err());
    let v: Value = post(&s, &ask("hello")).await.json().await.unwrap();
    assert_eq!(v["error"]["message"], "closed for maintenance");
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test]
async fn a_model_naming_a_missing_guard_does_not_start() {
    let mock = Mock::start("a", "").await;
    let dir = std::env::temp_dir().join(format!("switchyard-guard-{}", fastrand::u64(..)));
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    let config = config_for(&[&mock], "[routing]\nscripts_dir = \"scripts\"\n").replace(
        "name = \"gpt-4o-mini\"\n",
        "name = \"gpt-4o-mini\"\nguard = \"absent\"\n",
    );
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, config).unwrap();
    assert!(Gateway::new(Config::load(&path).unwrap()).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
