//! A provider that sends more than its `max_response_bytes` fails as malformed, over real
//! sockets, and the next deployment serves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use common::*;
use serde_json::Value;
use switchyard::mock::MockFormat;

/// `primary` then `backup`, with the primary allowed only `limit` bytes an answer.
async fn gateway_capping_primary(primary: &Mock, backup: &Mock, limit: usize) -> TestGateway {
    let text = config_for(&[primary, backup], FAST);
    let capped = text.replacen(
        "name = \"primary\"\n",
        &format!("name = \"primary\"\nmax_response_bytes = {limit}\n"),
        1,
    );
    assert_ne!(capped, text, "the primary's entry is in the config");
    TestGateway::start(&capped).await
}

#[tokio::test]
async fn an_answer_larger_than_max_response_bytes_fails_over() {
    for format in [
        MockFormat::OpenAi,
        MockFormat::Anthropic,
        MockFormat::Bedrock,
    ] {
        let primary = Mock::speaking(format, "primary", "").await;
        let backup = Mock::start("backup", "").await;
        let gw = gateway_capping_primary(&primary, &backup, 64).await;
        let resp = gw.chat(&hello(false)).await;
        assert_eq!(resp.status(), 200, "{format:?}: {:?}", resp.headers());
        assert_eq!(header(&resp, "x-switchyard-provider"), "backup");
        assert_eq!(
            header(&resp, "x-switchyard-attempts"),
            "primary/upstream-primary=malformed, backup/upstream-backup=ok",
            "{format:?}"
        );
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .contains("backup")
        );
    }
}

#[tokio::test]
async fn an_answer_within_max_response_bytes_is_served() {
    let primary = Mock::start("primary", "").await;
    let backup = Mock::start("backup", "").await;
    let gw = gateway_capping_primary(&primary, &backup, 64 * 1024).await;
    let resp = gw.chat(&hello(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "primary");
}

#[tokio::test]
async fn a_stream_event_larger_than_max_response_bytes_fails_over_before_the_first_chunk() {
    for format in [MockFormat::OpenAi, MockFormat::Gemini, MockFormat::Bedrock] {
        let primary = Mock::speaking(format, "primary", "").await;
        let backup = Mock::start("backup", "").await;
        let gw = gateway_capping_primary(&primary, &backup, 32).await;
        let resp = gw.chat(&hello(true)).await;
        assert_eq!(resp.status(), 200, "{format:?}");
        // The headers went out when the primary's stream opened (its oversized event came
        // after); the failover before the first content is invisible in the body.
        assert_eq!(
            header(&resp, "x-switchyard-provider"),
            "primary",
            "{format:?}"
        );
        let events = sse_events(resp).await;
        assert!(stream_content(&events).contains("backup"), "{events:?}");
        assert!(
            !events.iter().any(|e| e.contains("\"error\"")),
            "{events:?}"
        );
        let ids: std::collections::HashSet<String> = events
            .iter()
            .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(ids.len(), 1, "one id on every chunk: {events:?}");
    }
}
