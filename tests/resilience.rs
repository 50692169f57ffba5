//! Load shedding, per-deployment concurrency limits, hedging, per-provider connect
//! timeouts and the p95 latency alert, over real sockets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use std::time::Duration;

use tokio::time::Instant;

use futures_util::StreamExt as _;

use common::*;
use serde_json::Value;

/// Two mocks behind `gpt-4o-mini`, each deployment with `fields` added (TOML inline-table
/// entries, e.g. `max_concurrent = 1`), plus `extra` top-level TOML and `model` fields.
fn config(a: &Mock, b: &Mock, fields: [&str; 2], extra: &str, model: &str) -> String {
    let mut text =
        format!("[server]\nhttp_addr = \"127.0.0.1:0\"\ngrpc_addr = \"none\"\n{extra}{FAST}");
    for m in [a, b] {
        text.push_str(&format!(
            "\n[[providers]]\nname = \"{}\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-test\"\n",
            m.name,
            m.base_url()
        ));
    }
    let deployment = |m: &Mock, f: &str| {
        let sep = if f.is_empty() { "" } else { ", " };
        format!(
            "{{ provider = \"{}\", model = \"upstream-{}\"{sep}{f} }}",
            m.name, m.name
        )
    };
    text.push_str(&format!(
        "\n[[models]]\nname = \"gpt-4o-mini\"\n{model}deployments = [{}, {}]\n",
        deployment(a, fields[0]),
        deployment(b, fields[1])
    ));
    text
}

async fn error_of(resp: reqwest::Response) -> Value {
    within(resp.json::<Value>()).await.unwrap()["error"].clone()
}

/// Held by every test that sheds: `switchyard_shed_total` has no labels and the recorder is
/// process-wide, so under `cargo test` (one process for this file's tests) a test counting
/// sheds must not run beside another that sheds.
static SHEDDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends a non-streaming request until `wanted` holds for its answer, bounded: a finished
/// stream's slots are released when the gateway drops the stream, just after the client has
/// read its end.
async fn until_answered(
    gw: &TestGateway,
    wanted: impl Fn(&reqwest::Response) -> bool,
) -> reqwest::Response {
    within(async {
        loop {
            let resp = gw.chat(&hello(false)).await;
            if wanted(&resp) {
                return resp;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn beyond_max_in_flight_a_request_is_shed_with_503_and_retry_after() {
    let slow = Mock::start("slow", "latency_ms=600").await;
    let other = Mock::start("other", "latency_ms=600").await;
    let gw = TestGateway::start(&config(&slow, &other, ["", ""], "max_in_flight = 2\n", "")).await;
    let _shedding = SHEDDING.lock().await;
    let shed_before = metric(&gw.metrics().await, "switchyard_shed_total", &[]);
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let url = gw.url("/v1/chat/completions");
            tokio::spawn(async move {
                within(client().post(url).json(&hello(false)).send())
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    // Both are in flight once the mock has seen them.
    slow.wait_for_requests(2).await;

    let started = Instant::now();
    let shed = gw.chat(&hello(true)).await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "refused at once"
    );
    assert_eq!(shed.status(), 503);
    assert_eq!(header(&shed, "retry-after"), "1");
    let error = error_of(shed).await;
    assert_eq!(error["code"], "overloaded");
    assert!(error["message"].as_str().unwrap().contains("limit of 2"));

    for task in busy {
        assert_eq!(task.await.unwrap(), 200);
    }
    // The slots came back: streams hold theirs until they end, then release it.
    for stream in [true, false, true] {
        let resp = gw.chat(&hello(stream)).await;
        assert_eq!(resp.status(), 200);
        if stream {
            assert!(sse_events(resp).await.last().unwrap() == "[DONE]");
        }
    }
    let metrics = gw.metrics().await;
    let shed = metric(&metrics, "switchyard_shed_total", &[]) - shed_before;
    assert_eq!(shed, 1.0, "{metrics}");
}

#[tokio::test]
async fn a_deployment_at_max_concurrent_passes_the_request_on() {
    let limited = Mock::start("limited", "latency_ms=500").await;
    let spare = Mock::start("spare", "").await;
    let gw = TestGateway::start(&config(
        &limited,
        &spare,
        ["max_concurrent = 1", "max_concurrent = 1"],
        "",
        "",
    ))
    .await;
    let first = {
        let url = gw.url("/v1/chat/completions");
        tokio::spawn(async move {
            within(client().post(url).json(&hello(false)).send())
                .await
                .unwrap()
        })
    };
    limited.wait_for_requests(1).await;
    let second = gw.chat(&hello(false)).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        header(&second, "x-switchyard-attempts"),
        "limited/upstream-limited=busy, spare/upstream-spare=ok"
    );
    let first = first.await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, "x-switchyard-attempts"),
        "limited/upstream-limited=ok"
    );
    assert_eq!(limited.stats().await["requests"], 1);
}

#[tokio::test]
async fn every_deployment_at_its_limit_is_a_503_with_retry_after() {
    let a = Mock::start("a", "latency_ms=500").await;
    let b = Mock::start("b", "latency_ms=500").await;
    let gw = TestGateway::start(&config(
        &a,
        &b,
        ["max_concurrent = 1", "max_concurrent = 1"],
        "",
        "",
    ))
    .await;
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = gw.url("/v1/chat/completions");
            tokio::spawn(async move { within(client().post(url).json(&hello(true)).send()).await })
        })
        .collect();
    a.wait_for_requests(1).await;
    b.wait_for_requests(1).await;
    let refused = gw.chat(&hello(false)).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(
        header(&refused, "x-switchyard-attempts"),
        "a/upstream-a=busy, b/upstream-b=busy"
    );
    assert_eq!(error_of(refused).await["code"], "overloaded");
    for task in held {
        let resp = task.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(sse_events(resp).await.last().unwrap(), "[DONE]");
    }
}

#[tokio::test]
async fn a_hedged_stream_takes_the_first_answer_and_cancels_the_stalled_one() {
    // The primary stalls before answering; the hedge leaves after 100 ms.
    let stalled = Mock::start("stalled", "latency_ms=5000").await;
    let quick = Mock::start("quick", "").await;
    let gw = TestGateway::start(&config(
        &stalled,
        &quick,
        ["", ""],
        "",
        "hedge_delay_ms = 100\n",
    ))
    .await;
    for stream in [true, false] {
        let started = Instant::now();
        let resp = gw.chat(&hello(stream)).await;
        let took = started.elapsed();
        assert_eq!(resp.status(), 200);
        // A stream's headers go out when the hedge's stream opens, the stalled attempt
        // still running: its end is in the request log, not in the headers.
        let attempts = if stream {
            "quick/upstream-quick=ok"
        } else {
            "quick/upstream-quick=ok, stalled/upstream-stalled=hedge_lost"
        };
        assert_eq!(header(&resp, "x-switchyard-attempts"), attempts);
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_millis(1500),
            "answered by the hedge, not after the stall: {took:?}"
        );
        if stream {
            let events = sse_events(resp).await;
            assert_eq!(events.last().unwrap(), "[DONE]");
            assert!(!stream_content(&events).is_empty());
        }
    }
    assert_eq!(stalled.stats().await["requests"], 2);
    assert_eq!(quick.stats().await["requests"], 2);
}

#[tokio::test]
async fn a_provider_connect_timeout_bounds_a_connection_that_never_completes() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connect
    // to it neither succeeds nor is refused.
    let (blackhole, socket) = Mock::bound("blackhole");
    socket.listen(0).unwrap();
    let addr = blackhole.addr;
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    // Full once a filler is established (and never accepted); loopback handshakes finish
    // within the connect call, so this is at once.
    within(async {
        while !fillers.iter().any(|s| s.peer_addr().is_ok()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    let backup = Mock::start("backup", "").await;
    let mut text = config(&blackhole, &backup, ["", ""], "", "");
    // Its own connect timeout, well inside the attempt timeout (1.5 s in FAST).
    text = text.replace(
        &format!("base_url = \"{}\"\n", blackhole.base_url()),
        &format!(
            "base_url = \"{}\"\nconnect_timeout_ms = 200\n",
            blackhole.base_url()
        ),
    );
    let gw = TestGateway::start(&text).await;
    let started = Instant::now();
    let resp = gw.chat(&hello(false)).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 200);
    let attempts = header(&resp, "x-switchyard-attempts").to_owned();
    assert!(
        attempts.starts_with("blackhole/upstream-blackhole=")
            && attempts.ends_with("backup/upstream-backup=ok"),
        "{attempts}"
    );
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(1200),
        "the provider's 200 ms connect timeout acted, not the 1.5 s attempt timeout: {took:?}"
    );
    drop(fillers);
}

#[tokio::test]
async fn a_model_whose_p95_crosses_its_threshold_raises_one_alert() {
    let slowish = Mock::start("slowish", "latency_ms=40").await;
    let spare = Mock::start("spare", "").await;
    let gw = TestGateway::start(&config(
        &slowish,
        &spare,
        ["", ""],
        "",
        "alert_p95_ms = 20\n",
    ))
    .await;
    // Only this test in the file sets a p95 threshold: no other raises this series.
    let labels = [r#"kind="latency_p95""#, r#"subject="gpt-4o-mini""#];
    let before = metric(&gw.metrics().await, "switchyard_alerts_total", &labels);
    // The p95 is judged from the 20th answer on, every 8th: 40 answers cross it once.
    for _ in 0..40 {
        assert_eq!(gw.chat(&hello(false)).await.status(), 200);
    }
    let metrics = gw.metrics().await;
    let raised = metric(&metrics, "switchyard_alerts_total", &labels) - before;
    assert_eq!(raised, 1.0, "raised once while above: {metrics}");
}

#[tokio::test]
async fn a_deployment_whose_circuit_opened_is_shown_skipped_and_not_called() {
    let broken = Mock::start("broken", "status=503").await;
    let backup = Mock::start("backup", "").await;
    let gw = TestGateway::start(&config(&broken, &backup, ["", ""], "", "")).await;
    // The default breaker opens after 5 failures in a row.
    for _ in 0..5 {
        let resp = gw.chat(&hello(false)).await;
        assert_eq!(
            header(&resp, "x-switchyard-attempts"),
            "broken/upstream-broken=503, backup/upstream-backup=ok"
        );
    }
    for stream in [false, true] {
        let resp = gw.chat(&hello(stream)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            header(&resp, "x-switchyard-attempts"),
            "broken/upstream-broken=circuit_open, backup/upstream-backup=ok"
        );
    }
    assert_eq!(broken.stats().await["requests"], 5);
}

/// Opens a stream and reads it until its first content chunk has arrived (committed);
/// returns the rest of the body and what was read.
async fn committed_stream(
    gw: &TestGateway,
) -> (
    impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>>,
    String,
) {
    use futures_util::StreamExt as _;
    let resp = gw.chat(&hello(true)).await;
    assert_eq!(resp.status(), 200);
    let mut body = Box::pin(resp.bytes_stream());
    let mut seen = String::new();
    while !seen.contains("\"content\":\"") {
        let chunk = within(body.next()).await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    (body, seen)
}

/// Reads a stream to its end; the whole body.
async fn finish(
    body: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>>,
    mut seen: String,
) -> String {
    use futures_util::StreamExt as _;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = within(body.next()).await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    seen
}

#[tokio::test]
async fn a_committed_stream_holds_its_gateway_slot_until_it_ends() {
    // Chunks 300 ms apart: the stream is mid-body for over a second.
    let slow = Mock::start("slow", "chunk_delay_ms=300").await;
    let spare = Mock::start("spare", "").await;
    let gw = TestGateway::start(&config(&slow, &spare, ["", ""], "max_in_flight = 1\n", "")).await;
    let _shedding = SHEDDING.lock().await;
    let (body, seen) = committed_stream(&gw).await;
    let shed = gw.chat(&hello(false)).await;
    assert_eq!(
        shed.status(),
        503,
        "the committed stream holds the only slot"
    );
    assert_eq!(header(&shed, "retry-after"), "1");
    // Refused before its body is read: an upload that never finishes is answered at once.
    let endless = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"model\": \"gpt-4o-mini\", "))
    })
    .chain(futures_util::stream::pending());
    let upload = within(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(endless))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(upload.status(), 503);
    let whole = finish(body, seen).await;
    assert!(whole.trim_end().ends_with("data: [DONE]"), "{whole}");
    until_answered(&gw, |resp| resp.status() == 200).await;
}

#[tokio::test]
async fn a_committed_stream_holds_its_deployment_slot_until_it_ends() {
    let slow = Mock::start("slow", "chunk_delay_ms=300").await;
    let spare = Mock::start("spare", "").await;
    let gw = TestGateway::start(&config(&slow, &spare, ["max_concurrent = 1", ""], "", "")).await;
    let (body, seen) = committed_stream(&gw).await;
    let second = gw.chat(&hello(false)).await;
    assert_eq!(
        header(&second, "x-switchyard-attempts"),
        "slow/upstream-slow=busy, spare/upstream-spare=ok"
    );
    finish(body, seen).await;
    // Meanwhile the spare serves (`busy` first); then the slow deployment is free again.
    until_answered(&gw, |resp| {
        header(resp, "x-switchyard-attempts") == "slow/upstream-slow=ok"
    })
    .await;
}
