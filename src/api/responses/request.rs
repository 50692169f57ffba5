//! A Responses request (`POST /v1/responses`) read into the canonical chat request
//! (API reference: "Create a model response"; openai-python `types/responses/
//! response_create_params.py`, `response_input_item_param.py`).
//!
//! Input items become chat messages: `message` items with `input_text`/`input_image`/
//! `output_text`/`refusal` parts, `function_call` items become the assistant's
//! `tool_calls` (consecutive calls join one message), `function_call_output` items become
//! `tool` messages and must answer a call of the same conversation (by `call_id`).
//! Reasoning items are dropped: no other format can take OpenAI's reasoning back.
//! `instructions` leads as a system message. What no translation can express (built-in
//! tools, `background`, `conversation`, `prompt` templates, file inputs by id) is refused
//! with a 400 naming it.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    chat::{
        ChatRequest, Content, ContentPart, Extra, FunctionCall, FunctionDefinition, ImageUrl,
        Message, ResponseFormat, Role, StreamOptions, Tool, ToolCall, ToolChoice,
    },
    error::Error,
};

/// The request as the gateway reads it; everything else stays in the native body.
#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub reasoning: Option<Value>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub background: Option<bool>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ResponsesRequest {
    /// Parses the body, turning serde's complaint into a 400 a person can act on.
    pub fn parse(bytes: &[u8]) -> Result<ResponsesRequest, Error> {
        let request: ResponsesRequest = serde_json::from_slice(bytes).map_err(|e| {
            let message = if e.is_syntax() || e.is_eof() {
                format!("We could not parse the JSON body of your request: {e}")
            } else {
                format!("Invalid Responses request: {e}")
            };
            Error::BadRequest {
                message,
                param: None,
            }
        })?;
        request.refuse_inexpressible()?;
        Ok(request)
    }

    /// Whether the answer is kept (OpenAI's default: yes).
    pub fn store(&self) -> bool {
        self.store.unwrap_or(true)
    }

    /// Refuses what the gateway cannot serve on any route.
    fn refuse_inexpressible(&self) -> Result<(), Error> {
        if self.background == Some(true) {
            return Err(Error::bad_param(
                "background",
                "background responses are not supported by this gateway: the answer is \
                 served in the request (omit `background` or set it to false)",
            ));
        }
        for (key, what) in [
            ("conversation", "the Conversations API"),
            ("prompt", "prompt templates"),
        ] {
            if self.other.get(key).is_some_and(|v| !v.is_null()) {
                return Err(Error::bad_param(
                    key,
                    format!("`{key}` ({what}) is not supported by this gateway"),
                ));
            }
        }
        if self.input.is_none() && self.previous_response_id.is_none() {
            return Err(Error::bad_param(
                "input",
                "Missing required parameter: 'input'.",
            ));
        }
        for (i, tool) in self.tools.iter().flatten().enumerate() {
            let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "function" {
                return Err(Error::bad_param(
                    &format!("tools[{i}].type"),
                    format!(
                        "tool type `{kind}` is not supported by this gateway: only `function` \
                         tools can be routed to every provider"
                    ),
                ));
            }
            if tool.get("name").and_then(Value::as_str).is_none() {
                return Err(Error::bad_param(
                    &format!("tools[{i}].name"),
                    format!("Missing required parameter: 'tools[{i}].name'."),
                ));
            }
        }
        Ok(())
    }

    /// The caller's new input as a list of items (a string is one user message).
    pub fn input_items(&self) -> Result<Vec<Value>, Error> {
        match &self.input {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(text)) => Ok(vec![json!({
                "type": "message",
                "role": "user",
                "content": [{ "type": "input_text", "text": text }],
            })]),
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(_) => Err(Error::bad_param(
                "input",
                "Invalid type for 'input': expected a string or an array of input items.",
            )),
        }
    }
}

/// The canonical request for `request`, over the whole conversation `items` (a stored
/// conversation's items, then the new input).
pub fn to_chat(request: &ResponsesRequest, items: &[Value]) -> Result<ChatRequest, Error> {
    let mut messages = Vec::with_capacity(items.len() + 1);
    if let Some(instructions) = &request.instructions {
        messages.push(Message::text(Role::System, instructions.clone()));
    }
    let mut calls_seen: HashSet<&str> = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str| format!("input[{i}].{field}");
        let kind = item.get("type").and_then(Value::as_str);
        match kind {
            Some("message") | None => messages.push(message(item, i)?),
            Some("function_call") => {
                let field = |k: &str| {
                    item.get(k).and_then(Value::as_str).ok_or_else(|| {
                        Error::bad_param(
                            &at(k),
                            format!("Missing required parameter: '{}'.", at(k)),
                        )
                    })
                };
                let call_id = field("call_id")?;
                calls_seen.insert(call_id);
                let call = ToolCall {
                    id: call_id.to_owned(),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: field("name")?.to_owned(),
                        arguments: field("arguments")?.to_owned(),
                    },
                };
                // Consecutive calls are one assistant turn, after its text if it had any.
                match messages.last_mut() {
                    Some(last) if last.role == Role::Assistant => {
                        last.tool_calls.get_or_insert_with(Vec::new).push(call);
                    }
                    _ => {
                        let mut m = Message::assistant(String::new(), String::new(), vec![call]);
                        m.content = None;
                        messages.push(m);
                    }
                }
            }
            Some("function_call_output") => {
                let call_id = item.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                    Error::bad_param(&at("call_id"), "Missing required parameter: 'call_id'.")
                })?;
                if !calls_seen.contains(call_id) {
                    return Err(Error::bad_param(
                        "input",
                        format!(
                            "No tool call found for function call output with call_id {call_id}."
                        ),
                    ));
                }
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join(""),
                    _ => {
                        return Err(Error::bad_param(
                            &at("output"),
                            "Missing required parameter: 'output'.",
                        ));
                    }
                };
                let mut m = Message::text(Role::Tool, output);
                m.tool_call_id = Some(call_id.to_owned());
                messages.push(m);
            }
            // Reasoning is OpenAI's own (encrypted or by id); no other format takes it back.
            Some("reasoning") => {}
            Some(other) => {
                return Err(Error::bad_param(
                    &at("type"),
                    format!("input item type `{other}` is not supported by this gateway"),
                ));
            }
        }
    }
    if messages.iter().all(|m| m.role == Role::System) {
        return Err(Error::bad_param(
            "input",
            "the input has no message to answer",
        ));
    }
    let mut extra = Extra::new();
    if let Some(effort) = request
        .reasoning
        .as_ref()
        .and_then(|r| r.get("effort"))
        .filter(|e| !e.is_null())
    {
        extra.insert("reasoning_effort".to_owned(), effort.clone());
    }
    let stream = request.stream == Some(true);
    Ok(ChatRequest {
        model: request.model.clone(),
        messages,
        stream: Some(stream),
        // The final `response.completed` carries usage: the gateway always wants it.
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Extra::new(),
        }),
        tools: tools(request.tools.as_deref()),
        tool_choice: request.tool_choice.as_ref().map(tool_choice).transpose()?,
        parallel_tool_calls: request.parallel_tool_calls,
        response_format: request
            .text
            .as_ref()
            .map(response_format)
            .transpose()?
            .flatten(),
        max_tokens: None,
        max_completion_tokens: request.max_output_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        n: None,
        stop: None,
        seed: None,
        user: request.user.clone(),
        extra,
        native: None,
    })
}

/// A `message` item (or the short form `{"role", "content"}`).
fn message(item: &Value, i: usize) -> Result<Message, Error> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system") => Role::System,
        Some("developer") => Role::Developer,
        other => {
            return Err(Error::bad_param(
                &format!("input[{i}].role"),
                format!(
                    "Invalid value for 'input[{i}].role': {}; expected user, assistant, system \
                     or developer.",
                    other.unwrap_or("none")
                ),
            ));
        }
    };
    let content = match item.get("content") {
        Some(Value::String(s)) => Content::Text(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (k, part) in parts.iter().enumerate() {
                out.push(content_part(part, i, k)?);
            }
            // An assistant's text is text, whatever the part it came in.
            if role == Role::Assistant {
                Content::Text(Content::Parts(out).joined_text())
            } else {
                Content::Parts(out)
            }
        }
        _ => {
            return Err(Error::bad_param(
                &format!("input[{i}].content"),
                format!("Missing required parameter: 'input[{i}].content'."),
            ));
        }
    };
    let mut m = Message::text(role, String::new());
    m.content = Some(content);
    Ok(m)
}

fn content_part(part: &Value, i: usize, k: usize) -> Result<ContentPart, Error> {
    let at = format!("input[{i}].content[{k}]");
    let text = || {
        part.get("text")
            .or_else(|| part.get("refusal"))
            .and_then(Value::as_str)
            .map(ContentPart::text)
            .ok_or_else(|| {
                Error::bad_param(&at, format!("Missing required parameter: '{at}.text'."))
            })
    };
    match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "refusal" | "text") => text(),
        Some("input_image") => match part.get("image_url").and_then(Value::as_str) {
            Some(url) => Ok(ContentPart::image(ImageUrl {
                url: url.to_owned(),
                detail: part
                    .get("detail")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })),
            None => Err(Error::bad_param(
                &at,
                "images by `file_id` are not supported by this gateway; send `image_url` (a URL \
                 or a data: URI)",
            )),
        },
        other => Err(Error::bad_param(
            &at,
            format!(
                "content part type `{}` is not supported by this gateway",
                other.unwrap_or("none")
            ),
        )),
    }
}

/// Function tools, flat in Responses, nested in chat.
fn tools(tools: Option<&[Value]>) -> Option<Vec<Tool>> {
    let tools: Vec<Tool> = tools?
        .iter()
        .filter_map(|t| {
            Some(Tool {
                kind: "function".to_owned(),
                function: FunctionDefinition {
                    name: t.get("name")?.as_str()?.to_owned(),
                    description: t
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    parameters: t.get("parameters").filter(|p| !p.is_null()).cloned(),
                    strict: t.get("strict").and_then(Value::as_bool),
                },
            })
        })
        .collect();
    (!tools.is_empty()).then_some(tools)
}

fn tool_choice(choice: &Value) -> Result<ToolChoice, Error> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "none" | "auto" | "required") => {
            Ok(ToolChoice::Mode(mode.clone()))
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                Error::bad_param(
                    "tool_choice.name",
                    "Missing required parameter: 'tool_choice.name'.",
                )
            })?;
            Ok(ToolChoice::Named(
                json!({ "type": "function", "function": { "name": name } }),
            ))
        }
        other => Err(Error::bad_param(
            "tool_choice",
            format!("tool_choice {other} is not supported by this gateway"),
        )),
    }
}

/// `text.format` as chat's `response_format` (`None` for plain text).
fn response_format(text: &Value) -> Result<Option<ResponseFormat>, Error> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat {
            kind: "json_object".to_owned(),
            json_schema: None,
            extra: Extra::new(),
        })),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(key) {
                    schema.insert(key.to_owned(), v.clone());
                }
            }
            if !schema.contains_key("name") || !schema.contains_key("schema") {
                return Err(Error::bad_param(
                    "text.format",
                    "a json_schema format needs `name` and `schema`",
                ));
            }
            Ok(Some(ResponseFormat {
                kind: "json_schema".to_owned(),
                json_schema: Some(Value::Object(schema)),
                extra: Extra::new(),
            }))
        }
        other => Err(Error::bad_param(
            "text.format.type",
            format!("text format `{}` is not supported", other.unwrap_or("none")),
        )),
    }
}

/// The native body for a pass-through: the caller's body as sent, unless it continues a
/// stored conversation; then `previous_response_id` is replaced by the conversation
/// itself in `input` (a deployment cannot know a response another one served). Reasoning
/// items of the history go only when they carry `encrypted_content` (an id alone means
/// nothing to a provider that did not store it).
pub fn native_body(
    body: &bytes::Bytes,
    history: Option<&[Value]>,
    new_items: Vec<Value>,
) -> Result<bytes::Bytes, Error> {
    let Some(history) = history else {
        return Ok(body.clone());
    };
    let mut map: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| Error::BadRequest {
            message: format!("We could not parse the JSON body of your request: {e}"),
            param: None,
        })?;
    let mut input: Vec<Value> = history
        .iter()
        .filter(|item| {
            item.get("type").and_then(Value::as_str) != Some("reasoning")
                || item.get("encrypted_content").is_some_and(|c| !c.is_null())
        })
        .cloned()
        .collect();
    input.extend(new_items);
    map.remove("previous_response_id");
    map.insert("input".to_owned(), Value::Array(input));
    serde_json::to_vec(&map)
        .map(bytes::Bytes::from)
        .map_err(|e| Error::Internal {
            detail: format!("serializing a Responses body: {e}"),
        })
}

#[cfg(test)]
mod tests;
