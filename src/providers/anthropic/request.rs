//! Canonical (OpenAI) request -> Anthropic Messages request.
//!
//! Rules, from the Messages API reference: `system` is a top-level field, so system and
//! developer messages are hoisted into it; only `user` and `assistant` turns exist, so tool
//! results travel as `tool_result` blocks in a user turn and consecutive same-role messages
//! share one turn; `max_tokens` is required; tool calls are `tool_use` blocks whose `input`
//! is a JSON object; images are `base64` or `url` sources; structured output is
//! `output_config.format` (`json_schema`). What has no equivalent is refused
//! ([`ProviderError::Untranslatable`]), never silently dropped.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Value, json, value::RawValue};

use crate::{
    chat::{ChatRequest, Content, ContentPart, Message, Role, ToolChoice},
    providers::{
        ProviderError,
        content::{DataUrl, arguments_object, data_url},
    },
};

/// Anthropic requires `max_tokens`; OpenAI does not. Used when the caller gave none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Image types the Messages API accepts as base64 sources.
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolDef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Value>,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: ImageSource<'a>,
    },
    ToolUse {
        id: Cow<'a, str>,
        name: &'a str,
        input: &'a RawValue,
    },
    ToolResult {
        tool_use_id: Cow<'a, str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        content: Vec<Block<'a>>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
struct ToolDef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

fn refuse(message: String) -> ProviderError {
    ProviderError::Untranslatable(format!("anthropic: {message}"))
}

/// Serializes the request for the Messages API.
pub fn encode_request(
    request: &ChatRequest,
    model: &str,
    stream: bool,
) -> Result<Vec<u8>, ProviderError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(refuse(
            "`n` > 1 is not supported: it returns one choice".into(),
        ));
    }
    if let Some(t) = request.temperature.filter(|t| *t > 1.0) {
        return Err(refuse(format!(
            "`temperature` {t} is out of range: Anthropic accepts 0 to 1"
        )));
    }
    if let Some(field) = crate::providers::unsupported_output(request) {
        return Err(refuse(format!("{field} is not supported")));
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
    let tools: Vec<ToolDef> = request
        .tools
        .iter()
        .flatten()
        .map(|t| ToolDef {
            name: &t.function.name,
            description: t.function.description.as_deref(),
            input_schema: input_schema(t.function.parameters.as_ref()),
            strict: t.function.strict,
        })
        .collect();
    let stop_sequences = match &request.stop {
        None => Vec::new(),
        Some(crate::chat::Stop::One(s)) => vec![s.as_str()],
        Some(crate::chat::Stop::Many(v)) => v.iter().map(String::as_str).collect(),
    };
    let asked_max = request.max_completion_tokens.or(request.max_tokens);
    let (thinking, max_tokens) = thinking(request, asked_max)?;
    let wire = Request {
        model,
        max_tokens,
        messages: turns,
        system,
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.extra.get("top_k"),
        stop_sequences,
        stream,
        tool_choice: tool_choice(request, !tools.is_empty())?,
        tools,
        metadata: request.user.as_ref().map(|u| {
            let id: String = u.chars().take(MAX_USER_ID).collect();
            json!({ "user_id": id })
        }),
        output_config: output_config(request)?,
        thinking,
    };
    serde_json::to_vec(&wire).map_err(|e| refuse(format!("encoding the request: {e}")))
}

/// The least thinking budget the Messages API takes.
const MIN_THINKING_BUDGET: u32 = 1024;

/// Extended thinking for an OpenAI `reasoning_effort`, and the `max_tokens` to send.
///
/// The budgets are the Gemini adapter's (`minimal`/`low` 1,024, `medium` 8,192, `high`
/// 24,576 tokens). Anthropic counts thinking inside `max_tokens` and wants the budget
/// below it, as OpenAI counts reasoning inside `max_completion_tokens`: a caller's limit
/// is kept and the budget cut to fit under it (refused when not even the least budget
/// fits); without one, the budget is added to the default. Not enabled on a turn that
/// answers a tool call: Anthropic then wants the assistant turn to start with its signed
/// thinking block, which only a pass-through carries. Refused with a temperature, top_k
/// or a forced tool, which thinking does not take.
fn thinking(
    request: &ChatRequest,
    asked_max: Option<u32>,
) -> Result<(Option<Value>, u32), ProviderError> {
    let default = asked_max.unwrap_or(DEFAULT_MAX_TOKENS);
    let budget = match request
        .extra
        .get("reasoning_effort")
        .and_then(Value::as_str)
    {
        Some("minimal" | "low") => MIN_THINKING_BUDGET,
        Some("medium") => 8192,
        Some("high") => 24576,
        _ => return Ok((None, default)),
    };
    let continues_tool_call = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .is_some_and(|m| m.tool_calls.as_ref().is_some_and(|c| !c.is_empty()));
    if continues_tool_call {
        return Ok((None, default));
    }
    if request.temperature.is_some_and(|t| t != 1.0) || request.extra.contains_key("top_k") {
        return Err(refuse(
            "`reasoning_effort` with `temperature` or `top_k`: extended thinking takes \
             neither"
                .into(),
        ));
    }
    let forced = match &request.tool_choice {
        Some(ToolChoice::Named(_)) => true,
        Some(ToolChoice::Mode(mode)) => mode == "required",
        None => false,
    };
    if forced {
        return Err(refuse(
            "`reasoning_effort` with a forced tool: extended thinking takes only `auto` or \
             `none`"
                .into(),
        ));
    }
    let (budget, max_tokens) = match asked_max {
        Some(max) if max <= MIN_THINKING_BUDGET => {
            return Err(refuse(format!(
                "`reasoning_effort` needs a token limit above {MIN_THINKING_BUDGET} (thinking \
                 counts inside it), not {max}"
            )));
        }
        Some(max) => (budget.min(max - 1), max),
        None => (budget, DEFAULT_MAX_TOKENS + budget),
    };
    Ok((
        Some(json!({ "type": "enabled", "budget_tokens": budget })),
        max_tokens,
    ))
}

fn text_blocks(content: Option<&Content>, i: usize) -> Result<Vec<Block<'_>>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(t)) => Ok(non_empty(t)
            .map(|text| Block::Text { text })
            .into_iter()
            .collect()),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .filter_map(|(j, p)| match p {
                ContentPart::Text { text, .. } => {
                    non_empty(text).map(|text| Ok(Block::Text { text }))
                }
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
                ContentPart::Text { text, .. } => {
                    non_empty(text).map(|text| Ok(Block::Text { text }))
                }
                ContentPart::ImageUrl { image_url, .. } => Some(image(&image_url.url, i, j)),
                other => Some(Err(refuse(format!(
                    "messages[{i}].content[{j}]: a {} part has no Anthropic equivalent",
                    part_type(other)
                )))),
            })
            .collect(),
        other => text_blocks(other.as_ref(), i),
    }
}

fn image(url: &str, i: usize, j: usize) -> Result<Block<'_>, ProviderError> {
    let source = match data_url(url) {
        None => ImageSource::Url { url },
        Some(Err(why)) => return Err(refuse(format!("messages[{i}].content[{j}]: {why}"))),
        Some(Ok(DataUrl { media_type, data })) => {
            if !IMAGE_TYPES.contains(&media_type) {
                return Err(refuse(format!(
                    "messages[{i}].content[{j}]: image type `{media_type}` is not supported \
                     (jpeg, png, gif, webp)"
                )));
            }
            ImageSource::Base64 { media_type, data }
        }
    };
    Ok(Block::Image { source })
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
            id: tool_id(&call.id),
            name: &call.function.name,
            input,
        });
    }
    Ok(blocks)
}

fn tool_result(m: &Message, i: usize) -> Result<Block<'_>, ProviderError> {
    let tool_use_id = m.tool_call_id.as_deref().ok_or_else(|| {
        refuse(format!(
            "messages[{i}]: a tool message needs `tool_call_id`"
        ))
    })?;
    Ok(Block::ToolResult {
        tool_use_id: tool_id(tool_use_id),
        content: text_blocks(m.content.as_ref(), i)?,
    })
}

fn tool_choice(request: &ChatRequest, has_tools: bool) -> Result<Option<Value>, ProviderError> {
    let mut choice = match &request.tool_choice {
        None if !has_tools => return Ok(None),
        None => json!({ "type": "auto" }),
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => json!({ "type": "auto" }),
            "required" => json!({ "type": "any" }),
            "none" => json!({ "type": "none" }),
            other => return Err(refuse(format!("tool_choice `{other}` is not supported"))),
        },
        Some(named) => match named.function_name() {
            Some(name) => json!({ "type": "tool", "name": name }),
            None => return Err(refuse("tool_choice must name a function".into())),
        },
    };
    if request.parallel_tool_calls == Some(false) && choice["type"] != "none" {
        choice["disable_parallel_tool_use"] = json!(true);
    }
    Ok(Some(choice))
}

fn output_config(request: &ChatRequest) -> Result<Option<Value>, ProviderError> {
    let Some(format) = &request.response_format else {
        return Ok(None);
    };
    let schema = match format.kind.as_str() {
        "text" => return Ok(None),
        "json_object" => json!({ "type": "object" }),
        "json_schema" => format
            .json_schema
            .as_ref()
            .and_then(|s| s.get("schema"))
            .cloned()
            .ok_or_else(|| refuse("response_format.json_schema.schema is required".into()))?,
        other => {
            return Err(refuse(format!(
                "response_format `{other}` is not supported"
            )));
        }
    };
    Ok(Some(
        json!({ "format": { "type": "json_schema", "schema": schema } }),
    ))
}

/// Tool-use ids must match `^[a-zA-Z0-9_-]+$`; ids minted by other providers (e.g.
/// `functions.get_weather:0`) are rewritten the same way wherever they appear, so a call
/// and its result still pair up.
fn tool_id(id: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !id.is_empty() && id.chars().all(ok) {
        Cow::Borrowed(id)
    } else {
        let mut out: String = id.chars().map(|c| if ok(c) { c } else { '_' }).collect();
        if out.is_empty() {
            out.push('_');
        }
        Cow::Owned(out)
    }
}

/// A tool schema must be an object schema with a `type`; OpenAI accepts `{}`.
fn input_schema(parameters: Option<&Value>) -> Cow<'_, Value> {
    match parameters {
        Some(schema @ Value::Object(o)) if o.contains_key("type") => Cow::Borrowed(schema),
        Some(Value::Object(o)) => {
            let mut o = o.clone();
            o.insert("type".into(), json!("object"));
            Cow::Owned(Value::Object(o))
        }
        _ => Cow::Owned(json!({"type": "object"})),
    }
}

/// Anthropic's `metadata.user_id` is at most 512 characters; longer ids are cut there.
const MAX_USER_ID: usize = 512;

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
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
