//! [`ChunkCache`]: decoded chunks of the primary held in an LRU bounded by `cache.max_bytes`,
//! with single-flight loads and write invalidation.
//!
//! # The rule it keeps
//! **A read never returns data older than the last acknowledged write.** The [`Writer`] calls
//! [`WriteListener::touched`] after the store write and before the write is acknowledged; by
//! the time `touched` returns, no cache entry and no in-flight load that could hold the old
//! bars of the touched chunks is reachable by a later request:
//!
//! - cached chunks overlapping the range are dropped;
//! - in-flight loads of those chunks are *detached* from the flight map: requests that already
//!   joined them (they started before the write was acknowledged, so the old bars are a valid
//!   answer for them) still get their result, but a new request starts a fresh load, and a
//!   detached load does not insert its result into the cache when it finishes.
//!
//! A load registers its flight *before* it reads the store, so a load that read the store
//! before the write landed is either still registered when `touched` runs (and gets detached)
//! or has already inserted its chunk (and `touched` drops it). Cached values are immutable
//! [`Columns`]: a write replaces a chunk, never edits one, so no reader sees a torn chunk.
//!
//! # What an entry holds
//! A chunk is loaded with the [`Fields`] its request needs: OHLCV for a plain read, OHLCV and
//! `adj_close` for an adjusted one (`source` is never part of an output). An entry records
//! what it was loaded with and answers every request it *covers*: a chunk loaded with
//! `adj_close` serves both kinds, one loaded without serves only plain reads, and an adjusted
//! miss on it loads the chunk again and replaces the entry (never the other way round). Each
//! entry may also keep *encoded bytes* of the whole chunk, under the [`EncodingKey`] the encoder
//! names (the cache does not know what they mean); they are derived from the entry's columns,
//! evicted before them, dropped with them, and stored only while those columns are still the
//! entry's ([`ChunkCache::put_encoded`]), so they can never outlive a write.
//!
//! # Single flight
//! Concurrent misses of one chunk share one store read: the first miss registers a
//! [`Shared`] future in the flight map; later misses clone it. Whichever waiter polls it drives
//! it, so a cancelled request does not strand the others. No lock is held across an `.await`:
//! the state is a std `Mutex` held only for map operations.
//!
//! [`Writer`]: crate::ingest::Writer

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use lru::LruCache;

use bytes::Bytes;

use crate::domain::{Interval, SeriesKey, Tiling, TimeRange};
use crate::format::{Columns, EncodingKey};
use crate::ingest::WriteListener;
use crate::store::{Fields, Store, StoreError};
use crate::telemetry::metrics;

/// Bookkeeping bytes charged to every cached chunk and every encoding on top of its data (key,
/// LRU links).
pub const ENTRY_OVERHEAD: usize = 160;

/// How the reader cuts a series into chunks (its unit of caching, loading and invalidation):
/// ten days of 1-minute bars (at most 14,400 bars, in proportion for other intraday
/// intervals), a year of daily bars, ten years of weekly, fifty of monthly.
///
/// Larger than the embedded store's chunks (`store::chunk::tiling`: a day of 1-minute bars),
/// which are sized so that an incremental update rewrites little; the reader wants fewer,
/// larger pieces — fewer cache entries and store round trips per read, encoded bytes worth
/// keeping — and pays for a write only by dropping and reloading one chunk. Chosen as whole
/// multiples of the store's spans, so a reader chunk maps onto whole store rows; correctness
/// does not depend on it.
pub fn chunk_tiling(interval: Interval) -> Tiling {
    Tiling::new(match interval {
        i if i.is_intraday() => i.nominal_secs() * 1440 * 10,
        Interval::D1 => 365 * 86_400,
        Interval::W1 => 3640 * 86_400,
        _ => 18_250 * 86_400,
    })
}

/// One chunk: a series and the start of its span.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    pub series: SeriesKey,
    pub start: i64,
}

impl ChunkKey {
    pub fn range(&self) -> TimeRange {
        chunk_tiling(self.series.interval).tile(self.start)
    }
}

/// What the cache has done since start-up (`GET /api/v1/cache`, `GET /api/v1/series`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CacheStats {
    /// `cache.max_bytes`.
    pub max_bytes: u64,
    /// Bytes held now (columns plus a fixed per-entry overhead).
    pub bytes: u64,
    /// Chunks held now.
    pub entries: u64,
    /// Encoded bytes of whole chunks held now (CSV rows, Arrow record batches), served
    /// without encoding again.
    pub text_entries: u64,
    /// Chunk lookups answered from the cache.
    pub hits: u64,
    /// Chunk lookups that had to wait for a store read (their own or a shared one).
    pub misses: u64,
    /// Store reads made to fill misses (lower than `misses` when concurrent misses shared one).
    pub loads: u64,
    /// Chunks dropped to stay within `max_bytes`.
    pub evictions: u64,
    /// Chunks dropped because a write touched them.
    pub invalidations: u64,
    /// Store reads running now.
    pub in_flight: u64,
}

/// A shared store error (a flight's result is cloned to every waiter).
type SharedError = Arc<StoreError>;
type FlightFuture = Shared<BoxFuture<'static, Result<Columns, SharedError>>>;

struct Flight {
    /// Tells this flight from a later one for the same chunk.
    id: u64,
    fut: FlightFuture,
}

type ExtentMap = HashMap<SeriesKey, (i64, i64)>;
type ListFuture = Shared<BoxFuture<'static, Result<Arc<ExtentMap>, SharedError>>>;

/// Series extents (`first`, `last` timestamps), used to clip open-ended reads; `None` until
/// loaded, and again after a touch too wide to fold in. Loaded with one `list_series` shared
/// by every request that needs them meanwhile (and started when the reader is built), under
/// the rule chunk loads keep: a touch detaches the list in flight, so a request that starts
/// after a write was acknowledged never joins a list fetched before it.
struct Extents {
    map: Option<ExtentMap>,
    /// Bumped by every touch: a list fetched across a touch is used by the requests that
    /// joined it, but not installed.
    generation: u64,
    /// The list in flight, if any (started at `generation`).
    loading: Option<ListFuture>,
}

/// A cached chunk: its columns and what they were loaded with.
struct Entry {
    cols: Columns,
    fields: Fields,
}

impl Entry {
    fn bytes(&self) -> usize {
        ENTRY_OVERHEAD + self.cols.bytes()
    }
}

/// Whether columns loaded with `held` answer a request for `wanted`.
fn covers(held: Fields, wanted: Fields) -> bool {
    (held.adj_close || !wanted.adj_close) && (held.source || !wanted.source)
}

/// Every field set a flight may have been started with.
const FIELD_SETS: [Fields; 4] = [
    Fields::OHLCV,
    Fields {
        adj_close: true,
        source: false,
    },
    Fields {
        adj_close: false,
        source: true,
    },
    Fields::ALL,
];

/// Encoded bytes of one whole chunk, one per encoding.
type Encodings = Vec<(EncodingKey, Bytes)>;

fn encodings_bytes(e: &Encodings) -> usize {
    e.iter().map(|(_, b)| b.len() + ENTRY_OVERHEAD).sum()
}

struct State {
    lru: LruCache<ChunkKey, Entry>,
    /// Encoded bytes of whole chunks by chunk, each under its encoder's key: derived from the
    /// cached columns, dropped with them on a write, evicted before them.
    encoded: LruCache<ChunkKey, Encodings>,
    /// Encodings held in `encoded`.
    encodings: usize,
    /// Columns and encodings together.
    bytes: usize,
    /// In-flight loads, by chunk and the fields they read.
    flights: HashMap<(ChunkKey, Fields), Flight>,
    extents: Extents,
}

impl State {
    /// Drops the encodings of `key`; returns how many bytes they held.
    fn drop_encoded(&mut self, key: &ChunkKey) {
        if let Some(e) = self.encoded.pop(key) {
            self.bytes -= encodings_bytes(&e);
            self.encodings -= e.len();
        }
    }

    /// Drops `key`'s entry and encodings; true if there was an entry.
    fn drop_chunk(&mut self, key: &ChunkKey) -> bool {
        self.drop_encoded(key);
        match self.lru.pop(key) {
            Some(v) => {
                self.bytes -= v.bytes();
                true
            }
            None => false,
        }
    }
}

/// The reader's chunk cache. Shared as an `Arc`; also the [`WriteListener`] that keeps it true.
pub struct ChunkCache {
    max_bytes: usize,
    /// A std `Mutex`: held only for map operations, never across an `.await`.
    state: Mutex<State>,
    next_flight: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
}

/// Touches spanning more chunks than this scan the cache instead of enumerating chunk starts.
const ENUMERATE_LIMIT: i64 = 4096;

/// An extent wider than this (a delete of "everything") makes the extents unknown instead.
const MAX_EXTENT_SECS: i64 = 400 * 366 * 86_400;

impl ChunkCache {
    /// A cache holding at most `max_bytes` (0 disables caching; loads are still shared).
    pub fn new(max_bytes: u64) -> Arc<ChunkCache> {
        Arc::new(ChunkCache {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            state: Mutex::new(State {
                lru: LruCache::unbounded(),
                encoded: LruCache::unbounded(),
                encodings: 0,
                bytes: 0,
                flights: HashMap::new(),
                extents: Extents {
                    map: None,
                    generation: 0,
                    loading: None,
                },
            }),
            next_flight: AtomicU64::new(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> CacheStats {
        let st = self.lock();
        CacheStats {
            max_bytes: self.max_bytes as u64,
            bytes: st.bytes as u64,
            entries: st.lru.len() as u64,
            text_entries: st.encodings as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            in_flight: st.flights.len() as u64,
        }
    }

    /// Drops every cached chunk (benchmarks measure cold reads with it; in-flight loads finish
    /// and are cached as usual).
    pub fn clear(&self) {
        let mut st = self.lock();
        st.lru.clear();
        st.encoded.clear();
        st.encodings = 0;
        st.bytes = 0;
        metrics().cache_bytes.set(0);
    }

    /// The encoded bytes of a whole chunk under `encoding`, if cached.
    pub fn encoded(&self, key: &ChunkKey, encoding: EncodingKey) -> Option<Bytes> {
        let mut st = self.lock();
        let e = st.encoded.get(key)?;
        e.iter()
            .find(|(k, _)| *k == encoding)
            .map(|(_, b)| b.clone())
    }

    /// Caches the encoded bytes of a whole chunk, made from `from` — but only while `from` is
    /// still the chunk's cached columns: if a write dropped them since, the bytes may be stale.
    pub fn put_encoded(&self, key: &ChunkKey, from: &Columns, encoding: EncodingKey, bytes: Bytes) {
        let size = bytes.len() + ENTRY_OVERHEAD;
        if size > self.max_bytes / 4 {
            return;
        }
        let mut st = self.lock();
        let current = st
            .lru
            .peek(key)
            .is_some_and(|e| e.cols.ts.ptr_eq(&from.ts) && e.cols.len() == from.len());
        if !current {
            return;
        }
        let st = &mut *st;
        let list = st.encoded.get_or_insert_mut(key.clone(), Vec::new);
        match list.iter_mut().find(|(k, _)| *k == encoding) {
            Some((_, old)) => {
                st.bytes -= old.len();
                *old = bytes;
                st.bytes += size - ENTRY_OVERHEAD;
            }
            None => {
                list.push((encoding, bytes));
                st.encodings += 1;
                st.bytes += size;
            }
        }
        self.evict(st);
    }

    /// The cached chunk, without touching recency or counters (for counting bars).
    pub fn peek(&self, key: &ChunkKey) -> Option<Columns> {
        self.lock().lru.peek(key).map(|e| e.cols.clone())
    }

    /// Every chunk of `keys` if all are cached with `fields` (counted as hits), else `None`
    /// (nothing counted).
    pub fn get_all_cached(&self, keys: &[&ChunkKey], fields: Fields) -> Option<Vec<Columns>> {
        let mut st = self.lock();
        let held =
            |st: &State, k: &ChunkKey| st.lru.peek(k).is_some_and(|e| covers(e.fields, fields));
        if !keys.iter().all(|k| held(&st, k)) {
            return None;
        }
        let out: Vec<Columns> = keys
            .iter()
            .filter_map(|k| st.lru.get(*k).map(|e| e.cols.clone()))
            .collect();
        drop(st);
        self.hit(out.len() as u64);
        Some(out)
    }

    fn hit(&self, n: u64) {
        self.hits.fetch_add(n, Ordering::Relaxed);
        metrics().cache_hits.inc_by(n);
    }

    /// The chunk with (at least) `fields`, from the cache or from `store` (one read shared by
    /// concurrent misses).
    pub async fn get(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        key: &ChunkKey,
        fields: Fields,
    ) -> Result<Columns, StoreError> {
        let fut = {
            let mut st = self.lock();
            if let Some(e) = st.lru.get(key)
                && covers(e.fields, fields)
            {
                let c = e.cols.clone();
                drop(st);
                self.hit(1);
                return Ok(c);
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
            metrics().cache_misses.inc();
            let joinable = FIELD_SETS
                .iter()
                .filter(|f| covers(**f, fields))
                .find_map(|f| st.flights.get(&(key.clone(), *f)));
            match joinable {
                Some(f) => f.fut.clone(),
                None => {
                    let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
                    let fut = load(Arc::downgrade(self), store.clone(), key.clone(), fields, id)
                        .boxed()
                        .shared();
                    st.flights.insert(
                        (key.clone(), fields),
                        Flight {
                            id,
                            fut: fut.clone(),
                        },
                    );
                    fut
                }
            }
        };
        fut.await.map_err(|e| clone_error(&e))
    }

    /// Called by a finished load: unregisters its flight and, if no write detached it in the
    /// meantime, caches the chunk — unless the entry already there holds more fields (it is as
    /// fresh: a write would have dropped it).
    fn complete(&self, key: ChunkKey, fields: Fields, id: u64, cols: Option<&Columns>) {
        let mut st = self.lock();
        let flight = (key, fields);
        let ours = st.flights.get(&flight).is_some_and(|f| f.id == id);
        if !ours {
            return;
        }
        st.flights.remove(&flight);
        let (key, fields) = flight;
        let wider = st.lru.peek(&key).is_some_and(|e| covers(e.fields, fields));
        if let (Some(cols), false) = (cols, wider) {
            self.insert(&mut st, key, cols.clone(), fields);
        }
    }

    fn insert(&self, st: &mut State, key: ChunkKey, cols: Columns, fields: Fields) {
        let entry = Entry { cols, fields };
        let size = entry.bytes();
        if size > self.max_bytes {
            return;
        }
        // Encodings were made from the entry being replaced.
        st.drop_encoded(&key);
        if let Some((_, old)) = st.lru.push(key, entry) {
            st.bytes -= old.bytes();
        }
        st.bytes += size;
        self.evict(st);
    }

    /// Evicts least recently used entries, texts first, until within `max_bytes`.
    fn evict(&self, st: &mut State) {
        let mut evicted = 0u64;
        while st.bytes > self.max_bytes {
            if let Some((_, e)) = st.encoded.pop_lru() {
                st.bytes -= encodings_bytes(&e);
                st.encodings -= e.len();
                continue;
            }
            match st.lru.pop_lru() {
                Some((_, v)) => {
                    st.bytes -= v.bytes();
                    evicted += 1;
                }
                None => break,
            }
        }
        if evicted > 0 {
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
            metrics().cache_evictions.inc_by(evicted);
        }
        metrics().cache_bytes.set(st.bytes as i64);
    }

    /// `(first, last)` of each series that has bars (`None` for one that has none), from the
    /// extents the cache keeps, loading them with one `list_series` when unknown (shared with
    /// the requests already waiting for one, unless a write touched anything since it began).
    pub async fn extents(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        series: &[SeriesKey],
    ) -> Result<Vec<Option<(i64, i64)>>, StoreError> {
        let fut = {
            let mut st = self.lock();
            if let Some(map) = &st.extents.map {
                return Ok(series.iter().map(|s| map.get(s).copied()).collect());
            }
            match &st.extents.loading {
                Some(f) => f.clone(),
                None => {
                    let generation = st.extents.generation;
                    let fut = list_extents(Arc::downgrade(self), store.clone(), generation)
                        .boxed()
                        .shared();
                    st.extents.loading = Some(fut.clone());
                    fut
                }
            }
        };
        // The list began after this request did (a touch since would have detached it), so
        // it answers this request.
        let map = fut.await.map_err(|e| clone_error(&e))?;
        Ok(series.iter().map(|s| map.get(s).copied()).collect())
    }

    /// Starts loading the extents in the background, so the first request does not wait for
    /// them (no-op outside a tokio runtime).
    pub fn warm_extents(self: &Arc<Self>, store: &Arc<dyn Store>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (cache, store) = (self.clone(), store.clone());
        rt.spawn(async move {
            if let Err(e) = cache.extents(&store, &[]).await {
                tracing::debug!(error = %e, "series extents not loaded at start-up");
            }
        });
    }

    /// Drops every cached chunk and in-flight load of `series` overlapping `range`, and widens
    /// the series' extent to cover `range`.
    fn invalidate(&self, series: &SeriesKey, range: TimeRange) {
        let tiling = chunk_tiling(series.interval);
        let mut st = self.lock();
        let mut dropped = 0u64;
        if tiling.count(range) <= ENUMERATE_LIMIT {
            for start in tiling.starts(range) {
                let key = ChunkKey {
                    series: series.clone(),
                    start,
                };
                dropped += st.drop_chunk(&key) as u64;
                for f in FIELD_SETS {
                    st.flights.remove(&(key.clone(), f));
                }
            }
        } else {
            let (first, last) = (
                tiling.start_of(range.start()),
                tiling.start_of(range.end() - 1),
            );
            let hit = |k: &ChunkKey| k.series == *series && k.start >= first && k.start <= last;
            let doomed: Vec<ChunkKey> = st
                .lru
                .iter()
                .map(|(k, _)| k)
                .chain(st.encoded.iter().map(|(k, _)| k))
                .filter(|k| hit(k))
                .cloned()
                .collect();
            for k in doomed {
                dropped += st.drop_chunk(&k) as u64;
            }
            st.flights.retain(|(k, _), _| !hit(k));
        }
        let ext = &mut st.extents;
        ext.generation += 1;
        ext.loading = None;
        if let Some(map) = &mut ext.map {
            let (lo, hi) = (range.start(), range.end() - 1);
            let (lo, hi) = match map.get(series) {
                Some(&(a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            };
            if hi.saturating_sub(lo) > MAX_EXTENT_SECS {
                ext.map = None;
            } else {
                map.insert(series.clone(), (lo, hi));
            }
        }
        metrics().cache_bytes.set(st.bytes as i64);
        drop(st);
        self.invalidations.fetch_add(dropped, Ordering::Relaxed);
    }
}

impl WriteListener for ChunkCache {
    fn touched(&self, series: &SeriesKey, range: TimeRange) {
        self.invalidate(series, range);
    }
}

/// Reads one chunk from the store. Holds only a weak reference to the cache: the flight map
/// owns this future, and must not keep the cache alive through it.
async fn load(
    cache: Weak<ChunkCache>,
    store: Arc<dyn Store>,
    key: ChunkKey,
    fields: Fields,
    id: u64,
) -> Result<Columns, SharedError> {
    if let Some(c) = cache.upgrade() {
        c.loads.fetch_add(1, Ordering::Relaxed);
    }
    let res = store.read_fields(&key.series, key.range(), fields).await;
    let res = res.map(|bars| {
        let mut cols = Columns::from_bars(&bars);
        if !fields.adj_close {
            // A store may send more than asked; keep what the entry says it holds.
            cols.adj_close = None;
        }
        cols
    });
    if let Some(c) = cache.upgrade() {
        c.complete(key, fields, id, res.as_ref().ok());
    }
    res.map_err(Arc::new)
}

/// Lists the series for [`ChunkCache::extents`]; installs the extents (and retires itself)
/// only if no touch happened since it began at `generation`.
async fn list_extents(
    cache: Weak<ChunkCache>,
    store: Arc<dyn Store>,
    generation: u64,
) -> Result<Arc<ExtentMap>, SharedError> {
    let listed = store.list_series().await.map_err(Arc::new).map(|list| {
        let map: ExtentMap = list
            .into_iter()
            .map(|s| (s.series, (s.first, s.last)))
            .collect();
        Arc::new(map)
    });
    if let Some(c) = cache.upgrade() {
        let mut st = c.lock();
        if st.extents.generation == generation {
            st.extents.loading = None;
            if let Ok(map) = &listed {
                st.extents.map = Some(ExtentMap::clone(map));
            }
        }
    }
    listed
}

/// A copy of a shared store error, for a waiter.
fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable { store, message } => StoreError::Unavailable {
            store,
            message: message.clone(),
        },
        StoreError::Rejected { store, message } => StoreError::Rejected {
            store,
            message: message.clone(),
        },
        StoreError::Corrupt { store, message } => StoreError::Corrupt {
            store,
            message: message.clone(),
        },
    }
}

/// The chunks of `series` covering `range`, in time order.
pub fn chunks_of(series: &SeriesKey, range: TimeRange) -> impl Iterator<Item = ChunkKey> + '_ {
    chunk_tiling(series.interval)
        .starts(range)
        .map(move |start| ChunkKey {
            series: series.clone(),
            start,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Symbol;

    const CSV: EncodingKey = EncodingKey::new("csv", 0);
    const CSV_ADJUSTED: EncodingKey = EncodingKey::new("csv", 1);

    #[test]
    fn chunks_tile_a_range_without_gaps_or_overlap() {
        let series = SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::M1);
        let span = chunk_tiling(Interval::M1).span();
        assert_eq!(span, 10 * 86_400);
        let r = TimeRange::new(-span - 5, 3 * span + 1).unwrap();
        let keys: Vec<ChunkKey> = chunks_of(&series, r).collect();
        assert_eq!(keys.first().unwrap().start, -2 * span);
        assert_eq!(keys.last().unwrap().start, 3 * span);
        for w in keys.windows(2) {
            assert_eq!(w[0].range().end(), w[1].range().start());
        }
        assert_eq!(chunk_tiling(Interval::D1).start_of(365 * 86_400 - 1), 0);
        // Reader chunks are whole multiples of the embedded store's chunks.
        for i in Interval::ALL {
            let (ours, store) = (
                chunk_tiling(i).span(),
                crate::store::chunk::tiling(i).span(),
            );
            assert_eq!(ours % store, 0, "{i}");
        }
    }

    #[test]
    fn a_touch_drops_overlapping_chunks_and_widens_extents() {
        let cache = ChunkCache::new(1 << 20);
        let series = SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::D1);
        let day = 86_400;
        {
            let mut st = cache.lock();
            st.extents.map = Some(HashMap::from([(series.clone(), (10 * day, 20 * day))]));
            for start in [0, 365 * day] {
                let key = ChunkKey {
                    series: series.clone(),
                    start,
                };
                cache.insert(&mut st, key, Columns::empty(), Fields::OHLCV);
            }
        }
        assert_eq!(cache.stats().entries, 2);
        cache.touched(&series, TimeRange::new(400 * day, 401 * day).unwrap());
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.invalidations), (1, 1));
        assert_eq!(stats.bytes, ENTRY_OVERHEAD as u64);
        let st = cache.lock();
        assert_eq!(
            st.extents.map.as_ref().unwrap()[&series],
            (10 * day, 401 * day - 1)
        );
    }

    fn bar(c: f64, adj: Option<f64>) -> crate::domain::Bar {
        crate::domain::Bar {
            ts: 86_400,
            open: c,
            high: c,
            low: c,
            close: c,
            volume: 1.0,
            adj_close: adj,
            source: Default::default(),
        }
    }

    #[test]
    fn encoded_bytes_are_kept_only_while_their_columns_are_the_cached_ones() {
        let cache = ChunkCache::new(1 << 20);
        let series = SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::D1);
        let key = ChunkKey {
            series: series.clone(),
            start: 0,
        };
        let old = Columns::from_bars(&[bar(1.0, None)]);
        cache.insert(&mut cache.lock(), key.clone(), old.clone(), Fields::OHLCV);
        cache.put_encoded(&key, &old, CSV, Bytes::from_static(b"old"));
        assert_eq!(cache.encoded(&key, CSV).unwrap(), "old");
        assert!(cache.encoded(&key, CSV_ADJUSTED).is_none());

        // A write drops the bytes with the chunk; bytes made from the old columns afterwards
        // (a request that was already encoding) are refused, also once new columns are cached.
        cache.touched(&series, TimeRange::new(86_400, 86_401).unwrap());
        assert!(cache.encoded(&key, CSV).is_none());
        cache.put_encoded(&key, &old, CSV, Bytes::from_static(b"old"));
        assert!(cache.encoded(&key, CSV).is_none());
        let new = Columns::from_bars(&[bar(2.0, None)]);
        cache.insert(&mut cache.lock(), key.clone(), new.clone(), Fields::OHLCV);
        cache.put_encoded(&key, &old, CSV, Bytes::from_static(b"old"));
        assert!(cache.encoded(&key, CSV).is_none());
        cache.put_encoded(&key, &new, CSV, Bytes::from_static(b"new"));
        cache.put_encoded(&key, &new, CSV_ADJUSTED, Bytes::from_static(b"adj!"));
        assert_eq!(cache.encoded(&key, CSV).unwrap(), "new");
        assert_eq!(cache.stats().text_entries, 2);
        {
            let st = cache.lock();
            let want = ENTRY_OVERHEAD + new.bytes() + (3 + ENTRY_OVERHEAD) + (4 + ENTRY_OVERHEAD);
            assert_eq!(st.bytes, want);
        }
        // Replacing the entry (an adjusted load of the same chunk) drops its encodings too.
        let wide = Columns::from_bars(&[bar(2.0, Some(1.0))]);
        let fields = Fields {
            adj_close: true,
            source: false,
        };
        cache.insert(&mut cache.lock(), key.clone(), wide.clone(), fields);
        assert!(cache.encoded(&key, CSV).is_none());
        let stats = cache.stats();
        assert_eq!(stats.text_entries, 0);
        assert_eq!(stats.bytes as usize, ENTRY_OVERHEAD + wide.bytes());
    }

    #[test]
    fn an_entry_serves_the_requests_its_fields_cover() {
        let ohlcv = Fields::OHLCV;
        let adj = Fields {
            adj_close: true,
            source: false,
        };
        assert!(covers(adj, ohlcv) && covers(adj, adj) && covers(ohlcv, ohlcv));
        assert!(!covers(ohlcv, adj));
        assert!(covers(Fields::ALL, adj) && !covers(adj, Fields::ALL));
        let cache = ChunkCache::new(1 << 20);
        let key = ChunkKey {
            series: SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::D1),
            start: 0,
        };
        let plain = Columns::from_bars(&[bar(2.0, None)]);
        cache.insert(&mut cache.lock(), key.clone(), plain, ohlcv);
        assert!(cache.get_all_cached(&[&key], ohlcv).is_some());
        assert!(cache.get_all_cached(&[&key], adj).is_none());
        // A finished plain load does not replace a wider entry.
        let wide = Columns::from_bars(&[bar(2.0, Some(1.0))]);
        cache.insert(&mut cache.lock(), key.clone(), wide, adj);
        let id = 99;
        cache.lock().flights.insert(
            (key.clone(), ohlcv),
            Flight {
                id,
                fut: futures::future::pending().boxed().shared(),
            },
        );
        cache.complete(
            key.clone(),
            ohlcv,
            id,
            Some(&Columns::from_bars(&[bar(2.0, None)])),
        );
        let got = cache
            .get_all_cached(&[&key], adj)
            .expect("still the wide entry");
        assert!(got[0].adj_close.is_some());
        assert_eq!(cache.stats().in_flight, 0);
    }
}
