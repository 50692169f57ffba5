//! The Responses API in (`POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}`) over real
//! sockets: passed through to OpenAI and Azure deployments (the caller's unknown fields
//! arrive unchanged, the provider's bytes come back), translated to Anthropic and Gemini,
//! function-call round trips with `previous_response_id`, the store in process and in a
//! Redis shared by two gateways, and failover, limits and the cache on the new surface.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use common::{redis::RedisServer, *};
use serde_json::{Value, json};
use switchyard::mock::MockFormat;

const KEYS: &str = "[[keys]]\nname = \"team-a\"\nkey = \"sk-team-a-0123456789\"\n\
                    [[keys]]\nname = \"team-b\"\nkey = \"sk-team-b-0123456789\"\n";
const KEY_A: &str = "sk-team-a-0123456789";
const KEY_B: &str = "sk-team-b-0123456789";

async fn create(gw: &TestGateway, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = client().post(gw.url("/v1/responses")).json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    within(req.send()).await.unwrap()
}

async fn created(gw: &TestGateway, body: &Value) -> Value {
    let resp = create(gw, None, body).await;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

async fn get(gw: &TestGateway, key: Option<&str>, id: &str) -> reqwest::Response {
    let mut req = client().get(gw.url(&format!("/v1/responses/{id}")));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    within(req.send()).await.unwrap()
}

/// The events of a Responses stream: `(event name, data)`, in order.
async fn events(resp: reqwest::Response) -> Vec<(String, Value)> {
    let text = within(resp.text()).await.unwrap();
    text.split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_owned(), serde_json::from_str(data).unwrap()))
        })
        .collect()
}

/// Checks what every Responses stream must hold: each event's `type` is its name, the
/// sequence numbers count up from 0 without a gap, it opens with `response.created` and
/// `response.in_progress`, every item added is done (unless it failed), and it ends with
/// `last`.
fn assert_well_formed(events: &[(String, Value)], last: &str) {
    assert!(events.len() >= 3, "{events:?}");
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], json!(name), "{data}");
        assert_eq!(data["sequence_number"], json!(i), "{name} at {i}");
    }
    assert_eq!(events[0].0, "response.created");
    assert_eq!(events[1].0, "response.in_progress");
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    let added = events
        .iter()
        .filter(|e| e.0 == "response.output_item.added")
        .count();
    let done = events
        .iter()
        .filter(|e| e.0 == "response.output_item.done")
        .count();
    if last != "response.failed" {
        assert_eq!(added, done);
    }
    assert_eq!(events.last().unwrap().0, last);
}

fn text_of(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|e| e.0 == "response.output_text.delta")
        .map(|e| e.1["delta"].as_str().unwrap().to_owned())
        .collect()
}

fn output_text(object: &Value) -> String {
    object["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|p| p["text"].as_str())
        .collect()
}

fn weather_tool() -> Value {
    json!({ "type": "function", "name": "get_weather", "description": "The weather in a city",
            "parameters": { "type": "object", "properties": { "city": { "type": "string" } },
                            "required": ["city"] } })
}

#[tokio::test]
async fn json_to_openai_passes_the_body_through_and_the_answer_back() {
    let openai = Mock::start("openai", "").await;
    let gw = TestGateway::serving(&[&openai]).await;
    let body = json!({ "model": "gpt-4o-mini", "input": "Hello there",
                       "x_unknown": { "kept": [1, 2.5, "three"] }, "store": false,
                       "instructions": "Be brief." });
    let resp = create(&gw, None, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "openai");
    let v: Value = resp.json().await.unwrap();
    // The provider's own object: its id, its fields.
    assert!(v["id"].as_str().unwrap().starts_with("resp_mock"), "{v}");
    assert_eq!(v["object"], "response");
    assert_eq!(v["model"], "upstream-openai");
    assert!(output_text(&v).contains("Hello there"), "{v}");
    let sent = &openai.stats().await["last_request"];
    assert_eq!(sent["x_unknown"], body["x_unknown"]);
    assert_eq!(sent["model"], "upstream-openai");
    assert_eq!(sent["input"], "Hello there");
    assert_eq!(sent["instructions"], "Be brief.");
    assert!(sent.get("messages").is_none());
}

#[tokio::test]
async fn stream_to_openai_forwards_every_event_of_the_provider() {
    let openai = Mock::start("openai", "").await;
    let gw = TestGateway::serving(&[&openai]).await;
    let body = json!({ "model": "gpt-4o-mini", "input": "Stream me", "stream": true });
    let resp = create(&gw, None, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    let events = events(resp).await;
    assert_well_formed(&events, "response.completed");
    let done = &events.last().unwrap().1["response"];
    assert!(done["id"].as_str().unwrap().starts_with("resp_mock"));
    assert_eq!(text_of(&events), output_text(done));
    assert!(text_of(&events).contains("Stream me"));
    assert_eq!(openai.stats().await["last_request"]["stream"], true);
    // Stored by default: the provider's id is the one to continue from.
    let id = done["id"].as_str().unwrap();
    let got: Value = get(&gw, None, id).await.json().await.unwrap();
    assert_eq!(got["id"], json!(id));
}

#[tokio::test]
async fn azure_deployments_take_the_responses_body_at_their_v1_path() {
    let azure = Mock::speaking(MockFormat::Azure, "azure", "").await;
    let gw = TestGateway::serving(&[&azure]).await;
    let v = created(&gw, &json!({ "model": "gpt-4o-mini", "input": "Hi Azure" })).await;
    assert!(v["id"].as_str().unwrap().starts_with("resp_mock"), "{v}");
    let stats = azure.stats().await;
    assert_eq!(stats["last_request"]["model"], "upstream-azure");
    assert_eq!(stats["last_headers"]["api-key"], "sk-test-azure");
}

#[tokio::test]
async fn json_to_anthropic_and_gemini_is_translated_into_a_responses_object() {
    for format in [MockFormat::Anthropic, MockFormat::Gemini] {
        let mock = Mock::speaking(format, "target", "").await;
        let gw = TestGateway::serving(&[&mock]).await;
        let v = created(
            &gw,
            &json!({ "model": "gpt-4o-mini", "instructions": "Be kind.",
                     "input": [{ "role": "user", "content": [
                         { "type": "input_text", "text": "Translate me" }] }],
                     "max_output_tokens": 200, "temperature": 0.5 }),
        )
        .await;
        assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["instructions"], "Be kind.");
        assert_eq!(v["temperature"], 0.5);
        assert_eq!(v["max_output_tokens"], 200);
        assert!(output_text(&v).contains("Translate me"), "{format:?}: {v}");
        let item = &v["output"][0];
        assert_eq!(item["type"], "message");
        assert_eq!(item["role"], "assistant");
        assert!(item["id"].as_str().unwrap().starts_with("msg_"));
        let usage = &v["usage"];
        assert!(usage["input_tokens"].as_u64().unwrap() > 0, "{usage}");
        assert!(usage["output_tokens"].as_u64().unwrap() > 0);
        assert_eq!(
            usage["total_tokens"].as_u64().unwrap(),
            usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
        );
        // The system text reached the target in its own shape.
        let sent = mock.stats().await["last_request"].to_string();
        assert!(sent.contains("Be kind."), "{sent}");
    }
}

#[tokio::test]
async fn a_translated_stream_is_the_responses_event_sequence() {
    let anthropic = Mock::speaking(MockFormat::Anthropic, "anthropic", "").await;
    let gw = TestGateway::serving(&[&anthropic]).await;
    let resp = create(
        &gw,
        None,
        &json!({ "model": "gpt-4o-mini", "input": "Stream across formats", "stream": true }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let events = events(resp).await;
    assert_well_formed(&events, "response.completed");
    let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(at("response.output_item.added") < at("response.content_part.added"));
    assert!(at("response.content_part.added") < at("response.output_text.delta"));
    assert!(at("response.output_text.done") < at("response.content_part.done"));
    assert!(at("response.content_part.done") < at("response.output_item.done"));
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(text_of(&events), output_text(done));
    assert!(text_of(&events).contains("Stream across formats"));
    let text_done = &events[at("response.output_text.done")].1;
    assert_eq!(text_done["text"], json!(text_of(&events)));
    assert!(done["usage"]["output_tokens"].as_u64().unwrap() > 0);
    // One id throughout.
    assert_eq!(events[0].1["response"]["id"], done["id"]);
}

#[tokio::test]
async fn a_max_output_tokens_cut_is_incomplete() {
    let anthropic = Mock::speaking(MockFormat::Anthropic, "anthropic", "").await;
    let gw = TestGateway::serving(&[&anthropic]).await;
    let body = json!({ "model": "gpt-4o-mini", "input": "one two three four five six",
                       "max_output_tokens": 3 });
    let v = created(&gw, &body).await;
    assert_eq!(v["status"], "incomplete", "{v}");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let events = events(create(&gw, None, &stream).await).await;
    assert_well_formed(&events, "response.incomplete");
}

/// A function call, its output sent back with `previous_response_id`, and the answer: on
/// a pass-through (the provider gets the whole conversation, never the id) and translated.
#[tokio::test]
async fn a_function_call_round_trip_continues_from_the_stored_response() {
    for format in [MockFormat::OpenAi, MockFormat::Anthropic] {
        let mock = Mock::speaking(format, "target", "").await;
        let gw = TestGateway::serving(&[&mock]).await;
        let first = created(
            &gw,
            &json!({ "model": "gpt-4o-mini", "input": "Weather in Paris?",
                     "tools": [weather_tool()] }),
        )
        .await;
        let call = first["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap_or_else(|| panic!("{format:?}: {first}"));
        assert_eq!(call["name"], "get_weather");
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string(), "{args}");
        let second = created(
            &gw,
            &json!({ "model": "gpt-4o-mini", "previous_response_id": first["id"],
                     "tools": [weather_tool()], "tool_choice": "none",
                     "input": [{ "type": "function_call_output", "call_id": call["call_id"],
                                 "output": "{\"temp_c\": 21}" }] }),
        )
        .await;
        assert_eq!(second["status"], "completed");
        assert!(!output_text(&second).is_empty(), "{format:?}: {second}");
        let sent = mock.stats().await["last_request"].clone();
        let sent_text = sent.to_string();
        assert!(sent_text.contains("Weather in Paris?"), "{sent_text}");
        assert!(sent_text.contains("temp_c"), "{sent_text}");
        // The answer names the conversation it continues, whoever served it.
        assert_eq!(second["previous_response_id"], first["id"]);
        if format == MockFormat::OpenAi {
            assert!(sent.get("previous_response_id").is_none(), "{sent}");
            let kinds: Vec<&str> = sent["input"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|i| i["type"].as_str())
                .collect();
            assert!(kinds.contains(&"function_call"), "{kinds:?}");
            assert!(kinds.contains(&"function_call_output"), "{kinds:?}");
        }
    }
}

#[tokio::test]
async fn a_stream_of_function_call_events_is_well_formed_when_translated() {
    let gemini = Mock::speaking(MockFormat::Gemini, "gemini", "").await;
    let gw = TestGateway::serving(&[&gemini]).await;
    let events = events(
        create(
            &gw,
            None,
            &json!({ "model": "gpt-4o-mini", "input": "Weather?", "stream": true,
                     "tools": [weather_tool()], "tool_choice": "required" }),
        )
        .await,
    )
    .await;
    assert_well_formed(&events, "response.completed");
    let added = events
        .iter()
        .find(|e| e.0 == "response.output_item.added" && e.1["item"]["type"] == "function_call")
        .expect("a function call item");
    assert_eq!(added.1["item"]["name"], "get_weather");
    let deltas: String = events
        .iter()
        .filter(|e| e.0 == "response.function_call_arguments.delta")
        .map(|e| e.1["delta"].as_str().unwrap().to_owned())
        .collect();
    let done = events
        .iter()
        .find(|e| e.0 == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done.1["arguments"], json!(deltas));
    let final_item = &events.last().unwrap().1["response"]["output"][0];
    assert_eq!(final_item["arguments"], json!(deltas));
    assert_eq!(final_item["status"], "completed");
}

#[tokio::test]
async fn get_and_delete_are_scoped_to_the_callers_key() {
    let mock = Mock::speaking(MockFormat::Anthropic, "anthropic", "").await;
    let gw = TestGateway::start(&config_for(&[&mock], &format!("{FAST}{KEYS}"))).await;
    let resp = create(
        &gw,
        Some(KEY_A),
        &json!({ "model": "gpt-4o-mini", "input": "Keep me" }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let made: Value = resp.json().await.unwrap();
    let id = made["id"].as_str().unwrap();
    let got = get(&gw, Some(KEY_A), id).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.json::<Value>().await.unwrap(), made);
    // Another key's response does not exist for it, nor does it for a stranger.
    let other = get(&gw, Some(KEY_B), id).await;
    assert_eq!(other.status(), 404);
    let error: Value = other.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(
        error["error"]["message"],
        format!("Response with id '{id}' not found.")
    );
    assert_eq!(get(&gw, None, id).await.status(), 401);
    // Continuing another key's conversation is the same 404.
    let stolen = create(
        &gw,
        Some(KEY_B),
        &json!({ "model": "gpt-4o-mini", "input": "more", "previous_response_id": id }),
    )
    .await;
    assert_eq!(stolen.status(), 404);
    let delete = |key: &'static str| {
        within(
            client()
                .delete(gw.url(&format!("/v1/responses/{id}")))
                .bearer_auth(key)
                .send(),
        )
    };
    assert_eq!(delete(KEY_B).await.unwrap().status(), 404);
    let deleted = delete(KEY_A).await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(
        deleted.json::<Value>().await.unwrap(),
        json!({ "id": id, "object": "response", "deleted": true })
    );
    assert_eq!(get(&gw, Some(KEY_A), id).await.status(), 404);
}

#[tokio::test]
async fn store_false_keeps_nothing_and_an_unknown_id_is_404_before_any_attempt() {
    let mock = Mock::speaking(MockFormat::Anthropic, "anthropic", "").await;
    let gw = TestGateway::serving(&[&mock]).await;
    let v = created(
        &gw,
        &json!({ "model": "gpt-4o-mini", "input": "x", "store": false }),
    )
    .await;
    assert_eq!(v["store"], false);
    assert_eq!(
        get(&gw, None, v["id"].as_str().unwrap()).await.status(),
        404
    );
    let before = mock.stats().await["requests"].as_u64().unwrap();
    let resp = create(
        &gw,
        None,
        &json!({ "model": "gpt-4o-mini", "input": "y", "previous_response_id": "resp_nope" }),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "Response with id 'resp_nope' not found."
    );
    assert_eq!(mock.stats().await["requests"].as_u64().unwrap(), before);
    assert_eq!(get(&gw, None, "resp_unknown").await.status(), 404);
}

#[tokio::test]
async fn a_conversation_continues_on_another_gateway_sharing_redis() {
    let redis = RedisServer::start();
    let mock = Mock::speaking(MockFormat::Anthropic, "anthropic", "").await;
    let config = config_for(
        &[&mock],
        &format!("{FAST}[state]\nredis_url = \"{}\"\n", redis.url()),
    );
    let one = TestGateway::start(&config).await;
    let two = TestGateway::start(&config).await;
    let first = created(
        &one,
        &json!({ "model": "gpt-4o-mini", "input": "Remember kiwi" }),
    )
    .await;
    let id = first["id"].as_str().unwrap();
    let got: Value = get(&two, None, id).await.json().await.unwrap();
    assert_eq!(got, first);
    let second = created(
        &two,
        &json!({ "model": "gpt-4o-mini", "input": "And now?", "previous_response_id": id }),
    )
    .await;
    assert_eq!(second["previous_response_id"], json!(id));
    // The second gateway sent the whole conversation, kept by the first.
    let sent = mock.stats().await["last_request"].to_string();
    assert!(sent.contains("Remember kiwi"), "{sent}");
    assert!(sent.contains("And now?"), "{sent}");
    assert!(
        redis
            .cli(&["EXISTS", &format!("switchyard:responses:{id}")])
            .unwrap()
            .contains('1')
    );
    within(
        client()
            .delete(two.url(&format!("/v1/responses/{id}")))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(get(&one, None, id).await.status(), 404);
}

#[tokio::test]
async fn a_failing_deployment_fails_over_on_the_responses_surface() {
    let down = Mock::start("down", "status=503").await;
    let up = Mock::speaking(MockFormat::Anthropic, "up", "").await;
    let gw = TestGateway::serving(&[&down, &up]).await;
    let resp = create(
        &gw,
        None,
        &json!({ "model": "gpt-4o-mini", "input": "Fail over" }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "up");
    assert!(
        header(&resp, "x-switchyard-attempts").contains("down"),
        "{}",
        header(&resp, "x-switchyard-attempts")
    );
    let v: Value = resp.json().await.unwrap();
    assert!(output_text(&v).contains("Fail over"));
    // A stream fails over before its first content, unseen.
    let resp = create(
        &gw,
        None,
        &json!({ "model": "gpt-4o-mini", "input": "Fail over", "stream": true }),
    )
    .await;
    let events = events(resp).await;
    assert_well_formed(&events, "response.completed");
}

#[tokio::test]
async fn a_stream_that_breaks_after_content_ends_with_error_and_response_failed() {
    let anthropic =
        Mock::speaking(MockFormat::Anthropic, "anthropic", "error_after_chunks=4").await;
    let gw = TestGateway::serving(&[&anthropic]).await;
    let events = events(
        create(
            &gw,
            None,
            &json!({ "model": "gpt-4o-mini", "input": "one two three four five", "stream": true }),
        )
        .await,
    )
    .await;
    assert_well_formed(&events, "response.failed");
    let n = events.len();
    assert_eq!(events[n - 2].0, "error");
    let failed = &events[n - 1].1["response"];
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"]["message"].is_string(), "{failed}");
}

#[tokio::test]
async fn limits_count_responses_calls() {
    let mock = Mock::speaking(MockFormat::Anthropic, "anthropic", "").await;
    let config = config_for(
        &[&mock],
        "[[keys]]\nname = \"team-a\"\nkey = \"sk-team-a-0123456789\"\nlimits = { rpm = 1 }\n",
    );
    let gw = TestGateway::start(&config).await;
    let body = json!({ "model": "gpt-4o-mini", "input": "Count me" });
    assert_eq!(create(&gw, Some(KEY_A), &body).await.status(), 200);
    let resp = create(&gw, Some(KEY_A), &body).await;
    assert_eq!(resp.status(), 429);
    assert!(!header(&resp, "retry-after").is_empty());
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test]
async fn a_repeated_request_is_a_cache_hit_answered_as_a_responses_object() {
    for format in [MockFormat::OpenAi, MockFormat::Anthropic] {
        let mock = Mock::speaking(format, "target", "").await;
        let gw = TestGateway::start(&config_for(
            &[&mock],
            &format!("{FAST}[cache]\nenabled = true\n"),
        ))
        .await;
        let body = json!({ "model": "gpt-4o-mini", "input": "Cache me", "store": false });
        let first = create(&gw, None, &body).await;
        assert_eq!(header(&first, "x-switchyard-cache"), "miss");
        let first: Value = first.json().await.unwrap();
        let mut hit = None;
        // The entry is written off the caller's path.
        for _ in 0..100 {
            let resp = create(&gw, None, &body).await;
            if header(&resp, "x-switchyard-cache") == "hit" {
                hit = Some(resp.json::<Value>().await.unwrap());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let hit = hit.expect("a cache hit");
        assert_eq!(hit["object"], "response");
        assert_eq!(output_text(&hit), output_text(&first));
        // The native body is part of the key: a stream is its own entry, replayed as the
        // Responses events.
        let mut stream = body.clone();
        stream["stream"] = json!(true);
        let first_stream = events(create(&gw, None, &stream).await).await;
        let mut replayed = None;
        for _ in 0..100 {
            let resp = create(&gw, None, &stream).await;
            if header(&resp, "x-switchyard-cache") == "hit" {
                replayed = Some(events(resp).await);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let replayed = replayed.expect("a streamed cache hit");
        assert_well_formed(&replayed, "response.completed");
        assert_eq!(text_of(&replayed), text_of(&first_stream));
    }
}

#[tokio::test]
async fn what_cannot_be_served_is_a_400_in_openais_shape() {
    let mock = Mock::speaking(MockFormat::Anthropic, "anthropic", "").await;
    let gw = TestGateway::serving(&[&mock]).await;
    let cases = [
        (
            json!({ "model": "gpt-4o-mini", "input": "x", "tools": [{ "type": "web_search" }] }),
            "web_search",
        ),
        (
            json!({ "model": "gpt-4o-mini", "input": "x", "background": true }),
            "background",
        ),
        (json!({ "model": "gpt-4o-mini" }), "input"),
        (json!({ "input": "x" }), "model"),
        (
            json!({ "model": "gpt-4o-mini", "input": [{ "type": "function_call_output",
                 "call_id": "call_x", "output": "1" }] }),
            "call_x",
        ),
        (json!({ "model": "gpt-4o-mini", "input": 42 }), "input"),
        (
            json!({ "model": "gpt-4o-mini", "input": "x",
                 "text": { "format": { "type": "json_schema" } } }),
            "json_schema",
        ),
    ];
    for (body, mention) in cases {
        let resp = create(&gw, None, &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        assert!(error.to_string().contains(mention), "{body}: {error}");
    }
    assert_eq!(mock.stats().await["requests"], 0);
    let wrong = within(client().put(gw.url("/v1/responses")).send())
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
}

#[tokio::test]
async fn a_pass_through_stream_that_breaks_ends_in_the_providers_numbering() {
    let openai = Mock::start("openai", "error_after_chunks=5").await;
    let gw = TestGateway::serving(&[&openai]).await;
    let events = events(
        create(
            &gw,
            None,
            &json!({ "model": "gpt-4o-mini", "input": "one two three four five six", "stream": true }),
        )
        .await,
    )
    .await;
    // The provider's own events up to its error, then the gateway's ending, numbered on.
    assert_well_formed(&events, "response.failed");
    assert!(
        events[0].1["response"]["id"]
            .as_str()
            .unwrap()
            .starts_with("resp_mock")
    );
    assert_eq!(
        events.last().unwrap().1["response"]["id"],
        events[0].1["response"]["id"]
    );
    assert_eq!(events[events.len() - 2].0, "error");
}

#[tokio::test]
async fn redacted_pii_never_reaches_an_openai_deployment_through_the_pass_through() {
    let openai = Mock::start("openai", "").await;
    let config = config_for(
        &[&openai],
        &format!("{FAST}[redaction]\ndetectors = [\"email\"]\nmode = \"mask\"\nrestore = true\n"),
    );
    let gw = TestGateway::start(&config).await;
    for stream in [false, true] {
        let body = json!({ "model": "gpt-4o-mini", "stream": stream,
                           "input": "Write to jane.doe@example.com please" });
        let resp = create(&gw, None, &body).await;
        assert_eq!(resp.status(), 200);
        let answer = within(resp.text()).await.unwrap();
        let sent = openai.stats().await["last_request"].to_string();
        assert!(!sent.contains("jane.doe@example.com"), "{sent}");
        // Translated (chat completions upstream), and the caller gets its original back.
        assert!(sent.contains("messages"), "{sent}");
        assert!(answer.contains("jane.doe@example.com"), "{answer}");
        assert!(answer.contains("\"object\":\"response\""), "{answer}");
    }
}
