//! Embeddings on Bedrock through `InvokeModel` (`POST {base}/model/{modelId}/invoke`,
//! SigV4-signed like Converse), in the body each model family documents (Bedrock user
//! guide, "Amazon Titan Embeddings G1 - Text" / V2, "Cohere Embed v3" and "v4"):
//! - Titan Text Embeddings: one call per input (`inputText`; V2 also `dimensions` and
//!   `normalize`, true unless the caller sent `normalize: false`), run a few at a time and
//!   answered in input order; usage is the sum of `inputTextTokenCount`.
//! - Cohere Embed: `texts` (at most 96 a call), `input_type` (the caller's, else
//!   `search_document`), `truncate` when sent, `output_dimension` (v4 only); usage from
//!   the `X-Amzn-Bedrock-Input-Token-Count` header, estimated when it is absent.
//!
//! Other model families have no embeddings body the gateway can write.

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{BedrockProvider, upstream};
use crate::{
    embeddings::{self, EmbedRequest, EmbedResponse, EmbedUsage},
    providers::ProviderError,
};

/// Titan calls in flight at once for one request.
const TITAN_CONCURRENCY: usize = 8;

/// Texts in one Cohere Embed call on Bedrock.
pub const COHERE_MAX_TEXTS: usize = 96;

/// The header InvokeModel reports input tokens in.
const INPUT_TOKENS: &str = "x-amzn-bedrock-input-token-count";

/// The embedding model families Bedrock's `InvokeModel` bodies are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `amazon.titan-embed-text-v1` (`inputText` only).
    TitanV1,
    /// `amazon.titan-embed-text-v2:0` (`dimensions`, `normalize`).
    TitanV2,
    /// `cohere.embed-english-v3`, `cohere.embed-multilingual-v3`.
    CohereV3,
    /// `cohere.embed-v4:0` (`output_dimension`).
    CohereV4,
}

impl Family {
    /// The family of a Bedrock model id (an inference profile's region prefix or an ARN
    /// allowed), or `None` when it is not an embedding model the gateway can call.
    pub fn of(model: &str) -> Option<Family> {
        let id = model.rsplit('/').next().unwrap_or(model);
        if id.contains("amazon.titan-embed-text-v1") {
            Some(Family::TitanV1)
        } else if id.contains("amazon.titan-embed-text-v2") {
            Some(Family::TitanV2)
        } else if id.contains("cohere.embed-v4") {
            Some(Family::CohereV4)
        } else if id.contains("cohere.embed-") {
            Some(Family::CohereV3)
        } else {
            None
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TitanRequest<'a> {
    input_text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    normalize: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanAnswer {
    embedding: Vec<f32>,
    #[serde(default)]
    input_text_token_count: Option<u32>,
}

#[derive(Serialize)]
struct CohereRequest<'a> {
    texts: &'a [&'a str],
    input_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimension: Option<u32>,
}

/// Cohere's answer: `embeddings` a list of float vectors (`embeddings_floats`), or by type
/// (`embeddings_by_type`) when types were asked for.
#[derive(Deserialize)]
struct CohereAnswer {
    embeddings: CohereEmbeddings,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CohereEmbeddings {
    Floats(Vec<Vec<f32>>),
    ByType { float: Vec<Vec<f32>> },
}

/// The InvokeModel bodies for `request` to `model`, in order.
pub fn encode_requests(
    request: &EmbedRequest,
    model: &str,
) -> Result<(Family, Vec<Vec<u8>>), ProviderError> {
    let family = Family::of(model).ok_or_else(|| {
        ProviderError::Untranslatable(format!(
            "bedrock: `{model}` is not a Titan Text or Cohere Embed model, the embedding \
             models the gateway can call through InvokeModel"
        ))
    })?;
    let texts = request
        .input
        .texts()
        .ok_or_else(|| embeddings::tokens_refused("Bedrock"))?;
    let bodies = match family {
        Family::TitanV1 | Family::TitanV2 => {
            let v2 = family == Family::TitanV2;
            if !v2 && request.dimensions.is_some() {
                return Err(ProviderError::Untranslatable(
                    "bedrock: Titan Text Embeddings G1 has no `dimensions`".into(),
                ));
            }
            let normalize = request
                .extra
                .get("normalize")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true);
            texts
                .iter()
                .map(|t| {
                    to_vec(&TitanRequest {
                        input_text: t,
                        dimensions: request.dimensions,
                        normalize: v2.then_some(normalize),
                    })
                })
                .collect()
        }
        Family::CohereV3 | Family::CohereV4 => {
            if family == Family::CohereV3 && request.dimensions.is_some() {
                return Err(ProviderError::Untranslatable(
                    "bedrock: Cohere Embed v3 has no `output_dimension`".into(),
                ));
            }
            let input_type = embeddings::extra_str(request, &["input_type"])
                .unwrap_or(crate::providers::cohere::embed::DEFAULT_INPUT_TYPE);
            let truncate = embeddings::extra_str(request, &["truncate"]);
            texts
                .chunks(COHERE_MAX_TEXTS)
                .map(|chunk| {
                    to_vec(&CohereRequest {
                        texts: chunk,
                        input_type,
                        truncate,
                        output_dimension: request.dimensions,
                    })
                })
                .collect()
        }
    };
    Ok((family, bodies))
}

/// Plain data into a Vec: cannot fail.
fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// One answer's vectors and the input tokens it reports in its body (Titan).
pub fn decode_answer(
    family: Family,
    body: &[u8],
) -> Result<(Vec<Vec<f32>>, Option<u32>), ProviderError> {
    match family {
        Family::TitanV1 | Family::TitanV2 => {
            let a: TitanAnswer = upstream::decode(body)?;
            Ok((vec![a.embedding], a.input_text_token_count))
        }
        Family::CohereV3 | Family::CohereV4 => {
            let a: CohereAnswer = upstream::decode(body)?;
            Ok((
                match a.embeddings {
                    CohereEmbeddings::Floats(v) | CohereEmbeddings::ByType { float: v } => v,
                },
                None,
            ))
        }
    }
}

impl BedrockProvider {
    /// One call: its vectors and input tokens (the body's, else the header's).
    async fn invoke(
        &self,
        url: url::Url,
        family: Family,
        body: Vec<u8>,
    ) -> Result<(Vec<Vec<f32>>, Option<u32>), ProviderError> {
        let answer = self.send(url, body, false).await?;
        let header = answer
            .headers()
            .get(INPUT_TOKENS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        let body = upstream::body(answer, self.max_response_bytes).await?;
        let (vectors, tokens) = decode_answer(family, &body)?;
        Ok((vectors, tokens.or(header)))
    }

    /// One embeddings request: every call it takes, answered in input order.
    pub(super) async fn embed_once(
        &self,
        request: &EmbedRequest,
        model: &str,
    ) -> Result<EmbedResponse, ProviderError> {
        let (family, bodies) = encode_requests(request, model)?;
        let url = self.invoke_url(model, false)?;
        let answers: Vec<(Vec<Vec<f32>>, Option<u32>)> = futures_util::stream::iter(bodies)
            .map(|body| self.invoke(url.clone(), family, body))
            .buffered(TITAN_CONCURRENCY)
            .try_collect()
            .await?;
        let mut data = Vec::with_capacity(request.input.len());
        let mut tokens: Option<u32> = Some(0);
        for (vectors, n) in answers {
            data.extend(vectors);
            tokens = tokens.zip(n).map(|(a, b)| a.saturating_add(b));
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
            usage: tokens.map_or_else(|| EmbedUsage::estimated(request), EmbedUsage::reported),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn request(v: Value) -> EmbedRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn families_are_read_from_model_ids_and_profiles() {
        assert_eq!(
            Family::of("amazon.titan-embed-text-v2:0"),
            Some(Family::TitanV2)
        );
        assert_eq!(
            Family::of("cohere.embed-english-v3"),
            Some(Family::CohereV3)
        );
        assert_eq!(Family::of("us.cohere.embed-v4:0"), Some(Family::CohereV4));
        assert_eq!(Family::of("anthropic.claude-3-haiku-20240307-v1:0"), None);
    }

    #[test]
    fn titan_is_one_body_per_input_with_dimensions_and_normalize() {
        let r = request(json!({ "model": "m", "input": ["a", "b"], "dimensions": 256 }));
        let (family, bodies) = encode_requests(&r, "amazon.titan-embed-text-v2:0").unwrap();
        assert_eq!(family, Family::TitanV2);
        assert_eq!(bodies.len(), 2);
        let b: Value = serde_json::from_slice(&bodies[1]).unwrap();
        assert_eq!(
            b,
            json!({ "inputText": "b", "dimensions": 256, "normalize": true })
        );
    }

    #[test]
    fn cohere_on_bedrock_sends_texts_and_input_type() {
        let r = request(json!({ "model": "m", "input": ["a", "b"], "input_type": "clustering" }));
        let (_, bodies) = encode_requests(&r, "cohere.embed-english-v3").unwrap();
        let b: Value = serde_json::from_slice(&bodies[0]).unwrap();
        assert_eq!(
            b,
            json!({ "texts": ["a", "b"], "input_type": "clustering" })
        );
        let dims = request(json!({ "model": "m", "input": "a", "dimensions": 3 }));
        assert!(encode_requests(&dims, "cohere.embed-english-v3").is_err());
    }

    #[test]
    fn answers_decode_for_both_families() {
        let (v, t) = decode_answer(
            Family::TitanV2,
            br#"{"embedding":[0.5],"inputTextTokenCount":4,"embeddingsByType":{"float":[0.5]}}"#,
        )
        .unwrap();
        assert_eq!((v, t), (vec![vec![0.5]], Some(4)));
        let (v, _) = decode_answer(
            Family::CohereV3,
            br#"{"id":"x","embeddings":[[1.0],[2.0]],"response_type":"embeddings_floats","texts":["a","b"]}"#,
        )
        .unwrap();
        assert_eq!(v, vec![vec![1.0], vec![2.0]]);
    }
}
