//! Embeddings in the OpenAI format: `POST {base}/embeddings` (OpenAI and the compatible
//! presets), or Azure's `{base}/openai/deployments/{deployment}/embeddings?api-version=`
//! (Azure OpenAI REST reference, "Embeddings"). The body is the caller's, with the
//! deployment's model written in ([`crate::embeddings::wire`]).

use super::OpenAiProvider;
use crate::{
    embeddings::{EmbedRequest, EmbedResponse, wire},
    providers::ProviderError,
};

impl OpenAiProvider {
    /// One embeddings call.
    pub(super) async fn embed_once(
        &self,
        request: &EmbedRequest,
        model: &str,
    ) -> Result<EmbedResponse, ProviderError> {
        let url = match &self.azure_api_version {
            None => self.embeddings_url.clone(),
            Some(version) => azure_embeddings_url(self.upstream.url(), model, version)?,
        };
        let body = wire::encode_request(request, model);
        let answer = self.upstream.post_to(url, body, false).await?;
        let mut response = wire::decode_response(&self.upstream.body(answer).await?, request)?;
        if response.model.is_empty() {
            response.model = model.to_owned();
        }
        Ok(response)
    }
}

/// `{base}/openai/deployments/{deployment}/embeddings?api-version={version}`.
pub fn azure_embeddings_url(
    base: &url::Url,
    deployment: &str,
    version: &str,
) -> Result<url::Url, ProviderError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ProviderError::Untranslatable("azure: base_url cannot take a path".into()))?
        .pop_if_empty()
        .extend(["openai", "deployments", deployment, "embeddings"]);
    url.query_pairs_mut().append_pair("api-version", version);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_embeddings_go_to_the_deployment_path_with_the_api_version() {
        let base = url::Url::parse("https://res.openai.azure.com/").unwrap();
        let url = azure_embeddings_url(&base, "embed-small", "2024-10-21").unwrap();
        assert_eq!(
            url.as_str(),
            "https://res.openai.azure.com/openai/deployments/embed-small/embeddings?api-version=2024-10-21"
        );
    }
}
