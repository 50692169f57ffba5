//! The verdict on each target the issues set: issue 11's per-request cost (MET / NOT MET),
//! then the policy, limits, tracing and cache targets (PASS / FAIL).

use crate::{
    CACHE_HIT_P99_MS, LIMITS_CPU_LIMIT, LOW_RATE, OTLP_CPU_LIMIT, POLICY_CPU_LIMIT,
    REDIS_CACHE_HIT_P99_MS, Settings, grpc::GrpcFigures, target::TargetResult,
};

/// Issue 11's targets.
const WRK_CPU_RATIO_LIMIT: f64 = 2.5;
const LOW_RATE_P50_OVER_NGINX_MS: f64 = 0.3;
const ADDED_P99_LIMIT_MS: f64 = 1.0;
const TTFB_ADDED_LIMIT_MS: f64 = 0.5;
const RSS_LIMIT_MB: f64 = 40.0;
/// The gRPC `Chat` path's CPU per call may exceed REST's by this share.
const GRPC_OVER_REST_LIMIT: f64 = 0.20;
const SOAK_GROWTH_LIMIT_MB: f64 = 5.0;
/// The soak's last window's JSON p99 may exceed the first's by this much (ms) and this
/// share before it counts as drift.
const DRIFT_SLACK_MS: f64 = 0.2;
const DRIFT_SLACK_SHARE: f64 = 0.25;

fn met(ok: bool) -> &'static str {
    if ok { "MET" } else { "NOT MET" }
}

fn find<'a>(results: &'a [TargetResult], name: &str) -> Option<&'a TargetResult> {
    results.iter().find(|r| r.name == name)
}

pub(crate) fn print_verdicts(results: &[TargetResult], s: Settings, grpc: Option<&GrpcFigures>) {
    println!("issue 11 targets (per-request cost):");
    print_issue11(results, s);
    print_grpc(results, grpc);
    println!();
    println!("other targets:");
    print_others(results, s);
}

/// gRPC `Chat` against REST, both in closed loops of `LOAD_CONNS` calls in flight (the
/// bench's own generator for REST).
fn print_grpc(results: &[TargetResult], grpc: Option<&GrpcFigures>) {
    let (Some(g), Some(rpc)) = (find(results, "switchyard"), grpc) else {
        println!("- gRPC Chat within 20% of REST's CPU per request: not run → SKIP");
        return;
    };
    let over = rpc.cpu_us() / g.sat_cpu_us - 1.0;
    println!(
        "- gRPC Chat CPU per call within {:.0}% of REST's: {:.1} µs against REST's {:.1} µs \
         (the generator's saturation) = {:+.0}%, {:.0} calls/s, {} failed → {}",
        GRPC_OVER_REST_LIMIT * 100.0,
        rpc.cpu_us(),
        g.sat_cpu_us,
        over * 100.0,
        rpc.rps(),
        rpc.errors,
        met(over <= GRPC_OVER_REST_LIMIT && rpc.errors == 0)
    );
}

fn print_issue11(results: &[TargetResult], s: Settings) {
    let direct = find(results, "direct");
    let nginx = find(results, "nginx");
    let Some(g) = find(results, "switchyard") else {
        println!("- switchyard not run: nothing to judge");
        return;
    };
    match (g.wrk.as_ref(), nginx.and_then(|n| n.wrk.as_ref())) {
        (Some(gw), Some(nw)) => {
            let ratio = gw.cpu_us / nw.cpu_us;
            println!(
                "- CPU per request under wrk ≤ {WRK_CPU_RATIO_LIMIT}x nginx's: switchyard {:.1} µs \
                 = {ratio:.2}x nginx's {:.1} µs (limit {:.1} µs) → {}",
                gw.cpu_us,
                nw.cpu_us,
                nw.cpu_us * WRK_CPU_RATIO_LIMIT,
                met(ratio <= WRK_CPU_RATIO_LIMIT)
            );
        }
        _ => println!(
            "- CPU per request under wrk ≤ {WRK_CPU_RATIO_LIMIT}x nginx's: wrk or nginx not run → SKIP"
        ),
    }
    if let Some(n) = nginx {
        println!(
            "  (the bench's own generator: switchyard {:.1} µs = {:.2}x nginx's {:.1} µs)",
            g.sat_cpu_us,
            g.sat_cpu_us / n.sat_cpu_us,
            n.sat_cpu_us
        );
    }
    let Some(d) = direct else {
        println!("- direct not run: no added latency to judge");
        return;
    };
    match nginx {
        Some(n) => {
            let (ga, na) = (g.low.p50_ms - d.low.p50_ms, n.low.p50_ms - d.low.p50_ms);
            println!(
                "- added p50 at {LOW_RATE} req/s over 256 connections within \
                 {LOW_RATE_P50_OVER_NGINX_MS} ms of nginx's: switchyard {ga:+.3} ms, nginx \
                 {na:+.3} ms, difference {:+.3} ms → {}",
                ga - na,
                met(ga - na <= LOW_RATE_P50_OVER_NGINX_MS)
            );
        }
        None => println!("- added p50 at {LOW_RATE} req/s: nginx not run → SKIP"),
    }
    let add = g.fixed_p99_ms - d.fixed_p99_ms;
    println!(
        "- added p99 at {} req/s < {ADDED_P99_LIMIT_MS} ms: switchyard {add:+.3} ms ({:.2} vs \
         direct {:.2}) → {}",
        s.rate,
        g.fixed_p99_ms,
        d.fixed_p99_ms,
        met(add < ADDED_P99_LIMIT_MS)
    );
    let ttfb = g.paced.ttfb_p50_ms - d.paced.ttfb_p50_ms;
    println!(
        "- paced stream TTFB added ≤ {TTFB_ADDED_LIMIT_MS} ms: switchyard {ttfb:+.3} ms (p50 \
         {:.3} vs direct {:.3}; first content {:+.3} ms) → {}",
        g.paced.ttfb_p50_ms,
        d.paced.ttfb_p50_ms,
        g.paced.content_p50_ms - d.paced.content_p50_ms,
        met(ttfb <= TTFB_ADDED_LIMIT_MS)
    );
    println!(
        "- peak RSS at saturation < {RSS_LIMIT_MB} MB: switchyard {:.1} MB → {}",
        g.rss_mb,
        met(g.rss_mb < RSS_LIMIT_MB)
    );
    match &g.soak {
        Some(k) => {
            let growth = k.growth_mb();
            println!(
                "- soak RSS growth after warm-up < {SOAK_GROWTH_LIMIT_MB} MB: {:.1} → {:.1} MB = \
                 {growth:+.1} MB over {} s → {}",
                k.rss_warm_mb,
                k.rss_end_mb,
                k.secs,
                met(growth < SOAK_GROWTH_LIMIT_MB)
            );
            let (first, last) = (
                k.json_p99_ms.first().copied().unwrap_or(f64::NAN),
                k.json_p99_ms.last().copied().unwrap_or(f64::NAN),
            );
            let drift = last > first * (1.0 + DRIFT_SLACK_SHARE) + DRIFT_SLACK_MS;
            println!(
                "- soak without error or p99 drift: {} errors; JSON p99 first window {first:.2} \
                 ms, last {last:.2} ms (drift = last > first × {} + {DRIFT_SLACK_MS} ms) → {}",
                k.errors,
                1.0 + DRIFT_SLACK_SHARE,
                met(k.errors == 0 && !drift)
            );
        }
        None => println!(
            "- soak RSS growth < {SOAK_GROWTH_LIMIT_MB} MB: no soak (LOAD_SOAK_SECS=0) → SKIP"
        ),
    }
    if g.tally.problems() > 0 {
        println!("- switchyard answered non-200s or malformed bodies: its figures are not valid");
    }
}

fn print_others(results: &[TargetResult], s: Settings) {
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let gw = find(results, "switchyard");
    let direct = find(results, "direct");
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
    if let (Some(g), Some(d)) = (gw, results.iter().find(|r| r.name == "switchyard-data")) {
        println!(
            "- CPU per request with every PII detector, restore and a content rule on (two \
             processes, same config, same run; no target): {:.1} vs {:.1} µs = {:+.1}%",
            d.sat_cpu_us,
            g.sat_cpu_us,
            (d.sat_cpu_us / g.sat_cpu_us - 1.0) * 100.0
        );
    }
    if let (Some(g), Some(d)) = (gw, results.iter().find(|r| r.name == "switchyard-signed")) {
        println!(
            "- CPU per request with every request HMAC-signed (a fresh signature and body each \
             time, replay set in process; two processes, same run; no target): {:.1} vs {:.1} \
             µs = {:+.1}%",
            d.sat_cpu_us,
            g.sat_cpu_us,
            (d.sat_cpu_us / g.sat_cpu_us - 1.0) * 100.0
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
}
