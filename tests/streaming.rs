//! Streams: forwarded as they arrive, failover before the first content delta, an error
//! event after it, and cancellation of the upstream when the client goes away.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};

fn parse(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

#[tokio::test]
async fn a_stream_is_forwarded_and_ends_with_done() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let resp = gw.chat(&hello(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    assert_eq!(header(&resp, "x-switchyard-provider"), "primary");
    let events = sse_events(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        stream_content(&events),
        "Hello from primary! You said: Hello"
    );
    let chunks = parse(&events);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "usage only when asked for"
    );
    assert_eq!(
        primary.stats().await["last_request"]["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test]
async fn include_usage_gives_the_final_usage_chunk() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let mut req = hello(true);
    req["stream_options"] = json!({"include_usage": true});
    let chunks = parse(&sse_events(gw.chat(&req).await).await);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn streamed_tool_call_arguments_reassemble_exactly() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let mut req = hello(true);
    req["tools"] = json!([{ "type": "function", "function": { "name": "lookup",
        "parameters": { "type": "object", "properties": { "q": {"type": "string"}, "n": {"type": "integer", "minimum": 3} },
                        "required": ["q", "n"] } } }]);
    let chunks = parse(&sse_events(gw.chat(&req).await).await);
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
        .collect();
    assert!(deltas.len() >= 3, "arguments arrive in several fragments");
    assert_eq!(deltas[0]["function"]["name"], "lookup");
    assert!(deltas[0]["id"].as_str().unwrap().starts_with("call_"));
    let args: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"q": "sample", "n": 3})
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
}

/// How the primary's stream fails: before it opened (the caller's headers then name the
/// backup and the failed attempt), or after it opened and before its first content (the
/// headers went out naming the primary; the failover is invisible in the body).
#[derive(PartialEq)]
enum Fails {
    BeforeOpening(&'static str),
    AfterOpening(&'static str),
}

async fn stream_fails_over(fault: &str, fails: Fails) {
    let primary = Mock::start("primary", fault).await;
    let backup = Mock::start("backup", "").await;
    let gw = TestGateway::serving(&[&primary, &backup]).await;
    let resp = gw.chat(&hello(true)).await;
    assert_eq!(resp.status(), 200);
    match fails {
        Fails::BeforeOpening(outcome) => {
            assert_eq!(header(&resp, "x-switchyard-provider"), "backup");
            assert_eq!(
                header(&resp, "x-switchyard-attempts"),
                format!("primary/upstream-primary={outcome}, backup/upstream-backup=ok")
            );
        }
        Fails::AfterOpening(_) => {
            assert_eq!(header(&resp, "x-switchyard-provider"), "primary");
            assert_eq!(
                header(&resp, "x-switchyard-attempts"),
                "primary/upstream-primary=ok"
            );
        }
    }
    let (events, provider, attempts) = sse_events_and_trailer(resp).await;
    assert_eq!(
        stream_content(&events),
        "Hello from backup! You said: Hello"
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    // The trailer says what the headers could not: who served, and every attempt.
    assert_eq!(provider, "backup");
    let primary_outcome = match fails {
        Fails::BeforeOpening(outcome) => outcome,
        Fails::AfterOpening(outcome) => outcome,
    };
    assert_eq!(
        attempts,
        format!("primary/upstream-primary={primary_outcome}, backup/upstream-backup=ok")
    );
    // One role chunk, first; one id and one creation time on every chunk.
    let chunks: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    let roles = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["role"].is_string())
        .count();
    assert_eq!(roles, 1, "{events:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    for c in &chunks {
        assert_eq!(c["id"], chunks[0]["id"], "{events:?}");
        assert_eq!(c["created"], chunks[0]["created"], "{events:?}");
    }
}

#[tokio::test]
async fn a_stream_refused_with_503_fails_over() {
    stream_fails_over("status=503", Fails::BeforeOpening("503")).await;
}

#[tokio::test]
async fn a_stream_cut_before_the_first_content_delta_fails_over() {
    // One chunk (the role) and then the body ends without [DONE].
    stream_fails_over("cut_after_chunks=1", Fails::AfterOpening("reset")).await;
}

#[tokio::test]
async fn a_stream_reset_before_the_first_content_delta_fails_over() {
    stream_fails_over("reset_after_chunks=1", Fails::AfterOpening("reset")).await;
}

#[tokio::test]
async fn an_in_band_error_before_content_fails_over() {
    stream_fails_over("error_after_chunks=1", Fails::AfterOpening("stream_error")).await;
}

#[tokio::test]
async fn a_stream_stalled_before_its_first_byte_fails_over() {
    stream_fails_over("latency_ms=5000", Fails::BeforeOpening("timeout")).await;
}

#[tokio::test]
async fn malformed_stream_data_fails_over() {
    stream_fails_over("malformed", Fails::AfterOpening("malformed")).await;
}

#[tokio::test]
async fn a_stream_cut_after_content_ends_with_an_openai_error_event() {
    let primary = Mock::start("primary", "cut_after_chunks=3").await;
    let backup = Mock::start("backup", "").await;
    let gw = TestGateway::serving(&[&primary, &backup]).await;
    let resp = gw.chat(&hello(true)).await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(resp).await;
    assert_ne!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(stream_content(&events), "Hello from ");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "api_error");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[DONE]"),
        "{last}"
    );
    assert_eq!(
        backup.stats().await["requests"],
        0,
        "no failover after content was sent"
    );
}

#[tokio::test]
async fn an_in_band_error_after_content_is_passed_on() {
    let primary = Mock::start("primary", "error_after_chunks=4").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let events = sse_events(gw.chat(&hello(true)).await).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["message"], "simulated in-stream error");
    assert_eq!(last["error"]["type"], "server_error");
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_stream() {
    let primary = Mock::start("primary", "chunk_delay_ms=200").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let resp = gw.chat(&hello(true)).await;
    let mut body = resp.bytes_stream();
    let first = within(body.next()).await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(body);
    // The mock counts a stream dropped before its end; wait for it, bounded.
    let cancelled = within(async {
        loop {
            let stats = primary.stats().await;
            if stats["streams_cancelled"] == 1 {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(cancelled["streams_completed"], 0);
}

/// `config_for` with extra keys on the first deployment.
fn with_first_deployment(mocks: &[&Mock], keys: &str) -> String {
    let first = mocks[0];
    config_for(mocks, FAST).replacen(
        &format!(
            "{{ provider = \"{}\", model = \"upstream-{}\" }}",
            first.name, first.name
        ),
        &format!(
            "{{ provider = \"{}\", model = \"upstream-{}\", {keys} }}",
            first.name, first.name
        ),
        1,
    )
}

#[tokio::test]
async fn a_deployments_own_ttft_timeout_fails_a_stalled_stream_over() {
    // 600 ms before the first byte: within the global 1500 ms attempt timeout, so only the
    // deployment's own 150 ms time-to-first-token limit can move this request on.
    let stalled = Mock::start("stalled", "latency_ms=600").await;
    let backup = Mock::start("backup", "").await;
    let gw = TestGateway::start(&with_first_deployment(
        &[&stalled, &backup],
        "ttft_timeout_ms = 150",
    ))
    .await;
    let resp = gw.chat(&hello(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "backup");
    assert_eq!(
        header(&resp, "x-switchyard-attempts"),
        "stalled/upstream-stalled=timeout, backup/upstream-backup=ok"
    );
    let events = sse_events(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // Without it, the same stall is served by the stalled deployment.
    let gw = TestGateway::serving(&[&stalled, &backup]).await;
    let resp = gw.chat(&hello(true)).await;
    assert_eq!(header(&resp, "x-switchyard-provider"), "stalled");
}

#[tokio::test]
async fn a_deployments_own_idle_timeout_ends_a_committed_stream_with_an_error() {
    // 300 ms between chunks: under the global 1500 ms, over this deployment's 100 ms.
    let slow = Mock::start("slow", "chunk_delay_ms=300").await;
    let gw = TestGateway::start(&with_first_deployment(
        &[&slow],
        "idle_timeout_ms = 100, ttft_timeout_ms = 1000",
    ))
    .await;
    let resp = gw.chat(&hello(true)).await;
    assert_eq!(resp.status(), 200, "committed at the first content chunk");
    let events = sse_events(resp).await;
    let last = events.last().unwrap();
    assert!(last.contains("\"error\""), "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"));
}

#[tokio::test]
async fn a_stream_opens_before_the_first_token_and_keeps_alive_while_the_model_thinks() {
    // The provider opens its stream at once and sends its first content 1.2 s later.
    let thinking = Mock::start("thinking", "first_token_ms=1200").await;
    let gw = TestGateway::start(&config_for(&[&thinking], "stream_keepalive_ms = 200\n")).await;
    let resp = gw.chat(&hello(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "thinking");
    let text = within(resp.text()).await.unwrap();
    // Keep-alive comments are sent only after silence, so comments between the role chunk
    // and the content prove the role chunk (and the headers before it) went out while the
    // provider still held its first token.
    let role = text.find("\"role\":\"assistant\"").expect("a role chunk");
    let first_keep_alive = text.find(": keep-alive\n").expect("a keep-alive comment");
    let content = text.find("\"content\":\"Hello ").expect("the content");
    assert!(
        role < first_keep_alive && first_keep_alive < content,
        "{text}"
    );
    let comments = text[role..content].matches(": keep-alive\n").count();
    assert!(
        comments >= 2,
        "{comments} keep-alives in 1.2 s of silence: {text}"
    );
    // Once content flows (a chunk at once after another), no comment is needed.
    assert!(!text[content..].contains(": keep-alive"), "{text}");
    assert_eq!(
        text.lines().rev().find_map(|l| l.strip_prefix("data: ")),
        Some("[DONE]")
    );
}

#[tokio::test]
async fn keep_alives_can_be_turned_off() {
    let thinking = Mock::start("thinking", "first_token_ms=500").await;
    let gw = TestGateway::start(&config_for(&[&thinking], "stream_keepalive_ms = 0\n")).await;
    let text = within(gw.chat(&hello(true)).await.text()).await.unwrap();
    assert!(text.contains("\"content\":\"Hello \""), "{text}");
    assert!(!text.contains("keep-alive"), "{text}");
}
