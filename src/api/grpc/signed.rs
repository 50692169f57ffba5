//! Signed gRPC calls sign the encoded request message; tonic decodes the message before
//! the service runs, so this layer hashes it on the way in — only for calls that carry
//! `x-switchyard-signature`, so unsigned calls pass untouched — and hands the digest to
//! the service in the request's extensions.

use axum::{body::Body, extract::Request, middleware::Next, response::Response};
use http_body_util::{BodyExt, Limited};

use crate::auth::signed::{BodyDigest, SIGNATURE_HEADER};

/// The largest message hashed: tonic's default decoding limit, plus the frame header.
const MAX_SIGNED_MESSAGE: usize = 4 * 1024 * 1024 + 5;
/// How long a signed call's message may take to arrive whole (this runs before the call
/// is counted in `server.max_in_flight`; the default `server.body_timeout_ms`).
const SIGNED_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The SHA-256 of a signed call's message, set by [`digest_body`].
#[derive(Debug, Clone, Copy)]
pub struct SignedBody(pub BodyDigest);

/// The middleware: buffers a signed call's body (one length-prefixed message for unary
/// and server-streaming methods), hashes the message, and passes the same bytes on.
pub async fn digest_body(request: Request, next: Next) -> Response {
    if !request.headers().contains_key(SIGNATURE_HEADER) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let read = Limited::new(body, MAX_SIGNED_MESSAGE).collect();
    let bytes = match tokio::time::timeout(SIGNED_BODY_TIMEOUT, read).await {
        Ok(Ok(c)) => c.to_bytes(),
        Err(_) => {
            return tonic::Status::deadline_exceeded(
                "a signed message must arrive whole within 10 s",
            )
            .into_http();
        }
        Ok(Err(_)) => {
            return tonic::Status::resource_exhausted(
                "a signed message must be at most 4 MiB and arrive whole",
            )
            .into_http();
        }
    };
    if let Some(message) = message(&bytes) {
        parts.extensions.insert(SignedBody(BodyDigest::of(message)));
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The one uncompressed message of a gRPC request body, if that is what it holds.
fn message(body: &[u8]) -> Option<&[u8]> {
    let (&flag, rest) = body.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let message = rest.get(4..)?;
    (flag == 0 && message.len() == len).then_some(message)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_uncompressed_frame_is_a_message() {
        assert_eq!(super::message(&[0, 0, 0, 0, 2, 7, 8]), Some(&[7u8, 8][..]));
        assert_eq!(super::message(&[0, 0, 0, 0, 0]), Some(&[][..]));
        assert_eq!(super::message(&[1, 0, 0, 0, 2, 7, 8]), None);
        assert_eq!(super::message(&[0, 0, 0, 0, 3, 7, 8]), None);
        assert_eq!(super::message(&[0, 0, 0, 0, 1, 7, 8]), None);
    }
}
