//! Shutdown: when `run` returns, no background loop of the gateway is left running.

use std::time::Duration;

use super::*;
use crate::config::Config;
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[[providers]]
name = "a"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "k"
[[models]]
name = "chat"
deployments = [{ provider = "a", model = "m1" }]
"#;

#[tokio::test]
async fn shutdown_leaves_no_background_loop_running() {
    let gateway = Arc::new(Gateway::new(Config::parse(CONFIG).unwrap()).unwrap());
    let background = gateway.background().clone();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(run(
        Listeners { http, grpc: None },
        gateway,
        stop.clone().cancelled_owned(),
    ));
    // The alert sender and the metrics upkeep are up.
    let up = async {
        while background.tracker().len() < 2 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), up)
        .await
        .expect("the background loops did not start");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server did not stop within 5 s")
        .unwrap()
        .unwrap();
    let tracker = background.tracker();
    assert!(tracker.is_closed());
    assert!(
        tracker.is_empty(),
        "{} background loops still running after shutdown",
        tracker.len()
    );
    assert!(background.token().is_cancelled());
}
