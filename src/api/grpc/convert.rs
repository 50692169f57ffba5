//! Protobuf messages <-> canonical chat types, field for field.

use serde_json::Value;

use super::pb;
use crate::{
    chat::{
        ChatChunk, ChatRequest, ChatResponse, Content, ContentPart, Extra, FunctionCall,
        FunctionDefinition, ImageUrl, Message, ResponseFormat, Role, Stop, StreamOptions, Tool,
        ToolCall, ToolCallDelta, ToolChoice, Usage,
    },
    error::Error,
};

/// A gRPC request as the canonical request.
pub fn chat_request(req: pb::ChatRequest, stream: bool) -> Result<ChatRequest, Error> {
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(m, i))
        .collect::<Result<Vec<_>, _>>()?;
    let tools = req
        .tools
        .into_iter()
        .enumerate()
        .map(|(i, t)| tool(t, i))
        .collect::<Result<Vec<_>, _>>()?;
    let tool_choice = req.tool_choice.and_then(|c| c.choice).map(|c| match c {
        pb::tool_choice::Choice::Mode(mode) => ToolChoice::Mode(mode),
        pb::tool_choice::Choice::Function(name) => ToolChoice::Named(
            serde_json::json!({ "type": "function", "function": { "name": name } }),
        ),
    });
    let response_format = req
        .response_format
        .map(|f| {
            Ok::<_, Error>(ResponseFormat {
                kind: f.r#type,
                json_schema: json_field(&f.json_schema_json, "response_format.json_schema_json")?,
                extra: Extra::new(),
            })
        })
        .transpose()?;
    let extra = match json_field(&req.extra_json, "extra_json")? {
        None => Extra::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(Error::bad_param(
                "extra_json",
                "`extra_json` must be a JSON object",
            ));
        }
    };
    Ok(ChatRequest {
        native: None,
        model: req.model,
        messages,
        stream: stream.then_some(true),
        stream_options: (stream && req.include_usage).then(|| StreamOptions {
            include_usage: Some(true),
            extra: Extra::new(),
        }),
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls,
        response_format,
        max_tokens: None,
        max_completion_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        n: req.n,
        stop: (!req.stop.is_empty()).then_some(Stop::Many(req.stop)),
        seed: req.seed,
        user: req.user,
        extra,
    })
}

fn json_field(text: &str, param: &str) -> Result<Option<Value>, Error> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Error::bad_param(param, format!("`{param}` is not valid JSON: {e}")))
}

fn role(name: &str, i: usize) -> Result<Role, Error> {
    serde_json::from_value(Value::String(name.to_owned())).map_err(|_| {
        Error::bad_param(
            &format!("messages[{i}].role"),
            format!("unknown role `{name}`; expected system, developer, user, assistant or tool"),
        )
    })
}

fn message(m: pb::Message, i: usize) -> Result<Message, Error> {
    let content = if m.parts.is_empty() {
        m.content.map(Content::Text)
    } else {
        let parts = m
            .parts
            .into_iter()
            .filter_map(|p| p.part)
            .map(|p| match p {
                pb::content_part::Part::Text(t) => ContentPart::text(t),
                pb::content_part::Part::ImageUrl(img) => ContentPart::image(ImageUrl {
                    url: img.url,
                    detail: (!img.detail.is_empty()).then_some(img.detail),
                }),
            })
            .collect();
        Some(Content::Parts(parts))
    };
    let tool_calls: Vec<ToolCall> = m
        .tool_calls
        .into_iter()
        .map(|c| ToolCall {
            id: c.id,
            kind: "function".to_owned(),
            function: FunctionCall {
                name: c.name,
                arguments: c.arguments,
            },
        })
        .collect();
    Ok(Message {
        role: role(&m.role, i)?,
        content,
        name: m.name,
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        tool_call_id: m.tool_call_id,
        refusal: m.refusal,
        extra: Extra::new(),
    })
}

fn tool(t: pb::Tool, i: usize) -> Result<Tool, Error> {
    let f = t.function.ok_or_else(|| {
        Error::bad_param(&format!("tools[{i}].function"), "a tool needs a function")
    })?;
    Ok(Tool {
        kind: "function".to_owned(),
        function: FunctionDefinition {
            name: f.name,
            description: f.description,
            parameters: json_field(
                &f.parameters_json,
                &format!("tools[{i}].function.parameters_json"),
            )?,
            strict: f.strict,
        },
    })
}

/// A canonical response as the gRPC message.
pub fn chat_response(r: ChatResponse) -> pb::ChatResponse {
    pb::ChatResponse {
        id: r.id,
        model: r.model,
        created: r.created,
        choices: r
            .choices
            .into_iter()
            .map(|c| pb::Choice {
                index: c.index,
                message: Some(out_message(c.message)),
                finish_reason: c.finish_reason.unwrap_or_default(),
            })
            .collect(),
        usage: r.usage.map(usage),
        system_fingerprint: r.system_fingerprint,
    }
}

fn out_message(m: Message) -> pb::Message {
    let (content, parts) = match m.content {
        None => (None, Vec::new()),
        Some(Content::Text(t)) => (Some(t), Vec::new()),
        Some(Content::Parts(parts)) => (
            None,
            parts
                .into_iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text, .. } => Some(pb::content_part::Part::Text(text)),
                    ContentPart::ImageUrl { image_url, .. } => {
                        Some(pb::content_part::Part::ImageUrl(pb::ImageUrl {
                            url: image_url.url,
                            detail: image_url.detail.unwrap_or_default(),
                        }))
                    }
                    ContentPart::Other(_) => None,
                })
                .map(|p| pb::ContentPart { part: Some(p) })
                .collect(),
        ),
    };
    pb::Message {
        role: m.role.as_str().to_owned(),
        content,
        parts,
        name: m.name,
        tool_calls: m
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, c)| pb::ToolCall {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                id: c.id,
                name: c.function.name,
                arguments: c.function.arguments,
            })
            .collect(),
        tool_call_id: m.tool_call_id,
        refusal: m.refusal,
    }
}

fn usage(u: Usage) -> pb::Usage {
    pb::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
        cached_tokens: u.cached_tokens(),
        reasoning_tokens: u.reasoning_tokens(),
    }
}

/// A canonical chunk as the gRPC message.
pub fn chat_chunk(c: ChatChunk) -> pb::ChatChunk {
    pb::ChatChunk {
        id: c.id,
        model: c.model,
        created: c.created,
        choices: c
            .choices
            .into_iter()
            .map(|ch| pb::ChunkChoice {
                index: ch.index,
                delta: Some(pb::Delta {
                    role: ch.delta.role.map(|r| r.as_str().to_owned()),
                    content: ch.delta.content,
                    tool_calls: ch
                        .delta
                        .tool_calls
                        .unwrap_or_default()
                        .into_iter()
                        .map(tool_call_delta)
                        .collect(),
                    refusal: ch.delta.refusal,
                }),
                finish_reason: ch.finish_reason.unwrap_or_default(),
            })
            .collect(),
        usage: c.usage.map(usage),
    }
}

fn tool_call_delta(d: ToolCallDelta) -> pb::ToolCall {
    let f = d.function.unwrap_or_default();
    pb::ToolCall {
        index: d.index,
        id: d.id.unwrap_or_default(),
        name: f.name.unwrap_or_default(),
        arguments: f.arguments.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
