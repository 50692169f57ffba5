//! The Anthropic Messages wire format as the simulated provider speaks it (API reference:
//! "Messages", "Streaming messages", "Errors"): `POST /v1/messages` with `x-api-key` and
//! `anthropic-version`, content blocks, `tool_use`/`tool_result`, and the event stream
//! `message_start`, `content_block_start`/`_delta`/`_stop`, `ping`, `message_delta`,
//! `message_stop`; extended thinking (a signed `thinking` block; `thinking_delta` and
//! `signature_delta` in streams) and `POST /v1/messages/count_tokens`; errors as
//! `{"type": "error", "error": {"type", "message"}}`.

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
        Answer, Ask, Finish, empty_object, estimate_tokens, last_text, malformed_json, split_in,
    },
    stream::{self, SseAnswer},
};

const BLOCK_TYPES: &[&str] = &[
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
];

pub(super) async fn messages(
    State(state): State<Arc<MockState>>,
    Extension(conn): Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fault, request) = match super::preamble(&state, &conn, &headers, &body, error).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Some(refused) = check_headers(&headers) {
        return refused;
    }
    let Some(request) = request else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid JSON in the request body",
            None,
        );
    };
    if let Err(message) = validate(&request) {
        return error(StatusCode::BAD_REQUEST, &message, None);
    }
    let n = state.ids.fetch_add(1, Ordering::Relaxed);
    let id = format!("msg_mock{n}");
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock");
    let answer = Answer::to(&ask(&request), &state.name()).reporting(fault.usage);
    let thinking = Thought::for_request(&request, &answer);
    if request.get("stream").and_then(Value::as_bool) != Some(true) {
        if fault.malformed {
            return malformed_json("{\"id\": \"msg_broken\", \"content\": [");
        }
        return Json(message(&answer, thinking.as_ref(), &id, model, n)).into_response();
    }
    let sse = SseAnswer {
        events: events(&answer, thinking.as_ref(), &id, model, n),
        terminator: None,
        error_event: stream::named(
            "error",
            &json!({ "type": "error", "error": { "type": "overloaded_error", "message": "simulated in-stream error" } }),
        ),
    };
    stream::respond(state.clone(), conn, fault, sse)
}

/// `POST /v1/messages/count_tokens` (API reference, "Count tokens in a Message"): the
/// same headers and message checks as a create call, no `max_tokens`; answers
/// `{"input_tokens": N}` with N from the mock's own estimate (the system prompt and tool
/// definitions counted too).
pub(super) async fn count_tokens(
    State(state): State<Arc<MockState>>,
    Extension(conn): Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_fault, request) = match super::preamble(&state, &conn, &headers, &body, error).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Some(refused) = check_headers(&headers) {
        return refused;
    }
    let Some(request) = request else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid JSON in the request body",
            None,
        );
    };
    if let Some(field) = ["max_tokens", "stream"]
        .iter()
        .find(|f| request.get(**f).is_some())
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("{field}: Extra inputs are not permitted"),
            None,
        );
    }
    if let Err(message) = validate_messages(&request) {
        return error(StatusCode::BAD_REQUEST, &message, None);
    }
    Json(json!({ "input_tokens": count(&request) })).into_response()
}

/// The mock's input token count: the messages' estimate, plus a quarter token per
/// character of the system prompt and the tool definitions.
fn count(r: &Value) -> u64 {
    let messages = r
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let extra = [r.get("system"), r.get("tools")]
        .into_iter()
        .flatten()
        .map(|v| (v.to_string().len() as u64).div_ceil(4))
        .sum::<u64>();
    estimate_tokens(messages) + extra
}

/// The headers every Messages call needs: a key and the API version.
fn check_headers(headers: &HeaderMap) -> Option<Response> {
    if !headers.contains_key("x-api-key") {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "x-api-key header is required",
            None,
        ));
    }
    if !headers.contains_key("anthropic-version") {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "anthropic-version: header is required",
            None,
        ));
    }
    None
}

/// Whether the request asks for extended thinking.
fn thinking_enabled(r: &Value) -> bool {
    r.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled")
}

/// The mock's thinking and its signature: a digest of the text, so a thinking block sent
/// back in a later turn is checked the way Anthropic checks its own (a block whose text or
/// signature changed on the way is refused).
pub(super) struct Thought {
    thinking: String,
    signature: String,
}

impl Thought {
    /// The thinking of an answer to `request`, when it asks for thinking.
    pub(super) fn for_request(request: &Value, answer: &Answer) -> Option<Thought> {
        thinking_enabled(request).then(|| Thought::about(answer.content.as_deref()))
    }

    fn about(answer: Option<&str>) -> Thought {
        let thinking = format!(
            "The user wants an answer; {} characters should do.",
            answer.map_or(0, str::len)
        );
        Thought {
            signature: signature(&thinking),
            thinking,
        }
    }
}

/// A mock signature: base64-like characters (`+`, `/`, `=`) as Anthropic's have, so a
/// re-encoding on the way would show.
fn signature(thinking: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("switchyard-mock-thinking:{thinking}"));
    format!("EqMock+{}/sig==", hex::encode(digest))
}

/// The checks the real API makes before answering.
pub(super) fn validate(r: &Value) -> Result<(), String> {
    let max_tokens = match r.get("max_tokens").and_then(Value::as_u64) {
        Some(n) if n >= 1 => n,
        _ => return Err("max_tokens: Field required (an integer >= 1)".into()),
    };
    if thinking_enabled(r) {
        match r.pointer("/thinking/budget_tokens").and_then(Value::as_u64) {
            Some(b) if b < 1024 => {
                return Err(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                        .into(),
                );
            }
            Some(b) if b >= max_tokens => {
                return Err(format!(
                    "`max_tokens` must be greater than `thinking.budget_tokens` ({max_tokens} <= {b})"
                ));
            }
            Some(_) => {}
            None => return Err("thinking.enabled.budget_tokens: Field required".into()),
        }
    }
    validate_messages(r)
}

/// The checks shared by create and count: model, messages, system, blocks, tool pairing,
/// thinking signatures.
fn validate_messages(r: &Value) -> Result<(), String> {
    match r.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return Err("model: Field required".into()),
    }
    let Some(messages) = r
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return Err("messages: Field required (a non-empty array)".into());
    };
    match r.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            if blocks
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) != Some("text"))
            {
                return Err("system: only text blocks are allowed".into());
            }
        }
        Some(_) => return Err("system: must be a string or an array of text blocks".into()),
    }
    let mut pending_tool_uses: Vec<&str> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        let blocks: Vec<&Value> = match m.get("content") {
            Some(Value::String(s)) if !s.is_empty() => Vec::new(),
            Some(Value::Array(b)) if !b.is_empty() => b.iter().collect(),
            _ => {
                return Err(format!(
                    "messages.{i}.content: must be a non-empty string or array"
                ));
            }
        };
        for (j, b) in blocks.iter().enumerate() {
            let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
            if !BLOCK_TYPES.contains(&kind) {
                return Err(format!(
                    "messages.{i}.content.{j}.type: unknown block type `{kind}`"
                ));
            }
            if kind == "thinking" {
                let text = b.get("thinking").and_then(Value::as_str).unwrap_or("");
                match b.get("signature").and_then(Value::as_str) {
                    None | Some("") => {
                        return Err(format!(
                            "messages.{i}.content.{j}.thinking.signature: Field required"
                        ));
                    }
                    Some(sig) if sig.starts_with("EqMock+") && sig != signature(text) => {
                        return Err(format!(
                            "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                        ));
                    }
                    Some(_) => {}
                }
            }
            if kind == "text"
                && b.get("text")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                return Err(format!(
                    "messages.{i}.content.{j}: text content blocks must be non-empty"
                ));
            }
        }
        // Every tool_use must be answered by a tool_result at the start of the next turn.
        if !pending_tool_uses.is_empty() {
            let results: Vec<&str> = blocks
                .iter()
                .take_while(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .filter_map(|b| b.get("tool_use_id").and_then(Value::as_str))
                .collect();
            if let Some(missing) = pending_tool_uses.iter().find(|id| !results.contains(id)) {
                return Err(format!(
                    "messages.{i}: tool_use ids were found without tool_result blocks immediately after: {missing}"
                ));
            }
            pending_tool_uses.clear();
        }
        if role == "assistant" {
            pending_tool_uses = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
                .filter_map(|b| b.get("id").and_then(Value::as_str))
                .collect();
        }
    }
    Ok(())
}

pub(super) fn ask(r: &Value) -> Ask {
    let messages = r
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let choice = r.get("tool_choice");
    Ask {
        tools: r
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let name = t.get("name")?.as_str()?.to_owned();
                Some((
                    name,
                    t.get("input_schema").cloned().unwrap_or_else(empty_object),
                ))
            })
            .collect(),
        forced_tool: choice
            .filter(|c| c.get("type").and_then(Value::as_str) == Some("tool"))
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        tools_off: choice.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("none"),
        parallel: choice.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("any")
            && choice
                .and_then(|c| c.get("disable_parallel_tool_use"))
                .and_then(Value::as_bool)
                != Some(true),
        schema: r.pointer("/output_config/format/schema").cloned(),
        last_user_text: last_text(messages, "content", |role| role == Some("user")),
        max_tokens: r.get("max_tokens").and_then(Value::as_u64),
        prompt_tokens: estimate_tokens(messages),
    }
}

/// An Anthropic error answer (529 is `overloaded_error`).
pub(super) fn error(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let body = json!({ "type": "error", "error": { "type": kind, "message": message } });
    super::error_answer(status, &body, retry_after)
}

fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolUse => "tool_use",
    }
}

fn usage(a: &Answer) -> Value {
    // Anthropic's input_tokens excludes the cached and cache-written tokens.
    json!({ "input_tokens": a.fresh_prompt_tokens(), "output_tokens": a.completion_tokens,
            "cache_creation_input_tokens": a.cache_write_tokens,
            "cache_read_input_tokens": a.cached_tokens })
}

fn tool_id(n: u64, k: usize) -> String {
    if k == 0 {
        format!("toolu_mock{n}")
    } else {
        format!("toolu_mock{n}_{k}")
    }
}

pub(super) fn message(
    a: &Answer,
    thought: Option<&Thought>,
    id: &str,
    model: &str,
    n: u64,
) -> Value {
    let mut content = Vec::new();
    if let Some(t) = thought {
        content
            .push(json!({ "type": "thinking", "thinking": t.thinking, "signature": t.signature }));
    }
    if let Some(text) = &a.content {
        content.push(json!({ "type": "text", "text": text }));
    }
    for (k, (name, args)) in a.tool_calls.iter().enumerate() {
        content
            .push(json!({ "type": "tool_use", "id": tool_id(n, k), "name": name, "input": args }));
    }
    json!({ "id": id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason(a.finish), "stop_sequence": null,
            "usage": usage(a) })
}

pub(super) fn events(
    a: &Answer,
    thought: Option<&Thought>,
    id: &str,
    model: &str,
    n: u64,
) -> Vec<Bytes> {
    let mut out = vec![stream::named(
        "message_start",
        &json!({ "type": "message_start", "message": { "id": id, "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": { "input_tokens": a.fresh_prompt_tokens(),
            "output_tokens": 1, "cache_creation_input_tokens": a.cache_write_tokens,
            "cache_read_input_tokens": a.cached_tokens } } }),
    )];
    let block_start = |index: usize, block: Value| {
        stream::named(
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index, "content_block": block }),
        )
    };
    let block_delta = |index: usize, delta: Value| {
        stream::named(
            "content_block_delta",
            &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
        )
    };
    let block_stop = |index: usize| {
        stream::named(
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": index }),
        )
    };
    let mut index = 0;
    if let Some(t) = thought {
        out.push(block_start(
            index,
            json!({ "type": "thinking", "thinking": "", "signature": "" }),
        ));
        for piece in t.thinking.split_inclusive(' ') {
            out.push(block_delta(
                index,
                json!({ "type": "thinking_delta", "thinking": piece }),
            ));
        }
        out.push(block_delta(
            index,
            json!({ "type": "signature_delta", "signature": t.signature }),
        ));
        out.push(block_stop(index));
        index += 1;
    }
    if let Some(text) = &a.content {
        out.push(block_start(index, json!({ "type": "text", "text": "" })));
        out.push(stream::named("ping", &json!({ "type": "ping" })));
        for word in text.split_inclusive(' ') {
            out.push(block_delta(
                index,
                json!({ "type": "text_delta", "text": word }),
            ));
        }
        out.push(block_stop(index));
        index += 1;
    }
    for (k, (name, args)) in a.tool_calls.iter().enumerate() {
        out.push(block_start(
            index,
            json!({ "type": "tool_use", "id": tool_id(n, k), "name": name, "input": {} }),
        ));
        out.push(block_delta(
            index,
            json!({ "type": "input_json_delta", "partial_json": "" }),
        ));
        for piece in split_in(&args.to_string(), 3) {
            out.push(block_delta(
                index,
                json!({ "type": "input_json_delta", "partial_json": piece }),
            ));
        }
        out.push(block_stop(index));
        index += 1;
    }
    out.push(stream::named(
        "message_delta",
        &json!({ "type": "message_delta", "delta": { "stop_reason": stop_reason(a.finish),
            "stop_sequence": null }, "usage": { "output_tokens": a.completion_tokens } }),
    ));
    out.push(stream::named(
        "message_stop",
        &json!({ "type": "message_stop" }),
    ));
    out
}
