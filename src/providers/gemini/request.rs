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
use serde_json::{Value, value::RawValue};

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
    contents: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Instruction<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolGroup<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_settings: Option<&'a Value>,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
struct Instruction<'a> {
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Part<'a> {
    Text(&'a str),
    InlineData(Blob<'a>),
    FileData(FileRef<'a>),
    FunctionCall(Call<'a>),
    FunctionResponse(CallResult<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Blob<'a> {
    mime_type: &'a str,
    data: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileRef<'a> {
    mime_type: &'a str,
    file_uri: &'a str,
}

#[derive(Serialize)]
struct Call<'a> {
    id: &'a str,
    name: &'a str,
    /// The caller's JSON arguments, checked to be an object and sent as written.
    args: &'a RawValue,
}

#[derive(Serialize)]
struct CallResult<'a> {
    id: &'a str,
    name: &'a str,
    response: ResultBody<'a>,
}

/// `response` must be a JSON object: an object result goes as written, anything else
/// wrapped as `{"result": text}`.
#[derive(Serialize)]
#[serde(untagged)]
enum ResultBody<'a> {
    Object(&'a RawValue),
    Wrapped { result: String },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolGroup<'a> {
    function_declarations: Vec<Declaration<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Declaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<&'a Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: CallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'a str; 1]>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<ThinkingConfig>,
}

/// `generationConfig.thinkingConfig` (Gemini API reference, ThinkingConfig).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThinkingConfig {
    thinking_budget: u32,
    include_thoughts: bool,
}

/// The thinking budget for an OpenAI `reasoning_effort` (Gemini's thinking models take a
/// token budget; the figures are the ones the Messages surface maps budgets from, so a
/// budget comes back as the same order of magnitude): `none` turns thinking off.
fn thinking_config(request: &ChatRequest) -> Option<ThinkingConfig> {
    let budget = match request.extra.get("reasoning_effort")?.as_str()? {
        "none" => 0,
        "minimal" | "low" => 1024,
        "medium" => 8192,
        "high" => 24576,
        _ => return None,
    };
    Some(ThinkingConfig {
        thinking_budget: budget,
        include_thoughts: budget > 0,
    })
}

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.candidate_count.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
            && self.thinking_config.is_none()
    }
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
    let declarations: Vec<Declaration> = request
        .tools
        .iter()
        .flatten()
        .map(|t| Declaration {
            name: &t.function.name,
            description: t.function.description.as_deref(),
            parameters_json_schema: t.function.parameters.as_ref(),
        })
        .collect();
    let wire = Request {
        contents: turns,
        system_instruction: (!system.is_empty()).then_some(Instruction { parts: system }),
        tool_config: tool_config(request)?,
        tools: if declarations.is_empty() {
            Vec::new()
        } else {
            vec![ToolGroup {
                function_declarations: declarations,
            }]
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
) -> Result<Vec<Part<'_>>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(t)) if t.is_empty() => Ok(Vec::new()),
        Some(Content::Text(t)) => Ok(vec![Part::Text(t)]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .filter_map(|(j, p)| match p {
                ContentPart::Text { text, .. } if text.is_empty() => None,
                ContentPart::Text { text, .. } => Some(Ok(Part::Text(text))),
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
fn image(url: &str, i: usize, j: usize) -> Result<Part<'_>, ProviderError> {
    if let Some(parsed) = data_url(url) {
        let DataUrl { media_type, data } =
            parsed.map_err(|why| refuse(format!("messages[{i}].content[{j}]: {why}")))?;
        return Ok(Part::InlineData(Blob {
            mime_type: media_type,
            data,
        }));
    }
    let lower = url.to_ascii_lowercase();
    let path = lower.split(['?', '#']).next().unwrap_or_default();
    let mime_type = [
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
    Ok(Part::FileData(FileRef {
        mime_type,
        file_uri: url,
    }))
}

fn model_parts(m: &Message, i: usize) -> Result<Vec<Part<'_>>, ProviderError> {
    let mut parts = text_parts(m.content.as_ref(), i, false)?;
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let args = arguments_object(&call.function.arguments).ok_or_else(|| {
            refuse(format!(
                "messages[{i}].tool_calls[{j}].function.arguments must be a JSON object"
            ))
        })?;
        parts.push(Part::FunctionCall(Call {
            id: &call.id,
            name: &call.function.name,
            args,
        }));
    }
    Ok(parts)
}

fn function_response<'a>(
    m: &'a Message,
    i: usize,
    call_names: &HashMap<&'a str, &'a str>,
) -> Result<Part<'a>, ProviderError> {
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
    let response = match &m.content {
        Some(Content::Text(t)) if t.trim().is_empty() => ResultBody::Wrapped { result: t.clone() },
        Some(Content::Text(t)) => match arguments_object(t) {
            Some(raw) => ResultBody::Object(raw),
            None => ResultBody::Wrapped { result: t.clone() },
        },
        other => ResultBody::Wrapped {
            result: other.as_ref().map(Content::joined_text).unwrap_or_default(),
        },
    };
    Ok(Part::FunctionResponse(CallResult { id, name, response }))
}

fn tool_config(request: &ChatRequest) -> Result<Option<ToolConfig<'_>>, ProviderError> {
    let (mode, allowed_function_names) = match &request.tool_choice {
        None => return Ok(None),
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => ("AUTO", None),
            "required" => ("ANY", None),
            "none" => ("NONE", None),
            other => return Err(refuse(format!("tool_choice `{other}` is not supported"))),
        },
        Some(named) => match named.function_name() {
            Some(name) => ("ANY", Some([name])),
            None => return Err(refuse("tool_choice must name a function".into())),
        },
    };
    Ok(Some(ToolConfig {
        function_calling_config: CallingConfig {
            mode,
            allowed_function_names,
        },
    }))
}

fn generation_config(request: &ChatRequest) -> Result<GenerationConfig<'_>, ProviderError> {
    let mut c = GenerationConfig {
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.extra.get("top_k"),
        max_output_tokens: request.max_completion_tokens.or(request.max_tokens),
        stop_sequences: match &request.stop {
            None => Vec::new(),
            Some(Stop::One(one)) => vec![one.as_str()],
            Some(Stop::Many(many)) => many.iter().map(String::as_str).collect(),
        },
        candidate_count: request.n,
        seed: request.seed,
        presence_penalty: request.extra.get("presence_penalty"),
        frequency_penalty: request.extra.get("frequency_penalty"),
        thinking_config: thinking_config(request),
        ..GenerationConfig::default()
    };
    if let Some(format) = &request.response_format {
        match format.kind.as_str() {
            "text" => {}
            "json_object" => c.response_mime_type = Some("application/json"),
            "json_schema" => {
                let schema = format
                    .json_schema
                    .as_ref()
                    .and_then(|s| s.get("schema"))
                    .ok_or_else(|| {
                        refuse("response_format.json_schema.schema is required".into())
                    })?;
                c.response_mime_type = Some("application/json");
                c.response_json_schema = Some(schema);
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
