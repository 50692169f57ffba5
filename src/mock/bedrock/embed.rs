//! Bedrock's `InvokeModel` (`POST /model/{modelId}/invoke`) for the embedding models, as
//! the Bedrock user guide documents their bodies: Titan Text Embeddings (`inputText`; V2
//! `dimensions` 256/512/1024 and `normalize`) answering `embedding`,
//! `inputTextTokenCount` and `embeddingsByType`; Cohere Embed (`texts`, 1 to 96, each at
//! most 2048 characters; `input_type` required) answering `embeddings` as floats, the
//! input tokens in `X-Amzn-Bedrock-Input-Token-Count`. Signed and faulted like Converse.

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use serde_json::{Value, json};

use super::{error, typed_error, validate};
use crate::mock::{
    ConnReset, MockState,
    answer::malformed_json,
    embeddings::{reported, text_tokens, vector},
};

pub(in crate::mock) async fn invoke(
    State(state): State<Arc<MockState>>,
    Extension(conn): Extension<ConnReset>,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fault, request) = match crate::mock::preamble(&state, &conn, &headers, &body, error).await
    {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Err((kind, message)) = validate::signature(&headers, uri.path(), &body) {
        return typed_error(StatusCode::FORBIDDEN, kind, &message, None);
    }
    let Some(request) = request else {
        return error(StatusCode::BAD_REQUEST, "Malformed input request", None);
    };
    let answer = if model.contains("amazon.titan-embed-text") {
        titan(&model, &request)
    } else if model.contains("cohere.embed") {
        cohere(&model, &request, state.ids.fetch_add(1, Ordering::Relaxed))
    } else {
        Err(format!(
            "The provided model identifier is invalid or is not an embedding model: {model}"
        ))
    };
    let (body, tokens) = match answer {
        Ok(a) => a,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message, None),
    };
    if fault.malformed {
        return malformed_json("{\"embedding\": [");
    }
    let tokens = reported(&fault, tokens);
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(
        "x-amzn-bedrock-input-token-count",
        HeaderValue::from(tokens),
    );
    resp
}

fn titan(model: &str, r: &Value) -> Result<(Value, u64), String> {
    let v2 = model.contains("titan-embed-text-v2");
    let allowed: &[&str] = if v2 {
        &["inputText", "dimensions", "normalize", "embeddingTypes"]
    } else {
        &["inputText"]
    };
    if let Some(obj) = r.as_object()
        && let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str()))
    {
        return Err(format!(
            "Malformed input request: extraneous key [{k}] is not permitted"
        ));
    }
    let text = r
        .get("inputText")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("Malformed input request: #: required key [inputText] not found")?;
    let dims = match r.get("dimensions") {
        None => 1024,
        Some(d) => match d.as_u64() {
            Some(d @ (256 | 512 | 1024)) => d as usize,
            _ => return Err("Malformed input request: #/dimensions: 256, 512 or 1024".into()),
        },
    };
    if r.get("normalize").is_some_and(|n| !n.is_boolean()) {
        return Err("Malformed input request: #/normalize: expected type: Boolean".into());
    }
    let v = vector(model, text, dims);
    let tokens = text_tokens(text);
    Ok((
        json!({ "embedding": v, "inputTextTokenCount": tokens,
                "embeddingsByType": { "float": v } }),
        tokens,
    ))
}

fn cohere(model: &str, r: &Value, n: u64) -> Result<(Value, u64), String> {
    let texts: Vec<&str> = r
        .get("texts")
        .and_then(Value::as_array)
        .ok_or("Malformed input request: #: required key [texts] not found")?
        .iter()
        .map(|t| {
            t.as_str()
                .ok_or("Malformed input request: #/texts: expected strings")
        })
        .collect::<Result<_, _>>()?;
    if texts.is_empty() || texts.len() > 96 {
        return Err(format!(
            "Malformed input request: #/texts: expected 1 to 96 items, got {}",
            texts.len()
        ));
    }
    if texts.iter().any(|t| t.chars().count() > 2048) {
        return Err(
            "Malformed input request: #/texts: a text is longer than 2048 characters".into(),
        );
    }
    if r.get("input_type").and_then(Value::as_str).is_none() {
        return Err("Malformed input request: #: required key [input_type] not found".into());
    }
    let dims = match r.get("output_dimension") {
        None => 1024,
        Some(d) if model.contains("embed-v4") => match d.as_u64() {
            Some(d @ (256 | 512 | 1024 | 1536)) => d as usize,
            _ => return Err("Malformed input request: #/output_dimension".into()),
        },
        Some(_) => {
            return Err(
                "Malformed input request: extraneous key [output_dimension] is not permitted"
                    .into(),
            );
        }
    };
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| vector(model, t, dims)).collect();
    let tokens = texts.iter().map(|t| text_tokens(t)).sum();
    Ok((
        json!({ "id": format!("mock-embed-{n}"), "embeddings": vectors,
                "response_type": "embeddings_floats", "texts": texts }),
        tokens,
    ))
}
