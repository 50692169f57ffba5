//! Cohere translation: requests as /v2/chat expects them, responses and recorded streams
//! back to canonical shapes, and Cohere's bare error bodies.

use serde_json::{Value, json};

use super::*;
use crate::{
    chat::{ChatChunk, ChatRequest},
    providers::sse::{SseDecoder, StreamTranslator},
};

fn encode(body: Value) -> Result<Value, ProviderError> {
    let req: ChatRequest = serde_json::from_value(body).unwrap();
    encode_request(&req, "command-a-03-2025", false).map(|b| serde_json::from_slice(&b).unwrap())
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
           {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}, "strict": true}}])
}

#[test]
fn messages_and_sampling_map() {
    let wire = encode(json!({"model": "m", "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"}
    ], "top_p": 1.0, "temperature": 0.5, "stop": ["x"], "seed": 3, "max_tokens": 9}))
    .unwrap();
    assert_eq!(
        wire["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        wire["messages"][1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}})
    );
    assert_eq!(
        wire["messages"][2],
        json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]})
    );
    assert_eq!(
        wire["messages"][3],
        json!({"role": "tool", "tool_call_id": "c1", "content": "done"})
    );
    assert_eq!(
        (wire["p"].as_f64(), wire["temperature"].as_f64()),
        (Some(0.99), Some(0.5))
    );
    assert_eq!(wire["stop_sequences"], json!(["x"]));
    assert_eq!(
        (wire["seed"].as_i64(), wire["max_tokens"].as_u64()),
        (Some(3), Some(9))
    );
}

#[test]
fn tool_choice_maps_and_a_named_function_becomes_only_that_tool_required() {
    let user = json!([{"role": "user", "content": "x"}]);
    let wire =
        encode(json!({"model": "m", "messages": user, "tools": tools(), "tool_choice": "auto"}))
            .unwrap();
    assert!(wire.get("tool_choice").is_none());
    assert_eq!(wire["strict_tools"], true);
    let wire = encode(
        json!({"model": "m", "messages": user, "tools": tools(), "tool_choice": "required"}),
    )
    .unwrap();
    assert_eq!(wire["tool_choice"], "REQUIRED");
    let wire = encode(json!({"model": "m", "messages": user, "tools": tools(),
        "tool_choice": {"type": "function", "function": {"name": "a"}}}))
    .unwrap();
    assert_eq!(wire["tool_choice"], "REQUIRED");
    assert_eq!(wire["tools"].as_array().unwrap().len(), 1);
    assert_eq!(wire["tools"][0]["function"]["name"], "a");
}

#[test]
fn structured_output_and_refusals() {
    let user = json!([{"role": "user", "content": "x"}]);
    let wire = encode(
        json!({"model": "m", "messages": user, "response_format": {"type": "json_schema",
        "json_schema": {"name": "r", "schema": {"type": "object"}}}}),
    )
    .unwrap();
    assert_eq!(
        wire["response_format"],
        json!({"type": "json_object", "json_schema": {"type": "object"}})
    );
    for body in [
        json!({"model": "m", "messages": user, "temperature": 1.3}),
        json!({"model": "m", "messages": user, "n": 2}),
        json!({"model": "m", "messages": user, "stop": ["1", "2", "3", "4", "5", "6"]}),
        json!({"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
    ] {
        assert!(matches!(
            encode(body),
            Err(ProviderError::Untranslatable(_))
        ));
    }
}

#[test]
fn a_response_uses_real_token_counts_and_maps_tool_calls() {
    let body = json!({"id": "r1", "finish_reason": "TOOL_CALL", "message": {"role": "assistant",
        "tool_plan": "I will look it up.", "tool_calls": [{"id": "t1", "type": "function",
        "function": {"name": "a", "arguments": "{\"day\": \"2023-09-29\"}"}}]},
        "usage": {"billed_units": {"input_tokens": 127, "output_tokens": 69}, "tokens": {"input_tokens": 1032, "output_tokens": 124}}});
    let r = decode_response(&serde_json::to_vec(&body).unwrap(), "command-a").unwrap();
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    assert!(r.choices[0].message.content.is_none());
    assert_eq!(
        r.choices[0].message.tool_calls.as_ref().unwrap()[0]
            .function
            .arguments,
        "{\"day\": \"2023-09-29\"}"
    );
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (1032, 124, 1156)
    );
    for (c, o) in [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TOOL_CALL", "tool_calls"),
    ] {
        assert_eq!(finish_reason(c), o);
    }
}

/// Events as /v2/chat streams them: text, a tool plan, one tool call in fragments, end.
const RECORDED: &str = "event: message-start
data: {\"id\":\"c-1\",\"type\":\"message-start\",\"delta\":{\"message\":{\"role\":\"assistant\",\"content\":[],\"tool_plan\":\"\",\"tool_calls\":[],\"citations\":[]}}}

event: content-start
data: {\"type\":\"content-start\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"type\":\"text\",\"text\":\"\"}}}}

event: content-delta
data: {\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\"Checking \"}}}}

event: content-delta
data: {\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\"now.\"}}}}

event: content-end
data: {\"type\":\"content-end\",\"index\":0}

event: tool-plan-delta
data: {\"type\":\"tool-plan-delta\",\"delta\":{\"message\":{\"tool_plan\":\"I will\"}}}

event: tool-call-start
data: {\"type\":\"tool-call-start\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":{\"id\":\"q_1\",\"type\":\"function\",\"function\":{\"name\":\"query\",\"arguments\":\"\"}}}}}

event: tool-call-delta
data: {\"type\":\"tool-call-delta\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":{\"function\":{\"arguments\":\"{\\\"day\\\": \"}}}}}

event: tool-call-delta
data: {\"type\":\"tool-call-delta\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":{\"function\":{\"arguments\":\"\\\"2023-09-29\\\"}\"}}}}}

event: tool-call-end
data: {\"type\":\"tool-call-end\",\"index\":0}

event: message-end
data: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"TOOL_CALL\",\"usage\":{\"billed_units\":{\"input_tokens\":37,\"output_tokens\":20},\"tokens\":{\"input_tokens\":900,\"output_tokens\":44}}}}

";

fn run(wire: &str, split: usize) -> (Vec<Result<ChatChunk, ProviderError>>, CohereStream) {
    let (mut sse, mut st) = (SseDecoder::default(), CohereStream::new("command-a"));
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
fn recorded_stream_translates_in_any_split() {
    for split in [1, 31, RECORDED.len()] {
        let (items, mut st) = run(RECORDED, split);
        let chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
        assert!(st.on_eof().unwrap().is_empty());
        assert!(chunks.iter().all(|c| c.id == "c-1"));
        let text: String = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, "Checking now.");
        let calls: Vec<_> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
            .collect();
        assert_eq!(calls[0].id.as_deref(), Some("q_1"));
        let args: String = calls
            .iter()
            .filter_map(|c| c.function.as_ref()?.arguments.clone())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"day": "2023-09-29"})
        );
        let finish: Vec<_> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.finish_reason.clone())
            .collect();
        assert_eq!(finish, ["tool_calls"]);
        let u = chunks.last().unwrap().usage.clone().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (900, 44));
    }
}

#[test]
fn an_error_in_message_end_and_a_cut_stream_are_errors() {
    let cut = &RECORDED[..RECORDED.find("event: message-end").unwrap()];
    let (items, mut st) = run(cut, 64);
    assert!(items.iter().all(Result::is_ok));
    assert!(matches!(st.on_eof(), Err(ProviderError::Reset(_))));
    let failed = format!(
        "{cut}event: message-end\ndata: {{\"type\":\"message-end\",\"delta\":{{\"finish_reason\":\"ERROR\",\"error\":\"internal failure\"}}}}\n\n"
    );
    let (items, _) = run(&failed, failed.len());
    assert!(
        matches!(items.last(), Some(Err(ProviderError::InStream { message, .. })) if message == "internal failure")
    );
}

#[test]
fn bare_error_bodies_keep_the_message() {
    let e = ProviderError::from_status(
        http::StatusCode::TOO_MANY_REQUESTS,
        br#"{"id":"e1","message":"too many requests"}"#,
        None,
    );
    assert!(matches!(&e, ProviderError::Status { message, .. } if message == "too many requests"));
}

#[test]
fn tool_call_and_content_indexes_past_the_limit_are_malformed() {
    for wire in [
        "data: {\"type\":\"tool-call-start\",\"index\":4000000000,\"delta\":{\"message\":{\"tool_calls\":{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}}}}\n\n",
        "data: {\"type\":\"tool-call-delta\",\"index\":4096,\"delta\":{\"message\":{\"tool_calls\":{\"function\":{\"arguments\":\"{\"}}}}}\n\n",
        "data: {\"type\":\"content-start\",\"index\":4096,\"delta\":{\"message\":{\"content\":{\"type\":\"thinking\",\"thinking\":\"\"}}}}\n\n",
    ] {
        let (items, st) = run(wire, wire.len());
        let err = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.label(), "malformed", "{wire}");
        assert!(st.is_ended());
    }
}

crate::providers::fuzz::translator_properties!(|| CohereStream::new("command-a"), RECORDED);
