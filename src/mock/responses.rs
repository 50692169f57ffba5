//! OpenAI's Responses API as the simulated provider speaks it (API reference: "Create a
//! model response", "The response object", "Streaming events"): `POST /v1/responses`
//! (Azure: `/openai/v1/responses` with an `api-key`), JSON or the event sequence with
//! `sequence_number`s, validating requests as the real API does (a `model`, an `input`,
//! flat function tools, every `function_call_output` answering a `function_call` of the
//! same input or of the stored `previous_response_id`), with the same faults as chat.

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
    answer::{Answer, Ask, Finish, empty_object, malformed_json, now, split_in, text_of},
    openai::error,
    stream::{self, SseAnswer},
};

pub(super) async fn responses(
    State(state): State<Arc<MockState>>,
    Extension(conn): Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fault, request) = match super::openai::json_request(&state, &conn, &headers, &body).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let previous = match request.get("previous_response_id").and_then(Value::as_str) {
        Some(id) => match state.responses.lock().ok().and_then(|g| g.get(id).cloned()) {
            Some(items) => items,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("Previous response with id '{id}' not found."),
                    None,
                );
            }
        },
        None => Vec::new(),
    };
    let input = match input_items(&request) {
        Ok(items) => items,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message, None),
    };
    if let Err(message) = validate(&request, &previous, &input) {
        return error(StatusCode::BAD_REQUEST, &message, None);
    }
    let n = state.ids.fetch_add(1, Ordering::Relaxed);
    let id = format!("resp_mock{n:044}");
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_owned();
    let answer = Answer::to(&ask(&request, &input), &state.name()).reporting(fault.usage);
    let output = output(&answer, n);
    let object = object(&request, &id, &model, &answer, output.clone(), "completed");
    if request.get("store").and_then(Value::as_bool) != Some(false)
        && let Ok(mut g) = state.responses.lock()
    {
        let mut items = previous;
        items.extend(input);
        items.extend(output.iter().cloned());
        g.insert(id.clone(), items);
    }
    if request.get("stream").and_then(Value::as_bool) != Some(true) {
        if fault.malformed {
            return malformed_json(
                "{\"id\": \"resp_broken\", \"object\": \"response\", \"output\": [",
            );
        }
        return Json(object).into_response();
    }
    let sse = SseAnswer {
        events: events(&request, &id, &model, &answer, &output, fault.chunk_chars),
        terminator: None,
        error_event: stream::named(
            "error",
            &json!({ "type": "error", "code": "server_error",
                     "message": "simulated in-stream error", "param": null,
                     "sequence_number": 0 }),
        ),
    };
    stream::respond(state.clone(), conn, fault, sse)
}

/// Azure's v1 Responses route: the same answers after Azure's `api-key` check.
pub(super) async fn azure_responses(
    state: State<Arc<MockState>>,
    conn: Extension<ConnReset>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = super::openai::azure_refusal(&headers, None) {
        return refused;
    }
    responses(state, conn, headers, body).await
}

fn input_items(request: &Value) -> Result<Vec<Value>, String> {
    match request.get("input") {
        Some(Value::String(s)) => Ok(vec![json!({ "role": "user", "content": s })]),
        Some(Value::Array(items)) if !items.is_empty() => Ok(items.clone()),
        Some(Value::Array(_)) if request.get("previous_response_id").is_some() => Ok(Vec::new()),
        None if request.get("previous_response_id").is_some() => Ok(Vec::new()),
        _ => Err("Missing required parameter: 'input'.".to_owned()),
    }
}

/// The real API's checks, as far as the mock needs them.
fn validate(request: &Value, previous: &[Value], input: &[Value]) -> Result<(), String> {
    match request.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return Err("Missing required parameter: 'model'.".to_owned()),
    }
    if request.get("messages").is_some() {
        return Err(
            "Unsupported parameter: 'messages'. In the Responses API, this parameter \
                    has moved to 'input'."
                .to_owned(),
        );
    }
    for (i, tool) in request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if tool.get("type").and_then(Value::as_str) == Some("function")
            && tool.get("name").and_then(Value::as_str).is_none()
        {
            return Err(format!("Missing required parameter: 'tools[{i}].name'."));
        }
    }
    let mut calls: Vec<&str> = previous
        .iter()
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("function_call"))
        .filter_map(|i| i.get("call_id").and_then(Value::as_str))
        .collect();
    for (i, item) in input.iter().enumerate() {
        match item.get("type").and_then(Value::as_str) {
            Some("function_call") => match item.get("call_id").and_then(Value::as_str) {
                Some(id) => calls.push(id),
                None => return Err(format!("Missing required parameter: 'input[{i}].call_id'.")),
            },
            Some("function_call_output") => {
                let id = item.get("call_id").and_then(Value::as_str).unwrap_or("");
                if !calls.contains(&id) {
                    return Err(format!(
                        "No tool call found for function call output with call_id {id}."
                    ));
                }
            }
            Some("message") | None if item.get("role").and_then(Value::as_str).is_none() => {
                return Err(format!("Missing required parameter: 'input[{i}].role'."));
            }
            _ => {}
        }
    }
    Ok(())
}

fn ask(request: &Value, input: &[Value]) -> Ask {
    let choice = request.get("tool_choice");
    let schema = match request.pointer("/text/format/type").and_then(Value::as_str) {
        Some("json_schema") => Some(
            request
                .pointer("/text/format/schema")
                .cloned()
                .unwrap_or(json!({"type": "object"})),
        ),
        Some("json_object") => {
            Some(json!({"type": "object", "properties": {"answer": {"type": "string"}}}))
        }
        _ => None,
    };
    // A turn that hands back a function's output is answered in words.
    let answering_output = input
        .last()
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        == Some("function_call_output");
    let last_user_text = input
        .iter()
        .rev()
        .find(|i| i.get("role").and_then(Value::as_str) == Some("user"))
        .map(|i| text_of(i.get("content")))
        .or_else(|| {
            input
                .iter()
                .rev()
                .find_map(|i| i.get("output").and_then(Value::as_str).map(str::to_owned))
        })
        .unwrap_or_default();
    Ask {
        tools: request
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let name = t.get("name")?.as_str()?.to_owned();
                let schema = t.get("parameters").cloned().unwrap_or_else(empty_object);
                Some((name, schema))
            })
            .collect(),
        forced_tool: choice
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        tools_off: choice.and_then(Value::as_str) == Some("none") || answering_output,
        parallel: choice.and_then(Value::as_str) == Some("required")
            && request.get("parallel_tool_calls").and_then(Value::as_bool) != Some(false),
        schema,
        last_user_text,
        max_tokens: request.get("max_output_tokens").and_then(Value::as_u64),
        prompt_tokens: input
            .iter()
            .map(|m| 4 + (m.to_string().len() as u64).div_ceil(4))
            .sum(),
    }
}

fn output(a: &Answer, n: u64) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(text) = &a.content {
        out.push(json!({ "id": format!("msg_mock{n}"), "type": "message", "status": "completed",
            "role": "assistant",
            "content": [{ "type": "output_text", "text": text, "annotations": [], "logprobs": [] }] }));
    }
    for (k, (name, args)) in a.tool_calls.iter().enumerate() {
        out.push(
            json!({ "id": format!("fc_mock{n}_{k}"), "type": "function_call",
            "status": "completed", "call_id": format!("call_mock{n}_{k}"), "name": name,
            "arguments": args.to_string() }),
        );
    }
    out
}

fn object(
    request: &Value,
    id: &str,
    model: &str,
    a: &Answer,
    output: Vec<Value>,
    status: &str,
) -> Value {
    let incomplete = a.finish == Finish::Length && status == "completed";
    let get = |k: &str, or: Value| request.get(k).cloned().unwrap_or(or);
    json!({
        "id": id, "object": "response", "created_at": now(),
        "status": if incomplete { "incomplete" } else { status },
        "background": false, "error": null,
        "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": get("instructions", Value::Null),
        "max_output_tokens": get("max_output_tokens", Value::Null),
        "model": model, "output": output,
        "parallel_tool_calls": get("parallel_tool_calls", json!(true)),
        "previous_response_id": get("previous_response_id", Value::Null),
        "reasoning": { "effort": request.pointer("/reasoning/effort").cloned(), "summary": null },
        "store": get("store", json!(true)),
        "temperature": get("temperature", json!(1.0)),
        "text": get("text", json!({ "format": { "type": "text" } })),
        "tool_choice": get("tool_choice", json!("auto")),
        "tools": get("tools", json!([])),
        "top_p": get("top_p", json!(1.0)),
        "truncation": get("truncation", json!("disabled")),
        "usage": {
            "input_tokens": a.prompt_tokens,
            "input_tokens_details": { "cached_tokens": a.cached_tokens },
            "output_tokens": a.completion_tokens,
            "output_tokens_details": { "reasoning_tokens": a.reasoning_tokens },
            "total_tokens": a.prompt_tokens + a.completion_tokens,
        },
        "user": get("user", Value::Null),
        "metadata": get("metadata", json!({})),
    })
}

/// The stream's events, in the reference's order.
fn events(
    request: &Value,
    id: &str,
    model: &str,
    a: &Answer,
    output: &[Value],
    chunk_chars: Option<usize>,
) -> Vec<Bytes> {
    let mut seq = 0u64;
    let mut out = Vec::new();
    let mut emit = |kind: &str, mut body: Value| {
        body["type"] = json!(kind);
        body["sequence_number"] = json!(seq);
        seq += 1;
        out.push(stream::named(kind, &body));
    };
    let mut start = object(request, id, model, a, Vec::new(), "in_progress");
    start["status"] = json!("in_progress");
    start["usage"] = Value::Null;
    start["incomplete_details"] = Value::Null;
    emit("response.created", json!({ "response": start }));
    emit("response.in_progress", json!({ "response": start }));
    let pieces = |text: &str, default: Vec<String>| match chunk_chars {
        Some(n) => text
            .chars()
            .collect::<Vec<_>>()
            .chunks(n)
            .map(|c| c.iter().collect::<String>())
            .collect(),
        None => default,
    };
    for (index, item) in output.iter().enumerate() {
        let item_id = item["id"].clone();
        match item["type"].as_str() {
            Some("message") => {
                let text = item["content"][0]["text"].as_str().unwrap_or("").to_owned();
                let mut added = item.clone();
                added["status"] = json!("in_progress");
                added["content"] = json!([]);
                emit(
                    "response.output_item.added",
                    json!({ "output_index": index, "item": added }),
                );
                let empty =
                    json!({ "type": "output_text", "text": "", "annotations": [], "logprobs": [] });
                emit(
                    "response.content_part.added",
                    json!({ "item_id": item_id,
                    "output_index": index, "content_index": 0, "part": empty }),
                );
                let words = text.split_inclusive(' ').map(str::to_owned).collect();
                for word in pieces(&text, words) {
                    emit(
                        "response.output_text.delta",
                        json!({ "item_id": item_id,
                        "output_index": index, "content_index": 0, "delta": word, "logprobs": [] }),
                    );
                }
                emit(
                    "response.output_text.done",
                    json!({ "item_id": item_id,
                    "output_index": index, "content_index": 0, "text": text, "logprobs": [] }),
                );
                emit(
                    "response.content_part.done",
                    json!({ "item_id": item_id,
                    "output_index": index, "content_index": 0, "part": item["content"][0] }),
                );
            }
            _ => {
                let args = item["arguments"].as_str().unwrap_or("").to_owned();
                let mut added = item.clone();
                added["status"] = json!("in_progress");
                added["arguments"] = json!("");
                emit(
                    "response.output_item.added",
                    json!({ "output_index": index, "item": added }),
                );
                let thirds = split_in(&args, 3);
                for piece in pieces(&args, thirds) {
                    emit(
                        "response.function_call_arguments.delta",
                        json!({ "item_id": item_id,
                        "output_index": index, "delta": piece }),
                    );
                }
                emit(
                    "response.function_call_arguments.done",
                    json!({ "item_id": item_id,
                    "output_index": index, "name": item["name"], "arguments": args }),
                );
            }
        }
        emit(
            "response.output_item.done",
            json!({ "output_index": index, "item": item }),
        );
    }
    let done = object(request, id, model, a, output.to_vec(), "completed");
    let kind = if done["status"] == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    emit(kind, json!({ "response": done }));
    out
}
