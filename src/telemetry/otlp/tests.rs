//! The hand-written encoding against prost's: a request record with every attribute (and
//! one that failed) is written, its spans framed into an export, and the bytes decoded
//! with the generated opentelemetry-proto types and compared field by field with the
//! message built from those types, and byte for byte with prost's encoding of it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

use std::{sync::Arc, time::Duration};

use prost::Message as _;
use tokio::{sync::mpsc, time::Instant};

use super::{
    Encoded, SCHEMA_URL, Tracer,
    export::Preamble,
    proto::{
        collector::trace::v1::ExportTraceServiceRequest,
        common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value},
        resource::v1::Resource,
        trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode},
    },
};
use crate::{
    chat::{ChatRequest, ChatResponse, Usage},
    error::ErrorClass,
    failover::Attempt,
    routing::{Deployment, DeploymentInfo},
    telemetry::{Outcome, RequestRecord, Surface, trace::TraceParent},
    usage::pricing::PriceOverride,
};

const CALLER_TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const CALLER_SPAN: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

/// A deployment of preset `kind` at `server`, priced $1 / $4 per million tokens.
fn deployment(provider: &str, model: &str, kind: &'static str, server: &str) -> Deployment {
    crate::telemetry::install_crypto_provider();
    let config = crate::config::Config::parse(
        "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[models]]\nname = \"m\"\ndeployments = [ { provider = \"p\", model = \"m\" } ]\n",
    )
    .unwrap();
    let client = crate::providers::client::Client::new(std::time::Duration::from_secs(1)).unwrap();
    let bare = Deployment::bare(
        provider,
        model,
        crate::providers::build(&config.providers[0], &client).unwrap(),
    );
    Deployment::new(DeploymentInfo {
        kind,
        server: Arc::from(server),
        price_set: PriceOverride {
            input: Some(1.0),
            output: Some(4.0),
            cached_input: None,
        },
        ..(*bare).clone()
    })
}

fn attempt(d: &Deployment, outcome: &str, span_id: [u8; 8]) -> Attempt {
    Attempt {
        provider: d.provider_name.clone(),
        model: d.model.clone(),
        outcome: outcome.to_owned(),
        elapsed: Duration::from_millis(3),
        started: Instant::now(),
        span_id,
        deployment: d.clone(),
    }
}

fn tracer(capture_content: bool) -> (Arc<Tracer>, mpsc::Receiver<Encoded>) {
    let (queue, rx) = mpsc::channel(8);
    let tracer = Tracer {
        ratio: 1.0,
        capture_content,
        queue,
        backlog: Arc::default(),
    };
    (Arc::new(tracer), rx)
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn s(value: &str) -> Value {
    Value::StringValue(value.to_owned())
}

fn attr<'a>(span: &'a Span, key: &str) -> &'a Value {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .unwrap_or_else(|| panic!("{key} on {}", span.name))
}

/// An attempt span as the old prost-built exporter made it.
fn attempt_span(
    request: &Span,
    d: &Deployment,
    outcome: &str,
    span_id: [u8; 8],
    got: &Span,
) -> Span {
    let failed = outcome != "ok";
    let mut attributes = vec![
        kv("gen_ai.operation.name", s("chat")),
        kv(
            "gen_ai.provider.name",
            s(super::span::provider_name(d.kind)),
        ),
        kv("gen_ai.request.model", s(&d.model)),
    ];
    if !d.server.is_empty() {
        attributes.push(kv("server.address", s(&d.server)));
    }
    attributes.extend([
        kv("switchyard.provider", s(&d.provider_name)),
        kv("switchyard.deployment", s(&d.id)),
        kv("switchyard.attempt.outcome", s(outcome)),
    ]);
    if failed {
        attributes.push(kv("error.type", s(outcome)));
    }
    Span {
        trace_id: request.trace_id.clone(),
        span_id: span_id.to_vec(),
        parent_span_id: request.span_id.clone(),
        flags: 1,
        name: format!("chat {}", d.model),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: got.start_time_unix_nano,
        end_time_unix_nano: got.start_time_unix_nano + 3_000_000,
        attributes,
        status: Some(Status {
            message: if failed {
                outcome.to_owned()
            } else {
                String::new()
            },
            code: if failed {
                StatusCode::Error
            } else {
                StatusCode::Unset
            } as i32,
        }),
        ..Span::default()
    }
}

#[tokio::test]
async fn the_hand_encoded_export_is_what_prost_encodes_field_for_field() {
    let c = deployment("c", "up-c", "openai", "");
    let a = deployment("primary", "up-a", "openai", "api.openai.example");
    let b = deployment("backup", "up-b", "bedrock", "bedrock-runtime.example");

    // A served request with every attribute: a caller's trace, content captured (long
    // enough for a three-byte length), two choices, a key, a route, a cache miss.
    let (traced, mut rx) = tracer(true);
    let long = "Hello ".repeat(4000);
    let request: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": "gpt-4o",
        "messages": [{ "role": "user", "content": long }],
        "max_completion_tokens": 50,
        "max_tokens": 80,
    }))
    .unwrap();
    let response: ChatResponse = serde_json::from_value(serde_json::json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
        "choices": [
            { "index": 0, "message": { "role": "assistant", "content": "Hi" }, "finish_reason": "stop" },
            { "index": 1, "message": { "role": "assistant", "content": "Hey" }, "finish_reason": "length" }
        ],
        "usage": { "prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46 }
    }))
    .unwrap();
    let usage: Usage = response.usage.clone().unwrap();
    let mut record = RequestRecord::start("req-1".to_owned(), Surface::Grpc);
    let mut trace = traced
        .begin(Some(TraceParent {
            trace_id: CALLER_TRACE,
            span_id: CALLER_SPAN,
            sampled: true,
        }))
        .unwrap();
    trace.on_request(&request);
    trace.on_response(&response);
    record.trace = Some(trace);
    record.labelled(Arc::from("gpt-4o"), false);
    record.attempts.skipped_first(std::slice::from_ref(&c));
    record
        .attempts
        .push(attempt(&a, "503", [1, 2, 3, 4, 5, 6, 7, 8]));
    record
        .attempts
        .push(attempt(&b, "ok", [9, 10, 11, 12, 13, 14, 15, 16]));
    record.served_by(&b);
    record.usage = Some(usage);
    record.ttft = Some(Duration::from_micros(1500));
    record.policy = Some(Arc::from("failover"));
    record.route = Some("removed x/y: circuit_open".to_owned());
    record.cache = Some(crate::cache::Status::Miss);
    record.saved_usd = Some(0.5);
    record.key = Some(Arc::from("team-a"));
    record.client_addr = Some("2001:db8::7".parse().unwrap());
    record.end(Outcome::Ok);
    drop(record);

    // A failed stream, not captured, from no caller's trace: a root span in error.
    let (plain, mut plain_rx) = tracer(false);
    let mut record = RequestRecord::start("req-2".to_owned(), Surface::Rest);
    let mut trace = plain.begin(None).unwrap();
    trace.on_request(
        &serde_json::from_value(serde_json::json!({
            "model": "gpt-4o",
            "messages": [{ "role": "user", "content": "hi" }],
            "stream": true,
        }))
        .unwrap(),
    );
    record.trace = Some(trace);
    record.labelled(Arc::from("gpt-4o"), true);
    record.attempts.push(attempt(&a, "503", [0xff; 8]));
    record.client_addr = Some("10.0.100.255".parse().unwrap());
    record.error_type = Some(ErrorClass::Provider);
    record.end(Outcome::Error(503));
    drop(record);

    let batch = [rx.recv().await.unwrap(), plain_rx.recv().await.unwrap()];
    assert_eq!(batch[0].spans, 3, "no span for the attempt never sent");
    assert_eq!(batch[1].spans, 2);
    let body = Preamble::new("svc-test").request(&batch);
    let got = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    let spans = &got.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans.len(), 5);

    // What the record cannot fix in advance: the clock, the ids minted, the cost.
    let served = &spans[0];
    assert_eq!(served.trace_id, CALLER_TRACE);
    assert_eq!(served.span_id.len(), 8);
    assert!(served.end_time_unix_nano >= served.start_time_unix_nano);
    let Value::DoubleValue(cost) = attr(served, "switchyard.cost_usd") else {
        panic!("cost");
    };
    assert!((cost - 0.000_148).abs() < 1e-12, "{cost}");
    let failed = &spans[3];
    assert_ne!(failed.trace_id, CALLER_TRACE);
    assert_eq!(failed.trace_id.len(), 16);

    let messages = serde_json::to_string(&request.messages).unwrap();
    assert!(messages.len() > 16_384, "a length of three bytes");
    let answers: Vec<_> = response.choices.iter().map(|c| &c.message).collect();
    let answers = serde_json::to_string(&answers).unwrap();
    assert!(answers.contains("Hey"));
    let served_want = Span {
        trace_id: CALLER_TRACE.to_vec(),
        span_id: served.span_id.clone(),
        parent_span_id: CALLER_SPAN.to_vec(),
        flags: 1,
        name: "chat gpt-4o".to_owned(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: served.start_time_unix_nano,
        end_time_unix_nano: served.end_time_unix_nano,
        attributes: vec![
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.provider.name", s("aws.bedrock")),
            kv("server.address", s("bedrock-runtime.example")),
            kv("gen_ai.request.model", s("gpt-4o")),
            kv("gen_ai.response.model", s("gpt-4o-2024-08-06")),
            kv("gen_ai.usage.input_tokens", Value::IntValue(12)),
            kv("gen_ai.usage.output_tokens", Value::IntValue(34)),
            kv("gen_ai.request.max_tokens", Value::IntValue(50)),
            kv(
                "gen_ai.response.finish_reasons",
                Value::ArrayValue(ArrayValue {
                    values: ["stop", "length"]
                        .map(|r| AnyValue { value: Some(s(r)) })
                        .to_vec(),
                }),
            ),
            kv("gen_ai.input.messages", s(&messages)),
            kv("gen_ai.output.messages", s(&answers)),
            kv("switchyard.request_id", s("req-1")),
            kv("switchyard.surface", s("grpc")),
            kv("switchyard.model", s("gpt-4o")),
            kv("switchyard.stream", Value::BoolValue(false)),
            kv("switchyard.outcome", s("ok")),
            kv("switchyard.provider", s("backup")),
            kv("switchyard.deployment", s("backup/up-b")),
            kv(
                "switchyard.attempts",
                s("c/up-c=circuit_open, primary/up-a=503, backup/up-b=ok"),
            ),
            kv("switchyard.policy", s("failover")),
            kv("switchyard.route", s("removed x/y: circuit_open")),
            kv("switchyard.cache", s("miss")),
            kv("switchyard.key", s("team-a")),
            kv("client.address", s("2001:db8::7")),
            kv("switchyard.cost_usd", Value::DoubleValue(*cost)),
            kv("switchyard.saved_usd", Value::DoubleValue(0.5)),
            kv("switchyard.ttft_ms", Value::DoubleValue(1.5)),
        ],
        status: Some(Status::default()),
        ..Span::default()
    };
    let failed_want = Span {
        trace_id: failed.trace_id.clone(),
        span_id: failed.span_id.clone(),
        parent_span_id: Vec::new(),
        flags: 1,
        name: "chat gpt-4o".to_owned(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: failed.start_time_unix_nano,
        end_time_unix_nano: failed.end_time_unix_nano,
        attributes: vec![
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.request.model", s("gpt-4o")),
            kv("error.type", s("503")),
            kv("switchyard.error_type", s("provider")),
            kv("switchyard.request_id", s("req-2")),
            kv("switchyard.surface", s("rest")),
            kv("switchyard.model", s("gpt-4o")),
            kv("switchyard.stream", Value::BoolValue(true)),
            kv("switchyard.outcome", s("503")),
            kv("switchyard.attempts", s("primary/up-a=503")),
            kv("client.address", s("10.0.100.255")),
        ],
        status: Some(Status {
            message: "503".to_owned(),
            code: StatusCode::Error as i32,
        }),
        ..Span::default()
    };
    let want_spans = vec![
        served_want.clone(),
        attempt_span(&served_want, &a, "503", [1, 2, 3, 4, 5, 6, 7, 8], &spans[1]),
        attempt_span(
            &served_want,
            &b,
            "ok",
            [9, 10, 11, 12, 13, 14, 15, 16],
            &spans[2],
        ),
        failed_want.clone(),
        attempt_span(&failed_want, &a, "503", [0xff; 8], &spans[4]),
    ];
    let resource = |k: &str, v: &str| kv(k, s(v));
    let want = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    resource("service.name", "svc-test"),
                    resource("service.version", env!("CARGO_PKG_VERSION")),
                    resource("telemetry.sdk.name", "switchyard"),
                    resource("telemetry.sdk.language", "rust"),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "switchyard".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                spans: want_spans,
                schema_url: SCHEMA_URL.to_owned(),
            }],
            schema_url: SCHEMA_URL.to_owned(),
        }],
    };
    for (i, (got, want)) in spans
        .iter()
        .zip(&want.resource_spans[0].scope_spans[0].spans)
        .enumerate()
    {
        assert_eq!(got, want, "span {i}");
    }
    assert_eq!(got, want);
    assert!(body == want.encode_to_vec(), "the bytes are prost's");
    // Attempt spans sit inside their request's span.
    for i in [1, 2] {
        assert!(spans[i].start_time_unix_nano >= served.start_time_unix_nano);
    }
}

#[test]
fn an_address_is_written_as_its_display_writes_it() {
    use super::{span::Attributes, wire::Wire};
    for ip in [
        "0.0.0.0",
        "1.2.3.4",
        "9.10.99.100",
        "255.255.255.255",
        "192.168.1.20",
        "::1",
        "2001:db8::7",
    ] {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let (mut got, mut want) = (Vec::new(), Vec::new());
        Attributes::new(&mut Wire(&mut got), 9).ip("client.address", ip);
        Attributes::new(&mut Wire(&mut want), 9).str("client.address", &ip.to_string());
        assert_eq!(got, want, "{ip}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_at_once_the_rest_after_the_delay_and_stop_flushes() {
    use tokio_util::sync::CancellationToken;

    use super::{
        BATCH_DELAY, MAX_BATCH_SPANS, QUEUE_REQUESTS,
        export::{Backlog, Batches},
    };
    let backlog = Arc::new(Backlog::default());
    let (tx, rx) = mpsc::channel(QUEUE_REQUESTS);
    let stop = CancellationToken::new();
    let (sent_tx, mut sent) = mpsc::unbounded_channel();
    let mut batches = Batches::new(rx, backlog.clone(), stop.clone());
    let task = tokio::spawn(async move {
        while let Some(batch) = batches.next().await {
            let spans: u32 = batch.iter().map(|e| e.spans).sum();
            sent_tx.send((Instant::now(), spans)).unwrap();
        }
    });
    // As `Tracer::send` queues a request's two spans.
    let queue = || {
        backlog.add(2);
        tx.try_send(Encoded {
            spans: 2,
            bytes: Vec::new(),
        })
        .unwrap();
    };
    let start = Instant::now();
    queue();
    // The task takes the first and waits for more; then a batch's worth arrives.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    for _ in 0..(MAX_BATCH_SPANS / 2) {
        queue();
    }
    let (at, spans) = sent.recv().await.unwrap();
    assert_eq!(spans as usize, MAX_BATCH_SPANS);
    assert_eq!(at, start, "a full batch does not wait for the delay");
    let (at, spans) = sent.recv().await.unwrap();
    assert_eq!(spans, 2, "the one left over");
    assert_eq!(at, start + BATCH_DELAY);

    for _ in 0..3 {
        queue();
    }
    stop.cancel();
    let (_, spans) = sent.recv().await.unwrap();
    assert_eq!(spans, 6, "what was queued at stop is exported");
    task.await.unwrap();
    assert!(sent.recv().await.is_none());
}
