//! Rate limits and budgets: reserve before the call, settle after it.
//!
//! A request is checked against every limit that applies to it at once — its key's
//! (`[[keys]] limits`), its model's across all keys (`[[models]] limits`), its key's on
//! that model (`[[keys]] model_limits`) — and its key's budget (`[[keys]] budget`), all
//! or nothing. What it reserves:
//! - **rpm**: one place among the requests admitted in the rolling 60 s (a sliding log:
//!   exact, never the fixed-window double burst at a minute's edge);
//! - **tpm**: its estimated tokens (input estimate + `max_tokens`, or the model's output
//!   cap) in the rolling 60 s, corrected to the real usage when it settles;
//! - **max_concurrent**: a place held until it settles;
//! - **budget**: its estimated cost (at the dearest of the model's deployments) held
//!   against the UTC day's and month's caps until it settles with the real cost.
//!
//! Places and holds expire (`state.hold_ttl_s`), so those of a replica that died free
//! themselves. In process the counters are this process's (`local.rs`); with
//! `state.redis_url` each reserve and each settle is one atomic script on the Redis
//! server, with the server's clock (`redis.rs`), so N replicas enforce one limit exactly.
//! When Redis cannot be reached, `state.on_redis_error` decides: `open` admits on this
//! replica's own counters (budgets unenforced meanwhile), `closed` refuses.

mod local;
mod redis;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    config::{Budget, Config, Limits, OnRedisError},
    error::Error,
    state::State,
    telemetry::Ended,
};

/// The window of `rpm` and `tpm`.
const WINDOW_MS: u64 = 60_000;

/// The output a request that sets no `max_tokens` is estimated at (lower when every
/// deployment of its model caps output lower). It is what Anthropic-format deployments
/// are sent when the caller sets none; reserving a model's whole output cap (128k
/// tokens for some) would refuse ordinary calls under a modest `tpm` or budget.
pub const DEFAULT_OUTPUT_ESTIMATE: u32 = 4096;

/// The gateway's limiter; it outlives reloads (a reload must not reset the counters).
pub struct Limiter {
    local: local::Local,
    state: Arc<State>,
    /// Where Redis settles run, so shutdown waits for them.
    background: crate::background::Background,
    scripts: redis::Scripts,
    /// Reservation ids: this process's random prefix and a counter.
    prefix: u64,
    next: AtomicU64,
}

/// Who and what one limit counts: a key, a model, or a key on a model.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `key:NAME`, `model:NAME` or `key-model:KEY:MODEL`.
    pub id: Arc<str>,
    pub limits: Limits,
}

/// What one request asks of the limits.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub subjects: Vec<Subject>,
    /// The key whose budget applies, and the budget.
    pub budget: Option<(Arc<str>, Budget)>,
    /// Estimated tokens: input estimate plus the output asked for (or the cap).
    pub tokens: u64,
    /// Estimated cost in micro-USD.
    pub cost_micros: u64,
}

impl Ask {
    fn is_empty(&self) -> bool {
        self.subjects.is_empty() && self.budget.is_none()
    }
}

impl Budget {
    fn day_micros(&self) -> Option<u64> {
        self.usd_per_day.map(usd_to_micros)
    }

    fn month_micros(&self) -> Option<u64> {
        self.usd_per_month.map(usd_to_micros)
    }
}

fn usd_to_micros(usd: f64) -> u64 {
    (usd * 1e6).round().max(0.0) as u64
}

/// The limits of one config, looked up per request, with each subject's id made once.
#[derive(Debug, Default)]
pub struct Rules {
    models: crate::FastMap<String, Subject>,
    keys: crate::FastMap<String, KeyRules>,
}

/// One key's subjects: its own limits, its limits per model, and its budget.
#[derive(Debug)]
struct KeyRules {
    own: Option<Subject>,
    per_model: crate::FastMap<String, Subject>,
    budget: Option<(Arc<str>, Budget)>,
}

impl Rules {
    pub fn new(config: &Config) -> Rules {
        let models = config
            .models
            .iter()
            .filter(|m| m.limits.any())
            .map(|m| {
                let id = Arc::from(format!("model:{}", escape(&m.name)));
                (
                    m.name.clone(),
                    Subject {
                        id,
                        limits: m.limits,
                    },
                )
            })
            .collect();
        let keys = config
            .keys
            .iter()
            .map(|k| {
                let rules = KeyRules {
                    own: k.limits.any().then(|| Subject {
                        id: Arc::from(format!("key:{}", escape(&k.name))),
                        limits: k.limits,
                    }),
                    per_model: k
                        .model_limits
                        .iter()
                        .filter(|(_, l)| l.any())
                        .map(|(model, l)| {
                            let id = Arc::from(format!(
                                "key-model:{}:{}",
                                escape(&k.name),
                                escape(model)
                            ));
                            (model.clone(), Subject { id, limits: *l })
                        })
                        .collect(),
                    budget: k
                        .budget
                        .any()
                        .then(|| (Arc::from(k.name.as_str()), k.budget)),
                };
                (k.name.clone(), rules)
            })
            .filter(|(_, r)| r.own.is_some() || !r.per_model.is_empty() || r.budget.is_some())
            .collect();
        Rules { models, keys }
    }

    /// Whether anything is limited at all; when not, nothing is reserved.
    pub fn any(&self) -> bool {
        !self.models.is_empty() || !self.keys.is_empty()
    }

    /// What a call by `key` on `model` (the catalog's name) is counted against: its
    /// subjects, and the budget that applies.
    pub fn applying(
        &self,
        key: Option<&crate::config::KeyConfig>,
        model: &str,
    ) -> (Vec<Subject>, Option<(Arc<str>, Budget)>) {
        let mut subjects = Vec::new();
        let key = key.and_then(|k| self.keys.get(&k.name));
        if let Some(k) = key {
            subjects.extend(k.own.clone());
            subjects.extend(k.per_model.get(model).cloned());
        }
        subjects.extend(self.models.get(model).cloned());
        (subjects, key.and_then(|k| k.budget.clone()))
    }
}

/// What an admitted request learns: the figures of its tightest limits, for the
/// `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Granted {
    pub requests: Option<Figures>,
    pub tokens: Option<Figures>,
}

/// One limit's figures as OpenAI's rate-limit headers carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub limit: u64,
    pub remaining: u64,
    /// Until the window has room for the whole limit again.
    pub reset: Duration,
}

impl Granted {
    fn requests(&mut self, limit: u64, remaining: u64, reset_ms: u64) {
        if self.requests.is_none_or(|f| remaining < f.remaining) {
            self.requests = Some(Figures {
                limit,
                remaining,
                reset: Duration::from_millis(reset_ms),
            });
        }
    }

    fn tokens(&mut self, limit: u64, remaining: u64, reset_ms: u64) {
        if self.tokens.is_none_or(|f| remaining < f.remaining) {
            self.tokens = Some(Figures {
                limit,
                remaining,
                reset: Duration::from_millis(reset_ms),
            });
        }
    }

    /// Writes the headers into `h` (REST answers: names made once, numbers without a
    /// string in between).
    pub fn write(&self, h: &mut http::HeaderMap) {
        use http::{HeaderName, HeaderValue};
        const NAMES: [[HeaderName; 3]; 2] = [
            [
                HeaderName::from_static("x-ratelimit-limit-requests"),
                HeaderName::from_static("x-ratelimit-remaining-requests"),
                HeaderName::from_static("x-ratelimit-reset-requests"),
            ],
            [
                HeaderName::from_static("x-ratelimit-limit-tokens"),
                HeaderName::from_static("x-ratelimit-remaining-tokens"),
                HeaderName::from_static("x-ratelimit-reset-tokens"),
            ],
        ];
        for (figures, [limit, remaining, reset]) in
            [self.requests, self.tokens].into_iter().zip(NAMES)
        {
            let Some(f) = figures else {
                continue;
            };
            h.insert(limit, HeaderValue::from(f.limit));
            h.insert(remaining, HeaderValue::from(f.remaining));
            if let Ok(v) = HeaderValue::from_str(&openai_duration(f.reset)) {
                h.insert(reset, v);
            }
        }
    }

    /// The headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(f) = self.requests {
            out.push(("x-ratelimit-limit-requests", f.limit.to_string()));
            out.push(("x-ratelimit-remaining-requests", f.remaining.to_string()));
            out.push(("x-ratelimit-reset-requests", openai_duration(f.reset)));
        }
        if let Some(f) = self.tokens {
            out.push(("x-ratelimit-limit-tokens", f.limit.to_string()));
            out.push(("x-ratelimit-remaining-tokens", f.remaining.to_string()));
            out.push(("x-ratelimit-reset-tokens", openai_duration(f.reset)));
        }
        out
    }
}

/// A duration as OpenAI's reset headers write it: `20ms`, `1.5s`, `6m0s` (whole
/// milliseconds, no float formatting: it is written on every limited answer).
fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let (s, frac) = (ms / 1000, ms % 1000);
        match frac {
            0 => format!("{s}s"),
            f if f % 100 == 0 => format!("{s}.{}s", f / 100),
            f if f % 10 == 0 => format!("{s}.{:02}s", f / 10),
            f => format!("{s}.{f:03}s"),
        }
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Requests {
        subject: usize,
        limit: u64,
        retry_ms: u64,
    },
    Tokens {
        subject: usize,
        limit: u64,
        remaining: u64,
        retry_ms: u64,
    },
    /// The request alone asks for more tokens than the limit allows in a minute.
    TokensNever {
        subject: usize,
        limit: u64,
    },
    Concurrent {
        subject: usize,
        limit: u64,
    },
    BudgetDay {
        cap: u64,
    },
    BudgetMonth {
        cap: u64,
    },
}

/// How a reservation settles: the real tokens (`None`: none known, release them) and
/// the real cost in micro-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settle {
    pub tokens: Option<u64>,
    pub cost_micros: u64,
}

/// The UTC day and month a spend is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    /// Days since 1970-01-01.
    pub day: u32,
    /// `year * 12 + month - 1`.
    pub month: u32,
}

impl Day {
    pub fn now() -> Day {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Day::of_unix(secs)
    }

    pub fn of_unix(secs: u64) -> Day {
        let day = u32::try_from(secs / 86_400).unwrap_or(u32::MAX);
        let (y, m, _) = civil_from_days(i64::from(day));
        Day {
            day,
            month: u32::try_from(y * 12 + i64::from(m) - 1).unwrap_or(0),
        }
    }

    /// `YYYYMMDD` and `YYYYMM`, for the Redis keys.
    fn names(&self) -> (String, String) {
        let (y, m, d) = civil_from_days(i64::from(self.day));
        (format!("{y:04}{m:02}{d:02}"), format!("{y:04}{m:02}"))
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Which engine holds a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Local,
    Redis,
}

/// A granted reservation; settle it when the request ends ([`Reservation::settle`]),
/// or let it expire.
pub struct Reservation {
    limiter: Arc<Limiter>,
    ask: Ask,
    rid: u64,
    engine: Engine,
    day: Day,
}

impl Limiter {
    pub fn new(state: Arc<State>, background: crate::background::Background) -> Limiter {
        Limiter {
            local: local::Local::new(),
            state,
            background,
            scripts: redis::Scripts::new(),
            prefix: fastrand::u64(..),
            next: AtomicU64::new(1),
        }
    }

    fn hold_ms(&self) -> u64 {
        u64::try_from(self.state.config().hold_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Reserves `ask`, all or nothing. An empty ask reserves nothing.
    pub async fn reserve(
        self: &Arc<Self>,
        ask: Ask,
    ) -> Result<Option<(Reservation, Granted)>, Error> {
        if ask.is_empty() {
            return Ok(None);
        }
        let rid = self.next.fetch_add(1, Ordering::Relaxed);
        // Only budgets count by the calendar.
        let day = if ask.budget.is_some() {
            Day::now()
        } else {
            Day { day: 0, month: 0 }
        };
        let hold_ms = self.hold_ms();
        let (result, engine) = match self.state.redis() {
            None => (self.local.reserve(&ask, rid, hold_ms, day), Engine::Local),
            Some(r) => {
                match self
                    .scripts
                    .reserve(r, &ask, &self.rid_name(rid), hold_ms, day)
                    .await
                {
                    Ok(result) => (result, Engine::Redis),
                    Err(e) => {
                        // The script may have run though its answer was lost: release
                        // whatever it took, so no hold lingers until it expires.
                        let release = Settle {
                            tokens: None,
                            cost_micros: 0,
                        };
                        self.clone().settle_in_redis(ask.clone(), rid, release, day);
                        match self.state.on_redis_error() {
                            OnRedisError::Closed => {
                                tracing::warn!(error = %e, "limits refused: Redis unreachable and state.on_redis_error = closed");
                                return Err(Error::LimitsUnavailable);
                            }
                            OnRedisError::Open => {
                                metrics::counter!("switchyard_limits_degraded_total").increment(1);
                                tracing::warn!(error = %e, "limits degraded to this replica's counters: Redis unreachable");
                                // Budgets need the shared spend: unenforced until Redis is back.
                                let local = Ask {
                                    budget: None,
                                    ..ask.clone()
                                };
                                (self.local.reserve(&local, rid, hold_ms, day), Engine::Local)
                            }
                        }
                    }
                }
            }
        };
        match result {
            Ok(granted) => Ok(Some((
                Reservation {
                    limiter: self.clone(),
                    ask,
                    rid,
                    engine,
                    day,
                },
                granted,
            ))),
            Err(refusal) => {
                let kind = refusal_kind(&refusal);
                metrics::counter!("switchyard_limited_total", "limit" => kind).increment(1);
                Err(refused(&ask, refusal))
            }
        }
    }

    /// Settles a Redis reservation off the caller's path, on the gateway's background
    /// (shutdown waits for it), retrying once; if it still fails, the holds expire by
    /// themselves and the spend is lost (logged).
    fn settle_in_redis(self: Arc<Self>, ask: Ask, rid: u64, settle: Settle, day: Day) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let limiter = self.clone();
        self.background.spawn(move |_| async move {
            let Some(r) = limiter.state.redis() else {
                return;
            };
            let name = limiter.rid_name(rid);
            let mut last = None;
            for attempt in 0..2 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                match limiter.scripts.settle(r, &ask, &name, settle, day).await {
                    Ok(()) => return,
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last {
                metrics::counter!("switchyard_limits_unsettled_total").increment(1);
                tracing::warn!(error = %e, cost_micros = settle.cost_micros, "a reservation could not be settled; its holds expire by themselves");
            }
        });
    }

    fn rid_name(&self, rid: u64) -> String {
        format!("{:016x}-{rid}", self.prefix)
    }
}

impl Reservation {
    /// Settles with how the request ended: its real tokens and cost when the provider
    /// reported usage; the estimate when a served call reported none (never less than
    /// it may have cost); released when it failed or the caller went away.
    pub fn settle(self, ended: &Ended<'_>) {
        let settle = match ended.usage {
            Some(u) => Settle {
                tokens: Some(u64::from(u.prompt_tokens) + u64::from(u.completion_tokens)),
                cost_micros: ended.cost_usd.map_or(0, usd_to_micros),
            },
            // Served, or cut off after content reached the caller (a client that leaves
            // before the usage chunk, a stream broken upstream): the provider billed it,
            // and how much is unknown, so the estimate is spent.
            None if ended.outcome == crate::telemetry::Outcome::Ok || ended.delivered => Settle {
                tokens: Some(self.ask.tokens),
                cost_micros: self.ask.cost_micros,
            },
            None => Settle {
                tokens: None,
                cost_micros: 0,
            },
        };
        match self.engine {
            Engine::Local => self
                .limiter
                .local
                .settle(&self.ask, self.rid, settle, self.day),
            Engine::Redis => {
                let limiter = self.limiter.clone();
                limiter.settle_in_redis(self.ask, self.rid, settle, self.day);
            }
        }
    }
}

fn refusal_kind(r: &Refusal) -> &'static str {
    match r {
        Refusal::Requests { .. } => "requests",
        Refusal::Tokens { .. } | Refusal::TokensNever { .. } => "tokens",
        Refusal::Concurrent { .. } => "concurrent",
        Refusal::BudgetDay { .. } => "budget_day",
        Refusal::BudgetMonth { .. } => "budget_month",
    }
}

/// The caller's error for a refusal: which limit, of whom, and when to retry.
fn refused(ask: &Ask, refusal: Refusal) -> Error {
    let who = |i: usize| {
        ask.subjects
            .get(i)
            .map_or_else(String::new, |s| describe_subject(&s.id))
    };
    match refusal {
        Refusal::Requests {
            subject,
            limit,
            retry_ms,
        } => Error::RateLimited {
            message: format!(
                "Rate limit reached for {} on requests per min (RPM): Limit {limit}. Please try again in {}.",
                who(subject),
                openai_duration(Duration::from_millis(retry_ms))
            ),
            kind: "requests",
            retry_after: Some(Duration::from_millis(retry_ms)),
            figures: Box::new(Granted {
                requests: Some(Figures {
                    limit,
                    remaining: 0,
                    reset: Duration::from_millis(retry_ms),
                }),
                tokens: None,
            }),
        },
        Refusal::Tokens {
            subject,
            limit,
            remaining,
            retry_ms,
        } => Error::RateLimited {
            message: format!(
                "Rate limit reached for {} on tokens per min (TPM): Limit {limit}, Remaining {remaining}, Requested {}. Please try again in {}.",
                who(subject),
                ask.tokens,
                openai_duration(Duration::from_millis(retry_ms))
            ),
            kind: "tokens",
            retry_after: Some(Duration::from_millis(retry_ms)),
            figures: Box::new(Granted {
                requests: None,
                tokens: Some(Figures {
                    limit,
                    remaining,
                    reset: Duration::from_millis(retry_ms),
                }),
            }),
        },
        Refusal::TokensNever { subject, limit } => Error::RateLimited {
            message: format!(
                "Request too large for {} on tokens per min (TPM): Limit {limit}, Requested {} (the input estimate plus max_tokens, or the model's output cap when max_tokens is not set). Lower max_tokens or the input.",
                who(subject),
                ask.tokens
            ),
            kind: "tokens",
            retry_after: None,
            figures: Box::default(),
        },
        Refusal::Concurrent { subject, limit } => Error::RateLimited {
            message: format!(
                "Concurrency limit reached for {}: at most {limit} requests at once. Please try again when one finishes.",
                who(subject)
            ),
            kind: "requests",
            retry_after: Some(Duration::from_secs(1)),
            figures: Box::default(),
        },
        Refusal::BudgetDay { cap } => Error::QuotaExceeded {
            message: format!(
                "{} has used its daily budget of {} USD (UTC day); it resets at 00:00 UTC.",
                ask.budget
                    .as_ref()
                    .map_or_else(String::new, |(k, _)| format!("key `{k}`")),
                cap as f64 / 1e6
            ),
        },
        Refusal::BudgetMonth { cap } => Error::QuotaExceeded {
            message: format!(
                "{} has used its monthly budget of {} USD (UTC calendar month); it resets on the 1st at 00:00 UTC.",
                ask.budget
                    .as_ref()
                    .map_or_else(String::new, |(k, _)| format!("key `{k}`")),
                cap as f64 / 1e6
            ),
        },
    }
}

/// A name in a subject id: `%` and `:` escaped (`%25`, `%3A`), so that a key or model
/// name holding a colon (`llama3:8b`) cannot make two subjects one.
fn escape(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains([':', '%']) {
        std::borrow::Cow::Owned(name.replace('%', "%25").replace(':', "%3A"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

fn unescape(name: &str) -> String {
    name.replace("%3A", ":").replace("%25", "%")
}

fn describe_subject(id: &str) -> String {
    if let Some(k) = id.strip_prefix("key-model:") {
        let (key, model) = k.split_once(':').unwrap_or((k, ""));
        format!("key `{}` on model `{}`", unescape(key), unescape(model))
    } else if let Some(k) = id.strip_prefix("key:") {
        format!("key `{}`", unescape(k))
    } else if let Some(m) = id.strip_prefix("model:") {
        format!("model `{}`", unescape(m))
    } else {
        id.to_owned()
    }
}

#[cfg(test)]
mod tests;
