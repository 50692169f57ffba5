//! The routing decision (hard filters + policy) for one request over ten candidates, per
//! call: p50/p99/p99.9 for each shipped policy and the static order, on one thread and on
//! two threads at once (both cores busy), plus what a thread's first call pays to build
//! its VM.
//!
//! This is the real path: `Catalog::route` on a catalog built from a config, with the
//! built-in scripts, live health and prices. Each configuration runs for `ROUTE_SECS`
//! (default 2) seconds per thread.
//!
//! `cargo bench --bench routing` (`ROUTE_POLICIES=cost,static` runs only those).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark binary"
)]
#![allow(
    clippy::disallowed_types,
    reason = "a benchmark times the wall clock; no paused tokio clock is involved"
)]

use std::{
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use switchyard::{
    auth::Caller, chat::ChatRequest, config::Config, gateway::Gateway, routing::Needs,
};

const CANDIDATES: usize = 10;

/// Policies measured: the static order, the shipped ones, and `first` (a one-line script
/// returning the first candidate: the engine's own overhead).
const POLICIES: [&str; 7] = [
    "static", "first", "failover", "cost", "latency", "security", "weighted",
];

fn config() -> Config {
    let dir = std::env::temp_dir().join(format!("switchyard-routing-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("first.lua"),
        "function route(r, c) return { c[1].id } end",
    )
    .unwrap();
    let mut text = format!("[routing]\nscripts_dir = \"{}\"\n\n", dir.display());
    for i in 0..CANDIDATES {
        text.push_str(&format!(
            "[[providers]]\nname = \"p{i}\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"k\"\n\n"
        ));
    }
    for policy in POLICIES {
        let deployments: Vec<String> = (0..CANDIDATES)
            .map(|i| {
                format!(
                    "{{ provider = \"p{i}\", model = \"gpt-4o-mini\", price_in = {}.0, price_out = {}.0, \
                     quality = {}, tags = [\"soc2\"], region = \"eu-west-{}\", weight = {} }}",
                    CANDIDATES - i,
                    4 * (CANDIDATES - i),
                    1 + i % 3,
                    i % 3,
                    1 + i % 4
                )
            })
            .collect();
        text.push_str(&format!(
            "[[models]]\nname = \"{policy}\"\npolicy = \"{policy}\"\nparams = {{ max_p95_ms = 800, min_quality = 2 }}\ndeployments = [\n  {}\n]\n\n",
            deployments.join(",\n  ")
        ));
    }
    Config::parse(&text).unwrap()
}

fn request(model: &str) -> ChatRequest {
    serde_json::from_value(serde_json::json!({
        "model": model,
        "messages": [
            { "role": "system", "content": "You are terse." },
            { "role": "user", "content": "Summarise the quarter in three bullets." }
        ],
        "max_tokens": 300
    }))
    .unwrap()
}

/// Per-call nanoseconds for `secs`, after a warm-up. With `vary`, every call asks for a
/// different `max_tokens`, so no decision is reused from the cache of deterministic
/// policies: the policy runs every time.
fn measure(gw: &Gateway, model: &str, secs: f64, vary: bool) -> Vec<u32> {
    let mut req = request(model);
    let caller = Caller::anonymous();
    let live = gw.live();
    for _ in 0..2_000 {
        let needs = Needs::of(&req);
        std::hint::black_box(live.catalog.route(&req, &needs, &caller).unwrap());
    }
    let mut samples = Vec::with_capacity(1 << 20);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        for i in 0..256u32 {
            if vary {
                req.max_tokens = Some(1 + (samples.len() as u32 + i) % 4096);
            }
            let t = Instant::now();
            let needs = Needs::of(&req);
            let route = live.catalog.route(&req, &needs, &caller).unwrap();
            std::hint::black_box(&route);
            samples.push(t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
        }
    }
    samples.sort_unstable();
    samples
}

fn pct(s: &[u32], p: f64) -> f64 {
    let i = ((s.len() as f64 * p) as usize).min(s.len() - 1);
    f64::from(s[i]) / 1000.0
}

fn main() {
    let secs: f64 = std::env::var("ROUTE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let gw = Arc::new(Gateway::new(config()).unwrap());

    // A thread's first decision builds its VM (every model's candidate tables).
    let first = {
        let gw = gw.clone();
        std::thread::spawn(move || {
            let req = request("cost");
            let t = Instant::now();
            let live = gw.live();
            live.catalog
                .route(&req, &Needs::of(&req), &Caller::anonymous())
                .unwrap();
            t.elapsed()
        })
        .join()
        .unwrap()
    };
    println!(
        "first decision on a new thread (builds its VM): {:.0} µs",
        first.as_secs_f64() * 1e6
    );
    println!();
    println!("routing decision with {CANDIDATES} candidates (filters + policy), µs per call:");
    println!();
    println!("| policy | threads | calls | p50 | p99 | p99.9 | max | calls/s (all threads) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let only = std::env::var("ROUTE_POLICIES").ok();
    for policy in POLICIES {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|p| p == policy))
        {
            continue;
        }
        for (threads, vary) in [(1usize, true), (2, true), (1, false)] {
            let barrier = Arc::new(Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let gw = gw.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        measure(&gw, policy, secs, vary)
                    })
                })
                .collect();
            let mut all: Vec<u32> = Vec::new();
            for h in handles {
                all.extend(h.join().unwrap());
            }
            all.sort_unstable();
            let busy_s: f64 = all.iter().map(|&n| f64::from(n)).sum::<f64>() / 1e9 / threads as f64;
            println!(
                "| {policy}{} | {threads} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} |",
                if vary { "" } else { " (same request repeated)" },
                all.len(),
                pct(&all, 0.50),
                pct(&all, 0.99),
                pct(&all, 0.999),
                f64::from(*all.last().unwrap()) / 1000.0,
                all.len() as f64 / busy_s
            );
        }
    }
    println!();
    println!(
        "Two threads each have their own VM: if the design serialised them, the two-thread \
         p50 would double and calls/s would stay flat."
    );
}
