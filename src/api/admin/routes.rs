//! `/admin/routes[/{model}]`: read, set and clear live route overrides. With
//! `state.redis_url` a change is written to Redis and announced to every replica; without
//! it, it applies to this replica only.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Value, json};

use super::authorize;
use crate::{
    api::openai::errors::error_response,
    error::Error,
    gateway::{Gateway, Live},
    routes::{Applied, Origin, RouteOverride, shared},
};

/// What `scope` says of a change on this gateway.
fn scope(gw: &Gateway) -> &'static str {
    if gw.state().redis().is_some() {
        "all replicas (redis)"
    } else {
        "this replica only (no state.redis_url)"
    }
}

/// The body of `PUT /admin/routes/{model}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    deployments: Vec<String>,
    #[serde(default)]
    policy: Option<String>,
}

/// A model's routing now: its order, policy and where the order came from, and the
/// override held for it (applied or not).
fn view(live: &Live, model: &str, held: Option<&Applied>) -> Option<Value> {
    let route = live.catalog.model(model).ok();
    if route.is_none() && held.is_none() {
        return None;
    }
    Some(json!({
        "model": model,
        "order": route.map(|r| r.deployments.iter().map(|d| d.id.to_string()).collect::<Vec<_>>()),
        "policy": route.map(|r| r.policy.to_string()),
        "source": route.map(|r| r.order_source.as_deref().unwrap_or("config file").to_owned()),
        "override": held.map(|a| json!({
            "deployments": a.route.deployments,
            "policy": a.route.policy,
            "set_at": a.route.set_at,
            "origin": a.origin.as_str(),
            "applied": route.is_some_and(|r| r.order_source.is_some()),
        })),
    }))
}

fn denied(gw: &Gateway, headers: &HeaderMap, method: &Method, uri: &Uri) -> Option<Response> {
    authorize(gw, headers, method, uri)
        .err()
        .map(|e| error_response(&e, "", ""))
}

/// `GET /admin/routes`: every model's routing and every override held.
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = denied(&gw, &headers, &method, &uri) {
        return r;
    }
    let live = gw.live();
    let held = gw.routes().snapshot();
    let mut names: Vec<String> = live
        .catalog
        .models()
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    names.extend(
        held.keys()
            .filter(|k| !names.contains(k))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let models: Vec<Value> = names
        .iter()
        .filter_map(|n| view(&live, n, held.get(n)))
        .collect();
    Json(json!({ "scope": scope(&gw), "models": models })).into_response()
}

/// `GET /admin/routes/{model}`.
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Path(model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = denied(&gw, &headers, &method, &uri) {
        return r;
    }
    let held = gw.routes().snapshot();
    match view(&gw.live(), &model, held.get(&model)) {
        Some(v) => Json(v).into_response(),
        None => error_response(&Error::ModelNotFound { model }, "", ""),
    }
}

/// `PUT /admin/routes/{model}`: validated against the running config, then written to
/// Redis and announced (every replica applies it), or applied here alone without Redis.
pub async fn put(
    State(gw): State<Arc<Gateway>>,
    Path(model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = denied(&gw, &headers, &method, &uri) {
        return r;
    }
    let body: PutBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            let message = format!(
                "expected {{\"deployments\": [\"provider/model\", ...], \"policy\": \"name\" \
                 (optional)}}: {e}"
            );
            return bad_request(message);
        }
    };
    let route = RouteOverride::now(body.deployments, body.policy);
    if let Err(message) = crate::routes::validate(&gw.live().config, &model, &route) {
        return bad_request(format!("route override for `{model}` refused: {message}"));
    }
    match gw.state().redis() {
        Some(redis) => {
            let (m, r) = (model.clone(), route.clone());
            let written = redis
                .run("routes_write", |mut conn| async move {
                    shared::write(&mut conn, &m, &r).await
                })
                .await;
            if let Err(e) = written {
                return redis_down(&e.to_string());
            }
            apply_from_redis(&gw, &model).await;
        }
        None => {
            let applied = Applied {
                route: route.clone(),
                origin: Origin::Local,
            };
            if let Err(r) = apply_here(&gw, model.clone(), Some(applied)).await {
                return r;
            }
        }
    }
    Json(json!({
        "model": model,
        "deployments": route.deployments,
        "policy": route.policy,
        "set_at": route.set_at,
        "scope": scope(&gw),
    }))
    .into_response()
}

fn bad_request(message: String) -> Response {
    error_response(
        &Error::BadRequest {
            message,
            param: None,
        },
        "",
        "",
    )
}

/// `DELETE /admin/routes/{model}`: the configured order again.
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Path(model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = denied(&gw, &headers, &method, &uri) {
        return r;
    }
    let held = gw.routes().snapshot().contains_key(&model);
    if let Some(redis) = gw.state().redis() {
        let m = model.clone();
        let cleared = redis
            .run("routes_write", |mut conn| async move {
                shared::clear(&mut conn, &m).await
            })
            .await;
        if let Err(e) = cleared {
            return redis_down(&e.to_string());
        }
        apply_from_redis(&gw, &model).await;
    } else if let Err(r) = apply_here(&gw, model.clone(), None).await {
        return r;
    }
    Json(json!({ "model": model, "cleared": held, "scope": scope(&gw) })).into_response()
}

/// After a change written to Redis: applies what Redis holds for `model` now (the
/// subscriber would, within a second; the caller should see it at once). Not the change
/// itself: a concurrent one may have replaced it already, and this replica must end on
/// what Redis holds. The change is stored, so a failed read is only logged: the
/// subscriber applies it when it can.
async fn apply_from_redis(gw: &Arc<Gateway>, model: &str) {
    if let Err(error) = crate::routes::follow::refresh(gw, model.to_owned()).await {
        tracing::warn!(
            %model, %error,
            "route override written to Redis but not applied here yet; the subscriber will"
        );
    }
}

/// Applies a change to this gateway alone (no Redis).
async fn apply_here(
    gw: &Arc<Gateway>,
    model: String,
    applied: Option<Applied>,
) -> Result<(), Response> {
    let worker = gw.clone();
    match tokio::task::spawn_blocking(move || worker.apply_route(&model, applied)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(error_response(&e, "", "")),
        Err(e) => Err(error_response(
            &Error::Internal {
                detail: format!("route override task: {e}"),
            },
            "",
            "",
        )),
    }
}

/// 503: Redis could not be reached, so nothing changed (the error never names the URL).
fn redis_down(error: &str) -> Response {
    let body = json!({ "error": {
        "message": format!("the route override was not changed: Redis is unreachable ({error}); retry when it is back"),
        "type": "api_error",
        "param": null,
        "code": "redis_unavailable",
    }});
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
