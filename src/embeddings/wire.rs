//! The OpenAI embeddings wire format, both ways: the caller's request in and the answer out
//! (`POST /v1/embeddings`), and the same format to and from OpenAI-format upstreams (API
//! reference: "Create embeddings", "The embedding object"). `encoding_format: "base64"`
//! writes each vector as the base64 of its little-endian `f32` bytes, as OpenAI does (and
//! as the OpenAI SDKs decode it).

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{EmbedRequest, EmbedResponse, EmbedUsage, EncodingFormat};
use crate::{error::Error, providers::ProviderError};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Parses a caller's request, turning serde's complaint into a 400 a person can act on.
pub fn parse_request(bytes: &[u8]) -> Result<EmbedRequest, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = if e.is_syntax() || e.is_eof() {
            format!("We could not parse the JSON body of your request: {e}")
        } else {
            format!(
                "Invalid embeddings request: {e} (`input` must be a string, an array of \
                 strings, an array of integers or an array of integer arrays; \
                 `encoding_format` must be \"float\" or \"base64\")"
            )
        };
        Error::BadRequest {
            message,
            param: None,
        }
    })
}

/// One vector as the answer writes it.
#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Float(&'a [f32]),
    Base64(String),
}

#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u32,
    total_tokens: u32,
}

#[derive(Serialize)]
struct Answer<'a> {
    object: &'static str,
    data: Vec<Item<'a>>,
    model: &'a str,
    usage: Usage,
}

/// The base64 of `vector`'s little-endian `f32` bytes.
pub fn to_base64(vector: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(vector.len() * 4);
    for v in vector {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    B64.encode(bytes)
}

/// The vector a base64 string of little-endian `f32` bytes spells.
pub fn from_base64(text: &str) -> Result<Vec<f32>, String> {
    let bytes = B64
        .decode(text)
        .map_err(|e| format!("an embedding is not valid base64: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "a base64 embedding has {} bytes, not a whole number of f32 values",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The answer as OpenAI writes it, the vectors as `format` asks.
pub fn encode_response(response: &EmbedResponse, format: EncodingFormat) -> Vec<u8> {
    let data = response
        .data
        .iter()
        .enumerate()
        .map(|(index, v)| Item {
            object: "embedding",
            index,
            embedding: match format {
                EncodingFormat::Float => Vector::Float(v),
                EncodingFormat::Base64 => Vector::Base64(to_base64(v)),
            },
        })
        .collect();
    let answer = Answer {
        object: "list",
        data,
        model: &response.model,
        usage: Usage {
            prompt_tokens: response.usage.prompt_tokens,
            total_tokens: response.usage.total_tokens,
        },
    };
    // Plain data into a Vec: a non-finite float is written as null, nothing fails.
    serde_json::to_vec(&answer).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Deserialize)]
struct WireItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: WireVector,
}

/// The vectors in input order: by `index` when the indexes are exactly `0..expected`, else
/// — an OpenAI-compatible server that numbers its items wrongly or not at all — in the
/// order sent, when there is one per input. Any other count is malformed.
fn in_input_order(items: Vec<WireItem>, expected: usize) -> Result<Vec<WireVector>, ProviderError> {
    if items.len() != expected {
        return Err(ProviderError::Malformed(format!(
            "{} embeddings for {expected} inputs",
            items.len()
        )));
    }
    let mut seen = vec![false; expected];
    let by_index = items.iter().all(|item| {
        item.index
            .is_some_and(|i| i < expected && !std::mem::replace(&mut seen[i], true))
    });
    if !by_index {
        return Ok(items.into_iter().map(|item| item.embedding).collect());
    }
    let mut slots: Vec<Option<WireVector>> =
        std::iter::repeat_with(|| None).take(expected).collect();
    for item in items {
        if let Some(i) = item.index {
            slots[i] = Some(item.embedding);
        }
    }
    slots
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ProviderError::Malformed("an input's embedding is missing".into()))
}

/// The request as sent to an OpenAI-format upstream: the caller's, with the deployment's
/// model. `encoding_format` goes as the caller sent it (base64 is a quarter of the bytes
/// on the wire; the answer is decoded either way).
pub fn encode_request(request: &EmbedRequest, model: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Wire<'a> {
        model: &'a str,
        input: &'a super::EmbedInput,
        #[serde(skip_serializing_if = "Option::is_none")]
        dimensions: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding_format: Option<EncodingFormat>,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
        #[serde(flatten)]
        extra: &'a crate::chat::Extra,
    }
    let wire = Wire {
        model,
        input: &request.input,
        dimensions: request.dimensions,
        encoding_format: request.encoding_format,
        user: request.user.as_deref(),
        extra: &request.extra,
    };
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// An OpenAI-format answer (float or base64 vectors) to `request` as the canonical one,
/// the vectors in input order ([`in_input_order`]); an upstream that reports no usage
/// (some compatible servers) is estimated.
pub fn decode_response(
    body: &[u8],
    request: &EmbedRequest,
) -> Result<EmbedResponse, ProviderError> {
    let expected = request.input.len();
    #[derive(Deserialize)]
    struct WireUsage {
        #[serde(default)]
        prompt_tokens: Option<u32>,
        #[serde(default)]
        total_tokens: Option<u32>,
    }
    #[derive(Deserialize)]
    struct WireAnswer {
        data: Vec<WireItem>,
        #[serde(default)]
        model: String,
        #[serde(default)]
        usage: Option<WireUsage>,
    }
    let answer: WireAnswer = crate::providers::upstream::decode(body)?;
    let data = in_input_order(answer.data, expected)?
        .into_iter()
        .map(|v| match v {
            WireVector::Float(v) => Ok(v),
            WireVector::Base64(s) => from_base64(&s).map_err(ProviderError::Malformed),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let usage = answer
        .usage
        .and_then(|u| u.prompt_tokens.or(u.total_tokens))
        .map(EmbedUsage::reported);
    Ok(EmbedResponse {
        model: answer.model,
        data,
        usage: usage.unwrap_or_else(|| EmbedUsage::estimated(request)),
    })
}
