//! The report: the run's settings, one table of figures, details, soak and all-cores lines,
//! warnings and problems (the verdicts are in `verdict.rs`).

use std::path::Path;

use crate::{
    DELAY_MS, LOW_CONNS, LOW_RATE, PACED_FAULT, SWITCHYARD, Settings,
    target::TargetResult,
    verdict::print_verdicts,
    wrk::{AllCoresFigures, CONNECTIONS, THREADS},
};

/// Figures that belong to no single target.
#[derive(Default)]
pub(crate) struct Extras {
    pub(crate) all_cores: Option<AllCoresFigures>,
    /// The gRPC `Chat` path at saturation, all rounds.
    pub(crate) grpc: Option<crate::grpc::GrpcFigures>,
}

/// What runs where and how, before the first phase.
pub(crate) fn print_header(
    s: Settings,
    nginx: Option<&Path>,
    wrk: Option<&Path>,
    rust_log: Option<&str>,
) {
    let version = |bin: &Path, arg: &str| {
        std::process::Command::new(bin)
            .arg(arg)
            .output()
            .map(|o| {
                let text = [o.stdout, o.stderr].concat();
                let text = String::from_utf8_lossy(&text);
                text.lines().next().unwrap_or("").trim().to_owned()
            })
            .unwrap_or_default()
    };
    println!("# switchyard load bench");
    println!();
    println!(
        "cores: {}; proxy under test pinned to core {}, load generator, wrk and mocks to core {}",
        s.cores, s.proxy_core, s.load_core
    );
    println!(
        "targets take turns in {} rounds per phase. saturation: {} keep-alive HTTP/1.1 \
         connections, closed loop, 0.5 s warm-up + {} s per round; wrk: -t{THREADS} -c{CONNECTIONS} \
         {} s per round; fixed rate: {} req/s open loop against a {DELAY_MS} ms upstream, 0.5 s \
         warm-up + {} s per round, latency from the scheduled send time; low rate: {LOW_RATE} \
         req/s round-robin over {LOW_CONNS} used connections, {} s per round; stream: up to {} \
         sequential requests; paced stream ({PACED_FAULT}): sequential for {} s; burst: \
         sequential ~200-chunk streams for {} s; soak: {}",
        s.rounds,
        s.conns,
        s.slice(s.secs),
        s.slice(s.wrk_secs),
        s.rate,
        s.slice(s.fixed_secs),
        s.slice(s.low_secs),
        s.stream_max,
        s.paced_secs,
        s.burst_secs,
        if s.soak.secs == 0 {
            "off (LOAD_SOAK_SECS=0)".to_owned()
        } else {
            format!("{} s at {} req/s", s.soak.secs, s.soak.rate)
        }
    );
    println!(
        "nginx: {}",
        nginx.map_or_else(
            || "not found (install nginx-light or nginx): row skipped".to_owned(),
            |b| version(b, "-v")
        )
    );
    println!(
        "wrk: {}",
        wrk.map_or_else(
            || "not found (apt-get install wrk): wrk phases skipped".to_owned(),
            |b| version(b, "-v")
        )
    );
    println!(
        "switchyard: {SWITCHYARD}; request log RUST_LOG={} ({}), stdout piped to the bench and \
         discarded",
        rust_log.unwrap_or("info"),
        if rust_log.is_some() {
            "from LOAD_RUST_LOG"
        } else {
            "the default, one JSON line per request"
        }
    );
    println!();
}

/// `v`, or `—` when it was not measured.
fn num(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "—".to_owned()
    } else {
        format!("{v:.decimals$}")
    }
}

/// A pair of figures, with what they add over direct's in brackets (direct: the pair alone).
fn pair_added(v: (f64, f64), base: Option<(f64, f64)>) -> String {
    if v.0.is_nan() {
        return "—".to_owned();
    }
    match base {
        Some(b) => format!(
            "{:.2} / {:.2} ({:+.3} / {:+.3})",
            v.0,
            v.1,
            v.0 - b.0,
            v.1 - b.1
        ),
        None => format!("{:.2} / {:.2}", v.0, v.1),
    }
}

/// A figure with what it adds over direct's in brackets.
fn one_added(v: f64, base: Option<f64>) -> String {
    if v.is_nan() {
        return "—".to_owned();
    }
    match base {
        Some(b) => format!("{v:.3} ({:+.3})", v - b),
        None => format!("{v:.3}"),
    }
}

fn print_main_table(results: &[TargetResult], s: Settings) {
    let direct = results.iter().find(|r| r.name == "direct");
    let nginx_wrk_cpu = results
        .iter()
        .find(|r| r.name == "nginx")
        .and_then(|n| n.wrk.as_ref())
        .map(|w| w.cpu_us);
    println!(
        "| target | req/s (generator) | CPU µs/req (generator) | wrk req/s | wrk CPU µs/req \
         | wrk CPU × nginx | wrk non-2xx | @{} rps p50 / p99 ms (added) | @{LOW_RATE} rps × \
         {LOW_CONNS} conns p50 / p99 ms (added) | paced TTFB p50 ms (added) | paced first \
         content p50 ms (added) | burst p50 ms (added; µs/chunk) | peak RSS MB | soak RSS MB \
         warm → end | soak JSON p99 ms first → last | non-200 |",
        s.rate
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let base = direct.filter(|_| r.name != "direct");
        // A proxy that had CPU to spare while the load generator's core was full was not
        // the limit: its req/s is a floor.
        let gen_bound = r.name != "direct" && r.sat_util < 0.9 && r.load_core_busy > 0.9;
        let (wrk_rps, wrk_cpu, wrk_ratio, wrk_bad) = match &r.wrk {
            Some(w) => (
                num(w.rps, 0),
                num(w.cpu_us, 1),
                nginx_wrk_cpu.map_or("—".into(), |n| format!("{:.2}", w.cpu_us / n)),
                (w.non_2xx + w.socket_errors).to_string(),
            ),
            None => ("—".into(), "—".into(), "—".into(), "—".into()),
        };
        let burst = if r.burst.total_p50_ms.is_nan() {
            "—".to_owned()
        } else {
            match base {
                Some(d) => {
                    let added = r.burst.total_p50_ms - d.burst.total_p50_ms;
                    format!(
                        "{:.3} ({added:+.3}; {:+.1})",
                        r.burst.total_p50_ms,
                        added * 1000.0 / d.burst.chunks.max(1) as f64
                    )
                }
                None => format!("{:.3} ({} chunks)", r.burst.total_p50_ms, r.burst.chunks),
            }
        };
        let (soak_rss, soak_p99) = match &r.soak {
            Some(k) => (
                format!(
                    "{:.1} → {:.1} ({:+.1})",
                    k.rss_warm_mb,
                    k.rss_end_mb,
                    k.growth_mb()
                ),
                format!(
                    "{} → {}",
                    num(k.json_p99_ms.first().copied().unwrap_or(f64::NAN), 2),
                    num(k.json_p99_ms.last().copied().unwrap_or(f64::NAN), 2)
                ),
            ),
            None => ("—".into(), "—".into()),
        };
        println!(
            "| {} | {:.0}{} | {:.1} | {wrk_rps} | {wrk_cpu} | {wrk_ratio} | {wrk_bad} | {} | {} \
             | {} | {} | {burst} | {:.1} | {soak_rss} | {soak_p99} | {} |",
            r.name,
            r.sat_rps,
            if gen_bound { " †" } else { "" },
            r.sat_cpu_us,
            pair_added(
                (r.fixed_p50_ms, r.fixed_p99_ms),
                base.map(|d| (d.fixed_p50_ms, d.fixed_p99_ms))
            ),
            pair_added(
                (r.low.p50_ms, r.low.p99_ms),
                base.map(|d| (d.low.p50_ms, d.low.p99_ms))
            ),
            one_added(r.paced.ttfb_p50_ms, base.map(|d| d.paced.ttfb_p50_ms)),
            one_added(r.paced.content_p50_ms, base.map(|d| d.paced.content_p50_ms)),
            r.rss_mb,
            r.tally.problems(),
        );
    }
    println!();
    println!(
        "direct = the mocks themselves (CPU and RSS are the mock's; the load generator shares \
         its core); its row gives each latency as measured, the others add in brackets what \
         they add over direct's. wrk non-2xx counts socket errors too. — = not run against \
         this target (wrk, low rate, paced, burst and soak run against direct, nginx and \
         switchyard only; the soak against switchyard unless LOAD_SOAK_TARGETS adds others)."
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
}

pub(crate) fn print_report(results: &[TargetResult], s: Settings, extras: &Extras) {
    print_main_table(results, s);
    print_soaks(results);
    print_all_cores(results, extras);
    println!();
    print_details(results, s);
    print_warnings(results, s);
    print_problems(results);
    println!();
    print_verdicts(results, s, extras.grpc.as_ref());
}

/// Each soak's samples, one line each, so the trend shows.
fn print_soaks(results: &[TargetResult]) {
    for r in results {
        let Some(k) = &r.soak else { continue };
        let list = |v: &[f64], d: usize| v.iter().map(|x| num(*x, d)).collect::<Vec<_>>().join(" ");
        println!();
        println!(
            "soak {}: {} s at {} req/s (70% JSON, 30% streams from the paced mock, 5% of stream \
             clients hanging up at the first content), {} requests, {} hung up on purpose, {} \
             errors",
            r.name, k.secs, k.rate, k.requests, k.hung_up, k.errors
        );
        println!("  RSS MB every 5 s: {}", list(&k.rss_mb, 1));
        println!(
            "  JSON p99 ms per {} s window: {}",
            k.window_secs,
            list(&k.json_p99_ms, 2)
        );
        println!(
            "  stream p99 ms per {} s window: {}",
            k.window_secs,
            list(&k.stream_p99_ms, 1)
        );
    }
}

fn print_all_cores(results: &[TargetResult], extras: &Extras) {
    let Some(a) = &extras.all_cores else { return };
    let pinned = results
        .iter()
        .find(|r| r.name == "switchyard")
        .and_then(|r| r.wrk.as_ref())
        .map_or(f64::NAN, |w| w.rps);
    println!();
    println!(
        "all cores: switchyard on {} cores {:.0} req/s against {:.0} req/s pinned to one core \
         ({:.2}x), {:.1} CPU µs/req, {} non-2xx or socket errors; wrk and the mock run on the \
         same cores, so the gateway does not have them to itself.",
        a.cores,
        a.run.rps,
        pinned,
        a.run.rps / pinned,
        a.cpu_us,
        a.run.non_2xx + a.run.socket_errors
    );
}

fn print_details(results: &[TargetResult], s: Settings) {
    let direct = results.iter().find(|r| r.name == "direct");
    println!("details:");
    println!();
    println!(
        "| target | target CPU % at saturation | core {} busy % | core {} busy % | other load % \
         (saturation / fixed) \
         | CPU µs/req @{} rps | achieved rps | max ms @{} rps | achieved rps @{LOW_RATE} \
         | stream TTFB p50 ms (added) | stream TTFB p99 ms | stream complete p50 ms | streams \
         | paced TTFB p99 ms | paced complete p50 ms | paced streams | burst chunks / streams \
         | CPU µs/req by round | wrk CPU µs/req by round | p99 ms by round \
         | added p99 ms by round |",
        s.proxy_core, s.load_core, s.rate, s.rate
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:\
         |---:|---:|---:|---:|"
    );
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
        let base = direct.filter(|_| r.name != "direct");
        let per_round = |v: &[f64]| {
            if v.is_empty() {
                return "—".to_owned();
            }
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {:.1} | {:.0} | {:.2} | {} | {} \
             | {:.3} | {:.3} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} |",
            r.name,
            r.sat_util * 100.0,
            r.proxy_core_busy * 100.0,
            r.load_core_busy * 100.0,
            (r.foreign + r.steal) * 100.0,
            r.fixed_other * 100.0,
            r.fixed_cpu_us,
            r.fixed_achieved_rps,
            r.fixed_max_ms,
            num(r.low.achieved_rps, 1),
            one_added(r.ttfb_p50_ms, base.map(|d| d.ttfb_p50_ms)),
            r.ttfb_p99_ms,
            r.stream_total_p50_ms,
            r.ttfb_n,
            num(r.paced.ttfb_p99_ms, 3),
            num(r.paced.total_p50_ms, 2),
            r.paced.n,
            r.burst.chunks,
            r.burst.n,
            per_round(&r.sat_round_cpu_us),
            per_round(r.wrk.as_ref().map_or(&[], |w| &w.round_cpu_us)),
            list(&r.fixed_round_p99, false),
            added_rounds,
        );
    }
}

fn print_warnings(results: &[TargetResult], s: Settings) {
    let direct = results.iter().find(|r| r.name == "direct");
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
}

fn print_problems(results: &[TargetResult]) {
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
}
