//! `[telemetry]`: the OTLP trace export, as written and validated.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, Secret};

/// `[telemetry]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryFile {
    /// The collector's OTLP/HTTP base URL (`http://host:4318`); spans go to `/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// Headers sent with every export (values may be `env:NAME`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The share of requests traced, 0 to 1 (default 1).
    pub sampling_ratio: Option<f64>,
    /// Whether spans carry the prompt and the completion (default false).
    pub capture_content: Option<bool>,
    /// The `service.name` of the exported resource (default `switchyard`).
    pub service_name: Option<String>,
}

/// `[telemetry]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans are POSTed (the endpoint plus `/v1/traces`); `None`: no export.
    pub traces_url: Option<String>,
    /// Export headers; their values are secrets and never print.
    pub headers: Vec<(String, Secret)>,
    pub sampling_ratio: f64,
    pub capture_content: bool,
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            traces_url: None,
            headers: Vec::new(),
            sampling_ratio: 1.0,
            capture_content: false,
            service_name: "switchyard".to_owned(),
        }
    }
}

/// Validates `[telemetry]`.
pub fn telemetry_config(f: &TelemetryFile) -> Result<TelemetryConfig, ConfigError> {
    let d = TelemetryConfig::default();
    let traces_url = match f.otlp_endpoint.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(endpoint) => {
            let ok = (endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                && reqwest::Url::parse(endpoint).is_ok_and(|u| u.host_str().is_some());
            if !ok {
                return Err(ConfigError::new(
                    "telemetry.otlp_endpoint",
                    "must be an http(s) URL such as `http://collector:4318` (spans are \
                     POSTed to its /v1/traces)",
                ));
            }
            let base = endpoint.trim_end_matches('/');
            let base = base.strip_suffix("/v1/traces").unwrap_or(base);
            Some(format!("{base}/v1/traces"))
        }
    };
    let mut headers = Vec::with_capacity(f.headers.len());
    for (name, value) in &f.headers {
        let key = format!("telemetry.headers.{name}");
        if http::HeaderName::try_from(name.as_str()).is_err() {
            return Err(ConfigError::new(key, "is not a valid HTTP header name"));
        }
        let secret = Secret::resolve(value).map_err(|r| ConfigError::new(&key, r))?;
        if http::HeaderValue::try_from(secret.expose()).is_err() {
            // The value is not echoed: it is often a token.
            return Err(ConfigError::new(key, "is not a valid HTTP header value"));
        }
        headers.push((name.to_ascii_lowercase(), secret));
    }
    let sampling_ratio = match f.sampling_ratio {
        Some(r) if !(0.0..=1.0).contains(&r) => {
            return Err(ConfigError::new(
                "telemetry.sampling_ratio",
                format!("must be between 0 and 1 (got {r})"),
            ));
        }
        Some(r) => r,
        None => d.sampling_ratio,
    };
    let service_name = match f.service_name.as_deref().map(str::trim) {
        Some("") => {
            return Err(ConfigError::new(
                "telemetry.service_name",
                "must not be empty",
            ));
        }
        Some(s) => s.to_owned(),
        None => d.service_name,
    };
    if traces_url.is_none() && (!headers.is_empty() || f.sampling_ratio.is_some()) {
        return Err(ConfigError::new(
            "telemetry.otlp_endpoint",
            "is required when telemetry.headers or telemetry.sampling_ratio is set",
        ));
    }
    Ok(TelemetryConfig {
        traces_url,
        headers,
        sampling_ratio,
        capture_content: f.capture_content.unwrap_or(d.capture_content),
        service_name,
    })
}
