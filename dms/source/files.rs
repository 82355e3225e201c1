//! The file source: bars from CSV and Parquet files.
//!
//! Two layouts, recognised by their header:
//! - **Yahoo's CSV export**: `Date,Open,High,Low,Close,Adj Close,Volume` — one symbol per file,
//!   named by `--symbol` or by the file name (`AAPL.csv`);
//! - **generic**: `symbol,ts,open,high,low,close,volume` with an optional `adj_close`, in CSV
//!   or Parquet; `--symbol` then keeps only that symbol's rows.
//!
//! `ts` may be `YYYY-MM-DD`, a date-time without a zone (`YYYY-MM-DD HH:MM:SS`, `T` or a
//! space), RFC 3339 with `Z` or an offset, or integer epoch seconds; in Parquet also a
//! timestamp column (any unit; with a time zone it is an instant, without one a zoneless
//! date-time), a `date32`/`date64` column or an integer column of epoch seconds. Every form
//! is stamped by the one rule of [`crate::domain::time`] (DESIGN §1) through
//! [`Interval::stamp`], in the time zone of the symbol's market: for daily and longer bars a
//! date or zoneless date-time is its date, an instant at 00:00 UTC is that date (so DMS's own
//! `csv` and `parquet` exports re-import to the same bars), any other instant its
//! exchange-local date; intraday bars keep their instant, zoneless times read as UTC.
//!
//! A file is parsed whole before anything is written: a malformed line fails the file with its
//! name, line number and reason, and nothing from it is stored. Rows whose prices and volume are
//! all empty or `null` are "no trade" and dropped (counted); partly empty rows become bars with
//! NaN values, which validation quarantines.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use super::{Dropped, FetchRequest, Page, PageStream, Source, SourceError, gate};
use crate::domain::time::{self, WrittenTime};
use crate::domain::{Bar, Interval, Market, SeriesKey, SourceKind, Symbol};

/// Why a file could not be imported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FileError {
    #[error("{file}:{line}: {reason}")]
    Malformed {
        file: String,
        line: u64,
        reason: String,
    },
    #[error("{file}: {reason}")]
    Unreadable { file: String, reason: String },
}

/// The bars of one file, grouped by series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileBars {
    pub series: BTreeMap<SeriesKey, Vec<Bar>>,
    pub dropped: Dropped,
}

impl FileBars {
    pub fn bar_count(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }
}

/// The CSV and Parquet files under `path` (itself when it is a file), sorted.
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>, FileError> {
    let unreadable = |e: std::io::Error| FileError::Unreadable {
        file: path.display().to_string(),
        reason: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(unreadable)? {
        let p = entry.map_err(unreadable)?.path();
        if p.is_file() && matches!(extension(&p).as_deref(), Some("csv" | "parquet")) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn extension(p: &Path) -> Option<String> {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}

/// Reads one CSV or Parquet file. Each symbol's market (for the session dates of daily bars)
/// comes from its suffix.
pub fn read_file(
    path: &Path,
    interval: Interval,
    symbol: Option<&Symbol>,
) -> Result<FileBars, FileError> {
    read_file_in(path, interval, symbol, None)
}

/// Like [`read_file`], with `market` (a universe entry's) overriding the suffix's for every
/// symbol of the file.
pub fn read_file_in(
    path: &Path,
    interval: Interval,
    symbol: Option<&Symbol>,
    market: Option<Market>,
) -> Result<FileBars, FileError> {
    let c = Collector::new(path, interval, symbol, market);
    match extension(path).as_deref() {
        Some("parquet") => read_parquet(path, c),
        _ => read_csv(path, c),
    }
}

/// A row's `ts`: text (CSV, a Parquet string column) or already typed (Parquet).
enum RowTs<'a> {
    Text(&'a str),
    Written(WrittenTime),
}

/// A row as read, before becoming a bar.
struct Row<'a> {
    symbol: &'a str,
    ts: RowTs<'a>,
    values: [Option<f64>; 5],
    adj_close: Option<f64>,
}

/// Turns parsed rows into bars per series. `line` gives each row's line for errors.
struct Collector<'a> {
    file: String,
    interval: Interval,
    only: Option<&'a Symbol>,
    /// Overrides every symbol's own market.
    market: Option<Market>,
    out: FileBars,
    /// Each symbol of the file, parsed once: its index in `series`.
    symbols: std::collections::HashMap<String, usize>,
    /// Per symbol: its series, the time zone its daily bars are dated in, its bars so far.
    series: Vec<(SeriesKey, chrono_tz::Tz, Vec<Bar>)>,
    /// The index of the previous row's symbol: files are usually grouped by symbol, so most
    /// rows need one string comparison, no lookup and no allocation.
    last: Option<usize>,
}

impl<'a> Collector<'a> {
    fn new(
        path: &Path,
        interval: Interval,
        only: Option<&'a Symbol>,
        market: Option<Market>,
    ) -> Collector<'a> {
        Collector {
            file: path.display().to_string(),
            interval,
            only,
            market,
            out: FileBars::default(),
            symbols: std::collections::HashMap::new(),
            series: Vec::new(),
            last: None,
        }
    }

    /// The bars collected, by series.
    fn finish(mut self) -> FileBars {
        for (k, _, bars) in self.series {
            self.out.series.entry(k).or_default().extend(bars);
        }
        self.out
    }

    /// The index of `symbol` in `series`, parsing it the first time it appears.
    fn slot(&mut self, line: u64, symbol: &str) -> Result<usize, FileError> {
        if let Some(i) = self.last
            && self.series[i].0.symbol.as_str() == symbol
        {
            return Ok(i);
        }
        let i = match self.symbols.get(symbol) {
            Some(&i) => i,
            None => {
                let sym = Symbol::parse(symbol).map_err(|_| {
                    self.bad(
                        line,
                        "symbol: not a symbol (letters, digits and .-=^_, at most 32)",
                    )
                })?;
                let tz = self
                    .market
                    .or_else(|| sym.market())
                    .map_or(chrono_tz::UTC, Market::timezone);
                self.series
                    .push((SeriesKey::new(sym, self.interval), tz, Vec::new()));
                self.symbols
                    .insert(symbol.to_string(), self.series.len() - 1);
                self.series.len() - 1
            }
        };
        self.last = Some(i);
        Ok(i)
    }

    fn bad(&self, line: u64, reason: impl Into<String>) -> FileError {
        FileError::Malformed {
            file: self.file.clone(),
            line,
            reason: reason.into(),
        }
    }

    fn push(&mut self, line: u64, row: Row<'_>) -> Result<(), FileError> {
        if self.only.is_some_and(|s| s.as_str() != row.symbol) {
            return Ok(());
        }
        let slot = self.slot(line, row.symbol)?;
        let tz = self.series[slot].1;
        let written = match row.ts {
            RowTs::Written(w) => w,
            RowTs::Text(s) => {
                time::parse_written(s).map_err(|e| self.bad(line, format!("ts: {e}")))?
            }
        };
        let ts = self.interval.stamp(written, tz);
        if row.values.iter().all(Option::is_none) {
            self.out.dropped.no_trade += 1;
            return Ok(());
        }
        let [open, high, low, close, volume] = row.values.map(|v| v.unwrap_or(f64::NAN));
        let bar = Bar {
            ts,
            open,
            high,
            low,
            close,
            volume,
            adj_close: row.adj_close,
            source: SourceKind::Files,
        };
        self.series[slot].2.push(bar);
        Ok(())
    }
}

fn parse_number(s: &str) -> Result<Option<f64>, String> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("null") || t.eq_ignore_ascii_case("nan") {
        return Ok(None);
    }
    t.parse::<f64>()
        .map(Some)
        .map_err(|_| "not a number".to_string())
}

/// Column positions of a CSV header.
#[derive(Clone)]
enum Layout {
    Yahoo {
        date: usize,
        cols: [usize; 5],
        adj: usize,
    },
    Generic {
        symbol: usize,
        ts: usize,
        cols: [usize; 5],
        adj: Option<usize>,
    },
}

fn csv_layout(header: &csv::StringRecord) -> Option<Layout> {
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let pos = |n: &str| names.iter().position(|x| x == n);
    let ohlcv = |v: &str| -> Option<[usize; 5]> {
        Some([
            pos("open")?,
            pos("high")?,
            pos("low")?,
            pos("close")?,
            pos(v)?,
        ])
    };
    if let (Some(date), Some(adj), Some(cols)) = (pos("date"), pos("adj close"), ohlcv("volume")) {
        return Some(Layout::Yahoo { date, cols, adj });
    }
    Some(Layout::Generic {
        symbol: pos("symbol")?,
        ts: pos("ts")?,
        cols: ohlcv("volume")?,
        adj: pos("adj_close"),
    })
}

/// Files at least this large are parsed in two halves at once (see [`read_csv`]).
const SPLIT_PARSE_MIN_BYTES: u64 = 16 << 20;

/// Reads a CSV file. A large file (at least [`SPLIT_PARSE_MIN_BYTES`]) is parsed by two
/// threads, each its half, cut at the first line end after the middle: parsing is most of an
/// import's CPU time. The halves are joined in file order, so per series the rows keep their
/// order (of two rows at one time the later wins, as in one pass), and an error names the
/// first bad line of the file. A quoted field may hold a line end, so the cut is kept only
/// when the first half holds an even number of `"` (the cut is then outside quotes);
/// otherwise the file is parsed again in one pass.
fn read_csv(path: &Path, c: Collector<'_>) -> Result<FileBars, FileError> {
    let file = path.display().to_string();
    let unreadable = |e: std::io::Error| FileError::Unreadable {
        file: file.clone(),
        reason: e.to_string(),
    };
    let len = std::fs::metadata(path).map_err(unreadable)?.len();
    let two_cores = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    if len >= SPLIT_PARSE_MIN_BYTES && two_cores {
        let second = Collector::new(path, c.interval, c.only, c.market);
        if let Some(cut) = cut_point(path, len).map_err(unreadable)? {
            match read_csv_halves(path, c, second, cut, len)? {
                Halves::Parsed(bars) => return Ok(bars),
                Halves::QuoteAcrossCut(c) => return read_csv_whole(path, c),
            }
        }
    }
    read_csv_whole(path, c)
}

/// The offset just after the first line end at or after the middle of the file, if any.
fn cut_point(path: &Path, len: u64) -> std::io::Result<Option<u64>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    let mut at = len / 2;
    f.seek(SeekFrom::Start(at))?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            let cut = at + i as u64 + 1;
            return Ok((cut < len).then_some(cut));
        }
        at += n as u64;
    }
}

enum Halves<'a> {
    Parsed(FileBars),
    /// The cut fell inside a quoted field: the first half's collector, to start again.
    QuoteAcrossCut(Collector<'a>),
}

/// Parses `[0, cut)` (with the header) and `[cut, len)` on two threads.
fn read_csv_halves<'a>(
    path: &Path,
    mut first: Collector<'a>,
    mut second: Collector<'a>,
    cut: u64,
    len: u64,
) -> Result<Halves<'a>, FileError> {
    use std::io::{Read, Seek, SeekFrom};
    let file = path.display().to_string();
    let unreadable = |e: std::io::Error| FileError::Unreadable {
        file: file.clone(),
        reason: e.to_string(),
    };
    let head = File::open(path).map_err(unreadable)?.take(cut);
    let mut tail = File::open(path).map_err(unreadable)?;
    tail.seek(SeekFrom::Start(cut)).map_err(unreadable)?;
    let tail = tail.take(len - cut);
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(std::io::BufReader::with_capacity(256 << 10, head));
    let head_format = header_format(path, &mut rdr, first.only)?;
    let tail_format = head_format.clone();
    let (head, counted, b) = std::thread::scope(|scope| {
        let tail_thread = scope.spawn(move || {
            let rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(std::io::BufReader::with_capacity(256 << 10, tail));
            parse_records(rdr, &tail_format, &mut second).map(|()| second)
        });
        let head_result = parse_records(rdr, &head_format, &mut first);
        // The first half's quotes and line ends, read again from the page cache: whether the
        // cut is outside quotes, and the line number the second half starts after.
        let counted = count_quotes_and_lines(path, cut);
        let tail_result = tail_thread.join().unwrap_or_else(|_| {
            Err(FileError::Unreadable {
                file: path.display().to_string(),
                reason: "the parser of the second half panicked".into(),
            })
        });
        (head_result, counted, tail_result)
    });
    let (quotes, lines_before) = counted.map_err(unreadable)?;
    // A cut inside quotes makes the end of the first half look malformed: decide that first.
    if quotes % 2 == 1 {
        return Ok(Halves::QuoteAcrossCut(Collector::new(
            path,
            first.interval,
            first.only,
            first.market,
        )));
    }
    head?;
    let second = b.map_err(|e| match e {
        FileError::Malformed { file, line, reason } => FileError::Malformed {
            file,
            line: line + lines_before,
            reason,
        },
        other => other,
    })?;
    let mut bars = first.finish();
    let tail = second.finish();
    bars.dropped.no_trade += tail.dropped.no_trade;
    for (k, v) in tail.series {
        bars.series.entry(k).or_default().extend(v);
    }
    Ok(Halves::Parsed(bars))
}

/// `"` and line ends in `[0, cut)` of the file.
fn count_quotes_and_lines(path: &Path, cut: u64) -> std::io::Result<(u64, u64)> {
    use std::io::Read;
    let mut f = File::open(path)?.take(cut);
    let mut buf = vec![0u8; 1 << 20];
    let (mut quotes, mut lines) = (0u64, 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((quotes, lines));
        }
        quotes += memchr::memchr_iter(b'"', &buf[..n]).count() as u64;
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}

/// What the header says: the layout, the number of columns, and a Yahoo-layout file's symbol.
#[derive(Clone)]
struct CsvFormat {
    layout: Layout,
    columns: usize,
    file_symbol: Option<String>,
}

/// Reads the header of `rdr` and decides the layout.
fn header_format<R: std::io::Read>(
    path: &Path,
    rdr: &mut csv::Reader<R>,
    only: Option<&Symbol>,
) -> Result<CsvFormat, FileError> {
    let file = path.display().to_string();
    let header = rdr.headers().map_err(|e| FileError::Malformed {
        file: file.clone(),
        line: 1,
        reason: e.to_string(),
    })?;
    let layout = csv_layout(header).ok_or_else(|| FileError::Malformed {
        file: file.clone(),
        line: 1,
        // The header is file content: say what was expected, not what was found.
        reason: format!(
            "unknown header of {} columns (expected Date,Open,High,Low,Close,Adj Close,Volume or symbol,ts,open,high,low,close,volume)",
            header.len()
        ),
    })?;
    let file_symbol = match (&layout, only) {
        (Layout::Yahoo { .. }, Some(s)) => Some(s.to_string()),
        (Layout::Yahoo { .. }, None) => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            Symbol::parse(&stem).map_err(|_| FileError::Unreadable {
                file: file.clone(),
                reason: format!("a Yahoo-layout file names no symbol: pass --symbol (file stem {stem:?} is not a symbol)"),
            })?;
            Some(stem)
        }
        (Layout::Generic { .. }, _) => None,
    };
    Ok(CsvFormat {
        layout,
        columns: header.len(),
        file_symbol,
    })
}

/// Reads a CSV file in one pass.
fn read_csv_whole(path: &Path, mut c: Collector<'_>) -> Result<FileBars, FileError> {
    let file = path.display().to_string();
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .map_err(|e| FileError::Unreadable {
            file: file.clone(),
            reason: e.to_string(),
        })?;
    let format = header_format(path, &mut rdr, c.only)?;
    parse_records(rdr, &format, &mut c)?;
    Ok(c.finish())
}

/// Parses the records of `rdr` into `c`. Lines are counted from the reader's start; a reader
/// that is `flexible` (the second half of a split file) has its records' widths checked here
/// against the header's.
fn parse_records<R: std::io::Read>(
    mut rdr: csv::Reader<R>,
    format: &CsvFormat,
    c: &mut Collector<'_>,
) -> Result<(), FileError> {
    let interval = c.interval;
    let (layout, file_symbol) = (&format.layout, &format.file_symbol);
    let mut record = csv::StringRecord::new();
    loop {
        let line = rdr.position().line() + 1;
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(line);
                return Err(c.bad(line, e.to_string()));
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(line);
        if record.len() != format.columns {
            return Err(c.bad(
                line,
                format!(
                    "found a record with {} fields, but the header has {}",
                    record.len(),
                    format.columns
                ),
            ));
        }
        let num = |i: usize, name: &str| -> Result<Option<f64>, FileError> {
            parse_number(record.get(i).unwrap_or(""))
                .map_err(|e| c.bad(line, format!("{name}: {e}")))
        };
        let row = match layout {
            Layout::Yahoo { date, cols, adj } => Row {
                symbol: file_symbol.as_deref().unwrap_or_default(),
                ts: RowTs::Text(record.get(*date).unwrap_or("")),
                values: [
                    num(cols[0], "open")?,
                    num(cols[1], "high")?,
                    num(cols[2], "low")?,
                    num(cols[3], "close")?,
                    num(cols[4], "volume")?,
                ],
                adj_close: (!interval.is_intraday())
                    .then(|| num(*adj, "adj close"))
                    .transpose()?
                    .flatten(),
            },
            Layout::Generic {
                symbol,
                ts,
                cols,
                adj,
            } => Row {
                symbol: record.get(*symbol).unwrap_or("").trim(),
                ts: RowTs::Text(record.get(*ts).unwrap_or("")),
                values: [
                    num(cols[0], "open")?,
                    num(cols[1], "high")?,
                    num(cols[2], "low")?,
                    num(cols[3], "close")?,
                    num(cols[4], "volume")?,
                ],
                adj_close: adj.map(|a| num(a, "adj_close")).transpose()?.flatten(),
            },
        };
        c.push(line, row)?;
    }
    Ok(())
}

fn read_parquet(path: &Path, mut c: Collector<'_>) -> Result<FileBars, FileError> {
    let file = path.display().to_string();
    let unreadable = |reason: String| FileError::Unreadable {
        file: file.clone(),
        reason,
    };
    let f = File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.with_batch_size(65_536).build())
        .map_err(|e| unreadable(e.to_string()))?;
    let mut row_base = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| unreadable(e.to_string()))?;
        read_batch(&mut c, &batch, row_base)?;
        row_base += batch.num_rows() as u64;
    }
    Ok(c.finish())
}

/// A typed `ts` value at a row: `Ok(None)` for a null, `Err` for a value that is no DMS stamp.
type TsAt<'a> = Box<dyn Fn(usize) -> Result<Option<WrittenTime>, String> + 'a>;

/// A Parquet column read as strings, numbers or times, whatever its physical type.
enum Col<'a> {
    Str(&'a dyn Array),
    F64(Box<dyn Fn(usize) -> Option<f64> + 'a>),
    Ts(TsAt<'a>),
}

/// Whole seconds of a timestamp given in `per_second` units, refusing a fraction.
fn whole_seconds(v: i64, per_second: i64) -> Result<i64, String> {
    if v.rem_euclid(per_second) == 0 {
        Ok(v.div_euclid(per_second))
    } else {
        Err(format!("ts (1/{per_second} s) has a fraction of a second"))
    }
}

/// Epoch seconds as a zoneless date-time (a Parquet timestamp without a time zone).
fn naive_at(secs: i64) -> Result<WrittenTime, String> {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| WrittenTime::Naive(d.naive_utc()))
        .ok_or_else(|| "ts is out of range".to_string())
}

fn instant_at(secs: i64) -> Result<WrittenTime, String> {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|_| WrittenTime::Instant(secs))
        .ok_or_else(|| "ts is out of range".to_string())
}

fn column<'a>(
    batch: &'a RecordBatch,
    name: &str,
    file: &str,
) -> Result<Option<Col<'a>>, FileError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    let Some(idx) = batch
        .schema()
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(name))
    else {
        return Ok(None);
    };
    let a = batch.column(idx).as_ref();
    let is_ts = name == "ts";
    let num = |f: Box<dyn Fn(usize) -> Option<f64> + 'a>| Ok(Some(Col::F64(f)));
    let ts = |f: TsAt<'a>| Ok(Some(Col::Ts(f)));
    macro_rules! float {
        ($t:ty) => {{
            let arr = a.as_primitive::<$t>();
            num(Box::new(move |i| {
                arr.is_valid(i).then(|| arr.value(i) as f64)
            }))
        }};
    }
    macro_rules! int {
        ($t:ty) => {{
            let arr = a.as_primitive::<$t>();
            if is_ts {
                // Integer epoch seconds.
                ts(Box::new(move |i| {
                    arr.is_valid(i)
                        .then(|| {
                            i64::try_from(arr.value(i))
                                .map_err(|_| "ts is out of range".to_string())
                                .and_then(instant_at)
                        })
                        .transpose()
                }))
            } else {
                num(Box::new(move |i| {
                    arr.is_valid(i).then(|| arr.value(i) as f64)
                }))
            }
        }};
    }
    macro_rules! stamp {
        ($t:ty, $per_second:expr, $zoned:expr) => {{
            let arr = a.as_primitive::<$t>();
            let zoned: bool = $zoned;
            ts(Box::new(move |i| {
                arr.is_valid(i)
                    .then(|| {
                        let secs = whole_seconds(arr.value(i), $per_second)?;
                        if zoned {
                            instant_at(secs)
                        } else {
                            naive_at(secs)
                        }
                    })
                    .transpose()
            }))
        }};
    }
    match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(Some(Col::Str(a))),
        DataType::Float64 if !is_ts => float!(Float64Type),
        DataType::Float32 if !is_ts => float!(Float32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::Int32 => int!(Int32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::Timestamp(unit, tz) => {
            let zoned = tz.is_some();
            match unit {
                TimeUnit::Second => stamp!(TimestampSecondType, 1, zoned),
                TimeUnit::Millisecond => stamp!(TimestampMillisecondType, 1_000, zoned),
                TimeUnit::Microsecond => stamp!(TimestampMicrosecondType, 1_000_000, zoned),
                TimeUnit::Nanosecond => stamp!(TimestampNanosecondType, 1_000_000_000, zoned),
            }
        }
        DataType::Date32 if is_ts => {
            let arr = a.as_primitive::<Date32Type>();
            ts(Box::new(move |i| {
                Ok(arr
                    .is_valid(i)
                    .then(|| WrittenTime::Date(time::date_of(arr.value(i) as i64 * 86_400))))
            }))
        }
        DataType::Date64 if is_ts => {
            let arr = a.as_primitive::<Date64Type>();
            ts(Box::new(move |i| {
                Ok(arr
                    .is_valid(i)
                    .then(|| WrittenTime::Date(time::date_of(arr.value(i).div_euclid(1_000)))))
            }))
        }
        other => Err(FileError::Unreadable {
            file: file.to_string(),
            reason: if is_ts {
                format!(
                    "column ts has unsupported type {other} (expected a string, an integer, a timestamp or a date)"
                )
            } else {
                format!("column {name} has unsupported type {other}")
            },
        }),
    }
}

fn str_at(a: &dyn Array, i: usize) -> Option<&str> {
    use arrow_array::cast::AsArray;
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(i)),
        DataType::Utf8View => Some(a.as_string_view().value(i)),
        _ => None,
    }
}

fn read_batch(c: &mut Collector<'_>, batch: &RecordBatch, row_base: u64) -> Result<(), FileError> {
    let file = c.file.clone();
    fn need<'a>(file: &str, name: &str, col: Option<Col<'a>>) -> Result<Col<'a>, FileError> {
        col.ok_or_else(|| FileError::Unreadable {
            file: file.to_string(),
            reason: format!(
                "missing column {name} (expected symbol,ts,open,high,low,close,volume)"
            ),
        })
    }
    let symbol = need(&file, "symbol", column(batch, "symbol", &file)?)?;
    let ts = need(&file, "ts", column(batch, "ts", &file)?)?;
    let mut vals = Vec::new();
    for name in ["open", "high", "low", "close", "volume"] {
        let col = need(&file, name, column(batch, name, &file)?)?;
        if !matches!(col, Col::F64(_)) {
            return Err(FileError::Unreadable {
                file,
                reason: format!("column {name} must be numeric"),
            });
        }
        vals.push(col);
    }
    let adj = column(batch, "adj_close", &file)?;
    let Col::Str(symbols) = symbol else {
        return Err(FileError::Unreadable {
            file,
            reason: "column symbol must be a string".into(),
        });
    };
    let number = |col: &Col<'_>, i: usize| -> Option<f64> {
        match col {
            Col::F64(f) => f(i),
            _ => None,
        }
    };
    for i in 0..batch.num_rows() {
        let line = row_base + i as u64 + 1;
        let sym = str_at(symbols, i).ok_or_else(|| c.bad(line, "symbol is null"))?;
        let row_ts = match &ts {
            Col::Str(a) => RowTs::Text(str_at(*a, i).ok_or_else(|| c.bad(line, "ts is null"))?),
            Col::Ts(at) => RowTs::Written(
                at(i)
                    .map_err(|e| c.bad(line, e))?
                    .ok_or_else(|| c.bad(line, "ts is null"))?,
            ),
            Col::F64(_) => return Err(c.bad(line, "ts must not be a float")),
        };
        let values = [0, 1, 2, 3, 4].map(|k| number(&vals[k], i));
        let adj_close = adj.as_ref().and_then(|a| number(a, i));
        c.push(
            line,
            Row {
                symbol: sym,
                ts: row_ts,
                values,
                adj_close,
            },
        )?;
    }
    Ok(())
}

/// The drop folder (`sources.files.dir`) as a [`Source`]: a series is read from the first of
/// `{dir}/{symbol}_{interval}.{csv,parquet}`, `{dir}/{interval}/{symbol}.{csv,parquet}` and
/// `{dir}/{symbol}.{csv,parquet}` that exists.
pub struct FilesSource {
    dir: PathBuf,
    gate: gate::SourceGate,
}

impl FilesSource {
    pub fn new(dir: &Path) -> FilesSource {
        FilesSource {
            dir: dir.to_path_buf(),
            gate: gate::SourceGate::new(
                SourceKind::Files,
                super::ratelimit::RateLimiter::unlimited(),
                gate::GatePolicy {
                    max_retries: 0,
                    pause_after: 0,
                    ..gate::GatePolicy::default()
                },
            ),
        }
    }

    fn find(&self, series: &SeriesKey) -> Option<PathBuf> {
        let (s, i) = (series.symbol.as_str(), series.interval.as_str());
        ["csv", "parquet"]
            .iter()
            .flat_map(|ext| {
                [
                    self.dir.join(format!("{s}_{i}.{ext}")),
                    self.dir.join(i).join(format!("{s}.{ext}")),
                    self.dir.join(format!("{s}.{ext}")),
                ]
            })
            .find(|p| p.is_file())
    }
}

#[async_trait::async_trait]
impl Source for FilesSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Files
    }

    fn fetch(&self, req: FetchRequest) -> PageStream {
        let path = self.find(&req.series);
        let dir = self.dir.clone();
        Box::pin(futures::stream::once(async move {
            let Some(path) = path else {
                return Err(SourceError::UnknownSymbol {
                    src: SourceKind::Files,
                    symbol: format!("{} ({} has no file for it)", req.series, dir.display()),
                });
            };
            let series = req.series.clone();
            let market = req.market;
            let parse_started = std::time::Instant::now();
            let read = tokio::task::spawn_blocking(move || {
                read_file_in(&path, series.interval, Some(&series.symbol), market)
            })
            .await
            .map_err(|e| SourceError::transient(SourceKind::Files, e.to_string()))?;
            let mut fb = read.map_err(|e| SourceError::InvalidRequest {
                src: SourceKind::Files,
                message: e.to_string(),
            })?;
            let mut bars = fb.series.remove(&req.series).unwrap_or_default();
            let before = bars.len();
            bars.retain(|b| req.range.contains(b.ts));
            bars.sort_by_key(|b| b.ts);
            let mut dropped = fb.dropped;
            dropped.out_of_range += (before - bars.len()) as u64;
            Ok(Page {
                range: Some(req.range),
                bars,
                actions: Vec::new(),
                dropped,
                parse_time: parse_started.elapsed(),
            })
        }))
    }

    async fn ping(&self) -> Result<String, SourceError> {
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => Ok(format!(
                "{} ({} entries)",
                self.dir.display(),
                entries.count()
            )),
            Err(e) => Err(SourceError::transient(
                SourceKind::Files,
                format!("{}: {e}", self.dir.display()),
            )),
        }
    }

    fn status(&self) -> gate::SourceStatus {
        self.gate.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Parses `p` in two halves cut at the first line end after `at` bytes.
    fn read_split(p: &Path, at: u64) -> Result<FileBars, FileError> {
        let len = std::fs::metadata(p).unwrap().len();
        let cut = cut_point(p, at * 2)
            .unwrap()
            .expect("a line end after the cut");
        let c = || Collector::new(p, Interval::M1, None, None);
        match read_csv_halves(p, c(), c(), cut, len)? {
            Halves::Parsed(b) => Ok(b),
            Halves::QuoteAcrossCut(c) => read_csv_whole(p, c),
        }
    }

    /// Interleaved series, a duplicate of one time on both sides of any cut, a no-trade row.
    fn split_text(rows: usize) -> String {
        let mut t = String::from("symbol,ts,open,high,low,close,volume\n");
        for i in 0..rows {
            let sym = ["AAA", "BBB", "CCC"][i % 3];
            let ts = 1_704_204_000 + (i / 3) as i64 * 60;
            let v = 10.0 + i as f64 / 8.0;
            t.push_str(&format!(
                "{sym},{},{v},{},{v},{v},{}\n",
                time::rfc3339(ts),
                v + 1.0,
                i
            ));
        }
        t.push_str("AAA,2024-01-02T14:00:00Z,99,99,99,99,1\n");
        t.push_str("BBB,2024-01-02T14:01:00Z,,,,,\n");
        t
    }

    #[test]
    fn a_file_parsed_in_two_halves_gives_what_one_pass_gives() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "split.csv", &split_text(3_000));
        let whole = read_csv_whole(&p, Collector::new(&p, Interval::M1, None, None)).unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        for at in [60, len / 3, len / 2, len - 100] {
            assert_eq!(read_split(&p, at).unwrap(), whole, "cut after {at}");
        }
        // The later duplicate (the last line but one) is last in its series, in both.
        let aaa = &whole.series[&SeriesKey::new(Symbol::parse("AAA").unwrap(), Interval::M1)];
        assert_eq!(aaa.last().unwrap().close, 99.0);
        assert_eq!(whole.dropped.no_trade, 1);
    }

    #[test]
    fn a_bad_line_in_the_second_half_is_named_by_its_line_in_the_file() {
        let d = tempfile::tempdir().unwrap();
        let mut text = split_text(3_000);
        text.push_str("CCC,2024-01-03T14:30:00Z,1,2,1,oops,5\n");
        let p = write(d.path(), "bad.csv", &text);
        let lines = text.lines().count() as u64;
        let e = read_split(&p, 1_000).unwrap_err().to_string();
        assert_eq!(e, format!("{}:{lines}: close: not a number", p.display()));
        // A row with a column missing, after the cut: named the same way.
        let mut text = split_text(3_000);
        text.push_str("CCC,2024-01-03T14:30:00Z,1,2,1,1\n");
        let p = write(d.path(), "short.csv", &text);
        let e = read_split(&p, 1_000).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:{lines}: ", p.display())), "{e}");
    }

    #[test]
    fn a_cut_inside_a_quoted_field_falls_back_to_one_pass() {
        let d = tempfile::tempdir().unwrap();
        let mut text = split_text(300);
        // A quoted symbol holding a line end: a cut between its lines is inside quotes.
        let at = text.len() as u64;
        text.push_str("\"AAA\n\",2024-01-03T14:30:00Z,1,2,1,1,5\n");
        text.push_str(&split_text(300)[37..]);
        let p = write(d.path(), "quoted.csv", &text);
        let whole = read_csv_whole(&p, Collector::new(&p, Interval::M1, None, None));
        let split = read_split(&p, at);
        assert_eq!(
            split.map_err(|e| e.to_string()),
            whole.map_err(|e| e.to_string())
        );
    }

    #[test]
    fn reads_yahoo_exports_named_by_file() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "AAPL.csv",
            "Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,187.15,188.44,183.89,185.64,184.94,82488700\n2024-01-03,null,null,null,null,null,null\n",
        );
        let fb = read_file(&p, Interval::D1, None).unwrap();
        let key = SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::D1);
        let bars = &fb.series[&key];
        assert_eq!(bars.len(), 1);
        assert_eq!(bars[0].ts, 1_704_153_600);
        assert_eq!(
            (bars[0].open, bars[0].adj_close, bars[0].volume),
            (187.15, Some(184.94), 82_488_700.0)
        );
        assert_eq!(fb.dropped.no_trade, 1);
    }

    #[test]
    fn reads_generic_files_with_several_symbols_and_time_formats() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "mixed.csv",
            "symbol,ts,open,high,low,close,volume\nAAPL,2024-01-02T14:30:00Z,1,2,0.5,1.5,10\n0700.HK,2024-01-02,3,4,2,3,0\nAAPL,1704292200,1,2,0.5,1.5,11\n",
        );
        let fb = read_file(&p, Interval::D1, None).unwrap();
        let aapl = &fb.series[&SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::D1)];
        assert_eq!(
            aapl.iter().map(|b| b.ts).collect::<Vec<_>>(),
            [1_704_153_600, 1_704_240_000]
        );
        assert_eq!(fb.series.len(), 2);
        let only = read_file(&p, Interval::D1, Some(&Symbol::parse("0700.HK").unwrap())).unwrap();
        assert_eq!(only.bar_count(), 1);
    }

    fn stamps(fb: &FileBars, symbol: &str, interval: Interval) -> Vec<String> {
        let key = SeriesKey::new(Symbol::parse(symbol).unwrap(), interval);
        fb.series[&key]
            .iter()
            .map(|b| time::rfc3339(b.ts))
            .collect()
    }

    #[test]
    fn daily_rows_land_on_their_date_however_ts_is_written() {
        let d = tempfile::tempdir().unwrap();
        // One symbol per case, so each lands in its own series.
        let p = write(
            d.path(),
            "issue.csv",
            "symbol,ts,open,high,low,close,volume
IBM,2000-03-02T00:00:00Z,1,2,0.5,1.5,10
MSFT,2000-03-02 00:00:00,1,2,0.5,1.5,10
AAPL,2000-03-02T14:30:00Z,1,2,0.5,1.5,10
0005.HK,2000-03-02T02:00:00Z,1,2,0.5,1.5,10
GE,2000-03-02T02:00:00Z,1,2,0.5,1.5,10
600519.SS,2000-03-02T09:30:00,1,2,0.5,1.5,10
",
        );
        let fb = read_file(&p, Interval::D1, None).unwrap();
        for (symbol, date) in [
            ("IBM", "2000-03-02"),
            ("MSFT", "2000-03-02"),
            ("AAPL", "2000-03-02"),
            ("0005.HK", "2000-03-02"),
            // 21:00 of the day before in New York.
            ("GE", "2000-03-01"),
            ("600519.SS", "2000-03-02"),
        ] {
            assert_eq!(
                stamps(&fb, symbol, Interval::D1),
                [format!("{date}T00:00:00Z")],
                "{symbol}"
            );
        }
        // Weekly and monthly snap the same dates to their period.
        let fb = read_file(&p, Interval::W1, Some(&Symbol::parse("IBM").unwrap())).unwrap();
        assert_eq!(stamps(&fb, "IBM", Interval::W1), ["2000-02-28T00:00:00Z"]);
        let fb = read_file(&p, Interval::Mo1, Some(&Symbol::parse("GE").unwrap())).unwrap();
        assert_eq!(stamps(&fb, "GE", Interval::Mo1), ["2000-03-01T00:00:00Z"]);
    }

    #[test]
    fn a_universe_market_overrides_the_suffix_for_session_dates() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "x.csv",
            "symbol,ts,open,high,low,close,volume
XYZ,2000-03-02T02:00:00Z,1,2,0.5,1.5,10
",
        );
        let xyz = Symbol::parse("XYZ").unwrap();
        let us = read_file_in(&p, Interval::D1, Some(&xyz), None).unwrap();
        assert_eq!(stamps(&us, "XYZ", Interval::D1), ["2000-03-01T00:00:00Z"]);
        let hk = read_file_in(&p, Interval::D1, Some(&xyz), Some(Market::Hk)).unwrap();
        assert_eq!(stamps(&hk, "XYZ", Interval::D1), ["2000-03-02T00:00:00Z"]);
    }

    /// A one-column-varies Parquet file: `ts` as given, two rows of AAPL.
    fn parquet_with_ts(dir: &Path, name: &str, ts: arrow_array::ArrayRef) -> PathBuf {
        use arrow_array::{Float64Array, StringArray};
        use std::sync::Arc;
        let n = ts.len();
        let num = || Arc::new(Float64Array::from(vec![1.0; n])) as arrow_array::ArrayRef;
        let batch = RecordBatch::try_from_iter([
            (
                "symbol",
                Arc::new(StringArray::from(vec!["AAPL"; n])) as arrow_array::ArrayRef,
            ),
            ("ts", ts),
            ("open", num()),
            ("high", num()),
            ("low", num()),
            ("close", num()),
            ("volume", num()),
        ])
        .unwrap();
        let p = dir.join(name);
        let mut w =
            parquet::arrow::ArrowWriter::try_new(File::create(&p).unwrap(), batch.schema(), None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        p
    }

    #[test]
    fn parquet_ts_of_every_type_stamps_daily_bars_by_the_same_rule() {
        use arrow_array::*;
        use std::sync::Arc;
        let d = tempfile::tempdir().unwrap();
        // 2000-03-02 and 2000-03-03, each as midnight UTC.
        let days = [951_955_200i64, 952_041_600];
        let cases: Vec<(&str, ArrayRef)> = vec![
            (
                "s_utc",
                Arc::new(TimestampSecondArray::from(days.to_vec()).with_timezone("UTC")),
            ),
            (
                "ms_utc",
                Arc::new(
                    TimestampMillisecondArray::from(days.map(|t| t * 1_000).to_vec())
                        .with_timezone("UTC"),
                ),
            ),
            (
                "us_hk",
                Arc::new(
                    TimestampMicrosecondArray::from(days.map(|t| t * 1_000_000).to_vec())
                        .with_timezone("+08:00"),
                ),
            ),
            (
                "ns_naive",
                Arc::new(TimestampNanosecondArray::from(
                    days.map(|t| t * 1_000_000_000).to_vec(),
                )),
            ),
            (
                "date32",
                Arc::new(Date32Array::from(
                    days.map(|t| (t / 86_400) as i32).to_vec(),
                )),
            ),
            (
                "date64",
                Arc::new(Date64Array::from(days.map(|t| t * 1_000).to_vec())),
            ),
            ("int64", Arc::new(Int64Array::from(days.to_vec()))),
            (
                "string",
                Arc::new(StringArray::from(vec!["2000-03-02", "2000-03-03 00:00:00"])),
            ),
        ];
        for (name, ts) in cases {
            let p = parquet_with_ts(d.path(), &format!("{name}.parquet"), ts);
            let fb = read_file(&p, Interval::D1, None).unwrap();
            assert_eq!(
                stamps(&fb, "AAPL", Interval::D1),
                ["2000-03-02T00:00:00Z", "2000-03-03T00:00:00Z"],
                "{name}"
            );
        }
        // 02:00 on the 2nd: an instant (zoned) is 21:00 of the 1st in New York; a zoneless
        // timestamp is a wall-clock time on the 2nd.
        let t = 951_955_200 + 7_200;
        let p = parquet_with_ts(
            d.path(),
            "zoned.parquet",
            Arc::new(TimestampSecondArray::from(vec![t]).with_timezone("UTC")),
        );
        let fb = read_file(&p, Interval::D1, None).unwrap();
        assert_eq!(stamps(&fb, "AAPL", Interval::D1), ["2000-03-01T00:00:00Z"]);
        let p = parquet_with_ts(
            d.path(),
            "naive.parquet",
            Arc::new(TimestampSecondArray::from(vec![t])),
        );
        let fb = read_file(&p, Interval::D1, None).unwrap();
        assert_eq!(stamps(&fb, "AAPL", Interval::D1), ["2000-03-02T00:00:00Z"]);
        // Intraday: both are the instant (zoneless read as UTC).
        let fb = read_file(&p, Interval::M1, None).unwrap();
        assert_eq!(stamps(&fb, "AAPL", Interval::M1), ["2000-03-02T02:00:00Z"]);
    }

    #[test]
    fn a_parquet_ts_with_a_fraction_of_a_second_or_a_float_type_is_refused() {
        use arrow_array::*;
        use std::sync::Arc;
        let d = tempfile::tempdir().unwrap();
        let p = parquet_with_ts(
            d.path(),
            "frac.parquet",
            Arc::new(TimestampMillisecondArray::from(vec![951_955_200_500]).with_timezone("UTC")),
        );
        let e = read_file(&p, Interval::D1, None).unwrap_err();
        assert!(
            matches!(&e, FileError::Malformed { line: 1, reason, .. } if reason.contains("fraction")),
            "{e}"
        );
        let p = parquet_with_ts(
            d.path(),
            "float.parquet",
            Arc::new(Float64Array::from(vec![951_955_200.0])),
        );
        let e = read_file(&p, Interval::D1, None).unwrap_err();
        assert!(
            e.to_string().contains("column ts has unsupported type"),
            "{e}"
        );
    }

    #[test]
    fn a_malformed_line_names_file_line_and_reason() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "bad.csv",
            "symbol,ts,open,high,low,close,volume\nAAPL,2024-01-02,1,2,0.5,1.5,10\nAAPL,2024-01-03,1,two,0.5,1.5,10\n",
        );
        let e = read_file(&p, Interval::D1, None).unwrap_err();
        assert_eq!(
            e,
            FileError::Malformed {
                file: p.display().to_string(),
                line: 3,
                reason: "high: not a number".into()
            }
        );
        // A short row, a bad symbol, a bad date: each names line 2.
        for (name, row) in [
            ("ragged.csv", "AAPL,2024-01-02,1,2"),
            ("sym.csv", "A B,2024-01-02,1,2,0.5,1.5,10"),
            ("date.csv", "AAPL,02/01/2024,1,2,0.5,1.5,10"),
        ] {
            let p = write(
                d.path(),
                name,
                &format!("symbol,ts,open,high,low,close,volume\n{row}\n"),
            );
            assert!(
                matches!(
                    read_file(&p, Interval::D1, None),
                    Err(FileError::Malformed { line: 2, .. })
                ),
                "{name}"
            );
        }
        let p = write(d.path(), "hdr.csv", "a,b\n1,2\n");
        assert!(matches!(
            read_file(&p, Interval::D1, None),
            Err(FileError::Malformed { line: 1, .. })
        ));
    }
}
