use std::sync::Arc;

use super::*;
use crate::{
    telemetry::{Ended, Outcome},
    usage::cost::{Cost, Tokens},
};

fn slot(hour: i64, key: &str, model: &str, deployment: &str) -> Slot {
    Slot {
        hour,
        key: Arc::from(key),
        model: Arc::from(model),
        deployment: Arc::from(deployment),
    }
}

fn sums(requests: u64, input: u64, nanos: u64) -> Sums {
    Sums {
        requests,
        errors: 0,
        unpriced: 0,
        tokens: Tokens {
            input,
            output: 1,
            ..Tokens::default()
        },
        cost: Cost {
            input: nanos,
            total: nanos,
            ..Cost::default()
        },
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-ledger-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const H: i64 = 1_748_779_200; // 2025-06-01T12:00:00Z

#[test]
fn ledger_sqlite_upserts_add_up_and_group_by_any_dimension() {
    let dir = temp_dir("upsert");
    let db = sqlite::SqliteLedger::open(&dir.join("nested")).unwrap();
    db.add(&[
        (slot(H, "a", "m1", "p/x"), sums(1, 10, 100)),
        (slot(H, "b", "m1", "p/x"), sums(2, 20, 200)),
    ])
    .unwrap();
    db.add(&[
        (slot(H, "a", "m1", "p/x"), sums(3, 30, 300)),
        (slot(H + 3600, "a", "m2", "q/y"), sums(1, 5, 50)),
    ])
    .unwrap();
    let q = |group_by: Vec<Group>| Query {
        from: H,
        to: H + 7200,
        group_by,
    };
    let by_key = db.report(&q(vec![Group::Key])).unwrap();
    let rows: Vec<(Vec<String>, u64, u64, u64)> = by_key
        .rows
        .iter()
        .map(|r| {
            (
                r.group.clone(),
                r.sums.requests,
                r.sums.tokens.input,
                r.sums.cost.total,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (vec!["a".to_owned()], 5, 45, 450),
            (vec!["b".to_owned()], 2, 20, 200)
        ]
    );
    assert_eq!(by_key.totals.requests, 7);
    assert_eq!(by_key.totals.cost.total, 650);
    // The second hour alone; `from` inside an hour counts that hour.
    let later = db
        .report(&Query {
            from: H + 3600 + 59,
            to: H + 7200,
            group_by: vec![Group::Hour, Group::Deployment],
        })
        .unwrap();
    assert_eq!(later.rows.len(), 1);
    assert_eq!(
        later.rows[0].group,
        vec!["2025-06-01T13:00:00Z".to_owned(), "q/y".to_owned()]
    );
    // No grouping: one row, the totals; an empty range: no rows.
    assert_eq!(db.report(&q(vec![])).unwrap().rows.len(), 1);
    let empty = db
        .report(&Query {
            from: H - 7200,
            to: H,
            group_by: vec![],
        })
        .unwrap();
    assert!(empty.rows.is_empty());
    assert_eq!(empty.totals, Sums::default());
    // Redis groups in memory: the same answer from the same slots.
    let slots = vec![
        (slot(H, "a", "m1", "p/x"), sums(1, 10, 100)),
        (slot(H, "b", "m1", "p/x"), sums(2, 20, 200)),
        (slot(H, "a", "m1", "p/x"), sums(3, 30, 300)),
        (slot(H + 3600, "a", "m2", "q/y"), sums(1, 5, 50)),
    ];
    let grouped = Report::from_slots(q(vec![Group::Key]), slots);
    assert_eq!(grouped.totals, by_key.totals);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ledger_read_only_open_never_creates_a_file() {
    let dir = temp_dir("absent");
    let err = sqlite::SqliteLedger::open_read_only(&dir).err().unwrap();
    assert!(err.contains("no usage ledger"), "{err}");
    assert!(!dir.exists());
}

#[test]
fn ledger_entry_counts_errors_and_unpriced_calls() {
    let model: Arc<str> = Arc::from("m");
    let dep: Arc<str> = Arc::from("p/x");
    let ended = |outcome, deployment, cost| Ended {
        request_id: "r",
        key: None,
        model: &model,
        provider: None,
        deployment,
        stream: false,
        delivered: false,
        cache: None,
        outcome,
        usage: None,
        price: None,
        cost_usd: None,
        tokens: None,
        cost,
    };
    let e = Entry::of(&ended(Outcome::Ok, Some(&dep), None), H + 61);
    assert_eq!(e.slot, slot(H, "", "m", "p/x"));
    assert_eq!((e.sums.requests, e.sums.errors, e.sums.unpriced), (1, 0, 1));
    let e = Entry::of(&ended(Outcome::Error(502), None, None), H);
    assert_eq!((e.sums.errors, e.sums.unpriced), (1, 0));
    assert_eq!(&*e.slot.deployment, "");
}

#[test]
fn ledger_query_params_are_checked() {
    let now = H + 100;
    let q = Query::from_params([], now).unwrap();
    assert_eq!((q.from, q.to), (now - 86_400, now));
    let q = Query::from_params(
        [
            ("from", "2025-06-01T00:00:00Z"),
            ("to", "1748779200"),
            ("group_by", "key,model"),
        ],
        now,
    )
    .unwrap();
    assert_eq!(q.group_by, vec![Group::Key, Group::Model]);
    assert_eq!(q.to, H);
    for (pairs, param) in [
        (vec![("from", "yesterday")], "from"),
        (vec![("to", "2025-13-01T00:00:00Z")], "to"),
        (vec![("group_by", "colour")], "group_by"),
        (vec![("group_by", "key,key")], "group_by"),
        (vec![("from", "200"), ("to", "100")], "from"),
        (vec![("limit", "5")], "query"),
    ] {
        let err = Query::from_params(pairs.clone(), now).err().unwrap();
        assert_eq!(err.1, param, "{pairs:?}: {}", err.0);
    }
}

#[tokio::test]
async fn ledger_writer_flushes_what_is_queued_when_the_background_stops() {
    let dir = temp_dir("stop");
    let db = Arc::new(sqlite::SqliteLedger::open(&dir).unwrap());
    let background = crate::background::Background::new();
    let ledger = Ledger::start(Store::Sqlite(db.clone()), &background);
    let model: Arc<str> = Arc::from("m");
    let hook = ledger.hook();
    hook(&Ended {
        request_id: "r",
        key: None,
        model: &model,
        provider: None,
        deployment: None,
        stream: false,
        delivered: false,
        cache: None,
        outcome: Outcome::Cancelled,
        usage: None,
        price: None,
        cost_usd: None,
        tokens: None,
        cost: None,
    });
    assert!(background.stop(std::time::Duration::from_secs(5)).await);
    let now = calendar::now();
    let report = db
        .report(&Query {
            from: now - 7200,
            to: now + 3600,
            group_by: vec![],
        })
        .unwrap();
    assert_eq!((report.totals.requests, report.totals.errors), (1, 1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ledger_table_is_aligned_with_a_total_line() {
    let report = Report::from_slots(
        Query {
            from: H,
            to: H + 3600,
            group_by: vec![Group::Key],
        },
        vec![
            (slot(H, "team-a", "m", "p/x"), sums(2, 1500, 1_500_000)),
            (slot(H, "", "m", "p/x"), sums(1, 7, 7_000)),
        ],
    );
    let table = render_table(&report);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("KEY     REQUESTS"), "{table}");
    assert!(lines[1].starts_with("-  "), "{table}");
    assert!(
        lines[3].starts_with("TOTAL") && lines[3].ends_with("0.001507"),
        "{table}"
    );
    let width = lines[0].len();
    assert!(lines.iter().all(|l| l.len() == width), "{table}");
}

#[tokio::test]
async fn ledger_writer_cuts_batches_of_at_most_max_batch_slots() {
    let dir = temp_dir("cut");
    let db = Arc::new(sqlite::SqliteLedger::open(&dir).unwrap());
    let mut w = writer::Writer::new(Store::Sqlite(db.clone()));
    let n = 2 * MAX_BATCH + 5;
    for i in 0..n {
        w.sum(Entry {
            slot: slot(H, &format!("k{i}"), "m", "p/x"),
            sums: sums(1, 1, 1),
        });
    }
    w.write().await.unwrap();
    assert!(w.summing.is_empty() && w.unsent.is_none());
    let report = db
        .report(&Query {
            from: H,
            to: H + 3600,
            group_by: vec![Group::Key],
        })
        .unwrap();
    assert_eq!((report.rows.len(), report.totals.requests), (n, n as u64));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn ledger_writer_retries_a_failed_batch_as_it_was_under_its_id() {
    // A Redis nobody listens on: every write fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = crate::state::State::new(&crate::config::StateConfig {
        redis_url: Some(crate::config::Secret::new(format!(
            "redis://127.0.0.1:{port}"
        ))),
        ..crate::config::StateConfig::default()
    })
    .unwrap();
    let mut w = writer::Writer::new(Store::Redis(Arc::new(state)));
    w.sum(Entry {
        slot: slot(H, "a", "m", "p/x"),
        sums: sums(1, 10, 100),
    });
    assert!(w.write().await.is_err());
    let first = w.unsent.clone().unwrap();
    assert_eq!(first.slots.len(), 1);
    // Later entries are summed apart, never into the batch that may have been applied.
    for key in ["a", "b"] {
        w.sum(Entry {
            slot: slot(H, key, "m", "p/x"),
            sums: sums(1, 10, 100),
        });
    }
    assert!(w.write().await.is_err());
    let again = w.unsent.clone().unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.slots, first.slots);
    assert_eq!(w.summing.len(), 2);
    // A full sum waits for the ticker while the store fails.
    for i in 0..MAX_BATCH {
        w.sum(Entry {
            slot: slot(H, &format!("k{i}"), "m", "p/x"),
            sums: sums(1, 1, 1),
        });
    }
    assert!(!w.is_full());
    w.unsent = None;
    assert!(w.is_full());
}
