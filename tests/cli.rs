//! The `switchyard` binary as a user runs it: the embedded default answers with no setup,
//! `check-config` names the bad key, secrets never reach the logs, and `healthcheck` exits
//! as a container runtime expects.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use std::{process::Command, time::Duration};

use common::{
    process::{BIN, Served},
    *,
};

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn with_no_config_and_no_keys_the_simulated_default_answers() {
    let dir = tempdir("default");
    let served = Served::start(&[], &dir);
    let curl = served.wait_for("try: curl");
    assert!(curl.contains(&served.http), "{curl}");
    let resp = served.chat().await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "sim-primary");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("sim-primary")
    );
}

#[tokio::test]
async fn api_keys_never_appear_in_logs_or_errors() {
    let (dead, _held) = Mock::bound("primary");
    let dir = tempdir("secret");
    let config = config_for(&[&dead], FAST).replace("sk-test-primary", "sk-live-SUPERSECRET");
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let served = Served::start(&[], &dir);
    let resp = served.chat().await;
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    let logs = served.drain();
    assert!(
        logs.contains("\"message\":\"request\""),
        "the request was logged: {logs}"
    );
    assert!(
        !body.contains("SUPERSECRET") && !logs.contains("SUPERSECRET"),
        "{body}\n{logs}"
    );
}

/// A valid config: model `m` on one local provider `p`, with `extra` after `[server]`.
fn one_provider_config(extra: &str) -> String {
    config_for(&[], extra).replace(
        "deployments = []",
        "deployments = [{ provider = \"p\", model = \"m\" }]",
    ) + "\n[[providers]]\nname = \"p\"\nkind = \"vllm\"\n"
}

#[test]
fn check_config_accepts_a_valid_file_and_names_the_bad_key() {
    let dir = tempdir("check");
    let good = dir.join("good.toml");
    std::fs::write(&good, one_provider_config("")).unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[providers]]\nname = \"p\"\nkind = \"nope\"\n[[models]]\nname = \"m\"\ndeployments = [{ provider = \"p\", model = \"m\" }]\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("providers[0].kind") && err.contains("nope"),
        "{err}"
    );

    std::fs::write(&bad, "[server]\nhttp_adr = \"x\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http_adr"));
}

#[test]
fn check_config_refuses_what_serve_would_refuse_a_broken_policy_or_price_file() {
    let dir = tempdir("check-deep");
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(
        dir.join("scripts/broken.lua"),
        "function route(request, candidates\n",
    )
    .unwrap();
    std::fs::write(dir.join("prices.toml"), "[models.\n").unwrap();
    let with = |extra: &str| {
        let file = dir.join("switchyard.toml");
        std::fs::write(&file, one_provider_config(extra)).unwrap();
        let out = Command::new(BIN)
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = with("");
    assert!(
        ok && text.contains("ok (1 providers, 1 models, built-in prices, state in process)"),
        "{text}"
    );
    let (ok, text) = with("[routing]\nscripts_dir = \"scripts\"\ndefault_policy = \"broken\"\n");
    assert!(!ok && text.contains("broken"), "{text}");
    let (ok, text) = with("[pricing]\nsource = \"prices.toml\"\n");
    assert!(!ok && text.contains("prices.toml"), "{text}");
    std::fs::write(
        dir.join("prices.toml"),
        "[models.m]\ninput = 1.0\noutput = 2.0\n",
    )
    .unwrap();
    let (ok, text) = with("[pricing]\nsource = \"prices.toml\"\n");
    assert!(ok && text.contains("1 prices from"), "{text}");
}

#[test]
fn mock_rejects_a_bad_fault_spec() {
    let out = Command::new(BIN)
        .args(["mock", "--addr", "127.0.0.1:0", "--fault", "explode=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown fault"));
}

#[test]
fn route_explain_prints_candidates_removals_order_and_time() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("examples/routing/switchyard.toml");
    let request = root.join("examples/routing/request.json");
    let run = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["route", "--explain", "--config"])
            .arg(&config)
            .arg("--request")
            .arg(&request)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(&["--key", "analytics", "--header", "x-security-level: high"]);
    assert!(text.contains("policy cost"), "{text}");
    assert!(text.contains("deepseek/deepseek-chat"), "{text}");
    assert!(
        text.contains("security level high requires tags [soc2]; lacks [soc2]"),
        "{text}"
    );
    assert!(text.contains("1. openai/gpt-4o-mini"), "{text}");
    assert!(text.contains("2. azure-eu/gpt-4o"), "{text}");
    assert!(!text.contains("3. "), "{text}");
    assert!(text.contains("policy took"), "{text}");

    let json: serde_json::Value = serde_json::from_str(&run(&["--json"])).unwrap();
    let order: Vec<&str> = json["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    // Anonymous, low level: nothing removed, cheapest first.
    assert_eq!(
        order,
        [
            "openai/gpt-4o-mini",
            "deepseek/deepseek-chat",
            "azure-eu/gpt-4o"
        ]
    );
    assert_eq!(json["removed"], serde_json::json!([]));

    // A key capped at medium asking for high is refused, and the report says so.
    let text = run(&["--key", "prototype", "--header", "x-security-level: high"]);
    assert!(text.contains("refused (403)"), "{text}");
}

/// A gateway process in front of a mock that sends one chunk every `chunk_ms`, draining
/// for at most `drain_ms` on shutdown; and a stream it is serving.
async fn streaming_gateway(
    name: &str,
    chunk_ms: u64,
    drain_ms: u64,
) -> (Served, Mock, reqwest::Response) {
    let slow = Mock::start("slow", &format!("chunk_delay_ms={chunk_ms}")).await;
    let dir = tempdir(name);
    let config = config_for(&[&slow], FAST).replace(
        "[server]\n",
        &format!("[server]\ndrain_timeout_ms = {drain_ms}\n"),
    );
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let served = Served::start(&["--config", "switchyard.toml"], &dir);
    let stream = within(
        client()
            .post(format!("http://{}/v1/chat/completions", served.http))
            .json(&hello(true))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(stream.status(), 200);
    (served, slow, stream)
}

fn terminate(served: &Served) {
    let ok = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Waits (bounded) for the process to exit; how long it took.
fn exit_within(served: &mut Served, limit: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    while started.elapsed() < limit {
        if served.child.try_wait().unwrap().is_some() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the gateway did not exit within {limit:?}");
}

#[tokio::test]
async fn on_sigterm_a_stream_in_flight_finishes_before_the_process_exits() {
    let (mut served, _slow, stream) = streaming_gateway("drain-ok", 60, 10_000).await;
    terminate(&served);
    let events = within(sse_events(stream)).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(!stream_content(&events).is_empty());
    exit_within(&mut served, Duration::from_secs(5));
}

#[tokio::test]
async fn on_sigterm_the_drain_deadline_bounds_how_long_the_process_waits() {
    // A chunk a second: the stream would take several seconds, far past the 300 ms drain.
    let (mut served, _slow, stream) = streaming_gateway("drain-deadline", 1_000, 300).await;
    terminate(&served);
    let took = exit_within(&mut served, Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    let logs = served.drain();
    assert!(logs.contains("drain deadline passed"), "{logs}");
    // The client sees its stream end (cut), not hang.
    let rest = within(stream.bytes()).await;
    assert!(rest.map_or(true, |b| !String::from_utf8_lossy(&b).contains("[DONE]")));
}

#[tokio::test]
async fn a_reloaded_drain_deadline_is_the_one_a_later_shutdown_uses() {
    // Started with a 60 s drain; a reload shortens it to 300 ms before SIGTERM.
    let (mut served, _slow, _stream) = streaming_gateway("drain-reload", 1_000, 60_000).await;
    let file = tempdir("drain-reload").join("switchyard.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("drain_timeout_ms = 60000", "drain_timeout_ms = 300"),
    )
    .unwrap();
    let ok = Command::new("kill")
        .args(["-HUP", &served.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    served.wait_for("config reloaded");
    terminate(&served);
    let took = exit_within(&mut served, Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
}

#[test]
fn check_config_says_whether_redis_answers_without_failing_on_it() {
    let dir = tempdir("check-redis");
    let redis = common::redis::RedisServer::start();
    let check = |url: &str| {
        let path = dir.join("redis.toml");
        let state = format!("[state]\nredis_url = \"{url}\"\nredis_timeout_ms = 300\n");
        std::fs::write(&path, one_provider_config(&state)).unwrap();
        let out = Command::new(BIN)
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(check(&redis.url()).contains("Redis reachable"));
    // A password in the URL never reaches the output.
    let (mock, _socket) = Mock::bound("nothing");
    let dead = format!("redis://:hunter2-secret@{}/0", mock.addr);
    let out = check(&dead);
    assert!(out.contains("Redis NOT reachable now"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_on_a_2xx_and_1_on_an_error_status_or_no_answer() {
    let mock = Mock::start("p", "").await;
    let gw = TestGateway::serving(&[&mock]).await;
    let (dead, _held) = Mock::bound("dead");
    let run = |url: String| {
        tokio::task::spawn_blocking(move || {
            let out = Command::new(BIN)
                .args(["healthcheck", "--url", &url, "--timeout-ms", "5000"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.code(), text)
        })
    };
    let (code, text) = run(gw.url("/healthz")).await.unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("200"), "{text}");

    let (code, text) = run(gw.url("/no-such-page")).await.unwrap();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("404"), "{text}");

    let (code, text) = run(format!("http://{}/healthz", dead.addr)).await.unwrap();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("healthcheck"), "{text}");
}
