//! Sequential requests on one keep-alive connection: the fast stream, JSON answers, the
//! paced stream (time to first byte and to first content) and the 200-chunk burst.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    REQUEST_TIMEOUT, Settings,
    http::{Conn, Watch, chat_body, chat_request, post_chat},
    phases::pct,
    tally::Tally,
    target::{Target, TargetResult},
};

/// Words in the burst's prompt: the mock echoes them one chunk a word.
const BURST_WORDS: usize = 200;

/// Unmeasured requests first, on the same connection.
const WARM: usize = 10;

/// Sequential streams against a target: time to first byte and to the end.
pub(crate) async fn stream_phase(t: &Target, s: Settings, r: &mut TargetResult) {
    let req = chat_request(t.fast, t.fast_model, true);
    let limit = Limit {
        max: s.stream_max,
        time: Duration::from_secs(3),
    };
    let mut got = sequential(t.fast, &req, limit, Kind::Stream(Watch::Nothing)).await;
    r.sent += got.tally.total();
    r.tally.merge(got.tally);
    got.ttfb.sort_unstable();
    got.whole.sort_unstable();
    r.ttfb_p50_ms = pct(&got.ttfb, 0.50) / 1000.0;
    r.ttfb_p99_ms = pct(&got.ttfb, 0.99) / 1000.0;
    r.ttfb_n = got.ttfb.len();
    r.stream_total_p50_ms = pct(&got.whole, 0.50) / 1000.0;
}

/// Sequential JSON requests on one keep-alive connection (as many as the stream phase,
/// 3 s at most): the whole answer's time, p50 and p99. No open-loop timer is involved,
/// so sub-millisecond answers (a cache hit) are measured as they are; against `direct`
/// it is the floor of the loopback and this generator.
pub(crate) async fn sequential_phase(t: &Target, s: Settings, r: &mut TargetResult) {
    let req = chat_request(t.fast, t.fast_model, false);
    let limit = Limit {
        max: s.stream_max,
        time: Duration::from_secs(3),
    };
    let mut got = sequential(t.fast, &req, limit, Kind::Json).await;
    r.sent += got.tally.total();
    r.tally.merge(got.tally);
    got.whole.sort_unstable();
    r.seq_p50_ms = pct(&got.whole, 0.50) / 1000.0;
    r.seq_p99_ms = pct(&got.whole, 0.99) / 1000.0;
}

/// Sequential streams from the paced mock (first content 50 ms after the role chunk, then
/// a chunk every 2 ms) for `LOAD_PACED_SECS`: time to the first body byte, to the first
/// content event and to the end.
pub(crate) async fn paced_phase(t: &Target, s: Settings, r: &mut TargetResult) {
    let req = chat_request(t.paced, t.paced_model, true);
    let limit = Limit {
        max: usize::MAX,
        time: Duration::from_secs(s.paced_secs),
    };
    let mut got = sequential(t.paced, &req, limit, Kind::Stream(Watch::FirstContent)).await;
    r.sent += got.tally.total();
    r.tally.merge(got.tally);
    for v in [&mut got.ttfb, &mut got.content, &mut got.whole] {
        v.sort_unstable();
    }
    r.paced.ttfb_p50_ms = pct(&got.ttfb, 0.50) / 1000.0;
    r.paced.ttfb_p99_ms = pct(&got.ttfb, 0.99) / 1000.0;
    r.paced.content_p50_ms = pct(&got.content, 0.50) / 1000.0;
    r.paced.total_p50_ms = pct(&got.whole, 0.50) / 1000.0;
    r.paced.n = got.ttfb.len();
}

/// Sequential streams of about 200 chunks sent with no delay, for `LOAD_BURST_SECS`: the
/// whole stream's time.
pub(crate) async fn burst_phase(t: &Target, s: Settings, r: &mut TargetResult) {
    let prompt = vec!["a"; BURST_WORDS].join(" ");
    let req = post_chat(t.fast, &chat_body(t.fast_model, &prompt, true), true);
    let limit = Limit {
        max: usize::MAX,
        time: Duration::from_secs(s.burst_secs),
    };
    let mut got = sequential(t.fast, &req, limit, Kind::Stream(Watch::Nothing)).await;
    r.sent += got.tally.total();
    r.tally.merge(got.tally);
    got.whole.sort_unstable();
    r.burst.total_p50_ms = pct(&got.whole, 0.50) / 1000.0;
    r.burst.chunks = got.events;
    r.burst.n = got.whole.len();
}

/// How many requests, for how long at most.
#[derive(Clone, Copy)]
struct Limit {
    max: usize,
    time: Duration,
}

/// What the requests ask for.
#[derive(Clone, Copy)]
enum Kind {
    Json,
    Stream(Watch),
}

/// Each measured 200's times from its send, in µs.
#[derive(Default)]
struct Samples {
    /// To the first body byte (answers with a body).
    ttfb: Vec<u32>,
    /// To the first content event (streams, when watched).
    content: Vec<u32>,
    /// To the last body byte.
    whole: Vec<u32>,
    /// SSE data events in the last well-formed stream.
    events: usize,
    tally: Tally,
}

fn micros(from: Instant, to: Instant) -> u32 {
    u32::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u32::MAX)
}

/// Requests one after another on one keep-alive connection (`WARM` unmeasured first).
async fn sequential(addr: SocketAddr, req: &Arc<[u8]>, limit: Limit, kind: Kind) -> Samples {
    let (stream, watch) = match kind {
        Kind::Json => (false, Watch::Nothing),
        Kind::Stream(w) => (true, w),
    };
    let mut got = Samples::default();
    let deadline = Instant::now() + limit.time;
    let mut conn: Option<Conn> = None;
    let mut body = Vec::with_capacity(8192);
    let mut i = 0;
    while i < limit.max.saturating_add(WARM) && Instant::now() < deadline {
        let mut c = match conn.take() {
            Some(c) => c,
            None => match Conn::open(addr).await {
                Ok(c) => c.watch(watch),
                Err(e) => {
                    got.tally.io_errors += 1;
                    got.tally.note(|| format!("connecting: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        let out = tokio::time::timeout(REQUEST_TIMEOUT, c.exchange(req, &mut body)).await;
        if let Some(reply) = got.tally.record(out, &body, stream, true) {
            if reply.status == 200 && i >= WARM {
                got.ttfb.extend(reply.first_byte.map(|fb| micros(sent, fb)));
                got.content
                    .extend(reply.first_content.map(|fc| micros(sent, fc)));
                got.whole.push(micros(sent, reply.last_byte));
                if stream {
                    got.events = data_events(&body);
                }
            }
            if reply.keep_alive {
                conn = Some(c);
            }
        }
        i += 1;
    }
    got
}

/// SSE `data:` events in a body, `[DONE]` excluded.
fn data_events(body: &[u8]) -> usize {
    body.windows(7).filter(|w| w == b"data: {").count()
}
