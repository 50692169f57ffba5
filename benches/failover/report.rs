//! The report: latency and added latency per case, the attempts seen, circuit checks,
//! problems and the verdict on the targets.

use crate::{
    OPEN_TOLERANCE_MS, REFUSED_ADDED_P99_LIMIT_MS, Settings,
    cases::{Case, CaseAcc, pct},
    procfs::clock_ticks,
};

/// Cores' worth of CPU used by other processes above which a case's figures are flagged.
const OTHER_LOAD_LIMIT: f64 = 0.05;

/// Percentiles of one case over all rounds.
#[derive(Clone, Copy)]
struct Figures {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn figures(acc: &mut CaseAcc) -> Figures {
    let lat = &mut acc.latencies_us;
    lat.sort_unstable();
    Figures {
        n: lat.len(),
        p50: pct(lat, 0.50) / 1000.0,
        p99: pct(lat, 0.99) / 1000.0,
        max: lat.last().map_or(f64::NAN, |&v| f64::from(v) / 1000.0),
    }
}

/// Whether every measured answer of a case was a well-formed 200 with the expected
/// attempts.
fn clean(case: &Case, acc: &CaseAcc) -> bool {
    acc.tally.problems() == 0 && acc.patterns.keys().all(|p| case.expect.matches(p))
}

pub(crate) fn print(cases: &[Case], accs: &mut [CaseAcc], s: &Settings, not_closed: &[String]) {
    let figs: Vec<Figures> = accs.iter_mut().map(figures).collect();
    let added = |i: usize| {
        cases[i]
            .baseline
            .map(|b| (figs[i].p50 - figs[b].p50, figs[i].p99 - figs[b].p99))
    };
    println!(
        "| case | gateway | answers measured | p50 ms @{0} rps | p99 ms @{0} rps | max ms | \
         added p50 ms | added p99 ms | added p99 ms by round | non-200 / errors |",
        s.rate
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, (case, acc)) in cases.iter().zip(accs.iter()).enumerate() {
        let f = figs[i];
        let (a50, a99, by_round) = match (added(i), case.baseline) {
            (Some((a50, a99)), Some(b)) => (
                format!("{a50:+.3}"),
                format!("{a99:+.3}"),
                acc.round_p99_ms
                    .iter()
                    .zip(&accs[b].round_p99_ms)
                    .map(|(x, y)| format!("{:+.2}", x - y))
                    .collect::<Vec<_>>()
                    .join(" / "),
            ),
            _ => (
                "—".to_owned(),
                "—".to_owned(),
                format!(
                    "(p99 {})",
                    acc.round_p99_ms
                        .iter()
                        .map(|x| format!("{x:.2}"))
                        .collect::<Vec<_>>()
                        .join(" / ")
                ),
            ),
        };
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.2} | {a50} | {a99} | {by_round} | {} |",
            case.name,
            case.gateway,
            f.n,
            f.p50,
            f.p99,
            f.max,
            acc.tally.problems()
        );
    }
    println!();
    println!(
        "added = the case's percentile minus that of `healthy` on the same gateway, over all \
         rounds; answers measured = 200s in the measured slices ({} expected per case). \
         Absolute figures include up to 1 ms of the generator's own timer granularity (a \
         request goes out on the next tick of tokio's 1 ms timer after its due time), alike in \
         every case.",
        (s.secs * s.rate)
    );
    println!();
    println!("attempts (x-switchyard-attempts of every measured answer, as provider=outcome):");
    println!();
    println!("| case | expected | as expected | seen |");
    println!("|---|---|---:|---|");
    for (case, acc) in cases.iter().zip(accs.iter()) {
        let total: u64 = acc.patterns.values().sum();
        let good: u64 = acc
            .patterns
            .iter()
            .filter(|(p, _)| case.expect.matches(p))
            .map(|(_, n)| n)
            .sum();
        let seen: Vec<String> = acc
            .patterns
            .iter()
            .map(|(p, n)| {
                let mark = if case.expect.matches(p) {
                    ""
                } else {
                    " UNEXPECTED"
                };
                format!("{n}× `{p}`{mark}")
            })
            .collect();
        println!(
            "| {} | `{}` | {good} of {total} | {} |",
            case.name,
            case.expect.describe(),
            seen.join("; ")
        );
    }
    println!();
    print_circuits(cases, accs, not_closed);
    print_warnings(cases, accs);
    print_targets(cases, accs, &figs);
}

fn print_circuits(cases: &[Case], accs: &[CaseAcc], not_closed: &[String]) {
    println!("circuits:");
    if not_closed.is_empty() {
        println!(
            "- breaker-off: the first deployments' circuits read closed on /admin/health after \
             every round"
        );
    } else {
        println!(
            "- breaker-off: NOT closed after some round: {} (its figures are not those of a \
             closed breaker)",
            not_closed.join(", ")
        );
    }
    for (case, acc) in cases.iter().zip(accs) {
        let (Some(id), a) = (case.opens, acc.arming) else {
            continue;
        };
        println!(
            "- {}: {id} checked open on /admin/health before each of its {} slices (warm-up \
             round included); found open {} times, opened with {} sequential requests, {:.1} s \
             spent waiting for a cool-down about to end",
            case.name,
            a.checks,
            a.found_open,
            a.requests,
            a.waited.as_secs_f64()
        );
    }
    println!();
}

fn print_warnings(cases: &[Case], accs: &[CaseAcc]) {
    let clk_tck = clock_ticks();
    for (case, acc) in cases.iter().zip(accs) {
        let other = acc.other_load(clk_tck);
        if other > OTHER_LOAD_LIMIT {
            println!(
                "WARNING {} ({}): the machine was not quiet during its slices ({:.0}% of a core \
                 used by other processes or stolen): its figures are unreliable; rerun.",
                case.name,
                case.gateway,
                other * 100.0
            );
        }
    }
    let mut problems = false;
    for (case, acc) in cases.iter().zip(accs) {
        let t = &acc.tally;
        if t.problems() == 0 {
            continue;
        }
        problems = true;
        let statuses: Vec<String> = t
            .statuses
            .iter()
            .map(|(s, n)| format!("{n}× HTTP {s}"))
            .collect();
        println!(
            "PROBLEMS {} ({}): {} of {} requests failed or were malformed ({}; {} I/O errors, \
             {} timeouts, {} malformed bodies); first: {}",
            case.name,
            case.gateway,
            t.problems(),
            acc.sent,
            if statuses.is_empty() {
                "no non-200 statuses".to_owned()
            } else {
                statuses.join(", ")
            },
            t.io_errors,
            t.timeouts,
            t.bad_bodies,
            t.first_problem.as_deref().unwrap_or("?")
        );
    }
    if !problems {
        println!(
            "all answers were 200 with well-formed bodies ({} requests, warm-ups and circuit \
             opening included).",
            accs.iter().map(|a| a.sent).sum::<u64>()
        );
    }
    println!();
}

fn print_targets(cases: &[Case], accs: &[CaseAcc], figs: &[Figures]) {
    println!("targets (issue 5):");
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    // A case or its baseline measured while other processes used the machine.
    let clk_tck = clock_ticks();
    let noisy = |i: usize| {
        let loud = |j: usize| accs[j].other_load(clk_tck) > OTHER_LOAD_LIMIT;
        if loud(i) || cases[i].baseline.is_some_and(loud) {
            " (the machine was not quiet meanwhile: unreliable, rerun)"
        } else {
            ""
        }
    };
    let find = |name: &str| cases.iter().position(|c| c.name == name);
    let added = |i: usize| {
        cases[i]
            .baseline
            .map(|b| (figs[i].p50 - figs[b].p50, figs[i].p99 - figs[b].p99))
    };
    if let Some(i) = find("refused, breaker closed")
        && let Some((_, a99)) = added(i)
    {
        let ok = a99 < REFUSED_ADDED_P99_LIMIT_MS;
        println!(
            "- refused connection, breaker closed: added p99 < {REFUSED_ADDED_P99_LIMIT_MS} ms: \
             {a99:.3} ms → {}{}{}",
            verdict(ok),
            if ok {
                String::new()
            } else {
                format!(" by {:.3} ms", a99 - REFUSED_ADDED_P99_LIMIT_MS)
            },
            noisy(i)
        );
    }
    for name in ["refused, breaker open", "503, breaker open"] {
        if let Some(i) = find(name)
            && let Some((a50, a99)) = added(i)
        {
            let ok = a50 <= OPEN_TOLERANCE_MS && a99 <= OPEN_TOLERANCE_MS;
            println!(
                "- {name}: no added latency (added p50 and p99 ≤ {OPEN_TOLERANCE_MS} ms, the \
                 noise of a p99 here): {a50:+.3} / {a99:+.3} ms → {}{}",
                verdict(ok),
                noisy(i)
            );
        }
    }
    if let Some(i) = find("503, breaker closed")
        && let Some((a50, a99)) = added(i)
    {
        println!(
            "- (no target) 503, breaker closed: added {a50:+.3} ms p50, {a99:+.3} ms p99; the \
             default first backoff alone waits 12.5–25 ms (uniform)"
        );
    }
    for (case, acc) in cases.iter().zip(accs) {
        if !clean(case, acc) {
            println!(
                "- {} ({}): some answers were not 200 or did not show the expected attempts: \
                 its figures are not valid",
                case.name, case.gateway
            );
        }
    }
}
