//! Metric labels come only from the catalog and config: requests for models nobody
//! configured, however many, add no Prometheus series. (Its own test binary, so no other
//! test shares its process-global recorder under `cargo test`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

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
