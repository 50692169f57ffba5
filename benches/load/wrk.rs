//! Saturation by Debian's `wrk` (`-t2 -c64`, keep-alive): requests/s, the target's CPU
//! per request and non-2xx answers, pinned as the rest of the bench, and once on both cores.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::{
    Res,
    fleet::{Upstreams, gateway_config},
    http::{AUTHORIZATION, chat_body},
    phases::per_req,
    processes::{Cores, Spawned, TempDir},
    procfs::cpu_ticks,
    target::{Target, TargetResult},
};

/// wrk's threads and connections, as the issue measured them.
pub(crate) const THREADS: u32 = 2;
pub(crate) const CONNECTIONS: u32 = 64;

/// wrk's path, when it is installed (Debian's `wrk` package).
pub(crate) fn find_wrk() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("wrk"))
        .find(|p| p.is_file())
}

/// One wrk run: where, on which cores, for how long.
pub(crate) struct WrkJob<'a> {
    pub(crate) wrk: &'a Path,
    /// The Lua script that makes every request the bench's chat completion.
    pub(crate) script: &'a Path,
    pub(crate) addr: SocketAddr,
    pub(crate) cores: Cores,
    pub(crate) secs: u64,
}

/// What wrk printed about one run.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct WrkRun {
    /// Requests completed (any status).
    pub(crate) requests: u64,
    pub(crate) rps: f64,
    pub(crate) non_2xx: u64,
    /// connect + read + write + timeout errors.
    pub(crate) socket_errors: u64,
}

/// Writes the Lua script that turns wrk's GET into the bench's POST (the same body and
/// `Authorization` header the bench's own generator sends).
pub(crate) fn write_script(dir: &Path, model: &str) -> Res<PathBuf> {
    let path = dir.join(format!("wrk-{model}.lua"));
    let body = chat_body(model, "Say hello in one short sentence.", false);
    let script = format!(
        "wrk.method = \"POST\"\nwrk.path = \"/v1/chat/completions\"\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Accept\"] = \"application/json\"\n\
         wrk.headers[\"Authorization\"] = \"{AUTHORIZATION}\"\n\
         wrk.body = [[{body}]]\n"
    );
    fs::write(&path, script).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// Runs wrk to the end and reads its summary.
pub(crate) fn run(job: &WrkJob<'_>) -> Res<WrkRun> {
    let out = Command::new("taskset")
        .arg("-c")
        .arg(job.cores.list())
        .arg(job.wrk)
        .args([
            format!("-t{THREADS}"),
            format!("-c{CONNECTIONS}"),
            format!("-d{}s", job.secs),
            "-s".to_owned(),
            job.script.display().to_string(),
            format!("http://{}/v1/chat/completions", job.addr),
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(&text).ok_or_else(|| format!("cannot read wrk's summary: {text}"))
}

/// Reads `N requests in`, `Requests/sec:`, `Non-2xx or 3xx responses:` and `Socket errors:`.
pub(crate) fn parse(text: &str) -> Option<WrkRun> {
    let mut run = WrkRun::default();
    let mut seen = (false, false);
    for line in text.lines().map(str::trim) {
        if let Some((n, _)) = line.split_once(" requests in ") {
            run.requests = n.trim().parse().ok()?;
            seen.0 = true;
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().ok()?;
            seen.1 = true;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.non_2xx = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // `connect 0, read 0, write 0, timeout 0`
            run.socket_errors = v
                .split(',')
                .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    (seen.0 && seen.1).then_some(run)
}

/// A target's wrk runs, over the rounds.
#[derive(Default)]
pub(crate) struct WrkAcc {
    requests: u64,
    secs: f64,
    ticks: u64,
}

/// wrk's figures for one target, over all rounds.
#[derive(Clone, Default)]
pub(crate) struct WrkFigures {
    pub(crate) rps: f64,
    pub(crate) cpu_us: f64,
    pub(crate) non_2xx: u64,
    pub(crate) socket_errors: u64,
    pub(crate) round_cpu_us: Vec<f64>,
}

/// One round: wrk against the target's fast model, the target's CPU ticks around it.
pub(crate) fn round(
    t: &Target,
    job: &WrkJob<'_>,
    clk_tck: f64,
    acc: &mut WrkAcc,
    r: &mut TargetResult,
) -> Res<()> {
    let cpu0 = cpu_ticks(t.cpu_pid)?;
    let got = run(job)?;
    let ticks = cpu_ticks(t.cpu_pid)?.saturating_sub(cpu0);
    let w = r.wrk.get_or_insert_with(WrkFigures::default);
    w.round_cpu_us
        .push(per_req(ticks as f64 / clk_tck, got.requests));
    w.non_2xx += got.non_2xx;
    w.socket_errors += got.socket_errors;
    r.sent += got.requests;
    acc.requests += got.requests;
    acc.ticks += ticks;
    // wrk's own rate is over its run; weigh each round by its length.
    acc.secs += got.requests as f64 / got.rps.max(f64::MIN_POSITIVE);
    w.rps = acc.requests as f64 / acc.secs;
    w.cpu_us = per_req(acc.ticks as f64 / clk_tck, acc.requests);
    Ok(())
}

/// wrk against a gateway and a mock started on every core, wrk on every core too.
pub(crate) struct AllCores<'a> {
    pub(crate) tmp: &'a TempDir,
    /// The mocks the gateway routes to besides the fresh fast one (slow, paced).
    pub(crate) upstreams: Upstreams,
    pub(crate) wrk: &'a Path,
    pub(crate) script: &'a Path,
    pub(crate) cores: usize,
    pub(crate) secs: u64,
    pub(crate) rust_log: Option<&'a str>,
    pub(crate) clk_tck: f64,
}

/// The all-cores run's figures.
pub(crate) struct AllCoresFigures {
    pub(crate) cores: usize,
    pub(crate) run: WrkRun,
    pub(crate) cpu_us: f64,
}

impl AllCores<'_> {
    /// Starts the processes unpinned (so each runtime sizes itself to every core), warms
    /// them for a second, then measures.
    pub(crate) fn run(self) -> Res<AllCoresFigures> {
        let cores = Cores::first(self.cores);
        let fast = Spawned::mock(self.tmp, cores.clone(), "fast-all-cores", "")?;
        let up = Upstreams {
            fast: fast.addr,
            ..self.upstreams
        };
        let gateway = Spawned::gateway(
            self.tmp,
            cores.clone(),
            "switchyard-all-cores",
            &gateway_config(up),
            self.rust_log,
        )?;
        let mut job = WrkJob {
            wrk: self.wrk,
            script: self.script,
            addr: gateway.addr,
            cores,
            secs: 1,
        };
        run(&job)?;
        job.secs = self.secs;
        let cpu0 = cpu_ticks(gateway.pid())?;
        let got = run(&job)?;
        let ticks = cpu_ticks(gateway.pid())?.saturating_sub(cpu0);
        gateway.check_alive()?;
        fast.check_alive()?;
        Ok(AllCoresFigures {
            cores: self.cores,
            cpu_us: per_req(ticks as f64 / self.clk_tck, got.requests),
            run: got,
        })
    }
}
