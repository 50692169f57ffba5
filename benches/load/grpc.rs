//! The gRPC `Chat` path at saturation: unary calls in a closed loop over a few HTTP/2
//! connections, the gateway's CPU per call against REST's (issue 11: within 20%).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use switchyard::api::grpc::pb::{self, gateway_client::GatewayClient};

use crate::{Res, procfs::cpu_ticks};

/// HTTP/2 connections the calls are spread over.
const CHANNELS: usize = 4;

/// What gRPC saturation measured: one run, or the sum of several.
#[derive(Default)]
pub(crate) struct GrpcFigures {
    /// Calls answered, and failed.
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// Seconds measured, and the gateway's CPU seconds over them.
    pub(crate) secs: f64,
    pub(crate) cpu_secs: f64,
}

impl GrpcFigures {
    pub(crate) fn add(&mut self, run: &GrpcFigures) {
        self.ok += run.ok;
        self.errors += run.errors;
        self.secs += run.secs;
        self.cpu_secs += run.cpu_secs;
    }

    pub(crate) fn rps(&self) -> f64 {
        self.ok as f64 / self.secs
    }

    /// The gateway's CPU µs per answered call.
    pub(crate) fn cpu_us(&self) -> f64 {
        if self.ok == 0 {
            f64::NAN
        } else {
            self.cpu_secs / self.ok as f64 * 1e6
        }
    }
}

fn request(model: &str) -> pb::ChatRequest {
    pb::ChatRequest {
        model: model.to_owned(),
        messages: vec![pb::Message {
            role: "user".to_owned(),
            content: Some("Say hello to the load bench.".to_owned()),
            ..pb::Message::default()
        }],
        max_tokens: Some(16),
        ..pb::ChatRequest::default()
    }
}

/// `in_flight` calls at a time for `secs` (after a 0.5 s warm-up) against the gateway at
/// `addr` (process `pid`).
pub(crate) async fn saturation(
    addr: SocketAddr,
    model: &str,
    pid: u32,
    secs: u64,
    in_flight: usize,
    clk_tck: f64,
) -> Res<GrpcFigures> {
    let mut clients = Vec::with_capacity(CHANNELS);
    for _ in 0..CHANNELS {
        clients.push(
            GatewayClient::connect(format!("http://{addr}"))
                .await
                .map_err(|e| format!("gRPC: connecting to {addr}: {e}"))?,
        );
    }
    let req = request(model);
    run(&clients, &req, in_flight, Duration::from_millis(500)).await;
    let cpu0 = cpu_ticks(pid)?;
    let started = Instant::now();
    let (ok, errors) = run(&clients, &req, in_flight, Duration::from_secs(secs)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_ticks(pid)?.saturating_sub(cpu0) as f64 / clk_tck;
    Ok(GrpcFigures {
        ok,
        errors,
        secs: elapsed,
        cpu_secs: cpu,
    })
}

/// Calls in a closed loop until `length` has passed: (answered, failed).
async fn run(
    clients: &[GatewayClient<tonic::transport::Channel>],
    req: &pb::ChatRequest,
    in_flight: usize,
    length: Duration,
) -> (u64, u64) {
    let until = Instant::now() + length;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..in_flight)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            let req = req.clone();
            let (ok, failed) = (ok.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    match client.chat(req.clone()).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}
