//! Request parsing: typed fields, and passthrough of everything else.

use serde_json::json;

use super::*;

#[test]
fn unknown_fields_are_kept_at_every_level() {
    let body = json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "hi"},
                {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}
            ], "x_msg": 1}
        ],
        "response_format": {"type": "json_object", "x_rf": true},
        "stream_options": {"include_usage": true, "x_so": "y"},
        "logit_bias": {"50256": -100},
        "metadata": {"team": "search"}
    });
    let req: ChatRequest = serde_json::from_value(body).unwrap();
    assert!(req.wants_stream_usage());
    assert_eq!(req.extra["metadata"], json!({"team": "search"}));
    let out = serde_json::to_value(&req).unwrap();
    assert_eq!(out["logit_bias"], json!({"50256": -100}));
    assert_eq!(out["messages"][0]["x_msg"], 1);
    assert_eq!(
        out["messages"][0]["content"][1],
        json!({"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}})
    );
    assert_eq!(out["response_format"]["x_rf"], true);
}

#[test]
fn model_and_stream_fields_are_left_to_the_adapter() {
    let req: ChatRequest = serde_json::from_value(json!({
        "model": "m", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "x"}]
    }))
    .unwrap();
    let out = serde_json::to_value(&req).unwrap();
    assert!(out.get("model").is_none());
    assert!(out.get("stream").is_none());
    assert!(out.get("stream_options").is_none());
}

#[test]
fn typed_parts_tools_and_choices_parse() {
    let req: ChatRequest = serde_json::from_value(json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "stop": "END"
    }))
    .unwrap();
    assert!(matches!(
        &req.messages[1].content,
        Some(Content::Parts(p)) if matches!(&p[0], ContentPart::ImageUrl { image_url, .. } if image_url.detail.as_deref() == Some("low"))
    ));
    assert_eq!(
        req.messages[2].tool_calls.as_ref().unwrap()[0]
            .function
            .name,
        "f"
    );
    assert_eq!(req.tool_choice.as_ref().unwrap().function_name(), Some("f"));
    assert_eq!(req.stop.as_ref().unwrap().to_vec(), vec!["END".to_owned()]);
}

#[test]
fn unknown_role_is_rejected() {
    let err = serde_json::from_value::<ChatRequest>(json!({
        "model": "m", "messages": [{"role": "wizard", "content": "x"}]
    }))
    .unwrap_err();
    assert!(err.to_string().contains("wizard"), "{err}");
}
