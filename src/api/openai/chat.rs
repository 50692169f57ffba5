//! `POST /v1/chat/completions`: body in, one completion or an SSE stream out.

use std::sync::Arc;

use axum::{
    body::{Body, Bytes},
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{errors::error_response, sse};
use crate::{
    api::{ATTEMPTS_HEADER, PROVIDER_HEADER, REQUEST_ID_HEADER, request_id},
    auth::CallerHeaders,
    chat::ChatRequest,
    error::Error,
    failover::{Attempts, Failed},
    gateway::Gateway,
    telemetry::{Outcome, RequestRecord, Surface},
};

pub(super) async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = request_id(&headers);
    let refused = |e: Error| {
        let record = RequestRecord::start(request_id.clone(), Surface::Rest, "", false);
        record.finish(Outcome::Error(e.spec().status.as_u16()));
        error_response(&e, &request_id, None)
    };
    // Shed before reading the body: a flood of uploads is refused without buffering them.
    let admitted = match gw.admit() {
        Ok(a) => a,
        Err(e) => return refused(e),
    };
    let limit = gw.live().config.server.max_body_bytes;
    let request = match read_request(&headers, body, limit).await {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    let mut record = RequestRecord::start(
        request_id.clone(),
        Surface::Rest,
        &request.model,
        request.is_stream(),
    );
    let caller = CallerHeaders::from_http(&headers);
    if request.is_stream() {
        match gw.chat_stream(&request, caller, admitted).await {
            Ok(served) => {
                record.served_by(&served.deployment);
                let head = served_headers(
                    &request_id,
                    &served.deployment.provider_name,
                    &served.attempts,
                );
                record.routed(&served.explain);
                record.attempts = served.attempts;
                let body = sse::body(served.value, record, request.wants_stream_usage());
                let mut resp = Response::new(body);
                *resp.headers_mut() = head;
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                h.insert("x-accel-buffering", HeaderValue::from_static("no"));
                resp
            }
            Err(failed) => failure(record, failed),
        }
    } else {
        match gw.chat(&request, caller, admitted).await {
            Ok(served) => {
                let head = served_headers(
                    &request_id,
                    &served.deployment.provider_name,
                    &served.attempts,
                );
                record.served_by(&served.deployment);
                record.routed(&served.explain);
                record.attempts = served.attempts;
                record.usage = served.value.usage.clone();
                let body = match serde_json::to_vec(&served.value) {
                    Ok(b) => b,
                    Err(e) => {
                        let err = Error::Internal {
                            detail: format!("serializing a response: {e}"),
                        };
                        record.finish(Outcome::Error(500));
                        return error_response(&err, &request_id, None);
                    }
                };
                record.first_byte();
                record.finish(Outcome::Ok);
                let mut resp = (StatusCode::OK, Body::from(body)).into_response();
                let mut h = head;
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp.headers_mut().extend(h);
                resp
            }
            Err(failed) => failure(record, failed),
        }
    }
}

fn failure(mut record: RequestRecord, failed: Failed) -> Response {
    let resp = error_response(&failed.error, &record.request_id, Some(&failed.attempts));
    if let Error::Upstream { provider, .. } = &failed.error {
        record.provider = Some(provider.clone());
    }
    record.routed(&failed.explain);
    record.attempts = failed.attempts;
    record.finish(Outcome::Error(resp.status().as_u16()));
    resp
}

fn served_headers(request_id: &str, provider: &str, attempts: &Attempts) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(provider) {
        h.insert(PROVIDER_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&attempts.header_value()) {
        h.insert(ATTEMPTS_HEADER, v);
    }
    h
}

/// Reads the body within the size limit and parses it.
async fn read_request(headers: &HeaderMap, body: Body, limit: usize) -> Result<ChatRequest, Error> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            Error::PayloadTooLarge { limit }
        } else {
            Error::BadRequest {
                message: format!("could not read the request body: {e}"),
                param: None,
            }
        }
    })?;
    parse_request(&bytes)
}

/// Parses a chat request, turning serde's complaint into a 400 a person can act on.
pub fn parse_request(bytes: &[u8]) -> Result<ChatRequest, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = if e.is_syntax() || e.is_eof() {
            format!("We could not parse the JSON body of your request: {e}")
        } else {
            format!("Invalid chat completion request: {e}")
        };
        Error::BadRequest {
            message,
            param: None,
        }
    })
}
