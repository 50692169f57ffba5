//! The Cohere v2 chat wire format (`POST {base_url}/v2/chat`, bearer key): [`request`]
//! translates the canonical request, [`response`] the answer and [`stream`] the events.

pub mod embed;
mod request;
mod response;
mod stream;

use futures_util::future::BoxFuture;

pub use request::encode_request;
pub use response::{decode_response, finish_reason};
pub use stream::CohereStream;

use super::{ChunkStream, Provider, ProviderError, sse, upstream::Upstream};
use crate::{
    chat::{ChatRequest, ChatResponse},
    config::ProviderConfig,
};

/// A provider speaking Cohere's v2 chat API.
pub struct CohereProvider {
    upstream: Upstream,
}

impl CohereProvider {
    /// A provider for one config entry, sharing the gateway's pooled client.
    pub fn new(
        config: &ProviderConfig,
        client: crate::providers::client::Client,
    ) -> Result<Self, String> {
        let mut headers = config.header_pairs();
        if let Some(key) = &config.api_key {
            headers.push(("authorization".into(), format!("Bearer {}", key.expose())));
        }
        let url = format!("{}/v2/chat", config.base_url.trim_end_matches('/'));
        Ok(CohereProvider {
            upstream: Upstream::new(client, &url, headers, config.max_response_bytes)?,
        })
    }
}

impl Provider for CohereProvider {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let body = encode_request(request, model, false)?;
            let answer = self.upstream.post(body, false).await?;
            decode_response(&self.upstream.body(answer).await?, model)
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
                CohereStream::new(model),
                self.upstream.max_response_bytes(),
            ))
        })
    }

    fn embeds(&self, _model: &str) -> bool {
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
