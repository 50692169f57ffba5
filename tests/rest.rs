//! The REST surface over real sockets: answers, passthrough, and errors in OpenAI's shape.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_completion_is_served_with_provider_and_attempt_headers() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let resp = gw.chat(&hello(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "primary");
    assert_eq!(
        header(&resp, "x-switchyard-attempts"),
        "primary/upstream-primary=ok"
    );
    assert!(!header(&resp, "x-request-id").is_empty());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("Hello")
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn unknown_fields_reach_the_upstream_untouched_with_the_deployment_model_and_key() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let mut req = hello(false);
    req["my_custom_field"] = json!({"nested": [1, "two", null], "f": 0.25});
    req["metadata"] = json!({"team": "search"});
    req["messages"][0]["x_message_field"] = json!(true);
    req["temperature"] = json!(0.3);
    let resp = gw.chat(&req).await;
    assert_eq!(resp.status(), 200);
    let stats = primary.stats().await;
    let seen = &stats["last_request"];
    assert_eq!(seen["my_custom_field"], req["my_custom_field"]);
    assert_eq!(seen["metadata"], req["metadata"]);
    assert_eq!(seen["messages"][0]["x_message_field"], true);
    assert_eq!(seen["temperature"], 0.3);
    assert_eq!(seen["model"], "upstream-primary");
    assert_eq!(stats["last_authorization"], "Bearer sk-test-primary");
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    let e = &body["error"];
    assert!(e["message"].is_string(), "OpenAI error shape: {body}");
    assert!(
        e.get("type").is_some() && e.get("param").is_some() && e.get("code").is_some(),
        "{body}"
    );
    (status, e.clone())
}

#[tokio::test]
async fn bad_requests_get_openai_errors_with_the_right_status() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let raw = |body: &'static str| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (s, e) = error_of(within(raw("{\"model\": ")).await.unwrap()).await;
    assert_eq!(
        (s, e["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    assert!(e["message"].as_str().unwrap().contains("parse the JSON"));

    let (s, e) = error_of(within(raw("{\"model\": \"gpt-4o-mini\"}")).await.unwrap()).await;
    assert_eq!(s, 400);
    assert!(e["message"].as_str().unwrap().contains("messages"), "{e}");

    let (s, e) = error_of(
        gw.chat(&json!({"model": "gpt-4o-mini", "messages": []}))
            .await,
    )
    .await;
    assert_eq!((s, e["param"].as_str()), (400, Some("messages")));

    let (s, e) = error_of(
        gw.chat(&json!({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}))
            .await,
    )
    .await;
    assert_eq!(s, 400);
    assert!(e["message"].as_str().unwrap().contains("wizard"));

    let (s, e) = error_of(
        gw.chat(&json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}))
            .await,
    )
    .await;
    assert_eq!(
        (s, e["code"].as_str(), e["param"].as_str()),
        (404, Some("model_not_found"), Some("model"))
    );
    assert_eq!(
        primary.stats().await["requests"],
        0,
        "nothing reached the provider"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let mut req = hello(false);
    req["messages"][0]["content"] = json!("x".repeat(70_000));
    let (s, e) = error_of(gw.chat(&req).await).await;
    assert_eq!((s, e["code"].as_str()), (413, Some("request_too_large")));
    // Without a content-length (chunked), the limit still holds.
    let body = serde_json::to_vec(&req).unwrap();
    let stream = futures_util::stream::iter(
        body.chunks(8192)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = within(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(error_of(resp).await.0, 413);
}

#[tokio::test]
async fn models_health_and_metrics_are_served() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let models: Value = within(client().get(gw.url("/v1/models")).send())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "gpt-4o-mini");
    let one = within(client().get(gw.url("/v1/models/gpt-4o-mini")).send())
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let (s, _) = error_of(
        within(client().get(gw.url("/v1/models/nope")).send())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    let (s, e) = error_of(
        within(client().get(gw.url("/v2/whatever")).send())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e["code"].as_str()), (404, Some("unknown_url")));
    for (method, path, allow) in [
        (reqwest::Method::GET, "/v1/chat/completions", "POST"),
        (reqwest::Method::DELETE, "/v1/chat/completions", "POST"),
        (reqwest::Method::POST, "/v1/models", "GET"),
    ] {
        let resp = within(client().request(method.clone(), gw.url(path)).send())
            .await
            .unwrap();
        let allowed = resp.headers()["allow"].to_str().unwrap().to_owned();
        let (s, e) = error_of(resp).await;
        assert_eq!(
            (s, e["code"].as_str(), allowed.as_str()),
            (405, Some("method_not_allowed"), allow),
            "{method} {path}"
        );
    }
    // With admin off its routes do not exist, whatever the method.
    let (s, e) = error_of(
        within(client().get(gw.url("/admin/reload")).send())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e["code"].as_str()), (404, Some("unknown_url")));
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            within(client().get(gw.url(path)).send())
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(gw.chat(&hello(false)).await.status(), 200);
    let metrics = gw.metrics().await;
    assert!(metrics.contains("switchyard_requests_total"), "{metrics}");
}

#[tokio::test]
async fn tools_and_structured_output_round_trip() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let mut req = hello(false);
    req["tools"] = json!([{ "type": "function", "function": { "name": "get_weather",
        "parameters": { "type": "object", "properties": { "city": {"type": "string"}, "days": {"type": "integer"} },
                        "required": ["city", "days"] } } }]);
    let body: Value = gw.chat(&req).await.json().await.unwrap();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string() && args["days"].is_i64());

    let mut req = hello(false);
    req["response_format"] = json!({ "type": "json_schema", "json_schema": { "name": "answer", "strict": true,
        "schema": { "type": "object", "properties": { "verdict": {"type": "boolean"} }, "required": ["verdict"] } } });
    let body: Value = gw.chat(&req).await.json().await.unwrap();
    let content: Value =
        serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["verdict"], true);
    assert_eq!(
        primary.stats().await["last_request"]["response_format"],
        req["response_format"]
    );
}

#[tokio::test]
async fn a_sane_request_id_is_kept_and_an_unsafe_one_replaced() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let send = |id: &'static str| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-request-id", id)
            .json(&hello(false))
            .send()
    };
    let resp = within(send("trace-42.a_b:c")).await.unwrap();
    assert_eq!(header(&resp, "x-request-id"), "trace-42.a_b:c");
    let resp = within(send("evil id\twith spaces")).await.unwrap();
    let id = header(&resp, "x-request-id");
    assert!(id.starts_with("req_") && id.len() == 28, "{id}");
}

#[tokio::test]
async fn readyz_is_503_naming_a_model_whose_every_circuit_is_open() {
    let (dead, _held) = Mock::bound("dead");
    let gw = TestGateway::serving(&[&dead]).await;
    let ready = || async {
        let resp = within(client().get(gw.url("/readyz")).send())
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(ready().await.0, 200);
    // Five refused connections in a row open the only deployment's circuit.
    for _ in 0..5 {
        assert_eq!(gw.chat(&hello(false)).await.status(), 502);
    }
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["unreachable"], serde_json::json!(["gpt-4o-mini"]));
    assert_eq!(
        within(client().get(gw.url("/healthz")).send())
            .await
            .unwrap()
            .status(),
        200,
        "the process itself is up"
    );
}
