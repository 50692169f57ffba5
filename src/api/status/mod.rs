//! `GET /status`: the status page, served by the gateway itself — one HTML page, its
//! stylesheet and script embedded in the binary (no build step, no CDN) — and
//! `GET /status/data`, the JSON it polls ([`data`]).
//!
//! The page and its assets are static and hold no data (the page says only whether the
//! data needs a key), so they are served to anyone.
//! The data is behind `admin.api_key` when one is set: a browser cannot send a bearer
//! token on a page load, so the page asks for the key, keeps it in the tab's
//! `sessionStorage` and sends it as `Authorization: Bearer` on each poll; it never goes
//! into a URL. Without an admin key the data is open, like `/metrics`.

pub mod data;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderMap, HeaderValue, header};

use super::openai::errors::error_response;
use crate::{error::Error, gateway::Gateway};

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("app.js");
const ICON: &str = include_str!("icon.svg");

/// The page's own files only: no inline script or style, no other origin, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/status", get(page))
        .route(
            "/status/style.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            "/status/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/status/icon.svg",
            get(|| async { asset(ICON, "image/svg+xml") }),
        )
        .route("/status/data", get(status_data))
        .method_not_allowed_fallback(super::openai::method_not_allowed)
        .with_state(gateway)
}

/// The page, told whether the data needs the admin key (so it asks for it at once rather
/// than after a 401); that is all it says about the gateway.
async fn page(State(gw): State<Arc<Gateway>>) -> Response {
    let auth = if gw.live().config.admin_key.is_some() {
        "required"
    } else {
        "none"
    };
    asset(
        PAGE.replacen("{{auth}}", auth, 1),
        "text/html; charset=utf-8",
    )
}

fn asset(body: impl Into<axum::body::Body>, content_type: &'static str) -> Response {
    let mut resp = Response::new(body.into());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// `GET /status/data`: 401 without the admin key when one is set.
async fn status_data(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Some(key) = &gw.live().config.admin_key
        && !super::admin::sends_admin_key(&headers, key)
    {
        let e = Error::Unauthorized {
            message: "the status data needs `Authorization: Bearer <admin.api_key>`".to_owned(),
            code: "invalid_api_key",
        };
        return error_response(&e, "", "");
    }
    let mut resp = Json(data::collect(&gw).await).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
