//! Caller authentication settings: `[[jwt]]` identity providers and the signed-request
//! window of `[security]`, as written and validated.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{ConfigError, KeyConfig};

/// `[[jwt]]`: an identity provider whose tokens the gateway accepts as bearer tokens.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtFile {
    /// The token's `iss` must be exactly this.
    pub issuer: String,
    /// The token's `aud` must name one of these (a string or a list).
    pub audience: Audience,
    /// Where the signing keys are published (a JWKS document, http or https).
    pub jwks_url: Option<String>,
    /// Or a JWKS document on disk (relative to the config file).
    pub jwks_file: Option<String>,
    /// The claim whose value names the `[[keys]]` entry the token acts as (default
    /// `sub`); when it is a list (groups), the first value that names a key.
    pub key_claim: Option<String>,
    /// The `[[keys]]` this issuer's tokens may act as. Absent: only keys with neither a
    /// bearer `key` nor an `hmac_secret`.
    pub keys: Option<Vec<String>>,
    /// Clock tolerance for `exp` and `nbf`, in seconds (default 60).
    pub leeway_s: Option<u64>,
    /// Accepted algorithms (default `["RS256", "ES256", "EdDSA"]`).
    pub algorithms: Option<Vec<String>>,
    /// How often the key set is read again (default 300 s); a token naming an unknown
    /// `kid` also reads it, at most once per 10 s.
    pub refresh_s: Option<u64>,
}

/// One audience or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Default for Audience {
    fn default() -> Self {
        Audience::Many(Vec::new())
    }
}

/// A signing algorithm the gateway verifies. HMAC algorithms are never accepted for
/// JWTs: a shared secret would have to be configured, and accepting them invites the
/// classic public-key-as-HMAC-secret confusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Es256,
    Es384,
    EdDsa,
}

impl JwtAlgorithm {
    const ALL: [JwtAlgorithm; 7] = [
        JwtAlgorithm::Rs256,
        JwtAlgorithm::Rs384,
        JwtAlgorithm::Rs512,
        JwtAlgorithm::Ps256,
        JwtAlgorithm::Es256,
        JwtAlgorithm::Es384,
        JwtAlgorithm::EdDsa,
    ];

    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Rs384 => "RS384",
            JwtAlgorithm::Rs512 => "RS512",
            JwtAlgorithm::Ps256 => "PS256",
            JwtAlgorithm::Es256 => "ES256",
            JwtAlgorithm::Es384 => "ES384",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }

    fn parse(name: &str) -> Option<JwtAlgorithm> {
        JwtAlgorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// Where a key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    Url(String),
    /// Resolved against the config's folder when read.
    File(PathBuf),
}

/// One `[[jwt]]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: Vec<String>,
    pub source: JwksSource,
    pub key_claim: String,
    /// The keys its tokens may act as (`None`: keys with no token or secret of their own).
    pub keys: Option<Vec<String>>,
    pub leeway: Duration,
    pub algorithms: Vec<JwtAlgorithm>,
    pub refresh: Duration,
}

/// The default `security.signature_window_s`.
pub const DEFAULT_SIGNATURE_WINDOW: Duration = Duration::from_secs(300);

/// `security.signature_window_s`, validated.
pub fn signature_window(f: &super::SecurityFile) -> Result<Duration, ConfigError> {
    match f.signature_window_s {
        Some(0) => Err(ConfigError::new(
            "security.signature_window_s",
            "must be greater than 0",
        )),
        Some(n) if n > 3600 => Err(ConfigError::new(
            "security.signature_window_s",
            "must be at most 3600 (a longer window keeps replayable signatures longer)",
        )),
        Some(n) => Ok(Duration::from_secs(n)),
        None => Ok(DEFAULT_SIGNATURE_WINDOW),
    }
}

/// Every `[[jwt]]`, validated; their keys must exist among `keys` only at request time
/// (the claim's value is the caller's).
pub fn jwt_configs(file: Vec<JwtFile>) -> Result<Vec<JwtConfig>, ConfigError> {
    let mut out: Vec<JwtConfig> = Vec::with_capacity(file.len());
    for (i, j) in file.into_iter().enumerate() {
        let key = |field: &str| format!("jwt[{i}].{field}");
        if j.issuer.trim().is_empty() {
            return Err(ConfigError::new(key("issuer"), "must not be empty"));
        }
        if out.iter().any(|o| o.issuer == j.issuer) {
            return Err(ConfigError::new(
                key("issuer"),
                format!("`{}` is configured twice", j.issuer),
            ));
        }
        let audience = match j.audience {
            Audience::One(a) => vec![a],
            Audience::Many(a) => a,
        };
        if audience.is_empty() || audience.iter().any(|a| a.trim().is_empty()) {
            return Err(ConfigError::new(
                key("audience"),
                "must name at least one audience, none empty",
            ));
        }
        let source = match (j.jwks_url, j.jwks_file) {
            (Some(url), None) => {
                let Ok(parsed) = reqwest::Url::parse(&url) else {
                    return Err(ConfigError::new(key("jwks_url"), "is not an http(s) URL"));
                };
                // Signing keys over plain HTTP can be swapped by anyone on the path, who
                // could then mint tokens: only to a loopback address (a local sidecar, tests).
                let host = parsed.host_str().unwrap_or("");
                let loopback = host == "localhost"
                    || host
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_loopback());
                match parsed.scheme() {
                    "https" => {}
                    "http" if loopback => {}
                    "http" => {
                        return Err(ConfigError::new(
                            key("jwks_url"),
                            "must be https (plain http only to a loopback address)",
                        ));
                    }
                    _ => return Err(ConfigError::new(key("jwks_url"), "is not an http(s) URL")),
                }
                JwksSource::Url(url)
            }
            (None, Some(path)) if !path.trim().is_empty() => JwksSource::File(path.into()),
            _ => {
                return Err(ConfigError::new(
                    key("jwks_url"),
                    "exactly one of jwks_url and jwks_file is needed",
                ));
            }
        };
        let algorithms = match j.algorithms {
            None => vec![
                JwtAlgorithm::Rs256,
                JwtAlgorithm::Es256,
                JwtAlgorithm::EdDsa,
            ],
            Some(names) => {
                let mut algs = Vec::with_capacity(names.len());
                for n in &names {
                    algs.push(JwtAlgorithm::parse(n).ok_or_else(|| {
                        ConfigError::new(
                            key("algorithms"),
                            format!(
                                "`{n}` is not one of RS256, RS384, RS512, PS256, ES256, ES384, \
                                 EdDSA"
                            ),
                        )
                    })?);
                }
                if algs.is_empty() {
                    return Err(ConfigError::new(key("algorithms"), "must not be empty"));
                }
                algs
            }
        };
        let key_claim = j.key_claim.unwrap_or_else(|| "sub".to_owned());
        if key_claim.trim().is_empty() {
            return Err(ConfigError::new(key("key_claim"), "must not be empty"));
        }
        let refresh = match j.refresh_s {
            Some(0) => {
                return Err(ConfigError::new(key("refresh_s"), "must be at least 1"));
            }
            Some(n) => Duration::from_secs(n),
            None => Duration::from_secs(300),
        };
        out.push(JwtConfig {
            issuer: j.issuer,
            audience,
            source,
            key_claim,
            keys: j.keys,
            leeway: Duration::from_secs(j.leeway_s.unwrap_or(60)),
            algorithms,
            refresh,
        });
    }
    Ok(out)
}

/// A key must be reachable somehow: a bearer token, an HMAC secret, or a JWT mapping.
pub fn check_key_credentials(
    i: usize,
    k: &KeyConfig,
    jwt_configured: bool,
) -> Result<(), ConfigError> {
    if k.key.is_none() && k.hmac_secret.is_none() && !jwt_configured {
        return Err(ConfigError::new(
            format!("keys[{i}].key"),
            "a key needs `key`, `hmac_secret`, or a `[[jwt]]` whose claim names it",
        ));
    }
    for (field, secret) in [
        ("hmac_secret", &k.hmac_secret),
        ("hmac_secret_previous", &k.hmac_secret_previous),
    ] {
        if let Some(s) = secret
            && s.expose().len() < 32
        {
            return Err(ConfigError::new(
                format!("keys[{i}].{field}"),
                "must be at least 32 characters",
            ));
        }
    }
    if k.hmac_secret_previous.is_some() && k.hmac_secret.is_none() {
        return Err(ConfigError::new(
            format!("keys[{i}].hmac_secret_previous"),
            "needs `hmac_secret`: it is the secret being rotated out",
        ));
    }
    if k.hmac_secret_previous.is_some() && k.hmac_secret_previous == k.hmac_secret {
        return Err(ConfigError::new(
            format!("keys[{i}].hmac_secret_previous"),
            "is the same as `hmac_secret`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = "[[providers]]\nname = \"local\"\nkind = \"vllm\"\n\
                        [[models]]\nname = \"m\"\ndeployments = [{ provider = \"local\", model = \"x\" }]\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}{extra}"))
    }

    #[test]
    fn jwt_entries_take_defaults_and_either_form_of_audience() {
        let c = parse(
            "[[jwt]]\nissuer = \"https://idp\"\naudience = \"gw\"\njwks_url = \"https://idp/jwks\"\n\
             [[jwt]]\nissuer = \"other\"\naudience = [\"a\", \"b\"]\njwks_file = \"keys.json\"\n\
             key_claim = \"groups\"\nleeway_s = 5\nalgorithms = [\"ES256\"]\nrefresh_s = 60\n",
        )
        .unwrap();
        let (one, two) = (&c.jwt[0], &c.jwt[1]);
        assert_eq!(one.audience, ["gw"]);
        assert_eq!(one.source, JwksSource::Url("https://idp/jwks".into()));
        assert_eq!(one.key_claim, "sub");
        assert_eq!(one.leeway, Duration::from_secs(60));
        assert_eq!(
            one.algorithms,
            [
                JwtAlgorithm::Rs256,
                JwtAlgorithm::Es256,
                JwtAlgorithm::EdDsa
            ]
        );
        assert_eq!(one.refresh, Duration::from_secs(300));
        assert_eq!(two.audience, ["a", "b"]);
        assert_eq!(two.source, JwksSource::File("keys.json".into()));
        assert_eq!(
            (two.key_claim.as_str(), two.leeway),
            ("groups", Duration::from_secs(5))
        );
        assert_eq!(c.signature_window, DEFAULT_SIGNATURE_WINDOW);
    }

    #[test]
    fn bad_jwt_and_signature_settings_name_their_key() {
        let cases = [
            (
                "[[jwt]]\nissuer = \"i\"\naudience = \"a\"\n",
                "jwt[0].jwks_url",
            ),
            (
                "[[jwt]]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"https://x\"\njwks_file = \"f\"\n",
                "jwt[0].jwks_url",
            ),
            (
                "[[jwt]]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"ftp://x\"\n",
                "jwt[0].jwks_url",
            ),
            (
                "[[jwt]]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"http://idp.example.com/jwks\"\n",
                "jwt[0].jwks_url",
            ),
            (
                "[[jwt]]\nissuer = \"i\"\naudience = []\njwks_file = \"f\"\n",
                "jwt[0].audience",
            ),
            (
                "[[jwt]]\nissuer = \"\"\naudience = \"a\"\njwks_file = \"f\"\n",
                "jwt[0].issuer",
            ),
            (
                "[[jwt]]\nissuer = \"i\"\naudience = \"a\"\njwks_file = \"f\"\nalgorithms = [\"HS256\"]\n",
                "jwt[0].algorithms",
            ),
            (
                "[[jwt]]\nissuer = \"i\"\naudience = \"a\"\njwks_file = \"f\"\nkeys = [\"nobody\"]\n",
                "jwt[0].keys",
            ),
            (
                "[security]\nsignature_window_s = 0\n",
                "security.signature_window_s",
            ),
            ("[[keys]]\nname = \"k\"\n", "keys[0].key"),
            (
                "[[keys]]\nname = \"k\"\nhmac_secret = \"short\"\n",
                "keys[0].hmac_secret",
            ),
            (
                "[[keys]]\nname = \"k\"\nhmac_secret = \"env:SWITCHYARD_TEST_UNSET_SECRET\"\n",
                "keys[0].hmac_secret",
            ),
            (
                "[[keys]]\nname = \"k\"\nkey = \"sk-0123456789abcdef\"\n\
                 hmac_secret_previous = \"0123456789abcdef0123456789abcdef-old\"\n",
                "keys[0].hmac_secret_previous",
            ),
            (
                "[[keys]]\nname = \"k\"\nhmac_secret = \"0123456789abcdef0123456789abcdef-x\"\n\
                 hmac_secret_previous = \"short\"\n",
                "keys[0].hmac_secret_previous",
            ),
            (
                "[[keys]]\nname = \"k\"\nhmac_secret = \"0123456789abcdef0123456789abcdef-x\"\n\
                 hmac_secret_previous = \"0123456789abcdef0123456789abcdef-x\"\n",
                "keys[0].hmac_secret_previous",
            ),
        ];
        for (extra, key) in cases {
            let e = parse(extra).unwrap_err();
            assert_eq!(e.key, key, "{extra}: {e}");
        }
    }

    #[test]
    fn keys_may_sign_or_be_reached_by_a_token_only_and_secrets_never_print() {
        let c = parse(
            "[security]\nsignature_window_s = 60\n\
             [[keys]]\nname = \"signer\"\nhmac_secret = \"0123456789abcdef0123456789abcdef-x\"\n\
             [[keys]]\nname = \"by-token\"\n\
             [[jwt]]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"https://idp/jwks\"\n",
        )
        .unwrap();
        assert_eq!(c.signature_window, Duration::from_secs(60));
        assert!(c.keys[0].key.is_none() && c.keys[0].hmac_secret.is_some());
        assert!(c.keys[1].key.is_none() && c.keys[1].hmac_secret.is_none());
        let printed = format!("{c:?}");
        assert!(!printed.contains("0123456789abcdef0123456789abcdef-x"));
    }
}
