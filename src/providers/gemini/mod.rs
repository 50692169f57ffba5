//! The Gemini API wire format (`POST {base_url}/v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, `x-goog-api-key`): [`request`] translates the
//! canonical request, [`response`] the answer and [`stream`] the frames.

pub mod embed;
mod request;
mod response;
mod stream;

use futures_util::future::BoxFuture;

pub use request::encode_request;
pub use response::{decode_response, finish_reason};
pub use stream::GeminiStream;

use super::{ChunkStream, Provider, ProviderError, sse, upstream::Upstream};
use crate::{
    chat::{ChatRequest, ChatResponse},
    config::ProviderConfig,
};

/// A provider speaking the Gemini API.
pub struct GeminiProvider {
    upstream: Upstream,
}

impl GeminiProvider {
    /// A provider for one config entry, sharing the gateway's pooled client.
    pub fn new(
        config: &ProviderConfig,
        client: crate::providers::client::Client,
    ) -> Result<Self, String> {
        let mut headers = config.header_pairs();
        if let Some(key) = &config.api_key {
            headers.push(("x-goog-api-key".into(), key.expose().to_owned()));
        }
        let base = format!("{}/v1beta/models", config.base_url.trim_end_matches('/'));
        Ok(GeminiProvider {
            upstream: Upstream::new(client, &base, headers, config.max_response_bytes)?,
        })
    }

    fn url(&self, model: &str, stream: bool) -> Result<url::Url, ProviderError> {
        method_url(self.upstream.url(), model, stream)
    }
}

/// `{base}/{model}:generateContent`, or `:streamGenerateContent?alt=sse`.
pub fn method_url(base: &url::Url, model: &str, stream: bool) -> Result<url::Url, ProviderError> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let method = if stream {
        "streamGenerateContent"
    } else {
        "generateContent"
    };
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ProviderError::Untranslatable("gemini: base_url cannot take a path".into()))?
        .pop_if_empty()
        .push(&format!("{model}:{method}"));
    if stream {
        url.query_pairs_mut().append_pair("alt", "sse");
    }
    Ok(url)
}

impl Provider for GeminiProvider {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let body = encode_request(request)?;
            let answer = self
                .upstream
                .post_to(self.url(model, false)?, body, false)
                .await?;
            decode_response(&self.upstream.body(answer).await?, model)
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChunkStream, ProviderError>> {
        Box::pin(async move {
            let body = encode_request(request)?;
            let answer = self
                .upstream
                .post_to(self.url(model, true)?, body, true)
                .await?;
            Ok(sse::translate(
                answer.bytes_stream(),
                GeminiStream::new(model),
                self.upstream.max_response_bytes(),
            ))
        })
    }

    fn embeds(&self, _model: &str) -> bool {
        // The format has embeddings; which models embed is the API's to say.
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

#[cfg(test)]
mod tests;
