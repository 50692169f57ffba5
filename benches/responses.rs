//! The Responses API codec: a request read into the canonical one, a canonical answer
//! written as a Responses object, a canonical stream written as Responses events (per
//! event), and the pass-through side (the body re-addressed to a deployment, the
//! provider's events decoded while their bytes are kept). `cargo bench --bench responses`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use switchyard::{
    api::responses::{
        events::EventEncoder,
        object::{self, Frame},
        request::{self, ResponsesRequest},
    },
    chat::{
        ChatChunk, ChatResponse,
        native::{NativeFormat, NativeRequest},
    },
    providers::{
        openai::responses as passthrough,
        sse::{SseDecoder, StreamTranslator},
        upstream,
    },
};

const WORDS: usize = 60;

/// What an agent sends: instructions, a turn, a function call round trip, a tool.
fn body() -> Vec<u8> {
    json!({
        "model": "gpt-4o-mini",
        "instructions": "You are a helpful assistant for a travel company. Answer briefly.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "What's the weather in Paris tomorrow, and should I pack an umbrella?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather",
             "arguments": "{\"city\":\"Paris\",\"day\":\"tomorrow\",\"unit\":\"celsius\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "{\"forecast\":\"light rain\",\"high\":14,\"low\":8}"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Light rain is expected with a high of 14C. Yes, pack an umbrella.", "annotations": []}]},
            {"role": "user", "content": "And in Rome?"}
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather forecast for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "day": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "day", "unit"]}}],
        "temperature": 0.3,
        "max_output_tokens": 512,
        "store": true
    })
    .to_string()
    .into_bytes()
}

fn answer() -> ChatResponse {
    upstream::decode(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
            "message": {"role": "assistant", "content": "Rome will be sunny tomorrow with a high of 22C; no umbrella needed.", "refusal": null}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 18, "total_tokens": 138}
    }).to_string().as_bytes()).unwrap()
}

fn chunks() -> Vec<ChatChunk> {
    let chunk = |delta: Value, finish: Value, usage: Value| -> ChatChunk {
        upstream::decode(json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            "usage": usage}).to_string().as_bytes()).unwrap()
    };
    let mut out: Vec<ChatChunk> = (0..WORDS)
        .map(|i| {
            chunk(
                json!({"content": format!("word{i} ")}),
                Value::Null,
                Value::Null,
            )
        })
        .collect();
    out.push(chunk(
        json!({}),
        json!("stop"),
        json!({"prompt_tokens": 90, "completion_tokens": 60, "total_tokens": 150}),
    ));
    out
}

/// A provider's Responses stream, as OpenAI sends it.
fn provider_stream() -> String {
    let mut seq = 0;
    let mut ev = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        format!("event: {name}\ndata: {data}\n\n")
    };
    let response = json!({"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress",
        "model": "gpt-4o-mini", "output": [], "usage": null});
    let mut s = ev("response.created", json!({"response": response}));
    s.push_str(&ev("response.in_progress", json!({"response": response})));
    s.push_str(&ev("response.output_item.added", json!({"output_index": 0,
        "item": {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}})));
    s.push_str(&ev(
        "response.content_part.added",
        json!({"item_id": "msg_1", "output_index": 0,
        "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    ));
    for i in 0..WORDS {
        s.push_str(&ev(
            "response.output_text.delta",
            json!({"item_id": "msg_1", "output_index": 0,
            "content_index": 0, "delta": format!("word{i} "), "logprobs": []}),
        ));
    }
    s.push_str(&ev(
        "response.output_text.done",
        json!({"item_id": "msg_1", "output_index": 0,
        "content_index": 0, "text": "...", "logprobs": []}),
    ));
    let mut done = response.clone();
    done["status"] = json!("completed");
    done["usage"] = json!({"input_tokens": 90, "output_tokens": 60, "total_tokens": 150});
    s.push_str(&ev("response.completed", json!({"response": done})));
    s
}

fn codec(c: &mut Criterion) {
    let body = body();
    let mut g = c.benchmark_group("responses");
    g.bench_function("decode_request", |b| {
        b.iter(|| {
            let r = ResponsesRequest::parse(black_box(&body)).unwrap();
            let items = r.input_items().unwrap();
            black_box(request::to_chat(&r, &items).unwrap())
        })
    });
    let answer = answer();
    let parsed = ResponsesRequest::parse(&body).unwrap();
    let echo = object::echo(&parsed);
    g.bench_function("encode_json", |b| {
        b.iter(|| {
            let frame = Frame {
                id: "resp_1",
                created_at: 1,
                model: &answer.model,
                echo: &echo,
            };
            black_box(serde_json::to_vec(&object::from_chat(black_box(&answer), &frame)).unwrap())
        })
    });
    let chunks = chunks();
    g.throughput(Throughput::Elements(chunks.len() as u64));
    g.bench_function("encode_stream_per_chunk", |b| {
        b.iter(|| {
            let mut enc = EventEncoder::new("resp_1".into(), 1, "m".into(), Map::new());
            let mut n = 0;
            for chunk in &chunks {
                n += enc.on_chunk(black_box(chunk)).len();
            }
            n += enc.on_done().0.len();
            black_box(n)
        })
    });
    let stream = provider_stream();
    let events = stream.matches("\n\n").count() as u64;
    g.throughput(Throughput::Elements(events));
    g.bench_function("pass_through_stream_per_event", |b| {
        b.iter(|| {
            let mut sse = SseDecoder::default();
            let mut dec = passthrough::StreamDecoder::default();
            let mut n = 0;
            for ev in sse.push(black_box(stream.as_bytes())) {
                n += dec.on_event(ev.unwrap()).len();
            }
            black_box(n)
        })
    });
    g.throughput(Throughput::Elements(1));
    let native = NativeRequest {
        format: NativeFormat::OpenAiResponses,
        body: Bytes::from(body.clone()),
        headers: Vec::new(),
    };
    g.bench_function("pass_through_encode_request", |b| {
        b.iter(|| {
            black_box(passthrough::encode(black_box(&native), "gpt-4o-2024-08-06", false).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
