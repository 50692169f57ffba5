//! Bodies are read under their limits against a real socket, however much the server sends.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::*;

/// A server answering one request with `head` and then 1 KiB chunks that never end.
async fn endless(head: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await;
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut chunk = b"400\r\n".to_vec();
        chunk.extend([b' '; 1024]);
        chunk.extend(b"\r\n");
        // Stops when the client hangs up.
        while socket.write_all(&chunk).await.is_ok() {}
    });
    format!("http://{addr}/v1/chat")
}

fn upstream(url: &str, limit: usize) -> Upstream {
    let client = crate::providers::client::Client::new(Duration::from_secs(5)).unwrap();
    Upstream::new(client, url, Vec::new(), limit).unwrap()
}

#[tokio::test]
async fn a_body_that_never_ends_is_cut_at_max_response_bytes() {
    let url = endless("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
    let up = upstream(&url, 64 * 1024);
    let answer = up.post(b"{}".to_vec(), false).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), up.body(answer))
        .await
        .expect("reading stops at the limit")
        .unwrap_err();
    assert_eq!(err.label(), "malformed");
    assert!(
        err.to_string().contains("max_response_bytes (65536 bytes)"),
        "{err}"
    );
}

#[tokio::test]
async fn an_announced_length_past_the_limit_is_refused_before_reading() {
    let url = endless("HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n").await;
    let up = upstream(&url, 1024);
    let answer = up.post(b"{}".to_vec(), false).await.unwrap();
    let err = up.body(answer).await.unwrap_err();
    assert_eq!(err.label(), "malformed");
}

#[tokio::test]
async fn an_error_body_that_never_ends_keeps_its_status() {
    let url =
        endless("HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n").await;
    let up = upstream(&url, 1024);
    let err = tokio::time::timeout(Duration::from_secs(10), up.post(b"{}".to_vec(), false))
        .await
        .expect("reading stops at the error-body limit")
        .unwrap_err();
    assert_eq!(err.label(), "503");
    assert!(err.is_retryable());
}
