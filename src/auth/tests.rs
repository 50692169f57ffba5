use super::*;
use crate::config::Secret;

fn key(name: &str, token: &str, max: SecurityLevel) -> KeyConfig {
    KeyConfig {
        name: name.into(),
        key: Some(Secret::resolve(token).unwrap()),
        hmac_secret: None,
        hmac_secret_previous: None,
        tags: vec!["beta".into()],
        allowed_providers: vec![],
        allowed_models: vec![],
        max_security_level: max,
        security_level: SecurityLevel::Low,
        limits: Default::default(),
        model_limits: Default::default(),
        budget: Default::default(),
        ip_allowlist: None,
    }
}

fn headers(pairs: &[(&str, &str)]) -> CallerHeaders {
    CallerHeaders::collect(pairs.iter().map(|(n, v)| (*n, v.as_bytes())))
}

#[test]
fn collects_token_level_and_route_headers_only() {
    let h = headers(&[
        ("authorization", "Bearer sk-team-a-0123456789"),
        ("x-security-level", "High"),
        ("x-route-region", "eu"),
        ("x-other", "ignored"),
    ]);
    assert_eq!(h.token.as_deref(), Some("sk-team-a-0123456789"));
    assert_eq!(h.security_level.as_deref(), Some("High"));
    assert_eq!(
        h.route,
        vec![("x-route-region".to_owned(), "eu".to_owned())]
    );
    let h = headers(&[("api-key", "k1")]);
    assert_eq!(h.token.as_deref(), Some("k1"));
}

#[test]
fn anonymous_when_no_keys_are_configured() {
    let caller = Keys::new(&[]).caller(headers(&[])).unwrap();
    assert!(caller.key.is_none());
    assert_eq!(caller.level, SecurityLevel::Low);
}

#[test]
fn keys_are_required_once_configured_and_never_echoed() {
    let keys = Keys::new(&[key("a", "sk-team-a-0123456789", SecurityLevel::High)]);
    let missing = keys.caller(headers(&[])).unwrap_err();
    assert!(matches!(missing, Error::Unauthorized { .. }));
    let wrong = keys
        .caller(headers(&[(
            "authorization",
            "Bearer sk-wrong-secret-value",
        )]))
        .unwrap_err();
    assert!(!wrong.to_string().contains("sk-wrong"));
    assert_eq!(wrong.spec().status.as_u16(), 401);
    let ok = keys
        .caller(headers(&[("authorization", "Bearer sk-team-a-0123456789")]))
        .unwrap();
    assert_eq!(ok.key.unwrap().name, "a");
}

#[test]
fn a_level_above_the_keys_maximum_is_refused_not_lowered() {
    let keys = Keys::new(&[key("a", "sk-team-a-0123456789", SecurityLevel::Medium)]);
    let auth = ("authorization", "Bearer sk-team-a-0123456789");
    let err = keys
        .caller(headers(&[auth, ("x-security-level", "high")]))
        .unwrap_err();
    assert_eq!(err.spec().status.as_u16(), 403);
    let ok = keys
        .caller(headers(&[auth, ("x-security-level", "medium")]))
        .unwrap();
    assert_eq!(ok.level, SecurityLevel::Medium);
    let bad = keys
        .caller(headers(&[auth, ("x-security-level", "secret")]))
        .unwrap_err();
    assert_eq!(bad.spec().status.as_u16(), 400);
}

fn signer(name: &str, secret: &str) -> KeyConfig {
    KeyConfig {
        key: None,
        hmac_secret: Some(Secret::new(secret)),
        ..key(name, "sk-unused-0123456789", SecurityLevel::High)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_signed_request_waits_for_its_body_then_is_its_keys_once() {
    let secret = "0123456789abcdef0123456789abcdef";
    let keys = Keys::new(&[signer("s", secret)]);
    let ts = now().to_string();
    let sig = signed::sign(
        secret.as_bytes(),
        "POST",
        "/v1/chat/completions",
        &ts,
        b"{}",
    );
    let h = || {
        headers(&[
            ("x-switchyard-key-id", "s"),
            ("x-switchyard-timestamp", &ts),
            ("x-switchyard-signature", &sig),
            ("x-security-level", "medium"),
        ])
        .with_target("POST", "/v1/chat/completions")
    };
    let Authenticated::Signed(pending) = keys.authenticate(h()).await.unwrap() else {
        panic!("a signed request is pending until its body is in");
    };
    let caller = keys
        .verify_signed(*pending, &BodyDigest::of(b"{}"))
        .await
        .unwrap();
    assert_eq!(caller.key.unwrap().name, "s");
    assert_eq!(
        (caller.method, caller.level),
        (AuthMethod::Hmac, SecurityLevel::Medium)
    );
    // The same signature again: a replay.
    let Authenticated::Signed(pending) = keys.authenticate(h()).await.unwrap() else {
        panic!("pending");
    };
    let e = keys
        .verify_signed(*pending, &BodyDigest::of(b"{}"))
        .await
        .unwrap_err();
    assert_eq!(e.spec().code, Some("signature_replayed"));
    // Without the target, nothing can verify.
    let bare = headers(&[
        ("x-switchyard-key-id", "s"),
        ("x-switchyard-timestamp", &ts),
        ("x-switchyard-signature", &sig),
    ]);
    let Authenticated::Signed(pending) = keys.authenticate(bare).await.unwrap() else {
        panic!("pending");
    };
    let e = keys
        .verify_signed(*pending, &BodyDigest::of(b"{}"))
        .await
        .unwrap_err();
    assert_eq!(e.spec().code, Some("signature_invalid"));
}

#[tokio::test]
async fn a_secret_is_not_a_bearer_token_and_bearer_calls_say_so() {
    let keys = Keys::new(&[
        signer("s", "0123456789abcdef0123456789abcdef"),
        key("b", "sk-team-b-0123456789", SecurityLevel::High),
    ]);
    let e = keys
        .authenticate(headers(&[(
            "authorization",
            "Bearer 0123456789abcdef0123456789abcdef",
        )]))
        .await
        .unwrap_err();
    assert_eq!(e.spec().code, Some("invalid_api_key"));
    let Authenticated::Caller(c) = keys
        .authenticate(headers(&[("authorization", "Bearer sk-team-b-0123456789")]))
        .await
        .unwrap()
    else {
        panic!("a bearer key is checked at once");
    };
    assert_eq!(c.method, AuthMethod::Bearer);
    let Authenticated::Caller(c) = Keys::new(&[]).authenticate(headers(&[])).await.unwrap() else {
        panic!("anonymous");
    };
    assert_eq!(c.method, AuthMethod::None);
}
