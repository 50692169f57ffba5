//! The embedded ledger: one SQLite file under `state.dir`, WAL-journalled, one row per
//! hour × key × model × deployment, added to by UPSERT in one transaction per batch.
//!
//! SQLite rather than redb: the read side is a `GROUP BY` over whichever dimensions the
//! caller picks, which SQL says in one statement; an operator can open the file with the
//! `sqlite3` shell while the gateway runs (WAL lets readers in beside the writer); and a
//! committed batch survives a crash of the process (WAL with `synchronous = NORMAL` may
//! lose the last batches on a power cut, never corrupt the file).

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags, params};

use super::{Query, Report, Row, Slot, Sums, calendar};

/// The file's name inside `state.dir`.
pub const FILE: &str = "usage.sqlite3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage_hourly (
    hour                  INTEGER NOT NULL, -- UNIX seconds at the start of the UTC hour
    key                   TEXT    NOT NULL, -- caller key name, '' for anonymous calls
    model                 TEXT    NOT NULL, -- the catalog's model name
    deployment            TEXT    NOT NULL, -- provider/model, '' when none served
    requests              INTEGER NOT NULL,
    errors                INTEGER NOT NULL,
    unpriced              INTEGER NOT NULL, -- served, but no usage or no price
    input_tokens          INTEGER NOT NULL,
    cached_input_tokens   INTEGER NOT NULL,
    cache_write_tokens    INTEGER NOT NULL,
    output_tokens         INTEGER NOT NULL,
    reasoning_tokens      INTEGER NOT NULL,
    cost_input_nusd       INTEGER NOT NULL, -- nano-USD (1e-9 USD)
    cost_cached_input_nusd INTEGER NOT NULL,
    cost_cache_write_nusd INTEGER NOT NULL,
    cost_output_nusd      INTEGER NOT NULL,
    cost_total_nusd       INTEGER NOT NULL,
    PRIMARY KEY (hour, key, model, deployment)
) WITHOUT ROWID;
PRAGMA user_version = 1;
";

/// The numeric columns, in [`Sums`] order.
const SUMS: [&str; 13] = [
    "requests",
    "errors",
    "unpriced",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_input_nusd",
    "cost_cached_input_nusd",
    "cost_cache_write_nusd",
    "cost_output_nusd",
    "cost_total_nusd",
];

/// The ledger's SQLite file and its one connection.
pub struct SqliteLedger {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteLedger {
    /// Opens (creating the folder and file when missing) `dir/usage.sqlite3` for writing.
    pub fn open(dir: &Path) -> Result<SqliteLedger, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("state.dir {}: cannot create it: {e}", dir.display()))?;
        let path = dir.join(FILE);
        let fail = |e: rusqlite::Error| format!("{}: {e}", path.display());
        let conn = Connection::open(&path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        Ok(SqliteLedger {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// Opens an existing ledger to read it (the `usage` command): never creates one.
    pub fn open_read_only(dir: &Path) -> Result<SqliteLedger, String> {
        let path = dir.join(FILE);
        if !path.exists() {
            return Err(format!(
                "no usage ledger at {} (the gateway writes it once it has served a request)",
                path.display()
            ));
        }
        let fail = |e: rusqlite::Error| format!("{}: {e}", path.display());
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        Ok(SqliteLedger {
            path,
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `batch` in one transaction.
    pub fn add(&self, batch: &[(Slot, Sums)]) -> Result<(), String> {
        let fail = |e: rusqlite::Error| format!("{}: {e}", self.path.display());
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(fail)?;
        {
            let updates: Vec<String> = SUMS
                .iter()
                .map(|c| format!("{c} = {c} + excluded.{c}"))
                .collect();
            let sql = format!(
                "INSERT INTO usage_hourly (hour, key, model, deployment, {}) \
                 VALUES (?1, ?2, ?3, ?4, {}) \
                 ON CONFLICT (hour, key, model, deployment) DO UPDATE SET {}",
                SUMS.join(", "),
                (5..5 + SUMS.len())
                    .map(|i| format!("?{i}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                updates.join(", ")
            );
            let mut stmt = tx.prepare_cached(&sql).map_err(fail)?;
            for (slot, sums) in batch {
                let n = numbers(sums);
                stmt.execute(params![
                    slot.hour,
                    &*slot.key,
                    &*slot.model,
                    &*slot.deployment,
                    n[0],
                    n[1],
                    n[2],
                    n[3],
                    n[4],
                    n[5],
                    n[6],
                    n[7],
                    n[8],
                    n[9],
                    n[10],
                    n[11],
                    n[12]
                ])
                .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)
    }

    /// Answers `query` with one `GROUP BY`.
    pub fn report(&self, query: &Query) -> Result<Report, String> {
        let fail = |e: rusqlite::Error| format!("{}: {e}", self.path.display());
        let groups: Vec<&str> = query.group_by.iter().map(|g| g.column()).collect();
        let sums: Vec<String> = SUMS.iter().map(|c| format!("SUM({c})")).collect();
        let mut select = groups.clone();
        select.extend(sums.iter().map(String::as_str));
        let mut sql = format!(
            "SELECT {} FROM usage_hourly WHERE hour >= ?1 AND hour < ?2",
            select.join(", ")
        );
        if !groups.is_empty() {
            let list = groups.join(", ");
            sql.push_str(&format!(" GROUP BY {list} ORDER BY {list}"));
        }
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(fail)?;
        let mut rows = Vec::new();
        let mut totals = Sums::default();
        let mut result = stmt
            .query(params![query.first_hour(), query.to])
            .map_err(fail)?;
        while let Some(r) = result.next().map_err(fail)? {
            let mut group = Vec::with_capacity(groups.len());
            for (i, g) in query.group_by.iter().enumerate() {
                group.push(match g {
                    super::Group::Hour => calendar::rfc3339(r.get::<_, i64>(i).map_err(fail)?),
                    _ => r.get::<_, String>(i).map_err(fail)?,
                });
            }
            let mut n = [0i64; 13];
            for (j, slot) in n.iter_mut().enumerate() {
                // SUM over no rows (no group, empty range) is NULL.
                *slot = r
                    .get::<_, Option<i64>>(groups.len() + j)
                    .map_err(fail)?
                    .unwrap_or(0);
            }
            let sums = from_numbers(&n);
            if groups.is_empty() && sums == Sums::default() {
                continue;
            }
            totals += sums;
            rows.push(Row { group, sums });
        }
        Ok(Report {
            query: query.clone(),
            rows,
            totals,
        })
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn numbers(s: &Sums) -> [i64; 13] {
    s.components().map(signed)
}

fn from_numbers(n: &[i64; 13]) -> Sums {
    Sums::from_components(n.map(|v| u64::try_from(v).unwrap_or(0)))
}
