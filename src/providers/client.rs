//! The providers' HTTP client: hyper's pooled client over rustls, called directly.
//!
//! Every routed request goes through it, so it carries nothing a provider call does not
//! need: no redirect policy (a POST must not be silently redirected, and failover is the
//! gateway's job), no retry layer, no URL re-parsing. It keeps what a production egress
//! needs: TLS with the platform's roots, HTTP/2 when the provider offers it (ALPN),
//! keep-alive pools with an idle timeout, TCP keep-alive and `TCP_NODELAY`, and the
//! `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` variables: an https provider is
//! reached through a `CONNECT` tunnel, a plain-http one by sending the absolute URI to the
//! proxy, each with the proxy's basic credentials when its URL has them.
//!
//! The gateway's own calls (JWKS, price refresh, webhooks, OTLP export) use reqwest,
//! whose conveniences they want and whose cost they can afford.

use std::{
    error::Error as StdError,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{Stream, future::BoxFuture};
use http_body_util::{BodyExt, Full};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::{
    client::{
        legacy::{
            self,
            connect::{Connected, Connection, HttpConnector, proxy::Tunnel},
        },
        proxy::matcher::Matcher,
    },
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use tokio::net::TcpStream;
use tower::Service;

type BoxError = Box<dyn StdError + Send + Sync>;

/// How long an unused pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// TCP keep-alive on provider connections: idle time before the first probe, and between
/// probes.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// A pooled client; clones share the pool.
#[derive(Clone)]
pub struct Client {
    inner: legacy::Client<hyper_rustls::HttpsConnector<Connector>, Full<Bytes>>,
    /// The proxy settings, when any proxy variable is set.
    proxies: Option<Arc<Matcher>>,
}

impl Client {
    /// A client whose connections must be established within `connect_timeout`, with the
    /// proxies the environment names.
    pub fn new(connect_timeout: Duration) -> Result<Client, String> {
        let proxies = proxy_variable_set().then(Matcher::from_env);
        Client::with_proxies(connect_timeout, proxies)
    }

    /// As [`Client::new`], with the proxy settings given instead of read.
    pub fn with_proxies(
        connect_timeout: Duration,
        proxies: Option<Matcher>,
    ) -> Result<Client, String> {
        crate::telemetry::install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .ok_or("no TLS crypto provider is installed")?;
        let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|e| format!("loading the platform's TLS roots: {e}"))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(TCP_KEEPALIVE));
        http.set_keepalive_interval(Some(TCP_KEEPALIVE));
        http.set_keepalive_retries(Some(3));
        let proxies = proxies.map(Arc::new);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(Connector {
                http,
                proxies: proxies.clone(),
            });
        let inner = legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Client { inner, proxies })
    }

    /// Sends `req` and waits for the answer's head; the body is read from the
    /// [`Response`].
    pub async fn send(&self, mut req: http::Request<Full<Bytes>>) -> Result<Response, Error> {
        if let Some(proxies) = &self.proxies {
            // A plain-http request goes to the proxy as is, so its credentials ride on the
            // request (a tunnel's go on the CONNECT).
            if req.uri().scheme() == Some(&http::uri::Scheme::HTTP)
                && let Some(auth) = proxies
                    .intercept(req.uri())
                    .and_then(|i| i.basic_auth().cloned())
            {
                req.headers_mut()
                    .insert(http::header::PROXY_AUTHORIZATION, auth);
            }
        }
        let answer = self.inner.request(req).await.map_err(Error::from_client)?;
        let (head, body) = answer.into_parts();
        Ok(Response { head, body })
    }
}

/// A POST of `body` to `uri` with `headers`.
pub fn post(uri: http::Uri, headers: http::HeaderMap, body: Vec<u8>) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::new(Full::new(Bytes::from(body)));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    req
}

/// Whether any variable [`Matcher::from_env`] reads names a proxy: without one, no
/// request pays for a proxy lookup.
fn proxy_variable_set() -> bool {
    [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// An answer whose head has arrived.
pub struct Response {
    head: http::response::Parts,
    body: hyper::body::Incoming,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.head.status)
            .finish_non_exhaustive()
    }
}

impl Response {
    pub fn status(&self) -> http::StatusCode {
        self.head.status
    }

    pub fn headers(&self) -> &http::HeaderMap {
        &self.head.headers
    }

    /// The body's length, when the answer announced it.
    pub fn content_length(&self) -> Option<u64> {
        hyper::body::Body::size_hint(&self.body).exact()
    }

    /// The next piece of the body, or `None` at its end (trailers are skipped).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        while let Some(frame) = self.body.frame().await {
            if let Ok(data) = frame.map_err(Error::from_body)?.into_data()
                && !data.is_empty()
            {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    /// The body as a stream of its pieces.
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'static {
        futures_util::stream::unfold(self, |mut answer| async move {
            match answer.chunk().await {
                Ok(Some(data)) => Some((Ok(data), answer)),
                Ok(None) => None,
                Err(e) => Some((Err(e), answer)),
            }
        })
    }
}

/// Why a request or its body failed, with hyper's causes (never the URL or a header).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    source: BoxError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    /// No connection: refused, unresolvable, the TLS handshake, the proxy's tunnel.
    Connect,
    /// The connection was not established within the connect timeout.
    ConnectTimeout,
    /// The connection failed once the request was under way.
    Transport,
}

impl Error {
    fn from_client(e: legacy::Error) -> Error {
        let kind = if !e.is_connect() {
            ErrorKind::Transport
        } else if timed_out(&e) {
            ErrorKind::ConnectTimeout
        } else {
            ErrorKind::Connect
        };
        Error {
            kind,
            source: Box::new(e),
        }
    }

    fn from_body(e: hyper::Error) -> Error {
        Error {
            kind: ErrorKind::Transport,
            source: Box::new(e),
        }
    }

    pub fn is_connect(&self) -> bool {
        self.kind == ErrorKind::Connect
    }

    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::ConnectTimeout
    }
}

fn timed_out(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        cur = err.source();
    }
    false
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            ErrorKind::Connect => "connecting to the provider",
            ErrorKind::ConnectTimeout => "connecting to the provider timed out",
            ErrorKind::Transport => "the provider's connection failed",
        })
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Opens TCP connections, directly or through the proxy the destination's settings name.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    proxies: Option<Arc<Matcher>>,
}

impl Service<http::Uri> for Connector {
    type Response = Io;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Io, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let proxy = self.proxies.as_ref().and_then(|m| m.intercept(&dst));
        let mut http = self.http.clone();
        Box::pin(async move {
            let Some(proxy) = proxy else {
                let io = http.call(dst).await?;
                return Ok(Io { io, proxied: false });
            };
            if dst.scheme() == Some(&http::uri::Scheme::HTTPS) {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let io = tunnel.call(dst).await?;
                Ok(Io { io, proxied: false })
            } else {
                let io = http.call(proxy.uri().clone()).await?;
                Ok(Io { io, proxied: true })
            }
        })
    }
}

/// A TCP connection, marked when it goes to a proxy that takes absolute URIs.
pub struct Io {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for Io {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl Read for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
