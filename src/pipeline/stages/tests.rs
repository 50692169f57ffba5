//! Each stage on its own, over a gateway built from a small config (no sockets).

use super::*;
use crate::{
    auth::CallerHeaders, config::Config, gateway::Gateway, pipeline::Answer, telemetry::Surface,
};

const CONFIG: &str = r#"
[[providers]]
name = "local"
kind = "vllm"

[[models]]
name = "m"
deployments = [ { provider = "local", model = "llama" } ]

[[keys]]
name = "low-only"
key = "sk-low-only-0123456789"
max_security_level = "low"
"#;

fn gateway() -> Gateway {
    crate::telemetry::install_crypto_provider();
    Gateway::new(Config::parse(CONFIG).unwrap()).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> CallerHeaders {
    CallerHeaders::collect(pairs.iter().map(|(n, v)| (*n, v.as_bytes())))
}

fn request(body: &str) -> ChatRequest {
    serde_json::from_str(body).unwrap()
}

const HELLO: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn authorize_refuses_a_level_above_the_keys_maximum() {
    let gw = gateway();
    let mut call = gw
        .ingress(
            Surface::Rest,
            None,
            headers(&[
                ("authorization", "Bearer sk-low-only-0123456789"),
                ("x-security-level", "high"),
            ]),
        )
        .await
        .unwrap();
    let err = Authorize
        .run(&mut call, &mut request(HELLO))
        .await
        .unwrap_err();
    assert_eq!(err.spec().status, 403);
    assert_eq!(err.spec().code, Some("security_level_not_allowed"));
}

#[tokio::test]
async fn authorize_lets_the_keys_own_level_through() {
    let gw = gateway();
    let mut call = gw
        .ingress(
            Surface::Rest,
            None,
            headers(&[("authorization", "Bearer sk-low-only-0123456789")]),
        )
        .await
        .unwrap();
    Authorize.run(&mut call, &mut request(HELLO)).await.unwrap();
}

#[tokio::test]
async fn validate_refuses_an_empty_model_and_no_messages() {
    let gw = gateway();
    let key = [("authorization", "Bearer sk-low-only-0123456789")];
    let mut call = gw
        .ingress(Surface::Rest, None, headers(&key))
        .await
        .unwrap();
    let err = Validate
        .run(
            &mut call,
            &mut request(r#"{"model":" ","messages":[{"role":"user","content":"x"}]}"#),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest { param: Some(ref p), .. } if p == "model"));
    let err = Validate
        .run(&mut call, &mut request(r#"{"model":"m","messages":[]}"#))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest { param: Some(ref p), .. } if p == "messages"));
    Validate.run(&mut call, &mut request(HELLO)).await.unwrap();
}

#[tokio::test]
async fn ingress_refuses_a_missing_key_before_taking_a_slot() {
    let gw = gateway();
    let refusal = gw
        .ingress(Surface::Rest, Some("req-1"), headers(&[]))
        .await
        .err()
        .unwrap();
    assert_eq!(refusal.error.spec().status, 401);
    assert_eq!(refusal.request_id, "req-1");
    assert_eq!(gw.in_flight(), 0);
}

#[tokio::test]
async fn a_refused_stage_ends_the_call_and_frees_its_slot() {
    let gw = std::sync::Arc::new(gateway());
    let call = gw
        .ingress(
            Surface::Grpc,
            None,
            headers(&[
                ("authorization", "Bearer sk-low-only-0123456789"),
                ("x-security-level", "medium"),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(gw.in_flight(), 1);
    let Answer::Refused(refusal) = gw.serve(call, request(HELLO)).await else {
        panic!("a level above the key's maximum must be refused");
    };
    assert_eq!(refusal.error.spec().status, 403);
    assert_eq!(gw.in_flight(), 0);
}

#[tokio::test]
async fn the_stages_run_in_order_and_a_refusal_names_its_stage() {
    let gw = gateway();
    let key = [
        ("authorization", "Bearer sk-low-only-0123456789"),
        ("x-security-level", "high"),
    ];
    // Both stages would refuse this one: authorize runs first.
    let mut call = gw
        .ingress(Surface::Rest, None, headers(&key))
        .await
        .unwrap();
    let mut empty = request(r#"{"model":"m","messages":[]}"#);
    let (stage, err) = admit(&mut call, &mut empty).await.unwrap_err();
    assert_eq!((stage, err.spec().status.as_u16()), (Authorize::NAME, 403));
    let mut call = gw
        .ingress(Surface::Rest, None, headers(&key[..1]))
        .await
        .unwrap();
    let (stage, _) = admit(&mut call, &mut empty).await.unwrap_err();
    assert_eq!(stage, Validate::NAME);
    admit(&mut call, &mut request(HELLO)).await.unwrap();
}
