//! Messages requests -> canonical: every rule of the module doc on a fixture.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};

use super::*;

fn decoded(v: Value) -> ChatRequest {
    let mut headers = HeaderMap::new();
    headers.insert("anthropic-version", "2023-06-01".parse().unwrap());
    headers.append("anthropic-beta", "a-2025".parse().unwrap());
    headers.append("anthropic-beta", "b-2025".parse().unwrap());
    headers.insert("x-api-key", "secret".parse().unwrap());
    let bytes = Bytes::from(serde_json::to_vec(&v).unwrap());
    decode(&bytes, &headers, Endpoint::Create).unwrap()
}

fn error(v: Value) -> String {
    let bytes = Bytes::from(serde_json::to_vec(&v).unwrap());
    decode(&bytes, &HeaderMap::new(), Endpoint::Create)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_conversation_with_tools_thinking_and_images_becomes_canonical() {
    let r = decoded(json!({
        "model": "claude-x", "max_tokens": 4096, "stream": true,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "stop_sequences": ["END"], "temperature": 1, "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [{"name": "get", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hm", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Paris", "n": 1.5}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                {"type": "text", "text": "Thanks"}]}
        ]
    }));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(r.model, "claude-x");
    assert!(r.is_stream() && r.wants_stream_usage());
    assert_eq!(v["max_tokens"], 4096);
    assert_eq!(v["stop"], json!(["END"]));
    assert_eq!(v["top_k"], 5);
    assert_eq!(v["user"], "u-1");
    assert_eq!(v["reasoning_effort"], "low");
    assert_eq!(v["tool_choice"], "required");
    assert_eq!(v["parallel_tool_calls"], false);
    assert_eq!(
        v["tools"][0]["function"]["parameters"],
        json!({"type": "object"})
    );
    let m = &v["messages"];
    assert_eq!(
        m[0],
        json!({"role": "system", "content": [{"type": "text", "text": "Be brief."}]})
    );
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,AAAA"
    );
    assert_eq!(m[1]["content"][2]["image_url"]["url"], "https://x/y.png");
    // Thinking from an earlier turn is not translated; the tool input is kept as written.
    assert_eq!(m[2]["content"], "Checking.");
    assert_eq!(m[2]["tool_calls"][0]["id"], "toolu_1");
    assert_eq!(
        r.messages[2].tool_calls.as_ref().unwrap()[0]
            .function
            .arguments,
        "{\"city\":\"Paris\",\"n\":1.5}"
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "content": "sunny", "tool_call_id": "toolu_1"})
    );
    assert_eq!(m[4], json!({"role": "user", "content": "Thanks"}));
    let native = r.native.as_deref().unwrap();
    assert_eq!(native.format, NativeFormat::AnthropicMessages);
    let forwarded: Vec<_> = native
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    // Never the caller's credentials.
    assert_eq!(
        forwarded,
        [
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "a-2025"),
            ("anthropic-beta", "b-2025")
        ]
    );
}

#[test]
fn the_native_body_is_the_bytes_sent() {
    let body = Bytes::from_static(br#"{"model":"m","max_tokens":10,"x_new":{"z":1,"a":2},"messages":[{"role":"user","content":"hi"}]}"#);
    let r = decode(&body, &HeaderMap::new(), Endpoint::Create).unwrap();
    assert_eq!(r.native.unwrap().body, body);
}

#[test]
fn tool_choice_forms_map_one_to_one() {
    let base = |choice: Value| {
        decoded(json!({"model": "m", "max_tokens": 5, "tool_choice": choice,
            "messages": [{"role": "user", "content": "x"}]}))
    };
    let v = |c| serde_json::to_value(base(c).tool_choice).unwrap();
    assert_eq!(v(json!({"type": "auto"})), json!("auto"));
    assert_eq!(v(json!({"type": "none"})), json!("none"));
    assert_eq!(
        v(json!({"type": "tool", "name": "get"})),
        json!({"type": "function", "function": {"name": "get"}})
    );
}

#[test]
fn what_anthropic_refuses_is_refused_with_its_words() {
    let msg = |extra: Value| {
        let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        error(v)
    };
    assert!(msg(json!({})).contains("max_tokens"));
    assert!(
        msg(json!({"max_tokens": 100, "thinking": {"type": "enabled", "budget_tokens": 512}}))
            .contains("1024")
    );
    assert!(
        msg(json!({"max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 2000}}))
            .contains("budget_tokens")
    );
    assert!(msg(json!({"max_tokens": 10, "system": [{"type": "image", "source": {"type": "url", "url": "u"}}]})).contains("system"));
    assert!(error(json!({"model": "m", "max_tokens": 1, "messages": []})).contains("messages"));
    assert!(
        error(
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]})
        )
        .contains("Invalid")
    );
}

#[test]
fn a_count_needs_no_max_tokens() {
    let body = Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
    assert!(decode(&body, &HeaderMap::new(), Endpoint::CountTokens).is_ok());
}

#[test]
fn unknown_blocks_travel_raw_for_adapters_to_refuse_by_name() {
    let r = decoded(
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}},
        {"type": "text", "text": "sum up"}]}]}),
    );
    let v = serde_json::to_value(&r.messages[0].content).unwrap();
    assert_eq!(v[0]["type"], "document");
    assert_eq!(v[1], json!({"type": "text", "text": "sum up"}));
}

#[test]
fn budgets_map_to_efforts() {
    assert_eq!(effort_for_budget(1024), "low");
    assert_eq!(effort_for_budget(8192), "medium");
    assert_eq!(effort_for_budget(20000), "high");
}
