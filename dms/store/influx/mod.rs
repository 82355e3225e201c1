//! The InfluxDB store: [`InfluxStore`] implements [`Store`] on InfluxDB 1.x (tested against
//! 1.6.7), 2.x and 3.x through line-protocol writes and InfluxQL reads (DESIGN §6).
//!
//! # Layout
//! - `client`: HTTP — URLs, auth, timeouts, status codes, the error mapping to [`StoreError`].
//! - [`line_protocol`]: encoding bars and actions for writes; tag and string escaping.
//! - [`influxql`]: quoting literals and identifiers; time conditions.
//! - `response`: streaming MessagePack/JSON decoding of `/query` responses.
//! - `parse`: decoded rows → bars, actions, series statistics.
//!
//! # Schema
//! Measurement `bars`, tags `symbol` and `interval`, float fields `open, high, low, close,
//! volume, adj_close` (`0.0` when the bar has none), string field `source`, time in whole
//! seconds. Measurement `actions`, tags `symbol` and `kind`, float fields `amount`,
//! `numerator` and `denominator` (`0.0` unless a split), string field `source`.
//!
//! # Semantics
//! - **Overwrites**: InfluxDB merges a rewrite of a point into it field by field, so every line
//!   carries every field (see [`line_protocol`]): one write replaces the point, nothing is
//!   deleted first, and a concurrent reader never sees fewer bars (each of its fields old or
//!   new; not necessarily all from the same write).
//!   A batch is split into requests of [`InfluxOptions::lines_per_request`] lines,
//!   [`InfluxOptions::writes_in_flight`] at a time; a failed batch may be partly stored (InfluxDB
//!   applies the good lines of a request it answers with 400, and a request that timed out or
//!   lost its connection may have been applied), and writing it again stores exactly the batch.
//! - **Reads** ask for MessagePack (see `response` for why not CSV) and decode each chunk of the
//!   response as it arrives; [`Store::read_fields`] selects only the fields asked for.
//!   Ranges are half-open `[start, end)`; bars come back sorted by time.
//! - **Latest**: one query for all series, `GROUP BY symbol, interval ORDER BY time DESC LIMIT
//!   1` (not `last(*)`, whose time is 0 on 1.x), first over the last days and then, for the
//!   series not found, over wider windows ([`LATEST_WINDOWS`]).
//! - **Symbols** are opaque text: escaped as tag values when written and as string literals in
//!   every query, so no symbol changes a query. Those line protocol cannot carry (see
//!   [`line_protocol`]) are refused as `Rejected`; reading one finds nothing.
//! - **Deletes never overlap a write of the same series** (a per-series gate, [`SeriesGate`]:
//!   writes share it, a delete takes it alone). InfluxDB 1.x (seen on 1.6.7, inmem index)
//!   loses sight of a series' points in a shard, until its next restart, when a `DELETE` of
//!   the series runs while a write is adding the series to that shard (a shard where it had
//!   no data: a backfill, a catch-up into new shards). The write is acknowledged and the points
//!   are on disk, but no query returns them, and writing them again does not help. Found by
//!   `tests/it/replication.rs` (a backup catching up a past backfill while shipping deletes of
//!   the same series), which failed about one run in three before the gate;
//!   `tests/it/influx.rs` `deletes_racing_a_backfill_into_new_shards_never_hide_its_bars`
//!   reproduces it within a few rounds without the gate. The gate holds
//!   within one process; two processes writing and deleting one series of one database are
//!   not protected (DMS has one owner per store).
//! - With `api: v1`, [`InfluxStore::connect`] creates the database when it is missing, with
//!   52-week shards (suits backfills) and, when `retention_policy` is set, that policy as its
//!   default; an existing database must already have the configured policy.

mod client;
pub mod influxql;
pub mod line_protocol;
mod parse;
mod response;
mod summary;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use tokio::task::JoinSet;

use self::client::{InfluxClient, STORE};
use self::line_protocol::{ACTIONS, BARS, LineError};
use self::parse::{
    ACTION_COLUMNS, ActionsSink, BAR_COLUMNS, BarsSink, CountSink, LatestSink, NamesSink,
    StatsSink, bar_columns,
};
pub use self::response::Format as ReadFormat;
use super::{BucketGrid, Fields, RangeDigest, SeriesStats, Store, StoreError, StoreHealth};
use crate::config::InfluxConfig;
use crate::domain::{ActionKind, Bar, CorporateAction, SeriesKey, Symbol, TimeRange};
use crate::validate::ValidatedBatch;

/// Above this many distinct symbols, `latest` asks for every series of the requested
/// intervals and filters locally instead of naming each symbol in the query.
const LATEST_NAMED_SYMBOLS: usize = 256;

/// The windows `latest` looks in, newest first, as seconds back from now (`None`: all of
/// time): each asks only for the series not found in the one before. A series' newest bar in
/// `[now - w, ∞)` is its newest bar, and most series of a maintained universe have one in the
/// last days, so InfluxDB opens one or two shard groups instead of every one since the first
/// bar (the latest of 10,000 daily series over 20 years of 52-week shards took 16 s in one
/// query over all of time, BENCHMARKS "Gaps").
const LATEST_WINDOWS: [Option<i64>; 4] = [
    Some(8 * 86_400),
    Some(400 * 86_400),
    Some(10 * 366 * 86_400),
    None,
];

/// Tuning. The defaults follow what `benches/influx.rs` measured on InfluxDB 1.6.7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfluxOptions {
    /// Lines per write request (InfluxDB's guidance: 5,000).
    pub lines_per_request: usize,
    /// Write requests of one batch in flight at once. On 1.6.7 with 2 cores, 2 measured within
    /// noise of 1 (InfluxDB is CPU-bound on ingest, and the next body is encoded while one is on
    /// the wire anyway), and with 1 a failed batch has stored a prefix of itself. Callers that
    /// want more throughput write several series concurrently.
    pub writes_in_flight: usize,
    /// Rows per chunk of a streamed query response.
    pub chunk_size: usize,
    /// The response format asked of `/query` (a server that answers JSON anyway is read as
    /// JSON).
    pub read_format: ReadFormat,
}

impl Default for InfluxOptions {
    fn default() -> InfluxOptions {
        InfluxOptions {
            lines_per_request: 5_000,
            writes_in_flight: 1,
            chunk_size: 10_000,
            read_format: ReadFormat::Msgpack,
        }
    }
}

/// A bar store in InfluxDB. Cheap to clone.
#[derive(Clone)]
pub struct InfluxStore {
    client: InfluxClient,
    options: InfluxOptions,
    gate: std::sync::Arc<SeriesGate>,
}

/// Keeps deletes of a series apart from its writes (see the module doc), shared by clones of
/// the store: a fixed set of
/// read-write locks, a series mapped to one by its hash; writes take it shared, deletes
/// exclusive. Series sharing a lock only make a delete wait for an unrelated write.
struct SeriesGate {
    stripes: Box<[tokio::sync::RwLock<()>]>,
}

impl SeriesGate {
    const STRIPES: usize = 64;

    fn new() -> SeriesGate {
        SeriesGate {
            stripes: (0..Self::STRIPES)
                .map(|_| tokio::sync::RwLock::new(()))
                .collect(),
        }
    }

    fn of(&self, key: &impl std::hash::Hash) -> &tokio::sync::RwLock<()> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(key);
        &self.stripes[(h % self.stripes.len() as u64) as usize]
    }
}

fn rejected(e: LineError) -> StoreError {
    StoreError::Rejected {
        store: STORE,
        message: e.to_string(),
    }
}

/// `symbol = '…' AND interval = '…'`.
fn series_filter(key: &SeriesKey) -> String {
    format!(
        "symbol = {} AND interval = {}",
        influxql::string(key.symbol.as_str()),
        influxql::string(key.interval.as_str())
    )
}

/// Whether a series of `symbol` can exist in InfluxDB (see [`line_protocol::check_tag_value`]).
/// Reads of one that cannot return nothing without asking; an empty symbol would otherwise
/// match every point that has no `symbol` tag.
fn storable(symbol: &Symbol) -> bool {
    line_protocol::check_tag_value("symbol", symbol.as_str()).is_ok()
}

impl InfluxStore {
    /// Connects with the default [`InfluxOptions`]; see [`InfluxStore::connect_with`].
    pub async fn connect(config: &InfluxConfig) -> Result<InfluxStore, StoreError> {
        InfluxStore::connect_with(config, InfluxOptions::default()).await
    }

    /// Pings the server and, with `api: v1`, creates the database when it is missing (or checks
    /// that the configured retention policy exists when it is not).
    pub async fn connect_with(
        config: &InfluxConfig,
        options: InfluxOptions,
    ) -> Result<InfluxStore, StoreError> {
        let client = InfluxClient::new(config, options.read_format, options.chunk_size)?;
        client.ping().await?;
        let store = InfluxStore {
            client,
            options,
            gate: std::sync::Arc::new(SeriesGate::new()),
        };
        if store.client.is_v1() {
            store.ensure_database().await?;
        }
        Ok(store)
    }

    /// The newest bar of each of `wanted` within `window`: one query, every series at once.
    async fn latest_in(
        &self,
        wanted: &HashSet<SeriesKey>,
        window: TimeRange,
    ) -> Result<HashMap<SeriesKey, Bar>, StoreError> {
        let intervals: BTreeSet<&str> = wanted.iter().map(|k| k.interval.as_str()).collect();
        let symbols: BTreeSet<&str> = wanted.iter().map(|k| k.symbol.as_str()).collect();
        let any_of = |tag: &str, values: &BTreeSet<&str>| {
            let terms: Vec<String> = values
                .iter()
                .map(|v| format!("{tag} = {}", influxql::string(v)))
                .collect();
            format!("({})", terms.join(" OR "))
        };
        let mut filter = any_of("interval", &intervals);
        if symbols.len() <= LATEST_NAMED_SYMBOLS {
            filter = format!("{} AND {filter}", any_of("symbol", &symbols));
        }
        let Some(time) = influxql::time_condition(window) else {
            return Ok(HashMap::new());
        };
        let q = format!(
            "SELECT {BAR_COLUMNS} FROM {BARS} WHERE {filter} AND {time} \
             GROUP BY symbol, interval ORDER BY time DESC LIMIT 1"
        );
        let mut sink = LatestSink::new(wanted);
        self.client.query(&q, &mut sink).await?;
        Ok(sink.out)
    }

    async fn ensure_database(&self) -> Result<(), StoreError> {
        let db = self.client.database();
        let mut databases = NamesSink::default();
        self.client.query("SHOW DATABASES", &mut databases).await?;
        if !databases.names.iter().any(|n| n == db) {
            let mut q = format!(
                "CREATE DATABASE {} WITH SHARD DURATION 52w",
                influxql::ident(db)
            );
            if let Some(rp) = self.client.retention_policy() {
                q.push_str(&format!(" NAME {}", influxql::ident(rp)));
            }
            self.client.execute(&q).await?;
            tracing::info!(
                database = db,
                retention_policy = self.client.retention_policy(),
                "created influxdb database"
            );
            return Ok(());
        }
        if let Some(rp) = self.client.retention_policy() {
            let mut policies = NamesSink::default();
            let q = format!("SHOW RETENTION POLICIES ON {}", influxql::ident(db));
            self.client.query(&q, &mut policies).await?;
            if !policies.names.iter().any(|n| n == rp) {
                return Err(StoreError::Rejected {
                    store: STORE,
                    message: format!(
                        "retention policy {rp:?} does not exist on database {db:?} \
                         (existing: {})",
                        policies.names.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// Sends `items` as line protocol, `lines_per_request` per request with up to
    /// `writes_in_flight` requests at once. Each request runs as its own task so that the next
    /// body is encoded while earlier ones are on the wire; the tasks are aborted if this
    /// future is dropped.
    async fn send_lines<T>(
        &self,
        items: &[T],
        line_len: usize,
        encode: impl Fn(&mut Vec<u8>, &T) -> Result<(), LineError>,
    ) -> Result<(), StoreError> {
        let in_flight = self.options.writes_in_flight.max(1);
        let mut tasks = JoinSet::new();
        for chunk in items.chunks(self.options.lines_per_request.max(1)) {
            let mut body = Vec::with_capacity(chunk.len() * line_len);
            for item in chunk {
                encode(&mut body, item).map_err(rejected)?;
            }
            while tasks.len() >= in_flight {
                finished(tasks.join_next().await)?;
            }
            let client = self.client.clone();
            let lines = chunk.len();
            tasks.spawn(async move { client.write(body, lines).await });
        }
        while !tasks.is_empty() {
            finished(tasks.join_next().await)?;
        }
        Ok(())
    }
}

/// The outcome of a finished write task.
fn finished(
    joined: Option<Result<Result<(), client::ClientError>, tokio::task::JoinError>>,
) -> Result<(), StoreError> {
    match joined {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(e.into()),
        Some(Err(e)) => Err(StoreError::Corrupt {
            store: STORE,
            message: format!("write task failed: {e}"),
        }),
    }
}

#[async_trait]
impl Store for InfluxStore {
    fn kind(&self) -> &'static str {
        STORE
    }

    async fn ping(&self) -> Result<StoreHealth, StoreError> {
        let version = self.client.ping().await?;
        Ok(StoreHealth {
            kind: STORE,
            location: self.client.location(),
            version,
        })
    }

    async fn write(&self, batch: &ValidatedBatch) -> Result<(), StoreError> {
        let key = batch.series();
        let prefix = line_protocol::bars_prefix(key.symbol.as_str(), key.interval.as_str())
            .map_err(rejected)?;
        let _writing = self.gate.of(key).read().await;
        self.send_lines(batch.bars(), prefix.len() + 128, |out, bar: &Bar| {
            line_protocol::push_bar(out, &prefix, bar)
        })
        .await
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
        let Some(time) = influxql::time_condition(range).filter(|_| storable(&series.symbol))
        else {
            return Ok(Vec::new());
        };
        let q = format!(
            "SELECT {} FROM {BARS} WHERE {} AND {time}",
            bar_columns(fields),
            series_filter(series)
        );
        let mut sink = BarsSink::default();
        self.client.query(&q, &mut sink).await?;
        let mut bars = sink.bars;
        if !bars.is_sorted_by_key(|b| b.ts) {
            bars.sort_by_key(|b| b.ts);
        }
        Ok(bars)
    }

    async fn latest(&self, series: &[SeriesKey]) -> Result<HashMap<SeriesKey, Bar>, StoreError> {
        let mut wanted: HashSet<SeriesKey> = series
            .iter()
            .filter(|k| storable(&k.symbol))
            .cloned()
            .collect();
        let mut out = HashMap::with_capacity(wanted.len());
        let now = chrono::Utc::now().timestamp();
        for back in LATEST_WINDOWS {
            if wanted.is_empty() {
                break;
            }
            let from = back.map_or(crate::validate::TS_MIN, |b| now.saturating_sub(b));
            let Ok(window) = TimeRange::new(from, crate::validate::TS_MAX) else {
                continue;
            };
            let found = self.latest_in(&wanted, window).await?;
            for k in found.keys() {
                wanted.remove(k);
            }
            out.extend(found);
        }
        Ok(out)
    }

    /// One `count(close)` query: InfluxDB counts from its index and block headers without
    /// sending a bar.
    async fn count(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, StoreError> {
        let Some(time) = influxql::time_condition(range).filter(|_| storable(&series.symbol))
        else {
            return Ok(0);
        };
        let filter = series_filter(series);
        let mut count = CountSink::default();
        let q = format!("SELECT count(close) FROM {BARS} WHERE {filter} AND {time}");
        self.client.query(&q, &mut count).await?;
        Ok(count.count)
    }

    async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, StoreError> {
        let Some(time) = influxql::time_condition(range).filter(|_| storable(&series.symbol))
        else {
            return Ok(0);
        };
        let _deleting = self.gate.of(series).write().await;
        let count = self.count(series, range).await?;
        if count > 0 {
            let filter = series_filter(series);
            let q = format!("DELETE FROM {BARS} WHERE {filter} AND {time}");
            self.client.execute(&q).await?;
        }
        Ok(count)
    }

    async fn list_series(&self) -> Result<Vec<SeriesStats>, StoreError> {
        let time = influxql::time_condition(TimeRange::ALL).unwrap_or_default();
        let q = ["count", "first", "last"]
            .map(|f| {
                format!("SELECT {f}(close) FROM {BARS} WHERE {time} GROUP BY symbol, interval")
            })
            .join("; ");
        let mut sink = StatsSink::default();
        self.client.query(&q, &mut sink).await?;
        let mut out = Vec::with_capacity(sink.stats.len());
        for (series, (count, first, last)) in sink.stats {
            if let (true, Some(first), Some(last)) = (count > 0, first, last) {
                out.push(SeriesStats {
                    series,
                    first,
                    last,
                    count,
                });
            }
        }
        Ok(out)
    }

    // Digests and the series list are computed by InfluxDB: see `summary`.
    async fn series_keys(&self) -> Result<Vec<SeriesKey>, StoreError> {
        summary::series_keys(&self.client).await
    }

    async fn digests(
        &self,
        s: &SeriesKey,
        r: &[TimeRange],
    ) -> Result<Vec<RangeDigest>, StoreError> {
        summary::digests(&self.client, s, r).await
    }

    async fn bucket_digests(
        &self,
        s: &SeriesKey,
        r: TimeRange,
        g: BucketGrid,
    ) -> Result<Vec<(i64, RangeDigest)>, StoreError> {
        summary::bucket_digests(&self.client, s, r, g).await
    }

    async fn write_actions(
        &self,
        symbol: &Symbol,
        actions: &[CorporateAction],
    ) -> Result<(), StoreError> {
        // One point per (kind, ts); the last of duplicates wins, as it would for bars.
        let mut by_kind: BTreeMap<ActionKind, BTreeMap<i64, &CorporateAction>> = BTreeMap::new();
        for a in actions {
            by_kind.entry(a.kind).or_default().insert(a.ts, a);
        }
        let mut lines: Vec<(&[u8], &CorporateAction)> = Vec::with_capacity(actions.len());
        let prefixes: Vec<Vec<u8>> = by_kind
            .keys()
            .map(|kind| line_protocol::actions_prefix(symbol.as_str(), kind.as_str()))
            .collect::<Result<_, _>>()
            .map_err(rejected)?;
        for (points, prefix) in by_kind.values().zip(&prefixes) {
            lines.extend(points.values().map(|a| (prefix.as_slice(), *a)));
        }
        self.send_lines(&lines, 128, |out, (prefix, action)| {
            line_protocol::push_action(out, prefix, action)
        })
        .await
    }

    async fn read_actions(
        &self,
        symbol: &Symbol,
        range: TimeRange,
    ) -> Result<Vec<CorporateAction>, StoreError> {
        let Some(time) = influxql::time_condition(range).filter(|_| storable(symbol)) else {
            return Ok(Vec::new());
        };
        let q = format!(
            "SELECT {ACTION_COLUMNS} FROM {ACTIONS} WHERE symbol = {} AND {time} GROUP BY kind",
            influxql::string(symbol.as_str())
        );
        let mut sink = ActionsSink::default();
        self.client.query(&q, &mut sink).await?;
        let mut actions = sink.actions;
        actions.sort_by_key(|a| (a.ts, a.kind));
        Ok(actions)
    }
}
