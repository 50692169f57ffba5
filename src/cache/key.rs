//! The cache key: SHA-256 over a canonical, typed form of everything that changes the
//! answer, and nothing that does not.
//!
//! Every request type the key reads is destructured exhaustively, so a field added to
//! [`ChatRequest`] (or a message, tool, ...) does not compile until it is classified here
//! as keyed or ignored. JSON objects the gateway does not model (tool schemas, `extra`
//! fields, raw content parts) are written with their keys sorted at every depth, so the
//! order a client happens to send them in never changes the key — whatever serde_json's
//! `preserve_order` feature does to `Map` in this build.

use std::io::Write;

use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    chat::{
        ChatRequest, Content, ContentPart, Extra, FunctionCall, FunctionDefinition, ImageUrl,
        Message, ResponseFormat, Role, Stop, Tool, ToolCall, ToolChoice,
    },
    embeddings::{EmbedInput, EmbedRequest},
};

/// Bumped whenever the canonical form changes, so old entries are never read as new.
const VERSION: &str = "v1";

/// The 32-byte key of one cached answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

impl Key {
    /// The Redis key: `switchyard:cache:v1:<hex>`.
    pub fn redis_key(&self) -> String {
        format!("switchyard:cache:{VERSION}:{}", hex::encode(self.0))
    }
}

/// Who may share an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One caller key's own entries (`cache.scope = "key"`).
    Key(&'a str),
    /// Callers without a key (a gateway with no `[[keys]]`), among themselves.
    Anonymous,
    /// Every caller (`cache.scope = "shared"`).
    Shared,
}

impl Serialize for Scope<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A key named "anonymous" or "shared" must not meet those scopes: keys are tagged.
        match self {
            Scope::Key(name) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("key", name)?;
                m.end()
            }
            Scope::Anonymous => s.serialize_str("anonymous"),
            Scope::Shared => s.serialize_str("shared"),
        }
    }
}

/// The key of `request` for `scope`, under `model`: the catalog's name for the model the
/// caller asked for.
pub fn key(scope: Scope<'_>, model: &str, request: &ChatRequest) -> Key {
    let ChatRequest {
        // Keyed as the catalog names it (the `model` argument).
        model: _,
        messages,
        // How the answer is delivered, not what it is: a JSON request may be answered from
        // an entry a stream wrote, and the reverse.
        stream: _,
        stream_options: _,
        tools,
        tool_choice,
        parallel_tool_calls,
        response_format,
        max_tokens,
        max_completion_tokens,
        temperature,
        top_p,
        n,
        stop,
        seed,
        // The end user's id: keyed, so one application key's end users never share an
        // answer (see docs/cache.md).
        user,
        extra,
        native,
    } = request;
    let canonical = Canonical {
        version: VERSION,
        scope,
        model,
        messages: messages.iter().map(CanonMessage::of).collect(),
        tools: tools
            .as_ref()
            .map(|t| t.iter().map(CanonTool::of).collect()),
        tool_choice: tool_choice.as_ref().map(CanonToolChoice::of),
        parallel_tool_calls: *parallel_tool_calls,
        response_format: response_format.as_ref().map(CanonResponseFormat::of),
        max_tokens: *max_tokens,
        max_completion_tokens: *max_completion_tokens,
        temperature: *temperature,
        top_p: *top_p,
        n: *n,
        // One sequence and a list of one are the same request.
        stop: stop.as_ref().map(|s| match s {
            Stop::One(one) => vec![one.as_str()],
            Stop::Many(many) => many.iter().map(String::as_str).collect(),
        }),
        seed: *seed,
        user: user.as_deref(),
        extra: Sorted::Map(extra),
        native: native.as_deref().map(CanonNative::of),
    };
    let mut hasher = HashWriter(Sha256::new());
    // Writing to a hasher cannot fail, and every value here serializes (no map has a
    // non-string key); on the impossible error the key is still a deterministic digest.
    let _ = serde_json::to_writer(&mut hasher, &canonical);
    Key(hasher.0.finalize().into())
}

/// The key of an embeddings `request` for `scope`, under `model` (the catalog's name). The
/// input, `dimensions` and `encoding_format` are keyed (the encoding too: a hit answers in
/// the shape the entry was asked in, and two encodings never share an entry), and so is
/// every extra field (`input_type`, `task_type` change the vectors). A chat key can never
/// equal one: the canonical form starts with its own tag.
pub fn embed_key(scope: Scope<'_>, model: &str, request: &EmbedRequest) -> Key {
    let EmbedRequest {
        // Keyed as the catalog names it (the `model` argument).
        model: _,
        input,
        dimensions,
        encoding_format,
        user,
        extra,
    } = request;
    #[derive(Serialize)]
    struct CanonEmbed<'a> {
        version: &'static str,
        operation: &'static str,
        scope: Scope<'a>,
        model: &'a str,
        input: &'a EmbedInput,
        dimensions: Option<u32>,
        encoding_format: &'static str,
        user: Option<&'a str>,
        extra: Sorted<'a>,
    }
    let canonical = CanonEmbed {
        version: VERSION,
        operation: "embeddings",
        scope,
        model,
        input,
        dimensions: *dimensions,
        // Absent is float, as the API defines it.
        encoding_format: encoding_format.unwrap_or_default().as_str(),
        user: user.as_deref(),
        extra: Sorted::Map(extra),
    };
    let mut hasher = HashWriter(Sha256::new());
    let _ = serde_json::to_writer(&mut hasher, &canonical);
    Key(hasher.0.finalize().into())
}

/// Feeds serde_json's output straight into the digest: no copy of the request is built.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Serialize)]
struct Canonical<'a> {
    version: &'static str,
    scope: Scope<'a>,
    model: &'a str,
    messages: Vec<CanonMessage<'a>>,
    tools: Option<Vec<CanonTool<'a>>>,
    tool_choice: Option<CanonToolChoice<'a>>,
    parallel_tool_calls: Option<bool>,
    response_format: Option<CanonResponseFormat<'a>>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    n: Option<u32>,
    stop: Option<Vec<&'a str>>,
    seed: Option<i64>,
    user: Option<&'a str>,
    extra: Sorted<'a>,
    native: Option<CanonNative<'a>>,
}

/// A request that arrived in another format: its body and forwarded headers are keyed
/// too, since a pass-through deployment answers them and not only the canonical fields
/// (unknown fields, `anthropic-beta`).
#[derive(Serialize)]
struct CanonNative<'a> {
    format: &'static str,
    body: String,
    headers: Vec<(&'a str, &'a [u8])>,
}

impl<'a> CanonNative<'a> {
    fn of(native: &'a crate::chat::native::NativeRequest) -> Self {
        use crate::chat::native::NativeFormat;
        CanonNative {
            format: match native.format {
                NativeFormat::AnthropicMessages => "anthropic_messages",
                NativeFormat::OpenAiResponses => "openai_responses",
            },
            body: hex::encode(Sha256::digest(&native.body)),
            headers: native
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct CanonMessage<'a> {
    role: Role,
    content: Option<CanonContent<'a>>,
    name: Option<&'a str>,
    tool_calls: Option<Vec<CanonToolCall<'a>>>,
    tool_call_id: Option<&'a str>,
    refusal: Option<&'a str>,
    extra: Sorted<'a>,
}

impl<'a> CanonMessage<'a> {
    fn of(message: &'a Message) -> Self {
        let Message {
            role,
            content,
            name,
            tool_calls,
            tool_call_id,
            refusal,
            extra,
        } = message;
        CanonMessage {
            role: *role,
            content: content.as_ref().map(CanonContent::of),
            name: name.as_deref(),
            tool_calls: tool_calls
                .as_ref()
                .map(|c| c.iter().map(CanonToolCall::of).collect()),
            tool_call_id: tool_call_id.as_deref(),
            refusal: refusal.as_deref(),
            extra: Sorted::Map(extra),
        }
    }
}

#[derive(Serialize)]
enum CanonContent<'a> {
    Text(&'a str),
    Parts(Vec<CanonPart<'a>>),
}

impl<'a> CanonContent<'a> {
    fn of(content: &'a Content) -> Self {
        match content {
            Content::Text(text) => CanonContent::Text(text),
            Content::Parts(parts) => CanonContent::Parts(parts.iter().map(CanonPart::of).collect()),
        }
    }
}

#[derive(Serialize)]
enum CanonPart<'a> {
    Text(&'a str),
    ImageUrl {
        url: &'a str,
        detail: Option<&'a str>,
    },
    Other(Sorted<'a>),
}

impl<'a> CanonPart<'a> {
    fn of(part: &'a ContentPart) -> Self {
        match part {
            ContentPart::Text { kind: _, text } => CanonPart::Text(text),
            ContentPart::ImageUrl {
                kind: _,
                image_url: ImageUrl { url, detail },
            } => CanonPart::ImageUrl {
                url,
                detail: detail.as_deref(),
            },
            ContentPart::Other(value) => CanonPart::Other(Sorted::Value(value)),
        }
    }
}

#[derive(Serialize)]
struct CanonToolCall<'a> {
    id: &'a str,
    kind: &'a str,
    name: &'a str,
    /// The JSON text as sent: the model saw these bytes.
    arguments: &'a str,
}

impl<'a> CanonToolCall<'a> {
    fn of(call: &'a ToolCall) -> Self {
        let ToolCall {
            id,
            kind,
            function: FunctionCall { name, arguments },
        } = call;
        CanonToolCall {
            id,
            kind,
            name,
            arguments,
        }
    }
}

#[derive(Serialize)]
struct CanonTool<'a> {
    kind: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    parameters: Option<Sorted<'a>>,
    strict: Option<bool>,
}

impl<'a> CanonTool<'a> {
    fn of(tool: &'a Tool) -> Self {
        let Tool {
            kind,
            function:
                FunctionDefinition {
                    name,
                    description,
                    parameters,
                    strict,
                },
        } = tool;
        CanonTool {
            kind,
            name,
            description: description.as_deref(),
            parameters: parameters.as_ref().map(Sorted::Value),
            strict: *strict,
        }
    }
}

#[derive(Serialize)]
enum CanonToolChoice<'a> {
    Mode(&'a str),
    Named(Sorted<'a>),
}

impl<'a> CanonToolChoice<'a> {
    fn of(choice: &'a ToolChoice) -> Self {
        match choice {
            ToolChoice::Mode(mode) => CanonToolChoice::Mode(mode),
            ToolChoice::Named(value) => CanonToolChoice::Named(Sorted::Value(value)),
        }
    }
}

#[derive(Serialize)]
struct CanonResponseFormat<'a> {
    kind: &'a str,
    json_schema: Option<Sorted<'a>>,
    extra: Sorted<'a>,
}

impl<'a> CanonResponseFormat<'a> {
    fn of(format: &'a ResponseFormat) -> Self {
        let ResponseFormat {
            kind,
            json_schema,
            extra,
        } = format;
        CanonResponseFormat {
            kind,
            json_schema: json_schema.as_ref().map(Sorted::Value),
            extra: Sorted::Map(extra),
        }
    }
}

/// A JSON value written with every object's keys in sorted order, at every depth.
enum Sorted<'a> {
    Value(&'a Value),
    Map(&'a Extra),
}

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Sorted::Map(map) => sorted_map(map, s),
            Sorted::Value(Value::Object(map)) => sorted_map(map, s),
            Sorted::Value(Value::Array(items)) => s.collect_seq(items.iter().map(Sorted::Value)),
            Sorted::Value(scalar) => scalar.serialize(s),
        }
    }
}

fn sorted_map<S: Serializer>(map: &Extra, s: S) -> Result<S::Ok, S::Error> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut m = s.serialize_map(Some(entries.len()))?;
    for (k, v) in entries {
        m.serialize_entry(k, &Sorted::Value(v))?;
    }
    m.end()
}

#[cfg(test)]
mod tests;
