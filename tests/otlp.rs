//! OTLP trace export over real sockets: a collector that decodes the HTTP/protobuf export
//! with the gateway's own prost types receives the spans of a request that failed over,
//! with their GenAI attributes and parent links; the trace context reaches each upstream
//! attempt; and a collector that is down costs requests nothing but a counter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use std::{collections::HashMap, time::Duration};

use axum::{Router, body::Bytes, extract::State, routing::post};
use common::*;
use prost::Message as _;
use switchyard::telemetry::otlp::proto::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::any_value::Value as Any,
    trace::v1::{Span, span::SpanKind, status::StatusCode},
};
use tokio::sync::mpsc;

/// A collector on a real socket: every span it receives, on a channel, with the request's
/// headers.
async fn collector() -> (
    String,
    mpsc::UnboundedReceiver<(HashMap<String, String>, Vec<Span>)>,
) {
    type Tx = mpsc::UnboundedSender<(HashMap<String, String>, Vec<Span>)>;
    async fn traces(State(tx): State<Tx>, headers: http::HeaderMap, body: Bytes) -> Vec<u8> {
        let request = ExportTraceServiceRequest::decode(body).unwrap();
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let spans = request
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect();
        let _ = tx.send((headers, spans));
        ExportTraceServiceResponse::default().encode_to_vec()
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), rx)
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Any> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attr(span, key) {
        Some(Any::StringValue(s)) => s,
        other => panic!("{key} on span {}: {other:?}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attr(span, key) {
        Some(Any::IntValue(n)) => *n,
        other => panic!("{key} on span {}: {other:?}", span.name),
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_failed_over_request_exports_its_span_and_one_child_per_attempt() {
    let (endpoint, mut spans_rx) = collector().await;
    let primary = Mock::start("primary", "status=503").await;
    let backup = Mock::start("backup", "").await;
    let telemetry = format!(
        "{FAST}[telemetry]\notlp_endpoint = \"{endpoint}\"\nheaders = {{ x-collector-token = \"tok-123\" }}\n"
    );
    let gw = TestGateway::start(&config_for(&[&primary, &backup], &telemetry)).await;
    let mut body = hello(false);
    body["max_tokens"] = 50.into();
    let resp = within(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
            .json(&body)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-switchyard-attempts"),
        "primary/upstream-primary=503, backup/upstream-backup=ok"
    );

    // The spans of this trace, however the exporter batched them.
    let mut spans = Vec::new();
    let mut export_headers = HashMap::new();
    within(async {
        while spans.len() < 3 {
            let (headers, batch) = spans_rx.recv().await.unwrap();
            export_headers = headers;
            spans.extend(
                batch
                    .into_iter()
                    .filter(|s| hex::encode(&s.trace_id) == TRACE_ID),
            );
        }
    })
    .await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    assert_eq!(export_headers["content-type"], "application/x-protobuf");
    assert_eq!(export_headers["x-collector-token"], "tok-123");

    let request = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("a SERVER span for the request");
    assert_eq!(hex::encode(&request.parent_span_id), CALLER_SPAN);
    assert_eq!(request.name, "chat gpt-4o-mini");
    assert_eq!(text(request, "gen_ai.operation.name"), "chat");
    assert_eq!(text(request, "gen_ai.provider.name"), "openai");
    assert_eq!(text(request, "gen_ai.request.model"), "gpt-4o-mini");
    assert!(!text(request, "gen_ai.response.model").is_empty());
    assert!(int(request, "gen_ai.usage.input_tokens") > 0);
    assert!(int(request, "gen_ai.usage.output_tokens") > 0);
    assert_eq!(int(request, "gen_ai.request.max_tokens"), 50);
    match attr(request, "gen_ai.response.finish_reasons") {
        Some(Any::ArrayValue(a)) => {
            assert_eq!(a.values[0].value, Some(Any::StringValue("stop".into())))
        }
        other => panic!("finish reasons: {other:?}"),
    }
    assert_eq!(text(request, "server.address"), "127.0.0.1");
    assert_eq!(text(request, "switchyard.outcome"), "ok");
    assert_eq!(text(request, "switchyard.provider"), "backup");
    assert_eq!(text(request, "switchyard.policy"), "failover");
    assert_eq!(text(request, "switchyard.cache"), "bypass");
    assert!(attr(request, "error.type").is_none());
    assert!(
        attr(request, "gen_ai.input.messages").is_none(),
        "content off by default"
    );
    assert!(request.end_time_unix_nano >= request.start_time_unix_nano);

    let attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(attempts.len(), 2);
    for a in &attempts {
        assert_eq!(
            a.parent_span_id, request.span_id,
            "attempt spans are children"
        );
        assert_eq!(text(a, "gen_ai.operation.name"), "chat");
        assert_eq!(text(a, "server.address"), "127.0.0.1");
        assert!(a.start_time_unix_nano >= request.start_time_unix_nano);
        assert!(a.end_time_unix_nano <= request.end_time_unix_nano);
    }
    let failed = attempts
        .iter()
        .find(|a| text(a, "switchyard.provider") == "primary")
        .unwrap();
    assert_eq!(text(failed, "switchyard.attempt.outcome"), "503");
    assert_eq!(text(failed, "error.type"), "503");
    assert_eq!(text(failed, "gen_ai.request.model"), "upstream-primary");
    assert_eq!(
        failed.status.as_ref().unwrap().code,
        StatusCode::Error as i32
    );
    let served = attempts
        .iter()
        .find(|a| text(a, "switchyard.provider") == "backup")
        .unwrap();
    assert_eq!(text(served, "switchyard.attempt.outcome"), "ok");
    assert!(attr(served, "error.type").is_none());

    // Each upstream got the trace, with its own attempt's span as the parent.
    for (mock, span) in [(&primary, failed), (&backup, served)] {
        let stats = mock.stats().await;
        assert_eq!(
            stats["last_headers"]["traceparent"],
            format!("00-{TRACE_ID}-{}-01", hex::encode(&span.span_id)),
            "{}",
            mock.name
        );
    }
}

#[tokio::test]
async fn content_is_captured_only_when_asked() {
    let (endpoint, mut spans_rx) = collector().await;
    let mock = Mock::start("p", "").await;
    let telemetry =
        format!("{FAST}[telemetry]\notlp_endpoint = \"{endpoint}\"\ncapture_content = true\n");
    let gw = TestGateway::start(&config_for(&[&mock], &telemetry)).await;
    assert_eq!(gw.chat(&hello(false)).await.status(), 200);
    let (_, spans) = within(spans_rx.recv()).await.unwrap();
    let request = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert!(text(request, "gen_ai.input.messages").contains("Hello"));
    assert!(!text(request, "gen_ai.output.messages").is_empty());
    // No caller context: a new trace, a root span.
    assert!(request.parent_span_id.is_empty());
    assert_eq!(request.trace_id.len(), 16);
}

#[tokio::test]
async fn captured_content_is_the_redacted_prompt_and_answer_never_the_originals() {
    let (endpoint, mut spans_rx) = collector().await;
    // The mock echoes the user's message: the placeholder comes back and is restored for
    // the caller, but the span keeps what the provider saw and said.
    let mock = Mock::start("p", "").await;
    let config = format!(
        "{FAST}[telemetry]\notlp_endpoint = \"{endpoint}\"\ncapture_content = true\n\
         [redaction]\ndetectors = [\"email\"]\nmode = \"mask\"\nrestore = true\n"
    );
    let gw = TestGateway::start(&config_for(&[&mock], &config)).await;
    let email = "jane.doe@example.com";
    let body = serde_json::json!({ "model": "gpt-4o-mini",
        "messages": [{ "role": "user", "content": format!("Write to {email}") }] });
    let resp = gw.chat(&body).await;
    assert_eq!(resp.status(), 200);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains(email)
    );
    let (_, spans) = within(spans_rx.recv()).await.unwrap();
    let request = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    for key in ["gen_ai.input.messages", "gen_ai.output.messages"] {
        let captured = text(request, key);
        assert!(captured.contains("<EMAIL_1>"), "{key}: {captured}");
        assert!(!captured.contains(email), "{key}: {captured}");
    }
}

#[tokio::test]
async fn a_collector_that_is_down_costs_requests_nothing_but_a_counter() {
    let (down, _held) = Mock::bound("collector");
    let mock = Mock::start("p", "").await;
    let telemetry = format!(
        "{FAST}[telemetry]\notlp_endpoint = \"http://{}\"\n",
        down.addr
    );
    let gw = TestGateway::start(&config_for(&[&mock], &telemetry)).await;
    for _ in 0..20 {
        assert_eq!(gw.chat(&hello(false)).await.status(), 200);
        assert_eq!(gw.chat(&hello(true)).await.status(), 200);
    }
    let dropped = within(async {
        loop {
            let text = gw.metrics().await;
            let n = metric(
                &text,
                "switchyard_otlp_spans_dropped_total",
                &["reason=\"export_failed\""],
            );
            if n > 0.0 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        dropped >= 2.0,
        "a request span and its attempt span at least"
    );
    let text = gw.metrics().await;
    assert_eq!(
        metric(&text, "switchyard_otlp_spans_exported_total", &[]),
        0.0
    );
    assert_eq!(
        metric(&text, "switchyard_requests_total", &["outcome=\"ok\""]),
        40.0
    );
}

#[tokio::test]
async fn without_an_exporter_the_callers_traceparent_is_forwarded_as_sent() {
    let mock = Mock::start("p", "").await;
    let gw = TestGateway::serving(&[&mock]).await;
    let sent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    for stream in [false, true] {
        let resp = within(
            client()
                .post(gw.url("/v1/chat/completions"))
                .header("traceparent", &sent)
                .json(&hello(stream))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        let _ = within(resp.text()).await;
        assert_eq!(
            mock.stats().await["last_headers"]["traceparent"],
            sent.as_str()
        );
    }
    // A malformed one is not forwarded.
    let resp = within(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("traceparent", "00-zz-1-01")
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        mock.stats().await["last_headers"]
            .get("traceparent")
            .is_none()
    );
}

#[tokio::test]
async fn a_streamed_request_is_traced_with_its_finish_reason() {
    let (endpoint, mut spans_rx) = collector().await;
    let mock = Mock::start("p", "").await;
    let telemetry = format!("{FAST}[telemetry]\notlp_endpoint = \"{endpoint}\"\n");
    let gw = TestGateway::start(&config_for(&[&mock], &telemetry)).await;
    let resp = gw.chat(&hello(true)).await;
    assert_eq!(resp.status(), 200);
    let _ = sse_events(resp).await;
    let (_, spans) = within(spans_rx.recv()).await.unwrap();
    let request = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(
        attr(request, "switchyard.stream"),
        Some(&Any::BoolValue(true))
    );
    assert!(matches!(
        attr(request, "gen_ai.response.finish_reasons"),
        Some(Any::ArrayValue(a)) if !a.values.is_empty()
    ));
    assert!(int(request, "gen_ai.usage.output_tokens") > 0);
    let attempt = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap();
    assert_eq!(
        mock.stats().await["last_headers"]["traceparent"],
        format!(
            "00-{}-{}-01",
            hex::encode(&request.trace_id),
            hex::encode(&attempt.span_id)
        )
    );
}
