//! Canonical (OpenAI) request -> Bedrock Converse request.
//!
//! Rules, from the Bedrock API reference (Converse, Message, ContentBlock, ToolConfiguration,
//! InferenceConfiguration, OutputConfig): the model is in the URL, not the body; `system`
//! is a list of `{text}` blocks, so system and developer messages are hoisted into it;
//! turns are `user` or `assistant` and must alternate, so same-role messages share a turn
//! and tool results travel as `toolResult` blocks in a user turn; blocks are keyed by kind
//! (`text`, `image`, `toolUse`, `toolResult`) with no type tag; images are bytes (base64 in
//! JSON) of png, jpeg, gif or webp; sampling lives in `inferenceConfig` (temperature and
//! topP 0 to 1); structured output is `outputConfig.textFormat` with the schema as a JSON
//! string. `toolChoice` has only `auto`, `any` and `tool`: `none` is expressed by sending
//! no `toolConfig`, which Bedrock forbids once the conversation holds tool blocks, so then
//! it is refused. What has no equivalent is refused, never silently dropped.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Value, json, value::RawValue};

use crate::{
    chat::{ChatRequest, Content, ContentPart, Message, Role, Stop, ToolChoice},
    providers::{
        ProviderError,
        content::{DataUrl, arguments_object, data_url},
    },
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    inference_config: InferenceConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_config: Option<Value>,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Block<'a> {
    Text(&'a str),
    Image {
        format: &'static str,
        source: ImageSource<'a>,
    },
    ToolUse {
        #[serde(rename = "toolUseId")]
        tool_use_id: Cow<'a, str>,
        name: &'a str,
        input: &'a RawValue,
    },
    ToolResult {
        #[serde(rename = "toolUseId")]
        tool_use_id: Cow<'a, str>,
        content: Vec<Value>,
    },
}

#[derive(Serialize)]
struct ImageSource<'a> {
    bytes: &'a str,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
}

impl InferenceConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig {
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
}

fn refuse(message: String) -> ProviderError {
    ProviderError::Untranslatable(format!("bedrock: {message}"))
}

/// Serializes the request for Converse or ConverseStream (the same body for both).
pub fn encode_request(request: &ChatRequest) -> Result<Vec<u8>, ProviderError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(refuse(
            "`n` > 1 is not supported: it returns one choice".into(),
        ));
    }
    if let Some(field) = crate::providers::unsupported_output(request) {
        return Err(refuse(format!("{field} is not supported")));
    }
    for (name, value) in [
        ("temperature", request.temperature),
        ("top_p", request.top_p),
    ] {
        if let Some(v) = value.filter(|v| !(0.0..=1.0).contains(v)) {
            return Err(refuse(format!(
                "`{name}` {v} is out of range: Bedrock accepts 0 to 1"
            )));
        }
    }
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in request.messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                system.extend(text_blocks(m.content.as_ref(), i)?);
                continue;
            }
            Role::User => ("user", user_blocks(m, i)?),
            Role::Assistant => ("assistant", assistant_blocks(m, i)?),
            Role::Tool => ("user", vec![tool_result(m, i)?]),
            Role::Function => {
                return Err(refuse(format!(
                    "messages[{i}]: the deprecated `function` role is not supported; use `tool`"
                )));
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => turns.push(Turn {
                role,
                content: blocks,
            }),
        }
    }
    let has_tool_blocks = turns
        .iter()
        .flat_map(|t| &t.content)
        .any(|b| matches!(b, Block::ToolUse { .. } | Block::ToolResult { .. }));
    let stop_sequences = match &request.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.as_str()],
        Some(Stop::Many(v)) => v.iter().map(String::as_str).collect(),
    };
    let wire = Request {
        messages: turns,
        system,
        inference_config: InferenceConfig {
            max_tokens: request.max_completion_tokens.or(request.max_tokens),
            temperature: request.temperature,
            top_p: request.top_p,
            stop_sequences,
        },
        tool_config: tool_config(request, has_tool_blocks)?,
        output_config: output_config(request)?,
    };
    serde_json::to_vec(&wire).map_err(|e| refuse(format!("encoding the request: {e}")))
}

fn text_blocks(content: Option<&Content>, i: usize) -> Result<Vec<Block<'_>>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(t)) => Ok(non_empty(t).map(Block::Text).into_iter().collect()),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .filter_map(|(j, p)| match p {
                ContentPart::Text { text, .. } => non_empty(text).map(|t| Ok(Block::Text(t))),
                other => Some(Err(refuse(format!(
                    "messages[{i}].content[{j}]: a {} part is not allowed here",
                    part_type(other)
                )))),
            })
            .collect(),
    }
}

fn user_blocks(m: &Message, i: usize) -> Result<Vec<Block<'_>>, ProviderError> {
    match &m.content {
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .filter_map(|(j, p)| match p {
                ContentPart::Text { text, .. } => non_empty(text).map(|t| Ok(Block::Text(t))),
                ContentPart::ImageUrl { image_url, .. } => Some(image(&image_url.url, i, j)),
                other => Some(Err(refuse(format!(
                    "messages[{i}].content[{j}]: a {} part has no Bedrock equivalent",
                    part_type(other)
                )))),
            })
            .collect(),
        other => text_blocks(other.as_ref(), i),
    }
}

/// Converse takes image bytes (or an S3 location), never a URL to fetch: only `data:`
/// URLs translate, and their base64 is what the JSON `bytes` field carries.
fn image(url: &str, i: usize, j: usize) -> Result<Block<'_>, ProviderError> {
    let at = |what: &str| refuse(format!("messages[{i}].content[{j}]: {what}"));
    let DataUrl { media_type, data } = match data_url(url) {
        None => {
            return Err(at(
                "image URLs are not supported (Bedrock takes image bytes); send a data URL",
            ));
        }
        Some(parsed) => parsed.map_err(at)?,
    };
    let format = match media_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(at(&format!(
                "image type `{other}` is not supported (png, jpeg, gif, webp)"
            )));
        }
    };
    Ok(Block::Image {
        format,
        source: ImageSource { bytes: data },
    })
}

fn assistant_blocks(m: &Message, i: usize) -> Result<Vec<Block<'_>>, ProviderError> {
    let mut blocks = text_blocks(m.content.as_ref(), i)?;
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let input = arguments_object(&call.function.arguments).ok_or_else(|| {
            refuse(format!(
                "messages[{i}].tool_calls[{j}].function.arguments must be a JSON object"
            ))
        })?;
        blocks.push(Block::ToolUse {
            tool_use_id: tool_id(&call.id),
            name: &call.function.name,
            input,
        });
    }
    Ok(blocks)
}

/// A tool message: its text as `text` blocks. An empty result is sent as the empty JSON
/// object, since a text block may not be blank.
fn tool_result(m: &Message, i: usize) -> Result<Block<'_>, ProviderError> {
    let id = m.tool_call_id.as_deref().ok_or_else(|| {
        refuse(format!(
            "messages[{i}]: a tool message needs `tool_call_id`"
        ))
    })?;
    let mut content: Vec<Value> = text_blocks(m.content.as_ref(), i)?
        .into_iter()
        .filter_map(|b| match b {
            Block::Text(t) => Some(json!({ "text": t })),
            _ => None,
        })
        .collect();
    if content.is_empty() {
        content.push(json!({ "json": {} }));
    }
    Ok(Block::ToolResult {
        tool_use_id: tool_id(id),
        content,
    })
}

fn tool_config(
    request: &ChatRequest,
    has_tool_blocks: bool,
) -> Result<Option<ToolConfig>, ProviderError> {
    let tools: Vec<Value> = request
        .tools
        .iter()
        .flatten()
        .map(|t| {
            let f = &t.function;
            let mut spec = json!({ "name": f.name, "inputSchema": { "json": input_schema(f.parameters.as_ref()) } });
            if let Some(d) = &f.description {
                spec["description"] = json!(d);
            }
            if let Some(strict) = f.strict {
                spec["strict"] = json!(strict);
            }
            json!({ "toolSpec": spec })
        })
        .collect();
    let tool_choice = match &request.tool_choice {
        None => None,
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => Some(json!({ "auto": {} })),
            "required" => Some(json!({ "any": {} })),
            "none" if has_tool_blocks => {
                return Err(refuse(
                    "tool_choice `none` cannot be expressed once the conversation has tool \
                     calls: Converse has no `none` choice and requires the tools then"
                        .into(),
                ));
            }
            "none" => return Ok(None),
            other => return Err(refuse(format!("tool_choice `{other}` is not supported"))),
        },
        Some(named) => match named.function_name() {
            Some(name) => Some(json!({ "tool": { "name": name } })),
            None => return Err(refuse("tool_choice must name a function".into())),
        },
    };
    if tools.is_empty() {
        if has_tool_blocks {
            return Err(refuse(
                "the conversation has tool calls but no `tools`: Converse requires the \
                 tool definitions then"
                    .into(),
            ));
        }
        return Ok(None);
    }
    // `parallel_tool_calls: false` has no Converse equivalent; like the Gemini and Cohere
    // adapters, the hint is not sent (docs/translation.md says so) rather than the request refused.
    Ok(Some(ToolConfig { tools, tool_choice }))
}

/// `outputConfig.textFormat`: Converse's structured output takes the schema as a string.
fn output_config(request: &ChatRequest) -> Result<Option<Value>, ProviderError> {
    let Some(format) = &request.response_format else {
        return Ok(None);
    };
    let spec = format.json_schema.as_ref();
    let schema = match format.kind.as_str() {
        "text" => return Ok(None),
        "json_object" => json!({ "type": "object" }),
        "json_schema" => spec
            .and_then(|s| s.get("schema"))
            .cloned()
            .ok_or_else(|| refuse("response_format.json_schema.schema is required".into()))?,
        other => {
            return Err(refuse(format!(
                "response_format `{other}` is not supported"
            )));
        }
    };
    let mut json_schema = json!({ "schema": schema.to_string() });
    for field in ["name", "description"] {
        if let Some(v) = spec.and_then(|s| s.get(field)).filter(|v| v.is_string()) {
            json_schema[field] = v.clone();
        }
    }
    Ok(Some(json!({ "textFormat": {
        "type": "json_schema",
        "structure": { "jsonSchema": json_schema }
    } })))
}

/// Tool-use ids must match `^[a-zA-Z0-9_-]+$` (at most 64 characters); ids minted by other
/// providers are rewritten the same way wherever they appear, so a call and its result
/// still pair up.
fn tool_id(id: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !id.is_empty() && id.len() <= 64 && id.chars().all(ok) {
        Cow::Borrowed(id)
    } else {
        let mut out: String = id
            .chars()
            .map(|c| if ok(c) { c } else { '_' })
            .take(64)
            .collect();
        if out.is_empty() {
            out.push('_');
        }
        Cow::Owned(out)
    }
}

/// A tool schema must be an object schema with a `type`; OpenAI accepts `{}`.
fn input_schema(parameters: Option<&Value>) -> Value {
    match parameters {
        Some(schema @ Value::Object(o)) if o.contains_key("type") => schema.clone(),
        Some(Value::Object(o)) => {
            let mut o = o.clone();
            o.insert("type".into(), json!("object"));
            Value::Object(o)
        }
        _ => json!({"type": "object"}),
    }
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.trim().is_empty()).then_some(text)
}

fn part_type(part: &ContentPart) -> String {
    match part {
        ContentPart::Text { .. } => "text".into(),
        ContentPart::ImageUrl { .. } => "image_url".into(),
        ContentPart::Other(v) => v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("untyped")
            .to_owned(),
    }
}
