//! The checks the simulated Bedrock makes before answering: the SigV4 signature, and the
//! request as the Converse API validates it (alternating turns, well-formed blocks,
//! `toolUse`/`toolResult` pairing, tool and output configuration).

use http::HeaderMap;
use serde_json::Value;

use super::{EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY};
use crate::providers::bedrock::{
    SERVICE,
    sigv4::{self, AmzDate, Authorization, Signer},
};

const REQUEST_KEYS: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
    "outputConfig",
    "serviceTier",
];
const BLOCK_KEYS: &[&str] = &[
    "text",
    "image",
    "document",
    "video",
    "toolUse",
    "toolResult",
    "guardContent",
    "reasoningContent",
    "cachePoint",
    "citationsContent",
];

/// The SigV4 checks Bedrock makes, as far as a mock can: `(exception, message)` on failure.
pub(super) fn signature(
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<(), (&'static str, String)> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let incomplete = |m: String| ("IncompleteSignatureException", m);
    let Some(auth) = get("authorization") else {
        return Err((
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".into(),
        ));
    };
    let auth = Authorization::parse(auth).map_err(incomplete)?;
    let date = get("x-amz-date")
        .and_then(AmzDate::parse)
        .ok_or_else(|| incomplete("x-amz-date must be a date like 20150830T123600Z".into()))?;
    if auth.day != date.day() {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid date: {} does not match x-amz-date",
            auth.day
        )));
    }
    if auth.service != SERVICE {
        return Err(incomplete(format!(
            "Credential should be scoped to correct service: '{SERVICE}'."
        )));
    }
    let mut signed = Vec::new();
    for name in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&name) {
            return Err(incomplete(format!("SignedHeaders must include {name}")));
        }
    }
    for name in &auth.signed_headers {
        let value = get(name)
            .ok_or_else(|| incomplete(format!("signed header `{name}` is not in the request")))?;
        signed.push((*name, value));
    }
    let body_hash = sigv4::sha256_hex(body);
    if get("x-amz-content-sha256").is_some_and(|h| h != body_hash) {
        return Err((
            "InvalidSignatureException",
            "x-amz-content-sha256 does not match the body".into(),
        ));
    }
    if auth.access_key_id != EXAMPLE_ACCESS_KEY_ID {
        return Ok(());
    }
    let signer = Signer {
        access_key_id: auth.access_key_id,
        secret_access_key: EXAMPLE_SECRET_ACCESS_KEY,
        region: auth.region,
        service: SERVICE,
    };
    let expected = signer.sign(
        &sigv4::Request {
            method: "POST",
            path,
            query: "",
            headers: &signed,
            payload_hash: &body_hash,
        },
        &date,
    );
    if expected.signature == auth.signature {
        Ok(())
    } else {
        Err((
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method."
                .into(),
        ))
    }
}

/// The checks the real API makes before answering.
pub(super) fn request(r: &Value) -> Result<(), String> {
    let Some(obj) = r.as_object() else {
        return Err("Malformed input request".into());
    };
    if let Some(key) = obj.keys().find(|k| !REQUEST_KEYS.contains(&k.as_str())) {
        return Err(format!("Malformed input request: unknown key `{key}`"));
    }
    let Some(messages) = r
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return Err("messages: must be a non-empty list".into());
    };
    let mut open: Vec<&str> = Vec::new();
    let mut has_tool_blocks = false;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: must be user or assistant"));
        }
        if i == 0 && role != "user" {
            return Err(
                "A conversation must start with a user message. Try again with a \
                        conversation that starts with a user message."
                    .into(),
            );
        }
        if role != expected {
            return Err(
                "A conversation must alternate between user and assistant roles. Make \
                        sure the conversation alternates between user and assistant roles and \
                        try again."
                    .into(),
            );
        }
        let Some(blocks) = m
            .get("content")
            .and_then(Value::as_array)
            .filter(|b| !b.is_empty())
        else {
            return Err(format!("messages.{i}.content: must be a non-empty list"));
        };
        let mut results: Vec<&str> = Vec::new();
        let mut uses: Vec<&str> = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            match block(b, role, &format!("messages.{i}.content.{j}"))? {
                Some(Tool::Use(id)) => uses.push(id),
                Some(Tool::Result(id)) => results.push(id),
                None => {}
            }
        }
        has_tool_blocks |= !uses.is_empty() || !results.is_empty();
        // Every toolUse is answered by a toolResult with its id in the next (user) turn.
        if let Some(missing) = open.iter().find(|id| !results.contains(id)) {
            return Err(format!(
                "Expected toolResult blocks at messages.{i}.content for the following Ids: {missing}"
            ));
        }
        if results.len() > open.len() || results.iter().any(|id| !open.contains(id)) {
            return Err(format!(
                "The number of toolResult blocks at messages.{i}.content exceeds the number of \
                 toolUse blocks of previous turn."
            ));
        }
        open = uses;
    }
    for (k, b) in r
        .get("system")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if b.get("text")
            .and_then(Value::as_str)
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(format!(
                "The text field in the SystemContentBlock object at system.{k} is blank."
            ));
        }
    }
    validate_config(r, has_tool_blocks)
}

/// The tool side of a content block: the id a `toolUse` opens or a `toolResult` answers.
enum Tool<'a> {
    Use(&'a str),
    Result(&'a str),
}

/// Checks one content block of a `role` message at `at` (`messages.i.content.j`).
fn block<'a>(b: &'a Value, role: &str, at: &str) -> Result<Option<Tool<'a>>, String> {
    let kind = block_kind(b)
        .ok_or_else(|| format!("{at}: a content block must set exactly one known member"))?;
    let str_at = |ptr: &str| b.pointer(ptr).and_then(Value::as_str);
    let blank = |v: &Value| v.as_str().is_none_or(|t| t.trim().is_empty());
    match (kind, role) {
        ("text", _) if blank(&b["text"]) => Err(format!(
            "The text field in the ContentBlock object at {at} is blank. Add text to the text \
             field, and try again."
        )),
        ("image", _)
            if !matches!(
                str_at("/image/format"),
                Some("png" | "jpeg" | "gif" | "webp")
            ) || str_at("/image/source/bytes").is_none() =>
        {
            Err(format!(
                "{at}.image: needs format png|jpeg|gif|webp and source.bytes"
            ))
        }
        ("toolUse", "assistant") => match str_at("/toolUse/toolUseId") {
            Some(id)
                if str_at("/toolUse/name").is_some()
                    && b.pointer("/toolUse/input").is_some_and(Value::is_object) =>
            {
                Ok(Some(Tool::Use(id)))
            }
            _ => Err(format!(
                "{at}.toolUse: needs toolUseId, name and an input object"
            )),
        },
        ("toolResult", "user") => {
            let content = b.pointer("/toolResult/content").and_then(Value::as_array);
            let ok = content.is_some_and(|c| {
                !c.is_empty()
                    && c.iter().all(|x| {
                        x.get("json").is_some() || x.get("text").is_some_and(|t| !blank(t))
                    })
            });
            match str_at("/toolResult/toolUseId") {
                Some(id) if ok => Ok(Some(Tool::Result(id))),
                _ => Err(format!(
                    "{at}.toolResult: needs toolUseId and non-empty text or json content"
                )),
            }
        }
        ("toolUse" | "toolResult", _) => {
            Err(format!("{at}: {kind} is not allowed in a {role} message"))
        }
        _ => Ok(None),
    }
}

/// The single member set on a content block, when there is exactly one and it is known.
fn block_kind(b: &Value) -> Option<&'static str> {
    let obj = b.as_object().filter(|o| o.len() == 1)?;
    BLOCK_KEYS.iter().find(|k| obj.contains_key(**k)).copied()
}

fn validate_config(r: &Value, has_tool_blocks: bool) -> Result<(), String> {
    let unit = |ptr: &str| r.pointer(ptr).and_then(Value::as_f64);
    if r.pointer("/inferenceConfig/maxTokens")
        .is_some_and(|v| v.as_u64().is_none_or(|n| n < 1))
    {
        return Err("inferenceConfig.maxTokens: must be an integer >= 1".into());
    }
    for (ptr, name) in [
        ("/inferenceConfig/temperature", "temperature"),
        ("/inferenceConfig/topP", "topP"),
    ] {
        if unit(ptr).is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            return Err(format!("inferenceConfig.{name}: must be between 0 and 1"));
        }
    }
    let tools = r.pointer("/toolConfig/tools").and_then(Value::as_array);
    if has_tool_blocks && tools.is_none() {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
    }
    if let Some(config) = r.get("toolConfig") {
        let names: Vec<&str> = tools
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let spec = t.get("toolSpec")?;
                spec.pointer("/inputSchema/json")
                    .filter(|s| s.is_object())?;
                spec.get("name")?.as_str()
            })
            .collect();
        if names.is_empty() || Some(names.len()) != tools.map(Vec::len) {
            return Err(
                "toolConfig.tools: each tool needs toolSpec.name and toolSpec.inputSchema.json"
                    .into(),
            );
        }
        match config.get("toolChoice").and_then(Value::as_object) {
            None if config.get("toolChoice").is_none() => {}
            Some(c) if c.len() == 1 && (c.contains_key("auto") || c.contains_key("any")) => {}
            Some(c)
                if c.len() == 1
                    && c.get("tool")
                        .and_then(|t| t.get("name"))
                        .and_then(Value::as_str)
                        .is_some_and(|n| names.contains(&n)) => {}
            _ => {
                return Err(
                    "toolConfig.toolChoice: must be one of auto, any or tool{name} naming a tool"
                        .into(),
                );
            }
        }
    }
    if let Some(format) = r.pointer("/outputConfig/textFormat") {
        let schema = format
            .pointer("/structure/jsonSchema/schema")
            .and_then(Value::as_str);
        let parsed = schema.and_then(|s| serde_json::from_str::<Value>(s).ok());
        if format.get("type").and_then(Value::as_str) != Some("json_schema") || parsed.is_none() {
            return Err("outputConfig.textFormat: needs type json_schema and structure.jsonSchema.schema, a JSON string".into());
        }
    }
    Ok(())
}
