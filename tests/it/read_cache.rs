//! The reader's chunk cache: hits, invalidation on write, single flight, eviction, and the
//! invariant "a read never returns data older than the last acknowledged write" under
//! concurrency; chunks loaded with only the fields a read needs; JSON's column passes kept
//! consistent under writes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dms::domain::{Bar, CorporateAction, Interval, SeriesKey, Symbol, TimeRange};
use dms::format::Format;
use dms::ingest::Writer;
use dms::reader::{BarsQuery, ReadError, Reader, StreamError, cache::chunk_tiling};
use dms::store::embedded::EmbeddedStore;
use dms::store::meta::MetaDb;
use dms::store::{Fields, SeriesStats, Store, StoreError, StoreHealth};
use dms::validate::ValidatedBatch;
use tokio::sync::Semaphore;

use crate::helpers::bars::{T0, bar, bars, batch, key};

/// A store that delegates to an embedded store, counts reads, and can hold reads at a gate
/// *after* they have read the data (so a test can slip a write in between), or hold every
/// read after the first few *before* it reads (so a write lands before it). Like a store that
/// projects, it returns no `adj_close` unless the read asks for it, and records what each
/// read asked for.
struct GatedStore {
    inner: EmbeddedStore,
    reads: AtomicUsize,
    waiting: AtomicUsize,
    gate: Option<Arc<Semaphore>>,
    /// Reads after the first `.0` wait for a permit of `.1` before reading.
    hold: Option<(usize, Arc<Semaphore>)>,
    held: AtomicUsize,
    asked: Mutex<Vec<Fields>>,
    /// Series lists wait for a permit of this *after* listing.
    list_gate: Option<Arc<Semaphore>>,
    lists: AtomicUsize,
    lists_waiting: AtomicUsize,
}

#[async_trait]
impl Store for GatedStore {
    fn kind(&self) -> &'static str {
        "gated"
    }
    async fn ping(&self) -> Result<StoreHealth, StoreError> {
        self.inner.ping().await
    }
    async fn write(&self, batch: &ValidatedBatch) -> Result<(), StoreError> {
        self.inner.write(batch).await
    }
    async fn read(&self, series: &SeriesKey, range: TimeRange) -> Result<Vec<Bar>, StoreError> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        if let Some((free, hold)) = &self.hold
            && n >= *free
        {
            self.held.fetch_add(1, Ordering::SeqCst);
            let _permit = hold.acquire().await.expect("hold open");
            self.held.fetch_sub(1, Ordering::SeqCst);
        }
        let bars = self.inner.read(series, range).await?;
        if let Some(gate) = &self.gate {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _permit = gate.acquire().await.expect("gate open");
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(bars)
    }
    async fn read_fields(
        &self,
        series: &SeriesKey,
        range: TimeRange,
        fields: Fields,
    ) -> Result<Vec<Bar>, StoreError> {
        self.asked.lock().unwrap().push(fields);
        let mut bars = self.read(series, range).await?;
        if !fields.adj_close {
            bars.iter_mut().for_each(|b| b.adj_close = None);
        }
        Ok(bars)
    }
    async fn latest(
        &self,
        series: &[SeriesKey],
    ) -> Result<std::collections::HashMap<SeriesKey, Bar>, StoreError> {
        self.inner.latest(series).await
    }
    async fn count(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, StoreError> {
        self.inner.count(series, range).await
    }
    async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, StoreError> {
        self.inner.delete(series, range).await
    }
    async fn list_series(&self) -> Result<Vec<SeriesStats>, StoreError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        let list = self.inner.list_series().await?;
        if let Some(gate) = &self.list_gate {
            self.lists_waiting.fetch_add(1, Ordering::SeqCst);
            let _permit = gate.acquire().await.expect("gate open");
            self.lists_waiting.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(list)
    }
    async fn write_actions(&self, s: &Symbol, a: &[CorporateAction]) -> Result<(), StoreError> {
        self.inner.write_actions(s, a).await
    }
    async fn read_actions(
        &self,
        s: &Symbol,
        r: TimeRange,
    ) -> Result<Vec<CorporateAction>, StoreError> {
        self.inner.read_actions(s, r).await
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<GatedStore>,
    writer: Writer,
    reader: Reader,
}

fn rig(gate: Option<Arc<Semaphore>>, cache_bytes: u64) -> Rig {
    rig_with(gate, None, None, cache_bytes)
}

fn rig_with(
    gate: Option<Arc<Semaphore>>,
    hold: Option<(usize, Arc<Semaphore>)>,
    list_gate: Option<Arc<Semaphore>>,
    cache_bytes: u64,
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(GatedStore {
        inner: EmbeddedStore::open(&dir.path().join("bars.db")).unwrap(),
        reads: AtomicUsize::new(0),
        waiting: AtomicUsize::new(0),
        gate,
        hold,
        held: AtomicUsize::new(0),
        asked: Mutex::new(Vec::new()),
        list_gate,
        lists: AtomicUsize::new(0),
        lists_waiting: AtomicUsize::new(0),
    });
    let meta = MetaDb::open(&dir.path().join("meta.db")).unwrap();
    let writer = Writer::new(store.clone(), meta);
    let reader = Reader::new(store.clone(), 50_000_000, cache_bytes);
    writer.add_listener(reader.cache().clone());
    Rig {
        _dir: dir,
        store,
        writer,
        reader,
    }
}

fn query(symbols: &[&str], interval: Interval, format: Format) -> BarsQuery {
    BarsQuery {
        symbols: symbols.iter().map(|s| Symbol::parse(s).unwrap()).collect(),
        interval,
        range: TimeRange::ALL,
        format,
        adjusted: false,
    }
}

/// Reads `symbol` as JSON and returns its `close` column and timestamps.
async fn closes(reader: &Reader, symbol: &str, interval: Interval) -> Vec<(i64, f64)> {
    let out = reader
        .read_all(query(&[symbol], interval, Format::Csv))
        .await
        .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                dms::domain::time::parse_instant(f[1]).unwrap(),
                f[5].parse().unwrap(),
            )
        })
        .collect()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_into_the_middle_of_a_cached_range_is_seen_by_the_next_read() {
    let r = rig(None, 64 << 20);
    let k = key("AAPL", Interval::M1);
    // 30 days of 1-minute bars: three reader chunks.
    let n = 30 * 1440;
    r.writer
        .write(&batch(&k, bars(T0, n, Interval::M1, 0.0)))
        .await
        .unwrap();
    let first = closes(&r.reader, "AAPL", Interval::M1).await;
    assert_eq!(first.len(), n);
    let loads = r.store.reads.load(Ordering::SeqCst);
    let again = closes(&r.reader, "AAPL", Interval::M1).await;
    assert_eq!(again, first);
    assert_eq!(
        r.store.reads.load(Ordering::SeqCst),
        loads,
        "the second read is served from the cache"
    );
    let stats = r.reader.cache().stats();
    assert!(stats.hits > 0, "{stats:?}");
    assert_eq!(
        stats.text_entries, stats.entries,
        "whole chunks' CSV is cached: {stats:?}"
    );

    let mid = T0 + (n as i64 / 2) * 60;
    let mut changed = bar(mid, 0.0);
    changed.close = 777.5;
    changed.high = 800.0;
    r.writer.write(&batch(&k, vec![changed])).await.unwrap();
    let after = closes(&r.reader, "AAPL", Interval::M1).await;
    assert_eq!(after.len(), n);
    let at_mid = after.iter().find(|(ts, _)| *ts == mid).unwrap();
    assert_eq!(at_mid.1, 777.5);
    let stats = r.reader.cache().stats();
    assert_eq!(stats.invalidations, 1, "{stats:?}");
    assert_eq!(
        r.store.reads.load(Ordering::SeqCst),
        loads + 1,
        "only the touched chunk is read again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_chunk_share_one_store_read() {
    let gate = Arc::new(Semaphore::new(0));
    let r = rig(Some(gate.clone()), 64 << 20);
    let k = key("MSFT", Interval::D1);
    r.writer
        .write(&batch(&k, bars(T0, 100, Interval::D1, 1.0)))
        .await
        .unwrap();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let reader = r.reader.clone();
            tokio::spawn(async move { closes(&reader, "MSFT", Interval::D1).await })
        })
        .collect();
    let cache = r.reader.cache().clone();
    wait_until("eight misses", || cache.stats().misses >= 8).await;
    assert_eq!(r.store.reads.load(Ordering::SeqCst), 1);
    gate.add_permits(100);
    for h in readers {
        assert_eq!(h.await.unwrap().len(), 100);
    }
    assert_eq!(r.store.reads.load(Ordering::SeqCst), 1);
    assert_eq!(r.reader.cache().stats().loads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_read_before_a_write_does_not_cache_the_old_bars() {
    let gate = Arc::new(Semaphore::new(0));
    let r = rig(Some(gate.clone()), 64 << 20);
    let k = key("IBM", Interval::D1);
    r.writer
        .write(&batch(&k, bars(T0, 10, Interval::D1, 1.0)))
        .await
        .unwrap();
    // Prime the extents so the read below goes straight to the chunk.
    r.reader
        .cache()
        .extents(
            &(r.store.clone() as Arc<dyn Store>),
            std::slice::from_ref(&k),
        )
        .await
        .unwrap();
    let reader = r.reader.clone();
    let early = tokio::spawn(async move { closes(&reader, "IBM", Interval::D1).await });
    let store = r.store.clone();
    wait_until("the load to hold old bars", || {
        store.waiting.load(Ordering::SeqCst) == 1
    })
    .await;
    // The write lands and is acknowledged while the load holds the old bars.
    let mut changed = bar(T0 + 5 * 86_400, 1.0);
    changed.close = 555.0;
    changed.high = 600.0;
    r.writer.write(&batch(&k, vec![changed])).await.unwrap();
    gate.add_permits(100);
    let old = early.await.unwrap();
    assert_ne!(old[5].1, 555.0, "the early read started before the write");
    let now = closes(&r.reader, "IBM", Interval::D1).await;
    assert_eq!(
        now[5].1, 555.0,
        "a read after the acknowledgement sees the write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_stays_within_max_bytes_and_counts_evictions() {
    // About 20 KiB: a year of daily bars is ~20 KiB, so reading five series evicts.
    let r = rig(None, 48 * 1024);
    let mut all = Vec::new();
    for i in 0..5 {
        let s = format!("S{i}");
        let k = key(&s, Interval::D1);
        r.writer
            .write(&batch(&k, bars(T0, 300, Interval::D1, i as f64)))
            .await
            .unwrap();
        all.push(s);
    }
    for s in &all {
        assert_eq!(closes(&r.reader, s, Interval::D1).await.len(), 300);
    }
    let stats = r.reader.cache().stats();
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(stats.bytes <= stats.max_bytes, "{stats:?}");
    // Evicted chunks are read again, correctly.
    assert_eq!(closes(&r.reader, "S0", Interval::D1).await.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_readers_during_writes_never_see_a_torn_chunk_or_an_old_write() {
    let r = Arc::new(rig(None, 64 << 20));
    let k = key("SPY", Interval::D1);
    let days = 3 * 365;
    let version = move |v: u64| -> Vec<Bar> {
        bars(T0, days, Interval::D1, 0.0)
            .into_iter()
            .map(|mut b| {
                b.open = 100.0 + v as f64;
                b.high = b.open;
                b.low = b.open;
                b.close = b.open;
                b
            })
            .collect()
    };
    r.writer.write(&batch(&k, version(0))).await.unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writes = 40u64;
    let writer = {
        let (r, acked, k) = (r.clone(), acked.clone(), k.clone());
        tokio::spawn(async move {
            for v in 1..=writes {
                r.writer.write(&batch(&k, version(v))).await.unwrap();
                acked.store(v, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (r, acked, stop) = (r.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                loop {
                    let floor = acked.load(Ordering::SeqCst);
                    let got = closes(&r.reader, "SPY", Interval::D1).await;
                    assert_eq!(got.len(), days);
                    let mut by_chunk = std::collections::BTreeMap::<i64, Vec<f64>>::new();
                    for (ts, c) in &got {
                        by_chunk
                            .entry(chunk_tiling(Interval::D1).start_of(*ts))
                            .or_default()
                            .push(*c);
                    }
                    for (start, cs) in by_chunk {
                        assert!(
                            cs.iter().all(|c| *c == cs[0]),
                            "chunk {start} mixes versions: {cs:?}"
                        );
                        let v = (cs[0] - 100.0) as u64;
                        assert!(
                            v >= floor,
                            "read version {v} after write {floor} was acknowledged"
                        );
                    }
                    reads += 1;
                    if floor == writes || stop.load(Ordering::SeqCst) {
                        return reads;
                    }
                    // A fully cached read never awaits anything pending; let the writer run.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let written = writer.await;
    stop.store(true, Ordering::SeqCst);
    for h in readers {
        assert!(h.await.unwrap() > 0);
    }
    written.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_drops_cached_chunks_and_open_ranges_follow_the_new_extent() {
    let r = rig(None, 64 << 20);
    let k = key("TSLA", Interval::D1);
    r.writer
        .write(&batch(&k, bars(T0, 50, Interval::D1, 1.0)))
        .await
        .unwrap();
    assert_eq!(closes(&r.reader, "TSLA", Interval::D1).await.len(), 50);
    r.writer.delete(&k, TimeRange::ALL).await.unwrap();
    assert!(closes(&r.reader, "TSLA", Interval::D1).await.is_empty());
    // Bars far from the old extent are found by an open-ended read.
    let later = T0 + 5000 * 86_400;
    r.writer
        .write(&batch(&k, bars(later, 3, Interval::D1, 1.0)))
        .await
        .unwrap();
    let got = closes(&r.reader, "TSLA", Interval::D1).await;
    assert_eq!(
        got.iter().map(|(ts, _)| *ts).collect::<Vec<_>>(),
        vec![later, later + 86_400, later + 2 * 86_400]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_reads_load_ohlcv_only_and_an_adjusted_read_loads_adj_close_once_for_both() {
    let r = rig(None, 64 << 20);
    let k = key("KO", Interval::D1);
    let b = bars(T0, 300, Interval::D1, 1.0);
    r.writer.write(&batch(&k, b.clone())).await.unwrap();
    let read = |adjusted: bool| {
        let reader = r.reader.clone();
        async move {
            let mut q = query(&["KO"], Interval::D1, Format::Csv);
            q.adjusted = adjusted;
            String::from_utf8(reader.read_all(q).await.unwrap()).unwrap()
        }
    };
    let close = |csv: &str, row: usize| -> f64 {
        csv.lines()
            .nth(row + 1)
            .unwrap()
            .split(',')
            .nth(5)
            .unwrap()
            .parse()
            .unwrap()
    };
    let adj = Fields {
        adj_close: true,
        source: false,
    };
    let plain = read(false).await;
    assert_eq!(close(&plain, 7), b[7].close);
    assert_eq!(*r.store.asked.lock().unwrap(), [Fields::OHLCV]);
    // The cached chunk has no adj_close: an adjusted read cannot use it, and loads it again.
    let adjusted = read(true).await;
    assert_eq!(close(&adjusted, 7), b[7].adj_close.unwrap());
    assert_eq!(*r.store.asked.lock().unwrap(), [Fields::OHLCV, adj]);
    // The chunk with adj_close serves both kinds from now on.
    assert_eq!(read(false).await, plain);
    assert_eq!(read(true).await, adjusted);
    assert_eq!(r.store.reads.load(Ordering::SeqCst), 2);
}

/// The reader chunks 30 days of 1m bars from `T0` span.
fn json_chunks() -> usize {
    let days = TimeRange::new(T0, T0 + 30 * 86_400).unwrap();
    chunk_tiling(Interval::M1).count(days) as usize
}

/// JSON of one 1m series over 30 days ([`json_chunks`] chunks), the series written.
async fn json_rig(hold: Option<(usize, Arc<Semaphore>)>) -> (Rig, Vec<Bar>) {
    // No cache: every load reads the store, so the passes' reads can be counted and held.
    let r = rig_with(None, hold, None, 0);
    let b = bars(T0, 30 * 1440, Interval::M1, 2.0);
    r.writer
        .write(&batch(&key("AAPL", Interval::M1), b.clone()))
        .await
        .unwrap();
    (r, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_pins_its_chunks_for_the_later_columns_and_gives_the_same_bytes_without_pins() {
    let (r, b) = json_rig(None).await;
    let q = query(&["AAPL"], Interval::M1, Format::Json);
    let pinned = r.reader.read_all(q.clone()).await.unwrap();
    let n = json_chunks();
    assert_eq!(r.store.reads.load(Ordering::SeqCst), n, "one read a chunk");
    let v: serde_json::Value = serde_json::from_slice(&pinned).unwrap();
    assert_eq!(v["series"]["AAPL"]["ts"].as_array().unwrap().len(), b.len());
    assert_eq!(
        v["series"]["AAPL"]["volume"][17].as_f64(),
        Some(b[17].volume)
    );
    // With nothing pinned every column reads every chunk again (6 passes x n chunks, less
    // any load a later pass shared with an earlier one still in flight).
    let unpinned = r
        .reader
        .clone()
        .with_pin_bytes(0)
        .read_all(q)
        .await
        .unwrap();
    let reads = r.store.reads.load(Ordering::SeqCst) - n;
    assert!((2 * n..=6 * n).contains(&reads), "{reads} reads");
    assert!(unpinned == pinned, "the same bytes, pinned or not");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_too_big_to_pin_is_broken_off_when_a_write_changes_a_chunk_between_its_columns() {
    // The reads of the `ts` pass go through; later reads wait until released.
    let hold = Arc::new(Semaphore::new(0));
    let (r, _) = json_rig(Some((json_chunks(), hold.clone()))).await;
    let reader = r.reader.clone().with_pin_bytes(0);
    let read = tokio::spawn(async move {
        reader
            .read_all(query(&["AAPL"], Interval::M1, Format::Json))
            .await
    });
    let store = r.store.clone();
    wait_until("a later pass to wait for its read", || {
        store.held.load(Ordering::SeqCst) >= 1
    })
    .await;
    // The `ts` column went out with the old bars; the write lands before `open` is read.
    let mid = T0 + 15 * 86_400;
    let mut changed = bar(mid, 2.0);
    changed.open += 0.125;
    r.writer
        .write(&batch(&key("AAPL", Interval::M1), vec![changed]))
        .await
        .unwrap();
    hold.add_permits(1000);
    match read.await.unwrap() {
        Err(ReadError::Interrupted(StreamError::Changed(s))) => assert_eq!(s.as_str(), "AAPL"),
        Err(e) => panic!("broken off for another reason: {e}"),
        Ok(body) => panic!(
            "a response mixing two versions was completed ({} bytes)",
            body.len()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_share_one_series_list_but_never_one_fetched_before_a_write_they_follow() {
    let gate = Arc::new(Semaphore::new(0));
    // Building the reader starts the first list (of an empty store); it waits at the gate.
    let r = rig_with(None, None, Some(gate.clone()), 64 << 20);
    let store = r.store.clone();
    let lists_waiting = |n: usize| {
        let store = store.clone();
        move || store.lists_waiting.load(Ordering::SeqCst) == n
    };
    wait_until("the start-up list", lists_waiting(1)).await;
    let k = key("NVDA", Interval::D1);
    r.writer
        .write(&batch(&k, bars(T0, 10, Interval::D1, 1.0)))
        .await
        .unwrap();
    // Started after that write: a new list, shared by a second request.
    let (a, b) = (r.reader.clone(), r.reader.clone());
    let early = tokio::spawn(async move { closes(&a, "NVDA", Interval::D1).await });
    let joined = tokio::spawn(async move { closes(&b, "NVDA", Interval::D1).await });
    wait_until("the first requests' list", lists_waiting(2)).await;
    let cache = r.reader.cache().clone();
    wait_until("both requests to wait for it", || {
        cache.stats().misses == 0 && store.lists.load(Ordering::SeqCst) == 2
    })
    .await;
    // Bars far beyond the listed extent, acknowledged before the next request starts.
    let later = T0 + 4000 * 86_400;
    r.writer
        .write(&batch(&k, bars(later, 3, Interval::D1, 1.0)))
        .await
        .unwrap();
    let c = r.reader.clone();
    let after = tokio::spawn(async move { closes(&c, "NVDA", Interval::D1).await });
    wait_until("a fresh list for the later request", lists_waiting(3)).await;
    gate.add_permits(100);
    assert_eq!(early.await.unwrap().len(), 10);
    assert_eq!(joined.await.unwrap().len(), 10);
    assert_eq!(
        after.await.unwrap().len(),
        13,
        "the later request sees the acknowledged write"
    );
    assert_eq!(store.lists.load(Ordering::SeqCst), 3);
    // The last list is installed; later reads list nothing.
    assert_eq!(closes(&r.reader, "NVDA", Interval::D1).await.len(), 13);
    assert_eq!(store.lists.load(Ordering::SeqCst), 3);
}
