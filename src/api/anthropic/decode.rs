//! Anthropic Messages request -> the canonical [`ChatRequest`], with the body kept beside
//! it as a [`NativeRequest`] for deployments that speak Messages themselves.
//!
//! Rules (Messages API reference, "Create a Message"): `system` (a string or text blocks)
//! becomes one system message; a user turn's `tool_result` blocks become `tool` messages
//! (they come first in the turn), its other blocks the user message; an assistant turn's
//! `tool_use` blocks become `tool_calls` with `input` as the arguments' JSON text; `thinking`/`redacted_thinking` blocks from earlier turns carry no meaning another
//! format can use and are left out of the translation (they pass through unchanged to an
//! Anthropic deployment); images are `data:` URLs (base64) or URLs; `stop_sequences` is
//! `stop`; `metadata.user_id` is `user`; `top_k` rides as the extra field the adapters
//! read; `thinking` becomes `reasoning_effort` (see [`effort_for_budget`]);
//! `output_config.format` is `response_format`; `tool_choice` `auto`/`any`/`tool`/`none`
//! is `auto`/`required`/the named function/`none`, and `disable_parallel_tool_use` is
//! `parallel_tool_calls: false`. `cache_control` and every field the canonical types do not
//! model are not translated: they reach Anthropic deployments only. Block types this code
//! does not know travel as raw parts, which a translating adapter refuses by name.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    chat::{
        ChatRequest, Content, ContentPart, Extra, FunctionCall, FunctionDefinition, ImageUrl,
        Message, ResponseFormat, Role, Stop, StreamOptions, Tool, ToolCall, ToolChoice,
        native::{NativeFormat, NativeRequest},
    },
    error::Error,
};

/// The headers a Messages deployment is sent as the caller sent them.
const FORWARDED: [HeaderName; 2] = [
    HeaderName::from_static("anthropic-version"),
    HeaderName::from_static("anthropic-beta"),
];

/// What the body must have: a create call needs `max_tokens`, a token count does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Create,
    CountTokens,
}

#[derive(Deserialize)]
struct MessagesRequest {
    model: String,
    #[serde(default)]
    max_tokens: Option<u32>,
    messages: Vec<InMessage>,
    #[serde(default)]
    system: Option<InSystem>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    tools: Option<Vec<InTool>>,
    #[serde(default)]
    tool_choice: Option<InToolChoice>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    thinking: Option<Thinking>,
    #[serde(default)]
    output_config: Option<OutputConfig>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InSystem {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Deserialize)]
struct InMessage {
    role: InRole,
    content: InContent,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum InRole {
    User,
    Assistant,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InContent {
    Text(String),
    Blocks(Vec<Block>),
}

/// A content block: one this code reads, or any other kept as it came.
#[derive(Deserialize)]
#[serde(untagged)]
enum Block {
    Known(KnownBlock),
    Raw(Value),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum KnownBlock {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        /// A `Value`, not raw text: an untagged enum buffers its input, which `RawValue`
        /// cannot read from. The bytes as sent reach Anthropic deployments natively.
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<InContent>,
    },
    Thinking {},
    RedactedThinking {},
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Deserialize)]
struct InTool {
    name: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct InToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct Thinking {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    budget_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct OutputConfig {
    #[serde(default)]
    format: Option<OutputFormat>,
}

#[derive(Deserialize)]
struct OutputFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    schema: Option<Value>,
}

fn bad(message: impl Into<String>) -> Error {
    Error::BadRequest {
        message: message.into(),
        param: None,
    }
}

/// The OpenAI `reasoning_effort` closest to a thinking budget: up to 2 048 tokens `low`,
/// up to 8 192 `medium`, above `high` (OpenAI's effort levels have no token figure; these
/// bounds follow the budgets Anthropic's extended-thinking guide gives as starting points).
pub fn effort_for_budget(budget: u32) -> &'static str {
    match budget {
        0..=2048 => "low",
        2049..=8192 => "medium",
        _ => "high",
    }
}

/// Decodes a Messages body (`bytes`, as sent) with the caller's `headers` into the
/// canonical request carrying the native one.
pub fn decode(
    bytes: &Bytes,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Result<ChatRequest, Error> {
    let wire: MessagesRequest = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            bad(format!("There was an issue with your request body: {e}"))
        } else {
            bad(format!("Invalid Messages request: {e}"))
        }
    })?;
    let mut request = translate(wire, endpoint)?;
    let forwarded = FORWARDED
        .iter()
        .flat_map(|name| {
            headers
                .get_all(name)
                .iter()
                .map(|v| (name.clone(), v.clone()))
        })
        .collect::<Vec<(HeaderName, HeaderValue)>>();
    request.native = Some(Arc::new(NativeRequest {
        format: NativeFormat::AnthropicMessages,
        body: bytes.clone(),
        headers: forwarded,
    }));
    Ok(request)
}

fn translate(wire: MessagesRequest, endpoint: Endpoint) -> Result<ChatRequest, Error> {
    if wire.model.trim().is_empty() {
        return Err(Error::bad_param("model", "model: Field required"));
    }
    if endpoint == Endpoint::Create {
        match wire.max_tokens {
            Some(n) if n >= 1 => {}
            _ => {
                return Err(Error::bad_param(
                    "max_tokens",
                    "max_tokens: Field required (an integer >= 1)",
                ));
            }
        }
    }
    if wire.messages.is_empty() {
        return Err(Error::bad_param(
            "messages",
            "messages: at least one message is required",
        ));
    }
    let mut extra = Extra::new();
    if let Some(k) = wire.top_k {
        extra.insert("top_k".into(), Value::from(k));
    }
    if let Some(thinking) = &wire.thinking {
        match thinking.kind.as_str() {
            "enabled" => {
                let budget = thinking.budget_tokens.ok_or_else(|| {
                    Error::bad_param(
                        "thinking.budget_tokens",
                        "thinking.budget_tokens: Field required",
                    )
                })?;
                if budget < 1024 {
                    return Err(Error::bad_param(
                        "thinking.budget_tokens",
                        "thinking.budget_tokens: Input should be greater than or equal to 1024",
                    ));
                }
                if let Some(max) = wire.max_tokens.filter(|m| budget >= *m) {
                    return Err(Error::bad_param(
                        "max_tokens",
                        format!(
                            "`max_tokens` must be greater than `thinking.budget_tokens` ({max} <= {budget})"
                        ),
                    ));
                }
                extra.insert("reasoning_effort".into(), effort_for_budget(budget).into());
            }
            "adaptive" => {
                extra.insert("reasoning_effort".into(), "medium".into());
            }
            "disabled" => {}
            other => {
                return Err(Error::bad_param(
                    "thinking.type",
                    format!("thinking.type: `{other}` is not one of enabled, disabled, adaptive"),
                ));
            }
        }
    }
    let mut messages = Vec::with_capacity(wire.messages.len() + 1);
    if let Some(system) = wire.system {
        messages.push(system_message(system)?);
    }
    for (i, m) in wire.messages.into_iter().enumerate() {
        match m.role {
            InRole::User => user_turn(m.content, i, &mut messages)?,
            InRole::Assistant => messages.push(assistant_turn(m.content, i)?),
        }
    }
    let stream = wire.stream == Some(true);
    Ok(ChatRequest {
        model: wire.model,
        messages,
        stream: wire.stream,
        // Messages streams always end with usage (message_delta): the pipeline must let
        // the usage chunk through.
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Extra::new(),
        }),
        tools: wire
            .tools
            .map(|tools| tools.into_iter().map(tool).collect()),
        tool_choice: wire.tool_choice.as_ref().map(tool_choice).transpose()?,
        parallel_tool_calls: wire
            .tool_choice
            .as_ref()
            .and_then(|c| c.disable_parallel_tool_use)
            .filter(|d| *d)
            .map(|_| false),
        response_format: wire
            .output_config
            .and_then(|c| c.format)
            .map(response_format)
            .transpose()?,
        max_tokens: wire.max_tokens,
        max_completion_tokens: None,
        temperature: wire.temperature,
        top_p: wire.top_p,
        n: None,
        stop: wire
            .stop_sequences
            .filter(|s| !s.is_empty())
            .map(Stop::Many),
        seed: None,
        user: wire.metadata.and_then(|m| m.user_id),
        extra,
        native: None,
    })
}

fn system_message(system: InSystem) -> Result<Message, Error> {
    Ok(match system {
        InSystem::Text(text) => Message::text(Role::System, text),
        InSystem::Blocks(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.into_iter().enumerate() {
                match b {
                    Block::Known(KnownBlock::Text { text }) => parts.push(ContentPart::text(text)),
                    _ => {
                        return Err(Error::bad_param(
                            "system",
                            format!("system.{j}: only text blocks are allowed in `system`"),
                        ));
                    }
                }
            }
            Message {
                content: Some(Content::Parts(parts)),
                ..Message::text(Role::System, "")
            }
        }
    })
}

/// A user turn: its tool results first (as `tool` messages), then the rest.
fn user_turn(content: InContent, i: usize, out: &mut Vec<Message>) -> Result<(), Error> {
    let blocks = match content {
        InContent::Text(text) => {
            out.push(Message::text(Role::User, text));
            return Ok(());
        }
        InContent::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.into_iter().enumerate() {
        match b {
            Block::Known(KnownBlock::ToolResult {
                tool_use_id,
                content,
            }) => {
                let content = match content {
                    None => Content::Text(String::new()),
                    Some(InContent::Text(t)) => Content::Text(t),
                    Some(InContent::Blocks(inner)) => {
                        let mut inner_parts = Vec::with_capacity(inner.len());
                        for b in inner {
                            if let Some(p) = part(b, i, j)? {
                                inner_parts.push(p);
                            }
                        }
                        simplify(inner_parts)
                    }
                };
                out.push(Message {
                    tool_call_id: Some(tool_use_id),
                    content: Some(content),
                    ..Message::text(Role::Tool, "")
                });
            }
            other => {
                if let Some(p) = part(other, i, j)? {
                    parts.push(p);
                }
            }
        }
    }
    if !parts.is_empty() {
        out.push(Message {
            content: Some(simplify(parts)),
            ..Message::text(Role::User, "")
        });
    }
    Ok(())
}

/// One text part is plain text; anything else stays parts.
fn simplify(mut parts: Vec<ContentPart>) -> Content {
    if parts.len() == 1
        && let Some(ContentPart::Text { text, .. }) = parts.first_mut()
    {
        return Content::Text(std::mem::take(text));
    }
    Content::Parts(parts)
}

/// A user-side block as a content part; `None` for blocks left out of translations.
fn part(block: Block, i: usize, j: usize) -> Result<Option<ContentPart>, Error> {
    Ok(match block {
        Block::Known(KnownBlock::Text { text }) => Some(ContentPart::text(text)),
        Block::Known(KnownBlock::Image { source }) => Some(ContentPart::image(ImageUrl {
            url: match source {
                ImageSource::Base64 { media_type, data } => {
                    format!("data:{media_type};base64,{data}")
                }
                ImageSource::Url { url } => url,
            },
            detail: None,
        })),
        Block::Known(KnownBlock::Thinking {} | KnownBlock::RedactedThinking {}) => None,
        Block::Known(KnownBlock::ToolUse { .. } | KnownBlock::ToolResult { .. }) => {
            return Err(bad(format!(
                "messages.{i}.content.{j}: this block is not allowed here"
            )));
        }
        Block::Raw(v) => Some(ContentPart::Other(v)),
    })
}

fn assistant_turn(content: InContent, i: usize) -> Result<Message, Error> {
    let blocks = match content {
        InContent::Text(text) => return Ok(Message::text(Role::Assistant, text)),
        InContent::Blocks(blocks) => blocks,
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut other = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        match b {
            Block::Known(KnownBlock::Text { text: t }) => text.push_str(&t),
            Block::Known(KnownBlock::ToolUse { id, name, input }) => calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            Block::Known(KnownBlock::Thinking {} | KnownBlock::RedactedThinking {}) => {}
            Block::Known(_) => {
                return Err(bad(format!(
                    "messages.{i}.content.{j}: this block is not allowed in an assistant turn"
                )));
            }
            Block::Raw(v) => other.push(ContentPart::Other(v)),
        }
    }
    let content = if other.is_empty() {
        (!text.is_empty() || calls.is_empty()).then_some(Content::Text(text))
    } else {
        let mut parts = Vec::with_capacity(other.len() + 1);
        if !text.is_empty() {
            parts.push(ContentPart::text(text));
        }
        parts.extend(other);
        Some(Content::Parts(parts))
    };
    Ok(Message {
        content,
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..Message::text(Role::Assistant, "")
    })
}

fn tool(t: InTool) -> Tool {
    // Anthropic's server tools (`web_search_…`, `bash_…`, …) keep their type: no other
    // format has them, and an adapter refuses or its provider rejects them by name.
    let kind = match t.kind.as_deref() {
        None | Some("custom") => "function".to_owned(),
        Some(other) => other.to_owned(),
    };
    Tool {
        kind,
        function: FunctionDefinition {
            name: t.name,
            description: t.description,
            parameters: t.input_schema,
            strict: t.strict,
        },
    }
}

fn tool_choice(c: &InToolChoice) -> Result<ToolChoice, Error> {
    Ok(match c.kind.as_str() {
        "auto" => ToolChoice::Mode("auto".into()),
        "any" => ToolChoice::Mode("required".into()),
        "none" => ToolChoice::Mode("none".into()),
        "tool" => {
            let name = c.name.as_deref().ok_or_else(|| {
                Error::bad_param("tool_choice.name", "tool_choice.name: Field required")
            })?;
            ToolChoice::Named(json!({ "type": "function", "function": { "name": name } }))
        }
        other => {
            return Err(Error::bad_param(
                "tool_choice.type",
                format!("tool_choice.type: `{other}` is not one of auto, any, tool, none"),
            ));
        }
    })
}

fn response_format(f: OutputFormat) -> Result<ResponseFormat, Error> {
    match (f.kind.as_str(), f.schema) {
        ("json_schema", Some(schema)) => Ok(ResponseFormat {
            kind: "json_schema".into(),
            json_schema: Some(json!({ "name": "output", "schema": schema, "strict": true })),
            extra: Extra::new(),
        }),
        ("json_schema", None) => Err(Error::bad_param(
            "output_config.format.schema",
            "output_config.format.schema: Field required",
        )),
        (other, _) => Err(Error::bad_param(
            "output_config.format.type",
            format!("output_config.format.type: `{other}` is not supported"),
        )),
    }
}

#[cfg(test)]
mod tests;
