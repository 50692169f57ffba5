//! The processes under test (mocks, nginx, the gateways, Redis) and the targets they make.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
};

use crate::{
    CACHE, DELAY_MS, DEPLOYMENTS, FAST_COST_MODEL, FAST_LIMITS_MODEL, FAST_MODEL, PACED_FAULT,
    PACED_MODEL, Res, SLOW_COST_MODEL, SLOW_LIMITS_MODEL, SLOW_MODEL,
    processes::{NginxUpstream, Spawned, TempDir},
    target::Target,
};

/// The three mocks' addresses.
#[derive(Clone, Copy)]
pub(crate) struct Upstreams {
    pub(crate) fast: SocketAddr,
    pub(crate) slow: SocketAddr,
    pub(crate) paced: SocketAddr,
}

/// Every process the bench started; all killed on drop.
pub(crate) struct Fleet {
    pub(crate) fast: Spawned,
    slow: Spawned,
    paced: Spawned,
    nginx: Option<Spawned>,
    /// The main gateway: `switchyard`, `switchyard-cost` and `switchyard-limits`.
    pub(crate) gateway: Spawned,
    cache_gateway: Spawned,
    otlp_gateway: Spawned,
    data_gateway: Spawned,
    signed_gateway: Spawned,
    pub(crate) redis: Option<Spawned>,
    redis_gateway: Option<Spawned>,
}

/// Where to put what.
pub(crate) struct Placement<'a> {
    pub(crate) proxy_core: usize,
    pub(crate) load_core: usize,
    pub(crate) nginx: Option<&'a Path>,
    pub(crate) rust_log: Option<&'a str>,
}

impl Fleet {
    pub(crate) fn start(tmp: &TempDir, at: &Placement<'_>) -> Res<Fleet> {
        // Upstreams, on the load generator's core.
        let fast = Spawned::mock(tmp, at.load_core, "fast", "")?;
        let slow = Spawned::mock(tmp, at.load_core, "slow", &format!("latency_ms={DELAY_MS}"))?;
        let paced = Spawned::mock(tmp, at.load_core, "paced", PACED_FAULT)?;
        let up = Upstreams {
            fast: fast.addr,
            slow: slow.addr,
            paced: paced.addr,
        };
        // The proxies, on their own core.
        let nginx = match at.nginx {
            Some(bin) => Some(Spawned::nginx(
                tmp,
                bin,
                at.proxy_core,
                &[
                    NginxUpstream {
                        name: "fast",
                        addr: up.fast,
                        keepalive: 64,
                    },
                    NginxUpstream {
                        name: "slow",
                        addr: up.slow,
                        keepalive: 256,
                    },
                    NginxUpstream {
                        name: "paced",
                        addr: up.paced,
                        keepalive: 256,
                    },
                ],
            )?),
            None => None,
        };
        let gateway = |label: &str, extra: &str| {
            Spawned::gateway(
                tmp,
                at.proxy_core,
                label,
                &format!("{}{extra}", gateway_config(up)),
                at.rust_log,
            )
        };
        let main = gateway("switchyard", "")?;
        // The same config with the response cache on: the same request every time, so all
        // but the first are hits (the limits models are never cached).
        let cache_gateway = gateway("switchyard-cache", CACHE)?;
        // The same config exporting every request's spans to a collector that discards them.
        let sink = otlp_sink()?;
        let otlp_gateway = gateway(
            "switchyard-otlp",
            &format!("[telemetry]\notlp_endpoint = \"http://{sink}\"\nsampling_ratio = 1.0\n"),
        )?;
        // The same config with every PII detector on (and restore) and a content rule on
        // both sides: what the data controls cost a request that holds no PII.
        let data_gateway = gateway("switchyard-data", DATA_CONTROLS)?;
        // The same config with callers' keys: one bearer key, and one that signs its
        // requests (the saturation phase signs each request; the others use the bearer).
        let signed_gateway = gateway("switchyard-signed", &signing_keys())?;
        // With Debian's redis-server: a gateway that keeps its cache and limits in Redis
        // (Redis on the load generator's core, like the mocks).
        let redis = if redis_server_installed() {
            Some(Spawned::redis(tmp, at.load_core)?)
        } else {
            None
        };
        let redis_gateway = match &redis {
            Some(r) => Some(gateway(
                "switchyard-redis",
                &format!("{CACHE}[state]\nredis_url = \"redis://{}/0\"\n", r.addr),
            )?),
            None => None,
        };
        Ok(Fleet {
            fast,
            slow,
            paced,
            nginx,
            gateway: main,
            cache_gateway,
            otlp_gateway,
            data_gateway,
            signed_gateway,
            redis,
            redis_gateway,
        })
    }

    pub(crate) fn upstreams(&self) -> Upstreams {
        Upstreams {
            fast: self.fast.addr,
            slow: self.slow.addr,
            paced: self.paced.addr,
        }
    }

    /// Every process of ours, this one included (CPU used by none of them is foreign).
    pub(crate) fn ours(&self) -> Vec<u32> {
        let mut ours = vec![std::process::id()];
        ours.extend(self.all().map(Spawned::pid));
        ours
    }

    fn all(&self) -> impl Iterator<Item = &Spawned> {
        [
            &self.fast,
            &self.slow,
            &self.paced,
            &self.gateway,
            &self.cache_gateway,
            &self.otlp_gateway,
            &self.data_gateway,
            &self.signed_gateway,
        ]
        .into_iter()
        .chain(&self.nginx)
        .chain(&self.redis)
        .chain(&self.redis_gateway)
    }

    /// An error naming the first process that exited.
    pub(crate) fn check_all(&self) -> Res<()> {
        self.all().try_for_each(Spawned::check_alive)
    }

    /// The targets, in report order.
    pub(crate) fn targets(&self) -> Vec<Target> {
        let up = self.upstreams();
        let direct = Target {
            name: "direct",
            fast: up.fast,
            slow: up.slow,
            fast_model: FAST_MODEL,
            slow_model: SLOW_MODEL,
            paced: up.paced,
            paced_model: PACED_MODEL,
            pids: vec![self.fast.pid(), self.slow.pid(), self.paced.pid()],
            cpu_pid: self.fast.pid(),
            slow_cpu_pid: self.slow.pid(),
            signed: false,
        };
        let mut targets = vec![direct];
        if let Some(n) = &self.nginx {
            let more = |i: usize| n.more_addrs.get(i).copied().unwrap_or(n.addr);
            targets.push(Target {
                slow: more(0),
                paced: more(1),
                ..proxy("nginx", n, FAST_MODEL, SLOW_MODEL)
            });
        }
        let g = &self.gateway;
        targets.push(proxy("switchyard", g, FAST_MODEL, SLOW_MODEL));
        targets.push(proxy(
            "switchyard-cost",
            g,
            FAST_COST_MODEL,
            SLOW_COST_MODEL,
        ));
        targets.push(proxy(
            "switchyard-limits",
            g,
            FAST_LIMITS_MODEL,
            SLOW_LIMITS_MODEL,
        ));
        targets.push(proxy(
            "switchyard-cache",
            &self.cache_gateway,
            FAST_MODEL,
            SLOW_MODEL,
        ));
        targets.push(proxy(
            "switchyard-otlp",
            &self.otlp_gateway,
            FAST_MODEL,
            SLOW_MODEL,
        ));
        targets.push(proxy(
            "switchyard-data",
            &self.data_gateway,
            FAST_MODEL,
            SLOW_MODEL,
        ));
        targets.push(Target {
            signed: true,
            ..proxy(
                "switchyard-signed",
                &self.signed_gateway,
                FAST_MODEL,
                SLOW_MODEL,
            )
        });
        if let Some(g) = &self.redis_gateway {
            targets.push(proxy("switchyard-redis-cache", g, FAST_MODEL, SLOW_MODEL));
            targets.push(proxy(
                "switchyard-redis-limits",
                g,
                FAST_LIMITS_MODEL,
                SLOW_LIMITS_MODEL,
            ));
        }
        targets
    }
}

/// Issue 14's data controls, all on: every detector with restore, and a content rule of
/// words and a pattern on prompts and answers.
const DATA_CONTROLS: &str = "[redaction]\n\
    detectors = [\"email\", \"phone\", \"card\", \"iban\", \"ssn\", \"ip\", \"secret\"]\n\
    mode = \"mask\"\nrestore = true\n\n\
    [[content_rules]]\nname = \"bench\"\nwords = [\"forbidden phrase\"]\n\
    patterns = [\"(?i)internal[- ]only\"]\non = \"both\"\naction = \"block\"\n";

/// Issue 14's caller authentication: the bench's bearer key as a `[[keys]]` entry, and a
/// signing key whose secret the generator signs with.
fn signing_keys() -> String {
    format!(
        "[[keys]]\nname = \"bearer\"\nkey = \"{}\"\n\n\
         [[keys]]\nname = \"{}\"\nhmac_secret = \"{}\"\n",
        crate::http::AUTHORIZATION.trim_start_matches("Bearer "),
        crate::http::SIGNING_KEY_ID,
        crate::http::SIGNING_SECRET,
    )
}

/// A target served by one proxy process on one address.
fn proxy(
    name: &'static str,
    p: &Spawned,
    fast_model: &'static str,
    slow_model: &'static str,
) -> Target {
    Target {
        name,
        fast: p.addr,
        slow: p.addr,
        fast_model,
        slow_model,
        paced: p.addr,
        paced_model: PACED_MODEL,
        pids: vec![p.pid()],
        cpu_pid: p.pid(),
        slow_cpu_pid: p.pid(),
        signed: false,
    }
}

/// A loopback OTLP/HTTP collector that reads each export and answers 200 without decoding
/// it, on a thread of its own (so it is not charged to the gateway under test).
fn otlp_sink() -> Res<SocketAddr> {
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

/// The gateway's config: DEPLOYMENTS providers per mock, each model over all of them, so
/// the static-order models and the cost-policy models route over the same ten candidates.
pub(crate) fn gateway_config(up: Upstreams) -> String {
    let mut config =
        String::from("[server]\nhttp_addr = \"127.0.0.1:0\"\ngrpc_addr = \"127.0.0.1:0\"\n\n");
    for (prefix, addr) in [("fast", up.fast), ("slow", up.slow), ("paced", up.paced)] {
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
        (PACED_MODEL, "paced", PACED_MODEL, "static"),
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
