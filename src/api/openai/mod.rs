//! The REST shim: `POST /v1/chat/completions`, `GET /v1/models`, health and metrics.

pub mod chat;
pub mod embeddings;
pub(crate) mod errors;
pub(crate) mod sse;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, Method, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

pub use errors::{error_response, refusal_response};

use crate::{
    auth::CallerHeaders,
    error::Error,
    gateway::Gateway,
    network::{self, ClientAddr},
};

/// The REST routes over a gateway (no fallback: [`crate::server::router`] sets the one
/// fallback for REST and gRPC together).
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(crate::api::responses::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gateway)
}

fn model_object(id: &str) -> serde_json::Value {
    json!({ "id": id, "object": "model", "created": 0, "owned_by": "switchyard" })
}

/// The caller's headers and address, with what a signed GET signs: the path and query.
fn get_caller(headers: &HeaderMap, client: ClientAddr, uri: &Uri) -> CallerHeaders {
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    network::caller_headers(headers, client).with_target("GET", target)
}

async fn list_models(
    State(gw): State<Arc<Gateway>>,
    client: ClientAddr,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match gw
        .visible_models(get_caller(&headers, client, &uri), None)
        .await
    {
        Ok(names) => {
            let data: Vec<_> = names.iter().map(|m| model_object(m)).collect();
            Json(json!({ "object": "list", "data": data })).into_response()
        }
        Err(e) => error_response(&e, "", ""),
    }
}

async fn get_model(
    State(gw): State<Arc<Gateway>>,
    client: ClientAddr,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match gw
        .visible_models(get_caller(&headers, client, &uri), None)
        .await
    {
        Ok(names) if names.contains(&id) => Json(model_object(&id)).into_response(),
        Ok(_) => error_response(&Error::ModelNotFound { model: id }, "", ""),
        Err(e) => error_response(&e, "", ""),
    }
}

/// Ready when the config is loaded and every model has a deployment whose circuit is not
/// open; otherwise 503 naming the models that have none.
async fn ready(State(gw): State<Arc<Gateway>>) -> Response {
    let live = gw.live();
    let now = tokio::time::Instant::now();
    let unreachable: Vec<&str> = live
        .catalog
        .models()
        .iter()
        .filter(|m| {
            m.deployments
                .iter()
                .all(|d| d.health.state(now) == crate::health::CircuitState::Open)
        })
        .map(|m| &*m.name)
        .collect();
    let models = live.catalog.models().len();
    if unreachable.is_empty() {
        Json(json!({ "status": "ready", "models": models })).into_response()
    } else {
        let body = json!({ "status": "unavailable", "models": models, "unreachable": unreachable });
        (http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn metrics() -> String {
    crate::telemetry::prometheus().render()
}

/// A 404 in the OpenAI error shape.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    let err = Error::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    };
    error_response(&err, "", "")
}

/// A known path asked with the wrong method: 405 with `allow`, in the OpenAI error shape
/// (the REST and admin routers' `method_not_allowed_fallback`).
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let allow = match uri.path() {
        "/v1/chat/completions" | "/v1/responses" | "/admin/reload" | "/admin/route/explain" => {
            "POST"
        }
        p if p.starts_with("/admin/routes/") => "GET, PUT, DELETE",
        p if p.starts_with("/v1/responses/") => "GET, DELETE",
        _ => "GET",
    };
    let err = Error::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
        allow,
    };
    let mut resp = error_response(&err, "", "");
    resp.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    resp
}
