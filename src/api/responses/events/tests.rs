use serde_json::json;

use super::*;
use crate::chat::{ChunkChoice, Delta, Extra, FunctionCallDelta, ToolCallDelta};

fn chunk(delta: Delta, finish: Option<&str>) -> ChatChunk {
    ChatChunk {
        id: "c".into(),
        object: "chat.completion.chunk".into(),
        created: 0,
        model: "m".into(),
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish.map(str::to_owned),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage: None,
        system_fingerprint: None,
        extra: Extra::new(),
        native: None,
    }
}

fn text(t: &str) -> ChatChunk {
    chunk(
        Delta {
            content: Some(t.into()),
            ..Delta::default()
        },
        None,
    )
}

fn call(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> ChatChunk {
    chunk(
        Delta {
            tool_calls: Some(vec![ToolCallDelta {
                index,
                id: id.map(str::to_owned),
                kind: id.map(|_| "function".to_owned()),
                function: Some(FunctionCallDelta {
                    name: name.map(str::to_owned),
                    arguments: Some(args.into()),
                }),
            }]),
            ..Delta::default()
        },
        None,
    )
}

/// `(type, data)` of each event, checking the frame on the way.
fn parse(events: &[Bytes]) -> Vec<(String, Value)> {
    events
        .iter()
        .map(|e| {
            let s = std::str::from_utf8(e).unwrap();
            let (head, data) = s.split_once('\n').unwrap();
            let name = head.strip_prefix("event: ").unwrap();
            let data: Value =
                serde_json::from_str(data.strip_prefix("data: ").unwrap().trim_end()).unwrap();
            assert!(s.ends_with("\n\n"));
            assert_eq!(data["type"], name);
            (name.to_owned(), data)
        })
        .collect()
}

fn encoder() -> EventEncoder {
    EventEncoder::new("resp_1".into(), 7, String::new(), Map::new())
}

#[test]
fn text_then_calls_make_nested_items_numbered_in_order() {
    let mut enc = encoder();
    let mut out = Vec::new();
    out.extend(enc.on_chunk(&text("Hel")));
    out.extend(enc.on_chunk(&text("lo")));
    out.extend(enc.on_chunk(&call(0, Some("call_a"), Some("f"), "")));
    out.extend(enc.on_chunk(&call(0, None, None, "{\"x\":")));
    out.extend(enc.on_chunk(&call(0, None, None, "1}")));
    out.extend(enc.on_chunk(&call(1, Some("call_b"), Some("g"), "{}")));
    let mut last = chunk(Delta::default(), Some("tool_calls"));
    last.usage = Some(crate::chat::Usage {
        prompt_tokens: 3,
        completion_tokens: 4,
        total_tokens: 7,
        ..Default::default()
    });
    out.extend(enc.on_chunk(&last));
    let (end, response) = enc.on_done();
    out.extend(end);
    let events = parse(&out);
    let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], json!(i));
    }
    assert_eq!(events[6].1["text"], "Hello");
    assert_eq!(events[9].1["output_index"], 1);
    assert_eq!(events[9].1["item"]["call_id"], "call_a");
    assert_eq!(events[12].1["arguments"], "{\"x\":1}");
    assert_eq!(events[14].1["output_index"], 2);
    assert_eq!(response["status"], "completed");
    assert_eq!(response["id"], "resp_1");
    assert_eq!(response["model"], "m");
    assert_eq!(response["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(response["output"][1]["arguments"], "{\"x\":1}");
    assert_eq!(response["output"][2]["name"], "g");
    assert_eq!(response["usage"]["input_tokens"], 3);
    assert_eq!(response["usage"]["total_tokens"], 7);
}

#[test]
fn reasoning_is_a_summary_item_before_the_text() {
    let mut enc = encoder();
    let mut extra = Extra::new();
    extra.insert("reasoning_content".into(), json!("think"));
    let mut out = enc.on_chunk(&chunk(
        Delta {
            extra,
            ..Delta::default()
        },
        None,
    ));
    out.extend(enc.on_chunk(&text("answer")));
    out.extend(enc.on_chunk(&chunk(Delta::default(), Some("length"))));
    let (end, response) = enc.on_done();
    out.extend(end);
    let events = parse(&out);
    assert_eq!(events[2].1["item"]["type"], "reasoning");
    assert_eq!(events[3].0, "response.reasoning_summary_part.added");
    assert_eq!(events[4].0, "response.reasoning_summary_text.delta");
    assert_eq!(response["output"][0]["summary"][0]["text"], "think");
    assert_eq!(response["status"], "incomplete");
    assert_eq!(
        response["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(events.last().unwrap().0, "response.incomplete");
}

#[test]
fn a_break_ends_with_error_then_failed_continuing_the_numbering() {
    let mut enc = encoder();
    let mut out = enc.on_chunk(&text("partial"));
    let error = Error::upstream(
        "p".into(),
        crate::providers::ProviderError::Reset("cut".into()),
    );
    out.extend(enc.on_broken(&error, "req_1"));
    let events = parse(&out);
    let n = events.len();
    assert_eq!(events[n - 2].0, "error");
    assert_eq!(events[n - 1].0, "response.failed");
    assert_eq!(events[n - 1].1["sequence_number"], json!(n - 1));
    assert_eq!(events[n - 1].1["response"]["status"], "failed");
    assert_eq!(events[n - 1].1["response"]["error"]["code"], "server_error");
}

#[test]
fn a_pass_through_break_continues_the_providers_numbering_and_id() {
    let mut enc = encoder();
    enc.continue_after(9, Some("resp_up".into()));
    let events = parse(&enc.on_broken(&Error::Internal { detail: "x".into() }, "req"));
    assert_eq!(events[0].0, "error");
    assert_eq!(events[0].1["sequence_number"], 9);
    assert_eq!(events[1].1["response"]["id"], "resp_up");
}
