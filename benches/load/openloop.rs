//! The open-loop generator: requests at a fixed rate, latency from each scheduled send time.

use std::{
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
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..plan.prefill {
        if let Ok(c) = open().await {
            lock(&pool).push(c);
        }
    }
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
            let conn = lock(&pool).pop();
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
                    lock(&pool).push(conn);
                }
            }
            (measured, latency, captured, tally)
        }));
    }
    let mut out = Fixed {
        latencies_us: Vec::with_capacity(measured_n as usize),
        captured: Vec::new(),
        tally: Tally::default(),
    };
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

fn apply(conn: Conn, capture: Option<&'static str>) -> Conn {
    match capture {
        Some(name) => conn.capture(name),
        None => conn,
    }
}
