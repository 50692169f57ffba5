//! The conformance suite every adapter runs: the same behaviours through the gateway to a
//! simulated provider of each wire format, over real sockets. One case a behaviour.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use common::*;
use serde_json::{Value, json};
use switchyard::mock::MockFormat;

/// Runs each named case once per wire format.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod openai {
            $( #[tokio::test] async fn $case() { super::$case(switchyard::mock::MockFormat::OpenAi).await } )*
        }
        mod anthropic {
            $( #[tokio::test] async fn $case() { super::$case(switchyard::mock::MockFormat::Anthropic).await } )*
        }
        mod azure {
            $( #[tokio::test] async fn $case() { super::$case(switchyard::mock::MockFormat::Azure).await } )*
        }
        mod gemini {
            $( #[tokio::test] async fn $case() { super::$case(switchyard::mock::MockFormat::Gemini).await } )*
        }
        mod cohere {
            $( #[tokio::test] async fn $case() { super::$case(switchyard::mock::MockFormat::Cohere).await } )*
        }
        mod bedrock {
            $( #[tokio::test] async fn $case() { super::$case(switchyard::mock::MockFormat::Bedrock).await } )*
        }
    };
}

conformance!(
    plain_text,
    system_prompt,
    multi_turn,
    tool_call_and_result_round_trip,
    streamed_tool_call_arguments_reassemble,
    json_schema_output,
    image_input,
    stop_reason_length,
    usage_in_stream_and_not,
    error_statuses_keep_the_providers_words,
    in_band_stream_error,
    parallel_tool_calls,
);

async fn setup(format: MockFormat, fault: &str) -> (Mock, TestGateway) {
    let mock = Mock::speaking(format, "p", fault).await;
    let gw = TestGateway::serving(&[&mock]).await;
    (mock, gw)
}

fn request(messages: Value) -> Value {
    json!({ "model": "gpt-4o-mini", "messages": messages })
}

async fn ok_json(gw: &TestGateway, body: &Value) -> Value {
    let resp = gw.chat(body).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn content(v: &Value) -> &str {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
}

async fn plain_text(format: MockFormat) {
    let (_mock, gw) = setup(format, "").await;
    let v = ok_json(&gw, &hello(false)).await;
    assert_eq!(content(&v), "Hello from p! You said: Hello");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

async fn system_prompt(format: MockFormat) {
    let (mock, gw) = setup(format, "").await;
    ok_json(
        &gw,
        &request(json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"}
        ])),
    )
    .await;
    let seen = mock.stats().await["last_request"].clone();
    match format {
        MockFormat::OpenAi | MockFormat::Azure | MockFormat::Cohere => assert_eq!(
            seen["messages"][0],
            json!({"role": "system", "content": "You are terse."})
        ),
        MockFormat::Anthropic => {
            assert_eq!(
                seen["system"],
                json!([{"type": "text", "text": "You are terse."}])
            );
            assert_eq!(
                seen["messages"],
                json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
            );
        }
        MockFormat::Gemini => {
            assert_eq!(
                seen["systemInstruction"],
                json!({"parts": [{"text": "You are terse."}]})
            );
            assert_eq!(
                seen["contents"],
                json!([{"role": "user", "parts": [{"text": "Hi"}]}])
            );
        }
        MockFormat::Bedrock => {
            assert_eq!(seen["system"], json!([{"text": "You are terse."}]));
            assert_eq!(
                seen["messages"],
                json!([{"role": "user", "content": [{"text": "Hi"}]}])
            );
        }
    }
}

async fn multi_turn(format: MockFormat) {
    let (_mock, gw) = setup(format, "").await;
    let v = ok_json(
        &gw,
        &request(json!([
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Hello Ada."},
            {"role": "user", "content": "What is my name?"}
        ])),
    )
    .await;
    assert_eq!(content(&v), "Hello from p! You said: What is my name?");
}

fn weather_tool() -> Value {
    json!([{ "type": "function", "function": { "name": "get_weather", "description": "Weather for a city",
        "parameters": { "type": "object", "properties": {
            "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]} },
            "required": ["city", "unit"], "additionalProperties": false } } }])
}

async fn tool_call_and_result_round_trip(format: MockFormat) {
    let (mock, gw) = setup(format, "").await;
    let mut first = request(json!([{"role": "user", "content": "Weather in Paris?"}]));
    first["tools"] = weather_tool();
    let v = ok_json(&gw, &first).await;
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = v["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "sample", "unit": "celsius"}));

    let mut second = request(json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"}
    ]));
    second["tools"] = weather_tool();
    second["tool_choice"] = json!("none");
    if format == MockFormat::Bedrock {
        // Converse has no `none` choice and needs the tools once the conversation holds
        // tool blocks: refused rather than approximated by `auto`.
        let resp = gw.chat(&second).await;
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unsupported_by_provider");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("tool_choice `none`"), "{message}");
        second["tool_choice"] = json!("auto");
    }
    let v = ok_json(&gw, &second).await;
    // With tools still on offer the simulated model calls one again.
    let finish = if format == MockFormat::Bedrock {
        "tool_calls"
    } else {
        "stop"
    };
    assert_eq!(v["choices"][0]["finish_reason"], finish);
    let seen = mock.stats().await["last_request"].clone();
    match format {
        MockFormat::OpenAi | MockFormat::Azure | MockFormat::Cohere => {
            assert_eq!(seen["messages"][2]["tool_call_id"], call["id"])
        }
        MockFormat::Anthropic => {
            assert_eq!(seen["messages"][1]["content"][0]["type"], "tool_use");
            assert_eq!(seen["messages"][1]["content"][0]["input"], args);
            assert_eq!(
                seen["messages"][2]["content"][0],
                json!({"type": "tool_result",
                "tool_use_id": call["id"], "content": [{"type": "text", "text": "18 degrees"}]})
            );
        }
        MockFormat::Gemini => {
            assert_eq!(
                seen["contents"][1]["parts"][0]["functionCall"]["args"],
                args
            );
            assert_eq!(
                seen["contents"][2],
                json!({"role": "user", "parts": [{"functionResponse":
                {"id": call["id"], "name": "get_weather", "response": {"result": "18 degrees"}}}]})
            );
        }
        MockFormat::Bedrock => {
            let tool_use = &seen["messages"][1]["content"][0]["toolUse"];
            assert_eq!(tool_use["toolUseId"], call["id"]);
            assert_eq!(tool_use["input"], args);
            assert_eq!(
                seen["messages"][2],
                json!({"role": "user", "content": [{"toolResult":
                {"toolUseId": call["id"], "content": [{"text": "18 degrees"}]}}]})
            );
        }
    }
}

async fn streamed_tool_call_arguments_reassemble(format: MockFormat) {
    let (_mock, gw) = setup(format, "").await;
    let mut req = hello(true);
    req["tools"] = weather_tool();
    let events = sse_events(gw.chat(&req).await).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
        .collect();
    // Gemini sends a function call whole; the others stream its arguments in fragments.
    if format == MockFormat::Gemini {
        assert_eq!(calls.len(), 1, "{calls:?}");
    } else {
        assert!(calls.len() >= 3, "several fragments: {calls:?}");
    }
    assert!(calls.iter().all(|c| c["index"] == 0));
    let ids: Vec<&str> = calls.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "the id comes once, on the first fragment");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "sample", "unit": "celsius"})
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/finish_reason"))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
}

async fn json_schema_output(format: MockFormat) {
    let (mock, gw) = setup(format, "").await;
    let mut req = hello(false);
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
        "required": ["answer", "confidence"], "additionalProperties": false});
    req["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "reply", "strict": true, "schema": schema}});
    let v = ok_json(&gw, &req).await;
    let out: Value = serde_json::from_str(content(&v)).unwrap();
    assert!(
        out["answer"].is_string() && out["confidence"].is_number(),
        "{out}"
    );
    let seen = mock.stats().await["last_request"].clone();
    match format {
        MockFormat::Anthropic => assert_eq!(seen["output_config"]["format"]["schema"], schema),
        MockFormat::Gemini => {
            assert_eq!(
                seen["generationConfig"]["responseMimeType"],
                "application/json"
            );
            assert_eq!(seen["generationConfig"]["responseJsonSchema"], schema);
        }
        MockFormat::Cohere => assert_eq!(
            seen["response_format"],
            json!({"type": "json_object", "json_schema": schema})
        ),
        MockFormat::OpenAi | MockFormat::Azure => {
            assert_eq!(seen["response_format"]["json_schema"]["schema"], schema)
        }
        MockFormat::Bedrock => {
            let format = &seen["outputConfig"]["textFormat"];
            assert_eq!(format["type"], "json_schema");
            assert_eq!(format["structure"]["jsonSchema"]["name"], "reply");
            // Converse takes the schema as a JSON string.
            let sent = format["structure"]["jsonSchema"]["schema"]
                .as_str()
                .unwrap();
            assert_eq!(serde_json::from_str::<Value>(sent).unwrap(), schema);
        }
    }
}

async fn image_input(format: MockFormat) {
    let (mock, gw) = setup(format, "").await;
    let v = ok_json(
        &gw,
        &request(json!([{"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]}])),
    )
    .await;
    assert_eq!(
        content(&v),
        "Hello from p! You said: What is in this image?"
    );
    let last = mock.stats().await["last_request"].clone();
    let seen = last["messages"][0]["content"][1].clone();
    match format {
        MockFormat::Gemini => assert_eq!(
            last["contents"][0]["parts"][1],
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
        ),
        MockFormat::OpenAi | MockFormat::Azure | MockFormat::Cohere => assert_eq!(
            seen["image_url"]["url"],
            "data:image/png;base64,iVBORw0KGgo="
        ),
        MockFormat::Anthropic => assert_eq!(
            seen,
            json!({"type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
        ),
        MockFormat::Bedrock => assert_eq!(
            seen,
            json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}})
        ),
    }
}

async fn stop_reason_length(format: MockFormat) {
    let (_mock, gw) = setup(format, "").await;
    let mut req = hello(false);
    req["max_tokens"] = json!(3);
    let v = ok_json(&gw, &req).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(content(&v), "Hello from p!");
    req["stream"] = json!(true);
    let events = sse_events(gw.chat(&req).await).await;
    assert_eq!(stream_content(&events), "Hello from p!");
    assert!(
        events
            .iter()
            .any(|e| e.contains("\"finish_reason\":\"length\""))
    );
}

async fn usage_in_stream_and_not(format: MockFormat) {
    let (_mock, gw) = setup(format, "").await;
    let v = ok_json(&gw, &hello(false)).await;
    let u = &v["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && c > 0);
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
    let mut req = hello(true);
    req["stream_options"] = json!({"include_usage": true});
    let events = sse_events(gw.chat(&req).await).await;
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"]["prompt_tokens"].as_u64().unwrap(),
        p,
        "streamed input tokens are not zero"
    );
    assert_eq!(last["usage"]["completion_tokens"].as_u64().unwrap(), c);
}

async fn error_statuses_keep_the_providers_words(format: MockFormat) {
    for (status, retry_after) in [(400, None), (401, None), (429, Some("1")), (500, None)] {
        let (_mock, gw) = setup(format, &format!("status={status}")).await;
        let resp = gw.chat(&hello(false)).await;
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(header(&resp, "retry-after"), retry_after.unwrap_or(""));
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["message"], format!("simulated {status} from p"));
        let kind = v["error"]["type"].as_str().unwrap();
        let expected = match (format, status) {
            (MockFormat::OpenAi | MockFormat::Azure, 429) => "rate_limit_error",
            (MockFormat::OpenAi | MockFormat::Azure, 500) => "server_error",
            (MockFormat::OpenAi | MockFormat::Azure, _) => "invalid_request_error",
            (MockFormat::Anthropic, 400) => "invalid_request_error",
            (MockFormat::Anthropic, 401) => "authentication_error",
            (MockFormat::Anthropic, 429) => "rate_limit_error",
            (MockFormat::Anthropic, _) => "api_error",
            (MockFormat::Gemini | MockFormat::Cohere | MockFormat::Bedrock, 400) => {
                "invalid_request_error"
            }
            (MockFormat::Gemini | MockFormat::Cohere | MockFormat::Bedrock, 401) => {
                "authentication_error"
            }
            (MockFormat::Gemini | MockFormat::Cohere | MockFormat::Bedrock, 429) => {
                "rate_limit_error"
            }
            (MockFormat::Gemini | MockFormat::Cohere | MockFormat::Bedrock, _) => "api_error",
        };
        assert_eq!(kind, expected);
        if format == MockFormat::Bedrock {
            // The exception name from `x-amzn-ErrorType` is kept as the code.
            let code = match status {
                400 => "ValidationException",
                401 => "UnrecognizedClientException",
                429 => "ThrottlingException",
                _ => "InternalServerException",
            };
            assert_eq!(v["error"]["code"], code);
        }
    }
}

async fn in_band_stream_error(format: MockFormat) {
    // After content: the stream ends with the provider's error as an OpenAI error event.
    // Each format's first events differ: a role-only chunk, message_start and a block
    // start, or (Gemini) content in the very first frame.
    let (after, before) = match format {
        MockFormat::OpenAi | MockFormat::Azure | MockFormat::Cohere | MockFormat::Bedrock => (
            "error_after_chunks=3",
            "error_after_chunks=1,chunk_delay_ms=50",
        ),
        MockFormat::Anthropic => (
            "error_after_chunks=5",
            "error_after_chunks=1,chunk_delay_ms=50",
        ),
        MockFormat::Gemini => ("error_after_chunks=1", "error_after_chunks=0"),
    };
    let (_mock, gw) = setup(format, after).await;
    let events = sse_events(gw.chat(&hello(true)).await).await;
    assert!(!stream_content(&events).is_empty());
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["message"], "simulated in-stream error");

    let (_mock, gw) = setup(format, before).await;
    let resp = gw.chat(&hello(true)).await;
    if resp.status() != 200 {
        // The error read before the stream counted as open (Gemini's is the very first
        // frame, normally read with the answer's headers; on a loaded machine another
        // format's can be too): every attempt had failed before the gateway sent
        // anything, so the caller gets the status. Both outcomes are right; each is
        // checked whole.
        assert_eq!(resp.status(), 502);
        assert_eq!(
            header(&resp, "x-switchyard-attempts"),
            "p/upstream-p=stream_error"
        );
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["message"], "simulated in-stream error");
        return;
    }
    // Before content, the error arriving after the stream opened (the delay): the caller
    // already has its headers and the role chunk; with no other deployment to fail over
    // to, the stream ends with the error event (an HTTP status can no longer be sent).
    assert_eq!(header(&resp, "x-switchyard-provider"), "p");
    let events = sse_events(resp).await;
    assert!(stream_content(&events).is_empty());
    let role: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
    assert!(role["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["message"], "simulated in-stream error");
}

/// Bedrock only: the simulated endpoint recomputes the SigV4 signature, so a model id with
/// `:` (encoded in the path, double-encoded in the signature) and a session token must
/// sign exactly as sent; a wrong secret is refused with the mock's 403.
#[tokio::test]
async fn bedrock_signatures_verify_end_to_end() {
    let mock = Mock::speaking(MockFormat::Bedrock, "p", "").await;
    let config = |secret: &str| {
        format!(
            "{FAST}[server]\nhttp_addr = \"127.0.0.1:0\"\ngrpc_addr = \"none\"\n\
             [[providers]]\nname = \"p\"\nkind = \"bedrock\"\nbase_url = \"{}\"\n\
             region = \"eu-west-3\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{secret}\"\n\
             session_token = \"token/with+symbols=\"\n\
             [[models]]\nname = \"gpt-4o-mini\"\ndeployments = [{{ provider = \"p\", \
             model = \"anthropic.claude-3-5-haiku-20241022-v1:0\" }}]\n",
            mock.base_url(),
            switchyard::mock::EXAMPLE_ACCESS_KEY_ID,
        )
    };
    let gw = TestGateway::start(&config(switchyard::mock::EXAMPLE_SECRET_ACCESS_KEY)).await;
    let v = ok_json(&gw, &hello(false)).await;
    assert_eq!(content(&v), "Hello from p! You said: Hello");
    let events = sse_events(gw.chat(&hello(true)).await).await;
    assert_eq!(stream_content(&events), "Hello from p! You said: Hello");
    let headers = mock.stats().await["last_headers"].clone();
    assert_eq!(headers["x-amz-security-token"], "token/with+symbols=");
    let auth = headers["authorization"].as_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && auth.contains("/eu-west-3/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="),
        "{auth}"
    );

    let gw = TestGateway::start(&config("not-the-secret")).await;
    let resp = gw.chat(&hello(false)).await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "InvalidSignatureException");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature we calculated does not match")
    );
}

fn two_tools() -> Value {
    let mut tools = weather_tool();
    tools.as_array_mut().unwrap().push(
        json!({ "type": "function", "function": { "name": "get_time",
        "description": "Local time in a city", "parameters": { "type": "object",
        "properties": { "city": {"type": "string"} }, "required": ["city"] } } }),
    );
    tools
}

async fn parallel_tool_calls(format: MockFormat) {
    let (_mock, gw) = setup(format, "").await;
    let mut req = request(json!([{"role": "user", "content": "Weather and time in Paris?"}]));
    req["tools"] = two_tools();
    req["tool_choice"] = json!("required");
    let v = ok_json(&gw, &req).await;
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let calls = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = calls
        .iter()
        .map(|c| c["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_weather", "get_time"]);
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    for c in &calls {
        let args: Value =
            serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args["city"], "sample");
    }

    // Streamed: two calls with their own index and id; arguments reassemble per index.
    req["stream"] = json!(true);
    let events = sse_events(gw.chat(&req).await).await;
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let mut args = [String::new(), String::new()];
    let mut ids = [None, None];
    for call in chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls"))
        .flat_map(|t| t.as_array().unwrap().clone())
    {
        let i = call["index"].as_u64().unwrap() as usize;
        if let Some(id) = call["id"].as_str() {
            assert!(ids[i].replace(id.to_owned()).is_none(), "one id per call");
        }
        args[i].push_str(call["function"]["arguments"].as_str().unwrap_or(""));
    }
    assert!(ids[0].is_some() && ids[1].is_some() && ids[0] != ids[1]);
    for a in &args {
        assert_eq!(serde_json::from_str::<Value>(a).unwrap()["city"], "sample");
    }

    // Both results go back; the simulated provider checks every call is answered.
    let mut back = request(json!([
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "14:05"}
    ]));
    back["tools"] = two_tools();
    ok_json(&gw, &back).await;
}
