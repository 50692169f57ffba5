//! Histogram samples do not pile up in a gateway that nobody scrapes: `server::run` keeps
//! the Prometheus recorder's upkeep running.
//!
//! The recorder has no accessor for the samples it holds, so this measures what a user
//! would: the process's resident memory while samples are recorded and never rendered.
//! Each sample the recorder keeps costs at least 8 bytes, so the 4 million recorded here
//! would add 32 MB or more without the upkeep. Alone in its binary: resident memory is
//! process-wide, and `cargo test` runs a binary's tests on threads of one process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

use std::sync::Arc;

use switchyard::{
    config::Config,
    gateway::Gateway,
    server::{self, Listeners},
    telemetry,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[[providers]]
name = "a"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "k"
[[models]]
name = "chat"
deployments = [{ provider = "a", model = "m1" }]
"#;

const BATCH: usize = 100_000;
const BATCHES: usize = 40;

/// The process's resident memory in bytes (Linux).
#[cfg(target_os = "linux")]
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[cfg(target_os = "linux")]
#[tokio::test(start_paused = true)]
async fn histogram_samples_stay_bounded_without_a_scrape() {
    let gateway = Arc::new(Gateway::new(Config::parse(CONFIG).unwrap()).unwrap());
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(server::run(
        Listeners { http, grpc: None },
        gateway,
        stop.clone().cancelled_owned(),
    ));
    // The server installs the recorder when its task first runs; install it now, so the
    // histogram below is the recorder's and not a no-op.
    telemetry::prometheus();
    let histogram = metrics::histogram!("switchyard_test_upkeep_seconds");
    let record = || {
        for i in 0..BATCH {
            histogram.record((i % 1000) as f64 / 1000.0);
        }
    };
    // Warm up (allocator arenas, the recorder's buckets), then measure.
    record();
    tokio::time::sleep(telemetry::UPKEEP_EVERY).await;
    let before = resident();
    for _ in 0..BATCHES {
        record();
        // Paused time moves to the next upkeep tick at once.
        tokio::time::sleep(telemetry::UPKEEP_EVERY).await;
    }
    let grown = resident().saturating_sub(before);
    println!(
        "resident memory grew {:.1} MB over {} samples",
        grown as f64 / 1e6,
        BATCH * BATCHES
    );
    assert!(
        grown < 12_000_000,
        "resident memory grew {grown} bytes over {} unrendered samples: the recorder keeps them",
        BATCH * BATCHES
    );
    // The samples were folded into the histogram, not lost.
    let rendered = telemetry::prometheus().render();
    let count = (BATCH * (BATCHES + 1)).to_string();
    assert!(
        rendered.contains(&format!("switchyard_test_upkeep_seconds_count {count}")),
        "{}",
        rendered
            .lines()
            .filter(|l| l.contains("upkeep"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    stop.cancel();
    server.await.unwrap().unwrap();
}
