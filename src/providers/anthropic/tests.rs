//! Anthropic translation: requests as the Messages API expects them, responses and recorded
//! streams back to the canonical shapes, usage counted once.

use serde_json::{Value, json};

use super::*;
use crate::{
    chat::{ChatChunk, ChatRequest},
    providers::sse::{SseDecoder, StreamTranslator},
};

fn encode(body: Value, stream: bool) -> Result<Value, ProviderError> {
    let req: ChatRequest = serde_json::from_value(body).unwrap();
    encode_request(&req, "claude-x", stream).map(|b| serde_json::from_slice(&b).unwrap())
}

#[test]
fn system_prompts_are_hoisted_and_turns_merged() {
    let wire = encode(
        json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Which city?"},
            {"role": "user", "content": "Paris"}
        ], "max_tokens": 100, "temperature": 0.5, "stop": ["END"], "user": "u-1"}),
        true,
    )
    .unwrap();
    assert_eq!(wire["model"], "claude-x");
    assert_eq!(wire["stream"], true);
    assert_eq!(wire["max_tokens"], 100);
    assert_eq!(
        wire["system"],
        json!([{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric."}])
    );
    assert_eq!(
        wire["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Weather?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Which city?"}]},
            {"role": "user", "content": [{"type": "text", "text": "Paris"}]}
        ])
    );
    assert_eq!(wire["stop_sequences"], json!(["END"]));
    assert_eq!(wire["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(wire["temperature"], 0.5);
}

#[test]
fn max_tokens_is_always_sent() {
    let wire = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        false,
    )
    .unwrap();
    assert_eq!(wire["max_tokens"], DEFAULT_MAX_TOKENS);
    assert!(wire.get("stream").is_none());
    let wire = encode(
        json!({"model": "m", "max_completion_tokens": 7, "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]}),
        false,
    )
    .unwrap();
    assert_eq!(wire["max_tokens"], 7);
}

#[test]
fn tools_calls_and_results_round_trip_as_blocks() {
    let wire = encode(
        json!({"model": "m", "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "21C"}]}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Get weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": "required", "parallel_tool_calls": false}),
        false,
    )
    .unwrap();
    assert_eq!(
        wire["messages"][1],
        json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}}
        ]})
    );
    assert_eq!(
        wire["messages"][2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "21C"}]}
        ]})
    );
    assert_eq!(
        wire["tools"],
        json!([{"name": "weather", "description": "Get weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
    );
    assert_eq!(
        wire["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
}

#[test]
fn tool_choice_modes_map() {
    let choice = |c: Value| {
        encode(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": c}),
            false,
        )
        .unwrap()["tool_choice"]
            .clone()
    };
    assert_eq!(choice(json!("auto")), json!({"type": "auto"}));
    assert_eq!(choice(json!("none")), json!({"type": "none"}));
    assert_eq!(
        choice(json!({"type": "function", "function": {"name": "f"}})),
        json!({"type": "tool", "name": "f"})
    );
}

#[test]
fn images_become_base64_or_url_sources() {
    let wire = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}
        ]}]}),
        false,
    )
    .unwrap();
    assert_eq!(
        wire["messages"][0]["content"][1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        wire["messages"][0]["content"][2],
        json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
    );
}

#[test]
fn structured_output_uses_output_config() {
    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false});
    let wire = encode(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true, "schema": schema}}}),
        false,
    )
    .unwrap();
    assert_eq!(
        wire["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
}

#[test]
fn what_has_no_equivalent_is_refused_not_dropped() {
    let refused = |body: Value| match encode(body, false) {
        Err(ProviderError::Untranslatable(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let user = json!([{"role": "user", "content": "x"}]);
    assert!(refused(json!({"model": "m", "messages": user, "n": 2})).contains("`n`"));
    assert!(
        refused(
            json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]})
        )
        .contains("input_audio")
    );
    assert!(
        refused(
            json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAA"}}]}]})
        )
        .contains("image/bmp")
    );
    assert!(refused(json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}
    ]})).contains("JSON object"));
    let err = ProviderError::Untranslatable("x".into());
    assert!(err.is_retryable(), "another deployment may take it");
}

#[test]
fn a_response_maps_content_tool_calls_stop_reason_and_usage_once() {
    let body = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "Need the tool.", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 100, "output_tokens": 30, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 400}
    });
    let r = decode_response(&serde_json::to_vec(&body).unwrap()).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "Checking.");
    assert_eq!(m["reasoning_content"], "Need the tool.");
    assert_eq!(m["tool_calls"][0]["id"], "toolu_9");
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
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ] {
        assert_eq!(finish_reason(stop), finish);
    }
}

/// A stream in the documented event shapes: text, then two tool_use blocks whose input
/// arrives as input_json_delta fragments, then message_delta with cumulative usage.
const RECORDED: &str = "event: message_start
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":50,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}

event: content_block_start
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}

event: ping
data: {\"type\": \"ping\"}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me check.\"}}

event: content_block_stop
data: {\"type\":\"content_block_stop\",\"index\":0}

event: content_block_start
data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_a\",\"name\":\"weather\",\"input\":{}}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Pa\"}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ris\\\"}\"}}

event: content_block_stop
data: {\"type\":\"content_block_stop\",\"index\":1}

event: content_block_start
data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_b\",\"name\":\"weather\",\"input\":{}}}

event: content_block_delta
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Rome\\\"}\"}}

event: content_block_stop
data: {\"type\":\"content_block_stop\",\"index\":2}

event: message_delta
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}

event: message_stop
data: {\"type\":\"message_stop\"}

";

fn run(wire: &str, split: usize) -> (Vec<Result<ChatChunk, ProviderError>>, AnthropicStream) {
    let (mut sse, mut st) = (SseDecoder::default(), AnthropicStream::default());
    let mut out = Vec::new();
    for piece in wire.as_bytes().chunks(split) {
        for ev in sse.push(piece) {
            let ev = ev.unwrap();
            if !st.is_ended() {
                out.extend(st.on_event(ev));
            }
        }
    }
    (out, st)
}

#[test]
fn recorded_stream_translates_with_stable_tool_indices_in_any_split() {
    for split in [1, 5, 97, RECORDED.len()] {
        let (items, mut st) = run(RECORDED, split);
        st.on_eof().unwrap();
        let chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            chunks[0].choices[0].delta.role,
            Some(crate::chat::Role::Assistant)
        );
        assert!(
            chunks
                .iter()
                .all(|c| c.id == "msg_1" && c.model == "claude-sonnet-4-5")
        );
        let text: String = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, "Let me check.");
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
        assert_eq!(ids, [Some("toolu_a".into()), Some("toolu_b".into())]);
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
        let usage = chunks.last().unwrap().usage.clone().unwrap();
        assert!(chunks.last().unwrap().choices.is_empty());
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
fn a_stream_without_message_stop_is_broken() {
    let cut = &RECORDED[..RECORDED.find("event: message_stop").unwrap()];
    let (items, mut st) = run(cut, 64);
    assert!(items.iter().all(Result::is_ok));
    assert!(matches!(st.on_eof(), Err(ProviderError::Reset(_))));
}

#[test]
fn an_in_band_error_ends_the_stream_after_what_came_before() {
    let wire = format!(
        "{}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n{}",
        &RECORDED[..RECORDED.find("event: content_block_stop").unwrap()],
        RECORDED
    );
    let (items, st) = run(&wire, wire.len());
    let last = items.last().unwrap();
    assert!(
        matches!(last, Err(ProviderError::InStream { message, kind, .. })
        if message == "Overloaded" && kind.as_deref() == Some("overloaded_error"))
    );
    assert!(items[..items.len() - 1].iter().all(Result::is_ok));
    assert!(st.is_ended());
}

#[test]
fn anthropic_error_bodies_keep_type_and_message() {
    let e = ProviderError::from_status(
        http::StatusCode::from_u16(529).unwrap(),
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        None,
    );
    assert!(
        matches!(&e, ProviderError::Status { message, kind, .. } if message == "Overloaded" && kind.as_deref() == Some("overloaded_error"))
    );
    assert!(e.is_retryable());
}

#[test]
fn ids_schemas_and_user_ids_are_made_acceptable_without_losing_pairing() {
    let wire = encode(
        json!({"model": "m", "user": "u".repeat(600), "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "functions.get_weather:0", "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "sunny"}
        ], "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]}),
        false,
    )
    .unwrap();
    assert_eq!(
        wire["messages"][1]["content"][0]["id"],
        "functions_get_weather_0"
    );
    assert_eq!(
        wire["messages"][2]["content"][0]["tool_use_id"],
        "functions_get_weather_0"
    );
    assert_eq!(wire["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(wire["metadata"]["user_id"].as_str().unwrap().len(), 512);
}

#[test]
fn out_of_range_temperature_and_audio_output_are_refused() {
    let user = json!([{"role": "user", "content": "x"}]);
    for body in [
        json!({"model": "m", "messages": user, "temperature": 1.5}),
        json!({"model": "m", "messages": user, "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}),
        json!({"model": "m", "messages": user, "logprobs": true}),
    ] {
        assert!(matches!(
            encode(body, false),
            Err(ProviderError::Untranslatable(_))
        ));
    }
    assert!(
        encode(
            json!({"model": "m", "messages": user, "temperature": 1.0}),
            false
        )
        .is_ok()
    );
}

#[test]
fn a_content_block_index_past_the_limit_is_malformed() {
    let wire = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":4000000000,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}\n\n";
    let (items, st) = run(wire, wire.len());
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.label(), "malformed");
    assert!(
        err.to_string().contains("content block index 4000000000"),
        "{err}"
    );
    assert!(st.is_ended());
}

#[test]
fn tool_blocks_past_the_limit_are_malformed_not_kept() {
    let start = "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}\n\n";
    let wire = start.repeat(4097);
    let (items, _) = run(&wire, wire.len());
    assert_eq!(items.len(), 4097);
    assert!(items[..4096].iter().all(Result::is_ok));
    assert!(items[4096].is_err());
}

crate::providers::fuzz::translator_properties!(AnthropicStream::default, RECORDED);

#[test]
fn reasoning_effort_becomes_extended_thinking_within_the_token_limit() {
    let ask = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        encode(body, false)
    };
    // No limit asked: the budget is added to the default.
    let wire = ask(json!({"reasoning_effort": "high"})).unwrap();
    assert_eq!(
        wire["thinking"],
        json!({"type": "enabled", "budget_tokens": 24576})
    );
    assert_eq!(wire["max_tokens"], 4096 + 24576);
    // A caller's limit is kept; the budget fits under it.
    let wire = ask(json!({"reasoning_effort": "medium", "max_completion_tokens": 2000})).unwrap();
    assert_eq!(wire["thinking"]["budget_tokens"], 1999);
    assert_eq!(wire["max_tokens"], 2000);
    let wire = ask(json!({"reasoning_effort": "low"})).unwrap();
    assert_eq!(wire["thinking"]["budget_tokens"], 1024);
    // Off, or unknown: no thinking.
    for effort in ["none", "extreme"] {
        let wire = ask(json!({"reasoning_effort": effort})).unwrap();
        assert!(wire.get("thinking").is_none(), "{effort}: {wire}");
        assert_eq!(wire["max_tokens"], 4096);
    }
    // What thinking cannot take is refused, never dropped.
    for extra in [
        json!({"reasoning_effort": "low", "max_tokens": 1024}),
        json!({"reasoning_effort": "low", "temperature": 0.2}),
        json!({"reasoning_effort": "low", "top_k": 5}),
        json!({"reasoning_effort": "low", "tool_choice": "required",
               "tools": [{"type": "function", "function": {"name": "f"}}]}),
    ] {
        assert!(
            matches!(ask(extra.clone()), Err(ProviderError::Untranslatable(_))),
            "{extra}"
        );
    }
}

#[test]
fn thinking_is_not_enabled_on_the_turn_that_answers_a_tool_call() {
    // Anthropic wants that assistant turn to open with its signed thinking block, which a
    // translated history does not have.
    let wire = encode(
        json!({"model": "m", "reasoning_effort": "high", "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
              "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}
        ]}),
        false,
    )
    .unwrap();
    assert!(wire.get("thinking").is_none(), "{wire}");
}
