//! What can go wrong in one call to one provider, and whether trying the next one helps.

use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;

/// The error a provider answered with or the transport failure that stood in for an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// No connection could be made (refused, unreachable, DNS, TLS handshake).
    #[error("could not connect to the provider: {0}")]
    Connect(String),
    /// The attempt ran out of time before the provider answered.
    #[error("the provider did not answer in time")]
    Timeout,
    /// The connection broke before the response was complete, or a stream ended without
    /// its terminator.
    #[error("the provider connection broke: {0}")]
    Reset(String),
    /// The provider answered with an error status. Its status and message are kept so the
    /// caller sees what the provider said.
    #[error("the provider answered {status}: {message}")]
    Status {
        status: StatusCode,
        message: String,
        kind: Option<String>,
        code: Option<String>,
        param: Option<String>,
        retry_after: Option<Duration>,
    },
    /// A stream reported an error in-band after a successful status.
    #[error("the provider reported a stream error: {message}")]
    InStream {
        message: String,
        kind: Option<String>,
        code: Option<String>,
    },
    /// The request cannot be expressed in this provider's wire format (a content part or
    /// parameter it has no equivalent for). Another deployment may take it.
    #[error("{0}")]
    Untranslatable(String),
    /// The provider's body could not be understood.
    #[error("the provider sent a malformed response: {0}")]
    Malformed(String),
}

impl ProviderError {
    /// Whether the next deployment may succeed where this one failed.
    ///
    /// Transport failures, 5xx, 429 and the provider rejecting *our* credentials (401/403)
    /// or not knowing the deployment's model (404) say nothing about the caller's request;
    /// any other 4xx does, and would fail the same way everywhere.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Status { status, .. } => {
                // 424 is Bedrock's ModelErrorException: the model failed, not the request.
                status.is_server_error()
                    || matches!(status.as_u16(), 401 | 403 | 404 | 408 | 424 | 429)
            }
            _ => true,
        }
    }

    /// A short label for logs, metrics and the attempts header.
    pub fn label(&self) -> String {
        match self {
            ProviderError::Connect(_) => "connect".into(),
            ProviderError::Timeout => "timeout".into(),
            ProviderError::Reset(_) => "reset".into(),
            ProviderError::Status { status, .. } => status.as_u16().to_string(),
            ProviderError::InStream { .. } => "stream_error".into(),
            ProviderError::Malformed(_) => "malformed".into(),
            ProviderError::Untranslatable(_) => "untranslatable".into(),
        }
    }

    /// Builds a status error from an upstream error body in the OpenAI shape
    /// (`{"error": {"message", "type", "param", "code"}}`), falling back to the raw text.
    pub fn from_status(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            error: Detail,
        }
        #[derive(Deserialize)]
        struct Detail {
            #[serde(default)]
            message: Option<String>,
            #[serde(rename = "type", default)]
            kind: Option<String>,
            #[serde(default)]
            code: Option<serde_json::Value>,
            #[serde(default)]
            param: Option<String>,
        }
        // Cohere and others answer `{"message": "..."}` without the `error` envelope.
        #[derive(Deserialize)]
        struct Bare {
            message: String,
        }
        if let Ok(Bare { message }) = serde_json::from_slice::<Bare>(body) {
            return ProviderError::Status {
                status,
                message,
                kind: None,
                code: None,
                param: None,
                retry_after,
            };
        }
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => ProviderError::Status {
                status,
                message: error
                    .message
                    .unwrap_or_else(|| default_message(status).to_owned()),
                kind: error.kind,
                code: error.code.and_then(|c| match c {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }),
                param: error.param,
                retry_after,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let message = if text.is_empty() {
                    default_message(status).to_owned()
                } else {
                    truncate(text, 1000)
                };
                ProviderError::Status {
                    status,
                    message,
                    kind: None,
                    code: None,
                    param: None,
                    retry_after,
                }
            }
        }
    }
}

fn default_message(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("upstream error")
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Parses `retry-after-ms`, or `retry-after` as delay-seconds (possibly fractional) or as
/// an HTTP-date (RFC 9110 section 10.2.3). A date already past means "retry now": zero.
pub fn parse_retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    retry_after_at(headers, std::time::SystemTime::now())
}

/// [`parse_retry_after`] with the wall-clock time an HTTP-date is measured from.
fn retry_after_at(headers: &http::HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
