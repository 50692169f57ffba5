//! What went right and wrong in a phase: answers by status, errors, malformed bodies.

use std::{collections::BTreeMap, io};

use crate::{
    REQUEST_TIMEOUT,
    http::{Reply, body_ok},
};

/// What went right and wrong in one phase.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) ok: u64,
    /// Non-200 answers by status.
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) io_errors: u64,
    pub(crate) timeouts: u64,
    pub(crate) bad_bodies: u64,
    /// The first problem seen, for the report.
    pub(crate) first_problem: Option<String>,
}

impl Tally {
    pub(crate) fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.io_errors += other.io_errors;
        self.timeouts += other.timeouts;
        self.bad_bodies += other.bad_bodies;
        if self.first_problem.is_none() {
            self.first_problem = other.first_problem;
        }
    }

    pub(crate) fn problems(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.io_errors + self.timeouts + self.bad_bodies
    }

    pub(crate) fn total(&self) -> u64 {
        self.ok + self.statuses.values().sum::<u64>() + self.io_errors + self.timeouts
    }

    pub(crate) fn note(&mut self, problem: impl FnOnce() -> String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(problem());
        }
    }

    /// Records one exchange; returns whether the connection may be reused.
    pub(crate) fn record(
        &mut self,
        outcome: Result<io::Result<Reply>, tokio::time::error::Elapsed>,
        body: &[u8],
        stream: bool,
        check_body: bool,
    ) -> Option<Reply> {
        match outcome {
            Ok(Ok(reply)) if reply.status == 200 => {
                if check_body && !body_ok(body, stream) {
                    self.bad_bodies += 1;
                    self.note(|| {
                        format!(
                            "malformed 200 body: {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        )
                    });
                }
                self.ok += 1;
                Some(reply)
            }
            Ok(Ok(reply)) => {
                *self.statuses.entry(reply.status).or_default() += 1;
                let status = reply.status;
                self.note(|| {
                    format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    )
                });
                Some(reply)
            }
            Ok(Err(e)) => {
                self.io_errors += 1;
                self.note(|| format!("I/O error: {e}"));
                None
            }
            Err(_) => {
                self.timeouts += 1;
                self.note(|| format!("no answer within {REQUEST_TIMEOUT:?}"));
                None
            }
        }
    }
}
