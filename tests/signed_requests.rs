//! HMAC-signed requests over real sockets: served when signed right; refused when
//! re-timed, stale, altered after signing, replayed (to the same gateway, and to another
//! one sharing a real Redis), or signed for a key that does not exist — the last two
//! refused alike; gRPC calls signed over the encoded message; the request log names the
//! key and the method, never a secret.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use common::{process::Served, redis::RedisServer, *};
use prost::Message;
use serde_json::{Value, json};
use switchyard::{
    api::grpc::pb::{self, gateway_client::GatewayClient},
    auth::signed::sign,
};

const SECRET: &str = "hmac-secret-of-team-a-0123456789abcdef";
const BEARER: &str = "sk-team-b-0123456789";

fn keys() -> String {
    format!(
        "[[keys]]\nname = \"team-a\"\nhmac_secret = \"{SECRET}\"\n\
         [[keys]]\nname = \"team-b\"\nkey = \"{BEARER}\"\n"
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signed request as a client makes it: the headers for `body` sent to `target`.
struct Signed {
    key_id: String,
    timestamp: String,
    signature: String,
}

fn signed(key_id: &str, secret: &str, method: &str, target: &str, at: u64, body: &[u8]) -> Signed {
    let timestamp = at.to_string();
    Signed {
        key_id: key_id.to_owned(),
        signature: sign(secret.as_bytes(), method, target, &timestamp, body),
        timestamp,
    }
}

async fn post(gw: &str, path: &str, s: &Signed, body: Vec<u8>) -> reqwest::Response {
    within(
        client()
            .post(format!("{gw}{path}"))
            .header("content-type", "application/json")
            .header("x-switchyard-key-id", &s.key_id)
            .header("x-switchyard-timestamp", &s.timestamp)
            .header("x-switchyard-signature", &s.signature)
            .body(body)
            .send(),
    )
    .await
    .unwrap()
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&hello(false)).unwrap()
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json::<Value>().await.unwrap()["error"].clone())
}

const CHAT: &str = "/v1/chat/completions";

#[tokio::test]
async fn a_request_signed_with_the_keys_secret_is_served() {
    let a = Mock::start("a", "").await;
    let gw = TestGateway::start(&config_for(&[&a], &keys())).await;
    let s = signed("team-a", SECRET, "POST", CHAT, now(), &body());
    let resp = post(&gw.url(""), CHAT, &s, body()).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "Hello from a! You said: Hello"
    );
    // The query is signed too.
    let path = "/v1/chat/completions?trace=1";
    let s = signed("team-a", SECRET, "POST", path, now(), &body());
    assert_eq!(post(&gw.url(""), path, &s, body()).await.status(), 200);
    // A signed GET signs an empty body.
    let s = signed("team-a", SECRET, "GET", "/v1/models", now(), b"");
    let resp = within(
        client()
            .get(gw.url("/v1/models"))
            .header("x-switchyard-key-id", &s.key_id)
            .header("x-switchyard-timestamp", &s.timestamp)
            .header("x-switchyard-signature", &s.signature)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    // Bearer keys work beside signed ones; a key with only a secret has no bearer token.
    let resp = within(
        client()
            .post(gw.url(CHAT))
            .bearer_auth(BEARER)
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = within(
        client()
            .post(gw.url(CHAT))
            .bearer_auth(SECRET)
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(error_of(resp).await.1["code"], "invalid_api_key");
}

#[tokio::test]
async fn during_a_rotation_the_previous_secret_verifies_until_it_is_dropped() {
    const NEW: &str = "hmac-secret-of-team-a-rotated-0123456789";
    let a = Mock::start("a", "").await;
    let rotating = format!(
        "[[keys]]\nname = \"team-a\"\nhmac_secret = \"{NEW}\"\n\
         hmac_secret_previous = \"{SECRET}\"\n"
    );
    let gw = TestGateway::start(&config_for(&[&a], &rotating)).await;
    for secret in [NEW, SECRET] {
        let s = signed("team-a", secret, "POST", CHAT, now(), &body());
        assert_eq!(post(&gw.url(""), CHAT, &s, body()).await.status(), 200);
    }
    let other = signed(
        "team-a",
        "a-third-secret-0123456789abcdef0123",
        "POST",
        CHAT,
        now(),
        &body(),
    );
    let (status, error) = error_of(post(&gw.url(""), CHAT, &other, body()).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (401, Some("signature_invalid"))
    );
    // Once the rotation is over, the old secret is refused like any other.
    let done = format!("[[keys]]\nname = \"team-a\"\nhmac_secret = \"{NEW}\"\n");
    let gw = TestGateway::start(&config_for(&[&a], &done)).await;
    let old = signed("team-a", SECRET, "POST", CHAT, now(), &body());
    let (status, error) = error_of(post(&gw.url(""), CHAT, &old, body()).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (401, Some("signature_invalid"))
    );
    let s = signed("team-a", NEW, "POST", CHAT, now(), &body());
    assert_eq!(post(&gw.url(""), CHAT, &s, body()).await.status(), 200);
}

#[tokio::test]
async fn a_retimed_or_stale_signature_is_refused() {
    let a = Mock::start("a", "").await;
    let gw = TestGateway::start(&config_for(&[&a], &keys())).await;
    // The timestamp moved after signing: the signature no longer matches.
    let mut s = signed("team-a", SECRET, "POST", CHAT, now(), &body());
    s.timestamp = (now() - 5).to_string();
    let (status, error) = error_of(post(&gw.url(""), CHAT, &s, body()).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (401, Some("signature_invalid"))
    );
    // Signed right, but ten minutes ago: outside ±300 s, and the message says by how much.
    let s = signed("team-a", SECRET, "POST", CHAT, now() - 600, &body());
    let (status, error) = error_of(post(&gw.url(""), CHAT, &s, body()).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (401, Some("signature_expired"))
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("s behind the gateway's clock"),
        "{message}"
    );
    assert!(message.contains("±300 s"), "{message}");
    // From the future, too.
    let s = signed("team-a", SECRET, "POST", CHAT, now() + 900, &body());
    let (_, error) = error_of(post(&gw.url(""), CHAT, &s, body()).await).await;
    assert_eq!(error["code"], "signature_expired");
    assert!(error["message"].as_str().unwrap().contains("ahead of"));
    assert_eq!(a.stats().await["requests"], 0);
}

#[tokio::test]
async fn a_body_swapped_after_signing_is_refused() {
    let a = Mock::start("a", "").await;
    let gw = TestGateway::start(&config_for(&[&a], &keys())).await;
    let s = signed("team-a", SECRET, "POST", CHAT, now(), &body());
    let other = serde_json::to_vec(&json!({
        "model": "gpt-4o-mini",
        "messages": [{ "role": "user", "content": "Something else entirely" }]
    }))
    .unwrap();
    let (status, error) = error_of(post(&gw.url(""), CHAT, &s, other).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (401, Some("signature_invalid"))
    );
    // One byte of whitespace is enough.
    let mut spaced = body();
    spaced.push(b' ');
    let (_, error) = error_of(post(&gw.url(""), CHAT, &s, spaced).await).await;
    assert_eq!(error["code"], "signature_invalid");
    // Another path, same body.
    let (_, error) = error_of(post(&gw.url(""), "/v1/chat/completions?x", &s, body()).await).await;
    assert_eq!(error["code"], "signature_invalid");
    assert_eq!(a.stats().await["requests"], 0);
}

#[tokio::test]
async fn an_unknown_key_id_and_a_wrong_signature_get_the_same_answer() {
    let a = Mock::start("a", "").await;
    let gw = TestGateway::start(&config_for(&[&a], &keys())).await;
    let unknown = signed("team-z", SECRET, "POST", CHAT, now(), &body());
    let wrong = signed(
        "team-a",
        "not-the-secret-0123456789abcdef0",
        "POST",
        CHAT,
        now(),
        &body(),
    );
    // A bearer key's name is not a signing key either.
    let bearer_only = signed("team-b", BEARER, "POST", CHAT, now(), &body());
    let answers = [
        error_of(post(&gw.url(""), CHAT, &unknown, body()).await).await,
        error_of(post(&gw.url(""), CHAT, &wrong, body()).await).await,
        error_of(post(&gw.url(""), CHAT, &bearer_only, body()).await).await,
    ];
    for (status, error) in &answers {
        assert_eq!(*status, 401);
        assert_eq!(error["code"], "signature_invalid");
    }
    assert_eq!(answers[0].1, answers[1].1);
    assert_eq!(answers[0].1, answers[2].1);
    let text = answers[0].1.to_string();
    assert!(
        !text.contains("team-z") && !text.contains("team-a"),
        "{text}"
    );
}

#[tokio::test]
async fn a_replayed_signature_is_refused_by_the_same_gateway() {
    let a = Mock::start("a", "").await;
    let gw = TestGateway::start(&config_for(&[&a], &keys())).await;
    let s = signed("team-a", SECRET, "POST", CHAT, now(), &body());
    assert_eq!(post(&gw.url(""), CHAT, &s, body()).await.status(), 200);
    let (status, error) = error_of(post(&gw.url(""), CHAT, &s, body()).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (401, Some("signature_replayed"))
    );
    assert_eq!(a.stats().await["requests"], 1);
    // A fresh signature of the same request is a new request.
    let again = signed("team-a", SECRET, "POST", CHAT, now() + 1, &body());
    assert_eq!(post(&gw.url(""), CHAT, &again, body()).await.status(), 200);
}

#[tokio::test]
async fn a_signature_replayed_to_another_replica_is_refused_through_redis() {
    let redis = RedisServer::start();
    let a = Mock::start("a", "").await;
    let state = format!("[state]\nredis_url = \"{}\"\n{}", redis.url(), keys());
    let one = TestGateway::start(&config_for(&[&a], &state)).await;
    let two = TestGateway::start(&config_for(&[&a], &state)).await;
    let s = signed("team-a", SECRET, "POST", CHAT, now(), &body());
    assert_eq!(post(&one.url(""), CHAT, &s, body()).await.status(), 200);
    let (status, error) = error_of(post(&two.url(""), CHAT, &s, body()).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (401, Some("signature_replayed"))
    );
    // The other way round, with a new signature.
    let s = signed("team-a", SECRET, "POST", CHAT, now() + 1, &body());
    assert_eq!(post(&two.url(""), CHAT, &s, body()).await.status(), 200);
    let (_, error) = error_of(post(&one.url(""), CHAT, &s, body()).await).await;
    assert_eq!(error["code"], "signature_replayed");
    assert_eq!(a.stats().await["requests"], 2);
}

#[tokio::test]
async fn a_grpc_call_is_signed_over_its_encoded_message() {
    let a = Mock::start("a", "").await;
    let gw = TestGateway::start(&config_for(&[&a], &keys())).await;
    let mut grpc = within(GatewayClient::connect(format!("http://{}", gw.addr)))
        .await
        .unwrap();
    let message = grpc_hello();
    let request = |s: &Signed, message: pb::ChatRequest| {
        let mut r = tonic::Request::new(message);
        let md = r.metadata_mut();
        md.insert("x-switchyard-key-id", s.key_id.parse().unwrap());
        md.insert("x-switchyard-timestamp", s.timestamp.parse().unwrap());
        md.insert("x-switchyard-signature", s.signature.parse().unwrap());
        r
    };
    let path = "/switchyard.v1.Gateway/Chat";
    let s = signed(
        "team-a",
        SECRET,
        "POST",
        path,
        now(),
        &message.encode_to_vec(),
    );
    let resp = within(grpc.chat(request(&s, message.clone())))
        .await
        .unwrap();
    let m = resp.into_inner().choices[0].message.clone().unwrap();
    assert_eq!(m.content.as_deref(), Some("Hello from a! You said: Hello"));
    // Replayed: refused, the code named in the message.
    let status = within(grpc.chat(request(&s, message.clone())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(
        status.message().starts_with("signature_replayed: "),
        "{}",
        status.message()
    );
    // Another message under the first one's signature.
    let mut other = message.clone();
    other.messages[0].content = Some("Something else".into());
    let s = signed(
        "team-a",
        SECRET,
        "POST",
        path,
        now() + 1,
        &message.encode_to_vec(),
    );
    let status = within(grpc.chat(request(&s, other))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().starts_with("signature_invalid: "));
    assert_eq!(
        status.metadata().get("x-switchyard-error-code").unwrap(),
        "signature_invalid"
    );
    // Signed for the unary method, sent to the streaming one.
    let s = signed(
        "team-a",
        SECRET,
        "POST",
        path,
        now() + 2,
        &message.encode_to_vec(),
    );
    let status = within(grpc.chat_stream(request(&s, message.clone())))
        .await
        .unwrap_err();
    assert!(status.message().starts_with("signature_invalid: "));
    let stream_path = "/switchyard.v1.Gateway/ChatStream";
    let s = signed(
        "team-a",
        SECRET,
        "POST",
        stream_path,
        now() + 3,
        &message.encode_to_vec(),
    );
    assert!(within(grpc.chat_stream(request(&s, message))).await.is_ok());
}

#[tokio::test]
async fn the_request_log_names_the_key_and_method_and_never_a_secret() {
    let a = Mock::start("a", "").await;
    let dir = std::env::temp_dir().join(format!("switchyard-signed-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = config_for(&[&a], &keys());
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let served = Served::start(&["--config", "switchyard.toml"], &dir);
    let url = format!("http://{}", served.http);
    let s = signed("team-a", SECRET, "POST", CHAT, now(), &body());
    assert_eq!(post(&url, CHAT, &s, body()).await.status(), 200);
    let line = served.wait_for("\"request_id\"");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["key"], "team-a");
    assert_eq!(v["auth_method"], "hmac");
    // Refusals are logged without a key, and nothing secret shows anywhere.
    let bad = signed(
        "team-a",
        "wrong-secret-0123456789abcdef0123",
        "POST",
        CHAT,
        now(),
        &body(),
    );
    assert_eq!(post(&url, CHAT, &bad, body()).await.status(), 401);
    let resp = within(
        client()
            .post(format!("{url}{CHAT}"))
            .bearer_auth(BEARER)
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let line = served.wait_for("\"auth_method\":\"bearer\"");
    assert!(line.contains("\"key\":\"team-b\""), "{line}");
    let rest = served.drain();
    for text in [&line, &rest] {
        for secret in [SECRET, BEARER, &s.signature[3..], &bad.signature[3..]] {
            assert!(!text.contains(secret), "a secret in the log: {text}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn with_redis_down_replays_are_refused_per_replica_when_open_and_signed_calls_503_when_closed()
 {
    let mut redis = RedisServer::start();
    let a = Mock::start("a", "").await;
    let state = |mode: &str| {
        format!(
            "[state]\nredis_url = \"{}\"\nredis_timeout_ms = 200\non_redis_error = \"{mode}\"\n{}",
            redis.url(),
            keys()
        )
    };
    let open = TestGateway::start(&config_for(&[&a], &state("open"))).await;
    let closed = TestGateway::start(&config_for(&[&a], &state("closed"))).await;
    redis.kill();
    let s = signed("team-a", SECRET, "POST", CHAT, now(), &body());
    assert_eq!(post(&open.url(""), CHAT, &s, body()).await.status(), 200);
    let (_, error) = error_of(post(&open.url(""), CHAT, &s, body()).await).await;
    assert_eq!(error["code"], "signature_replayed");
    let s = signed("team-a", SECRET, "POST", CHAT, now() + 1, &body());
    let resp = post(&closed.url(""), CHAT, &s, body()).await;
    assert!(!header(&resp, "retry-after").is_empty());
    let (status, _) = error_of(resp).await;
    assert_eq!(status, 503);
    // Refused unchecked, not remembered: the same request is served once Redis is back.
    redis.restart();
    let served = within(async {
        loop {
            let resp = post(&closed.url(""), CHAT, &s, body()).await;
            if resp.status() != 503 {
                return resp;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(served.status(), 200);
    // Bearer calls do not depend on Redis.
    let resp = within(
        client()
            .post(closed.url(CHAT))
            .bearer_auth(BEARER)
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
}
