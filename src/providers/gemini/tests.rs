//! Gemini translation: requests as generateContent expects them, responses and recorded
//! stream frames back to canonical shapes, usage with thinking and cache counted once.

use serde_json::{Value, json};

use super::*;
use crate::{
    chat::{ChatChunk, ChatRequest},
    providers::sse::{SseDecoder, StreamTranslator},
};

fn encode(body: Value) -> Result<Value, ProviderError> {
    let req: ChatRequest = serde_json::from_value(body).unwrap();
    encode_request(&req).map(|b| serde_json::from_slice(&b).unwrap())
}

#[test]
fn roles_system_and_generation_config_map() {
    let wire = encode(json!({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"}
    ], "temperature": 0.2, "top_p": 0.9, "max_tokens": 64, "stop": "END", "seed": 7, "n": 2}))
    .unwrap();
    assert_eq!(
        wire["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(
        wire["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello."}]},
            {"role": "user", "parts": [{"text": "Bye"}]}
        ])
    );
    assert_eq!(
        wire["generationConfig"],
        json!({"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 64,
        "stopSequences": ["END"], "seed": 7, "candidateCount": 2})
    );
}

#[test]
fn a_reasoning_effort_is_a_thinking_budget_with_thoughts_included() {
    let wire = |effort: &str| {
        encode(json!({"model": "m", "reasoning_effort": effort,
            "messages": [{"role": "user", "content": "Hi"}]}))
        .unwrap()["generationConfig"]["thinkingConfig"]
            .clone()
    };
    assert_eq!(
        wire("high"),
        json!({"thinkingBudget": 24576, "includeThoughts": true})
    );
    assert_eq!(
        wire("low"),
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    assert_eq!(
        wire("none"),
        json!({"thinkingBudget": 0, "includeThoughts": false})
    );
    assert_eq!(wire("whatever"), Value::Null);
}

#[test]
fn parallel_tool_calls_and_results_share_turns_and_name_their_function() {
    let wire = encode(json!({"model": "m", "messages": [
        {"role": "user", "content": "Paris and Rome?"},
        {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 18}"},
        {"role": "tool", "tool_call_id": "c2", "content": "21C"}
    ], "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}}],
       "tool_choice": {"type": "function", "function": {"name": "weather"}}}))
    .unwrap();
    assert_eq!(
        wire["contents"][1]["parts"],
        json!([
            {"functionCall": {"id": "c1", "name": "weather", "args": {"city": "Paris"}}},
            {"functionCall": {"id": "c2", "name": "weather", "args": {"city": "Rome"}}}
        ])
    );
    assert_eq!(
        wire["contents"][2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"id": "c1", "name": "weather", "response": {"temp": 18}}},
            {"functionResponse": {"id": "c2", "name": "weather", "response": {"result": "21C"}}}
        ]})
    );
    assert_eq!(
        wire["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["additionalProperties"],
        false
    );
    assert_eq!(
        wire["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}})
    );
}

#[test]
fn images_and_structured_output_map() {
    let wire = encode(json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png?x=1"}}
    ]}], "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "$defs": {}}}}}))
    .unwrap();
    assert_eq!(
        wire["contents"][0]["parts"],
        json!([
            {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
            {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png?x=1"}}
        ])
    );
    assert_eq!(
        wire["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(
        wire["generationConfig"]["responseJsonSchema"],
        json!({"type": "object", "$defs": {}})
    );
}

#[test]
fn what_has_no_equivalent_is_refused() {
    let refused = |body: Value| match encode(body) {
        Err(ProviderError::Untranslatable(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(refused(json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}))
        .contains("nope"));
    assert!(
        refused(
            json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/image"}}]}]})
        )
        .contains("data URL")
    );
}

#[test]
fn urls_name_model_and_method() {
    let base = url::Url::parse("https://generativelanguage.googleapis.com/v1beta/models").unwrap();
    assert_eq!(
        method_url(&base, "gemini-2.5-flash", false)
            .unwrap()
            .as_str(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        method_url(&base, "models/gemini-2.5-pro", true)
            .unwrap()
            .as_str(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
}

#[test]
fn a_response_maps_candidates_calls_thoughts_and_usage() {
    let body = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Thinking about it", "thought": true},
            {"text": "Calling."},
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}}}
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
                          "cachedContentTokenCount": 60, "totalTokenCount": 150},
        "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"
    });
    let r = decode_response(&serde_json::to_vec(&body).unwrap(), "asked").unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["id"], "resp-1");
    assert_eq!(v["model"], "gemini-2.5-flash");
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "Calling.");
    assert_eq!(m["reasoning_content"], "Thinking about it");
    assert!(
        m["tool_calls"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("call_")
    );
    assert_eq!(
        m["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (100, 50, 150)
    );
    assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (60, 30));
}

#[test]
fn finish_reasons_map() {
    for (gemini, tools, openai) in [
        ("STOP", false, "stop"),
        ("STOP", true, "tool_calls"),
        ("MAX_TOKENS", false, "length"),
        ("SAFETY", false, "content_filter"),
        ("RECITATION", false, "content_filter"),
        ("OTHER", false, "stop"),
    ] {
        assert_eq!(finish_reason(gemini, tools), openai);
    }
}

#[test]
fn a_blocked_prompt_is_a_content_filter_refusal() {
    let body = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}});
    let r = decode_response(&serde_json::to_vec(&body).unwrap(), "m").unwrap();
    assert_eq!(
        r.choices[0].finish_reason.as_deref(),
        Some("content_filter")
    );
    assert!(
        r.choices[0]
            .message
            .refusal
            .as_deref()
            .unwrap()
            .contains("SAFETY")
    );
}

/// Frames as streamGenerateContent?alt=sse sends them: text in pieces, a whole function
/// call, then the last frame with finishReason and usageMetadata; no terminator.
const RECORDED: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Let me \"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 40,\"totalTokenCount\": 40},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-9\"}\r\n\r\ndata: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"check.\"}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-9\"}\r\n\r\ndata: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"weather\",\"args\": {\"city\": \"Paris\"}}},{\"functionCall\": {\"name\": \"weather\",\"args\": {\"city\": \"Rome\"}}}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-9\"}\r\n\r\ndata: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 40,\"candidatesTokenCount\": 12,\"thoughtsTokenCount\": 5,\"totalTokenCount\": 57},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-9\"}\r\n\r\n";

fn run(wire: &str, split: usize) -> (Vec<Result<ChatChunk, ProviderError>>, GeminiStream) {
    let (mut sse, mut st) = (SseDecoder::default(), GeminiStream::new("asked"));
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
    for split in [1, 13, 200, RECORDED.len()] {
        let (items, mut st) = run(RECORDED, split);
        let mut chunks: Vec<ChatChunk> = items.into_iter().map(Result::unwrap).collect();
        chunks.extend(st.on_eof().unwrap());
        assert!(
            chunks
                .iter()
                .all(|c| c.id == "r-9" && c.model == "gemini-2.5-flash")
        );
        assert_eq!(
            chunks[0].choices[0].delta.role,
            Some(crate::chat::Role::Assistant)
        );
        let text: String = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, "Let me check.");
        let calls: Vec<_> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
            .collect();
        assert_eq!(calls.iter().map(|c| c.index).collect::<Vec<_>>(), [0, 1]);
        assert!(calls.iter().all(|c| c.id.is_some()));
        assert_ne!(calls[0].id, calls[1].id);
        assert_eq!(
            calls[1].function.as_ref().unwrap().arguments.as_deref(),
            Some("{\"city\":\"Rome\"}")
        );
        let finish: Vec<_> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.finish_reason.clone())
            .collect();
        assert_eq!(finish, ["tool_calls"]);
        let last = chunks.last().unwrap();
        assert!(last.choices.is_empty());
        let u = last.usage.clone().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.reasoning_tokens()),
            (40, 17, 5)
        );
    }
}

#[test]
fn a_stream_ending_before_finish_reason_is_broken() {
    let cut = &RECORDED[..RECORDED.rfind("data: ").unwrap()];
    let (items, mut st) = run(cut, 50);
    assert!(items.iter().all(Result::is_ok));
    assert!(matches!(st.on_eof(), Err(ProviderError::Reset(_))));
}

#[test]
fn an_in_band_error_frame_ends_the_stream() {
    let wire = format!(
        "{}data: {{\"error\": {{\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}}}\n\n{RECORDED}",
        &RECORDED[..RECORDED
            .find("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"check.")
            .unwrap()]
    );
    let (items, st) = run(&wire, wire.len());
    assert!(
        matches!(items.last(), Some(Err(ProviderError::InStream { message, kind, .. }))
        if message == "The model is overloaded." && kind.as_deref() == Some("UNAVAILABLE"))
    );
    assert!(items[..items.len() - 1].iter().all(Result::is_ok));
    assert!(st.is_ended());
}

#[test]
fn a_candidate_index_past_the_limit_is_an_error_not_an_allocation() {
    // Before the cap, this frame resized the per-candidate state to 4 billion entries.
    let frame = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": \
                 {\"name\": \"f\",\"args\": {}}}]},\"index\": 4000000000}]}\n\n";
    let (items, st) = run(frame, frame.len());
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.label(), "malformed");
    assert!(
        err.to_string().contains("candidate index 4000000000"),
        "{err}"
    );
    assert!(st.is_ended());
    // The last allowed index still translates.
    let frame = frame.replace("4000000000", "4095");
    let (items, _) = run(&frame, frame.len());
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    assert_eq!(
        items.last().unwrap().as_ref().unwrap().choices[0].index,
        4095
    );
}

#[test]
fn a_response_candidate_index_past_the_limit_is_malformed() {
    let body = br#"{"candidates": [{"content": {"parts": [{"text": "hi"}]}, "index": 4096}]}"#;
    let err = decode_response(body, "m").unwrap_err();
    assert_eq!(err.label(), "malformed");
}

crate::providers::fuzz::translator_properties!(|| GeminiStream::new("asked"), RECORDED);
