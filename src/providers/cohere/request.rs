//! Canonical (OpenAI) request -> Cohere v2 chat request.
//!
//! Rules, from Cohere's v2 chat API reference (`POST /v2/chat`): the message shapes are
//! OpenAI's (system, user with text and `image_url` parts, assistant with `tool_calls`
//! whose `arguments` is a string, tool with `tool_call_id`); developer messages become
//! system ones. `tool_choice` has only `REQUIRED` and `NONE` (absent means auto), so a
//! named function becomes "only that tool, required" — the same constraint. `top_p` is
//! `p` and must lie in 0.01..=0.99, so 1.0 ("no truncation") is sent as 0.99;
//! `temperature` and the penalties accept 0..=1; at most 5 stop sequences. JSON schema
//! output is `{"type": "json_object", "json_schema": ...}`. What has no equivalent is
//! refused, never silently dropped.

use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    chat::{ChatRequest, Content, ContentPart, Message, Role, Stop, Tool, ToolChoice},
    providers::ProviderError,
};

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: Vec<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<&'a Tool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict_tools: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
}

fn refuse(message: String) -> ProviderError {
    ProviderError::Untranslatable(format!("cohere: {message}"))
}

/// Serializes the request for `/v2/chat`.
pub fn encode_request(
    request: &ChatRequest,
    model: &str,
    stream: bool,
) -> Result<Vec<u8>, ProviderError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(refuse(
            "`n` > 1 is not supported: it returns one answer".into(),
        ));
    }
    if let Some(field) = crate::providers::unsupported_output(request) {
        return Err(refuse(format!("{field} is not supported")));
    }
    let unit = |name: &str, v: Option<f64>| -> Result<Option<f64>, ProviderError> {
        match v {
            Some(x) if !(0.0..=1.0).contains(&x) => Err(refuse(format!(
                "`{name}` {x} is out of range: Cohere accepts 0 to 1"
            ))),
            other => Ok(other),
        }
    };
    let penalty = |name: &str| request.extra.get(name).and_then(Value::as_f64);
    let messages = request
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| message(m, i))
        .collect::<Result<Vec<_>, _>>()?;
    let stop_sequences: Vec<&str> = match &request.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.as_str()],
        Some(Stop::Many(v)) => v.iter().map(String::as_str).collect(),
    };
    if stop_sequences.len() > 5 {
        return Err(refuse("at most 5 stop sequences are supported".into()));
    }
    let all_tools: Vec<&Tool> = request.tools.iter().flatten().collect();
    let (tools, tool_choice) = match &request.tool_choice {
        None => (all_tools, None),
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => (all_tools, None),
            "required" => (all_tools, Some("REQUIRED")),
            "none" => (all_tools, Some("NONE")),
            other => return Err(refuse(format!("tool_choice `{other}` is not supported"))),
        },
        Some(named) => {
            let name = named
                .function_name()
                .ok_or_else(|| refuse("tool_choice must name a function".into()))?;
            let only: Vec<&Tool> = all_tools
                .into_iter()
                .filter(|t| t.function.name == name)
                .collect();
            if only.is_empty() {
                return Err(refuse(format!(
                    "tool_choice names `{name}`, which is not among the tools"
                )));
            }
            (only, Some("REQUIRED"))
        }
    };
    let wire = Request {
        model,
        messages,
        stream,
        strict_tools: tools
            .iter()
            .any(|t| t.function.strict == Some(true))
            .then_some(true),
        tools,
        tool_choice,
        response_format: response_format(request)?,
        max_tokens: request.max_completion_tokens.or(request.max_tokens),
        temperature: unit("temperature", request.temperature)?,
        p: request.top_p.map(|p| p.clamp(0.01, 0.99)),
        k: request.extra.get("top_k"),
        seed: request.seed,
        stop_sequences,
        frequency_penalty: unit("frequency_penalty", penalty("frequency_penalty"))?,
        presence_penalty: unit("presence_penalty", penalty("presence_penalty"))?,
    };
    serde_json::to_vec(&wire).map_err(|e| refuse(format!("encoding the request: {e}")))
}

fn message(m: &Message, i: usize) -> Result<Value, ProviderError> {
    Ok(match m.role {
        Role::System | Role::Developer => {
            json!({ "role": "system", "content": text(m.content.as_ref(), i)? })
        }
        Role::User => json!({ "role": "user", "content": user_content(m.content.as_ref(), i)? }),
        Role::Assistant => {
            let mut v = json!({ "role": "assistant" });
            let t = text(m.content.as_ref(), i)?;
            if !t.is_empty() {
                v["content"] = json!(t);
            }
            if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
                v["tool_calls"] = json!(calls);
            }
            v
        }
        Role::Tool => {
            let id = m.tool_call_id.as_deref().ok_or_else(|| {
                refuse(format!(
                    "messages[{i}]: a tool message needs `tool_call_id`"
                ))
            })?;
            json!({ "role": "tool", "tool_call_id": id, "content": text(m.content.as_ref(), i)? })
        }
        Role::Function => {
            return Err(refuse(format!(
                "messages[{i}]: the deprecated `function` role is not supported; use `tool`"
            )));
        }
    })
}

fn text(content: Option<&Content>, i: usize) -> Result<String, ProviderError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t.clone()),
        Some(Content::Parts(parts)) => {
            if let Some(other) = parts
                .iter()
                .position(|p| !matches!(p, ContentPart::Text { .. }))
            {
                return Err(refuse(format!(
                    "messages[{i}].content[{other}]: only text is allowed in this message"
                )));
            }
            Ok(Content::Parts(parts.clone()).joined_text())
        }
    }
}

fn user_content(content: Option<&Content>, i: usize) -> Result<Value, ProviderError> {
    let Some(Content::Parts(parts)) = content else {
        return Ok(json!(text(content, i)?));
    };
    parts
        .iter()
        .enumerate()
        .map(|(j, p)| match p {
            ContentPart::Text { text, .. } => Ok(json!({ "type": "text", "text": text })),
            ContentPart::ImageUrl { image_url, .. } => {
                let mut img = json!({ "url": image_url.url });
                if let Some(d) = &image_url.detail {
                    img["detail"] = json!(d);
                }
                Ok(json!({ "type": "image_url", "image_url": img }))
            }
            ContentPart::Other(v) => Err(refuse(format!(
                "messages[{i}].content[{j}]: a {} part has no Cohere equivalent",
                v.get("type").and_then(Value::as_str).unwrap_or("untyped")
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn response_format(request: &ChatRequest) -> Result<Option<Value>, ProviderError> {
    let Some(format) = &request.response_format else {
        return Ok(None);
    };
    match format.kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(json!({ "type": "json_object" }))),
        "json_schema" => {
            let schema = format
                .json_schema
                .as_ref()
                .and_then(|s| s.get("schema"))
                .ok_or_else(|| refuse("response_format.json_schema.schema is required".into()))?;
            Ok(Some(
                json!({ "type": "json_object", "json_schema": schema }),
            ))
        }
        other => Err(refuse(format!(
            "response_format `{other}` is not supported"
        ))),
    }
}
