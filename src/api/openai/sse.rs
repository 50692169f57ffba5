//! A stream as an OpenAI SSE body: `data: {chunk}` events, then `data: [DONE]`; a failure
//! after the headers went out ends it with an error event in the OpenAI shape, and a
//! silence longer than `server.stream_keepalive_ms` is filled with an SSE comment.

use std::time::Duration;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use crate::{
    error::Error,
    pipeline::{Delivered, Trailer},
};

/// The comment sent after a silence: clients ignore it, idle timers along the way see
/// bytes.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// The response body for a stream; `keep_alive`: the silence after which a comment is
/// sent.
pub(super) fn body(
    chunks: impl Stream<Item = Delivered> + Send + 'static,
    request_id: String,
    keep_alive: Option<Duration>,
) -> Body {
    let events = with_keep_alive(chunks, keep_alive).map(move |step| {
        Ok::<_, std::io::Error>(match step {
            None => Bytes::from_static(KEEP_ALIVE),
            Some(Delivered::Chunk(chunk)) => {
                data_event(&chunk).unwrap_or_else(|e| unserializable(&e, &request_id))
            }
            Some(Delivered::Broken(error, trailer)) => {
                with_trailer(&trailer, error_event(&error, &request_id))
            }
            Some(Delivered::Done(trailer)) => {
                with_trailer(&trailer, Bytes::from_static(b"data: [DONE]\n\n"))
            }
        })
    });
    Body::from_stream(events)
}

/// The last event, after SSE comments saying what the headers could not: the provider
/// that served and every attempt (`: x-switchyard-provider: …`,
/// `: x-switchyard-attempts: …`). Clients ignore comments; a person or a test reading the
/// raw stream sees how it ended.
pub(crate) fn with_trailer(trailer: &Trailer, last: Bytes) -> Bytes {
    if trailer.provider.is_none() && trailer.attempts.is_empty() {
        return last;
    }
    // Names come from the config; a line break would end the comment early.
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let mut out = BytesMut::with_capacity(last.len() + 96 + trailer.attempts.len());
    if let Some(p) = &trailer.provider {
        out.extend_from_slice(b": x-switchyard-provider: ");
        out.extend_from_slice(clean(p).as_bytes());
        out.extend_from_slice(b"\n");
    }
    if !trailer.attempts.is_empty() {
        out.extend_from_slice(b": x-switchyard-attempts: ");
        out.extend_from_slice(clean(&trailer.attempts).as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
    out.extend_from_slice(&last);
    out.freeze()
}

/// The steps of `chunks`, with a `None` after every `every` of silence.
pub(crate) fn with_keep_alive(
    chunks: impl Stream<Item = Delivered> + Send + 'static,
    every: Option<Duration>,
) -> impl Stream<Item = Option<Delivered>> + Send {
    let chunks = Box::pin(chunks);
    futures_util::stream::unfold(chunks, move |mut chunks| async move {
        let next = match every {
            Some(every) => match tokio::time::timeout(every, chunks.next()).await {
                Ok(next) => next.map(Some),
                Err(_) => Some(None),
            },
            None => chunks.next().await.map(Some),
        };
        next.map(|step| (step, chunks))
    })
}

/// One `data:` event, or why the value could not be written: never a truncated event.
fn data_event<T: Serialize>(value: &T) -> Result<Bytes, serde_json::Error> {
    let mut buf = BytesMut::with_capacity(512).writer();
    buf.get_mut().extend_from_slice(b"data: ");
    serde_json::to_writer(&mut buf, value)?;
    buf.get_mut().extend_from_slice(b"\n\n");
    Ok(buf.into_inner().freeze())
}

/// The OpenAI-shaped error event that ends a stream.
fn error_event(error: &Error, request_id: &str) -> Bytes {
    let body = serde_json::json!({ "error": error.openai_fields(request_id) });
    // A `Value` of strings always serializes; the fallback is a fixed, valid event.
    data_event(&body).unwrap_or_else(|_| {
        Bytes::from_static(
            b"data: {\"error\":{\"message\":\"internal error\",\"type\":\"api_error\",\"param\":null,\"code\":null}}\n\n",
        )
    })
}

/// A chunk that cannot be serialized (a float that is not finite, say) becomes the
/// stream's error event in place of a half-written one.
fn unserializable(e: &serde_json::Error, request_id: &str) -> Bytes {
    let error = Error::Internal {
        detail: format!("serializing a stream chunk: {e}"),
    };
    tracing::error!(request_id, %e, "a stream chunk could not be serialized");
    error_event(&error, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes as an error, like a map with a non-string key would.
    struct Unserializable;

    impl Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("cannot serialize this"))
        }
    }

    #[test]
    fn a_value_that_fails_to_serialize_is_an_error_not_a_truncated_event() {
        assert!(data_event(&Unserializable).is_err());
        let event = unserializable(&data_event(&Unserializable).unwrap_err(), "req-1");
        let text = std::str::from_utf8(&event).unwrap();
        let json = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("req-1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silence_longer_than_the_keep_alive_is_filled_with_comments() {
        let every = Duration::from_secs(15);
        let slow = futures_util::stream::once(async move {
            // 40 s of silence: two comments, then the step.
            tokio::time::sleep(Duration::from_secs(40)).await;
            Delivered::Done(Trailer::default())
        });
        let steps: Vec<Option<Delivered>> = with_keep_alive(slow, Some(every)).collect().await;
        assert_eq!(steps.len(), 3);
        assert!(steps[0].is_none() && steps[1].is_none());
        assert!(matches!(steps[2], Some(Delivered::Done(_))));

        let off: Vec<Option<Delivered>> = with_keep_alive(
            futures_util::stream::once(async move {
                tokio::time::sleep(Duration::from_secs(40)).await;
                Delivered::Done(Trailer::default())
            }),
            None,
        )
        .collect()
        .await;
        assert!(matches!(off[..], [Some(Delivered::Done(_))]));
    }

    #[test]
    fn a_chunk_is_one_whole_data_event() {
        let event = data_event(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(&event[..], b"data: {\"a\":1}\n\n");
    }
}
