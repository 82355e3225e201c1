//! Building bars and validated batches for tests.

use dms::domain::{Bar, Interval, SeriesKey, SourceKind, Symbol};
use dms::validate::{self, Context, ValidatedBatch};

/// 2024-01-02 00:00:00Z.
pub const T0: i64 = 1_704_153_600;

pub fn key(symbol: &str, interval: Interval) -> SeriesKey {
    SeriesKey::new(Symbol::opaque(symbol), interval)
}

/// A consistent bar whose values are derived from `ts` and `seed`.
pub fn bar(ts: i64, seed: f64) -> Bar {
    let base = 100.0 + seed + (ts % 997) as f64 / 100.0;
    Bar {
        ts,
        open: base,
        high: base + 1.25,
        low: base - 0.75,
        close: base + 0.5,
        volume: 1000.0 + seed,
        adj_close: Some(base + 0.25),
        source: SourceKind::Files,
    }
}

/// `n` bars of `interval` from `start`, spaced by its nominal length.
pub fn bars(start: i64, n: usize, interval: Interval, seed: f64) -> Vec<Bar> {
    (0..n)
        .map(|i| bar(start + i as i64 * interval.nominal_secs(), seed))
        .collect()
}

/// Validates with a clock far in the future, asserting nothing is rejected.
pub fn batch(series: &SeriesKey, bars: Vec<Bar>) -> ValidatedBatch {
    let v = validate::validate(series, bars, &Context::new(i64::MAX / 4, None));
    assert!(
        v.rejections.is_empty(),
        "test bars rejected: {:?}",
        v.rejections
    );
    v.batch.expect("non-empty batch")
}
