//! Anthropic's Messages API in: `POST /v1/messages` and `POST /v1/messages/count_tokens`,
//! a codec around the same pipeline as chat completions.
//!
//! The request path is chat's: [`Gateway::ingress`] (the key from `x-api-key` or
//! `Authorization: Bearer`), the body read under the size limit and deadline, a signed
//! request's signature checked, then [`decode`] into the canonical request with the body
//! kept as the native one, [`Gateway::serve`], and the answer written back in Messages
//! form: the provider's own bytes when the deployment spoke Messages ([`encode`] and
//! [`stream`] otherwise). `anthropic-version` is required, as Anthropic requires it;
//! it and `anthropic-beta` are forwarded to Anthropic deployments. Errors are in
//! Anthropic's shape ([`errors`]). Reference: `docs/inbound-anthropic.md`.

pub mod decode;
pub mod encode;
pub mod errors;
pub mod stream;

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{Method, Uri},
    response::{IntoResponse, Response},
    routing::post,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::{
    api::{PROVIDER_HEADER, REQUEST_ID_HEADER, openai::chat},
    chat::ChatRequest,
    error::Error,
    gateway::Gateway,
    network::ClientAddr,
    pipeline::{Answer, Call},
    telemetry::Surface,
};
use decode::Endpoint;
use errors::{error_response, refusal_response};

/// The response header saying where a token count came from: `provider`, `tiktoken` or
/// `estimate`.
pub const TOKEN_COUNT_HEADER: &str = "x-switchyard-token-count";

const VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// The Messages routes over a gateway.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gateway)
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let err = Error::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
        allow: "POST",
    };
    let mut resp = error_response(&err, "", "");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    resp
}

/// Ingress, the version header, the body and its signature, and the decoding: the call
/// and its request, or the response that ends it.
async fn admit(
    gw: &Gateway,
    client: ClientAddr,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Result<(Call, ChatRequest), Response> {
    // Anthropic refuses a request without the version header before reading its body.
    let version = |_: &mut Call| {
        if headers.contains_key(VERSION) {
            Ok(())
        } else {
            Err(Error::bad_param(
                "anthropic-version",
                "anthropic-version: header is required",
            ))
        }
    };
    let (call, bytes) =
        chat::admit_body(gw, Surface::Messages, client, uri, headers, body, version)
            .await
            .map_err(|r| refusal_response(&r))?;
    let mut request = match decode::decode(&bytes, headers, endpoint) {
        Ok(r) => r,
        Err(e) => return Err(refusal_response(&call.refuse(e))),
    };
    if data_controls_apply(&call) {
        // Redaction rewrites the prompt and restores the answer, and content rules read
        // the answer: both work on the canonical request and chunks, so the caller's own
        // bytes must not go anywhere, nor the provider's come back unread.
        request.native = None;
    }
    Ok((call, request))
}

/// Whether redaction or the answer's content rules apply to this caller.
fn data_controls_apply(call: &Call) -> bool {
    let data = &call.live().config.data;
    let key = call.caller().key.as_ref().map(|k| k.name.as_str());
    data.rules.response.is_some() || data.redaction(key, call.caller().level).is_some()
}

async fn messages(
    State(gw): State<Arc<Gateway>>,
    client: ClientAddr,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (call, request) = match admit(&gw, client, &uri, &headers, body, Endpoint::Create).await {
        Ok(admitted) => admitted,
        Err(resp) => return resp,
    };
    match gw.serve(call, request).await {
        Answer::Complete(done) => {
            let body = match done.response.native {
                Some(bytes) => Ok(bytes),
                None => encode::encode(&done.response).map(bytes::Bytes::from),
            };
            match body {
                Ok(body) => {
                    let mut resp = (StatusCode::OK, Body::from(body)).into_response();
                    let h = resp.headers_mut();
                    chat::head_headers(h, &done.head);
                    h.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    resp
                }
                Err(e) => error_response(
                    &Error::Internal {
                        detail: format!("serializing a Messages answer: {e}"),
                    },
                    &done.head.request_id,
                    "",
                ),
            }
        }
        Answer::Stream(open) => {
            let keep_alive = gw.live().config.server.stream_keepalive;
            let mut resp = Response::new(stream::body(
                open.chunks,
                open.head.request_id.clone(),
                keep_alive,
            ));
            let h = resp.headers_mut();
            chat::head_headers(h, &open.head);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            );
            resp
        }
        Answer::Refused(refusal) => refusal_response(&refusal),
    }
}

async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    client: ClientAddr,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (call, request) =
        match admit(&gw, client, &uri, &headers, body, Endpoint::CountTokens).await {
            Ok(admitted) => admitted,
            Err(resp) => return resp,
        };
    match gw.count_tokens(call, request).await {
        Ok(counted) => {
            let body = format!("{{\"input_tokens\":{}}}", counted.input_tokens);
            let mut resp = (StatusCode::OK, body).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(
                TOKEN_COUNT_HEADER,
                HeaderValue::from_static(counted.source.as_str()),
            );
            if let Ok(v) = HeaderValue::from_str(&counted.request_id) {
                h.insert(REQUEST_ID_HEADER, v);
            }
            if let Some(p) = counted.provider
                && let Ok(v) = HeaderValue::from_str(&p)
            {
                h.insert(PROVIDER_HEADER, v);
            }
            resp
        }
        Err(refusal) => refusal_response(&refusal),
    }
}
