//! The open-loop generator: requests at a fixed rate, latency from each scheduled send time.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{REQUEST_TIMEOUT, http::Conn, lock, tally::Tally};

/// How to run one open-loop slice.
pub(crate) struct OpenLoop {
    /// Requests per second.
    pub(crate) rate: u64,
    /// Sent first and not measured (their answers are still tallied).
    pub(crate) warm: Duration,
    pub(crate) measured: Duration,
    /// Keep-alive connections opened before the first request (about rate × latency).
    pub(crate) prefill: usize,
    /// A response header to keep from every measured answer (see [`Fixed::captured`]).
    pub(crate) capture: Option<&'static str>,
    pub(crate) reuse: Reuse,
}

/// Which idle connection a request takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// The one that went idle last, so few connections stay busy (a new one when none is
    /// idle).
    MostRecent,
    /// Each in turn, so that traffic spreads over all `prefill` connections as many quiet
    /// clients' would; every connection first carries one unmeasured request, so that
    /// the measured ones all go over used keep-alive connections.
    RoundRobin,
}

pub(crate) struct Fixed {
    /// Measured 200 answers: microseconds from the due time to the last body byte.
    pub(crate) latencies_us: Vec<u32>,
    /// Measured answers of any status: the captured header's value ("" when absent); empty
    /// unless [`OpenLoop::capture`] names a header.
    pub(crate) captured: Vec<String>,
    pub(crate) tally: Tally,
}

/// Open loop: a request is due every 1/rate s whatever happened to the earlier ones; each
/// takes an idle keep-alive connection (or opens one). Latency counts from the due time.
pub(crate) async fn fixed_rate(addr: SocketAddr, req: Arc<[u8]>, plan: &OpenLoop) -> Fixed {
    let rate = plan.rate.max(1);
    let capture = plan.capture;
    let open = move || async move { Conn::open(addr).await.map(|c| apply(c, capture)) };
    let mut idle = VecDeque::with_capacity(plan.prefill);
    for _ in 0..plan.prefill {
        if let Ok(c) = open().await {
            idle.push_back(c);
        }
    }
    let mut out = Fixed {
        latencies_us: Vec::new(),
        captured: Vec::new(),
        tally: Tally::default(),
    };
    if plan.reuse == Reuse::RoundRobin {
        idle = prime(idle, &req, &mut out.tally).await;
    }
    let reuse = plan.reuse;
    let pool: Arc<Mutex<VecDeque<Conn>>> = Arc::new(Mutex::new(idle));
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let warm_n = (plan.warm.as_secs_f64() * rate as f64) as u64;
    let measured_n = (plan.measured.as_secs_f64() * rate as f64) as u64;
    let total = warm_n + measured_n;
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval * (i as u32);
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
        }
        let pool = pool.clone();
        let req = req.clone();
        let measured = i >= warm_n;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let conn = match reuse {
                Reuse::MostRecent => lock(&pool).pop_back(),
                Reuse::RoundRobin => lock(&pool).pop_front(),
            };
            let conn = match conn {
                Some(c) => Ok(c),
                None => open().await,
            };
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    tally.io_errors += 1;
                    tally.note(|| format!("connecting: {e}"));
                    return (measured, None, None, tally);
                }
            };
            let mut body = Vec::with_capacity(2048);
            let out = tokio::time::timeout(REQUEST_TIMEOUT, conn.exchange(&req, &mut body)).await;
            let done = Instant::now();
            let reply = tally.record(out, &body, false, true);
            let mut latency = None;
            let mut captured = None;
            if let Some(reply) = reply {
                if reply.status == 200 {
                    let us = done.saturating_duration_since(due).as_micros();
                    latency = Some(u32::try_from(us).unwrap_or(u32::MAX));
                }
                if capture.is_some() {
                    captured = Some(reply.captured.unwrap_or_default());
                }
                if reply.keep_alive {
                    lock(&pool).push_back(conn);
                }
            }
            (measured, latency, captured, tally)
        }));
    }
    out.latencies_us.reserve(measured_n as usize);
    for t in tasks {
        match t.await {
            Ok((measured, latency, captured, tally)) => {
                if measured {
                    out.latencies_us.extend(latency);
                    out.captured.extend(captured);
                }
                out.tally.merge(tally);
            }
            Err(e) => {
                out.tally.io_errors += 1;
                out.tally.note(|| format!("load task failed: {e}"));
            }
        }
    }
    out
}

/// One request on each connection, all at once; returns those still open.
async fn prime(idle: VecDeque<Conn>, req: &Arc<[u8]>, tally: &mut Tally) -> VecDeque<Conn> {
    let tasks: Vec<_> = idle
        .into_iter()
        .map(|mut conn| {
            let req = req.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut body = Vec::with_capacity(2048);
                let out =
                    tokio::time::timeout(REQUEST_TIMEOUT, conn.exchange(&req, &mut body)).await;
                let kept = tally
                    .record(out, &body, false, true)
                    .is_some_and(|r| r.keep_alive);
                (kept.then_some(conn), tally)
            })
        })
        .collect();
    let mut back = VecDeque::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok((conn, t)) => {
                back.extend(conn);
                tally.merge(t);
            }
            Err(e) => {
                tally.io_errors += 1;
                tally.note(|| format!("priming task failed: {e}"));
            }
        }
    }
    back
}

fn apply(conn: Conn, capture: Option<&'static str>) -> Conn {
    match capture {
        Some(name) => conn.capture(name),
        None => conn,
    }
}
