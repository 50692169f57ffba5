//! Metric labels come only from the catalog and config: requests for models nobody
//! configured, however many, add no Prometheus series. (Its own test binary, so no other
//! test shares its process-global recorder under `cargo test`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use std::collections::BTreeSet;

use common::*;
use futures_util::{StreamExt, stream};
use serde_json::json;

/// The series `/metrics` exposes: every sample line.
fn series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').map_or(l, |(name, _)| name))
        .collect()
}

#[tokio::test]
async fn ten_thousand_random_model_names_leave_the_series_count_unchanged() {
    let mock = Mock::start("p", "").await;
    let gw = TestGateway::serving(&[&mock]).await;
    // One client for all of them: building a client loads the root certificates each time.
    let http = client();
    let url = gw.url("/v1/chat/completions");
    let ask = |model: String| {
        let (http, url) = (&http, &url);
        async move {
            let body = json!({ "model": model, "messages": [{"role": "user", "content": "x"}] });
            let sent = within(http.post(url).json(&body).send()).await;
            sent.unwrap().status().as_u16()
        }
    };
    // One unknown model and one known first, so every series such requests touch exists.
    assert_eq!(ask("warm-up-unknown".to_owned()).await, 404);
    assert_eq!(ask("gpt-4o-mini".to_owned()).await, 200);
    let before = gw.metrics().await;
    let statuses: Vec<u16> = stream::iter(0..10_000)
        .map(|i| ask(format!("rnd-{i}-{:016x}", fastrand::u64(..))))
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 404));
    let after = gw.metrics().await;
    assert_eq!(series(&before).len(), series(&after).len());
    assert!(
        !after.contains("rnd-"),
        "a caller's model name became a label"
    );
    assert!(after.contains("model=\"unknown\""));
}

/// A random lowercase token of `n` characters.
fn token(n: usize) -> String {
    (0..n).map(|_| fastrand::lowercase()).collect()
}

#[tokio::test]
async fn random_models_keys_paths_and_headers_leave_the_series_count_flat() {
    const KEY: &str = "sk-labels-test-key-0001";
    let mock = Mock::start("p", "").await;
    let broken = Mock::start("q", "status=500").await;
    let keys = format!(
        "{FAST}[[keys]]\nname = \"team\"\nkey = \"{KEY}\"\nmax_security_level = \"medium\"\n"
    );
    let mut config = config_for(&[&mock], &keys);
    // A second model whose only deployment fails: provider errors with their labels.
    config.push_str("\n[[providers]]\nname = \"q\"\nkind = \"openai\"\napi_key = \"sk-test-q\"\n");
    config.push_str(&format!("base_url = \"{}\"\n", broken.base_url()));
    config.push_str(
        "\n[[models]]\nname = \"broken\"\ndeployments = [{ provider = \"q\", model = \"m\" }]\n",
    );
    let gw = TestGateway::start(&config).await;
    let http = client();
    // One round: each kind of random input once.
    let round = || {
        let (http, gw) = (&http, &gw);
        async move {
            let chat = |model: String| json!({ "model": model, "messages": [{"role": "user", "content": token(8)}] });
            let send = |req: reqwest::RequestBuilder| async move {
                within(req.send()).await.unwrap().status().as_u16()
            };
            let url = gw.url("/v1/chat/completions");
            let ok = http.post(&url).bearer_auth(KEY);
            // A random model name.
            assert_eq!(
                send(ok.try_clone().unwrap().json(&chat(token(12)))).await,
                404
            );
            // A random key.
            let stranger = http.post(&url).bearer_auth(format!("sk-{}", token(24)));
            assert_eq!(send(stranger.json(&chat("gpt-4o-mini".into()))).await, 401);
            // A random path, with and without the key.
            let path = gw.url(&format!("/v1/{}/{}", token(6), token(10)));
            assert_eq!(send(http.post(&path).bearer_auth(KEY)).await, 404);
            assert_eq!(send(http.get(&path)).await, 404);
            // Random headers on a request that is served, and on ones that are refused.
            let served = ok
                .try_clone()
                .unwrap()
                .header(format!("x-route-{}", token(5)), token(9))
                .header(format!("x-{}", token(7)), token(9))
                .header(
                    "traceparent",
                    format!(
                        "00-{:032x}-{:016x}-01",
                        fastrand::u128(1..),
                        fastrand::u64(1..)
                    ),
                )
                .header("cache-control", token(6))
                .header("x-request-id", token(20))
                .json(&chat("gpt-4o-mini".into()));
            assert_eq!(send(served).await, 200);
            let level = ok
                .try_clone()
                .unwrap()
                .header("x-security-level", token(6))
                .json(&chat("gpt-4o-mini".into()));
            assert_eq!(send(level).await, 400);
            let above = ok
                .try_clone()
                .unwrap()
                .header("x-security-level", "high")
                .json(&chat("gpt-4o-mini".into()));
            assert_eq!(send(above).await, 403);
            assert_eq!(send(ok.json(&chat("broken".into()))).await, 500);
        }
    };
    for _ in 0..10 {
        round().await;
    }
    let after_10 = gw.metrics().await;
    for _ in 0..40 {
        round().await;
    }
    let after_50 = gw.metrics().await;
    let (ten, fifty): (BTreeSet<&str>, BTreeSet<&str>) = (
        series(&after_10).into_iter().collect(),
        series(&after_50).into_iter().collect(),
    );
    let new: Vec<_> = fifty.symmetric_difference(&ten).collect();
    assert!(
        new.is_empty(),
        "series changed under random input: {new:#?}"
    );
    for label in [
        "error_type=\"caller\"",
        "error_type=\"policy\"",
        "error_type=\"provider\"",
        "gen_ai_client_token_usage_bucket",
        "gen_ai_client_operation_duration_seconds_bucket",
    ] {
        assert!(after_50.contains(label), "{label} missing");
    }
}
