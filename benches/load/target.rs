//! A target under test and the figures measured against it.

use std::net::SocketAddr;

use crate::{soak::SoakFigures, tally::Tally, wrk::WrkFigures};

pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) fast: SocketAddr,
    pub(crate) slow: SocketAddr,
    pub(crate) fast_model: &'static str,
    pub(crate) slow_model: &'static str,
    /// The paced upstream (first content after 50 ms, then a chunk every 2 ms).
    pub(crate) paced: SocketAddr,
    pub(crate) paced_model: &'static str,
    /// Processes whose peak RSS is reported (the largest).
    pub(crate) pids: Vec<u32>,
    /// The process whose CPU time the saturation run charges.
    pub(crate) cpu_pid: u32,
    /// The process whose CPU time the fixed-rate run charges.
    pub(crate) slow_cpu_pid: u32,
    /// The generator's saturation signs every request ([`crate::http::signed_request`]);
    /// the other phases send the bearer key.
    pub(crate) signed: bool,
}

pub(crate) struct TargetResult {
    pub(crate) name: &'static str,
    pub(crate) sat_rps: f64,
    pub(crate) sat_cpu_us: f64,
    pub(crate) sat_util: f64,
    /// CPU µs per request in each saturation round.
    pub(crate) sat_round_cpu_us: Vec<f64>,
    pub(crate) proxy_core_busy: f64,
    pub(crate) load_core_busy: f64,
    /// Cores' worth of CPU used by other processes during saturation.
    pub(crate) foreign: f64,
    /// Cores' worth stolen by the hypervisor during saturation.
    pub(crate) steal: f64,
    pub(crate) fixed_p50_ms: f64,
    pub(crate) fixed_p99_ms: f64,
    pub(crate) fixed_max_ms: f64,
    pub(crate) fixed_cpu_us: f64,
    pub(crate) fixed_achieved_rps: f64,
    /// Cores' worth of CPU used by other processes (and stolen) during the fixed-rate rounds.
    pub(crate) fixed_other: f64,
    /// Measured seconds of fixed rate, all rounds.
    pub(crate) fixed_secs: f64,
    /// Per round: p99 (ms).
    pub(crate) fixed_round_p99: Vec<f64>,
    /// Per round: p99 added over direct's p99 in the same round (ms).
    pub(crate) fixed_round_added_p99: Vec<f64>,
    pub(crate) ttfb_p50_ms: f64,
    pub(crate) ttfb_p99_ms: f64,
    pub(crate) ttfb_n: usize,
    pub(crate) stream_total_p50_ms: f64,
    /// Sequential JSON answers, whole-answer time.
    pub(crate) seq_p50_ms: f64,
    pub(crate) seq_p99_ms: f64,
    pub(crate) rss_mb: f64,
    /// wrk's saturation, when wrk is installed.
    pub(crate) wrk: Option<WrkFigures>,
    /// Open loop at a low rate spread over many keep-alive connections.
    pub(crate) low: LowRate,
    pub(crate) paced: Paced,
    pub(crate) burst: Burst,
    /// The soak, when it ran against this target.
    pub(crate) soak: Option<SoakFigures>,
    pub(crate) tally: Tally,
    /// Requests sent, warm-ups included.
    pub(crate) sent: u64,
}

/// A blank result for a target, filled in phase by phase.
pub(crate) fn blank(name: &'static str) -> TargetResult {
    TargetResult {
        name,
        sat_rps: f64::NAN,
        sat_cpu_us: f64::NAN,
        sat_util: f64::NAN,
        sat_round_cpu_us: Vec::new(),
        proxy_core_busy: f64::NAN,
        load_core_busy: f64::NAN,
        foreign: f64::NAN,
        steal: f64::NAN,
        fixed_p50_ms: f64::NAN,
        fixed_p99_ms: f64::NAN,
        fixed_max_ms: f64::NAN,
        fixed_cpu_us: f64::NAN,
        fixed_achieved_rps: f64::NAN,
        fixed_secs: 0.0,
        fixed_other: f64::NAN,
        fixed_round_p99: Vec::new(),
        fixed_round_added_p99: Vec::new(),
        ttfb_p50_ms: f64::NAN,
        ttfb_p99_ms: f64::NAN,
        ttfb_n: 0,
        stream_total_p50_ms: f64::NAN,
        seq_p50_ms: f64::NAN,
        seq_p99_ms: f64::NAN,
        rss_mb: f64::NAN,
        wrk: None,
        low: LowRate::default(),
        paced: Paced::default(),
        burst: Burst::default(),
        soak: None,
        tally: Tally::default(),
        sent: 0,
    }
}

/// The low-rate open loop's figures, ms.
#[derive(Clone, Copy)]
pub(crate) struct LowRate {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) achieved_rps: f64,
}

impl Default for LowRate {
    fn default() -> LowRate {
        LowRate {
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            achieved_rps: f64::NAN,
        }
    }
}

/// The paced stream's figures, ms from the send.
#[derive(Clone, Copy)]
pub(crate) struct Paced {
    pub(crate) ttfb_p50_ms: f64,
    pub(crate) ttfb_p99_ms: f64,
    pub(crate) content_p50_ms: f64,
    pub(crate) total_p50_ms: f64,
    pub(crate) n: usize,
}

impl Default for Paced {
    fn default() -> Paced {
        Paced {
            ttfb_p50_ms: f64::NAN,
            ttfb_p99_ms: f64::NAN,
            content_p50_ms: f64::NAN,
            total_p50_ms: f64::NAN,
            n: 0,
        }
    }
}

/// The burst's figures: whole-stream time and its size.
#[derive(Clone, Copy)]
pub(crate) struct Burst {
    pub(crate) total_p50_ms: f64,
    /// SSE data events in a stream.
    pub(crate) chunks: usize,
    pub(crate) n: usize,
}

impl Default for Burst {
    fn default() -> Burst {
        Burst {
            total_p50_ms: f64::NAN,
            chunks: 0,
            n: 0,
        }
    }
}
