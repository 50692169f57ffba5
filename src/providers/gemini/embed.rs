//! Embeddings in the Gemini API (reference: "Embeddings", `models.embedContent` and
//! `models.batchEmbedContents`): one input goes to `{base}/{model}:embedContent`, several to
//! `:batchEmbedContents` (each request naming `models/{model}`), in batches of at most
//! [`MAX_BATCH`]. `dimensions` becomes `outputDimensionality`; `taskType` and `title` are
//! sent only when the caller gave them (extra fields `task_type`/`taskType`, `title`).
//! Gemini's answers carry no token counts: usage is the gateway's estimate, marked so.

use serde::{Deserialize, Serialize};

use super::GeminiProvider;
use crate::{
    embeddings::{self, EmbedRequest, EmbedResponse, EmbedUsage},
    providers::{ProviderError, upstream},
};

/// Requests in one `batchEmbedContents` call (the API refuses more than 100).
pub const MAX_BATCH: usize = 100;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedContent<'a> {
    model: &'a str,
    content: Content<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u32>,
}

#[derive(Serialize)]
struct Content<'a> {
    parts: [Part<'a>; 1],
}

#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct Batch<'a> {
    requests: Vec<EmbedContent<'a>>,
}

#[derive(Deserialize)]
struct Values {
    values: Vec<f32>,
}

#[derive(Deserialize)]
struct SingleAnswer {
    embedding: Values,
}

#[derive(Deserialize)]
struct BatchAnswer {
    embeddings: Vec<Values>,
}

/// The bodies to send for `request` to `model`: `(batch, body)` pairs, `batch` false for
/// the one-input `embedContent`.
pub fn encode_requests(
    request: &EmbedRequest,
    model: &str,
) -> Result<Vec<(bool, Vec<u8>)>, ProviderError> {
    let texts = request
        .input
        .texts()
        .ok_or_else(|| embeddings::tokens_refused("Gemini"))?;
    let name = format!("models/{}", model.strip_prefix("models/").unwrap_or(model));
    let task_type = embeddings::extra_str(request, &["task_type", "taskType"]);
    let title = embeddings::extra_str(request, &["title"]);
    let one = |text| EmbedContent {
        model: &name,
        content: Content {
            parts: [Part { text }],
        },
        task_type,
        title,
        output_dimensionality: request.dimensions,
    };
    if let [text] = texts[..] {
        return Ok(vec![(false, to_vec(&one(text)))]);
    }
    Ok(texts
        .chunks(MAX_BATCH)
        .map(|chunk| {
            let batch = Batch {
                requests: chunk.iter().map(|t| one(t)).collect(),
            };
            (true, to_vec(&batch))
        })
        .collect())
}

/// The vectors of one answer (`batch` as sent).
pub fn decode_answer(body: &[u8], batch: bool) -> Result<Vec<Vec<f32>>, ProviderError> {
    if batch {
        let answer: BatchAnswer = upstream::decode(body)?;
        Ok(answer.embeddings.into_iter().map(|e| e.values).collect())
    } else {
        let answer: SingleAnswer = upstream::decode(body)?;
        Ok(vec![answer.embedding.values])
    }
}

/// Plain data into a Vec: cannot fail.
fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl GeminiProvider {
    /// One embeddings request: one call, or one per batch of [`MAX_BATCH`], in order.
    pub(super) async fn embed_once(
        &self,
        request: &EmbedRequest,
        model: &str,
    ) -> Result<EmbedResponse, ProviderError> {
        let bodies = encode_requests(request, model)?;
        let mut data = Vec::with_capacity(request.input.len());
        for (batch, body) in bodies {
            let url = embed_url(self.upstream.url(), model, batch)?;
            let answer = self.upstream.post_to(url, body, false).await?;
            data.extend(decode_answer(&self.upstream.body(answer).await?, batch)?);
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
            usage: EmbedUsage::estimated(request),
        })
    }
}

/// `{base}/{model}:embedContent` or `:batchEmbedContents`.
pub fn embed_url(base: &url::Url, model: &str, batch: bool) -> Result<url::Url, ProviderError> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let method = if batch {
        "batchEmbedContents"
    } else {
        "embedContent"
    };
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ProviderError::Untranslatable("gemini: base_url cannot take a path".into()))?
        .pop_if_empty()
        .push(&format!("{model}:{method}"));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn request(input: Value) -> EmbedRequest {
        serde_json::from_value(json!({ "model": "m", "input": input, "dimensions": 8 })).unwrap()
    }

    #[test]
    fn one_input_is_one_embed_content_call_with_output_dimensionality() {
        let bodies = encode_requests(&request(json!("hi")), "gemini-embedding-001").unwrap();
        assert_eq!(bodies.len(), 1);
        assert!(!bodies[0].0);
        let body: Value = serde_json::from_slice(&bodies[0].1).unwrap();
        assert_eq!(
            body,
            json!({ "model": "models/gemini-embedding-001",
                    "content": { "parts": [{ "text": "hi" }] }, "outputDimensionality": 8 })
        );
    }

    #[test]
    fn many_inputs_are_batched_by_a_hundred_and_task_type_goes_only_when_sent() {
        let texts: Vec<String> = (0..150).map(|i| format!("t{i}")).collect();
        let mut r = request(json!(texts));
        r.extra.insert("task_type".into(), json!("RETRIEVAL_QUERY"));
        let bodies = encode_requests(&r, "text-embedding-004").unwrap();
        assert_eq!(bodies.len(), 2);
        let first: Value = serde_json::from_slice(&bodies[0].1).unwrap();
        assert_eq!(first["requests"].as_array().unwrap().len(), 100);
        assert_eq!(first["requests"][0]["taskType"], "RETRIEVAL_QUERY");
        let plain = encode_requests(&request(json!(["a", "b"])), "m").unwrap();
        let body: Value = serde_json::from_slice(&plain[0].1).unwrap();
        assert!(body["requests"][0].get("taskType").is_none());
    }

    #[test]
    fn tokens_are_refused_as_untranslatable() {
        let e = encode_requests(&request(json!([1, 2, 3])), "m").unwrap_err();
        assert!(matches!(e, ProviderError::Untranslatable(_)));
    }

    #[test]
    fn answers_decode_single_and_batch() {
        let one = decode_answer(br#"{"embedding":{"values":[0.5,-1]}}"#, false).unwrap();
        assert_eq!(one, vec![vec![0.5, -1.0]]);
        let many =
            decode_answer(br#"{"embeddings":[{"values":[1]},{"values":[2]}]}"#, true).unwrap();
        assert_eq!(many, vec![vec![1.0], vec![2.0]]);
    }
}
