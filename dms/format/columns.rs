//! [`Columns`]: bars of one series as columns — what the encoders consume and the reader
//! caches. It lives here, below both, so that `reader` depends on `format` and never the other
//! way round.
//!
//! Each column is an Arrow [`ScalarBuffer`] (a reference-counted, immutable buffer), so a
//! cached chunk is never copied to be served: slicing it to a request's range and handing it to
//! an encoder (or into an Arrow array) only bumps reference counts. Immutability is also what
//! makes a cached chunk impossible to tear: a write replaces a chunk, it never edits one.

use arrow_buffer::ScalarBuffer;

use crate::domain::{Bar, TimeRange};

/// Bars sorted by `ts`, unique, as columns of equal length.
#[derive(Clone, Debug, PartialEq)]
pub struct Columns {
    pub ts: ScalarBuffer<i64>,
    pub open: ScalarBuffer<f64>,
    pub high: ScalarBuffer<f64>,
    pub low: ScalarBuffer<f64>,
    pub close: ScalarBuffer<f64>,
    pub volume: ScalarBuffer<f64>,
    /// `adj_close`, NaN where a bar has none (stored prices are finite, so NaN is free to mean
    /// "absent"); `None` when no bar has one, which saves a column for most intraday data.
    pub adj_close: Option<ScalarBuffer<f64>>,
}

impl Columns {
    /// No bars.
    pub fn empty() -> Columns {
        Columns::from_bars(&[])
    }

    /// Columns of `bars` (sorted by `ts`).
    pub fn from_bars(bars: &[Bar]) -> Columns {
        let col = |f: fn(&Bar) -> f64| -> ScalarBuffer<f64> { bars.iter().map(f).collect() };
        let any_adj = bars.iter().any(|b| b.adj_close.is_some());
        Columns {
            ts: bars.iter().map(|b| b.ts).collect(),
            open: col(|b| b.open),
            high: col(|b| b.high),
            low: col(|b| b.low),
            close: col(|b| b.close),
            volume: col(|b| b.volume),
            adj_close: any_adj.then(|| col(|b| b.adj_close.unwrap_or(f64::NAN))),
        }
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Memory held by the columns' values (of this view: a slice counts its own bars).
    pub fn bytes(&self) -> usize {
        let per_bar = 6 * 8 + if self.adj_close.is_some() { 8 } else { 0 };
        self.len() * per_bar
    }

    /// xxh3-64 of every value (bit patterns, `adj_close` only `with_adj`): equal fingerprints
    /// mean the same bars, so a part read twice can be checked to be unchanged.
    pub fn fingerprint(&self, with_adj: bool) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&(self.len() as u64).to_le_bytes());
        h.update(self.ts.inner().as_slice());
        for col in [&self.open, &self.high, &self.low, &self.close, &self.volume] {
            h.update(col.inner().as_slice());
        }
        if with_adj && let Some(adj) = &self.adj_close {
            h.update(adj.inner().as_slice());
        }
        h.digest()
    }

    /// Bars `offset..offset + len`, sharing the buffers.
    pub fn slice(&self, offset: usize, len: usize) -> Columns {
        Columns {
            ts: self.ts.slice(offset, len),
            open: self.open.slice(offset, len),
            high: self.high.slice(offset, len),
            low: self.low.slice(offset, len),
            close: self.close.slice(offset, len),
            volume: self.volume.slice(offset, len),
            adj_close: self.adj_close.as_ref().map(|a| a.slice(offset, len)),
        }
    }

    /// The bars with `ts` in `range`, sharing the buffers.
    pub fn clip(&self, range: TimeRange) -> Columns {
        let lo = self.ts.partition_point(|&t| t < range.start());
        let hi = self.ts.partition_point(|&t| t < range.end());
        if lo == 0 && hi == self.len() {
            self.clone()
        } else {
            self.slice(lo, hi - lo)
        }
    }

    /// How many bars have `ts` in `range`.
    pub fn count_in(&self, range: TimeRange) -> usize {
        let lo = self.ts.partition_point(|&t| t < range.start());
        let hi = self.ts.partition_point(|&t| t < range.end());
        hi - lo
    }

    /// `(open, high, low, close)` of bar `i`, scaled by `adj_close / close` when `adjusted`
    /// and the bar has an `adj_close` (DESIGN §4 `adjusted=true`).
    #[inline]
    pub fn ohlc(&self, i: usize, adjusted: bool) -> (f64, f64, f64, f64) {
        let (o, h, l, c) = (self.open[i], self.high[i], self.low[i], self.close[i]);
        if adjusted && let Some(adj) = &self.adj_close {
            let a = adj[i];
            if !a.is_nan() {
                let k = a / c;
                return (o * k, h * k, l * k, a);
            }
        }
        (o, h, l, c)
    }

    /// The bars back as [`Bar`]s (the source is not kept: it is not part of any output).
    pub fn to_bars(&self) -> Vec<Bar> {
        (0..self.len())
            .map(|i| Bar {
                ts: self.ts[i],
                open: self.open[i],
                high: self.high[i],
                low: self.low[i],
                close: self.close[i],
                volume: self.volume[i],
                adj_close: self
                    .adj_close
                    .as_ref()
                    .map(|a| a[i])
                    .filter(|a| !a.is_nan()),
                source: Default::default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SourceKind;

    fn bar(ts: i64, c: f64, adj: Option<f64>) -> Bar {
        Bar {
            ts,
            open: c,
            high: c + 1.0,
            low: c - 1.0,
            close: c,
            volume: 5.0,
            adj_close: adj,
            source: SourceKind::Unknown,
        }
    }

    #[test]
    fn clipping_shares_buffers_and_keeps_half_open_ranges() {
        let bars: Vec<Bar> = (0..10).map(|i| bar(i * 10, 1.0 + i as f64, None)).collect();
        let c = Columns::from_bars(&bars);
        assert!(c.adj_close.is_none());
        let part = c.clip(TimeRange::new(20, 50).unwrap());
        assert_eq!(part.ts.as_ref(), &[20, 30, 40]);
        assert_eq!(part.ts.inner().data_ptr(), c.ts.inner().data_ptr());
        assert_eq!(c.count_in(TimeRange::new(-5, 1).unwrap()), 1);
        assert_eq!(part.to_bars(), bars[2..5].to_vec());
    }

    #[test]
    fn adjusting_scales_only_bars_with_an_adj_close() {
        let c = Columns::from_bars(&[bar(0, 10.0, Some(5.0)), bar(1, 10.0, None)]);
        assert_eq!(c.ohlc(0, true), (5.0, 5.5, 4.5, 5.0));
        assert_eq!(c.ohlc(1, true), (10.0, 11.0, 9.0, 10.0));
        assert_eq!(c.ohlc(0, false), (10.0, 11.0, 9.0, 10.0));
        assert_eq!(c.to_bars()[1].adj_close, None);
        assert_eq!(c.bytes(), 2 * 56);
    }

    #[test]
    fn fingerprints_tell_different_bars_apart_and_ignore_buffer_identity() {
        let bars: Vec<Bar> = (0..10).map(|i| bar(i * 10, 1.0 + i as f64, None)).collect();
        let a = Columns::from_bars(&bars);
        let b = Columns::from_bars(&bars);
        assert_eq!(a.fingerprint(true), b.fingerprint(true));
        let mut changed = bars.clone();
        changed[3].volume += 1.0;
        assert_ne!(
            a.fingerprint(false),
            Columns::from_bars(&changed).fingerprint(false)
        );
        assert_ne!(a.fingerprint(false), a.slice(1, 9).fingerprint(false));
        assert_eq!(
            a.slice(2, 3).fingerprint(false),
            a.clip(TimeRange::new(20, 50).unwrap()).fingerprint(false)
        );
        let mut adj = bars;
        adj[0].adj_close = Some(0.5);
        let adj = Columns::from_bars(&adj);
        assert_eq!(adj.fingerprint(false), a.fingerprint(false));
        assert_ne!(adj.fingerprint(true), a.fingerprint(true));
    }
}
