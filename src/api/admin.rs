//! `/admin/*`: reload, deployment health and breaker state, routing explanations and
//! live route overrides ([`routes`]), behind `admin.api_key` (a bearer token). Without a configured key these routes answer
//! 404, as if they did not exist.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::{HeaderMap, Method, Uri};
use serde_json::json;

use super::openai::{chat::parse_request, errors::error_response};
use crate::{
    auth::{Caller, CallerHeaders},
    error::Error,
    gateway::Gateway,
};

mod routes;

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/admin/reload", post(reload))
        .route("/admin/health", get(health))
        .route("/admin/route/explain", post(explain))
        .route("/admin/routes", get(routes::list))
        .route(
            "/admin/routes/{model}",
            get(routes::show).put(routes::put).delete(routes::delete),
        )
        .route("/admin/usage", get(usage))
        .method_not_allowed_fallback(wrong_method)
        .with_state(gateway)
}

/// A wrong method on an admin path is a 405 only for the admin: to anyone else the routes
/// answer as [`authorize`] does (404 when admin is off, 401 without the key).
async fn wrong_method(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match authorize(&gw, &headers, &method, &uri) {
        Ok(()) => super::openai::method_not_allowed(method, uri).await,
        Err(e) => error_response(&e, "", ""),
    }
}

/// The admin key check: 404 when admin is off, 401 for a missing or wrong token.
fn authorize(gw: &Gateway, headers: &HeaderMap, method: &Method, uri: &Uri) -> Result<(), Error> {
    let live = gw.live();
    let Some(key) = &live.config.admin_key else {
        return Err(Error::RouteNotFound {
            method: method.to_string(),
            path: uri.path().to_owned(),
        });
    };
    if sends_admin_key(headers, key) {
        Ok(())
    } else {
        let e = Error::Unauthorized {
            message: "admin endpoints need `Authorization: Bearer <admin.api_key>`".to_owned(),
            code: "invalid_api_key",
        };
        Err(e)
    }
}

/// Whether the request's bearer token (or `api-key` / `x-api-key`) is the admin key.
pub(crate) fn sends_admin_key(headers: &HeaderMap, key: &crate::config::Secret) -> bool {
    let sent = CallerHeaders::from_http(headers).token.unwrap_or_default();
    // Compare digests, not the secret byte by byte.
    use sha2::{Digest, Sha256};
    Sha256::digest(sent.as_bytes()) == Sha256::digest(key.expose().as_bytes())
}

async fn reload(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&gw, &headers, &method, &uri) {
        return error_response(&e, "", "");
    }
    let worker = gw.clone();
    match tokio::task::spawn_blocking(move || crate::reload::reload(&worker, "admin")).await {
        Ok(Ok(r)) => Json(json!({
            "status": "reloaded",
            "models": r.models,
            "policies": r.policies,
            "took_ms": r.took_ms,
        }))
        .into_response(),
        Ok(Err(message)) => error_response(
            &Error::BadRequest {
                message: format!("reload rejected, the previous config keeps serving: {message}"),
                param: None,
            },
            "",
            "",
        ),
        Err(e) => error_response(
            &Error::Internal {
                detail: format!("reload task: {e}"),
            },
            "",
            "",
        ),
    }
}

/// `GET /admin/usage?from=&to=&group_by=`: the ledger's sums (see docs/usage-ledger.md).
async fn usage(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    params: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(e) = authorize(&gw, &headers, &method, &uri) {
        return error_response(&e, "", "");
    }
    let bad =
        |message: String, param: &str| error_response(&Error::bad_param(param, message), "", "");
    let Ok(Query(pairs)) = params else {
        return bad(
            "the query string is not URL-encoded pairs".to_owned(),
            "query",
        );
    };
    let pairs = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let now = crate::usage::ledger::calendar::now();
    let query = match crate::usage::ledger::Query::from_params(pairs, now) {
        Ok(q) => q,
        Err((message, param)) => return bad(message, param),
    };
    let Some(ledger) = gw.ledger() else {
        // Only a gateway built without `serve` (a test, a tool) has none.
        let e = Error::Internal {
            detail: "the usage ledger is not open on this gateway".to_owned(),
        };
        return error_response(&e, "", "");
    };
    match ledger.report(query).await {
        Ok(report) => Json(report.to_json()).into_response(),
        Err(detail) => error_response(
            &Error::Internal {
                detail: format!("usage ledger: {detail}"),
            },
            "",
            "",
        ),
    }
}

async fn health(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&gw, &headers, &method, &uri) {
        return error_response(&e, "", "");
    }
    let now = tokio::time::Instant::now();
    let deployments: Vec<_> = gw
        .health()
        .all()
        .into_iter()
        .map(|(id, h)| {
            let s = h.snapshot(now);
            json!({
                "id": id,
                "circuit": s.circuit.as_str(),
                "open_for_ms": s.open_until.map(|t| t.saturating_duration_since(now).as_millis() as u64),
                "ramp": s.ramp,
                "ewma_ms": s.ewma_ms,
                "p95_ms": s.p95_ms,
                "ttft_ms": s.ttft_ms,
                "error_rate": s.error_rate,
                "samples": s.samples,
                "in_flight": s.in_flight,
            })
        })
        .collect();
    Json(json!({ "in_flight": gw.in_flight(), "deployments": deployments })).into_response()
}

/// A chat request body in, the routing report out. The caller is `?key=NAME` (a configured
/// key's name), with `x-security-level` and `x-route-*` taken from the request headers.
async fn explain(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Err(e) = authorize(&gw, &headers, &method, &uri) {
        return error_response(&e, "", "");
    }
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return error_response(&e, "", ""),
    };
    let live = gw.live();
    let key_name = query.get("key").map(String::as_str);
    let caller = match explain_caller(
        &live.config.keys,
        key_name,
        CallerHeaders::from_http(&headers),
    ) {
        Ok(c) => c,
        Err(e) => return error_response(&e, "", ""),
    };
    Json(live.catalog.explain(&request, &caller)).into_response()
}

/// A caller for an explanation: a configured key by name (no token needed), the level
/// asked for (or the key's default), and the routing headers. The key's level cap is
/// checked by the explanation, which reports a refusal like any other.
pub fn explain_caller(
    keys: &[crate::config::KeyConfig],
    key_name: Option<&str>,
    headers: CallerHeaders,
) -> Result<Caller, Error> {
    let key = match key_name {
        Some(name) => Some(Arc::new(
            keys.iter()
                .find(|k| k.name == name)
                .cloned()
                .ok_or_else(|| Error::bad_param("key", format!("no key named `{name}`")))?,
        )),
        None => None,
    };
    let level = crate::auth::requested_level(headers.security_level.as_deref(), key.as_deref())?;
    Ok(Caller {
        key,
        level,
        route_headers: headers.route,
        method: crate::auth::AuthMethod::None,
    })
}
