//! Failover across real simulated providers: what moves on, what does not, and what the
//! caller sees when everything fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use common::*;
use serde_json::Value;

/// Primary broken by `fault`, backup healthy: the backup serves and the attempts say why.
async fn fails_over(primary: Mock, expected_outcome: &str) {
    let backup = Mock::start("backup", "").await;
    let gw = TestGateway::serving(&[&primary, &backup]).await;
    let resp = gw.chat(&hello(false)).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.headers());
    assert_eq!(header(&resp, "x-switchyard-provider"), "backup");
    assert_eq!(
        header(&resp, "x-switchyard-attempts"),
        format!("primary/upstream-primary={expected_outcome}, backup/upstream-backup=ok")
    );
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("backup")
    );
}

#[tokio::test]
async fn a_dead_port_fails_over() {
    let (primary, _held) = Mock::bound("primary");
    fails_over(primary, "connect").await;
}

#[tokio::test]
async fn a_503_fails_over() {
    fails_over(Mock::start("primary", "status=503").await, "503").await;
}

#[tokio::test]
async fn a_429_fails_over() {
    fails_over(Mock::start("primary", "status=429").await, "429").await;
}

#[tokio::test]
async fn an_upstream_401_fails_over() {
    fails_over(Mock::start("primary", "status=401").await, "401").await;
}

#[tokio::test]
async fn a_reset_connection_fails_over() {
    fails_over(Mock::start("primary", "reset").await, "reset").await;
}

#[tokio::test]
async fn latency_beyond_the_attempt_timeout_fails_over() {
    fails_over(Mock::start("primary", "latency_ms=5000").await, "timeout").await;
}

#[tokio::test]
async fn a_malformed_body_fails_over() {
    fails_over(Mock::start("primary", "malformed").await, "malformed").await;
}

#[tokio::test]
async fn the_callers_own_400_is_returned_without_trying_the_backup() {
    let primary = Mock::start("primary", "status=400").await;
    let backup = Mock::start("backup", "").await;
    let gw = TestGateway::serving(&[&primary, &backup]).await;
    let resp = gw.chat(&hello(false)).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        header(&resp, "x-switchyard-attempts"),
        "primary/upstream-primary=400"
    );
    assert_eq!(backup.stats().await["requests"], 0);
}

#[tokio::test]
async fn when_every_attempt_fails_the_last_providers_status_and_message_come_back() {
    let primary = Mock::start("primary", "status=503").await;
    let backup = Mock::start("backup", "status=429,retry_after=7").await;
    let gw = TestGateway::serving(&[&primary, &backup]).await;
    let resp = gw.chat(&hello(false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), "7");
    assert_eq!(
        header(&resp, "x-switchyard-attempts"),
        "primary/upstream-primary=503, backup/upstream-backup=429"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "simulated 429 from backup");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test]
async fn all_dead_is_a_502_naming_no_secret() {
    let (primary, _held) = Mock::bound("primary");
    let gw = TestGateway::serving(&[&primary]).await;
    let resp = gw.chat(&hello(false)).await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(text.contains("upstream_unreachable"), "{text}");
    assert!(!text.contains("sk-test"), "{text}");
}

#[tokio::test]
async fn the_request_deadline_ends_a_request_with_504() {
    let slow = Mock::start("primary", "latency_ms=10000").await;
    let config = config_for(
        &[&slow],
        "[failover]\nattempt_timeout_ms = 5000\ndeadline_ms = 300\n",
    );
    let gw = TestGateway::start(&config).await;
    let resp = gw.chat(&hello(false)).await;
    assert_eq!(resp.status(), 504);
    assert_eq!(
        header(&resp, "x-switchyard-attempts"),
        "primary/upstream-primary=timeout"
    );
}
