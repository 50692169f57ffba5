//! The OpenAI chat-completions wire format as the simulated provider speaks it (API
//! reference: "Create chat completion", "The chat completion object", "The chat completion
//! chunk object"; streams end with `data: [DONE]`; with `stream_options.include_usage` every
//! chunk carries `"usage": null` and a last chunk with empty `choices` carries the usage).

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{
    ConnReset, MockState,
    answer::{
        Answer, Ask, Finish, empty_object, estimate_tokens, last_text, malformed_json, now,
        split_in,
    },
    stream::{self, SseAnswer},
};

pub(super) async fn models() -> Json<Value> {
    Json(json!({ "object": "list", "data": [
        { "id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system" }
    ]}))
}

pub(super) async fn chat_completions(
    State(state): State<Arc<MockState>>,
    Extension(conn): Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fault, request) = match json_request(&state, &conn, &headers, &body).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Err(message) = validate(&request) {
        return error(StatusCode::BAD_REQUEST, &message, None);
    }
    let id = format!("chatcmpl-mock{}", state.ids.fetch_add(1, Ordering::Relaxed));
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock");
    let answer = Answer::to(&ask(&request), &state.name()).reporting(fault.usage);
    if request.get("stream").and_then(Value::as_bool) != Some(true) {
        if fault.malformed {
            return malformed_json("{\"id\": \"chatcmpl-broken\", \"choices\": [");
        }
        return Json(completion(&answer, &id, model)).into_response();
    }
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let sse = SseAnswer {
        events: chunks(&answer, &id, model, include_usage, fault.chunk_chars)
            .iter()
            .map(stream::data)
            .collect(),
        terminator: Some(Bytes::from_static(b"data: [DONE]\n\n")),
        error_event: stream::data(&json!({ "error": { "message": "simulated in-stream error",
            "type": "server_error", "param": null, "code": "server_error" } })),
    };
    stream::respond(state.clone(), conn, fault, sse)
}

/// The mock's common head (stats, the fault) and the body as JSON, or OpenAI's 400 for a
/// body that is not: every OpenAI-format endpoint starts here.
pub(super) async fn json_request(
    state: &MockState,
    conn: &ConnReset,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(super::fault::Fault, Value), Response> {
    let (fault, request) = super::preamble(state, conn, headers, body, error).await?;
    let request = request.ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
            None,
        )
    })?;
    Ok((fault, request))
}

/// Azure OpenAI's own checks before any route answers: an `api-key` header, and on the
/// deployment routes (`query` given) an `api-version` query parameter. The refusal, when
/// one fails.
pub(super) fn azure_refusal(
    headers: &HeaderMap,
    query: Option<&std::collections::HashMap<String, String>>,
) -> Option<Response> {
    if !headers.contains_key("api-key") {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "Access denied due to missing subscription key.",
            None,
        ));
    }
    if query.is_some_and(|q| q.get("api-version").is_none_or(String::is_empty)) {
        return Some(error(
            StatusCode::NOT_FOUND,
            "Missing API version: add the api-version query parameter.",
            None,
        ));
    }
    None
}

/// Azure OpenAI's deployment route: the same answers, after Azure's own checks (an
/// `api-key` header and an `api-version` query parameter).
pub(super) async fn azure_chat_completions(
    state: State<Arc<MockState>>,
    conn: Extension<ConnReset>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = azure_refusal(&headers, Some(&query)) {
        return refused;
    }
    chat_completions(state, conn, headers, body).await
}

/// The checks the real API makes before answering, as far as the mock needs them.
fn validate(request: &Value) -> Result<(), String> {
    match request.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return Err("you must provide a model parameter".to_owned()),
    }
    match request.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        _ => return Err("'messages' must be a non-empty array".to_owned()),
    }
    Ok(())
}

fn ask(request: &Value) -> Ask {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let choice = request.get("tool_choice");
    let schema = match request
        .pointer("/response_format/type")
        .and_then(Value::as_str)
    {
        Some("json_schema") => Some(
            request
                .pointer("/response_format/json_schema/schema")
                .cloned()
                .unwrap_or(json!({"type": "object"})),
        ),
        Some("json_object") => {
            Some(json!({"type": "object", "properties": {"answer": {"type": "string"}}}))
        }
        _ => None,
    };
    Ask {
        tools: request
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let name = t.pointer("/function/name")?.as_str()?.to_owned();
                let schema = t
                    .pointer("/function/parameters")
                    .cloned()
                    .unwrap_or_else(empty_object);
                Some((name, schema))
            })
            .collect(),
        forced_tool: choice
            .and_then(|c| c.pointer("/function/name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        tools_off: choice.and_then(Value::as_str) == Some("none"),
        parallel: choice.and_then(Value::as_str) == Some("required")
            && request.get("parallel_tool_calls").and_then(Value::as_bool) != Some(false),
        schema,
        last_user_text: last_text(messages, "content", |role| role == Some("user")),
        max_tokens: request
            .get("max_completion_tokens")
            .or_else(|| request.get("max_tokens"))
            .and_then(Value::as_u64),
        prompt_tokens: estimate_tokens(messages),
    }
}

/// An OpenAI error answer.
pub(super) fn error(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let (kind, code) = match status.as_u16() {
        401 => ("invalid_request_error", "invalid_api_key"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        400..=499 => ("invalid_request_error", "invalid_request"),
        _ => ("server_error", "server_error"),
    };
    let body =
        json!({ "error": { "message": message, "type": kind, "param": null, "code": code } });
    super::error_answer(status, &body, retry_after)
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolUse => "tool_calls",
    }
}

fn usage(a: &Answer) -> Value {
    json!({
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "total_tokens": a.prompt_tokens + a.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": a.cached_tokens, "audio_tokens": 0 },
        "completion_tokens_details": { "reasoning_tokens": a.reasoning_tokens, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0 }
    })
}

fn call_id(id: &str, k: usize) -> String {
    let base = format!("call_{}", id.trim_start_matches("chatcmpl-"));
    if k == 0 { base } else { format!("{base}_{k}") }
}

fn completion(a: &Answer, id: &str, model: &str) -> Value {
    let mut message = json!({ "role": "assistant", "content": a.content, "refusal": null });
    if !a.tool_calls.is_empty() {
        let calls: Vec<Value> = a
            .tool_calls
            .iter()
            .enumerate()
            .map(|(k, (name, args))| {
                json!({ "id": call_id(id, k), "type": "function",
                "function": { "name": name, "arguments": args.to_string() } })
            })
            .collect();
        message["tool_calls"] = json!(calls);
    }
    json!({
        "id": id, "object": "chat.completion", "created": now(), "model": model,
        "choices": [{ "index": 0, "message": message, "logprobs": null,
                      "finish_reason": finish_reason(a.finish) }],
        "usage": usage(a),
        "system_fingerprint": "fp_switchyard_mock"
    })
}

/// The SSE data payloads of the stream, `[DONE]` excluded.
fn chunks(
    a: &Answer,
    id: &str,
    model: &str,
    include_usage: bool,
    chunk_chars: Option<usize>,
) -> Vec<Value> {
    let pieces = |text: &str, default: Vec<String>| match chunk_chars {
        Some(n) => text
            .chars()
            .collect::<Vec<_>>()
            .chunks(n)
            .map(|c| c.iter().collect::<String>())
            .collect(),
        None => default,
    };
    let created = now();
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut c = json!({ "id": id, "object": "chat.completion.chunk", "created": created,
            "model": model, "system_fingerprint": "fp_switchyard_mock",
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }] });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut out = vec![chunk(
        json!({ "role": "assistant", "content": "", "refusal": null }),
        None,
    )];
    if let Some(text) = &a.content {
        let words = text.split_inclusive(' ').map(str::to_owned).collect();
        for word in pieces(text, words) {
            out.push(chunk(json!({ "content": word }), None));
        }
    }
    for (k, (name, args)) in a.tool_calls.iter().enumerate() {
        out.push(chunk(
            json!({ "tool_calls": [{ "index": k, "id": call_id(id, k), "type": "function",
                "function": { "name": name, "arguments": "" } }] }),
            None,
        ));
        let args = args.to_string();
        let thirds = split_in(&args, 3);
        for piece in pieces(&args, thirds) {
            out.push(chunk(
                json!({ "tool_calls": [{ "index": k, "function": { "arguments": piece } }] }),
                None,
            ));
        }
    }
    out.push(chunk(json!({}), Some(finish_reason(a.finish))));
    if include_usage {
        out.push(
            json!({ "id": id, "object": "chat.completion.chunk", "created": created,
            "model": model, "system_fingerprint": "fp_switchyard_mock",
            "choices": [], "usage": usage(a) }),
        );
    }
    out
}
