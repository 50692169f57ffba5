//! The request log's line: one JSON object per request, in the shape `tracing`'s JSON
//! formatter gives an event (`timestamp`, `level`, `message`, the fields flattened,
//! `target`), encoded straight from the record with serde into one buffer and handed to
//! the [`sink`](super::sink) whole. Fields with no value are left out, as `tracing` leaves
//! out an empty `Option`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::usage::ledger::calendar::civil_from_days;

/// The target that turns the request log on or off in `RUST_LOG`.
pub const TARGET: &str = "switchyard::request";

/// Whether `RUST_LOG` lets the request log through (`switchyard::request` at `info`).
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// One request's line, field by field.
#[derive(Serialize)]
pub struct Line<'a> {
    pub timestamp: Timestamp,
    pub level: &'static str,
    pub message: &'static str,
    pub request_id: &'a str,
    pub surface: &'static str,
    /// `chat` or `embeddings`.
    pub operation: &'static str,
    pub model: &'a str,
    pub provider: &'a str,
    pub stream: bool,
    pub outcome: &'a str,
    pub attempts: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    /// The client's address (`network::client_ip`), for the audit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<std::net::IpAddr>,
    /// How the caller authenticated: `bearer`, `hmac`, `jwt` or `none` (absent when it
    /// did not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<&'static str>,
    /// The caller's effective security level (`low`, `medium`, `high`); absent when the
    /// request was refused before it was known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_level: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<&'a str>,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    /// The token counts are the gateway's estimate (the provider reported none).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tokens_estimated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_input_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_cached_input_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_cache_write_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_output_usd: Option<f64>,
    /// Redactions by detector, content-rule decisions, the guard's verdict.
    #[serde(flatten)]
    pub data: Option<&'a super::audit::DataAudit>,
    pub target: &'static str,
}

impl Line<'_> {
    /// Writes the line to the sink; `false` when no sink is installed (a process that did
    /// not call [`init_logging`](super::init_logging) has no request log).
    pub fn write(&self) -> bool {
        let mut buf = Vec::with_capacity(768);
        // Every field is a string, a number or a bool: serializing cannot fail.
        if serde_json::to_writer(&mut buf, self).is_err() {
            return false;
        }
        buf.push(b'\n');
        super::sink::write_lines(&buf)
    }
}

/// The wall-clock time of a line, as `tracing`'s formatter writes it:
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds).
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(SystemTime::now())
    }

    fn digits(out: &mut [u8], mut value: u64) {
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }

    /// The 27 ASCII bytes of the timestamp.
    fn bytes(&self) -> [u8; 27] {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let of_day = secs.rem_euclid(86_400) as u64;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        Self::digits(&mut out[0..4], year.clamp(0, 9999) as u64);
        Self::digits(&mut out[5..7], u64::from(month));
        Self::digits(&mut out[8..10], u64::from(day));
        Self::digits(&mut out[11..13], of_day / 3600);
        Self::digits(&mut out[14..16], of_day % 3600 / 60);
        Self::digits(&mut out[17..19], of_day % 60);
        Self::digits(&mut out[20..26], u64::from(since.subsec_micros()));
        out
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.bytes();
        // ASCII digits and separators only.
        serializer.serialize_str(std::str::from_utf8(&bytes).unwrap_or("1970-01-01T00:00:00Z"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let t =
                Timestamp(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros));
            String::from_utf8(t.bytes().to_vec()).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29 (a leap day) 23:59:59.999999
        assert_eq!(at(1_709_251_199, 999_999), "2024-02-29T23:59:59.999999Z");
        assert_eq!(at(1_798_761_600, 42), "2027-01-01T00:00:00.000042Z");
    }

    #[test]
    fn absent_fields_are_left_out_and_strings_are_escaped() {
        let line = Line {
            timestamp: Timestamp(UNIX_EPOCH),
            level: "INFO",
            message: "request",
            request_id: "id \"quoted\"\n",
            surface: "rest",
            operation: "embeddings",
            model: "m",
            provider: "",
            stream: false,
            outcome: "ok",
            attempts: "",
            error_type: None,
            policy: None,
            route: None,
            policy_us: None,
            refused_by: None,
            cache: Some("miss"),
            saved_usd: None,
            key: None,
            client_addr: None,
            auth_method: Some("hmac"),
            security_level: Some("medium"),
            deployment: None,
            latency_ms: 1.5,
            ttft_ms: None,
            prompt_tokens: Some(3),
            tokens_estimated: false,
            completion_tokens: None,
            cached_tokens: None,
            cache_write_tokens: None,
            reasoning_tokens: None,
            cost_usd: None,
            cost_input_usd: None,
            cost_cached_input_usd: None,
            cost_cache_write_usd: None,
            cost_output_usd: None,
            data: None,
            target: TARGET,
        };
        let v: serde_json::Value = serde_json::to_value(&line).unwrap();
        assert_eq!(v["request_id"], "id \"quoted\"\n");
        assert_eq!(v["cache"], "miss");
        assert_eq!(v["operation"], "embeddings");
        assert_eq!(v["auth_method"], "hmac");
        assert_eq!(v["security_level"], "medium");
        assert_eq!(v["prompt_tokens"], 3);
        assert_eq!(v["target"], TARGET);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000Z");
        assert!(v.get("policy").is_none() && v.get("cost_usd").is_none());
    }
}
