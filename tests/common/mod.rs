//! The integration-test harness: simulated providers and a gateway, each on its own real
//! socket on port 0, in this process.

#![allow(
    dead_code,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "shared by test binaries that each use part of it; a test fails loudly"
)]

pub mod process;
pub mod redis;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde_json::{Value, json};
use switchyard::{
    config::Config,
    gateway::Gateway,
    mock::{self, Fault, MockFormat, MockOptions},
    server::{self, Listeners},
};
use tokio::{net::TcpListener, sync::oneshot};

/// A simulated provider on a real socket.
pub struct Mock {
    pub addr: SocketAddr,
    pub name: String,
    pub format: MockFormat,
}

impl Mock {
    /// An OpenAI-format mock that applies `fault` (e.g. `status=503`) to every request.
    pub async fn start(name: &str, fault: &str) -> Mock {
        Mock::speaking(MockFormat::OpenAi, name, fault).await
    }

    /// A mock of the given wire format that applies `fault` to every request.
    pub async fn speaking(format: MockFormat, name: &str, fault: &str) -> Mock {
        let options = MockOptions {
            fault: Fault::parse(fault).unwrap(),
            name: name.to_owned(),
            format,
        };
        let addr = mock::spawn("127.0.0.1:0", options).await.unwrap();
        Mock {
            addr,
            name: name.to_owned(),
            format,
        }
    }

    /// A mock named `name` at a loopback port held by the returned socket, bound and not
    /// listening: connections are refused for as long as it lives (and no other socket can
    /// take the port). Call `listen` on it for a listener that never accepts.
    pub fn bound(name: &str) -> (Mock, socket2::Socket) {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let mock = Mock {
            addr,
            name: name.to_owned(),
            format: MockFormat::OpenAi,
        };
        (mock, socket)
    }

    /// The base URL as each provider SDK takes it.
    pub fn base_url(&self) -> String {
        match self.format {
            MockFormat::OpenAi => format!("http://{}/v1", self.addr),
            MockFormat::Anthropic
            | MockFormat::Azure
            | MockFormat::Gemini
            | MockFormat::Cohere
            | MockFormat::Bedrock => format!("http://{}", self.addr),
        }
    }

    /// The config `kind` for this mock's wire format.
    pub fn kind(&self) -> &'static str {
        match self.format {
            MockFormat::OpenAi => "openai",
            MockFormat::Anthropic => "anthropic",
            MockFormat::Azure => "azure",
            MockFormat::Gemini => "gemini",
            MockFormat::Cohere => "cohere",
            MockFormat::Bedrock => "bedrock",
        }
    }

    /// What the mock has seen (`GET /_mock/stats`).
    pub async fn stats(&self) -> Value {
        client()
            .get(format!("http://{}/_mock/stats", self.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A config serving model `gpt-4o-mini` from `mocks` in order, plus `extra` TOML.
pub fn config_for(mocks: &[&Mock], extra: &str) -> String {
    let mut text = String::from(
        "[server]\nhttp_addr = \"127.0.0.1:0\"\ngrpc_addr = \"none\"\nmax_body_bytes = 65536\n",
    );
    text.push_str(extra);
    for m in mocks {
        text.push_str(&format!(
            "\n[[providers]]\nname = \"{}\"\nkind = \"{}\"\nbase_url = \"{}\"\n",
            m.name,
            m.kind(),
            m.base_url(),
        ));
        if m.format == MockFormat::Bedrock {
            // AWS's documented example key pair: the mock verifies signatures made with it.
            text.push_str(&format!(
                "region = \"us-east-1\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
                mock::EXAMPLE_ACCESS_KEY_ID,
                mock::EXAMPLE_SECRET_ACCESS_KEY
            ));
        } else {
            text.push_str(&format!("api_key = \"sk-test-{}\"\n", m.name));
        }
    }
    let deployments: Vec<String> = mocks
        .iter()
        .map(|m| {
            format!(
                "{{ provider = \"{}\", model = \"upstream-{}\" }}",
                m.name, m.name
            )
        })
        .collect();
    text.push_str(&format!(
        "\n[[models]]\nname = \"gpt-4o-mini\"\ndeployments = [{}]\n",
        deployments.join(", ")
    ));
    text
}

/// Fast failover timing for tests; deadlines well above what a healthy call needs.
pub const FAST: &str = "[failover]\nattempt_timeout_ms = 1500\ndeadline_ms = 4000\nbackoff_initial_ms = 5\nbackoff_max_ms = 20\n";

/// A gateway on a real socket; stops when dropped.
pub struct TestGateway {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl TestGateway {
    pub async fn start(config_text: &str) -> TestGateway {
        let config = Config::parse(config_text).unwrap();
        let (addr, stop) = serve(Arc::new(Gateway::new(config).unwrap())).await;
        TestGateway { addr, _stop: stop }
    }

    pub async fn serving(mocks: &[&Mock]) -> TestGateway {
        TestGateway::start(&config_for(mocks, FAST)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        within(client().get(self.url("/metrics")).send())
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// POST /v1/chat/completions with a JSON body.
    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        within(
            client()
                .post(self.url("/v1/chat/completions"))
                .json(body)
                .send(),
        )
        .await
        .unwrap()
    }
}

/// Serves `gateway` on a real socket on port 0 (HTTP only) until the returned sender is
/// dropped.
pub async fn serve(gateway: Arc<Gateway>) -> (SocketAddr, oneshot::Sender<()>) {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(server::run(
        Listeners { http, grpc: None },
        gateway,
        async move {
            let _ = rx.await;
        },
    ));
    (addr, tx)
}

/// The value of the Prometheus series `name` whose labels include each of `labels` (written
/// `key="value"`), summed over the matching series; 0 when there is none.
///
/// The recorder is process-wide: under `cargo test` the tests of one binary share it (under
/// nextest each test has a process of its own). So a test compares the value before and after
/// what it did, for labels only it produces, or holds a lock the tests sharing a series take.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A one-message request for the test model.
pub fn hello(stream: bool) -> Value {
    json!({ "model": "gpt-4o-mini", "stream": stream,
            "messages": [{ "role": "user", "content": "Hello" }] })
}

pub fn client() -> reqwest::Client {
    switchyard::telemetry::install_crypto_provider();
    reqwest::Client::new()
}

/// Bounds a future: no test may hang, whatever the gateway does.
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the gateway did not answer within 20 s")
}

pub fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// Reads an SSE body to its end: the `data:` payloads in order.
pub async fn sse_events(resp: reqwest::Response) -> Vec<String> {
    let text = within(resp.text()).await.unwrap();
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// A stream's `data:` events and its trailer comments: the provider that served and every
/// attempt (`: x-switchyard-provider: …`, `: x-switchyard-attempts: …`, sent before the
/// last event), empty when absent.
pub async fn sse_events_and_trailer(resp: reqwest::Response) -> (Vec<String>, String, String) {
    let text = within(resp.text()).await.unwrap();
    let comment = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!(": {name}: ")))
            .unwrap_or("")
            .to_owned()
    };
    let (provider, attempts) = (
        comment("x-switchyard-provider"),
        comment("x-switchyard-attempts"),
    );
    let events = text
        .split("\n\n")
        .flat_map(|e| e.lines())
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect();
    (events, provider, attempts)
}

/// The content of a streamed answer, reassembled.
pub fn stream_content(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

impl Mock {
    /// Replaces the mock's default fault while it serves (`PUT /_mock/fault`); `""` clears it.
    pub async fn set_fault(&self, spec: &str) {
        let resp = within(
            client()
                .put(format!("http://{}/_mock/fault", self.addr))
                .body(spec.to_owned())
                .send(),
        )
        .await
        .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "PUT /_mock/fault `{spec}`: {body}");
    }
}

impl Mock {
    /// Waits (bounded) until the mock has received at least `n` requests.
    pub async fn wait_for_requests(&self, n: u64) {
        within(async {
            while self.stats().await["requests"].as_u64().unwrap() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

/// The gRPC twin of [`hello`]: one user message, "Hello", to `gpt-4o-mini`.
pub fn grpc_hello() -> switchyard::api::grpc::pb::ChatRequest {
    use switchyard::api::grpc::pb;
    pb::ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![pb::Message {
            role: "user".into(),
            content: Some("Hello".into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}
