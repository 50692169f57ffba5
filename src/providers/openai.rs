//! The OpenAI chat-completions wire format: OpenAI itself and the OpenAI-compatible family
//! (DeepSeek, Mistral, Qwen/DashScope, Fireworks, Groq, Together, xAI, OpenRouter, vLLM,
//! Ollama), which differ only in base URL, auth and quirks — see [`super::presets`].
//!
//! Request: the canonical request is the wire format, so it is sent as parsed, with the
//! deployment's model and the stream mode written in (API reference: "Create chat
//! completion", POST {base_url}/chat/completions). Streams always ask for
//! `stream_options.include_usage` so usage is known even when the caller did not ask.

mod embed;

use futures_util::future::BoxFuture;
use serde::Serialize;

use super::{
    ChunkStream, Provider, ProviderError, limits,
    sse::{self, SseEvent, StreamTranslator},
    upstream::{self, Upstream},
};
use crate::{
    chat::{ChatChunk, ChatRequest, ChatResponse, StreamOptions},
    config::ProviderConfig,
    providers::presets::Wire,
};

/// A provider speaking the OpenAI chat-completions wire format.
pub struct OpenAiProvider {
    upstream: Upstream,
    quirks: Quirks,
    /// Azure OpenAI: the `api-version`; requests go to a per-deployment path.
    azure_api_version: Option<String>,
    /// `{base}/embeddings` (not Azure, whose path names the deployment).
    embeddings_url: url::Url,
    /// Where a request that came in through the Responses API is passed through
    /// ([`responses`]): OpenAI and Azure only; other vendors translate it.
    responses_url: Option<url::Url>,
}

impl OpenAiProvider {
    /// A provider for one config entry, sharing the gateway's pooled client.
    pub fn new(
        config: &ProviderConfig,
        client: crate::providers::client::Client,
    ) -> Result<Self, String> {
        let mut headers = config.header_pairs();
        let base = config.base_url.trim_end_matches('/');
        let azure = config.wire == Wire::Azure;
        if let Some(key) = &config.api_key {
            headers.push(if azure {
                ("api-key".into(), key.expose().to_owned())
            } else {
                ("authorization".into(), format!("Bearer {}", key.expose()))
            });
        }
        let url = if azure {
            base.to_owned()
        } else {
            format!("{base}/chat/completions")
        };
        let embeddings_url =
            url::Url::parse(&format!("{base}/embeddings")).map_err(|e| format!("base_url: {e}"))?;
        let responses_url = match config.wire {
            Wire::Azure => Some(format!("{base}/openai/v1/responses")),
            Wire::OpenAi if config.kind == "openai" => Some(format!("{base}/responses")),
            _ => None,
        }
        .map(|u| url::Url::parse(&u).map_err(|e| format!("the Responses URL {u}: {e}")))
        .transpose()?;
        Ok(OpenAiProvider {
            embeddings_url,
            responses_url,
            upstream: Upstream::new(client, &url, headers, config.max_response_bytes)?,
            quirks: Quirks::of_kind(config.kind),
            azure_api_version: azure.then(|| config.api_version.clone().unwrap_or_default()),
        })
    }

    async fn post(
        &self,
        body: Vec<u8>,
        model: &str,
        stream: bool,
    ) -> Result<upstream::Answer, ProviderError> {
        match &self.azure_api_version {
            None => self.upstream.post(body, stream).await,
            Some(version) => {
                self.upstream
                    .post_to(
                        azure_url(self.upstream.url(), model, version)?,
                        body,
                        stream,
                    )
                    .await
            }
        }
    }
}

/// `{base}/openai/deployments/{deployment}/chat/completions?api-version={version}` (Azure
/// OpenAI REST reference, "Chat completions").
pub fn azure_url(
    base: &url::Url,
    deployment: &str,
    version: &str,
) -> Result<url::Url, ProviderError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ProviderError::Untranslatable("azure: base_url cannot take a path".into()))?
        .pop_if_empty()
        .extend(["openai", "deployments", deployment, "chat", "completions"]);
    url.query_pairs_mut().append_pair("api-version", version);
    Ok(url)
}

/// The request as sent upstream: the canonical body plus what each attempt decides.
#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    #[serde(flatten)]
    body: &'a ChatRequest,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

/// Known differences of OpenAI-compatible vendors, applied while encoding. Each one is a
/// documented rejection by that vendor's API of something OpenAI accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Mistral: tool-call ids must be exactly 9 characters of `[a-zA-Z0-9]` ("Tool call id
    /// was ... but must be a-z, A-Z, 0-9, with a length of 9"). Other ids are mapped to
    /// such ids, the same way in calls and results, so they still pair up.
    pub nine_char_tool_ids: bool,
    /// OpenAI (also on Azure): reasoning models (o1, o3, o4, gpt-5) reject `max_tokens`
    /// ("Use 'max_completion_tokens' instead"); it is sent as `max_completion_tokens`.
    pub reasoning_max_completion_tokens: bool,
}

impl Quirks {
    /// The quirks of a config `kind`.
    pub fn of_kind(kind: &str) -> Quirks {
        match kind {
            "mistral" => Quirks {
                nine_char_tool_ids: true,
                ..Quirks::default()
            },
            "openai" | "azure" => Quirks {
                reasoning_max_completion_tokens: true,
                ..Quirks::default()
            },
            _ => Quirks::default(),
        }
    }

    /// The request as this vendor needs it, or `None` when it can go as it is.
    fn patch(self, request: &ChatRequest, model: &str) -> Option<ChatRequest> {
        let name = model.rsplit('/').next().unwrap_or(model);
        let reasoning = self.reasoning_max_completion_tokens
            && request.max_tokens.is_some()
            && ["o1", "o3", "o4", "gpt-5"]
                .iter()
                .any(|p| name.starts_with(p));
        let foreign_ids = self.nine_char_tool_ids
            && request.messages.iter().any(|m| {
                m.tool_call_id
                    .as_deref()
                    .is_some_and(|id| !is_nine_char_id(id))
                    || m.tool_calls
                        .iter()
                        .flatten()
                        .any(|c| !is_nine_char_id(&c.id))
            });
        if !reasoning && !foreign_ids {
            return None;
        }
        let mut patched = request.clone();
        if reasoning {
            patched.max_completion_tokens = patched.max_completion_tokens.or(patched.max_tokens);
            patched.max_tokens = None;
        }
        if foreign_ids {
            for m in &mut patched.messages {
                if let Some(id) = &mut m.tool_call_id {
                    *id = nine_char_id(id);
                }
                for call in m.tool_calls.iter_mut().flatten() {
                    call.id = nine_char_id(&call.id);
                }
            }
        }
        Some(patched)
    }
}

fn is_nine_char_id(id: &str) -> bool {
    id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A valid id stays; any other becomes 9 base-62 characters of its FNV-1a hash, so the
/// same id always maps to the same new one.
fn nine_char_id(id: &str) -> String {
    if is_nine_char_id(id) {
        return id.to_owned();
    }
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..9)
        .map(|_| {
            let digit = DIGITS[(hash % 62) as usize] as char;
            hash /= 62;
            digit
        })
        .collect()
}

/// Serializes the request for the wire, with the vendor's quirks applied.
pub fn encode_request(request: &ChatRequest, model: &str, stream: bool, quirks: Quirks) -> Vec<u8> {
    let patched = quirks.patch(request, model);
    let request = patched.as_ref().unwrap_or(request);
    let stream_options = stream.then(|| {
        let mut options = request.stream_options.clone().unwrap_or_default();
        options.include_usage = Some(true);
        options
    });
    let wire = WireRequest {
        model,
        body: request,
        stream,
        stream_options,
    };
    // Serializing plain data into a Vec cannot fail: every map key is a string.
    serde_json::to_vec(&wire).unwrap_or_default()
}

impl OpenAiProvider {
    /// The caller's Responses body and where it goes, when this deployment takes it as it
    /// is.
    fn pass_through<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> Option<(&'a url::Url, &'a crate::chat::native::NativeRequest)> {
        let native = request.native.as_deref()?;
        let url = self.responses_url.as_ref()?;
        (native.format == crate::chat::native::NativeFormat::OpenAiResponses)
            .then_some((url, native))
    }
}

impl Provider for OpenAiProvider {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            if let Some((url, native)) = self.pass_through(request) {
                let body = responses::encode(native, model, false)?;
                let answer = self.upstream.post_to(url.clone(), body, false).await?;
                return responses::decode_response(self.upstream.body(answer).await?);
            }
            let body = encode_request(request, model, false, self.quirks);
            let answer = self.post(body, model, false).await?;
            upstream::decode(&self.upstream.body(answer).await?)
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChunkStream, ProviderError>> {
        Box::pin(async move {
            if let Some((url, native)) = self.pass_through(request) {
                let body = responses::encode(native, model, true)?;
                let answer = self.upstream.post_to(url.clone(), body, true).await?;
                return Ok(sse::translate(
                    answer.bytes_stream(),
                    responses::StreamDecoder::default(),
                    self.upstream.max_response_bytes(),
                ));
            }
            let body = encode_request(request, model, true, self.quirks);
            let answer = self.post(body, model, true).await?;
            Ok(sse::translate(
                answer.bytes_stream(),
                StreamDecoder::default(),
                self.upstream.max_response_bytes(),
            ))
        })
    }

    fn embeds(&self, _model: &str) -> bool {
        // Any model: an OpenAI-format server says itself which of its models embed.
        true
    }

    fn embed<'a>(
        &'a self,
        request: &'a crate::embeddings::EmbedRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<crate::embeddings::EmbedResponse, ProviderError>> {
        Box::pin(self.embed_once(request, model))
    }
}

/// The stream translation state: each event's data is a chunk, `[DONE]` ends the stream
/// and must arrive.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    ended: bool,
    done: bool,
}

impl StreamTranslator for StreamDecoder {
    fn on_event(&mut self, event: SseEvent) -> Vec<Result<ChatChunk, ProviderError>> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            self.ended = true;
            return Vec::new();
        }
        if data.is_empty() {
            return Vec::new();
        }
        let item = decode_chunk(data);
        self.ended = item.is_err();
        vec![item]
    }

    fn is_ended(&self) -> bool {
        self.ended
    }

    fn on_eof(&mut self) -> Result<Vec<ChatChunk>, ProviderError> {
        if self.done {
            Ok(Vec::new())
        } else {
            Err(ProviderError::Reset(
                "the stream ended without its [DONE] terminator".into(),
            ))
        }
    }
}

fn decode_chunk(data: &str) -> Result<ChatChunk, ProviderError> {
    let chunk = upstream::decode(data.as_bytes()).map_err(|malformed| {
        // Not a chunk: an in-band error, `data: {"error": {...}}`, or garbage.
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: serde_json::Value,
        }
        match serde_json::from_str::<Envelope>(data) {
            Ok(Envelope { error }) => {
                let field = |k: &str| error.get(k).and_then(|x| x.as_str()).map(str::to_owned);
                ProviderError::InStream {
                    message: field("message").unwrap_or_else(|| error.to_string()),
                    kind: field("type"),
                    code: field("code"),
                }
            }
            Err(_) => malformed,
        }
    })?;
    // Passed through as sent, so whoever gathers chunks by index downstream is safe too.
    limits::check_chunk(&chunk)?;
    Ok(chunk)
}

pub mod responses;

#[cfg(test)]
mod tests;
