//! HMAC-signed requests: the three headers, the string to sign, freshness, and the
//! constant-time check.
//!
//! The caller sends `x-switchyard-key-id`, `x-switchyard-timestamp` (Unix seconds, an
//! optional fraction allowed) and
//! `x-switchyard-signature: v1=HEX`, where HEX is the lowercase hex of
//! HMAC-SHA256(secret, `"v1\n" METHOD "\n" PATH_AND_QUERY "\n" TIMESTAMP "\n"
//! hex(SHA-256(body))`). The headers are checked at ingress (well formed, timestamp inside
//! the window); the signature once the body is in ([`SignedClaim::verify`]).

use std::time::Duration;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// The key's name.
pub const KEY_ID_HEADER: &str = "x-switchyard-key-id";
/// Unix seconds when the caller signed.
pub const TIMESTAMP_HEADER: &str = "x-switchyard-timestamp";
/// `v1=` and the hex HMAC.
pub const SIGNATURE_HEADER: &str = "x-switchyard-signature";

type HmacSha256 = hmac::Hmac<Sha256>;

/// A secret no key has, so an unknown key id costs the same HMAC as a known one.
const NO_SECRET: &[u8; 32] = &[0; 32];

/// The signature headers as sent, not yet checked.
#[derive(Debug, Default, Clone)]
pub struct SignatureHeaders {
    pub key_id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
}

impl SignatureHeaders {
    /// Whether the caller sent any of them (then the request is a signed one).
    pub fn any(&self) -> bool {
        self.key_id.is_some() || self.timestamp.is_some() || self.signature.is_some()
    }
}

/// The SHA-256 of a request body (REST: the bytes the server read; gRPC: the encoded
/// message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDigest(pub [u8; 32]);

impl BodyDigest {
    pub fn of(body: &[u8]) -> BodyDigest {
        BodyDigest(Sha256::digest(body).into())
    }
}

/// What a signed request claims, checked for form and freshness; the signature itself is
/// checked once the body is in.
#[derive(Debug, Clone)]
pub struct SignedClaim {
    pub key_id: String,
    /// The timestamp as sent (it is signed as sent).
    timestamp: String,
    /// The timestamp, parsed.
    pub at: i64,
    pub signature: [u8; 32],
    method: String,
    target: String,
}

/// Whether a signed timestamp `at` is within `window` of `now`, either way. Checked when
/// the headers arrive and again when the signature is verified (after the body), so a
/// request whose body is sent slowly past the window's end cannot outlive the replay
/// set's memory of its signature.
pub fn fresh(at: i64, now: i64, window: std::time::Duration) -> Result<(), Error> {
    let skew = now - at;
    let allowed = window.as_secs() as i64;
    if skew.abs() > allowed {
        let (by, side) = if skew > 0 {
            (skew, "behind")
        } else {
            (-skew, "ahead of")
        };
        return Err(Error::Unauthorized {
            message: format!(
                "Signed request expired: its timestamp is {by} s {side} the gateway's \
                 clock, outside the allowed ±{allowed} s. Sign with the current time \
                 (and check the caller's clock)."
            ),
            code: "signature_expired",
        });
    }
    Ok(())
}

/// The refusal for a signature that does not verify, the same whether or not the key id
/// exists.
pub fn invalid() -> Error {
    Error::Unauthorized {
        message: "The request signature does not match. Sign \"v1\\n\" + METHOD + \"\\n\" + \
                  PATH_AND_QUERY + \"\\n\" + TIMESTAMP + \"\\n\" + hex(SHA-256(body)) with \
                  the key's secret (HMAC-SHA256) and send `x-switchyard-signature: v1=HEX`."
            .to_owned(),
        code: "signature_invalid",
    }
}

fn malformed(what: &str) -> Error {
    Error::Unauthorized {
        message: format!("Signed request refused: {what}."),
        code: "signature_invalid",
    }
}

impl SignedClaim {
    /// Parses the headers of a request to `method` `target` (path and query) and checks
    /// the timestamp against `now` (Unix seconds) within `window`.
    pub fn parse(
        headers: &SignatureHeaders,
        method: &str,
        target: &str,
        now: i64,
        window: Duration,
    ) -> Result<SignedClaim, Error> {
        let key_id = headers
            .key_id
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or_else(|| malformed(&format!("`{KEY_ID_HEADER}` is missing")))?;
        let timestamp = headers
            .timestamp
            .as_deref()
            .map(str::trim)
            .ok_or_else(|| malformed(&format!("`{TIMESTAMP_HEADER}` is missing")))?;
        let at = parse_timestamp(timestamp).ok_or_else(|| {
            malformed(&format!(
                "`{TIMESTAMP_HEADER}` must be Unix time in seconds (`1733240000`, or with up to \
                 nine decimals: `1733240000.123`)"
            ))
        })?;
        let hex_sig = headers
            .signature
            .as_deref()
            .map(str::trim)
            .ok_or_else(|| malformed(&format!("`{SIGNATURE_HEADER}` is missing")))?
            .strip_prefix("v1=")
            .ok_or_else(|| malformed(&format!("`{SIGNATURE_HEADER}` must be `v1=HEX`")))?;
        let mut signature = [0u8; 32];
        hex::decode_to_slice(hex_sig, &mut signature).map_err(|_| {
            malformed(&format!(
                "`{SIGNATURE_HEADER}` must be `v1=` and 64 hex digits"
            ))
        })?;
        fresh(at, now, window)?;
        Ok(SignedClaim {
            key_id: key_id.to_owned(),
            timestamp: timestamp.to_owned(),
            at,
            signature,
            method: method.to_owned(),
            target: target.to_owned(),
        })
    }

    /// Checks the signature over `body` with the key's secret, in constant time. `None`
    /// (no key by that id, or one without a secret) runs the same HMAC over a secret no
    /// key has and fails the same way.
    pub fn verify(&self, secret: Option<&[u8]>, body: &BodyDigest) -> Result<(), Error> {
        let known = secret.is_some();
        let mac = mac(
            secret.unwrap_or(NO_SECRET),
            &self.method,
            &self.target,
            &self.timestamp,
            body,
        )
        .ok_or_else(invalid)?;
        // `verify_slice` compares in constant time.
        match mac.verify_slice(&self.signature) {
            Ok(()) if known => Ok(()),
            _ => Err(invalid()),
        }
    }
}

/// Whole Unix seconds, optionally with a fraction (`1733240000.123`): a client that
/// retries within the same second signs a different timestamp, so its retry is not taken
/// for a replay.
fn parse_timestamp(text: &str) -> Option<i64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(whole, 12) || fraction.is_some_and(|f| !digits(f, 9)) {
        return None;
    }
    whole.parse().ok()
}

fn mac(
    secret: &[u8],
    method: &str,
    target: &str,
    timestamp: &str,
    body: &BodyDigest,
) -> Option<HmacSha256> {
    let mut body_hex = [0u8; 64];
    // 32 bytes always fit 64 hex digits.
    let _ = hex::encode_to_slice(body.0, &mut body_hex);
    // HMAC takes a key of any length: this does not fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).ok()?;
    for part in [
        b"v1\n".as_slice(),
        method.as_bytes(),
        b"\n",
        target.as_bytes(),
        b"\n",
        timestamp.as_bytes(),
        b"\n",
        &body_hex,
    ] {
        mac.update(part);
    }
    Some(mac)
}

/// The `x-switchyard-signature` value for a request: what a client computes (tests,
/// benchmarks and Rust callers use it).
pub fn sign(secret: &[u8], method: &str, target: &str, timestamp: &str, body: &[u8]) -> String {
    match mac(secret, method, target, timestamp, &BodyDigest::of(body)) {
        Some(mac) => format!("v1={}", hex::encode(mac.finalize().into_bytes())),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(key: &str, ts: &str, sig: &str) -> SignatureHeaders {
        SignatureHeaders {
            key_id: Some(key.into()),
            timestamp: Some(ts.into()),
            signature: Some(sig.into()),
        }
    }

    const W: Duration = Duration::from_secs(300);

    #[test]
    fn a_signature_verifies_over_method_target_timestamp_and_body() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let sig = sign(secret, "POST", "/v1/chat/completions?x=1", "1000", b"{}");
        let h = headers("k", "1000", &sig);
        let claim = SignedClaim::parse(&h, "POST", "/v1/chat/completions?x=1", 1100, W).unwrap();
        claim.verify(Some(secret), &BodyDigest::of(b"{}")).unwrap();
        // Another body, path, method, or secret: refused alike.
        let e = claim
            .verify(Some(secret), &BodyDigest::of(b"{ }"))
            .unwrap_err();
        assert_eq!(e.spec().code, Some("signature_invalid"));
        for (m, t) in [
            ("POST", "/v1/chat/completions"),
            ("GET", "/v1/chat/completions?x=1"),
        ] {
            let c = SignedClaim::parse(&h, m, t, 1100, W).unwrap();
            assert!(c.verify(Some(secret), &BodyDigest::of(b"{}")).is_err());
        }
        assert!(
            claim
                .verify(Some(b"another"), &BodyDigest::of(b"{}"))
                .is_err()
        );
        // No key: the same error, word for word.
        let unknown = claim.verify(None, &BodyDigest::of(b"{}")).unwrap_err();
        assert_eq!(unknown.to_string(), e.to_string());
    }

    #[test]
    fn the_string_to_sign_is_the_documented_one() {
        let secret = b"s";
        let body_hex = hex::encode(Sha256::digest(b"hello"));
        let text = format!("v1\nPOST\n/p?q=1\n42\n{body_hex}");
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap();
        m.update(text.as_bytes());
        let expected = format!("v1={}", hex::encode(m.finalize().into_bytes()));
        assert_eq!(sign(secret, "POST", "/p?q=1", "42", b"hello"), expected);
    }

    #[test]
    fn freshness_is_judged_at_each_check_against_that_moment() {
        // Fresh when the headers came (1000 vs 1300), stale when the body is in (1301):
        // `Keys::verify_signed` checks again, so a slow body cannot outlast the window.
        assert!(fresh(1000, 1300, W).is_ok());
        let e = fresh(1000, 1301, W).unwrap_err();
        assert_eq!(e.spec().code, Some("signature_expired"));
    }

    #[test]
    fn timestamps_outside_the_window_name_the_skew() {
        let sig = format!("v1={}", "ab".repeat(32));
        let e = SignedClaim::parse(&headers("k", "1000", &sig), "POST", "/", 1301, W).unwrap_err();
        assert_eq!(e.spec().code, Some("signature_expired"));
        assert!(e.to_string().contains("301 s behind"), "{e}");
        let e = SignedClaim::parse(&headers("k", "1400", &sig), "POST", "/", 1000, W).unwrap_err();
        assert!(e.to_string().contains("400 s ahead of"), "{e}");
        assert!(SignedClaim::parse(&headers("k", "1300", &sig), "POST", "/", 1000, W).is_ok());
        // A fraction is allowed (and signed as sent).
        let c = SignedClaim::parse(&headers("k", "1300.25", &sig), "POST", "/", 1000, W).unwrap();
        assert_eq!(c.at, 1300);
    }

    #[test]
    fn malformed_headers_are_refused_as_invalid_signatures() {
        let sig = format!("v1={}", "ab".repeat(32));
        for h in [
            headers("", "1000", &sig),
            headers("k", "-5", &sig),
            headers("k", "1e3", &sig),
            headers("k", "1000.", &sig),
            headers("k", "1000.1234567890", &sig),
            headers("k", ".5", &sig),
            headers("k", "1000", &"ab".repeat(32)),
            headers("k", "1000", "v1=zz"),
            SignatureHeaders {
                key_id: Some("k".into()),
                ..Default::default()
            },
        ] {
            let e = SignedClaim::parse(&h, "POST", "/", 1000, W).unwrap_err();
            assert_eq!(e.spec().code, Some("signature_invalid"), "{h:?}");
        }
    }
}
