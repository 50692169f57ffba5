//! UTC hours and dates for the ledger: RFC 3339 in and out, `YYYYMMDDHH` bucket names,
//! and `24h`-style spans, on the proleptic Gregorian calendar (no time-zone database).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds in an hour: the ledger's granularity.
pub const HOUR: i64 = 3600;

/// UNIX seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The start of the UTC hour holding `secs`.
pub fn hour_of(secs: i64) -> i64 {
    secs.div_euclid(HOUR) * HOUR
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01 (`civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: i64) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// `YYYYMMDDHH` of the hour holding `secs` (the Redis bucket's name).
pub fn bucket_name(secs: i64) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}{mo:02}{d:02}{:02}", secs.rem_euclid(86_400) / 3600)
}

/// A time as RFC 3339 (`2025-06-01T12:00:00Z`, `...+02:00`, fractions ignored) or
/// UNIX seconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map_err(|_| format!("`{text}` is too large for UNIX seconds"));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!("`{text}` is neither RFC 3339 (2025-06-01T12:00:00Z) nor UNIX seconds")
    })
}

fn parse_rfc3339(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = t.get(from..from + len)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let month = u32::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
    let day = u32::try_from(day).ok().filter(|d| (1..=31).contains(d))?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = t.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = frac.get(digits..)?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let r = rest.get(1..)?;
            if r.len() != 5 || r.as_bytes().get(2) != Some(&b':') {
                return None;
            }
            let (oh, om): (i64, i64) = (r.get(..2)?.parse().ok()?, r.get(3..)?.parse().ok()?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    // A day past the month's end (2025-02-30) does not round-trip: refuse it.
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// A span such as `30m`, `24h`, `7d` or `2w` (a bare number is hours).
pub fn parse_span(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = text.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{text}`: expected a span such as 30m, 24h or 7d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{text}`: the unit is one of s, m, h, d, w")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// The hour a `YYYYMMDDHH` bucket name stands for.
pub fn parse_bucket_name(name: &str) -> Option<i64> {
    if name.len() != 10 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| name.get(r)?.parse::<i64>().ok();
    let (y, m, d, h) = (n(0..4)?, n(4..6)?, n(6..8)?, n(8..10)?);
    let (m, d) = (u32::try_from(m).ok()?, u32::try_from(d).ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + h * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_takes_offsets() {
        let t = parse_time("2025-06-01T12:34:56Z").unwrap();
        assert_eq!(t, 1_748_781_296);
        assert_eq!(rfc3339(t), "2025-06-01T12:34:56Z");
        assert_eq!(parse_time("2025-06-01T14:34:56.123+02:00").unwrap(), t);
        assert_eq!(parse_time("1748781296").unwrap(), t);
        assert_eq!(bucket_name(t), "2025060112");
        assert_eq!(parse_bucket_name("2025060112"), Some(hour_of(t)));
        assert_eq!(parse_bucket_name("2025136112"), None);
        assert_eq!(hour_of(t), 1_748_779_200);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time("2024-02-29T00:00:00Z").unwrap(), 1_709_164_800);
    }

    #[test]
    fn bad_times_and_spans_are_refused() {
        for bad in [
            "",
            "yesterday",
            "2025-02-30T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-06-01T12:00:00",
            "2025-06-01T12:00:00+2",
            "-5",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_span("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_span("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_span("30m").unwrap(), Duration::from_secs(1_800));
        assert!(parse_span("soon").is_err());
        assert!(parse_span("3y").is_err());
    }
}
