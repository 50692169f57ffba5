//! The Anthropic Messages wire format (`POST {base_url}/v1/messages`, `x-api-key`,
//! `anthropic-version`): [`request`] translates the canonical request, [`response`] the
//! answer and [`stream`] the event stream, each a pure translation tested on fixtures.

mod request;
mod response;
mod stream;

use futures_util::future::BoxFuture;

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
    pub fn new(config: &ProviderConfig, client: reqwest::Client) -> Result<Self, String> {
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
            let body = encode_request(request, model, true)?;
            let answer = self.upstream.post(body, true).await?;
            Ok(sse::translate(
                answer.bytes_stream(),
                AnthropicStream::default(),
                self.upstream.max_response_bytes(),
            ))
        })
    }
}

#[cfg(test)]
mod tests;
