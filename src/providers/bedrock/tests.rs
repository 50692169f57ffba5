//! Bedrock translation: requests as Converse expects them, responses and recorded streams
//! back to the canonical shapes, usage counted once, errors, URLs, signing and config.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{eventstream::encode, *};
use crate::{
    chat::{ChatChunk, ChatRequest},
    config::Config,
};

fn encode_json(body: Value) -> Result<Value, ProviderError> {
    let req: ChatRequest = serde_json::from_value(body).unwrap();
    encode_request(&req).map(|b| serde_json::from_slice(&b).unwrap())
}

fn refused(body: Value) -> String {
    match encode_json(body) {
        Err(ProviderError::Untranslatable(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn system_prompts_are_hoisted_turns_merged_and_sampling_nested() {
    let wire = encode_json(json!({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Which city?"},
        {"role": "user", "content": "Paris"}
    ], "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "user": "u-1"}))
    .unwrap();
    assert_eq!(
        wire["system"],
        json!([{"text": "Be brief."}, {"text": "Use metric."}])
    );
    assert_eq!(
        wire["messages"],
        json!([
            {"role": "user", "content": [{"text": "Hi"}, {"text": "Weather?"}]},
            {"role": "assistant", "content": [{"text": "Which city?"}]},
            {"role": "user", "content": [{"text": "Paris"}]}
        ])
    );
    assert_eq!(
        wire["inferenceConfig"],
        json!({"maxTokens": 100, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]})
    );
    assert!(wire.get("model").is_none(), "the model is in the URL");
    assert!(wire.get("toolConfig").is_none());
    let bare =
        encode_json(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})).unwrap();
    assert!(bare.get("inferenceConfig").is_none());
}

#[test]
fn tool_calls_and_results_travel_as_blocks_with_ids_rewritten_consistently() {
    let wire = encode_json(json!({"model": "m", "messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "functions.weather:0", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": ""}}
        ]},
        {"role": "tool", "tool_call_id": "functions.weather:0", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": ""},
        {"role": "user", "content": "Thanks"}
    ],
    "tools": [{"type": "function", "function": {"name": "weather", "description": "Get weather",
        "parameters": {"properties": {"city": {"type": "string"}}}, "strict": true}}],
    "tool_choice": "required"}))
    .unwrap();
    assert_eq!(
        wire["messages"][1],
        json!({"role": "assistant", "content": [
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "functions_weather_0", "name": "weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "weather", "input": {}}}
        ]})
    );
    assert_eq!(
        wire["messages"][2],
        json!({"role": "user", "content": [
            {"toolResult": {"toolUseId": "functions_weather_0", "content": [{"text": "18C"}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"json": {}}]}},
            {"text": "Thanks"}
        ]})
    );
    assert_eq!(
        wire["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "weather", "description": "Get weather", "strict": true,
            "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
            "toolChoice": {"any": {}}})
    );
}

#[test]
fn tool_choice_modes_map_and_none_is_expressed_by_omission_or_refused() {
    let with = |choice: Value, messages: Value| {
        json!({"model": "m", "messages": messages,
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice})
    };
    let user = json!([{"role": "user", "content": "x"}]);
    let choice = |c: Value| encode_json(with(c, user.clone())).unwrap()["toolConfig"].clone();
    assert_eq!(choice(json!("auto"))["toolChoice"], json!({"auto": {}}));
    assert_eq!(
        choice(json!({"type": "function", "function": {"name": "f"}}))["toolChoice"],
        json!({"tool": {"name": "f"}})
    );
    assert!(
        choice(json!("none")).is_null(),
        "none: no toolConfig at all"
    );
    let history = json!([
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "ok"}
    ]);
    assert!(refused(with(json!("none"), history.clone())).contains("tool_choice `none`"));
    let mut no_tools = with(json!("auto"), history);
    no_tools.as_object_mut().unwrap().remove("tools");
    assert!(refused(no_tools).contains("no `tools`"));
    let mut serial = with(json!("auto"), user);
    serial["parallel_tool_calls"] = json!(false);
    assert!(
        encode_json(serial).is_ok(),
        "a hint with no equivalent is not sent, not refused"
    );
}

#[test]
fn images_become_bytes_and_urls_are_refused() {
    let image = |url: &str| {
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}}
        ]}]})
    };
    let wire = encode_json(image("data:image/jpeg;base64,/9j/4AAQ")).unwrap();
    assert_eq!(
        wire["messages"][0]["content"][1],
        json!({"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}})
    );
    assert!(refused(image("https://example.com/cat.png")).contains("data URL"));
    assert!(refused(image("data:image/bmp;base64,AAA")).contains("image/bmp"));
    assert!(refused(image("data:image/png,rawbytes")).contains("base64"));
}

#[test]
fn structured_output_uses_output_config_with_the_schema_as_a_string() {
    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false});
    let wire = encode_json(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "description": "d", "strict": true, "schema": schema}}}))
    .unwrap();
    let format = &wire["outputConfig"]["textFormat"];
    assert_eq!(format["type"], "json_schema");
    let js = &format["structure"]["jsonSchema"];
    assert_eq!(
        (js["name"].clone(), js["description"].clone()),
        (json!("r"), json!("d"))
    );
    assert_eq!(
        serde_json::from_str::<Value>(js["schema"].as_str().unwrap()).unwrap(),
        schema
    );
    let object = encode_json(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"}}),
    )
    .unwrap();
    assert_eq!(
        object["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"],
        "{\"type\":\"object\"}"
    );
}

#[test]
fn what_has_no_equivalent_is_refused_not_dropped() {
    let user = json!([{"role": "user", "content": "x"}]);
    assert!(refused(json!({"model": "m", "messages": user, "n": 2})).contains("`n`"));
    assert!(
        refused(json!({"model": "m", "messages": user, "temperature": 1.5}))
            .contains("temperature")
    );
    assert!(
        refused(json!({"model": "m", "messages": user, "logprobs": true})).contains("logprobs")
    );
    assert!(
        refused(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]})
        )
        .contains("input_audio")
    );
    assert!(refused(json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}
    ]})).contains("JSON object"));
    assert!(
        refused(json!({"model": "m", "messages": user, "response_format": {"type": "grammar"}}))
            .contains("grammar")
    );
}

#[test]
fn a_response_maps_content_tool_calls_stop_reason_and_usage_once() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Need the tool.", "signature": "sig"}}},
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "tooluse_9", "name": "weather", "input": {"city": "Paris"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 100, "outputTokens": 30, "totalTokens": 550,
                  "cacheReadInputTokens": 400, "cacheWriteInputTokens": 20},
        "metrics": {"latencyMs": 12}
    });
    let r = decode_response(
        &serde_json::to_vec(&body).unwrap(),
        "amazon.nova-pro-v1:0",
        "bedrock-r1",
    )
    .unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        (v["id"].clone(), v["model"].clone()),
        (json!("bedrock-r1"), json!("amazon.nova-pro-v1:0"))
    );
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "Checking.");
    assert_eq!(m["reasoning_content"], "Need the tool.");
    assert_eq!(m["tool_calls"][0]["id"], "tooluse_9");
    assert_eq!(
        serde_json::from_str::<Value>(
            m["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        )
        .unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (520, 30, 550)
    );
    assert_eq!(u.cached_tokens(), 400);
    assert_eq!(
        v["usage"]["prompt_tokens_details"]["cache_creation_tokens"],
        20
    );
    assert!(matches!(
        decode_response(b"{\"output\": {", "m", "id"),
        Err(ProviderError::Malformed(_))
    ));
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ] {
        assert_eq!(finish_reason(stop), finish, "{stop}");
    }
}

fn event(kind: &str, payload: Value) -> Vec<u8> {
    encode(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
    .to_vec()
}

/// A ConverseStream answer in the documented event shapes (with the `p` padding field the
/// service adds): reasoning, text, two toolUse blocks whose input arrives in fragments,
/// messageStop, then metadata with usage.
fn recorded() -> Vec<u8> {
    let mut out = event("messageStart", json!({"role": "assistant", "p": "abc"}));
    for (kind, payload) in [
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm."}}, "p": "ab"}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"text": "Let me "}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"text": "check."}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "weather"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"city\": \"Pa"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "ris\"}"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 2})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tooluse_b", "name": "weather"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{\"city\": \"Rome\"}"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 3})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 50, "outputTokens": 89, "totalTokens": 149, "cacheReadInputTokens": 10}, "metrics": {"latencyMs": 300}}),
        ),
    ] {
        out.extend(event(kind, payload));
    }
    out
}

fn run(wire: &[u8], split: usize) -> (Vec<Result<ChatChunk, ProviderError>>, BedrockStream) {
    let mut frames = eventstream::FrameDecoder::default();
    let mut st = BedrockStream::new("anthropic.claude-3-5-haiku-20241022-v1:0", "bedrock-1");
    let mut out = Vec::new();
    for piece in wire.chunks(split) {
        for frame in frames.push(piece) {
            if st.is_ended() {
                break;
            }
            match frame {
                Ok(f) => out.extend(st.on_frame(&f)),
                Err(e) => out.push(Err(e)),
            }
        }
    }
    (out, st)
}

#[test]
fn a_recorded_stream_translates_with_stable_tool_indices_in_any_split() {
    let wire = recorded();
    for split in [1, 5, 97, wire.len()] {
        let (items, mut st) = run(&wire, split);
        st.on_eof().unwrap();
        let chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            chunks[0].choices[0].delta.role,
            Some(crate::chat::Role::Assistant)
        );
        assert!(chunks.iter().all(|c| c.id == "bedrock-1"));
        let text: String = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, "Let me check.");
        let reasoning: Vec<_> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.extra.get("reasoning_content"))
            .collect();
        assert_eq!(reasoning, [&json!("Hmm.")]);
        let mut args = [String::new(), String::new()];
        let mut ids = [None, None];
        for call in chunks
            .iter()
            .flat_map(|c| &c.choices)
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
        {
            let i = call.index as usize;
            if call.id.is_some() {
                ids[i] = call.id.clone();
            }
            args[i].push_str(
                call.function
                    .as_ref()
                    .and_then(|f| f.arguments.as_deref())
                    .unwrap_or(""),
            );
        }
        assert_eq!(ids, [Some("tooluse_a".into()), Some("tooluse_b".into())]);
        assert_eq!(
            serde_json::from_str::<Value>(&args[0]).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(
            serde_json::from_str::<Value>(&args[1]).unwrap(),
            json!({"city": "Rome"})
        );
        let finish: Vec<_> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.finish_reason.clone())
            .collect();
        assert_eq!(finish, ["tool_calls"]);
        let last = chunks.last().unwrap();
        assert!(last.choices.is_empty());
        let usage = last.usage.clone().unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens()
            ),
            (60, 89, 10)
        );
    }
}

#[test]
fn a_stream_without_message_stop_and_metadata_is_cut() {
    let full = recorded();
    let stop_at = |kind: &str| {
        let mut wire = Vec::new();
        let mut decoder = eventstream::FrameDecoder::default();
        for frame in decoder.push(&full) {
            let frame = frame.unwrap();
            if frame.header(":event-type") == Some(kind) {
                break;
            }
            let headers: Vec<(&str, &str)> = frame
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            wire.extend_from_slice(&encode(&headers, &frame.payload));
        }
        wire
    };
    for (cut_before, says) in [
        ("messageStop", "without messageStop"),
        ("metadata", "without metadata"),
    ] {
        let (items, mut st) = run(&stop_at(cut_before), 64);
        assert!(items.iter().all(Result::is_ok));
        match st.on_eof() {
            Err(ProviderError::Reset(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("expected a cut stream, got {other:?}"),
        }
    }
}

#[test]
fn an_exception_frame_ends_the_stream_after_what_came_before() {
    let mut wire = event("messageStart", json!({"role": "assistant"}));
    wire.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
    ));
    wire.extend_from_slice(&encode(
        &[
            (":exception-type", "throttlingException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        b"{\"message\":\"Too many tokens, please wait before trying again.\"}",
    ));
    // Whatever follows an exception is not read.
    wire.extend(recorded());
    let (items, st) = run(&wire, wire.len());
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items[..2].iter().all(Result::is_ok));
    assert!(
        matches!(&items[2], Err(ProviderError::InStream { message, code, .. })
        if message.starts_with("Too many tokens") && code.as_deref() == Some("throttlingException"))
    );
    assert!(st.is_ended());
}

#[test]
fn a_damaged_frame_is_malformed() {
    let mut wire = recorded();
    let end = wire.len() - 1;
    wire[end] ^= 0x55;
    let (items, _) = run(&wire, 7);
    assert!(
        matches!(items.last(), Some(Err(ProviderError::Malformed(m))) if m.contains("checksum"))
    );
}

#[test]
fn error_bodies_keep_the_message_and_the_exception_name() {
    let s = |code: u16| http::StatusCode::from_u16(code).unwrap();
    let e = status_error(
        s(429),
        b"{\"message\":\"Too many requests, please wait before trying again.\"}",
        Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        Some(Duration::from_secs(2)),
    );
    assert!(
        matches!(&e, ProviderError::Status { status, message, code, retry_after, kind: None, .. }
        if status.as_u16() == 429 && message.starts_with("Too many requests")
            && code.as_deref() == Some("ThrottlingException")
            && *retry_after == Some(Duration::from_secs(2)))
    );
    assert!(e.is_retryable());
    let e = status_error(s(403), b"{\"Message\":\"User is not authorized\",\"__type\":\"com.amazon.coral.service#AccessDeniedException\"}", None, None);
    assert!(matches!(&e, ProviderError::Status { message, code, .. }
        if message == "User is not authorized" && code.as_deref() == Some("AccessDeniedException")));
    let e = status_error(
        s(400),
        b"{\"message\":\"Malformed input request\"}",
        Some("ValidationException"),
        None,
    );
    assert!(!e.is_retryable(), "the caller's request is at fault");
    let e = status_error(s(503), b"", None, None);
    assert!(
        matches!(&e, ProviderError::Status { message, code: None, .. } if message == "Service Unavailable")
    );
}

fn provider(extra: &str) -> BedrockProvider {
    let text = format!(
        "[[providers]]\nname = \"b\"\nkind = \"bedrock\"\nregion = \"us-east-1\"\n\
         access_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\"\n{extra}\n\
         [[models]]\nname = \"m\"\ndeployments = [{{ provider = \"b\", model = \"x\" }}]\n"
    );
    let config = Config::parse(&text).unwrap();
    let client = crate::providers::client::Client::new(Duration::from_secs(1)).unwrap();
    BedrockProvider::new(&config.providers[0], client).unwrap()
}

#[test]
fn model_ids_are_one_encoded_path_segment() {
    let p = provider("");
    assert_eq!(
        p.url("anthropic.claude-3-5-haiku-20241022-v1:0", false)
            .unwrap()
            .as_str(),
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
    assert_eq!(
        p.url(
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0",
            true
        )
        .unwrap()
        .path(),
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.amazon.nova-pro-v1%3A0/converse-stream"
    );
    let proxied = provider("base_url = \"http://127.0.0.1:9/bedrock/\"");
    assert_eq!(
        proxied.url("m", false).unwrap().as_str(),
        "http://127.0.0.1:9/bedrock/model/m/converse"
    );
}

#[test]
fn requests_are_signed_at_the_time_given() {
    let p = provider("session_token = \"FwoGZXIvYXdzEXAMPLE\"");
    let url = p.url("amazon.nova-lite-v1:0", false).unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let headers = p.signed_headers(&url, b"{}", at);
    let get = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
    assert_eq!(get("x-amz-date"), "20150830T123600Z");
    assert_eq!(get("x-amz-content-sha256"), sigv4::sha256_hex(b"{}"));
    assert_eq!(get("x-amz-security-token"), "FwoGZXIvYXdzEXAMPLE");
    assert_eq!(get("content-type"), "application/json");
    let auth = get("authorization");
    let parsed = sigv4::Authorization::parse(&auth).unwrap();
    assert_eq!(
        (
            parsed.access_key_id,
            parsed.day,
            parsed.region,
            parsed.service
        ),
        ("AKIDEXAMPLE", "20150830", "us-east-1", "bedrock")
    );
    assert_eq!(
        parsed.signed_headers,
        [
            "content-type",
            "host",
            "x-amz-content-sha256",
            "x-amz-date",
            "x-amz-security-token"
        ]
    );
    assert_eq!(
        p.signed_headers(&url, b"{}", at),
        headers,
        "no hidden clock"
    );
    assert!(headers.get("authorization").unwrap().is_sensitive());
    assert!(headers.get("x-amz-security-token").unwrap().is_sensitive());
    assert!(!format!("{headers:?}").contains("wJalrXUtnFEMI"));
}

#[test]
fn config_takes_region_and_keys_only_for_bedrock_and_never_prints_them() {
    let base = "[[providers]]\nname = \"b\"\nkind = \"bedrock\"\n";
    let models =
        "\n[[models]]\nname = \"m\"\ndeployments = [{ provider = \"b\", model = \"x\" }]\n";
    let parse = |keys: &str| Config::parse(&format!("{base}{keys}{models}"));
    let keys = "region = \"eu-west-1\"\naccess_key_id = \"AKIAEXAMPLE\"\nsecret_access_key = \"s3cr3t-value\"\n";
    let c = parse(keys).unwrap();
    assert_eq!(
        c.providers[0].base_url,
        "https://bedrock-runtime.eu-west-1.amazonaws.com"
    );
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("s3cr3t-value") && !debug.contains("AKIAEXAMPLE"),
        "{debug}"
    );
    let err = |keys: &str| parse(keys).unwrap_err();
    assert_eq!(
        err("access_key_id = \"a\"\nsecret_access_key = \"b\"\n").key,
        "providers[0].region"
    );
    assert_eq!(
        err("region = \"us-east-1\"\nsecret_access_key = \"b\"\n").key,
        "providers[0].access_key_id"
    );
    assert_eq!(
        err(&format!("{keys}api_key = \"k\"\n")).key,
        "providers[0].api_key"
    );
    assert_eq!(
        err("region = \"US East\"\naccess_key_id = \"a\"\nsecret_access_key = \"b\"\n").key,
        "providers[0].region"
    );
    let e = err(
        "region = \"us-east-1\"\naccess_key_id = \"a\"\nsecret_access_key = \"env:SWITCHYARD_TEST_UNSET_SECRET\"\n",
    );
    assert_eq!(e.key, "providers[0].secret_access_key");
    assert!(e.reason.contains("SWITCHYARD_TEST_UNSET_SECRET is not set"));
    let openai = "[[providers]]\nname = \"b\"\nkind = \"openai\"\nregion = \"us-east-1\"\n";
    assert_eq!(
        Config::parse(&format!("{openai}{models}")).unwrap_err().key,
        "providers[0].region"
    );
}

#[test]
fn the_embedded_default_adds_bedrock_only_with_all_three_aws_variables() {
    use crate::config::{EmbeddedDefault, embedded_default};
    let partial = |k: &str| {
        matches!(k, "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY").then(|| "x".to_owned())
    };
    assert!(matches!(
        embedded_default(partial).unwrap(),
        EmbeddedDefault::Simulated
    ));
}

#[test]
fn a_content_block_index_past_the_limit_is_malformed() {
    let wire = event(
        "contentBlockStart",
        json!({"contentBlockIndex": 4_000_000_000_u32, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}}),
    );
    let (items, st) = run(&wire, wire.len());
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.label(), "malformed");
    assert!(
        err.to_string().contains("contentBlockIndex 4000000000"),
        "{err}"
    );
    assert!(st.is_ended());
}

mod properties {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::providers::fuzz;

    /// Translates frames as the stream wrapper does, in comparable form.
    fn translate(reads: &[&[u8]]) -> Result<Vec<Result<Value, String>>, TestCaseError> {
        let mut frames = eventstream::FrameDecoder::new(64 * 1024);
        let mut st = BedrockStream::new("m", "bedrock-1");
        let mut out = Vec::new();
        'reads: for read in reads {
            for frame in frames.push(read) {
                prop_assert!(frames.buffered() <= 64 * 1024);
                if st.is_ended() {
                    break 'reads;
                }
                match frame {
                    Ok(f) => {
                        for item in st.on_frame(&f) {
                            out.push(match item {
                                Ok(chunk) => {
                                    crate::providers::limits::check_chunk(&chunk)
                                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                                    let mut v = serde_json::to_value(&chunk).unwrap();
                                    v["created"] = json!(null);
                                    Ok(v)
                                }
                                Err(e) => Err(e.to_string()),
                            });
                        }
                    }
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        break 'reads;
                    }
                }
            }
        }
        Ok(out)
    }

    /// The recorded stream's frames as (event type, payload).
    fn recorded_frames() -> Vec<(String, Value)> {
        let mut d = eventstream::FrameDecoder::default();
        d.push(&recorded())
            .into_iter()
            .map(Result::unwrap)
            .map(|f| {
                let kind = f.header(":event-type").unwrap_or("").to_owned();
                (
                    kind,
                    serde_json::from_slice(&f.payload).unwrap_or(Value::Null),
                )
            })
            .collect()
    }

    proptest! {
        #![proptest_config(fuzz::config())]

        #[test]
        fn a_recorded_stream_split_anywhere_gives_the_same_chunks(
            cuts in fuzz::cuts(recorded().len()),
        ) {
            let wire = recorded();
            let whole = translate(&[&wire])?;
            prop_assert!(whole.iter().all(Result::is_ok), "{whole:?}");
            prop_assert_eq!(whole, translate(&fuzz::pieces(&wire, &cuts))?);
        }

        #[test]
        fn random_bytes_never_panic_nor_outgrow_the_frame_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in fuzz::cuts(2048),
        ) {
            translate(&fuzz::pieces(&bytes, &cuts))?;
        }

        #[test]
        fn recorded_frames_in_any_order_with_any_index_are_chunks_or_errors(
            soup in fuzz::event_soup(recorded_frames().len()),
        ) {
            let frames = recorded_frames();
            let mut wire = Vec::new();
            for (pick, indexes) in &soup {
                let (kind, payload) = &frames[*pick];
                let mut payload = payload.clone();
                fuzz::rewrite_indexes(&mut payload, indexes, &mut 0);
                wire.extend(event(kind, payload));
            }
            translate(&[&wire])?;
        }
    }
}
