//! Latency figures over the healthy baseline, and the markdown table.

use std::{fmt::Write as _, time::Duration};

use crate::{
    LETTERS, Scenario,
    run::{End, Ran},
};

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Figures {
    pub(crate) p50: f64,
    pub(crate) max: f64,
}

impl Figures {
    pub(crate) fn max_duration(&self) -> Duration {
        Duration::from_secs_f64(self.max / 1000.0)
    }
}

/// Latency of served requests with three healthy providers, per kind, in ms.
pub(crate) struct Baseline {
    pub(crate) json: Figures,
    pub(crate) stream: Figures,
}

impl Baseline {
    pub(crate) fn measure(r: &Ran) -> Baseline {
        let figures = |stream: bool| {
            let mut ms: Vec<f64> = served_ms(r, stream, 0.0);
            ms.sort_by(f64::total_cmp);
            Figures {
                p50: quantile(&ms, 0.5),
                max: ms.last().copied().unwrap_or(0.0),
            }
        };
        Baseline {
            json: figures(false),
            stream: figures(true),
        }
    }

    pub(crate) fn of(&self, stream: bool) -> Figures {
        if stream { self.stream } else { self.json }
    }
}

/// Served requests' latency in ms, less `minus`.
fn served_ms(r: &Ran, stream: bool, minus: f64) -> Vec<f64> {
    r.samples
        .iter()
        .filter(|s| s.end == End::Served && s.stream == stream)
        .map(|s| s.latency.as_secs_f64() * 1000.0 - minus)
        .collect()
}

/// Nearest-rank quantile of sorted values; 0 for none.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Default)]
pub(crate) struct Table(pub(crate) String);

impl Table {
    pub(crate) fn row(&mut self, s: &Scenario, r: &Ran, base: &Baseline) {
        if self.0.is_empty() {
            self.0.push_str(
                "| scenario | requests | served | broken after commit | other failures | \
                 hung | success | added p50 | added p99 | added max | bound (JSON / stream) \
                 | breaker opened |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
            );
        }
        let n = r.samples.len();
        let served = r.count(|e| e == End::Served);
        let broken = r.count(|e| e == End::Broken);
        let hung = r.count(|e| e == End::Hung);
        let other = n - served - broken - hung;
        // Added latency: each served request over the baseline's median of its kind.
        let mut added: Vec<f64> = served_ms(r, false, base.json.p50)
            .into_iter()
            .chain(served_ms(r, true, base.stream.p50))
            .collect();
        added.sort_by(f64::total_cmp);
        let bound = if s.failing_ahead > 0 {
            let (j, st) = (s.bound(false), s.bound(true));
            format!("{} / {} ms", j.as_millis(), st.as_millis())
        } else {
            "–".to_owned()
        };
        let opened: Vec<String> = (0..3)
            .filter_map(|i| {
                let opens = r.opens(i);
                (opens > 0).then(|| format!("{} ×{opens}", LETTERS[i]))
            })
            .collect();
        let _ = writeln!(
            self.0,
            "| {} | {n} | {served} | {broken} | {other} | {hung} | {:.1}% | {:.1} ms | \
             {:.1} ms | {:.1} ms | {bound} | {} |",
            s.name,
            100.0 * served as f64 / n.max(1) as f64,
            quantile(&added, 0.5).max(0.0),
            quantile(&added, 0.99).max(0.0),
            added.last().copied().unwrap_or(0.0).max(0.0),
            if opened.is_empty() {
                "none".to_owned()
            } else {
                opened.join(", ")
            },
        );
    }
}
