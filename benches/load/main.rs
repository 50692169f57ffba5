//! Load benchmark: the simulated provider direct, nginx in front of it, and switchyard in
//! front of it, measured in one run (`cargo bench --bench load`).
//!
//! Layout (2 cores): the proxy under test (nginx or switchyard) is pinned to core 0; this
//! process (the load generator) and the mocks are pinned to core 1, so the proxies' figures
//! compare. Two mocks run: `fast` (no delay) for saturation and streams, `slow`
//! (`--fault latency_ms=50`) for the fixed-rate run. nginx (Debian's package, one
//! process: `master_process off`, keep-alive upstreams, `proxy_buffering off`) and
//! switchyard (a generated `switchyard.toml` with one model per mock) each front both.
//!
//! Per target it measures:
//! - **saturation**: closed loop, `LOAD_CONNS` (32) keep-alive HTTP/1.1 connections, for
//!   `LOAD_SECS` (6) s in all: requests/s, and the target's CPU time (utime+stime from
//!   `/proc/PID/stat`, all threads) divided by the 200s it served;
//! - **fixed rate**: open loop at `LOAD_RATE` (1,000) requests/s against the 50 ms upstream
//!   for `LOAD_FIXED_SECS` (9) s in all, latency taken from each request's *scheduled* send
//!   time (no coordinated omission): p50/p99 and what the proxy adds over direct;
//! - **stream**: up to `LOAD_STREAMS` (400) sequential `"stream": true` requests (3 s at
//!   most): time to the first body byte and what the proxy adds over direct, and time to
//!   the end of the stream;
//! - **sequential JSON**: up to `LOAD_STREAMS` sequential JSON requests on one
//!   connection (3 s at most), whole-answer time p50/p99: no open-loop timer, so a
//!   sub-millisecond cache hit is measured as it is (`direct` gives the floor);
//! - **peak RSS**: `VmHWM` from `/proc/PID/status` after all phases.
//!
//! Saturation and fixed rate run in `LOAD_ROUNDS` (3) rounds in which the targets take
//! turns, each slice after its own 0.5 s warm-up, so that drift on the machine falls on
//! all targets alike; the per-round figures are printed too, to show the noise. CPU used
//! on the machine by processes not started here is measured and warned about.
//! `LOAD_TARGETS=nginx,switchyard` measures only those. `switchyard-cost` is the same
//! gateway process routing the same ten candidates with the cost-aware Lua policy instead
//! of the static order: its CPU per request against `switchyard`'s is the policy's cost.
//!
//! Issue 12's targets: `switchyard-limits` (model limits so high none refuses: every
//! request reserves and settles in process) against `switchyard` in the same process;
//! `switchyard-cache` (a second gateway with `[cache]` on: every request after the first
//! is a hit); and, when Debian's `redis-server` is installed, a third gateway on its own
//! Redis (pinned with the mocks) for `switchyard-redis-cache` and `switchyard-redis-limits`,
//! with the Redis round trips per request read from `INFO commandstats`.
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
//! Needs `taskset` (util-linux) and nginx (`apt-get install nginx-light` or `nginx`);
//! without nginx its row is skipped. Loopback only.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]
#![allow(
    clippy::disallowed_types,
    reason = "a benchmark times the wall clock; no paused tokio clock is involved"
)]

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
mod tally;
mod target;

use std::{
    net::SocketAddr,
    process::{Command, ExitCode, Stdio},
    sync::{Mutex, atomic::Ordering},
    time::Duration,
};

use phases::{
    FixedAcc, SatAcc, fixed_round, pct, per_req, sat_round, sequential_phase, stream_phase,
};
use processes::{Spawned, TempDir, find_nginx, redis_command, stop_children_on_signal};
use procfs::{clock_ticks, peak_rss_kib};
use report::print_report;
use target::{Target, TargetResult, blank};

const SWITCHYARD: &str = env!("CARGO_BIN_EXE_switchyard");
const FAST_MODEL: &str = "fast-model";
const SLOW_MODEL: &str = "slow-model";
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
/// The upstream delay of the fixed-rate run.
const DELAY_MS: u64 = 50;
/// One request may take this long before it counts as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First-cut targets from the issue.
const CPU_RATIO_LIMIT: f64 = 3.0;
const ADDED_P99_LIMIT_MS: f64 = 1.0;
const RSS_LIMIT_MB: f64 = 50.0;

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
    fixed_secs: u64,
    rounds: u64,
    conns: usize,
    rate: u64,
    stream_max: usize,
    proxy_core: usize,
    load_core: usize,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn run() -> Res<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (proxy_core, load_core) = if cores >= 2 { (0, 1) } else { (0, 0) };
    let settings = Settings {
        secs: env_num("LOAD_SECS", 6),
        fixed_secs: env_num("LOAD_FIXED_SECS", 9),
        rounds: env_num("LOAD_ROUNDS", 3),
        conns: env_num("LOAD_CONNS", 32) as usize,
        rate: env_num("LOAD_RATE", 1000),
        stream_max: env_num("LOAD_STREAMS", 400) as usize,
        proxy_core,
        load_core,
    };
    // Pin this process (every thread: there is only main so far) before the runtime starts.
    let pin = Command::new("taskset")
        .args(["-a", "-p", "-c", &load_core.to_string()])
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("running taskset (util-linux): {e}"))?;
    if !pin.success() {
        return Err(format!(
            "taskset could not pin the bench to core {load_core}"
        ));
    }
    let clk_tck = clock_ticks();
    let tmp = TempDir::new("load")?;
    stop_children_on_signal(tmp.path().to_owned());

    let nginx_bin = find_nginx();
    let nginx_version = nginx_bin.as_ref().map(|bin| {
        Command::new(bin)
            .arg("-v")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .unwrap_or_default()
    });

    // Upstreams, on the load generator's core.
    let fast = Spawned::mock(&tmp, load_core, "fast", "")?;
    let slow = Spawned::mock(&tmp, load_core, "slow", &format!("latency_ms={DELAY_MS}"))?;
    let fast_addr = fast.addr;
    let slow_addr = slow.addr;

    // The proxies, on their own core.
    let nginx = match &nginx_bin {
        Some(bin) => Some(Spawned::nginx(&tmp, bin, proxy_core, fast_addr, slow_addr)?),
        None => None,
    };
    let log_env = std::env::var("LOAD_RUST_LOG").ok();
    let gateway = Spawned::gateway(
        &tmp,
        proxy_core,
        "switchyard",
        &gateway_config(fast_addr, slow_addr),
        log_env.as_deref(),
    )?;

    // With Debian's redis-server: a second gateway that keeps its limits in Redis (Redis
    // on the load generator's core, like the mocks).
    let redis = if redis_server_installed() {
        Some(Spawned::redis(&tmp, load_core)?)
    } else {
        None
    };
    // The same config with the response cache on: the same request every time, so all
    // but the first are hits (the limits models are never cached).
    let cache_gateway = Spawned::gateway(
        &tmp,
        proxy_core,
        "switchyard-cache",
        &format!("{}{CACHE}", gateway_config(fast_addr, slow_addr)),
        log_env.as_deref(),
    )?;
    // The same config exporting every request's spans to a collector that discards them.
    let sink = otlp_sink()?;
    let otlp_gateway = Spawned::gateway(
        &tmp,
        proxy_core,
        "switchyard-otlp",
        &format!(
            "{}[telemetry]\notlp_endpoint = \"http://{sink}\"\nsampling_ratio = 1.0\n",
            gateway_config(fast_addr, slow_addr)
        ),
        log_env.as_deref(),
    )?;
    let redis_gateway = match &redis {
        Some(r) => Some(Spawned::gateway(
            &tmp,
            proxy_core,
            "switchyard-redis",
            &format!(
                "{}{CACHE}[state]\nredis_url = \"redis://{}/0\"\n",
                gateway_config(fast_addr, slow_addr),
                r.addr
            ),
            log_env.as_deref(),
        )?),
        None => None,
    };

    println!("# switchyard load bench");
    println!();
    println!(
        "cores: {cores}; proxy under test pinned to core {proxy_core}, load generator and mocks \
         to core {load_core}"
    );
    let slice = |total: u64| total.div_ceil(settings.rounds).max(1);
    println!(
        "targets take turns in {} rounds per phase. saturation: {} keep-alive HTTP/1.1 \
         connections, closed loop, 0.5 s warm-up + {} s per round; fixed rate: {} req/s open loop \
         against a {DELAY_MS} ms upstream, 0.5 s warm-up + {} s per round, latency from the \
         scheduled send time; stream: up to {} sequential requests, time to first body byte",
        settings.rounds,
        settings.conns,
        slice(settings.secs),
        settings.rate,
        slice(settings.fixed_secs),
        settings.stream_max
    );
    println!(
        "nginx: {}",
        nginx_version
            .clone()
            .unwrap_or_else(|| "not found (install nginx-light or nginx): row skipped".into())
    );
    println!(
        "switchyard: {SWITCHYARD}; request log RUST_LOG={} ({}), stdout piped to the bench and \
         discarded",
        log_env.as_deref().unwrap_or("info"),
        if log_env.is_some() {
            "from LOAD_RUST_LOG"
        } else {
            "the default, one JSON line per request"
        }
    );
    println!();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building the runtime: {e}"))?;

    let mut targets = vec![Target {
        name: "direct",
        fast: fast_addr,
        slow: slow_addr,
        fast_model: FAST_MODEL,
        slow_model: SLOW_MODEL,
        pids: vec![fast.pid(), slow.pid()],
        cpu_pid: fast.pid(),
        slow_cpu_pid: slow.pid(),
    }];
    if let Some(n) = &nginx {
        targets.push(Target {
            name: "nginx",
            fast: n.addr,
            slow: n.addr2.unwrap_or(n.addr),
            fast_model: FAST_MODEL,
            slow_model: SLOW_MODEL,
            pids: vec![n.pid()],
            cpu_pid: n.pid(),
            slow_cpu_pid: n.pid(),
        });
    }
    targets.push(Target {
        name: "switchyard",
        fast: gateway.addr,
        slow: gateway.addr,
        fast_model: FAST_MODEL,
        slow_model: SLOW_MODEL,
        pids: vec![gateway.pid()],
        cpu_pid: gateway.pid(),
        slow_cpu_pid: gateway.pid(),
    });
    targets.push(Target {
        name: "switchyard-cost",
        fast: gateway.addr,
        slow: gateway.addr,
        fast_model: FAST_COST_MODEL,
        slow_model: SLOW_COST_MODEL,
        pids: vec![gateway.pid()],
        cpu_pid: gateway.pid(),
        slow_cpu_pid: gateway.pid(),
    });

    targets.push(Target {
        name: "switchyard-limits",
        fast: gateway.addr,
        slow: gateway.addr,
        fast_model: FAST_LIMITS_MODEL,
        slow_model: SLOW_LIMITS_MODEL,
        pids: vec![gateway.pid()],
        cpu_pid: gateway.pid(),
        slow_cpu_pid: gateway.pid(),
    });
    targets.push(Target {
        name: "switchyard-cache",
        fast: cache_gateway.addr,
        slow: cache_gateway.addr,
        fast_model: FAST_MODEL,
        slow_model: SLOW_MODEL,
        pids: vec![cache_gateway.pid()],
        cpu_pid: cache_gateway.pid(),
        slow_cpu_pid: cache_gateway.pid(),
    });
    targets.push(Target {
        name: "switchyard-otlp",
        fast: otlp_gateway.addr,
        slow: otlp_gateway.addr,
        fast_model: FAST_MODEL,
        slow_model: SLOW_MODEL,
        pids: vec![otlp_gateway.pid()],
        cpu_pid: otlp_gateway.pid(),
        slow_cpu_pid: otlp_gateway.pid(),
    });
    if let Some(g) = &redis_gateway {
        targets.push(Target {
            name: "switchyard-redis-cache",
            fast: g.addr,
            slow: g.addr,
            fast_model: FAST_MODEL,
            slow_model: SLOW_MODEL,
            pids: vec![g.pid()],
            cpu_pid: g.pid(),
            slow_cpu_pid: g.pid(),
        });
        targets.push(Target {
            name: "switchyard-redis-limits",
            fast: g.addr,
            slow: g.addr,
            fast_model: FAST_LIMITS_MODEL,
            slow_model: SLOW_LIMITS_MODEL,
            pids: vec![g.pid()],
            cpu_pid: g.pid(),
            slow_cpu_pid: g.pid(),
        });
    }

    let only: Option<Vec<String>> = std::env::var("LOAD_TARGETS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let mut ours = vec![std::process::id(), fast.pid(), slow.pid(), gateway.pid()];
    ours.extend(nginx.as_ref().map(Spawned::pid));
    ours.extend(redis.as_ref().map(Spawned::pid));
    ours.extend(redis_gateway.as_ref().map(Spawned::pid));
    ours.push(cache_gateway.pid());
    ours.push(otlp_gateway.pid());
    let mut results: Vec<(&Target, TargetResult)> = targets
        .iter()
        .filter(|t| only.as_ref().is_none_or(|o| o.iter().any(|n| n == t.name)))
        .map(|t| (t, blank(t.name)))
        .collect();
    let check_all = || -> Res<()> {
        for p in [&fast, &slow] {
            p.check_alive()?;
        }
        for p in nginx.iter().chain(&redis).chain(&redis_gateway) {
            p.check_alive()?;
        }
        cache_gateway.check_alive()?;
        otlp_gateway.check_alive()?;
        gateway.check_alive()
    };

    // Saturation: the targets take turns in short rounds, so that drift on the machine falls
    // on all of them alike; figures are over all rounds.
    let rounds = settings.rounds;
    let slice = settings.secs.div_ceil(rounds).max(1);
    let mut sat_accs: Vec<SatAcc> = results.iter().map(|_| SatAcc::default()).collect();
    for round in 0..rounds {
        eprintln!(
            "load bench: saturation, round {} of {rounds} ...",
            round + 1
        );
        for ((t, r), acc) in results.iter_mut().zip(sat_accs.iter_mut()) {
            runtime.block_on(sat_round(t, settings, slice, &ours, clk_tck, acc, r))?;
            check_all()?;
        }
    }
    eprintln!("load bench: streams ...");
    for (t, r) in results.iter_mut() {
        runtime.block_on(stream_phase(t, settings, r));
    }
    eprintln!("load bench: sequential JSON ...");
    for (t, r) in results.iter_mut() {
        runtime.block_on(sequential_phase(t, settings, r));
    }
    check_all()?;

    // Fixed rate, in turns as well; percentiles are over all rounds' samples. A first,
    // discarded round warms every target and both mocks' connection pools.
    let slice = settings.fixed_secs.div_ceil(rounds).max(1);
    eprintln!("load bench: fixed rate, warm-up round ...");
    for (t, r) in results.iter_mut() {
        let mut discard = FixedAcc::default();
        runtime.block_on(fixed_round(t, settings, 1, &ours, &mut discard, r))?;
    }
    let mut accs: Vec<FixedAcc> = results.iter().map(|_| FixedAcc::default()).collect();
    for round in 0..rounds {
        eprintln!(
            "load bench: fixed rate, round {} of {rounds} ...",
            round + 1
        );
        for ((t, r), acc) in results.iter_mut().zip(accs.iter_mut()) {
            runtime.block_on(fixed_round(t, settings, slice, &ours, acc, r))?;
        }
    }
    let direct_rounds: Option<Vec<f64>> = results
        .iter()
        .zip(&accs)
        .find(|((t, _), _)| t.name == "direct")
        .map(|(_, a)| a.round_p99_ms.clone());
    for ((t, r), acc) in results.iter_mut().zip(accs.iter_mut()) {
        acc.latencies_us.sort_unstable();
        let lat = &acc.latencies_us;
        r.fixed_p50_ms = pct(lat, 0.50) / 1000.0;
        r.fixed_p99_ms = pct(lat, 0.99) / 1000.0;
        r.fixed_max_ms = lat.last().map_or(f64::NAN, |&v| f64::from(v) / 1000.0);
        r.fixed_secs = (slice * rounds) as f64;
        r.fixed_achieved_rps = lat.len() as f64 / r.fixed_secs;
        r.fixed_cpu_us = per_req(acc.cpu_ticks as f64 / clk_tck, acc.ok);
        r.fixed_round_p99 = acc.round_p99_ms.clone();
        r.fixed_other =
            acc.machine_ticks.saturating_sub(acc.ours_ticks) as f64 / clk_tck / acc.secs;
        if let Some(d) = &direct_rounds {
            r.fixed_round_added_p99 = acc.round_p99_ms.iter().zip(d).map(|(a, b)| a - b).collect();
        }
        let mut rss_kib = 0;
        for &pid in &t.pids {
            rss_kib = rss_kib.max(peak_rss_kib(pid)?);
        }
        r.rss_mb = rss_kib as f64 / 1024.0;
    }
    check_all()?;
    let results: Vec<TargetResult> = results.into_iter().map(|(_, r)| r).collect();

    print_report(&results, settings);
    println!();
    println!(
        "switchyard request-log lines seen on stdout: {} (for {} requests sent to it, warm-ups \
         included)",
        gateway.lines.load(Ordering::Relaxed),
        // The switchyard targets but the Redis one are the same process, writing to the
        // same stdout.
        results
            .iter()
            .filter(|r| {
                r.name.starts_with("switchyard")
                    && !r.name.starts_with("switchyard-redis")
                    && r.name != "switchyard-cache"
                    && r.name != "switchyard-otlp"
            })
            .map(|r| r.sent)
            .sum::<u64>()
    );
    if let (Some(r), Some(t)) = (
        &redis,
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
    drop(redis_gateway);
    drop(cache_gateway);
    drop(otlp_gateway);
    drop(redis);
    drop(gateway);
    drop(nginx);
    drop(fast);
    drop(slow);
    Ok(())
}

/// A loopback OTLP/HTTP collector that reads each export and answers 200 without decoding
/// it, on a thread of its own (so it is not charged to the gateway under test).
fn otlp_sink() -> Res<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("binding the OTLP sink: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("the OTLP sink's address: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("the OTLP sink's socket: {e}"))?;
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(|_body: axum::body::Bytes| async { "" }),
            );
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(addr)
}

fn redis_server_installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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

/// The gateway's config: DEPLOYMENTS providers per mock, each model over all of them, so
/// the static-order models and the cost-policy models route over the same ten candidates.
fn gateway_config(fast: SocketAddr, slow: SocketAddr) -> String {
    let mut config =
        String::from("[server]\nhttp_addr = \"127.0.0.1:0\"\ngrpc_addr = \"none\"\n\n");
    for (prefix, addr) in [("fast", fast), ("slow", slow)] {
        for i in 0..DEPLOYMENTS {
            config.push_str(&format!(
                "[[providers]]\nname = \"{prefix}{i}\"\nkind = \"openai\"\n\
                 base_url = \"http://{addr}/v1\"\napi_key = \"sk-bench\"\n\n"
            ));
        }
    }
    for (name, prefix, upstream, policy) in [
        (FAST_MODEL, "fast", FAST_MODEL, "static"),
        (SLOW_MODEL, "slow", SLOW_MODEL, "static"),
        (FAST_COST_MODEL, "fast", FAST_MODEL, "cost"),
        (SLOW_COST_MODEL, "slow", SLOW_MODEL, "cost"),
        (FAST_LIMITS_MODEL, "fast", FAST_MODEL, "static"),
        (SLOW_LIMITS_MODEL, "slow", SLOW_MODEL, "static"),
    ] {
        let deployments: Vec<String> = (0..DEPLOYMENTS)
            .map(|i| {
                format!(
                    "{{ provider = \"{prefix}{i}\", model = \"{upstream}\", \
                     price_in = {}.0, price_out = {}.0, quality = 2 }}",
                    DEPLOYMENTS - i,
                    4 * (DEPLOYMENTS - i)
                )
            })
            .collect();
        // Never cached, so that in a gateway with `[cache]` these still reach a provider.
        let limits = if name.ends_with("-limits") {
            "limits = { rpm = 1000000000, tpm = 1000000000000, max_concurrent = 1000000 }\n\
             cache_ttl_s = 0\n"
        } else {
            ""
        };
        config.push_str(&format!(
            "[[models]]\nname = \"{name}\"\npolicy = \"{policy}\"\n{limits}\
             deployments = [\n  {}\n]\n\n",
            deployments.join(",\n  ")
        ));
    }
    config
}
