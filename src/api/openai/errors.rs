//! Errors as OpenAI error JSON with the status from the error table.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::json;

use crate::{
    api::{ATTEMPTS_HEADER, REQUEST_ID_HEADER},
    error::Error,
    pipeline::Refusal,
};

/// A refused call as its OpenAI error response.
pub fn refusal_response(refusal: &Refusal) -> Response {
    error_response(&refusal.error, &refusal.request_id, &refusal.attempts)
}

/// `{"error": {"message", "type", "param", "code"}}` with the table's status, the request
/// id, `retry-after` when the provider gave one, and the attempts made (`attempts` as
/// `x-switchyard-attempts` lists them; empty when none).
pub fn error_response(error: &Error, request_id: &str, attempts: &str) -> Response {
    if let Error::Internal { detail } = error {
        tracing::error!(request_id, detail, "internal error");
    }
    let spec = error.spec();
    let body = json!({ "error": error.openai_fields(request_id) });
    let mut resp = (spec.status, axum::Json(body)).into_response();
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id)
        && !request_id.is_empty()
    {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    if let Some(after) = error.retry_after() {
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
