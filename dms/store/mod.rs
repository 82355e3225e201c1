//! Storage: the [`Store`] trait every bar store implements, its two implementations (the
//! embedded default and InfluxDB) and the metadata database.
//!
//! A store is a dumb, fast, idempotent bar table keyed by `(symbol, interval, ts)`: it accepts
//! only a [`ValidatedBatch`], treats symbols as opaque text (escaping them wherever they meet a
//! query language), and knows nothing about jobs, caches or replication. The change log, cache
//! invalidation and spooling wrap it in [`crate::ingest`].

pub mod chunk;
pub mod coverage;
pub mod embedded;
pub mod influx;
pub mod meta;
pub mod sqlite;

use std::collections::HashMap;

use async_trait::async_trait;

use crate::domain::{Bar, CorporateAction, Interval, SeriesKey, Symbol, TimeRange};
use crate::validate::ValidatedBatch;

/// Why a store operation failed. The variant decides what callers do: `Unavailable` is
/// retried or spooled, `Rejected` is not retried (the same request fails the same way).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is failing (connection refused, timeout, 5xx, disk I/O).
    #[error("{store}: unavailable: {message}")]
    Unavailable {
        store: &'static str,
        message: String,
    },
    /// The store refused the request itself (bad request, type conflict, value it cannot hold).
    #[error("{store}: rejected: {message}")]
    Rejected {
        store: &'static str,
        message: String,
    },
    /// The store answered with something DMS cannot understand, or an internal invariant broke.
    #[error("{store}: {message}")]
    Corrupt {
        store: &'static str,
        message: String,
    },
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Count and checksum of the bars of one series in a range: what `verify` compares between the
/// primary and each backup. Computed the same way by every store (see [`RangeSummary::of`]), so
/// an embedded store and an InfluxDB holding the same bars agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct RangeSummary {
    pub count: u64,
    /// xxh3-64 over every bar's `ts` and the bit patterns of its values, in time order.
    pub checksum: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
}

impl RangeSummary {
    /// Summarises bars sorted by `ts`. The source of a bar is not part of the checksum: the same
    /// values from another source are the same data.
    pub fn of(bars: &[Bar]) -> RangeSummary {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = [0u8; 56];
        for b in bars {
            buf[0..8].copy_from_slice(&b.ts.to_le_bytes());
            buf[8..16].copy_from_slice(&b.open.to_bits().to_le_bytes());
            buf[16..24].copy_from_slice(&b.high.to_bits().to_le_bytes());
            buf[24..32].copy_from_slice(&b.low.to_bits().to_le_bytes());
            buf[32..40].copy_from_slice(&b.close.to_bits().to_le_bytes());
            buf[40..48].copy_from_slice(&b.volume.to_bits().to_le_bytes());
            // 0 can never be a stored adj_close (prices are positive), so it marks "absent".
            buf[48..56].copy_from_slice(&b.adj_close.unwrap_or(0.0).to_bits().to_le_bytes());
            h.update(&buf);
        }
        RangeSummary {
            count: bars.len() as u64,
            checksum: if bars.is_empty() { 0 } else { h.digest() },
            first: bars.first().map(|b| b.ts),
            last: bars.last().map(|b| b.ts),
        }
    }
}

/// An order-independent digest of the bars of one series in a range: what `verify` and
/// replication compare between the primary and a node, computed where the data lives (InfluxQL
/// aggregates on InfluxDB, in process elsewhere), so equal data never crosses the network.
///
/// `sums` are the plain float sums of open, high, low, close, volume and adj_close (absent
/// counts as 0). Sums are order-independent mathematically but not in the last bit: InfluxDB
/// adds a series' points in time order within a shard and then adds the shards' partial sums,
/// which is what [`RangeDigest::of`] does for a range inside one shard (the grid of
/// [`BucketGrid::for_interval`] never crosses a 1-week or 52-week shard boundary). Equal data
/// therefore digests equally; where it does not (a bucket across shards of another layout), the
/// only cost is that `verify` bisects it down to an exact bar-by-bar comparison. Prices are
/// positive, so a missing or extra bar always moves `sums`; a value change smaller than the
/// rounding of a bucket's sum (about 2^-52 of it) is below what a sum can see — `hash` sees
/// every bit, where both sides computed one.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct RangeDigest {
    pub count: u64,
    /// Sums of open, high, low, close, volume, adj_close.
    pub sums: [f64; 6],
    /// Wrapping sum of an xxh3 hash of each bar's `ts` and value bits: truly
    /// order-independent and exact, but only where the bars are digested in process (embedded
    /// stores, a peer DMS); `None` from InfluxQL, which has no hash function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<u64>,
}

impl RangeDigest {
    /// Digests bars in time order (see the type's doc for why the order matters).
    pub fn of(bars: &[Bar]) -> RangeDigest {
        let mut d = RangeDigest {
            hash: Some(0),
            ..RangeDigest::default()
        };
        for b in bars {
            d.push(b);
        }
        d
    }

    /// Adds one bar (bars must come in time order).
    pub fn push(&mut self, b: &Bar) {
        self.count += 1;
        let adj = b.adj_close.unwrap_or(0.0);
        for (s, v) in self
            .sums
            .iter_mut()
            .zip([b.open, b.high, b.low, b.close, b.volume, adj])
        {
            *s += v;
        }
        if let Some(h) = &mut self.hash {
            let mut buf = [0u8; 56];
            buf[0..8].copy_from_slice(&b.ts.to_le_bytes());
            for (i, v) in [b.open, b.high, b.low, b.close, b.volume, adj]
                .into_iter()
                .enumerate()
            {
                buf[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_bits().to_le_bytes());
            }
            *h = h.wrapping_add(xxhash_rust::xxh3::xxh3_64(&buf));
        }
    }

    /// Whether two digests say "the same bars": equal counts, bit-equal sums and, where both
    /// have one, equal hashes.
    pub fn matches(&self, other: &RangeDigest) -> bool {
        self.count == other.count
            && self
                .sums
                .iter()
                .zip(&other.sums)
                .all(|(a, b)| a.to_bits() == b.to_bits())
            && match (self.hash, other.hash) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// Buckets of `width` seconds starting at `offset + k * width`: how `verify` cuts a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketGrid {
    pub width: i64,
    /// In `[0, width)`.
    pub offset: i64,
}

/// Go's zero time (0001-01-01, a Monday) in Unix seconds: InfluxDB aligns shard groups to
/// multiples of their duration from it, not from the Unix epoch.
const GO_ZERO_TIME: i64 = -62_135_596_800;

impl BucketGrid {
    /// A grid of `width` seconds aligned like InfluxDB's shard groups of that duration.
    pub fn aligned(width: i64) -> BucketGrid {
        let width = width.max(1);
        BucketGrid {
            width,
            offset: GO_ZERO_TIME.rem_euclid(width),
        }
    }

    /// One week (Monday to Monday UTC) for intraday series (at most 10,080 bars of 1m), 52
    /// weeks for daily and longer ones (at most 364 bars of 1d). Both nest inside InfluxDB's
    /// 1-week and 52-week shard groups.
    pub fn for_interval(interval: Interval) -> BucketGrid {
        const WEEK: i64 = 7 * 86_400;
        BucketGrid::aligned(if interval.is_intraday() {
            WEEK
        } else {
            52 * WEEK
        })
    }

    /// The start of the bucket holding `ts`.
    pub fn start_of(self, ts: i64) -> i64 {
        (ts - self.offset).div_euclid(self.width) * self.width + self.offset
    }

    /// The bucket holding `ts`.
    pub fn bucket_of(self, ts: i64) -> TimeRange {
        let s = self.start_of(ts);
        TimeRange::new(s, s + self.width).expect("width is positive")
    }
}

/// Digests bars (sorted by `ts`) per bucket of `grid`, non-empty buckets only, in order.
pub fn bucket_digests_of(bars: &[Bar], grid: BucketGrid) -> Vec<(i64, RangeDigest)> {
    let mut out: Vec<(i64, RangeDigest)> = Vec::new();
    for b in bars {
        let start = grid.start_of(b.ts);
        match out.last_mut() {
            Some((s, d)) if *s == start => d.push(b),
            _ => {
                let mut d = RangeDigest::of(&[]);
                d.push(b);
                out.push((start, d));
            }
        }
    }
    out
}

/// What a store knows about one of its series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesStats {
    pub series: SeriesKey,
    pub first: i64,
    pub last: i64,
    pub count: u64,
}

/// What `ping` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreHealth {
    /// `embedded` or `influxdb`.
    pub kind: &'static str,
    /// A human-readable location: a file path or a URL (never with credentials).
    pub location: String,
    /// Server version where the store reports one.
    pub version: Option<String>,
}

/// Which optional columns a read needs; `ts`, open, high, low, close and volume are always
/// read. A backtest needs OHLCV only, so the default read path asks for no more: on InfluxDB
/// every extra field is another column the server must merge and send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fields {
    /// Read `adj_close` (needed by adjusted reads); absent → every bar has `adj_close: None`.
    pub adj_close: bool,
    /// Read `source`; absent → every bar has `source: SourceKind::Unknown`.
    pub source: bool,
}

impl Fields {
    /// ts + OHLCV.
    pub const OHLCV: Fields = Fields {
        adj_close: false,
        source: false,
    };
    /// Every stored field (replication, verify, store-to-store copies).
    pub const ALL: Fields = Fields {
        adj_close: true,
        source: true,
    };
}

/// A bar store. Every method is idempotent and safe to call concurrently.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `embedded` or `influxdb`: the `store` label of metrics and logs.
    fn kind(&self) -> &'static str;

    /// Checks the store answers.
    async fn ping(&self) -> Result<StoreHealth, StoreError>;

    /// Upserts the batch: afterwards the store holds exactly these values at these timestamps.
    /// Either the whole batch is stored or the call fails (for InfluxDB, which can accept part of
    /// a request, a failed call may have stored a prefix; writing it again is harmless).
    async fn write(&self, batch: &ValidatedBatch) -> Result<(), StoreError>;

    /// Bars of `series` with `ts` in `range`, sorted by `ts`.
    async fn read(&self, series: &SeriesKey, range: TimeRange) -> Result<Vec<Bar>, StoreError>;

    /// Like [`Store::read`], but a store may skip the optional columns `fields` leaves out
    /// (the bars then carry `adj_close: None` / `source: Unknown` for them). The default reads
    /// everything.
    async fn read_fields(
        &self,
        series: &SeriesKey,
        range: TimeRange,
        fields: Fields,
    ) -> Result<Vec<Bar>, StoreError> {
        let _ = fields;
        self.read(series, range).await
    }

    /// The newest stored bar of each of `series` that has any, in one round trip.
    async fn latest(&self, series: &[SeriesKey]) -> Result<HashMap<SeriesKey, Bar>, StoreError>;

    /// Count and checksum of the bars of `series` in `range`.
    async fn summary(
        &self,
        series: &SeriesKey,
        range: TimeRange,
    ) -> Result<RangeSummary, StoreError> {
        let bars = self.read(series, range).await?;
        Ok(RangeSummary::of(&bars))
    }

    /// How many bars of `series` lie in `range` (used to enforce read limits before streaming).
    async fn count(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, StoreError> {
        Ok(self.summary(series, range).await?.count)
    }

    /// Removes the bars of `series` in `range`; returns how many were removed.
    async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, StoreError>;

    /// Every series with at least one bar.
    async fn list_series(&self) -> Result<Vec<SeriesStats>, StoreError>;

    /// Every series with at least one bar, without statistics (verify's list of series; a
    /// store may answer from its index, which is much cheaper than [`Store::list_series`]). A
    /// store may list a series it no longer holds bars of.
    async fn series_keys(&self) -> Result<Vec<SeriesKey>, StoreError> {
        Ok(self
            .list_series()
            .await?
            .into_iter()
            .map(|s| s.series)
            .collect())
    }

    /// A [`RangeDigest`] of the bars of `series` in each of `ranges`. The default reads the
    /// bars and digests them in process.
    async fn digests(
        &self,
        series: &SeriesKey,
        ranges: &[TimeRange],
    ) -> Result<Vec<RangeDigest>, StoreError> {
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            out.push(RangeDigest::of(&self.read(series, *r).await?));
        }
        Ok(out)
    }

    /// The digest of each non-empty bucket of `grid` within `range` (which should be whole
    /// buckets), as `(bucket start, digest)` in time order. The default reads the bars and
    /// digests them in process.
    async fn bucket_digests(
        &self,
        series: &SeriesKey,
        range: TimeRange,
        grid: BucketGrid,
    ) -> Result<Vec<(i64, RangeDigest)>, StoreError> {
        let bars = self.read(series, range).await?;
        Ok(bucket_digests_of(&bars, grid))
    }

    /// Upserts corporate actions of `symbol`, keyed by `(kind, ts)`.
    async fn write_actions(
        &self,
        symbol: &Symbol,
        actions: &[CorporateAction],
    ) -> Result<(), StoreError>;

    /// Corporate actions of `symbol` with `ts` in `range`, sorted by `ts`.
    async fn read_actions(
        &self,
        symbol: &Symbol,
        range: TimeRange,
    ) -> Result<Vec<CorporateAction>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SourceKind;

    fn bar(ts: i64, c: f64) -> Bar {
        Bar {
            ts,
            open: c,
            high: c,
            low: c,
            close: c,
            volume: 0.0,
            adj_close: None,
            source: SourceKind::Files,
        }
    }

    #[test]
    fn digests_see_every_value_and_hash_the_timestamps_but_not_the_source() {
        let a = vec![bar(1, 1.0), bar(2, 2.0)];
        let mut b = a.clone();
        b[1].source = SourceKind::Yahoo;
        assert!(RangeDigest::of(&a).matches(&RangeDigest::of(&b)));
        b[1].high = 2.5;
        assert!(!RangeDigest::of(&a).matches(&RangeDigest::of(&b)));
        // A bar moved in time keeps the sums but not the hash.
        let moved = vec![bar(1, 1.0), bar(3, 2.0)];
        let (d, m) = (RangeDigest::of(&a), RangeDigest::of(&moved));
        assert_eq!((d.count, d.sums), (m.count, m.sums));
        assert!(!d.matches(&m));
        // Without a hash (InfluxQL), sums and counts decide.
        let no_hash = |x: RangeDigest| RangeDigest { hash: None, ..x };
        assert!(no_hash(d).matches(&m));
        // An absent adj_close sums as 0.
        let mut c = a.clone();
        c[0].adj_close = Some(1.0);
        assert!(!no_hash(RangeDigest::of(&a)).matches(&RangeDigest::of(&c)));
    }

    #[test]
    fn bucket_grids_follow_influxdb_shard_groups() {
        let week = BucketGrid::for_interval(Interval::M1);
        // 1970-01-05 was the first Monday after the epoch; shard groups of 7 days start on
        // Mondays (multiples of 7 days since 0001-01-01, a Monday).
        assert_eq!((week.width, week.offset), (604_800, 4 * 86_400));
        let monday = 1_704_067_200; // 2024-01-01
        assert_eq!(week.start_of(monday + 86_399 * 3), monday);
        assert_eq!(week.start_of(monday - 1), monday - 604_800);
        let year = BucketGrid::for_interval(Interval::D1);
        // A 52-week shard group on 1.6.7 ran from 2023-02-06 to 2024-02-05.
        assert_eq!(year.start_of(1_700_000_000), 1_675_641_600);
        let bars = vec![
            bar(monday - 60, 1.0),
            bar(monday, 2.0),
            bar(monday + 60, 3.0),
        ];
        let per_bucket = bucket_digests_of(&bars, week);
        assert_eq!(
            per_bucket
                .iter()
                .map(|(s, d)| (*s, d.count))
                .collect::<Vec<_>>(),
            [(monday - 604_800, 1), (monday, 2)]
        );
        assert!(per_bucket[1].1.matches(&RangeDigest::of(&bars[1..])));
    }

    #[test]
    fn checksum_sees_every_value_but_not_the_source() {
        let a = vec![bar(1, 1.0), bar(2, 2.0)];
        let mut b = a.clone();
        b[1].source = SourceKind::Yahoo;
        assert_eq!(RangeSummary::of(&a), RangeSummary::of(&b));
        b[1].volume = 1.0;
        assert_ne!(RangeSummary::of(&a).checksum, RangeSummary::of(&b).checksum);
        let mut c = a.clone();
        c[0].adj_close = Some(1.0);
        assert_ne!(RangeSummary::of(&a).checksum, RangeSummary::of(&c).checksum);
        assert_eq!(RangeSummary::of(&a).count, 2);
        assert_eq!(RangeSummary::of(&[]), RangeSummary::default());
    }
}
