//! Load benchmark: the simulated provider direct, nginx in front of it, and switchyard in
//! front of it, measured in one run (`cargo bench --bench load`), reported in one table.
//!
//! Layout (2 cores): the proxy under test (nginx or switchyard) is pinned to core 0; this
//! process (the load generator), `wrk` and the mocks are pinned to core 1, so the proxies'
//! figures compare. Three mocks run: `fast` (no delay) for saturation, streams and the
//! burst, `slow` (`--fault latency_ms=50`) for the fixed-rate runs, `paced`
//! (`first_token_ms=50,chunk_delay_ms=2`: the role chunk at once, the first content 50 ms
//! later, then a chunk every 2 ms) for the paced stream and the soak's streams. nginx
//! (Debian's package, one process: `master_process off`, keep-alive upstreams,
//! `proxy_buffering off`, one port per mock) and switchyard (a generated `switchyard.toml`
//! with one model per mock) each front all three.
//!
//! Phases, in order (those marked * run against `direct`, `nginx` and `switchyard` only):
//! - **saturation**: closed loop, `LOAD_CONNS` (32) keep-alive HTTP/1.1 connections, for
//!   `LOAD_SECS` (6) s in all: requests/s, and the target's CPU time (utime+stime from
//!   `/proc/PID/stat`, all threads) divided by the 200s it served;
//! - **wrk** *: Debian's `wrk -t2 -c64` (keep-alive, a Lua script posting the same chat
//!   completion as the generator) for `LOAD_WRK_SECS` (as `LOAD_SECS`) in all: requests/s
//!   as wrk reports them, the target's CPU per request wrk completed, its ratio to nginx's,
//!   and non-2xx answers and socket errors; skipped with a note when wrk is missing;
//! - **all cores**: one wrk run against a gateway and a fast mock started on every core,
//!   wrk on every core too: requests/s against the pinned one-core figure;
//! - **gRPC** (switchyard only): the `Chat` RPC in a closed loop, `LOAD_CONNS` calls in
//!   flight over 4 HTTP/2 connections, `LOAD_ROUNDS` slices of the saturation phase's
//!   length: the gateway's CPU per call against REST's from the generator's saturation;
//! - **stream**: up to `LOAD_STREAMS` (400) sequential `"stream": true` requests (3 s at
//!   most): time to the first body byte and what the proxy adds over direct, and time to
//!   the end of the stream;
//! - **sequential JSON**: up to `LOAD_STREAMS` sequential JSON requests on one
//!   connection (3 s at most), whole-answer time p50/p99: no open-loop timer, so a
//!   sub-millisecond cache hit is measured as it is (`direct` gives the floor);
//! - **paced stream** *: sequential streams from the paced mock for `LOAD_PACED_SECS` (6):
//!   time to the first body byte (TTFB), to the first `data:` event with non-empty content,
//!   and to the end; p50 and what each proxy adds over direct;
//! - **burst** *: sequential streams of about 200 chunks with no delay (a prompt of 200
//!   one-letter words, which the mock echoes a word a chunk) for `LOAD_BURST_SECS` (3):
//!   whole-stream p50, what a proxy adds in all and per chunk;
//! - **fixed rate**: open loop at `LOAD_RATE` (1,000) requests/s against the 50 ms upstream
//!   for `LOAD_FIXED_SECS` (9) s in all, latency taken from each request's *scheduled* send
//!   time (no coordinated omission): p50/p99 and what the proxy adds over direct;
//! - **low rate** *: open loop at 20 requests/s round-robin over 256 keep-alive connections
//!   (each used once before the clock starts) against the 50 ms upstream for
//!   `LOAD_LOW_SECS` (15) s in all: p50/p99 and what the proxy adds over direct;
//! - **peak RSS**: `VmHWM` from `/proc/PID/status` after all the above;
//! - **soak**: `switchyard` only, unless `LOAD_SOAK_TARGETS` (`direct,nginx`) adds others:
//!   `LOAD_SOAK_RATE` (2,000) requests/s open loop for `LOAD_SOAK_SECS` (600; 0 skips it),
//!   70% JSON from the fast mock, 30% streams from the paced one, one stream client in 20
//!   hanging up at its first content, nothing scraping `/metrics`. `VmRSS` every 5 s
//!   (printed on one line), RSS after the warm-up (the first 60 s, or 10% of a shorter
//!   soak) and at the end, errors (any non-200, I/O error or malformed body but the
//!   deliberate hang-ups), and JSON and stream p99 per 30 s window (half the soak when it
//!   is shorter than a minute).
//!
//! Saturation, wrk, fixed rate and low rate run in `LOAD_ROUNDS` (3) rounds in which the
//! targets take turns, each slice after its own warm-up (wrk's: the generator's
//! saturation just before), so that drift on the machine falls on all targets alike; the
//! per-round figures are printed too, to show the noise. CPU used on the machine by
//! processes not started here is measured and warned about. `LOAD_TARGETS=nginx,switchyard`
//! measures only those. `switchyard-cost` is the same gateway process routing the same ten
//! candidates with the cost-aware Lua policy instead of the static order: its CPU per
//! request against `switchyard`'s is the policy's cost.
//!
//! Issue 11's targets, judged MET / NOT MET at the end: CPU per request under wrk ≤ 2.5x
//! nginx's; added p50 at 20 req/s within 0.3 ms of nginx's; added p99 at 1,000 req/s
//! under 1 ms; paced-stream TTFB added ≤ 0.5 ms; peak RSS under 40 MB; soak RSS growth
//! under 5 MB with no error and no p99 drift.
//!
//! Issue 12's targets: `switchyard-limits` (model limits so high none refuses: every
//! request reserves and settles in process) against `switchyard` in the same process;
//! `switchyard-cache` (a second gateway with `[cache]` on: every request after the first
//! is a hit); and, when Debian's `redis-server` is installed, a third gateway on its own
//! Redis (pinned with the mocks) for `switchyard-redis-cache` and `switchyard-redis-limits`,
//! with the Redis round trips per request read from `INFO commandstats`.
//!
//! Issue 14's data controls: `switchyard-data`, the same config with every PII detector
//! on (with restore) and a content rule on prompts and answers; its CPU per request
//! against `switchyard`'s is what they cost a request without PII (reported; no target).
//!
//! Issue 14's caller authentication: `switchyard-signed`, the same config with a bearer
//! key and a signing key; its saturation rounds HMAC-sign every request (a unique body
//! each time, so none is a replay), the other phases send the bearer key. Its CPU per
//! request against `switchyard`'s is what signed requests cost (reported; no target).
//!
//! Issue 15's target: `switchyard-otlp`, a gateway with the same config plus
//! `[telemetry] otlp_endpoint` (sampling 1.0) exporting every request's spans to a loopback
//! collector in this process that accepts and discards them; its CPU per request against
//! `switchyard`'s is what tracing costs.
//!
//! Every non-200 answer, I/O error and malformed body is counted and printed: a benchmark
//! of error answers is worthless. switchyard runs with its default request log (`info`,
//! one JSON line per request on stdout), which this process reads from a pipe and discards;
//! set `LOAD_RUST_LOG` to run it with another `RUST_LOG`.
//!
//! Needs `taskset` (util-linux), nginx (`apt-get install nginx-light` or `nginx`) and `wrk`
//! (`apt-get install wrk`); without nginx its row is skipped, without wrk its phases.
//! Loopback only.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]
#![allow(
    clippy::disallowed_types,
    reason = "a benchmark times the wall clock; no paused tokio clock is involved"
)]

mod fleet;
mod grpc;
mod http;
#[allow(
    dead_code,
    reason = "shared with the failover bench, which alone reads captured headers"
)]
mod openloop;
mod phases;
mod processes;
mod procfs;
mod report;
mod soak;
mod streams;
mod tally;
mod target;
mod verdict;
mod wrk;

use std::{
    path::PathBuf,
    process::{Command, ExitCode, Stdio},
    sync::{Mutex, atomic::Ordering},
    time::Duration,
};

use fleet::{Fleet, Placement};
use phases::{FixedAcc, FixedLoad, SatAcc, Spread, fixed_round, pct, per_req, sat_round};
use processes::{Cores, TempDir, find_nginx, redis_command, stop_children_on_signal};
use procfs::{clock_ticks, peak_rss_kib};
use report::{Extras, print_header, print_report};
use soak::{SoakPlan, soak};
use streams::{burst_phase, paced_phase, sequential_phase, stream_phase};
use target::{Target, TargetResult, blank};
use wrk::{AllCores, AllCoresFigures, WrkAcc, WrkJob, find_wrk, write_script};

const SWITCHYARD: &str = env!("CARGO_BIN_EXE_switchyard");
const FAST_MODEL: &str = "fast-model";
const SLOW_MODEL: &str = "slow-model";
/// Routed to the paced mock: first content after 50 ms, then a chunk every 2 ms.
const PACED_MODEL: &str = "paced-model";
const PACED_FAULT: &str = "first_token_ms=50,chunk_delay_ms=2";
/// The same deployments as FAST_MODEL / SLOW_MODEL, ordered by the cost-aware Lua policy
/// instead of the static order, in the same gateway process.
const FAST_COST_MODEL: &str = "fast-model-cost";
const SLOW_COST_MODEL: &str = "slow-model-cost";
/// The same deployments in the static order, with model limits set so high that none
/// refuses: every request reserves and settles (in process in the main gateway; in Redis
/// in the `switchyard-redis` one).
const FAST_LIMITS_MODEL: &str = "fast-model-limits";
const SLOW_LIMITS_MODEL: &str = "slow-model-limits";
/// The response cache, on for every model but the limits ones.
const CACHE: &str = "[cache]\nttl_s = 3600\n";
/// Cache-hit p99 targets through the gateway (issue 12), in process and on Redis, ms.
const CACHE_HIT_P99_MS: f64 = 0.150;
const REDIS_CACHE_HIT_P99_MS: f64 = 1.0;
/// Most in-process limits may add to the CPU per request (issue 12).
const LIMITS_CPU_LIMIT: f64 = 0.05;
/// Most OTLP tracing (sampling 1.0) may add to the CPU per request (issue 15).
const OTLP_CPU_LIMIT: f64 = 0.10;
/// Most the cost-aware policy may add to the static order's CPU per request.
const POLICY_CPU_LIMIT: f64 = 0.10;
/// Deployments per model in the gateway's config (all on the same mock).
const DEPLOYMENTS: usize = 10;
/// The upstream delay of the fixed-rate runs.
const DELAY_MS: u64 = 50;
/// The low-rate run: requests per second, spread over this many keep-alive connections.
const LOW_RATE: u64 = 20;
const LOW_CONNS: usize = 256;
/// One request may take this long before it counts as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The targets every phase runs against (issue 11); the other switchyard-* targets run
/// the generator's saturation, stream, sequential and fixed-rate phases only.
const COST_TARGETS: [&str; 3] = ["direct", "nginx", "switchyard"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load bench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, String>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Run settings, from the environment where set.
#[derive(Clone, Copy)]
struct Settings {
    secs: u64,
    wrk_secs: u64,
    fixed_secs: u64,
    low_secs: u64,
    paced_secs: u64,
    burst_secs: u64,
    rounds: u64,
    conns: usize,
    rate: u64,
    stream_max: usize,
    soak: SoakPlan,
    cores: usize,
    proxy_core: usize,
    load_core: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (proxy_core, load_core) = if cores >= 2 { (0, 1) } else { (0, 0) };
        let secs = env_num("LOAD_SECS", 6);
        Settings {
            secs,
            wrk_secs: env_num("LOAD_WRK_SECS", secs),
            fixed_secs: env_num("LOAD_FIXED_SECS", 9),
            low_secs: env_num("LOAD_LOW_SECS", 15),
            paced_secs: env_num("LOAD_PACED_SECS", 6),
            burst_secs: env_num("LOAD_BURST_SECS", 3),
            rounds: env_num("LOAD_ROUNDS", 3),
            conns: env_num("LOAD_CONNS", 32) as usize,
            rate: env_num("LOAD_RATE", 1000),
            stream_max: env_num("LOAD_STREAMS", 400) as usize,
            soak: SoakPlan {
                // 0 skips the soak, so this one may be 0.
                secs: std::env::var("LOAD_SOAK_SECS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(600),
                rate: env_num("LOAD_SOAK_RATE", 2000),
            },
            cores,
            proxy_core,
            load_core,
        }
    }

    /// Seconds per round of a phase that lasts `total` in all.
    fn slice(&self, total: u64) -> u64 {
        total.div_ceil(self.rounds).max(1)
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Names from a comma-separated environment variable.
fn env_names(name: &str) -> Option<Vec<String>> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}

/// Everything a phase needs besides its target.
struct Bench {
    settings: Settings,
    clk_tck: f64,
    ours: Vec<u32>,
    runtime: tokio::runtime::Runtime,
    wrk: Option<PathBuf>,
}

type Results<'a> = Vec<(&'a Target, TargetResult)>;

fn run() -> Res<()> {
    let settings = Settings::from_env();
    // Pin this process (every thread: there is only main so far) before the runtime starts.
    let pin = Command::new("taskset")
        .args(["-a", "-p", "-c", &settings.load_core.to_string()])
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("running taskset (util-linux): {e}"))?;
    if !pin.success() {
        return Err(format!(
            "taskset could not pin the bench to core {}",
            settings.load_core
        ));
    }
    let tmp = TempDir::new("load")?;
    stop_children_on_signal(tmp.path().to_owned());
    let nginx_bin = find_nginx();
    let log_env = std::env::var("LOAD_RUST_LOG").ok();
    let fleet = Fleet::start(
        &tmp,
        &Placement {
            proxy_core: settings.proxy_core,
            load_core: settings.load_core,
            nginx: nginx_bin.as_deref(),
            rust_log: log_env.as_deref(),
        },
    )?;
    let bench = Bench {
        settings,
        clk_tck: clock_ticks(),
        ours: fleet.ours(),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("building the runtime: {e}"))?,
        wrk: find_wrk(),
    };
    print_header(
        settings,
        nginx_bin.as_deref(),
        bench.wrk.as_deref(),
        log_env.as_deref(),
    );

    let targets = fleet.targets();
    let only = env_names("LOAD_TARGETS");
    let mut results: Results<'_> = targets
        .iter()
        .filter(|t| only.as_ref().is_none_or(|o| o.iter().any(|n| n == t.name)))
        .map(|t| (t, blank(t.name)))
        .collect();

    saturation(&bench, &fleet, &mut results)?;
    let mut extras = Extras::default();
    if let Some(wrk) = &bench.wrk {
        wrk_saturation(&bench, wrk, &tmp, &mut results)?;
        fleet.check_all()?;
        if results.iter().any(|(t, _)| t.name == "switchyard") && settings.cores >= 2 {
            eprintln!("load bench: wrk on all cores ...");
            let script = write_script(tmp.path(), FAST_MODEL)?;
            extras.all_cores = Some(all_cores(&bench, &fleet, &tmp, wrk, &script, &log_env)?);
        }
    }
    eprintln!("load bench: streams, sequential JSON, paced streams, bursts ...");
    for (t, r) in results.iter_mut() {
        bench.runtime.block_on(stream_phase(t, settings, r));
        bench.runtime.block_on(sequential_phase(t, settings, r));
        if COST_TARGETS.contains(&t.name) {
            bench.runtime.block_on(paced_phase(t, settings, r));
            bench.runtime.block_on(burst_phase(t, settings, r));
        }
    }
    fleet.check_all()?;
    if results.iter().any(|(t, _)| t.name == "switchyard") {
        extras.grpc = grpc_saturation(&bench, &fleet)?;
        fleet.check_all()?;
    }
    fixed_rate(&bench, &mut results)?;
    low_rate(&bench, &mut results)?;
    fleet.check_all()?;
    // Peak RSS before the soak: the figure is the saturation phases'.
    for (t, r) in results.iter_mut() {
        let mut rss_kib = 0;
        for &pid in &t.pids {
            rss_kib = rss_kib.max(peak_rss_kib(pid)?);
        }
        r.rss_mb = rss_kib as f64 / 1024.0;
    }
    soak_phase(&bench, &mut results);
    fleet.check_all()?;

    let results: Vec<TargetResult> = results.into_iter().map(|(_, r)| r).collect();
    print_report(&results, settings, &extras);
    print_gateway_notes(&fleet, &results);
    Ok(())
}

/// The generator's closed-loop saturation, targets taking turns in short rounds, so that
/// drift on the machine falls on all of them alike; figures are over all rounds.
fn saturation(bench: &Bench, fleet: &Fleet, results: &mut Results<'_>) -> Res<()> {
    let s = bench.settings;
    let mut accs: Vec<SatAcc> = results.iter().map(|_| SatAcc::default()).collect();
    for round in 0..s.rounds {
        eprintln!(
            "load bench: saturation, round {} of {} ...",
            round + 1,
            s.rounds
        );
        for ((t, r), acc) in results.iter_mut().zip(accs.iter_mut()) {
            let slice = s.slice(s.secs);
            bench
                .runtime
                .block_on(sat_round(t, s, slice, &bench.ours, bench.clk_tck, acc, r))?;
            fleet.check_all()?;
        }
    }
    Ok(())
}

/// wrk against `direct`, `nginx` and `switchyard` in the same rounds scheme (the
/// generator's saturation ran just before, so every target is warm).
fn wrk_saturation(
    bench: &Bench,
    wrk: &std::path::Path,
    tmp: &TempDir,
    results: &mut Results<'_>,
) -> Res<()> {
    let s = bench.settings;
    let mut accs: Vec<WrkAcc> = results.iter().map(|_| WrkAcc::default()).collect();
    for round in 0..s.rounds {
        eprintln!("load bench: wrk, round {} of {} ...", round + 1, s.rounds);
        for ((t, r), acc) in results.iter_mut().zip(accs.iter_mut()) {
            if !COST_TARGETS.contains(&t.name) {
                continue;
            }
            let script = write_script(tmp.path(), t.fast_model)?;
            let job = WrkJob {
                wrk,
                script: &script,
                addr: t.fast,
                cores: Cores::from(s.load_core),
                secs: s.slice(s.wrk_secs),
            };
            wrk::round(t, &job, bench.clk_tck, acc, r)?;
        }
    }
    Ok(())
}

/// The gRPC `Chat` path at saturation against the main gateway, `LOAD_CONNS` calls in
/// flight over a few HTTP/2 connections, in `LOAD_ROUNDS` rounds of the generator
/// saturation's slice: the gateway's CPU per call, to set beside REST's.
fn grpc_saturation(bench: &Bench, fleet: &Fleet) -> Res<Option<grpc::GrpcFigures>> {
    let Some(addr) = fleet.gateway.grpc else {
        eprintln!("load bench: the gateway opened no gRPC listener; gRPC phase skipped");
        return Ok(None);
    };
    let s = bench.settings;
    let mut total = grpc::GrpcFigures::default();
    for round in 0..s.rounds {
        eprintln!("load bench: gRPC, round {} of {} ...", round + 1, s.rounds);
        let run = bench.runtime.block_on(grpc::saturation(
            addr,
            FAST_MODEL,
            fleet.gateway.pid(),
            s.slice(s.secs),
            s.conns,
            bench.clk_tck,
        ))?;
        total.add(&run);
    }
    Ok(Some(total))
}

/// wrk against a gateway started on all cores (with its own fast mock).
fn all_cores(
    bench: &Bench,
    fleet: &Fleet,
    tmp: &TempDir,
    wrk: &std::path::Path,
    script: &std::path::Path,
    log_env: &Option<String>,
) -> Res<AllCoresFigures> {
    let s = bench.settings;
    AllCores {
        tmp,
        upstreams: fleet.upstreams(),
        wrk,
        script,
        cores: s.cores,
        secs: s.slice(s.wrk_secs),
        rust_log: log_env.as_deref(),
        clk_tck: bench.clk_tck,
    }
    .run()
}

/// Fixed rate at `LOAD_RATE`, in turns; percentiles are over all rounds' samples. A first,
/// discarded round warms every target and both mocks' connection pools.
fn fixed_rate(bench: &Bench, results: &mut Results<'_>) -> Res<()> {
    let s = bench.settings;
    let load = FixedLoad {
        rate: s.rate,
        spread: Spread::AsNeeded,
    };
    eprintln!("load bench: fixed rate, warm-up round ...");
    for (t, r) in results.iter_mut() {
        let mut discard = FixedAcc::default();
        bench
            .runtime
            .block_on(fixed_round(t, load, 1, &bench.ours, &mut discard, r))?;
    }
    let slice = s.slice(s.fixed_secs);
    let mut accs: Vec<FixedAcc> = results.iter().map(|_| FixedAcc::default()).collect();
    for round in 0..s.rounds {
        eprintln!(
            "load bench: fixed rate, round {} of {} ...",
            round + 1,
            s.rounds
        );
        for ((t, r), acc) in results.iter_mut().zip(accs.iter_mut()) {
            bench
                .runtime
                .block_on(fixed_round(t, load, slice, &bench.ours, acc, r))?;
        }
    }
    let direct_rounds: Option<Vec<f64>> = results
        .iter()
        .zip(&accs)
        .find(|((t, _), _)| t.name == "direct")
        .map(|(_, a)| a.round_p99_ms.clone());
    for ((_, r), acc) in results.iter_mut().zip(accs.iter_mut()) {
        acc.latencies_us.sort_unstable();
        let lat = &acc.latencies_us;
        r.fixed_p50_ms = pct(lat, 0.50) / 1000.0;
        r.fixed_p99_ms = pct(lat, 0.99) / 1000.0;
        r.fixed_max_ms = lat.last().map_or(f64::NAN, |&v| f64::from(v) / 1000.0);
        r.fixed_secs = (slice * s.rounds) as f64;
        r.fixed_achieved_rps = lat.len() as f64 / r.fixed_secs;
        r.fixed_cpu_us = per_req(acc.cpu_ticks as f64 / bench.clk_tck, acc.ok);
        r.fixed_round_p99 = acc.round_p99_ms.clone();
        r.fixed_other =
            acc.machine_ticks.saturating_sub(acc.ours_ticks) as f64 / bench.clk_tck / acc.secs;
        if let Some(d) = &direct_rounds {
            r.fixed_round_added_p99 = acc.round_p99_ms.iter().zip(d).map(|(a, b)| a - b).collect();
        }
    }
    Ok(())
}

/// `LOW_RATE` req/s round-robin over `LOW_CONNS` used keep-alive connections against the
/// 50 ms upstream, in turns, for `LOAD_LOW_SECS` in all.
fn low_rate(bench: &Bench, results: &mut Results<'_>) -> Res<()> {
    let s = bench.settings;
    let load = FixedLoad {
        rate: LOW_RATE,
        spread: Spread::Over(LOW_CONNS),
    };
    let slice = s.slice(s.low_secs);
    let mut accs: Vec<FixedAcc> = results.iter().map(|_| FixedAcc::default()).collect();
    for round in 0..s.rounds {
        eprintln!(
            "load bench: {LOW_RATE} req/s over {LOW_CONNS} connections, round {} of {} ...",
            round + 1,
            s.rounds
        );
        for ((t, r), acc) in results.iter_mut().zip(accs.iter_mut()) {
            if COST_TARGETS.contains(&t.name) {
                bench
                    .runtime
                    .block_on(fixed_round(t, load, slice, &bench.ours, acc, r))?;
            }
        }
    }
    for ((_, r), acc) in results.iter_mut().zip(accs.iter_mut()) {
        acc.latencies_us.sort_unstable();
        let lat = &acc.latencies_us;
        r.low.p50_ms = pct(lat, 0.50) / 1000.0;
        r.low.p99_ms = pct(lat, 0.99) / 1000.0;
        r.low.achieved_rps = lat.len() as f64 / (slice * s.rounds) as f64;
    }
    Ok(())
}

/// The soak, one target after another: `switchyard`, and those `LOAD_SOAK_TARGETS` adds.
fn soak_phase(bench: &Bench, results: &mut Results<'_>) {
    let plan = bench.settings.soak;
    if plan.secs == 0 {
        return;
    }
    let mut wanted = vec!["switchyard".to_owned()];
    wanted.extend(env_names("LOAD_SOAK_TARGETS").unwrap_or_default());
    for (t, r) in results.iter_mut() {
        if wanted.iter().any(|w| w == t.name) && COST_TARGETS.contains(&t.name) {
            eprintln!(
                "load bench: soak of {}, {} s at {} req/s ...",
                t.name, plan.secs, plan.rate
            );
            bench.runtime.block_on(soak(t, plan, r));
        }
    }
}

/// What the gateways say about themselves: request-log lines, Redis round trips.
fn print_gateway_notes(fleet: &Fleet, results: &[TargetResult]) {
    println!();
    println!(
        "switchyard request-log lines seen on stdout: {} (for {} requests sent to it, warm-ups \
         included)",
        fleet.gateway.lines.load(Ordering::Relaxed),
        // The switchyard targets but the Redis, cache and OTLP ones are the same process,
        // writing to the same stdout.
        results
            .iter()
            .filter(|r| {
                r.name.starts_with("switchyard")
                    && !r.name.starts_with("switchyard-redis")
                    && r.name != "switchyard-cache"
                    && r.name != "switchyard-otlp"
                    && r.name != "switchyard-data"
                    && r.name != "switchyard-signed"
            })
            .map(|r| r.sent)
            .sum::<u64>()
    );
    if let (Some(r), Some(t)) = (
        &fleet.redis,
        results.iter().find(|r| r.name == "switchyard-redis-limits"),
    ) {
        let info = redis_command(r.addr, "INFO commandstats").unwrap_or_default();
        let scripts = script_calls(&info);
        println!(
            "Redis round trips per request through switchyard-redis-limits: {:.2} ({scripts} \
             reserve and settle script calls for {} requests sent, warm-ups included)",
            scripts as f64 / t.sent.max(1) as f64,
            t.sent
        );
    }
}

/// The calls of `EVALSHA` and `EVAL` in Redis' `INFO commandstats`.
fn script_calls(info: &str) -> u64 {
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
