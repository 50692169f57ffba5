//! Who is calling: the API key, the security level the request asks for, and the headers
//! a routing policy may read.
//!
//! The surfaces only collect raw values ([`CallerHeaders`]); [`Keys::authenticate`]
//! decides, against the live config, so REST and gRPC authenticate the same way. A
//! caller proves who it is in one of three ways:
//! - a bearer key, looked up by the SHA-256 of the token ([`Keys`]);
//! - a JWT from a configured identity provider ([`jwt`], keys from [`jwks`]), whose claim
//!   names the key it acts as;
//! - an HMAC-signed request ([`signed`]), checked at ingress for form and freshness and,
//!   once the body is in, for its signature and against replays ([`replay`]).

pub mod jwks;
pub mod jwt;
pub mod replay;
pub mod signed;

use std::{sync::Arc, time::Duration};

use sha2::{Digest, Sha256};

use crate::{
    config::{Config, KeyConfig, SecurityLevel},
    error::Error,
};
use signed::{BodyDigest, SignatureHeaders, SignedClaim};

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
    /// The signed-request headers, when sent.
    pub signed: SignatureHeaders,
    /// What a signed request signs besides its timestamp and body: the method and the
    /// path and query, as the surface received them ([`CallerHeaders::with_target`]).
    pub method: &'static str,
    pub target: String,
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
                signed::KEY_ID_HEADER => h.signed.key_id = Some(value.to_owned()),
                signed::TIMESTAMP_HEADER => h.signed.timestamp = Some(value.to_owned()),
                signed::SIGNATURE_HEADER => h.signed.signature = Some(value.to_owned()),
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

    /// Names the method and the path and query the request was sent to (what a signed
    /// request signs). Without it a signed request cannot verify.
    pub fn with_target(mut self, method: &'static str, target: &str) -> CallerHeaders {
        if self.signed.any() {
            self.method = method;
            self.target = target.to_owned();
        }
        self
    }
}

/// How the caller proved who it is (the request log's `auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No keys are configured: anonymous calls.
    None,
    Bearer,
    Hmac,
    Jwt,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Bearer => "bearer",
            AuthMethod::Hmac => "hmac",
            AuthMethod::Jwt => "jwt",
        }
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
    /// How the caller authenticated.
    pub method: AuthMethod,
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
            method: AuthMethod::None,
        }
    }
}

/// What authentication from the headers ends with: a caller, or a signed request whose
/// signature can only be checked once its body is in ([`Keys::verify_signed`]).
#[derive(Debug)]
pub enum Authenticated {
    Caller(Caller),
    Signed(Box<PendingSignature>),
}

/// A signed request, well formed and fresh, waiting for its body.
#[derive(Debug)]
pub struct PendingSignature {
    claim: SignedClaim,
    security_level: Option<String>,
    route: Vec<(String, String)>,
}

/// The configured keys and how each may be proved: bearer tokens looked up by their
/// SHA-256 (so no secret is compared byte by byte, and the table holds no plaintext),
/// HMAC secrets and JWT mappings by key name.
pub struct Keys {
    by_digest: crate::FastMap<[u8; 32], Arc<KeyConfig>>,
    by_name: crate::FastMap<String, Arc<KeyConfig>>,
    jwt: Option<jwt::JwtAuth>,
    kept: Arc<AuthState>,
    window: Duration,
}

/// What authentication keeps across reloads: the signatures seen inside their window (a
/// reload must not open a replay window) and the identity providers' key sets fetched
/// from a URL (a reload must neither refetch them nor lose them to a provider that is
/// down at that moment).
pub struct AuthState {
    pub replay: replay::ReplayGuard,
    key_sets: std::sync::Mutex<Vec<Arc<jwks::Jwks>>>,
}

impl AuthState {
    /// `state`: Redis for replays across replicas, when configured.
    pub fn new(state: Option<Arc<crate::state::State>>) -> AuthState {
        AuthState {
            replay: replay::ReplayGuard::new(state),
            key_sets: std::sync::Mutex::default(),
        }
    }

    /// The key sets of `configs`: a URL's set kept from the last build when its
    /// `[[jwt]]` is unchanged; a file's read again (a reload is when it may have changed).
    fn key_sets(
        &self,
        configs: &[crate::config::JwtConfig],
        dir: &std::path::Path,
        client: &reqwest::Client,
    ) -> Result<Vec<Arc<jwks::Jwks>>, String> {
        let mut kept = self
            .key_sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut sets = Vec::with_capacity(configs.len());
        for c in configs {
            let same = kept
                .iter()
                .find(|j| j.config() == c && matches!(c.source, crate::config::JwksSource::Url(_)));
            sets.push(match same {
                Some(j) => j.clone(),
                None => Arc::new(jwks::Jwks::new(c, dir, client.clone())?),
            });
        }
        kept.clone_from(&sets);
        Ok(sets)
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({})", self.by_name.len())
    }
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(&[])
    }
}

impl Keys {
    /// Bearer keys only, with a replay guard of their own (tools and tests).
    pub fn new(keys: &[KeyConfig]) -> Keys {
        Keys::from_parts(
            keys,
            None,
            Arc::new(AuthState::new(None)),
            crate::config::DEFAULT_SIGNATURE_WINDOW,
        )
    }

    /// Every way `config`'s keys may be proved. `kept` outlives reloads; `client`
    /// fetches JWT signing keys. Fails on a `jwks_file` that cannot be read.
    pub fn build(
        config: &Config,
        client: &reqwest::Client,
        kept: Arc<AuthState>,
    ) -> Result<Keys, String> {
        let jwt = if config.jwt.is_empty() {
            None
        } else {
            let sets = kept.key_sets(&config.jwt, &config.dir, client)?;
            Some(jwt::JwtAuth::new(sets))
        };
        Ok(Keys::from_parts(
            &config.keys,
            jwt,
            kept,
            config.signature_window,
        ))
    }

    fn from_parts(
        keys: &[KeyConfig],
        jwt: Option<jwt::JwtAuth>,
        kept: Arc<AuthState>,
        window: Duration,
    ) -> Keys {
        let by_name: crate::FastMap<String, Arc<KeyConfig>> = keys
            .iter()
            .map(|k| (k.name.clone(), Arc::new(k.clone())))
            .collect();
        Keys {
            by_digest: by_name
                .values()
                .filter_map(|k| k.key.as_ref().map(|t| (digest(t.expose()), k.clone())))
                .collect(),
            by_name,
            jwt,
            kept,
            window,
        }
    }

    /// Whether calls must carry a key.
    pub fn required(&self) -> bool {
        !self.by_name.is_empty()
    }

    /// Checks a bearer key and the security level the request asks for (tools and tests:
    /// JWTs and signed requests need [`Keys::authenticate`]).
    pub fn caller(&self, headers: CallerHeaders) -> Result<Caller, Error> {
        let key = if self.required() {
            Some(self.bearer(headers.token.as_deref())?)
        } else {
            None
        };
        let caller = caller(
            key,
            AuthMethod::Bearer,
            headers.security_level,
            headers.route,
        )?;
        caller.authorize()?;
        Ok(caller)
    }

    /// Authenticates from the headers: a bearer key or a JWT (the caller, or why not), or
    /// a signed request's headers checked for form and freshness (its signature waits for
    /// the body). Whether the key may ask for the level is [`Caller::authorize`]'s
    /// question.
    pub async fn authenticate(&self, headers: CallerHeaders) -> Result<Authenticated, Error> {
        if !self.required() {
            return caller(
                None,
                AuthMethod::None,
                headers.security_level,
                headers.route,
            )
            .map(Authenticated::Caller);
        }
        if headers.signed.any() {
            let claim = SignedClaim::parse(
                &headers.signed,
                headers.method,
                &headers.target,
                unix_now(),
                self.window,
            )?;
            return Ok(Authenticated::Signed(Box::new(PendingSignature {
                claim,
                security_level: headers.security_level,
                route: headers.route,
            })));
        }
        let token = headers.token.as_deref();
        let (key, method) = match (self.bearer(token), &self.jwt, token) {
            (Ok(key), ..) => (key, AuthMethod::Bearer),
            (Err(_), Some(jwt), Some(token)) if jwt::looks_like_jwt(token) => {
                (self.jwt_key(jwt, token).await?, AuthMethod::Jwt)
            }
            (Err(e), ..) => return Err(e),
        };
        caller(Some(key), method, headers.security_level, headers.route).map(Authenticated::Caller)
    }

    /// Checks a signed request's signature over its body (in constant time; an unknown
    /// key id fails exactly as a wrong signature does), then that it was not seen before.
    pub async fn verify_signed(
        &self,
        pending: PendingSignature,
        body: &BodyDigest,
    ) -> Result<Caller, Error> {
        let PendingSignature {
            claim,
            security_level,
            route,
        } = pending;
        let key = self.by_name.get(&claim.key_id);
        let secret = key
            .and_then(|k| k.hmac_secret.as_ref())
            .map(|s| s.expose().as_bytes());
        // During a rotation the previous secret verifies too (each check in constant time;
        // which one matched is not said).
        let previous = key
            .and_then(|k| k.hmac_secret_previous.as_ref())
            .map(|s| s.expose().as_bytes());
        claim.verify(secret, body).or_else(|e| match previous {
            Some(previous) => claim.verify(Some(previous), body),
            None => Err(e),
        })?;
        let key = key.cloned().ok_or_else(signed::invalid)?;
        // Fresh again now that the body is in: the replay set remembers a signature only
        // until its timestamp leaves the window.
        let now = unix_now();
        signed::fresh(claim.at, now, self.window)?;
        let until = claim.at + self.window.as_secs() as i64;
        self.kept.replay.check(&claim.signature, until, now).await?;
        caller(Some(key), AuthMethod::Hmac, security_level, route)
    }

    fn bearer(&self, token: Option<&str>) -> Result<Arc<KeyConfig>, Error> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unauthorized {
                message: "You didn't provide an API key. Send it as `Authorization: Bearer KEY`, \
                          or sign the request."
                    .to_owned(),
                code: "invalid_api_key",
            })?;
        // A hash-map lookup by the token's SHA-256: what is compared is a digest the
        // caller cannot steer byte by byte, so the time taken says nothing about how much
        // of a real key a guess matched.
        self.by_digest
            .get(&digest(token))
            .cloned()
            .ok_or_else(|| Error::Unauthorized {
                // Never echo the token, not even a prefix.
                message: "Incorrect API key provided.".to_owned(),
                code: "invalid_api_key",
            })
    }

    async fn jwt_key(&self, jwt: &jwt::JwtAuth, token: &str) -> Result<Arc<KeyConfig>, Error> {
        jwt.key_for(token, |claims, issuer| {
            // Only keys this issuer may act as: those its `keys` names, or without that
            // list, keys with no bearer token or signing secret of their own (a token's
            // claim must not reach a key meant for another kind of caller).
            let may = |k: &KeyConfig| match &issuer.keys {
                Some(names) => names.contains(&k.name),
                None => k.key.is_none() && k.hmac_secret.is_none(),
            };
            let claim = &issuer.key_claim;
            jwt::claim_values(claims, claim)
                .into_iter()
                .filter_map(|name| self.by_name.get(name))
                .find(|k| may(k))
                .cloned()
                .ok_or_else(|| Error::Forbidden {
                    message: format!(
                        "The token is valid, but its `{claim}` claim names no key this \
                         issuer's tokens may act as."
                    ),
                    code: "token_not_mapped",
                })
        })
        .await
    }
}

fn caller(
    key: Option<Arc<KeyConfig>>,
    method: AuthMethod,
    security_level: Option<String>,
    route: Vec<(String, String)>,
) -> Result<Caller, Error> {
    let level = requested_level(security_level.as_deref(), key.as_deref())?;
    Ok(Caller {
        key,
        level,
        route_headers: route,
        method,
    })
}

/// Seconds since the Unix epoch: signed requests carry wall-clock time.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
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
