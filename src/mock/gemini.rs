//! The Gemini API wire format as the simulated provider speaks it (API reference:
//! "models.generateContent", "models.streamGenerateContent", GenerateContentResponse):
//! `POST /v1beta/models/{model}:generateContent` or `:streamGenerateContent?alt=sse` with
//! `x-goog-api-key`; streams are frames of whole responses with no terminator; errors are
//! `{"error": {"code", "message", "status"}}`.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{
    ConnReset, MockState,
    answer::{Answer, Ask, Finish, empty_object, last_text, malformed_json},
    stream::{self, SseAnswer},
};

pub(super) async fn models(
    State(state): State<Arc<MockState>>,
    Extension(conn): Extension<ConnReset>,
    Path(model_method): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fault, request) = match super::preamble(&state, &conn, &headers, &body, error).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Some((model, method)) = model_method.split_once(':') else {
        return error(StatusCode::NOT_FOUND, "unknown method", None);
    };
    if matches!(method, "embedContent" | "batchEmbedContents") {
        if !headers.contains_key("x-goog-api-key") && !query.contains_key("key") {
            return error(
                StatusCode::FORBIDDEN,
                "Method doesn't allow unregistered callers. Please use an API key.",
                None,
            );
        }
        return super::embeddings::gemini(model, method, &fault, request);
    }
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("unknown method {method}"),
                None,
            );
        }
    };
    if !headers.contains_key("x-goog-api-key") && !query.contains_key("key") {
        return error(
            StatusCode::FORBIDDEN,
            "Method doesn't allow unregistered callers. Please use an API key.",
            None,
        );
    }
    let Some(request) = request else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid JSON payload received.",
            None,
        );
    };
    if let Err(message) = validate(&request) {
        return error(StatusCode::BAD_REQUEST, &message, None);
    }
    let n = state.ids.fetch_add(1, Ordering::Relaxed);
    let answer = Answer::to(&ask(&request), &state.name()).reporting(fault.usage);
    if !stream {
        if fault.malformed {
            return malformed_json("{\"candidates\": [");
        }
        return Json(whole(&answer, model, n)).into_response();
    }
    if query.get("alt").map(String::as_str) != Some("sse") {
        return error(
            StatusCode::BAD_REQUEST,
            "the mock streams SSE only: add alt=sse",
            None,
        );
    }
    let sse = SseAnswer {
        events: frames(&answer, model, n).iter().map(stream::data).collect(),
        terminator: None,
        error_event: stream::data(&json!({ "error": { "code": 503,
            "message": "simulated in-stream error", "status": "UNAVAILABLE" } })),
    };
    stream::respond(state.clone(), conn, fault, sse)
}

fn validate(r: &Value) -> Result<(), String> {
    let Some(contents) = r
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        return Err("* GenerateContentRequest.contents: contents is not specified".into());
    };
    let mut pending_calls = 0usize;
    for (i, c) in contents.iter().enumerate() {
        let role = c.get("role").and_then(Value::as_str).unwrap_or("user");
        if role != "user" && role != "model" {
            return Err(format!(
                "* GenerateContentRequest.contents[{i}].role: must be user or model"
            ));
        }
        let Some(parts) = c
            .get("parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
        else {
            return Err(format!(
                "* GenerateContentRequest.contents[{i}].parts: must not be empty"
            ));
        };
        let count = |key: &str| parts.iter().filter(|p| p.get(key).is_some()).count();
        if pending_calls > 0 && count("functionResponse") != pending_calls {
            return Err(format!(
                "Please ensure that the number of function response parts is equal to the number \
                 of function call parts of the function call turn (contents[{i}])."
            ));
        }
        pending_calls = if role == "model" {
            count("functionCall")
        } else {
            0
        };
        for (j, p) in parts.iter().enumerate() {
            let known = [
                "text",
                "inlineData",
                "fileData",
                "functionCall",
                "functionResponse",
            ];
            if !known.iter().any(|k| p.get(*k).is_some()) {
                return Err(format!("* contents[{i}].parts[{j}]: unknown or empty part"));
            }
        }
    }
    Ok(())
}

fn ask(r: &Value) -> Ask {
    let contents = r
        .get("contents")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mode = r
        .pointer("/toolConfig/functionCallingConfig/mode")
        .and_then(Value::as_str);
    Ask {
        tools: r
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("functionDeclarations")?.as_array())
            .flatten()
            .filter_map(|d| {
                let name = d.get("name")?.as_str()?.to_owned();
                let schema = d
                    .get("parametersJsonSchema")
                    .or_else(|| d.get("parameters"))
                    .cloned()
                    .unwrap_or_else(empty_object);
                Some((name, schema))
            })
            .collect(),
        forced_tool: r
            .pointer("/toolConfig/functionCallingConfig/allowedFunctionNames/0")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tools_off: mode == Some("NONE"),
        parallel: mode == Some("ANY")
            && r.pointer("/toolConfig/functionCallingConfig/allowedFunctionNames")
                .is_none(),
        schema: r
            .pointer("/generationConfig/responseJsonSchema")
            .or_else(|| r.pointer("/generationConfig/responseSchema"))
            .cloned()
            .or_else(|| {
                (r.pointer("/generationConfig/responseMimeType")
                    .and_then(Value::as_str)
                    == Some("application/json"))
                .then(|| json!({"type": "object", "properties": {"answer": {"type": "string"}}}))
            }),
        last_user_text: last_text(contents, "parts", |role| role != Some("model")),
        max_tokens: r
            .pointer("/generationConfig/maxOutputTokens")
            .and_then(Value::as_u64),
        prompt_tokens: contents
            .iter()
            .map(|c| 4 + (c.to_string().len() as u64).div_ceil(4))
            .sum(),
    }
}

/// A Gemini error answer.
pub(super) fn error(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let kind = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let body = json!({ "error": { "code": status.as_u16(), "message": message, "status": kind } });
    super::error_answer(status, &body, retry_after)
}

fn finish(f: Finish) -> &'static str {
    match f {
        Finish::Length => "MAX_TOKENS",
        Finish::Stop | Finish::ToolUse => "STOP",
    }
}

fn usage(a: &Answer) -> Value {
    // promptTokenCount includes the cached content; candidatesTokenCount excludes thoughts.
    let mut u = json!({ "promptTokenCount": a.prompt_tokens,
            "candidatesTokenCount": a.completion_tokens - a.reasoning_tokens,
            "totalTokenCount": a.prompt_tokens + a.completion_tokens });
    if a.cached_tokens > 0 {
        u["cachedContentTokenCount"] = json!(a.cached_tokens);
    }
    if a.reasoning_tokens > 0 {
        u["thoughtsTokenCount"] = json!(a.reasoning_tokens);
    }
    u
}

fn frame(
    parts: Value,
    finish_reason: Option<&str>,
    usage: Option<Value>,
    model: &str,
    n: u64,
) -> Value {
    let mut candidate = json!({ "content": { "role": "model", "parts": parts }, "index": 0 });
    if let Some(f) = finish_reason {
        candidate["finishReason"] = json!(f);
    }
    let mut v = json!({ "candidates": [candidate], "modelVersion": model, "responseId": format!("mockresp{n}") });
    if let Some(u) = usage {
        v["usageMetadata"] = u;
    }
    v
}

fn whole(a: &Answer, model: &str, n: u64) -> Value {
    let mut parts = Vec::new();
    if let Some(text) = &a.content {
        parts.push(json!({ "text": text }));
    }
    for (name, args) in &a.tool_calls {
        parts.push(json!({ "functionCall": { "name": name, "args": args } }));
    }
    frame(
        json!(parts),
        Some(finish(a.finish)),
        Some(usage(a)),
        model,
        n,
    )
}

fn frames(a: &Answer, model: &str, n: u64) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(text) = &a.content {
        // Gemini streams text in pieces of several words.
        let words: Vec<&str> = text.split_inclusive(' ').collect();
        for piece in words.chunks(2) {
            out.push(frame(
                json!([{ "text": piece.concat() }]),
                None,
                None,
                model,
                n,
            ));
        }
    }
    if !a.tool_calls.is_empty() {
        // Parallel function calls arrive together, each whole.
        let calls: Vec<Value> = a
            .tool_calls
            .iter()
            .map(|(name, args)| json!({ "functionCall": { "name": name, "args": args } }))
            .collect();
        out.push(frame(json!(calls), None, None, model, n));
    }
    out.push(frame(
        json!([{ "text": "" }]),
        Some(finish(a.finish)),
        Some(usage(a)),
        model,
        n,
    ));
    out
}
