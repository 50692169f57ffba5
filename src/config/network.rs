//! The network controls as configured: `[security]` `ip_allowlist` and `[security.cors]`,
//! and the `[server]` keys for trusted proxies, TLS and request limits (validated here
//! from [`super::ServerFile`]).

use std::{path::PathBuf, sync::Arc, time::Duration};

use serde::Deserialize;

use super::{ConfigError, ServerFile};
use crate::network::{cidr::CidrSet, cors::Cors};

/// `[security]`: the network controls' fields, and caller authentication's
/// `signature_window_s` (read by `auth.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityFile {
    /// How far a signed request's `x-switchyard-timestamp` may be from the gateway's
    /// clock, either way, in seconds (default 300).
    pub signature_window_s: Option<u64>,
    /// CIDR blocks allowed to call the gateway (empty: everyone).
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    /// Absent: no CORS headers at all.
    pub cors: Option<CorsFile>,
}

/// `[security.cors]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsFile {
    /// `https://app.example.com`, `https://*.example.com` (any subdomain), or `*`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub allowed_headers: Option<Vec<String>>,
    pub allowed_methods: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    pub max_age_s: Option<u64>,
    /// Send `access-control-allow-credentials: true` (cookies, HTTP auth); not with `*`.
    pub allow_credentials: Option<bool>,
}

/// The largest number of request headers, by default (hyper's own default).
pub const DEFAULT_MAX_HEADER_COUNT: usize = 64;
/// The longest request target hyper parses (its `MAX_URI_LEN`).
const MAX_URL_BYTES: usize = 65_534;
/// The longest stream limit that can be set (a week).
const MAX_STREAM_DURATION_S: u64 = 7 * 24 * 3600;
/// The largest total of header names and values, in bytes, by default.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// The longest request target (path and query), in bytes, by default.
pub const DEFAULT_MAX_URL_BYTES: usize = 8 * 1024;

/// The network controls, validated.
#[derive(Debug, Clone, Default)]
pub struct NetworkConfig {
    /// Who may call at all; `None`: everyone.
    pub ip_allowlist: Option<CidrSet>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: CidrSet,
    /// `None`: no CORS headers, preflights are routed like any request.
    pub cors: Option<Arc<Cors>>,
    /// TLS on every listener; read at start (the files are watched, the paths are not
    /// changed by a reload).
    pub tls: Option<TlsFiles>,
    pub limits: RequestLimits,
    /// How long a stream may run; `None`: no limit.
    pub max_stream_duration: Option<Duration>,
}

/// The certificate chain and private key, PEM files (relative paths are resolved against
/// the config file's folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Limits on a request's head, checked before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_header_count: usize,
    /// Names and values of all headers, summed.
    pub max_header_bytes: usize,
    /// The request target: path and query.
    pub max_url_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_header_count: DEFAULT_MAX_HEADER_COUNT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_url_bytes: DEFAULT_MAX_URL_BYTES,
        }
    }
}

/// Parses a list of CIDR blocks; empty is `None` (no restriction).
pub fn allowlist(key: &str, entries: &[String]) -> Result<Option<CidrSet>, ConfigError> {
    let set =
        CidrSet::parse(entries).map_err(|(i, r)| ConfigError::new(format!("{key}[{i}]"), r))?;
    Ok((!set.is_empty()).then_some(set))
}

/// Validates the network controls from `[server]` and `[security]`.
pub fn network_config(
    server: &ServerFile,
    security: &SecurityFile,
) -> Result<NetworkConfig, ConfigError> {
    let positive = |key: &str, v: Option<usize>, default: usize| match v {
        Some(0) => Err(ConfigError::new(key, "must be greater than 0")),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let limits = RequestLimits {
        max_header_count: positive(
            "server.max_header_count",
            server.max_header_count,
            DEFAULT_MAX_HEADER_COUNT,
        )?,
        max_header_bytes: positive(
            "server.max_header_bytes",
            server.max_header_bytes,
            DEFAULT_MAX_HEADER_BYTES,
        )?,
        max_url_bytes: positive(
            "server.max_url_bytes",
            server.max_url_bytes,
            DEFAULT_MAX_URL_BYTES,
        )?,
    };
    if limits.max_header_count > 10_000 {
        return Err(ConfigError::new(
            "server.max_header_count",
            "must be at most 10000",
        ));
    }
    if limits.max_header_bytes > 1 << 20 {
        return Err(ConfigError::new(
            "server.max_header_bytes",
            "must be at most 1048576 (1 MiB)",
        ));
    }
    // hyper refuses a longer request target itself, with no body.
    if limits.max_url_bytes > MAX_URL_BYTES {
        return Err(ConfigError::new(
            "server.max_url_bytes",
            format!("must be at most {MAX_URL_BYTES} (the HTTP parser's own limit)"),
        ));
    }
    let tls = match (server.tls_cert.as_deref(), server.tls_key.as_deref()) {
        (None, None) => None,
        (Some(cert), Some(key)) if !cert.trim().is_empty() && !key.trim().is_empty() => {
            Some(TlsFiles {
                cert: PathBuf::from(cert.trim()),
                key: PathBuf::from(key.trim()),
            })
        }
        (Some(c), _) if c.trim().is_empty() => {
            return Err(ConfigError::new("server.tls_cert", "must not be empty"));
        }
        (_, Some(k)) if k.trim().is_empty() => {
            return Err(ConfigError::new("server.tls_key", "must not be empty"));
        }
        (Some(_), None) => {
            return Err(ConfigError::new(
                "server.tls_key",
                "is needed with server.tls_cert",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "server.tls_cert",
                "is needed with server.tls_key",
            ));
        }
        _ => None,
    };
    let cors = match &security.cors {
        None => None,
        Some(c) => Some(Arc::new(Cors::new(c).map_err(|(field, reason)| {
            ConfigError::new(format!("security.cors.{field}"), reason)
        })?)),
    };
    Ok(NetworkConfig {
        ip_allowlist: allowlist("security.ip_allowlist", &security.ip_allowlist)?,
        trusted_proxies: allowlist("server.trusted_proxies", &server.trusted_proxies)?
            .unwrap_or_default(),
        cors,
        tls,
        limits,
        max_stream_duration: match server.max_stream_duration_s {
            None | Some(0) => None,
            Some(s) if s > MAX_STREAM_DURATION_S => {
                return Err(ConfigError::new(
                    "server.max_stream_duration_s",
                    format!("must be at most {MAX_STREAM_DURATION_S} (a week); 0 is no limit"),
                ));
            }
            Some(s) => Some(Duration::from_secs(s)),
        },
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// A minimal valid config with `server` in `[server]` and `rest` after it.
    fn config(server: &str, rest: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(&format!(
            "[server]\n{server}\n{rest}\n[[providers]]\nname = \"p\"\nkind = \"vllm\"\n\
             [[models]]\nname = \"m\"\ndeployments = [{{ provider = \"p\", model = \"m\" }}]\n"
        ))
    }

    fn error_key(server: &str, rest: &str) -> String {
        let e = config(server, rest).unwrap_err();
        e.to_string()
    }

    #[test]
    fn defaults_restrict_nothing_and_set_the_documented_limits() {
        let c = config("", "").unwrap().network;
        assert!(c.ip_allowlist.is_none());
        assert!(c.trusted_proxies.is_empty());
        assert!(c.cors.is_none());
        assert!(c.tls.is_none());
        assert!(c.max_stream_duration.is_none());
        assert_eq!(c.limits.max_header_count, 64);
        assert_eq!(c.limits.max_header_bytes, 32 * 1024);
        assert_eq!(c.limits.max_url_bytes, 8 * 1024);
    }

    #[test]
    fn every_key_parses() {
        let c = config(
            "trusted_proxies = [\"10.0.0.0/8\"]\ntls_cert = \"a.pem\"\ntls_key = \"a.key\"\n\
             max_header_count = 50\nmax_header_bytes = 4096\nmax_url_bytes = 1024\n\
             max_stream_duration_s = 600",
            "[security]\nip_allowlist = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n\
             [security.cors]\nallowed_origins = [\"https://a.example\"]\nmax_age_s = 60\n\
             [[keys]]\nname = \"k\"\nkey = \"sk-0123456789abcdef\"\nip_allowlist = [\"192.0.2.9\"]",
        )
        .unwrap();
        let n = &c.network;
        assert!(
            n.ip_allowlist
                .as_ref()
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(n.trusted_proxies.contains("10.1.1.1".parse().unwrap()));
        assert!(n.cors.is_some());
        assert_eq!(
            n.tls.as_ref().unwrap().cert,
            std::path::PathBuf::from("a.pem")
        );
        assert_eq!(n.limits.max_header_count, 50);
        assert_eq!(
            n.max_stream_duration,
            Some(std::time::Duration::from_secs(600))
        );
        let key = c.keys[0].ip_allowlist.as_ref().unwrap();
        assert!(key.contains("192.0.2.9".parse().unwrap()));
        assert!(!key.contains("192.0.2.10".parse().unwrap()));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (server, rest, key) in [
            (
                "",
                "[security]\nip_allowlist = [\"10.0.0.0/8\", \"10.0.0.1/33\"]",
                "security.ip_allowlist[1]",
            ),
            (
                "trusted_proxies = [\"proxy.local\"]",
                "",
                "server.trusted_proxies[0]",
            ),
            ("tls_cert = \"a.pem\"", "", "server.tls_key"),
            ("tls_key = \"a.key\"", "", "server.tls_cert"),
            (
                "tls_cert = \"\"\ntls_key = \"a.key\"",
                "",
                "server.tls_cert",
            ),
            ("max_header_count = 0", "", "server.max_header_count"),
            ("max_header_count = 20000", "", "server.max_header_count"),
            ("max_url_bytes = 0", "", "server.max_url_bytes"),
            ("max_header_bytes = 2000000", "", "server.max_header_bytes"),
            (
                "",
                "[security.cors]\nallowed_origins = []",
                "security.cors.allowed_origins",
            ),
            (
                "",
                "[security.cors]\nallowed_origins = [\"https://a.example/\"]",
                "security.cors.allowed_origins",
            ),
            (
                "",
                "[security.cors]\nallowed_origins = [\"*\"]\nallow_credentials = true",
                "security.cors.allow_credentials",
            ),
            ("", "[security]\nsignature_windows = 3", "signature_windows"),
            (
                "",
                "[[keys]]\nname = \"k\"\nkey = \"sk-0123456789abcdef\"\nip_allowlist = [\"10.1.2.3/8\"]",
                "keys[0].ip_allowlist[0]",
            ),
        ] {
            let e = error_key(server, rest);
            assert!(e.contains(key), "{server} {rest}: {e}");
        }
    }
}
