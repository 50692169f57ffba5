//! Metric handles kept per label set, so that a request records its metrics without
//! building label strings or looking its series up in the recorder's registry.
//!
//! Labels come from the catalog and config only (model, provider, outcome), so the sets
//! are few; the maps are cleared if they ever pass [`MAX_SETS`] (a handle stays valid in
//! the recorder however the cache forgets it).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use metrics::{Counter, Histogram};

use super::Outcome;
use crate::error::ErrorClass;

/// Label sets kept at most per map before it is cleared.
const MAX_SETS: usize = 4096;

/// The metrics of one (model, provider, outcome).
pub struct RequestMetrics {
    pub requests: Counter,
    pub duration: Histogram,
    pub first_byte: Histogram,
    pub cost_micros: Counter,
    pub prompt_tokens: Counter,
    pub completion_tokens: Counter,
}

type RequestKey = (Arc<str>, Option<Arc<str>>, Outcome, Option<ErrorClass>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The value kept for `key` in `sets`, made by `make` on first use.
pub fn cached<K: std::hash::Hash + Eq, V>(
    sets: &Mutex<crate::FastMap<K, Arc<V>>>,
    key: K,
    make: impl FnOnce() -> V,
) -> Arc<V> {
    if let Some(found) = lock(sets).get(&key) {
        return found.clone();
    }
    let made = Arc::new(make());
    let mut sets = lock(sets);
    if sets.len() >= MAX_SETS {
        sets.clear();
    }
    sets.insert(key, made.clone());
    made
}

/// The outcome as its metric label.
pub fn outcome_label(outcome: Outcome) -> std::borrow::Cow<'static, str> {
    match outcome {
        Outcome::Ok => "ok".into(),
        Outcome::Error(s) => s.to_string().into(),
        Outcome::StreamBroken => "stream_broken".into(),
        Outcome::Cancelled => "cancelled".into(),
    }
}

/// The handles of a request's metrics.
pub fn request(
    model: &Arc<str>,
    provider: Option<&Arc<str>>,
    outcome: Outcome,
    error_type: Option<ErrorClass>,
) -> Arc<RequestMetrics> {
    static SETS: OnceLock<Mutex<crate::FastMap<RequestKey, Arc<RequestMetrics>>>> = OnceLock::new();
    let key = (model.clone(), provider.cloned(), outcome, error_type);
    cached(SETS.get_or_init(Mutex::default), key, || {
        let labels = [
            ("model", model.to_string()),
            (
                "provider",
                provider.map(|p| p.to_string()).unwrap_or_default(),
            ),
            ("outcome", outcome_label(outcome).into_owned()),
        ];
        let l = &labels[..2];
        // `error_type` only on errors, so the series of successes keep their labels.
        let requests = match error_type {
            None => metrics::counter!("switchyard_requests_total", &labels),
            Some(class) => metrics::counter!(
                "switchyard_requests_total",
                "model" => labels[0].1.clone(),
                "provider" => labels[1].1.clone(),
                "outcome" => labels[2].1.clone(),
                "error_type" => class.as_str()
            ),
        };
        RequestMetrics {
            requests,
            duration: metrics::histogram!("switchyard_request_duration_seconds", l),
            first_byte: metrics::histogram!("switchyard_time_to_first_byte_seconds", l),
            cost_micros: metrics::counter!("switchyard_cost_usd_micros_total", l),
            prompt_tokens: metrics::counter!("switchyard_prompt_tokens_total", l),
            completion_tokens: metrics::counter!("switchyard_completion_tokens_total", l),
        }
    })
}

/// The counter of upstream attempts on `provider` that ended with `outcome`.
pub fn attempt(provider: &Arc<str>, outcome: &str) -> Counter {
    type Sets = crate::FastMap<Arc<str>, crate::FastMap<String, Counter>>;
    static SETS: OnceLock<Mutex<Sets>> = OnceLock::new();
    let sets = SETS.get_or_init(Mutex::default);
    let mut sets = lock(sets);
    if let Some(c) = sets.get(&**provider).and_then(|m| m.get(outcome)) {
        return c.clone();
    }
    if sets.values().map(HashMap::len).sum::<usize>() >= MAX_SETS {
        sets.clear();
    }
    let counter = metrics::counter!(
        "switchyard_upstream_attempts_total",
        "provider" => provider.to_string(),
        "outcome" => outcome.to_owned()
    );
    sets.entry(provider.clone())
        .or_default()
        .insert(outcome.to_owned(), counter.clone());
    counter
}
