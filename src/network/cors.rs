//! CORS for browser callers (`[security.cors]`): preflights answered at the edge, the
//! allow and expose headers added to every answer for an allowed origin, and nothing at
//! all for an origin that is not allowed.
//!
//! Everything a response carries is built once per config load; a request pays a lookup
//! of its `Origin` among the configured ones.

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::config::CorsFile;

/// The methods allowed when `allowed_methods` is not set.
pub const DEFAULT_METHODS: &[&str] = &["GET", "POST"];
/// The request headers allowed when `allowed_headers` is not set: what the official SDKs
/// and switchyard's own callers send (a trailing `*` matches a prefix).
pub const DEFAULT_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "api-key",
    "x-api-key",
    "x-request-id",
    "x-security-level",
    "x-route-*",
    "x-switchyard-*",
    "x-stainless-*",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "anthropic-version",
    "anthropic-beta",
    "cache-control",
    "traceparent",
    "tracestate",
];
/// The response headers a browser script may read when `expose_headers` is not set.
pub const DEFAULT_EXPOSE: &[&str] = &[
    "x-request-id",
    "x-switchyard-provider",
    "x-switchyard-attempts",
    "x-switchyard-cache",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "retry-after",
];
/// How long a browser may cache a preflight when `max_age_s` is not set.
pub const DEFAULT_MAX_AGE_S: u64 = 600;

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Any,
    /// `scheme://host[:port]`, lowercase.
    Exact(String),
    /// `scheme://*.suffix[:port]`: the scheme (with `://`) and `.suffix[:port]`.
    Subdomains {
        scheme: String,
        suffix: String,
    },
}

impl Origin {
    fn parse(s: &str) -> Result<Origin, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(Origin::Any);
        }
        let lower = s.to_ascii_lowercase();
        let Some((scheme, host)) = lower.split_once("://") else {
            return Err(format!(
                "`{s}` is not an origin (`https://host[:port]`, `https://*.domain` or `*`)"
            ));
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]*".contains(&b));
        if scheme.is_empty() || !host_ok {
            return Err(format!(
                "`{s}` is not an origin: scheme://host[:port], no path or trailing slash"
            ));
        }
        match host.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && !rest[1..].contains('*') && rest.len() > 1 => {
                Ok(Origin::Subdomains {
                    scheme: format!("{scheme}://"),
                    suffix: rest.to_owned(),
                })
            }
            Some(_) => Err(format!(
                "`{s}`: a wildcard must be a whole leading label (`*.`)"
            )),
            None if host.contains('*') => Err(format!(
                "`{s}`: a wildcard must be a whole leading label (`*.`)"
            )),
            None => Ok(Origin::Exact(lower)),
        }
    }

    /// `origin` as a browser sends it (compared without regard to case).
    fn matches(&self, origin: &str) -> bool {
        match self {
            Origin::Any => true,
            Origin::Exact(o) => o.eq_ignore_ascii_case(origin),
            Origin::Subdomains { scheme, suffix } => {
                let origin = origin.to_ascii_lowercase();
                origin
                    .strip_prefix(scheme.as_str())
                    .and_then(|host| host.strip_suffix(suffix.as_str()))
                    .is_some_and(|label| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    })
            }
        }
    }
}

/// A header name pattern of `allowed_headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HeaderRule {
    Any,
    Exact(String),
    Prefix(String),
}

impl HeaderRule {
    fn parse(s: &str) -> Result<HeaderRule, String> {
        let lower = s.trim().to_ascii_lowercase();
        if lower == "*" {
            return Ok(HeaderRule::Any);
        }
        let (name, prefix) = match lower.strip_suffix('*') {
            Some(p) => (p, true),
            None => (lower.as_str(), false),
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(format!("`{s}` is not a header name"));
        }
        Ok(if prefix {
            HeaderRule::Prefix(name.to_owned())
        } else {
            HeaderRule::Exact(name.to_owned())
        })
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            HeaderRule::Any => true,
            HeaderRule::Exact(n) => n.eq_ignore_ascii_case(name),
            HeaderRule::Prefix(p) => {
                name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p)
            }
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The validated policy.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<Origin>,
    headers: Vec<HeaderRule>,
    methods: Vec<Method>,
    methods_value: HeaderValue,
    expose_value: Option<HeaderValue>,
    max_age_value: HeaderValue,
    credentials: bool,
}

/// What a browser sent: its `Origin`, and for a preflight what it asks.
pub struct Asked<'a> {
    pub origin: &'a HeaderValue,
    pub method: Option<&'a HeaderValue>,
    pub headers: Option<&'a HeaderValue>,
}

impl Cors {
    /// Validates `[security.cors]`; an error is `(field, reason)`.
    pub fn new(f: &CorsFile) -> Result<Cors, (&'static str, String)> {
        if f.allowed_origins.is_empty() {
            return Err((
                "allowed_origins",
                "list at least one origin (or remove [security.cors])".to_owned(),
            ));
        }
        let origins = f
            .allowed_origins
            .iter()
            .map(|o| Origin::parse(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("allowed_origins", e))?;
        let credentials = f.allow_credentials.unwrap_or(false);
        if credentials && origins.contains(&Origin::Any) {
            return Err((
                "allow_credentials",
                "cannot be true with the origin `*` (browsers refuse it); list the origins"
                    .to_owned(),
            ));
        }
        let headers: Vec<HeaderRule> = match &f.allowed_headers {
            Some(h) => h
                .iter()
                .map(|h| HeaderRule::parse(h))
                .collect::<Result<_, _>>(),
            None => DEFAULT_HEADERS
                .iter()
                .map(|h| HeaderRule::parse(h))
                .collect::<Result<_, _>>(),
        }
        .map_err(|e| ("allowed_headers", e))?;
        let method_names: Vec<String> = match &f.allowed_methods {
            Some(m) => m.iter().map(|m| m.trim().to_ascii_uppercase()).collect(),
            None => DEFAULT_METHODS.iter().map(|m| (*m).to_owned()).collect(),
        };
        if method_names.is_empty() {
            return Err(("allowed_methods", "list at least one method".to_owned()));
        }
        let methods = method_names
            .iter()
            .map(|m| {
                Method::from_bytes(m.as_bytes())
                    .map_err(|_| ("allowed_methods", format!("`{m}` is not an HTTP method")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expose: Vec<String> = match &f.expose_headers {
            Some(h) => h.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
            None => DEFAULT_EXPOSE.iter().map(|h| (*h).to_owned()).collect(),
        };
        if let Some(bad) = expose
            .iter()
            .find(|h| h.is_empty() || !h.bytes().all(is_token_byte))
        {
            return Err(("expose_headers", format!("`{bad}` is not a header name")));
        }
        let value = |field: &'static str, s: String| {
            HeaderValue::from_str(&s).map_err(|_| (field, format!("`{s}` is not a header value")))
        };
        let max_age = f.max_age_s.unwrap_or(DEFAULT_MAX_AGE_S);
        Ok(Cors {
            origins,
            headers,
            methods,
            methods_value: value("allowed_methods", method_names.join(", "))?,
            expose_value: if expose.is_empty() {
                None
            } else {
                Some(value("expose_headers", expose.join(", "))?)
            },
            max_age_value: HeaderValue::from(max_age),
            credentials,
        })
    }

    /// Whether a request is a CORS preflight (answered here, never routed).
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    fn allows_origin(&self, origin: &HeaderValue) -> bool {
        origin
            .to_str()
            .is_ok_and(|o| self.origins.iter().any(|rule| rule.matches(o)))
    }

    /// `access-control-allow-origin` for an allowed origin: `*` when any origin may call
    /// and no credentials are sent, else the origin itself.
    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if !self.credentials && self.origins.contains(&Origin::Any) {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// The answer to a preflight: 204, with the allow headers only when the origin, the
    /// method and every header asked for are allowed (otherwise the browser refuses the
    /// call, and the answer says nothing about what would be allowed).
    pub fn preflight(&self, asked: &Asked<'_>) -> http::Response<axum::body::Body> {
        let mut resp = http::Response::new(axum::body::Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("origin"));
        h.append(
            header::VARY,
            HeaderValue::from_static("access-control-request-method"),
        );
        h.append(
            header::VARY,
            HeaderValue::from_static("access-control-request-headers"),
        );
        let method_ok = asked
            .method
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .is_some_and(|m| self.methods.contains(&m));
        let headers_ok = asked.headers.is_none_or(|list| {
            list.to_str().is_ok_and(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .all(|n| self.headers.iter().any(|rule| rule.matches(n)))
            })
        });
        if !(self.allows_origin(asked.origin) && method_ok && headers_ok) {
            return resp;
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(asked.origin),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.methods_value.clone(),
        );
        if let Some(list) = asked.headers.filter(|l| !l.is_empty()) {
            // Every name asked for is allowed (checked above): echo the list, since the
            // configured patterns (`x-stainless-*`) are not header names.
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, list.clone());
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age_value.clone());
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        resp
    }

    /// Adds the CORS headers of an actual (not preflight) request's answer: for an allowed
    /// origin, allow-origin, expose-headers and (when configured) allow-credentials; for
    /// any other origin nothing but `vary: origin`.
    pub fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        let any = !self.credentials && self.origins.contains(&Origin::Any);
        if !any {
            // The answer differs by origin: shared caches must key on it.
            headers.append(header::VARY, HeaderValue::from_static("origin"));
        }
        let Some(origin) = origin.filter(|o| self.allows_origin(o)) else {
            return;
        };
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(origin),
        );
        if let Some(expose) = &self.expose_value {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors::new(&CorsFile {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..CorsFile::default()
        })
        .unwrap()
    }

    fn v(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn origins_match_exactly_by_subdomain_or_any() {
        let c = cors(&[
            "https://app.example.com",
            "https://*.corp.example",
            "http://localhost:3000",
        ]);
        assert!(c.allows_origin(&v("https://app.example.com")));
        assert!(c.allows_origin(&v("HTTPS://APP.example.com")));
        assert!(
            !c.allows_origin(&v("http://app.example.com")),
            "scheme matters"
        );
        assert!(!c.allows_origin(&v("https://app.example.com.evil.net")));
        assert!(c.allows_origin(&v("https://a.b.corp.example")));
        assert!(
            !c.allows_origin(&v("https://corp.example")),
            "a subdomain is needed"
        );
        assert!(!c.allows_origin(&v("https://evilcorp.example")));
        assert!(c.allows_origin(&v("http://localhost:3000")));
        assert!(!c.allows_origin(&v("http://localhost:3001")));
        assert!(!c.allows_origin(&v("null")));
        assert!(cors(&["*"]).allows_origin(&v("https://anything.test")));
    }

    #[test]
    fn bad_config_is_refused_naming_the_field() {
        let bad = |f: CorsFile| Cors::new(&f).unwrap_err();
        assert_eq!(bad(CorsFile::default()).0, "allowed_origins");
        for o in [
            "example.com",
            "https://",
            "https://a.com/path",
            "https://a*.com",
            "https://*",
        ] {
            let f = CorsFile {
                allowed_origins: vec![o.to_owned()],
                ..CorsFile::default()
            };
            assert_eq!(bad(f).0, "allowed_origins", "{o}");
        }
        let f = CorsFile {
            allowed_origins: vec!["*".to_owned()],
            allow_credentials: Some(true),
            ..CorsFile::default()
        };
        assert_eq!(bad(f).0, "allow_credentials");
        let f = CorsFile {
            allowed_origins: vec!["*".to_owned()],
            allowed_methods: Some(vec!["GE T".to_owned()]),
            ..CorsFile::default()
        };
        assert_eq!(bad(f).0, "allowed_methods");
        let f = CorsFile {
            allowed_origins: vec!["*".to_owned()],
            allowed_headers: Some(vec!["bad header".to_owned()]),
            ..CorsFile::default()
        };
        assert_eq!(bad(f).0, "allowed_headers");
    }

    #[test]
    fn a_preflight_is_allowed_only_when_origin_method_and_headers_are() {
        let c = cors(&["https://app.example.com"]);
        let origin = v("https://app.example.com");
        let post = v("POST");
        let asked = v("authorization, content-type, x-stainless-os");
        let ok = c.preflight(&Asked {
            origin: &origin,
            method: Some(&post),
            headers: Some(&asked),
        });
        assert_eq!(ok.status(), 204);
        let h = ok.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-methods"], "GET, POST");
        assert_eq!(h["access-control-allow-headers"], asked);
        assert_eq!(h["access-control-max-age"], "600");
        assert!(!h.contains_key("access-control-allow-credentials"));

        let other = v("https://evil.example");
        let put = v("PUT");
        let odd = v("authorization, x-unlisted");
        for (origin, method, headers) in [
            (&other, &post, None),
            (&origin, &put, None),
            (&origin, &post, Some(&odd)),
        ] {
            let resp = c.preflight(&Asked {
                origin,
                method: Some(method),
                headers,
            });
            assert_eq!(resp.status(), 204);
            assert!(
                resp.headers()
                    .keys()
                    .all(|k| !k.as_str().starts_with("access-control-")),
                "{:?}",
                resp.headers()
            );
        }
    }

    #[test]
    fn answers_carry_cors_headers_for_allowed_origins_only() {
        let c = cors(&["https://app.example.com"]);
        let mut h = HeaderMap::new();
        c.decorate(Some(&v("https://app.example.com")), &mut h);
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert!(
            h["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .contains("x-switchyard-provider")
        );
        assert_eq!(h["vary"], "origin");
        let mut h = HeaderMap::new();
        c.decorate(Some(&v("https://evil.example")), &mut h);
        assert!(!h.contains_key("access-control-allow-origin"));
        let mut h = HeaderMap::new();
        c.decorate(None, &mut h);
        assert!(!h.contains_key("access-control-allow-origin"));

        let any = cors(&["*"]);
        let mut h = HeaderMap::new();
        any.decorate(Some(&v("https://x.test")), &mut h);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(!h.contains_key("vary"));
    }
}
