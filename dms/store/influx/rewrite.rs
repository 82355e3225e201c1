//! Overwrites that drop an optional field.
//!
//! InfluxDB stores a point as a set of fields and merges a rewrite of the same point (same
//! measurement, tags and time) into it field by field: writing a bar without `adj_close` over
//! one that had it would keep the old `adj_close`. The `Store` contract is that afterwards the
//! store holds exactly the new values, so before such a write the store deletes the stored
//! points that have an optional field their replacement lacks:
//!
//! 1. ask for the optional fields in the span of the new points that lack one — InfluxDB
//!    returns only points that have one, so for a series that never had them (intraday bars,
//!    dividends) the answer is empty and this is the whole cost;
//! 2. if some stored point would keep a stale field, list every stored instant in their span
//!    and delete the affected points in as few time ranges as possible: a range may cover
//!    points that are about to be rewritten anyway, never one that is not;
//! 3. the caller then writes the new points.
//!
//! Between 2 and 3 a reader can miss the deleted points, and if the write then fails they stay
//! missing until the batch is written again, which callers do with a failed write (retry or
//! spool). InfluxQL `DELETE` has no retention-policy clause: it removes the points from every
//! retention policy of the database.

use super::client::{ClientError, InfluxClient};
use super::influxql;
use super::parse::PresenceSink;

/// The fields a measurement's points are written with.
pub struct Fields {
    pub measurement: &'static str,
    /// A field every point has: its presence marks a stored point.
    pub required: &'static str,
    /// Fields a point may lack (at most 8).
    pub optional: &'static [&'static str],
}

pub const BAR_FIELDS: Fields = Fields {
    measurement: super::line_protocol::BARS,
    required: "close",
    optional: &["adj_close"],
};

pub const ACTION_FIELDS: Fields = Fields {
    measurement: super::line_protocol::ACTIONS,
    required: "amount",
    optional: &["numerator", "denominator"],
};

/// A point about to be written: its instant and which optional fields it has (bit `i` for
/// `optional[i]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewPoint {
    pub ts: i64,
    pub present: u8,
}

/// DELETE statements per request.
const DELETES_PER_REQUEST: usize = 100;

/// Makes sure that writing `points` (sorted by `ts`, unique) to the series `filter` selects
/// leaves no stale optional field behind (see the module docs).
pub async fn clear_dropped_fields(
    client: &InfluxClient,
    fields: &Fields,
    filter: &str,
    points: &[NewPoint],
) -> Result<(), ClientError> {
    let all = (1u8 << fields.optional.len()) - 1;
    let mut lacking = points.iter().filter(|p| p.present != all);
    let Some(first) = lacking.next() else {
        return Ok(());
    };
    let last = lacking.next_back().unwrap_or(first);
    let new_at = |ts: i64| points.binary_search_by_key(&ts, |p| p.ts).ok();

    let mut stored = PresenceSink::new(fields.optional);
    let q = format!(
        "SELECT {} FROM {} WHERE {filter} AND {}",
        fields.optional.join(", "),
        fields.measurement,
        influxql::time_between(first.ts, last.ts)
    );
    client.query(&q, &mut stored).await?;
    let mut clear: Vec<i64> = stored
        .rows
        .iter()
        .filter(|(ts, had)| new_at(*ts).is_some_and(|i| had & !points[i].present != 0))
        .map(|(ts, _)| *ts)
        .collect();
    clear.sort_unstable();
    clear.dedup();
    let (Some(&lo), Some(&hi)) = (clear.first(), clear.last()) else {
        return Ok(());
    };

    let mut span = PresenceSink::new(&[]);
    let q = format!(
        "SELECT {} FROM {} WHERE {filter} AND {}",
        fields.required,
        fields.measurement,
        influxql::time_between(lo, hi)
    );
    client.query(&q, &mut span).await?;
    let mut others: Vec<i64> = span
        .rows
        .iter()
        .map(|(ts, _)| *ts)
        .filter(|ts| new_at(*ts).is_none())
        .collect();
    others.sort_unstable();

    let ranges = delete_ranges(&clear, &others);
    tracing::debug!(
        measurement = fields.measurement,
        points = clear.len(),
        ranges = ranges.len(),
        "deleting points that lose an optional field"
    );
    for group in ranges.chunks(DELETES_PER_REQUEST) {
        let statements: Vec<String> = group
            .iter()
            .map(|&(a, b)| {
                format!(
                    "DELETE FROM {} WHERE {filter} AND {}",
                    fields.measurement,
                    influxql::time_between(a, b)
                )
            })
            .collect();
        client.execute(&statements.join("; ")).await?;
    }
    Ok(())
}

/// The fewest closed ranges that cover every instant of `clear` and none of `keep` (both
/// sorted; disjoint).
pub fn delete_ranges(clear: &[i64], keep: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    let mut k = 0;
    for &t in clear {
        let mut blocked = false;
        while k < keep.len() && keep[k] < t {
            blocked = true;
            k += 1;
        }
        match out.last_mut() {
            Some(range) if !blocked => range.1 = t,
            _ => out.push((t, t)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_until_a_point_to_keep_sits_between() {
        assert_eq!(delete_ranges(&[], &[1, 2]), vec![]);
        assert_eq!(delete_ranges(&[5], &[]), vec![(5, 5)]);
        assert_eq!(delete_ranges(&[1, 2, 3, 9], &[]), vec![(1, 9)]);
        assert_eq!(
            delete_ranges(&[1, 2, 4, 5, 9], &[3, 7, 8]),
            vec![(1, 2), (4, 5), (9, 9)]
        );
        assert_eq!(delete_ranges(&[4, 5], &[0, 1, 10]), vec![(4, 5)]);
    }

    #[test]
    fn no_range_ever_covers_a_point_to_keep() {
        // Exhaustive over small sets: every instant 0..10 either cleared, kept or absent.
        for code in 0..3u32.pow(10) {
            let (mut clear, mut keep) = (Vec::new(), Vec::new());
            let mut c = code;
            for t in 0..10i64 {
                match c % 3 {
                    1 => clear.push(t),
                    2 => keep.push(t),
                    _ => {}
                }
                c /= 3;
            }
            let ranges = delete_ranges(&clear, &keep);
            for &t in &clear {
                assert!(ranges.iter().any(|&(a, b)| a <= t && t <= b));
            }
            for &t in &keep {
                assert!(!ranges.iter().any(|&(a, b)| a <= t && t <= b));
            }
            // Fewest: two neighbouring ranges always have a kept point between them.
            for w in ranges.windows(2) {
                assert!(keep.iter().any(|&k| w[0].1 < k && k < w[1].0));
            }
        }
    }
}
