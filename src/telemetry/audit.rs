//! What the data controls did to one request, for its request-log line and the metrics:
//! redactions by detector, content-rule decisions, the guard's verdict. Never a value.

use std::sync::Arc;

use serde::{Serialize, ser::SerializeMap};

use crate::{content_rules::Hit, redaction::Detector};

/// The data-control part of a request record (present only when a control ran).
#[derive(Debug, Default, Serialize)]
pub struct DataAudit {
    /// `{"email": 2, "card": 1}`.
    #[serde(skip_serializing_if = "Redactions::is_empty")]
    pub redactions: Redactions,
    /// `[{"rule": "...", "action": "flag", "on": "response"}]`.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "rules")]
    pub content_rules: Vec<Hit>,
    /// `{"name": "...", "decision": "allow" | "deny"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardDecision>,
}

/// Findings per detector.
#[derive(Debug, Default)]
pub struct Redactions(pub Vec<(Detector, u32)>);

impl Redactions {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Redactions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (d, n) in &self.0 {
            m.serialize_entry(d.as_str(), n)?;
        }
        m.end()
    }
}

/// The guard that ran and what it decided.
#[derive(Debug, Clone, Serialize)]
pub struct GuardDecision {
    #[serde(serialize_with = "arc_str")]
    pub name: Arc<str>,
    pub decision: &'static str,
}

fn rules<S: serde::Serializer>(hits: &[Hit], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct One<'a> {
        rule: &'a str,
        action: &'static str,
        on: &'static str,
    }
    s.collect_seq(hits.iter().map(|h| One {
        rule: &h.rule,
        action: h.action.as_str(),
        on: h.side.as_str(),
    }))
}

impl DataAudit {
    /// Counts findings in the metrics and keeps them for the log line.
    pub fn redacted(&mut self, counts: impl Iterator<Item = (Detector, u32)>) {
        for (d, n) in counts {
            metrics::counter!("switchyard_redactions_total", "detector" => d.as_str())
                .increment(u64::from(n));
            self.redactions.0.push((d, n));
        }
    }

    /// Counts rule hits in the metrics (rule names come from config: bounded) and keeps
    /// the new ones for the log line.
    pub fn ruled(&mut self, hits: &[Hit]) {
        for h in hits {
            if self.content_rules.contains(h) {
                continue;
            }
            metrics::counter!(
                "switchyard_content_rule_hits_total",
                "rule" => h.rule.to_string(),
                "action" => h.action.as_str(),
                "on" => h.side.as_str()
            )
            .increment(1);
            self.content_rules.push(h.clone());
        }
    }
}

fn arc_str<S: serde::Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}
