//! The routing report behind `switchyard route --explain` and `/admin/route/explain`.

use serde_json::{Value, json};

use super::{Catalog, Needs};
use crate::{auth::Caller, chat::ChatRequest};

impl Catalog {
    /// The whole decision for `request` as a report: every candidate, what each filter
    /// removed and why, the policy's order and its time (for `route --explain` and
    /// `/admin/route/explain`). A request the filters refuse reports the error.
    pub fn explain(&self, request: &ChatRequest, caller: &Caller) -> serde_json::Value {
        let Ok(model) = self.model(&request.model) else {
            return json!({ "model": request.model, "error": format!("no model named `{}`", request.model) });
        };
        let needs = Needs::of(request);
        let candidates: Vec<_> = model
            .deployments
            .iter()
            .map(|d| {
                let s = d.health.snapshot(tokio::time::Instant::now());
                let p = d.price();
                json!({
                    "id": &*d.id, "provider": &*d.provider_name, "kind": d.kind,
                    "model": &*d.model, "price_in": p.input, "price_out": p.output,
                    "price_cached": p.cached_input, "quality": d.quality, "tags": d.tags,
                    "region": d.region, "weight": d.weight, "position": d.position,
                    "stats": { "ewma_ms": s.ewma_ms, "p95_ms": s.p95_ms, "ttft_ms": s.ttft_ms,
                               "error_rate": s.error_rate, "samples": s.samples,
                               "circuit": s.circuit.as_str() },
                })
            })
            .collect();
        let mut report = json!({
            "model": &*model.name,
            "policy": &*model.policy,
            "policy_source": model.script.as_ref().map_or("none (configured order)", |s| s.origin.as_str()),
            "order_source": model.order_source.as_deref().unwrap_or("config file"),
            "request": {
                "input_tokens": needs.tokens.saturating_sub(needs.output_tokens),
                "max_tokens": (needs.output_tokens > 0).then_some(needs.output_tokens),
                "stream": request.is_stream(),
                "capabilities": needs.names().collect::<Vec<_>>(),
                "tier": caller.level.as_str(),
                "key": caller.key.as_ref().map(|k| k.name.as_str()),
            },
            "candidates": candidates,
        });
        // Once to build this thread's VM, so the time reported is a routing decision's.
        let _ = self.route(request, &needs, caller);
        let decision = crate::auth::check_level(caller.key.as_deref(), caller.level)
            .and_then(|()| self.route(request, &needs, caller));
        match decision {
            Ok(route) => {
                let e = &route.explain;
                report["removed"] = json!(
                    e.removed
                        .iter()
                        .map(|r| json!({ "id": &*r.id, "reason": r.reason }))
                        .collect::<Vec<_>>()
                );
                report["order"] = json!(
                    route
                        .plan
                        .iter()
                        .map(|p| json!({
                            "id": &*p.deployment.id,
                            "timeout_ms": p.timeout.map(|t| t.as_millis() as u64),
                        }))
                        .collect::<Vec<_>>()
                );
                report["fallback"] = json!(e.fallback);
                report["ignored"] = json!(e.ignored);
                report["policy_us"] = json!(e.policy_time.as_secs_f64() * 1e6);
            }
            Err(error) => {
                report["error"] = json!(error.to_string());
                report["status"] = json!(error.spec().status.as_u16());
            }
        }
        report
    }
}

/// The report as text for a person: candidates, removals with reasons, the order.
pub fn explain_text(report: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let _ = writeln!(
        out,
        "model {}  policy {} ({})",
        s(&report["model"]),
        s(&report["policy"]),
        s(&report["policy_source"])
    );
    let _ = writeln!(out, "order from: {}", s(&report["order_source"]));
    let r = &report["request"];
    let _ = writeln!(
        out,
        "request: ~{} input tokens, tier {}, key {}, needs [{}]",
        r["input_tokens"],
        s(&r["tier"]),
        r["key"].as_str().unwrap_or("(anonymous)"),
        r["capabilities"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "candidates:");
    for c in report["candidates"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<40} ${}/${} per M, quality {}, tags [{}], circuit {}, p95 {} ms",
            s(&c["id"]),
            c["price_in"],
            c["price_out"],
            c["quality"],
            c["tags"]
                .as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            s(&c["stats"]["circuit"]),
            c["stats"]["p95_ms"]
        );
    }
    if let Some(error) = report.get("error") {
        let _ = writeln!(out, "refused ({}): {}", report["status"], s(error));
        return out;
    }
    let _ = writeln!(out, "removed by hard filters:");
    let removed = report["removed"].as_array().cloned().unwrap_or_default();
    if removed.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for r in &removed {
        let _ = writeln!(out, "  {:<40} {}", s(&r["id"]), s(&r["reason"]));
    }
    let _ = writeln!(out, "order:");
    for (i, o) in report["order"].as_array().into_iter().flatten().enumerate() {
        let timeout = o["timeout_ms"]
            .as_u64()
            .map(|t| format!("  (timeout {t} ms)"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {}. {}{timeout}", i + 1, s(&o["id"]));
    }
    if let Some(f) = report["fallback"].as_str() {
        let _ = writeln!(out, "policy failed ({f}): the configured order was used");
    }
    for id in report["ignored"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "policy named {} (not a candidate): ignored", s(id));
    }
    let _ = writeln!(
        out,
        "policy took {:.1} µs",
        report["policy_us"].as_f64().unwrap_or(0.0)
    );
    out
}
