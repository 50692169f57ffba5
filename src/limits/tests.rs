use std::{sync::Arc, time::Duration};

use super::{local::Local, *};
use crate::config::{Budget, Limits};

fn subject(id: &str, rpm: Option<u64>, tpm: Option<u64>, conc: Option<u64>) -> Subject {
    Subject {
        id: Arc::from(id),
        limits: Limits {
            rpm,
            tpm,
            max_concurrent: conc,
        },
    }
}

fn ask(subjects: Vec<Subject>, tokens: u64) -> Ask {
    Ask {
        subjects,
        budget: None,
        tokens,
        cost_micros: 0,
    }
}

const HOLD: u64 = 600_000;

fn day() -> Day {
    Day::of_unix(1_764_720_000)
}

#[tokio::test(start_paused = true)]
async fn rpm_is_a_sliding_window_not_a_fixed_one() {
    let local = Local::new();
    let a = ask(vec![subject("key:a", Some(3), None, None)], 10);
    for rid in 0..3 {
        local.reserve(&a, rid, HOLD, day()).unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
    }
    // t = 30 s: three in the last 60 s.
    let refused = local.reserve(&a, 9, HOLD, day()).unwrap_err();
    // The oldest (t = 0) leaves the window at t = 60 s: 30 s from now.
    assert_eq!(
        refused,
        Refusal::Requests {
            subject: 0,
            limit: 3,
            retry_ms: 30_000
        }
    );
    tokio::time::advance(Duration::from_millis(30_001)).await;
    local.reserve(&a, 10, HOLD, day()).unwrap();
    // Still only one place freed: the second (t = 10 s) leaves at 70 s.
    assert!(matches!(
        local.reserve(&a, 11, HOLD, day()),
        Err(Refusal::Requests { retry_ms, .. }) if retry_ms == 9_999
    ));
}

#[tokio::test(start_paused = true)]
async fn tpm_reserves_the_estimate_and_settles_to_the_real_usage() {
    let local = Local::new();
    let a = ask(vec![subject("key:a", None, Some(1000), None)], 400);
    local.reserve(&a, 1, HOLD, day()).unwrap();
    let granted = local.reserve(&a, 2, HOLD, day()).unwrap();
    assert_eq!(granted.tokens.unwrap().remaining, 200);
    // A third estimate of 400 does not fit in the 200 left.
    assert!(matches!(
        local.reserve(&a, 3, HOLD, day()),
        Err(Refusal::Tokens { remaining: 200, .. })
    ));
    // The first used only 50 tokens: 550 are free, and the third fits.
    let used = Settle {
        tokens: Some(50),
        cost_micros: 0,
    };
    local.settle(&a, 1, used, day());
    local.reserve(&a, 3, HOLD, day()).unwrap();
    // A request larger than the whole limit can never pass.
    let huge = ask(vec![subject("key:a", None, Some(1000), None)], 1001);
    assert!(matches!(
        local.reserve(&huge, 4, HOLD, day()),
        Err(Refusal::TokensNever { limit: 1000, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn concurrency_places_free_on_settle_or_expiry() {
    let local = Local::new();
    let a = ask(vec![subject("key:a", None, None, Some(2))], 1);
    local.reserve(&a, 1, HOLD, day()).unwrap();
    local.reserve(&a, 2, 1_000, day()).unwrap();
    assert!(matches!(
        local.reserve(&a, 3, HOLD, day()),
        Err(Refusal::Concurrent { limit: 2, .. })
    ));
    let released = Settle {
        tokens: None,
        cost_micros: 0,
    };
    local.settle(&a, 1, released, day());
    local.reserve(&a, 3, HOLD, day()).unwrap();
    // Rid 2's holder died: its place expires after its hold.
    assert!(local.reserve(&a, 4, HOLD, day()).is_err());
    tokio::time::advance(Duration::from_millis(1_001)).await;
    local.reserve(&a, 4, HOLD, day()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_budget_counts_holds_and_spend_and_resets_with_the_day() {
    let local = Local::new();
    let budget = Budget {
        usd_per_day: Some(1.0),
        usd_per_month: Some(1.5),
    };
    let a = Ask {
        subjects: vec![],
        budget: Some((Arc::from("a"), budget)),
        tokens: 0,
        cost_micros: 400_000,
    };
    local.reserve(&a, 1, HOLD, day()).unwrap();
    local.reserve(&a, 2, HOLD, day()).unwrap();
    // 0.8 held; another 0.4 would pass 1.0.
    assert_eq!(
        local.reserve(&a, 3, HOLD, day()).unwrap_err(),
        Refusal::BudgetDay { cap: 1_000_000 }
    );
    // The first cost 0.1 in the end; the second failed and spent nothing.
    let spent = Settle {
        tokens: Some(10),
        cost_micros: 100_000,
    };
    local.settle(&a, 1, spent, day());
    local.settle(
        &a,
        2,
        Settle {
            tokens: None,
            cost_micros: 0,
        },
        day(),
    );
    local.reserve(&a, 3, HOLD, day()).unwrap();
    local.settle(
        &a,
        3,
        Settle {
            tokens: Some(1),
            cost_micros: 850_000,
        },
        day(),
    );
    // 0.95 spent today: refused for the day.
    assert!(matches!(
        local.reserve(&a, 4, HOLD, day()),
        Err(Refusal::BudgetDay { .. })
    ));
    // The next day: the month's 1.5 still counts 0.95.
    let tomorrow = Day {
        day: day().day + 1,
        month: day().month,
    };
    local.reserve(&a, 5, HOLD, tomorrow).unwrap();
    assert_eq!(
        local.reserve(&a, 6, HOLD, tomorrow).unwrap_err(),
        Refusal::BudgetMonth { cap: 1_500_000 }
    );
}

#[test]
fn days_and_months_are_utc_calendar_ones() {
    // 2026-12-03T00:00:00Z.
    let d = Day::of_unix(1_796_256_000);
    assert_eq!(d.names(), ("20261203".to_owned(), "202612".to_owned()));
    assert_eq!(
        Day::of_unix(1_796_256_000 - 1).names().0,
        "20261202".to_owned()
    );
    // 2024-02-29 (leap day) and 2000-03-01.
    assert_eq!(Day::of_unix(1_709_164_800).names().0, "20240229");
    assert_eq!(Day::of_unix(951_868_800).names().0, "20000301");
    assert_ne!(
        Day::of_unix(1_796_256_000).month,
        Day::of_unix(1_793_491_200).month
    );
}

#[test]
fn reset_durations_read_like_openais() {
    assert_eq!(openai_duration(Duration::from_millis(20)), "20ms");
    assert_eq!(openai_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(openai_duration(Duration::from_millis(11_520)), "11.52s");
    assert_eq!(openai_duration(Duration::from_millis(1_005)), "1.005s");
    assert_eq!(openai_duration(Duration::from_secs(2)), "2s");
    assert_eq!(openai_duration(Duration::from_secs(360)), "6m0s");
}

#[tokio::test(start_paused = true)]
async fn a_settle_after_midnight_charges_its_own_day_and_keeps_the_new_ones_spend() {
    let local = Local::new();
    let budget = Budget {
        usd_per_day: Some(1.0),
        usd_per_month: None,
    };
    let a = Ask {
        subjects: vec![],
        budget: Some((Arc::from("a"), budget)),
        tokens: 0,
        cost_micros: 300_000,
    };
    let today = day();
    let tomorrow = Day {
        day: today.day + 1,
        month: today.month,
    };
    local.reserve(&a, 1, HOLD, today).unwrap();
    // After midnight, another call spends 0.6 of the new day.
    local.reserve(&a, 2, HOLD, tomorrow).unwrap();
    let spent = |micros| Settle {
        tokens: Some(1),
        cost_micros: micros,
    };
    local.settle(&a, 2, spent(600_000), tomorrow);
    // The first settles late, on yesterday: the new day keeps its 0.6, so one more
    // 0.3 estimate fits and a second does not.
    local.settle(&a, 1, spent(300_000), today);
    local.reserve(&a, 3, HOLD, tomorrow).unwrap();
    assert_eq!(
        local.reserve(&a, 4, HOLD, tomorrow).unwrap_err(),
        Refusal::BudgetDay { cap: 1_000_000 }
    );
}

#[test]
fn subject_ids_keep_colons_in_names_apart() {
    assert_eq!(escape("llama3:8b"), "llama3%3A8b");
    assert_eq!(unescape(&escape("a%3A:b")), "a%3A:b");
    assert_eq!(
        describe_subject(&format!("key-model:{}:{}", escape("a:b"), escape("c"))),
        "key `a:b` on model `c`"
    );
}
