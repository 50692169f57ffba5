//! Who is calling: the API key, the security level the request asks for, and the headers
//! a routing policy may read.
//!
//! The surfaces only collect raw values ([`CallerHeaders`]); [`Keys::caller`] decides,
//! against the live config, so REST and gRPC authenticate the same way.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::{
    config::{KeyConfig, SecurityLevel},
    error::Error,
};

/// The header a request names its security level in.
pub const SECURITY_LEVEL_HEADER: &str = "x-security-level";
/// Headers with this prefix are handed to the routing policy.
pub const ROUTE_HEADER_PREFIX: &str = "x-route-";

/// What a surface read from the request's headers (or gRPC metadata), not yet checked.
#[derive(Debug, Default, Clone)]
pub struct CallerHeaders {
    /// The bearer token (`Authorization: Bearer ...`, or `api-key` / `x-api-key`).
    pub token: Option<String>,
    pub security_level: Option<String>,
    /// `x-route-*` headers, names lowercased.
    pub route: Vec<(String, String)>,
    /// What `Cache-Control` asks of the response cache (the strongest of all sent).
    pub cache: crate::cache::Directive,
    /// The W3C `traceparent`, as sent (parsed by the pipeline).
    pub traceparent: Option<String>,
    /// The client's address as the network layer decided it (`network::client_ip`), for
    /// the key's `ip_allowlist` and the request log; not a header.
    pub client_addr: Option<std::net::IpAddr>,
}

impl CallerHeaders {
    /// Collects the caller's headers from name/value pairs (names already lowercase, as
    /// both `http` and tonic store them).
    pub fn collect<'a>(pairs: impl Iterator<Item = (&'a str, &'a [u8])>) -> CallerHeaders {
        let mut h = CallerHeaders::default();
        for (name, value) in pairs {
            let Ok(value) = std::str::from_utf8(value) else {
                continue;
            };
            match name {
                "authorization" => {
                    let token = value
                        .strip_prefix("Bearer ")
                        .or_else(|| value.strip_prefix("bearer "))
                        .unwrap_or(value);
                    h.token = Some(token.trim().to_owned());
                }
                "api-key" | "x-api-key" if h.token.is_none() => {
                    h.token = Some(value.trim().to_owned());
                }
                SECURITY_LEVEL_HEADER => h.security_level = Some(value.to_owned()),
                "cache-control" => h.cache = h.cache.max(crate::cache::Directive::parse(value)),
                "traceparent" => h.traceparent = Some(value.to_owned()),
                _ if name.starts_with(ROUTE_HEADER_PREFIX) => {
                    h.route.push((name.to_owned(), value.to_owned()));
                }
                _ => {}
            }
        }
        h
    }

    /// From an HTTP request's headers.
    pub fn from_http(headers: &http::HeaderMap) -> CallerHeaders {
        CallerHeaders::collect(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
    }
}

/// The checked caller a request is routed for.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None` when the gateway takes anonymous calls (no keys configured).
    pub key: Option<Arc<KeyConfig>>,
    /// The effective security level.
    pub level: SecurityLevel,
    /// `x-route-*` headers, for the policy.
    pub route_headers: Vec<(String, String)>,
}

impl Caller {
    /// Whether the key may ask for the security level the request names.
    pub fn authorize(&self) -> Result<(), Error> {
        check_level(self.key.as_deref(), self.level)
    }

    /// An anonymous caller at the lowest level (tools, tests, `route --explain`).
    pub fn anonymous() -> Caller {
        Caller {
            key: None,
            level: SecurityLevel::Low,
            route_headers: Vec::new(),
        }
    }
}

/// The configured keys, looked up by the SHA-256 of the token (so the lookup does not
/// compare secrets byte by byte, and the table holds no plaintext).
#[derive(Debug, Default)]
pub struct Keys {
    by_digest: crate::FastMap<[u8; 32], Arc<KeyConfig>>,
}

impl Keys {
    pub fn new(keys: &[KeyConfig]) -> Keys {
        Keys {
            by_digest: keys
                .iter()
                .map(|k| (digest(k.key.expose()), Arc::new(k.clone())))
                .collect(),
        }
    }

    /// Whether calls must carry a key.
    pub fn required(&self) -> bool {
        !self.by_digest.is_empty()
    }

    /// Checks the key and the security level the request asks for.
    pub fn caller(&self, headers: CallerHeaders) -> Result<Caller, Error> {
        let caller = self.authenticate(headers)?;
        caller.authorize()?;
        Ok(caller)
    }

    /// Checks the key (when keys are required) and reads the security level the request
    /// asks for; whether the key may ask for it is [`Caller::authorize`]'s question.
    pub fn authenticate(&self, headers: CallerHeaders) -> Result<Caller, Error> {
        let key = if self.required() {
            let token = headers
                .token
                .as_deref()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| Error::Unauthorized {
                    message: "You didn't provide an API key. Send it as `Authorization: \
                              Bearer KEY`."
                        .to_owned(),
                })?;
            let key = self
                .by_digest
                .get(&digest(token))
                .ok_or_else(|| Error::Unauthorized {
                    // Never echo the token, not even a prefix.
                    message: "Incorrect API key provided.".to_owned(),
                })?;
            Some(key.clone())
        } else {
            None
        };
        let level = requested_level(headers.security_level.as_deref(), key.as_deref())?;
        Ok(Caller {
            key,
            level,
            route_headers: headers.route,
        })
    }
}

/// The level a request asks for: its `x-security-level`, else the key's default, else low.
pub fn requested_level(
    header: Option<&str>,
    key: Option<&KeyConfig>,
) -> Result<SecurityLevel, Error> {
    match header {
        Some(v) => SecurityLevel::parse(v).ok_or_else(|| {
            Error::bad_param(
                SECURITY_LEVEL_HEADER,
                format!("`{SECURITY_LEVEL_HEADER}` must be low, medium or high"),
            )
        }),
        None => Ok(key.map_or(SecurityLevel::Low, |k| k.security_level)),
    }
}

/// Refuses a level above the key's maximum: refused rather than lowered, because quietly
/// routing sensitive data to a less compliant deployment is the one thing the level
/// exists to prevent.
pub fn check_level(key: Option<&KeyConfig>, level: SecurityLevel) -> Result<(), Error> {
    match key {
        Some(k) if level > k.max_security_level => Err(Error::Forbidden {
            message: format!(
                "key `{}` may ask for security level up to `{}`, not `{}`",
                k.name,
                k.max_security_level.as_str(),
                level.as_str()
            ),
            code: "security_level_not_allowed",
        }),
        _ => Ok(()),
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests;
