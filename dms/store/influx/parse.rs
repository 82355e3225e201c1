//! Rows → domain values: the [`Sink`]s that turn decoded `/query` rows into bars, corporate
//! actions, series statistics and plain lists. Columns are found by name, never by position,
//! and a row missing a value DMS always writes is an error naming the series and instant, not
//! a bar with a made-up value.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::line_protocol::ABSENT;
use super::response::{Row, SeriesHeader, Sink, Value};
use crate::domain::{ActionKind, Bar, CorporateAction, SeriesKey, SourceKind, Symbol};
use crate::store::Fields;

/// Every field of a bar, in the order queries select them.
pub const BAR_COLUMNS: &str = "open, high, low, close, volume, adj_close, source";

/// The fields of a bar a read of `fields` selects: OHLCV always, then the optional ones asked
/// for. A backtest asks for OHLCV only, and every column left out is one InfluxDB does not
/// merge, encode and send.
pub fn bar_columns(fields: Fields) -> &'static str {
    match (fields.adj_close, fields.source) {
        (true, true) => BAR_COLUMNS,
        (true, false) => "open, high, low, close, volume, adj_close",
        (false, true) => "open, high, low, close, volume, source",
        (false, false) => "open, high, low, close, volume",
    }
}

/// The fields of a corporate action, in the order queries select them.
pub const ACTION_COLUMNS: &str = "amount, numerator, denominator, source";

fn column(h: &SeriesHeader, name: &str) -> Result<usize, String> {
    h.column(name)
        .ok_or_else(|| format!("column {name:?} missing from {:?}", h.columns))
}

fn time_of(row: &Row<'_>, i: usize) -> Result<i64, String> {
    row.get(i)
        .as_i64()
        .ok_or_else(|| format!("time is {:?}, not an integer", row.get(i)))
}

fn float(row: &Row<'_>, i: usize, name: &str, ts: i64) -> Result<f64, String> {
    row.get(i)
        .as_f64()
        .ok_or_else(|| format!("{name} at {ts} is {:?}, not a number", row.get(i)))
}

/// An optional field: `None` when the column is not selected, the point has no such field
/// (written before every line carried every field) or holds [`ABSENT`].
fn optional_float(
    row: &Row<'_>,
    i: Option<usize>,
    name: &str,
    ts: i64,
) -> Result<Option<f64>, String> {
    match i {
        Some(i) if row.get(i) != Value::Null => {
            float(row, i, name, ts).map(|v| (v != ABSENT).then_some(v))
        }
        _ => Ok(None),
    }
}

fn source(row: &Row<'_>, i: Option<usize>) -> SourceKind {
    i.and_then(|i| row.get(i).as_str().map(|s| s.parse().unwrap_or_default()))
        .unwrap_or_default()
}

/// The series a header is about, when it names a symbol and an interval DMS knows.
pub fn series_key(h: &SeriesHeader) -> Option<SeriesKey> {
    let symbol = h.tag("symbol").filter(|s| !s.is_empty())?;
    let interval = h.tag("interval")?.parse().ok()?;
    Some(SeriesKey::new(Symbol::opaque(symbol), interval))
}

/// Where the fields of a bar are in a series' rows.
struct BarColumns {
    time: usize,
    open: usize,
    high: usize,
    low: usize,
    close: usize,
    volume: usize,
    adj_close: Option<usize>,
    source: Option<usize>,
}

impl BarColumns {
    fn of(h: &SeriesHeader) -> Result<BarColumns, String> {
        Ok(BarColumns {
            time: column(h, "time")?,
            open: column(h, "open")?,
            high: column(h, "high")?,
            low: column(h, "low")?,
            close: column(h, "close")?,
            volume: column(h, "volume")?,
            adj_close: h.column("adj_close"),
            source: h.column("source"),
        })
    }

    fn bar(&self, row: &Row<'_>) -> Result<Bar, String> {
        let ts = time_of(row, self.time)?;
        Ok(Bar {
            ts,
            open: float(row, self.open, "open", ts)?,
            high: float(row, self.high, "high", ts)?,
            low: float(row, self.low, "low", ts)?,
            close: float(row, self.close, "close", ts)?,
            volume: float(row, self.volume, "volume", ts)?,
            adj_close: optional_float(row, self.adj_close, "adj_close", ts)?,
            source: source(row, self.source),
        })
    }
}

/// The bars of one series, in the order InfluxDB returns them (by time).
#[derive(Default)]
pub struct BarsSink {
    columns: Option<BarColumns>,
    pub bars: Vec<Bar>,
}

impl Sink for BarsSink {
    fn series(&mut self, h: &SeriesHeader) -> Result<(), String> {
        self.columns = Some(BarColumns::of(h)?);
        Ok(())
    }

    fn row(&mut self, row: &Row<'_>) -> Result<(), String> {
        let Some(c) = &self.columns else {
            return Err("a row before its series header".into());
        };
        self.bars.push(c.bar(row)?);
        Ok(())
    }
}

/// The newest bar of each wanted series, from a query grouped by symbol and interval, newest
/// first, one row per series.
pub struct LatestSink<'a> {
    wanted: &'a HashSet<SeriesKey>,
    current: Option<(SeriesKey, BarColumns)>,
    pub out: HashMap<SeriesKey, Bar>,
}

impl<'a> LatestSink<'a> {
    pub fn new(wanted: &'a HashSet<SeriesKey>) -> LatestSink<'a> {
        LatestSink {
            wanted,
            current: None,
            out: HashMap::with_capacity(wanted.len()),
        }
    }
}

impl Sink for LatestSink<'_> {
    fn series(&mut self, h: &SeriesHeader) -> Result<(), String> {
        self.current = match series_key(h) {
            Some(key) if self.wanted.contains(&key) => Some((key, BarColumns::of(h)?)),
            _ => None,
        };
        Ok(())
    }

    fn row(&mut self, row: &Row<'_>) -> Result<(), String> {
        if let Some((key, c)) = &self.current {
            let bar = c.bar(row)?;
            // Newest first: keep the first row of a series.
            self.out.entry(key.clone()).or_insert(bar);
        }
        Ok(())
    }
}

/// Count, first and last instant of every series, from three statements grouped by symbol and
/// interval: `count(close)`, `first(close)`, `last(close)` (statement ids 0, 1, 2).
#[derive(Default)]
pub struct StatsSink {
    current: Option<(SeriesKey, u64, usize)>,
    pub stats: BTreeMap<SeriesKey, (u64, Option<i64>, Option<i64>)>,
}

impl Sink for StatsSink {
    fn series(&mut self, h: &SeriesHeader) -> Result<(), String> {
        self.current = match series_key(h) {
            Some(key) => {
                let col = if h.statement_id == 0 {
                    column(h, "count")?
                } else {
                    column(h, "time")?
                };
                Some((key, h.statement_id, col))
            }
            None => None,
        };
        Ok(())
    }

    fn row(&mut self, row: &Row<'_>) -> Result<(), String> {
        let Some((key, statement, col)) = &self.current else {
            return Ok(());
        };
        let value = row
            .get(*col)
            .as_i64()
            .ok_or_else(|| format!("{key}: {:?} is not an integer", row.get(*col)))?;
        let entry = self.stats.entry(key.clone()).or_insert((0, None, None));
        match statement {
            0 => entry.0 = u64::try_from(value).unwrap_or(0),
            1 => entry.1 = Some(value),
            _ => entry.2 = Some(value),
        }
        Ok(())
    }
}

/// Corporate actions of one symbol, from a query grouped by kind.
#[derive(Default)]
pub struct ActionsSink {
    current: Option<(ActionKind, [usize; 2], [Option<usize>; 3])>,
    pub actions: Vec<CorporateAction>,
}

impl Sink for ActionsSink {
    fn series(&mut self, h: &SeriesHeader) -> Result<(), String> {
        self.current = match h.tag("kind").and_then(|k| k.parse().ok()) {
            Some(kind) => Some((
                kind,
                [column(h, "time")?, column(h, "amount")?],
                [
                    h.column("numerator"),
                    h.column("denominator"),
                    h.column("source"),
                ],
            )),
            None => None,
        };
        Ok(())
    }

    fn row(&mut self, row: &Row<'_>) -> Result<(), String> {
        let Some((kind, [time, amount], [numerator, denominator, src])) = self.current else {
            return Ok(());
        };
        let ts = time_of(row, time)?;
        self.actions.push(CorporateAction {
            ts,
            kind,
            amount: float(row, amount, "amount", ts)?,
            numerator: optional_float(row, numerator, "numerator", ts)?,
            denominator: optional_float(row, denominator, "denominator", ts)?,
            source: source(row, src),
        });
        Ok(())
    }
}

/// The sum of a `count` column (one row, or none when nothing matched).
#[derive(Default)]
pub struct CountSink {
    column: Option<usize>,
    pub count: u64,
}

impl Sink for CountSink {
    fn series(&mut self, h: &SeriesHeader) -> Result<(), String> {
        self.column = Some(column(h, "count")?);
        Ok(())
    }

    fn row(&mut self, row: &Row<'_>) -> Result<(), String> {
        let Some(c) = self.column else {
            return Err("a row before its series header".into());
        };
        let n = row
            .get(c)
            .as_i64()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| format!("count is {:?}", row.get(c)))?;
        self.count += n;
        Ok(())
    }
}

/// The `name` column of `SHOW DATABASES` and `SHOW RETENTION POLICIES`.
#[derive(Default)]
pub struct NamesSink {
    column: Option<usize>,
    pub names: Vec<String>,
}

impl Sink for NamesSink {
    fn series(&mut self, h: &SeriesHeader) -> Result<(), String> {
        self.column = Some(column(h, "name")?);
        Ok(())
    }

    fn row(&mut self, row: &Row<'_>) -> Result<(), String> {
        if let Some(name) = self.column.and_then(|c| row.get(c).as_str()) {
            self.names.push(name.to_string());
        }
        Ok(())
    }
}
