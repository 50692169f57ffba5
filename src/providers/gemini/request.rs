//! Canonical (OpenAI) request -> Gemini `generateContent` request.
//!
//! Rules, from the Gemini API reference (GenerateContentRequest, Content, Part, Tool,
//! ToolConfig, GenerationConfig): system and developer messages become
//! `systemInstruction`; roles are `user` and `model`; tool calls are `functionCall` parts
//! (`args` a JSON object) and tool results `functionResponse` parts in a user turn, named
//! after the call they answer; consecutive same-role turns merge (a turn answering parallel
//! calls holds all their responses). Schemas travel as JSON Schema, unchanged
//! (`parametersJsonSchema`, `responseJsonSchema`), so nothing is lost converting to the
//! OpenAPI subset. What has no equivalent is refused, never silently dropped.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    chat::{ChatRequest, Content, ContentPart, Message, Role, Stop, ToolChoice},
    providers::ProviderError,
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    contents: Vec<Turn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    generation_config: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_settings: Option<&'a Value>,
}

#[derive(Serialize)]
struct Turn {
    role: &'static str,
    parts: Vec<Value>,
}

fn refuse(message: String) -> ProviderError {
    ProviderError::Untranslatable(format!("gemini: {message}"))
}

/// Serializes the request for `generateContent` / `streamGenerateContent`.
pub fn encode_request(request: &ChatRequest) -> Result<Vec<u8>, ProviderError> {
    if let Some(field) = crate::providers::unsupported_output(request) {
        return Err(refuse(format!("{field} is not supported")));
    }
    // Tool results name the function they answer; OpenAI's only carry the call id.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in request.messages.iter().enumerate() {
        let (role, parts) = match m.role {
            Role::System | Role::Developer => {
                system.extend(text_parts(m.content.as_ref(), i, false)?);
                continue;
            }
            Role::User => ("user", text_parts(m.content.as_ref(), i, true)?),
            Role::Assistant => {
                for call in m.tool_calls.iter().flatten() {
                    call_names.insert(&call.id, &call.function.name);
                }
                ("model", model_parts(m, i)?)
            }
            Role::Tool => ("user", vec![function_response(m, i, &call_names)?]),
            Role::Function => {
                return Err(refuse(format!(
                    "messages[{i}]: the deprecated `function` role is not supported; use `tool`"
                )));
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.parts.extend(parts),
            _ => turns.push(Turn { role, parts }),
        }
    }
    let declarations: Vec<Value> = request
        .tools
        .iter()
        .flatten()
        .map(|t| {
            let mut d = json!({ "name": t.function.name });
            if let Some(desc) = &t.function.description {
                d["description"] = json!(desc);
            }
            if let Some(params) = &t.function.parameters {
                d["parametersJsonSchema"] = params.clone();
            }
            d
        })
        .collect();
    let wire = Request {
        contents: turns,
        system_instruction: (!system.is_empty()).then(|| json!({ "parts": system })),
        tool_config: tool_config(request)?,
        tools: if declarations.is_empty() {
            Vec::new()
        } else {
            vec![json!({ "functionDeclarations": declarations })]
        },
        generation_config: generation_config(request)?,
        safety_settings: request.extra.get("safety_settings"),
    };
    serde_json::to_vec(&wire).map_err(|e| refuse(format!("encoding the request: {e}")))
}

fn text_parts(
    content: Option<&Content>,
    i: usize,
    media: bool,
) -> Result<Vec<Value>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(t)) if t.is_empty() => Ok(Vec::new()),
        Some(Content::Text(t)) => Ok(vec![json!({ "text": t })]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .filter_map(|(j, p)| match p {
                ContentPart::Text { text, .. } if text.is_empty() => None,
                ContentPart::Text { text, .. } => Some(Ok(json!({ "text": text }))),
                ContentPart::ImageUrl { image_url, .. } if media => {
                    Some(image(&image_url.url, i, j))
                }
                other => Some(Err(refuse(format!(
                    "messages[{i}].content[{j}]: a {} part is not supported here",
                    part_type(other)
                )))),
            })
            .collect(),
    }
}

/// A data URL becomes `inlineData`; any other URL `fileData` (Gemini fetches it).
fn image(url: &str, i: usize, j: usize) -> Result<Value, ProviderError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| refuse(format!("messages[{i}].content[{j}]: malformed data URL")))?;
        let mime = meta.strip_suffix(";base64").ok_or_else(|| {
            refuse(format!(
                "messages[{i}].content[{j}]: only base64 data URLs are supported"
            ))
        })?;
        return Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }));
    }
    let lower = url.to_ascii_lowercase();
    let path = lower.split(['?', '#']).next().unwrap_or_default();
    let mime = [
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("webp", "image/webp"),
        ("gif", "image/gif"),
        ("heic", "image/heic"),
    ]
    .iter()
    .find(|(ext, _)| path.ends_with(&format!(".{ext}")))
    .map(|(_, m)| *m)
    .ok_or_else(|| {
        refuse(format!(
            "messages[{i}].content[{j}]: cannot tell the image type of a URL without a \
                 known extension; send it as a data URL"
        ))
    })?;
    Ok(json!({ "fileData": { "mimeType": mime, "fileUri": url } }))
}

fn model_parts(m: &Message, i: usize) -> Result<Vec<Value>, ProviderError> {
    let mut parts = text_parts(m.content.as_ref(), i, false)?;
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let args = call.function.arguments.trim();
        let args = if args.is_empty() {
            json!({})
        } else {
            serde_json::from_str::<Value>(args)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    refuse(format!(
                        "messages[{i}].tool_calls[{j}].function.arguments must be a JSON object"
                    ))
                })?
        };
        parts.push(
            json!({ "functionCall": { "id": call.id, "name": call.function.name, "args": args } }),
        );
    }
    Ok(parts)
}

fn function_response(
    m: &Message,
    i: usize,
    call_names: &HashMap<&str, &str>,
) -> Result<Value, ProviderError> {
    let id = m.tool_call_id.as_deref().ok_or_else(|| {
        refuse(format!(
            "messages[{i}]: a tool message needs `tool_call_id`"
        ))
    })?;
    let name = call_names.get(id).ok_or_else(|| {
        refuse(format!(
            "messages[{i}]: tool_call_id `{id}` answers no tool call of an earlier assistant message"
        ))
    })?;
    let text = m
        .content
        .as_ref()
        .map(Content::joined_text)
        .unwrap_or_default();
    // `response` must be a JSON object: an object result goes as is, anything else wrapped.
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "result": text }),
    };
    Ok(json!({ "functionResponse": { "id": id, "name": name, "response": response } }))
}

fn tool_config(request: &ChatRequest) -> Result<Option<Value>, ProviderError> {
    let config = match &request.tool_choice {
        None => return Ok(None),
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => json!({ "mode": "AUTO" }),
            "required" => json!({ "mode": "ANY" }),
            "none" => json!({ "mode": "NONE" }),
            other => return Err(refuse(format!("tool_choice `{other}` is not supported"))),
        },
        Some(named) => match named.function_name() {
            Some(name) => json!({ "mode": "ANY", "allowedFunctionNames": [name] }),
            None => return Err(refuse("tool_choice must name a function".into())),
        },
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}

fn generation_config(request: &ChatRequest) -> Result<Map<String, Value>, ProviderError> {
    let mut c = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            c.insert(k.to_owned(), v);
        }
    };
    put("temperature", request.temperature.map(Value::from));
    put("topP", request.top_p.map(Value::from));
    put("topK", request.extra.get("top_k").cloned());
    put(
        "maxOutputTokens",
        request
            .max_completion_tokens
            .or(request.max_tokens)
            .map(Value::from),
    );
    put("candidateCount", request.n.map(Value::from));
    put("seed", request.seed.map(Value::from));
    put(
        "presencePenalty",
        request.extra.get("presence_penalty").cloned(),
    );
    put(
        "frequencyPenalty",
        request.extra.get("frequency_penalty").cloned(),
    );
    put(
        "stopSequences",
        request.stop.as_ref().map(|s| match s {
            Stop::One(one) => json!([one]),
            Stop::Many(many) => json!(many),
        }),
    );
    if let Some(format) = &request.response_format {
        match format.kind.as_str() {
            "text" => {}
            "json_object" => put("responseMimeType", Some(json!("application/json"))),
            "json_schema" => {
                let schema = format
                    .json_schema
                    .as_ref()
                    .and_then(|s| s.get("schema"))
                    .cloned()
                    .ok_or_else(|| {
                        refuse("response_format.json_schema.schema is required".into())
                    })?;
                put("responseMimeType", Some(json!("application/json")));
                put("responseJsonSchema", Some(schema));
            }
            other => {
                return Err(refuse(format!(
                    "response_format `{other}` is not supported"
                )));
            }
        }
    }
    Ok(c)
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
