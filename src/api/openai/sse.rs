//! A committed stream as an OpenAI SSE body: `data: {chunk}` events, then `data: [DONE]`;
//! a failure after the first byte ends it with an error event in the OpenAI shape.

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use crate::{error::Error, pipeline::Delivered};

/// The response body for a committed stream.
pub(super) fn body(
    chunks: impl Stream<Item = Delivered> + Send + 'static,
    request_id: String,
) -> Body {
    let events = chunks.map(move |step| {
        Ok::<_, std::io::Error>(match step {
            Delivered::Chunk(chunk) => {
                data_event(&chunk).unwrap_or_else(|e| unserializable(&e, &request_id))
            }
            Delivered::Broken(error) => error_event(&error, &request_id),
            Delivered::Done => Bytes::from_static(b"data: [DONE]\n\n"),
        })
    });
    Body::from_stream(events)
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

    #[test]
    fn a_chunk_is_one_whole_data_event() {
        let event = data_event(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(&event[..], b"data: {\"a\":1}\n\n");
    }
}
