//! The OpenAI chat-completions wire format: OpenAI itself and the OpenAI-compatible family
//! (DeepSeek, Mistral, Qwen/DashScope, Fireworks, Groq, Together, xAI, OpenRouter, vLLM,
//! Ollama), which differ only in base URL, auth and quirks — see [`Preset`].
//!
//! Request: the canonical request is the wire format, so it is sent as parsed, with the
//! deployment's model and the stream mode written in (API reference: "Create chat
//! completion", POST {base_url}/chat/completions). Streams always ask for
//! `stream_options.include_usage` so usage is known even when the caller did not ask.

use bytes::Bytes;
use futures_util::{StreamExt, future::BoxFuture, stream};
use serde::Serialize;

use super::{ChunkStream, Provider, ProviderError, parse_retry_after, sse::SseDecoder, truncate};
use crate::{
    chat::{ChatChunk, ChatRequest, ChatResponse, StreamOptions},
    config::{ProviderConfig, Secret},
};

/// An OpenAI-compatible vendor: where it lives and how it authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The config `kind`.
    pub kind: &'static str,
    /// Default `base_url`, version prefix included.
    pub base_url: &'static str,
    /// The environment variable conventionally holding the key; `None` for local servers.
    pub key_env: Option<&'static str>,
    /// Models the embedded default config offers when the key is present.
    pub default_models: &'static [&'static str],
}

/// Every OpenAI-format kind the gateway knows.
pub const PRESETS: &[Preset] = &[
    Preset {
        kind: "openai",
        base_url: "https://api.openai.com/v1",
        key_env: Some("OPENAI_API_KEY"),
        default_models: &["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1"],
    },
    Preset {
        kind: "deepseek",
        base_url: "https://api.deepseek.com/v1",
        key_env: Some("DEEPSEEK_API_KEY"),
        default_models: &["deepseek-chat", "deepseek-reasoner"],
    },
    Preset {
        kind: "mistral",
        base_url: "https://api.mistral.ai/v1",
        key_env: Some("MISTRAL_API_KEY"),
        default_models: &["mistral-small-latest", "mistral-large-latest"],
    },
    Preset {
        kind: "qwen",
        base_url: "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        key_env: Some("DASHSCOPE_API_KEY"),
        default_models: &["qwen-plus", "qwen-turbo", "qwen-max"],
    },
    Preset {
        kind: "fireworks",
        base_url: "https://api.fireworks.ai/inference/v1",
        key_env: Some("FIREWORKS_API_KEY"),
        default_models: &["accounts/fireworks/models/llama-v3p1-8b-instruct"],
    },
    Preset {
        kind: "groq",
        base_url: "https://api.groq.com/openai/v1",
        key_env: Some("GROQ_API_KEY"),
        default_models: &["llama-3.3-70b-versatile", "llama-3.1-8b-instant"],
    },
    Preset {
        kind: "together",
        base_url: "https://api.together.xyz/v1",
        key_env: Some("TOGETHER_API_KEY"),
        default_models: &["meta-llama/Llama-3.3-70B-Instruct-Turbo"],
    },
    Preset {
        kind: "xai",
        base_url: "https://api.x.ai/v1",
        key_env: Some("XAI_API_KEY"),
        default_models: &["grok-3-mini", "grok-3"],
    },
    Preset {
        kind: "openrouter",
        base_url: "https://openrouter.ai/api/v1",
        key_env: Some("OPENROUTER_API_KEY"),
        default_models: &["openrouter/auto"],
    },
    Preset {
        kind: "vllm",
        base_url: "http://127.0.0.1:8000/v1",
        key_env: None,
        default_models: &[],
    },
    Preset {
        kind: "ollama",
        base_url: "http://127.0.0.1:11434/v1",
        key_env: None,
        default_models: &[],
    },
];

impl Preset {
    /// The preset for a config `kind`.
    pub fn find(kind: &str) -> Option<&'static Preset> {
        PRESETS.iter().find(|p| p.kind == kind)
    }

    /// All kinds, for error messages.
    pub fn kinds() -> String {
        PRESETS
            .iter()
            .map(|p| p.kind)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A provider speaking the OpenAI chat-completions wire format.
pub struct OpenAiProvider {
    client: reqwest::Client,
    /// `{base_url}/chat/completions`, parsed once.
    url: reqwest::Url,
    api_key: Option<Secret>,
    headers: http::HeaderMap,
}

impl OpenAiProvider {
    /// A provider for one config entry, sharing the gateway's pooled client.
    pub fn new(config: &ProviderConfig, client: reqwest::Client) -> Result<Self, String> {
        let mut headers = http::HeaderMap::new();
        for (name, value) in &config.headers {
            let name = http::HeaderName::try_from(name.as_str())
                .map_err(|e| format!("header name `{name}`: {e}"))?;
            let mut value = http::HeaderValue::try_from(value.expose())
                .map_err(|_| format!("header `{name}` has an invalid value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(OpenAiProvider {
            client,
            url: reqwest::Url::parse(&format!(
                "{}/chat/completions",
                config.base_url.trim_end_matches('/')
            ))
            .map_err(|e| format!("base_url: {e}"))?,
            api_key: config.api_key.clone(),
            headers,
        })
    }

    async fn send(&self, body: Vec<u8>, stream: bool) -> Result<reqwest::Response, ProviderError> {
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::ACCEPT,
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose());
        }
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = parse_retry_after(resp.headers());
        let body = resp.bytes().await.map_err(transport_error)?;
        Err(ProviderError::from_status(status, &body, retry_after))
    }
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

/// Serializes the request for the wire.
pub fn encode_request(request: &ChatRequest, model: &str, stream: bool) -> Vec<u8> {
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

impl Provider for OpenAiProvider {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let resp = self
                .send(encode_request(request, model, false), false)
                .await?;
            let body = resp.bytes().await.map_err(transport_error)?;
            decode_response(&body)
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChunkStream, ProviderError>> {
        Box::pin(async move {
            let resp = self
                .send(encode_request(request, model, true), true)
                .await?;
            Ok(chunk_stream(resp.bytes_stream()))
        })
    }
}

/// Parses a non-streamed response body.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::Malformed(format!(
            "{e} in {}",
            truncate(&String::from_utf8_lossy(body), 200)
        ))
    })
}

/// The stream translation state: SSE events in, chunks out, `[DONE]` required at the end.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    sse: SseDecoder,
    /// `[DONE]` arrived, or an error ended the stream: nothing after it counts.
    ended: bool,
    done: bool,
}

impl StreamDecoder {
    /// Feeds bytes from the wire; returns what they complete, in order. An error is the
    /// last item: chunks decoded before it in the same read are still delivered.
    pub fn on_bytes(&mut self, bytes: &[u8]) -> Vec<Result<ChatChunk, ProviderError>> {
        let mut out = Vec::new();
        for event in self.sse.push(bytes) {
            if self.ended {
                break;
            }
            let data = event.data.trim();
            if data == "[DONE]" {
                self.done = true;
                self.ended = true;
            } else if !data.is_empty() {
                let item = decode_chunk(data);
                self.ended = item.is_err();
                out.push(item);
            }
        }
        out
    }

    /// Whether the stream is over: `[DONE]` was seen or an error ended it.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Called at end of body: an error unless the terminator arrived.
    pub fn on_eof(&self) -> Result<(), ProviderError> {
        if self.done {
            Ok(())
        } else {
            Err(ProviderError::Reset(
                "the stream ended without its [DONE] terminator".into(),
            ))
        }
    }
}

fn decode_chunk(data: &str) -> Result<ChatChunk, ProviderError> {
    serde_json::from_str(data).map_err(|e| {
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
            Err(_) => {
                ProviderError::Malformed(format!("stream chunk: {e} in {}", truncate(data, 200)))
            }
        }
    })
}

/// Wraps a body byte stream into a chunk stream.
pub fn chunk_stream<S>(bytes: S) -> ChunkStream
where
    S: futures_util::Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
{
    struct State<S> {
        bytes: S,
        decoder: StreamDecoder,
        pending: std::collections::VecDeque<Result<ChatChunk, ProviderError>>,
        finished: bool,
    }
    let state = State {
        bytes: Box::pin(bytes),
        decoder: StreamDecoder::default(),
        pending: Default::default(),
        finished: false,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.finished || st.decoder.is_ended() {
                return None;
            }
            match st.bytes.next().await {
                Some(Ok(b)) => st.pending.extend(st.decoder.on_bytes(&b)),
                Some(Err(e)) => {
                    st.finished = true;
                    return Some((Err(transport_error(e)), st));
                }
                None => {
                    st.finished = true;
                    if let Err(e) = st.decoder.on_eof() {
                        return Some((Err(e), st));
                    }
                }
            }
        }
    }))
}

/// Classifies a reqwest failure without leaking the URL's query or headers.
pub fn transport_error(e: reqwest::Error) -> ProviderError {
    let e = e.without_url();
    if e.is_timeout() {
        ProviderError::Timeout
    } else if e.is_connect() {
        ProviderError::Connect(source_chain(&e))
    } else if broken_transport(&e) {
        // reqwest reports a body cut by the network as a decode error; it is not one.
        ProviderError::Reset(source_chain(&e))
    } else if e.is_decode() {
        ProviderError::Malformed(source_chain(&e))
    } else {
        ProviderError::Reset(source_chain(&e))
    }
}

fn broken_transport(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = e.source();
    while let Some(s) = cur {
        if s.is::<std::io::Error>() || s.is::<hyper::Error>() {
            return true;
        }
        cur = s.source();
    }
    false
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests;
