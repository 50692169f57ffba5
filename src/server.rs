//! `run(listeners, gateway, shutdown)`: REST and gRPC on every listener (TLS when
//! configured, through the accept loop in `conn.rs`), graceful drain, then the gateway's
//! background loops stopped.

use std::{future::Future, sync::Arc};

use tokio::net::TcpListener;

use crate::{api, background, gateway::Gateway, network, telemetry};

mod conn;

/// The sockets to serve on. gRPC is answered on every listener; `grpc` is an extra one
/// for deployments that keep gRPC on its own port.
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: Option<TcpListener>,
}

/// The whole HTTP surface: REST routes and gRPC services on one router, every route behind
/// [`network::GuardLayer`] (head limits, client address, CORS, IP allowlist). Both HTTP/1.1 and
/// HTTP/2 (h2c, which gRPC uses, or negotiated over TLS) are served on the same port.
pub async fn router(gateway: Arc<Gateway>) -> axum::Router {
    api::grpc::router(gateway.clone())
        .await
        .merge(api::openai::router(gateway.clone()))
        .merge(api::anthropic::router(gateway.clone()))
        .merge(api::admin::router(gateway.clone()))
        .merge(api::status::router(gateway.clone()))
        .fallback(fallback)
        .layer(network::GuardLayer::new(gateway))
}

/// Unknown paths: gRPC callers get `UNIMPLEMENTED`, everyone else an OpenAI 404.
async fn fallback(
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
) -> axum::response::Response {
    let grpc = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let status = tonic::Status::unimplemented(format!("unknown method {}", uri.path()));
        return status.into_http();
    }
    api::openai::not_found(method, uri).await
}

/// Serves until `shutdown` resolves (or the gateway's background token is cancelled), then
/// stops accepting and lets in-flight requests and streams finish, for at most
/// `server.drain_timeout`; what is still open then is closed. Last, the gateway's
/// background loops (this function starts the metrics upkeep among them) are stopped and
/// waited for, at most [`background::STOP_WAIT`]: when `run` returns, none is running.
pub async fn run(
    listeners: Listeners,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let prometheus = telemetry::prometheus().clone();
    let background = gateway.background().clone();
    // Loaded before anything starts: a certificate that cannot be used stops the start.
    let options = conn::Options {
        tls: tls(&gateway, &background)?,
        limits: gateway.live().config.network.limits,
    };
    background.spawn(|stop| telemetry::upkeep(prometheus, telemetry::UPKEEP_EVERY, stop));
    // The drain deadline is read when the drain starts, so a reload can change it.
    let drain_from = gateway.clone();
    let app = router(gateway).await;
    let stop = background.token().child_token();
    // Turns `shutdown` into the token; never ends by itself.
    let trigger = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
            std::future::pending::<()>().await;
        }
    };
    let deadline = {
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            let drain = drain_from.live().config.server.drain_timeout;
            tokio::time::sleep(drain).await;
            drain
        }
    };
    let http = conn::serve(listeners.http, app.clone(), options.clone(), stop.clone());
    let serving = async move {
        match listeners.grpc {
            Some(grpc) => {
                let grpc = conn::serve(grpc, app, options, stop);
                let (a, b) = tokio::join!(http, grpc);
                a.and(b)
            }
            None => http.await,
        }
    };
    let result = tokio::select! {
        result = serving => result,
        drain = deadline => {
            tracing::warn!(
                drain_ms = drain.as_millis() as u64,
                "drain deadline passed; closing the requests and streams still open"
            );
            Ok(())
        }
        () = trigger => Ok(()),
    };
    background.stop(background::STOP_WAIT).await;
    result
}

/// TLS for the listeners when `server.tls_cert` is set: the certificate loaded now (an
/// error stops the start) and its files watched by a background loop.
fn tls(
    gateway: &Gateway,
    background: &background::Background,
) -> std::io::Result<Option<Arc<network::tls::Tls>>> {
    let live = gateway.live();
    let Some(files) = &live.config.network.tls else {
        return Ok(None);
    };
    let tls =
        Arc::new(network::tls::Tls::start(files, &live.config.dir).map_err(std::io::Error::other)?);
    let watched = tls.clone();
    background.spawn(move |stop| watched.watch(stop));
    Ok(Some(tls))
}

#[cfg(test)]
mod tests;
