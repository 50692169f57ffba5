//! The provider trait and one module per wire format.
//!
//! Adding a wire format is one module here and one line in [`build`]; adding an
//! OpenAI-compatible vendor is a preset in [`presets`], not code.

pub mod anthropic;
pub mod bedrock;
pub mod client;
pub mod cohere;
mod content;
mod error;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod gemini;
pub mod limits;
pub mod openai;
pub mod presets;
pub mod sse;
pub mod upstream;

use std::{collections::HashMap, pin::Pin, sync::Arc};

use futures_util::{Stream, future::BoxFuture};

pub(crate) use error::truncate;
pub use error::{ProviderError, parse_retry_after};
pub use limits::DEFAULT_MAX_RESPONSE_BYTES;

use crate::{
    chat::{ChatChunk, ChatRequest, ChatResponse},
    config::ProviderConfig,
    embeddings::{EmbedRequest, EmbedResponse},
};
use presets::Wire;

/// A stream of chunks from one provider; ends after the provider's terminator, or with an
/// error when the stream broke.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, ProviderError>> + Send>>;

/// One provider endpoint, speaking one wire format.
///
/// Implementations translate the canonical request into their wire format and the answer
/// back; they never retry: failover is the caller's job.
pub trait Provider: Send + Sync {
    /// One completion. `model` is the deployment's upstream model name.
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>>;

    /// A streamed completion. Resolves once the provider answered with a success status;
    /// the chunks follow on the returned stream.
    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChunkStream, ProviderError>>;

    /// Whether deployment model `model` can answer [`Provider::embed`]: routing skips the
    /// deployments of a model that cannot. By default a wire format has no embeddings.
    fn embeds(&self, _model: &str) -> bool {
        false
    }

    /// Embeddings of the request's inputs, one vector per input in order. A wire format
    /// without embeddings refuses ([`ProviderError::Untranslatable`]).
    fn embed<'a>(
        &'a self,
        _request: &'a EmbedRequest,
        _model: &'a str,
    ) -> BoxFuture<'a, Result<EmbedResponse, ProviderError>> {
        Box::pin(std::future::ready(Err(ProviderError::Untranslatable(
            "this provider's wire format has no embeddings".into(),
        ))))
    }

    /// The provider's own count of a request's input tokens, for formats that have an
    /// endpoint for it (Anthropic's `count_tokens`); `None` when this provider has none
    /// for `native`'s format.
    fn count_tokens<'a>(
        &'a self,
        _native: &'a crate::chat::native::NativeRequest,
        _model: &'a str,
    ) -> Option<BoxFuture<'a, Result<u32, ProviderError>>> {
        None
    }
}

/// Builds the provider a config entry describes.
pub fn build(
    config: &ProviderConfig,
    client: &client::Client,
) -> Result<Arc<dyn Provider>, String> {
    Ok(match config.wire {
        Wire::OpenAi | Wire::Azure => {
            Arc::new(openai::OpenAiProvider::new(config, client.clone())?)
        }
        Wire::Anthropic => Arc::new(anthropic::AnthropicProvider::new(config, client.clone())?),
        Wire::Gemini => Arc::new(gemini::GeminiProvider::new(config, client.clone())?),
        Wire::Cohere => Arc::new(cohere::CohereProvider::new(config, client.clone())?),
        Wire::Bedrock => Arc::new(bedrock::BedrockProvider::new(config, client.clone())?),
    })
}

/// An OpenAI request field asking for output only OpenAI-format providers produce
/// (log probabilities, audio), so that other adapters refuse it instead of answering in
/// plain text.
pub(crate) fn unsupported_output(request: &ChatRequest) -> Option<&'static str> {
    let extra = &request.extra;
    if extra.get("logprobs").and_then(serde_json::Value::as_bool) == Some(true) {
        return Some("`logprobs`");
    }
    let audio_modality = extra
        .get("modalities")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|m| m.iter().any(|v| v == "audio"));
    if audio_modality || extra.contains_key("audio") {
        return Some("audio output (`modalities`/`audio`)");
    }
    None
}

/// Seconds since the Unix epoch, for `created` on translated answers.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// The pooled HTTP clients: the providers' ([`client::Client`], one per connect timeout
/// in use, so a provider with its own `connect_timeout_ms` gets a pool of its own while the
/// rest share one), and reqwest's for the gateway's own calls. Kept by the gateway across
/// reloads, so connections are reused.
pub struct Clients {
    own: reqwest::Client,
    by_timeout: std::sync::Mutex<HashMap<std::time::Duration, client::Client>>,
}

impl Clients {
    /// With the clients for `connect_timeout` built.
    pub fn new(connect_timeout: std::time::Duration) -> Result<Clients, String> {
        let providers = client::Client::new(connect_timeout)?;
        Ok(Clients {
            own: http_client(connect_timeout)?,
            by_timeout: std::sync::Mutex::new(HashMap::from([(connect_timeout, providers)])),
        })
    }

    /// The client for the gateway's own calls (JWKS, webhooks, price refresh).
    pub fn default_client(&self) -> &reqwest::Client {
        &self.own
    }

    /// The providers' client whose connections time out after `connect_timeout`, built on
    /// first use.
    pub fn with_connect_timeout(
        &self,
        connect_timeout: std::time::Duration,
    ) -> Result<client::Client, String> {
        let mut clients = self
            .by_timeout
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&connect_timeout) {
            return Ok(c.clone());
        }
        let client = client::Client::new(connect_timeout)?;
        clients.insert(connect_timeout, client.clone());
        Ok(client)
    }
}

/// A pooled reqwest client for the gateway's own calls (rustls with ring, HTTP/2 when
/// offered, no redirects, no retries).
pub fn http_client(connect_timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    crate::telemetry::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .tcp_nodelay(true)
        // A POST must not be silently redirected.
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// A reqwest failure without its URL (whose query may hold a token), causes included.
pub fn describe_failure(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
