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
    chat::{admit_body, head_headers},
    errors::refusal_response,
};
use crate::{
    embeddings::wire, gateway::Gateway, network::ClientAddr, pipeline::EmbedAnswer,
    telemetry::Surface,
};

pub(super) async fn embeddings(
    State(gw): State<Arc<Gateway>>,
    client: ClientAddr,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let admitted = admit_body(&gw, Surface::Rest, client, &uri, &headers, body, |call| {
        call.for_embeddings();
        Ok(())
    })
    .await;
    let (call, bytes) = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal_response(&refusal),
    };
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
