//! What each scenario must show, derived from the config in `main.rs`.

use std::time::Duration;

use tokio::time::Instant;

use crate::{
    CLIENT_LIMIT, CONCURRENCY, COOL_DOWN_MS, DEGRADED_STEP, FAILURES, LETTERS, MODEL,
    SLOW_START_MS, Scenario, WATCH_EVERY, ms,
    run::{End, Look, Ran, Sample, has_alert},
    table::Baseline,
};

/// Failed checks, and notes on how close the figures came to their limits.
#[derive(Default)]
pub(crate) struct Checks {
    failed: Vec<String>,
    notes: Vec<String>,
}

impl Checks {
    fn that(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failed.push(what());
        }
    }

    fn note(&mut self, note: String) {
        self.notes.push(note);
    }
}

/// Runs every check of `s` on what it produced; prints a line of notes; returns the
/// failed checks.
pub(crate) fn judge(s: &Scenario, r: &Ran, base: &Baseline, started: Instant) -> Vec<String> {
    let mut c = Checks::default();
    check_common(s, r, base, &mut c);
    (s.extra)(s, r, base, &mut c);
    println!(
        "{}: {} requests, {:.1} s, {} failed check(s); {}",
        s.name,
        r.samples.len(),
        started.elapsed().as_secs_f64(),
        c.failed.len(),
        c.notes.join("; ")
    );
    c.failed
        .into_iter()
        .map(|f| format!("{}: {f}", s.name))
        .collect()
}

/// What every scenario must show.
fn check_common(s: &Scenario, r: &Ran, base: &Baseline, c: &mut Checks) {
    let hung = r.count(|e| e == End::Hung);
    c.that(hung == 0, || {
        format!("{hung} request(s) hung past {CLIENT_LIMIT:?}")
    });
    // The third provider is healthy in every scenario: everything could be served, except
    // streams broken after commit where those are expected.
    let failed: Vec<End> = r
        .samples
        .iter()
        .map(|s| s.end)
        .filter(|e| !matches!(e, End::Served | End::Hung))
        .filter(|e| !(s.broken && *e == End::Broken))
        .collect();
    c.that(failed.is_empty(), || {
        format!(
            "{} request(s) not served: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        )
    });
    c.that(!r.samples.is_empty(), || "no requests were sent".to_owned());

    if s.failing_ahead > 0 {
        for kind in [false, true] {
            let limit = base.of(kind).max_duration() + s.bound(kind);
            let worst = r
                .samples
                .iter()
                .filter(|x| x.end == End::Served && x.stream == kind)
                .max_by_key(|x| x.latency);
            if let Some(w) = worst {
                c.note(format!(
                    "slowest {} {:.0} of {:.0} ms [{}]",
                    kind_name(kind),
                    w.latency.as_secs_f64() * 1000.0,
                    limit.as_secs_f64() * 1000.0,
                    w.attempts
                ));
                c.that(w.latency <= limit, || {
                    format!(
                        "a {} request took {:?} (sent at {:?}, attempts `{}`), over the \
                         slowest healthy one plus the bound: {limit:?}",
                        kind_name(kind),
                        w.latency,
                        w.at,
                        w.attempts
                    )
                });
            }
        }
    }

    for (i, (id, letter)) in r.ids.iter().zip(LETTERS).enumerate() {
        let opens = r.opens(i);
        let states: Vec<&str> = r
            .looks
            .iter()
            .map(|l| l.circuits[i].state.as_str())
            .collect();
        let alerts = r.alerts("breaker_open", id);
        if s.failing.contains(&i) {
            c.that(opens >= 1, || format!("the breaker of {id} never opened"));
            c.that(states.contains(&"open"), || {
                format!("/admin/health never showed {id} open: {states:?}")
            });
            c.that(alerts >= 1, || {
                format!("no breaker_open alert counted for {id}")
            });
            c.that(has_alert(&r.hooks, "breaker_open", id), || {
                format!("the webhook got no breaker_open alert for {id}")
            });
            if s.failure_budget {
                // Until its circuit opens, a failing deployment is charged at most
                // `failures` failures in a row plus those already in flight on it (one per
                // other client); once open it only sees the half-open probes, one per
                // cool-down, and each failed probe reopens it (counted in `opens`). Where
                // the failure comes after the first token (streams broken after commit),
                // the probe's first token closes the circuit into slow start, so each
                // reopening may again cost up to `failures` plus those in flight.
                let per_closing = FAILURES + CONCURRENCY as u64 - 1;
                let budget = if s.broken {
                    (per_closing * opens.max(1)) as usize
                } else {
                    (per_closing + opens.saturating_sub(1)) as usize
                };
                let charged = r.charged(i);
                c.note(format!("{letter} charged {charged} of {budget}"));
                c.that(charged <= budget, || {
                    format!(
                        "{id} was charged {charged} failures; with {FAILURES} to open, \
                         {CONCURRENCY} clients and {opens} opening(s) the breaker allows \
                         {budget}"
                    )
                });
            }
        } else {
            c.that(opens == 0, || format!("the breaker of healthy {id} opened"));
            c.that(states.iter().all(|s| *s == "closed"), || {
                format!("/admin/health showed healthy {id} not closed: {states:?}")
            });
            c.that(
                alerts == 0 && !has_alert(&r.hooks, "breaker_open", id),
                || format!("a breaker_open alert was raised for healthy {id}"),
            );
        }
    }
    // A healthy deployment is always left: the chain is never exhausted.
    let exhausted = r.alerts("chain_exhausted", MODEL);
    c.that(
        exhausted == 0 && !has_alert(&r.hooks, "chain_exhausted", MODEL),
        || format!("chain_exhausted raised ({exhausted} counted) though a deployment was healthy"),
    );
}

fn kind_name(stream: bool) -> &'static str {
    if stream { "stream" } else { "JSON" }
}

/// The baseline: no breaker, no alert of any kind, p95 alert configured but not crossed.
pub(crate) fn quiet(_: &Scenario, r: &Ran, _: &Baseline, c: &mut Checks) {
    c.that(r.hooks.is_empty(), || {
        format!("alerts raised: {:?}", r.hooks)
    });
    let p95 = r.alerts("latency_p95", MODEL);
    c.that(p95 == 0, || format!("latency_p95 raised {p95} time(s)"));
}

/// 429s with `retry-after: 2`: each throttled deployment is held for 2 s, longer than the
/// 1 s cool-down; `/admin/health` shows the longer hold, and the mock sees only the first
/// burst and what each expired hold lets through.
pub(crate) fn storm(s: &Scenario, r: &Ran, _: &Baseline, c: &mut Checks) {
    let retry_after = Duration::from_secs(2);
    for i in [0, 1] {
        let longest = r
            .looks
            .iter()
            .map(|l| l.circuits[i].open_for_ms)
            .max()
            .unwrap_or(0);
        c.that(longest > COOL_DOWN_MS, || {
            format!(
                "{} was never held past the {COOL_DOWN_MS} ms cool-down (longest wait seen \
                 {longest} ms): retry-after not honoured",
                r.ids[i]
            )
        });
        // Admission reopens at most once per retry-after; each time at most one request
        // per client can reach the deployment before the next 429 holds it again.
        let windows = 1 + (s.run.as_millis() / retry_after.as_millis()) as u64;
        let budget = CONCURRENCY as u64 * windows;
        let got = r.requests[i].unwrap_or(0);
        c.note(format!(
            "{} got {got} of {budget} requests, held up to {longest} ms",
            LETTERS[i]
        ));
        c.that(got <= budget, || {
            format!(
                "{} received {got} requests; retry-after {retry_after:?} over {:?} allows \
                 {budget}",
                r.ids[i], s.run
            )
        });
    }
}

/// Streams broken after commit: some were (the fault fired), each ended with an error
/// event (classified `Broken`, not `Incomplete`), all on the faulty deployment.
pub(crate) fn broken_streams(_: &Scenario, r: &Ran, _: &Baseline, c: &mut Checks) {
    let broken: Vec<&Sample> = r.samples.iter().filter(|s| s.end == End::Broken).collect();
    c.that(!broken.is_empty(), || {
        "no stream broke after commit: the fault was not exercised".to_owned()
    });
    c.that(broken.iter().all(|s| s.provider == r.names[0]), || {
        "a stream broke on a healthy provider".to_owned()
    });
}

/// The outcomes of the attempts tried on the first deployment (`a`), in every request.
fn tried_on_first(r: &Ran) -> Vec<&str> {
    let prefix = format!("{}=", r.ids[0]);
    r.samples
        .iter()
        .flat_map(|s| s.attempts.split(", "))
        .filter_map(|a| a.strip_prefix(&prefix))
        .filter(|o| *o != "circuit_open")
        .collect()
}

/// The stalled deployment's failed attempts are timeouts.
pub(crate) fn stall(_: &Scenario, r: &Ran, _: &Baseline, c: &mut Checks) {
    let outcomes = tried_on_first(r);
    c.that(
        !outcomes.is_empty() && outcomes.iter().all(|o| *o == "timeout"),
        || format!("attempts on the stalled deployment: {outcomes:?}"),
    );
}

/// The hedged stall: the stalled deployment's attempts are all outrun by their hedge
/// (`hedge_lost`), never left to time out, and some requests were hedged.
pub(crate) fn hedged_stall(_: &Scenario, r: &Ran, _: &Baseline, c: &mut Checks) {
    let outcomes = tried_on_first(r);
    c.note(format!("{} hedged", outcomes.len()));
    c.that(
        !outcomes.is_empty() && outcomes.iter().all(|o| *o == "hedge_lost"),
        || format!("attempts on the stalled deployment: {outcomes:?}"),
    );
}

/// Degrading latency: once past its timeout the deployment serves nothing (requests fail
/// over), and the model's p95 crossing `alert_p95_ms` raises `latency_p95`.
pub(crate) fn degrading(s: &Scenario, r: &Ran, _: &Baseline, c: &mut Checks) {
    // The step that took the latency past the timeout, as applied.
    let degraded = r.applied[DEGRADED_STEP];
    let late = r
        .samples
        .iter()
        .filter(|s| s.at > degraded && s.provider == r.names[0])
        .count();
    c.that(late == 0, || {
        format!(
            "{late} request(s) sent after the latency passed the timeout were still served \
             by {}",
            r.names[0]
        )
    });
    let earlier = r
        .samples
        .iter()
        .filter(|x| x.at < s.script[DEGRADED_STEP].0 && x.provider == r.names[0])
        .count();
    c.that(earlier > 0, || {
        "the degrading deployment served nothing while within its timeout".to_owned()
    });
    let p95 = r.alerts("latency_p95", MODEL);
    c.that(p95 >= 1, || "no latency_p95 alert counted".to_owned());
    c.that(has_alert(&r.hooks, "latency_p95", MODEL), || {
        "the webhook got no latency_p95 alert".to_owned()
    });
}

/// Recovering: while open the mock sees nothing; after the fault is cleared the probe
/// closes the circuit (half-open -> closed), and slow start gives the recovered
/// deployment a share of traffic that grows to all of it (it is first in order).
pub(crate) fn recovering(_: &Scenario, r: &Ran, _: &Baseline, c: &mut Checks) {
    let looks = &r.looks;
    let state = |l: &Look| l.circuits[0].state.clone();
    let cleared = r.applied[0];
    let first_open = looks.iter().position(|l| state(l) == "open");
    let closed = looks
        .iter()
        .position(|l| l.at > cleared && state(l) == "closed");
    let (Some(first_open), Some(closed)) = (first_open, closed) else {
        c.that(false, || {
            format!(
                "the circuit did not open, then close after the fault was cleared: {:?}",
                looks.iter().map(state).collect::<Vec<_>>()
            )
        });
        return;
    };
    // While open the mock gets nothing. From the second look reading open (requests
    // admitted before it opened have arrived by then) to the last one before it closed
    // (counters are read before the circuit, so the probe is not in it yet).
    let last_open = looks[..closed].iter().rposition(|l| state(l) == "open");
    if let Some(last_open) = last_open.filter(|&l| l > first_open) {
        let (from, to) = (&looks[first_open + 1], &looks[last_open]);
        c.that(from.requests[0] == to.requests[0], || {
            format!(
                "the mock got requests while its circuit was open: {:?} at {:?}, {:?} at {:?}",
                from.requests[0], from.at, to.requests[0], to.at
            )
        });
    }
    // Open -> closed goes through one successful half-open probe, due a cool-down after
    // the circuit opened: after the last look that read it closed before it opened. (The
    // probe takes a few ms, too short for a look to catch the half-open state; the ramp
    // below shows it succeeded: slow start begins at a probe's success and nowhere else.)
    let before_open = first_open
        .checked_sub(1)
        .map_or(Duration::ZERO, |i| looks[i].at);
    let closed = &looks[closed];
    c.that(
        closed.at + WATCH_EVERY >= before_open + ms(COOL_DOWN_MS),
        || {
            format!(
                "read closed at {:?}, before the {COOL_DOWN_MS} ms cool-down was over (it \
                 was still closed at {before_open:?})",
                closed.at
            )
        },
    );
    c.that(r.opens(0) == 1, || {
        format!(
            "the recovered deployment opened {} times: its first probe should have closed it",
            r.opens(0)
        )
    });
    // Slow start: the ramp starts near 10% and rises to all traffic.
    let ramps: Vec<f64> = looks
        .iter()
        .filter(|l| l.at >= closed.at)
        .map(|l| l.circuits[0].ramp)
        .collect();
    c.note(format!(
        "closed at {:.2} s, first ramp {:.2}",
        closed.at.as_secs_f64(),
        ramps[0]
    ));
    c.that(
        ramps[0] <= 0.3
            && ramps.windows(2).all(|w| w[0] <= w[1])
            && ramps.last().is_some_and(|r| *r > 0.999),
        || format!("the slow-start ramp did not rise from ~0.1 to 1: {ramps:?}"),
    );
    let share = |from: Duration, to: Duration| {
        let window: Vec<&Sample> = r
            .samples
            .iter()
            .filter(|s| s.at >= from && s.at < to && s.end == End::Served)
            .collect();
        let ours = window.iter().filter(|s| s.provider == r.names[0]).count();
        ours as f64 / window.len().max(1) as f64
    };
    // Over its first 300 ms the ramp averages about 0.1 + 0.9 * 0.15 (plus a look's lag).
    let early = share(closed.at, closed.at + ms(300));
    let full = share(closed.at + ms(SLOW_START_MS + 100), Duration::MAX);
    c.note(format!(
        "its share {early:.2} in slow start's first 300 ms, {full:.2} after"
    ));
    c.that(early > 0.0 && early < 0.6, || {
        format!("share of the recovered deployment in slow start's first 300 ms: {early:.2}")
    });
    c.that(full >= 0.95, || {
        format!("share of the recovered deployment after slow start: {full:.2}")
    });
    let grew = r.requests[0].unwrap_or(0) - closed.requests[0].unwrap_or(0);
    c.that(grew > 0, || {
        "the mock's request count did not grow again".to_owned()
    });
}
