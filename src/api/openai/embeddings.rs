//! `POST /v1/embeddings`: a codec around the pipeline — the body in under the same size
//! limit and deadline as chat, the OpenAI embeddings list out (floats or base64), errors
//! in the OpenAI shape.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{
    chat::{head_headers, read_body},
    errors::refusal_response,
};
use crate::{
    api::REQUEST_ID_HEADER,
    auth::signed::BodyDigest,
    embeddings::wire,
    gateway::Gateway,
    network::{self, ClientAddr},
    pipeline::EmbedAnswer,
    telemetry::Surface,
};

pub(super) async fn embeddings(
    State(gw): State<Arc<Gateway>>,
    client: ClientAddr,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let sent_id = headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok());
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let caller = network::caller_headers(&headers, client).with_target("POST", target);
    let mut call = match gw.ingress(Surface::Rest, sent_id, caller).await {
        Ok(call) => call,
        Err(refusal) => return refusal_response(&refusal),
    };
    call.for_embeddings();
    let server = &call.live().config.server;
    let bytes = match read_body(&headers, body, server.max_body_bytes, server.body_timeout).await {
        Ok(b) => b,
        Err(e) => return refusal_response(&call.refuse(e)),
    };
    if call.awaits_signature()
        && let Err(e) = call.verify_body(&BodyDigest::of(&bytes)).await
    {
        return refusal_response(&call.refuse(e));
    }
    let request = match wire::parse_request(&bytes) {
        Ok(r) => r,
        Err(e) => return refusal_response(&call.refuse(e)),
    };
    match gw.serve_embeddings(call, request).await {
        EmbedAnswer::Complete(done) => {
            let body = wire::encode_response(&done.response, done.encoding);
            let mut resp = (StatusCode::OK, Body::from(body)).into_response();
            let h = resp.headers_mut();
            head_headers(h, &done.head);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        EmbedAnswer::Refused(refusal) => refusal_response(&refusal),
    }
}
