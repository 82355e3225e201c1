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

use super::columns::{Columns, ENTRY_OVERHEAD};
use crate::domain::{Interval, SeriesKey, TimeRange};
use crate::ingest::WriteListener;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;
use bytes::Bytes;

/// The span of one reader chunk for an interval, in seconds: ten days of 1-minute bars (at
/// most 14,400 bars, in proportion for other intraday intervals), a year of daily bars, ten
/// years of weekly, fifty of monthly. Chosen as whole multiples of the embedded store's own
/// chunk spans, so a chunk read maps onto whole store rows; correctness does not depend on it.
pub fn chunk_span(interval: Interval) -> i64 {
    match interval {
        i if i.is_intraday() => i.nominal_secs() * 1440 * 10,
        Interval::D1 => 365 * 86_400,
        Interval::W1 => 3640 * 86_400,
        _ => 18_250 * 86_400,
    }
}

/// The start of the chunk holding `ts`.
pub fn chunk_start(interval: Interval, ts: i64) -> i64 {
    let s = chunk_span(interval);
    ts.div_euclid(s) * s
}

/// One chunk: a series and the start of its span.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    pub series: SeriesKey,
    pub start: i64,
}

impl ChunkKey {
    pub fn range(&self) -> TimeRange {
        TimeRange::new(self.start, self.start + chunk_span(self.series.interval))
            .expect("spans are positive")
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
    /// Encoded texts of whole chunks held now (CSV rows, served without re-formatting).
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

/// Series extents (`first`, `last` timestamps), used to clip open-ended reads; `None` until
/// loaded, and again after a touch too wide to fold in.
struct Extents {
    map: Option<HashMap<SeriesKey, (i64, i64)>>,
    /// Bumped by every touch: a list fetched across a touch is used but not installed.
    generation: u64,
}

struct State {
    lru: LruCache<ChunkKey, Columns>,
    /// Encoded bytes of whole chunks (CSV rows, Arrow IPC messages), by chunk and [`TextKind`]: derived from the
    /// cached columns, dropped with them on a write, evicted before them.
    text: LruCache<(ChunkKey, TextKind), Bytes>,
    /// Columns and text together.
    bytes: usize,
    flights: HashMap<ChunkKey, Flight>,
    extents: Extents,
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

/// Which encoding of a chunk a text entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextKind {
    Csv,
    CsvAdjusted,
    /// An Arrow IPC record-batch message of the chunk.
    Arrow,
    ArrowAdjusted,
}

impl TextKind {
    const ALL: [TextKind; 4] = [
        TextKind::Csv,
        TextKind::CsvAdjusted,
        TextKind::Arrow,
        TextKind::ArrowAdjusted,
    ];
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
                text: LruCache::unbounded(),
                bytes: 0,
                flights: HashMap::new(),
                extents: Extents {
                    map: None,
                    generation: 0,
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
            text_entries: st.text.len() as u64,
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
        st.text.clear();
        st.bytes = 0;
        metrics().cache_bytes.set(0);
    }

    /// The encoded text of a whole chunk, if cached.
    pub fn text(&self, key: &ChunkKey, kind: TextKind) -> Option<Bytes> {
        self.lock().text.get(&(key.clone(), kind)).cloned()
    }

    /// Caches the encoded text of a whole chunk, made from `from` — but only while `from` is
    /// still the chunk's cached columns: if a write dropped them since, the text may be stale.
    pub fn put_text(&self, key: &ChunkKey, from: &Columns, kind: TextKind, text: Bytes) {
        let size = text.len() + ENTRY_OVERHEAD;
        if size > self.max_bytes / 4 {
            return;
        }
        let mut st = self.lock();
        let current = st
            .lru
            .peek(key)
            .is_some_and(|c| c.ts.ptr_eq(&from.ts) && c.len() == from.len());
        if !current {
            return;
        }
        if let Some((_, old)) = st.text.push((key.clone(), kind), text) {
            st.bytes -= old.len() + ENTRY_OVERHEAD;
        }
        st.bytes += size;
        self.evict(&mut st);
    }

    /// The cached chunk, without touching recency or counters (for counting bars).
    pub fn peek(&self, key: &ChunkKey) -> Option<Columns> {
        self.lock().lru.peek(key).cloned()
    }

    /// Every chunk of `keys` if all are cached (counted as hits), else `None` (nothing counted).
    pub fn get_all_cached(&self, keys: &[&ChunkKey]) -> Option<Vec<Columns>> {
        let mut st = self.lock();
        if !keys.iter().all(|k| st.lru.contains(k)) {
            return None;
        }
        let out: Vec<Columns> = keys
            .iter()
            .filter_map(|k| st.lru.get(*k).cloned())
            .collect();
        drop(st);
        self.hit(out.len() as u64);
        Some(out)
    }

    fn hit(&self, n: u64) {
        self.hits.fetch_add(n, Ordering::Relaxed);
        metrics().cache_hits.inc_by(n);
    }

    /// The chunk, from the cache or from `store` (one read shared by concurrent misses).
    pub async fn get(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        key: &ChunkKey,
    ) -> Result<Columns, StoreError> {
        let fut = {
            let mut st = self.lock();
            if let Some(c) = st.lru.get(key) {
                let c = c.clone();
                drop(st);
                self.hit(1);
                return Ok(c);
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
            metrics().cache_misses.inc();
            match st.flights.get(key) {
                Some(f) => f.fut.clone(),
                None => {
                    let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
                    let fut = load(Arc::downgrade(self), store.clone(), key.clone(), id)
                        .boxed()
                        .shared();
                    st.flights.insert(
                        key.clone(),
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
    /// meantime, caches the chunk.
    fn complete(&self, key: ChunkKey, id: u64, cols: Option<&Columns>) {
        let mut st = self.lock();
        let ours = st.flights.get(&key).is_some_and(|f| f.id == id);
        if !ours {
            return;
        }
        st.flights.remove(&key);
        if let Some(cols) = cols {
            self.insert(&mut st, key, cols.clone());
        }
    }

    fn insert(&self, st: &mut State, key: ChunkKey, cols: Columns) {
        let size = cols.bytes();
        if size > self.max_bytes {
            return;
        }
        if let Some((_, old)) = st.lru.push(key, cols) {
            st.bytes -= old.bytes();
        }
        st.bytes += size;
        self.evict(st);
    }

    /// Evicts least recently used entries, texts first, until within `max_bytes`.
    fn evict(&self, st: &mut State) {
        let mut evicted = 0u64;
        while st.bytes > self.max_bytes {
            if let Some((_, t)) = st.text.pop_lru() {
                st.bytes -= t.len() + ENTRY_OVERHEAD;
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
    /// extents the cache keeps, loading them with one `list_series` when unknown.
    pub async fn extents(
        &self,
        store: &Arc<dyn Store>,
        series: &[SeriesKey],
    ) -> Result<Vec<Option<(i64, i64)>>, StoreError> {
        let generation = {
            let st = self.lock();
            if let Some(map) = &st.extents.map {
                return Ok(series.iter().map(|s| map.get(s).copied()).collect());
            }
            st.extents.generation
        };
        let listed = store.list_series().await?;
        let map: HashMap<SeriesKey, (i64, i64)> = listed
            .into_iter()
            .map(|s| (s.series, (s.first, s.last)))
            .collect();
        let out = series.iter().map(|s| map.get(s).copied()).collect();
        // The list was fetched after this request started, so it answers this request; it
        // is kept for later ones only if no write touched anything while it was fetched.
        let mut st = self.lock();
        if st.extents.generation == generation {
            st.extents.map = Some(map);
        }
        Ok(out)
    }

    /// Drops every cached chunk and in-flight load of `series` overlapping `range`, and widens
    /// the series' extent to cover `range`.
    fn invalidate(&self, series: &SeriesKey, range: TimeRange) {
        let span = chunk_span(series.interval);
        let first = chunk_start(series.interval, range.start());
        let last = chunk_start(series.interval, range.end() - 1);
        let mut st = self.lock();
        let mut dropped = 0u64;
        if (last - first) / span < ENUMERATE_LIMIT {
            let mut start = first;
            while start <= last {
                let key = ChunkKey {
                    series: series.clone(),
                    start,
                };
                if let Some(v) = st.lru.pop(&key) {
                    st.bytes -= v.bytes();
                    dropped += 1;
                }
                for kind in TextKind::ALL {
                    if let Some(t) = st.text.pop(&(key.clone(), kind)) {
                        st.bytes -= t.len() + ENTRY_OVERHEAD;
                    }
                }
                st.flights.remove(&key);
                start += span;
            }
        } else {
            let hit = |k: &ChunkKey| k.series == *series && k.start >= first && k.start <= last;
            let doomed: Vec<ChunkKey> = st
                .lru
                .iter()
                .filter(|(k, _)| hit(k))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                if let Some(v) = st.lru.pop(&k) {
                    st.bytes -= v.bytes();
                    dropped += 1;
                }
            }
            let doomed: Vec<(ChunkKey, TextKind)> = st
                .text
                .iter()
                .filter(|((k, _), _)| hit(k))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                if let Some(t) = st.text.pop(&k) {
                    st.bytes -= t.len() + ENTRY_OVERHEAD;
                }
            }
            st.flights.retain(|k, _| !hit(k));
        }
        let ext = &mut st.extents;
        ext.generation += 1;
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
    id: u64,
) -> Result<Columns, SharedError> {
    if let Some(c) = cache.upgrade() {
        c.loads.fetch_add(1, Ordering::Relaxed);
    }
    let res = store.read(&key.series, key.range()).await;
    let res = res.map(|bars| Columns::from_bars(&bars));
    if let Some(c) = cache.upgrade() {
        c.complete(key, id, res.as_ref().ok());
    }
    res.map_err(Arc::new)
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
    let span = chunk_span(series.interval);
    let first = chunk_start(series.interval, range.start());
    let last = chunk_start(series.interval, range.end() - 1);
    (0..=(last - first) / span).map(move |k| ChunkKey {
        series: series.clone(),
        start: first + k * span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Symbol;

    #[test]
    fn chunks_tile_a_range_without_gaps_or_overlap() {
        let series = SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::M1);
        let span = chunk_span(Interval::M1);
        assert_eq!(span, 10 * 86_400);
        let r = TimeRange::new(-span - 5, 3 * span + 1).unwrap();
        let keys: Vec<ChunkKey> = chunks_of(&series, r).collect();
        assert_eq!(keys.first().unwrap().start, -2 * span);
        assert_eq!(keys.last().unwrap().start, 3 * span);
        for w in keys.windows(2) {
            assert_eq!(w[0].range().end(), w[1].range().start());
        }
        assert_eq!(chunk_start(Interval::D1, 365 * 86_400 - 1), 0);
        // Reader chunks are whole multiples of the embedded store's chunks.
        for i in Interval::ALL {
            assert_eq!(chunk_span(i) % crate::store::chunk::span(i), 0, "{i}");
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
                cache.insert(&mut st, key, Columns::empty());
            }
        }
        assert_eq!(cache.stats().entries, 2);
        cache.touched(&series, TimeRange::new(400 * day, 401 * day).unwrap());
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.invalidations), (1, 1));
        assert_eq!(stats.bytes, crate::reader::columns::ENTRY_OVERHEAD as u64);
        let st = cache.lock();
        assert_eq!(
            st.extents.map.as_ref().unwrap()[&series],
            (10 * day, 401 * day - 1)
        );
    }

    #[test]
    fn text_is_kept_only_while_its_columns_are_the_cached_ones() {
        let cache = ChunkCache::new(1 << 20);
        let series = SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::D1);
        let key = ChunkKey {
            series: series.clone(),
            start: 0,
        };
        let bar = |c: f64| crate::domain::Bar {
            ts: 86_400,
            open: c,
            high: c,
            low: c,
            close: c,
            volume: 1.0,
            adj_close: None,
            source: Default::default(),
        };
        let old = Columns::from_bars(&[bar(1.0)]);
        cache.insert(&mut cache.lock(), key.clone(), old.clone());
        cache.put_text(&key, &old, TextKind::Csv, Bytes::from_static(b"old"));
        assert_eq!(cache.text(&key, TextKind::Csv).unwrap(), "old");
        assert!(cache.text(&key, TextKind::CsvAdjusted).is_none());

        // A write drops the text with the chunk; text made from the old columns afterwards
        // (a request that was already encoding) is refused, also once new columns are cached.
        cache.touched(&series, TimeRange::new(86_400, 86_401).unwrap());
        assert!(cache.text(&key, TextKind::Csv).is_none());
        cache.put_text(&key, &old, TextKind::Csv, Bytes::from_static(b"old"));
        assert!(cache.text(&key, TextKind::Csv).is_none());
        let new = Columns::from_bars(&[bar(2.0)]);
        cache.insert(&mut cache.lock(), key.clone(), new.clone());
        cache.put_text(&key, &old, TextKind::Csv, Bytes::from_static(b"old"));
        assert!(cache.text(&key, TextKind::Csv).is_none());
        cache.put_text(&key, &new, TextKind::Csv, Bytes::from_static(b"new"));
        assert_eq!(cache.text(&key, TextKind::Csv).unwrap(), "new");
        let st = cache.lock();
        let want = new.bytes() + 3 + ENTRY_OVERHEAD;
        assert_eq!(st.bytes, want);
    }
}
