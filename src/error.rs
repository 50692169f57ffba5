//! The gateway's one error type and the one table that maps it to every surface.
//!
//! Each variant has exactly one HTTP status, gRPC code and OpenAI error `type`/`code`
//! ([`Error::spec`]); the REST and gRPC adapters only format what the table says.

use std::sync::Arc;

use http::StatusCode;

use crate::providers::ProviderError;

/// Everything that can end a request without an answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or fails the schema.
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
    },
    /// The request body is larger than `server.max_body_bytes`.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The client did not send its whole body within `server.body_timeout_ms`.
    #[error("the request body did not arrive within {timeout_ms} ms")]
    BodyTimeout { timeout_ms: u64 },
    /// Too many request headers, or too many bytes of them (`server.max_header_count`,
    /// `server.max_header_bytes`).
    #[error("{message}")]
    HeadersTooLarge { message: String },
    /// The request target is longer than `server.max_url_bytes`.
    #[error("the request URL is longer than the limit of {limit} bytes (server.max_url_bytes)")]
    UriTooLong { limit: usize },
    /// A stream ran past `server.max_stream_duration_s` and was ended.
    #[error(
        "the stream was ended after the gateway's limit of {limit_s} s \
         (server.max_stream_duration_s)"
    )]
    StreamTooLong { limit_s: u64 },
    /// The model is not in the catalog.
    #[error("The model `{model}` does not exist or you do not have access to it.")]
    ModelNotFound { model: String },
    /// No deployment of the model has a capability the request needs.
    #[error("no deployment of model `{model}` supports {capability}")]
    Unsupported {
        model: String,
        capability: &'static str,
    },
    /// The request is larger than every deployment's context window.
    #[error(
        "the request needs about {tokens} tokens (input estimate plus max_tokens), more than \
         the largest context window of this model's deployments ({window})"
    )]
    ContextLength { tokens: u32, window: u32 },
    /// A stored response that does not exist (or is not the caller's key's).
    #[error("Response with id '{id}' not found.")]
    ResponseNotFound { id: String },
    /// No route for this path.
    #[error("Unknown request URL: {method} {path}")]
    RouteNotFound { method: String, path: String },
    /// A known path asked with a method it does not serve.
    #[error("{method} is not allowed on {path}; use {allow}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    /// The request's total deadline passed before any deployment answered.
    #[error("no deployment answered within the request deadline of {deadline_ms} ms")]
    DeadlineExceeded { deadline_ms: u64 },
    /// The last deployment tried failed; this is what it said.
    #[error("{error}")]
    Upstream {
        provider: Arc<str>,
        error: Box<ProviderError>,
    },
    /// No valid credentials on a gateway that requires them (`code` says what failed:
    /// `invalid_api_key`, `signature_invalid`, `signature_expired`, `signature_replayed`,
    /// `token_invalid`, `token_expired`, `token_audience`).
    #[error("{message}")]
    Unauthorized { message: String, code: &'static str },
    /// The caller's key may not do this (`code` says what).
    #[error("{message}")]
    Forbidden { message: String, code: &'static str },
    /// A data control refused the request or its answer: redaction in `block` mode
    /// (`pii_detected`), a content rule (`content_policy_violation`). The message names the
    /// detector or rule, never the matched text.
    #[error("{message}")]
    Refused { message: String, code: &'static str },
    /// The gateway is at its limit (`server.max_in_flight`), or every deployment of the
    /// model is at its `max_concurrent`: refused at once rather than queued.
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after: std::time::Duration,
    },
    /// A rate limit of the gateway's (`rpm`, `tpm`, `max_concurrent`) refused the call.
    #[error("{message}")]
    RateLimited {
        message: String,
        /// OpenAI's error `type` for it: `requests` or `tokens`.
        kind: &'static str,
        /// `None` when waiting cannot help (the request alone exceeds the limit).
        retry_after: Option<std::time::Duration>,
        figures: Box<crate::limits::Granted>,
    },
    /// The caller's key has spent its budget for the day or month.
    #[error("{message}")]
    QuotaExceeded { message: String },
    /// Limits or budgets apply, Redis cannot be reached, and `state.on_redis_error` is
    /// `closed`.
    #[error(
        "the gateway's shared limits are unavailable (Redis cannot be reached); try again shortly"
    )]
    LimitsUnavailable,
    /// A bug or an unexpected condition. The detail goes to the log, never to the caller.
    #[error("internal error")]
    Internal { detail: String },
}

/// Where an error came from: the caller's request, the gateway's policy (keys, limits,
/// budgets), the providers, or the gateway itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    Caller,
    Policy,
    Provider,
    Gateway,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Caller => "caller",
            ErrorClass::Policy => "policy",
            ErrorClass::Provider => "provider",
            ErrorClass::Gateway => "gateway",
        }
    }
}

/// How one error shows on each surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorSpec {
    pub status: StatusCode,
    pub grpc: tonic::Code,
    /// OpenAI error `type`.
    pub kind: &'static str,
    /// OpenAI error `code`, when there is a fixed one.
    pub code: Option<&'static str>,
}

impl Error {
    /// What a provider said, as the caller's error.
    pub fn upstream(provider: Arc<str>, error: ProviderError) -> Self {
        Error::Upstream {
            provider,
            error: Box::new(error),
        }
    }

    /// A bad-request error about one parameter.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        Error::BadRequest {
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }

    /// Whose fault the error is, for the `error_type` metric label and the trace: a
    /// closed set, so the label stays bounded.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::BadRequest { .. }
            | Error::PayloadTooLarge { .. }
            | Error::BodyTimeout { .. }
            | Error::HeadersTooLarge { .. }
            | Error::UriTooLong { .. }
            | Error::ModelNotFound { .. }
            | Error::Unsupported { .. }
            | Error::ContextLength { .. }
            | Error::RouteNotFound { .. }
            | Error::ResponseNotFound { .. }
            | Error::MethodNotAllowed { .. }
            | Error::Unauthorized { .. } => ErrorClass::Caller,
            Error::Forbidden { .. }
            | Error::Refused { .. }
            | Error::RateLimited { .. }
            | Error::QuotaExceeded { .. }
            | Error::StreamTooLong { .. } => ErrorClass::Policy,
            // A provider's 4xx about the request itself (not retried), or a request no
            // deployment's format can express, is the caller's; the rest is the providers'.
            Error::Upstream { error, .. } => match &**error {
                ProviderError::Status { .. } if !error.is_retryable() => ErrorClass::Caller,
                ProviderError::Untranslatable(_) => ErrorClass::Caller,
                _ => ErrorClass::Provider,
            },
            Error::DeadlineExceeded { .. } => ErrorClass::Provider,
            Error::Overloaded { .. } | Error::LimitsUnavailable | Error::Internal { .. } => {
                ErrorClass::Gateway
            }
        }
    }

    /// The table: status, gRPC code and OpenAI type for every variant.
    pub fn spec(&self) -> ErrorSpec {
        use tonic::Code;
        let (status, kind, code) = match self {
            Error::BadRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
            Error::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                Some("request_too_large"),
            ),
            Error::BodyTimeout { .. } => (
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                Some("request_timeout"),
            ),
            Error::HeadersTooLarge { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "invalid_request_error",
                Some("request_headers_too_large"),
            ),
            Error::UriTooLong { .. } => (
                StatusCode::URI_TOO_LONG,
                "invalid_request_error",
                Some("url_too_long"),
            ),
            Error::StreamTooLong { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                Some("stream_duration_exceeded"),
            ),
            Error::ModelNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
            ),
            Error::Unsupported { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("unsupported_capability"),
            ),
            Error::ContextLength { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("context_length_exceeded"),
            ),
            Error::RouteNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("unknown_url"),
            ),
            Error::ResponseNotFound { .. } => {
                (StatusCode::NOT_FOUND, "invalid_request_error", None)
            }
            Error::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                Some("method_not_allowed"),
            ),
            Error::DeadlineExceeded { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                Some("deadline_exceeded"),
            ),
            Error::Upstream { error, .. } => match &**error {
                ProviderError::Status { status, .. } => (*status, openai_type(*status), None),
                ProviderError::Timeout => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout_error",
                    Some("upstream_timeout"),
                ),
                ProviderError::Connect(_) => (
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    Some("upstream_unreachable"),
                ),
                ProviderError::Reset(_) | ProviderError::Malformed(_) => {
                    (StatusCode::BAD_GATEWAY, "api_error", Some("upstream_error"))
                }
                ProviderError::Untranslatable(_) => (
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("unsupported_by_provider"),
                ),
                ProviderError::InStream { .. } => (
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    Some("upstream_stream_error"),
                ),
            },
            Error::Unauthorized { code, .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                Some(*code),
            ),
            Error::Forbidden { code, .. } => {
                (StatusCode::FORBIDDEN, "permission_error", Some(*code))
            }
            Error::Refused { code, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some(*code),
            ),
            Error::Overloaded { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                Some("overloaded"),
            ),
            Error::RateLimited { kind, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                *kind,
                Some("rate_limit_exceeded"),
            ),
            Error::QuotaExceeded { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            Error::LimitsUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                Some("limits_unavailable"),
            ),
            Error::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "api_error", None),
        };
        let grpc = match self {
            Error::PayloadTooLarge { .. } | Error::HeadersTooLarge { .. } => {
                Code::ResourceExhausted
            }
            Error::UriTooLong { .. } => Code::InvalidArgument,
            _ => grpc_code(status),
        };
        ErrorSpec {
            status,
            grpc,
            kind,
            code,
        }
    }

    /// The OpenAI error body fields: `(message, type, param, code)`.
    ///
    /// Upstream errors keep the provider's own message, type and code. Internal errors say
    /// only "internal error" and the request id.
    pub fn openai_fields(&self, request_id: &str) -> OpenAiErrorFields {
        let spec = self.spec();
        match self {
            Error::Upstream { provider, error } => match &**error {
                ProviderError::Status {
                    message,
                    kind,
                    code,
                    param,
                    ..
                } => OpenAiErrorFields {
                    message: message.clone(),
                    kind: kind.clone().unwrap_or_else(|| spec.kind.to_owned()),
                    param: param.clone(),
                    code: code.clone(),
                },
                ProviderError::InStream {
                    message,
                    kind,
                    code,
                    ..
                } => OpenAiErrorFields {
                    message: message.clone(),
                    kind: kind.clone().unwrap_or_else(|| spec.kind.to_owned()),
                    param: None,
                    code: code.clone().or(spec.code.map(str::to_owned)),
                },
                other => OpenAiErrorFields {
                    message: format!("provider `{provider}`: {other}"),
                    kind: spec.kind.to_owned(),
                    param: None,
                    code: spec.code.map(str::to_owned),
                },
            },
            Error::Internal { .. } => OpenAiErrorFields {
                message: format!("internal error (request id {request_id})"),
                kind: spec.kind.to_owned(),
                param: None,
                code: None,
            },
            Error::BadRequest { message, param } => OpenAiErrorFields {
                message: message.clone(),
                kind: spec.kind.to_owned(),
                param: param.clone(),
                code: spec.code.map(str::to_owned),
            },
            Error::ModelNotFound { .. } => OpenAiErrorFields {
                message: self.to_string(),
                kind: spec.kind.to_owned(),
                param: Some("model".to_owned()),
                code: spec.code.map(str::to_owned),
            },
            _ => OpenAiErrorFields {
                message: self.to_string(),
                kind: spec.kind.to_owned(),
                param: None,
                code: spec.code.map(str::to_owned),
            },
        }
    }

    /// How long the caller should wait before retrying, when the provider or the gateway's
    /// own load says.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Overloaded { retry_after, .. } => Some(*retry_after),
            Error::RateLimited { retry_after, .. } => *retry_after,
            Error::LimitsUnavailable => Some(std::time::Duration::from_secs(1)),
            Error::Upstream { error, .. } => match &**error {
                ProviderError::Status { retry_after, .. } => *retry_after,
                _ => None,
            },
            _ => None,
        }
    }
}

impl Error {
    /// Headers (REST) or metadata (gRPC) the error carries besides `retry-after`: the
    /// `x-ratelimit-*` figures of a rate limit, and `x-should-retry: false` where retrying
    /// cannot help (the official SDKs then do not retry).
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::RateLimited {
                figures,
                retry_after,
                ..
            } => {
                let mut h = figures.headers();
                if retry_after.is_none() {
                    h.push(("x-should-retry", "false".to_owned()));
                }
                h
            }
            Error::QuotaExceeded { .. } => vec![("x-should-retry", "false".to_owned())],
            _ => Vec::new(),
        }
    }
}

/// The four fields of an OpenAI error object.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OpenAiErrorFields {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// OpenAI's error `type` for an upstream status that came without one.
fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The gRPC code for an HTTP status, following the gRPC HTTP-to-status mapping where it
/// has one and the meaning of the status where it does not.
pub fn grpc_code(status: StatusCode) -> tonic::Code {
    use tonic::Code;
    match status.as_u16() {
        200..=299 => Code::Ok,
        400 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        409 => Code::Aborted,
        413 | 429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        501 => Code::Unimplemented,
        502 | 503 => Code::Unavailable,
        400..=499 => Code::FailedPrecondition,
        _ => Code::Internal,
    }
}

#[cfg(test)]
mod tests;
