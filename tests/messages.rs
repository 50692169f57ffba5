//! Anthropic's Messages API in (`/v1/messages`, `/v1/messages/count_tokens`) over real
//! sockets: pass-through to Anthropic deployments byte for byte, translation to the other
//! formats, Anthropic's error shape, and failover, limits and the cache as on chat.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use switchyard::mock::MockFormat;

const VERSION: &str = "2023-06-01";

/// POST a raw body to `path` with Anthropic's headers.
async fn post_raw(
    gw: &TestGateway,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .header("anthropic-version", VERSION);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    within(req.body(body.to_owned()).send()).await.unwrap()
}

async fn post(gw: &TestGateway, body: &Value) -> reqwest::Response {
    post_raw(gw, "/v1/messages", &body.to_string(), &[]).await
}

fn ask(stream: bool) -> Value {
    json!({ "model": "gpt-4o-mini", "max_tokens": 256, "stream": stream,
            "messages": [{ "role": "user", "content": "Hello" }] })
}

/// `(event, data)` of every SSE event of a body.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|e| {
            let mut name = None;
            let mut data = None;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                }
                if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(d).unwrap());
                }
            }
            Some((name?, data?))
        })
        .collect()
}

fn text_of(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text")?.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_passed_through_request_reaches_anthropic_byte_for_byte_and_its_answer_comes_back_unchanged()
 {
    let a = Mock::speaking(MockFormat::Anthropic, "ant", "").await;
    let gw = TestGateway::serving(&[&a]).await;
    // First turn: a thinking answer with its signature.
    let first = json!({ "model": "gpt-4o-mini", "max_tokens": 4096,
        "thinking": { "type": "enabled", "budget_tokens": 2048 },
        "messages": [{ "role": "user", "content": "Hello" }] });
    let resp = post(&gw, &first).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "ant");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        answer["id"].as_str().unwrap().get(..8),
        Some("msg_mock"),
        "the provider's own id"
    );
    let thinking = &answer["content"][0];
    assert_eq!(thinking["type"], "thinking");
    let signature = thinking["signature"].as_str().unwrap().to_owned();
    assert!(signature.starts_with("EqMock+"));
    // Second turn, sent as raw text: odd spacing, key order, an escaped slash in the
    // signature, a number written as 1.0e3, cache_control and a field no schema knows.
    let sig_escaped = signature.replace('/', "\\/");
    let text = thinking["thinking"].as_str().unwrap();
    let body = format!(
        r#"{{"x_future_field" : {{"z": 1, "a": [1.0e3, -0.0]}},  "model":"gpt-4o-mini","max_tokens":4096,
"thinking":{{"type":"enabled","budget_tokens":2048}},
"messages":[{{"role":"user","content":"Hello"}},
 {{"role":"assistant","content":[{{"type":"thinking","thinking":{},"signature":"{sig_escaped}"}},{{"type":"text","text":"Hi!"}}]}},
 {{"role":"user","content":[{{"type":"text","text":"More","cache_control":{{"type":"ephemeral"}}}}]}}]}}"#,
        serde_json::to_string(text).unwrap()
    );
    let resp = post_raw(
        &gw,
        "/v1/messages",
        &body,
        &[("anthropic-beta", "interleaved-thinking-2025-05-14")],
    )
    .await;
    let status = resp.status();
    let returned = resp.text().await.unwrap();
    assert_eq!(status, 200, "{returned}");
    let stats = a.stats().await;
    let expected = body.replace("\"model\":\"gpt-4o-mini\"", "\"model\":\"upstream-ant\"");
    assert_eq!(
        stats["last_body"], expected,
        "only the model changed on the way"
    );
    assert_eq!(
        stats["last_headers"]["anthropic-beta"],
        "interleaved-thinking-2025-05-14"
    );
    assert_eq!(stats["last_headers"]["anthropic-version"], VERSION);
    // The mock checked the signature against the thinking text: it arrived intact.
    let answer: Value = serde_json::from_str(&returned).unwrap();
    assert_eq!(answer["type"], "message");
    assert_eq!(
        answer["usage"]["cache_creation_input_tokens"], 0,
        "the provider's usage, as written"
    );
}

#[tokio::test]
async fn a_passed_through_stream_returns_every_event_the_provider_sent() {
    let a = Mock::speaking(MockFormat::Anthropic, "ant", "").await;
    let gw = TestGateway::serving(&[&a]).await;
    let mut body = ask(true);
    body["max_tokens"] = json!(2048);
    body["thinking"] = json!({ "type": "enabled", "budget_tokens": 1024 });
    let resp = post(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    let text = within(resp.text()).await.unwrap();
    let ev = events(&text);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    for expected in [
        "ping",
        "content_block_start",
        "content_block_stop",
        "message_delta",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    // Every event of the mock's stream: one thinking block with its signature_delta, one
    // text block; the ids are the provider's, not the gateway's.
    assert!(
        ev[0].1["message"]["id"]
            .as_str()
            .unwrap()
            .starts_with("msg_mock")
    );
    let deltas: Vec<&str> = ev
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/type")?.as_str())
        .collect();
    assert!(deltas.contains(&"thinking_delta") && deltas.contains(&"signature_delta"));
    assert!(!text_of(&ev).is_empty());
    let starts = names
        .iter()
        .filter(|n| **n == "content_block_start")
        .count();
    let stops = names.iter().filter(|n| **n == "content_block_stop").count();
    assert_eq!((starts, stops), (2, 2));
    // The mock saw `stream: true` set by the splice, nothing else changed.
    let stats = a.stats().await;
    assert_eq!(stats["last_request"]["stream"], true);
    assert_eq!(stats["last_request"]["thinking"]["budget_tokens"], 1024);
}

#[tokio::test]
async fn to_an_openai_deployment_the_request_is_translated_and_the_answer_is_a_message() {
    let o = Mock::speaking(MockFormat::OpenAi, "oa", "").await;
    let gw = TestGateway::serving(&[&o]).await;
    let body = json!({ "model": "gpt-4o-mini", "max_tokens": 300,
        "system": "Be brief.", "stop_sequences": ["END"], "metadata": { "user_id": "u-7" },
        "tools": [{ "name": "get_weather", "input_schema": { "type": "object",
            "properties": { "city": { "type": "string" } } } }],
        "tool_choice": { "type": "tool", "name": "get_weather" },
        "messages": [{ "role": "user", "content": "Weather in Paris?" }] });
    let resp = post(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["type"], "message");
    assert!(answer["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(answer["stop_reason"], "tool_use");
    let tool = answer["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap();
    assert_eq!(tool["name"], "get_weather");
    assert!(tool["input"].is_object());
    assert!(answer["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let sent = &o.stats().await["last_request"];
    assert_eq!(
        sent["messages"][0],
        json!({ "role": "system", "content": "Be brief." })
    );
    assert_eq!(sent["max_tokens"], 300);
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["user"], "u-7");
    assert_eq!(sent["tool_choice"]["function"]["name"], "get_weather");

    // The stream: Anthropic's event sequence written from the chunks.
    let resp = post(&gw, &ask(true)).await;
    assert_eq!(resp.status(), 200);
    let ev = events(&within(resp.text()).await.unwrap());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        ["message_start", "ping", "content_block_start"]
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(!text_of(&ev).is_empty());
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn to_a_gemini_deployment_tools_and_streams_are_translated() {
    let g = Mock::speaking(MockFormat::Gemini, "gem", "").await;
    let gw = TestGateway::serving(&[&g]).await;
    let body = json!({ "model": "gpt-4o-mini", "max_tokens": 300, "stream": true,
        "tools": [{ "name": "lookup", "input_schema": { "type": "object",
            "properties": { "q": { "type": "string" } }, "required": ["q"] } }],
        "tool_choice": { "type": "any" },
        "messages": [{ "role": "user", "content": [{ "type": "text", "text": "Find it" }] }] });
    let resp = post(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    let ev = events(&within(resp.text()).await.unwrap());
    let start = ev
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .unwrap();
    assert_eq!(start.1["content_block"]["name"], "lookup");
    let json: String = ev
        .iter()
        .filter_map(|(_, d)| {
            d.pointer("/delta/partial_json")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(serde_json::from_str::<Value>(&json).unwrap().is_object());
    assert_eq!(ev[ev.len() - 2].1["delta"]["stop_reason"], "tool_use");
    let sent = &g.stats().await["last_request"];
    assert_eq!(sent["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
}

#[tokio::test]
async fn errors_are_in_anthropics_shape_with_its_status_codes() {
    let a = Mock::speaking(MockFormat::Anthropic, "ant", "status=529").await;
    let keyed = format!("{FAST}[[keys]]\nname = \"team\"\nkey = \"sk-team-0123456789\"\n");
    let gw = TestGateway::start(&config_for(&[&a], &keyed)).await;
    // No key: 401 authentication_error.
    let resp = post(&gw, &ask(false)).await;
    assert_eq!(resp.status(), 401);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "authentication_error");
    assert!(e["request_id"].is_string());
    // x-api-key is the key, as Anthropic's SDK sends it; the provider is overloaded: 529.
    let key = [("x-api-key", "sk-team-0123456789")];
    let resp = post_raw(&gw, "/v1/messages", &ask(false).to_string(), &key).await;
    assert_eq!(resp.status(), 529);
    assert!(!header(&resp, "retry-after").is_empty());
    assert!(header(&resp, "x-switchyard-attempts").contains("529"));
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["type"], "overloaded_error");
    // Authorization: Bearer works too; no anthropic-version: 400, as Anthropic answers.
    let resp = within(
        client()
            .post(gw.url("/v1/messages"))
            .bearer_auth("sk-team-0123456789")
            .json(&ask(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-version")
    );
    // An unknown model: 404 not_found_error; a missing max_tokens: 400.
    let mut unknown = ask(false);
    unknown["model"] = json!("no-such-model");
    let resp = post_raw(&gw, "/v1/messages", &unknown.to_string(), &key).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "not_found_error"
    );
    let mut bare = ask(false);
    bare.as_object_mut().unwrap().remove("max_tokens");
    let resp = post_raw(&gw, "/v1/messages", &bare.to_string(), &key).await;
    assert_eq!(resp.status(), 400);
    // A GET: 405 in the same shape.
    let resp = within(client().get(gw.url("/v1/messages")).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.json::<Value>().await.unwrap()["type"], "error");
}

#[tokio::test]
async fn a_failing_anthropic_deployment_fails_over_to_a_translating_one() {
    let a = Mock::speaking(MockFormat::Anthropic, "ant", "status=503").await;
    let o = Mock::speaking(MockFormat::OpenAi, "oa", "").await;
    let gw = TestGateway::serving(&[&a, &o]).await;
    let resp = post(&gw, &ask(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "oa");
    let attempts = header(&resp, "x-switchyard-attempts").to_owned();
    assert!(
        attempts.contains("503") && attempts.contains("ok"),
        "{attempts}"
    );
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["type"], "message");
    // A stream too: before any content the failover is invisible, and the events are the
    // translated ones.
    let resp = post(&gw, &ask(true)).await;
    assert_eq!(resp.status(), 200);
    let ev = events(&within(resp.text()).await.unwrap());
    assert_eq!(ev.first().unwrap().0, "message_start");
    assert_eq!(ev.last().unwrap().0, "message_stop");
    assert!(!text_of(&ev).is_empty());
}

#[tokio::test]
async fn a_key_over_its_limit_gets_a_429_in_anthropics_shape() {
    let a = Mock::speaking(MockFormat::Anthropic, "ant", "").await;
    let keyed = format!(
        "{FAST}[[keys]]\nname = \"team\"\nkey = \"sk-team-0123456789\"\nlimits = {{ rpm = 1 }}\n"
    );
    let gw = TestGateway::start(&config_for(&[&a], &keyed)).await;
    let key = [("x-api-key", "sk-team-0123456789")];
    let first = post_raw(&gw, "/v1/messages", &ask(false).to_string(), &key).await;
    assert_eq!(first.status(), 200);
    let second = post_raw(&gw, "/v1/messages", &ask(false).to_string(), &key).await;
    assert_eq!(second.status(), 429);
    assert!(!header(&second, "retry-after").is_empty());
    let e: Value = second.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "rate_limit_error");
    assert_eq!(a.stats().await["requests"], 1);
}

#[tokio::test]
async fn a_repeated_request_is_a_cache_hit_answered_as_a_message() {
    let o = Mock::speaking(MockFormat::OpenAi, "oa", "").await;
    let gw = TestGateway::start(&config_for(
        &[&o],
        &format!("[cache]\nenabled = true\n{FAST}"),
    ))
    .await;
    let first = post(&gw, &ask(false)).await;
    assert_eq!(header(&first, "x-switchyard-cache"), "miss");
    let first: Value = first.json().await.unwrap();
    let second = post(&gw, &ask(false)).await;
    assert_eq!(header(&second, "x-switchyard-cache"), "hit");
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["type"], "message");
    assert_eq!(second["content"], first["content"]);
    assert_eq!(o.stats().await["requests"], 1);
    // The same request through chat completions is another entry: the native body is
    // part of the key.
    let chat = gw
        .chat(&json!({ "model": "gpt-4o-mini", "max_tokens": 256,
        "messages": [{ "role": "user", "content": "Hello" }] }))
        .await;
    assert_eq!(header(&chat, "x-switchyard-cache"), "miss");
}

#[tokio::test]
async fn count_tokens_says_where_the_count_came_from() {
    let a = Mock::speaking(MockFormat::Anthropic, "ant", "").await;
    let o = Mock::speaking(MockFormat::OpenAi, "oa", "").await;
    let g = Mock::speaking(MockFormat::Gemini, "gem", "").await;
    let body = json!({ "model": "gpt-4o-mini", "system": "Be brief.",
        "messages": [{ "role": "user", "content": "How many tokens is this?" }] });
    // An Anthropic deployment: its own count, the body passed through.
    let gw = TestGateway::serving(&[&a]).await;
    let resp = post_raw(&gw, "/v1/messages/count_tokens", &body.to_string(), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-token-count"), "provider");
    let counted: Value = resp.json().await.unwrap();
    let stats = a.stats().await;
    assert_eq!(stats["last_request"]["model"], "upstream-ant");
    assert_eq!(stats["last_request"]["system"], "Be brief.");
    assert!(counted["input_tokens"].as_u64().unwrap() > 0);
    // An OpenAI model: tiktoken.
    let config = config_for(&[&o], FAST).replace("upstream-oa", "gpt-4o");
    let gw = TestGateway::start(&config).await;
    let resp = post_raw(&gw, "/v1/messages/count_tokens", &body.to_string(), &[]).await;
    assert_eq!(header(&resp, "x-switchyard-token-count"), "tiktoken");
    let n = resp.json::<Value>().await.unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    assert!((10..40).contains(&n), "{n}");
    assert_eq!(o.stats().await["requests"], 0, "nothing was generated");
    // Anything else: the estimate.
    let gw = TestGateway::serving(&[&g]).await;
    let resp = post_raw(&gw, "/v1/messages/count_tokens", &body.to_string(), &[]).await;
    assert_eq!(header(&resp, "x-switchyard-token-count"), "estimate");
    assert!(
        resp.json::<Value>().await.unwrap()["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn count_tokens_falls_back_when_the_providers_count_fails() {
    let a = Mock::speaking(MockFormat::Anthropic, "ant", "status=503").await;
    let gw = TestGateway::serving(&[&a]).await;
    let body = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "Hi" }] });
    let resp = post_raw(&gw, "/v1/messages/count_tokens", &body.to_string(), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-token-count"), "estimate");
}

#[tokio::test]
async fn a_cache_hit_of_a_passed_through_answer_is_the_providers_bytes_signatures_and_all() {
    let a = Mock::speaking(MockFormat::Anthropic, "ant", "").await;
    let gw = TestGateway::start(&config_for(
        &[&a],
        &format!("[cache]\nenabled = true\n{FAST}"),
    ))
    .await;
    let mut body = ask(false);
    body["max_tokens"] = json!(4096);
    body["thinking"] = json!({ "type": "enabled", "budget_tokens": 2048 });
    let first = post(&gw, &body).await;
    assert_eq!(header(&first, "x-switchyard-cache"), "miss");
    let first = first.text().await.unwrap();
    let second = post(&gw, &body).await;
    assert_eq!(header(&second, "x-switchyard-cache"), "hit");
    assert_eq!(
        second.text().await.unwrap(),
        first,
        "the provider's bytes, as first returned"
    );
    assert!(first.contains("\"signature\""));
    assert_eq!(a.stats().await["requests"], 1);
}

#[tokio::test]
async fn to_bedrocks_anthropic_models_the_body_goes_through_invoke_model_with_its_bytes() {
    let b = Mock::speaking(MockFormat::Bedrock, "bed", "").await;
    let config =
        config_for(&[&b], FAST).replace("upstream-bed", "anthropic.claude-3-5-haiku-20241022-v1:0");
    let gw = TestGateway::start(&config).await;
    let body = r#"{"model": "gpt-4o-mini", "max_tokens": 4096, "x_future": [1.0e3],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": "Hello"}]}"#;
    let resp = post_raw(&gw, "/v1/messages", body, &[("anthropic-beta", "b-1")]).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert!(answer["id"].as_str().unwrap().starts_with("msg_bdrk_mock"));
    assert_eq!(answer["content"][0]["type"], "thinking");
    let sent = b.stats().await["last_body"].as_str().unwrap().to_owned();
    assert_eq!(
        sent,
        r#"{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["b-1"],"max_tokens":4096,"x_future":[1.0e3],"thinking":{"type": "enabled", "budget_tokens": 2048},"messages":[{"role": "user", "content": "Hello"}]}"#
    );
    // A stream: every Anthropic event out of the event-stream frames.
    let mut stream = ask(true);
    stream["max_tokens"] = json!(4096);
    stream["thinking"] = json!({ "type": "enabled", "budget_tokens": 2048 });
    let resp = post(&gw, &stream).await;
    assert_eq!(resp.status(), 200);
    let ev = events(&within(resp.text()).await.unwrap());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.contains(&"ping"));
    assert!(
        ev.iter()
            .any(|(_, d)| d.pointer("/delta/type") == Some(&json!("signature_delta")))
    );
    assert!(
        ev[0].1["message"]["id"]
            .as_str()
            .unwrap()
            .starts_with("msg_bdrk_mock")
    );
}

#[tokio::test]
async fn what_a_format_cannot_express_fails_over_and_else_is_a_400_naming_it() {
    let body = json!({ "model": "gpt-4o-mini", "max_tokens": 100, "messages": [{ "role": "user",
        "content": [
            { "type": "document", "source": { "type": "text", "media_type": "text/plain", "data": "A memo." } },
            { "type": "text", "text": "Summarise it." }] }] });
    // Gemini has no document part: refused there, taken by the Anthropic deployment as is.
    let g = Mock::speaking(MockFormat::Gemini, "gem", "").await;
    let a = Mock::speaking(MockFormat::Anthropic, "ant", "").await;
    let gw = TestGateway::serving(&[&g, &a]).await;
    let resp = post(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "ant");
    assert!(header(&resp, "x-switchyard-attempts").contains("untranslatable"));
    assert_eq!(g.stats().await["requests"], 0, "nothing was sent to Gemini");
    assert_eq!(
        a.stats().await["last_request"]["messages"][0]["content"][0]["type"],
        "document"
    );
    // With Gemini alone: a 400 in Anthropic's shape that says what could not be sent.
    let gw = TestGateway::serving(&[&g]).await;
    let resp = post(&gw, &body).await;
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("document"),
        "{e}"
    );
}
