//! The error table: one status, gRPC code and OpenAI type per variant.

use std::time::Duration;

use http::StatusCode;
use tonic::Code;

use super::*;

fn upstream(error: ProviderError) -> Error {
    Error::upstream("p".into(), error)
}

#[test]
fn each_variant_has_one_status_code_and_type() {
    let cases = [
        (
            Error::bad_param("messages", "x"),
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            "invalid_request_error",
        ),
        (
            Error::PayloadTooLarge { limit: 1 },
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            "invalid_request_error",
        ),
        (
            Error::ModelNotFound { model: "m".into() },
            StatusCode::NOT_FOUND,
            Code::NotFound,
            "invalid_request_error",
        ),
        (
            Error::DeadlineExceeded { deadline_ms: 5 },
            StatusCode::GATEWAY_TIMEOUT,
            Code::DeadlineExceeded,
            "timeout_error",
        ),
        (
            upstream(ProviderError::Connect("refused".into())),
            StatusCode::BAD_GATEWAY,
            Code::Unavailable,
            "api_error",
        ),
        (
            upstream(ProviderError::Timeout),
            StatusCode::GATEWAY_TIMEOUT,
            Code::DeadlineExceeded,
            "timeout_error",
        ),
        (
            upstream(ProviderError::Reset("x".into())),
            StatusCode::BAD_GATEWAY,
            Code::Unavailable,
            "api_error",
        ),
        (
            Error::Unauthorized {
                message: "m".into(),
                code: "invalid_api_key",
            },
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            "invalid_request_error",
        ),
        (
            Error::Forbidden {
                message: "m".into(),
                code: "model_not_allowed",
            },
            StatusCode::FORBIDDEN,
            Code::PermissionDenied,
            "permission_error",
        ),
        (
            Error::Internal { detail: "d".into() },
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            "api_error",
        ),
    ];
    for (err, status, grpc, kind) in cases {
        let spec = err.spec();
        assert_eq!(
            (spec.status, spec.grpc, spec.kind),
            (status, grpc, kind),
            "{err:?}"
        );
    }
}

#[test]
fn upstream_status_errors_keep_the_providers_status_message_and_code() {
    let err = upstream(ProviderError::Status {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: "Rate limit reached for gpt-4o-mini".into(),
        kind: Some("requests".into()),
        code: Some("rate_limit_exceeded".into()),
        param: None,
        retry_after: Some(Duration::from_secs(7)),
    });
    let spec = err.spec();
    assert_eq!(spec.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(spec.grpc, Code::ResourceExhausted);
    let f = err.openai_fields("req_1");
    assert_eq!(f.message, "Rate limit reached for gpt-4o-mini");
    assert_eq!(f.kind, "requests");
    assert_eq!(f.code.as_deref(), Some("rate_limit_exceeded"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
}

#[test]
fn internal_errors_show_only_the_request_id() {
    let err = Error::Internal {
        detail: "secret path /etc/keys and sk-live-123".into(),
    };
    let f = err.openai_fields("req_42");
    assert_eq!(f.message, "internal error (request id req_42)");
    assert!(!format!("{f:?}").contains("sk-live"));
}

#[test]
fn grpc_codes_follow_http_statuses() {
    for (status, code) in [
        (400, Code::InvalidArgument),
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (404, Code::NotFound),
        (429, Code::ResourceExhausted),
        (500, Code::Internal),
        (502, Code::Unavailable),
        (503, Code::Unavailable),
        (504, Code::DeadlineExceeded),
    ] {
        assert_eq!(
            grpc_code(StatusCode::from_u16(status).unwrap()),
            code,
            "{status}"
        );
    }
}

#[test]
fn overload_is_a_503_unavailable_with_its_retry_after() {
    let err = Error::Overloaded {
        message: "the gateway is serving its limit".into(),
        retry_after: Duration::from_secs(1),
    };
    let spec = err.spec();
    assert_eq!(spec.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(spec.grpc, Code::Unavailable);
    let f = err.openai_fields("req_1");
    assert_eq!(f.code.as_deref(), Some("overloaded"));
    assert_eq!(f.message, "the gateway is serving its limit");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
}

#[test]
fn each_error_has_one_class_from_the_closed_set() {
    use crate::error::ErrorClass::*;
    let status = |code: u16| ProviderError::Status {
        status: StatusCode::from_u16(code).unwrap(),
        message: String::new(),
        kind: None,
        code: None,
        param: None,
        retry_after: None,
    };
    let cases = [
        (Error::bad_param("messages", "x"), Caller),
        (Error::ModelNotFound { model: "m".into() }, Caller),
        (
            Error::Unauthorized {
                message: "x".into(),
                code: "invalid_api_key",
            },
            Caller,
        ),
        (
            Error::Forbidden {
                message: "x".into(),
                code: "model_not_allowed",
            },
            Policy,
        ),
        (
            Error::QuotaExceeded {
                message: "x".into(),
            },
            Policy,
        ),
        (upstream(status(503)), Provider),
        (upstream(status(429)), Provider),
        (upstream(status(400)), Caller),
        (upstream(ProviderError::Timeout), Provider),
        (Error::DeadlineExceeded { deadline_ms: 1 }, Provider),
        (Error::LimitsUnavailable, Gateway),
        (Error::Internal { detail: "x".into() }, Gateway),
    ];
    for (error, class) in cases {
        assert_eq!(error.class(), class, "{error:?}");
    }
    assert_eq!(Policy.as_str(), "policy");
}
