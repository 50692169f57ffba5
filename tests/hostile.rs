//! Hostile clients over real sockets: malformed and oversized bodies, header floods, slow
//! uploads from strangers, and a client that stops reading its stream. The gateway answers
//! each with a clear error (never a 5xx of its own, never a hang) and keeps serving others.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use common::*;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const KEY: &str = "sk-hostile-caller-0123456789";

fn keyed(mocks: &[&Mock], server: &str) -> String {
    let keys = format!("[[keys]]\nname = \"caller\"\nkey = \"{KEY}\"\n{FAST}");
    config_for(mocks, &keys).replace("max_body_bytes = 65536\n", server)
}

/// POSTs raw bytes as a chat request; the status and the body as JSON.
async fn post_raw(gw: &TestGateway, body: Vec<u8>) -> (u16, Value) {
    let resp = within(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send(),
    )
    .await
    .unwrap();
    let status = resp.status().as_u16();
    let text = within(resp.text()).await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The OpenAI error shape: an object under `error` with a message and a type.
fn assert_openai_error(body: &Value) {
    assert!(
        body["error"]["message"].is_string() && body["error"]["type"].is_string(),
        "not an OpenAI error: {body}"
    );
}

#[tokio::test]
async fn malformed_bodies_are_clear_400s() {
    let mock = Mock::start("p", "").await;
    let config =
        config_for(&[&mock], FAST).replace("max_body_bytes = 65536", "max_body_bytes = 1048576");
    let gw = TestGateway::start(&config).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let nested = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"x"}}],"metadata":{deep}}}"#
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("JSON nested 100 000 deep", nested.into_bytes()),
        (
            "invalid UTF-8",
            b"{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}"
                .to_vec(),
        ),
        (
            "a number out of range",
            br#"{"model":"gpt-4o-mini","temperature":1e400,"messages":[{"role":"user","content":"x"}]}"#
                .to_vec(),
        ),
        ("not JSON", b"\x00\x01garbage".to_vec()),
        ("an empty body", Vec::new()),
    ];
    for (what, body) in cases {
        let (status, json) = post_raw(&gw, body).await;
        assert_eq!(status, 400, "{what}: {json}");
        assert_openai_error(&json);
    }
    assert_eq!(
        mock.stats().await["requests"],
        0,
        "nothing reached upstream"
    );
}

#[tokio::test]
async fn duplicate_keys_are_refused_or_served_never_a_server_error() {
    let mock = Mock::start("p", "").await;
    let gw = TestGateway::serving(&[&mock]).await;
    let bodies = [
        r#"{"model":"gpt-4o-mini","model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x","content":"y"}]}"#,
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"user":"a","user":"b"}"#,
    ];
    for body in bodies {
        let (status, json) = post_raw(&gw, body.as_bytes().to_vec()).await;
        assert!(status == 200 || status == 400, "{body}: {status} {json}");
        if status == 400 {
            assert_openai_error(&json);
        }
    }
}

#[tokio::test]
async fn an_8_mib_string_is_413_over_the_limit_and_served_under_it() {
    let mock = Mock::start("p", "").await;
    let text = "a".repeat(8 * 1024 * 1024);
    let body = serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o-mini", "max_tokens": 5,
        "messages": [{ "role": "user", "content": text }]
    }))
    .unwrap();

    let small = TestGateway::serving(&[&mock]).await; // max_body_bytes = 64 KiB
    let (status, json) = post_raw(&small, body.clone()).await;
    assert_eq!(status, 413, "{json}");
    assert_openai_error(&json);

    let large = TestGateway::start(&keyed(&[&mock], "max_body_bytes = 16777216\n")).await;
    let resp = within(
        client()
            .post(large.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send(),
    )
    .await
    .unwrap();
    let status = resp.status();
    assert_eq!(status, 200, "{}", within(resp.text()).await.unwrap());
}

#[tokio::test]
async fn ten_thousand_headers_are_refused_and_the_gateway_keeps_serving() {
    let mock = Mock::start("p", "").await;
    let gw = TestGateway::serving(&[&mock]).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let mut head = String::from("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n");
    for i in 0..10_000 {
        head.push_str(&format!("x-flood-{i}: v\r\n"));
    }
    head.push_str("content-length: 2\r\n\r\n{}");
    // The gateway may answer and close before it has read everything we send.
    let _ = within(tcp.write_all(head.as_bytes())).await;
    let status = read_status(&mut tcp).await;
    assert!(
        status == Some(431) || status == Some(400) || status.is_none(),
        "{status:?}"
    );
    assert_eq!(gw.chat(&hello(false)).await.status(), 200);
}

/// The status code of the response on `tcp`, or `None` when the gateway closed it.
async fn read_status(tcp: &mut TcpStream) -> Option<u16> {
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    loop {
        let n = within(tcp.read(&mut buf[got..])).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].windows(2).any(|w| w == b"\r\n") || got == buf.len() {
            break;
        }
    }
    let line = std::str::from_utf8(&buf[..got]).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

/// Opens a connection that sends a request's headers and the start of its body, then
/// nothing more.
async fn slow_upload(gw: &TestGateway, auth: Option<&str>) -> TcpStream {
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let auth = auth
        .map(|k| format!("authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         {auth}content-length: 100000\r\n\r\n{{\"model\":"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

#[tokio::test]
async fn strangers_uploading_slowly_cannot_hold_the_gateways_slots() {
    let mock = Mock::start("p", "").await;
    let gw = TestGateway::start(&keyed(&[&mock], "max_in_flight = 4\n")).await;
    // Twice max_in_flight strangers, each stuck mid-body: refused at their headers.
    let mut strangers = Vec::new();
    for _ in 0..8 {
        strangers.push(slow_upload(&gw, None).await);
    }
    for tcp in &mut strangers {
        assert_eq!(read_status(tcp).await, Some(401));
    }
    let started = tokio::time::Instant::now();
    let resp = within(
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the caller waited {:?}",
        started.elapsed()
    );
    drop(strangers);
}

#[tokio::test]
async fn a_slow_upload_is_cut_off_at_the_body_deadline_and_frees_its_slot() {
    let mock = Mock::start("p", "").await;
    let gw = TestGateway::start(&keyed(
        &[&mock],
        "max_in_flight = 1\nbody_timeout_ms = 300\n",
    ))
    .await;
    let mut slow = slow_upload(&gw, Some(KEY)).await;
    // While the slow upload holds the only slot, a second caller is shed.
    let shed = within(
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(shed.status(), 503);
    // The deadline answers the slow client 408 in the OpenAI shape...
    let mut text = String::new();
    let _ = within(slow.read_to_string(&mut text)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    // ...and its slot is free again.
    let served = within(
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(served.status(), 200);
}

/// An OpenAI-style upstream that streams content events forever, counting the bytes the
/// socket accepted.
async fn endless_upstream() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                // The request: headers and a small body, read once.
                let _ = tcp.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                            transfer-encoding: chunked\r\n\r\n";
                if tcp.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let content = "x".repeat(4000);
                let event = format!(
                    "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\
                     \"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\
                     \"finish_reason\":null}}]}}\n\n"
                );
                let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                while tcp.write_all(chunk.as_bytes()).await.is_ok() {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (format!("http://{addr}/v1"), written)
}

#[tokio::test]
async fn a_client_that_stops_reading_holds_a_bounded_stream() {
    let (base_url, written) = endless_upstream().await;
    let config = format!(
        "[server]\nhttp_addr = \"127.0.0.1:0\"\ngrpc_addr = \"none\"\n{FAST}\n\
         [[providers]]\nname = \"endless\"\nkind = \"openai\"\nbase_url = \"{base_url}\"\n\
         api_key = \"sk-test\"\n\n[[models]]\nname = \"gpt-4o-mini\"\n\
         deployments = [{{ provider = \"endless\", model = \"m\" }}]\n"
    )
    .replace("attempt_timeout_ms = 1500", "attempt_timeout_ms = 30000")
    .replace("deadline_ms = 4000", "deadline_ms = 30000");
    let gw = TestGateway::start(&config).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let body = serde_json::to_string(&hello(true)).unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(read_status(&mut tcp).await, Some(200));
    // The client reads nothing more. Once the socket buffers are full the gateway stops
    // reading upstream: what the upstream could write stops growing.
    let mut last = 0;
    let settled = within(async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = written.load(Ordering::Relaxed);
            if now == last && now > 0 {
                return now;
            }
            last = now;
        }
    })
    .await;
    assert!(
        settled < 64 * 1024 * 1024,
        "the gateway took {settled} bytes for a client that reads nothing"
    );
    drop(tcp);
}
