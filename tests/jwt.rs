//! JWT bearer tokens over real sockets: RS256, ES256 and EdDSA tokens from a JWKS file or
//! a JWKS URL served by a local server; expired, premature, wrong-audience, wrong-issuer
//! tokens and tokens signed with another key refused with their codes; an unknown `kid`
//! fetches the key set again (rate-limited); the set is read again on its interval; the
//! claim maps the token to a configured key whose permissions then apply.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use common::*;
use ring::{
    rand::SystemRandom,
    signature::{self as sig, KeyPair},
};
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "switchyard";

/// A signing key of one of the three algorithms, and its public JWK.
enum Signer {
    Rsa(sig::RsaKeyPair),
    Ec(sig::EcdsaKeyPair),
    Ed(sig::Ed25519KeyPair),
}

struct TestKey {
    kid: String,
    signer: Signer,
}

impl TestKey {
    fn rsa(kid: &str, file: &str) -> TestKey {
        let der =
            std::fs::read(format!("{}/tests/keys/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        TestKey {
            kid: kid.into(),
            signer: Signer::Rsa(sig::RsaKeyPair::from_der(&der).unwrap()),
        }
    }

    fn ec(kid: &str) -> TestKey {
        let rng = SystemRandom::new();
        let alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        TestKey {
            kid: kid.into(),
            signer: Signer::Ec(sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap()),
        }
    }

    fn ed(kid: &str) -> TestKey {
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        TestKey {
            kid: kid.into(),
            signer: Signer::Ed(sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()),
        }
    }

    fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
            Signer::Ed(_) => "EdDSA",
        }
    }

    fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Rsa(k) => {
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({ "kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                        "n": B64.encode(&c.n), "e": B64.encode(&c.e) })
            }
            Signer::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({ "kty": "EC", "kid": self.kid, "crv": "P-256",
                        "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65]) })
            }
            Signer::Ed(k) => json!({ "kty": "OKP", "kid": self.kid, "crv": "Ed25519",
                                     "x": B64.encode(k.public_key().as_ref()) }),
        }
    }

    /// A token with these claims, signed by this key under `kid`.
    fn token_as(&self, kid: &str, claims: &Value) -> String {
        let header = json!({ "alg": self.alg(), "typ": "JWT", "kid": kid });
        let message = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match &self.signer {
            Signer::Rsa(k) => {
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(&sig::RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut out)
                    .unwrap();
                out
            }
            Signer::Ec(k) => k.sign(&rng, message.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Ed(k) => k.sign(message.as_bytes()).as_ref().to_vec(),
        };
        format!("{message}.{}", B64.encode(signature))
    }

    fn token(&self, claims: &Value) -> String {
        self.token_as(&self.kid, claims)
    }
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims for `sub`, valid for an hour.
fn claims(sub: &str) -> Value {
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now(), "exp": now() + 3600 })
}

/// Two keys: team-a may use every model, team-b only `other-model`.
fn keys() -> &'static str {
    "[[keys]]\nname = \"team-a\"\n\
     [[keys]]\nname = \"team-b\"\nallowed_models = [\"other-model\"]\n\
     [[keys]]\nname = \"team-c\"\nkey = \"sk-team-c-0123456789\"\n"
}

/// A config with team-b's model added.
fn with_other_model(config: String, mock: &Mock) -> String {
    format!(
        "{config}\n[[models]]\nname = \"other-model\"\ndeployments = [{{ provider = \"{}\", \
         model = \"upstream-other\" }}]\n",
        mock.name
    )
}

async fn chat_with(gw: &TestGateway, token: &str) -> reqwest::Response {
    within(
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(token)
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap()
}

async fn refusal(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// A gateway whose `[[jwt]]` reads the keys from a file.
async fn gateway_with_file(set: &Value, extra: &str) -> (TestGateway, Mock, tempdir::Dir) {
    let a = Mock::start("a", "").await;
    let dir = tempdir::Dir::new();
    let path = dir.path.join("jwks.json");
    std::fs::write(&path, set.to_string()).unwrap();
    let jwt = format!(
        "[[jwt]]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"{}\"\n\
         leeway_s = 30\n{extra}\n{}",
        path.display(),
        keys()
    );
    let config = with_other_model(config_for(&[&a], &jwt), &a);
    (TestGateway::start(&config).await, a, dir)
}

mod tempdir {
    /// A folder removed when dropped.
    pub struct Dir {
        pub path: std::path::PathBuf,
    }

    impl Dir {
        pub fn new() -> Dir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("switchyard-jwt-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[tokio::test]
async fn tokens_signed_with_rs256_es256_and_eddsa_are_served_as_their_key() {
    let (rsa, ec, ed) = (
        TestKey::rsa("rsa-1", "jwt-rsa-a.der"),
        TestKey::ec("ec-1"),
        TestKey::ed("ed-1"),
    );
    let (gw, a, _dir) = gateway_with_file(&jwks(&[&rsa, &ec, &ed]), "").await;
    for key in [&rsa, &ec, &ed] {
        let resp = chat_with(&gw, &key.token(&claims("team-a"))).await;
        assert_eq!(resp.status(), 200, "{}", key.alg());
    }
    assert_eq!(a.stats().await["requests"], 3);
    // Bearer keys still work beside tokens.
    assert_eq!(chat_with(&gw, "sk-team-c-0123456789").await.status(), 200);
    // /v1/models lists what the token's key may use.
    let resp = within(
        client()
            .get(gw.url("/v1/models"))
            .bearer_auth(ed.token(&claims("team-b")))
            .send(),
    )
    .await
    .unwrap();
    let models: Value = resp.json().await.unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["other-model"]);
}

#[tokio::test]
async fn expired_premature_and_foreign_tokens_are_refused_with_their_codes() {
    let key = TestKey::ec("ec-1");
    let (gw, a, _dir) = gateway_with_file(&jwks(&[&key]), "").await;
    let mut expired = claims("team-a");
    expired["exp"] = json!(now() - 120);
    assert_eq!(
        refusal(chat_with(&gw, &key.token(&expired)).await).await,
        (401, "token_expired".into())
    );
    // Inside the 30 s leeway it still counts.
    expired["exp"] = json!(now() - 10);
    assert_eq!(chat_with(&gw, &key.token(&expired)).await.status(), 200);
    let mut premature = claims("team-a");
    premature["nbf"] = json!(now() + 600);
    assert_eq!(
        refusal(chat_with(&gw, &key.token(&premature)).await).await,
        (401, "token_invalid".into())
    );
    let mut audience = claims("team-a");
    audience["aud"] = json!("another-service");
    assert_eq!(
        refusal(chat_with(&gw, &key.token(&audience)).await).await,
        (401, "token_audience".into())
    );
    let mut issuer = claims("team-a");
    issuer["iss"] = json!("https://evil.example.test");
    assert_eq!(
        refusal(chat_with(&gw, &key.token(&issuer)).await).await,
        (401, "token_invalid".into())
    );
    let mut no_exp = claims("team-a");
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        refusal(chat_with(&gw, &key.token(&no_exp)).await).await,
        (401, "token_invalid".into())
    );
    // The same kid, another key: the signature does not verify.
    let impostor = TestKey::ec("ec-1");
    assert_eq!(
        refusal(chat_with(&gw, &impostor.token(&claims("team-a"))).await).await,
        (401, "token_invalid".into())
    );
    let rsa_impostor = TestKey::rsa("ec-1", "jwt-rsa-b.der");
    assert_eq!(
        refusal(chat_with(&gw, &rsa_impostor.token(&claims("team-a"))).await).await,
        (401, "token_invalid".into())
    );
    // A token altered after signing.
    let token = key.token(&claims("team-b"));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = B64.encode(claims("team-a").to_string());
    assert_eq!(
        refusal(chat_with(&gw, &parts.join(".")).await).await,
        (401, "token_invalid".into())
    );
    // `alg: none` and an HMAC token signed with the public key are not accepted.
    let none = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none", "kid": "ec-1"}).to_string()),
        B64.encode(claims("team-a").to_string())
    );
    assert_eq!(refusal(chat_with(&gw, &none).await).await.0, 401);
    assert_eq!(a.stats().await["requests"], 1);
}

#[tokio::test]
async fn the_claim_maps_the_token_to_a_key_whose_permissions_apply() {
    let key = TestKey::ed("ed-1");
    let (gw, _a, _dir) = gateway_with_file(&jwks(&[&key]), "key_claim = \"groups\"").await;
    let mut c = claims("someone@example.test");
    c["groups"] = json!(["staff", "team-b"]);
    // team-b may not use gpt-4o-mini: 403, named.
    let resp = chat_with(&gw, &key.token(&c)).await;
    assert_eq!(refusal(resp).await, (403, "model_not_allowed".into()));
    let body = json!({ "model": "other-model",
                       "messages": [{ "role": "user", "content": "Hello" }] });
    let resp = within(
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key.token(&c))
            .json(&body)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    // A valid token whose claim names no key.
    c["groups"] = json!(["staff"]);
    assert_eq!(
        refusal(chat_with(&gw, &key.token(&c)).await).await,
        (403, "token_not_mapped".into())
    );
}

/// A JWKS endpoint whose document can be swapped, counting its fetches.
struct JwksServer {
    addr: SocketAddr,
    doc: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(doc: Value) -> JwksServer {
        let doc = Arc::new(Mutex::new(doc));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (d, f) = (doc.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (d, f) = (d.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(d.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksServer { addr, doc, fetches }
    }

    fn set(&self, doc: Value) {
        *self.doc.lock().unwrap() = doc;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn gateway_with_url(server: &JwksServer, refresh_s: u64) -> (TestGateway, Mock) {
    let a = Mock::start("a", "").await;
    let jwt = format!(
        "[[jwt]]\nissuer = \"{ISSUER}\"\naudience = [\"other\", \"{AUDIENCE}\"]\n\
         jwks_url = \"http://{}/.well-known/jwks.json\"\nrefresh_s = {refresh_s}\n{}",
        server.addr,
        keys()
    );
    let config = with_other_model(config_for(&[&a], &jwt), &a);
    (TestGateway::start(&config).await, a)
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_key_set_again_at_most_once_per_ten_seconds() {
    let old = TestKey::rsa("rsa-1", "jwt-rsa-a.der");
    let server = JwksServer::start(jwks(&[&old])).await;
    let (gw, _a) = gateway_with_url(&server, 3600).await;
    assert_eq!(server.fetches(), 0, "fetched on first use, not at start");
    assert_eq!(
        chat_with(&gw, &old.token(&claims("team-a"))).await.status(),
        200
    );
    assert_eq!(
        chat_with(&gw, &old.token(&claims("team-a"))).await.status(),
        200
    );
    assert_eq!(server.fetches(), 1, "the keys are cached");
    // The provider rotates in a new key: its first token fetches the set again.
    let new = TestKey::ec("ec-2");
    server.set(jwks(&[&old, &new]));
    assert_eq!(
        chat_with(&gw, &new.token(&claims("team-a"))).await.status(),
        200
    );
    assert_eq!(server.fetches(), 2);
    // Tokens with invented kids do not turn into fetches.
    for i in 0..5 {
        let stranger = TestKey::ec(&format!("invented-{i}"));
        assert_eq!(
            refusal(chat_with(&gw, &stranger.token(&claims("team-a"))).await).await,
            (401, "token_invalid".into())
        );
    }
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn the_key_set_is_read_again_on_its_interval() {
    let first = TestKey::ed("ed-1");
    let server = JwksServer::start(jwks(&[&first])).await;
    let (gw, _a) = gateway_with_url(&server, 1).await;
    assert_eq!(
        chat_with(&gw, &first.token(&claims("team-a")))
            .await
            .status(),
        200
    );
    assert_eq!(server.fetches(), 1);
    // The provider withdraws the key; once the interval has passed, a request starts a
    // refresh in the background (it is served with the keys in hand, waiting for no
    // fetch), and once the new set is in the withdrawn key's tokens are refused.
    server.set(jwks(&[&TestKey::ed("ed-2")]));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut answers = Vec::new();
    for _ in 0..100 {
        let resp = chat_with(&gw, &first.token(&claims("team-a"))).await;
        if resp.status() == 200 {
            answers.push(200);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        assert_eq!(refusal(resp).await, (401, "token_invalid".into()));
        answers.push(401);
        break;
    }
    assert_eq!(answers.last(), Some(&401), "never refused: {answers:?}");
    assert!(server.fetches() >= 2);
}

#[tokio::test]
async fn an_identity_provider_that_is_down_refuses_tokens_but_not_bearer_keys() {
    // A port nothing listens on.
    let (dead, _socket) = Mock::bound("dead");
    let a = Mock::start("a", "").await;
    let jwt = format!(
        "[[jwt]]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_url = \"http://{}/jwks\"\n{}",
        dead.addr,
        keys()
    );
    let gw = TestGateway::start(&with_other_model(config_for(&[&a], &jwt), &a)).await;
    let key = TestKey::ec("ec-1");
    assert_eq!(
        refusal(chat_with(&gw, &key.token(&claims("team-a"))).await).await,
        (401, "token_invalid".into())
    );
    assert_eq!(chat_with(&gw, "sk-team-c-0123456789").await.status(), 200);
}

#[tokio::test]
async fn a_grpc_call_carries_its_token_as_metadata() {
    use switchyard::api::grpc::pb::gateway_client::GatewayClient;
    let key = TestKey::ec("ec-1");
    let (gw, _a, _dir) = gateway_with_file(&jwks(&[&key]), "").await;
    let mut grpc = within(GatewayClient::connect(format!("http://{}", gw.addr)))
        .await
        .unwrap();
    let call = |token: String| {
        let mut r = tonic::Request::new(grpc_hello());
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    assert!(
        within(grpc.chat(call(key.token(&claims("team-a")))))
            .await
            .is_ok()
    );
    let mut expired = claims("team-a");
    expired["exp"] = json!(now() - 3600);
    let status = within(grpc.chat(call(key.token(&expired))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(
        status.message().starts_with("token_expired: "),
        "{}",
        status.message()
    );
    let status = within(grpc.chat(call(key.token(&claims("team-b")))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn the_request_log_names_the_key_and_jwt_and_never_the_token() {
    use common::process::Served;
    let key = TestKey::ed("ed-1");
    let a = Mock::start("a", "").await;
    let dir = tempdir::Dir::new();
    std::fs::write(dir.path.join("jwks.json"), jwks(&[&key]).to_string()).unwrap();
    let jwt = format!(
        "[[jwt]]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"jwks.json\"\n{}",
        keys()
    );
    let config = with_other_model(config_for(&[&a], &jwt), &a);
    std::fs::write(dir.path.join("switchyard.toml"), config).unwrap();
    let served = Served::start(&["--config", "switchyard.toml"], &dir.path);
    let url = format!("http://{}/v1/chat/completions", served.http);
    let send = |token: String| {
        let url = url.clone();
        async move {
            within(
                client()
                    .post(url)
                    .bearer_auth(token)
                    .json(&hello(false))
                    .send(),
            )
            .await
            .unwrap()
        }
    };
    let good = key.token(&claims("team-a"));
    assert_eq!(send(good.clone()).await.status(), 200);
    let line = served.wait_for("\"auth_method\":\"jwt\"");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["key"], "team-a");
    let mut expired = claims("team-a");
    expired["exp"] = json!(now() - 3600);
    let stale = key.token(&expired);
    let resp = send(stale.clone()).await;
    assert_eq!(resp.status(), 401);
    let body = resp.text().await.unwrap();
    let rest = served.drain();
    for text in [&body, &line, &rest] {
        for token in [&good, &stale] {
            // Neither the token nor its signature part.
            let signature = token.rsplit('.').next().unwrap();
            assert!(
                !text.contains(token.as_str()) && !text.contains(signature),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn a_reload_keeps_the_fetched_keys_and_a_changed_entry_fetches_anew() {
    use std::sync::Arc;
    use switchyard::{config::Config, gateway::Gateway};
    let key = TestKey::ec("ec-1");
    let server = JwksServer::start(jwks(&[&key])).await;
    let a = Mock::start("a", "").await;
    let text = |leeway: u64| {
        let jwt = format!(
            "[[jwt]]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\nleeway_s = {leeway}\n\
             jwks_url = \"http://{}/.well-known/jwks.json\"\n{}",
            server.addr,
            keys()
        );
        with_other_model(config_for(&[&a], &jwt), &a)
    };
    let gateway = Arc::new(Gateway::new(Config::parse(&text(60)).unwrap()).unwrap());
    let (addr, _stop) = serve(gateway.clone()).await;
    let chat = |token: String| async move {
        within(
            client()
                .post(format!("http://{addr}/v1/chat/completions"))
                .bearer_auth(token)
                .json(&hello(false))
                .send(),
        )
        .await
        .unwrap()
        .status()
    };
    assert_eq!(chat(key.token(&claims("team-a"))).await, 200);
    assert_eq!(server.fetches(), 1);
    // The same [[jwt]] after a reload: the keys fetched before serve, even with the
    // identity provider down now.
    server.set(json!({ "keys": "unavailable" }));
    gateway.reload(Config::parse(&text(60)).unwrap()).unwrap();
    assert_eq!(chat(key.token(&claims("team-b"))).await, 403);
    assert_eq!(chat(key.token(&claims("team-a"))).await, 200);
    assert_eq!(server.fetches(), 1);
    // A changed entry is another provider configuration: its keys are read afresh.
    server.set(jwks(&[&key]));
    gateway.reload(Config::parse(&text(30)).unwrap()).unwrap();
    assert_eq!(chat(key.token(&claims("team-a"))).await, 200);
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_token_acts_only_as_a_key_its_issuer_may_act_as() {
    let key = TestKey::ed("ed-1");
    // team-c has a bearer key of its own: a token naming it is not enough...
    let (gw, _a, _dir) = gateway_with_file(&jwks(&[&key]), "").await;
    assert_eq!(
        refusal(chat_with(&gw, &key.token(&claims("team-c"))).await).await,
        (403, "token_not_mapped".into())
    );
    // ...unless the issuer's `keys` names it; then only the keys named.
    let (gw, _a, _dir) = gateway_with_file(&jwks(&[&key]), "keys = [\"team-c\"]").await;
    assert_eq!(
        chat_with(&gw, &key.token(&claims("team-c"))).await.status(),
        200
    );
    assert_eq!(
        refusal(chat_with(&gw, &key.token(&claims("team-a"))).await).await,
        (403, "token_not_mapped".into())
    );
}
