//! Embeddings in Cohere's v2 API (reference: "Embed API (v2)", `POST /v2/embed`): `texts`
//! (at most [`MAX_TEXTS`] a call, so larger requests go in several calls, in order),
//! `input_type` (the caller's extra `input_type`, else `search_document`: the gateway
//! cannot know whether a text is a query, and documents are what pipelines embed most),
//! `embedding_types: ["float"]`, `output_dimension` from `dimensions` (embed-v4 and later)
//! and `truncate` when the caller sent one. Usage is `meta.billed_units.input_tokens`.

use serde::{Deserialize, Serialize};

use super::CohereProvider;
use crate::{
    embeddings::{self, EmbedRequest, EmbedResponse, EmbedUsage},
    providers::{ProviderError, upstream},
};

/// Texts in one call (the API refuses more than 96).
pub const MAX_TEXTS: usize = 96;

/// The `input_type` sent when the caller names none.
pub const DEFAULT_INPUT_TYPE: &str = "search_document";

#[derive(Serialize)]
struct Wire<'a> {
    model: &'a str,
    texts: &'a [&'a str],
    input_type: &'a str,
    embedding_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimension: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<&'a str>,
}

#[derive(Deserialize)]
struct Answer {
    embeddings: ByType,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct ByType {
    #[serde(default)]
    float: Option<Vec<Vec<f32>>>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    billed_units: Option<Billed>,
}

#[derive(Deserialize)]
struct Billed {
    #[serde(default)]
    input_tokens: Option<f64>,
}

/// The bodies to send for `request` to `model`, one per [`MAX_TEXTS`] texts.
pub fn encode_requests(request: &EmbedRequest, model: &str) -> Result<Vec<Vec<u8>>, ProviderError> {
    let texts = request
        .input
        .texts()
        .ok_or_else(|| embeddings::tokens_refused("Cohere"))?;
    let input_type = embeddings::extra_str(request, &["input_type"]).unwrap_or(DEFAULT_INPUT_TYPE);
    let truncate = embeddings::extra_str(request, &["truncate"]);
    Ok(texts
        .chunks(MAX_TEXTS)
        .map(|chunk| {
            let wire = Wire {
                model,
                texts: chunk,
                input_type,
                embedding_types: ["float"],
                output_dimension: request.dimensions,
                truncate,
            };
            serde_json::to_vec(&wire).unwrap_or_default()
        })
        .collect())
}

/// One answer's float vectors and billed input tokens (when reported).
pub fn decode_answer(body: &[u8]) -> Result<(Vec<Vec<f32>>, Option<u32>), ProviderError> {
    let answer: Answer = upstream::decode(body)?;
    let vectors = answer
        .embeddings
        .float
        .ok_or_else(|| ProviderError::Malformed("the answer has no `embeddings.float`".into()))?;
    let tokens = answer
        .meta
        .and_then(|m| m.billed_units)
        .and_then(|b| b.input_tokens)
        .map(|t| t.max(0.0).round() as u32);
    Ok((vectors, tokens))
}

impl CohereProvider {
    /// One embeddings request: a call per [`MAX_TEXTS`] texts, in order.
    pub(super) async fn embed_once(
        &self,
        request: &EmbedRequest,
        model: &str,
    ) -> Result<EmbedResponse, ProviderError> {
        let mut url = self.upstream.url().clone();
        url.path_segments_mut()
            .map_err(|()| {
                ProviderError::Untranslatable("cohere: base_url cannot take a path".into())
            })?
            .pop()
            .push("embed");
        let mut data = Vec::with_capacity(request.input.len());
        let mut billed: Option<u32> = Some(0);
        for body in encode_requests(request, model)? {
            let answer = self.upstream.post_to(url.clone(), body, false).await?;
            let (vectors, tokens) = decode_answer(&self.upstream.body(answer).await?)?;
            data.extend(vectors);
            billed = billed.zip(tokens).map(|(a, b)| a.saturating_add(b));
        }
        if data.len() != request.input.len() {
            return Err(ProviderError::Malformed(format!(
                "{} embeddings for {} inputs",
                data.len(),
                request.input.len()
            )));
        }
        Ok(EmbedResponse {
            model: model.to_owned(),
            data,
            usage: billed.map_or_else(|| EmbedUsage::estimated(request), EmbedUsage::reported),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn texts_go_in_calls_of_96_with_the_default_input_type_and_float_embeddings() {
        let texts: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        let r: EmbedRequest =
            serde_json::from_value(json!({ "model": "x", "input": texts, "dimensions": 256 }))
                .unwrap();
        let bodies = encode_requests(&r, "embed-v4.0").unwrap();
        assert_eq!(bodies.len(), 2);
        let first: Value = serde_json::from_slice(&bodies[0]).unwrap();
        assert_eq!(first["texts"].as_array().unwrap().len(), 96);
        assert_eq!(first["input_type"], "search_document");
        assert_eq!(first["embedding_types"], json!(["float"]));
        assert_eq!(first["output_dimension"], 256);
        assert_eq!(first["model"], "embed-v4.0");
    }

    #[test]
    fn the_callers_input_type_wins() {
        let r: EmbedRequest = serde_json::from_value(
            json!({ "model": "x", "input": "q", "input_type": "search_query" }),
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&encode_requests(&r, "m").unwrap()[0]).unwrap();
        assert_eq!(body["input_type"], "search_query");
        assert!(body.get("output_dimension").is_none());
    }

    #[test]
    fn billed_input_tokens_are_the_usage() {
        let body = br#"{"id":"x","embeddings":{"float":[[0.1,0.2]]},"texts":["a"],
            "meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":3}}}"#;
        let (v, t) = decode_answer(body).unwrap();
        assert_eq!(v, vec![vec![0.1, 0.2]]);
        assert_eq!(t, Some(3));
    }
}
