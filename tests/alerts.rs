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
use serde_json::Value;

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

#[tokio::test]
async fn an_exhausted_chain_and_an_opened_circuit_reach_the_webhook_once_each() {
    let (url, receiver) = start_receiver().await;
    let dead = Mock::dead("dead").await;
    let extra =
        format!("{FAST}[alerts]\nwebhook_url = \"{url}\"\nmin_interval_ms = 60000\nattempts = 3\n");
    let gw = TestGateway::start(&config_for(&[&dead], &extra)).await;
    // Six failures: the chain is exhausted six times; the fifth opens the circuit.
    for _ in 0..6 {
        assert_eq!(gw.chat(&hello(false)).await.status(), 502);
    }

    // The first POST is refused and retried after 0.5 s: wait (bounded) for both kinds.
    let delivered = || {
        let posts = receiver.posts.lock().unwrap();
        let mut kinds: Vec<String> = posts[1.min(posts.len())..]
            .iter()
            .map(|p| p["kind"].as_str().unwrap().to_owned())
            .collect();
        kinds.sort();
        kinds
    };
    within(async {
        while delivered().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Give any extra (unwanted) deliveries a moment to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(delivered(), ["breaker_open", "chain_exhausted"]);
    let posts = receiver.posts.lock().unwrap().clone();
    assert_eq!(
        posts.len(),
        3,
        "one refused delivery, then one of each: {posts:?}"
    );
    let chain = posts
        .iter()
        .find(|p| p["kind"] == "chain_exhausted")
        .unwrap();
    assert_eq!(chain["subject"], "gpt-4o-mini");
    assert!(
        chain["message"]
            .as_str()
            .unwrap()
            .contains("dead/upstream-dead=connect")
    );
    let breaker = posts.iter().find(|p| p["kind"] == "breaker_open").unwrap();
    assert_eq!(breaker["subject"], "dead/upstream-dead");

    let metrics = gw.metrics().await;
    let count = |kind: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("switchyard_alerts_total") && l.contains(kind))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(count("chain_exhausted").as_deref(), Some("6"), "{metrics}");
    assert_eq!(count("breaker_open").as_deref(), Some("1"), "{metrics}");
}

#[tokio::test]
async fn the_callers_own_error_raises_no_alert() {
    let (url, receiver) = start_receiver().await;
    let bad = Mock::start("bad", "status=400").await;
    let extra = format!("{FAST}[alerts]\nwebhook_url = \"{url}\"\n");
    let gw = TestGateway::start(&config_for(&[&bad], &extra)).await;
    assert_eq!(gw.chat(&hello(false)).await.status(), 400);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.posts.lock().unwrap().is_empty());
}
