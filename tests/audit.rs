//! The audit (issue 14): the real binary's request log gives one line per request naming
//! who called (the key's name), how (`auth_method`), from where (`client_addr`), at which
//! security level, for which model and deployment, and what redaction did; and no secret
//! the gateway holds or is sent — a provider key, a caller key, an HMAC secret or a
//! request's signature, the PII of a redacted prompt — appears in any line it prints or in
//! any error body it answers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use common::{process::Served, *};
use serde_json::{Value, json};
use switchyard::auth::signed::sign;

const PROVIDER_KEY: &str = "sk-provider-audit-7f3a9c1e5b2d4f6a8c0e";
const CALLER_KEY: &str = "sk-caller-audit-2b4d6f8a0c1e3a5c7e9b";
const HMAC_SECRET: &str = "hmac-secret-audit-9e8d7c6b5a4f3e2d1c0b";
/// A caller's key one character off: refused, and never echoed.
const WRONG_KEY: &str = "sk-caller-audit-2b4d6f8a0c1e3a5c7e9X";
const EMAIL: &str = "jane.doe.audit@example.com";
const CARD: &str = "4111 1111 1111 1111";

const CHAT: &str = "/v1/chat/completions";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn config(mock: &Mock) -> String {
    let extra = format!(
        "[redaction]\ndetectors = [\"email\", \"card\"]\nmode = \"mask\"\nrestore = true\n\n\
         [[keys]]\nname = \"bearer-team\"\nkey = \"{CALLER_KEY}\"\n\
         [[keys]]\nname = \"signing-team\"\nhmac_secret = \"{HMAC_SECRET}\"\n"
    );
    let text = config_for(&[mock], &extra);
    let provider_key = format!("sk-test-{}", mock.name);
    assert!(text.contains(&provider_key));
    text.replace(&provider_key, PROVIDER_KEY)
}

fn prompt() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": format!("Mail {EMAIL}, card {CARD}.")}]
    })
}

async fn send(req: reqwest::RequestBuilder) -> (u16, String) {
    let resp = within(req.send()).await.unwrap();
    let status = resp.status().as_u16();
    (status, within(resp.text()).await.unwrap())
}

#[tokio::test]
async fn every_line_is_an_audit_record_and_no_secret_reaches_a_log_or_an_error() {
    let mock = Mock::start("a", "").await;
    let dir = std::env::temp_dir().join(format!("switchyard-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("switchyard.toml"), config(&mock)).unwrap();
    let served = Served::start(&["--config", "switchyard.toml"], &dir);
    let url = format!("http://{}", served.http);
    let body = serde_json::to_vec(&prompt()).unwrap();
    let mut bodies = Vec::new();

    // A bearer caller: served, the provider sees placeholders, the caller its own text.
    let (status, text) = send(
        client()
            .post(format!("{url}{CHAT}"))
            .bearer_auth(CALLER_KEY)
            .header("x-security-level", "low")
            .json(&prompt()),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let seen = mock.stats().await["last_request"].to_string();
    assert!(!seen.contains(EMAIL) && !seen.contains(CARD), "{seen}");
    assert!(text.contains(EMAIL), "restored for the caller: {text}");
    let first = served.wait_for("\"bearer-team\"");
    let line: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(line["key"], "bearer-team");
    assert_eq!(line["auth_method"], "bearer");
    assert_eq!(line["client_addr"], "127.0.0.1");
    assert_eq!(line["security_level"], "low");
    assert_eq!(line["model"], "gpt-4o-mini");
    assert_eq!(line["provider"], "a");
    assert_eq!(line["deployment"], "a/upstream-a");
    let audit = line.to_string();
    assert!(
        audit.contains("\"email\"") && audit.contains("\"card\""),
        "{audit}"
    );

    // A signed caller.
    let at = now().to_string();
    let signature = sign(HMAC_SECRET.as_bytes(), "POST", CHAT, &at, &body);
    let signed = |signature: &str| {
        client()
            .post(format!("{url}{CHAT}"))
            .header("content-type", "application/json")
            .header("x-switchyard-key-id", "signing-team")
            .header("x-switchyard-timestamp", &at)
            .header("x-switchyard-signature", signature)
            .body(body.clone())
    };
    let (status, text) = send(signed(&signature)).await;
    assert_eq!(status, 200, "{text}");
    let second = served.wait_for("\"signing-team\"");
    let line: Value = serde_json::from_str(&second).unwrap();
    assert_eq!(line["auth_method"], "hmac");
    assert_eq!(line["client_addr"], "127.0.0.1");

    // Refusals: a replay, a wrong key, a signature made with a wrong secret. Their bodies
    // are collected for the search below.
    let (status, text) = send(signed(&signature)).await;
    assert_eq!(status, 401, "{text}");
    bodies.push(text);
    let (status, text) = send(
        client()
            .post(format!("{url}{CHAT}"))
            .bearer_auth(WRONG_KEY)
            .json(&prompt()),
    )
    .await;
    assert_eq!(status, 401, "{text}");
    bodies.push(text);
    let forged = sign(
        b"not-the-secret-of-signing-team-000000",
        "POST",
        CHAT,
        &at,
        &body,
    );
    let (status, text) = send(signed(&forged)).await;
    assert_eq!(status, 401, "{text}");
    bodies.push(text);
    // An upstream failure's error: the provider's words, never its key.
    mock.set_fault("status=401").await;
    let (status, text) = send(
        client()
            .post(format!("{url}{CHAT}"))
            .bearer_auth(CALLER_KEY)
            .json(&prompt()),
    )
    .await;
    assert!(status >= 400, "{status} {text}");
    bodies.push(text);

    // Every line printed from the first request on (the lines between those two were
    // read past by `wait_for`; there were none: one request, one line).
    let log = format!("{first}\n{second}\n{}", served.drain());
    assert!(log.matches("\"request_id\"").count() >= 6, "{log}");
    let hex = |s: &str| s.trim_start_matches("v1=").to_owned();
    let secrets = [
        PROVIDER_KEY.to_owned(),
        CALLER_KEY.to_owned(),
        WRONG_KEY.to_owned(),
        HMAC_SECRET.to_owned(),
        hex(&signature),
        hex(&forged),
        EMAIL.to_owned(),
        CARD.to_owned(),
    ];
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{secret} in the log:\n{log}"
        );
        for b in &bodies {
            assert!(
                !b.contains(secret.as_str()),
                "{secret} in an error body: {b}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
