//! Translation micro-benchmarks: for each wire format, the request encoding, the response
//! decoding, and the stream translation per event (SSE decoding included), on realistic
//! payloads. `cargo bench --bench translate`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchyard::{
    chat::{ChatRequest, ChatResponse},
    providers::{
        anthropic::{self, AnthropicStream},
        bedrock::{
            self, BedrockStream,
            eventstream::{self, FrameDecoder},
        },
        cohere::{self, CohereStream},
        gemini::{self, GeminiStream},
        openai::{self, StreamDecoder},
        sse::{SseDecoder, StreamTranslator},
        upstream,
    },
};

/// A request with what real traffic carries: system prompt, a few turns, a tool round
/// trip and a tool definition.
fn request() -> Value {
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

fn openai_stream() -> String {
    let mut s = String::new();
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": null})
        )
    };
    s.push_str(&chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    for i in 0..WORDS {
        s.push_str(&chunk(json!({"content": format!("word{i} ")}), Value::Null));
    }
    s.push_str(&chunk(json!({}), json!("stop")));
    s.push_str(&format!("data: {}\n\n", json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 90, "completion_tokens": 60, "total_tokens": 150}})));
    s.push_str("data: [DONE]\n\n");
    s
}

fn anthropic_stream() -> String {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut s = ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 90, "output_tokens": 1}}}),
    );
    s.push_str(&ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
    for i in 0..WORDS {
        s.push_str(&ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": format!("word{i} ")}}),
        ));
    }
    s.push_str(&ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    s.push_str(&ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 60}})));
    s.push_str(&ev("message_stop", json!({"type": "message_stop"})));
    s
}

fn gemini_stream() -> String {
    let mut s = String::new();
    for i in 0..WORDS {
        let mut frame = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": format!("word{i} ")}]}, "index": 0}],
            "modelVersion": "gemini-2.5-flash", "responseId": "r1"});
        if i == WORDS - 1 {
            frame["candidates"][0]["finishReason"] = json!("STOP");
            frame["usageMetadata"] =
                json!({"promptTokenCount": 90, "candidatesTokenCount": 60, "totalTokenCount": 150});
        }
        s.push_str(&format!("data: {frame}\r\n\r\n"));
    }
    s
}

fn cohere_stream() -> String {
    let ev = |data: Value| {
        format!(
            "event: {}\ndata: {data}\n\n",
            data["type"].as_str().unwrap()
        )
    };
    let mut s = ev(
        json!({"type": "message-start", "id": "c1", "delta": {"message": {"role": "assistant"}}}),
    );
    s.push_str(&ev(json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}})));
    for i in 0..WORDS {
        s.push_str(&ev(json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": format!("word{i} ")}}}})));
    }
    s.push_str(&ev(json!({"type": "content-end", "index": 0})));
    s.push_str(&ev(json!({"type": "message-end", "delta": {"finish_reason": "COMPLETE",
        "usage": {"billed_units": {"input_tokens": 90, "output_tokens": 60}, "tokens": {"input_tokens": 90, "output_tokens": 60}}}})));
    s
}

fn bedrock_frames() -> Vec<u8> {
    let frame = |kind: &str, payload: Value| {
        eventstream::encode(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.to_string().as_bytes(),
        )
    };
    let mut out = Vec::new();
    out.extend_from_slice(&frame("messageStart", json!({"role": "assistant"})));
    for i in 0..WORDS {
        out.extend_from_slice(&frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": format!("word{i} ")}}),
        ));
    }
    out.extend_from_slice(&frame("contentBlockStop", json!({"contentBlockIndex": 0})));
    out.extend_from_slice(&frame("messageStop", json!({"stopReason": "end_turn"})));
    out.extend_from_slice(&frame(
        "metadata",
        json!({"usage": {"inputTokens": 90, "outputTokens": 60, "totalTokens": 150},
        "metrics": {"latencyMs": 100}}),
    ));
    out
}

/// Decodes the frames in 1 KiB reads and translates them.
fn translate_frames(wire: &[u8], mut translator: BedrockStream) -> usize {
    let mut frames = FrameDecoder::default();
    let mut n = 0;
    for piece in wire.chunks(1024) {
        for frame in frames.push(piece) {
            n += translator.on_frame(&frame.unwrap()).len();
        }
    }
    n
}

fn events(wire: &str) -> u64 {
    wire.matches("data: ").count() as u64
}

/// Feeds the whole stream through SSE decoding and the translator, in 1 KiB reads.
fn translate(wire: &str, mut translator: impl StreamTranslator) -> usize {
    let mut sse = SseDecoder::default();
    let mut n = 0;
    for piece in wire.as_bytes().chunks(1024) {
        for event in sse.push(piece) {
            n += translator.on_event(event.unwrap()).len();
        }
    }
    n + translator.on_eof().unwrap().len()
}

fn benches(c: &mut Criterion) {
    let body = serde_json::to_vec(&request()).unwrap();
    let req: ChatRequest = serde_json::from_slice(&body).unwrap();

    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse client body", |b| {
        b.iter(|| serde_json::from_slice::<ChatRequest>(black_box(&body)).unwrap())
    });
    g.bench_function("encode openai", |b| {
        b.iter(|| {
            openai::encode_request(
                black_box(&req),
                "gpt-4o-mini",
                false,
                openai::Quirks::default(),
            )
        })
    });
    g.bench_function("encode anthropic", |b| {
        b.iter(|| anthropic::encode_request(black_box(&req), "claude-sonnet-4-5", false).unwrap())
    });
    g.bench_function("encode gemini", |b| {
        b.iter(|| gemini::encode_request(black_box(&req)).unwrap())
    });
    g.bench_function("encode cohere", |b| {
        b.iter(|| cohere::encode_request(black_box(&req), "command-a-03-2025", false).unwrap())
    });
    g.bench_function("encode bedrock", |b| {
        b.iter(|| bedrock::encode_request(black_box(&req)).unwrap())
    });
    g.finish();

    let openai_body = serde_json::to_vec(&json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
        "model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"role": "assistant",
        "content": "Rome will be sunny with a high of 21C; no umbrella needed.", "refusal": null},
        "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 16, "total_tokens": 136,
        "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}})).unwrap();
    let anthropic_body = serde_json::to_vec(&json!({"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "Rome will be sunny with a high of 21C; no umbrella needed."}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 120, "output_tokens": 16, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})).unwrap();
    let gemini_body = serde_json::to_vec(&json!({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Rome will be sunny with a high of 21C; no umbrella needed."}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 16, "totalTokenCount": 136},
        "modelVersion": "gemini-2.5-flash", "responseId": "r1"})).unwrap();
    let cohere_body = serde_json::to_vec(&json!({"id": "c1", "finish_reason": "COMPLETE", "message": {"role": "assistant",
        "content": [{"type": "text", "text": "Rome will be sunny with a high of 21C; no umbrella needed."}]},
        "usage": {"billed_units": {"input_tokens": 120, "output_tokens": 16}, "tokens": {"input_tokens": 120, "output_tokens": 16}}})).unwrap();
    let bedrock_body = serde_json::to_vec(&json!({"output": {"message": {"role": "assistant", "content": [
        {"text": "Rome will be sunny with a high of 21C; no umbrella needed."}]}}, "stopReason": "end_turn",
        "usage": {"inputTokens": 120, "outputTokens": 16, "totalTokens": 136}, "metrics": {"latencyMs": 300}})).unwrap();
    let mut g = c.benchmark_group("response");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode openai", |b| {
        b.iter(|| upstream::decode::<ChatResponse>(black_box(&openai_body)).unwrap())
    });
    g.bench_function("decode anthropic", |b| {
        b.iter(|| anthropic::decode_response(black_box(&anthropic_body)).unwrap())
    });
    g.bench_function("decode gemini", |b| {
        b.iter(|| gemini::decode_response(black_box(&gemini_body), "m").unwrap())
    });
    g.bench_function("decode cohere", |b| {
        b.iter(|| cohere::decode_response(black_box(&cohere_body), "m").unwrap())
    });
    g.bench_function("decode bedrock", |b| {
        b.iter(|| bedrock::decode_response(black_box(&bedrock_body), "m", "id").unwrap())
    });
    g.bench_function("serialize for the client", |b| {
        let r = upstream::decode::<ChatResponse>(&openai_body).unwrap();
        b.iter(|| serde_json::to_vec(black_box(&r)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("stream per event");
    let (o, a, gm) = (openai_stream(), anthropic_stream(), gemini_stream());
    g.throughput(Throughput::Elements(events(&o)));
    g.bench_function("openai", |b| {
        b.iter(|| translate(black_box(&o), StreamDecoder::default()))
    });
    g.throughput(Throughput::Elements(events(&a)));
    g.bench_function("anthropic", |b| {
        b.iter(|| translate(black_box(&a), AnthropicStream::default()))
    });
    g.throughput(Throughput::Elements(events(&gm)));
    g.bench_function("gemini", |b| {
        b.iter(|| translate(black_box(&gm), GeminiStream::new("m")))
    });
    let co = cohere_stream();
    g.throughput(Throughput::Elements(events(&co)));
    g.bench_function("cohere", |b| {
        b.iter(|| translate(black_box(&co), CohereStream::new("m")))
    });
    let br = bedrock_frames();
    g.throughput(Throughput::Elements(WORDS as u64 + 4));
    g.bench_function("bedrock (event-stream frames)", |b| {
        b.iter(|| translate_frames(black_box(&br), BedrockStream::new("m", "id")))
    });
    g.finish();
}

criterion_group!(translation, benches);
criterion_main!(translation);
