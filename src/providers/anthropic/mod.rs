//! The Anthropic Messages wire format (`POST {base_url}/v1/messages`, `x-api-key`,
//! `anthropic-version`): [`request`] translates the canonical request, [`response`] the
//! answer and [`stream`] the event stream, each a pure translation tested on fixtures.

mod native;
mod request;
mod response;
mod stream;

use futures_util::future::BoxFuture;

pub use native::{frame, messages_native, splice};
pub use request::{DEFAULT_MAX_TOKENS, encode_request};
pub use response::{decode_response, finish_reason};
pub use stream::AnthropicStream;

use super::{ChunkStream, Provider, ProviderError, sse, upstream::Upstream};
use crate::{
    chat::{ChatRequest, ChatResponse},
    config::ProviderConfig,
};

/// The API version the translation follows.
pub const API_VERSION: &str = "2023-06-01";

/// A provider speaking the Anthropic Messages API.
pub struct AnthropicProvider {
    upstream: Upstream,
}

impl AnthropicProvider {
    /// A provider for one config entry, sharing the gateway's pooled client.
    pub fn new(
        config: &ProviderConfig,
        client: crate::providers::client::Client,
    ) -> Result<Self, String> {
        let mut headers = config.header_pairs();
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("anthropic-version"))
        {
            headers.push(("anthropic-version".into(), API_VERSION.into()));
        }
        if let Some(key) = &config.api_key {
            headers.push(("x-api-key".into(), key.expose().to_owned()));
        }
        let url = format!("{}/v1/messages", config.base_url.trim_end_matches('/'));
        Ok(AnthropicProvider {
            upstream: Upstream::new(client, &url, headers, config.max_response_bytes)?,
        })
    }
}

impl Provider for AnthropicProvider {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            if let Some(native) = messages_native(request) {
                let body = splice(&native.body, model, Some(false))?;
                let url = self.upstream.url().clone();
                let answer = self
                    .upstream
                    .post_with(url, body, false, &native.headers)
                    .await?;
                let bytes = self.upstream.body(answer).await?;
                let mut response = decode_response(&bytes)?;
                response.native = Some(bytes);
                return Ok(response);
            }
            let body = encode_request(request, model, false)?;
            let answer = self.upstream.post(body, false).await?;
            decode_response(&self.upstream.body(answer).await?)
        })
    }

    fn chat_stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChunkStream, ProviderError>> {
        Box::pin(async move {
            let native = messages_native(request);
            let answer = match native {
                Some(native) => {
                    let body = splice(&native.body, model, Some(true))?;
                    let url = self.upstream.url().clone();
                    self.upstream
                        .post_with(url, body, true, &native.headers)
                        .await?
                }
                None => {
                    let body = encode_request(request, model, true)?;
                    self.upstream.post(body, true).await?
                }
            };
            Ok(sse::translate(
                answer.bytes_stream(),
                AnthropicStream::passing_through(native.is_some()),
                self.upstream.max_response_bytes(),
            ))
        })
    }

    fn count_tokens<'a>(
        &'a self,
        native: &'a crate::chat::native::NativeRequest,
        model: &'a str,
    ) -> Option<BoxFuture<'a, Result<u32, ProviderError>>> {
        if native.format != crate::chat::native::NativeFormat::AnthropicMessages {
            return None;
        }
        Some(Box::pin(async move {
            #[derive(serde::Deserialize)]
            struct Counted {
                input_tokens: u32,
            }
            let body = splice(&native.body, model, None)?;
            let url = url::Url::parse(&format!("{}/count_tokens", self.upstream.url()))
                .map_err(|e| ProviderError::Untranslatable(format!("anthropic: {e}")))?;
            let answer = self
                .upstream
                .post_with(url, body, false, &native.headers)
                .await?;
            let counted: Counted = super::upstream::decode(&self.upstream.body(answer).await?)?;
            Ok(counted.input_tokens)
        }))
    }
}

#[cfg(test)]
mod tests;
