//! Data-control micro-benchmarks on a 4 KB prompt: redaction with every detector (prose
//! with no PII, and prose with a dozen findings), the same with one detector, the
//! content-rule check, and restoring a streamed answer chunk by chunk.
//! `cargo bench --bench redaction`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::{collections::HashMap, hint::black_box, sync::Arc};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchyard::{
    content_rules::{Action, ContentRules, On, RuleSpec},
    redaction::{
        Detector, Mode, Policy, Session,
        restore::{Originals, Restorer, Target},
    },
};

const PROSE: &str = "The quarterly review covers onboarding, the migration of the billing \
    service to the new cluster, and open questions about retention. Customers asked for \
    clearer invoices and a faster export; the team shipped both in version 2.4.1 on time. ";

const PII: &str = "Reach Jane at jane.doe@example.com or +1 415 555 2671, card 4111 1111 1111 \
    1111, IBAN DE89370400440532013000, SSN 536-22-1234, host 203.0.113.77, key \
    sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123. ";

/// About 4 KB: prose, and with `pii` a few PII sentences spread through it.
fn prompt(pii: bool) -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 4096 {
        if pii && i % 5 == 2 {
            text.push_str(PII);
        } else {
            text.push_str(PROSE);
        }
        i += 1;
    }
    text.truncate(4096);
    text
}

fn policy(detectors: &[Detector]) -> Policy {
    Policy::new("bench", detectors, Mode::Mask, true, Arc::from(&b"k"[..])).unwrap()
}

fn redaction(c: &mut Criterion) {
    let mut g = c.benchmark_group("redaction 4 KB");
    g.throughput(Throughput::Bytes(4096));
    let all = policy(&Detector::ALL);
    let email = policy(&[Detector::Email]);
    for (name, p, pii) in [
        ("all detectors, no PII", &all, false),
        ("all detectors, 12 findings", &all, true),
        ("email only, no PII", &email, false),
    ] {
        let text = prompt(pii);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || (text.clone(), Session::new(true)),
                |(t, s)| p.redact_text(black_box(t), s).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    let rules = ContentRules::new(vec![
        RuleSpec {
            name: Arc::from("weapons"),
            patterns: vec![r"(?i)build\s+a\s+bomb".to_owned()],
            words: vec!["Project Falcon".to_owned(), "launch codes".to_owned()],
            on: On::Both,
            action: Action::Block,
        },
        RuleSpec {
            name: Arc::from("leak"),
            patterns: vec![r"CONFIDENTIAL-[0-9]+".to_owned()],
            words: Vec::new(),
            on: On::Both,
            action: Action::Flag,
        },
    ])
    .unwrap();
    let text = prompt(true);
    let set = rules.prompt.unwrap();
    g.bench_function("content rules (2 rules, 4 patterns)", |b| {
        b.iter(|| {
            let mut hits = Vec::new();
            set.check(black_box(&text), &mut hits);
            hits
        })
    });
    let mut map = HashMap::new();
    map.insert("<EMAIL_1>".to_owned(), "jane.doe@example.com".to_owned());
    let originals = Originals::new(map);
    let answer = prompt(false).replace("cluster", "<EMAIL_1>");
    let pieces: Vec<&str> = answer.split_inclusive(' ').collect();
    g.bench_function("restore a stream in word chunks", |b| {
        b.iter(|| {
            let mut r = Restorer::new(Target::Text);
            let mut n = 0;
            for p in &pieces {
                n += r.push(&originals, black_box(p)).len();
            }
            n + r.finish(&originals).len()
        })
    });
    g.finish();
}

criterion_group!(benches, redaction);
criterion_main!(benches);
