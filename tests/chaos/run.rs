//! Running one scenario: the mocks, the gateway and its config, the load, the looks at
//! the breakers and counters while it runs, and what came of it.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, extract::State, routing::post};
use serde_json::Value;
use tokio::time::Instant;

use crate::{
    ADMIN_KEY, ATTEMPT_TIMEOUT_MS, BACKOFF_INITIAL_MS, BACKOFF_MAX_MS, CLIENT_LIMIT, CONCURRENCY,
    CONNECT_TIMEOUT_MS, COOL_DOWN_MS, DEADLINE_MS, FAILURES, LETTERS, MODEL, Mix, PACE,
    SLOW_START_MS, Scenario, Start, THROTTLE_WINDOW_MS, THROTTLES, WATCH_EVERY,
    common::{Mock, TestGateway, client, header, hello, within},
};

/// How one request ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// A complete answer: JSON with content, or a stream with content ending `[DONE]`.
    Served,
    /// A stream that ended with an error event after content: it could not fail over.
    Broken,
    /// A stream that ended neither with `[DONE]` nor an error event, or JSON without an
    /// answer: never acceptable.
    Incomplete,
    /// An error status.
    Status(u16),
    /// The connection to the gateway failed.
    Transport,
    /// No complete answer within `CLIENT_LIMIT`.
    Hung,
}

pub(crate) struct Sample {
    /// When it was sent, from the start of the load.
    pub(crate) at: Duration,
    pub(crate) latency: Duration,
    pub(crate) stream: bool,
    pub(crate) end: End,
    /// `x-switchyard-provider`.
    pub(crate) provider: String,
    /// `x-switchyard-attempts`.
    pub(crate) attempts: String,
}

/// One look at the gateway's breakers and the mocks' request counters.
pub(crate) struct Look {
    pub(crate) at: Duration,
    pub(crate) circuits: [Circuit; 3],
    /// `/_mock/stats` `requests`, for the mocks that listen.
    pub(crate) requests: [Option<u64>; 3],
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Circuit {
    pub(crate) state: String,
    pub(crate) ramp: f64,
    pub(crate) open_for_ms: u64,
}

/// What a scenario produced.
pub(crate) struct Ran {
    /// Provider names (`{key}-a` ...) and deployment ids (`{name}/upstream-{name}`).
    pub(crate) names: [String; 3],
    pub(crate) ids: [String; 3],
    pub(crate) samples: Vec<Sample>,
    pub(crate) looks: Vec<Look>,
    pub(crate) metrics_before: String,
    pub(crate) metrics: String,
    pub(crate) hooks: Vec<Value>,
    /// `/_mock/stats` `requests` at the end.
    pub(crate) requests: [Option<u64>; 3],
    /// When each step of the script had been applied (its `PUT /_mock/fault` answered).
    pub(crate) applied: Vec<Duration>,
}

pub(crate) async fn run(s: &Scenario) -> Ran {
    let (hook_url, hooks) = receiver().await;
    let names: [String; 3] = std::array::from_fn(|i| format!("{}-{}", s.key, LETTERS[i]));
    let ids = names.clone().map(|n| format!("{n}/upstream-{n}"));
    let mut held_ports = Vec::new();
    let mut mocks = Vec::new();
    for (start, name) in s.providers.iter().zip(&names) {
        mocks.push(match start {
            Start::Healthy => Mock::start(name, "").await,
            Start::Fault(spec) => Mock::start(name, spec).await,
            Start::Dead => {
                let (mock, held) = Mock::bound(name);
                held_ports.push(held);
                mock
            }
        });
    }
    let listening = s.providers.map(|p| !matches!(p, Start::Dead));
    let gw = TestGateway::start(&config(s, &mocks, &hook_url)).await;
    let metrics_before = text(&gw.url("/metrics")).await;

    let started = Instant::now();
    let stop = started + s.run;
    let script = async {
        let mut applied = Vec::new();
        for (at, i, spec) in &s.script {
            tokio::time::sleep_until(started + *at).await;
            mocks[*i].set_fault(spec).await;
            applied.push(started.elapsed());
        }
        applied
    };
    let (samples, looks, applied) = tokio::join!(
        load(gw.url("/v1/chat/completions"), s.mix, started, stop),
        watch(&gw, &mocks, &ids, listening, started, stop),
        script
    );

    // Webhooks are delivered from a queue, the first of each kind and subject at once (the
    // interval is a minute): wait, bounded, until every kind and subject counted during
    // the scenario has reached the receiver.
    let metrics = text(&gw.url("/metrics")).await;
    let raised = alerts_raised(&metrics_before, &metrics);
    let give_up = Instant::now() + Duration::from_secs(3);
    while Instant::now() < give_up && hooks.0.lock().unwrap().len() < raised {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut requests = [None; 3];
    for (i, m) in mocks.iter().enumerate() {
        if listening[i] {
            requests[i] = m.stats().await["requests"].as_u64();
        }
    }
    let hooks = hooks.0.lock().unwrap().clone();
    drop(held_ports);
    Ran {
        names,
        ids,
        samples,
        looks,
        metrics_before,
        metrics,
        hooks,
        requests,
        applied,
    }
}

fn config(s: &Scenario, mocks: &[Mock], hook_url: &str) -> String {
    let mut t = format!(
        "[server]\nhttp_addr = \"127.0.0.1:0\"\ngrpc_addr = \"none\"\n\n\
         [failover]\nattempt_timeout_ms = {ATTEMPT_TIMEOUT_MS}\ndeadline_ms = {DEADLINE_MS}\n\
         connect_timeout_ms = {CONNECT_TIMEOUT_MS}\nbackoff_initial_ms = {BACKOFF_INITIAL_MS}\n\
         backoff_max_ms = {BACKOFF_MAX_MS}\n\n\
         [breaker]\nfailures = {FAILURES}\nthrottles = {THROTTLES}\n\
         throttle_window_ms = {THROTTLE_WINDOW_MS}\ncool_down_ms = {COOL_DOWN_MS}\n\
         slow_start_ms = {SLOW_START_MS}\n\n\
         [alerts]\nwebhook_url = \"{hook_url}\"\nmin_interval_ms = 60000\nattempts = 3\n\n\
         [admin]\napi_key = \"{ADMIN_KEY}\"\n"
    );
    for m in mocks {
        let _ = write!(
            t,
            "\n[[providers]]\nname = \"{}\"\nkind = \"openai\"\nbase_url = \"{}\"\n\
             api_key = \"sk-test-{}\"\n",
            m.name,
            m.base_url(),
            m.name
        );
    }
    let deployments: Vec<String> = mocks
        .iter()
        .zip(s.deployment_keys)
        .map(|(m, keys)| {
            let keys = if keys.is_empty() {
                String::new()
            } else {
                format!(", {keys}")
            };
            format!(
                "{{ provider = \"{}\", model = \"upstream-{}\"{keys} }}",
                m.name, m.name
            )
        })
        .collect();
    let _ = write!(t, "\n[[models]]\nname = \"{MODEL}\"\n");
    if let Some(p95) = s.alert_p95_ms {
        let _ = writeln!(t, "alert_p95_ms = {p95}");
    }
    if let Some(delay) = s.hedge_delay_ms {
        let _ = writeln!(t, "hedge_delay_ms = {delay}");
    }
    let _ = writeln!(t, "deployments = [{}]", deployments.join(", "));
    t
}

/// `CONCURRENCY` clients, each sending one request at a time (at most one per `PACE`)
/// until `stop`, each request bounded by `CLIENT_LIMIT`.
async fn load(url: String, mix: Mix, started: Instant, stop: Instant) -> Vec<Sample> {
    let client = client();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|c| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                for n in c.. {
                    let sent = Instant::now();
                    if sent >= stop {
                        break;
                    }
                    let stream = match mix {
                        Mix::Both => n % 2 == 1,
                        Mix::Streams => true,
                    };
                    let (end, provider, attempts) =
                        tokio::time::timeout(CLIENT_LIMIT, request(&client, &url, stream))
                            .await
                            .unwrap_or((End::Hung, String::new(), String::new()));
                    out.push(Sample {
                        at: sent - started,
                        latency: sent.elapsed(),
                        stream,
                        end,
                        provider,
                        attempts,
                    });
                    tokio::time::sleep_until(sent + PACE).await;
                }
                out
            })
        })
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }
    samples.sort_by_key(|s| s.at);
    samples
}

/// One request, read to its end.
async fn request(client: &reqwest::Client, url: &str, stream: bool) -> (End, String, String) {
    let Ok(resp) = client.post(url).json(&hello(stream)).send().await else {
        return (End::Transport, String::new(), String::new());
    };
    let mut provider = header(&resp, "x-switchyard-provider").to_owned();
    let mut attempts = header(&resp, "x-switchyard-attempts").to_owned();
    let status = resp.status().as_u16();
    let Ok(body) = resp.text().await else {
        return (End::Transport, provider, attempts);
    };
    if status == 200 && stream {
        // A stream's headers went out when its first deployment's stream opened; its
        // trailer comments say who served and every attempt.
        let comment = |name: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(&format!(": {name}: ")))
                .map(str::to_owned)
        };
        if let Some(p) = comment("x-switchyard-provider") {
            provider = p;
        }
        if let Some(a) = comment("x-switchyard-attempts") {
            attempts = a;
        }
    }
    // The mock's whole answer, so that a truncated one cannot pass for served.
    let expected = format!("Hello from {provider}! You said: Hello");
    let end = match (status, stream) {
        (200, true) => stream_end(&body, &expected),
        (200, false) => json_end(&body, &expected),
        (code, _) => End::Status(code),
    };
    (end, provider, attempts)
}

fn is_error_event(data: &str) -> bool {
    serde_json::from_str::<Value>(data).is_ok_and(|v| v.get("error").is_some())
}

fn stream_end(body: &str, expected: &str) -> End {
    let events: Vec<&str> = body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    let content: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let errored = events.iter().any(|e| is_error_event(e));
    match events.last() {
        Some(&"[DONE]") if content == expected && !errored => End::Served,
        Some(last) if is_error_event(last) && !content.is_empty() => End::Broken,
        _ => End::Incomplete,
    }
}

fn json_end(body: &str, expected: &str) -> End {
    let answered = serde_json::from_str::<Value>(body)
        .is_ok_and(|v| v.pointer("/choices/0/message/content") == Some(&Value::from(expected)));
    if answered {
        End::Served
    } else {
        End::Incomplete
    }
}

/// Samples the breakers (`/admin/health`) and the mocks' counters every `WATCH_EVERY`.
async fn watch(
    gw: &TestGateway,
    mocks: &[Mock],
    ids: &[String; 3],
    listening: [bool; 3],
    started: Instant,
    stop: Instant,
) -> Vec<Look> {
    let client = client();
    let mut looks = Vec::new();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < stop {
        tick.tick().await;
        let at = started.elapsed();
        // The counters first: a circuit read open afterwards was open when they were read.
        let mut requests = [None; 3];
        for (i, m) in mocks.iter().enumerate() {
            if listening[i] {
                let url = format!("http://{}/_mock/stats", m.addr);
                let stats: Value = within(client.get(url).send())
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                requests[i] = stats["requests"].as_u64();
            }
        }
        let health: Value = within(
            client
                .get(gw.url("/admin/health"))
                .bearer_auth(ADMIN_KEY)
                .send(),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let circuits = std::array::from_fn(|i| circuit_of(&health, &ids[i]));
        looks.push(Look {
            at,
            circuits,
            requests,
        });
    }
    looks
}

fn circuit_of(health: &Value, id: &str) -> Circuit {
    let found = health["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["id"] == id);
    match found {
        Some(d) => Circuit {
            state: d["circuit"].as_str().unwrap_or("?").to_owned(),
            ramp: d["ramp"].as_f64().unwrap_or(f64::NAN),
            open_for_ms: d["open_for_ms"].as_u64().unwrap_or(0),
        },
        None => Circuit {
            state: "closed".to_owned(),
            ramp: 1.0,
            open_for_ms: 0,
        },
    }
}

async fn text(url: &str) -> String {
    within(client().get(url).send())
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The sum of the series `name{...}` whose labels include every one of `labels`; 0 when
/// there is none.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How many kinds and subjects of alert were counted between two renderings of the metrics.
fn alerts_raised(before: &str, after: &str) -> usize {
    let series = |text: &str| -> Vec<(String, f64)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("switchyard_alerts_total{"))
            .filter_map(|l| {
                let (labels, value) = l.rsplit_once("} ")?;
                Some((labels.to_owned(), value.parse().ok()?))
            })
            .collect()
    };
    let before = series(before);
    series(after)
        .iter()
        .filter(|(labels, value)| {
            let was = before
                .iter()
                .find(|(l, _)| l == labels)
                .map_or(0.0, |(_, v)| *v);
            *value > was
        })
        .count()
}

/// A webhook that records every alert it receives.
#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<Value>>>);

pub(crate) fn has_alert(hooks: &[Value], kind: &str, subject: &str) -> bool {
    hooks
        .iter()
        .any(|h| h["kind"] == kind && h["subject"] == subject)
}

async fn receive(State(hooks): State<Hooks>, Json(body): Json<Value>) -> &'static str {
    hooks.0.lock().unwrap().push(body);
    "ok"
}

async fn receiver() -> (String, Hooks) {
    let hooks = Hooks::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hooks)
}

impl Ran {
    pub(crate) fn count(&self, end: impl Fn(End) -> bool) -> usize {
        self.samples.iter().filter(|s| end(s.end)).count()
    }

    /// Times deployment `i`'s circuit opened (`switchyard_breaker_open_total`).
    pub(crate) fn opens(&self, i: usize) -> u64 {
        let label = format!("deployment=\"{}\"", self.ids[i]);
        metric(&self.metrics, "switchyard_breaker_open_total", &[&label]) as u64
    }

    /// `switchyard_alerts_total` for `kind` and `subject`, counted during this scenario.
    pub(crate) fn alerts(&self, kind: &str, subject: &str) -> u64 {
        let labels = [format!("kind=\"{kind}\""), format!("subject=\"{subject}\"")];
        let labels = [labels[0].as_str(), labels[1].as_str()];
        let after = metric(&self.metrics, "switchyard_alerts_total", &labels);
        let before = metric(&self.metrics_before, "switchyard_alerts_total", &labels);
        (after - before) as u64
    }

    /// Failures charged to deployment `i`: its failed attempts (from
    /// `x-switchyard-attempts`; a first attempt outrun by its hedge while stalled,
    /// `hedge_lost`, is one)
    /// and the streams it broke after commit.
    pub(crate) fn charged(&self, i: usize) -> usize {
        let prefix = format!("{}=", self.ids[i]);
        self.samples
            .iter()
            .map(|s| {
                let failed = s
                    .attempts
                    .split(", ")
                    .filter_map(|a| a.strip_prefix(&prefix))
                    .filter(|outcome| !["ok", "circuit_open", "busy"].contains(outcome))
                    .count();
                let broke = s.end == End::Broken && s.provider == self.names[i];
                failed + usize::from(broke)
            })
            .sum()
    }
}
