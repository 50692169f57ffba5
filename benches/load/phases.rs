//! The generator's closed-loop saturation and the open-loop fixed-rate phases.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    DELAY_MS, REQUEST_TIMEOUT, Res, Settings,
    http::{Conn, chat_request, signed_request},
    openloop::{OpenLoop, Reuse, fixed_rate},
    procfs::{all_busy, core_times, cpu_ticks, ticks_of},
    tally::Tally,
    target::{Target, TargetResult},
};

/// Accumulated saturation figures of one target over the rounds.
#[derive(Default)]
pub(crate) struct SatAcc {
    ok: u64,
    secs: f64,
    target_ticks: u64,
    ours_ticks: u64,
    /// Busy and total ticks of the proxy's and the generator's core.
    proxy_core: (u64, u64),
    load_core: (u64, u64),
    all_busy: u64,
    steal: u64,
}

/// One saturation slice: `conns` connections in a closed loop, warm-up then `secs` measured.
pub(crate) async fn sat_round(
    t: &Target,
    s: Settings,
    secs: u64,
    ours: &[u32],
    clk_tck: f64,
    acc: &mut SatAcc,
    r: &mut TargetResult,
) -> Res<()> {
    let req = if t.signed {
        Requests::Signed {
            host: t.fast,
            model: t.fast_model,
        }
    } else {
        Requests::Same(chat_request(t.fast, t.fast_model, false))
    };
    let mut conns = Vec::with_capacity(s.conns);
    for _ in 0..s.conns {
        conns.push(
            Conn::open(t.fast)
                .await
                .map_err(|e| format!("{}: connecting to {}: {e}", t.name, t.fast))?,
        );
    }
    let (conns, warm) = closed_loop(conns, t.fast, &req, Duration::from_millis(500)).await;
    r.sent += warm.total();
    r.tally.merge(warm);
    let cpu0 = cpu_ticks(t.cpu_pid)?;
    let ours0 = ticks_of(ours);
    let cores0 = core_times();
    let t0 = Instant::now();
    let (conns, sat) = closed_loop(conns, t.fast, &req, Duration::from_secs(secs)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(t.cpu_pid)?;
    let ours1 = ticks_of(ours);
    let cores1 = core_times();
    drop(conns);
    let target = cpu1.saturating_sub(cpu0);
    r.sat_round_cpu_us
        .push(per_req(target as f64 / clk_tck, sat.ok));
    acc.ok += sat.ok;
    acc.secs += elapsed;
    acc.target_ticks += target;
    acc.ours_ticks += ours1.saturating_sub(ours0);
    let core = |i: usize| match (cores0.get(i), cores1.get(i)) {
        (Some(a), Some(b)) => (
            (b.busy + b.steal).saturating_sub(a.busy + a.steal),
            b.total.saturating_sub(a.total),
        ),
        _ => (0, 0),
    };
    let (pb, pt) = core(s.proxy_core);
    let (lb, lt) = core(s.load_core);
    acc.proxy_core = (acc.proxy_core.0 + pb, acc.proxy_core.1 + pt);
    acc.load_core = (acc.load_core.0 + lb, acc.load_core.1 + lt);
    let (busy, steal) = all_busy(&cores0, &cores1);
    acc.all_busy += busy;
    acc.steal += steal;
    r.sent += sat.total();
    r.tally.merge(sat);
    // Derived figures, over all rounds so far.
    let frac = |(b, t): (u64, u64)| {
        if t == 0 {
            f64::NAN
        } else {
            b as f64 / t as f64
        }
    };
    r.sat_rps = acc.ok as f64 / acc.secs;
    r.sat_cpu_us = per_req(acc.target_ticks as f64 / clk_tck, acc.ok);
    r.sat_util = acc.target_ticks as f64 / clk_tck / acc.secs;
    r.proxy_core_busy = frac(acc.proxy_core);
    r.load_core_busy = frac(acc.load_core);
    // What ran that was none of ours (a build, another benchmark), and what the host stole.
    r.foreign = acc.all_busy.saturating_sub(acc.ours_ticks) as f64 / clk_tck / acc.secs;
    r.steal = acc.steal as f64 / clk_tck / acc.secs;
    Ok(())
}

pub(crate) fn per_req(cpu_s: f64, n: u64) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        cpu_s * 1e6 / n as f64
    }
}

/// Accumulated fixed-rate figures of one target over the rounds.
#[derive(Default)]
pub(crate) struct FixedAcc {
    pub(crate) latencies_us: Vec<u32>,
    pub(crate) ok: u64,
    pub(crate) cpu_ticks: u64,
    pub(crate) round_p99_ms: Vec<f64>,
    /// For the interference check: wall seconds, all cores' busy + steal ticks, ours.
    pub(crate) secs: f64,
    pub(crate) machine_ticks: u64,
    pub(crate) ours_ticks: u64,
}

/// An open-loop load against a target's delayed upstream.
#[derive(Clone, Copy)]
pub(crate) struct FixedLoad {
    /// Requests per second.
    pub(crate) rate: u64,
    pub(crate) spread: Spread,
}

/// How the requests of a fixed-rate load use connections.
#[derive(Clone, Copy)]
pub(crate) enum Spread {
    /// As few as the load needs: an idle one if any, else a new one.
    AsNeeded,
    /// Round-robin over this many keep-alive connections, each used before the clock starts.
    Over(usize),
}

/// One fixed-rate slice against a target's delayed upstream; returns its p99 (ms).
pub(crate) async fn fixed_round(
    t: &Target,
    load: FixedLoad,
    secs: u64,
    ours: &[u32],
    acc: &mut FixedAcc,
    r: &mut TargetResult,
) -> Res<f64> {
    let req = chat_request(t.slow, t.slow_model, false);
    let cpu0 = cpu_ticks(t.slow_cpu_pid)?;
    let ours0 = ticks_of(ours);
    let cores0 = core_times();
    let t0 = Instant::now();
    let (prefill, reuse) = match load.spread {
        // Enough for rate × delay in flight, with room.
        Spread::AsNeeded => (
            ((load.rate * DELAY_MS / 1000) as usize * 3 / 2).max(8),
            Reuse::MostRecent,
        ),
        Spread::Over(n) => (n, Reuse::RoundRobin),
    };
    let plan = OpenLoop {
        rate: load.rate,
        warm: Duration::from_millis(500),
        measured: Duration::from_secs(secs),
        prefill,
        capture: None,
        reuse,
    };
    let fixed = fixed_rate(t.slow, req, &plan).await;
    acc.secs += t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(t.slow_cpu_pid)?;
    let (busy, steal) = all_busy(&cores0, &core_times());
    acc.machine_ticks += busy + steal;
    acc.ours_ticks += ticks_of(ours).saturating_sub(ours0);
    acc.cpu_ticks += cpu1.saturating_sub(cpu0);
    acc.ok += fixed.tally.ok;
    r.sent += fixed.tally.total();
    r.tally.merge(fixed.tally);
    let mut lat = fixed.latencies_us;
    lat.sort_unstable();
    let p99 = pct(&lat, 0.99) / 1000.0;
    acc.round_p99_ms.push(p99);
    acc.latencies_us.extend(lat);
    Ok(p99)
}

/// Nearest-rank percentile of sorted samples.
pub(crate) fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1])
}

/// Every connection loops request after request until `dur` has passed.
/// What a closed loop sends.
#[derive(Clone)]
enum Requests {
    /// The same request every time.
    Same(Arc<[u8]>),
    /// A request signed afresh each time (and unique, so never a replay).
    Signed {
        host: SocketAddr,
        model: &'static str,
    },
}

async fn closed_loop(
    conns: Vec<Conn>,
    addr: SocketAddr,
    req: &Requests,
    dur: Duration,
) -> (Vec<Conn>, Tally) {
    let deadline = Instant::now() + dur;
    let wanted = conns.len();
    let mut tasks = Vec::with_capacity(wanted);
    // Unique across slices and rounds: a signed request repeated inside the signature
    // window would be refused as a replay.
    static SLICE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let slice = SLICE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for (i, conn) in conns.into_iter().enumerate() {
        let req = req.clone();
        let caller = slice * 100_000 + i;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn = Some(conn);
            let mut body = Vec::with_capacity(4096);
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                let mut c = match conn.take() {
                    Some(c) => c,
                    None => match Conn::open(addr).await {
                        Ok(c) => c,
                        Err(e) => {
                            tally.io_errors += 1;
                            tally.note(|| format!("reconnecting: {e}"));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let signed;
                let bytes: &[u8] = match &req {
                    Requests::Same(same) => same,
                    Requests::Signed { host, model } => {
                        signed = signed_request(*host, model, caller, n);
                        &signed
                    }
                };
                let out = tokio::time::timeout(REQUEST_TIMEOUT, c.exchange(bytes, &mut body)).await;
                // Check the first body on each connection and every 64th after.
                let check = n.is_multiple_of(64);
                n += 1;
                if let Some(reply) = tally.record(out, &body, false, check)
                    && reply.keep_alive
                {
                    conn = Some(c);
                }
            }
            (conn, tally)
        }));
    }
    let mut tally = Tally::default();
    let mut back = Vec::new();
    for t in tasks {
        match t.await {
            Ok((conn, t)) => {
                tally.merge(t);
                back.extend(conn);
            }
            Err(e) => {
                tally.io_errors += 1;
                tally.note(|| format!("load task failed: {e}"));
            }
        }
    }
    // Connections lost along the way are replaced for the next phase.
    while back.len() < wanted {
        match Conn::open(addr).await {
            Ok(c) => back.push(c),
            Err(_) => break,
        }
    }
    (back, tally)
}
