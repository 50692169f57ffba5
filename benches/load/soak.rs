//! The soak: a long open loop of JSON and streams, some clients hanging up mid-stream,
//! with the target's RSS sampled every 5 s and p99 taken per window.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use crate::{
    REQUEST_TIMEOUT,
    http::{Conn, Watch, chat_request},
    lock,
    phases::pct,
    procfs::rss_kib,
    tally::Tally,
    target::{Target, TargetResult},
};

/// Of every 20 requests, 14 are JSON (70%) and 6 streams (30%).
const JSON_OF_20: u64 = 14;
/// One stream client in 20 (5%) hangs up at its first content event.
const HANG_UP_EVERY: u64 = 20;
/// RSS is read this often.
const RSS_EVERY: Duration = Duration::from_secs(5);
/// p99 is taken per window of this length (shorter for short soaks: half the soak).
const WINDOW: Duration = Duration::from_secs(30);

/// How long and how hard.
#[derive(Clone, Copy)]
pub(crate) struct SoakPlan {
    pub(crate) secs: u64,
    pub(crate) rate: u64,
}

/// A soak's figures.
#[derive(Clone, Default)]
pub(crate) struct SoakFigures {
    pub(crate) secs: u64,
    pub(crate) rate: u64,
    /// VmRSS every `RSS_EVERY` from the start, the last at the end, MB.
    pub(crate) rss_mb: Vec<f64>,
    /// The sample taken when the warm-up ended (first 60 s, or 10% if shorter).
    pub(crate) rss_warm_mb: f64,
    pub(crate) rss_end_mb: f64,
    pub(crate) window_secs: u64,
    /// p99 per window by due time, ms: JSON answers and whole streams.
    pub(crate) json_p99_ms: Vec<f64>,
    pub(crate) stream_p99_ms: Vec<f64>,
    pub(crate) requests: u64,
    pub(crate) hung_up: u64,
    /// Non-200 answers, I/O errors, timeouts and malformed bodies (hang-ups excluded).
    pub(crate) errors: u64,
}

impl SoakFigures {
    /// Growth of RSS from the end of the warm-up to the end, MB.
    pub(crate) fn growth_mb(&self) -> f64 {
        self.rss_end_mb - self.rss_warm_mb
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Stream,
    HangUp,
}

impl Kind {
    /// The i-th request's kind: a fixed pattern, so every window holds the same mix.
    fn of(i: u64) -> Kind {
        let slot = i % 20;
        if slot < JSON_OF_20 {
            return Kind::Json;
        }
        let stream_no = i / 20 * (20 - JSON_OF_20) + (slot - JSON_OF_20);
        if stream_no.is_multiple_of(HANG_UP_EVERY) {
            Kind::HangUp
        } else {
            Kind::Stream
        }
    }
}

/// One finished request: its kind, its window, its latency if it was a measured 200.
struct Outcome {
    kind: Kind,
    window: usize,
    latency_us: Option<u32>,
    tally: Tally,
}

type Pool = Arc<Mutex<VecDeque<Conn>>>;

/// Runs the soak against a target's fast model (JSON) and paced model (streams).
pub(crate) async fn soak(t: &Target, plan: SoakPlan, r: &mut TargetResult) {
    let rate = plan.rate.max(1);
    let total = plan.secs * rate;
    let window = WINDOW.min(Duration::from_secs((plan.secs / 2).max(1)));
    let windows = plan.secs.div_ceil(window.as_secs()).max(1) as usize;
    let json_req = chat_request(t.fast, t.fast_model, false);
    let stream_req = chat_request(t.paced, t.paced_model, true);
    let json_pool: Pool = Arc::default();
    let stream_pool: Pool = Arc::default();
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();

    let pid = t.cpu_pid;
    let start = Instant::now() + Duration::from_millis(20);
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut at = start;
        loop {
            tokio::time::sleep_until(at.into()).await;
            samples.push(rss_kib(pid).unwrap_or(0) as f64 / 1024.0);
            at += RSS_EVERY;
            if at > start + Duration::from_secs(plan.secs) {
                return samples;
            }
        }
    });

    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let collector = tokio::spawn(async move {
        let mut json = vec![Vec::new(); windows];
        let mut streams = vec![Vec::new(); windows];
        let mut tally = Tally::default();
        let mut hung_up = 0;
        while let Some(o) = rx.recv().await {
            let w = o.window.min(windows - 1);
            match (o.kind, o.latency_us) {
                (Kind::Json, Some(us)) => json[w].push(us),
                (Kind::Stream, Some(us)) => streams[w].push(us),
                (Kind::HangUp, Some(_)) => hung_up += 1,
                _ => {}
            }
            tally.merge(o.tally);
        }
        (json, streams, tally, hung_up)
    });
    for i in 0..total {
        let due = start + interval * (i as u32);
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
        }
        let kind = Kind::of(i);
        let (addr, req, pool) = match kind {
            Kind::Json => (t.fast, json_req.clone(), json_pool.clone()),
            Kind::Stream | Kind::HangUp => (t.paced, stream_req.clone(), stream_pool.clone()),
        };
        let window = (due.saturating_duration_since(start).as_secs() / window.as_secs()) as usize;
        let tx = tx.clone();
        tokio::spawn(async move {
            let (latency_us, tally) = one(addr, &req, &pool, kind, due).await;
            let _ = tx.send(Outcome {
                kind,
                window,
                latency_us,
                tally,
            });
        });
    }
    drop(tx);
    let (json, streams, tally, hung_up) = collector.await.unwrap_or_default();
    let mut rss_mb = sampler.await.unwrap_or_default();
    rss_mb.push(rss_kib(pid).unwrap_or(0) as f64 / 1024.0);
    let warm_secs = 60.min(plan.secs / 10);
    let warm_idx = (warm_secs.div_ceil(RSS_EVERY.as_secs()) as usize).min(rss_mb.len() - 1);
    let p99s = |mut v: Vec<Vec<u32>>| -> Vec<f64> {
        v.iter_mut()
            .map(|w| {
                w.sort_unstable();
                pct(w, 0.99) / 1000.0
            })
            .collect()
    };
    let figures = SoakFigures {
        secs: plan.secs,
        rate,
        rss_warm_mb: rss_mb[warm_idx],
        rss_end_mb: rss_mb.last().copied().unwrap_or(f64::NAN),
        rss_mb,
        window_secs: window.as_secs(),
        json_p99_ms: p99s(json),
        stream_p99_ms: p99s(streams),
        requests: tally.total(),
        hung_up,
        errors: tally.problems(),
    };
    r.sent += tally.total();
    r.tally.merge(tally);
    r.soak = Some(figures);
}

/// One request of the soak; latency from its due time to its last byte (to the first
/// content for a client that hangs up).
async fn one(
    addr: SocketAddr,
    req: &Arc<[u8]>,
    pool: &Pool,
    kind: Kind,
    due: Instant,
) -> (Option<u32>, Tally) {
    let mut tally = Tally::default();
    let conn = lock(pool).pop_back();
    let conn = match conn {
        Some(c) => c,
        None => match Conn::open(addr).await {
            Ok(c) => c,
            Err(e) => {
                tally.io_errors += 1;
                tally.note(|| format!("connecting: {e}"));
                return (None, tally);
            }
        },
    };
    let mut conn = conn.watch(match kind {
        Kind::HangUp => Watch::HangUpAtFirstContent,
        Kind::Json | Kind::Stream => Watch::Nothing,
    });
    let mut body = Vec::with_capacity(2048);
    let out = tokio::time::timeout(REQUEST_TIMEOUT, conn.exchange(req, &mut body)).await;
    let done = Instant::now();
    let stream = kind != Kind::Json;
    let Some(reply) = tally.record(out, &body, stream, kind != Kind::HangUp) else {
        return (None, tally);
    };
    if kind == Kind::HangUp && !reply.hung_up {
        tally.bad_bodies += 1;
        tally.note(|| "a stream ended without content".to_owned());
    }
    let latency = (reply.status == 200).then(|| {
        u32::try_from(done.saturating_duration_since(due).as_micros()).unwrap_or(u32::MAX)
    });
    // A hung-up client's connection is dropped here, mid-stream.
    if reply.keep_alive {
        lock(pool).push_back(conn);
    }
    (latency, tally)
}
