//! Embedded store figures (issue: foundation). Run: `cargo bench --bench embedded`.
//!
//! 1. ingest 1M bars (100 series × 10,000 1-minute bars) through `Store::write`, and through
//!    the full write path (`Writer::ingest`: validation, change log, metrics) — target ≥ 1M bars/s;
//! 2. read 100,000 bars of one series — target ≥ 5M bars/s — with every field (`read`) and
//!    OHLCV only (`read_fields(…, Fields::OHLCV)`, what a backtest asks);
//! 3. latest bar of 10,000 series in one call — target ≤ 1 s.
//!
//! Each measurement runs several times on a fresh temp dir; the median is reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dms::domain::{Bar, Interval, SeriesKey, SourceKind, Symbol, TimeRange};
use dms::ingest::Writer;
use dms::store::embedded::EmbeddedStore;
use dms::store::meta::MetaDb;
use dms::store::{Fields, Store};
use dms::validate::{self, Context};

const T0: i64 = 1_704_153_600;

fn bars(n: usize, seed: f64) -> Vec<Bar> {
    (0..n)
        .map(|i| {
            let p = 100.0 + seed + (i % 997) as f64 / 100.0;
            Bar {
                ts: T0 + i as i64 * 60,
                open: p,
                high: p + 1.0,
                low: p - 1.0,
                close: p + 0.5,
                volume: 1000.0 + i as f64,
                adj_close: None,
                source: SourceKind::Files,
            }
        })
        .collect()
}

fn key(i: usize, interval: Interval) -> SeriesKey {
    SeriesKey::new(Symbol::parse(&format!("S{i:05}")).unwrap(), interval)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let ctx = Context::new(i64::MAX / 4, None);
    let data: Vec<(SeriesKey, Vec<Bar>)> = (0..100)
        .map(|i| (key(i, Interval::M1), bars(10_000, i as f64)))
        .collect();
    let batches: Vec<_> = data
        .iter()
        .map(|(k, b)| validate::validate(k, b.clone(), &ctx).batch.unwrap())
        .collect();

    // 1a. Store::write.
    let mut store_times = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("bars.db")).unwrap();
        let t = Instant::now();
        for b in &batches {
            store.write(b).await.unwrap();
        }
        store_times.push(t.elapsed());
    }
    let store_ingest = median(store_times);

    // 1b. Writer::ingest (validation + change log + write), from raw bars.
    let mut path_times = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("bars.db")).unwrap());
        let meta = MetaDb::open(&dir.path().join("meta.db")).unwrap();
        let writer = Writer::new(store, meta);
        let raw: Vec<_> = data.iter().map(|(k, b)| (k.clone(), b.clone())).collect();
        let t = Instant::now();
        for (k, b) in raw {
            writer.ingest(&k, b, &ctx).await.unwrap();
        }
        path_times.push(t.elapsed());
    }
    let path_ingest = median(path_times);

    // 2. Read 100k bars of one series.
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("bars.db")).unwrap();
    let big = key(0, Interval::M1);
    let b = validate::validate(&big, bars(100_000, 1.0), &ctx)
        .batch
        .unwrap();
    store.write(&b).await.unwrap();
    let mut read_times = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let got = store.read(&big, TimeRange::ALL).await.unwrap();
        read_times.push(t.elapsed());
        assert_eq!(got.len(), 100_000);
    }
    let read = median(read_times);
    let mut ohlcv_times = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let got = store
            .read_fields(&big, TimeRange::ALL, Fields::OHLCV)
            .await
            .unwrap();
        ohlcv_times.push(t.elapsed());
        assert_eq!(got.len(), 100_000);
    }
    let ohlcv = median(ohlcv_times);

    // 3. Latest bar of 10,000 series (daily, 10 bars each).
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("bars.db")).unwrap();
    let mut keys = Vec::new();
    for i in 0..10_000 {
        let k = key(i, Interval::D1);
        let daily: Vec<Bar> = bars(10, i as f64)
            .into_iter()
            .enumerate()
            .map(|(j, mut b)| {
                b.ts = T0 + j as i64 * 86_400;
                b
            })
            .collect();
        store
            .write(&validate::validate(&k, daily, &ctx).batch.unwrap())
            .await
            .unwrap();
        keys.push(k);
    }
    let mut latest_times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let got = store.latest(&keys).await.unwrap();
        latest_times.push(t.elapsed());
        assert_eq!(got.len(), 10_000);
    }
    let latest = median(latest_times);

    let rate = |n: f64, d: Duration| n / d.as_secs_f64();
    println!("| measurement | data | median time | figure | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| ingest via `Store::write` | 100 series × 10k 1m bars | {:.3} s | {:.2}M bars/s | ≥ 1M bars/s |",
        store_ingest.as_secs_f64(),
        rate(1e6, store_ingest) / 1e6
    );
    println!(
        "| ingest via `Writer::ingest` (validate + change log + write) | same | {:.3} s | {:.2}M bars/s | — |",
        path_ingest.as_secs_f64(),
        rate(1e6, path_ingest) / 1e6
    );
    println!(
        "| read one series | 100k 1m bars | {:.2} ms | {:.1}M bars/s | ≥ 5M bars/s |",
        read.as_secs_f64() * 1e3,
        rate(1e5, read) / 1e6
    );
    println!(
        "| read one series, OHLCV only | 100k 1m bars | {:.2} ms | {:.1}M bars/s | ≥ 5M bars/s |",
        ohlcv.as_secs_f64() * 1e3,
        rate(1e5, ohlcv) / 1e6
    );
    println!(
        "| latest bar | 10,000 daily series | {:.1} ms | — | ≤ 1 s |",
        latest.as_secs_f64() * 1e3
    );
}
