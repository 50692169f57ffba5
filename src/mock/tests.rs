//! The mock over a real socket: its default fault changed while it serves.

use serde_json::{Value, json};

use super::{Fault, MockFormat, MockOptions, spawn};

struct Running {
    base: String,
    client: reqwest::Client,
}

impl Running {
    async fn start(format: MockFormat, fault: &str) -> Running {
        crate::telemetry::install_crypto_provider();
        let options = MockOptions {
            fault: Fault::parse(fault).unwrap(),
            name: "m".to_owned(),
            format,
        };
        let addr = spawn("127.0.0.1:0", options).await.unwrap();
        Running {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
        }
    }

    async fn put_fault(&self, spec: &str) -> (u16, Value) {
        let resp = self
            .client
            .put(format!("{}/_mock/fault", self.base))
            .body(spec.to_owned())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn get_fault(&self) -> Value {
        let url = format!("{}/_mock/fault", self.base);
        let resp = self.client.get(url).send().await.unwrap();
        resp.json().await.unwrap()
    }

    /// Status of one OpenAI chat request, with an `x-mock-fault` header when given.
    async fn chat(&self, header: Option<&str>) -> u16 {
        let body = json!({ "model": "m", "messages": [{ "role": "user", "content": "hi" }] });
        let mut req = self
            .client
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&body);
        if let Some(spec) = header {
            req = req.header("x-mock-fault", spec);
        }
        req.send().await.unwrap().status().as_u16()
    }
}

#[tokio::test]
async fn put_replaces_the_default_fault_for_later_requests_and_get_reports_it() {
    let mock = Running::start(MockFormat::OpenAi, "status=503").await;
    assert_eq!(mock.get_fault().await["spec"], "status=503");
    assert_eq!(mock.chat(None).await, 503);

    let (status, body) = mock
        .put_fault("latency_ms=10, status=429,retry_after=2")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["spec"], "status=429,retry_after=2,latency_ms=10");
    assert_eq!(body["retry_after"], 2);
    assert_eq!(mock.get_fault().await, body);
    assert_eq!(mock.chat(None).await, 429);
    // The per-request header still wins over the default.
    assert_eq!(mock.chat(Some("status=502")).await, 502);

    // An empty body clears the fault.
    let (status, body) = mock.put_fault("").await;
    assert_eq!((status, body["spec"].as_str()), (200, Some("")));
    assert_eq!(mock.chat(None).await, 200);
}

#[tokio::test]
async fn a_bad_spec_is_a_400_in_the_formats_error_shape_and_keeps_the_fault() {
    let mock = Running::start(MockFormat::OpenAi, "status=503").await;
    let (status, body) = mock.put_fault("explode=1").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("unknown fault `explode`"), "{message}");
    assert_eq!(mock.get_fault().await["spec"], "status=503");
    assert_eq!(mock.chat(None).await, 503);

    let anthropic = Running::start(MockFormat::Anthropic, "").await;
    let (status, body) = anthropic.put_fault("status=abc").await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}
