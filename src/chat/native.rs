//! A request in a provider's own wire format, kept as the caller sent it, so that a
//! deployment speaking that format gets it passed through faithfully.
//!
//! An inbound surface other than chat completions (Anthropic Messages, OpenAI Responses)
//! decodes its body into the canonical [`ChatRequest`](super::ChatRequest) for routing,
//! limits, the cache and every other format, and also attaches a [`NativeRequest`]: the
//! body byte for byte and the headers worth forwarding. An adapter whose wire format is
//! the request's ([`NativeFormat`]) sends the native body (with the deployment's model)
//! instead of translating the canonical one, so unknown fields, thinking blocks and their
//! signatures arrive unchanged; it still decodes the answer into the canonical types (for
//! usage, cost, the log and failover) and hands the provider's own bytes back beside them
//! ([`ChatResponse::native`](super::ChatResponse::native),
//! [`ChatChunk::native`](super::ChatChunk::native)), which the surface returns as they are.
//! Every other adapter ignores the native request and translates.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// The wire formats a request can arrive in besides chat completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeFormat {
    /// Anthropic's Messages API (`POST /v1/messages`).
    AnthropicMessages,
    /// OpenAI's Responses API (`POST /v1/responses`).
    OpenAiResponses,
}

/// The caller's request in its own format.
#[derive(Debug, Clone)]
pub struct NativeRequest {
    pub format: NativeFormat,
    /// The body as the caller sent it.
    pub body: Bytes,
    /// Headers to forward to a deployment of the same format (for example
    /// `anthropic-beta` and `anthropic-version`); never credentials.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}
