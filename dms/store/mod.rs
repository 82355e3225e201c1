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

use std::collections::HashMap;

use async_trait::async_trait;

use crate::domain::{Bar, CorporateAction, SeriesKey, Symbol, TimeRange};
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
