//! Proto <-> canonical conversion, field by field.

use serde_json::json;

use super::*;

fn msg(role: &str, content: &str) -> pb::Message {
    pb::Message {
        role: role.into(),
        content: Some(content.into()),
        ..Default::default()
    }
}

#[test]
fn a_full_request_maps_field_for_field() {
    let req = pb::ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            msg("system", "be brief"),
            pb::Message {
                role: "user".into(),
                parts: vec![
                    pb::ContentPart {
                        part: Some(pb::content_part::Part::Text("look".into())),
                    },
                    pb::ContentPart {
                        part: Some(pb::content_part::Part::ImageUrl(pb::ImageUrl {
                            url: "https://x/y.png".into(),
                            detail: "low".into(),
                        })),
                    },
                ],
                ..Default::default()
            },
            pb::Message {
                role: "assistant".into(),
                tool_calls: vec![pb::ToolCall {
                    index: 0,
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                }],
                ..Default::default()
            },
            pb::Message {
                role: "tool".into(),
                content: Some("42".into()),
                tool_call_id: Some("c1".into()),
                ..Default::default()
            },
        ],
        temperature: Some(0.5),
        max_tokens: Some(64),
        stop: vec!["END".into()],
        tools: vec![pb::Tool {
            function: Some(pb::FunctionDefinition {
                name: "f".into(),
                description: Some("d".into()),
                parameters_json: r#"{"type":"object"}"#.into(),
                strict: Some(true),
            }),
        }],
        tool_choice: Some(pb::ToolChoice {
            choice: Some(pb::tool_choice::Choice::Function("f".into())),
        }),
        response_format: Some(pb::ResponseFormat {
            r#type: "json_schema".into(),
            json_schema_json: r#"{"name":"x","schema":{"type":"object"}}"#.into(),
        }),
        include_usage: true,
        extra_json: r#"{"metadata":{"team":"a"}}"#.into(),
        ..Default::default()
    };
    let chat = chat_request(req, true).unwrap();
    let wire = serde_json::to_value(&chat).unwrap();
    assert_eq!(chat.model, "gpt-4o-mini");
    assert!(chat.is_stream() && chat.wants_stream_usage());
    assert_eq!(
        wire["messages"][1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}})
    );
    assert_eq!(
        wire["messages"][2]["tool_calls"][0],
        json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}})
    );
    assert_eq!(wire["messages"][3]["tool_call_id"], "c1");
    assert_eq!(wire["max_completion_tokens"], 64);
    assert_eq!(wire["stop"], json!(["END"]));
    assert_eq!(
        wire["tools"][0]["function"]["parameters"],
        json!({"type": "object"})
    );
    assert_eq!(
        wire["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(wire["response_format"]["json_schema"]["name"], "x");
    assert_eq!(wire["metadata"], json!({"team": "a"}));
}

#[test]
fn bad_json_fields_and_roles_are_invalid_arguments() {
    let bad_extra = pb::ChatRequest {
        model: "m".into(),
        messages: vec![msg("user", "x")],
        extra_json: "[1]".into(),
        ..Default::default()
    };
    assert!(
        matches!(chat_request(bad_extra, false), Err(Error::BadRequest { param: Some(p), .. }) if p == "extra_json")
    );
    let bad_role = pb::ChatRequest {
        model: "m".into(),
        messages: vec![msg("robot", "x")],
        ..Default::default()
    };
    let e = chat_request(bad_role, false).unwrap_err();
    assert_eq!(e.spec().grpc, tonic::Code::InvalidArgument);
    assert!(e.to_string().contains("robot"));
}

#[test]
fn responses_and_chunks_map_back() {
    let resp: ChatResponse = serde_json::from_value(json!({
        "id": "r", "object": "chat.completion", "created": 5, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "prompt_tokens_details": {"cached_tokens": 1}}
    })).unwrap();
    let out = chat_response(resp);
    let m = out.choices[0].message.as_ref().unwrap();
    assert_eq!(
        (
            m.tool_calls[0].name.as_str(),
            m.tool_calls[0].arguments.as_str()
        ),
        ("f", "{\"a\":1}")
    );
    assert_eq!(out.choices[0].finish_reason, "tool_calls");
    assert_eq!(out.usage.unwrap().cached_tokens, 1);

    let chunk: ChatChunk = serde_json::from_value(json!({
        "id": "r", "object": "chat.completion.chunk", "created": 5, "model": "m",
        "choices": [{"index": 0, "finish_reason": null, "delta": {"tool_calls": [{"index": 1, "function": {"arguments": "{\"a\""}}]}}]
    })).unwrap();
    let out = chat_chunk(chunk);
    let t = &out.choices[0].delta.as_ref().unwrap().tool_calls[0];
    assert_eq!(
        (t.index, t.arguments.as_str(), t.id.as_str()),
        (1, "{\"a\"", "")
    );
}
