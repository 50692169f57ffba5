//! The Anthropic Messages surface: its codec (decode a Messages request into the canonical
//! one, encode a canonical answer as a Message, each stream event), and the per-request
//! CPU of a pass-through set against the chat path to the same Anthropic deployment.
//! `cargo bench --bench messages`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::HeaderMap;
use serde_json::{Value, json};
use switchyard::{
    api::anthropic::{
        decode::{Endpoint, decode},
        encode::encode,
        stream::EventEncoder,
    },
    chat::{ChatChunk, ChatRequest, ChatResponse},
    providers::{
        anthropic::{self, AnthropicStream},
        sse::{SseDecoder, StreamTranslator},
    },
};

/// The Messages twin of the chat benchmark's request (`benches/translate.rs`): system
/// prompt, a tool round trip, a tool definition.
fn messages_request() -> Value {
    json!({
        "model": "chat",
        "max_tokens": 512,
        "temperature": 0.3,
        "system": "You are a helpful assistant for a travel company. Answer briefly.",
        "messages": [
            {"role": "user", "content": "What's the weather in Paris tomorrow, and should I pack an umbrella?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                "input": {"city": "Paris", "day": "tomorrow", "unit": "celsius"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": "{\"forecast\":\"light rain\",\"high\":14,\"low\":8}"}]},
            {"role": "assistant", "content": "Light rain is expected with a high of 14C. Yes, pack an umbrella."},
            {"role": "user", "content": "And in Rome?"}
        ],
        "tools": [{"name": "get_weather", "description": "Weather forecast for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "day": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "day", "unit"]}}]
    })
}

/// The same conversation as chat completions.
fn chat_request() -> Value {
    json!({
        "model": "chat",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant for a travel company. Answer briefly."},
            {"role": "user", "content": "What's the weather in Paris tomorrow, and should I pack an umbrella?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"day\":\"tomorrow\",\"unit\":\"celsius\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"forecast\":\"light rain\",\"high\":14,\"low\":8}"},
            {"role": "assistant", "content": "Light rain is expected with a high of 14C. Yes, pack an umbrella."},
            {"role": "user", "content": "And in Rome?"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather forecast for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "day": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "day", "unit"]}}}],
        "temperature": 0.3,
        "max_tokens": 512
    })
}

const WORDS: usize = 60;

fn anthropic_answer() -> Vec<u8> {
    serde_json::to_vec(&json!({"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "Rome will be sunny with a high of 21C; no umbrella needed."}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 120, "output_tokens": 16, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}))
    .unwrap()
}

fn anthropic_stream() -> String {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut s = ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 120, "output_tokens": 1}}}),
    );
    s.push_str(&ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    s.push_str(&ev("ping", json!({"type": "ping"})));
    for i in 0..WORDS {
        s.push_str(&ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("word{i} ")}}),
        ));
    }
    s.push_str(&ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    s.push_str(&ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 60}}),
    ));
    s.push_str(&ev("message_stop", json!({"type": "message_stop"})));
    s
}

/// A provider stream's chunks, as the adapter makes them.
fn chunks_of(wire: &str, mut translator: AnthropicStream) -> Vec<ChatChunk> {
    let mut sse = SseDecoder::default();
    let mut out = Vec::new();
    for ev in sse.push(wire.as_bytes()) {
        out.extend(
            translator
                .on_event(ev.unwrap())
                .into_iter()
                .map(Result::unwrap),
        );
    }
    out
}

/// Adapter and surface together: SSE decoded, translated, written as Messages events.
fn stream_through(wire: &str, native: bool) -> usize {
    let mut sse = SseDecoder::default();
    let mut translator = AnthropicStream::passing_through(native);
    let mut encoder = EventEncoder::new();
    let mut out = BytesMut::new();
    for ev in sse.push(wire.as_bytes()) {
        for chunk in translator.on_event(ev.unwrap()) {
            encoder.on_chunk(chunk.unwrap(), &mut out);
        }
    }
    encoder.on_done(&mut out);
    out.len()
}

fn benches(c: &mut Criterion) {
    let messages_body = Bytes::from(serde_json::to_vec(&messages_request()).unwrap());
    let chat_body = serde_json::to_vec(&chat_request()).unwrap();
    let headers = {
        let mut h = HeaderMap::new();
        h.insert("anthropic-version", "2023-06-01".parse().unwrap());
        h
    };
    let answer = anthropic_answer();
    let canonical_answer = anthropic::decode_response(&answer).unwrap();

    let mut g = c.benchmark_group("messages codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode a Messages request", |b| {
        b.iter(|| decode(black_box(&messages_body), &headers, Endpoint::Create).unwrap())
    });
    g.bench_function("encode a canonical answer as a Message", |b| {
        b.iter(|| encode(black_box(&canonical_answer)).unwrap())
    });
    g.finish();

    // Per request, to an Anthropic deployment, what the gateway's CPU does with the bodies:
    // chat (parse, translate, decode the answer, serialize it for the client) against a
    // pass-through (decode for routing and the rest, splice, decode the answer for usage;
    // the provider's bytes go back as they are).
    let mut g = c.benchmark_group("per request to an anthropic deployment");
    g.throughput(Throughput::Elements(1));
    g.bench_function("chat completions (translated)", |b| {
        b.iter(|| {
            let req: ChatRequest = serde_json::from_slice(black_box(&chat_body)).unwrap();
            let wire = anthropic::encode_request(&req, "claude-sonnet-4-5", false).unwrap();
            let r = anthropic::decode_response(black_box(&answer)).unwrap();
            (wire.len(), serde_json::to_vec(&r).unwrap().len())
        })
    });
    g.bench_function("messages (passed through)", |b| {
        b.iter(|| {
            let req = decode(black_box(&messages_body), &headers, Endpoint::Create).unwrap();
            let native = req.native.as_deref().unwrap();
            let wire = anthropic::splice(&native.body, "claude-sonnet-4-5", Some(false)).unwrap();
            let mut r: ChatResponse = anthropic::decode_response(black_box(&answer)).unwrap();
            r.native = Some(Bytes::from(answer.clone()));
            (wire.len(), r.native.map_or(0, |b| b.len()))
        })
    });
    g.bench_function("splice alone", |b| {
        b.iter(|| {
            anthropic::splice(black_box(&messages_body), "claude-sonnet-4-5", Some(true)).unwrap()
        })
    });
    g.finish();

    let wire = anthropic_stream();
    let events = wire.matches("\n\n").count() as u64;
    let canonical = chunks_of(&wire, AnthropicStream::default());
    let mut g = c.benchmark_group("messages stream per event");
    g.throughput(Throughput::Elements(events));
    g.bench_function("write translated events (encoder alone)", |b| {
        b.iter(|| {
            let mut encoder = EventEncoder::new();
            let mut out = BytesMut::new();
            for chunk in black_box(&canonical).iter().cloned() {
                encoder.on_chunk(chunk, &mut out);
            }
            encoder.on_done(&mut out);
            out.len()
        })
    });
    g.bench_function("anthropic in, messages out: passed through", |b| {
        b.iter(|| stream_through(black_box(&wire), true))
    });
    g.bench_function("anthropic in, messages out: translated", |b| {
        b.iter(|| stream_through(black_box(&wire), false))
    });
    g.finish();
}

criterion_group!(messages, benches);
criterion_main!(messages);
