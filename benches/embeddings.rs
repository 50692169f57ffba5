//! Embeddings codec micro-benchmarks, per request: the caller's JSON in, the request each
//! wire format is sent, each format's answer decoded, and the answer out (floats and
//! base64), on a batch of 16 texts of ~200 characters and 1536-dimension vectors (Titan:
//! one 1024-dimension vector, its one-input call). `cargo bench --bench embeddings`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use switchyard::{
    embeddings::{EmbedRequest, EmbedResponse, EmbedUsage, EncodingFormat, wire},
    providers::{bedrock, cohere, gemini},
};

const TEXTS: usize = 16;
const DIMS: usize = 1536;

fn texts() -> Vec<String> {
    (0..TEXTS)
        .map(|i| {
            format!(
                "Document {i}: the quarterly report shows revenue growth in the northern region, \
                 driven by new subscriptions and lower churn; costs rose with the expansion of \
                 the support team and the move to the new data centre."
            )
        })
        .collect()
}

fn vector(seed: usize, dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|i| (((seed * 7919 + i * 104_729) % 2001) as f32 / 1000.0 - 1.0) * 0.03)
        .collect()
}

fn request_json() -> Vec<u8> {
    serde_json::to_vec(
        &json!({ "model": "embed", "input": texts(), "dimensions": DIMS,
        "encoding_format": "base64", "user": "user-42" }),
    )
    .unwrap()
}

fn response() -> EmbedResponse {
    EmbedResponse {
        model: "text-embedding-3-small".into(),
        data: (0..TEXTS).map(|i| vector(i, DIMS)).collect(),
        usage: EmbedUsage::reported(700),
    }
}

fn bench(c: &mut Criterion) {
    let body = request_json();
    let request: EmbedRequest = wire::parse_request(&body).unwrap();
    let answer = response();

    let mut g = c.benchmark_group("embeddings/in");
    g.bench_function("parse request (16 texts)", |b| {
        b.iter(|| wire::parse_request(black_box(&body)).unwrap())
    });
    g.bench_function("encode answer float (16 x 1536)", |b| {
        b.iter(|| wire::encode_response(black_box(&answer), EncodingFormat::Float))
    });
    g.bench_function("encode answer base64 (16 x 1536)", |b| {
        b.iter(|| wire::encode_response(black_box(&answer), EncodingFormat::Base64))
    });
    g.finish();

    let mut g = c.benchmark_group("embeddings/request");
    g.bench_function("openai", |b| {
        b.iter(|| wire::encode_request(black_box(&request), "text-embedding-3-small"))
    });
    g.bench_function("gemini (batchEmbedContents)", |b| {
        b.iter(|| gemini::embed::encode_requests(black_box(&request), "gemini-embedding-001"))
    });
    g.bench_function("cohere", |b| {
        b.iter(|| cohere::embed::encode_requests(black_box(&request), "embed-v4.0"))
    });
    g.bench_function("bedrock titan (16 calls)", |b| {
        b.iter(|| {
            bedrock::embed::encode_requests(black_box(&request), "amazon.titan-embed-text-v2:0")
        })
    });
    g.bench_function("bedrock cohere", |b| {
        b.iter(|| bedrock::embed::encode_requests(black_box(&request), "cohere.embed-v4:0"))
    });
    g.finish();

    let vectors: Vec<Vec<f32>> = (0..TEXTS).map(|i| vector(i, DIMS)).collect();
    let openai_float = wire::encode_response(&answer, EncodingFormat::Float);
    let openai_b64 = wire::encode_response(&answer, EncodingFormat::Base64);
    let gemini_body = serde_json::to_vec(&json!({ "embeddings":
        vectors.iter().map(|v| json!({ "values": v })).collect::<Vec<_>>() }))
    .unwrap();
    let cohere_body = serde_json::to_vec(&json!({ "id": "x", "embeddings": { "float": vectors },
        "texts": texts(), "meta": { "billed_units": { "input_tokens": 700 } },
        "response_type": "embeddings_by_type" }))
    .unwrap();
    let titan_body = serde_json::to_vec(&json!({ "embedding": vector(1, 1024),
        "inputTextTokenCount": 44, "embeddingsByType": { "float": vector(1, 1024) } }))
    .unwrap();
    let bedrock_cohere_body = serde_json::to_vec(&json!({ "id": "x", "embeddings": vectors,
        "response_type": "embeddings_floats", "texts": texts() }))
    .unwrap();

    let mut g = c.benchmark_group("embeddings/response");
    g.bench_function("openai float (16 x 1536)", |b| {
        b.iter(|| wire::decode_response(black_box(&openai_float), &request).unwrap())
    });
    g.bench_function("openai base64 (16 x 1536)", |b| {
        b.iter(|| wire::decode_response(black_box(&openai_b64), &request).unwrap())
    });
    g.bench_function("gemini (16 x 1536)", |b| {
        b.iter(|| gemini::embed::decode_answer(black_box(&gemini_body), true).unwrap())
    });
    g.bench_function("cohere (16 x 1536)", |b| {
        b.iter(|| cohere::embed::decode_answer(black_box(&cohere_body)).unwrap())
    });
    g.bench_function("bedrock titan (1 x 1024, one call)", |b| {
        b.iter(|| {
            bedrock::embed::decode_answer(bedrock::embed::Family::TitanV2, black_box(&titan_body))
                .unwrap()
        })
    });
    g.bench_function("bedrock cohere (16 x 1536)", |b| {
        b.iter(|| {
            bedrock::embed::decode_answer(
                bedrock::embed::Family::CohereV4,
                black_box(&bedrock_cohere_body),
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
