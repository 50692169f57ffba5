//! The OpenAI chat-completions wire format as the simulated provider speaks it (API
//! reference: "Create chat completion", "The chat completion object", "The chat completion
//! chunk object"; streams end with `data: [DONE]`; with `stream_options.include_usage` every
//! chunk carries `"usage": null` and a last chunk with empty `choices` carries the usage).

use std::{
    sync::{Arc, atomic::Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Extension, Json,
    body::{Body, Bytes},
    extract::State,
    response::{IntoResponse, Response},
};
use futures_util::stream;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::{ConnReset, Fault, MockState, sample};

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
    let stats = &state.stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut g) = stats.last_authorization.lock() {
        *g = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
    }
    let fault = match headers.get("x-mock-fault").and_then(|v| v.to_str().ok()) {
        Some(spec) => match Fault::parse(spec) {
            Ok(f) => f,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("x-mock-fault: {e}"), None),
        },
        None => state.options.fault.clone(),
    };
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    if let (Some(r), Ok(mut g)) = (&request, stats.last_request.lock()) {
        *g = Some(r.clone());
    }
    if !fault.latency.is_zero() {
        tokio::time::sleep(fault.latency).await;
    }
    if fault.reset {
        conn.reset().await;
    }
    if let Some(code) = fault.status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = fault.retry_after.or((code == 429).then_some(1));
        return error(
            status,
            &format!("simulated {code} from {}", name(&state)),
            retry_after,
        );
    }
    let Some(request) = request else {
        return error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
            None,
        );
    };
    if let Err(message) = validate(&request) {
        return error(StatusCode::BAD_REQUEST, &message, None);
    }
    let id = format!("chatcmpl-mock{}", state.ids.fetch_add(1, Ordering::Relaxed));
    let answer = Answer::for_request(&request, &name(&state));
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    if !stream {
        if fault.malformed {
            return (
                [(header::CONTENT_TYPE, "application/json")],
                "{\"id\": \"chatcmpl-broken\", \"choices\": [",
            )
                .into_response();
        }
        return Json(answer.completion(&id, model(&request))).into_response();
    }
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let events = answer.chunks(&id, model(&request), include_usage);
    stream_response(state.clone(), conn, fault, events)
}

fn name(state: &MockState) -> String {
    if state.options.name.is_empty() {
        "switchyard mock".to_owned()
    } else {
        state.options.name.clone()
    }
}

fn model(request: &Value) -> &str {
    request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
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

/// An OpenAI error answer.
fn error(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let (kind, code) = match status.as_u16() {
        401 => ("invalid_request_error", "invalid_api_key"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        400..=499 => ("invalid_request_error", "invalid_request"),
        _ => ("server_error", "server_error"),
    };
    let body =
        json!({ "error": { "message": message, "type": kind, "param": null, "code": code } });
    let mut resp = (status, Json(body)).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// What the simulated model answers: text, JSON for structured output, or a tool call.
struct Answer {
    content: Option<String>,
    tool_call: Option<(String, String)>,
    finish_reason: &'static str,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Answer {
    fn for_request(request: &Value, name: &str) -> Answer {
        let prompt_tokens = estimate_prompt_tokens(request);
        if let Some((fname, args)) = tool_call(request) {
            let completion_tokens = (args.len() as u64).div_ceil(4);
            return Answer {
                content: None,
                tool_call: Some((fname, args)),
                finish_reason: "tool_calls",
                prompt_tokens,
                completion_tokens,
            };
        }
        let format = request
            .pointer("/response_format/type")
            .and_then(Value::as_str);
        let mut text = match format {
            Some("json_schema") => {
                let schema = request
                    .pointer("/response_format/json_schema/schema")
                    .cloned()
                    .unwrap_or(json!({"type": "object"}));
                sample(&schema).to_string()
            }
            Some("json_object") => json!({ "answer": format!("Hello from {name}") }).to_string(),
            _ => format!(
                "Hello from {name}! You said: {}",
                last_user_text(request)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        };
        let mut finish_reason = "stop";
        let limit = request
            .get("max_completion_tokens")
            .or_else(|| request.get("max_tokens"))
            .and_then(Value::as_u64);
        if let (Some(limit), None) = (limit, format) {
            let words: Vec<&str> = text.split(' ').collect();
            if words.len() as u64 > limit {
                text = words[..limit as usize].join(" ");
                finish_reason = "length";
            }
        }
        let completion_tokens = text.split(' ').count() as u64;
        Answer {
            content: Some(text),
            tool_call: None,
            finish_reason,
            prompt_tokens,
            completion_tokens,
        }
    }

    fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
            "completion_tokens_details": { "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0 }
        })
    }

    fn completion(&self, id: &str, model: &str) -> Value {
        let mut message = json!({ "role": "assistant", "content": self.content, "refusal": null });
        if let Some((name, args)) = &self.tool_call {
            message["tool_calls"] = json!([{ "id": call_id(id), "type": "function",
                "function": { "name": name, "arguments": args } }]);
        }
        json!({
            "id": id, "object": "chat.completion", "created": now(), "model": model,
            "choices": [{ "index": 0, "message": message, "logprobs": null,
                          "finish_reason": self.finish_reason }],
            "usage": self.usage(),
            "system_fingerprint": "fp_switchyard_mock"
        })
    }

    /// The SSE data payloads of the stream, `[DONE]` excluded.
    fn chunks(&self, id: &str, model: &str, include_usage: bool) -> Vec<Value> {
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
        if let Some(text) = &self.content {
            for word in text.split_inclusive(' ') {
                out.push(chunk(json!({ "content": word }), None));
            }
        }
        if let Some((name, args)) = &self.tool_call {
            out.push(chunk(
                json!({ "tool_calls": [{ "index": 0, "id": call_id(id), "type": "function",
                    "function": { "name": name, "arguments": "" } }] }),
                None,
            ));
            for piece in split_in(args, 3) {
                out.push(chunk(
                    json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] }),
                    None,
                ));
            }
        }
        out.push(chunk(json!({}), Some(self.finish_reason)));
        if include_usage {
            out.push(
                json!({ "id": id, "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": "fp_switchyard_mock",
                "choices": [], "usage": self.usage() }),
            );
        }
        out
    }
}

fn call_id(id: &str) -> String {
    format!("call_{}", id.trim_start_matches("chatcmpl-"))
}

/// Splits `s` into `n` pieces on character boundaries.
fn split_in(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let size = chars.len().div_ceil(n).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// The tool the model calls, if the request offers tools and does not forbid calls.
fn tool_call(request: &Value) -> Option<(String, String)> {
    let tools = request.get("tools")?.as_array()?;
    let choice = request.get("tool_choice");
    if choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    let forced = choice
        .and_then(|c| c.pointer("/function/name"))
        .and_then(Value::as_str);
    let tool = match forced {
        Some(name) => tools
            .iter()
            .find(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))?,
        None => tools.first()?,
    };
    let name = tool.pointer("/function/name")?.as_str()?.to_owned();
    let schema = tool
        .pointer("/function/parameters")
        .cloned()
        .unwrap_or(json!({"type": "object", "properties": {}}));
    Some((name, sample(&schema).to_string()))
}

fn last_user_text(request: &Value) -> String {
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return String::new();
    };
    let Some(m) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// About four characters a token, plus a few tokens of framing per message.
fn estimate_prompt_tokens(request: &Value) -> u64 {
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return 0;
    };
    messages
        .iter()
        .map(|m| 4 + (m.get("content").map_or(0, |c| c.to_string().len()) as u64).div_ceil(4))
        .sum()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Marks a stream cancelled if it is dropped before it ends.
struct StreamGuard {
    state: Arc<MockState>,
    finished: bool,
}

impl StreamGuard {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let s = &self.state.stats;
        if self.finished {
            s.streams_completed.fetch_add(1, Ordering::Relaxed);
        } else {
            s.streams_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn stream_response(
    state: Arc<MockState>,
    conn: ConnReset,
    fault: Fault,
    events: Vec<Value>,
) -> Response {
    struct St {
        events: std::vec::IntoIter<Value>,
        sent: usize,
        guard: StreamGuard,
        conn: ConnReset,
        fault: Fault,
        ended: bool,
    }
    let st = St {
        events: events.into_iter(),
        sent: 0,
        guard: StreamGuard {
            state,
            finished: false,
        },
        conn,
        fault,
        ended: false,
    };
    let body = stream::unfold(st, |mut st| async move {
        if st.ended {
            return None;
        }
        let f = &st.fault;
        if st.sent > 0 && !f.chunk_delay.is_zero() {
            tokio::time::sleep(f.chunk_delay).await;
        }
        if f.reset_after_chunks == Some(st.sent) {
            st.conn.reset().await;
        }
        if f.cut_after_chunks == Some(st.sent) {
            st.guard.finish();
            return None;
        }
        if f.error_after_chunks == Some(st.sent) {
            st.ended = true;
            st.guard.finish();
            let e = json!({ "error": { "message": "simulated in-stream error", "type": "server_error",
                "param": null, "code": "server_error" } });
            return Some((
                Ok::<_, std::io::Error>(Bytes::from(format!("data: {e}\n\n"))),
                st,
            ));
        }
        let bytes = match st.events.next() {
            Some(ev) => {
                st.sent += 1;
                if f.malformed {
                    Bytes::from_static(b"data: {\"id\": \"chatcmpl-broken\", \"choices\": [\n\n")
                } else {
                    Bytes::from(format!("data: {ev}\n\n"))
                }
            }
            None => {
                st.ended = true;
                st.guard.finish();
                Bytes::from_static(b"data: [DONE]\n\n")
            }
        };
        Some((Ok(bytes), st))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
