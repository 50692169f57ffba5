//! The gRPC surface with the generated client over a real socket: the same answers,
//! failover and error table as REST.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use common::*;
use futures_util::StreamExt;
use switchyard::api::grpc::pb::{self, gateway_client::GatewayClient};
use tonic::Code;

async fn client_for(gw: &TestGateway) -> GatewayClient<tonic::transport::Channel> {
    within(GatewayClient::connect(format!("http://{}", gw.addr)))
        .await
        .unwrap()
}

fn request(stream_usage: bool) -> pb::ChatRequest {
    pb::ChatRequest {
        include_usage: stream_usage,
        ..grpc_hello()
    }
}

#[tokio::test]
async fn chat_answers_with_metadata_naming_the_provider() {
    let primary = Mock::start("primary", "status=503").await;
    let backup = Mock::start("backup", "").await;
    let gw = TestGateway::serving(&[&primary, &backup]).await;
    let mut client = client_for(&gw).await;
    let resp = within(client.chat(request(false))).await.unwrap();
    let md = resp.metadata().clone();
    assert_eq!(md.get("x-switchyard-provider").unwrap(), "backup");
    assert_eq!(
        md.get("x-switchyard-attempts").unwrap(),
        "primary/upstream-primary=503, backup/upstream-backup=ok"
    );
    let r = resp.into_inner();
    let m = r.choices[0].message.as_ref().unwrap();
    assert_eq!(m.role, "assistant");
    assert_eq!(
        m.content.as_deref(),
        Some("Hello from backup! You said: Hello")
    );
    assert!(r.usage.unwrap().total_tokens > 0);
}

#[tokio::test]
async fn chat_stream_delivers_chunks_and_usage() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let mut client = client_for(&gw).await;
    let mut stream = within(client.chat_stream(request(true)))
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    let mut usage = None;
    while let Some(chunk) = within(stream.next()).await {
        let chunk = chunk.unwrap();
        for c in &chunk.choices {
            text.push_str(
                c.delta
                    .as_ref()
                    .and_then(|d| d.content.as_deref())
                    .unwrap_or(""),
            );
        }
        usage = chunk.usage.or(usage);
    }
    assert_eq!(text, "Hello from primary! You said: Hello");
    assert!(usage.unwrap().completion_tokens > 0);
}

#[tokio::test]
async fn errors_map_to_grpc_codes_from_the_same_table() {
    let primary = Mock::start("primary", "status=429").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let mut client = client_for(&gw).await;
    let err = within(client.chat(request(false))).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "simulated 429 from primary");
    assert_eq!(err.metadata().get("retry-after").unwrap(), "1");

    let mut unknown = request(false);
    unknown.model = "nope".into();
    assert_eq!(
        within(client.chat(unknown)).await.unwrap_err().code(),
        Code::NotFound
    );

    let mut bad = request(false);
    bad.messages.clear();
    assert_eq!(
        within(client.chat(bad)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn a_stream_broken_after_content_ends_with_an_error_status() {
    let primary = Mock::start("primary", "cut_after_chunks=3").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let mut client = client_for(&gw).await;
    let mut stream = within(client.chat_stream(request(false)))
        .await
        .unwrap()
        .into_inner();
    let mut results = Vec::new();
    while let Some(item) = within(stream.next()).await {
        results.push(item);
    }
    assert!(results[..results.len() - 1].iter().all(Result::is_ok));
    let last = results.last().unwrap().as_ref().unwrap_err();
    assert_eq!(last.code(), Code::Unavailable);
}

#[tokio::test]
async fn list_models_names_the_catalog() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    let mut client = client_for(&gw).await;
    let models = within(client.list_models(pb::ListModelsRequest {}))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = models.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["gpt-4o-mini"]);
}

#[tokio::test]
async fn a_shed_call_is_unavailable_with_retry_after() {
    let slow = Mock::start("slow", "latency_ms=800").await;
    let text = config_for(&[&slow], FAST).replacen(
        "max_body_bytes = 65536\n",
        "max_body_bytes = 65536\nmax_in_flight = 1\n",
        1,
    );
    let gw = TestGateway::start(&text).await;
    // A stream holds its slot until it ends.
    let mut holder = client_for(&gw).await;
    let held = tokio::spawn(async move {
        let mut stream = within(holder.chat_stream(request(false)))
            .await
            .unwrap()
            .into_inner();
        while let Some(chunk) = within(stream.next()).await {
            chunk.unwrap();
        }
    });
    slow.wait_for_requests(1).await;

    let mut client = client_for(&gw).await;
    let status = within(client.chat(request(false))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
    assert_eq!(
        status.metadata().get("x-switchyard-error-code").unwrap(),
        "overloaded"
    );
    within(held).await.unwrap();
    assert!(within(client.chat(request(false))).await.is_ok());
}

#[tokio::test]
async fn chat_stream_sends_the_role_chunk_before_the_provider_has_content() {
    // The provider opens its stream at once and holds its first content for 1 s (under
    // the tests' 1.5 s attempt timeout).
    let thinking = Mock::start("thinking", "first_token_ms=1000").await;
    let gw = TestGateway::serving(&[&thinking]).await;
    let mut client = client_for(&gw).await;
    let mut stream = within(client.chat_stream(request(false)))
        .await
        .unwrap()
        .into_inner();
    let first = within(stream.next()).await.unwrap().unwrap();
    let first_at = tokio::time::Instant::now();
    let delta = first.choices[0].delta.as_ref().unwrap();
    assert_eq!(delta.role.as_deref(), Some("assistant"));
    assert_eq!(delta.content.as_deref().unwrap_or(""), "");
    let second = within(stream.next()).await.unwrap().unwrap();
    let content = second.choices[0].delta.as_ref().unwrap().content.clone();
    assert!(content.is_some_and(|c| !c.is_empty()));
    // Held until content, both would arrive together; sent at once, the provider's
    // silence lies between them.
    let gap = first_at.elapsed();
    assert!(gap >= std::time::Duration::from_millis(600), "{gap:?}");
    assert_eq!(first.id, second.id, "one id on every chunk");
}
