//! `POST /v1/chat/completions`: a codec around the pipeline — the body in under a size
//! limit and a deadline, one completion or an SSE stream out.

use std::{sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::{errors::refusal_response, sse};
use crate::{
    api::{ATTEMPTS_HEADER, PROVIDER_HEADER, REQUEST_ID_HEADER},
    auth::signed::BodyDigest,
    cache::CACHE_HEADER,
    chat::ChatRequest,
    error::Error,
    gateway::Gateway,
    network::{self, ClientAddr},
    pipeline::{Answer, Call, Head, Refusal},
    telemetry::Surface,
};

pub(super) async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    client: ClientAddr,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (call, bytes) =
        match admit_body(&gw, Surface::Rest, client, &uri, &headers, body, |_| Ok(())).await {
            Ok(admitted) => admitted,
            Err(refusal) => return refusal_response(&refusal),
        };
    let request = match parse_request(&bytes) {
        Ok(r) => r,
        Err(e) => return refusal_response(&call.refuse(e)),
    };
    match gw.serve(call, request).await {
        Answer::Complete(done) => match serde_json::to_vec(&done.response) {
            Ok(body) => {
                let mut resp = (StatusCode::OK, Body::from(body)).into_response();
                let h = resp.headers_mut();
                head_headers(h, &done.head);
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
            Err(e) => super::error_response(
                &Error::Internal {
                    detail: format!("serializing a response: {e}"),
                },
                &done.head.request_id,
                "",
            ),
        },
        Answer::Stream(open) => {
            let keep_alive = gw.live().config.server.stream_keepalive;
            let mut resp = Response::new(sse::body(
                open.chunks,
                open.head.request_id.clone(),
                keep_alive,
            ));
            let h = resp.headers_mut();
            head_headers(h, &open.head);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(ACCEL_BUFFERING, HeaderValue::from_static("no"));
            resp
        }
        Answer::Refused(refusal) => refusal_response(&refusal),
    }
}

/// The head's header names, parsed once (a name given as a `&str` is parsed per insert).
const REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);
const PROVIDER: HeaderName = HeaderName::from_static(PROVIDER_HEADER);
const ATTEMPTS: HeaderName = HeaderName::from_static(ATTEMPTS_HEADER);
const CACHE: HeaderName = HeaderName::from_static(CACHE_HEADER);
const ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

pub(crate) fn head_headers(h: &mut HeaderMap, head: &Head) {
    if let Ok(v) = HeaderValue::from_str(&head.request_id) {
        h.insert(REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&head.provider) {
        h.insert(PROVIDER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&head.attempts) {
        h.insert(ATTEMPTS, v);
    }
    head.rate_limits.write(h);
    h.insert(CACHE, HeaderValue::from_static(head.cache.as_str()));
}

/// The head every REST surface shares. The call is authenticated and counted in before a
/// byte of the body is read, so an anonymous flood of slow uploads is refused at its
/// headers (a signed request's headers are checked for form and freshness there). Then
/// `check` runs on the admitted call (a surface's own header rules), the body is read
/// under `server.max_body_bytes` and `server.body_timeout`, and a signed request's
/// signature is verified over it (only signed requests pay for hashing their body).
/// The call and its body, or the refusal that ended it.
pub(crate) async fn admit_body(
    gw: &Gateway,
    surface: Surface,
    client: ClientAddr,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: Body,
    check: impl FnOnce(&mut Call) -> Result<(), Error>,
) -> Result<(Call, Bytes), Refusal> {
    let sent_id = headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok());
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let caller = network::caller_headers(headers, client).with_target("POST", target);
    let mut call = gw.ingress(surface, sent_id, caller).await?;
    if let Err(e) = check(&mut call) {
        return Err(call.refuse(e));
    }
    let server = &call.live().config.server;
    let bytes = match read_body(headers, body, server.max_body_bytes, server.body_timeout).await {
        Ok(b) => b,
        Err(e) => return Err(call.refuse(e)),
    };
    if call.awaits_signature()
        && let Err(e) = call.verify_body(&BodyDigest::of(&bytes)).await
    {
        return Err(call.refuse(e));
    }
    Ok((call, bytes))
}

/// Reads the body within the size limit and the deadline.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, Error> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let read = Limited::new(body, limit).collect();
    let collected = tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| Error::BodyTimeout {
            timeout_ms: deadline.as_millis() as u64,
        })?;
    let bytes: Bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(Error::PayloadTooLarge { limit }),
        Err(e) => {
            return Err(Error::BadRequest {
                message: format!("could not read the request body: {e}"),
                param: None,
            });
        }
    };
    Ok(bytes)
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
