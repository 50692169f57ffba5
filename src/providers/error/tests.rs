//! Reading `Retry-After` in each of its forms.

use std::time::{Duration, SystemTime};

use super::*;

fn headers(name: &'static str, value: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(name, http::HeaderValue::try_from(value).unwrap());
    h
}

/// 2026-12-02 18:00:00 UTC.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_234_400)
}

#[test]
fn retry_after_seconds_and_milliseconds_are_read() {
    let at = now();
    assert_eq!(
        retry_after_at(&headers("retry-after", "7"), at),
        Some(Duration::from_secs(7))
    );
    assert_eq!(
        retry_after_at(&headers("retry-after", "1.5"), at),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        retry_after_at(&headers("retry-after-ms", "250"), at),
        Some(Duration::from_millis(250))
    );
}

#[test]
fn retry_after_http_date_in_the_future_is_the_wait_until_then() {
    let date = httpdate::fmt_http_date(now() + Duration::from_secs(90));
    assert_eq!(
        retry_after_at(&headers("retry-after", &date), now()),
        Some(Duration::from_secs(90))
    );
    // The fixed example from RFC 9110 parses too (it is long past: no wait).
    assert_eq!(
        retry_after_at(
            &headers("retry-after", "Fri, 31 Dec 1999 23:59:59 GMT"),
            now()
        ),
        Some(Duration::ZERO)
    );
}

#[test]
fn retry_after_http_date_in_the_past_means_retry_now() {
    let date = httpdate::fmt_http_date(now() - Duration::from_secs(30));
    assert_eq!(
        retry_after_at(&headers("retry-after", &date), now()),
        Some(Duration::ZERO)
    );
}

#[test]
fn retry_after_that_is_neither_form_is_ignored() {
    assert_eq!(retry_after_at(&headers("retry-after", "soon"), now()), None);
    assert_eq!(retry_after_at(&http::HeaderMap::new(), now()), None);
}
