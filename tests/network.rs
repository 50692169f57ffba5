//! Network controls over real sockets: IP allowlists (clients bound to 127.0.0.2 and
//! 127.0.0.3 act as different addresses), trusted proxies and spoofed `X-Forwarded-For`,
//! CORS, TLS on both listeners with a certificate reload, limits on the request head and
//! on a stream's duration.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use common::{process::Served, *};
use serde_json::Value;
use switchyard::{
    api::grpc::pb::{self, gateway_client::GatewayClient},
    config::Config,
    gateway::Gateway,
    server::{self, Listeners},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::oneshot,
};

const OFFICE_KEY: &str = "sk-office-0123456789abcdef";
const ROAMING_KEY: &str = "sk-roaming-0123456789abcdef";

/// A client whose connections come from `local` (a loopback address).
fn client_from(local: &str) -> reqwest::Client {
    switchyard::telemetry::install_crypto_provider();
    reqwest::Client::builder()
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// POSTs the hello chat from `local`, with extra headers; status and JSON body.
async fn chat_from(
    gw: &TestGateway,
    local: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client_from(local)
        .post(gw.url("/v1/chat/completions"))
        .json(&hello(false));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = within(req.send()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = within(resp.json::<Value>()).await.unwrap_or(Value::Null);
    (status, body, headers)
}

fn assert_ip_refused(status: u16, body: &Value) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "ip_not_allowed", "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
}

/// A gateway serving `mock`; `extra` goes into `[server]` up to its first table header.
async fn gateway(mock: &Mock, extra: &str) -> TestGateway {
    TestGateway::start(&config_for(&[mock], &format!("{extra}\n{FAST}"))).await
}

#[tokio::test]
async fn the_gateway_allowlist_admits_listed_addresses_and_refuses_others() {
    let mock = Mock::start("p", "").await;
    let gw = gateway(
        &mock,
        "[security]\nip_allowlist = [\"127.0.0.2/32\", \"10.0.0.0/8\"]",
    )
    .await;
    let (status, body, _) = chat_from(&gw, "127.0.0.2", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, headers) = chat_from(&gw, "127.0.0.3", &[]).await;
    assert_ip_refused(status, &body);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.3"),
        "{body}"
    );
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(
        mock.stats().await["requests"],
        1,
        "the refused call went nowhere"
    );
    // Everything else is covered too; the probes are not.
    let c = client_from("127.0.0.3");
    for path in ["/v1/models", "/metrics", "/status", "/admin/health"] {
        let resp = within(c.get(gw.url(path)).send()).await.unwrap();
        assert_eq!(resp.status(), 403, "{path}");
    }
    for path in ["/healthz", "/readyz"] {
        let resp = within(c.get(gw.url(path)).send()).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_keys_allowlist_binds_that_key_to_its_addresses() {
    let mock = Mock::start("p", "").await;
    let keys = format!(
        "[[keys]]\nname = \"office\"\nkey = \"{OFFICE_KEY}\"\nip_allowlist = [\"127.0.0.2\"]\n\
         [[keys]]\nname = \"roaming\"\nkey = \"{ROAMING_KEY}\"\n"
    );
    let gw = gateway(&mock, &keys).await;
    let office = format!("Bearer {OFFICE_KEY}");
    let roaming = format!("Bearer {ROAMING_KEY}");
    let (status, body, _) = chat_from(&gw, "127.0.0.2", &[("authorization", &office)]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = chat_from(&gw, "127.0.0.3", &[("authorization", &office)]).await;
    assert_ip_refused(status, &body);
    assert!(
        !body.to_string().contains(OFFICE_KEY),
        "the key never shows: {body}"
    );
    // The other key has no allowlist; a stranger without a key is a 401, not a 403.
    let (status, body, _) = chat_from(&gw, "127.0.0.3", &[("authorization", &roaming)]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = chat_from(&gw, "127.0.0.3", &[]).await;
    assert_eq!(status, 401);
    // The model list is the key's too.
    let resp = within(
        client_from("127.0.0.3")
            .get(gw.url("/v1/models"))
            .header("authorization", &office)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(mock.stats().await["requests"], 2);
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let mock = Mock::start("p", "").await;
    // 127.0.0.2 is a trusted proxy; 127.0.0.3 is not.
    let gw = gateway(
        &mock,
        "trusted_proxies = [\"127.0.0.2\"]\n[security]\nip_allowlist = [\"198.51.100.0/24\"]",
    )
    .await;
    let (status, body, _) =
        chat_from(&gw, "127.0.0.3", &[("x-forwarded-for", "198.51.100.7")]).await;
    assert_ip_refused(status, &body);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.3"),
        "the socket's address is the client: {body}"
    );
    assert_eq!(mock.stats().await["requests"], 0);
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_gives_the_right_most_untrusted_entry() {
    let mock = Mock::start("p", "").await;
    let gw = gateway(
        &mock,
        "trusted_proxies = [\"127.0.0.2\", \"10.0.0.0/8\"]\n\
         [security]\nip_allowlist = [\"198.51.100.0/24\"]",
    )
    .await;
    // The caller sent "6.6.6.6"; the proxy appended the address it saw.
    let (status, body, _) = chat_from(
        &gw,
        "127.0.0.2",
        &[("x-forwarded-for", "6.6.6.6, 198.51.100.7")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Through two proxies (10.1.1.1 is ours too).
    let (status, body, _) = chat_from(
        &gw,
        "127.0.0.2",
        &[("x-forwarded-for", "198.51.100.7, 10.1.1.1")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A forged allowed address on the left does not help: the right-most untrusted
    // entry is the one the proxy saw.
    let (status, body, _) = chat_from(
        &gw,
        "127.0.0.2",
        &[("x-forwarded-for", "198.51.100.7, 6.6.6.6")],
    )
    .await;
    assert_ip_refused(status, &body);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("6.6.6.6")
    );
    // A trusted proxy that forwards nothing: the proxy is the client.
    let (status, body, _) = chat_from(&gw, "127.0.0.2", &[]).await;
    assert_ip_refused(status, &body);
}

/// A gRPC client whose connection comes from `local`.
async fn grpc_from(addr: SocketAddr, local: &str) -> GatewayClient<tonic::transport::Channel> {
    let local: SocketAddr = format!("{local}:0").parse().unwrap();
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    let channel =
        endpoint.connect_with_connector(tower::service_fn(move |_: http::Uri| async move {
            let socket = TcpSocket::new_v4()?;
            socket.bind(local)?;
            let tcp = socket.connect(addr).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tcp))
        }));
    GatewayClient::new(within(channel).await.unwrap())
}

#[tokio::test]
async fn grpc_from_a_disallowed_address_is_permission_denied() {
    let mock = Mock::start("p", "").await;
    let keys = format!(
        "[[keys]]\nname = \"office\"\nkey = \"{OFFICE_KEY}\"\nip_allowlist = [\"127.0.0.2\"]\n\
         [security]\nip_allowlist = [\"127.0.0.2\", \"127.0.0.3\"]\n"
    );
    let gw = gateway(&mock, &keys).await;
    let with_key = |mut req: tonic::Request<pb::ChatRequest>| {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {OFFICE_KEY}").parse().unwrap(),
        );
        req
    };
    let mut allowed = grpc_from(gw.addr, "127.0.0.2").await;
    let resp = within(allowed.chat(with_key(tonic::Request::new(grpc_hello())))).await;
    assert!(resp.is_ok(), "{resp:?}");
    // Allowed by the gateway, refused by the key's own list.
    let mut other = grpc_from(gw.addr, "127.0.0.3").await;
    let status = within(other.chat(with_key(tonic::Request::new(grpc_hello()))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.metadata().get("x-switchyard-error-code").unwrap(),
        "ip_not_allowed"
    );
    // Refused by the gateway's list, before any key is looked at.
    let mut stranger = grpc_from(gw.addr, "127.0.0.4").await;
    let status = within(stranger.chat(with_key(tonic::Request::new(grpc_hello()))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let status = within(stranger.list_models(pb::ListModelsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(mock.stats().await["requests"], 1);
}

const CORS: &str =
    "[security.cors]\nallowed_origins = [\"https://app.example.com\"]\nmax_age_s = 120\n";

#[tokio::test]
async fn cors_answers_an_allowed_origin_and_says_nothing_to_others() {
    let mock = Mock::start("p", "").await;
    let gw = gateway(&mock, CORS).await;
    let c = client();
    // Preflight from the allowed origin.
    let resp = within(
        c.request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, x-stainless-retry-count",
            )
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        header(&resp, "access-control-allow-origin"),
        "https://app.example.com"
    );
    assert!(header(&resp, "access-control-allow-methods").contains("POST"));
    assert_eq!(
        header(&resp, "access-control-allow-headers"),
        "authorization, content-type, x-stainless-retry-count"
    );
    assert_eq!(header(&resp, "access-control-max-age"), "120");
    // The call itself: allow-origin and the exposed gateway headers.
    let resp = within(
        c.post(gw.url("/v1/chat/completions"))
            .header("origin", "https://app.example.com")
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "access-control-allow-origin"),
        "https://app.example.com"
    );
    let expose = header(&resp, "access-control-expose-headers");
    for h in [
        "x-request-id",
        "x-switchyard-provider",
        "x-switchyard-attempts",
    ] {
        assert!(expose.contains(h), "{expose}");
    }
    // A disallowed origin's preflight: answered, with no allow headers at all.
    let resp = within(
        c.request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(
        resp.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        resp.headers()
    );
    // Its calls get no allow-origin (the browser hides the answer from the script).
    let resp = within(
        c.post(gw.url("/v1/chat/completions"))
            .header("origin", "https://evil.example")
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    assert_eq!(
        mock.stats().await["requests"],
        2,
        "preflights never reach a provider"
    );
}

#[tokio::test]
async fn a_refusal_to_an_allowed_origin_is_readable_by_its_script() {
    let mock = Mock::start("p", "").await;
    let gw = gateway(
        &mock,
        &format!("{CORS}[security]\nip_allowlist = [\"127.0.0.2\"]\n"),
    )
    .await;
    let resp = within(
        client_from("127.0.0.3")
            .post(gw.url("/v1/chat/completions"))
            .header("origin", "https://app.example.com")
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        header(&resp, "access-control-allow-origin"),
        "https://app.example.com"
    );
}

#[tokio::test]
async fn without_cors_config_there_are_no_cors_headers() {
    let mock = Mock::start("p", "").await;
    let gw = gateway(&mock, "").await;
    let c = client();
    let resp = within(
        c.post(gw.url("/v1/chat/completions"))
            .header("origin", "https://app.example.com")
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let preflight = within(
        c.request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(preflight.status(), 405, "routed like any OPTIONS");
    for resp in [&resp, &preflight] {
        assert!(
            resp.headers()
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-")),
            "{:?}",
            resp.headers()
        );
    }
}

/// Sends a raw HTTP/1.1 head and reads the whole answer (the gateway closes after it).
async fn raw(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    within(tcp.write_all(head.as_bytes())).await.unwrap();
    let mut buf = Vec::new();
    let _ = within(tcp.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn request_heads_over_the_limits_are_clear_errors() {
    let mock = Mock::start("p", "").await;
    let gw = gateway(
        &mock,
        "max_header_count = 20\nmax_header_bytes = 2048\nmax_url_bytes = 256",
    )
    .await;
    // One header too many: the OpenAI error, naming the limit.
    let mut head = String::from("GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for i in 0..19 {
        head.push_str(&format!("x-h-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    let (status, text) = raw(gw.addr, &head).await;
    assert_eq!(status, 431, "{text}");
    assert!(text.contains("request_headers_too_large"), "{text}");
    assert!(text.contains("server.max_header_count"), "{text}");
    // Too many bytes of headers.
    let resp = within(
        client()
            .get(gw.url("/v1/models"))
            .header("x-big", "v".repeat(2100))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 431);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.max_header_bytes"),
        "{body}"
    );
    // A long URL.
    let resp = within(
        client()
            .get(gw.url(&format!("/v1/models?q={}", "a".repeat(300))))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 414);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "url_too_long", "{body}");
    // Far over the limit, the parser cuts it; the gateway keeps serving.
    let mut flood = String::from("GET /v1/models HTTP/1.1\r\nhost: x\r\n");
    for i in 0..1000 {
        flood.push_str(&format!("x-flood-{i}: v\r\n"));
    }
    flood.push_str("\r\n");
    let (status, _) = raw(gw.addr, &flood).await;
    assert!(status == 431 || status == 0, "{status}");
    assert_eq!(gw.chat(&hello(false)).await.status(), 200);
}

#[tokio::test]
async fn a_stream_past_its_duration_limit_ends_with_an_error_event() {
    // Six or so chunks, 400 ms apart: well past one second.
    let mock = Mock::start("p", "chunk_delay_ms=400").await;
    let gw = gateway(&mock, "max_stream_duration_s = 1").await;
    let resp = gw.chat(&hello(true)).await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(resp).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(
        last["error"]["code"], "stream_duration_exceeded",
        "{events:?}"
    );
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.max_stream_duration_s"),
        "{last}"
    );
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    assert!(
        !stream_content(&events).is_empty(),
        "what came before the limit was delivered"
    );
    // Without the limit the same stream finishes.
    let gw = gateway(&mock, "").await;
    let events = sse_events(gw.chat(&hello(true)).await).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn grpc_streams_end_at_the_duration_limit_too() {
    let mock = Mock::start("p", "chunk_delay_ms=400").await;
    let gw = gateway(&mock, "max_stream_duration_s = 1").await;
    let mut client = grpc_from(gw.addr, "127.0.0.1").await;
    let mut stream = within(client.chat_stream(grpc_hello()))
        .await
        .unwrap()
        .into_inner();
    let mut chunks = 0;
    let status = loop {
        match within(stream.message()).await {
            Ok(Some(_)) => chunks += 1,
            Ok(None) => panic!("the stream finished instead of being cut"),
            Err(status) => break status,
        }
    };
    assert!(chunks > 0);
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.metadata().get("x-switchyard-error-code").unwrap(),
        "stream_duration_exceeded"
    );
}

// ---- TLS ----

fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/certs")
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(certs().join(name)).unwrap()
}

/// The first certificate of a PEM file, as DER.
fn der(name: &str) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(&pem(name)).unwrap().to_vec()
}

/// A folder with `leaf-a` as the served certificate.
fn tls_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-tls-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("server.pem"), pem("leaf-a.pem")).unwrap();
    std::fs::write(dir.join("server.key"), pem("leaf-a.key")).unwrap();
    dir
}

/// A TLS gateway on both listeners; the stop sender ends it.
struct TlsGateway {
    http: SocketAddr,
    grpc: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn tls_gateway(mock: &Mock, dir: &std::path::Path) -> TlsGateway {
    let tls = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    let config = Config::parse(&config_for(&[mock], &format!("{tls}{FAST}"))).unwrap();
    let gateway = Arc::new(Gateway::new(config).unwrap());
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    tokio::spawn(server::run(
        Listeners {
            http,
            grpc: Some(grpc),
        },
        gateway,
        async move {
            let _ = rx.await;
        },
    ));
    TlsGateway {
        http: http_addr,
        grpc: grpc_addr,
        _stop: tx,
    }
}

fn tls_client() -> reqwest::Client {
    switchyard::telemetry::install_crypto_provider();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem("ca.pem")).unwrap()])
        .tls_info(true)
        .build()
        .unwrap()
}

/// The certificate the server presented on the connection that carried `resp`.
fn served_cert(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec()
}

async fn tls_chat(client: &reqwest::Client, addr: SocketAddr) -> reqwest::Response {
    let resp = within(
        client
            .post(format!(
                "https://localhost:{}/v1/chat/completions",
                addr.port()
            ))
            .json(&hello(false))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

/// A gRPC client over TLS (ALPN h2), trusting the test CA.
async fn grpc_tls(addr: SocketAddr) -> GatewayClient<tonic::transport::Channel> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem("ca.pem")).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let endpoint = tonic::transport::Endpoint::from_static("http://localhost");
    let channel = endpoint.connect_with_connector(tower::service_fn(move |_: http::Uri| {
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(addr).await?;
            let name = ServerName::try_from("localhost").unwrap();
            let tls = connector.connect(name, tcp).await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    }));
    GatewayClient::new(within(channel).await.unwrap())
}

#[tokio::test]
async fn tls_serves_rest_and_grpc_on_both_listeners() {
    let mock = Mock::start("p", "").await;
    let dir = tls_dir();
    let gw = tls_gateway(&mock, &dir).await;
    let c = tls_client();
    for addr in [gw.http, gw.grpc] {
        let resp = tls_chat(&c, addr).await;
        assert_eq!(served_cert(&resp), der("leaf-a.pem"));
        let mut grpc = grpc_tls(addr).await;
        let resp = within(grpc.chat(grpc_hello())).await.unwrap();
        assert!(!resp.into_inner().choices.is_empty());
    }
    // Plain HTTP on a TLS port is not served.
    let plain = within(client().get(format!("http://{}/healthz", gw.http)).send()).await;
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test]
async fn the_healthcheck_command_reaches_a_tls_gateway_with_insecure() {
    let mock = Mock::start("p", "").await;
    let dir = tls_dir();
    let gw = tls_gateway(&mock, &dir).await;
    let url = format!("https://127.0.0.1:{}/healthz", gw.http.port());
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(common::process::BIN)
                .arg("healthcheck")
                .args(args)
                .output()
                .unwrap()
        })
    };
    let ok = within(run(vec!["--insecure".into(), "--url".into(), url.clone()]))
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Without it, a certificate from an unknown CA is refused.
    let refused = within(run(vec!["--url".into(), url])).await.unwrap();
    assert!(!refused.status.success());
}

#[tokio::test]
async fn a_rewritten_certificate_is_served_to_new_connections_and_old_ones_keep_working() {
    let mock = Mock::start("p", "").await;
    let dir = tls_dir();
    let gw = tls_gateway(&mock, &dir).await;
    // One pooled connection, opened on the old certificate.
    let old = tls_client();
    assert_eq!(
        served_cert(&tls_chat(&old, gw.http).await),
        der("leaf-a.pem")
    );

    // A half-written pair (the new certificate, the old key) is refused: the old
    // certificate serves on.
    let rejected = reloads(&old, gw.http, "rejected").await;
    std::fs::write(dir.join("server.pem"), pem("leaf-b.pem")).unwrap();
    wait_for_reloads(&old, gw.http, "rejected", rejected + 1.0).await;
    assert_eq!(
        served_cert(&tls_chat(&tls_client(), gw.http).await),
        der("leaf-a.pem")
    );
    // Then the key: the pair is whole, and new connections get it.
    let ok = reloads(&old, gw.http, "ok").await;
    std::fs::write(dir.join("server.key"), pem("leaf-b.key")).unwrap();
    wait_for_reloads(&old, gw.http, "ok", ok + 1.0).await;
    assert_eq!(
        served_cert(&tls_chat(&tls_client(), gw.http).await),
        der("leaf-b.pem")
    );
    // The gRPC listener too.
    assert_eq!(
        served_cert(&tls_chat(&tls_client(), gw.grpc).await),
        der("leaf-b.pem")
    );
    // The old connection was not dropped: it answers, still on its session.
    let again = tls_chat(&old, gw.http).await;
    assert_eq!(served_cert(&again), der("leaf-a.pem"));

    // Garbage in the files keeps the last good certificate serving.
    // Counted from now: the writes above may each have settled as more than one event.
    let rejected = reloads(&old, gw.http, "rejected").await;
    std::fs::write(dir.join("server.pem"), b"not a certificate").unwrap();
    wait_for_reloads(&old, gw.http, "rejected", rejected + 1.0).await;
    assert_eq!(
        served_cert(&tls_chat(&tls_client(), gw.http).await),
        der("leaf-b.pem")
    );
}

/// `switchyard_tls_reloads_total{result}` now.
async fn reloads(client: &reqwest::Client, addr: SocketAddr, result: &str) -> f64 {
    let text = within(
        client
            .get(format!("https://localhost:{}/metrics", addr.port()))
            .send(),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    metric(
        &text,
        "switchyard_tls_reloads_total",
        &[&format!("result=\"{result}\"")],
    )
}

/// Waits until `switchyard_tls_reloads_total{result}` reaches `count`.
async fn wait_for_reloads(client: &reqwest::Client, addr: SocketAddr, result: &str, count: f64) {
    let label = format!("result=\"{result}\"");
    let mut seen = 0.0;
    for _ in 0..400 {
        seen = reloads(client, addr, result).await;
        if seen >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("switchyard_tls_reloads_total{{{label}}} stayed at {seen}");
}

#[tokio::test]
async fn a_certificate_that_does_not_load_stops_the_start() {
    let mock = Mock::start("p", "").await;
    let dir = tls_dir();
    // The key of another certificate.
    std::fs::write(dir.join("server.key"), pem("leaf-b.key")).unwrap();
    let tls = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    let config = Config::parse(&config_for(&[&mock], &tls)).unwrap();
    let gateway = Arc::new(Gateway::new(config).unwrap());
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = within(server::run(
        Listeners { http, grpc: None },
        gateway,
        std::future::pending(),
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("do not make a pair"), "{err}");
}

#[tokio::test]
async fn check_config_loads_the_tls_pair_as_serve_would() {
    let mock = Mock::start("p", "").await;
    let dir = tls_dir();
    let config = config_for(
        &[&mock],
        "tls_cert = \"server.pem\"\ntls_key = \"server.key\"\n",
    );
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let check = || {
        std::process::Command::new(common::process::BIN)
            .arg("check-config")
            .arg(dir.join("switchyard.toml"))
            .output()
            .unwrap()
    };
    // Relative paths are the config file's folder's.
    let ok = check();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::write(dir.join("server.key"), pem("leaf-b.key")).unwrap();
    let bad = check();
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("do not make a pair"), "{said}");
}

// ---- The audit: the client's address in the request log ----

#[tokio::test]
async fn the_request_log_names_the_client_address() {
    let mock = Mock::start("p", "").await;
    let dir = std::env::temp_dir().join(format!(
        "switchyard-network-log-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = config_for(
        &[&mock],
        &format!("{FAST}[security]\nip_allowlist = [\"127.0.0.2\"]\n"),
    )
    .replace(
        "[server]\nhttp_addr = \"127.0.0.1:0\"\ngrpc_addr = \"none\"\n",
        "[server]\n",
    );
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let served = Served::start(&["--config", "switchyard.toml"], &dir);
    let url = format!("http://{}/v1/chat/completions", served.http);
    for (local, id) in [
        ("127.0.0.2", "net-log-allowed"),
        ("127.0.0.3", "net-log-refused"),
    ] {
        within(
            client_from(local)
                .post(&url)
                .header("x-request-id", id)
                .json(&hello(false))
                .send(),
        )
        .await
        .unwrap();
    }
    let allowed: Value = serde_json::from_str(&served.wait_for("net-log-allowed")).unwrap();
    assert_eq!(allowed["client_addr"], "127.0.0.2", "{allowed}");
    assert_eq!(allowed["outcome"], "ok");
    let refused: Value = serde_json::from_str(&served.wait_for("net-log-refused")).unwrap();
    assert_eq!(refused["client_addr"], "127.0.0.3", "{refused}");
    assert_eq!(refused["refused_by"], "ip_allowlist", "{refused}");
    assert_eq!(refused["outcome"], "403", "{refused}");
}
