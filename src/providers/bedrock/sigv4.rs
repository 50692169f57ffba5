//! AWS Signature Version 4 for one request, with the time passed in (no hidden clock).
//!
//! Rules, from the AWS IAM guide "Create a signed AWS API request": header names are
//! lowercased and sorted, values trimmed with inner runs of spaces collapsed; the payload
//! is signed by its hex SHA-256; the signing key is HMAC-chained from `"AWS4" + secret`
//! through the day, region, service and `aws4_request`; and for every service but S3 each
//! path segment is URI-encoded twice, so a model id sent as `v1%3A0` is signed as
//! `v1%253A0`. Secrets go into the HMAC and nowhere else.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The algorithm name in the `Authorization` header and the string to sign.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The keys and credential scope a request is signed with.
pub struct Signer<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// The parts of a request that are signed.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path exactly as sent on the wire (its segments percent-encoded once).
    pub path: &'a str,
    /// The canonical query string: `""` when there is none.
    pub query: &'a str,
    /// The headers to sign, in any case and order; `host` among them.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body ([`sha256_hex`]).
    pub payload_hash: &'a str,
}

/// A signing time in SigV4's basic ISO 8601 form, `YYYYMMDD'T'HHMMSS'Z'` (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmzDate(String);

impl AmzDate {
    /// The time `time`, to the second.
    pub fn at(time: SystemTime) -> AmzDate {
        let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (days, rest) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days);
        AmzDate(format!(
            "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        ))
    }

    /// Reads an `x-amz-date` value; `None` unless it is well formed.
    pub fn parse(value: &str) -> Option<AmzDate> {
        let b = value.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let num = |r: std::ops::Range<usize>| value[r].parse::<u32>().ok();
        let ok = b.len() == 16
            && digits(0..8)
            && b[8] == b'T'
            && digits(9..15)
            && b[15] == b'Z'
            && num(4..6).is_some_and(|m| (1..=12).contains(&m))
            && num(6..8).is_some_and(|d| (1..=31).contains(&d))
            && num(9..11).is_some_and(|h| h < 24)
            && num(11..13).is_some_and(|m| m < 60)
            && num(13..15).is_some_and(|s| s < 61);
        ok.then(|| AmzDate(value.to_owned()))
    }

    /// The whole value, for `x-amz-date`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `YYYYMMDD`, for the credential scope.
    pub fn day(&self) -> &str {
        &self.0[..8]
    }
}

/// The year, month and day of a count of days since 1970-01-01 (H. Hinnant's
/// `civil_from_days`, for the proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A computed signature and the header that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `host;x-amz-date;...`, as in the header.
    pub signed_headers: String,
    /// Hex HMAC-SHA256 of the string to sign.
    pub signature: String,
    /// The whole `Authorization` header value.
    pub authorization: String,
}

impl Signer<'_> {
    /// Signs `request` as made at `date`.
    pub fn sign(&self, request: &Request<'_>, date: &AmzDate) -> Signature {
        let (canonical, signed_headers) = canonical_request(request);
        let scope = format!(
            "{}/{}/{}/aws4_request",
            date.day(),
            self.region,
            self.service
        );
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{scope}\n{}",
            date.as_str(),
            sha256_hex(canonical.as_bytes())
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_access_key).as_bytes(),
            date.day().as_bytes(),
        );
        for part in [self.region, self.service, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        let authorization = format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, \
             Signature={signature}",
            self.access_key_id
        );
        Signature {
            signed_headers,
            signature,
            authorization,
        }
    }
}

/// The canonical request and its signed-headers list.
pub fn canonical_request(request: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(n, v)| {
            let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (n.to_ascii_lowercase(), value)
        })
        .collect();
    headers.sort();
    // Repeated names sign as one header whose values are joined by commas.
    headers.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.1.push(',');
            first.1.push_str(&later.1);
        }
        same
    });
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        canonical_uri(request.path),
        request.query,
        request.payload_hash
    );
    (canonical, signed_headers)
}

/// The path with each segment URI-encoded (again): the non-S3 rule.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Percent-encodes every byte but the unreserved `A-Z a-z 0-9 - _ . ~`, in uppercase hex.
pub fn uri_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Hex SHA-256, for the payload hash (`x-amz-content-sha256`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[expect(
    clippy::expect_used,
    reason = "HMAC takes keys of any length; new_from_slice cannot fail"
)]
fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// An `Authorization` header as a server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    /// `YYYYMMDD`.
    pub day: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

impl<'a> Authorization<'a> {
    /// Parses `AWS4-HMAC-SHA256 Credential=<key>/<day>/<region>/<service>/aws4_request,
    /// SignedHeaders=<a;b>, Signature=<64 hex>`, saying what is wrong when it is not.
    pub fn parse(header: &'a str) -> Result<Authorization<'a>, String> {
        let rest = header
            .strip_prefix(ALGORITHM)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| format!("Authorization header must start with `{ALGORITHM} `"))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',').map(str::trim) {
            match part.split_once('=') {
                Some(("Credential", v)) => credential = Some(v),
                Some(("SignedHeaders", v)) => signed = Some(v),
                Some(("Signature", v)) => signature = Some(v),
                _ => return Err(format!("Authorization header: unexpected `{part}`")),
            }
        }
        let missing = |name: &str| format!("Authorization header: {name} is missing");
        let credential = credential.ok_or_else(|| missing("Credential"))?;
        let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
        let signature = signature.ok_or_else(|| missing("Signature"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, day, region, service, "aws4_request"] = scope[..] else {
            return Err(format!(
                "Credential should be <key>/<date>/<region>/<service>/aws4_request, not `{credential}`"
            ));
        };
        let is_day = day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit());
        if access_key_id.is_empty() || !is_day || region.is_empty() || service.is_empty() {
            return Err(format!("Credential `{credential}` is malformed"));
        }
        let signed_headers: Vec<&str> = signed.split(';').collect();
        let lower_sorted = signed_headers
            .iter()
            .all(|h| !h.is_empty() && h.bytes().all(|b| !b.is_ascii_uppercase()))
            && signed_headers.is_sorted();
        if !lower_sorted {
            return Err(format!(
                "SignedHeaders must be lowercase names sorted and separated by `;`, not `{signed}`"
            ));
        }
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("Signature must be 64 hex digits".into());
        }
        Ok(Authorization {
            access_key_id,
            day,
            region,
            service,
            signed_headers,
            signature,
        })
    }
}

#[cfg(test)]
mod tests;
