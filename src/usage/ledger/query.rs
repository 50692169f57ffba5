//! What a reader asks of the ledger ([`Query`]), what it gets ([`Report`]), and the text
//! table `switchyard usage` prints.

use std::{collections::BTreeMap, sync::Arc};

use serde::Serialize;
use serde_json::{Value, json};

use super::{Slot, Sums, calendar};
use crate::usage::cost::{Cost, Tokens, usd};

/// A dimension to group the sums by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Key,
    Model,
    Deployment,
    Hour,
}

impl Group {
    /// Parses `key`, `model`, `deployment` or `hour`.
    pub fn parse(name: &str) -> Result<Group, String> {
        match name.trim() {
            "key" => Ok(Group::Key),
            "model" => Ok(Group::Model),
            "deployment" => Ok(Group::Deployment),
            "hour" => Ok(Group::Hour),
            other => Err(format!(
                "cannot group by `{other}`; expected key, model, deployment or hour"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Group::Key => "key",
            Group::Model => "model",
            Group::Deployment => "deployment",
            Group::Hour => "hour",
        }
    }

    /// The SQLite column (a fixed name, never caller text).
    pub(super) fn column(self) -> &'static str {
        self.name()
    }

    /// Parses a comma-separated list (duplicates refused).
    pub fn parse_list(text: &str) -> Result<Vec<Group>, String> {
        let mut groups = Vec::new();
        for name in text.split(',').filter(|s| !s.trim().is_empty()) {
            let g = Group::parse(name)?;
            if groups.contains(&g) {
                return Err(format!("`{}` is listed twice", g.name()));
            }
            groups.push(g);
        }
        Ok(groups)
    }
}

/// Sums of the hours that start in `from..to` (UNIX seconds; `from` counts the hour it
/// falls in), grouped by `group_by` (none: one row of totals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub from: i64,
    pub to: i64,
    pub group_by: Vec<Group>,
}

impl Query {
    /// The first hour bucket the query reads.
    pub fn first_hour(&self) -> i64 {
        calendar::hour_of(self.from)
    }

    /// Reads `from`, `to` and `group_by` from a query string's pairs: times as RFC 3339
    /// or UNIX seconds, `to` defaulting to `now`, `from` to 24 h before `to`. Errors
    /// name the parameter.
    pub fn from_params<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: i64,
    ) -> Result<Query, (String, &'static str)> {
        let (mut from, mut to, mut group_by) = (None, None, Vec::new());
        for (name, value) in pairs {
            match name {
                "from" => from = Some(calendar::parse_time(value).map_err(|e| (e, "from"))?),
                "to" => to = Some(calendar::parse_time(value).map_err(|e| (e, "to"))?),
                "group_by" => group_by = Group::parse_list(value).map_err(|e| (e, "group_by"))?,
                other => {
                    return Err((
                        format!("unknown parameter `{other}`; expected from, to, group_by"),
                        "query",
                    ));
                }
            }
        }
        let to = to.unwrap_or(now);
        let from = from.unwrap_or(to - 86_400);
        if from >= to {
            return Err(("`from` must be before `to`".to_owned(), "from"));
        }
        Ok(Query { from, to, group_by })
    }

    /// Whether a stored hour is in range.
    pub fn holds(&self, hour: i64) -> bool {
        hour >= self.first_hour() && hour < self.to
    }
}

/// One group's sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The group's values, in the query's `group_by` order (hours as RFC 3339).
    pub group: Vec<String>,
    pub sums: Sums,
}

/// The answer to a [`Query`]: rows in group order, and their totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub query: Query,
    pub rows: Vec<Row>,
    pub totals: Sums,
}

impl Report {
    /// Groups stored slots (for stores that cannot group themselves).
    pub(super) fn from_slots(
        query: Query,
        slots: impl IntoIterator<Item = (Slot, Sums)>,
    ) -> Report {
        let mut groups: BTreeMap<Vec<String>, Sums> = BTreeMap::new();
        let mut totals = Sums::default();
        for (slot, sums) in slots {
            if !query.holds(slot.hour) {
                continue;
            }
            let group = query
                .group_by
                .iter()
                .map(|g| group_value(*g, &slot))
                .collect();
            *groups.entry(group).or_default() += sums;
            totals += sums;
        }
        let rows = groups
            .into_iter()
            .map(|(group, sums)| Row { group, sums })
            .collect();
        Report {
            query,
            rows,
            totals,
        }
    }

    /// The JSON `GET /admin/usage` answers.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut v = sums_json(&r.sums);
                if let Value::Object(map) = &mut v {
                    for (g, value) in self.query.group_by.iter().zip(&r.group) {
                        map.insert(g.name().to_owned(), json!(value));
                    }
                }
                v
            })
            .collect();
        json!({
            "object": "usage.report",
            "from": calendar::rfc3339(self.query.from),
            "to": calendar::rfc3339(self.query.to),
            "group_by": self.query.group_by.iter().map(|g| g.name()).collect::<Vec<_>>(),
            "rows": rows,
            "totals": sums_json(&self.totals),
        })
    }
}

fn group_value(g: Group, slot: &Slot) -> String {
    let s = |a: &Arc<str>| a.to_string();
    match g {
        Group::Key => s(&slot.key),
        Group::Model => s(&slot.model),
        Group::Deployment => s(&slot.deployment),
        Group::Hour => calendar::rfc3339(slot.hour),
    }
}

#[derive(Serialize)]
struct CostUsd {
    input: f64,
    cached_input: f64,
    cache_write: f64,
    output: f64,
    total: f64,
}

fn sums_json(s: &Sums) -> Value {
    let c = &s.cost;
    json!({
        "requests": s.requests,
        "errors": s.errors,
        "unpriced": s.unpriced,
        "tokens": s.tokens,
        "cost_usd": CostUsd {
            input: usd(c.input),
            cached_input: usd(c.cached_input),
            cache_write: usd(c.cache_write),
            output: usd(c.output),
            total: usd(c.total),
        },
        "cost_nano_usd": c,
    })
}

/// The report as an aligned text table: the group columns, then requests, errors, each
/// token component and the cost in USD, and a total line.
pub fn render_table(report: &Report) -> String {
    let mut header: Vec<String> = report
        .query
        .group_by
        .iter()
        .map(|g| g.name().to_uppercase())
        .collect();
    let numeric = [
        "REQUESTS",
        "ERRORS",
        "INPUT",
        "CACHED",
        "CACHE_WRITE",
        "OUTPUT",
        "REASONING",
        "COST_USD",
    ];
    header.extend(numeric.iter().map(|s| (*s).to_owned()));
    let groups = report.query.group_by.len();
    let figures = |s: &Sums| -> Vec<String> {
        let t: &Tokens = &s.tokens;
        let c: &Cost = &s.cost;
        vec![
            s.requests.to_string(),
            s.errors.to_string(),
            t.input.to_string(),
            t.cached_input.to_string(),
            t.cache_write.to_string(),
            t.output.to_string(),
            t.reasoning.to_string(),
            format!("{:.6}", usd(c.total)),
        ]
    };
    let mut lines: Vec<Vec<String>> = vec![header];
    for row in &report.rows {
        let mut line: Vec<String> = row
            .group
            .iter()
            .map(|g| {
                if g.is_empty() {
                    "-".to_owned()
                } else {
                    g.clone()
                }
            })
            .collect();
        line.extend(figures(&row.sums));
        lines.push(line);
    }
    let mut total: Vec<String> = (0..groups)
        .map(|i| {
            if i == 0 {
                "TOTAL".to_owned()
            } else {
                String::new()
            }
        })
        .collect();
    total.extend(figures(&report.totals));
    lines.push(total);
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i < groups {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
