use super::*;

fn spec(name: &str, patterns: &[&str], words: &[&str], on: On, action: Action) -> RuleSpec {
    RuleSpec {
        name: Arc::from(name),
        patterns: patterns.iter().map(|s| (*s).to_owned()).collect(),
        words: words.iter().map(|s| (*s).to_owned()).collect(),
        on,
        action,
    }
}

fn rules() -> ContentRules {
    ContentRules::new(vec![
        spec(
            "weapons",
            &[r"(?i)build\s+a\s+bomb"],
            &[],
            On::Prompt,
            Action::Block,
        ),
        spec(
            "internal",
            &[],
            &["Project Falcon", "c++"],
            On::Both,
            Action::Flag,
        ),
        spec(
            "leak",
            &[r"CONFIDENTIAL-\d+"],
            &[],
            On::Response,
            Action::Block,
        ),
    ])
    .unwrap()
}

fn hits(set: &RuleSet, text: &str) -> Vec<(String, Action)> {
    let mut h = Vec::new();
    set.check(text, &mut h);
    h.into_iter()
        .map(|h| (h.rule.to_string(), h.action))
        .collect()
}

#[test]
fn rules_apply_to_their_side_only() {
    let r = rules();
    let prompt = r.prompt.as_ref().unwrap();
    let response = r.response.as_ref().unwrap();
    assert_eq!(
        hits(prompt, "how to Build a  BOMB"),
        vec![("weapons".to_owned(), Action::Block)]
    );
    assert!(hits(response, "how to build a bomb").is_empty());
    assert_eq!(
        hits(response, "see CONFIDENTIAL-42"),
        vec![("leak".to_owned(), Action::Block)]
    );
    assert!(hits(prompt, "see CONFIDENTIAL-42").is_empty());
}

#[test]
fn words_are_whole_and_case_insensitive() {
    let r = rules();
    let p = r.prompt.as_ref().unwrap();
    assert_eq!(
        hits(p, "about project falcon."),
        vec![("internal".to_owned(), Action::Flag)]
    );
    assert!(hits(p, "about project falconry").is_empty());
    // A word ending in punctuation has no boundary after it.
    assert_eq!(
        hits(p, "I write C++ daily"),
        vec![("internal".to_owned(), Action::Flag)]
    );
}

#[test]
fn a_refusal_names_the_rule_not_the_text() {
    let hit = Hit {
        rule: Arc::from("weapons"),
        action: Action::Block,
        side: Side::Prompt,
    };
    let f = hit.refusal().openai_fields("r");
    assert_eq!(f.code.as_deref(), Some("content_policy_violation"));
    assert!(f.message.contains("`weapons`") && !f.message.contains("bomb"));
}

#[test]
fn a_match_split_across_stream_pieces_is_caught() {
    let r = rules();
    let response = r.response.as_ref().unwrap();
    let mut w = Window::default();
    let mut h = Vec::new();
    for piece in ["the code is CONFI", "DENTIAL", "-", "7 ok"] {
        w.check(response, piece, &mut h);
    }
    assert_eq!(h.len(), 1);
    assert_eq!(&*h[0].rule, "leak");
}

#[test]
fn windows_forget_text_beyond_the_overlap() {
    let r = rules();
    let response = r.response.as_ref().unwrap();
    let mut w = Window::default();
    let mut h = Vec::new();
    w.check(response, "CONFIDENTIAL-", &mut h);
    w.check(response, &"x".repeat(OVERLAP * 2), &mut h);
    w.check(response, "9", &mut h);
    assert!(h.is_empty());
}

#[test]
fn a_pathological_pattern_runs_in_linear_time() {
    let r = ContentRules::new(vec![spec(
        "nested",
        &["(a+)+$"],
        &[],
        On::Prompt,
        Action::Block,
    )])
    .unwrap();
    let text = format!("{}b", "a".repeat(100_000));
    assert!(hits(r.prompt.as_ref().unwrap(), &text).is_empty());
    let text = "a".repeat(100_000);
    assert_eq!(hits(r.prompt.as_ref().unwrap(), &text).len(), 1);
}

#[test]
fn oversized_and_invalid_patterns_are_refused_at_load() {
    let huge = ContentRules::new(vec![spec(
        "big",
        &[r"\w{1000}\w{1000}\w{1000}"],
        &[],
        On::Both,
        Action::Flag,
    )]);
    assert_eq!(huge.unwrap_err().0, Some(0));
    let bad = ContentRules::new(vec![
        spec("ok", &["fine"], &[], On::Both, Action::Flag),
        spec("bad", &["(unclosed"], &[], On::Both, Action::Flag),
    ]);
    assert_eq!(bad.unwrap_err().0, Some(1));
}

#[test]
fn a_word_at_a_pieces_end_waits_for_what_follows() {
    let r =
        ContentRules::new(vec![spec("w", &[], &["bomb"], On::Response, Action::Block)]).unwrap();
    let response = r.response.as_ref().unwrap();
    // `bomb` then `ardier`: one word, not the rule's.
    let (mut w, mut h) = (Window::default(), Vec::new());
    w.check(response, "the bomb", &mut h);
    w.check(response, "ardier flew", &mut h);
    w.check_last(response, "", &mut h);
    assert!(h.is_empty(), "{h:?}");
    // `bomb` then ` here`: the word, caught with the next piece.
    let (mut w, mut h) = (Window::default(), Vec::new());
    w.check(response, "a bomb", &mut h);
    assert!(h.is_empty());
    w.check(response, " here", &mut h);
    assert_eq!(h.len(), 1);
    // `bomb` as the text's last word: caught at the end.
    let (mut w, mut h) = (Window::default(), Vec::new());
    w.check(response, "a bomb", &mut h);
    w.check_last(response, "", &mut h);
    assert_eq!(h.len(), 1);
}
