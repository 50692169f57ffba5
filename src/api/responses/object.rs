//! The Responses object (`object: "response"`) written from a canonical answer (API
//! reference: "The response object"; openai-python `types/responses/response.py`,
//! `response_output_item.py`, `response_usage.py`).

use serde_json::{Map, Value, json};

use super::request::ResponsesRequest;
use crate::chat::{ChatResponse, Message, Usage};

/// A fresh id with OpenAI's prefixes (`resp_`, `msg_`, `fc_`, `rs_`): 48 hex digits.
pub fn mint(prefix: &str) -> String {
    format!(
        "{prefix}_{:032x}{:016x}",
        fastrand::u128(..),
        fastrand::u64(..)
    )
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The request's settings a response object repeats, with OpenAI's defaults.
pub fn echo(request: &ResponsesRequest) -> Map<String, Value> {
    let mut echo = Map::new();
    let mut put = |k: &str, v: Value| {
        echo.insert(k.to_owned(), v);
    };
    put("instructions", json!(request.instructions));
    put("max_output_tokens", json!(request.max_output_tokens));
    put(
        "parallel_tool_calls",
        json!(request.parallel_tool_calls.unwrap_or(true)),
    );
    put("previous_response_id", json!(request.previous_response_id));
    put(
        "reasoning",
        json!({
            "effort": request.reasoning.as_ref().and_then(|r| r.get("effort")).cloned(),
            "summary": request.reasoning.as_ref().and_then(|r| r.get("summary")).cloned(),
        }),
    );
    put("store", json!(request.store()));
    put("temperature", json!(request.temperature.unwrap_or(1.0)));
    put(
        "text",
        request
            .text
            .clone()
            .unwrap_or_else(|| json!({ "format": { "type": "text" } })),
    );
    put(
        "tool_choice",
        request.tool_choice.clone().unwrap_or_else(|| json!("auto")),
    );
    put("tools", json!(request.tools.clone().unwrap_or_default()));
    put("top_p", json!(request.top_p.unwrap_or(1.0)));
    put(
        "truncation",
        request
            .other
            .get("truncation")
            .cloned()
            .unwrap_or_else(|| json!("disabled")),
    );
    put("user", json!(request.user));
    put(
        "metadata",
        request
            .other
            .get("metadata")
            .cloned()
            .filter(|m| !m.is_null())
            .unwrap_or_else(|| json!({})),
    );
    echo
}

/// What ended the answer: `completed`, or `incomplete` with its reason.
pub fn status_of(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({ "reason": "max_output_tokens" })),
        Some("content_filter") => ("incomplete", json!({ "reason": "content_filter" })),
        _ => ("completed", Value::Null),
    }
}

/// A response object's frame: everything but `output`, `usage` and the status.
pub struct Frame<'a> {
    pub id: &'a str,
    pub created_at: i64,
    pub model: &'a str,
    pub echo: &'a Map<String, Value>,
}

impl Frame<'_> {
    /// The object with `status`, `output` and `usage`.
    pub fn object(
        &self,
        status: &str,
        incomplete: Value,
        output: Vec<Value>,
        usage: Option<Value>,
    ) -> Value {
        let mut o = Map::with_capacity(24);
        o.insert("id".into(), json!(self.id));
        o.insert("object".into(), json!("response"));
        o.insert("created_at".into(), json!(self.created_at));
        o.insert("status".into(), json!(status));
        o.insert("background".into(), json!(false));
        o.insert("error".into(), Value::Null);
        o.insert("incomplete_details".into(), incomplete);
        o.insert("model".into(), json!(self.model));
        o.insert("output".into(), Value::Array(output));
        for (k, v) in self.echo {
            o.insert(k.clone(), v.clone());
        }
        o.insert("usage".into(), usage.unwrap_or(Value::Null));
        Value::Object(o)
    }
}

/// The output items of an assistant message: its reasoning summary (when the target gave
/// reasoning text), its text, then its function calls.
pub fn output_items(message: &Message) -> Vec<Value> {
    let mut items = Vec::new();
    if let Some(reasoning) = message
        .extra
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        items.push(reasoning_item(&mint("rs"), reasoning));
    }
    let text = message
        .content
        .as_ref()
        .map(crate::chat::Content::joined_text)
        .unwrap_or_default();
    if !text.is_empty() || message.tool_calls.is_none() {
        items.push(message_item(&mint("msg"), "completed", &text));
    }
    for call in message.tool_calls.iter().flatten() {
        items.push(function_call_item(
            &mint("fc"),
            "completed",
            &call.id,
            &call.function.name,
            &call.function.arguments,
        ));
    }
    items
}

pub fn message_item(id: &str, status: &str, text: &str) -> Value {
    json!({
        "id": id, "type": "message", "status": status, "role": "assistant",
        "content": [output_text(text)],
    })
}

pub fn output_text(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

pub fn function_call_item(id: &str, status: &str, call_id: &str, name: &str, args: &str) -> Value {
    json!({
        "id": id, "type": "function_call", "status": status,
        "call_id": call_id, "name": name, "arguments": args,
    })
}

pub fn reasoning_item(id: &str, text: &str) -> Value {
    let summary = if text.is_empty() {
        json!([])
    } else {
        json!([{ "type": "summary_text", "text": text }])
    };
    json!({ "id": id, "type": "reasoning", "summary": summary })
}

/// `usage` as Responses has it.
pub fn usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": { "cached_tokens": u.cached_tokens() },
        "output_tokens": u.completion_tokens,
        "output_tokens_details": { "reasoning_tokens": u.reasoning_tokens() },
        "total_tokens": u.total_tokens,
    })
}

/// A whole canonical answer as a Responses object.
pub fn from_chat(response: &ChatResponse, frame: &Frame<'_>) -> Value {
    let choice = response.choices.first();
    let (status, incomplete) = status_of(choice.and_then(|c| c.finish_reason.as_deref()));
    let output = choice.map(|c| output_items(&c.message)).unwrap_or_default();
    frame.object(
        status,
        incomplete,
        output,
        response.usage.as_ref().map(usage),
    )
}
