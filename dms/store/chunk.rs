//! The embedded store's chunk: the bars of one series in one fixed time span, encoded as
//! columns in one blob.
//!
//! Layout (little-endian): `version: u8 = 1`, `n: u32`, then `ts: [i64; n]`, `open`, `high`,
//! `low`, `close`, `volume`, `adj_close: [f64; n]` (NaN where absent: stored prices are finite,
//! so NaN is free to mean "none"), `source: [u8; n]`. 57 bytes a bar. Columns make decoding a
//! straight copy and keep the codec trivially checkable.

use super::Fields;
use crate::domain::{Bar, Interval, SourceKind, Tiling};

const VERSION: u8 = 1;
const HEADER: usize = 5;
const BYTES_PER_BAR: usize = 7 * 8 + 1;

/// How the embedded store cuts a series into chunks, per interval. Intraday chunks hold at most
/// 1,440 bars (a day of 1-minute bars); daily chunks a year; weekly ten years; monthly fifty.
/// Small enough that an incremental update rewrites little, large enough that a long read
/// touches few rows. (The reader's cache uses larger chunks, for its own reasons: see
/// `reader::cache::chunk_tiling`.)
pub fn tiling(interval: Interval) -> Tiling {
    Tiling::new(match interval {
        i if i.is_intraday() => i.nominal_secs() * 1440,
        Interval::D1 => 365 * 86_400,
        Interval::W1 => 3640 * 86_400,
        _ => 18_250 * 86_400,
    })
}

/// The span of one chunk for an interval, in seconds.
pub fn span(interval: Interval) -> i64 {
    tiling(interval).span()
}

/// The start of the chunk holding `ts`.
pub fn chunk_start(interval: Interval, ts: i64) -> i64 {
    tiling(interval).start_of(ts)
}

/// Encodes bars (sorted by `ts`, unique) into a chunk blob.
pub fn encode(bars: &[Bar]) -> Vec<u8> {
    let n = bars.len();
    let mut out = Vec::with_capacity(HEADER + n * BYTES_PER_BAR);
    out.push(VERSION);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend(bars.iter().flat_map(|b| b.ts.to_le_bytes()));
    out.extend(bars.iter().flat_map(|b| b.open.to_le_bytes()));
    out.extend(bars.iter().flat_map(|b| b.high.to_le_bytes()));
    out.extend(bars.iter().flat_map(|b| b.low.to_le_bytes()));
    out.extend(bars.iter().flat_map(|b| b.close.to_le_bytes()));
    out.extend(bars.iter().flat_map(|b| b.volume.to_le_bytes()));
    out.extend(
        bars.iter()
            .flat_map(|b| b.adj_close.unwrap_or(f64::NAN).to_le_bytes()),
    );
    out.extend(bars.iter().map(|b| b.source as u8));
    out
}

/// Why a blob is not a chunk.
#[derive(Debug, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct CorruptChunk(pub String);

/// Decodes a chunk blob, appending the bars with `ts` in `[lo, hi)` to `out`.
pub fn decode_into(blob: &[u8], lo: i64, hi: i64, out: &mut Vec<Bar>) -> Result<(), CorruptChunk> {
    decode_fields_into(blob, lo, hi, Fields::ALL, out)
}

/// Like [`decode_into`], reading the optional columns only when `fields` asks for them (the
/// others are left `None` / `Unknown`, as [`crate::store::Store::read_fields`] allows).
pub fn decode_fields_into(
    blob: &[u8],
    lo: i64,
    hi: i64,
    fields: Fields,
    out: &mut Vec<Bar>,
) -> Result<(), CorruptChunk> {
    if blob.len() < HEADER || blob[0] != VERSION {
        return Err(CorruptChunk(format!(
            "bad header (len {}, version {:?})",
            blob.len(),
            blob.first()
        )));
    }
    let n = u32::from_le_bytes(blob[1..5].try_into().expect("4 bytes")) as usize;
    if blob.len() != HEADER + n * BYTES_PER_BAR {
        return Err(CorruptChunk(format!("{} bytes for {n} bars", blob.len())));
    }
    let body = &blob[HEADER..];
    let col = |k: usize| &body[k * n * 8..(k + 1) * n * 8];
    let word =
        |c: &[u8], i: usize| u64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let (ts, open, high, low, close, volume, adj) =
        (col(0), col(1), col(2), col(3), col(4), col(5), col(6));
    let sources = &body[7 * n * 8..];
    // Bars are sorted: find the sub-slice in range, then copy it.
    let ts_at = |i: usize| word(ts, i) as i64;
    let first = partition_point(n, |i| ts_at(i) < lo);
    let last = partition_point(n, |i| ts_at(i) < hi);
    out.reserve(last.saturating_sub(first));
    for (i, &source) in sources.iter().enumerate().take(last).skip(first) {
        let a = f64::from_bits(word(adj, i));
        out.push(Bar {
            ts: ts_at(i),
            open: f64::from_bits(word(open, i)),
            high: f64::from_bits(word(high, i)),
            low: f64::from_bits(word(low, i)),
            close: f64::from_bits(word(close, i)),
            volume: f64::from_bits(word(volume, i)),
            adj_close: (fields.adj_close && !a.is_nan()).then_some(a),
            source: if fields.source {
                SourceKind::from_u8(source)
            } else {
                SourceKind::Unknown
            },
        });
    }
    Ok(())
}

/// Decodes a whole chunk.
pub fn decode(blob: &[u8]) -> Result<Vec<Bar>, CorruptChunk> {
    let mut out = Vec::new();
    decode_into(blob, i64::MIN, i64::MAX, &mut out)?;
    Ok(out)
}

fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Merges `new` into `old` (both sorted, unique): new bars replace old ones at the same `ts`.
/// Returns the merged bars and how many of `new` were not in `old`.
pub fn merge(old: Vec<Bar>, new: &[Bar]) -> (Vec<Bar>, usize) {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let mut added = 0;
    let mut old = old.into_iter().peekable();
    for b in new {
        while let Some(o) = old.next_if(|o| o.ts < b.ts) {
            out.push(o);
        }
        if old.next_if(|o| o.ts == b.ts).is_none() {
            added += 1;
        }
        out.push(*b);
    }
    out.extend(old);
    (out, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: i64, c: f64, adj: Option<f64>) -> Bar {
        Bar {
            ts,
            open: c,
            high: c + 1.0,
            low: c - 0.5,
            close: c,
            volume: 10.0 * c,
            adj_close: adj,
            source: SourceKind::Yahoo,
        }
    }

    #[test]
    fn round_trips_every_field_bit_for_bit() {
        let bars = vec![
            bar(60, 129.0399932861328, Some(125.82673645019531)),
            bar(120, 0.1 + 0.2, None),
            bar(180, f64::MIN_POSITIVE, Some(f64::MAX)),
        ];
        let blob = encode(&bars);
        assert_eq!(blob.len(), 5 + 3 * 57);
        assert_eq!(decode(&blob).unwrap(), bars);
        let mut part = Vec::new();
        decode_into(&blob, 61, 181, &mut part).unwrap();
        assert_eq!(part, bars[1..]);
        let mut ohlcv = Vec::new();
        decode_fields_into(&blob, 0, 1000, Fields::OHLCV, &mut ohlcv).unwrap();
        assert_eq!(ohlcv.len(), 3);
        assert!(
            ohlcv
                .iter()
                .all(|b| b.adj_close.is_none() && b.source == SourceKind::Unknown)
        );
        assert_eq!(ohlcv[0].close, bars[0].close);
        assert!(decode(&blob[..blob.len() - 1]).is_err());
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn merge_replaces_and_counts_new_bars() {
        let old = vec![bar(1, 1.0, None), bar(3, 3.0, None)];
        let new = [bar(0, 9.0, None), bar(3, 7.0, None), bar(4, 8.0, None)];
        let (m, added) = merge(old, &new);
        assert_eq!(
            m.iter().map(|b| (b.ts, b.close)).collect::<Vec<_>>(),
            [(0, 9.0), (1, 1.0), (3, 7.0), (4, 8.0)]
        );
        assert_eq!(added, 2);
    }

    #[test]
    fn chunks_tile_time_without_overlap() {
        for i in Interval::ALL {
            let s = span(i);
            assert_eq!(chunk_start(i, 0), 0);
            assert_eq!(chunk_start(i, s - 1), 0);
            assert_eq!(chunk_start(i, s), s);
            assert_eq!(chunk_start(i, -1), -s);
        }
    }
}
