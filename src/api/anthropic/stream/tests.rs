//! The event encoder on recorded pipeline steps: translated and passed-through streams.

use serde_json::{Value, json};

use super::*;

fn chunk(v: Value) -> ChatChunk {
    serde_json::from_value(v).unwrap()
}

fn role() -> ChatChunk {
    chunk(json!({"id": "chatcmpl-abc", "model": "gpt-x", "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}))
}

fn delta(d: Value, finish: Option<&str>) -> ChatChunk {
    chunk(json!({"id": "chatcmpl-abc", "model": "gpt-x", "choices": [
        {"index": 0, "delta": d, "finish_reason": finish}]}))
}

/// `(event name, data)` of each event written.
fn events(out: &BytesMut) -> Vec<(String, Value)> {
    std::str::from_utf8(out)
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_owned();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[test]
fn a_translated_stream_is_anthropics_event_sequence() {
    let mut enc = EventEncoder::new();
    let mut out = BytesMut::new();
    enc.on_chunk(role(), &mut out);
    assert!(
        out.is_empty(),
        "the role chunk is held until the stream says something"
    );
    enc.on_chunk(
        delta(json!({"reasoning_content": "Think."}), None),
        &mut out,
    );
    enc.on_chunk(delta(json!({"content": "Hel"}), None), &mut out);
    enc.on_chunk(delta(json!({"content": "lo"}), None), &mut out);
    enc.on_chunk(
        delta(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "get", "arguments": ""}}]}),
            None,
        ),
        &mut out,
    );
    enc.on_chunk(
        delta(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}"}}]}),
            None,
        ),
        &mut out,
    );
    enc.on_chunk(delta(json!({}), Some("tool_calls")), &mut out);
    enc.on_chunk(
        chunk(json!({"id": "x", "model": "gpt-x", "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}})),
        &mut out,
    );
    enc.on_done(&mut out);
    let ev = events(&out);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(ev[0].1["message"]["id"], "msg_abc");
    assert_eq!(ev[0].1["message"]["model"], "gpt-x");
    assert_eq!(
        ev[2].1["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    assert_eq!(
        ev[3].1["delta"],
        json!({"type": "thinking_delta", "thinking": "Think."})
    );
    assert_eq!(
        ev[6].1["delta"],
        json!({"type": "text_delta", "text": "Hel"})
    );
    assert_eq!(
        ev[9].1,
        json!({"type": "content_block_start", "index": 2, "content_block":
            {"type": "tool_use", "id": "call_1", "name": "get", "input": {}}})
    );
    assert_eq!(
        ev[10].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "{\"a\":1}"})
    );
    assert_eq!(ev[12].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        ev[12].1["usage"],
        json!({"input_tokens": 12, "output_tokens": 5})
    );
}

#[test]
fn a_passed_through_stream_is_the_providers_bytes_and_nothing_else() {
    let mut enc = EventEncoder::new();
    let mut out = BytesMut::new();
    enc.on_chunk(role(), &mut out);
    let events = [
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\"}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQB+/=\"}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ];
    for e in events {
        let mut c = delta(json!({"content": "x"}), None);
        c.native = Some(bytes::Bytes::from_static(e.as_bytes()));
        enc.on_chunk(c, &mut out);
    }
    enc.on_done(&mut out);
    assert_eq!(std::str::from_utf8(&out).unwrap(), events.concat());
}

#[test]
fn a_broken_stream_ends_with_anthropics_error_event() {
    let mut enc = EventEncoder::new();
    let mut out = BytesMut::new();
    enc.on_chunk(delta(json!({"content": "Hi"}), None), &mut out);
    let error = Error::Overloaded {
        message: "busy".into(),
        retry_after: Duration::from_secs(1),
    };
    enc.on_error(&error, "req-1", &mut out);
    let ev = events(&out);
    let (name, data) = ev.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["type"], "error");
    assert_eq!(data["error"]["type"], "overloaded_error");
}

#[test]
fn an_empty_answer_still_starts_and_stops() {
    let mut enc = EventEncoder::new();
    let mut out = BytesMut::new();
    enc.on_chunk(role(), &mut out);
    enc.on_done(&mut out);
    let names: Vec<String> = events(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["message_start", "ping", "message_delta", "message_stop"]
    );
}
