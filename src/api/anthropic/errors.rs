//! Errors in Anthropic's shape: `{"type": "error", "error": {"type", "message"},
//! "request_id"}` with Anthropic's status codes (API reference, "Errors").
//!
//! The gateway's one table ([`Error::spec`]) decides the status; this file only renames
//! it where Anthropic's clients expect another one: the gateway's own overload is 529
//! `overloaded_error`, its timeouts 504 `timeout_error`. A provider's error keeps its
//! status and message, and its `type` when the provider gave one of Anthropic's.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::{
    api::{ATTEMPTS_HEADER, REQUEST_ID_HEADER},
    error::Error,
    pipeline::Refusal,
    providers::ProviderError,
};

/// The error `type`s Anthropic documents; a provider's own `type` is kept when it is one.
const TYPES: &[&str] = &[
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
];

/// Anthropic's status 529, "overloaded".
pub const OVERLOADED: u16 = 529;

/// How an error shows on the Messages surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

/// Anthropic's error `type` for a status.
pub fn type_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        OVERLOADED => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

impl AnthropicError {
    /// The Messages surface's view of `error`.
    pub fn of(error: &Error, request_id: &str) -> AnthropicError {
        let spec = error.spec();
        let message = error.openai_fields(request_id).message;
        let status = match error {
            Error::Overloaded { .. } => {
                StatusCode::from_u16(OVERLOADED).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            _ => spec.status,
        };
        let own_type = match error {
            Error::Upstream { error, .. } => match &**error {
                ProviderError::Status { kind, .. } | ProviderError::InStream { kind, .. } => kind
                    .as_deref()
                    .and_then(|k| TYPES.iter().find(|t| **t == k)),
                _ => None,
            },
            _ => None,
        };
        let kind = match (own_type, error) {
            (Some(t), _) => t,
            // Anthropic's overload is the closest meaning for an in-band failure too.
            (None, Error::Upstream { error, .. })
                if matches!(**error, ProviderError::InStream { .. }) =>
            {
                "api_error"
            }
            (None, _) => type_for(status),
        };
        AnthropicError {
            status,
            kind,
            message,
        }
    }

    /// The JSON body.
    pub fn body(&self, request_id: &str) -> Bytes {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            error: Detail<'a>,
            request_id: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Detail<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            message: &'a str,
        }
        let body = Body {
            kind: "error",
            error: Detail {
                kind: self.kind,
                message: &self.message,
            },
            request_id: (!request_id.is_empty()).then_some(request_id),
        };
        // Strings only: serializing cannot fail; the fallback is a fixed valid body.
        serde_json::to_vec(&body).map_or_else(
            |_| {
                Bytes::from_static(
                    b"{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"internal error\"},\"request_id\":null}",
                )
            },
            Bytes::from,
        )
    }
}

/// A refused call as its Anthropic error response.
pub fn refusal_response(refusal: &Refusal) -> Response {
    error_response(&refusal.error, &refusal.request_id, &refusal.attempts)
}

/// The error response: Anthropic's body and status, the request id, `retry-after` when
/// the provider or the gateway gave one (on 429 and 529 at least one second), the
/// attempts made and the error's own headers (`x-ratelimit-*`, `x-should-retry`).
pub fn error_response(error: &Error, request_id: &str, attempts: &str) -> Response {
    if let Error::Internal { detail } = error {
        tracing::error!(request_id, detail, "internal error");
    }
    let shown = AnthropicError::of(error, request_id);
    let mut resp = (shown.status, shown.body(request_id)).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if !request_id.is_empty()
        && let Ok(v) = HeaderValue::from_str(request_id)
    {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    let retry_after = error.retry_after().or_else(|| {
        matches!(shown.status.as_u16(), 429 | OVERLOADED)
            .then_some(std::time::Duration::from_secs(1))
            // A rate limit that waiting cannot lift says so with x-should-retry instead.
            .filter(|_| {
                !matches!(
                    error,
                    Error::RateLimited {
                        retry_after: None,
                        ..
                    } | Error::QuotaExceeded { .. }
                )
            })
    });
    if let Some(after) = retry_after {
        let secs = after.as_secs_f64().ceil().max(1.0) as u64;
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if !attempts.is_empty()
        && let Ok(v) = HeaderValue::from_str(attempts)
    {
        headers.insert(ATTEMPTS_HEADER, v);
    }
    for (name, value) in error.extra_headers() {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_overload_is_anthropics_529() {
        let e = Error::Overloaded {
            message: "busy".into(),
            retry_after: std::time::Duration::from_secs(1),
        };
        let shown = AnthropicError::of(&e, "req-1");
        assert_eq!(shown.status.as_u16(), 529);
        assert_eq!(shown.kind, "overloaded_error");
        let body: serde_json::Value = serde_json::from_slice(&shown.body("req-1")).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "overloaded_error");
        assert_eq!(body["request_id"], "req-1");
    }

    #[test]
    fn a_providers_own_type_and_status_are_kept() {
        let e = Error::upstream(
            "p".into(),
            ProviderError::Status {
                status: StatusCode::from_u16(529).unwrap(),
                message: "Overloaded".into(),
                kind: Some("overloaded_error".into()),
                code: None,
                param: None,
                retry_after: None,
            },
        );
        let shown = AnthropicError::of(&e, "r");
        assert_eq!(
            (shown.status.as_u16(), shown.kind),
            (529, "overloaded_error")
        );
        assert_eq!(shown.message, "Overloaded");
        // An OpenAI provider's type is not Anthropic's: the status decides.
        let e = Error::upstream(
            "p".into(),
            ProviderError::Status {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: "slow down".into(),
                kind: Some("requests".into()),
                code: None,
                param: None,
                retry_after: None,
            },
        );
        assert_eq!(AnthropicError::of(&e, "r").kind, "rate_limit_error");
    }

    #[test]
    fn each_gateway_error_has_anthropics_type() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (
                Error::Unauthorized {
                    message: "no".into(),
                    code: "invalid_api_key",
                },
                401,
                "authentication_error",
            ),
            (
                Error::Forbidden {
                    message: "no".into(),
                    code: "x",
                },
                403,
                "permission_error",
            ),
            (
                Error::ModelNotFound { model: "m".into() },
                404,
                "not_found_error",
            ),
            (
                Error::PayloadTooLarge { limit: 1 },
                413,
                "request_too_large",
            ),
            (
                Error::DeadlineExceeded { deadline_ms: 1 },
                504,
                "timeout_error",
            ),
            (
                Error::Internal {
                    detail: "secret detail".into(),
                },
                500,
                "api_error",
            ),
            (Error::bad_param("x", "bad"), 400, "invalid_request_error"),
        ];
        for (e, status, kind) in cases {
            let shown = AnthropicError::of(&e, "req-9");
            assert_eq!((shown.status.as_u16(), shown.kind), (status, kind), "{e:?}");
            assert!(!shown.message.contains("secret"));
        }
    }
}
