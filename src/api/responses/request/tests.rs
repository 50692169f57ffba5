use serde_json::json;

use super::*;

fn parse(body: Value) -> Result<ResponsesRequest, Error> {
    ResponsesRequest::parse(body.to_string().as_bytes())
}

fn chat(body: Value) -> Result<ChatRequest, Error> {
    let request = parse(body)?;
    let items = request.input_items()?;
    to_chat(&request, &items)
}

#[test]
fn a_string_input_is_one_user_message_after_the_instructions() {
    let c = chat(json!({ "model": "m", "input": "hi", "instructions": "be brief" })).unwrap();
    assert_eq!(c.messages.len(), 2);
    assert_eq!(c.messages[0].role, Role::System);
    assert_eq!(
        c.messages[0].content.as_ref().unwrap().joined_text(),
        "be brief"
    );
    assert_eq!(c.messages[1].role, Role::User);
    assert_eq!(c.messages[1].content.as_ref().unwrap().joined_text(), "hi");
}

#[test]
fn settings_map_to_their_chat_fields() {
    let c = chat(json!({
        "model": "m", "input": "hi", "max_output_tokens": 77, "temperature": 0.2, "top_p": 0.9,
        "parallel_tool_calls": false, "user": "u1", "stream": true,
        "reasoning": { "effort": "high" },
        "text": { "format": { "type": "json_schema", "name": "answer", "strict": true,
                              "schema": { "type": "object" } } },
        "tools": [{ "type": "function", "name": "f", "description": "d",
                    "parameters": { "type": "object" }, "strict": true }],
        "tool_choice": { "type": "function", "name": "f" },
    }))
    .unwrap();
    assert_eq!(c.max_completion_tokens, Some(77));
    assert_eq!(c.temperature, Some(0.2));
    assert_eq!(c.top_p, Some(0.9));
    assert_eq!(c.parallel_tool_calls, Some(false));
    assert_eq!(c.user.as_deref(), Some("u1"));
    assert!(c.is_stream());
    assert!(c.wants_stream_usage());
    assert_eq!(c.extra["reasoning_effort"], "high");
    let format = c.response_format.unwrap();
    assert_eq!(format.kind, "json_schema");
    assert_eq!(
        format.json_schema.unwrap(),
        json!({ "name": "answer", "strict": true, "schema": { "type": "object" } })
    );
    let tool = &c.tools.unwrap()[0];
    assert_eq!(tool.function.name, "f");
    assert_eq!(tool.function.strict, Some(true));
    assert_eq!(c.tool_choice.unwrap().function_name(), Some("f"));
}

#[test]
fn function_calls_join_the_assistant_turn_and_outputs_answer_them() {
    let c = chat(json!({ "model": "m", "input": [
        { "role": "user", "content": [{ "type": "input_text", "text": "weather?" },
                                      { "type": "input_image", "image_url": "https://x/y.png" }] },
        { "type": "message", "role": "assistant",
          "content": [{ "type": "output_text", "text": "checking", "annotations": [] }] },
        { "type": "reasoning", "id": "rs_1", "summary": [] },
        { "type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}" },
        { "type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"a\":1}" },
        { "type": "function_call_output", "call_id": "c1", "output": "sunny" },
        { "type": "function_call_output", "call_id": "c2",
          "output": [{ "type": "input_text", "text": "rain" }] },
    ]}))
    .unwrap();
    let roles: Vec<Role> = c.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::Tool]);
    let Some(Content::Parts(parts)) = &c.messages[0].content else {
        panic!("parts")
    };
    assert!(
        matches!(&parts[1], ContentPart::ImageUrl { image_url, .. } if image_url.url == "https://x/y.png")
    );
    let assistant = &c.messages[1];
    assert_eq!(
        assistant.content.as_ref().unwrap().joined_text(),
        "checking"
    );
    let calls = assistant.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].id, "c2");
    assert_eq!(calls[1].function.arguments, "{\"a\":1}");
    assert_eq!(c.messages[2].tool_call_id.as_deref(), Some("c1"));
    assert_eq!(
        c.messages[3].content.as_ref().unwrap().joined_text(),
        "rain"
    );
}

#[test]
fn an_output_without_its_call_is_refused() {
    let e = chat(json!({ "model": "m", "input": [
        { "type": "function_call_output", "call_id": "nope", "output": "x" }] }))
    .unwrap_err();
    assert!(e.to_string().contains("No tool call found"), "{e}");
}

#[test]
fn what_no_provider_can_take_is_refused_naming_it() {
    for (body, mention) in [
        (
            json!({ "model": "m", "input": "x", "tools": [{ "type": "file_search" }] }),
            "file_search",
        ),
        (
            json!({ "model": "m", "input": "x", "background": true }),
            "background",
        ),
        (
            json!({ "model": "m", "input": "x", "conversation": "conv_1" }),
            "conversation",
        ),
        (
            json!({ "model": "m", "input": "x", "prompt": { "id": "p" } }),
            "prompt",
        ),
        (
            json!({ "model": "m", "input": "x", "tool_choice": { "type": "web_search" } }),
            "tool_choice",
        ),
        (
            json!({ "model": "m", "input": [{ "type": "item_reference", "id": "msg_1" }] }),
            "item_reference",
        ),
        (
            json!({ "model": "m", "input": [{ "role": "user", "content": [
            { "type": "input_file", "file_id": "file_1" }] }] }),
            "input_file",
        ),
        (
            json!({ "model": "m", "input": [{ "role": "user", "content": [
            { "type": "input_image", "file_id": "file_1" }] }] }),
            "file_id",
        ),
        (json!({ "model": "m" }), "input"),
    ] {
        let e = chat(body.clone()).unwrap_err();
        assert!(matches!(e, Error::BadRequest { .. }), "{body}: {e:?}");
        assert!(e.to_string().contains(mention), "{body}: {e}");
    }
}

#[test]
fn the_native_body_is_the_callers_unless_it_continues_a_conversation() {
    let body = bytes::Bytes::from_static(br#"{"model":"m","input":"x","zz":{"b":1,"a":2}}"#);
    assert_eq!(native_body(&body, None, Vec::new()).unwrap(), body);
    let history = [
        json!({ "role": "user", "content": "first" }),
        json!({ "type": "reasoning", "id": "rs_1", "summary": [] }),
        json!({ "type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "abc" }),
        json!({ "type": "message", "role": "assistant", "content": "ok" }),
    ];
    let body = bytes::Bytes::from_static(
        br#"{"model":"m","input":"second","previous_response_id":"resp_1","zz":[1]}"#,
    );
    let sent: Value =
        serde_json::from_slice(&native_body(&body, Some(&history), vec![json!("new")]).unwrap())
            .unwrap();
    assert!(sent.get("previous_response_id").is_none());
    assert_eq!(sent["zz"], json!([1]));
    let input = sent["input"].as_array().unwrap();
    // The reasoning item known only by id is dropped; the encrypted one goes.
    assert_eq!(input.len(), 4);
    assert_eq!(input[1]["id"], "rs_2");
    assert_eq!(input[3], "new");
}
