//! An identity provider's signing keys (a JWKS document from a URL or a file): parsed
//! once per fetch, cached, fetched again on an interval and on an unknown `kid` (at most
//! once per [`MIN_REFETCH`]); and the ring-backed crypto provider `jsonwebtoken` verifies
//! with (ring is already in the build for rustls: no second crypto stack).

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, Validation,
    crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils},
    errors::{ErrorKind, new_error},
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use tokio::time::Instant;

use crate::config::{JwksSource, JwtAlgorithm, JwtConfig};

/// An unknown `kid` fetches the key set again at most this often: a stream of tokens
/// with invented ids must not turn into a stream of requests to the identity provider.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// A JWKS document larger than this is refused.
const MAX_JWKS_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One usable key: its id, the key, and the checks a token signed with it must pass
/// (the algorithms are the configured ones of the key's family, or the one it names).
pub struct SigningKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub validation: Validation,
}

/// The keys of one fetch.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<SigningKey>,
    /// Which read of its source this is (0: none yet): a token verified against one set is
    /// taken as verified only while that set is the current one.
    pub generation: u64,
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys usable for signatures with the configured
    /// algorithms (others — encryption keys, HMAC keys, unknown types — are skipped, as a
    /// provider's set often holds some).
    pub fn parse(doc: &[u8], config: &JwtConfig) -> Result<KeySet, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc =
            serde_json::from_slice(doc).map_err(|e| format!("not a JWKS document: {e}"))?;
        let keys = doc
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| signing_key(&jwk, config))
            .collect();
        Ok(KeySet {
            keys,
            generation: 0,
        })
    }
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Rs384 => Algorithm::RS384,
        JwtAlgorithm::Rs512 => Algorithm::RS512,
        JwtAlgorithm::Ps256 => Algorithm::PS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
        JwtAlgorithm::Es384 => Algorithm::ES384,
        JwtAlgorithm::EdDsa => Algorithm::EdDSA,
    }
}

fn signing_key(jwk: &Jwk, config: &JwtConfig) -> Option<SigningKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let allowed: Vec<Algorithm> = config.algorithms.iter().map(|a| algorithm(*a)).collect();
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 | EllipticCurve::P384 => AlgorithmFamily::Ec,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            AlgorithmFamily::Ed
        }
        _ => return None,
    };
    let mut algorithms: Vec<Algorithm> = allowed
        .into_iter()
        .filter(|a| a.family() == family)
        .collect();
    // A key that names its algorithm is used with that one only.
    if let Some(named) = jwk.common.key_algorithm {
        let named = key_algorithm(named)?;
        algorithms.retain(|a| *a == named);
    }
    if let AlgorithmParameters::EllipticCurve(p) = &jwk.algorithm {
        let fits = match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            _ => Algorithm::ES384,
        };
        algorithms.retain(|a| *a == fits);
    }
    if algorithms.is_empty() {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms;
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&config.audience);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = config.leeway.as_secs();
    Some(SigningKey {
        kid: jwk.common.key_id.clone(),
        key,
        validation,
    })
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Where one `[[jwt]]`'s keys are read from, and the keys last read.
pub struct Jwks {
    config: JwtConfig,
    /// The file, resolved against the config's folder.
    file: Option<PathBuf>,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    /// When the keys were last read successfully, last tried, and last read for an
    /// unknown `kid`: atomics, read by every request without a lock.
    loaded: Moment,
    tried: Moment,
    forced: Moment,
    generations: AtomicU64,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    /// A refresh of stale keys is under way in the background.
    refreshing: std::sync::atomic::AtomicBool,
}

/// An instant (ms after `EPOCH`, plus one; 0 is never), as an atomic.
#[derive(Default)]
struct Moment(AtomicU64);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Moment {
    fn get(&self) -> Option<Instant> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            ms => Some(epoch() + Duration::from_millis(ms - 1)),
        }
    }

    fn set(&self, at: Instant) {
        let ms = at.saturating_duration_since(epoch()).as_millis() as u64 + 1;
        self.0.store(ms, Ordering::Release);
    }

    /// Whether it happened less than `window` before `now`.
    fn within(&self, window: Duration, now: Instant) -> bool {
        self.get()
            .is_some_and(|at| now.saturating_duration_since(at) < window)
    }
}

impl Jwks {
    /// The key set of `config`. A file is read now (an unreadable or invalid one fails the
    /// config); a URL is fetched on first use, so an identity provider that is down at
    /// start-up does not keep the gateway from serving its other callers.
    pub fn new(
        config: &JwtConfig,
        dir: &std::path::Path,
        client: reqwest::Client,
    ) -> Result<Jwks, String> {
        let file = match &config.source {
            JwksSource::File(p) => Some(dir.join(p)),
            JwksSource::Url(_) => None,
        };
        let jwks = Jwks {
            config: config.clone(),
            file,
            client,
            keys: ArcSwap::from_pointee(KeySet::default()),
            loaded: Moment::default(),
            tried: Moment::default(),
            forced: Moment::default(),
            generations: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
            refreshing: std::sync::atomic::AtomicBool::new(false),
        };
        if let Some(path) = &jwks.file {
            let doc =
                std::fs::read(path).map_err(|e| format!("jwks_file {}: {e}", path.display()))?;
            let set = KeySet::parse(&doc, config)?;
            if set.keys.is_empty() {
                return Err(format!(
                    "jwks_file {}: no key usable for signatures with the configured algorithms",
                    path.display()
                ));
            }
            jwks.store(set, Instant::now());
        }
        Ok(jwks)
    }

    /// The configuration the keys are checked against.
    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    fn store(&self, mut set: KeySet, now: Instant) {
        set.generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
        self.keys.store(Arc::new(set));
        self.loaded.set(now);
        self.tried.set(now);
    }

    /// The current keys: fetched first when never loaded (the request waits: it has no
    /// key to verify with), fetched again in the background when older than the refresh
    /// interval (no request waits: they keep the current keys until the new ones are in).
    pub async fn current(self: &Arc<Self>) -> Arc<KeySet> {
        let now = Instant::now();
        match self.loaded.get() {
            None => {
                if !self.tried.within(MIN_REFETCH, now) {
                    self.refresh(true).await;
                }
            }
            // A failed refresh waits MIN_REFETCH before the next try: while the identity
            // provider is down, requests must not each send it another GET.
            Some(at)
                if now.saturating_duration_since(at) >= self.config.refresh
                    && !(self.tried.get() != Some(at) && self.tried.within(MIN_REFETCH, now)) =>
            {
                self.refresh_in_background().await;
            }
            Some(_) => {}
        }
        self.keys.load_full()
    }

    /// Starts one refresh on a task of its own; inline where there is no runtime to
    /// spawn on.
    async fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let jwks = Arc::clone(self);
        let refresh = async move {
            jwks.refresh(false).await;
            jwks.refreshing.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(refresh);
            }
            Err(_) => refresh.await,
        }
    }

    /// After a token named a `kid` the keys lack: fetch again, unless that was done less
    /// than [`MIN_REFETCH`] ago. Returns whether the keys were read.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        let now = Instant::now();
        if self.forced.within(MIN_REFETCH, now) {
            return false;
        }
        self.forced.set(now);
        self.refresh(true).await
    }

    /// Reads the keys again (`wait`: behind a fetch under way; else only if none is).
    /// A failure keeps the last keys and is logged and counted.
    async fn refresh(&self, wait: bool) -> bool {
        let before = self.tried.get();
        let _one = if wait {
            self.fetching.lock().await
        } else {
            match self.fetching.try_lock() {
                Ok(g) => g,
                Err(_) => return false,
            }
        };
        if self.tried.get() != before {
            // Another request fetched while this one waited.
            return true;
        }
        let now = Instant::now();
        let read = self.read().await;
        match read.and_then(|doc| KeySet::parse(&doc, &self.config)) {
            Ok(set) => {
                self.store(set, now);
                true
            }
            Err(error) => {
                self.tried.set(now);
                metrics::counter!("switchyard_jwks_errors_total").increment(1);
                tracing::warn!(issuer = %self.config.issuer, %error, "the JWT signing keys could not be read; the last ones stay in use");
                false
            }
        }
    }

    async fn read(&self) -> Result<Vec<u8>, String> {
        if let Some(path) = &self.file {
            return tokio::fs::read(path)
                .await
                .map_err(|e| format!("jwks_file {}: {e}", path.display()));
        }
        let JwksSource::Url(url) = &self.config.source else {
            return Err("no key source".to_owned());
        };
        let fetch = async {
            let resp = self
                .client
                .get(url)
                .header(http::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| format!("fetching the JWKS: {}", e.without_url()))?;
            if !resp.status().is_success() {
                return Err(format!("the JWKS URL answered {}", resp.status()));
            }
            if resp
                .content_length()
                .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
            {
                return Err("the JWKS document is too large".to_owned());
            }
            let body = resp
                .bytes()
                .await
                .map_err(|e| format!("reading the JWKS: {}", e.without_url()))?;
            if body.len() > MAX_JWKS_BYTES {
                return Err("the JWKS document is too large".to_owned());
            }
            Ok(body.to_vec())
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| format!("the JWKS URL did not answer within {FETCH_TIMEOUT:?}"))?
    }
}

/// Makes [`RING`] `jsonwebtoken`'s provider (once per process; a provider installed
/// before serves as well).
pub fn install_provider() {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = RING.install_default();
    });
}

/// Signature verification for `jsonwebtoken` by ring. Verification only: the gateway
/// signs no tokens.
pub static RING: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: ring_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(new_error(ErrorKind::InvalidKeyFormat)),
        rsa_pub_components_from_public_key: |_| Err(new_error(ErrorKind::InvalidKeyFormat)),
        ec_pub_components_from_private_key: |_, _| Err(new_error(ErrorKind::InvalidEcdsaKey)),
        ed_pub_components_from_private_key: |_, _| Err(new_error(ErrorKind::InvalidEddsaKey)),
        compute_digest: |data, hash| {
            use jsonwebtoken::jwk::ThumbprintHash;
            let alg = match hash {
                ThumbprintHash::SHA256 => &ring::digest::SHA256,
                ThumbprintHash::SHA384 => &ring::digest::SHA384,
                ThumbprintHash::SHA512 => &ring::digest::SHA512,
                _ => return Err(new_error(ErrorKind::InvalidAlgorithm)),
            };
            Ok(ring::digest::digest(alg, data).as_ref().to_vec())
        },
    },
};

fn no_signer(
    _: &Algorithm,
    _: &jsonwebtoken::EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    Err(new_error(ErrorKind::InvalidAlgorithm))
}

fn ring_verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    use ring::signature as sig;
    let scheme: &'static dyn sig::VerificationAlgorithm = match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
        _ => return Err(new_error(ErrorKind::InvalidAlgorithm)),
    };
    if key.family() != alg.family() {
        return Err(new_error(ErrorKind::InvalidKeyFormat));
    }
    Ok(Box::new(RingVerifier {
        alg: *alg,
        scheme,
        key: key.clone(),
    }))
}

struct RingVerifier {
    alg: Algorithm,
    scheme: &'static dyn ring::signature::VerificationAlgorithm,
    key: DecodingKey,
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        use ring::signature as sig;
        let ok = match self.key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                let params = match self.alg {
                    Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                    _ => &sig::RSA_PSS_2048_8192_SHA512,
                };
                sig::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, signature)
                    .is_ok()
            }
            DecodingKeyKind::SecretOrDer(der) => sig::UnparsedPublicKey::new(self.scheme, der)
                .verify(msg, signature)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(jsonwebtoken::signature::Error::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JwksSource, JwtAlgorithm};

    fn config(algorithms: Vec<JwtAlgorithm>) -> JwtConfig {
        JwtConfig {
            issuer: "i".into(),
            audience: vec!["a".into()],
            source: JwksSource::File("f".into()),
            key_claim: "sub".into(),
            keys: None,
            leeway: Duration::from_secs(60),
            algorithms,
            refresh: Duration::from_secs(300),
        }
    }

    const DOC: &str = r#"{"keys": [
        {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "kid": "rsa-enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "kid": "rsa-ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "p256", "crv": "P-256", "x": "AQAB", "y": "AQAB"},
        {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AQAB", "y": "AQAB"},
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AQAB"},
        {"kty": "oct", "kid": "hmac", "k": "AQAB"},
        {"kty": "WEIRD", "kid": "weird"}
    ]}"#;

    fn kids(set: &KeySet) -> Vec<&str> {
        set.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    #[test]
    fn only_signature_keys_for_the_configured_algorithms_are_kept() {
        let default = vec![
            JwtAlgorithm::Rs256,
            JwtAlgorithm::Es256,
            JwtAlgorithm::EdDsa,
        ];
        let set = KeySet::parse(DOC.as_bytes(), &config(default)).unwrap();
        // Not: an encryption key, a PS256 key (not configured), a P-384 key (ES384 not
        // configured), an HMAC key, an unknown type.
        assert_eq!(kids(&set), ["rsa", "p256", "ed"]);
        let rsa = &set.keys[0];
        assert_eq!(rsa.validation.algorithms, [Algorithm::RS256]);
        let set = KeySet::parse(
            DOC.as_bytes(),
            &config(vec![JwtAlgorithm::Ps256, JwtAlgorithm::Es384]),
        )
        .unwrap();
        assert_eq!(kids(&set), ["rsa", "rsa-ps", "p384"]);
        assert!(KeySet::parse(b"[]", &config(vec![JwtAlgorithm::Rs256])).is_err());
    }
}
