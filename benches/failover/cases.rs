//! The cases under test, what their answers must show, and one measured slice of a case.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration, time::Instant};

use crate::{
    Res, Settings, WARM,
    circuits::Arming,
    http::chat_request,
    openloop::{OpenLoop, Reuse, fixed_rate},
    procfs::{all_busy, core_times, ticks_of},
    refused,
    tally::Tally,
};

/// The response header that lists a request's attempts.
pub(crate) const ATTEMPTS_HEADER: &str = "x-switchyard-attempts";

/// One model on one gateway.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) gateway: &'static str,
    pub(crate) addr: SocketAddr,
    pub(crate) model: &'static str,
    pub(crate) expect: Expect,
    /// The case this one's latency is compared with: `healthy` on the same gateway.
    pub(crate) baseline: Option<usize>,
    /// The deployment (`provider/model`) whose circuit must be open during the slices.
    pub(crate) opens: Option<&'static str>,
}

impl Case {
    pub(crate) fn new(
        name: &'static str,
        gateway: &'static str,
        addr: SocketAddr,
        model: &'static str,
        expect: Expect,
    ) -> Case {
        Case {
            name,
            gateway,
            addr,
            model,
            expect,
            baseline: None,
            opens: None,
        }
    }

    /// Compared with case number `baseline`.
    pub(crate) fn against(mut self, baseline: usize) -> Case {
        self.baseline = Some(baseline);
        self
    }

    /// Measured with the circuit of `deployment` open.
    pub(crate) fn opens(mut self, deployment: &'static str) -> Case {
        self.opens = Some(deployment);
        self
    }
}

/// What every answer's attempts must look like, as `provider=outcome` pairs (see
/// [`pattern`]).
pub(crate) enum Expect {
    /// Served by the one deployment: `good=ok`.
    Direct,
    /// The first deployment failed this way, then the second served.
    FailedOver(&'static str),
    /// The first deployment (this provider) was not tried: routing left it out (`good=ok`)
    /// or the loop skipped it (`PROVIDER=circuit_open, good=ok`).
    Skipped(&'static str),
}

impl Expect {
    pub(crate) fn matches(&self, pattern: &str) -> bool {
        match self {
            Expect::Direct => pattern == "good=ok",
            Expect::FailedOver(p) => pattern == *p,
            Expect::Skipped(first) => {
                pattern == "good=ok"
                    || pattern
                        .strip_prefix(first)
                        .is_some_and(|rest| rest == "=circuit_open, good=ok")
            }
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Expect::Direct => "good=ok".to_owned(),
            Expect::FailedOver(p) => (*p).to_owned(),
            Expect::Skipped(first) => format!("good=ok or {first}=circuit_open, good=ok"),
        }
    }
}

/// `primary/gpt-x=503, backup/gpt-x=ok` -> `primary=503, backup=ok`.
pub(crate) fn pattern(header: &str) -> String {
    if header.is_empty() {
        return "(no attempts header)".to_owned();
    }
    header
        .split(", ")
        .map(|a| match (a.split_once('/'), a.rsplit_once('=')) {
            (Some((provider, _)), Some((_, outcome))) => format!("{provider}={outcome}"),
            _ => a.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A case's figures, accumulated over the rounds.
#[derive(Default)]
pub(crate) struct CaseAcc {
    /// Measured 200s, all rounds: µs from the scheduled send time.
    pub(crate) latencies_us: Vec<u32>,
    pub(crate) round_p50_ms: Vec<f64>,
    pub(crate) round_p99_ms: Vec<f64>,
    /// Every answer, warm-ups and circuit opening included.
    pub(crate) tally: Tally,
    pub(crate) sent: u64,
    /// Measured answers by attempts pattern.
    pub(crate) patterns: BTreeMap<String, u64>,
    /// Measured wall seconds; all cores' busy + steal ticks, and ours, meanwhile.
    pub(crate) secs: f64,
    pub(crate) machine_ticks: u64,
    pub(crate) ours_ticks: u64,
    /// How the circuit was found and kept open before the slices (open cases).
    pub(crate) arming: Arming,
}

/// What a slice needs besides its case.
pub(crate) struct Ctx<'a> {
    /// Processes started here (and this one), for the interference check.
    pub(crate) ours: &'a [u32],
    pub(crate) dead: SocketAddr,
}

impl CaseAcc {
    /// Cores' worth of CPU used by processes not started here, or stolen, while measured.
    pub(crate) fn other_load(&self, clk_tck: f64) -> f64 {
        if self.secs == 0.0 {
            return f64::NAN;
        }
        self.machine_ticks.saturating_sub(self.ours_ticks) as f64 / clk_tck / self.secs
    }
}

/// One open-loop slice of a case: 0.5 s warm-up, then `secs` measured (kept when
/// `measured`, else only tallied).
pub(crate) async fn slice(
    case: &Case,
    s: &Settings,
    secs: Duration,
    measured: bool,
    ctx: &Ctx<'_>,
    acc: &mut CaseAcc,
) -> Res<()> {
    if !refused(ctx.dead) {
        return Err(format!(
            "{}: connecting to the dead address {} was not refused: something listens there",
            case.name, ctx.dead
        ));
    }
    let plan = OpenLoop {
        rate: s.rate,
        warm: WARM,
        measured: secs,
        // Enough for rate × (delay + a backoff) in flight, with room.
        prefill: ((s.rate * (s.delay_ms + 30) / 1000) as usize * 3 / 2).max(8),
        capture: Some(ATTEMPTS_HEADER),
        reuse: Reuse::MostRecent,
    };
    let req = chat_request(case.addr, case.model, false);
    let cores0 = core_times();
    let ours0 = ticks_of(ctx.ours);
    let t0 = Instant::now();
    let fixed = fixed_rate(case.addr, req, &plan).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let (busy, steal) = all_busy(&cores0, &core_times());
    let ours = ticks_of(ctx.ours).saturating_sub(ours0);
    acc.sent += fixed.tally.total();
    acc.tally.merge(fixed.tally);
    if !measured {
        return Ok(());
    }
    acc.secs += elapsed;
    acc.machine_ticks += busy + steal;
    acc.ours_ticks += ours;
    let mut lat = fixed.latencies_us;
    lat.sort_unstable();
    acc.round_p50_ms.push(pct(&lat, 0.50) / 1000.0);
    acc.round_p99_ms.push(pct(&lat, 0.99) / 1000.0);
    acc.latencies_us.extend(lat);
    for header in &fixed.captured {
        *acc.patterns.entry(pattern(header)).or_default() += 1;
    }
    Ok(())
}

/// Nearest-rank percentile of sorted samples, in their unit.
pub(crate) fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1])
}
