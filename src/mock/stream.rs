//! A simulated SSE answer with stream faults: delays, cuts, resets and in-band errors,
//! counted by event. The mock counts streams completed and cancelled (dropped early).

use std::sync::{Arc, atomic::Ordering};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, header};

use super::{ConnReset, Fault, MockState};

/// One wire format's stream: its events, what ends it, and its fault renderings.
pub(super) struct SseAnswer {
    /// Each a complete SSE event (`event: ...\ndata: ...\n\n`).
    pub events: Vec<Bytes>,
    /// Sent after the events (OpenAI's `data: [DONE]`); `None` when the last event is the
    /// terminator (Anthropic's `message_stop`).
    pub terminator: Option<Bytes>,
    /// The format's in-band error event.
    pub error_event: Bytes,
}

/// Marks a stream cancelled if it is dropped before it ends.
struct StreamGuard {
    state: Arc<MockState>,
    finished: bool,
}

impl StreamGuard {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let s = &self.state.stats;
        if self.finished {
            s.streams_completed.fetch_add(1, Ordering::Relaxed);
        } else {
            s.streams_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Streams `answer`, misbehaving as `fault` says.
pub(super) fn respond(
    state: Arc<MockState>,
    conn: ConnReset,
    fault: Fault,
    answer: SseAnswer,
) -> Response {
    struct St {
        events: std::vec::IntoIter<Bytes>,
        terminator: Option<Bytes>,
        error_event: Bytes,
        sent: usize,
        guard: StreamGuard,
        conn: ConnReset,
        fault: Fault,
        ended: bool,
    }
    let st = St {
        events: answer.events.into_iter(),
        terminator: answer.terminator,
        error_event: answer.error_event,
        sent: 0,
        guard: StreamGuard {
            state,
            finished: false,
        },
        conn,
        fault,
        ended: false,
    };
    let body = stream::unfold(st, |mut st| async move {
        if st.ended {
            return None;
        }
        let f = &st.fault;
        if st.sent > 0 && !f.chunk_delay.is_zero() {
            tokio::time::sleep(f.chunk_delay).await;
        }
        if f.reset_after_chunks == Some(st.sent) {
            st.conn.reset().await;
        }
        if f.cut_after_chunks == Some(st.sent) {
            st.guard.finish();
            return None;
        }
        if f.error_after_chunks == Some(st.sent) {
            st.ended = true;
            st.guard.finish();
            let event = st.error_event.clone();
            return Some((Ok::<_, std::io::Error>(event), st));
        }
        let bytes = match st.events.next() {
            Some(event) => {
                st.sent += 1;
                if f.malformed {
                    Bytes::from_static(b"data: {\"id\": \"broken\", \"choices\": [\n\n")
                } else {
                    event
                }
            }
            None => {
                st.ended = true;
                st.guard.finish();
                match st.terminator.take() {
                    Some(t) => t,
                    None => return None,
                }
            }
        };
        Some((Ok(bytes), st))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// An SSE event with a name.
pub(super) fn named(event: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// An SSE event with data only.
pub(super) fn data(data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}
