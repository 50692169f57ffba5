//! The response cache end to end: hits that never reach the provider, tenant isolation,
//! key stability, streamed replay, TTLs, `Cache-Control`, and Redis shared by gateways,
//! killed and restarted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use std::time::Duration;

use common::{redis::RedisServer, *};
use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard::api::grpc::pb::{self, gateway_client::GatewayClient};

/// Two keys, for isolation tests.
const KEYS: &str = "[[keys]]\nname = \"team-a\"\nkey = \"sk-team-a-0123456789\"\n\
                    [[keys]]\nname = \"team-b\"\nkey = \"sk-team-b-0123456789\"\n";

/// A config with the cache on (plus `extra`) serving from `mock`.
fn cached(mock: &Mock, extra: &str) -> String {
    config_for(&[mock], &format!("[cache]\nenabled = true\n{FAST}{extra}"))
}

/// A config with the cache on in `redis`.
fn cached_in(mock: &Mock, redis: &RedisServer) -> String {
    cached(
        mock,
        &format!(
            "[state]\nredis_url = \"{}\"\nredis_timeout_ms = 200\n",
            redis.url()
        ),
    )
}

/// POST /v1/chat/completions with extra headers.
async fn post(gw: &TestGateway, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().post(gw.url("/v1/chat/completions")).json(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    within(req.send()).await.unwrap()
}

/// The JSON answer's status, `x-switchyard-cache` and text.
async fn ask(gw: &TestGateway, body: &Value, headers: &[(&str, &str)]) -> (String, String) {
    let resp = post(gw, body, headers).await;
    assert_eq!(resp.status(), 200);
    let cache = header(&resp, "x-switchyard-cache").to_owned();
    let v: Value = resp.json().await.unwrap();
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (cache, text)
}

async fn requests(mock: &Mock) -> u64 {
    mock.stats().await["requests"].as_u64().unwrap()
}

/// Waits (bounded) until the gateway has written `n` entries: writes run off the
/// caller's path, so the next call may otherwise come before the entry.
async fn stored(gw: &TestGateway, n: u64) {
    within(async {
        while metric(&gw.metrics().await, "switchyard_cache_stores_total", &[]) < n as f64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

#[tokio::test]
async fn a_repeated_call_is_answered_from_the_cache_without_reaching_the_provider() {
    let primary = Mock::start("primary", "").await;
    let config = cached(&primary, "").replace(
        "model = \"upstream-primary\" }",
        "model = \"upstream-primary\", price_in = 1.0, price_out = 2.0 }",
    );
    let gw = TestGateway::start(&config).await;
    let first = post(&gw, &hello(false), &[]).await;
    assert_eq!(header(&first, "x-switchyard-cache"), "miss");
    let first: Value = first.json().await.unwrap();
    stored(&gw, 1).await;

    let second = post(&gw, &hello(false), &[]).await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-switchyard-cache"), "hit");
    assert_eq!(header(&second, "x-switchyard-provider"), "primary");
    assert_eq!(header(&second, "x-switchyard-attempts"), "");
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        requests(&primary).await,
        1,
        "the hit never reached the mock"
    );
    assert_eq!(second["choices"], first["choices"]);
    assert_eq!(second["usage"], first["usage"]);
    assert_eq!(second["created"], first["created"]);
    assert_ne!(second["id"], first["id"], "each answer has its own id");

    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "switchyard_cache_requests_total",
            &["result=\"hit\""]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "switchyard_cache_requests_total",
            &["result=\"miss\""]
        ),
        1.0
    );
    assert!(
        metric(
            &metrics,
            "switchyard_cache_saved_usd_micros_total",
            &["model=\"gpt-4o-mini\""]
        ) > 0.0
    );
}

#[tokio::test]
async fn two_keys_never_share_an_entry() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::start(&cached(&primary, KEYS)).await;
    let a = bearer("sk-team-a-0123456789");
    let b = bearer("sk-team-b-0123456789");
    assert_eq!(ask(&gw, &hello(false), &[(a.0, &a.1)]).await.0, "miss");
    stored(&gw, 1).await;
    assert_eq!(ask(&gw, &hello(false), &[(b.0, &b.1)]).await.0, "miss");
    stored(&gw, 2).await;
    assert_eq!(ask(&gw, &hello(false), &[(a.0, &a.1)]).await.0, "hit");
    assert_eq!(ask(&gw, &hello(false), &[(b.0, &b.1)]).await.0, "hit");
    assert_eq!(requests(&primary).await, 2);
}

#[tokio::test]
async fn a_shared_scope_shares_entries_across_keys() {
    let primary = Mock::start("primary", "").await;
    let config = cached(&primary, KEYS).replace(
        "[cache]\nenabled = true\n",
        "[cache]\nenabled = true\nscope = \"shared\"\n",
    );
    let gw = TestGateway::start(&config).await;
    let a = bearer("sk-team-a-0123456789");
    let b = bearer("sk-team-b-0123456789");
    assert_eq!(ask(&gw, &hello(false), &[(a.0, &a.1)]).await.0, "miss");
    stored(&gw, 1).await;
    assert_eq!(ask(&gw, &hello(false), &[(b.0, &b.1)]).await.0, "hit");
    assert_eq!(requests(&primary).await, 1);
}

#[tokio::test]
async fn the_key_is_stable_when_json_objects_are_reordered() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::start(&cached(&primary, "")).await;
    let first = json!({
        "model": "gpt-4o-mini",
        "messages": [{ "role": "user", "content": "Hello" }],
        "tools": [{ "type": "function", "function": { "name": "lookup",
            "parameters": { "type": "object",
                "properties": { "q": { "type": "string" }, "n": { "type": "integer", "minimum": 3 } },
                "required": ["q", "n"] } } }],
        "logit_bias": { "50256": -100, "1": 5 },
        "metadata": { "team": "a", "run": "1" }
    });
    let reordered = json!({
        "metadata": { "run": "1", "team": "a" },
        "logit_bias": { "1": 5, "50256": -100 },
        "tools": [{ "function": { "parameters": { "required": ["q", "n"],
                "properties": { "n": { "minimum": 3, "type": "integer" }, "q": { "type": "string" } },
                "type": "object" }, "name": "lookup" }, "type": "function" }],
        "messages": [{ "content": "Hello", "role": "user" }],
        "model": "gpt-4o-mini"
    });
    assert_eq!(
        header(&post(&gw, &first, &[]).await, "x-switchyard-cache"),
        "miss"
    );
    stored(&gw, 1).await;
    assert_eq!(
        header(&post(&gw, &reordered, &[]).await, "x-switchyard-cache"),
        "hit"
    );
    assert_eq!(requests(&primary).await, 1);
}

fn parse(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

/// The tool calls of a streamed answer, reassembled: (id, name, arguments) by index.
fn tool_calls(chunks: &[Value]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for d in chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls"))
        .flat_map(|t| t.as_array().unwrap())
    {
        let i = d["index"].as_u64().unwrap() as usize;
        if calls.len() <= i {
            calls.resize(i + 1, Default::default());
        }
        if let Some(id) = d["id"].as_str() {
            calls[i].0.push_str(id);
        }
        if let Some(name) = d.pointer("/function/name").and_then(Value::as_str) {
            calls[i].1.push_str(name);
        }
        if let Some(args) = d.pointer("/function/arguments").and_then(Value::as_str) {
            calls[i].2.push_str(args);
        }
    }
    calls
}

fn finish_reason(chunks: &[Value]) -> Option<String> {
    chunks.iter().find_map(|c| {
        c.pointer("/choices/0/finish_reason")?
            .as_str()
            .map(str::to_owned)
    })
}

fn with_tools(stream: bool) -> Value {
    let mut req = hello(stream);
    req["tools"] = json!([{ "type": "function", "function": { "name": "lookup",
        "parameters": { "type": "object", "properties": { "q": {"type": "string"} },
                        "required": ["q"] } } }]);
    req["stream_options"] = json!({ "include_usage": true });
    req
}

#[tokio::test]
async fn a_streamed_replay_equals_the_original_stream() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::start(&cached(&primary, "")).await;
    for req in [hello(true), with_tools(true)] {
        let first = post(&gw, &req, &[]).await;
        assert_eq!(header(&first, "x-switchyard-cache"), "miss");
        let first = sse_events(first).await;
        let before = requests(&primary).await;
        stored(&gw, before).await;
        let again = post(&gw, &req, &[]).await;
        assert_eq!(header(&again, "x-switchyard-cache"), "hit");
        assert_eq!(header(&again, "content-type"), "text/event-stream");
        let again = sse_events(again).await;
        assert_eq!(
            requests(&primary).await,
            before,
            "the replay never reached the mock"
        );
        assert_eq!(again.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(stream_content(&again), stream_content(&first));
        let (first, again) = (parse(&first), parse(&again));
        assert_eq!(tool_calls(&again), tool_calls(&first));
        assert_eq!(finish_reason(&again), finish_reason(&first));
        assert_eq!(again[0]["choices"][0]["delta"]["role"], "assistant");
        let usage = |c: &[Value]| c.iter().find(|c| c.get("usage").is_some()).cloned();
        assert_eq!(
            usage(&again).map(|c| c["usage"].clone()),
            usage(&first).map(|c| c["usage"].clone()),
            "usage only when asked, and the same"
        );
    }
    // The tool call really was one.
    let chunks = parse(&sse_events(post(&gw, &with_tools(true), &[]).await).await);
    assert_eq!(tool_calls(&chunks)[0].1, "lookup");
}

#[tokio::test]
async fn a_json_call_hits_an_entry_a_stream_wrote_and_the_reverse() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::start(&cached(&primary, "")).await;
    // Stream first, then JSON.
    let streamed = sse_events(post(&gw, &with_tools(true), &[]).await).await;
    stored(&gw, 1).await;
    let resp = post(&gw, &with_tools(false), &[]).await;
    assert_eq!(header(&resp, "x-switchyard-cache"), "hit");
    let json: Value = resp.json().await.unwrap();
    let call = &json["choices"][0]["message"]["tool_calls"][0];
    let streamed_calls = tool_calls(&parse(&streamed));
    assert_eq!(call["id"], streamed_calls[0].0.as_str());
    assert_eq!(call["function"]["name"], "lookup");
    assert_eq!(call["function"]["arguments"], streamed_calls[0].2.as_str());
    assert_eq!(
        json["choices"][0]["finish_reason"].as_str(),
        finish_reason(&parse(&streamed)).as_deref()
    );
    assert!(json["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // JSON first, then a stream.
    let (cache, text) = ask(
        &gw,
        &json!({ "model": "gpt-4o-mini",
        "messages": [{ "role": "user", "content": "Again" }] }),
        &[],
    )
    .await;
    assert_eq!(cache, "miss");
    stored(&gw, 2).await;
    let resp = post(
        &gw,
        &json!({ "model": "gpt-4o-mini", "stream": true,
                 "messages": [{ "role": "user", "content": "Again" }] }),
        &[],
    )
    .await;
    assert_eq!(header(&resp, "x-switchyard-cache"), "hit");
    assert_eq!(stream_content(&sse_events(resp).await), text);
    assert_eq!(requests(&primary).await, 2);
}

#[tokio::test]
async fn a_call_asking_for_logprobs_is_never_a_hit_even_on_an_entry_a_stream_wrote() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::start(&cached(&primary, "")).await;
    let body = |stream: bool, extra: Value| {
        let mut b = json!({ "model": "gpt-4o-mini", "stream": stream,
                            "messages": [{ "role": "user", "content": "Odds" }] });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    // A stream asking for logprobs: neither read nor stored.
    let resp = post(&gw, &body(true, json!({ "logprobs": true })), &[]).await;
    assert_eq!(header(&resp, "x-switchyard-cache"), "bypass");
    sse_events(resp).await;
    // The same question twice as JSON: each one reaches the provider.
    for asks in [
        json!({ "logprobs": true }),
        json!({ "logprobs": true }),
        json!({ "logprobs": true, "top_logprobs": 2 }),
        json!({ "top_logprobs": 0 }),
    ] {
        let (cache, _) = ask(&gw, &body(false, asks), &[]).await;
        assert_eq!(cache, "bypass");
    }
    assert_eq!(requests(&primary).await, 5);
    // `logprobs: false` (or null) asks for none: cached as usual.
    for (asks, want) in [
        (json!({ "logprobs": false }), "miss"),
        (json!({ "logprobs": false }), "hit"),
        (json!({ "logprobs": null }), "miss"),
    ] {
        let (cache, _) = ask(&gw, &body(false, asks), &[]).await;
        assert_eq!(cache, want);
        stored(&gw, 1).await;
    }
}

#[tokio::test]
async fn a_broken_stream_is_never_stored() {
    let primary = Mock::start("primary", "cut_after_chunks=3").await;
    let gw = TestGateway::start(&cached(&primary, "")).await;
    let events = sse_events(post(&gw, &hello(true), &[]).await).await;
    assert_ne!(events.last().map(String::as_str), Some("[DONE]"));
    primary.set_fault("").await;
    let resp = post(&gw, &hello(true), &[]).await;
    assert_eq!(header(&resp, "x-switchyard-cache"), "miss");
    sse_events(resp).await;
    stored(&gw, 1).await;
    assert_eq!(ask(&gw, &hello(false), &[]).await.0, "hit");
    assert_eq!(requests(&primary).await, 2);
}

#[tokio::test]
async fn an_entry_expires_after_the_models_ttl() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::start(&format!("{}cache_ttl_s = 1\n", cached(&primary, ""))).await;
    assert_eq!(ask(&gw, &hello(false), &[]).await.0, "miss");
    stored(&gw, 1).await;
    assert_eq!(ask(&gw, &hello(false), &[]).await.0, "hit");
    // The TTL itself is what is tested here: wait it out.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(ask(&gw, &hello(false), &[]).await.0, "miss");
    assert_eq!(requests(&primary).await, 2);
}

#[tokio::test]
async fn a_model_with_cache_ttl_zero_is_never_cached() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::start(&format!("{}cache_ttl_s = 0\n", cached(&primary, ""))).await;
    assert_eq!(ask(&gw, &hello(false), &[]).await.0, "bypass");
    assert_eq!(ask(&gw, &hello(false), &[]).await.0, "bypass");
    assert_eq!(requests(&primary).await, 2);
}

#[tokio::test]
async fn without_a_cache_section_every_answer_is_a_bypass() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::serving(&[&primary]).await;
    assert_eq!(ask(&gw, &hello(false), &[]).await.0, "bypass");
    assert_eq!(ask(&gw, &hello(false), &[]).await.0, "bypass");
    assert_eq!(requests(&primary).await, 2);
}

#[tokio::test]
async fn no_store_neither_reads_nor_writes() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::start(&cached(&primary, "")).await;
    let no_store = [("cache-control", "no-store")];
    assert_eq!(ask(&gw, &hello(false), &no_store).await.0, "bypass");
    // Nothing was stored: the next call is a miss.
    assert_eq!(ask(&gw, &hello(false), &[]).await.0, "miss");
    stored(&gw, 1).await;
    // An entry exists now, and no-store does not read it.
    assert_eq!(ask(&gw, &hello(false), &no_store).await.0, "bypass");
    assert_eq!(requests(&primary).await, 3);
    let metrics = gw.metrics().await;
    assert_eq!(metric(&metrics, "switchyard_cache_stores_total", &[]), 1.0);
}

#[tokio::test]
async fn no_cache_skips_the_lookup_and_refreshes_the_entry() {
    let primary = Mock::start("primary", "").await;
    let mut redis = RedisServer::start();
    let gw = TestGateway::start(&cached_in(&primary, &redis)).await;
    let (_, fresh) = ask(&gw, &hello(false), &[]).await;
    stored(&gw, 1).await;
    // Make the stored entry say something else, so a read of it shows.
    let keys = redis.cli(&["KEYS", "switchyard:cache:v1:*"]).unwrap();
    let key = keys.lines().next().unwrap().to_owned();
    let entry = redis.cli(&["GET", &key]).unwrap();
    let stale = entry.replace(&fresh, "stale");
    assert_ne!(stale, entry);
    redis.cli(&["SET", &key, &stale]).unwrap();
    assert_eq!(
        ask(&gw, &hello(false), &[]).await,
        ("hit".into(), "stale".into())
    );

    let no_cache = [("cache-control", "no-cache")];
    assert_eq!(
        ask(&gw, &hello(false), &no_cache).await,
        ("bypass".into(), fresh.clone())
    );
    stored(&gw, 2).await;
    assert_eq!(ask(&gw, &hello(false), &[]).await, ("hit".into(), fresh));
    assert_eq!(requests(&primary).await, 2);
    redis.kill();
}

#[tokio::test]
async fn two_gateways_on_one_redis_share_entries() {
    let primary = Mock::start("primary", "").await;
    let redis = RedisServer::start();
    let one = TestGateway::start(&cached_in(&primary, &redis)).await;
    let two = TestGateway::start(&cached_in(&primary, &redis)).await;
    assert_eq!(ask(&one, &hello(false), &[]).await.0, "miss");
    stored(&one, 1).await;
    assert_eq!(ask(&two, &hello(false), &[]).await.0, "hit");
    let resp = post(&two, &hello(true), &[]).await;
    assert_eq!(header(&resp, "x-switchyard-cache"), "hit");
    assert_eq!(
        stream_content(&sse_events(resp).await),
        "Hello from primary! You said: Hello"
    );
    assert_eq!(requests(&primary).await, 1);
    let ttl: i64 = redis
        .cli(&[
            "PTTL",
            redis
                .cli(&["KEYS", "switchyard:cache:v1:*"])
                .unwrap()
                .trim(),
        ])
        .unwrap()
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 3_600_000, "entries carry the TTL: {ttl}");
}

#[tokio::test]
async fn with_redis_down_calls_miss_and_still_answer_then_hit_again_once_it_is_back() {
    let primary = Mock::start("primary", "").await;
    let mut redis = RedisServer::start();
    let gw = TestGateway::start(&cached_in(&primary, &redis)).await;
    assert_eq!(ask(&gw, &hello(false), &[]).await.0, "miss");
    stored(&gw, 1).await;
    assert_eq!(ask(&gw, &hello(false), &[]).await.0, "hit");

    redis.kill();
    for stream in [false, true, false] {
        let started = tokio::time::Instant::now();
        let resp = post(&gw, &hello(stream), &[]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-switchyard-cache"), "miss");
        if stream {
            assert_eq!(
                sse_events(resp).await.last().map(String::as_str),
                Some("[DONE]")
            );
        }
        // The Redis timeout is 200 ms; a lookup costs at most that.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(
        metric(
            &gw.metrics().await,
            "switchyard_cache_errors_total",
            &["op=\"get\""]
        ) >= 3.0
    );

    // Back, empty: refilled by the next answer, then hits again.
    redis.restart();
    within(async {
        loop {
            let before = metric(&gw.metrics().await, "switchyard_cache_stores_total", &[]);
            if ask(&gw, &hello(false), &[]).await.0 == "hit" {
                break;
            }
            // Wait for this miss's write to land (or fail) before asking again.
            for _ in 0..50 {
                if metric(&gw.metrics().await, "switchyard_cache_stores_total", &[]) > before {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_grpc_hit_says_so_in_its_metadata() {
    let primary = Mock::start("primary", "").await;
    let gw = TestGateway::start(&cached(&primary, "")).await;
    let mut client = within(GatewayClient::connect(format!("http://{}", gw.addr)))
        .await
        .unwrap();
    let request = grpc_hello;
    let first = within(client.chat(request())).await.unwrap();
    assert_eq!(first.metadata().get("x-switchyard-cache").unwrap(), "miss");
    stored(&gw, 1).await;
    let second = within(client.chat(request())).await.unwrap();
    assert_eq!(second.metadata().get("x-switchyard-cache").unwrap(), "hit");
    assert_eq!(
        second.metadata().get("x-switchyard-provider").unwrap(),
        "primary"
    );
    let text = |r: pb::ChatResponse| r.choices[0].message.as_ref().unwrap().content.clone();
    assert_eq!(text(second.into_inner()), text(first.into_inner()));

    let stream = within(client.chat_stream(request())).await.unwrap();
    assert_eq!(stream.metadata().get("x-switchyard-cache").unwrap(), "hit");
    let mut stream = stream.into_inner();
    let mut content = String::new();
    while let Some(chunk) = within(stream.next()).await {
        let chunk = chunk.unwrap();
        for c in chunk.choices {
            if let Some(d) = c.delta {
                content.push_str(d.content.as_deref().unwrap_or_default());
            }
        }
    }
    assert_eq!(content, "Hello from primary! You said: Hello");
    assert_eq!(requests(&primary).await, 1);
}

#[tokio::test]
async fn a_shared_entry_never_reaches_a_key_the_routing_filters_keep_from_its_deployment() {
    let primary = Mock::start("primary", "").await;
    let other = Mock::start("other", "").await;
    let keys = KEYS.replace(
        "name = \"team-b\"\n",
        "name = \"team-b\"\nallowed_providers = [\"other\"]\n",
    );
    let config = config_for(
        &[&primary, &other],
        &format!("[cache]\nenabled = true\nscope = \"shared\"\n{FAST}{keys}"),
    );
    let gw = TestGateway::start(&config).await;
    let a = bearer("sk-team-a-0123456789");
    let b = bearer("sk-team-b-0123456789");
    assert_eq!(ask(&gw, &hello(false), &[(a.0, &a.1)]).await.0, "miss");
    stored(&gw, 1).await;
    // The shared entry came from `primary`, which team-b may not use: a miss, served by
    // the deployment routing allows.
    let resp = post(&gw, &hello(false), &[(b.0, &b.1)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-cache"), "miss");
    assert_eq!(header(&resp, "x-switchyard-provider"), "other");
    assert_eq!(requests(&primary).await, 1);
    assert_eq!(requests(&other).await, 1);
}
