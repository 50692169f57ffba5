use serde_json::json;

use super::*;

fn chunk(v: Value) -> ChatChunk {
    serde_json::from_value(v).unwrap()
}

fn streamed() -> Vec<ChatChunk> {
    let base = |choices: Value| {
        chunk(json!({ "id": "chatcmpl-1", "created": 7, "model": "m", "choices": choices }))
    };
    vec![
        base(
            json!([{ "index": 0, "delta": { "role": "assistant", "content": "" }, "finish_reason": null }]),
        ),
        base(
            json!([{ "index": 0, "delta": { "reasoning_content": "think" }, "finish_reason": null }]),
        ),
        base(json!([{ "index": 0, "delta": { "content": "Hel" }, "finish_reason": null }])),
        base(json!([{ "index": 0, "delta": { "content": "lo" }, "finish_reason": null }])),
        base(
            json!([{ "index": 0, "delta": { "tool_calls": [{ "index": 0, "id": "call_1", "type": "function",
            "function": { "name": "lookup", "arguments": "{\"q\":" } }] }, "finish_reason": null }]),
        ),
        base(json!([{ "index": 0, "delta": { "tool_calls": [{ "index": 0,
            "function": { "arguments": "\"x\"}" } }] }, "finish_reason": null }])),
        base(json!([{ "index": 0, "delta": {}, "finish_reason": "tool_calls" }])),
        chunk(
            json!({ "id": "chatcmpl-1", "created": 7, "model": "m", "choices": [],
            "usage": { "prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8 } }),
        ),
    ]
}

fn assemble(chunks: &[ChatChunk]) -> ChatResponse {
    let mut a = Assembler::default();
    for c in chunks {
        a.push(c);
    }
    a.finish()
}

#[test]
fn a_stream_assembles_into_the_response_it_spells() {
    let r = assemble(&streamed());
    assert_eq!(r.id, "chatcmpl-1");
    assert_eq!(r.created, 7);
    let c = &r.choices[0];
    assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(c.message.content.as_ref().unwrap().joined_text(), "Hello");
    assert_eq!(c.message.extra[REASONING], "think");
    let call = &c.message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "call_1");
    assert_eq!(call.function.name, "lookup");
    assert_eq!(call.function.arguments, "{\"q\":\"x\"}");
    assert_eq!(r.usage.as_ref().unwrap().total_tokens, 8);
}

#[test]
fn a_replay_reassembles_into_the_same_response() {
    let original = assemble(&streamed());
    let replayed = replay(&original, true);
    assert!(replayed.last().unwrap().usage.is_some());
    let again = assemble(&replayed);
    assert_eq!(
        serde_json::to_value(&original).unwrap(),
        serde_json::to_value(&again).unwrap()
    );
}

#[test]
fn a_replay_sends_usage_only_when_asked() {
    let replayed = replay(&assemble(&streamed()), false);
    assert!(replayed.iter().all(|c| c.usage.is_none()));
    assert_eq!(replayed[0].choices[0].delta.role, Some(Role::Assistant));
    assert_eq!(
        replayed.last().unwrap().choices[0].finish_reason.as_deref(),
        Some("tool_calls")
    );
}
