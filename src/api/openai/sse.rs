//! A committed stream as an OpenAI SSE body: `data: {chunk}` events, then `data: [DONE]`;
//! a failure after the first byte ends it with an error event in the OpenAI shape.

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Serialize;

use crate::{
    gateway::{Delivered, OpenStream},
    telemetry::RequestRecord,
};

/// The response body for a committed stream.
pub(super) fn body(open: OpenStream, record: RequestRecord, include_usage: bool) -> Body {
    let request_id = record.request_id.clone();
    let events = open.deliver(record, include_usage).map(move |step| {
        Ok::<_, std::io::Error>(match step {
            Delivered::Chunk(chunk) => data_event(&chunk),
            Delivered::Broken(error) => {
                data_event(&serde_json::json!({ "error": error.openai_fields(&request_id) }))
            }
            Delivered::Done => Bytes::from_static(b"data: [DONE]\n\n"),
        })
    });
    Body::from_stream(events)
}

fn data_event<T: Serialize>(value: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(512).writer();
    let _ = std::io::Write::write_all(&mut buf, b"data: ");
    let _ = serde_json::to_writer(&mut buf, value);
    let _ = std::io::Write::write_all(&mut buf, b"\n\n");
    buf.into_inner().freeze()
}
