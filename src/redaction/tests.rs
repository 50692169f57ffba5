use std::sync::Arc;

use proptest::prelude::*;

use super::{
    restore::{Restorer, Target},
    *,
};
use crate::chat::{ChatRequest, Message, Role};

fn policy(mode: Mode, restore: bool) -> Policy {
    Policy::new(
        "test",
        &Detector::ALL,
        mode,
        restore,
        Arc::from(&b"key"[..]),
    )
    .unwrap()
}

fn request(messages: Vec<Message>) -> ChatRequest {
    serde_json::from_value(serde_json::json!({"model": "m", "messages": []}))
        .map(|mut r: ChatRequest| {
            r.messages = messages;
            r
        })
        .unwrap()
}

fn text(r: &ChatRequest, i: usize) -> String {
    r.messages[i].content.as_ref().unwrap().joined_text()
}

#[test]
fn masks_are_stable_placeholders_per_value() {
    let p = policy(Mode::Mask, true);
    let mut r = request(vec![
        Message::text(Role::System, "admin is ops@example.com"),
        Message::text(
            Role::User,
            "mail a@example.com and ops@example.com, card 4111111111111111",
        ),
    ]);
    let mut s = Session::new(true);
    p.redact(&mut r, &mut s).unwrap();
    assert_eq!(text(&r, 0), "admin is <EMAIL_1>");
    assert_eq!(text(&r, 1), "mail <EMAIL_2> and <EMAIL_1>, card <CARD_1>");
    let counts: Vec<_> = s.counts().collect();
    assert_eq!(counts, vec![(Detector::Email, 3), (Detector::Card, 1)]);
    let o = s.into_restore().unwrap();
    assert_eq!(
        o.restored(text(&r, 1), Target::Text),
        "mail a@example.com and ops@example.com, card 4111111111111111"
    );
}

#[test]
fn hashes_are_stable_across_requests_and_differ_by_value() {
    let p = policy(Mode::Hash, false);
    let once = |t: &str| {
        let mut r = request(vec![Message::text(Role::User, t)]);
        p.redact(&mut r, &mut Session::new(false)).unwrap();
        text(&r, 0)
    };
    let a = once("x a@example.com");
    assert_eq!(a, once("x a@example.com"));
    assert_ne!(a, once("x b@example.com"));
    assert!(
        a.starts_with("x <EMAIL_") && a.len() == "x <EMAIL_>".len() + 12,
        "{a}"
    );
    // Another key, another placeholder.
    let other = Policy::new(
        "o",
        &Detector::ALL,
        Mode::Hash,
        false,
        Arc::from(&b"k2"[..]),
    )
    .unwrap();
    let mut r = request(vec![Message::text(Role::User, "x a@example.com")]);
    other.redact(&mut r, &mut Session::new(false)).unwrap();
    assert_ne!(text(&r, 0), a);
}

#[test]
fn block_names_the_detector_never_the_value() {
    let p = policy(Mode::Block, false);
    let mut r = request(vec![Message::text(Role::User, "ssn 536-22-1234")]);
    let mut s = Session::new(false);
    let e = p.redact(&mut r, &mut s).unwrap_err();
    let fields = e.openai_fields("r");
    assert_eq!(fields.code.as_deref(), Some("pii_detected"));
    assert!(fields.message.contains("`ssn`") && !fields.message.contains("536"));
    assert_eq!(e.spec().status, 400);
}

#[test]
fn tool_arguments_and_parts_are_redacted() {
    let p = policy(Mode::Mask, true);
    let mut r: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "ip 10.1.2.3"}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{\"to\":\"x@example.org\"}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "sent to x@example.org"}
        ]
    }))
    .unwrap();
    p.redact(&mut r, &mut Session::new(true)).unwrap();
    let body = serde_json::to_string(&r).unwrap();
    assert!(
        !body.contains("10.1.2.3") && !body.contains("x@example.org"),
        "{body}"
    );
    assert!(
        body.contains("<IP_1>") && body.contains("<EMAIL_1>"),
        "{body}"
    );
}

#[test]
fn restore_into_json_strings_escapes_the_original() {
    let mut map = std::collections::HashMap::new();
    map.insert("<SECRET_1>".to_owned(), "a\"b\\c".to_owned());
    let o = restore::Originals::new(map);
    assert_eq!(
        o.restored("{\"k\":\"<SECRET_1>\"}".to_owned(), Target::JsonString),
        "{\"k\":\"a\\\"b\\\\c\"}"
    );
    // Unknown placeholders and look-alikes stay.
    assert_eq!(o.restore("<SECRET_2> <b> <SECRET_1", Target::Text), None);
}

#[test]
fn a_stream_holds_back_only_a_possible_placeholder_start() {
    let mut map = std::collections::HashMap::new();
    map.insert("<EMAIL_1>".to_owned(), "a@b.io".to_owned());
    let o = restore::Originals::new(map);
    let mut r = Restorer::new(Target::Text);
    assert_eq!(r.push(&o, "mail <EM"), "mail ");
    assert!(r.holding());
    assert_eq!(r.push(&o, "AIL_1> now <"), "a@b.io now ");
    assert_eq!(r.push(&o, "b>"), "<b>");
    assert_eq!(r.push(&o, "x <EMAIL_"), "x ");
    assert_eq!(r.finish(&o), "<EMAIL_");
}

fn originals() -> restore::Originals {
    let mut map = std::collections::HashMap::new();
    map.insert("<EMAIL_1>".to_owned(), "jane@example.com".to_owned());
    map.insert("<CARD_12>".to_owned(), "4111111111111111".to_owned());
    map.insert(
        "<PHONE_3fa2c49b01de>".to_owned(),
        "+1 415 555 2671".to_owned(),
    );
    restore::Originals::new(map)
}

proptest! {
    /// Restoring a stream split at random points gives exactly the restore of the whole.
    #[test]
    fn restore_over_random_splits_equals_restore_of_the_whole(
        pieces in proptest::collection::vec(
            prop_oneof![
                Just("<EMAIL_1>".to_owned()),
                Just("<CARD_12>".to_owned()),
                Just("<PHONE_3fa2c49b01de>".to_owned()),
                Just("<EMAIL_".to_owned()),
                Just("<".to_owned()),
                Just(">".to_owned()),
                "[a-zA-Z0-9 _<>é]{0,12}",
            ],
            0..12,
        ),
        cuts in proptest::collection::vec(0usize..200, 0..8),
    ) {
        let whole: String = pieces.concat();
        let o = originals();
        let expected = o.restored(whole.clone(), Target::Text);
        let mut points: Vec<usize> = cuts
            .into_iter()
            .map(|c| c % (whole.len() + 1))
            .filter(|&c| whole.is_char_boundary(c))
            .collect();
        points.sort_unstable();
        points.dedup();
        let mut r = Restorer::new(Target::Text);
        let mut got = String::new();
        let mut at = 0;
        for p in points.into_iter().chain([whole.len()]) {
            got.push_str(&r.push(&o, &whole[at..p]));
            at = p;
        }
        got.push_str(&r.finish(&o));
        prop_assert_eq!(got, expected);
    }
}
