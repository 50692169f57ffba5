//! The `GET /status/data` document: what the status page shows, in one stable JSON
//! shape (`object: "switchyard.status"`, `version: 1`; docs/operations.md lists it).
//!
//! Everything here is read: the live catalog and each deployment's health, the usage
//! ledger's last hour, and the bounded histories of errors, alerts and reloads.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::{
    alerts::RecentAlert,
    gateway::Gateway,
    reload::ReloadRecord,
    telemetry::recent::{RecentError, unix_now},
    usage::{
        cost::usd,
        ledger::{CACHE_HIT_DEPLOYMENT, Group, Query, Sums, calendar},
    },
};

/// The version of the shape; bumped only when a field changes meaning or goes away.
pub const VERSION: u32 = 1;

/// How far back the usage figures reach: the ledger's hours that overlap it.
pub const USAGE_WINDOW_S: i64 = 3_600;

/// The whole document.
#[derive(Debug, Serialize)]
pub struct StatusData {
    pub object: &'static str,
    pub version: u32,
    /// Unix seconds.
    pub generated_at: u64,
    pub uptime_s: u64,
    /// Requests being served now.
    pub in_flight: usize,
    pub deployments: Vec<DeploymentStatus>,
    pub usage: UsageStatus,
    pub cache: CacheStatus,
    /// Newest first.
    pub errors: Vec<RecentError>,
    /// Newest first.
    pub alerts: Vec<RecentAlert>,
    /// Newest first.
    pub reloads: Vec<ReloadRecord>,
}

/// One deployment of the live config: its circuit and live statistics.
#[derive(Debug, Serialize)]
pub struct DeploymentStatus {
    /// `provider/model`.
    pub id: String,
    pub provider: String,
    /// The provider's wire format (`openai`, `anthropic`, ...).
    pub kind: &'static str,
    /// The upstream model name.
    pub model: String,
    /// The catalog models it serves.
    pub serves: Vec<String>,
    /// `closed`, `half_open` or `open`.
    pub circuit: &'static str,
    /// While open: how long until a probe may go.
    pub open_for_ms: Option<u64>,
    /// Share of traffic admitted (slow start after a probe).
    pub ramp: f64,
    /// Over the last 256 successful attempts; 0 with none.
    pub p50_ms: f64,
    pub p95_ms: f64,
    /// EWMA of failure (1) / success (0) over about the last ten attempts.
    pub error_rate: f64,
    /// Successful attempts recorded since the gateway started.
    pub samples: u64,
    pub in_flight: u32,
}

/// Requests, tokens and cost over the last hour, from the usage ledger.
#[derive(Debug, Serialize)]
pub struct UsageStatus {
    /// False when the ledger is not open or could not be read (then `error` says why
    /// and the figures are zero).
    pub available: bool,
    pub error: Option<String>,
    /// Unix seconds: the ledger's hourly sums from the start of the hour an hour ago
    /// (`from`) to now (`to`), so between one and two hours of traffic.
    pub from: i64,
    pub to: i64,
    pub totals: Figures,
    /// By model, most expensive first.
    pub models: Vec<ModelUsage>,
    /// By caller key, most expensive first.
    pub keys: Vec<KeyUsage>,
}

/// The ledger's figures of one group.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Figures {
    pub requests: u64,
    pub errors: u64,
    /// Prompt tokens, however billed (cached and cache-written included).
    pub input_tokens: u64,
    /// Completion tokens, reasoning included.
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// Served requests whose cost is unknown (no usage reported, or no price).
    pub unpriced: u64,
}

#[derive(Debug, Serialize)]
pub struct ModelUsage {
    pub model: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Serialize)]
pub struct KeyUsage {
    /// The key's name; `None` for anonymous calls.
    pub key: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The response cache over the same window as the usage.
#[derive(Debug, Serialize)]
pub struct CacheStatus {
    /// `[cache] enabled` in the live config.
    pub enabled: bool,
    /// Requests answered from the cache.
    pub hits: u64,
    /// Every request in the window.
    pub requests: u64,
    /// `hits / requests`; `None` with no requests.
    pub hit_rate: Option<f64>,
}

impl Figures {
    fn of(s: &Sums) -> Figures {
        Figures {
            requests: s.requests,
            errors: s.errors,
            input_tokens: s.tokens.prompt(),
            output_tokens: s.tokens.output,
            cost_usd: usd(s.cost.total),
            unpriced: s.unpriced,
        }
    }
}

/// Builds the document from the gateway's state now.
pub async fn collect(gw: &Gateway) -> StatusData {
    let now = unix_now();
    let (usage, hits) = usage(gw, now as i64).await;
    let requests = usage.totals.requests;
    StatusData {
        object: "switchyard.status",
        version: VERSION,
        generated_at: now,
        uptime_s: gw.uptime().as_secs(),
        in_flight: gw.in_flight(),
        deployments: deployments(gw),
        cache: CacheStatus {
            enabled: gw.live().config.cache.enabled,
            hits,
            requests,
            hit_rate: (requests > 0).then(|| hits as f64 / requests as f64),
        },
        usage,
        errors: gw.recent_errors().list(),
        alerts: gw.alerter().recent(),
        reloads: gw.reloads().list(),
    }
}

/// Every deployment of the live catalog once, in catalog order.
fn deployments(gw: &Gateway) -> Vec<DeploymentStatus> {
    let live = gw.live();
    let now = tokio::time::Instant::now();
    let mut serves: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut order = Vec::new();
    for m in live.catalog.models() {
        for d in m.deployments.iter() {
            let models = serves.entry(&d.id).or_default();
            if models.is_empty() {
                order.push(d);
            }
            models.insert(&m.name);
        }
    }
    order
        .into_iter()
        .map(|d| {
            let s = d.health.snapshot(now);
            let (p50_ms, p95_ms) = d.health.latency_percentiles();
            DeploymentStatus {
                id: d.id.to_string(),
                provider: d.provider_name.to_string(),
                kind: d.kind,
                model: d.model.to_string(),
                serves: serves
                    .get(&*d.id)
                    .map(|m| m.iter().map(|s| (*s).to_owned()).collect())
                    .unwrap_or_default(),
                circuit: s.circuit.as_str(),
                open_for_ms: s
                    .open_until
                    .map(|t| t.saturating_duration_since(now).as_millis() as u64),
                ramp: s.ramp,
                p50_ms,
                p95_ms,
                error_rate: s.error_rate,
                samples: s.samples,
                in_flight: s.in_flight,
            }
        })
        .collect()
}

/// The last hour's usage by model and by key, and the cache hits among it.
async fn usage(gw: &Gateway, now: i64) -> (UsageStatus, u64) {
    // The ledger sums by hour: the window starts at the hour an hour ago falls in.
    let from = calendar::hour_of(now - USAGE_WINDOW_S);
    let to = now + 1;
    let mut status = UsageStatus {
        available: false,
        error: None,
        from,
        to,
        totals: Figures::default(),
        models: Vec::new(),
        keys: Vec::new(),
    };
    let Some(ledger) = gw.ledger() else {
        status.error = Some("the usage ledger is not open on this gateway".to_owned());
        return (status, 0);
    };
    let query = Query {
        from,
        to,
        group_by: vec![Group::Key, Group::Model, Group::Deployment],
    };
    let report = match ledger.report(query).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "status page: the usage ledger could not be read");
            status.error = Some(format!("the usage ledger could not be read: {e}"));
            return (status, 0);
        }
    };
    let (mut models, mut keys): (BTreeMap<String, Sums>, BTreeMap<String, Sums>) =
        Default::default();
    let mut hits = 0;
    for row in &report.rows {
        let [key, model, deployment] = &row.group[..] else {
            continue;
        };
        *keys.entry(key.clone()).or_default() += row.sums;
        *models.entry(model.clone()).or_default() += row.sums;
        if deployment == CACHE_HIT_DEPLOYMENT {
            hits += row.sums.requests;
        }
    }
    status.available = true;
    status.totals = Figures::of(&report.totals);
    status.models = by_cost(models, |model, figures| ModelUsage { model, figures });
    status.keys = by_cost(keys, |key, figures| KeyUsage {
        key: (!key.is_empty()).then_some(key),
        figures,
    });
    (status, hits)
}

/// Rows most expensive first, then busiest, then by name.
fn by_cost<T>(groups: BTreeMap<String, Sums>, row: impl Fn(String, Figures) -> T) -> Vec<T> {
    let mut sorted: Vec<(String, Sums)> = groups.into_iter().collect();
    sorted.sort_by(|(a_name, a), (b_name, b)| {
        b.cost
            .total
            .cmp(&a.cost.total)
            .then(b.requests.cmp(&a.requests))
            .then(a_name.cmp(b_name))
    });
    sorted
        .into_iter()
        .map(|(name, sums)| row(name, Figures::of(&sums)))
        .collect()
}
