//! The embedded store (the default primary): SQLite (`rusqlite`, bundled) in one file under
//! `storage.data_dir`, holding bars as columnar chunks (see [`super::chunk`]).
//!
//! Tables: `series` (one row per series: id, first/last ts, count and the newest bar, kept up to
//! date by every write so that "latest bar of 10,000 series" is one small scan), `chunks` (one
//! row per series and chunk span, the bars as one blob) and `actions` (corporate actions).
//! Every write is one transaction: a batch is stored whole or not at all.
//!
//! SQLite runs in WAL mode with `synchronous=NORMAL`: a committed write survives a crash of the
//! process; a power cut can lose the last commits but never corrupts the file. Blocking SQLite
//! calls run on tokio's blocking pool, one writer connection (SQLite has one writer anyway) and a
//! small pool of reader connections that WAL lets run beside it.
//!
//! Checkpoints (copying the WAL back into the database file) run on a thread of their own with
//! their own connection ([`Checkpointer`]), woken by writes; the writer's automatic checkpoint
//! is off. SQLite's automatic checkpoint runs inside the commit that crosses 1,000 pages, so a
//! large import would otherwise write every page a second time and wait for an `fsync` on its
//! own path (about a seventh of a 1M-bar import's CPU time, BENCHMARKS.md "Import").

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::chunk::{self, CorruptChunk};
use super::{Fields, SeriesStats, Store, StoreError, StoreHealth};
use crate::domain::{ActionKind, Bar, CorporateAction, Interval, SeriesKey, Symbol, TimeRange};
use crate::validate::ValidatedBatch;

const STORE: &str = "embedded";

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE series (
    id        INTEGER PRIMARY KEY,
    symbol    TEXT NOT NULL,
    interval  TEXT NOT NULL,
    first_ts  INTEGER,
    last_ts   INTEGER,
    count     INTEGER NOT NULL DEFAULT 0,
    last_bar  BLOB,
    UNIQUE (symbol, interval)
);
CREATE TABLE chunks (
    id         INTEGER PRIMARY KEY,
    series_id  INTEGER NOT NULL REFERENCES series(id),
    start_ts   INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    first_ts   INTEGER NOT NULL,
    last_ts    INTEGER NOT NULL,
    data       BLOB NOT NULL,
    UNIQUE (series_id, start_ts)
);
CREATE TABLE actions (
    symbol       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    ts           INTEGER NOT NULL,
    amount       REAL NOT NULL,
    numerator    REAL,
    denominator  REAL,
    source       TEXT NOT NULL,
    PRIMARY KEY (symbol, kind, ts)
) WITHOUT ROWID;
"#];

/// How many idle reader connections to keep.
const READERS: usize = 8;

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The one writer. A std `Mutex`: it is only locked inside `spawn_blocking`, never across
    /// an `.await`.
    writer: Mutex<Connection>,
    /// Idle reader connections; a read takes one (or opens one) and gives it back.
    readers: Mutex<Vec<Connection>>,
    /// Woken after every write; `None` when its thread could not start (the writer then
    /// checkpoints automatically, as SQLite does by default).
    checkpointer: Option<Checkpointer>,
}

/// The checkpoint thread's handle: a wake-up channel of one slot (a pending wake-up covers
/// any number of writes). Dropping it ends the thread after a last checkpoint.
struct Checkpointer {
    wake: std::sync::mpsc::SyncSender<()>,
}

/// Writes coalesced into one checkpoint: the thread waits this long after a wake-up.
const CHECKPOINT_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

impl Checkpointer {
    fn start(path: &Path) -> Option<Checkpointer> {
        let conn = open_conn(path, Role::Reader)
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "cannot open the checkpoint connection; the writer checkpoints"))
            .ok()?;
        let (wake, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let label = path.display().to_string();
        std::thread::Builder::new()
            .name("dms-checkpoint".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    std::thread::sleep(CHECKPOINT_DELAY);
                    // Wake-ups sent while sleeping are covered by this checkpoint.
                    while rx.try_recv().is_ok() {}
                    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                        tracing::warn!(path = %label, error = %e, "checkpoint failed; the next write retries it");
                    }
                }
                let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);");
            })
            .map_err(|e| tracing::warn!(error = %e, "cannot start the checkpoint thread; the writer checkpoints"))
            .ok()?;
        Some(Checkpointer { wake })
    }

    fn wake(&self) {
        // Full: a wake-up is already pending. Disconnected: the thread is gone (never while
        // the store lives).
        let _ = self.wake.try_send(());
    }
}

/// Internal error, converted to [`StoreError`] at the trait boundary.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Corrupt(#[from] CorruptChunk),
}

impl From<rusqlite::types::FromSqlError> for Error {
    fn from(e: rusqlite::types::FromSqlError) -> Error {
        Error::Sql(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Null,
            Box::new(e),
        ))
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> StoreError {
        use rusqlite::ErrorCode::*;
        let message = e.to_string();
        match &e {
            Error::Sql(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    DatabaseBusy
                        | DatabaseLocked
                        | SystemIoFailure
                        | DiskFull
                        | CannotOpen
                        | OutOfMemory
                ) =>
            {
                StoreError::Unavailable {
                    store: STORE,
                    message,
                }
            }
            _ => StoreError::Corrupt {
                store: STORE,
                message,
            },
        }
    }
}

impl EmbeddedStore {
    /// Opens (creating when missing) the store file `path` and migrates its schema.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable {
                store: STORE,
                message: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let mut conn = open_conn(path, Role::Writer).map_err(Error::from)?;
        super::sqlite::migrate(&mut conn, MIGRATIONS).map_err(Error::from)?;
        let checkpointer = Checkpointer::start(path);
        if checkpointer.is_some() {
            conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
                .map_err(Error::from)?;
        }
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
                checkpointer,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` with the writer connection on the blocking pool.
    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        run_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let out = f(&mut conn);
            drop(conn);
            if let Some(c) = &inner.checkpointer {
                c.wake();
            }
            out
        })
        .await
    }

    /// Runs `f` with a reader connection on the blocking pool.
    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        run_blocking(move || {
            let idle = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let conn = match idle {
                Some(c) => c,
                None => open_conn(&inner.path, Role::Reader)?,
            };
            let out = f(&conn);
            let mut pool = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(StoreError::from),
        Err(e) => Err(StoreError::Corrupt {
            store: STORE,
            message: format!("storage task failed: {e}"),
        }),
    }
}

/// What a connection is for: the one writer, or one of the pooled readers.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Writer,
    Reader,
}

/// Page cache of the writer connection, KiB (SQLite's negative `cache_size`).
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Page cache of each reader connection, KiB. Reads of chunks are sequential blob reads that
/// the page cache barely helps, and up to `reader::LOAD_CONCURRENCY` readers are open at once.
const READER_CACHE_KIB: i64 = 1024;

/// Opens a connection. No memory map (`mmap_size = 0`): a mapped file counts in the process's
/// resident memory as it is read, so a 10M-bar read would hold gigabytes of the file resident
/// (BENCHMARKS.md, "Read path", RSS); reads copy pages into a bounded page cache instead.
fn open_conn(path: &Path, role: Role) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let cache = match role {
        Role::Writer => WRITER_CACHE_KIB,
        Role::Reader => READER_CACHE_KIB,
    };
    conn.execute_batch(&format!(
        "PRAGMA page_size = 16384;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA mmap_size = 0;
         PRAGMA cache_size = -{cache};"
    ))?;
    Ok(conn)
}

fn series_id(conn: &Connection, key: &SeriesKey) -> Result<Option<i64>, rusqlite::Error> {
    conn.prepare_cached("SELECT id FROM series WHERE symbol = ?1 AND interval = ?2")?
        .query_row(params![key.symbol.as_str(), key.interval.as_str()], |r| {
            r.get(0)
        })
        .optional()
}

fn write_batch(conn: &mut Connection, batch: &ValidatedBatch) -> Result<(), Error> {
    let key = batch.series();
    let bars = batch.bars();
    let tx = conn.transaction()?;
    let sid: i64 = tx
        .prepare_cached(
            "INSERT INTO series (symbol, interval) VALUES (?1, ?2)
             ON CONFLICT (symbol, interval) DO UPDATE SET symbol = excluded.symbol
             RETURNING id",
        )?
        .query_row(params![key.symbol.as_str(), key.interval.as_str()], |r| {
            r.get(0)
        })?;
    let mut added = 0usize;
    {
        let mut select =
            tx.prepare_cached("SELECT data FROM chunks WHERE series_id = ?1 AND start_ts = ?2")?;
        let mut upsert = tx.prepare_cached(
            "INSERT INTO chunks (series_id, start_ts, count, first_ts, last_ts, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (series_id, start_ts) DO UPDATE SET
                 count = excluded.count, first_ts = excluded.first_ts,
                 last_ts = excluded.last_ts, data = excluded.data",
        )?;
        let mut rest = bars;
        while let Some(first) = rest.first() {
            let start = chunk::chunk_start(key.interval, first.ts);
            let n = rest.partition_point(|b| chunk::chunk_start(key.interval, b.ts) == start);
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let old: Option<Vec<u8>> = select
                .query_row(params![sid, start], |r| r.get(0))
                .optional()?;
            let merged;
            let stored: &[Bar] = match old {
                None => {
                    added += group.len();
                    group
                }
                Some(blob) => {
                    let (m, new) = chunk::merge(chunk::decode(&blob)?, group);
                    added += new;
                    merged = m;
                    &merged
                }
            };
            let (lo, hi) = (stored[0].ts, stored[stored.len() - 1].ts);
            upsert.execute(params![
                sid,
                start,
                stored.len() as i64,
                lo,
                hi,
                chunk::encode(stored)
            ])?;
        }
    }
    let newest = bars[bars.len() - 1];
    tx.prepare_cached(
        "UPDATE series SET
             count = count + ?2,
             first_ts = min(coalesce(first_ts, ?3), ?3),
             last_bar = CASE WHEN last_ts IS NULL OR ?4 >= last_ts THEN ?5 ELSE last_bar END,
             last_ts = max(coalesce(last_ts, ?4), ?4)
         WHERE id = ?1",
    )?
    .execute(params![
        sid,
        added as i64,
        bars[0].ts,
        newest.ts,
        chunk::encode(&[newest])
    ])?;
    tx.commit()?;
    Ok(())
}

fn read_range(
    conn: &Connection,
    key: &SeriesKey,
    range: TimeRange,
    fields: Fields,
) -> Result<Vec<Bar>, Error> {
    let Some(sid) = series_id(conn, key)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT data FROM chunks WHERE series_id = ?1 AND start_ts >= ?2 AND start_ts < ?3
         AND last_ts >= ?4 ORDER BY start_ts",
    )?;
    let lo = chunk::chunk_start(key.interval, range.start());
    let mut rows = stmt.query(params![sid, lo, range.end(), range.start()])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let blob = row.get_ref(0)?.as_blob()?;
        chunk::decode_fields_into(blob, range.start(), range.end(), fields, &mut out)?;
    }
    Ok(out)
}

/// Chunks wholly inside the range count from the index; only the edge chunks are decoded.
fn count_range(conn: &Connection, key: &SeriesKey, range: TimeRange) -> Result<u64, Error> {
    let Some(sid) = series_id(conn, key)? else {
        return Ok(0);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT first_ts, last_ts, count, CASE WHEN first_ts < ?4 OR last_ts >= ?3 THEN data END
         FROM chunks WHERE series_id = ?1 AND start_ts >= ?2 AND start_ts < ?3 AND last_ts >= ?4",
    )?;
    let lo = chunk::chunk_start(key.interval, range.start());
    let mut rows = stmt.query(params![sid, lo, range.end(), range.start()])?;
    let mut n = 0u64;
    let mut edge = Vec::new();
    while let Some(row) = rows.next()? {
        match row.get_ref(3)?.as_blob_or_null()? {
            None => n += row.get::<_, i64>(2)? as u64,
            Some(blob) => {
                edge.clear();
                chunk::decode_into(blob, range.start(), range.end(), &mut edge)?;
                n += edge.len() as u64;
            }
        }
    }
    Ok(n)
}

fn delete_range(conn: &mut Connection, key: &SeriesKey, range: TimeRange) -> Result<u64, Error> {
    let tx = conn.transaction()?;
    let Some(sid) = series_id(&tx, key)? else {
        return Ok(0);
    };
    let lo = chunk::chunk_start(key.interval, range.start());
    let chunks: Vec<(i64, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT start_ts, data FROM chunks WHERE series_id = ?1 AND start_ts >= ?2
             AND start_ts < ?3 AND last_ts >= ?4",
        )?
        .query_map(params![sid, lo, range.end(), range.start()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut removed = 0u64;
    for (start, blob) in chunks {
        let mut bars = chunk::decode(&blob)?;
        let before = bars.len();
        bars.retain(|b| !range.contains(b.ts));
        removed += (before - bars.len()) as u64;
        if bars.is_empty() {
            tx.execute(
                "DELETE FROM chunks WHERE series_id = ?1 AND start_ts = ?2",
                params![sid, start],
            )?;
        } else if bars.len() != before {
            tx.execute(
                "UPDATE chunks SET count = ?3, first_ts = ?4, last_ts = ?5, data = ?6
                 WHERE series_id = ?1 AND start_ts = ?2",
                params![
                    sid,
                    start,
                    bars.len() as i64,
                    bars[0].ts,
                    bars[bars.len() - 1].ts,
                    chunk::encode(&bars)
                ],
            )?;
        }
    }
    if removed > 0 {
        let last_chunk: Option<Vec<u8>> = tx
            .query_row(
                "SELECT data FROM chunks WHERE series_id = ?1 ORDER BY start_ts DESC LIMIT 1",
                params![sid],
                |r| r.get(0),
            )
            .optional()?;
        let newest = match last_chunk {
            Some(blob) => chunk::decode(&blob)?.pop(),
            None => None,
        };
        tx.execute(
            "UPDATE series SET count = count - ?2,
                 first_ts = (SELECT min(first_ts) FROM chunks WHERE series_id = ?1),
                 last_ts = ?3, last_bar = ?4
             WHERE id = ?1",
            params![
                sid,
                removed as i64,
                newest.map(|b| b.ts),
                newest.map(|b| chunk::encode(&[b]))
            ],
        )?;
    }
    tx.commit()?;
    Ok(removed)
}

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        STORE
    }

    async fn ping(&self) -> Result<StoreHealth, StoreError> {
        let version = self
            .with_reader(|c| {
                Ok(c.query_row("SELECT sqlite_version()", [], |r| r.get::<_, String>(0))?)
            })
            .await?;
        Ok(StoreHealth {
            kind: STORE,
            location: self.inner.path.display().to_string(),
            version: Some(format!("sqlite {version}")),
        })
    }

    async fn write(&self, batch: &ValidatedBatch) -> Result<(), StoreError> {
        let batch = batch.clone();
        self.with_writer(move |c| write_batch(c, &batch)).await
    }

    async fn read(&self, series: &SeriesKey, range: TimeRange) -> Result<Vec<Bar>, StoreError> {
        self.read_fields(series, range, Fields::ALL).await
    }

    async fn read_fields(
        &self,
        series: &SeriesKey,
        range: TimeRange,
        fields: Fields,
    ) -> Result<Vec<Bar>, StoreError> {
        let key = series.clone();
        self.with_reader(move |c| read_range(c, &key, range, fields))
            .await
    }

    async fn latest(&self, series: &[SeriesKey]) -> Result<HashMap<SeriesKey, Bar>, StoreError> {
        let wanted: HashSet<SeriesKey> = series.iter().cloned().collect();
        self.with_reader(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT symbol, interval, last_bar FROM series WHERE last_bar IS NOT NULL",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = HashMap::with_capacity(wanted.len());
            while let Some(row) = rows.next()? {
                let Ok(interval) = row.get_ref(1)?.as_str()?.parse::<Interval>() else {
                    continue;
                };
                let key = SeriesKey::new(Symbol::opaque(row.get_ref(0)?.as_str()?), interval);
                if !wanted.contains(&key) {
                    continue;
                }
                if let Some(bar) = chunk::decode(row.get_ref(2)?.as_blob()?)?.pop() {
                    out.insert(key, bar);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn count(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, StoreError> {
        let key = series.clone();
        self.with_reader(move |c| count_range(c, &key, range)).await
    }

    async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, StoreError> {
        let key = series.clone();
        self.with_writer(move |c| delete_range(c, &key, range))
            .await
    }

    async fn list_series(&self) -> Result<Vec<SeriesStats>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT symbol, interval, first_ts, last_ts, count FROM series
                 WHERE count > 0 ORDER BY symbol, interval",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (symbol, interval, first, last, count) = row?;
                let Ok(interval) = interval.parse() else {
                    continue;
                };
                out.push(SeriesStats {
                    series: SeriesKey::new(Symbol::opaque(&symbol), interval),
                    first,
                    last,
                    count: count as u64,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn write_actions(
        &self,
        symbol: &Symbol,
        actions: &[CorporateAction],
    ) -> Result<(), StoreError> {
        let symbol = symbol.clone();
        let actions = actions.to_vec();
        self.with_writer(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO actions (symbol, kind, ts, amount, numerator, denominator, source)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (symbol, kind, ts) DO UPDATE SET amount = excluded.amount,
                         numerator = excluded.numerator, denominator = excluded.denominator,
                         source = excluded.source",
                )?;
                for a in &actions {
                    stmt.execute(params![
                        symbol.as_str(),
                        a.kind.as_str(),
                        a.ts,
                        a.amount,
                        a.numerator,
                        a.denominator,
                        a.source.as_str()
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn read_actions(
        &self,
        symbol: &Symbol,
        range: TimeRange,
    ) -> Result<Vec<CorporateAction>, StoreError> {
        let symbol = symbol.clone();
        self.with_reader(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT ts, kind, amount, numerator, denominator, source FROM actions
                 WHERE symbol = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts, kind",
            )?;
            let rows =
                stmt.query_map(params![symbol.as_str(), range.start(), range.end()], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, f64>(2)?,
                        r.get::<_, Option<f64>>(3)?,
                        r.get::<_, Option<f64>>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })?;
            let mut out = Vec::new();
            for row in rows {
                let (ts, kind, amount, numerator, denominator, source) = row?;
                let kind: ActionKind = kind.parse().map_err(|e: String| CorruptChunk(e))?;
                out.push(CorporateAction {
                    ts,
                    kind,
                    amount,
                    numerator,
                    denominator,
                    source: source.parse().unwrap_or_default(),
                });
            }
            Ok(out)
        })
        .await
    }
}
