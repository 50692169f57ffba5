//! Alerts: a metric always, and a webhook (JSON POST, retried, rate limited per alert)
//! when `[alerts] webhook_url` is set.
//!
//! Raised when a model's failover chain is exhausted (every attempt failed) and when a
//! deployment's circuit opens. Raising never blocks a request: alerts go to a bounded
//! queue drained by one task; when it is full the alert is counted as dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use serde::Serialize;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::telemetry::recent::{self, Recent};

/// `[alerts]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertConfig {
    pub webhook_url: Option<String>,
    /// The same alert (kind and subject) is sent at most once per this interval.
    pub min_interval: Duration,
    /// Delivery attempts per alert.
    pub attempts: u32,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            webhook_url: None,
            min_interval: Duration::from_secs(60),
            attempts: 3,
        }
    }
}

/// One alert, as the webhook receives it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    /// `chain_exhausted` or `breaker_open`.
    pub kind: &'static str,
    /// The model or deployment it is about.
    pub subject: String,
    pub message: String,
    /// Unix seconds.
    pub at: u64,
}

impl Alert {
    pub fn new(kind: &'static str, subject: &str, message: String) -> Alert {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Alert {
            kind,
            subject: subject.to_owned(),
            message,
            at,
        }
    }
}

const QUEUE: usize = 256;

/// An alert as the status page lists it: the latest of its kind and subject, and how
/// often it was raised while it stayed among the last [`recent::ALERTS_KEPT`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecentAlert {
    #[serde(flatten)]
    pub alert: Alert,
    /// Unix seconds of the first time it was raised.
    pub first_at: u64,
    pub count: u64,
}

/// Raises alerts; cheap to share.
pub struct Alerter {
    config: Mutex<AlertConfig>,
    last_sent: Mutex<HashMap<(&'static str, String), Instant>>,
    queue: mpsc::Sender<(Alert, AlertConfig)>,
    recent: Recent<RecentAlert>,
}

impl Alerter {
    /// The alerter and the loop that delivers its webhooks ([`Deliveries::run`]).
    pub fn new(config: AlertConfig, client: reqwest::Client) -> (Arc<Alerter>, Deliveries) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let alerter = Arc::new(Alerter {
            config: Mutex::new(config),
            last_sent: Mutex::new(HashMap::new()),
            queue,
            recent: Recent::new(recent::ALERTS_KEPT),
        });
        (alerter, Deliveries { rx, client })
    }

    pub fn set_config(&self, config: AlertConfig) {
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// The alerts raised lately, newest first, each kind and subject once.
    pub fn recent(&self) -> Vec<RecentAlert> {
        self.recent.list()
    }

    /// Counts the alert, notes it among the recent ones and, when a webhook is configured
    /// and this alert was not sent within the interval, queues it for delivery.
    pub fn raise(&self, alert: Alert) {
        metrics::counter!(
            "switchyard_alerts_total",
            "kind" => alert.kind,
            "subject" => alert.subject.clone()
        )
        .increment(1);
        self.note(&alert);
        let config = self
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if config.webhook_url.is_none() {
            return;
        }
        let now = Instant::now();
        {
            let mut last = self
                .last_sent
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let key = (alert.kind, alert.subject.clone());
            if last
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < config.min_interval)
            {
                metrics::counter!("switchyard_alerts_suppressed_total", "kind" => alert.kind)
                    .increment(1);
                return;
            }
            last.insert(key, now);
        }
        if self.queue.try_send((alert, config)).is_err() {
            metrics::counter!("switchyard_alerts_dropped_total").increment(1);
        }
    }
}

impl Alerter {
    /// Puts `alert` first among the recent ones, merged with an earlier one of the same
    /// kind and subject.
    fn note(&self, alert: &Alert) {
        self.recent.update(|items| {
            let same = items
                .iter()
                .position(|r| r.alert.kind == alert.kind && r.alert.subject == alert.subject);
            let (first_at, count) = match same.and_then(|i| items.remove(i)) {
                Some(earlier) => (earlier.first_at, earlier.count + 1),
                None => (alert.at, 1),
            };
            items.push_front(RecentAlert {
                alert: alert.clone(),
                first_at,
                count,
            });
        });
    }
}

/// The queue of alerts to post, and the client to post them with.
pub struct Deliveries {
    rx: mpsc::Receiver<(Alert, AlertConfig)>,
    client: reqwest::Client,
}

impl Deliveries {
    /// Posts each queued alert until `shutdown` is cancelled (or every alerter is gone);
    /// an alert being retried when it is cancelled is given up.
    pub async fn run(self, shutdown: CancellationToken) {
        let Deliveries { mut rx, client } = self;
        let posting = async move {
            while let Some((alert, config)) = rx.recv().await {
                deliver(&client, alert, config).await;
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = posting => {}
        }
    }
}

/// Posts one alert, retrying with backoff (0.5 s, 1 s, 2 s, ...).
async fn deliver(client: &reqwest::Client, alert: Alert, config: AlertConfig) {
    let Some(url) = config.webhook_url else {
        return;
    };
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=config.attempts.max(1) {
        let sent = client
            .post(&url)
            .timeout(Duration::from_secs(5))
            .json(&alert)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                metrics::counter!("switchyard_alert_webhooks_total", "result" => "sent")
                    .increment(1);
                break;
            }
            outcome => {
                let why = match outcome {
                    Ok(resp) => resp.status().to_string(),
                    Err(e) => e.without_url().to_string(),
                };
                if attempt == config.attempts.max(1) {
                    metrics::counter!("switchyard_alert_webhooks_total", "result" => "failed")
                        .increment(1);
                    tracing::warn!(kind = alert.kind, subject = %alert.subject, error = %why,
                        "alert webhook failed; giving up on this alert");
                } else {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerter() -> Arc<Alerter> {
        crate::telemetry::install_crypto_provider();
        Alerter::new(AlertConfig::default(), reqwest::Client::new()).0
    }

    #[test]
    fn a_repeated_alert_is_listed_once_newest_first_with_its_count() {
        let a = alerter();
        a.raise(Alert::new("breaker_open", "p/m", "opened".to_owned()));
        a.raise(Alert::new("chain_exhausted", "m", "exhausted".to_owned()));
        a.raise(Alert::new("breaker_open", "p/m", "opened again".to_owned()));
        let recent = a.recent();
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].alert.message, "opened again");
        assert_eq!(recent[0].count, 2);
        assert!(recent[0].first_at <= recent[0].alert.at);
        assert_eq!(recent[1].alert.kind, "chain_exhausted");
        assert_eq!(recent[1].count, 1);
    }

    #[test]
    fn recent_alerts_are_bounded() {
        let a = alerter();
        for i in 0..recent::ALERTS_KEPT + 10 {
            a.raise(Alert::new("latency_p95", &format!("m{i}"), String::new()));
        }
        let recent = a.recent();
        assert_eq!(recent.len(), recent::ALERTS_KEPT);
        assert_eq!(
            recent[0].alert.subject,
            format!("m{}", recent::ALERTS_KEPT + 9)
        );
    }
}
