//! The providers' client against real sockets: pooled keep-alive, and both ways through a
//! proxy (absolute URIs to a plain-http destination, a `CONNECT` tunnel to an https one).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

use super::*;

const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";

/// Reads one request head (to the blank line); `None` when the peer hung up first.
async fn read_head(socket: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A server that answers every request on every connection with `answer` (bodies are
/// `{}` and skipped by length), sending each request head on `heads` and counting
/// connections. An answer saying `connection: close` is followed by a hang-up.
async fn server(
    answer: &'static [u8],
) -> (String, mpsc::UnboundedReceiver<String>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(head) = read_head(&mut socket).await {
                    let mut body = [0u8; 2];
                    if head.to_ascii_lowercase().contains("content-length: 2") {
                        let _ = socket.read_exact(&mut body).await;
                    }
                    let _ = tx.send(head);
                    let closing = answer.windows(17).any(|w| w == b"connection: close");
                    if socket.write_all(answer).await.is_err() || closing {
                        return;
                    }
                }
            });
        }
    });
    (addr.to_string(), rx, accepted)
}

fn request(uri: &str) -> http::Request<Full<Bytes>> {
    post(uri.parse().unwrap(), http::HeaderMap::new(), b"{}".to_vec())
}

#[tokio::test]
async fn requests_reuse_one_pooled_connection_and_bodies_are_read_whole() {
    let (addr, mut heads, accepted) = server(OK).await;
    let client = Client::with_proxies(Duration::from_secs(2), None).unwrap();
    for _ in 0..3 {
        let mut answer = client
            .send(request(&format!("http://{addr}/v1/chat/completions")))
            .await
            .unwrap();
        assert_eq!(answer.status(), http::StatusCode::OK);
        assert_eq!(answer.content_length(), Some(2));
        assert_eq!(answer.chunk().await.unwrap().as_deref(), Some(&b"{}"[..]));
        assert_eq!(answer.chunk().await.unwrap(), None);
    }
    let head = heads.recv().await.unwrap();
    assert!(
        head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase().contains(&format!("host: {addr}")),
        "{head}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "keep-alive reuses the connection"
    );
}

#[tokio::test]
async fn a_plain_http_destination_goes_to_the_proxy_as_an_absolute_uri_with_its_credentials() {
    let (proxy, mut heads, _) = server(OK).await;
    let proxies = Matcher::builder()
        .http(format!("http://user:secret@{proxy}"))
        .build();
    let client = Client::with_proxies(Duration::from_secs(2), Some(proxies)).unwrap();
    let answer = client
        .send(request("http://provider.example:8080/v1/chat/completions"))
        .await
        .unwrap();
    assert_eq!(answer.status(), http::StatusCode::OK);
    let head = heads.recv().await.unwrap();
    assert!(
        head.starts_with("POST http://provider.example:8080/v1/chat/completions HTTP/1.1\r\n"),
        "{head}"
    );
    // base64("user:secret")
    assert!(
        head.to_ascii_lowercase()
            .contains("proxy-authorization: basic dxnlcjpzzwnyzxq="),
        "{head}"
    );
}

#[tokio::test]
async fn an_https_destination_is_tunnelled_with_connect_and_a_refused_tunnel_is_a_connect_error() {
    let (proxy, mut heads, _) =
        server(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").await;
    let proxies = Matcher::builder()
        .https(format!("http://user:secret@{proxy}"))
        .build();
    let client = Client::with_proxies(Duration::from_secs(2), Some(proxies)).unwrap();
    let err = client
        .send(request("https://api.provider.example/v1/chat/completions"))
        .await
        .expect_err("the proxy refused the tunnel");
    assert!(err.is_connect(), "{err:?}");
    let head = heads.recv().await.unwrap();
    assert!(
        head.starts_with("CONNECT api.provider.example:443 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("proxy-authorization: basic dxnlcjpzzwnyzxq="),
        "{head}"
    );
}

#[tokio::test]
async fn no_proxy_names_destinations_reached_directly() {
    let (addr, mut heads, _) = server(OK).await;
    let proxies = Matcher::builder()
        .all("http://127.0.0.1:9")
        .no("127.0.0.1")
        .build();
    let client = Client::with_proxies(Duration::from_secs(2), Some(proxies)).unwrap();
    let answer = client
        .send(request(&format!("http://{addr}/v1/x")))
        .await
        .unwrap();
    assert_eq!(answer.status(), http::StatusCode::OK);
    assert!(
        heads
            .recv()
            .await
            .unwrap()
            .starts_with("POST /v1/x HTTP/1.1")
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_and_a_cut_body_a_transport_one() {
    let client = Client::with_proxies(Duration::from_secs(2), None).unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let err = client
        .send(request(&format!("http://{addr}/v1/x")))
        .await
        .err()
        .unwrap();
    assert!(err.is_connect() && !err.is_timeout(), "{err:?}");

    // Announces 100 bytes, sends 2 and hangs up.
    let (cut, _, _) =
        server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{}").await;
    let mut answer = client
        .send(request(&format!("http://{cut}/v1/x")))
        .await
        .unwrap();
    let mut failed = None;
    for _ in 0..3 {
        match answer.chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let err = failed.expect("a body cut short is an error, not an end");
    assert!(!err.is_connect() && !err.is_timeout(), "{err:?}");
}
