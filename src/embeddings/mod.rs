//! Embeddings: the canonical request and answer every wire format translates to and from,
//! the checks OpenAI's API makes on a request, and the input-token estimate.
//!
//! `POST /v1/embeddings` ([`crate::api::openai`]) and the gRPC `Embed` RPC decode into an
//! [`EmbedRequest`]; the pipeline ([`crate::pipeline`]'s `serve_embeddings`) runs the
//! same authorization, cache, limits, routing and attempts as chat; each provider module
//! translates the request in its own `embed` method ([`crate::providers::Provider::embed`]),
//! and the answer comes back as an [`EmbedResponse`] of plain `f32` vectors, encoded by the
//! surface as floats or base64 ([`wire`]).

pub mod wire;

use serde::{Deserialize, Serialize};

use crate::{chat::Extra, error::Error};

/// OpenAI's limit on inputs in one request (API reference, "Create embeddings", `input`:
/// "any array must be 2048 dimensions or less").
pub const MAX_INPUTS: usize = 2048;

/// An embeddings request, as `POST /v1/embeddings` accepts it (API reference: "Create
/// embeddings").
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct EmbedRequest {
    pub model: String,
    pub input: EmbedInput,
    /// The number of dimensions the answer's vectors should have (models that can
    /// shorten their vectors: text-embedding-3 and later, Gemini, Cohere v4, Titan v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// How the caller wants the vectors: floats (the default) or base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field, carried through to OpenAI-format upstreams untouched and read
    /// by other formats where they have an equivalent (`input_type`, `task_type`,
    /// `truncate`, `normalize`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// What to embed: one text or many, or pre-tokenized input (only OpenAI-format upstreams
/// take tokens).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EmbedInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

impl EmbedInput {
    /// How many vectors the answer has.
    pub fn len(&self) -> usize {
        match self {
            EmbedInput::Text(_) | EmbedInput::Tokens(_) => 1,
            EmbedInput::Texts(t) => t.len(),
            EmbedInput::TokenLists(t) => t.len(),
        }
    }

    /// Whether there is nothing to embed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The texts, or `None` when the input is tokens.
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self {
            EmbedInput::Text(t) => Some(vec![t.as_str()]),
            EmbedInput::Texts(t) => Some(t.iter().map(String::as_str).collect()),
            EmbedInput::Tokens(_) | EmbedInput::TokenLists(_) => None,
        }
    }
}

/// How the vectors are written in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    /// Each vector's little-endian `f32` bytes, base64-encoded.
    Base64,
}

impl EncodingFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            EncodingFormat::Float => "float",
            EncodingFormat::Base64 => "base64",
        }
    }
}

/// An embeddings answer: one vector per input, in input order.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct EmbedResponse {
    /// The model that answered, as the provider named it.
    pub model: String,
    pub data: Vec<Vec<f32>>,
    pub usage: EmbedUsage,
}

/// The input tokens an answer cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct EmbedUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
    /// The provider reported no count (Gemini's embed answers carry none): the figure is
    /// the gateway's estimate ([`estimate_tokens`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

impl EmbedUsage {
    /// `tokens` reported by the provider.
    pub fn reported(tokens: u32) -> EmbedUsage {
        EmbedUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            estimated: false,
        }
    }

    /// The gateway's estimate for `request`, for a provider that reports none.
    pub fn estimated(request: &EmbedRequest) -> EmbedUsage {
        let tokens = estimate_tokens(request);
        EmbedUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            estimated: true,
        }
    }

    /// As the chat usage the request record, limits and the ledger account.
    pub fn as_chat_usage(&self) -> crate::chat::Usage {
        crate::chat::Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: 0,
            total_tokens: self.total_tokens,
            prompt_tokens_details: None,
            completion_tokens_details: None,
            extra: Extra::new(),
        }
    }
}

/// Input tokens of `request`, before the call: the token arrays' lengths, and for text
/// the gateway's documented estimate of four characters a token (as for chat,
/// [`crate::usage::tokens::estimate`]; it errs high against OpenAI's cl100k_base on English
/// prose). The provider's reported usage is the truth after the call.
pub fn estimate_tokens(request: &EmbedRequest) -> u32 {
    let n = match &request.input {
        EmbedInput::Tokens(t) => t.len(),
        EmbedInput::TokenLists(t) => t.iter().map(Vec::len).sum(),
        EmbedInput::Text(t) => t.len().div_ceil(4),
        EmbedInput::Texts(t) => t.iter().map(|t| t.len().div_ceil(4)).sum(),
    };
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The checks OpenAI's API makes before embedding, so every wire format refuses the same
/// requests with the same 400: a model, a non-empty input of at most [`MAX_INPUTS`]
/// items, no empty string or token list, and `dimensions` at least 1.
pub fn validate(request: &EmbedRequest) -> Result<(), Error> {
    if request.model.trim().is_empty() {
        return Err(Error::bad_param("model", "`model` must not be empty"));
    }
    let empty_item = match &request.input {
        EmbedInput::Text(t) => t.is_empty(),
        EmbedInput::Texts(t) => t.iter().any(String::is_empty),
        EmbedInput::Tokens(t) => t.is_empty(),
        EmbedInput::TokenLists(t) => t.iter().any(Vec::is_empty),
    };
    if request.input.is_empty() || empty_item {
        return Err(Error::bad_param(
            "input",
            "`input` must be a non-empty string, or a non-empty array of non-empty strings \
             or token arrays",
        ));
    }
    if request.input.len() > MAX_INPUTS {
        return Err(Error::bad_param(
            "input",
            format!(
                "`input` has {} items; at most {MAX_INPUTS} may be embedded in one request",
                request.input.len()
            ),
        ));
    }
    if request.dimensions == Some(0) {
        return Err(Error::bad_param(
            "dimensions",
            "`dimensions` must be at least 1",
        ));
    }
    Ok(())
}

/// The `Untranslatable` error of a wire format that takes only text.
pub fn tokens_refused(format: &str) -> crate::providers::ProviderError {
    crate::providers::ProviderError::Untranslatable(format!(
        "{format} embeds text only: token-array input cannot be sent to it"
    ))
}

/// An extra field's string value (`input_type`, `task_type`, ...), when the caller sent one.
pub fn extra_str<'a>(request: &'a EmbedRequest, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| request.extra.get(*n).and_then(serde_json::Value::as_str))
}

#[cfg(test)]
mod tests;
