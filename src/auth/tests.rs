use super::*;
use crate::config::Secret;

fn key(name: &str, token: &str, max: SecurityLevel) -> KeyConfig {
    KeyConfig {
        name: name.into(),
        key: Some(Secret::resolve(token).unwrap()),
        hmac_secret: None,
        tags: vec!["beta".into()],
        allowed_providers: vec![],
        allowed_models: vec![],
        max_security_level: max,
        security_level: SecurityLevel::Low,
        limits: Default::default(),
        model_limits: Default::default(),
        budget: Default::default(),
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
