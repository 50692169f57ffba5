//! Network controls at the edge, before any route runs: the request head's limits, the
//! client's address (the socket's peer, or what trusted proxies say it is), the gateway's
//! IP allowlist, and CORS.
//!
//! [`GuardLayer`] is one layer around the whole router (REST, gRPC, admin, status), in this
//! order:
//! 1. **limits** — header count, total header size (431) and URL length (414), in the
//!    OpenAI error shape (gRPC: `RESOURCE_EXHAUSTED` / `INVALID_ARGUMENT`); the HTTP parser
//!    below has a cap of its own at twice these, so a flood never reaches here;
//! 2. **client address** — [`client_ip`]: never the header blindly, only `X-Forwarded-For`
//!    as written by peers in `server.trusted_proxies`;
//! 3. **CORS preflight** — answered here (`[security.cors]`), never routed;
//! 4. **allowlist** — `security.ip_allowlist`: 403 `ip_not_allowed` (gRPC
//!    `PERMISSION_DENIED`), except for the probes ([`is_probe`]);
//! 5. the route runs with the [`ClientAddr`] in the request; the key's own allowlist
//!    ([`check_key`]) is checked by the pipeline once the key is known;
//! 6. **CORS headers** on the answer, whatever it is (a refusal too, so a browser script
//!    can read why).
//!
//! TLS ([`tls`]) sits below all this, in the accept loop (`server::conn`).

pub mod cidr;
pub mod cors;
pub mod tls;

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{FromRequestParts, Request},
    response::Response,
};
use futures_util::future::Either;
use http::{HeaderMap, header, request::Parts};

use crate::{
    auth::{Caller, CallerHeaders},
    config::RequestLimits,
    error::Error,
    gateway::Gateway,
    telemetry::{RequestRecord, Surface},
};
use cidr::CidrSet;

/// The socket's peer, put on every request by the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// The client's address as the gateway decided it ([`client_ip`]), put on every request
/// by [`GuardLayer`]; `None` when it is not known (no peer, or a proxy chain that cannot be
/// read), which no allowlist admits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or_default())
    }
}

/// The caller's headers from an HTTP request, with the client's address.
pub fn caller_headers(headers: &HeaderMap, client: ClientAddr) -> CallerHeaders {
    let mut h = CallerHeaders::from_http(headers);
    h.client_addr = client.0;
    h
}

/// The client's address: the socket's peer, unless the peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (every hop
/// appends the address it saw, so entries right of the first untrusted one were written
/// by our proxies, and everything left of it may be forged). When every entry is trusted,
/// the left-most. An entry that is not an address makes the client unknown (`None`).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &CidrSet) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusted.contains(peer) {
        return Some(peer);
    }
    let mut client = peer;
    // Later header lines were appended later: walk them, and their entries, right to left.
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else {
            return None;
        };
        for entry in value.rsplit(',').map(str::trim) {
            let ip = parse_forwarded(entry)?;
            client = ip;
            if !trusted.contains(ip) {
                return Some(ip);
            }
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`[v6]:port`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// Paths every address may reach: the liveness and readiness probes (HTTP and the gRPC
/// health service), which a load balancer or kubelet calls from wherever it runs.
pub fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz") || path.starts_with("/grpc.health.v1.Health/")
}

/// The key's own `ip_allowlist`, once the key is known.
pub fn check_key(caller: &Caller, client: Option<IpAddr>) -> Result<(), Error> {
    let Some(list) = caller.key.as_ref().and_then(|k| k.ip_allowlist.as_ref()) else {
        return Ok(());
    };
    if client.is_some_and(|ip| list.contains(ip)) {
        return Ok(());
    }
    Err(Error::Forbidden {
        message: format!(
            "This API key may not be used from {} (its ip_allowlist).",
            shown(client)
        ),
        code: "ip_not_allowed",
    })
}

fn shown(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string())
}

/// The request head against the limits: header count and size, then the URL.
pub fn check_head(limits: &RequestLimits, request: &Request) -> Result<(), Error> {
    let headers = request.headers();
    if headers.len() > limits.max_header_count {
        return Err(Error::HeadersTooLarge {
            message: format!(
                "The request has {} headers, more than the limit of {} (server.max_header_count).",
                headers.len(),
                limits.max_header_count
            ),
        });
    }
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if bytes > limits.max_header_bytes {
        return Err(Error::HeadersTooLarge {
            message: format!(
                "The request's headers are {bytes} bytes, more than the limit of {} \
                 (server.max_header_bytes).",
                limits.max_header_bytes
            ),
        });
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > limits.max_url_bytes {
        return Err(Error::UriTooLong {
            limit: limits.max_url_bytes,
        });
    }
    Ok(())
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The layer around the whole router; see the module doc for its steps. A tower layer
/// rather than `axum::middleware::from_fn`: a request that passes goes straight to the
/// router (no clone of it, no boxed future), unless CORS is configured and its answer
/// must be decorated on the way out.
#[derive(Clone)]
pub struct GuardLayer {
    gateway: Arc<Gateway>,
}

impl GuardLayer {
    pub fn new(gateway: Arc<Gateway>) -> GuardLayer {
        GuardLayer { gateway }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            gateway: self.gateway.clone(),
            inner,
        }
    }
}

/// [`GuardLayer`]'s service.
#[derive(Clone)]
pub struct Guard<S> {
    gateway: Arc<Gateway>,
    inner: S,
}

type Answered = std::future::Ready<Result<Response, Infallible>>;
type Decorated = futures_util::future::BoxFuture<'static, Result<Response, Infallible>>;

impl<S> tower::Service<Request> for Guard<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Either<S::Future, Answered>, Decorated>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        match admit(&self.gateway, &mut req) {
            Admitted::Answer(resp) => Either::Left(Either::Right(std::future::ready(Ok(resp)))),
            Admitted::Pass(None) => Either::Left(Either::Left(self.inner.call(req))),
            Admitted::Pass(Some((cors, origin))) => {
                let answer = self.inner.call(req);
                Either::Right(Box::pin(async move {
                    let mut resp = answer.await?;
                    cors.decorate(origin.as_ref(), resp.headers_mut());
                    Ok(resp)
                }))
            }
        }
    }
}

/// What the edge checks decided.
enum Admitted {
    /// Answered here: a refusal or a preflight.
    Answer(Response),
    /// On to the router; with CORS configured, its answer is decorated for the origin.
    Pass(Option<(Arc<cors::Cors>, Option<http::HeaderValue>)>),
}

/// The edge checks, in order: head limits, preflight, IP allowlist; the client's address
/// put on the request for the routes.
fn admit(gateway: &Gateway, req: &mut Request) -> Admitted {
    let live = gateway.peek();
    let net = &live.config.network;
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let client = peer.and_then(|p| client_ip(p, req.headers(), &net.trusted_proxies));
    let grpc = is_grpc(req.headers());
    let cors = net.cors.clone();
    let origin = cors
        .as_ref()
        .and_then(|_| req.headers().get(header::ORIGIN).cloned());
    let decorated = |mut resp: Response| {
        if let Some(cors) = &cors {
            cors.decorate(origin.as_ref(), resp.headers_mut());
        }
        resp
    };
    if let Err(error) = check_head(&net.limits, req) {
        // Decorated like any other answer, so a script on an allowed origin can read why.
        let resp = refuse(req, error, RefusedBy::Limits, ClientAddr(client), grpc);
        return Admitted::Answer(decorated(resp));
    }
    if let (Some(cors), Some(origin)) = (&cors, &origin) {
        let h = req.headers();
        if cors::Cors::is_preflight(req.method(), h) {
            return Admitted::Answer(cors.preflight(&cors::Asked {
                origin,
                method: h.get(header::ACCESS_CONTROL_REQUEST_METHOD),
                headers: h.get(header::ACCESS_CONTROL_REQUEST_HEADERS),
            }));
        }
    }
    let allowed = match &net.ip_allowlist {
        None => true,
        Some(list) => is_probe(req.uri().path()) || client.is_some_and(|ip| list.contains(ip)),
    };
    if !allowed {
        let error = Error::Forbidden {
            message: format!(
                "Requests from {} are not allowed (security.ip_allowlist).",
                shown(client)
            ),
            code: "ip_not_allowed",
        };
        let resp = refuse(req, error, RefusedBy::Allowlist, ClientAddr(client), grpc);
        return Admitted::Answer(decorated(resp));
    }
    req.extensions_mut().insert(ClientAddr(client));
    // The route takes its own snapshot; this one is not held for the whole request.
    drop(live);
    Admitted::Pass(cors.map(|c| (c, origin)))
}

/// Which edge check refused a request, as the request log's `refused_by` names it.
#[derive(Debug, Clone, Copy)]
enum RefusedBy {
    Limits,
    Allowlist,
}

/// A refusal at the edge: recorded (one request-log line, with the client's address, as
/// for every request) and answered in the caller's protocol.
fn refuse(req: &Request, error: Error, by: RefusedBy, client: ClientAddr, grpc: bool) -> Response {
    let sent = req
        .headers()
        .get(crate::api::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok());
    let surface = if grpc { Surface::Grpc } else { Surface::Rest };
    let mut record = RequestRecord::start(crate::api::request_id_from(sent), surface);
    record.client_addr = client.0;
    record.refused_by = Some(match by {
        RefusedBy::Limits => "request_limits",
        RefusedBy::Allowlist => "ip_allowlist",
    });
    record.failed(&error);
    let request_id = record.request_id.clone();
    drop(record);
    if grpc {
        crate::api::grpc::status(&error, &request_id, "").into_http()
    } else {
        crate::api::openai::error_response(&error, &request_id, "")
    }
}

#[cfg(test)]
mod tests;
