//! The accept loop: one task per connection, TLS first when configured, then HTTP/1.1 or
//! HTTP/2 (h2c, or negotiated by ALPN) on the same port, the peer's address on every
//! request ([`Peer`]), the parser's caps on the request head, and a graceful drain.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{config::RequestLimits, network::Peer, network::tls::Tls};

/// hyper's own cap on the headers of an HTTP/1.1 request head.
const DEFAULT_PARSER_HEADERS: usize = 100;
/// The time a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The time a client has to send a whole request head (HTTP/1.1), from its first byte or
/// from the end of the previous answer on a kept-alive connection: a slowloris client
/// dribbling a head is cut.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2: a PING after this long without a frame from the client, and the connection
/// closed when the ack takes longer than the timeout (also keeps gRPC streams alive
/// through proxies with idle timeouts).
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How one listener serves.
#[derive(Clone)]
pub(super) struct Options {
    pub tls: Option<Arc<Tls>>,
    /// The limits at start: the parser's caps are set from them (see [`builder`]).
    pub limits: RequestLimits,
}

/// The connection builder. The HTTP parser's own caps are above the configured limits:
/// a request a little over a limit reaches [`crate::network::GuardLayer`], which refuses it
/// with a clear OpenAI error; a flood far over it is cut by the parser (HTTP/1.1: a bare
/// 431; HTTP/2: the stream reset) before it costs more memory.
///
/// The header count cap is hyper's own 100 unless more are configured (then hyper fills
/// that many slots on every request head).
fn builder(limits: &RequestLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    let head = limits.max_header_bytes.saturating_add(limits.max_url_bytes);
    let mut http1 = builder.http1();
    // Unset, hyper parses into an uninitialised array of 100 on the stack; set (even to
    // 100), it fills a vector of that many slots on every request head.
    if limits.max_header_count > DEFAULT_PARSER_HEADERS {
        http1.max_headers(limits.max_header_count);
    }
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // hyper's minimum is 8192; its default (~400 KiB) is higher than most heads need.
        .max_buf_size(head.saturating_mul(2).max(8192) + 8192);
    // HPACK counts 32 bytes of overhead per header in the list size.
    let overhead = limits.max_header_count.saturating_mul(32);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_KEEP_ALIVE))
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_header_list_size(
            u32::try_from(head.saturating_add(overhead).saturating_mul(2))
                .unwrap_or(u32::MAX)
                .max(16 * 1024),
        );
    builder
}

/// Accept errors that concern one connection, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves `app` on `listener` until `stop` is cancelled, then stops accepting and waits
/// for the open connections to finish their requests (the caller bounds the wait).
pub(super) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    options: Options,
    stop: CancellationToken,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder(&options.limits));
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as hyper's examples do.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        // Nagle would hold each small SSE event until the client's delayed ACK (~40 ms).
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            peer,
        };
        let watcher = graceful.watcher();
        let tls = options.tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(TokioIo::new(tcp), watcher).await,
                Some(tls) => {
                    if let Some(stream) = handshake(&tls, tcp, peer).await {
                        connection.serve(TokioIo::new(stream), watcher).await;
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn handshake(
    tls: &Tls,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// One accepted connection.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    app: axum::Router,
    peer: SocketAddr,
}

impl Connection {
    async fn serve<I>(self, io: TokioIo<I>, watcher: hyper_util::server::graceful::Watcher)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection { builder, app, peer } = self;
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            app.clone().oneshot(req)
        });
        let conn = builder.serve_connection_with_upgrades(io, service);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}
