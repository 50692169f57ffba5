//! OpenAI wire format: request encoding, recorded stream fixtures, error classification.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::providers::sse::SseDecoder;

/// Feeds `pieces` through the SSE decoder and the translator, as the stream wrapper does.
fn feed(
    d: &mut StreamDecoder,
    sse: &mut SseDecoder,
    bytes: &[u8],
) -> Vec<Result<ChatChunk, ProviderError>> {
    let mut out = Vec::new();
    for event in sse.push(bytes) {
        let event = event.unwrap();
        if d.is_ended() {
            break;
        }
        out.extend(d.on_event(event));
    }
    out
}

fn request(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

#[test]
fn encoded_request_carries_the_deployment_model_and_every_caller_field() {
    let req = request(json!({
        "model": "alias", "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2, "my_custom_field": {"x": [1, 2]}
    }));
    let wire: Value = serde_json::from_slice(&encode_request(
        &req,
        "gpt-4o-mini",
        false,
        Quirks::default(),
    ))
    .unwrap();
    assert_eq!(wire["model"], "gpt-4o-mini");
    assert_eq!(wire["temperature"], 0.2);
    assert_eq!(wire["my_custom_field"], json!({"x": [1, 2]}));
    assert!(wire.get("stream").is_none() && wire.get("stream_options").is_none());
}

#[test]
fn streamed_requests_always_ask_for_usage_and_keep_other_stream_options() {
    let req = request(json!({
        "model": "m", "stream": true, "stream_options": {"x_opt": 1},
        "messages": [{"role": "user", "content": "hi"}]
    }));
    let wire: Value =
        serde_json::from_slice(&encode_request(&req, "m", true, Quirks::default())).unwrap();
    assert_eq!(wire["stream"], true);
    assert_eq!(
        wire["stream_options"],
        json!({"x_opt": 1, "include_usage": true})
    );
}

/// A stream as OpenAI sends it with include_usage (fields as in the API reference's
/// chat completion chunk object), split at awkward places.
const RECORDED: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":9,\"total_tokens\":21,\"prompt_tokens_details\":{\"cached_tokens\":4},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
    "data: [DONE]\n\n"
);

#[test]
fn recorded_stream_decodes_in_any_split() {
    for split in [1, 7, 64, RECORDED.len()] {
        let (mut d, mut sse) = (StreamDecoder::default(), SseDecoder::default());
        let mut chunks = Vec::new();
        for piece in RECORDED.as_bytes().chunks(split) {
            for item in feed(&mut d, &mut sse, piece) {
                chunks.push(item.unwrap());
            }
        }
        d.on_eof().unwrap();
        assert_eq!(chunks.len(), 6, "split {split}");
        assert!(!chunks[0].has_content(), "a role-only chunk is not content");
        assert!(chunks[1].has_content());
        let args: String = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
            .filter_map(|t| t.function.as_ref()?.arguments.clone())
            .collect();
        assert_eq!(args, "{\"city\":\"Paris\"}");
        let usage = chunks[5].usage.as_ref().unwrap();
        assert_eq!((usage.prompt_tokens, usage.cached_tokens()), (12, 4));
    }
}

#[test]
fn stream_without_done_is_an_error() {
    let (mut d, mut sse) = (StreamDecoder::default(), SseDecoder::default());
    let cut = &RECORDED[..RECORDED.find("data: [DONE]").unwrap()];
    assert_eq!(feed(&mut d, &mut sse, cut.as_bytes()).len(), 6);
    assert!(matches!(d.on_eof(), Err(ProviderError::Reset(_))));
}

#[test]
fn in_band_error_and_garbage_are_errors() {
    let (mut d, mut sse) = (StreamDecoder::default(), SseDecoder::default());
    let items = feed(&mut d, &mut sse,
        b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":null}}\n\n",
    );
    assert!(
        matches!(&items[..], [Err(ProviderError::InStream { message, .. })] if message == "overloaded")
    );
    let (mut d, mut sse) = (StreamDecoder::default(), SseDecoder::default());
    assert!(matches!(
        &feed(&mut d, &mut sse, b"data: {nope\n\n")[..],
        [Err(ProviderError::Malformed(_))]
    ));
}

#[test]
fn chunks_read_together_with_an_error_come_before_it_and_nothing_after() {
    let first_two = &RECORDED[..RECORDED.find("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{").unwrap()];
    let wire =
        format!("{first_two}data: {{\"error\":{{\"message\":\"overloaded\"}}}}\n\n{RECORDED}");
    let (mut d, mut sse) = (StreamDecoder::default(), SseDecoder::default());
    let items = feed(&mut d, &mut sse, wire.as_bytes());
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[1].is_ok());
    assert!(matches!(items[2], Err(ProviderError::InStream { .. })));
    assert!(d.is_ended());
    assert!(feed(&mut d, &mut sse, b"data: [DONE]\n\n").is_empty());
}

#[test]
fn error_bodies_keep_the_providers_words() {
    let e = ProviderError::from_status(
        StatusCode::TOO_MANY_REQUESTS,
        br#"{"error":{"message":"slow down","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
        Some(Duration::from_secs(2)),
    );
    assert!(
        matches!(&e, ProviderError::Status { message, code, retry_after, .. }
        if message == "slow down" && code.as_deref() == Some("rate_limit_exceeded") && *retry_after == Some(Duration::from_secs(2)))
    );
    let e = ProviderError::from_status(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>", None);
    assert!(
        matches!(&e, ProviderError::Status { message, .. } if message == "<html>bad gateway</html>")
    );
}

#[test]
fn only_failures_the_next_provider_may_not_share_are_retryable() {
    let status = |s: u16| ProviderError::Status {
        status: StatusCode::from_u16(s).unwrap(),
        message: String::new(),
        kind: None,
        code: None,
        param: None,
        retry_after: None,
    };
    for s in [401, 403, 404, 408, 424, 429, 500, 502, 503, 504] {
        assert!(status(s).is_retryable(), "{s}");
    }
    for s in [400, 413, 422] {
        assert!(!status(s).is_retryable(), "{s}");
    }
    assert!(ProviderError::Connect(String::new()).is_retryable());
    assert!(ProviderError::Timeout.is_retryable());
    assert!(ProviderError::Malformed(String::new()).is_retryable());
}

#[test]
fn azure_urls_name_the_deployment_and_version() {
    let base = url::Url::parse("https://res.openai.azure.com/").unwrap();
    let url = azure_url(&base, "gpt-4o-prod", "2024-10-21").unwrap();
    assert_eq!(
        url.as_str(),
        "https://res.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    let odd = azure_url(&base, "a b/c", "v").unwrap();
    assert!(
        odd.as_str().contains("/deployments/a%20b%2Fc/chat"),
        "{odd}"
    );
}

#[test]
fn mistral_gets_nine_character_tool_ids_that_still_pair_up() {
    let req = request(json!({
    "model": "m", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [
            {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "abcDEF123", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "1"},
        {"role": "tool", "tool_call_id": "abcDEF123", "content": "2"}
    ]}));
    let wire: Value = serde_json::from_slice(&encode_request(
        &req,
        "mistral-large-latest",
        false,
        Quirks::of_kind("mistral"),
    ))
    .unwrap();
    let mapped = wire["messages"][1]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(mapped.len(), 9);
    assert!(mapped.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(
        wire["messages"][2]["tool_call_id"], mapped,
        "call and result still pair up"
    );
    assert_eq!(
        wire["messages"][1]["tool_calls"][1]["id"], "abcDEF123",
        "a valid id is kept"
    );
    // Other kinds send ids as written.
    let wire: Value =
        serde_json::from_slice(&encode_request(&req, "m", false, Quirks::of_kind("groq"))).unwrap();
    assert_eq!(
        wire["messages"][2]["tool_call_id"],
        "toolu_01A09q90qw90lq917835lq9"
    );
}

#[test]
fn openai_reasoning_models_get_max_completion_tokens() {
    let req = request(
        json!({"model": "m", "max_tokens": 300, "messages": [{"role": "user", "content": "x"}]}),
    );
    let quirks = Quirks::of_kind("openai");
    let wire: Value =
        serde_json::from_slice(&encode_request(&req, "o3-mini", false, quirks)).unwrap();
    assert_eq!(wire["max_completion_tokens"], 300);
    assert!(wire.get("max_tokens").is_none());
    let wire: Value =
        serde_json::from_slice(&encode_request(&req, "gpt-4o-mini", false, quirks)).unwrap();
    assert_eq!(wire["max_tokens"], 300, "other models keep max_tokens");
}

#[test]
fn choice_and_tool_call_indexes_past_the_limit_are_malformed() {
    for chunk in [
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":4096,"delta":{"content":"x"}}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":4000000000,"function":{"arguments":"{"}}]}}]}"#,
    ] {
        let (mut d, mut sse) = (StreamDecoder::default(), SseDecoder::default());
        let out = feed(&mut d, &mut sse, format!("data: {chunk}\n\n").as_bytes());
        let err = out[0].as_ref().unwrap_err();
        assert_eq!(err.label(), "malformed", "{chunk}");
        assert!(err.to_string().contains("limit of 4095"), "{err}");
        assert!(d.is_ended());
    }
}

crate::providers::fuzz::translator_properties!(StreamDecoder::default, RECORDED);
