//! Caller authentication per request, on a 4 KB chat body: a bearer key (digest lookup),
//! an HMAC-signed request (header checks, SHA-256 of the body, HMAC, replay set), and a
//! JWT with its signing key cached (RS256, ES256, EdDSA) — seen for the first time (the
//! signature checked) and seen again (the verified-token cache) — through the same `Keys`
//! the gateway uses.
//!
//! `cargo bench --bench auth`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::{cell::RefCell, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use ring::{
    rand::SystemRandom,
    signature::{self as sig, KeyPair},
};
use serde_json::json;
use switchyard::{
    auth::{AuthState, Authenticated, CallerHeaders, Keys, signed},
    config::Config,
};

const SECRET: &str = "hmac-secret-of-team-a-0123456789abcdef";
const BEARER: &str = "sk-team-b-0123456789abcdef";

/// A chat request of about 4 KB.
fn body() -> Vec<u8> {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(88);
    serde_json::to_vec(&json!({ "model": "gpt-4o-mini",
        "messages": [{ "role": "user", "content": text }] }))
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn headers(pairs: &[(&str, &str)]) -> CallerHeaders {
    CallerHeaders::collect(pairs.iter().map(|(n, v)| (*n, v.as_bytes())))
}

/// The config: one signing key, one bearer key, one JWT-mapped key, keys in `jwks`.
fn keys(jwks: &std::path::Path) -> Keys {
    switchyard::telemetry::install_crypto_provider();
    let text = format!(
        "[[providers]]\nname = \"p\"\nkind = \"vllm\"\n\
         [[models]]\nname = \"gpt-4o-mini\"\ndeployments = [{{ provider = \"p\", model = \"m\" }}]\n\
         [[keys]]\nname = \"team-a\"\nhmac_secret = \"{SECRET}\"\n\
         [[keys]]\nname = \"team-b\"\nkey = \"{BEARER}\"\n\
         [[keys]]\nname = \"team-c\"\n\
         [[jwt]]\nissuer = \"https://idp\"\naudience = \"gw\"\njwks_file = \"{}\"\nrefresh_s = 86400\n",
        jwks.display()
    );
    let config = Config::parse(&text).unwrap();
    Keys::build(
        &config,
        &reqwest::Client::new(),
        Arc::new(AuthState::new(None)),
    )
    .unwrap()
}

/// Signs JWTs for the benchmark's keys.
struct Tokens {
    rsa: sig::RsaKeyPair,
    ec: sig::EcdsaKeyPair,
    ed: sig::Ed25519KeyPair,
}

impl Tokens {
    fn new() -> Tokens {
        let rng = SystemRandom::new();
        let der = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/keys/jwt-rsa-a.der"
        ))
        .unwrap();
        let alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
        let ec = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let ed = sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Tokens {
            rsa: sig::RsaKeyPair::from_der(&der).unwrap(),
            ec: sig::EcdsaKeyPair::from_pkcs8(alg, ec.as_ref(), &rng).unwrap(),
            ed: sig::Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap(),
        }
    }

    fn jwks(&self) -> serde_json::Value {
        let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(self.rsa.public());
        let p = self.ec.public_key().as_ref();
        json!({ "keys": [
            { "kty": "RSA", "kid": "rsa", "n": B64.encode(&c.n), "e": B64.encode(&c.e) },
            { "kty": "EC", "kid": "ec", "crv": "P-256",
              "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65]) },
            { "kty": "OKP", "kid": "ed", "crv": "Ed25519",
              "x": B64.encode(self.ed.public_key().as_ref()) },
        ]})
    }

    /// A token; `n` makes it unique (a `jti`), so that it has not been verified before.
    fn token(&self, kid: &str, n: usize) -> String {
        let alg = match kid {
            "rsa" => "RS256",
            "ec" => "ES256",
            _ => "EdDSA",
        };
        let claims = json!({ "iss": "https://idp", "aud": "gw", "sub": "team-c",
                             "exp": now() + 86_400, "jti": n.to_string() });
        let message = format!(
            "{}.{}",
            B64.encode(json!({ "alg": alg, "kid": kid, "typ": "JWT" }).to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match kid {
            "rsa" => {
                let mut out = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(&sig::RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut out)
                    .unwrap();
                out
            }
            "ec" => self
                .ec
                .sign(&rng, message.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            _ => self.ed.sign(message.as_bytes()).as_ref().to_vec(),
        };
        format!("{message}.{}", B64.encode(signature))
    }
}

fn benches(c: &mut Criterion) {
    let tokens = Tokens::new();
    let dir = std::env::temp_dir().join(format!("switchyard-auth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, tokens.jwks().to_string()).unwrap();
    let body = body();
    assert!((3_900..4_300).contains(&body.len()), "{}", body.len());

    let mut group = c.benchmark_group("auth");
    group.measurement_time(Duration::from_secs(3));

    let k = keys(&jwks);
    let bearer = format!("Bearer {BEARER}");
    group.bench_function("bearer", |b| {
        b.iter(|| {
            let h = headers(&[("authorization", &bearer)]);
            let done = k.authenticate(h).now_or_never().unwrap().unwrap();
            assert!(matches!(done, Authenticated::Caller(_)));
        })
    });

    // A fresh signature per request (each is remembered against replays); the keys (and
    // their replay set) are renewed before the set could fill up. Signing is the
    // client's cost and stays outside the measurement.
    let k = RefCell::new(keys(&jwks));
    let mut n: u64 = 0;
    group.bench_function("hmac_4kb", |b| {
        b.iter_batched(
            || {
                n += 1;
                if n.is_multiple_of(400_000) {
                    *k.borrow_mut() = keys(&jwks);
                }
                let target = format!("/v1/chat/completions?n={n}");
                let ts = now().to_string();
                let signature = signed::sign(SECRET.as_bytes(), "POST", &target, &ts, &body);
                (target, ts, signature)
            },
            |(target, ts, signature)| {
                let h = headers(&[
                    ("x-switchyard-key-id", "team-a"),
                    ("x-switchyard-timestamp", &ts),
                    ("x-switchyard-signature", &signature),
                ])
                .with_target("POST", &target);
                let keys = k.borrow();
                let Authenticated::Signed(pending) =
                    keys.authenticate(h).now_or_never().unwrap().unwrap()
                else {
                    unreachable!()
                };
                let digest = signed::BodyDigest::of(&body);
                keys.verify_signed(*pending, &digest)
                    .now_or_never()
                    .unwrap()
                    .unwrap();
            },
            BatchSize::SmallInput,
        )
    });

    // A token seen for the first time: the signature is checked. A pool of distinct
    // tokens, the keys (and their verified-token cache) renewed, untimed, whenever the
    // pool comes round again, so that no measured call is a cache hit.
    const POOL: usize = 2_000;
    for kid in ["rsa", "ec", "ed"] {
        let name = match kid {
            "rsa" => "rs256",
            "ec" => "es256",
            _ => "eddsa",
        };
        let pool: Vec<String> = (0..POOL)
            .map(|n| format!("Bearer {}", tokens.token(kid, n)))
            .collect();
        let k = RefCell::new(keys(&jwks));
        let mut n: usize = 0;
        group.bench_function(format!("jwt_{name}_first_sight"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    if n.is_multiple_of(POOL) {
                        *k.borrow_mut() = keys(&jwks);
                    }
                    pool[n % POOL].clone()
                },
                |token| {
                    let h = headers(&[("authorization", &token)]);
                    let done = k.borrow().authenticate(h).now_or_never().unwrap().unwrap();
                    assert!(matches!(done, Authenticated::Caller(_)));
                },
                BatchSize::SmallInput,
            )
        });
        // The same token again (a client reuses its token until it expires).
        let k = keys(&jwks);
        let token = format!("Bearer {}", tokens.token(kid, POOL + 1));
        group.bench_function(format!("jwt_{name}_again"), |b| {
            b.iter(|| {
                let h = headers(&[("authorization", &token)]);
                let done = k.authenticate(h).now_or_never().unwrap().unwrap();
                assert!(matches!(done, Authenticated::Caller(_)));
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(auth, benches);
criterion_main!(auth);
