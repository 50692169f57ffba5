//! Signed gRPC calls sign the encoded request message; tonic decodes the message before
//! the service runs, so this layer hashes it on the way in — only for calls that carry
//! `x-switchyard-signature`, so unsigned calls pass untouched — and hands the digest to
//! the service in the request's extensions.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use axum::{body::Body, extract::Request, response::Response};
use futures_util::future::{BoxFuture, Either};
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

/// The layer: buffers a signed call's body (one length-prefixed message for unary and
/// server-streaming methods), hashes the message, and passes the same bytes on. A tower
/// layer rather than `axum::middleware::from_fn`, so that an unsigned call (nearly every
/// one) goes straight to the service: no clone of it, no boxed future.
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestLayer;

impl<S> tower::Layer<S> for DigestLayer {
    type Service = Digest<S>;

    fn layer(&self, inner: S) -> Digest<S> {
        Digest { inner }
    }
}

/// [`DigestLayer`]'s service.
#[derive(Debug, Clone)]
pub struct Digest<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Digest<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if !request.headers().contains_key(SIGNATURE_HEADER) {
            return Either::Left(self.inner.call(request));
        }
        // The service that was made ready serves this call; a clone takes its place.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Either::Right(Box::pin(async move {
            match digest_body(request).await {
                Ok(request) => inner.call(request).await,
                Err(refused) => Ok(refused),
            }
        }))
    }
}

/// A signed call's request with its message's digest in the extensions, or the answer
/// that refuses it (too large, too slow).
async fn digest_body(request: Request) -> Result<Request, Response> {
    let (mut parts, body) = request.into_parts();
    let read = Limited::new(body, MAX_SIGNED_MESSAGE).collect();
    let bytes = match tokio::time::timeout(SIGNED_BODY_TIMEOUT, read).await {
        Ok(Ok(c)) => c.to_bytes(),
        Err(_) => {
            return Err(tonic::Status::deadline_exceeded(
                "a signed message must arrive whole within 10 s",
            )
            .into_http());
        }
        Ok(Err(_)) => {
            return Err(tonic::Status::resource_exhausted(
                "a signed message must be at most 4 MiB and arrive whole",
            )
            .into_http());
        }
    };
    if let Some(message) = message(&bytes) {
        parts.extensions.insert(SignedBody(BodyDigest::of(message)));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
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
