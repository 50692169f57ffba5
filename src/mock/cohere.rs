//! Cohere's v2 chat wire format as the simulated provider speaks it (API reference:
//! "Chat" v2, "Streaming", "Tool use streaming"): `POST /v2/chat` with a bearer key;
//! events named by `type` (`message-start`, `content-*`, `tool-call-*`, `message-end`) with
//! no terminator after `message-end`; errors as `{"id", "message"}`.

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use super::{
    ConnReset, MockState,
    answer::{
        Answer, Ask, Finish, empty_object, estimate_tokens, last_text, malformed_json, split_in,
    },
    stream::{self, SseAnswer},
};

pub(super) async fn chat(
    State(state): State<Arc<MockState>>,
    Extension(conn): Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fault, request) = match super::preamble(&state, &conn, &headers, &body, error).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("bearer "));
    if !bearer {
        return error(StatusCode::UNAUTHORIZED, "no api key supplied", None);
    }
    let Some(request) = request else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid request: body is not valid JSON",
            None,
        );
    };
    if let Err(message) = validate(&request) {
        return error(StatusCode::BAD_REQUEST, &message, None);
    }
    let n = state.ids.fetch_add(1, Ordering::Relaxed);
    let id = format!("mock-cohere-{n}");
    let answer = Answer::to(&ask(&request), &state.name()).reporting(fault.usage);
    if request.get("stream").and_then(Value::as_bool) != Some(true) {
        if fault.malformed {
            return malformed_json("{\"id\": \"x\", \"message\": {");
        }
        return Json(whole(&answer, &id, n)).into_response();
    }
    let sse = SseAnswer {
        events: events(&answer, &id, n),
        terminator: None,
        error_event: stream::named(
            "message-end",
            &json!({ "type": "message-end", "delta": { "finish_reason": "ERROR",
                "error": "simulated in-stream error" } }),
        ),
    };
    stream::respond(state.clone(), conn, fault, sse)
}

fn validate(r: &Value) -> Result<(), String> {
    if r.get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("invalid request: model must be specified".into());
    }
    let Some(messages) = r
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return Err("invalid request: messages must not be empty".into());
    };
    let mut open_calls: Vec<&str> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match m.get("role").and_then(Value::as_str) {
            Some("system" | "user") => {}
            Some("assistant") => {
                open_calls.extend(
                    m.get("tool_calls")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.get("id").and_then(Value::as_str)),
                );
            }
            Some("tool") => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                if !open_calls.contains(&id) {
                    return Err(format!(
                        "invalid request: messages[{i}]: unknown tool_call_id `{id}`"
                    ));
                }
                if m.get("content").is_none() {
                    return Err(format!(
                        "invalid request: messages[{i}].content is required"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "invalid request: messages[{i}]: unknown role {other:?}"
                ));
            }
        }
    }
    match r.get("tool_choice").and_then(Value::as_str) {
        None | Some("REQUIRED" | "NONE") => {}
        Some(other) => {
            return Err(format!(
                "invalid request: tool_choice `{other}` must be REQUIRED or NONE"
            ));
        }
    }
    if let Some(p) = r.get("p").and_then(Value::as_f64)
        && !(0.01..=0.99).contains(&p)
    {
        return Err("invalid request: p must be between 0.01 and 0.99".into());
    }
    if let Some(t) = r.get("temperature").and_then(Value::as_f64)
        && !(0.0..=1.0).contains(&t)
    {
        return Err("invalid request: temperature must be between 0 and 1".into());
    }
    Ok(())
}

fn ask(r: &Value) -> Ask {
    let messages = r
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let tools: Vec<(String, Value)> = r
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let name = t.pointer("/function/name")?.as_str()?.to_owned();
            Some((
                name,
                t.pointer("/function/parameters")
                    .cloned()
                    .unwrap_or_else(empty_object),
            ))
        })
        .collect();
    let schema = match r.pointer("/response_format/type").and_then(Value::as_str) {
        Some("json_object") => Some(
            r.pointer("/response_format/json_schema")
                .cloned()
                .unwrap_or(json!({"type": "object", "properties": {"answer": {"type": "string"}}})),
        ),
        _ => None,
    };
    Ask {
        tools,
        forced_tool: None,
        tools_off: r.get("tool_choice").and_then(Value::as_str) == Some("NONE"),
        parallel: r.get("tool_choice").and_then(Value::as_str) == Some("REQUIRED"),
        schema,
        last_user_text: last_text(messages, "content", |role| role == Some("user")),
        max_tokens: r.get("max_tokens").and_then(Value::as_u64),
        prompt_tokens: estimate_tokens(messages),
    }
}

/// A Cohere error answer.
pub(super) fn error(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let body = json!({ "id": "mock-error", "message": message });
    super::error_answer(status, &body, retry_after)
}

fn finish(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "COMPLETE",
        Finish::Length => "MAX_TOKENS",
        Finish::ToolUse => "TOOL_CALL",
    }
}

fn usage(a: &Answer) -> Value {
    json!({ "billed_units": { "input_tokens": a.prompt_tokens, "output_tokens": a.completion_tokens },
            "tokens": { "input_tokens": a.prompt_tokens, "output_tokens": a.completion_tokens } })
}

fn call_id(n: u64, k: usize) -> String {
    if k == 0 {
        format!("mock_tool_call_{n}")
    } else {
        format!("mock_tool_call_{n}_{k}")
    }
}

fn whole(a: &Answer, id: &str, n: u64) -> Value {
    let mut message = json!({ "role": "assistant" });
    if let Some(text) = &a.content {
        message["content"] = json!([{ "type": "text", "text": text }]);
    }
    if !a.tool_calls.is_empty() {
        message["tool_plan"] = json!("I will call the tool.");
        let calls: Vec<Value> = a
            .tool_calls
            .iter()
            .enumerate()
            .map(|(k, (name, args))| {
                json!({ "id": call_id(n, k), "type": "function",
                "function": { "name": name, "arguments": args.to_string() } })
            })
            .collect();
        message["tool_calls"] = json!(calls);
    }
    json!({ "id": id, "finish_reason": finish(a.finish), "message": message, "usage": usage(a) })
}

fn events(a: &Answer, id: &str, n: u64) -> Vec<Bytes> {
    let ev = |v: Value| {
        let kind = v["type"].as_str().unwrap_or("").to_owned();
        stream::named(&kind, &v)
    };
    let mut out = vec![ev(
        json!({ "type": "message-start", "id": id, "delta": { "message": { "role": "assistant" } } }),
    )];
    if let Some(text) = &a.content {
        out.push(ev(json!({ "type": "content-start", "index": 0,
            "delta": { "message": { "content": { "type": "text", "text": "" } } } })));
        for word in text.split_inclusive(' ') {
            out.push(ev(json!({ "type": "content-delta", "index": 0,
                "delta": { "message": { "content": { "text": word } } } })));
        }
        out.push(ev(json!({ "type": "content-end", "index": 0 })));
    }
    if !a.tool_calls.is_empty() {
        out.push(ev(json!({ "type": "tool-plan-delta", "delta": { "message": { "tool_plan": "I will call the tool." } } })));
    }
    for (k, (name, args)) in a.tool_calls.iter().enumerate() {
        out.push(ev(json!({ "type": "tool-call-start", "index": k, "delta": { "message": { "tool_calls": {
            "id": call_id(n, k), "type": "function", "function": { "name": name, "arguments": "" } } } } })));
        for piece in split_in(&args.to_string(), 3) {
            out.push(ev(json!({ "type": "tool-call-delta", "index": k,
                "delta": { "message": { "tool_calls": { "function": { "arguments": piece } } } } })));
        }
        out.push(ev(json!({ "type": "tool-call-end", "index": k })));
    }
    out.push(ev(json!({ "type": "message-end", "delta": { "finish_reason": finish(a.finish), "usage": usage(a) } })));
    out
}
