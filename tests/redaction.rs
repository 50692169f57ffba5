//! PII redaction end to end over real sockets: what the mock provider receives holds no
//! PII in any text (system, content parts, tool-call arguments, tool results), answers get
//! the originals back in JSON and in streams (a placeholder split at every position),
//! `hash` is stable, `block` refuses, near-misses pass untouched, the most specific scope
//! applies, the cache keeps placeholders only, and the request log counts redactions and
//! never holds a value.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use common::{process::Served, *};
use serde_json::{Value, json};

const EMAIL: &str = "jane.doe@example.com";
const PHONE: &str = "+1 415 555 2671";
const CARD: &str = "4111 1111 1111 1111";
const SSN: &str = "536-22-1234";
const IBAN: &str = "DE89370400440532013000";
const SECRET: &str = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123";
const IP: &str = "203.0.113.77";
const ALL_PII: [&str; 7] = [EMAIL, PHONE, CARD, SSN, IBAN, SECRET, IP];

const ALL_DETECTORS: &str =
    "detectors = [\"email\", \"phone\", \"card\", \"iban\", \"ssn\", \"ip\", \"secret\"]\n";

fn redaction(mode: &str, restore: bool) -> String {
    format!("[redaction]\n{ALL_DETECTORS}mode = \"{mode}\"\nrestore = {restore}\n")
}

async fn gateway(mock: &Mock, extra: &str) -> TestGateway {
    TestGateway::start(&config_for(&[mock], &format!("{FAST}{extra}"))).await
}

async fn last_request(mock: &Mock) -> String {
    mock.stats().await["last_request"].to_string()
}

async fn post(gw: &TestGateway, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut req = client().post(gw.url("/v1/chat/completions")).json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    within(req.send()).await.unwrap()
}

fn ask(text: &str, stream: bool) -> Value {
    json!({ "model": "gpt-4o-mini", "stream": stream,
            "messages": [{ "role": "user", "content": text }] })
}

/// Every place a provider sees text, each holding PII.
fn everywhere() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            { "role": "system", "content": format!("Escalate to {EMAIL}.") },
            { "role": "user", "content": [
                { "type": "text", "text": format!("My phone is {PHONE}, card {CARD}.") },
                { "type": "image_url", "image_url": { "url": "https://example.com/a.png" } }
            ]},
            { "role": "assistant", "content": null, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": { "name": "lookup", "arguments": format!("{{\"ssn\":\"{SSN}\"}}") }
            }]},
            { "role": "tool", "tool_call_id": "call_1",
              "content": format!("account {IBAN}, api key {SECRET}, last login from {IP}") },
            { "role": "user", "content": format!("Summarise, and mail {EMAIL}.") }
        ]
    })
}

#[tokio::test]
async fn the_provider_sees_no_pii_in_any_text_and_the_answer_gets_it_back() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock, &redaction("mask", true)).await;
    let resp = post(&gw, &everywhere(), None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let seen = last_request(&mock).await;
    for pii in ALL_PII {
        assert!(!seen.contains(pii), "the provider saw {pii}: {seen}");
    }
    for placeholder in [
        "<EMAIL_1>",
        "<PHONE_1>",
        "<CARD_1>",
        "<SSN_1>",
        "<IBAN_1>",
        "<SECRET_1>",
        "<IP_1>",
    ] {
        assert!(seen.contains(placeholder), "{placeholder} missing: {seen}");
    }
    // The same address in the system prompt and the last message: one placeholder.
    assert!(!seen.contains("<EMAIL_2>"), "{seen}");
    // The image part is passed on untouched.
    assert!(seen.contains("https://example.com/a.png"));
    // The mock echoes the last user message, placeholders and all: restored for the caller.
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains(&format!("mail {EMAIL}.")), "{text}");
    assert!(!text.contains("<EMAIL_"), "{text}");
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "switchyard_redactions_total",
            &["detector=\"email\""]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            "switchyard_redactions_total",
            &["detector=\"secret\""]
        ),
        1.0
    );
}

#[tokio::test]
async fn without_restore_the_answer_keeps_the_placeholders() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock, &redaction("mask", false)).await;
    let body: Value = post(&gw, &ask(&format!("mail {EMAIL}"), false), None)
        .await
        .json()
        .await
        .unwrap();
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.contains("mail <EMAIL_1>") && !text.contains(EMAIL),
        "{text}"
    );
}

#[tokio::test]
async fn a_stream_is_restored_with_the_placeholder_split_at_every_position() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock, &redaction("mask", true)).await;
    let prompt = format!("reach {EMAIL} or {PHONE}");
    let want = format!("You said: {prompt}");
    // "<PHONE_1>" is 9 characters: every piece size up to past it splits it everywhere.
    for n in 1..=12 {
        mock.set_fault(&format!("chunk_chars={n}")).await;
        let resp = post(&gw, &ask(&prompt, true), None).await;
        assert_eq!(resp.status(), 200);
        let events = sse_events(resp).await;
        let content = stream_content(&events);
        assert!(content.ends_with(&want), "pieces of {n}: {content:?}");
        assert!(!content.contains('<'), "pieces of {n}: {content:?}");
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    }
    assert!(!last_request(&mock).await.contains(EMAIL));
}

#[tokio::test]
async fn hash_placeholders_are_stable_across_requests() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock, &redaction("hash", false)).await;
    let mut seen = Vec::new();
    for email in [EMAIL, EMAIL, "other@example.com"] {
        let resp = post(&gw, &ask(&format!("mail {email}"), false), None).await;
        assert_eq!(resp.status(), 200);
        let last = mock.stats().await["last_request"]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            last.starts_with("mail <EMAIL_") && !last.contains('@'),
            "{last}"
        );
        seen.push(last);
    }
    assert_eq!(seen[0], seen[1]);
    assert_ne!(seen[0], seen[2]);
}

#[tokio::test]
async fn block_mode_refuses_naming_the_detector_and_sends_nothing() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock, &redaction("block", false)).await;
    let resp = post(&gw, &ask(&format!("my ssn is {SSN}"), false), None).await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "pii_detected");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("`ssn`"));
    assert!(!body.contains(SSN) && !body.contains("536"), "{body}");
    // Also in a stream's request: refused before anything opens.
    let resp = post(&gw, &ask(&format!("key {SECRET}"), true), None).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(mock.stats().await["requests"], 0);
}

#[tokio::test]
async fn luhn_invalid_cards_and_bad_ibans_are_not_redacted() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock, &redaction("mask", false)).await;
    let text = "order 4111 1111 1111 1112 to DE89370400440532013001 at 2024-01-15";
    let resp = post(&gw, &ask(text, false), None).await;
    assert_eq!(resp.status(), 200);
    let seen = last_request(&mock).await;
    assert!(seen.contains(text), "{seen}");
}

#[tokio::test]
async fn provider_secrets_are_redacted() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock, "[redaction]\ndetectors = [\"secret\"]\n").await;
    let secrets = [
        "sk-ant-api03-AbCdEfGhIjKlMnOpQrSt",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "xoxb-1234567890-abcdefghij",
        "AIzaSyA-0123456789abcdefghijABCDEFGHIJ_",
        "Zx9Qm2Lp7Vt4Rk8Wn3Hy6Jc1Bd5Fg0Ts",
    ];
    let resp = post(&gw, &ask(&secrets.join(" and "), false), None).await;
    assert_eq!(resp.status(), 200);
    let seen = last_request(&mock).await;
    for s in secrets {
        assert!(!seen.contains(s), "{s}: {seen}");
    }
    assert!(seen.contains("<SECRET_6>"), "{seen}");
}

#[tokio::test]
async fn the_most_specific_scope_applies() {
    let mock = Mock::start("a", "").await;
    let extra = format!(
        "{}\
         [redaction.profiles.strict]\ndetectors = [\"email\"]\nmode = \"block\"\n\
         [redaction.levels]\nhigh = \"strict\"\n\
         [[keys]]\nname = \"open\"\nkey = \"key-open-0123456789\"\nredaction = \"off\"\n\
         [[keys]]\nname = \"plain\"\nkey = \"key-plain-0123456789\"\nmax_security_level = \"high\"\n\
         [[keys]]\nname = \"inline\"\nkey = \"key-inline-0123456789\"\n\
         redaction = {{ detectors = [\"email\"], mode = \"hash\" }}\n",
        redaction("mask", false)
    );
    let gw = gateway(&mock, &extra).await;
    let body = ask(&format!("mail {EMAIL}"), false);
    let first_text =
        || async { mock.stats().await["last_request"]["messages"][0]["content"].to_string() };
    // The gateway's profile.
    assert_eq!(
        post(&gw, &body, Some("key-plain-0123456789"))
            .await
            .status(),
        200
    );
    assert!(first_text().await.contains("<EMAIL_1>"));
    // A key that turns it off.
    assert_eq!(
        post(&gw, &body, Some("key-open-0123456789")).await.status(),
        200
    );
    assert!(first_text().await.contains(EMAIL));
    // A key's inline profile.
    assert_eq!(
        post(&gw, &body, Some("key-inline-0123456789"))
            .await
            .status(),
        200
    );
    let t = first_text().await;
    assert!(t.contains("<EMAIL_") && !t.contains("<EMAIL_1>"), "{t}");
    // The high level's profile blocks.
    let resp = within(
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("key-plain-0123456789")
            .header("x-security-level", "high")
            .json(&body)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn tool_call_arguments_in_answers_are_restored_whole_and_in_streams() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock, &redaction("mask", true)).await;
    // The model refers to the placeholder it saw: the tool schema makes the mock answer
    // with it as the argument.
    let body = |stream: bool| {
        json!({ "model": "gpt-4o-mini", "stream": stream,
            "messages": [{ "role": "user", "content": format!("email {EMAIL} the report") }],
            "tools": [{ "type": "function", "function": { "name": "send_mail",
                "parameters": { "type": "object", "required": ["to"],
                    "properties": { "to": { "type": "string", "const": "<EMAIL_1>" } } } } }],
            "tool_choice": "required" })
    };
    let v: Value = post(&gw, &body(false), None).await.json().await.unwrap();
    let args = v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(args).unwrap()["to"], EMAIL);
    for n in [1, 2, 5] {
        mock.set_fault(&format!("chunk_chars={n}")).await;
        let events = sse_events(post(&gw, &body(true), None).await).await;
        let mut args = String::new();
        for e in events.iter().filter(|e| *e != "[DONE]") {
            let v: Value = serde_json::from_str(e).unwrap();
            if let Some(a) = v.pointer("/choices/0/delta/tool_calls/0/function/arguments") {
                args.push_str(a.as_str().unwrap());
            }
        }
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap()["to"],
            EMAIL,
            "pieces of {n}: {args}"
        );
    }
}

#[tokio::test]
async fn the_cache_holds_placeholders_and_each_caller_gets_its_own_originals() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(
        &mock,
        &format!("[cache]\nenabled = true\n{}", redaction("mask", true)),
    )
    .await;
    let ask_for = |email: &str| ask(&format!("mail {email}"), false);
    let first = post(&gw, &ask_for(EMAIL), None).await;
    assert_eq!(header(&first, "x-switchyard-cache"), "miss");
    let first: Value = first.json().await.unwrap();
    assert!(first.to_string().contains(EMAIL));
    within(async {
        while metric(&gw.metrics().await, "switchyard_cache_stores_total", &[]) < 1.0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    // Another caller, another address, the same redacted prompt: a hit, with its own.
    let second = post(&gw, &ask_for("bob@example.org"), None).await;
    assert_eq!(header(&second, "x-switchyard-cache"), "hit");
    let second = second.text().await.unwrap();
    assert!(
        second.contains("bob@example.org") && !second.contains(EMAIL),
        "{second}"
    );
    // Replayed as a stream: restored too.
    let events = sse_events(post(&gw, &ask(&format!("mail {EMAIL}"), true), None).await).await;
    assert!(stream_content(&events).contains(EMAIL));
    assert_eq!(mock.stats().await["requests"], 1);
}

#[tokio::test]
async fn the_request_log_counts_redactions_and_no_line_holds_a_value() {
    let mock = Mock::start("a", "").await;
    let dir = std::env::temp_dir().join(format!("switchyard-redaction-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let config = config_for(&[&mock], &format!("{FAST}{}", redaction("mask", true)))
        .replace("http_addr = \"127.0.0.1:0\"\ngrpc_addr = \"none\"\n", "");
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let served = Served::start(&["--config", "switchyard.toml"], &dir);
    let resp = within(
        client()
            .post(format!("http://{}/v1/chat/completions", served.http))
            .header("x-request-id", "audit-redaction-1")
            .json(&everywhere())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let line = served.wait_for("audit-redaction-1");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["redactions"]["email"], 2, "{line}");
    assert_eq!(v["redactions"]["card"], 1, "{line}");
    assert_eq!(v["redactions"]["ssn"], 1, "{line}");
    let rest = served.drain();
    for pii in ALL_PII {
        assert!(!line.contains(pii) && !rest.contains(pii), "{pii} logged");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
