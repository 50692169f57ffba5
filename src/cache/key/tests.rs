use serde_json::json;

use super::*;

fn request(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

fn key_of(body: Value) -> Key {
    key(Scope::Key("team-a"), "gpt-4o-mini", &request(body))
}

fn base() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{ "role": "user", "content": "Hello" }],
        "tools": [{ "type": "function", "function": { "name": "lookup",
            "parameters": { "type": "object",
                "properties": { "q": { "type": "string" }, "n": { "type": "integer" } },
                "required": ["q"] } } }],
        "temperature": 0.2,
        "logit_bias": { "50256": -100, "1": 5 },
        "metadata": { "b": 1, "a": { "y": 2, "x": 1 } }
    })
}

#[test]
fn reordered_json_objects_give_the_same_key() {
    let reordered = json!({
        "metadata": { "a": { "x": 1, "y": 2 }, "b": 1 },
        "logit_bias": { "1": 5, "50256": -100 },
        "temperature": 0.2,
        "tools": [{ "function": { "parameters": { "required": ["q"],
                "properties": { "n": { "type": "integer" }, "q": { "type": "string" } },
                "type": "object" }, "name": "lookup" }, "type": "function" }],
        "messages": [{ "content": "Hello", "role": "user" }],
        "model": "gpt-4o-mini"
    });
    assert_eq!(key_of(base()), key_of(reordered));
}

#[test]
fn the_stream_flag_and_stream_options_are_not_keyed() {
    let mut streamed = base();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({ "include_usage": true });
    assert_eq!(key_of(base()), key_of(streamed));
}

#[test]
fn one_stop_sequence_and_a_list_of_one_are_the_same_request() {
    let mut one = base();
    one["stop"] = json!("END");
    let mut list = base();
    list["stop"] = json!(["END"]);
    assert_eq!(key_of(one), key_of(list));
}

#[test]
fn each_scope_has_keys_of_its_own() {
    let r = request(base());
    let keys = [
        key(Scope::Key("team-a"), "gpt-4o-mini", &r),
        key(Scope::Key("team-b"), "gpt-4o-mini", &r),
        key(Scope::Key("anonymous"), "gpt-4o-mini", &r),
        key(Scope::Anonymous, "gpt-4o-mini", &r),
        key(Scope::Shared, "gpt-4o-mini", &r),
    ];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn what_changes_the_answer_changes_the_key() {
    let r = request(base());
    assert_ne!(
        key(Scope::Shared, "gpt-4o-mini", &r),
        key(Scope::Shared, "gpt-4o", &r)
    );
    let changes: [(&str, Value); 8] = [
        ("/messages/0/content", json!("Hello!")),
        ("/tools/0/function/name", json!("search")),
        ("/tools/0/function/parameters/required", json!(["q", "n"])),
        ("/temperature", json!(0.3)),
        ("/logit_bias/1", json!(6)),
        ("/metadata/a/x", json!(2)),
        ("/messages/0/role", json!("system")),
        (
            "/tools/0/function/parameters/properties/n/type",
            json!("number"),
        ),
    ];
    for (pointer, value) in changes {
        let mut changed = base();
        *changed.pointer_mut(pointer).unwrap() = value;
        assert_ne!(key_of(base()), key_of(changed), "{pointer}");
    }
    for (field, value) in [
        ("seed", json!(7)),
        ("user", json!("end-user-1")),
        ("max_tokens", json!(10)),
        ("n", json!(2)),
        ("top_p", json!(0.5)),
        ("tool_choice", json!("required")),
        ("response_format", json!({ "type": "json_object" })),
        ("parallel_tool_calls", json!(false)),
        ("some_new_field", json!(true)),
    ] {
        let mut changed = base();
        changed[field] = value;
        assert_ne!(key_of(base()), key_of(changed), "{field}");
    }
}

#[test]
fn the_redis_key_is_versioned_hex() {
    let k = key_of(base()).redis_key();
    let hex = k.strip_prefix("switchyard:cache:v1:").unwrap();
    assert_eq!(hex.len(), 64);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
}
