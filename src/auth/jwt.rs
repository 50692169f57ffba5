//! JWT bearer tokens from identity providers (`[[jwt]]`): which provider issued the
//! token, its signing key (cached, refreshed), the signature, `exp`/`nbf` with leeway,
//! issuer and audience; the claim that names the caller's key is read by [`super::Keys`].

use std::sync::{Arc, Mutex, PoisonError};

use jsonwebtoken::errors::ErrorKind;
use sha2::{Digest, Sha256};

use super::jwks::{Jwks, SigningKey};
use crate::{config::KeyConfig, error::Error};

/// The claims of a verified token.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// Every configured identity provider, and the tokens verified lately.
pub struct JwtAuth {
    providers: Vec<Arc<Jwks>>,
    verified: TokenCache,
}

/// Tokens whose signature and claims verified, by the SHA-256 of the token: a client sends
/// the same token until it expires, and the signature check is most of a token's cost.
/// An entry holds until the token's `exp` (plus leeway) and only while the key set it
/// verified against is the current one (a refreshed set, a reload, drop it). Sharded and
/// bounded; a full shard drops its expired entries, and if still full caches nothing more.
struct TokenCache {
    shards: Box<[Mutex<TokenShard>]>,
}

/// Verified tokens by their SHA-256.
type TokenShard = crate::FastMap<[u8; 32], Verified>;

const TOKEN_SHARDS: usize = 16;
/// Tokens remembered at most (per gateway snapshot).
const TOKENS_CACHED: usize = 65_536;

#[derive(Clone)]
struct Verified {
    key: Arc<KeyConfig>,
    /// Unix seconds after which the token is no longer taken (`exp` plus leeway).
    until: i64,
    provider: usize,
    generation: u64,
}

impl TokenCache {
    fn new() -> TokenCache {
        TokenCache {
            shards: (0..TOKEN_SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, digest: &[u8; 32]) -> &Mutex<TokenShard> {
        &self.shards[usize::from(digest[0]) % TOKEN_SHARDS]
    }

    fn get(&self, digest: &[u8; 32]) -> Option<Verified> {
        self.shard(digest)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .cloned()
    }

    fn forget(&self, digest: &[u8; 32]) {
        self.shard(digest)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest);
    }

    fn put(&self, digest: [u8; 32], verified: Verified, now: i64) {
        let mut shard = self
            .shard(&digest)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= TOKENS_CACHED / TOKEN_SHARDS {
            shard.retain(|_, v| v.until >= now);
            if shard.len() >= TOKENS_CACHED / TOKEN_SHARDS {
                return;
            }
        }
        shard.insert(digest, verified);
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn refused(code: &'static str, message: &str) -> Error {
    Error::Unauthorized {
        message: message.to_owned(),
        code,
    }
}

fn invalid(message: &str) -> Error {
    refused("token_invalid", message)
}

/// Whether `token` has the shape of a JWS compact token: three base64url segments, the
/// first a JSON object (`eyJ`).
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    parts == 3 && token.starts_with("eyJ")
}

impl JwtAuth {
    /// The identity providers, one key set each.
    pub fn new(providers: Vec<Arc<Jwks>>) -> JwtAuth {
        super::jwks::install_provider();
        JwtAuth {
            providers,
            verified: TokenCache::new(),
        }
    }

    /// The key `token` acts as: verified (or verified lately, against the current keys,
    /// and not expired since), its claims mapped to a key by `map` (given the claims and
    /// the verifying issuer's `[[jwt]]`, which names the claim and the keys it may map to).
    pub async fn key_for(
        &self,
        token: &str,
        map: impl Fn(&Claims, &crate::config::JwtConfig) -> Result<Arc<KeyConfig>, Error>,
    ) -> Result<Arc<KeyConfig>, Error> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        if let Some(hit) = self.verified.get(&digest) {
            let current = self.providers[hit.provider].current().await.generation;
            if hit.generation == current && now <= hit.until {
                return Ok(hit.key);
            }
            self.verified.forget(&digest);
        }
        let (claims, provider, generation) = self.verify(token).await?;
        let jwks = &self.providers[provider];
        let key = map(&claims, jwks.config())?;
        // `exp` is a required claim: a verified token has one.
        if let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_i64) {
            let verified = Verified {
                key: key.clone(),
                until: exp.saturating_add(jwks.config().leeway.as_secs() as i64),
                provider,
                generation,
            };
            self.verified.put(digest, verified, now);
        }
        Ok(key)
    }

    /// Verifies `token`: its claims, the provider that issued it (an index) and the
    /// generation of the key set that verified it.
    async fn verify(&self, token: &str) -> Result<(Claims, usize, u64), Error> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("The bearer token is not a valid JWT."))?;
        let (index, jwks) = self.provider_of(token)?;
        let mut keys = jwks.current().await;
        let mut found = candidates(&keys.keys, header.kid.as_deref(), header.alg);
        if found.is_empty() && header.kid.is_some() && jwks.refresh_for_unknown_kid().await {
            keys = jwks.current().await;
            found = candidates(&keys.keys, header.kid.as_deref(), header.alg);
        }
        if found.is_empty() {
            return Err(invalid(
                "The token is signed with a key this gateway does not know (its `kid` or `alg` \
                 matches none of the identity provider's signing keys).",
            ));
        }
        for key in found {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation) {
                Ok(data) => return Ok((data.claims, index, keys.generation)),
                // Checked after the signature: the token is genuine, and says so.
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => continue,
                    ErrorKind::ExpiredSignature => {
                        return Err(refused(
                            "token_expired",
                            "The token has expired; get a new one from the identity provider.",
                        ));
                    }
                    ErrorKind::InvalidAudience => {
                        return Err(refused(
                            "token_audience",
                            "The token is not meant for this gateway (its `aud` names none of \
                             the configured audiences).",
                        ));
                    }
                    ErrorKind::ImmatureSignature => {
                        return Err(invalid("The token is not valid yet (`nbf`)."));
                    }
                    ErrorKind::InvalidIssuer => {
                        return Err(invalid("The token's issuer is not accepted."));
                    }
                    ErrorKind::MissingRequiredClaim(c) => {
                        return Err(invalid(&format!(
                            "The token lacks the `{c}` claim, which this gateway requires."
                        )));
                    }
                    _ => return Err(invalid("The bearer token is not a valid JWT.")),
                },
            }
        }
        Err(invalid("The token's signature does not verify."))
    }

    /// The provider whose issuer the token names (its `iss`, read before verification
    /// only to choose the keys; verification checks it again).
    fn provider_of(&self, token: &str) -> Result<(usize, &Arc<Jwks>), Error> {
        if let [only] = self.providers.as_slice() {
            return Ok((0, only));
        }
        #[derive(serde::Deserialize)]
        struct Issuer {
            iss: Option<String>,
        }
        let iss = jsonwebtoken::dangerous::insecure_decode_claims::<Issuer>(token)
            .ok()
            .and_then(|c| c.iss);
        self.providers
            .iter()
            .enumerate()
            .find(|(_, p)| Some(&p.config().issuer) == iss.as_ref())
            .ok_or_else(|| invalid("The token's issuer is not accepted."))
    }
}

/// The keys that may have signed a token with this `kid` and `alg`.
fn candidates<'a>(
    keys: &'a [SigningKey],
    kid: Option<&str>,
    alg: jsonwebtoken::Algorithm,
) -> Vec<&'a SigningKey> {
    keys.iter()
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .filter(|k| k.validation.algorithms.contains(&alg))
        .collect()
}

/// The key names a claim's value offers: a string, or each string of a list.
pub fn claim_values<'a>(claims: &'a Claims, claim: &str) -> Vec<&'a str> {
    match claims.get(claim) {
        Some(serde_json::Value::String(s)) => vec![s.as_str()],
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_str()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_jwts_by_shape() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"));
        assert!(!looks_like_jwt("sk-team-a-0123456789"));
        assert!(!looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0"));
        assert!(!looks_like_jwt("eyJhbGciOiJSUzI1NiJ9..c2ln"));
        assert!(!looks_like_jwt("eyJ+.a.b"));
    }

    #[test]
    fn claim_values_take_a_string_or_a_list() {
        let claims: Claims =
            serde_json::from_str(r#"{"sub":"team-a","groups":["x","team-b",3],"n":1}"#).unwrap();
        assert_eq!(claim_values(&claims, "sub"), vec!["team-a"]);
        assert_eq!(claim_values(&claims, "groups"), vec!["x", "team-b"]);
        assert!(claim_values(&claims, "n").is_empty());
        assert!(claim_values(&claims, "missing").is_empty());
    }
}
