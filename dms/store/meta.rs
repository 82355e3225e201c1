//! The metadata database: a local SQLite file (`meta.db` under `storage.data_dir`) holding
//! everything about the data that is not bars — the universe, jobs and their logs, the change
//! log, each backup node's acked sequence, quarantined bars and confirmed-empty sessions.
//!
//! # The change log
//! Every change to the primary — bars written, a range deleted, corporate actions written —
//! gets a sequence number *before* it reaches the primary (`begin_change`, state `pending`).
//! When the primary acknowledges it, it becomes `committed`. When the primary fails, the entry
//! stays, as `uncertain`: the primary may hold part of it (InfluxDB applies the good lines of a
//! request it answers 400; a timeout can fire after the server applied a write), so the change
//! log must still say the range may have changed. The change log therefore never under-reports:
//! no entry is ever removed. Replication ships committed and uncertain entries in sequence
//! order — always the range as the primary holds it *now*, so shipping an entry that changed
//! nothing is harmless — and never past a pending one; verification re-checks uncertain ranges.
//! An entry left pending by a crash is marked uncertain at start-up
//! ([`MetaDb::recover_pending`], run only by the data directory's owner): re-shipping a range
//! is idempotent, losing one is not.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::domain::{Interval, SeriesKey, Symbol, TimeRange, time};
use crate::validate::{Flag, Rejection};

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE universe (
    symbol      TEXT PRIMARY KEY,
    entry       TEXT NOT NULL,            -- JSON of UniverseEntry
    updated_at  INTEGER NOT NULL
);
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    task         TEXT NOT NULL,
    status       TEXT NOT NULL,
    params       TEXT NOT NULL,           -- JSON
    progress_done  INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    counters     TEXT NOT NULL DEFAULT '{}',   -- JSON
    errors       TEXT NOT NULL DEFAULT '[]',   -- JSON list
    checkpoint   TEXT,                    -- JSON, for resuming
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER
);
CREATE INDEX jobs_by_status ON jobs (status, id);
CREATE TABLE job_logs (
    job_id   INTEGER NOT NULL REFERENCES jobs(id),
    line     INTEGER NOT NULL,
    ts       INTEGER NOT NULL,
    level    TEXT NOT NULL,
    message  TEXT NOT NULL,
    PRIMARY KEY (job_id, line)
) WITHOUT ROWID;
CREATE TABLE change_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol      TEXT NOT NULL,
    interval    TEXT NOT NULL,
    start_ts    INTEGER NOT NULL,
    end_ts      INTEGER NOT NULL,
    bar_count   INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'committed')),
    created_at  INTEGER NOT NULL
);
CREATE TABLE node_acks (
    node        TEXT PRIMARY KEY,
    acked_seq   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE quality (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol      TEXT NOT NULL,
    interval    TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    rule        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    bar         TEXT NOT NULL,            -- JSON of the rejected values
    source      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX quality_by_series ON quality (symbol, interval, ts);
CREATE TABLE empty_sessions (
    symbol       TEXT NOT NULL,
    interval     TEXT NOT NULL,
    session      TEXT NOT NULL,           -- YYYY-MM-DD, exchange-local
    source       TEXT NOT NULL,
    recorded_at  INTEGER NOT NULL,
    PRIMARY KEY (symbol, interval, session)
) WITHOUT ROWID;
"#,
    r#"
-- Per-series questions of the change log (last update, changes of one series).
CREATE INDEX change_log_by_series ON change_log (symbol, interval, seq);
"#,
    r#"
-- The change log records deletions and corporate actions too (`kind`), and keeps failed
-- writes as `uncertain` instead of removing them. SQLite cannot alter a CHECK constraint, so
-- the table is rebuilt; sequence numbers are kept.
CREATE TABLE change_log_v3 (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('bars', 'delete', 'actions')),
    symbol      TEXT NOT NULL,
    interval    TEXT NOT NULL,            -- '' for corporate actions (per symbol)
    start_ts    INTEGER NOT NULL,
    end_ts      INTEGER NOT NULL,
    bar_count   INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'uncertain')),
    created_at  INTEGER NOT NULL
);
INSERT INTO change_log_v3 (seq, kind, symbol, interval, start_ts, end_ts, bar_count, state, created_at)
    SELECT seq, CASE WHEN bar_count = 0 THEN 'delete' ELSE 'bars' END, symbol, interval,
           start_ts, end_ts, bar_count, state, created_at
    FROM change_log;
DROP TABLE change_log;
ALTER TABLE change_log_v3 RENAME TO change_log;
CREATE INDEX change_log_by_series ON change_log (symbol, interval, seq);
CREATE INDEX change_log_by_state ON change_log (state, seq);
"#,
    r#"
-- When each schedule last started a job (the scheduler's catch-up and /api/v1/schedules).
CREATE TABLE schedule_runs (
    name    TEXT PRIMARY KEY,
    at      INTEGER NOT NULL,
    job_id  INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
-- Quality records are rejections (quarantined, not stored) or flags (stored, suspicious).
ALTER TABLE quality ADD COLUMN kind TEXT NOT NULL DEFAULT 'rejected'
    CHECK (kind IN ('rejected', 'flagged'));
CREATE INDEX quality_by_kind ON quality (kind, id);
"#,
    r#"
-- Coverage summaries (store/coverage.rs): per series and block (a UTC month or year), which
-- grid slots hold a stored bar (`present`), which a source confirmed have none (`absent`),
-- whether the store may differ (`unknown`), and a change counter for rebuilds (`epoch`).
-- Rows are never deleted, so `epoch` only grows.
CREATE TABLE coverage (
    symbol    TEXT NOT NULL,
    interval  TEXT NOT NULL,
    block     INTEGER NOT NULL,
    present   BLOB NOT NULL,
    absent    BLOB,
    unknown   INTEGER NOT NULL DEFAULT 0,
    epoch     INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (symbol, interval, block)
) WITHOUT ROWID;
-- The series the summaries know; `built` is 0 until its blocks are known to match the store
-- (bars stored before the summaries existed are read once from the store).
CREATE TABLE coverage_series (
    symbol    TEXT NOT NULL,
    interval  TEXT NOT NULL,
    built     INTEGER NOT NULL,
    PRIMARY KEY (symbol, interval)
) WITHOUT ROWID;
-- `seeded` = 1 once every series the store held has a coverage_series row.
CREATE TABLE coverage_meta (
    key    TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
-- The last verify report of each backup node (replication), shown by GET /api/v1/nodes.
CREATE TABLE node_verify (
    node         TEXT PRIMARY KEY,
    report       TEXT NOT NULL,           -- JSON
    finished_at  INTEGER NOT NULL
);
"#,
    r#"
-- Splits whose re-fetch of the symbol's stored history (DESIGN §1) has not completed:
-- recorded before the split itself is stored, cleared once every stored series of the
-- symbol is on the new basis, so a task killed in between leaves the work to the next one.
CREATE TABLE pending_splits (
    symbol    TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    attempts  INTEGER NOT NULL DEFAULT 0,   -- re-fetches started
    PRIMARY KEY (symbol, ts)
) WITHOUT ROWID;
"#,
];

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("metadata database: {0}")]
    Json(#[from] serde_json::Error),
    #[error("metadata database: {0}")]
    Io(String),
}

impl From<rusqlite::types::FromSqlError> for MetaError {
    fn from(e: rusqlite::types::FromSqlError) -> MetaError {
        MetaError::Sql(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Null,
            Box::new(e),
        ))
    }
}

/// What a change-log entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Bars of a series written (inserted or replaced) within the range.
    Bars,
    /// Bars of a series removed within the range.
    Delete,
    /// Corporate actions of a symbol written within the range.
    Actions,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Bars => "bars",
            ChangeKind::Delete => "delete",
            ChangeKind::Actions => "actions",
        }
    }

    fn parse(s: &str) -> Option<ChangeKind> {
        [ChangeKind::Bars, ChangeKind::Delete, ChangeKind::Actions]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// What a change is about: a series (bars, deletions) or a symbol (corporate actions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeTarget {
    Series(SeriesKey),
    Symbol(Symbol),
}

/// One change-log entry: `count` bars of `series` written or removed within `[start, end)`,
/// or `count` corporate actions of `symbol` (`interval: None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub seq: u64,
    pub kind: ChangeKind,
    pub symbol: Symbol,
    /// `None` for corporate actions, which belong to a symbol.
    pub interval: Option<Interval>,
    pub start: i64,
    pub end: i64,
    pub count: u64,
    /// The primary failed while applying it: it may hold all, part or none of it.
    pub uncertain: bool,
    pub created_at: i64,
}

impl Change {
    /// The series of a bars or delete change.
    pub fn series(&self) -> Option<SeriesKey> {
        self.interval
            .map(|i| SeriesKey::new(self.symbol.clone(), i))
    }

    pub fn range(&self) -> TimeRange {
        TimeRange::new(self.start, self.end).unwrap_or(TimeRange::ALL)
    }
}

/// A universe entry (DESIGN §2 `universe`), persisted so that API changes survive restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniverseEntry {
    pub symbol: Symbol,
    pub source: crate::domain::SourceKind,
    #[serde(default = "default_intervals")]
    pub intervals: Vec<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market: Option<crate::domain::Market>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub futu_code: Option<String>,
    /// First date to fetch (`YYYY-MM-DD`); `history.default_start_years` back when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

fn default_intervals() -> Vec<Interval> {
    vec![Interval::D1]
}

/// A quarantined (rejected) or flagged bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityRecord {
    pub id: u64,
    pub kind: QualityKind,
    pub symbol: Symbol,
    pub interval: Interval,
    pub ts: i64,
    pub rule: String,
    pub reason: String,
    pub bar: serde_json::Value,
    pub source: String,
    pub created_at: i64,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub id: u64,
    pub task: String,
    pub status: String,
    pub params: serde_json::Value,
    pub progress_done: u64,
    pub progress_total: u64,
    pub counters: serde_json::Value,
    pub errors: serde_json::Value,
    pub checkpoint: Option<serde_json::Value>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobLogLine {
    pub line: u64,
    pub ts: i64,
    pub level: String,
    pub message: String,
}

/// The metadata database. Cheap to clone; calls run on tokio's blocking pool.
#[derive(Clone)]
pub struct MetaDb {
    path: PathBuf,
    /// One connection: metadata operations are small and SQLite has a single writer. A std
    /// `Mutex` held only inside `spawn_blocking`.
    conn: Arc<Mutex<Connection>>,
}

impl MetaDb {
    pub fn open(path: &Path) -> Result<MetaDb, MetaError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| MetaError::Io(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )?;
        super::sqlite::migrate(&mut conn, MIGRATIONS)?;
        Ok(MetaDb {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
        .await
        .map_err(|e| MetaError::Io(format!("metadata task failed: {e}")))?
    }

    // ----- change log -----

    /// Reserves the next sequence number for a change about to reach the primary.
    pub async fn begin_change(
        &self,
        kind: ChangeKind,
        target: &ChangeTarget,
        range: TimeRange,
        count: u64,
    ) -> Result<u64, MetaError> {
        let (symbol, interval) = match target {
            ChangeTarget::Series(s) => (s.symbol.to_string(), s.interval.as_str()),
            ChangeTarget::Symbol(s) => (s.to_string(), ""),
        };
        self.run(move |c| {
            let seq: i64 = c
                .prepare_cached(
                    "INSERT INTO change_log (kind, symbol, interval, start_ts, end_ts, bar_count, state, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7) RETURNING seq",
                )?
                .query_row(
                    params![kind.as_str(), symbol, interval, range.start(), range.end(), count as i64, now()],
                    |r| r.get(0),
                )?;
            Ok(seq as u64)
        })
        .await
    }

    /// Marks a change as acknowledged by the primary: replication may ship it.
    pub async fn commit_change(&self, seq: u64) -> Result<(), MetaError> {
        self.settle(seq, "committed").await
    }

    /// Marks a change the primary failed to apply: it may hold part of it. Replication ships it
    /// like a committed one (the range as the primary holds it) and verification re-checks it.
    pub async fn mark_uncertain(&self, seq: u64) -> Result<(), MetaError> {
        self.settle(seq, "uncertain").await
    }

    async fn settle(&self, seq: u64, state: &'static str) -> Result<(), MetaError> {
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE change_log SET state = ?2 WHERE seq = ?1 AND state = 'pending'",
            )?
            .execute(params![seq as i64, state])?;
            Ok(())
        })
        .await
    }

    /// Marks uncertain the entries a crash left pending (their writes may or may not have
    /// landed); returns how many. Run at start-up by the data directory's owner, before
    /// anything writes.
    pub async fn recover_pending(&self) -> Result<u64, MetaError> {
        self.run(|c| {
            Ok(c.execute(
                "UPDATE change_log SET state = 'uncertain' WHERE state = 'pending'",
                [],
            )? as u64)
        })
        .await
    }

    /// Uncertain changes (failed or interrupted writes), oldest first, at most `limit`: what
    /// verification re-checks.
    pub async fn uncertain_changes(&self, limit: usize) -> Result<Vec<Change>, MetaError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "{CHANGE_SELECT} WHERE state = 'uncertain' ORDER BY seq LIMIT ?1"
            ))?;
            let mut rows = stmt.query(params![limit as i64])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                if let Some(ch) = change_row(r)? {
                    out.push(ch);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Settled (committed or uncertain) changes after `since`, in order, at most `limit`,
    /// stopping before the first pending entry.
    pub async fn changes_since(&self, since: u64, limit: usize) -> Result<Vec<Change>, MetaError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "{CHANGE_SELECT} WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![since as i64, limit as i64])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                if r.get_ref(7)?.as_str()? == "pending" {
                    break;
                }
                if let Some(ch) = change_row(r)? {
                    out.push(ch);
                }
            }
            Ok(out)
        })
        .await
    }

    /// When each series was last written (committed changes), epoch seconds.
    pub async fn last_updates(
        &self,
    ) -> Result<std::collections::HashMap<SeriesKey, i64>, MetaError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT symbol, interval, max(created_at) FROM change_log
                 WHERE state = 'committed' AND kind = 'bars' GROUP BY symbol, interval",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = std::collections::HashMap::new();
            while let Some(r) = rows.next()? {
                let Ok(interval) = r.get_ref(1)?.as_str()?.parse() else {
                    continue;
                };
                out.insert(
                    SeriesKey::new(Symbol::opaque(r.get_ref(0)?.as_str()?), interval),
                    r.get(2)?,
                );
            }
            Ok(out)
        })
        .await
    }

    /// The highest sequence number handed out (0 when none).
    pub async fn last_seq(&self) -> Result<u64, MetaError> {
        self.run(|c| {
            Ok(
                c.query_row("SELECT coalesce(max(seq), 0) FROM change_log", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            )
        })
        .await
    }

    // ----- node acks -----

    pub async fn set_acked(&self, node: &str, seq: u64) -> Result<(), MetaError> {
        let node = node.to_string();
        self.run(move |c| {
            c.prepare_cached(
                "INSERT INTO node_acks (node, acked_seq, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node) DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq),
                     updated_at = excluded.updated_at",
            )?
            .execute(params![node, seq as i64, now()])?;
            Ok(())
        })
        .await
    }

    pub async fn acked(&self, node: &str) -> Result<u64, MetaError> {
        let node = node.to_string();
        self.run(move |c| {
            Ok(
                c.prepare_cached("SELECT acked_seq FROM node_acks WHERE node = ?1")?
                    .query_row(params![node], |r| r.get::<_, i64>(0))
                    .optional()?
                    .unwrap_or(0) as u64,
            )
        })
        .await
    }

    // ----- quality -----

    /// Quarantines rejected bars.
    pub async fn quarantine(&self, rejections: &[Rejection]) -> Result<(), MetaError> {
        if rejections.is_empty() {
            return Ok(());
        }
        let rows: Vec<QualityRow> = rejections
            .iter()
            .map(|r| quality_row(&r.series, &r.bar, r.rule, &r.reason))
            .collect();
        self.run(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO quality (symbol, interval, ts, rule, reason, bar, source, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                let t = now();
                for (symbol, interval, ts, rule, reason, bar, source) in rows {
                    stmt.execute(params![symbol, interval, ts, rule, reason, bar, source, t])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Quality records (rejections and flags), optionally of some symbols and one interval,
    /// newest first; [`MetaDb::quality_of`] filters by kind too.
    pub async fn quality(
        &self,
        symbols: Option<Vec<Symbol>>,
        interval: Option<Interval>,
        limit: usize,
    ) -> Result<Vec<QualityRecord>, MetaError> {
        self.quality_of(symbols, interval, None, limit).await
    }

    // ----- confirmed-empty sessions -----

    /// Records that the source confirmed `session` (exchange-local date) has no bars.
    pub async fn record_empty_session(
        &self,
        series: &SeriesKey,
        session: chrono::NaiveDate,
        source: &str,
    ) -> Result<(), MetaError> {
        let (symbol, interval, source) = (
            series.symbol.to_string(),
            series.interval,
            source.to_string(),
        );
        self.run(move |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO empty_sessions (symbol, interval, session, source, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![symbol, interval.as_str(), session.format("%Y-%m-%d").to_string(), source, now()])?;
            Ok(())
        })
        .await
    }

    /// Sessions of `series` confirmed empty, sorted.
    pub async fn empty_sessions(
        &self,
        series: &SeriesKey,
    ) -> Result<Vec<chrono::NaiveDate>, MetaError> {
        let (symbol, interval) = (series.symbol.to_string(), series.interval);
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT session FROM empty_sessions WHERE symbol = ?1 AND interval = ?2 ORDER BY session",
            )?;
            let rows = stmt.query_map(params![symbol, interval.as_str()], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for s in rows {
                if let Ok(d) = chrono::NaiveDate::parse_from_str(&s?, "%Y-%m-%d") {
                    out.push(d);
                }
            }
            Ok(out)
        })
        .await
    }

    // ----- universe -----

    pub async fn universe(&self) -> Result<Vec<UniverseEntry>, MetaError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached("SELECT entry FROM universe ORDER BY symbol")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for e in rows {
                out.push(serde_json::from_str(&e?)?);
            }
            Ok(out)
        })
        .await
    }

    /// Adds or replaces an entry; returns whether it was new.
    pub async fn upsert_universe(&self, entry: &UniverseEntry) -> Result<bool, MetaError> {
        let json = serde_json::to_string(entry)?;
        let symbol = entry.symbol.to_string();
        self.run(move |c| {
            let tx = c.transaction()?;
            let existed = tx
                .query_row(
                    "SELECT 1 FROM universe WHERE symbol = ?1",
                    params![symbol],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            tx.execute(
                "INSERT OR REPLACE INTO universe (symbol, entry, updated_at) VALUES (?1, ?2, ?3)",
                params![symbol, json, now()],
            )?;
            tx.commit()?;
            Ok(!existed)
        })
        .await
    }

    /// Removes an entry; returns whether it existed.
    pub async fn remove_universe(&self, symbol: &Symbol) -> Result<bool, MetaError> {
        let symbol = symbol.to_string();
        self.run(move |c| {
            Ok(c.execute("DELETE FROM universe WHERE symbol = ?1", params![symbol])? > 0)
        })
        .await
    }

    // ----- jobs -----

    pub async fn create_job(
        &self,
        task: &str,
        job_params: &serde_json::Value,
    ) -> Result<u64, MetaError> {
        let (task, p) = (task.to_string(), job_params.to_string());
        self.run(move |c| {
            c.execute(
                "INSERT INTO jobs (task, status, params, created_at) VALUES (?1, 'queued', ?2, ?3)",
                params![task, p, now()],
            )?;
            Ok(c.last_insert_rowid() as u64)
        })
        .await
    }

    /// Moves a job to `status`, stamping `started_at` for `running` and `finished_at` for the
    /// final states.
    pub async fn set_job_status(&self, id: u64, status: &str) -> Result<(), MetaError> {
        let status = status.to_string();
        self.run(move |c| {
            let t = now();
            c.execute(
                "UPDATE jobs SET status = ?2,
                     started_at = CASE WHEN ?2 = 'running' THEN coalesce(started_at, ?3) ELSE started_at END,
                     finished_at = CASE WHEN ?2 IN ('succeeded', 'failed', 'cancelled') THEN ?3 ELSE finished_at END
                 WHERE id = ?1",
                params![id as i64, status, t],
            )?;
            Ok(())
        })
        .await
    }

    /// Records progress, counters, errors and the resume checkpoint in one step.
    pub async fn update_job(
        &self,
        id: u64,
        done: u64,
        total: u64,
        counters: &serde_json::Value,
        errors: &serde_json::Value,
        checkpoint: Option<&serde_json::Value>,
    ) -> Result<(), MetaError> {
        let (counters, errors, checkpoint) = (
            counters.to_string(),
            errors.to_string(),
            checkpoint.map(|c| c.to_string()),
        );
        self.run(move |c| {
            c.execute(
                "UPDATE jobs SET progress_done = ?2, progress_total = ?3, counters = ?4, errors = ?5,
                     checkpoint = coalesce(?6, checkpoint) WHERE id = ?1",
                params![id as i64, done as i64, total as i64, counters, errors, checkpoint],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn job(&self, id: u64) -> Result<Option<JobRecord>, MetaError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&format!("{JOB_SELECT} WHERE id = ?1"))?;
            let mut rows = stmt.query(params![id as i64])?;
            match rows.next()? {
                Some(r) => Ok(Some(job_row(r)?)),
                None => Ok(None),
            }
        })
        .await
    }

    /// Jobs, newest first, optionally with one status; `page` counts from 1.
    pub async fn jobs(
        &self,
        status: Option<String>,
        page: u64,
        page_size: u64,
    ) -> Result<Vec<JobRecord>, MetaError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "{JOB_SELECT} WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2 OFFSET ?3"
            ))?;
            let offset = page.saturating_sub(1).saturating_mul(page_size);
            let mut rows = stmt.query(params![status, page_size as i64, offset as i64])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(job_row(r)?);
            }
            Ok(out)
        })
        .await
    }

    pub async fn append_job_log(
        &self,
        id: u64,
        level: &str,
        message: &str,
    ) -> Result<(), MetaError> {
        let (level, message) = (level.to_string(), message.to_string());
        self.run(move |c| {
            c.prepare_cached(
                "INSERT INTO job_logs (job_id, line, ts, level, message)
                 VALUES (?1, (SELECT coalesce(max(line), 0) + 1 FROM job_logs WHERE job_id = ?1), ?2, ?3, ?4)",
            )?
            .execute(params![id as i64, now(), level, message])?;
            Ok(())
        })
        .await
    }

    pub async fn job_log(&self, id: u64) -> Result<Vec<JobLogLine>, MetaError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT line, ts, level, message FROM job_logs WHERE job_id = ?1 ORDER BY line",
            )?;
            let rows = stmt.query_map(params![id as i64], |r| {
                Ok(JobLogLine {
                    line: r.get::<_, i64>(0)? as u64,
                    ts: r.get(1)?,
                    level: r.get(2)?,
                    message: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

const CHANGE_SELECT: &str = "SELECT seq, kind, symbol, interval, start_ts, end_ts, bar_count,
    state, created_at FROM change_log";

/// A change-log row; `None` for a row this version cannot read (an unknown kind or interval).
fn change_row(r: &rusqlite::Row<'_>) -> Result<Option<Change>, MetaError> {
    let Some(kind) = ChangeKind::parse(r.get_ref(1)?.as_str()?) else {
        return Ok(None);
    };
    let interval = match r.get_ref(3)?.as_str()? {
        "" => None,
        i => match i.parse() {
            Ok(i) => Some(i),
            Err(_) => return Ok(None),
        },
    };
    Ok(Some(Change {
        seq: r.get::<_, i64>(0)? as u64,
        kind,
        symbol: Symbol::opaque(r.get_ref(2)?.as_str()?),
        interval,
        start: r.get(4)?,
        end: r.get(5)?,
        count: r.get::<_, i64>(6)? as u64,
        uncertain: r.get_ref(7)?.as_str()? == "uncertain",
        created_at: r.get(8)?,
    }))
}

const JOB_SELECT: &str =
    "SELECT id, task, status, params, progress_done, progress_total, counters, errors,
    checkpoint, created_at, started_at, finished_at FROM jobs";

fn job_row(r: &rusqlite::Row<'_>) -> Result<JobRecord, MetaError> {
    let json = |i: usize| -> Result<serde_json::Value, MetaError> {
        Ok(serde_json::from_str(r.get_ref(i)?.as_str()?)?)
    };
    Ok(JobRecord {
        id: r.get::<_, i64>(0)? as u64,
        task: r.get(1)?,
        status: r.get(2)?,
        params: json(3)?,
        progress_done: r.get::<_, i64>(4)? as u64,
        progress_total: r.get::<_, i64>(5)? as u64,
        counters: json(6)?,
        errors: json(7)?,
        checkpoint: match r.get_ref(8)?.as_str_or_null()? {
            Some(s) => Some(serde_json::from_str(s)?),
            None => None,
        },
        created_at: r.get(9)?,
        started_at: r.get(10)?,
        finished_at: r.get(11)?,
    })
}

// ----- quality: rejections and flags (validation) -----

/// What a quality record says of its bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QualityKind {
    /// Broke a reject rule: quarantined, not stored.
    Rejected,
    /// Tripped a flag rule: stored, and recorded here.
    Flagged,
}

impl QualityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QualityKind::Rejected => "rejected",
            QualityKind::Flagged => "flagged",
        }
    }

    pub fn parse(s: &str) -> Option<QualityKind> {
        [QualityKind::Rejected, QualityKind::Flagged]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One row for the `quality` table.
type QualityRow = (
    String,
    &'static str,
    i64,
    &'static str,
    String,
    String,
    &'static str,
);

fn quality_row(
    series: &SeriesKey,
    bar: &crate::domain::Bar,
    rule: &'static str,
    reason: &str,
) -> QualityRow {
    let values = serde_json::json!({
        "open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close,
        "volume": bar.volume, "adj_close": bar.adj_close,
    });
    (
        series.symbol.to_string(),
        series.interval.as_str(),
        bar.ts,
        rule,
        reason.to_string(),
        values.to_string(),
        bar.source.as_str(),
    )
}

impl MetaDb {
    /// Records flagged bars (stored, suspicious) as `kind = 'flagged'`.
    pub async fn flag(&self, flags: &[Flag]) -> Result<(), MetaError> {
        if flags.is_empty() {
            return Ok(());
        }
        let rows: Vec<QualityRow> = flags
            .iter()
            .map(|f| quality_row(&f.series, &f.bar, f.rule, &f.reason))
            .collect();
        self.run(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO quality (kind, symbol, interval, ts, rule, reason, bar, source, created_at)
                     VALUES ('flagged', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                let t = now();
                for (symbol, interval, ts, rule, reason, bar, source) in rows {
                    stmt.execute(params![symbol, interval, ts, rule, reason, bar, source, t])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Records flagged bars like [`MetaDb::flag`], except those already flagged by the same
    /// rule at the same stamp (a re-run of `verify` adds nothing new); returns how many rows
    /// were added.
    pub async fn flag_new(&self, flags: &[Flag]) -> Result<u64, MetaError> {
        if flags.is_empty() {
            return Ok(0);
        }
        let rows: Vec<QualityRow> = flags
            .iter()
            .map(|f| quality_row(&f.series, &f.bar, f.rule, &f.reason))
            .collect();
        self.run(move |c| {
            let tx = c.transaction()?;
            let mut added = 0u64;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO quality (kind, symbol, interval, ts, rule, reason, bar, source, created_at)
                     SELECT 'flagged', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
                     WHERE NOT EXISTS (SELECT 1 FROM quality WHERE symbol = ?1 AND interval = ?2
                                       AND ts = ?3 AND rule = ?4 AND kind = 'flagged')",
                )?;
                let t = now();
                for (symbol, interval, ts, rule, reason, bar, source) in rows {
                    added +=
                        stmt.execute(params![symbol, interval, ts, rule, reason, bar, source, t])?
                            as u64;
                }
            }
            tx.commit()?;
            Ok(added)
        })
        .await
    }

    /// Quality records, optionally of some symbols, one interval and one kind, newest first.
    pub async fn quality_of(
        &self,
        symbols: Option<Vec<Symbol>>,
        interval: Option<Interval>,
        kind: Option<QualityKind>,
        limit: usize,
    ) -> Result<Vec<QualityRecord>, MetaError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, symbol, interval, ts, rule, reason, bar, source, created_at, kind
                 FROM quality
                 WHERE (?1 IS NULL OR interval = ?1) AND (?2 IS NULL OR kind = ?2)
                 ORDER BY id DESC",
            )?;
            let mut rows = stmt.query(params![
                interval.map(|i| i.as_str()),
                kind.map(|k| k.as_str())
            ])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let symbol = Symbol::opaque(r.get_ref(1)?.as_str()?);
                if symbols.as_ref().is_some_and(|s| !s.contains(&symbol)) {
                    continue;
                }
                let Ok(interval) = r.get_ref(2)?.as_str()?.parse() else {
                    continue;
                };
                let Some(kind) = QualityKind::parse(r.get_ref(9)?.as_str()?) else {
                    continue;
                };
                out.push(QualityRecord {
                    id: r.get::<_, i64>(0)? as u64,
                    kind,
                    symbol,
                    interval,
                    ts: r.get(3)?,
                    rule: r.get(4)?,
                    reason: r.get(5)?,
                    bar: serde_json::from_str(r.get_ref(6)?.as_str()?)?,
                    source: r.get(7)?,
                    created_at: r.get(8)?,
                });
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Formats an epoch for log lines and errors.
pub fn fmt_ts(ts: i64) -> String {
    time::rfc3339(ts)
}

/// Schedule runs (the scheduler's `last_run` / `last_job`).
impl MetaDb {
    /// When the schedule `name` last started a job, and which: `(epoch s, job id)`.
    pub async fn schedule_run(&self, name: &str) -> Result<Option<(i64, u64)>, MetaError> {
        let name = name.to_string();
        self.run(move |c| {
            Ok(
                c.prepare_cached("SELECT at, job_id FROM schedule_runs WHERE name = ?1")?
                    .query_row(params![name], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
                    })
                    .optional()?,
            )
        })
        .await
    }

    pub async fn set_schedule_run(
        &self,
        name: &str,
        at: i64,
        job_id: u64,
    ) -> Result<(), MetaError> {
        let name = name.to_string();
        self.run(move |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO schedule_runs (name, at, job_id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![name, at, job_id as i64])?;
            Ok(())
        })
        .await
    }
}

/// Replication's bookkeeping beyond the acks: the backlog a node has to catch up and the last
/// verify report of each node. (A replica keeps its pull position as the ack of the reserved
/// node name `replicate::PRIMARY_POSITION`.)
impl MetaDb {
    /// How many change-log entries come after `seq`, and when the oldest of them was made.
    pub async fn backlog(&self, seq: u64) -> Result<(u64, Option<i64>), MetaError> {
        self.run(move |c| {
            Ok(
                c.prepare_cached(
                    "SELECT count(*), min(created_at) FROM change_log WHERE seq > ?1",
                )?
                .query_row(params![seq as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<i64>>(1)?))
                })?,
            )
        })
        .await
    }

    /// Records the last verify report of `node`.
    pub async fn set_verify_report(
        &self,
        node: &str,
        report: &serde_json::Value,
    ) -> Result<(), MetaError> {
        let (node, report) = (node.to_string(), report.to_string());
        self.run(move |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO node_verify (node, report, finished_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![node, report, now()])?;
            Ok(())
        })
        .await
    }

    /// Records splits of `symbol` whose stored history must be re-fetched (kept if already
    /// recorded).
    pub async fn add_pending_splits(&self, symbol: &str, dates: &[i64]) -> Result<(), MetaError> {
        let (symbol, dates) = (symbol.to_string(), dates.to_vec());
        self.run(move |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR IGNORE INTO pending_splits (symbol, ts) VALUES (?1, ?2)",
                )?;
                for ts in dates {
                    st.execute(params![symbol, ts])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Every pending split: `(symbol, ts, re-fetches started)`, by symbol and date.
    pub async fn pending_splits(&self) -> Result<Vec<(String, i64, u32)>, MetaError> {
        self.run(|c| {
            let mut st = c.prepare_cached(
                "SELECT symbol, ts, attempts FROM pending_splits ORDER BY symbol, ts",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Counts a re-fetch started for the pending splits of `symbol`.
    pub async fn start_split_refetch(&self, symbol: &str) -> Result<(), MetaError> {
        let symbol = symbol.to_string();
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE pending_splits SET attempts = attempts + 1 WHERE symbol = ?1",
            )?
            .execute(params![symbol])?;
            Ok(())
        })
        .await
    }

    /// Forgets pending splits of `symbol`: its history is on their basis.
    pub async fn clear_pending_splits(&self, symbol: &str, dates: &[i64]) -> Result<(), MetaError> {
        let (symbol, dates) = (symbol.to_string(), dates.to_vec());
        self.run(move |c| {
            let tx = c.transaction()?;
            {
                let mut st =
                    tx.prepare_cached("DELETE FROM pending_splits WHERE symbol = ?1 AND ts = ?2")?;
                for ts in dates {
                    st.execute(params![symbol, ts])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The last verify report of `node`, if it was ever verified.
    pub async fn verify_report(&self, node: &str) -> Result<Option<serde_json::Value>, MetaError> {
        let node = node.to_string();
        self.run(move |c| {
            let text: Option<String> = c
                .prepare_cached("SELECT report FROM node_verify WHERE node = ?1")?
                .query_row(params![node], |r| r.get(0))
                .optional()?;
            Ok(match text {
                Some(t) => Some(serde_json::from_str(&t)?),
                None => None,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pending_splits_are_kept_counted_and_cleared() {
        let (_d, m) = db();
        m.add_pending_splits("NVDA", &[200, 100]).await.unwrap();
        m.add_pending_splits("NVDA", &[100]).await.unwrap();
        m.add_pending_splits("AAPL", &[50]).await.unwrap();
        m.start_split_refetch("NVDA").await.unwrap();
        assert_eq!(
            m.pending_splits().await.unwrap(),
            [
                ("AAPL".to_string(), 50, 0),
                ("NVDA".to_string(), 100, 1),
                ("NVDA".to_string(), 200, 1)
            ]
        );
        m.clear_pending_splits("NVDA", &[100, 200]).await.unwrap();
        assert_eq!(
            m.pending_splits().await.unwrap(),
            [("AAPL".to_string(), 50, 0)]
        );
    }

    fn db() -> (tempfile::TempDir, MetaDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = MetaDb::open(&dir.path().join("meta.db")).unwrap();
        (dir, db)
    }

    fn key() -> SeriesKey {
        SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::D1)
    }

    fn series() -> ChangeTarget {
        ChangeTarget::Series(key())
    }

    #[tokio::test]
    async fn replication_never_sees_past_a_pending_change() {
        let (_d, db) = db();
        let r = TimeRange::new(0, 86_400).unwrap();
        let a = db
            .begin_change(ChangeKind::Bars, &series(), r, 1)
            .await
            .unwrap();
        let b = db
            .begin_change(ChangeKind::Bars, &series(), r, 2)
            .await
            .unwrap();
        db.commit_change(b).await.unwrap();
        assert!(
            db.changes_since(0, 10).await.unwrap().is_empty(),
            "a is still pending"
        );
        db.commit_change(a).await.unwrap();
        let seqs: Vec<u64> = db
            .changes_since(0, 10)
            .await
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect();
        assert_eq!(seqs, [a, b]);
        assert_eq!(db.changes_since(a, 10).await.unwrap()[0].count, 2);
        // A failed write stays, uncertain; so does one a crash left pending.
        let c = db
            .begin_change(ChangeKind::Bars, &series(), r, 3)
            .await
            .unwrap();
        db.mark_uncertain(c).await.unwrap();
        let d = db
            .begin_change(ChangeKind::Delete, &series(), r, 0)
            .await
            .unwrap();
        let sym = ChangeTarget::Symbol(key().symbol);
        let e = db
            .begin_change(ChangeKind::Actions, &sym, r, 2)
            .await
            .unwrap();
        db.commit_change(e).await.unwrap();
        assert_eq!(
            db.changes_since(b, 10).await.unwrap().len(),
            1,
            "d is pending, so e is not shipped yet"
        );
        assert_eq!(db.recover_pending().await.unwrap(), 1);
        let after_b = db.changes_since(b, 10).await.unwrap();
        assert_eq!(
            after_b
                .iter()
                .map(|x| (x.seq, x.kind, x.uncertain))
                .collect::<Vec<_>>(),
            [
                (c, ChangeKind::Bars, true),
                (d, ChangeKind::Delete, true),
                (e, ChangeKind::Actions, false)
            ]
        );
        assert_eq!(after_b[2].interval, None);
        assert_eq!(after_b[0].series(), Some(key()));
        assert_eq!(
            db.uncertain_changes(10)
                .await
                .unwrap()
                .iter()
                .map(|x| x.seq)
                .collect::<Vec<_>>(),
            [c, d]
        );
        // Settling is once: a late commit cannot turn an uncertain entry into a clean one.
        db.commit_change(c).await.unwrap();
        assert!(db.changes_since(b, 1).await.unwrap()[0].uncertain);
        assert_eq!(db.last_seq().await.unwrap(), e);
        let updates = db.last_updates().await.unwrap();
        assert_eq!(updates.len(), 1);
        assert!(updates[&key()] > 1_700_000_000);
    }

    #[tokio::test]
    async fn backlog_counts_entries_after_an_ack_and_verify_reports_persist() {
        let (_d, db) = db();
        assert_eq!(db.backlog(0).await.unwrap(), (0, None));
        let r = TimeRange::new(0, 86_400).unwrap();
        let a = db
            .begin_change(ChangeKind::Bars, &series(), r, 1)
            .await
            .unwrap();
        db.begin_change(ChangeKind::Bars, &series(), r, 1)
            .await
            .unwrap();
        let (n, oldest) = db.backlog(0).await.unwrap();
        assert_eq!(n, 2);
        assert!(oldest.unwrap() > 1_700_000_000);
        assert_eq!(db.backlog(a).await.unwrap().0, 1);
        assert_eq!(db.verify_report("b1").await.unwrap(), None);
        let report = serde_json::json!({"differences": 2});
        db.set_verify_report("b1", &report).await.unwrap();
        assert_eq!(db.verify_report("b1").await.unwrap(), Some(report));
    }

    #[tokio::test]
    async fn schema_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let db = MetaDb::open(&path).unwrap();
            db.set_acked("b1", 7).await.unwrap();
            db.set_acked("b1", 5).await.unwrap(); // acks never go backwards
        }
        let db = MetaDb::open(&path).unwrap();
        assert_eq!(db.acked("b1").await.unwrap(), 7);
        assert_eq!(db.acked("nobody").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn universe_jobs_quality_and_empty_sessions_persist() {
        let (_d, db) = db();
        let entry: UniverseEntry =
            serde_json::from_str(r#"{"symbol":"0700.HK","source":"futu","intervals":["1d","1m"]}"#)
                .unwrap();
        assert!(db.upsert_universe(&entry).await.unwrap());
        assert!(!db.upsert_universe(&entry).await.unwrap());
        assert_eq!(db.universe().await.unwrap(), vec![entry.clone()]);
        assert!(db.remove_universe(&entry.symbol).await.unwrap());
        assert!(db.universe().await.unwrap().is_empty());

        let id = db
            .create_job("backfill", &serde_json::json!({"symbols":["AAPL"]}))
            .await
            .unwrap();
        db.set_job_status(id, "running").await.unwrap();
        db.append_job_log(id, "info", "fetching AAPL")
            .await
            .unwrap();
        db.append_job_log(id, "warn", "retrying").await.unwrap();
        db.update_job(
            id,
            1,
            2,
            &serde_json::json!({"bars_written": 5}),
            &serde_json::json!([]),
            None,
        )
        .await
        .unwrap();
        db.set_job_status(id, "succeeded").await.unwrap();
        let job = db.job(id).await.unwrap().unwrap();
        assert_eq!(
            (job.status.as_str(), job.progress_done, job.progress_total),
            ("succeeded", 1, 2)
        );
        assert!(job.started_at.is_some() && job.finished_at.is_some());
        assert_eq!(
            db.job_log(id)
                .await
                .unwrap()
                .iter()
                .map(|l| l.line)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(
            db.jobs(Some("succeeded".into()), 1, 20)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            db.jobs(Some("failed".into()), 1, 20)
                .await
                .unwrap()
                .is_empty()
        );

        let bar = crate::domain::Bar {
            ts: 0,
            open: 1.0,
            high: 0.5,
            low: 1.0,
            close: 1.0,
            volume: 1.0,
            adj_close: None,
            source: crate::domain::SourceKind::Files,
        };
        let rej = Rejection {
            series: key(),
            bar,
            rule: "high_below_open_close",
            reason: "high 0.5 is below max(open, close) 1".into(),
        };
        db.quarantine(&[rej]).await.unwrap();
        let q = db
            .quality(Some(vec![key().symbol]), Some(Interval::D1), 10)
            .await
            .unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].rule, "high_below_open_close");
        assert!(
            db.quality(None, Some(Interval::M1), 10)
                .await
                .unwrap()
                .is_empty()
        );

        let d = chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
        db.record_empty_session(&key(), d, "yahoo").await.unwrap();
        db.record_empty_session(&key(), d, "yahoo").await.unwrap();
        assert_eq!(db.empty_sessions(&key()).await.unwrap(), vec![d]);
    }

    #[tokio::test]
    async fn flag_new_adds_a_flag_once_per_stamp_and_rule() {
        let (_d, db) = db();
        let bar = |ts: i64| crate::domain::Bar {
            ts,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 0.0,
            adj_close: None,
            source: crate::domain::SourceKind::Yahoo,
        };
        let flag = |ts: i64, rule: &'static str| Flag {
            series: key(),
            bar: bar(ts),
            rule,
            reason: "r".into(),
        };
        db.flag(&[flag(100, "zero_volume")]).await.unwrap();
        let added = db
            .flag_new(&[
                flag(100, "zero_volume"),
                flag(100, "jump"),
                flag(200, "zero_volume"),
            ])
            .await
            .unwrap();
        assert_eq!(added, 2);
        assert_eq!(
            db.flag_new(&[flag(200, "zero_volume")]).await.unwrap(),
            0,
            "already there"
        );
        assert_eq!(db.quality(None, None, 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn flags_and_rejections_share_the_quality_table_by_kind() {
        let (_d, db) = db();
        let bar = crate::domain::Bar {
            ts: 1_704_153_600,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 0.0,
            adj_close: None,
            source: crate::domain::SourceKind::Yahoo,
        };
        db.quarantine(&[Rejection {
            series: key(),
            bar,
            rule: "closed_day",
            reason: "2024-01-01 is not a US session (New Year's Day)".into(),
        }])
        .await
        .unwrap();
        db.flag(&[Flag {
            series: key(),
            bar,
            rule: "zero_volume",
            reason: "volume 0".into(),
        }])
        .await
        .unwrap();
        let all = db.quality(None, None, 10).await.unwrap();
        assert_eq!(
            all.iter()
                .map(|r| (r.kind, r.rule.as_str()))
                .collect::<Vec<_>>(),
            [
                (QualityKind::Flagged, "zero_volume"),
                (QualityKind::Rejected, "closed_day")
            ]
        );
        assert_eq!(all[0].source, "yahoo");
        assert_eq!(all[0].bar["volume"], 0.0);
        let flagged = db
            .quality_of(None, None, Some(QualityKind::Flagged), 10)
            .await
            .unwrap();
        assert_eq!(flagged.len(), 1);
        assert_eq!(flagged[0].rule, "zero_volume");
        let rejected = db
            .quality_of(
                Some(vec![key().symbol]),
                Some(Interval::D1),
                Some(QualityKind::Rejected),
                10,
            )
            .await
            .unwrap();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].rule, "closed_day");
    }

    #[tokio::test]
    async fn quality_records_from_before_the_kind_column_read_as_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            // A database migrated up to the version before `kind`, holding one rejection.
            let mut c = Connection::open(&path).unwrap();
            let before = MIGRATIONS
                .iter()
                .position(|m| m.contains("ADD COLUMN kind"))
                .unwrap();
            crate::store::sqlite::migrate(&mut c, &MIGRATIONS[..before]).unwrap();
            c.execute(
                "INSERT INTO quality (symbol, interval, ts, rule, reason, bar, source, created_at)
                 VALUES ('AAPL', '1d', 0, 'non_finite', 'close is NaN', '{}', 'files', 0)",
                [],
            )
            .unwrap();
        }
        let db = MetaDb::open(&path).unwrap();
        let q = db.quality(None, None, 10).await.unwrap();
        assert_eq!(
            (q[0].kind, q[0].rule.as_str()),
            (QualityKind::Rejected, "non_finite")
        );
    }
}

// ----- coverage summaries (store/coverage.rs) -----

use crate::store::coverage::{self, Bits, Coverage, CoverageBlock, Marks};

/// Which blocks a rebuild from the store replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildScope {
    /// Every block of the series (one never built): on success the series is `built`.
    Whole,
    /// These blocks (ones marked unknown).
    Blocks(Vec<i64>),
}

/// `INSERT OR IGNORE` of a series the write path met: built when every series the store
/// held before summaries existed is already listed (`seeded`), so this one is new.
const COVERAGE_SERIES_MET: &str = "INSERT OR IGNORE INTO coverage_series (symbol, interval, built)
    VALUES (?1, ?2, (SELECT count(*) FROM coverage_meta WHERE key = 'seeded' AND value = 1))";

impl MetaDb {
    /// A successful write: its stamps are present.
    pub async fn coverage_add(&self, series: &SeriesKey, marks: Marks) -> Result<(), MetaError> {
        let (symbol, interval) = (series.symbol.to_string(), series.interval.as_str());
        let blocks = marks.into_blocks();
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.prepare_cached(COVERAGE_SERIES_MET)?
                .execute(params![symbol, interval])?;
            for (block, bits) in blocks {
                let mut present = read_present(&tx, &symbol, interval, block)?.unwrap_or_default();
                present.union_with(&bits);
                upsert_present(&tx, &symbol, interval, block, &present, None)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A successful delete: nothing is present in `range` any more.
    pub async fn coverage_clear(
        &self,
        series: &SeriesKey,
        range: TimeRange,
    ) -> Result<(), MetaError> {
        let (symbol, interval) = (series.symbol.to_string(), series.interval);
        self.run(move |c| {
            let tx = c.transaction()?;
            let rows: Vec<(i64, Vec<u8>)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT block, present FROM coverage
                     WHERE symbol = ?1 AND interval = ?2 AND block >= ?3 AND block < ?4",
                )?;
                let lo = coverage::block_start(interval, range.start());
                let rows = stmt
                    .query_map(params![symbol, interval.as_str(), lo, range.end()], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                rows.collect::<Result<_, _>>()?
            };
            for (block, blob) in rows {
                let mut present = decode(&blob)?;
                let (a, b) = coverage::slot_span(interval, block, range);
                present.clear_range(a, b);
                upsert_present(&tx, &symbol, interval.as_str(), block, &present, None)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A write or delete the primary failed: the store may differ from the summary in these
    /// blocks (a write's blocks) or in `range` (a delete's).
    pub async fn coverage_unknown(
        &self,
        series: &SeriesKey,
        blocks: Vec<i64>,
        range: Option<TimeRange>,
    ) -> Result<(), MetaError> {
        let (symbol, interval) = (series.symbol.to_string(), series.interval);
        self.run(move |c| {
            let tx = c.transaction()?;
            mark_unknown(&tx, &symbol, interval, &blocks, range)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Start-up, before [`MetaDb::recover_pending`]: the blocks of changes a crash left
    /// pending may differ from the store. Returns how many changes.
    pub async fn coverage_recover_pending(&self) -> Result<u64, MetaError> {
        self.run(|c| {
            let tx = c.transaction()?;
            let pending: Vec<(String, String, i64, i64, String)> = {
                let mut stmt = tx.prepare(
                    "SELECT symbol, interval, start_ts, end_ts, kind FROM change_log
                     WHERE state = 'pending' AND kind IN ('bars', 'delete')",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
                rows.collect::<Result<_, _>>()?
            };
            let mut n = 0;
            for (symbol, interval, start, end, kind) in pending {
                let (Ok(interval), Ok(range)) =
                    (interval.parse::<Interval>(), TimeRange::new(start, end))
                else {
                    continue;
                };
                // A write may have created blocks; a delete only touches existing ones.
                let blocks: Vec<i64> = if kind == "bars" {
                    coverage::blocks_in(interval, range).collect()
                } else {
                    Vec::new()
                };
                mark_unknown(&tx, &symbol, interval, &blocks, Some(range))?;
                n += 1;
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    /// A source confirmed these slots have no bar.
    pub async fn coverage_absent(&self, series: &SeriesKey, marks: Marks) -> Result<(), MetaError> {
        let (symbol, interval) = (series.symbol.to_string(), series.interval.as_str());
        let blocks = marks.into_blocks();
        self.run(move |c| {
            let tx = c.transaction()?;
            for (block, bits) in blocks {
                let old: Option<Option<Vec<u8>>> = tx
                    .prepare_cached(
                        "SELECT absent FROM coverage WHERE symbol = ?1 AND interval = ?2 AND block = ?3",
                    )?
                    .query_row(params![symbol, interval, block], |r| r.get(0))
                    .optional()?;
                let mut absent = match old.flatten() {
                    Some(b) => decode(&b)?,
                    None => Bits::new(),
                };
                absent.union_with(&bits);
                tx.prepare_cached(
                    "INSERT INTO coverage (symbol, interval, block, present, absent) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (symbol, interval, block) DO UPDATE SET absent = excluded.absent",
                )?
                .execute(params![symbol, interval, block, Bits::new().encode(), absent.encode()])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Whether every series the store held has been listed ([`MetaDb::coverage_seed`]).
    pub async fn coverage_seeded(&self) -> Result<bool, MetaError> {
        self.run(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM coverage_meta WHERE key = 'seeded' AND value = 1",
                [],
                |r| r.get::<_, i64>(0),
            )? > 0)
        })
        .await
    }

    /// Lists the series the store holds (not built yet, unless already known) and marks the
    /// summaries seeded: from now on a series the write path meets for the first time is new.
    pub async fn coverage_seed(&self, stored: Vec<SeriesKey>) -> Result<(), MetaError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare(
                    "INSERT OR IGNORE INTO coverage_series (symbol, interval, built) VALUES (?1, ?2, 0)",
                )?;
                for s in &stored {
                    stmt.execute(params![s.symbol.as_str(), s.interval.as_str()])?;
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO coverage_meta (key, value) VALUES ('seeded', 1)",
                [],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Every series the summaries know, and whether it is built.
    pub async fn coverage_series(
        &self,
    ) -> Result<std::collections::HashMap<SeriesKey, bool>, MetaError> {
        self.run(|c| {
            let mut stmt =
                c.prepare_cached("SELECT symbol, interval, built FROM coverage_series")?;
            let mut rows = stmt.query([])?;
            let mut out = std::collections::HashMap::new();
            while let Some(r) = rows.next()? {
                let Ok(interval) = r.get_ref(1)?.as_str()?.parse() else {
                    continue;
                };
                out.insert(
                    SeriesKey::new(Symbol::opaque(r.get_ref(0)?.as_str()?), interval),
                    r.get::<_, i64>(2)? != 0,
                );
            }
            Ok(out)
        })
        .await
    }

    /// The epoch of each block of `series`: taken before a rebuild reads the store.
    pub async fn coverage_epochs(
        &self,
        series: &SeriesKey,
    ) -> Result<BTreeMap<i64, i64>, MetaError> {
        let (symbol, interval) = (series.symbol.to_string(), series.interval.as_str());
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT block, epoch FROM coverage WHERE symbol = ?1 AND interval = ?2",
            )?;
            let rows = stmt.query_map(params![symbol, interval], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Stores what a rebuild read from the store (`marks`: the stamps it found) for the blocks
    /// of `scope`, each only if its epoch is still the one seen before the read (`seen`; no
    /// write touched it meanwhile). Returns whether every block was replaced; for
    /// [`RebuildScope::Whole`] the series is then `built`.
    pub async fn coverage_rebuilt(
        &self,
        series: &SeriesKey,
        scope: RebuildScope,
        marks: Marks,
        seen: BTreeMap<i64, i64>,
    ) -> Result<bool, MetaError> {
        let (symbol, interval) = (series.symbol.to_string(), series.interval.as_str());
        let found: BTreeMap<i64, Bits> = marks.into_blocks().into_iter().collect();
        self.run(move |c| {
            let tx = c.transaction()?;
            let now: BTreeMap<i64, i64> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT block, epoch FROM coverage WHERE symbol = ?1 AND interval = ?2",
                )?;
                let rows =
                    stmt.query_map(params![symbol, interval], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            let blocks: Vec<i64> = match &scope {
                RebuildScope::Whole => {
                    let mut b: Vec<i64> = now.keys().chain(found.keys()).copied().collect();
                    b.sort_unstable();
                    b.dedup();
                    b
                }
                RebuildScope::Blocks(b) => b.clone(),
            };
            let mut all = true;
            let empty = Bits::new();
            for block in blocks {
                if now.get(&block) != seen.get(&block) {
                    all = false;
                    continue;
                }
                let bits = found.get(&block).unwrap_or(&empty);
                if now.contains_key(&block) || !bits.is_empty() {
                    upsert_present(&tx, &symbol, interval, block, bits, Some(0))?;
                }
            }
            if all && scope == RebuildScope::Whole {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO coverage_series (symbol, interval, built) VALUES (?1, ?2, 1)",
                )?
                .execute(params![symbol, interval])?;
            }
            tx.commit()?;
            Ok(all)
        })
        .await
    }

    /// The summary of one series.
    pub async fn coverage_of(&self, series: &SeriesKey) -> Result<Coverage, MetaError> {
        let wanted = std::collections::HashSet::from([series.clone()]);
        self.coverage_scan(Some(wanted), Coverage::new(series.interval), |out, _, c| {
            *out = c
        })
        .await
    }

    /// Calls `visit(state, series, summary)` for each series in `wanted` (every series when
    /// `None`) that has a summary, in order, on the blocking pool, over a read-only connection
    /// of its own (WAL: the write path is not held up while a scan reads); returns `state`.
    pub async fn coverage_scan<S, F>(
        &self,
        wanted: Option<std::collections::HashSet<SeriesKey>>,
        mut state: S,
        mut visit: F,
    ) -> Result<S, MetaError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, SeriesKey, Coverage) + Send + 'static,
    {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let c = Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            c.busy_timeout(std::time::Duration::from_secs(10))?;
            const SELECT: &str =
                "SELECT symbol, interval, block, present, absent, unknown, epoch FROM coverage";
            match wanted {
                Some(w) if w.len() <= 256 => {
                    let mut keys: Vec<SeriesKey> = w.into_iter().collect();
                    keys.sort();
                    let mut stmt = c.prepare(&format!(
                        "{SELECT} WHERE symbol = ?1 AND interval = ?2 ORDER BY block"
                    ))?;
                    for k in keys {
                        let mut rows =
                            stmt.query(params![k.symbol.as_str(), k.interval.as_str()])?;
                        let mut cov = Coverage::new(k.interval);
                        while let Some(r) = rows.next()? {
                            let (block, b) = block_row(r)?;
                            cov.blocks.insert(block, b);
                        }
                        if !cov.blocks.is_empty() {
                            visit(&mut state, k, cov);
                        }
                    }
                }
                wanted => {
                    let mut stmt =
                        c.prepare(&format!("{SELECT} ORDER BY symbol, interval, block"))?;
                    let mut rows = stmt.query([])?;
                    let mut cur: Option<(SeriesKey, Coverage)> = None;
                    // Whether the current group is wanted (decoded) or skipped.
                    let mut keep = false;
                    while let Some(r) = rows.next()? {
                        let symbol = r.get_ref(0)?.as_str()?;
                        let interval = r.get_ref(1)?.as_str()?;
                        let same = cur.as_ref().is_some_and(|(k, _)| {
                            k.symbol.as_str() == symbol && k.interval.as_str() == interval
                        });
                        if !same {
                            if let Some((k, cov)) = cur.take()
                                && keep
                            {
                                visit(&mut state, k, cov);
                            }
                            let Ok(i) = interval.parse::<Interval>() else {
                                keep = false;
                                continue;
                            };
                            let key = SeriesKey::new(Symbol::opaque(symbol), i);
                            keep = wanted.as_ref().is_none_or(|w| w.contains(&key));
                            cur = Some((key, Coverage::new(i)));
                        }
                        if keep && let Some((_, cov)) = cur.as_mut() {
                            let (block, b) = block_row(r)?;
                            cov.blocks.insert(block, b);
                        }
                    }
                    if let Some((k, cov)) = cur.take()
                        && keep
                    {
                        visit(&mut state, k, cov);
                    }
                }
            }
            Ok(state)
        })
        .await
        .map_err(|e| MetaError::Io(format!("metadata task failed: {e}")))?
    }

    /// Every confirmed-empty session, by series, sorted.
    pub async fn all_empty_sessions(
        &self,
    ) -> Result<std::collections::HashMap<SeriesKey, Vec<chrono::NaiveDate>>, MetaError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT symbol, interval, session FROM empty_sessions ORDER BY symbol, interval, session",
            )?;
            let mut rows = stmt.query([])?;
            let mut out: std::collections::HashMap<SeriesKey, Vec<chrono::NaiveDate>> =
                std::collections::HashMap::new();
            while let Some(r) = rows.next()? {
                let Ok(interval) = r.get_ref(1)?.as_str()?.parse() else {
                    continue;
                };
                let Ok(d) = chrono::NaiveDate::parse_from_str(r.get_ref(2)?.as_str()?, "%Y-%m-%d")
                else {
                    continue;
                };
                out.entry(SeriesKey::new(Symbol::opaque(r.get_ref(0)?.as_str()?), interval))
                    .or_default()
                    .push(d);
            }
            Ok(out)
        })
        .await
    }
}

use std::collections::BTreeMap;

fn decode(blob: &[u8]) -> Result<Bits, MetaError> {
    Bits::decode(blob).map_err(|e| MetaError::Io(e.to_string()))
}

fn read_present(
    tx: &rusqlite::Transaction<'_>,
    symbol: &str,
    interval: &str,
    block: i64,
) -> Result<Option<Bits>, MetaError> {
    let blob: Option<Vec<u8>> = tx
        .prepare_cached(
            "SELECT present FROM coverage WHERE symbol = ?1 AND interval = ?2 AND block = ?3",
        )?
        .query_row(params![symbol, interval, block], |r| r.get(0))
        .optional()?;
    blob.map(|b| decode(&b)).transpose()
}

/// Writes a block's `present`, bumping its epoch; `unknown` is set when given, else kept
/// (0 for a new row).
fn upsert_present(
    tx: &rusqlite::Transaction<'_>,
    symbol: &str,
    interval: &str,
    block: i64,
    present: &Bits,
    unknown: Option<i64>,
) -> Result<(), MetaError> {
    tx.prepare_cached(
        "INSERT INTO coverage (symbol, interval, block, present, unknown) VALUES (?1, ?2, ?3, ?4, coalesce(?5, 0))
         ON CONFLICT (symbol, interval, block) DO UPDATE SET present = excluded.present,
             unknown = coalesce(?5, unknown), epoch = epoch + 1",
    )?
    .execute(params![symbol, interval, block, present.encode(), unknown])?;
    Ok(())
}

/// Marks `blocks` (created if missing) and the existing blocks overlapping `range` unknown.
fn mark_unknown(
    tx: &rusqlite::Transaction<'_>,
    symbol: &str,
    interval: Interval,
    blocks: &[i64],
    range: Option<TimeRange>,
) -> Result<(), MetaError> {
    tx.prepare_cached(COVERAGE_SERIES_MET)?
        .execute(params![symbol, interval.as_str()])?;
    for &block in blocks {
        tx.prepare_cached(
            "INSERT INTO coverage (symbol, interval, block, present, unknown) VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT (symbol, interval, block) DO UPDATE SET unknown = 1, epoch = epoch + 1",
        )?
        .execute(params![symbol, interval.as_str(), block, Bits::new().encode()])?;
    }
    if let Some(r) = range {
        tx.prepare_cached(
            "UPDATE coverage SET unknown = 1, epoch = epoch + 1
             WHERE symbol = ?1 AND interval = ?2 AND block >= ?3 AND block < ?4",
        )?
        .execute(params![
            symbol,
            interval.as_str(),
            coverage::block_start(interval, r.start()),
            r.end()
        ])?;
    }
    Ok(())
}

fn block_row(r: &rusqlite::Row<'_>) -> Result<(i64, CoverageBlock), MetaError> {
    let absent = match r.get_ref(4)?.as_blob_or_null()? {
        Some(b) => decode(b)?,
        None => Bits::new(),
    };
    Ok((
        r.get(2)?,
        CoverageBlock {
            present: decode(r.get_ref(3)?.as_blob()?)?,
            absent,
            unknown: r.get::<_, i64>(5)? != 0,
            epoch: r.get(6)?,
        },
    ))
}

#[cfg(test)]
mod coverage_tests {
    use super::*;

    const DAY: i64 = 86_400;
    /// 2024-01-01T00:00:00Z.
    const Y2024: i64 = 1_704_067_200;

    fn db() -> (tempfile::TempDir, MetaDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = MetaDb::open(&dir.path().join("meta.db")).unwrap();
        (dir, db)
    }

    fn key(s: &str) -> SeriesKey {
        SeriesKey::new(Symbol::opaque(s), Interval::D1)
    }

    fn days(c: &Coverage) -> Vec<i64> {
        c.blocks
            .iter()
            .flat_map(|(b, x)| x.present.ones().map(move |s| b + s as i64 * DAY))
            .collect()
    }

    #[tokio::test]
    async fn writes_add_deletes_clear_and_failures_mark_blocks_unknown() {
        let (_d, db) = db();
        let k = key("AAPL");
        let stamps = [Y2024 - DAY, Y2024, Y2024 + DAY, Y2024 + 2 * DAY];
        db.coverage_add(&k, Marks::from_stamps(Interval::D1, stamps))
            .await
            .unwrap();
        db.coverage_add(&k, Marks::from_stamps(Interval::D1, [Y2024 + 5 * DAY]))
            .await
            .unwrap();
        let c = db.coverage_of(&k).await.unwrap();
        assert_eq!(
            days(&c),
            [
                Y2024 - DAY,
                Y2024,
                Y2024 + DAY,
                Y2024 + 2 * DAY,
                Y2024 + 5 * DAY
            ]
        );
        assert_eq!(c.blocks.len(), 2);
        assert!(c.unknown_blocks().is_empty());

        db.coverage_clear(&k, TimeRange::new(Y2024 + DAY, Y2024 + 3 * DAY).unwrap())
            .await
            .unwrap();
        let c = db.coverage_of(&k).await.unwrap();
        assert_eq!(days(&c), [Y2024 - DAY, Y2024, Y2024 + 5 * DAY]);

        // A failed write to a new year, and a failed delete of the old one.
        db.coverage_unknown(&k, vec![Y2024 + 366 * DAY], None)
            .await
            .unwrap();
        db.coverage_unknown(&k, vec![], TimeRange::new(Y2024 - 10 * DAY, Y2024).ok())
            .await
            .unwrap();
        let c = db.coverage_of(&k).await.unwrap();
        assert_eq!(c.unknown_blocks(), [Y2024 - 365 * DAY, Y2024 + 366 * DAY]);
        assert_eq!(days(&c).len(), 3, "unknown blocks keep what they had");
        // Other series are untouched; a scan over all sees both.
        db.coverage_add(&key("IBM"), Marks::from_stamps(Interval::D1, [Y2024]))
            .await
            .unwrap();
        let seen = db
            .coverage_scan(None, Vec::new(), |v, k, c| {
                v.push((k.symbol.to_string(), c.blocks.len()))
            })
            .await
            .unwrap();
        assert_eq!(seen, [("AAPL".to_string(), 3), ("IBM".to_string(), 1)]);
    }

    #[tokio::test]
    async fn a_rebuild_replaces_only_blocks_no_write_touched_meanwhile() {
        let (_d, db) = db();
        let k = key("AAPL");
        db.coverage_unknown(&k, vec![Y2024 - 365 * DAY, Y2024], None)
            .await
            .unwrap();
        let seen = db.coverage_epochs(&k).await.unwrap();
        // While the rebuild reads the store, a write lands in 2024.
        db.coverage_add(&k, Marks::from_stamps(Interval::D1, [Y2024 + 9 * DAY]))
            .await
            .unwrap();
        let found = Marks::from_stamps(Interval::D1, [Y2024 - 100 * DAY, Y2024 + DAY]);
        let all = db
            .coverage_rebuilt(&k, RebuildScope::Whole, found.clone(), seen)
            .await
            .unwrap();
        assert!(!all);
        let c = db.coverage_of(&k).await.unwrap();
        assert_eq!(
            c.unknown_blocks(),
            [Y2024],
            "2024 was written meanwhile: still unknown"
        );
        assert_eq!(days(&c), [Y2024 - 100 * DAY, Y2024 + 9 * DAY]);
        assert!(!db.coverage_series().await.unwrap()[&k]);
        // Again, undisturbed: replaced, and the series is built.
        let seen = db.coverage_epochs(&k).await.unwrap();
        let found = Marks::from_stamps(
            Interval::D1,
            [Y2024 - 100 * DAY, Y2024 + DAY, Y2024 + 9 * DAY],
        );
        assert!(
            db.coverage_rebuilt(&k, RebuildScope::Whole, found, seen)
                .await
                .unwrap()
        );
        let c = db.coverage_of(&k).await.unwrap();
        assert!(c.unknown_blocks().is_empty());
        assert_eq!(days(&c).len(), 3);
        assert!(db.coverage_series().await.unwrap()[&k]);
    }

    #[tokio::test]
    async fn series_met_after_seeding_are_built_and_crashed_writes_are_unknown() {
        let (_d, db) = db();
        db.coverage_add(&key("OLD"), Marks::from_stamps(Interval::D1, [Y2024]))
            .await
            .unwrap();
        assert!(!db.coverage_seeded().await.unwrap());
        db.coverage_seed(vec![key("OLD"), key("EXT")])
            .await
            .unwrap();
        assert!(db.coverage_seeded().await.unwrap());
        db.coverage_add(&key("NEW"), Marks::from_stamps(Interval::D1, [Y2024]))
            .await
            .unwrap();
        let states = db.coverage_series().await.unwrap();
        assert_eq!(
            (
                states[&key("OLD")],
                states[&key("EXT")],
                states[&key("NEW")]
            ),
            (false, false, true)
        );
        // A write a crash left pending.
        let r = TimeRange::new(Y2024 + 400 * DAY, Y2024 + 401 * DAY).unwrap();
        db.begin_change(ChangeKind::Bars, &ChangeTarget::Series(key("NEW")), r, 1)
            .await
            .unwrap();
        assert_eq!(db.coverage_recover_pending().await.unwrap(), 1);
        assert_eq!(
            db.coverage_of(&key("NEW")).await.unwrap().unknown_blocks(),
            [Y2024 + 366 * DAY]
        );
    }

    #[tokio::test]
    async fn absent_slots_survive_writes_and_rebuilds() {
        let (_d, db) = db();
        let k = key("AAPL");
        db.coverage_absent(&k, Marks::from_stamps(Interval::D1, [Y2024 + 3 * DAY]))
            .await
            .unwrap();
        db.coverage_add(&k, Marks::from_stamps(Interval::D1, [Y2024]))
            .await
            .unwrap();
        let seen = db.coverage_epochs(&k).await.unwrap();
        db.coverage_rebuilt(
            &k,
            RebuildScope::Blocks(vec![Y2024]),
            Marks::new(Interval::D1),
            seen,
        )
        .await
        .unwrap();
        let c = db.coverage_of(&k).await.unwrap();
        let b = &c.blocks[&Y2024];
        assert!(b.present.is_empty());
        assert_eq!(b.absent.ones().collect::<Vec<_>>(), [3]);
    }
}
