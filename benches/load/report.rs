//! The report: tables of figures, warnings, problems and the verdict on the targets.

use crate::{
    ADDED_P99_LIMIT_MS, CACHE_HIT_P99_MS, CPU_RATIO_LIMIT, LIMITS_CPU_LIMIT, OTLP_CPU_LIMIT,
    POLICY_CPU_LIMIT, REDIS_CACHE_HIT_P99_MS, RSS_LIMIT_MB, Settings, target::TargetResult,
};

pub(crate) fn print_report(results: &[TargetResult], s: Settings) {
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
    if let (Some(g), Some(c)) = (gw, results.iter().find(|r| r.name == "switchyard-cost")) {
        let over = c.sat_cpu_us / g.sat_cpu_us - 1.0;
        let ok = over <= POLICY_CPU_LIMIT;
        println!(
            "- CPU per request with the cost-aware Lua policy ≤ {:.0}% above the static order \
             (same process, same {} candidates, same run): {:.1} vs {:.1} µs = {:+.1}% → {}",
            POLICY_CPU_LIMIT * 100.0,
            crate::DEPLOYMENTS,
            c.sat_cpu_us,
            g.sat_cpu_us,
            over * 100.0,
            verdict(ok)
        );
        println!(
            "  by round (static / cost): {}",
            g.sat_round_cpu_us
                .iter()
                .zip(&c.sat_round_cpu_us)
                .map(|(a, b)| format!("{a:.1}/{b:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let (Some(g), Some(l)) = (gw, results.iter().find(|r| r.name == "switchyard-limits")) {
        let over = l.sat_cpu_us / g.sat_cpu_us - 1.0;
        println!(
            "- CPU per request with in-process limits (reserve and settle on every request) ≤ \
             {:.0}% above none (same process, same run): {:.1} vs {:.1} µs = {:+.1}% → {}",
            LIMITS_CPU_LIMIT * 100.0,
            l.sat_cpu_us,
            g.sat_cpu_us,
            over * 100.0,
            verdict(over <= LIMITS_CPU_LIMIT)
        );
        println!(
            "  by round (none / limits): {}",
            g.sat_round_cpu_us
                .iter()
                .zip(&l.sat_round_cpu_us)
                .map(|(a, b)| format!("{a:.1}/{b:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let (Some(g), Some(o)) = (gw, results.iter().find(|r| r.name == "switchyard-otlp")) {
        let over = o.sat_cpu_us / g.sat_cpu_us - 1.0;
        println!(
            "- CPU per request with OTLP tracing (sampling 1.0, loopback collector) ≤ {:.0}% \
             above none (two processes, same config, same run): {:.1} vs {:.1} µs = {:+.1}% → {}",
            OTLP_CPU_LIMIT * 100.0,
            o.sat_cpu_us,
            g.sat_cpu_us,
            over * 100.0,
            verdict(over <= OTLP_CPU_LIMIT)
        );
        println!(
            "  by round (off / on): {}",
            g.sat_round_cpu_us
                .iter()
                .zip(&o.sat_round_cpu_us)
                .map(|(a, b)| format!("{a:.1}/{b:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (name, limit, place) in [
        ("switchyard-cache", CACHE_HIT_P99_MS, "in process"),
        (
            "switchyard-redis-cache",
            REDIS_CACHE_HIT_P99_MS,
            "in Redis on loopback",
        ),
    ] {
        if let Some(c) = results.iter().find(|r| r.name == name) {
            let floor = direct.map_or(String::new(), |d| {
                format!(
                    "; the direct mock's own answers: p50 {:.0} µs, p99 {:.0} µs",
                    d.seq_p50_ms * 1000.0,
                    d.seq_p99_ms * 1000.0
                )
            });
            println!(
                "- cache-hit p99 through the gateway (sequential JSON requests, whole answer), \
                 entries {place}, ≤ {:.0} µs: p50 {:.0} µs, p99 {:.0} µs{floor} ({:.0} hits/s at \
                 saturation, {:.1} µs CPU a hit; at {} req/s open loop p50 {:.2} ms, p99 {:.2} ms, \
                 the open-loop timer's millisecond included) → {}",
                limit * 1000.0,
                c.seq_p50_ms * 1000.0,
                c.seq_p99_ms * 1000.0,
                c.sat_rps,
                c.sat_cpu_us,
                s.rate,
                c.fixed_p50_ms,
                c.fixed_p99_ms,
                verdict(c.seq_p99_ms <= limit)
            );
        }
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
