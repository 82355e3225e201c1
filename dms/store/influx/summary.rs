//! Digests and the list of series computed by InfluxDB itself, so that `verify` never pulls
//! equal bars over the network.
//!
//! A digest ([`RangeDigest`]) is `count(close)` and the `sum` of every value field, in one
//! statement per range (`;`-separated in one request) or one statement grouped by
//! `time(width, offset) fill(none)` for a bucket grid. InfluxDB adds a series' points in time
//! order within a shard, so a bucket inside one shard sums exactly as [`RangeDigest::of`]
//! does in process; `BucketGrid::for_interval` buckets never cross a 1-week or 52-week shard
//! boundary (both aligned, like InfluxDB's shard groups, to Go's zero time). InfluxQL has no
//! hash function, so these digests carry no `hash`.
//!
//! The series list is `SHOW TAG VALUES ... WITH KEY = "symbol" WHERE interval = '…'`, one
//! statement per interval: answered from the index, without reading a point.

use super::client::InfluxClient;
use super::line_protocol::BARS;
use super::response::{Row, SeriesHeader, Sink};
use super::{influxql, series_filter, storable};
use crate::domain::{Interval, SeriesKey, Symbol, TimeRange};
use crate::store::{BucketGrid, RangeDigest, StoreError};

/// The aggregates of a digest, aliased so that columns are found by name.
const DIGEST_SELECT: &str = "SELECT count(close) AS n, sum(open) AS o, sum(high) AS h, \
     sum(low) AS l, sum(close) AS c, sum(volume) AS v, sum(adj_close) AS a";

/// Column aliases of the sums, in [`RangeDigest::sums`] order.
const SUM_COLUMNS: [&str; 6] = ["o", "h", "l", "c", "v", "a"];

/// Digests of `series` in each of `ranges`, in one request.
pub async fn digests(
    client: &InfluxClient,
    series: &SeriesKey,
    ranges: &[TimeRange],
) -> Result<Vec<RangeDigest>, StoreError> {
    let mut out = vec![RangeDigest::default(); ranges.len()];
    if !storable(&series.symbol) {
        return Ok(out);
    }
    let filter = series_filter(series);
    // Statements are numbered in the order sent; ranges InfluxDB cannot hold are skipped.
    let mut asked = Vec::new();
    let mut statements = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        if let Some(time) = influxql::time_condition(*r) {
            statements.push(format!(
                "{DIGEST_SELECT} FROM {BARS} WHERE {filter} AND {time}"
            ));
            asked.push(i);
        }
    }
    if statements.is_empty() {
        return Ok(out);
    }
    let mut sink = DigestSink::default();
    client.query(&statements.join("; "), &mut sink).await?;
    for (statement, _, digest) in sink.rows {
        if let Some(&i) = asked.get(statement as usize) {
            out[i] = digest;
        }
    }
    Ok(out)
}

/// Digests of the non-empty buckets of `grid` within `range`.
pub async fn bucket_digests(
    client: &InfluxClient,
    series: &SeriesKey,
    range: TimeRange,
    grid: BucketGrid,
) -> Result<Vec<(i64, RangeDigest)>, StoreError> {
    let Some(time) = influxql::time_condition(range).filter(|_| storable(&series.symbol)) else {
        return Ok(Vec::new());
    };
    let q = format!(
        "{DIGEST_SELECT} FROM {BARS} WHERE {} AND {time} GROUP BY time({}s, {}s) fill(none)",
        series_filter(series),
        grid.width,
        grid.offset
    );
    let mut sink = DigestSink::default();
    client.query(&q, &mut sink).await?;
    let mut out: Vec<(i64, RangeDigest)> = sink
        .rows
        .into_iter()
        .filter(|(_, _, d)| d.count > 0)
        .map(|(_, t, d)| (t, d))
        .collect();
    out.sort_by_key(|(t, _)| *t);
    Ok(out)
}

/// Every `(symbol, interval)` the index knows, from the tag values of each interval.
pub async fn series_keys(client: &InfluxClient) -> Result<Vec<SeriesKey>, StoreError> {
    let statements: Vec<String> = Interval::ALL
        .iter()
        .map(|i| {
            format!(
                "SHOW TAG VALUES FROM {BARS} WITH KEY = \"symbol\" WHERE interval = {}",
                influxql::string(i.as_str())
            )
        })
        .collect();
    let mut sink = TagValuesSink::default();
    client.query(&statements.join("; "), &mut sink).await?;
    let mut out = Vec::with_capacity(sink.values.len());
    for (statement, symbol) in sink.values {
        if let Some(&interval) = Interval::ALL.get(statement as usize) {
            out.push(SeriesKey::new(Symbol::opaque(&symbol), interval));
        }
    }
    Ok(out)
}

/// Rows of digest statements: `(statement, time, digest)`.
#[derive(Default)]
struct DigestSink {
    statement: u64,
    /// Column of `time`, `n` and each sum in the current series.
    columns: Option<(usize, usize, [Option<usize>; 6])>,
    rows: Vec<(u64, i64, RangeDigest)>,
}

impl Sink for DigestSink {
    fn series(&mut self, h: &SeriesHeader) -> Result<(), String> {
        let find = |name: &str| {
            h.column(name)
                .ok_or_else(|| format!("column {name:?} missing from {:?}", h.columns))
        };
        self.statement = h.statement_id;
        self.columns = Some((find("time")?, find("n")?, SUM_COLUMNS.map(|c| h.column(c))));
        Ok(())
    }

    fn row(&mut self, row: &Row<'_>) -> Result<(), String> {
        let Some((time, n, sums)) = self.columns else {
            return Err("a row before its series header".into());
        };
        let ts = row.get(time).as_i64().unwrap_or(0);
        // A bucket with no `close` at all is empty (`count` is null or 0 there).
        let count = row
            .get(n)
            .as_i64()
            .map(|c| u64::try_from(c).map_err(|_| format!("count is {c}")))
            .transpose()?
            .unwrap_or(0);
        let mut digest = RangeDigest {
            count,
            ..RangeDigest::default()
        };
        for (s, col) in digest.sums.iter_mut().zip(sums) {
            // A field no point in the range has sums to null: nothing added, 0.
            *s = col.and_then(|c| row.get(c).as_f64()).unwrap_or(0.0);
        }
        self.rows.push((self.statement, ts, digest));
        Ok(())
    }
}

/// The `value` column of `SHOW TAG VALUES`, with its statement.
#[derive(Default)]
struct TagValuesSink {
    statement: u64,
    column: Option<usize>,
    values: Vec<(u64, String)>,
}

impl Sink for TagValuesSink {
    fn series(&mut self, h: &SeriesHeader) -> Result<(), String> {
        self.statement = h.statement_id;
        self.column = Some(
            h.column("value")
                .ok_or_else(|| format!("column \"value\" missing from {:?}", h.columns))?,
        );
        Ok(())
    }

    fn row(&mut self, row: &Row<'_>) -> Result<(), String> {
        if let Some(v) = self.column.and_then(|c| row.get(c).as_str())
            && !v.is_empty()
        {
            self.values.push((self.statement, v.to_string()));
        }
        Ok(())
    }
}
