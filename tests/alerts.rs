//! Alerts over real sockets: a webhook receives the exhausted chain and the opened circuit,
//! once each within the interval however often they happen, after a failed delivery is
//! retried; the metric counts every occurrence.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use common::*;
use serde_json::{Value, json};

/// A webhook that answers 500 to its first POST and records every body.
#[derive(Clone, Default)]
struct Receiver {
    posts: Arc<Mutex<Vec<Value>>>,
}

async fn receive(State(r): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
    let mut posts = r.posts.lock().unwrap();
    posts.push(body);
    if posts.len() == 1 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn start_receiver() -> (String, Receiver) {
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver)
}

/// A model of its own (`sentinel`) over a refused port of its own, appended to `config`.
/// One request for it exhausts its chain: one task delivers alerts in the order they were
/// raised, so once the webhook has its alert, every alert raised before it has been
/// delivered (or given up on). That makes "no other alert" observable without a sleep.
fn with_sentinel(config: String, sentinel: &Mock) -> String {
    format!(
        "{config}\n[[providers]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{url}\"\n\
         api_key = \"sk-test\"\n\n[[models]]\nname = \"sentinel\"\n\
         deployments = [{{ provider = \"{name}\", model = \"upstream-{name}\" }}]\n",
        name = sentinel.name,
        url = sentinel.base_url(),
    )
}

/// POSTs a one-message chat request for `model`; the status.
async fn ask(gw: &TestGateway, model: &str) -> u16 {
    let body = json!({ "model": model, "messages": [{ "role": "user", "content": "Hello" }] });
    gw.chat(&body).await.status().as_u16()
}

/// Waits (bounded) until the webhook has received the sentinel's alert; every POST so far.
async fn posts_up_to_the_sentinel(receiver: &Receiver) -> Vec<Value> {
    within(async {
        loop {
            let posts = receiver.posts.lock().unwrap().clone();
            if posts.iter().any(|p| p["subject"] == "sentinel") {
                return posts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn an_exhausted_chain_and_an_opened_circuit_reach_the_webhook_once_each() {
    let (url, receiver) = start_receiver().await;
    let (dead, _held) = Mock::bound("dead");
    let (sentinel, _held_too) = Mock::bound("sentinel-dead");
    let extra =
        format!("{FAST}[alerts]\nwebhook_url = \"{url}\"\nmin_interval_ms = 60000\nattempts = 3\n");
    // A model name no other test in this binary uses: the alert counter's labels are ours.
    let config = config_for(&[&dead], &extra).replace("\"gpt-4o-mini\"", "\"alerted\"");
    let gw = TestGateway::start(&with_sentinel(config, &sentinel)).await;
    let before = gw.metrics().await;
    // Six failures: the chain is exhausted six times; the fifth opens the circuit.
    for _ in 0..6 {
        assert_eq!(ask(&gw, "alerted").await, 502);
    }
    assert_eq!(ask(&gw, "sentinel").await, 502);

    // The first POST is refused and retried after 0.5 s; then the circuit; then nothing
    // more about `alerted` before the sentinel.
    let posts = posts_up_to_the_sentinel(&receiver).await;
    let sent: Vec<(&str, &str)> = posts
        .iter()
        .map(|p| (p["kind"].as_str().unwrap(), p["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        sent,
        [
            ("chain_exhausted", "alerted"),
            ("chain_exhausted", "alerted"),
            ("breaker_open", "dead/upstream-dead"),
            ("chain_exhausted", "sentinel"),
        ],
        "one refused delivery, then one of each, then the sentinel: {posts:?}"
    );
    assert!(
        posts[1]["message"]
            .as_str()
            .unwrap()
            .contains("dead/upstream-dead=connect")
    );

    let after = gw.metrics().await;
    let raised = |labels: &[&str]| {
        metric(&after, "switchyard_alerts_total", labels)
            - metric(&before, "switchyard_alerts_total", labels)
    };
    let chain = [r#"kind="chain_exhausted""#, r#"subject="alerted""#];
    let breaker = [r#"kind="breaker_open""#, r#"subject="dead/upstream-dead""#];
    assert_eq!(raised(&chain), 6.0, "{after}");
    assert_eq!(raised(&breaker), 1.0, "{after}");
}

#[tokio::test]
async fn the_callers_own_error_raises_no_alert() {
    let (url, receiver) = start_receiver().await;
    let bad = Mock::start("bad", "status=400").await;
    let (sentinel, _held) = Mock::bound("sentinel-dead");
    let extra = format!("{FAST}[alerts]\nwebhook_url = \"{url}\"\n");
    let gw = TestGateway::start(&with_sentinel(config_for(&[&bad], &extra), &sentinel)).await;
    assert_eq!(gw.chat(&hello(false)).await.status(), 400);
    assert_eq!(ask(&gw, "sentinel").await, 502);
    // The sentinel's alert (its first delivery refused, then retried) and nothing before it.
    let posts = posts_up_to_the_sentinel(&receiver).await;
    assert!(
        posts.iter().all(|p| p["subject"] == "sentinel"),
        "{posts:?}"
    );
}
