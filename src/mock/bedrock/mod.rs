//! The AWS Bedrock Converse API as the simulated provider speaks it (API reference:
//! "Converse", "ConverseStream", common errors): `POST /model/{modelId}/converse` and
//! `/converse-stream`, SigV4-signed; content blocks keyed by kind with `toolUse` /
//! `toolResult` pairing checked as the real API does; streams as event-stream binary
//! frames (`messageStart` ... `messageStop`, `metadata`); errors as `{"message"}` with the
//! exception name in `x-amzn-ErrorType`.
//!
//! The signature is checked for form on every request (scope, date, signed headers, body
//! hash) and recomputed in full when the key is AWS's documented example key
//! ([`EXAMPLE_ACCESS_KEY_ID`]), whose secret is public; other keys cannot be verified here.
//! Stricter than Bedrock in one way: unknown top-level request keys are rejected, to catch
//! misspelled fields.

mod embed;
mod validate;

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use serde_json::{Value, json};

use super::{
    ConnReset, MockState,
    answer::{
        Answer, Ask, Finish, empty_object, estimate_tokens, malformed_json, split_in, text_of,
    },
    stream::{self, SseAnswer},
};
use crate::providers::bedrock::{EVENT_STREAM, eventstream};

/// AWS's documented example access key id (SigV4 test suite, IAM guide).
pub const EXAMPLE_ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
/// The secret that goes with [`EXAMPLE_ACCESS_KEY_ID`].
pub const EXAMPLE_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

pub(super) async fn converse(
    state: State<Arc<MockState>>,
    conn: Extension<ConnReset>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(state, conn, &uri, &headers, &body, false).await
}

pub(super) async fn converse_stream(
    state: State<Arc<MockState>>,
    conn: Extension<ConnReset>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(state, conn, &uri, &headers, &body, true).await
}

async fn answer(
    State(state): State<Arc<MockState>>,
    Extension(conn): Extension<ConnReset>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    streaming: bool,
) -> Response {
    let (mut fault, request) = match super::preamble(&state, &conn, headers, body, error).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Err((kind, message)) = validate::signature(headers, uri.path(), body) {
        return typed_error(StatusCode::FORBIDDEN, kind, &message, None);
    }
    let Some(request) = request else {
        return error(StatusCode::BAD_REQUEST, "Malformed input request", None);
    };
    if let Err(message) = validate::request(&request) {
        return error(StatusCode::BAD_REQUEST, &message, None);
    }
    let n = state.ids.fetch_add(1, Ordering::Relaxed);
    let answer = Answer::to(&ask(&request), &state.name()).reporting(fault.usage);
    let request_id = HeaderValue::from_str(&format!("mock-request-{n}"))
        .unwrap_or(HeaderValue::from_static("mock-request"));
    let mut resp = if !streaming {
        if fault.malformed {
            return malformed_json("{\"output\": {\"message\": {");
        }
        Json(whole(&answer, n)).into_response()
    } else {
        let mut events = frames(&answer, n);
        // A malformed stream: frames whose message checksum is wrong.
        if std::mem::take(&mut fault.malformed) {
            events = events.into_iter().map(corrupt).collect();
        }
        let sse = SseAnswer {
            events,
            terminator: None,
            error_event: exception("modelStreamErrorException", "simulated in-stream error"),
        };
        let mut resp = stream::respond(state.clone(), conn, fault, sse);
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
        resp
    };
    resp.headers_mut().insert("x-amzn-requestid", request_id);
    resp
}

/// `POST /model/{modelId}/invoke`: InvokeModel, whose body is the model family's own —
/// an embedding model's ([`embed`]: Titan Text Embeddings, Cohere Embed), else Anthropic's
/// Messages ([`invoke_messages`]).
pub(super) async fn invoke(
    state: State<Arc<MockState>>,
    conn: Extension<ConnReset>,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if model.contains("embed") {
        embed::invoke(state, conn, Path(model), uri, headers, body).await
    } else {
        invoke_messages(state, conn, uri, headers, body).await
    }
}

/// InvokeModel for Anthropic's models, whose body is Anthropic's Messages body with
/// `anthropic_version: "bedrock-2023-05-31"` and neither `model` nor `stream` (Bedrock
/// user guide, "Anthropic Claude Messages API"); answered with a Message.
async fn invoke_messages(
    state: State<Arc<MockState>>,
    conn: Extension<ConnReset>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    invoke_answer(state, conn, &uri, &headers, &body, false).await
}

/// `POST /model/{modelId}/invoke-with-response-stream`: the same, answered with
/// event-stream `chunk` frames each carrying one Anthropic stream event as base64.
pub(super) async fn invoke_stream(
    state: State<Arc<MockState>>,
    conn: Extension<ConnReset>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    invoke_answer(state, conn, &uri, &headers, &body, true).await
}

async fn invoke_answer(
    State(state): State<Arc<MockState>>,
    Extension(conn): Extension<ConnReset>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    streaming: bool,
) -> Response {
    use base64::Engine;
    let (fault, request) = match super::preamble(&state, &conn, headers, body, error).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Err((kind, message)) = validate::signature(headers, uri.path(), body) {
        return typed_error(StatusCode::FORBIDDEN, kind, &message, None);
    }
    let Some(request) = request else {
        return error(StatusCode::BAD_REQUEST, "Malformed input request", None);
    };
    if request.get("anthropic_version").and_then(Value::as_str) != Some("bedrock-2023-05-31") {
        return error(
            StatusCode::BAD_REQUEST,
            "Malformed input request: anthropic_version: bedrock-2023-05-31 is required",
            None,
        );
    }
    if let Some(key) = ["model", "stream"]
        .iter()
        .find(|k| request.get(**k).is_some())
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("Malformed input request: extraneous key [{key}] is not permitted"),
            None,
        );
    }
    let mut checked = request.clone();
    checked["model"] = json!("bedrock");
    if let Err(message) = super::anthropic::validate(&checked) {
        return error(StatusCode::BAD_REQUEST, &message, None);
    }
    let n = state.ids.fetch_add(1, Ordering::Relaxed);
    let model = uri
        .path()
        .strip_prefix("/model/")
        .and_then(|p| p.split('/').next())
        .unwrap_or("bedrock");
    let id = format!("msg_bdrk_mock{n}");
    let answer = Answer::to(&super::anthropic::ask(&request), &state.name()).reporting(fault.usage);
    let thought = super::anthropic::Thought::for_request(&request, &answer);
    if !streaming {
        return Json(super::anthropic::message(
            &answer,
            thought.as_ref(),
            &id,
            model,
            n,
        ))
        .into_response();
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let events = super::anthropic::events(&answer, thought.as_ref(), &id, model, n)
        .into_iter()
        .filter_map(|sse| {
            let text = std::str::from_utf8(&sse).ok()?;
            let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some(eventstream::encode(
                &[
                    (":event-type", "chunk"),
                    (":content-type", "application/json"),
                    (":message-type", "event"),
                ],
                json!({ "bytes": engine.encode(data), "p": "abcdefghij" })
                    .to_string()
                    .as_bytes(),
            ))
        })
        .collect();
    let sse = SseAnswer {
        events,
        terminator: None,
        error_event: exception("modelStreamErrorException", "simulated in-stream error"),
    };
    let mut resp = stream::respond(state.clone(), conn, fault, sse);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    resp
}

fn ask(r: &Value) -> Ask {
    let messages = r
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    Ask {
        tools: r
            .pointer("/toolConfig/tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let spec = t.get("toolSpec")?;
                let name = spec.get("name")?.as_str()?.to_owned();
                Some((
                    name,
                    spec.pointer("/inputSchema/json")
                        .cloned()
                        .unwrap_or_else(empty_object),
                ))
            })
            .collect(),
        forced_tool: r
            .pointer("/toolConfig/toolChoice/tool/name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        // Converse has no "none": without toolConfig no tools are offered.
        tools_off: false,
        parallel: r.pointer("/toolConfig/toolChoice/any").is_some(),
        schema: r
            .pointer("/outputConfig/textFormat/structure/jsonSchema/schema")
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok()),
        last_user_text: messages
            .iter()
            .rev()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| text_of(m.get("content")))
            .find(|t| !t.is_empty())
            .unwrap_or_default(),
        max_tokens: r
            .pointer("/inferenceConfig/maxTokens")
            .and_then(Value::as_u64),
        prompt_tokens: estimate_tokens(messages),
    }
}

/// A Bedrock error answer, the exception named by the status.
pub(super) fn error(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let kind = match status.as_u16() {
        400 => "ValidationException",
        401 => "UnrecognizedClientException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        s if s >= 500 => "InternalServerException",
        _ => "ValidationException",
    };
    typed_error(status, kind, message, retry_after)
}

fn typed_error(
    status: StatusCode,
    kind: &str,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let mut resp = (status, Json(json!({ "message": message }))).into_response();
    let h = resp.headers_mut();
    let error_type = format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/");
    if let Ok(v) = HeaderValue::from_str(&error_type) {
        h.insert("x-amzn-errortype", v);
    }
    if let Some(secs) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolUse => "tool_use",
    }
}

fn usage(a: &Answer) -> Value {
    // Converse's inputTokens excludes cache reads and writes, reported beside it.
    let mut u = json!({ "inputTokens": a.fresh_prompt_tokens(),
            "outputTokens": a.completion_tokens,
            "totalTokens": a.prompt_tokens + a.completion_tokens });
    if a.cached_tokens > 0 {
        u["cacheReadInputTokens"] = json!(a.cached_tokens);
    }
    if a.cache_write_tokens > 0 {
        u["cacheWriteInputTokens"] = json!(a.cache_write_tokens);
    }
    u
}

fn tool_id(n: u64, k: usize) -> String {
    if k == 0 {
        format!("tooluse_mock{n}")
    } else {
        format!("tooluse_mock{n}_{k}")
    }
}

fn whole(a: &Answer, n: u64) -> Value {
    let mut content = Vec::new();
    if let Some(text) = &a.content {
        content.push(json!({ "text": text }));
    }
    for (k, (name, args)) in a.tool_calls.iter().enumerate() {
        content.push(
            json!({ "toolUse": { "toolUseId": tool_id(n, k), "name": name, "input": args } }),
        );
    }
    json!({ "output": { "message": { "role": "assistant", "content": content } },
            "stopReason": stop_reason(a.finish), "usage": usage(a), "metrics": { "latencyMs": 1 } })
}

/// One event frame. Like Bedrock's, each payload carries a `p` padding field.
fn event(kind: &str, mut payload: Value) -> Bytes {
    payload["p"] = json!("abcdefghij");
    eventstream::encode(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

fn exception(kind: &str, message: &str) -> Bytes {
    eventstream::encode(
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json!({ "message": message }).to_string().as_bytes(),
    )
}

/// A frame whose message checksum no longer matches.
fn corrupt(frame: Bytes) -> Bytes {
    let mut bytes = frame.to_vec();
    if let Some(last) = bytes.last_mut() {
        *last ^= 0xFF;
    }
    Bytes::from(bytes)
}

fn frames(a: &Answer, n: u64) -> Vec<Bytes> {
    let mut out = vec![event("messageStart", json!({ "role": "assistant" }))];
    let mut index = 0;
    if let Some(text) = &a.content {
        for word in text.split_inclusive(' ') {
            out.push(event(
                "contentBlockDelta",
                json!({ "contentBlockIndex": index, "delta": { "text": word } }),
            ));
        }
        out.push(event(
            "contentBlockStop",
            json!({ "contentBlockIndex": index }),
        ));
        index += 1;
    }
    for (k, (name, args)) in a.tool_calls.iter().enumerate() {
        out.push(event(
            "contentBlockStart",
            json!({ "contentBlockIndex": index,
            "start": { "toolUse": { "toolUseId": tool_id(n, k), "name": name } } }),
        ));
        for piece in split_in(&args.to_string(), 3) {
            out.push(event(
                "contentBlockDelta",
                json!({ "contentBlockIndex": index,
                "delta": { "toolUse": { "input": piece } } }),
            ));
        }
        out.push(event(
            "contentBlockStop",
            json!({ "contentBlockIndex": index }),
        ));
        index += 1;
    }
    out.push(event(
        "messageStop",
        json!({ "stopReason": stop_reason(a.finish) }),
    ));
    out.push(event(
        "metadata",
        json!({ "usage": usage(a), "metrics": { "latencyMs": 1 } }),
    ));
    out
}
