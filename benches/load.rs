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
//! - **peak RSS**: `VmHWM` from `/proc/PID/status` after all phases.
//!
//! Saturation and fixed rate run in `LOAD_ROUNDS` (3) rounds in which the targets take
//! turns, each slice after its own 0.5 s warm-up, so that drift on the machine falls on
//! all targets alike; the per-round figures are printed too, to show the noise. CPU used
//! on the machine by processes not started here is measured and warned about.
//! `LOAD_TARGETS=nginx,switchyard` measures only those.
//!
//! Every non-200 answer, I/O error and malformed body is counted and printed: a benchmark
//! of error answers is worthless. switchyard runs with its default request log (`info`,
//! one JSON line per request on stdout), which this process reads from a pipe and discards;
//! set `LOAD_RUST_LOG` to run it with another `RUST_LOG`.
//!
//! Needs `taskset` (util-linux) and nginx (`apt-get install nginx-light` or `nginx`);
//! without nginx its row is skipped. Loopback only.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::{
    collections::BTreeMap,
    fs,
    io::{self, BufRead, BufReader, Read},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const SWITCHYARD: &str = env!("CARGO_BIN_EXE_switchyard");
const FAST_MODEL: &str = "fast-model";
const SLOW_MODEL: &str = "slow-model";
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
    let tmp = TempDir::new()?;
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
    let gateway = Spawned::gateway(&tmp, proxy_core, fast_addr, slow_addr, log_env.as_deref())?;

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

    let only: Option<Vec<String>> = std::env::var("LOAD_TARGETS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let mut ours = vec![std::process::id(), fast.pid(), slow.pid(), gateway.pid()];
    ours.extend(nginx.as_ref().map(Spawned::pid));
    let mut results: Vec<(&Target, TargetResult)> = targets
        .iter()
        .filter(|t| only.as_ref().is_none_or(|o| o.iter().any(|n| n == t.name)))
        .map(|t| (t, blank(t.name)))
        .collect();
    let check_all = || -> Res<()> {
        for p in [&fast, &slow] {
            p.check_alive()?;
        }
        if let Some(n) = &nginx {
            n.check_alive()?;
        }
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
        results
            .iter()
            .find(|r| r.name == "switchyard")
            .map_or(0, |r| r.sent)
    );
    drop(gateway);
    drop(nginx);
    drop(fast);
    drop(slow);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Processes

/// Every process started here, so that Ctrl-C or SIGTERM does not leave them running.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// On SIGINT or SIGTERM: kills the children started here (by pid), removes `tmp`, exits.
fn stop_children_on_signal(tmp: PathBuf) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        let pids: Vec<String> = lock(&CHILDREN).iter().map(u32::to_string).collect();
        if !pids.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&pids).status();
        }
        let _ = fs::remove_dir_all(&tmp);
        eprintln!(
            "load bench: interrupted; stopped {} child processes",
            pids.len()
        );
        std::process::exit(130);
    });
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Res<TempDir> {
        let dir = std::env::temp_dir().join(format!("switchyard-load-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process started here, pinned with taskset (which execs it, so the child's pid is
/// the target's). Killed on drop.
struct Spawned {
    name: String,
    child: Mutex<Child>,
    pid: u32,
    addr: SocketAddr,
    addr2: Option<SocketAddr>,
    /// Lines seen on stdout.
    lines: Arc<AtomicU64>,
    stderr: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let child = match self.child.get_mut() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Spawned {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn start(
        tmp: &TempDir,
        name: &str,
        core: usize,
        program: &str,
        args: &[String],
        env: &[(&str, Option<&str>)],
    ) -> Res<(Child, PathBuf)> {
        let stderr_path = tmp.path().join(format!("{name}.stderr"));
        let stderr = fs::File::create(&stderr_path)
            .map_err(|e| format!("creating {}: {e}", stderr_path.display()))?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(core.to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {name} ({program}): {e}"))?;
        lock(&CHILDREN).push(child.id());
        Ok((child, stderr_path))
    }

    /// Reads stdout on a thread: lines are sent until one contains `marker`, then only
    /// counted, so the child's pipe never fills.
    fn watch_stdout(
        child: &mut Child,
        marker: &'static str,
    ) -> (mpsc::Receiver<String>, Arc<AtomicU64>) {
        let (tx, rx) = mpsc::channel();
        let lines = Arc::new(AtomicU64::new(0));
        let Some(stdout) = child.stdout.take() else {
            return (rx, lines);
        };
        let counter = lines.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::with_capacity(1 << 16, stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let found = line.contains(marker);
                        let _ = tx.send(line.clone());
                        if found {
                            break;
                        }
                    }
                }
            }
            drop(tx);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let nl = buf[..n].iter().filter(|&&b| b == b'\n').count();
                        counter.fetch_add(nl as u64, Ordering::Relaxed);
                    }
                }
            }
        });
        (rx, lines)
    }

    /// Waits for the banner line containing `marker` and returns it.
    fn banner(name: &str, rx: &mpsc::Receiver<String>, marker: &str, stderr: &Path) -> Res<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(marker) => return Ok(line.trim().to_owned()),
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "{name} did not print `{marker}` within 15 s; stderr: {}",
                        read_tail(stderr)
                    ));
                }
            }
        }
    }

    fn mock(tmp: &TempDir, core: usize, name: &str, fault: &str) -> Res<Spawned> {
        let args = vec![
            "mock".to_owned(),
            "--addr".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--name".to_owned(),
            format!("bench-{name}"),
            "--fault".to_owned(),
            fault.to_owned(),
        ];
        let label = format!("mock-{name}");
        let (mut child, stderr) = Self::start(tmp, &label, core, SWITCHYARD, &args, &[])?;
        let pid = child.id();
        let (rx, lines) = Self::watch_stdout(&mut child, "listening");
        let spawned_child = Mutex::new(child);
        let banner = match Self::banner(&label, &rx, "listening", &stderr) {
            Ok(b) => b,
            Err(e) => {
                kill(spawned_child);
                return Err(e);
            }
        };
        // `switchyard mock listening: http://127.0.0.1:PORT/v1`
        let addr = banner
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse().ok());
        let Some(addr) = addr else {
            kill(spawned_child);
            return Err(format!("{label}: cannot read the address from `{banner}`"));
        };
        Ok(Spawned {
            name: label,
            child: spawned_child,
            pid,
            addr,
            addr2: None,
            lines,
            stderr,
        })
    }

    fn gateway(
        tmp: &TempDir,
        core: usize,
        fast: SocketAddr,
        slow: SocketAddr,
        rust_log: Option<&str>,
    ) -> Res<Spawned> {
        let config = format!(
            r#"[server]
http_addr = "127.0.0.1:0"
grpc_addr = "none"

[[providers]]
name = "fast"
kind = "openai"
base_url = "http://{fast}/v1"
api_key = "sk-bench"

[[providers]]
name = "slow"
kind = "openai"
base_url = "http://{slow}/v1"
api_key = "sk-bench"

[[models]]
name = "{FAST_MODEL}"
deployments = [{{ provider = "fast", model = "{FAST_MODEL}" }}]

[[models]]
name = "{SLOW_MODEL}"
deployments = [{{ provider = "slow", model = "{SLOW_MODEL}" }}]
"#
        );
        let path = tmp.path().join("switchyard.toml");
        fs::write(&path, config).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let args = vec![
            "serve".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
        ];
        let (mut child, stderr) = Self::start(
            tmp,
            "switchyard",
            core,
            SWITCHYARD,
            &args,
            &[("RUST_LOG", rust_log)],
        )?;
        let pid = child.id();
        let (rx, lines) = Self::watch_stdout(&mut child, "switchyard listening:");
        let spawned_child = Mutex::new(child);
        let banner = match Self::banner("switchyard", &rx, "switchyard listening:", &stderr) {
            Ok(b) => b,
            Err(e) => {
                kill(spawned_child);
                return Err(e);
            }
        };
        // `switchyard listening: http=ADDR grpc=ADDR`
        let addr = banner
            .split("http=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok());
        let Some(addr) = addr else {
            kill(spawned_child);
            return Err(format!(
                "switchyard: cannot read the address from `{banner}`"
            ));
        };
        Ok(Spawned {
            name: "switchyard".into(),
            child: spawned_child,
            pid,
            addr,
            addr2: None,
            lines,
            stderr,
        })
    }

    fn nginx(
        tmp: &TempDir,
        bin: &Path,
        core: usize,
        fast: SocketAddr,
        slow: SocketAddr,
    ) -> Res<Spawned> {
        let dir = tmp.path().join("nginx");
        for sub in ["", "body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| format!("creating nginx dirs: {e}"))?;
        }
        let port_fast = free_port()?;
        let port_slow = free_port()?;
        let d = dir.display();
        let location = "        location / {\n            proxy_pass http://UP;\n            \
                        proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n            \
                        proxy_buffering off;\n        }\n";
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n    access_log off;\n\
             \x20   client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   upstream fast {{ server {fast}; keepalive 64; }}\n\
             \x20   upstream slow {{ server {slow}; keepalive 256; }}\n\
             \x20   server {{\n        listen 127.0.0.1:{port_fast};\n{}    }}\n\
             \x20   server {{\n        listen 127.0.0.1:{port_slow};\n{}    }}\n}}\n",
            location.replace("UP", "fast"),
            location.replace("UP", "slow"),
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, config).map_err(|e| format!("writing nginx.conf: {e}"))?;
        let args = vec![
            "-p".to_owned(),
            format!("{d}/"),
            "-e".to_owned(),
            format!("{d}/error.log"),
            "-c".to_owned(),
            conf_path.display().to_string(),
        ];
        let program = bin.display().to_string();
        let (mut child, stderr) = Self::start(tmp, "nginx", core, &program, &args, &[])?;
        let pid = child.id();
        let (_rx, lines) = Self::watch_stdout(&mut child, "\u{0}never");
        let spawned = Spawned {
            name: "nginx".into(),
            child: Mutex::new(child),
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], port_fast)),
            addr2: Some(SocketAddr::from(([127, 0, 0, 1], port_slow))),
            lines,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in [port_fast, port_slow] {
            loop {
                spawned.check_alive().map_err(|e| {
                    format!("{e}; error.log: {}", read_tail(&dir.join("error.log")))
                })?;
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "nginx did not listen on {port} within 10 s; error.log: {}",
                        read_tail(&dir.join("error.log"))
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(spawned)
    }

    fn check_alive(&self) -> Res<()> {
        let mut child = match self.child.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); stderr: {}",
                self.name,
                read_tail(&self.stderr)
            )),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

fn kill(child: Mutex<Child>) {
    let mut child = match child.into_inner() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    let _ = child.kill();
    let _ = child.wait();
}

fn read_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(1500);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].trim().to_owned()
}

fn free_port() -> Res<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

fn find_nginx() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&n| n > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> Res<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Res<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat: no field {}", i + 3))
    };
    Ok(num(11)? + num(12)?)
}

/// One CPU's counters from /proc/stat, in clock ticks.
#[derive(Clone, Copy, Default)]
struct CoreTimes {
    /// user + nice + system + irq + softirq.
    busy: u64,
    /// Time the hypervisor gave to someone else.
    steal: u64,
    total: u64,
}

fn core_times() -> Vec<CoreTimes> {
    let Ok(stat) = fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            let f = |i: usize| v.get(i).copied().unwrap_or(0);
            CoreTimes {
                busy: f(0) + f(1) + f(2) + f(5) + f(6),
                steal: f(7),
                total: (0..8).map(f).sum(),
            }
        })
        .collect()
}

/// CPU ticks, all cores, between two samples: (busy, steal).
fn all_busy(a: &[CoreTimes], b: &[CoreTimes]) -> (u64, u64) {
    a.iter().zip(b).fold((0, 0), |(busy, steal), (a, b)| {
        (
            busy + b.busy.saturating_sub(a.busy),
            steal + b.steal.saturating_sub(a.steal),
        )
    })
}

/// CPU ticks used by these processes (those that have exited count 0).
fn ticks_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| cpu_ticks(p).ok()).sum()
}

/// Peak resident set size (VmHWM) in KiB.
fn peak_rss_kib(pid: u32) -> Res<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/status: no VmHWM"))
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client: keep-alive, Content-Length and chunked bodies.

/// The response body's framing.
enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes.
    Close,
}

struct Head {
    status: u16,
    framing: Framing,
    close: bool,
}

struct Reply {
    status: u16,
    /// When the last body byte arrived.
    last_byte: Instant,
    /// When the first body byte arrived.
    first_byte: Option<Instant>,
    keep_alive: bool,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    async fn open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
        })
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more bytes into the buffer.
    async fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = self.buf.len();
                self.buf.resize(n * 2, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.end += n;
        Ok(())
    }

    /// Takes up to `n` buffered bytes into `body` (reading when none are buffered).
    async fn take(&mut self, mut n: usize, body: &mut Vec<u8>) -> io::Result<()> {
        while n > 0 {
            if self.start == self.end {
                self.fill().await?;
            }
            let k = n.min(self.end - self.start);
            body.extend_from_slice(&self.buf[self.start..self.start + k]);
            self.start += k;
            n -= k;
        }
        Ok(())
    }

    /// The next CRLF-terminated line, consumed, without its CRLF.
    async fn line(&mut self) -> io::Result<(usize, usize)> {
        loop {
            if let Some(i) = find(self.avail(), b"\r\n") {
                let s = self.start;
                self.start += i + 2;
                return Ok((s, s + i));
            }
            if self.end - self.start > 4096 {
                return Err(invalid("chunk-size line too long"));
            }
            self.fill().await?;
        }
    }

    /// Sends one request and reads the whole response into `body`.
    async fn exchange(&mut self, request: &[u8], body: &mut Vec<u8>) -> io::Result<Reply> {
        if self.start != self.end {
            return Err(invalid("unexpected bytes before the response"));
        }
        self.stream.write_all(request).await?;
        let head_len = loop {
            if let Some(i) = find(self.avail(), b"\r\n\r\n") {
                break i + 4;
            }
            if self.end - self.start > 64 * 1024 {
                return Err(invalid("response head too large"));
            }
            self.fill().await?;
        };
        let head = parse_head(&self.buf[self.start..self.start + head_len])?;
        self.start += head_len;
        body.clear();
        let has_body =
            !matches!(head.framing, Framing::Length(0)) && head.status != 204 && head.status != 304;
        let mut first_byte = None;
        if has_body {
            while self.start == self.end {
                self.fill().await?;
            }
            first_byte = Some(Instant::now());
        }
        let mut keep_alive = !head.close;
        if has_body {
            match head.framing {
                Framing::Length(n) => self.take(n, body).await?,
                Framing::Chunked => loop {
                    let (s, e) = self.line().await?;
                    let size_text = std::str::from_utf8(&self.buf[s..e])
                        .map_err(|_| invalid("bad chunk size"))?;
                    let size_text = size_text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_text, 16)
                        .map_err(|_| invalid(format!("bad chunk size `{size_text}`")))?;
                    if size == 0 {
                        // Trailers, then the empty line.
                        loop {
                            let (s, e) = self.line().await?;
                            if s == e {
                                break;
                            }
                        }
                        break;
                    }
                    self.take(size, body).await?;
                    let (s, e) = self.line().await?;
                    if s != e {
                        return Err(invalid("chunk not followed by CRLF"));
                    }
                },
                Framing::Close => {
                    keep_alive = false;
                    loop {
                        body.extend_from_slice(self.avail());
                        self.start = self.end;
                        match self.fill().await {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        Ok(Reply {
            status: head.status,
            last_byte: Instant::now(),
            first_byte,
            keep_alive,
        })
    }
}

fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line `{status_line}`")))?;
    let mut framing = Framing::Close;
    let mut close = status_line.starts_with("HTTP/1.0");
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            framing = Framing::Length(v.parse().map_err(|_| invalid("bad content-length"))?);
        } else if k.eq_ignore_ascii_case("transfer-encoding")
            && v.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    Ok(Head {
        status,
        framing,
        close,
    })
}

/// One POST /v1/chat/completions, head and body, as sent to `host`.
fn chat_request(host: SocketAddr, model: &str, stream: bool) -> Arc<[u8]> {
    let body = format!(
        r#"{{"model":"{model}","messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"Say hello in one short sentence."}}]{}}}"#,
        if stream { r#","stream":true"# } else { "" }
    );
    let accept = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let text = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nUser-Agent: switchyard-load\r\n\
         Content-Type: application/json\r\nAccept: {accept}\r\nAuthorization: Bearer sk-client\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Arc::from(text.into_bytes())
}

/// Whether a 200 body is what the API promises: a completion, or a stream ending `[DONE]`.
fn body_ok(body: &[u8], stream: bool) -> bool {
    if stream {
        body.ends_with(b"data: [DONE]\n\n") && find(body, b"chat.completion.chunk").is_some()
    } else {
        find(body, b"\"chat.completion\"").is_some() && find(body, b"\"choices\"").is_some()
    }
}

// ---------------------------------------------------------------------------------------
// Measurements

/// What went right and wrong in one phase.
#[derive(Default)]
struct Tally {
    ok: u64,
    /// Non-200 answers by status.
    statuses: BTreeMap<u16, u64>,
    io_errors: u64,
    timeouts: u64,
    bad_bodies: u64,
    /// The first problem seen, for the report.
    first_problem: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.io_errors += other.io_errors;
        self.timeouts += other.timeouts;
        self.bad_bodies += other.bad_bodies;
        if self.first_problem.is_none() {
            self.first_problem = other.first_problem;
        }
    }

    fn problems(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.io_errors + self.timeouts + self.bad_bodies
    }

    fn total(&self) -> u64 {
        self.ok + self.statuses.values().sum::<u64>() + self.io_errors + self.timeouts
    }

    fn note(&mut self, problem: impl FnOnce() -> String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(problem());
        }
    }

    /// Records one exchange; returns whether the connection may be reused.
    fn record(
        &mut self,
        outcome: Result<io::Result<Reply>, tokio::time::error::Elapsed>,
        body: &[u8],
        stream: bool,
        check_body: bool,
    ) -> Option<Reply> {
        match outcome {
            Ok(Ok(reply)) if reply.status == 200 => {
                if check_body && !body_ok(body, stream) {
                    self.bad_bodies += 1;
                    self.note(|| {
                        format!(
                            "malformed 200 body: {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        )
                    });
                }
                self.ok += 1;
                Some(reply)
            }
            Ok(Ok(reply)) => {
                *self.statuses.entry(reply.status).or_default() += 1;
                let status = reply.status;
                self.note(|| {
                    format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    )
                });
                Some(reply)
            }
            Ok(Err(e)) => {
                self.io_errors += 1;
                self.note(|| format!("I/O error: {e}"));
                None
            }
            Err(_) => {
                self.timeouts += 1;
                self.note(|| format!("no answer within {REQUEST_TIMEOUT:?}"));
                None
            }
        }
    }
}

struct Target {
    name: &'static str,
    fast: SocketAddr,
    slow: SocketAddr,
    fast_model: &'static str,
    slow_model: &'static str,
    /// Processes whose peak RSS is reported (the largest).
    pids: Vec<u32>,
    /// The process whose CPU time the saturation run charges.
    cpu_pid: u32,
    /// The process whose CPU time the fixed-rate run charges.
    slow_cpu_pid: u32,
}

struct TargetResult {
    name: &'static str,
    sat_rps: f64,
    sat_cpu_us: f64,
    sat_util: f64,
    /// CPU µs per request in each saturation round.
    sat_round_cpu_us: Vec<f64>,
    proxy_core_busy: f64,
    load_core_busy: f64,
    /// Cores' worth of CPU used by other processes during saturation.
    foreign: f64,
    /// Cores' worth stolen by the hypervisor during saturation.
    steal: f64,
    fixed_p50_ms: f64,
    fixed_p99_ms: f64,
    fixed_max_ms: f64,
    fixed_cpu_us: f64,
    fixed_achieved_rps: f64,
    /// Cores' worth of CPU used by other processes (and stolen) during the fixed-rate rounds.
    fixed_other: f64,
    /// Measured seconds of fixed rate, all rounds.
    fixed_secs: f64,
    /// Per round: p99 (ms).
    fixed_round_p99: Vec<f64>,
    /// Per round: p99 added over direct's p99 in the same round (ms).
    fixed_round_added_p99: Vec<f64>,
    ttfb_p50_ms: f64,
    ttfb_p99_ms: f64,
    ttfb_n: usize,
    stream_total_p50_ms: f64,
    rss_mb: f64,
    tally: Tally,
    /// Requests sent, warm-ups included.
    sent: u64,
}

/// A blank result for a target, filled in phase by phase.
fn blank(name: &'static str) -> TargetResult {
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
        rss_mb: f64::NAN,
        tally: Tally::default(),
        sent: 0,
    }
}

/// Accumulated saturation figures of one target over the rounds.
#[derive(Default)]
struct SatAcc {
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
async fn sat_round(
    t: &Target,
    s: Settings,
    secs: u64,
    ours: &[u32],
    clk_tck: f64,
    acc: &mut SatAcc,
    r: &mut TargetResult,
) -> Res<()> {
    let req = chat_request(t.fast, t.fast_model, false);
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

/// Sequential streams against a target: time to first byte and to the end.
async fn stream_phase(t: &Target, s: Settings, r: &mut TargetResult) {
    let req = chat_request(t.fast, t.fast_model, true);
    let (mut ttfb, mut whole, st) =
        streams(t.fast, &req, s.stream_max, Duration::from_secs(3)).await;
    r.sent += st.total();
    r.tally.merge(st);
    ttfb.sort_unstable();
    whole.sort_unstable();
    r.ttfb_p50_ms = pct(&ttfb, 0.50) / 1000.0;
    r.ttfb_p99_ms = pct(&ttfb, 0.99) / 1000.0;
    r.ttfb_n = ttfb.len();
    r.stream_total_p50_ms = pct(&whole, 0.50) / 1000.0;
}

fn per_req(cpu_s: f64, n: u64) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        cpu_s * 1e6 / n as f64
    }
}

/// Accumulated fixed-rate figures of one target over the rounds.
#[derive(Default)]
struct FixedAcc {
    latencies_us: Vec<u32>,
    ok: u64,
    cpu_ticks: u64,
    round_p99_ms: Vec<f64>,
    /// For the interference check: wall seconds, all cores' busy + steal ticks, ours.
    secs: f64,
    machine_ticks: u64,
    ours_ticks: u64,
}

/// One fixed-rate slice against a target's delayed upstream; returns its p99 (ms).
async fn fixed_round(
    t: &Target,
    s: Settings,
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
    let fixed = fixed_rate(t.slow, req, s.rate, Duration::from_millis(500), secs).await;
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
fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1])
}

/// Every connection loops request after request until `dur` has passed.
async fn closed_loop(
    conns: Vec<Conn>,
    addr: SocketAddr,
    req: &Arc<[u8]>,
    dur: Duration,
) -> (Vec<Conn>, Tally) {
    let deadline = Instant::now() + dur;
    let wanted = conns.len();
    let mut tasks = Vec::with_capacity(wanted);
    for conn in conns {
        let req = req.clone();
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
                let out = tokio::time::timeout(REQUEST_TIMEOUT, c.exchange(&req, &mut body)).await;
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

struct Fixed {
    latencies_us: Vec<u32>,
    tally: Tally,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Open loop: a request is due every 1/rate s whatever happened to the earlier ones; each
/// takes an idle keep-alive connection (or opens one). Latency counts from the due time.
async fn fixed_rate(
    addr: SocketAddr,
    req: Arc<[u8]>,
    rate: u64,
    warm: Duration,
    secs: u64,
) -> Fixed {
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::new()));
    // Enough for rate × delay in flight, with room.
    let prefill = ((rate * DELAY_MS / 1000) as usize * 3 / 2).max(8);
    for _ in 0..prefill {
        if let Ok(c) = Conn::open(addr).await {
            lock(&pool).push(c);
        }
    }
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let warm_n = (warm.as_secs_f64() * rate as f64) as u64;
    let total = warm_n + secs * rate;
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
                None => Conn::open(addr).await,
            };
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    tally.io_errors += 1;
                    tally.note(|| format!("connecting: {e}"));
                    return (measured, None, tally);
                }
            };
            let mut body = Vec::with_capacity(2048);
            let out = tokio::time::timeout(REQUEST_TIMEOUT, conn.exchange(&req, &mut body)).await;
            let done = Instant::now();
            let reply = tally.record(out, &body, false, true);
            let mut latency = None;
            if let Some(reply) = reply {
                if reply.status == 200 {
                    let us = done.saturating_duration_since(due).as_micros();
                    latency = Some(u32::try_from(us).unwrap_or(u32::MAX));
                }
                if reply.keep_alive {
                    lock(&pool).push(conn);
                }
            }
            (measured, latency, tally)
        }));
    }
    let mut out = Fixed {
        latencies_us: Vec::with_capacity((secs * rate) as usize),
        tally: Tally::default(),
    };
    for t in tasks {
        match t.await {
            Ok((measured, latency, tally)) => {
                if measured {
                    out.latencies_us.extend(latency);
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

/// Sequential streamed requests on one connection: time from send to the first body byte.
async fn streams(
    addr: SocketAddr,
    req: &Arc<[u8]>,
    max: usize,
    max_time: Duration,
) -> (Vec<u32>, Vec<u32>, Tally) {
    let mut tally = Tally::default();
    let mut ttfb = Vec::with_capacity(max);
    let mut whole = Vec::with_capacity(max);
    let deadline = Instant::now() + max_time;
    let mut conn: Option<Conn> = None;
    let mut body = Vec::with_capacity(8192);
    const WARM: usize = 10;
    let mut i = 0;
    while i < max + WARM && Instant::now() < deadline {
        let mut c = match conn.take() {
            Some(c) => c,
            None => match Conn::open(addr).await {
                Ok(c) => c,
                Err(e) => {
                    tally.io_errors += 1;
                    tally.note(|| format!("connecting: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        let out = tokio::time::timeout(REQUEST_TIMEOUT, c.exchange(req, &mut body)).await;
        if let Some(reply) = tally.record(out, &body, true, true) {
            if reply.status == 200
                && i >= WARM
                && let Some(fb) = reply.first_byte
            {
                let us = fb.saturating_duration_since(sent).as_micros();
                ttfb.push(u32::try_from(us).unwrap_or(u32::MAX));
                let us = reply.last_byte.saturating_duration_since(sent).as_micros();
                whole.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            if reply.keep_alive {
                conn = Some(c);
            }
        }
        i += 1;
    }
    (ttfb, whole, tally)
}

// ---------------------------------------------------------------------------------------
// Report

fn print_report(results: &[TargetResult], s: Settings) {
    let direct = results.iter().find(|r| r.name == "direct");
    let nginx = results.iter().find(|r| r.name == "nginx");
    let gw = results.iter().find(|r| r.name == "switchyard");
    let added = |v: f64, base: Option<f64>| match base {
        Some(b) => format!("{:+.3}", v - b),
        None => "n/a".into(),
    };
    println!(
        "| target | req/s at saturation | CPU µs/req | p50 ms @{0} rps | p99 ms @{0} rps | \
         added p50 ms | added p99 ms | stream TTFB p50 ms | TTFB added ms | peak RSS MB | non-200 |",
        s.rate
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let is_direct = r.name == "direct";
        let base = |f: fn(&TargetResult) -> f64| direct.filter(|_| !is_direct).map(f);
        // A proxy that had CPU to spare while the load generator's core was full was not
        // the limit: its req/s is a floor.
        let gen_bound = !is_direct && r.sat_util < 0.9 && r.load_core_busy > 0.9;
        println!(
            "| {} | {:.0}{} | {:.1} | {:.2} | {:.2} | {} | {} | {:.3} | {} | {:.1} | {} |",
            r.name,
            r.sat_rps,
            if gen_bound { " †" } else { "" },
            r.sat_cpu_us,
            r.fixed_p50_ms,
            r.fixed_p99_ms,
            if is_direct {
                "—".into()
            } else {
                added(r.fixed_p50_ms, base(|d| d.fixed_p50_ms))
            },
            if is_direct {
                "—".into()
            } else {
                added(r.fixed_p99_ms, base(|d| d.fixed_p99_ms))
            },
            r.ttfb_p50_ms,
            if is_direct {
                "—".into()
            } else {
                added(r.ttfb_p50_ms, base(|d| d.ttfb_p50_ms))
            },
            r.rss_mb,
            r.tally.problems(),
        );
    }
    println!();
    println!(
        "direct = the mock itself (CPU and RSS are the mock's; the load generator shares its core)."
    );
    if results
        .iter()
        .any(|r| r.name != "direct" && r.sat_util < 0.9 && r.load_core_busy > 0.9)
    {
        println!(
            "† limited by the load generator's core (mock + generator at >90%), not by the proxy: \
             a floor for its req/s; its CPU µs/req still holds."
        );
    }
    println!();
    println!("details:");
    println!();
    println!(
        "| target | target CPU % at saturation | core {} busy % | core {} busy % | other load % \
         (saturation / fixed) \
         | CPU µs/req @{} rps | achieved rps | max ms @{} rps | stream TTFB p99 ms \
         | stream complete p50 ms | streams | CPU µs/req by round | p99 ms by round \
         | added p99 ms by round |",
        s.proxy_core, s.load_core, s.rate, s.rate
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let list = |v: &[f64], signed: bool| {
        if v.is_empty() {
            "—".to_owned()
        } else {
            v.iter()
                .map(|x| {
                    if signed {
                        format!("{x:+.2}")
                    } else {
                        format!("{x:.2}")
                    }
                })
                .collect::<Vec<_>>()
                .join(" / ")
        }
    };
    for r in results {
        let added_rounds = if r.name == "direct" {
            "—".to_owned()
        } else {
            list(&r.fixed_round_added_p99, true)
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {:.1} | {:.0} | {:.2} | {:.3} | {:.3} | {} | {} | {} | {} |",
            r.name,
            r.sat_util * 100.0,
            r.proxy_core_busy * 100.0,
            r.load_core_busy * 100.0,
            (r.foreign + r.steal) * 100.0,
            r.fixed_other * 100.0,
            r.fixed_cpu_us,
            r.fixed_achieved_rps,
            r.fixed_max_ms,
            r.ttfb_p99_ms,
            r.stream_total_p50_ms,
            r.ttfb_n,
            r.sat_round_cpu_us
                .iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" / "),
            list(&r.fixed_round_p99, false),
            added_rounds,
        );
    }
    println!();
    println!(
        "other load = CPU used by processes not started here, plus hypervisor steal, in % of \
         one core, during the saturation and the fixed-rate runs."
    );
    for r in results {
        if r.fixed_other > 0.05 {
            println!(
                "WARNING {}: the machine was not quiet during its fixed-rate rounds ({:.0}% of a \
                 core used by other processes or stolen): its latency figures are unreliable; \
                 rerun.",
                r.name,
                r.fixed_other * 100.0
            );
        }
        if r.foreign + r.steal > 0.05 {
            println!(
                "WARNING {}: the machine was not quiet during its saturation run ({:.0}% of a core \
                 used by other processes, {:.0}% stolen): its figures are unreliable; rerun.",
                r.name,
                r.foreign * 100.0,
                r.steal * 100.0
            );
        }
    }
    if let Some(d) = direct {
        for r in results.iter().filter(|r| r.name != "direct") {
            if r.stream_total_p50_ms - d.stream_total_p50_ms > 5.0 {
                println!(
                    "WARNING {}: a stream takes {:.1} ms to complete through it against {:.2} ms \
                     direct (p50, sequential, keep-alive): it holds back chunks after the first \
                     ({} of {} streams done in the 3 s allowed).",
                    r.name, r.stream_total_p50_ms, d.stream_total_p50_ms, r.ttfb_n, s.stream_max
                );
            }
        }
    }
    println!();
    let mut any_problem = false;
    for r in results {
        if r.tally.problems() > 0 {
            any_problem = true;
            let statuses: Vec<String> = r
                .tally
                .statuses
                .iter()
                .map(|(s, n)| format!("{n}× HTTP {s}"))
                .collect();
            println!(
                "PROBLEMS {}: {} of {} requests failed or were malformed ({}; {} I/O errors, {} \
                 timeouts, {} malformed bodies); first: {}",
                r.name,
                r.tally.problems(),
                r.sent,
                if statuses.is_empty() {
                    "no non-200 statuses".into()
                } else {
                    statuses.join(", ")
                },
                r.tally.io_errors,
                r.tally.timeouts,
                r.tally.bad_bodies,
                r.tally.first_problem.as_deref().unwrap_or("?")
            );
        }
    }
    if !any_problem {
        println!(
            "all answers were 200 with well-formed bodies ({} requests, warm-ups included).",
            results.iter().map(|r| r.sent).sum::<u64>()
        );
    }
    println!();
    println!("targets (first cut):");
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    match (gw, nginx) {
        (Some(g), Some(n)) => {
            let limit = n.sat_cpu_us * CPU_RATIO_LIMIT;
            let ratio = g.sat_cpu_us / n.sat_cpu_us;
            let ok = g.sat_cpu_us <= limit;
            println!(
                "- CPU per request ≤ {CPU_RATIO_LIMIT}x nginx: switchyard {:.1} µs = {:.2}x nginx's \
                 {:.1} µs (limit {:.1} µs) → {}{}",
                g.sat_cpu_us,
                ratio,
                n.sat_cpu_us,
                limit,
                verdict(ok),
                if ok {
                    String::new()
                } else {
                    format!(
                        " by {:.1} µs ({:.0}% over)",
                        g.sat_cpu_us - limit,
                        (g.sat_cpu_us / limit - 1.0) * 100.0
                    )
                }
            );
        }
        (Some(g), None) => println!(
            "- CPU per request ≤ {CPU_RATIO_LIMIT}x nginx: switchyard {:.1} µs; nginx not run → SKIP",
            g.sat_cpu_us
        ),
        _ => {}
    }
    if let (Some(g), Some(d)) = (gw, direct) {
        let add = g.fixed_p99_ms - d.fixed_p99_ms;
        let ok = add < ADDED_P99_LIMIT_MS;
        println!(
            "- added p99 at {} req/s < {ADDED_P99_LIMIT_MS} ms: switchyard adds {:.3} ms ({:.2} vs \
             direct {:.2}) → {}{}",
            s.rate,
            add,
            g.fixed_p99_ms,
            d.fixed_p99_ms,
            verdict(ok),
            if ok {
                String::new()
            } else {
                format!(" by {:.3} ms", add - ADDED_P99_LIMIT_MS)
            }
        );
    }
    if let Some(g) = gw {
        let ok = g.rss_mb < RSS_LIMIT_MB;
        println!(
            "- peak RSS < {RSS_LIMIT_MB} MB: switchyard {:.1} MB → {}{}",
            g.rss_mb,
            verdict(ok),
            if ok {
                String::new()
            } else {
                format!(" by {:.1} MB", g.rss_mb - RSS_LIMIT_MB)
            }
        );
        if g.tally.problems() > 0 {
            println!(
                "- switchyard answered non-200s or malformed bodies: its figures are not valid"
            );
        }
    }
}
