//! The embedding endpoints of the simulated providers, each as its API reference documents
//! it, with the same faults as chat (latency, reset, status, malformed, `usage=`):
//! - OpenAI `POST /v1/embeddings` (and Azure's deployment route): `model` and `input`
//!   required; strings non-empty; at most 2048 inputs; `dimensions` from 1 to the model's
//!   own (3072 for text-embedding-3-large, else 1536) and not for `text-embedding-ada-002`;
//!   `encoding_format` `float` or `base64`;
//! - Gemini `models/{model}:embedContent` and `:batchEmbedContents` (at most 100
//!   requests, each naming the URL's model); answers carry no token counts, as Gemini's;
//! - Cohere `POST /v2/embed`: `model`, `input_type` and `embedding_types` required, at
//!   most 96 texts, `output_dimension` one of 256, 512, 1024, 1536;
//! - Bedrock's `InvokeModel` bodies live beside Converse (`bedrock/embed.rs`).
//!
//! Vectors are deterministic: seeded from a hash of the model and the text, unit length,
//! as long as `dimensions` asks (else the model's default), so a test can compare answers
//! across formats and requests.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{ConnReset, MockState, answer::malformed_json, fault::Fault};
use crate::embeddings::wire::to_base64;

/// The vector length when the request does not ask for one.
pub(super) const DEFAULT_DIMENSIONS: usize = 1536;

/// A unit-length vector of `dims` values, the same for the same `model` and `text`.
pub(super) fn vector(model: &str, text: &str, dims: usize) -> Vec<f32> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for b in model.bytes().chain([0]).chain(text.bytes()) {
        state = (state ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            // xorshift64*: a cheap, well-spread sequence from the seed.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let x = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// About four characters a token, at least one.
pub(super) fn text_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

/// The input tokens to report: the fault's `usage=` prompt when set, else the estimate.
pub(super) fn reported(fault: &Fault, estimate: u64) -> u64 {
    fault.usage.map_or(estimate, |u| u.prompt)
}

pub(super) async fn openai(
    State(state): State<Arc<MockState>>,
    Extension(conn): Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use super::openai::error;
    let (fault, request) = match super::openai::json_request(&state, &conn, &headers, &body).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let inputs = match validate_openai(&request) {
        Ok(i) => i,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message, None),
    };
    if fault.malformed {
        return malformed_json("{\"object\": \"list\", \"data\": [");
    }
    let model = request.get("model").and_then(Value::as_str).unwrap_or("");
    let dims = request
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_DIMENSIONS, |d| d as usize);
    let base64 = request.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let (text, n) = match input {
                OpenAiInput::Text(t) => (t.clone(), text_tokens(t)),
                OpenAiInput::Tokens(t) => (format!("{t:?}"), t.len() as u64),
            };
            tokens += n;
            let v = vector(model, &text, dims);
            let embedding = if base64 {
                Value::from(to_base64(&v))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let tokens = reported(&fault, tokens);
    Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens }
    }))
    .into_response()
}

/// Azure OpenAI's deployment route for embeddings: Azure's checks, then the same answer.
pub(super) async fn azure(
    state: State<Arc<MockState>>,
    conn: Extension<ConnReset>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = super::openai::azure_refusal(&headers, Some(&query)) {
        return refused;
    }
    openai(state, conn, headers, body).await
}

enum OpenAiInput {
    Text(String),
    Tokens(Vec<u64>),
}

/// The checks OpenAI's "Create embeddings" makes on its parameters.
fn validate_openai(r: &Value) -> Result<Vec<OpenAiInput>, String> {
    let model = match r.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.as_str(),
        _ => return Err("you must provide a model parameter".into()),
    };
    let input = r.get("input").ok_or("'input' is a required property")?;
    let bad = || "'$.input' is invalid. Please check the API reference.".to_owned();
    let inputs: Vec<OpenAiInput> = match input {
        Value::String(s) if !s.is_empty() => vec![OpenAiInput::Text(s.clone())],
        Value::Array(items) if !items.is_empty() => {
            if items.len() > crate::embeddings::MAX_INPUTS {
                return Err(format!(
                    "'$.input' is invalid: at most {} inputs",
                    crate::embeddings::MAX_INPUTS
                ));
            }
            if items.iter().all(Value::is_u64) {
                vec![OpenAiInput::Tokens(
                    items.iter().filter_map(Value::as_u64).collect(),
                )]
            } else {
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) if !s.is_empty() => Ok(OpenAiInput::Text(s.clone())),
                        Value::Array(t) if !t.is_empty() && t.iter().all(Value::is_u64) => Ok(
                            OpenAiInput::Tokens(t.iter().filter_map(Value::as_u64).collect()),
                        ),
                        _ => Err(bad()),
                    })
                    .collect::<Result<_, _>>()?
            }
        }
        _ => return Err(bad()),
    };
    match r.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(d) if d.as_u64().is_some_and(|d| d >= 1) => {
            if model.starts_with("text-embedding-ada-002") {
                return Err("This model does not support specifying dimensions.".into());
            }
            let most = if model.starts_with("text-embedding-3-large") {
                3072
            } else {
                DEFAULT_DIMENSIONS as u64
            };
            if d.as_u64().is_some_and(|d| d > most) {
                return Err(format!(
                    "'dimensions' must be at most {most} for this model"
                ));
            }
        }
        Some(_) => return Err("'dimensions' must be an integer of at least 1".into()),
    }
    match r.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "float" || f == "base64" => {}
        Some(_) => {
            return Err("'encoding_format' must be one of 'float' or 'base64'".into());
        }
    }
    Ok(inputs)
}

/// Gemini's `embedContent` and `batchEmbedContents` (called by the model-method route,
/// after its preamble).
pub(super) fn gemini(model: &str, method: &str, fault: &Fault, request: Option<Value>) -> Response {
    use super::gemini::error;
    let Some(request) = request else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid JSON payload received.",
            None,
        );
    };
    let one = |r: &Value| -> Result<Vec<f32>, String> {
        let text = r
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or("* EmbedContentRequest.content: contents must not be empty")?
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("");
        if let Some(m) = r.get("model").and_then(Value::as_str)
            && m != format!("models/{model}")
        {
            return Err(format!(
                "Model {m} in the request does not match the model models/{model} in the URL"
            ));
        }
        let dims = match r.get("outputDimensionality") {
            None => 3072,
            Some(d) => d
                .as_u64()
                .filter(|d| (1..=3072).contains(d))
                .ok_or("* outputDimensionality must be between 1 and 3072")?
                as usize,
        };
        Ok(vector(model, &text, dims))
    };
    if fault.malformed {
        return malformed_json("{\"embedding\": {");
    }
    let answer = if method == "embedContent" {
        one(&request).map(|v| json!({ "embedding": { "values": v } }))
    } else {
        match request.get("requests").and_then(Value::as_array) {
            Some(rs) if !rs.is_empty() && rs.len() <= 100 => rs
                .iter()
                .map(|r| one(r).map(|v| json!({ "values": v })))
                .collect::<Result<Vec<_>, _>>()
                .map(|e| json!({ "embeddings": e })),
            Some(rs) if rs.len() > 100 => Err(format!(
                "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one \
                 batch; got {}",
                rs.len()
            )),
            _ => Err("* BatchEmbedContentsRequest.requests: must not be empty".to_owned()),
        }
    };
    match answer {
        Ok(v) => Json(v).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, &message, None),
    }
}

/// Cohere's `POST /v2/embed`.
pub(super) async fn cohere(
    State(state): State<Arc<MockState>>,
    Extension(conn): Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use super::cohere::error;
    let (fault, request) = match super::preamble(&state, &conn, &headers, &body, error).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Some(request) = request else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid request: body is not JSON",
            None,
        );
    };
    let (model, texts, dims) = match validate_cohere(&request) {
        Ok(v) => v,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message, None),
    };
    if fault.malformed {
        return malformed_json("{\"id\": \"x\", \"embeddings\": {");
    }
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| vector(model, t, dims)).collect();
    let tokens = reported(&fault, texts.iter().map(|t| text_tokens(t)).sum());
    Json(json!({
        "id": format!("mock-embed-{}", state.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        "embeddings": { "float": vectors },
        "texts": texts,
        "meta": { "api_version": { "version": "2" }, "billed_units": { "input_tokens": tokens } },
        "response_type": "embeddings_by_type"
    }))
    .into_response()
}

fn validate_cohere(r: &Value) -> Result<(&str, Vec<&str>, usize), String> {
    let model = r
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or("invalid request: model is required")?;
    let texts: Vec<&str> = r
        .get("texts")
        .and_then(Value::as_array)
        .ok_or("invalid request: texts or images or inputs must be provided")?
        .iter()
        .map(|t| t.as_str().ok_or("invalid request: texts must be strings"))
        .collect::<Result<_, _>>()?;
    if texts.is_empty() || texts.len() > 96 {
        return Err(format!(
            "invalid request: texts must contain between 1 and 96 items, got {}",
            texts.len()
        ));
    }
    match r.get("input_type").and_then(Value::as_str) {
        Some("search_document" | "search_query" | "classification" | "clustering" | "image") => {}
        Some(other) => return Err(format!("invalid request: unknown input_type {other}")),
        None => {
            return Err(
                "invalid request: input_type is required for embed models v3 and higher".into(),
            );
        }
    }
    let types = r
        .get("embedding_types")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
        .ok_or("invalid request: embedding_types is required")?;
    if !types.iter().any(|t| t == "float") {
        return Err("invalid request: the mock answers embedding_types [\"float\"] only".into());
    }
    let dims = match r.get("output_dimension") {
        None | Some(Value::Null) => 1024,
        Some(d) => match d.as_u64() {
            Some(d @ (256 | 512 | 1024 | 1536)) => d as usize,
            _ => {
                return Err(
                    "invalid request: output_dimension must be one of 256, 512, 1024, 1536".into(),
                );
            }
        },
    };
    Ok((model, texts, dims))
}

/// The routes of `format`'s embeddings, added beside its chat routes.
pub(super) fn routes(
    format: super::MockFormat,
    router: axum::Router<Arc<MockState>>,
) -> axum::Router<Arc<MockState>> {
    use axum::routing::post;
    match format {
        super::MockFormat::OpenAi => router
            .route("/v1/embeddings", post(openai))
            .route("/embeddings", post(openai)),
        super::MockFormat::Azure => {
            router.route("/openai/deployments/{deployment}/embeddings", post(azure))
        }
        super::MockFormat::Cohere => router.route("/v2/embed", post(cohere)),
        // Bedrock's InvokeModel serves both embeddings and Anthropic's Messages
        // (`bedrock::invoke`, routed with Converse); Gemini's embed methods share the
        // model-method route; Anthropic has none.
        super::MockFormat::Bedrock | super::MockFormat::Gemini | super::MockFormat::Anthropic => {
            router
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_length_and_as_long_as_asked() {
        let a = vector("m", "hello", 64);
        assert_eq!(a, vector("m", "hello", 64));
        assert_ne!(a, vector("m", "hullo", 64));
        assert_eq!(a.len(), 64);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
