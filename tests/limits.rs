//! Rate limits and budgets over real sockets: in process, and on a real Redis shared by
//! three gateway processes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use std::time::Duration;

use common::{process::Served, redis::RedisServer, *};
use serde_json::{Value, json};

const KEY_A: &str = "sk-team-a-0123456789";
const KEY_B: &str = "sk-team-b-0123456789";

/// `[[keys]]` for team-a (with `a_extra` inline) and team-b.
fn keys(a_extra: &str, b_extra: &str) -> String {
    format!(
        "[[keys]]\nname = \"team-a\"\nkey = \"{KEY_A}\"\n{a_extra}\n\
         [[keys]]\nname = \"team-b\"\nkey = \"{KEY_B}\"\n{b_extra}\n"
    )
}

/// Prices the mock deployments at $1000 per million tokens, in and out: $0.001 a token.
fn priced(config: String) -> String {
    config.replace(
        "model = \"upstream-a\" }",
        "model = \"upstream-a\", price_in = 1000.0, price_out = 1000.0 }",
    )
}

async fn call(gw_url: &str, key: &str, body: &Value) -> reqwest::Response {
    within(
        client()
            .post(format!("{gw_url}/v1/chat/completions"))
            .bearer_auth(key)
            .json(body)
            .send(),
    )
    .await
    .unwrap()
}

fn ask(max_tokens: u32) -> Value {
    json!({ "model": "gpt-4o-mini", "max_tokens": max_tokens,
            "messages": [{ "role": "user", "content": "Hello" }] })
}

async fn error_of(resp: reqwest::Response) -> Value {
    resp.json::<Value>().await.unwrap()["error"].clone()
}

#[tokio::test]
async fn a_key_over_its_rpm_gets_429_with_openais_headers() {
    let a = Mock::start("a", "").await;
    let config = config_for(&[&a], &keys("limits = { rpm = 3 }", ""));
    let gw = TestGateway::start(&config).await;
    let url = gw.url("");
    for remaining in ["2", "1", "0"] {
        let resp = call(&url, KEY_A, &ask(16)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "3");
        assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), remaining);
        assert!(header(&resp, "x-ratelimit-reset-requests").ends_with('s'));
    }
    let resp = call(&url, KEY_A, &ask(16)).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = header(&resp, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "0");
    let error = error_of(resp).await;
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["type"], "requests");
    assert!(
        error["message"].as_str().unwrap().contains("key `team-a`"),
        "{error}"
    );
    // The refused call never reached the provider, and the other key is not limited.
    assert_eq!(a.stats().await["requests"], 3);
    assert_eq!(call(&url, KEY_B, &ask(16)).await.status(), 200);
}

#[tokio::test]
async fn model_limits_count_every_key_and_key_on_model_limits_one() {
    let a = Mock::start("a", "").await;
    let config = config_for(
        &[&a],
        &keys("model_limits = { \"gpt-4o-mini\" = { rpm = 1 } }", ""),
    ) + "limits = { rpm = 3 }\n";
    let gw = TestGateway::start(&config).await;
    let url = gw.url("");
    assert_eq!(call(&url, KEY_A, &ask(16)).await.status(), 200);
    let refused = call(&url, KEY_A, &ask(16)).await;
    assert_eq!(refused.status(), 429);
    let message = error_of(refused).await["message"].clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("key `team-a` on model `gpt-4o-mini`"),
        "{message}"
    );
    // The model's 3 a minute across keys: one used by team-a, two left for team-b.
    assert_eq!(call(&url, KEY_B, &ask(16)).await.status(), 200);
    assert_eq!(call(&url, KEY_B, &ask(16)).await.status(), 200);
    let refused = call(&url, KEY_B, &ask(16)).await;
    assert_eq!(refused.status(), 429);
    assert!(
        error_of(refused).await["message"]
            .as_str()
            .unwrap()
            .contains("model `gpt-4o-mini`")
    );
}

#[tokio::test]
async fn a_concurrency_place_is_held_until_the_call_ends_streams_included() {
    let a = Mock::start("a", "latency_ms=400").await;
    let config = config_for(
        &[&a],
        &format!("{FAST}{}", keys("limits = { max_concurrent = 1 }", "")),
    );
    let gw = TestGateway::start(&config).await;
    let url = gw.url("");
    let first = {
        let url = url.clone();
        tokio::spawn(async move { call(&url, KEY_A, &ask(16)).await.status() })
    };
    a.wait_for_requests(1).await;
    let refused = call(&url, KEY_A, &ask(16)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(first.await.unwrap(), 200);
    // The place came back when the first call ended.
    assert_eq!(call(&url, KEY_A, &ask(16)).await.status(), 200);

    // A stream holds its place until its last chunk, and frees it after.
    a.set_fault("chunk_delay_ms=100").await;
    let mut body = ask(16);
    body["stream"] = json!(true);
    let stream = call(&url, KEY_A, &body).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(call(&url, KEY_A, &ask(16)).await.status(), 429);
    let events = within(sse_events(stream)).await;
    assert!(!stream_content(&events).is_empty());
    assert_eq!(call(&url, KEY_A, &ask(16)).await.status(), 200);
}

#[tokio::test]
async fn tpm_holds_the_estimate_then_settles_to_the_real_usage() {
    let a = Mock::start("a", "").await;
    let config = config_for(&[&a], &keys("limits = { tpm = 300 }", ""));
    let gw = TestGateway::start(&config).await;
    let url = gw.url("");
    // Estimated at the input plus max_tokens (200): one fits in 300, two would not...
    let first = call(&url, KEY_A, &ask(200)).await;
    assert_eq!(first.status(), 200);
    assert!(
        header(&first, "x-ratelimit-remaining-tokens")
            .parse::<u64>()
            .unwrap()
            < 100
    );
    let used = first.json::<Value>().await.unwrap()["usage"]["total_tokens"]
        .as_u64()
        .unwrap();
    assert!(used < 90, "the mock's answer used {used} tokens");
    // ...but the first settled at its real usage, so the second fits.
    let second = call(&url, KEY_A, &ask(200)).await;
    assert_eq!(second.status(), 200);

    // A request whose estimate alone exceeds the limit can never pass: no retry.
    let huge = call(&url, KEY_A, &ask(400)).await;
    assert_eq!(huge.status(), 429);
    assert_eq!(header(&huge, "x-should-retry"), "false");
    assert!(huge.headers().get("retry-after").is_none());
    let error = error_of(huge).await;
    assert_eq!(error["type"], "tokens");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Request too large")
    );
}

/// The cost of an answer at $0.001 a token.
fn cost_of(body: &Value) -> f64 {
    body["usage"]["total_tokens"].as_f64().unwrap() * 0.001
}

#[tokio::test]
async fn a_spent_budget_is_insufficient_quota_and_never_overspent() {
    let a = Mock::start("a", "").await;
    let config = priced(config_for(
        &[&a],
        &keys("budget = { usd_per_day = 0.1 }", ""),
    ));
    let gw = TestGateway::start(&config).await;
    let url = gw.url("");
    let mut spent = 0.0;
    let refused = loop {
        let resp = call(&url, KEY_A, &ask(8)).await;
        if resp.status() != 200 {
            break resp;
        }
        spent += cost_of(&resp.json().await.unwrap());
        assert!(spent < 1.0, "the budget never refused");
    };
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-should-retry"), "false");
    let error = error_of(refused).await;
    assert_eq!(error["code"], "insufficient_quota");
    assert_eq!(error["type"], "insufficient_quota");
    assert!(spent <= 0.1 + 1e-9, "spent {spent} of a 0.1 budget");
    // What is left is less than one more call's estimate.
    assert!(spent > 0.1 - 0.05, "refused with {spent} of 0.1 spent");
    // Another key's budget is its own.
    assert_eq!(call(&url, KEY_B, &ask(8)).await.status(), 200);
}

#[tokio::test]
async fn grpc_callers_get_resource_exhausted_with_the_same_metadata() {
    use switchyard::api::grpc::pb::gateway_client::GatewayClient;
    let a = Mock::start("a", "").await;
    let gw = TestGateway::start(&config_for(&[&a], &keys("limits = { rpm = 1 }", ""))).await;
    let mut client = within(GatewayClient::connect(format!("http://{}", gw.addr)))
        .await
        .unwrap();
    let request = || {
        let mut r = tonic::Request::new(grpc_hello());
        r.metadata_mut()
            .insert("authorization", format!("Bearer {KEY_A}").parse().unwrap());
        r
    };
    let ok = within(client.chat(request())).await.unwrap();
    assert_eq!(
        ok.metadata().get("x-ratelimit-remaining-requests").unwrap(),
        "0"
    );
    let err = within(client.chat(request())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        err.metadata().get("x-switchyard-error-code").unwrap(),
        "rate_limit_exceeded"
    );
    assert_eq!(
        err.metadata().get("x-ratelimit-limit-requests").unwrap(),
        "1"
    );
    assert!(err.metadata().get("retry-after").is_some());
}

// --- on Redis ------------------------------------------------------------------------

/// A temp folder holding `switchyard.toml`.
fn config_dir(name: &str, config: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-limits-{name}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    dir
}

/// Three gateway processes on one Redis, each with `config`.
fn replicas(name: &str, config: &str) -> Vec<Served> {
    let dir = config_dir(name, config);
    (0..3)
        .map(|_| Served::start(&["--config", "switchyard.toml"], &dir))
        .collect()
}

fn state(redis: &RedisServer, extra: &str) -> String {
    format!("[state]\nredis_url = \"{}\"\n{extra}\n", redis.url())
}

/// Sends `n` calls at once, spread over the replicas; the statuses.
async fn spray(replicas: &[Served], n: usize, body: &Value) -> Vec<(u16, Value)> {
    let calls = (0..n).map(|i| {
        let url = format!("http://{}", replicas[i % replicas.len()].http);
        let body = body.clone();
        async move {
            let resp = call(&url, KEY_A, &body).await;
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or_default())
        }
    });
    futures_util::future::join_all(calls).await
}

#[tokio::test]
async fn three_replicas_on_one_redis_admit_exactly_the_limit() {
    let redis = RedisServer::start();
    let a = Mock::start("a", "latency_ms=20").await;
    let config = config_for(
        &[&a],
        &(state(&redis, "") + &keys("limits = { rpm = 25 }", "")),
    );
    let replicas = replicas("rpm", &config);
    let statuses = spray(&replicas, 90, &ask(16)).await;
    let ok = statuses.iter().filter(|s| s.0 == 200).count();
    let limited = statuses.iter().filter(|s| s.0 == 429).count();
    assert_eq!((ok, limited), (25, 65), "{statuses:?}");
    assert_eq!(a.stats().await["requests"], 25);
}

#[tokio::test]
async fn a_budget_shared_by_three_replicas_is_never_overspent() {
    let redis = RedisServer::start();
    let a = Mock::start("a", "latency_ms=20").await;
    let config = priced(config_for(
        &[&a],
        &(state(&redis, "") + &keys("budget = { usd_per_day = 0.3, usd_per_month = 10.0 }", "")),
    ));
    let replicas = replicas("budget", &config);
    let mut spent = 0.0;
    let mut refused = 0;
    // Waves of concurrent calls until the budget refuses everything.
    for _ in 0..20 {
        let statuses = spray(&replicas, 12, &ask(8)).await;
        for (status, body) in &statuses {
            match status {
                200 => spent += cost_of(body),
                429 => {
                    assert_eq!(body["error"]["code"], "insufficient_quota");
                    refused += 1;
                }
                other => panic!("status {other}: {body}"),
            }
        }
        if statuses.iter().all(|s| s.0 == 429) {
            break;
        }
    }
    assert!(refused > 0, "the budget never refused");
    // Each call is reserved at an estimate above its real cost, so concurrent calls on
    // three replicas never take the spend past the cap.
    assert!(spent <= 0.3 + 1e-9, "spent {spent} of a 0.3 budget");
    assert!(spent > 0.2, "refused with only {spent} of 0.3 spent");
    let day_key = redis
        .cli(&["KEYS", "switchyard:budget:team-a:d:*"])
        .unwrap();
    let recorded: f64 = redis.cli(&["GET", &day_key]).unwrap().parse().unwrap();
    assert!(
        (recorded / 1e6 - spent).abs() < 1e-6,
        "Redis says {recorded} micro-USD, the answers {spent}"
    );
}

#[tokio::test]
async fn the_holds_of_a_killed_replica_expire() {
    let redis = RedisServer::start();
    let a = Mock::start("a", "chunk_delay_ms=200").await;
    let config = config_for(
        &[&a],
        &(state(&redis, "hold_ttl_s = 1") + &keys("limits = { max_concurrent = 1 }", "")),
    );
    let mut replicas = replicas("holds", &config);
    let mut body = ask(16);
    body["stream"] = json!(true);
    let first = format!("http://{}", replicas[0].http);
    let stream = call(&first, KEY_A, &body).await;
    assert_eq!(stream.status(), 200);
    // The first replica dies mid-stream, holding the key's one place.
    let _ = replicas[0].child.kill();
    let _ = replicas[0].child.wait();
    drop(stream);
    let second = format!("http://{}", replicas[1].http);
    assert_eq!(call(&second, KEY_A, &ask(16)).await.status(), 429);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(call(&second, KEY_A, &ask(16)).await.status(), 200);
    replicas.truncate(0);
}

#[tokio::test]
async fn redis_down_open_admits_on_local_counters_and_recovers() {
    let mut redis = RedisServer::start();
    let a = Mock::start("a", "").await;
    let config = config_for(
        &[&a],
        &(state(&redis, "redis_timeout_ms = 200") + &keys("limits = { rpm = 4 }", "")),
    );
    let gw = TestGateway::start(&config).await;
    let url = gw.url("");
    assert_eq!(call(&url, KEY_A, &ask(16)).await.status(), 200);
    assert_eq!(
        redis
            .cli(&["ZCARD", "switchyard:limit:key:team-a:r"])
            .unwrap(),
        "1"
    );
    redis.kill();
    // Open: this replica's own counters (which start empty) enforce the limit meanwhile.
    let started = tokio::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(call(&url, KEY_A, &ask(16)).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "five calls with Redis down took {:?}",
        started.elapsed()
    );
    let metrics = gw.metrics().await;
    assert!(metric(&metrics, "switchyard_limits_degraded_total", &[]) >= 5.0);
    // Back: the shared counters again (Redis restarted empty).
    redis.restart();
    within(async {
        loop {
            let resp = call(&url, KEY_A, &ask(16)).await;
            if redis
                .cli(&["EXISTS", "switchyard:limit:key:team-a:r"])
                .as_deref()
                == Some("1")
            {
                break;
            }
            drop(resp);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn redis_down_closed_refuses_at_once_with_503() {
    let mut redis = RedisServer::start();
    let a = Mock::start("a", "").await;
    let config = config_for(
        &[&a],
        &(state(
            &redis,
            "redis_timeout_ms = 200\non_redis_error = \"closed\"",
        ) + &keys("limits = { rpm = 100 }", "")),
    );
    let gw = TestGateway::start(&config).await;
    let url = gw.url("");
    assert_eq!(call(&url, KEY_A, &ask(16)).await.status(), 200);
    redis.kill();
    let started = tokio::time::Instant::now();
    let resp = call(&url, KEY_A, &ask(16)).await;
    assert_eq!(resp.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(error_of(resp).await["code"], "limits_unavailable");
    // A key with no limits is not held up by Redis.
    assert_eq!(call(&url, KEY_B, &ask(16)).await.status(), 200);
    redis.restart();
    within(async {
        while call(&url, KEY_A, &ask(16)).await.status() != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn cache_hits_count_against_no_limit() {
    let a = Mock::start("a", "").await;
    let config = config_for(
        &[&a],
        &format!("[cache]\nttl_s = 60\n{}", keys("limits = { rpm = 2 }", "")),
    );
    let gw = TestGateway::start(&config).await;
    let url = gw.url("");
    let first = call(&url, KEY_A, &ask(16)).await;
    assert_eq!(header(&first, "x-switchyard-cache"), "miss");
    assert_eq!(header(&first, "x-ratelimit-remaining-requests"), "1");
    drop(first);
    // The fill is written off the caller's path: wait until a repeat hits.
    within(async {
        loop {
            let resp = call(&url, KEY_A, &ask(16)).await;
            assert_eq!(resp.status(), 200);
            if header(&resp, "x-switchyard-cache") == "hit" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for _ in 0..5 {
        let hit = call(&url, KEY_A, &ask(16)).await;
        assert_eq!(hit.status(), 200);
        assert_eq!(header(&hit, "x-switchyard-cache"), "hit");
    }
    // Only the first call (and at most one repeat before the fill landed) reached the
    // provider and took an rpm place; a new question still has one.
    let upstream = a.stats().await["requests"].as_u64().unwrap();
    assert!(upstream <= 2, "{upstream}");
    if upstream == 1 {
        assert_eq!(call(&url, KEY_A, &ask(17)).await.status(), 200);
    }
}

#[tokio::test]
async fn released_and_zero_cost_reservations_age_out_of_redis_cleanly() {
    // Lua writes a negated zero as "-0", which HINCRBY rejects: a released reservation
    // (0 tokens) leaving the window, or a zero-cost budget hold expiring, must not break
    // the scripts. Closed mode makes any script error a visible 503.
    let redis = RedisServer::start();
    let a = Mock::start("a", "status=500").await;
    let config = config_for(
        &[&a],
        &(state(&redis, "on_redis_error = \"closed\"\nhold_ttl_s = 1")
            + &keys(
                "limits = { tpm = 100000 }\nbudget = { usd_per_day = 5.0 }",
                "",
            )),
    );
    let gw = TestGateway::start(&config).await;
    let url = gw.url("");
    // Fails upstream: its tokens are released to 0; the model is unpriced: a 0 hold.
    assert_eq!(call(&url, KEY_A, &ask(16)).await.status(), 500);
    let t = "switchyard:limit:key:team-a:t";
    let rid = redis.cli(&["ZRANGE", t, "0", "0"]).unwrap();
    assert!(!rid.is_empty());
    // Age it out of the 60 s window, and let the budget hold expire.
    let old = redis.cli(&["TIME"]).unwrap();
    let secs: i64 = old.lines().next().unwrap().parse().unwrap();
    let aged = ((secs - 120) * 1000).to_string();
    redis.cli(&["ZADD", t, &aged, &rid]).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.set_fault("").await;
    for _ in 0..3 {
        assert_eq!(call(&url, KEY_A, &ask(16)).await.status(), 200);
    }
    // The three served calls' real tokens are in the window's sum.
    let sum: u64 = redis
        .cli(&["HGET", "switchyard:limit:key:team-a:tv", "_sum"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(sum > 0);
}

#[tokio::test]
async fn a_request_without_max_tokens_is_not_too_large_for_a_modest_tpm() {
    let a = Mock::start("a", "").await;
    let gw = TestGateway::start(&config_for(&[&a], &keys("limits = { tpm = 3000 }", ""))).await;
    let body = json!({ "model": "gpt-4o-mini",
                       "messages": [{ "role": "user", "content": "Hello" }] });
    // Estimated at the default 4096 output tokens, clamped to what the limit holds.
    let resp = call(&gw.url(""), KEY_A, &body).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_stream_the_caller_leaves_after_content_spends_its_estimate() {
    let redis = RedisServer::start();
    let a = Mock::start("a", "chunk_delay_ms=150").await;
    let config = priced(config_for(
        &[&a],
        &(state(&redis, "") + &keys("budget = { usd_per_day = 5.0 }", "")),
    ));
    let gw = TestGateway::start(&config).await;
    let mut body = ask(20);
    body["stream"] = json!(true);
    let mut resp = call(&gw.url(""), KEY_A, &body).await;
    assert_eq!(resp.status(), 200);
    // Read until content arrived (past the role chunk's empty content), then leave before
    // the end (and before any usage).
    let mut seen = String::new();
    while !seen
        .split("\"content\":\"")
        .skip(1)
        .any(|rest| !rest.starts_with('"'))
    {
        let chunk = within(resp.chunk()).await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);
    // The provider billed what it sent; how much is unknown, so the estimate is spent.
    let spent = within(async {
        loop {
            let keys = redis
                .cli(&["KEYS", "switchyard:budget:team-a:d:*"])
                .unwrap();
            if !keys.is_empty()
                && let Some(v) = redis.cli(&["GET", &keys])
                && let Ok(micros) = v.parse::<u64>()
            {
                break micros;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Input estimate (a few tokens) plus max_tokens 20, at $0.001 a token.
    assert!((20_000..40_000).contains(&spent), "spent {spent} micro-USD");
    assert_eq!(
        redis
            .cli(&["HGET", "switchyard:budget:team-a:hv", "_sum"])
            .unwrap(),
        "0"
    );
}

#[tokio::test]
async fn a_redis_that_does_not_answer_costs_one_timeout_not_one_per_call() {
    // A port that takes connections and never answers: every Redis call would wait out
    // the timeout. After one does, Redis is taken as down for a second.
    let (hung, socket) = Mock::bound("hung-redis");
    socket.listen(128).unwrap();
    let a = Mock::start("a", "").await;
    let config = config_for(
        &[&a],
        &(format!(
            "[state]\nredis_url = \"redis://{}/0\"\nredis_timeout_ms = 300\n",
            hung.addr
        ) + &keys("limits = { rpm = 100 }", "")),
    );
    let gw = TestGateway::start(&config).await;
    let url = gw.url("");
    let started = tokio::time::Instant::now();
    assert_eq!(call(&url, KEY_A, &ask(16)).await.status(), 200);
    let first = started.elapsed();
    assert!(first >= Duration::from_millis(250), "{first:?}");
    // None of the next calls waits out the timeout: each is judged on its own, so a
    // loaded machine slowing every call a little does not read as a timeout.
    for i in 0..5 {
        let started = tokio::time::Instant::now();
        assert_eq!(call(&url, KEY_A, &ask(16)).await.status(), 200);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(250), "call {i} took {took:?}");
    }
}
