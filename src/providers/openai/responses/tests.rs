use serde_json::json;

use super::*;
use crate::chat::native::NativeFormat;

fn native(body: &str) -> NativeRequest {
    NativeRequest {
        format: NativeFormat::OpenAiResponses,
        body: Bytes::from(body.to_owned()),
        headers: Vec::new(),
    }
}

#[test]
fn the_body_goes_byte_for_byte_when_model_and_stream_already_agree() {
    let body = r#"{"model":"gpt-4o", "input":"x",  "zz":{"b":1,"a":2.50}}"#;
    assert_eq!(
        encode(&native(body), "gpt-4o", false).unwrap(),
        body.as_bytes()
    );
    let sent: Value = serde_json::from_slice(&encode(&native(body), "dep", true).unwrap()).unwrap();
    assert_eq!(sent["model"], "dep");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["zz"], json!({"b": 1, "a": 2.5}));
    // Values go as their own text, unparsed.
    let raw = String::from_utf8(encode(&native(body), "dep", true).unwrap()).unwrap();
    assert!(raw.contains(r#""zz":{"b":1,"a":2.50}"#), "{raw}");
    let body =
        r#"{"model":"m","input":"x","stream":true,"stream_options":{"include_obfuscation":false}}"#;
    let sent: Value = serde_json::from_slice(&encode(&native(body), "m", false).unwrap()).unwrap();
    assert!(sent.get("stream").is_none() && sent.get("stream_options").is_none());
}

#[test]
fn a_response_object_decodes_into_the_canonical_answer_and_keeps_its_bytes() {
    let body = json!({
        "id": "resp_1", "object": "response", "created_at": 5, "model": "gpt-4o",
        "status": "completed", "incomplete_details": null,
        "output": [
            { "type": "reasoning", "id": "rs_1", "summary": [{ "type": "summary_text", "text": "hm" }] },
            { "type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
              "content": [{ "type": "output_text", "text": "Hi", "annotations": [] }] },
            { "type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f",
              "arguments": "{}", "status": "completed" }
        ],
        "usage": { "input_tokens": 10, "input_tokens_details": { "cached_tokens": 4 },
                   "output_tokens": 6, "output_tokens_details": { "reasoning_tokens": 2 },
                   "total_tokens": 16 }
    })
    .to_string();
    let r = decode_response(Bytes::from(body.clone())).unwrap();
    assert_eq!(r.native.as_deref(), Some(body.as_bytes()));
    let choice = &r.choices[0];
    assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(choice.message.content.as_ref().unwrap().joined_text(), "Hi");
    assert_eq!(choice.message.extra["reasoning_content"], "hm");
    assert_eq!(choice.message.tool_calls.as_ref().unwrap()[0].id, "call_1");
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (10, 6, 16)
    );
    assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (4, 2));
}

#[test]
fn an_incomplete_response_finishes_with_length_and_a_failed_one_is_an_error() {
    let cut = json!({ "id": "r", "object": "response", "status": "incomplete", "model": "m",
                      "incomplete_details": { "reason": "max_output_tokens" }, "output": [] });
    let r = decode_response(Bytes::from(cut.to_string())).unwrap();
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
    let failed = json!({ "id": "r", "object": "response", "status": "failed", "model": "m",
                         "error": { "code": "server_error", "message": "boom" }, "output": [] });
    assert!(matches!(
        decode_response(Bytes::from(failed.to_string())),
        Err(ProviderError::InStream { message, .. }) if message == "boom"
    ));
    assert!(decode_response(Bytes::from_static(b"{\"choices\":[]}")).is_err());
}

fn event(name: &str, data: Value) -> SseEvent {
    SseEvent {
        event: Some(name.to_owned()),
        data: data.to_string(),
    }
}

#[test]
fn each_event_is_a_chunk_carrying_its_own_bytes() {
    let mut d = StreamDecoder::default();
    let created = event(
        "response.created",
        json!({ "type": "response.created", "sequence_number": 0,
                "response": { "id": "resp_9", "model": "gpt-4o", "created_at": 3 } }),
    );
    let c = d.on_event(created.clone()).pop().unwrap().unwrap();
    assert!(c.choices.is_empty());
    assert_eq!(c.id, "resp_9");
    assert_eq!(
        c.native.unwrap(),
        Bytes::from(format!(
            "event: response.created\ndata: {}\n\n",
            created.data
        ))
    );
    let c = d
        .on_event(event(
            "response.output_text.delta",
            json!({ "delta": "Hi", "output_index": 0 }),
        ))
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(c.choices[0].delta.content.as_deref(), Some("Hi"));
    assert!(c.has_content());
    let c = d
        .on_event(event(
            "response.output_item.added",
            json!({ "output_index": 1, "item": { "type": "function_call", "call_id": "call_1",
                                                 "name": "f", "arguments": "" } }),
        ))
        .pop()
        .unwrap()
        .unwrap();
    let call = &c.choices[0].delta.tool_calls.as_ref().unwrap()[0];
    assert_eq!((call.index, call.id.as_deref()), (0, Some("call_1")));
    let c = d
        .on_event(event(
            "response.function_call_arguments.delta",
            json!({ "output_index": 1, "delta": "{}" }),
        ))
        .pop()
        .unwrap()
        .unwrap();
    let call = &c.choices[0].delta.tool_calls.as_ref().unwrap()[0];
    assert_eq!(
        call.function.as_ref().unwrap().arguments.as_deref(),
        Some("{}")
    );
    assert!(!d.is_ended());
    let c = d
        .on_event(event(
            "response.completed",
            json!({ "response": { "status": "completed",
                                  "usage": { "input_tokens": 1, "output_tokens": 2, "total_tokens": 3 } } }),
        ))
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(c.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(c.usage.unwrap().total_tokens, 3);
    assert!(d.is_ended());
    assert!(d.on_eof().unwrap().is_empty());
}

#[test]
fn failures_and_cut_streams_are_errors() {
    let mut d = StreamDecoder::default();
    let e = d
        .on_event(event(
            "error",
            json!({ "code": "server_error", "message": "boom" }),
        ))
        .pop()
        .unwrap();
    assert!(matches!(e, Err(ProviderError::InStream { .. })));
    assert!(d.is_ended());
    let mut d = StreamDecoder::default();
    assert!(matches!(d.on_eof(), Err(ProviderError::Reset(_))));
    let mut d = StreamDecoder::default();
    let e = d
        .on_event(SseEvent {
            event: None,
            data: "{not json".into(),
        })
        .pop()
        .unwrap();
    assert!(matches!(e, Err(ProviderError::Malformed(_))));
}
