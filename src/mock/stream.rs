//! A simulated SSE answer with stream faults: a time to first token, delays, cuts, resets
//! and in-band errors, counted by event. The mock counts streams completed and cancelled (dropped early).

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

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
        // The opening event goes out at once with the headers; a model's time to first
        // token falls between it and the first content.
        let pause = match st.sent {
            0 => Duration::ZERO,
            1 if !f.first_token.is_zero() => f.first_token,
            _ => f.chunk_delay,
        };
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::{MockFormat, MockOptions, MockState, Stats};
    use arc_swap::ArcSwap;
    use http_body_util::BodyExt;
    use std::sync::atomic::AtomicU64;
    use tokio::{sync::Notify, time::Instant};

    fn answer(n: usize) -> SseAnswer {
        SseAnswer {
            events: (0..n)
                .map(|i| Bytes::from(format!("data: {i}\n\n")))
                .collect(),
            terminator: Some(Bytes::from_static(b"data: [DONE]\n\n")),
            error_event: Bytes::from_static(b"data: {\"error\": {}}\n\n"),
        }
    }

    /// Each frame of the body and when (since the start) it was ready.
    async fn frames(fault: &str) -> Vec<(String, Duration)> {
        let fault = Fault::parse(fault).unwrap();
        let state = Arc::new(MockState {
            options: MockOptions {
                fault: fault.clone(),
                name: "m".to_owned(),
                format: MockFormat::OpenAi,
            },
            fault: ArcSwap::from_pointee(fault.clone()),
            stats: Stats::default(),
            ids: AtomicU64::new(1),
            responses: Default::default(),
        });
        let conn = ConnReset(Arc::new(Notify::new()));
        let mut body = respond(state, conn, fault, answer(4)).into_body();
        let start = Instant::now();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            out.push((String::from_utf8_lossy(&data).into_owned(), start.elapsed()));
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn first_token_delays_the_event_after_the_opening_one_and_chunk_delay_the_rest() {
        let got = frames("first_token_ms=50,chunk_delay_ms=2").await;
        let at: Vec<u64> = got.iter().map(|(_, t)| t.as_millis() as u64).collect();
        // The opening event at once, the first content 50 ms later, then one every 2 ms
        // ([DONE] included).
        assert_eq!(at, [0, 50, 52, 54, 56]);
        assert_eq!(got[0].0, "data: 0\n\n");
        assert_eq!(got[4].0, "data: [DONE]\n\n");
    }

    #[tokio::test(start_paused = true)]
    async fn without_first_token_chunk_delay_paces_every_event_after_the_first() {
        let at: Vec<u64> = frames("chunk_delay_ms=3")
            .await
            .iter()
            .map(|(_, t)| t.as_millis() as u64)
            .collect();
        assert_eq!(at, [0, 3, 6, 9, 12]);
    }
}
