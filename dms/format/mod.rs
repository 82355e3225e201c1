//! Output formats for bars: what `GET /api/v1/bars` and `dms read` emit, byte for byte the same.
//!
//! - `json`: `{"interval":"1d","series":{"A":{"ts":[..],"open":[..],..}}}`, columnar per
//!   symbol, `ts` RFC 3339; every requested symbol appears, with empty columns when it has no
//!   bars in the range;
//! - `csv`, `arrow` (Arrow IPC stream), `parquet`: long format with columns
//!   `symbol,ts,open,high,low,close,volume`, `ts` a UTC timestamp: RFC 3339 text in CSV,
//!   `timestamp[s, tz=UTC]` in Arrow, `timestamp[ms, tz=UTC]` in Parquet (whose timestamp
//!   type has no seconds unit: a seconds column would be read back as a bare integer).
//!
//! Encoders are incremental — `begin`, then `part` for each part of a symbol's bars, then
//! `finish` — writing into an [`Output`] that cuts what it holds into pieces as it goes, so a
//! large result is streamed, never built whole. A symbol's parts come consecutively, in time
//! order, once per *pass* ([`Encoder::passes`]): the long formats take one pass; JSON takes
//! six, writing one column per pass (`ts`, then `open`, ... `volume`), so it never holds more
//! than the part in hand whatever the size of the symbol. With `adjusted`, OHLC are scaled by
//! `adj_close / close` where the bar has an `adj_close`.
//!
//! CSV and Arrow also have *chunk bytes* ([`Encoder::chunk_bytes`]): the bytes a whole chunk
//! of a symbol stands for in any response (its CSV rows, one Arrow record-batch message), which
//! the reader caches under the [`EncodingKey`] the encoder names. Parts that are not whole
//! chunks (the edges of a range) go through [`Encoder::part`]; Arrow and Parquet coalesce runs
//! of them into record batches of up to [`BATCH_ROWS`] rows.
//!
//! [`Columns`] (bars as shared, immutable Arrow buffers) is defined here, below the reader.

pub mod columns;
mod text;

use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;

use arrow_array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    TimestampSecondArray,
};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub use columns::Columns;

use crate::domain::{Bar, Interval};
pub use text::{TsFormatter, push_f64, push_rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Arrow,
    Parquet,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Json, Format::Csv, Format::Arrow, Format::Parquet];

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Arrow => "arrow",
            Format::Parquet => "parquet",
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown format {s:?} (expected json, csv, arrow or parquet)"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encoding {format}: {message}")]
    Failed {
        format: &'static str,
        message: String,
    },
}

/// What an encoder's chunk bytes depend on besides the chunk's bars, as the encoder sees it
/// (its format and options). The reader's cache keeps chunk bytes under `(chunk, key)` and
/// never looks inside: a new encoder or option needs no change there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EncodingKey {
    encoder: &'static str,
    variant: u64,
}

impl EncodingKey {
    pub const fn new(encoder: &'static str, variant: u64) -> EncodingKey {
        EncodingKey { encoder, variant }
    }
}

/// Where an encoder writes: a buffer, cut into pieces of about `flush_at` bytes that the
/// caller takes with [`Output::take_pieces`] (streaming), or kept whole (small results, tests).
pub struct Output {
    pub buf: Vec<u8>,
    /// Full pieces, in order, not yet taken.
    pieces: Vec<Bytes>,
    flush_at: usize,
}

impl Output {
    /// An output that keeps everything in `buf`.
    pub fn buffered() -> Output {
        Output {
            buf: Vec::new(),
            pieces: Vec::new(),
            flush_at: usize::MAX,
        }
    }

    /// An output that cuts a piece whenever `buf` holds `flush_at` bytes at a safe point.
    pub fn streaming(flush_at: usize) -> Output {
        Output {
            buf: Vec::with_capacity(flush_at + flush_at / 4),
            pieces: Vec::new(),
            flush_at,
        }
    }

    fn is_streaming(&self) -> bool {
        self.flush_at != usize::MAX
    }

    /// Cuts a piece if the buffer is full enough. Encoders call this at safe points.
    pub fn maybe_flush(&mut self) {
        if self.buf.len() >= self.flush_at {
            self.flush();
        }
    }

    /// Cuts whatever is buffered into a piece (a no-op for a buffered output).
    pub fn flush(&mut self) {
        if self.is_streaming() && !self.buf.is_empty() {
            let full = std::mem::replace(
                &mut self.buf,
                Vec::with_capacity(self.flush_at + self.flush_at / 4),
            );
            self.pieces.push(Bytes::from(full));
        }
    }

    /// The pieces cut so far, in order (what is still in `buf` stays).
    pub fn take_pieces(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.pieces)
    }

    /// Bytes held, in pieces and in the buffer.
    pub fn held(&self) -> usize {
        self.buf.len() + self.pieces.iter().map(Bytes::len).sum::<usize>()
    }

    /// Appends already encoded bytes (a cached chunk's bytes): kept as they are, as their own
    /// piece, when streaming; copied when buffering.
    pub fn push_bytes(&mut self, bytes: Bytes) {
        if !self.is_streaming() {
            self.buf.extend_from_slice(&bytes);
            return;
        }
        self.flush();
        self.pieces.push(bytes);
    }

    /// Appends bytes an encoder produced in its own buffer, moving instead of copying when
    /// this output is empty.
    fn append(&mut self, bytes: &mut Vec<u8>) {
        if self.buf.is_empty() && bytes.capacity() >= self.buf.capacity() {
            std::mem::swap(&mut self.buf, bytes);
        } else {
            self.buf.append(bytes);
        }
    }
}

/// An incremental encoder.
pub trait Encoder: Send {
    /// How many times a symbol's parts are given to [`Encoder::part`]: 1 for the long formats,
    /// 6 for JSON (one column a pass).
    fn passes(&self) -> usize {
        1
    }

    fn begin(&mut self, out: &mut Output) -> Result<(), EncodeError>;

    /// Appends a part of `symbol`'s bars (sorted by `ts`) in pass `pass`. A symbol's calls are
    /// consecutive: every part in time order with pass 0, then again with pass 1, and so on.
    /// A symbol with no bars gets one empty part (pass 0), so that it is still listed.
    fn part(
        &mut self,
        symbol: &str,
        pass: usize,
        part: &Columns,
        out: &mut Output,
    ) -> Result<(), EncodeError>;

    fn finish(&mut self, out: &mut Output) -> Result<(), EncodeError>;

    /// The key this encoder's chunk bytes are cached under, if it has chunk bytes: bytes that
    /// stand for a whole chunk of a symbol wherever it appears in a response (CSV: its rows;
    /// Arrow: one IPC record-batch message). `None`: no such bytes (JSON columns span a
    /// symbol; Parquet pages span row groups).
    fn chunk_encoding(&self) -> Option<EncodingKey> {
        None
    }

    /// The chunk bytes of a whole chunk `part` of `symbol` (only when
    /// [`Encoder::chunk_encoding`] is `Some`).
    fn chunk_bytes(&mut self, _symbol: &str, _part: &Columns) -> Result<Bytes, EncodeError> {
        Err(failed("chunk bytes", "this format has none"))
    }

    /// Appends chunk bytes (made by [`Encoder::chunk_bytes`] of an encoder with the same
    /// [`EncodingKey`], now or for an earlier response) in place of the chunk's part.
    fn append_chunk(&mut self, bytes: Bytes, out: &mut Output) -> Result<(), EncodeError> {
        out.push_bytes(bytes);
        Ok(())
    }
}

/// Builds the encoder for a request.
pub fn encoder(format: Format, interval: Interval, adjusted: bool) -> Box<dyn Encoder> {
    match format {
        Format::Json => Box::new(JsonEncoder {
            interval,
            adjusted,
            open: None,
            first: true,
            any: false,
        }),
        Format::Csv => Box::new(CsvEncoder { adjusted }),
        Format::Arrow => Box::new(
            BatchEncoder::<arrow_ipc::writer::StreamWriter<Vec<u8>>>::new(Batcher::new(
                adjusted, false,
            )),
        ),
        Format::Parquet => Box::new(BatchEncoder::<parquet::arrow::ArrowWriter<Vec<u8>>>::new(
            Batcher::new(adjusted, true),
        )),
    }
}

/// Encodes everything at once (tests, small results, file fixtures). Consecutive entries of
/// one symbol are its parts.
pub fn encode_all(
    format: Format,
    interval: Interval,
    adjusted: bool,
    series: &[(&str, &[Bar])],
) -> Result<Vec<u8>, EncodeError> {
    let mut enc = encoder(format, interval, adjusted);
    let mut out = Output::buffered();
    enc.begin(&mut out)?;
    let parts: Vec<(&str, Columns)> = series
        .iter()
        .map(|(s, bars)| (*s, Columns::from_bars(bars)))
        .collect();
    for symbol in parts.chunk_by(|a, b| a.0 == b.0) {
        for pass in 0..enc.passes() {
            for (s, cols) in symbol {
                enc.part(s, pass, cols, &mut out)?;
            }
        }
    }
    enc.finish(&mut out)?;
    Ok(out.buf)
}

fn failed(format: &'static str, e: impl std::fmt::Display) -> EncodeError {
    EncodeError::Failed {
        format,
        message: e.to_string(),
    }
}

// ----- JSON -----

/// The JSON columns, one a pass.
const JSON_COLUMNS: [&str; 6] = ["ts", "open", "high", "low", "close", "volume"];

struct JsonEncoder {
    interval: Interval,
    adjusted: bool,
    /// The symbol whose object is open, and the column (pass) being written.
    open: Option<(String, usize)>,
    /// No value written yet in the open column.
    first: bool,
    /// A symbol was written already (the next needs a comma).
    any: bool,
}

impl JsonEncoder {
    /// Closes the open column and opens the following ones up to `pass`.
    fn advance_to(&mut self, pass: usize, out: &mut Output) {
        let Some((_, current)) = &mut self.open else {
            return;
        };
        while *current < pass {
            *current += 1;
            out.buf.extend_from_slice(b"],\"");
            out.buf.extend_from_slice(JSON_COLUMNS[*current].as_bytes());
            out.buf.extend_from_slice(b"\":[");
            self.first = true;
        }
    }

    /// Writes the columns the open symbol did not get (an empty symbol gets one part) and
    /// closes it.
    fn close(&mut self, out: &mut Output) {
        if self.open.is_some() {
            self.advance_to(JSON_COLUMNS.len() - 1, out);
            out.buf.extend_from_slice(b"]}");
            self.open = None;
        }
    }

    fn comma(&mut self, out: &mut Output) {
        if !self.first {
            out.buf.push(b',');
        }
        self.first = false;
    }
}

impl Encoder for JsonEncoder {
    fn passes(&self) -> usize {
        JSON_COLUMNS.len()
    }

    fn begin(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        out.buf.extend_from_slice(b"{\"interval\":\"");
        out.buf.extend_from_slice(self.interval.as_str().as_bytes());
        out.buf.extend_from_slice(b"\",\"series\":{");
        Ok(())
    }

    fn part(
        &mut self,
        symbol: &str,
        pass: usize,
        part: &Columns,
        out: &mut Output,
    ) -> Result<(), EncodeError> {
        if pass >= JSON_COLUMNS.len() {
            return Err(failed("json", format!("no column for pass {pass}")));
        }
        match &self.open {
            Some((s, p)) if s == symbol => {
                if pass < *p {
                    return Err(failed("json", format!("pass {pass} after pass {p}")));
                }
                self.advance_to(pass, out);
            }
            _ => {
                self.close(out);
                if self.any {
                    out.buf.push(b',');
                }
                self.any = true;
                text::push_json_str(&mut out.buf, symbol);
                out.buf.extend_from_slice(b":{\"ts\":[");
                self.open = Some((symbol.to_string(), 0));
                self.first = true;
                self.advance_to(pass, out);
            }
        }
        if pass == 0 {
            out.buf.reserve(part.len() * 23);
            let mut tsf = TsFormatter::default();
            for &ts in part.ts.iter() {
                self.comma(out);
                out.buf.push(b'"');
                tsf.push(&mut out.buf, ts);
                out.buf.push(b'"');
            }
        } else {
            out.buf.reserve(part.len() * 12);
            let mut fmt = ryu::Buffer::new();
            let k = pass - 1;
            let plain = match k {
                0 => &part.open,
                1 => &part.high,
                2 => &part.low,
                3 => &part.close,
                _ => &part.volume,
            };
            if k < 4 && self.adjusted && part.adj_close.is_some() {
                for i in 0..part.len() {
                    self.comma(out);
                    let (o, h, l, c) = part.ohlc(i, true);
                    push_f64(&mut out.buf, [o, h, l, c][k], &mut fmt);
                }
            } else {
                for &v in plain.iter() {
                    self.comma(out);
                    push_f64(&mut out.buf, v, &mut fmt);
                }
            }
        }
        out.maybe_flush();
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        self.close(out);
        out.buf.extend_from_slice(b"}}");
        Ok(())
    }
}

// ----- CSV -----

struct CsvEncoder {
    adjusted: bool,
}

impl CsvEncoder {
    fn rows(&self, symbol: &str, part: &Columns, out: &mut Output) {
        let mut sym = Vec::new();
        text::push_csv_field(&mut sym, symbol);
        sym.push(b',');
        let mut fmt = ryu::Buffer::new();
        let mut tsf = TsFormatter::default();
        let (ts, o, h, l, c, v) = (
            &part.ts[..],
            &part.open[..],
            &part.high[..],
            &part.low[..],
            &part.close[..],
            &part.volume[..],
        );
        let adj = if self.adjusted {
            part.adj_close.as_deref()
        } else {
            None
        };
        for start in (0..part.len()).step_by(4096) {
            let end = (start + 4096).min(part.len());
            out.buf.reserve((end - start) * (sym.len() + 96));
            for i in start..end {
                out.buf.extend_from_slice(&sym);
                tsf.push(&mut out.buf, ts[i]);
                let k = match adj {
                    Some(a) if !a[i].is_nan() => a[i] / c[i],
                    _ => 1.0,
                };
                let close = match adj {
                    Some(a) if !a[i].is_nan() => a[i],
                    _ => c[i],
                };
                let row = if k == 1.0 {
                    [o[i], h[i], l[i], close, v[i]]
                } else {
                    [o[i] * k, h[i] * k, l[i] * k, close, v[i]]
                };
                for x in row {
                    out.buf.push(b',');
                    push_f64(&mut out.buf, x, &mut fmt);
                }
                out.buf.push(b'\n');
            }
            out.maybe_flush();
        }
    }
}

impl Encoder for CsvEncoder {
    fn chunk_encoding(&self) -> Option<EncodingKey> {
        Some(EncodingKey::new("csv", self.adjusted as u64))
    }

    fn chunk_bytes(&mut self, symbol: &str, part: &Columns) -> Result<Bytes, EncodeError> {
        let mut own = Output::buffered();
        self.rows(symbol, part, &mut own);
        Ok(Bytes::from(own.buf))
    }

    fn begin(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        out.buf
            .extend_from_slice(b"symbol,ts,open,high,low,close,volume\n");
        Ok(())
    }

    fn part(
        &mut self,
        symbol: &str,
        _pass: usize,
        part: &Columns,
        out: &mut Output,
    ) -> Result<(), EncodeError> {
        self.rows(symbol, part, out);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Output) -> Result<(), EncodeError> {
        Ok(())
    }
}

// ----- Arrow and Parquet -----

/// Largest record batch the Arrow and Parquet encoders write: small parts (a year of daily
/// bars) are coalesced up to it; a part this large or larger goes out on its own, zero-copy.
pub const BATCH_ROWS: usize = 65_536;

/// The long-format Arrow schema of `arrow` (`ts` in seconds).
pub fn long_schema() -> SchemaRef {
    schema_with(TimeUnit::Second)
}

/// The long-format schema of `parquet` (`ts` in milliseconds).
pub fn parquet_schema() -> SchemaRef {
    schema_with(TimeUnit::Millisecond)
}

fn schema_with(unit: TimeUnit) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("ts", DataType::Timestamp(unit, Some("UTC".into())), false),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::Float64, false),
    ]))
}

/// Collects parts into record batches of the long schema.
struct Batcher {
    adjusted: bool,
    /// `ts` in milliseconds (Parquet) rather than seconds (Arrow).
    millis: bool,
    schema: SchemaRef,
    pending: Vec<(String, Columns)>,
    rows: usize,
}

impl Batcher {
    fn new(adjusted: bool, millis: bool) -> Batcher {
        Batcher {
            adjusted,
            millis,
            schema: if millis {
                parquet_schema()
            } else {
                long_schema()
            },
            pending: Vec::new(),
            rows: 0,
        }
    }

    /// Adds a part; returns the batches that are ready.
    fn push(&mut self, symbol: &str, part: &Columns) -> Result<Vec<RecordBatch>, EncodeError> {
        let mut ready = Vec::new();
        if part.is_empty() {
            return Ok(ready);
        }
        if part.len() >= BATCH_ROWS / 2 {
            ready.extend(self.take()?);
            ready.push(self.batch(&[(symbol, part)])?);
            return Ok(ready);
        }
        if self.rows + part.len() > BATCH_ROWS {
            ready.extend(self.take()?);
        }
        self.rows += part.len();
        self.pending.push((symbol.to_string(), part.clone()));
        Ok(ready)
    }

    /// The pending parts as one batch, if any.
    fn take(&mut self) -> Result<Option<RecordBatch>, EncodeError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let pending = std::mem::take(&mut self.pending);
        self.rows = 0;
        let parts: Vec<(&str, &Columns)> = pending.iter().map(|(s, c)| (s.as_str(), c)).collect();
        self.batch(&parts).map(Some)
    }

    fn batch(&self, parts: &[(&str, &Columns)]) -> Result<RecordBatch, EncodeError> {
        let symbols = StringArray::from_iter_values(
            parts
                .iter()
                .flat_map(|(s, c)| std::iter::repeat_n(*s, c.len())),
        );
        let ts = concat(parts, |c| &c.ts);
        let ts: ArrayRef = if self.millis {
            let ms: ScalarBuffer<i64> = ts.iter().map(|t| t.saturating_mul(1000)).collect();
            Arc::new(TimestampMillisecondArray::new(ms, None).with_timezone("UTC"))
        } else {
            Arc::new(TimestampSecondArray::new(ts, None).with_timezone("UTC"))
        };
        let (o, h, l, c) = if self.adjusted && parts.iter().any(|(_, c)| c.adj_close.is_some()) {
            let n: usize = parts.iter().map(|(_, c)| c.len()).sum();
            let mut cols: [Vec<f64>; 4] = std::array::from_fn(|_| Vec::with_capacity(n));
            for (_, p) in parts {
                for i in 0..p.len() {
                    let (o, h, l, c) = p.ohlc(i, true);
                    cols[0].push(o);
                    cols[1].push(h);
                    cols[2].push(l);
                    cols[3].push(c);
                }
            }
            let [o, h, l, c] = cols.map(ScalarBuffer::from);
            (o, h, l, c)
        } else {
            (
                concat(parts, |c| &c.open),
                concat(parts, |c| &c.high),
                concat(parts, |c| &c.low),
                concat(parts, |c| &c.close),
            )
        };
        let f = |b: ScalarBuffer<f64>| Arc::new(Float64Array::new(b, None)) as ArrayRef;
        RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(symbols),
                ts,
                f(o),
                f(h),
                f(l),
                f(c),
                f(concat(parts, |c| &c.volume)),
            ],
        )
        .map_err(|e| failed("arrow", e))
    }
}

/// One column over several parts: shared when there is one part, copied otherwise.
fn concat<T: arrow_buffer::ArrowNativeType>(
    parts: &[(&str, &Columns)],
    col: impl Fn(&Columns) -> &ScalarBuffer<T>,
) -> ScalarBuffer<T> {
    if let [(_, p)] = parts {
        return col(p).clone();
    }
    let n: usize = parts.iter().map(|(_, c)| c.len()).sum();
    let mut v = Vec::with_capacity(n);
    for (_, p) in parts {
        v.extend_from_slice(col(p));
    }
    ScalarBuffer::from(v)
}

/// Writes record batches as the bytes of one format: the Arrow IPC stream or Parquet.
trait BatchWriter: Send + Sized {
    const FORMAT: &'static str;
    fn start() -> Result<Self, EncodeError>;
    fn write(&mut self, batch: &RecordBatch) -> Result<(), EncodeError>;
    fn finish(&mut self) -> Result<(), EncodeError>;
    /// The bytes written and not yet handed out.
    fn written(&mut self) -> &mut Vec<u8>;
    /// Whether a batch has bytes of its own in the output ([`Encoder::chunk_bytes`]).
    const CHUNK_BYTES: bool = false;
    fn chunk_bytes(_batch: &RecordBatch) -> Result<Bytes, EncodeError> {
        Err(failed(Self::FORMAT, "this format has no chunk bytes"))
    }
}

impl BatchWriter for arrow_ipc::writer::StreamWriter<Vec<u8>> {
    const FORMAT: &'static str = "arrow";
    const CHUNK_BYTES: bool = true;

    fn start() -> Result<Self, EncodeError> {
        arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &long_schema())
            .map_err(|e| failed(Self::FORMAT, e))
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
        arrow_ipc::writer::StreamWriter::write(self, batch).map_err(|e| failed(Self::FORMAT, e))
    }

    fn finish(&mut self) -> Result<(), EncodeError> {
        arrow_ipc::writer::StreamWriter::finish(self).map_err(|e| failed(Self::FORMAT, e))
    }

    fn written(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }

    /// One record-batch message of exactly this batch, as the stream writer would write it.
    fn chunk_bytes(batch: &RecordBatch) -> Result<Bytes, EncodeError> {
        let options = arrow_ipc::writer::IpcWriteOptions::default();
        let mut tracker = arrow_ipc::writer::DictionaryTracker::new(false);
        let mut context = arrow_ipc::writer::IpcWriteContext::default();
        let (dictionaries, message) = arrow_ipc::writer::IpcDataGenerator::default()
            .encode(batch, &mut tracker, &options, &mut context)
            .map_err(|e| failed(Self::FORMAT, e))?;
        debug_assert!(
            dictionaries.is_empty(),
            "the long schema has no dictionaries"
        );
        let mut buf = Vec::with_capacity(batch.num_rows() * 60 + 512);
        arrow_ipc::writer::write_message(&mut buf, message, &options)
            .map_err(|e| failed(Self::FORMAT, e))?;
        Ok(Bytes::from(buf))
    }
}

impl BatchWriter for parquet::arrow::ArrowWriter<Vec<u8>> {
    const FORMAT: &'static str = "parquet";

    fn start() -> Result<Self, EncodeError> {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_max_row_group_row_count(Some(256 * 1024))
            .build();
        parquet::arrow::ArrowWriter::try_new(Vec::new(), parquet_schema(), Some(props))
            .map_err(|e| failed(Self::FORMAT, e))
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
        parquet::arrow::ArrowWriter::write(self, batch).map_err(|e| failed(Self::FORMAT, e))
    }

    fn finish(&mut self) -> Result<(), EncodeError> {
        parquet::arrow::ArrowWriter::finish(self)
            .map(|_| ())
            .map_err(|e| failed(Self::FORMAT, e))
    }

    fn written(&mut self) -> &mut Vec<u8> {
        self.inner_mut()
    }
}

/// The Arrow and Parquet encoders: parts coalesced into batches by the [`Batcher`], written by
/// a [`BatchWriter`].
struct BatchEncoder<W> {
    batcher: Batcher,
    writer: Option<W>,
}

impl<W: BatchWriter> BatchEncoder<W> {
    fn new(batcher: Batcher) -> BatchEncoder<W> {
        BatchEncoder {
            batcher,
            writer: None,
        }
    }

    fn write(&mut self, batch: &RecordBatch, out: &mut Output) -> Result<(), EncodeError> {
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| failed(W::FORMAT, "not started"))?;
        w.write(batch)?;
        out.append(w.written());
        out.maybe_flush();
        Ok(())
    }

    /// Writes the parts the batcher holds back.
    fn flush_pending(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        if let Some(batch) = self.batcher.take()? {
            self.write(&batch, out)?;
        }
        Ok(())
    }
}

impl<W: BatchWriter> Encoder for BatchEncoder<W> {
    fn begin(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        let mut w = W::start()?;
        out.append(w.written());
        self.writer = Some(w);
        Ok(())
    }

    fn part(
        &mut self,
        symbol: &str,
        _pass: usize,
        part: &Columns,
        out: &mut Output,
    ) -> Result<(), EncodeError> {
        for batch in self.batcher.push(symbol, part)? {
            self.write(&batch, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        self.flush_pending(out)?;
        if let Some(mut w) = self.writer.take() {
            w.finish()?;
            out.append(w.written());
        }
        Ok(())
    }

    fn chunk_encoding(&self) -> Option<EncodingKey> {
        W::CHUNK_BYTES.then_some(EncodingKey::new(W::FORMAT, self.batcher.adjusted as u64))
    }

    fn chunk_bytes(&mut self, symbol: &str, part: &Columns) -> Result<Bytes, EncodeError> {
        W::chunk_bytes(&self.batcher.batch(&[(symbol, part)])?)
    }

    fn append_chunk(&mut self, bytes: Bytes, out: &mut Output) -> Result<(), EncodeError> {
        self.flush_pending(out)?;
        out.push_bytes(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SourceKind;

    fn bar(ts: i64, c: f64, adj: Option<f64>) -> Bar {
        Bar {
            ts,
            open: c - 1.0,
            high: c + 1.0,
            low: c - 2.0,
            close: c,
            volume: 100.0,
            adj_close: adj,
            source: SourceKind::Yahoo,
        }
    }

    #[test]
    fn json_is_columnar_per_symbol() {
        let a = [
            bar(1_704_153_600, 10.0, None),
            bar(1_704_240_000, 11.5, None),
        ];
        let b = [bar(1_704_153_600, 0.1, None)];
        let out = encode_all(
            Format::Json,
            Interval::D1,
            false,
            &[("A", &a[..1]), ("A", &a[1..]), ("B\"", &b), ("C", &[])],
        )
        .unwrap();
        assert!(
            out.starts_with(br#"{"interval":"1d","series":{"A":{"ts":["2024-01-02T00:00:00Z","#)
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["interval"], "1d");
        assert_eq!(
            v["series"]["A"]["ts"],
            serde_json::json!(["2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"])
        );
        assert_eq!(v["series"]["A"]["close"], serde_json::json!([10.0, 11.5]));
        assert_eq!(v["series"]["B\""]["open"][0].as_f64().unwrap(), 0.1 - 1.0);
        assert_eq!(v["series"]["C"]["volume"], serde_json::json!([]));
        let empty = encode_all(Format::Json, Interval::D1, false, &[]).unwrap();
        assert_eq!(
            String::from_utf8(empty).unwrap(),
            r#"{"interval":"1d","series":{}}"#
        );
    }

    #[test]
    fn csv_is_long_and_adjusts_by_adj_close() {
        let a = [bar(1_704_153_600, 10.0, Some(5.0))];
        let out =
            String::from_utf8(encode_all(Format::Csv, Interval::D1, true, &[("A,B", &a)]).unwrap())
                .unwrap();
        assert_eq!(
            out,
            "symbol,ts,open,high,low,close,volume\n\"A,B\",2024-01-02T00:00:00Z,4.5,5.5,4.0,5.0,100.0\n"
        );
    }

    #[test]
    fn arrow_and_parquet_round_trip_and_coalesce_small_parts() {
        let a: Vec<Bar> = (0..1000)
            .map(|i| bar(1_704_153_600 + i * 60, 10.0 + i as f64 / 7.0, None))
            .collect();
        let out = encode_all(
            Format::Arrow,
            Interval::M1,
            false,
            &[("A", &a[..600]), ("A", &a[600..]), ("B", &a[..10])],
        )
        .unwrap();
        let reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(out), None).unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 1, "small parts share one batch");
        assert_eq!(batches[0].num_rows(), 1010);
        let sym = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!((sym.value(999), sym.value(1000)), ("A", "B"));

        let out = encode_all(Format::Parquet, Interval::M1, false, &[("A", &a)]).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(out),
        )
        .unwrap()
        .build()
        .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let close = batches[0]
            .column(5)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(close.value(999), a[999].close);
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1000);
    }

    /// Feeds `parts` (consecutive per symbol) to a streaming output cutting pieces of
    /// `flush_at` bytes; returns the pieces.
    fn streamed(
        format: Format,
        adjusted: bool,
        parts: &[(&str, Columns)],
        flush_at: usize,
    ) -> Vec<Bytes> {
        let mut out = Output::streaming(flush_at);
        let mut enc = encoder(format, Interval::M1, adjusted);
        let mut pieces = Vec::new();
        enc.begin(&mut out).unwrap();
        for symbol in parts.chunk_by(|a, b| a.0 == b.0) {
            for pass in 0..enc.passes() {
                for (s, cols) in symbol {
                    enc.part(s, pass, cols, &mut out).unwrap();
                    pieces.extend(out.take_pieces());
                }
            }
        }
        enc.finish(&mut out).unwrap();
        out.flush();
        pieces.extend(out.take_pieces());
        pieces
    }

    #[test]
    fn streaming_output_gives_the_same_bytes_as_buffered() {
        let a: Vec<Bar> = (0..100_000)
            .map(|i| bar(1_704_153_600 + i * 60, 10.0 + i as f64 / 7.0, Some(9.0)))
            .collect();
        let cols = Columns::from_bars(&a);
        for format in Format::ALL {
            let whole = encode_all(
                format,
                Interval::M1,
                true,
                &[("A", &a[..40_000]), ("A", &a[40_000..])],
            )
            .unwrap();
            let pieces = streamed(
                format,
                true,
                &[
                    ("A", cols.slice(0, 40_000)),
                    ("A", cols.slice(40_000, 60_000)),
                ],
                4096,
            );
            // Parquet holds a row group (up to 256k rows) before writing it; the others stream.
            if format != Format::Parquet {
                assert!(pieces.len() >= 3, "{format:?} was not streamed");
            }
            let got = pieces.concat();
            let diff = got.iter().zip(&whole).position(|(a, b)| a != b);
            assert!(got == whole, "{format:?}: first difference at {diff:?}");
        }
    }

    /// JSON as it was written before it was streamed by column: each symbol whole, all its
    /// `ts`, then all its `open`, ... (kept here as the reference the streamed bytes must match).
    fn json_reference(adjusted: bool, series: &[(&str, Vec<Bar>)]) -> Vec<u8> {
        let mut out = br#"{"interval":"1m","series":{"#.to_vec();
        let mut fmt = ryu::Buffer::new();
        for (n, (symbol, bars)) in series.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            text::push_json_str(&mut out, symbol);
            out.extend_from_slice(b":{");
            let cols = Columns::from_bars(bars);
            for (k, name) in JSON_COLUMNS.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(format!("\"{name}\":[").as_bytes());
                for (i, b) in bars.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let (o, h, l, c) = cols.ohlc(i, adjusted);
                    match k {
                        0 => {
                            out.push(b'"');
                            push_rfc3339(&mut out, b.ts);
                            out.push(b'"');
                        }
                        5 => push_f64(&mut out, b.volume, &mut fmt),
                        _ => push_f64(&mut out, [o, h, l, c][k - 1], &mut fmt),
                    }
                }
                out.push(b']');
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"}}");
        out
    }

    #[test]
    fn json_streamed_by_column_gives_the_bytes_of_json_written_by_symbol() {
        let a: Vec<Bar> = (0..30_000)
            .map(|i| {
                let adj = (i % 3 != 0).then_some(5.0 + i as f64 / 11.0);
                bar(1_704_153_600 + i * 60, 10.0 + i as f64 / 7.0, adj)
            })
            .collect();
        let b: Vec<Bar> = a[..7].to_vec();
        let cols = Columns::from_bars(&a);
        for adjusted in [false, true] {
            let want = json_reference(
                adjusted,
                &[
                    ("E0", vec![]),
                    ("A\"q", a.clone()),
                    ("E1", vec![]),
                    ("B", b.clone()),
                    ("E2", vec![]),
                ],
            );
            let parts = [
                ("E0", Columns::empty()),
                ("A\"q", cols.slice(0, 1)),
                ("A\"q", cols.slice(1, 20_000)),
                ("A\"q", cols.slice(20_001, 0)),
                ("A\"q", cols.slice(20_001, 9_999)),
                ("E1", Columns::empty()),
                ("B", Columns::from_bars(&b)),
                ("E2", Columns::empty()),
            ];
            for flush_at in [1, 1000, 1 << 22] {
                let got = streamed(Format::Json, adjusted, &parts, flush_at).concat();
                assert!(
                    got == want,
                    "adjusted={adjusted} flush_at={flush_at}: {} vs {} bytes",
                    got.len(),
                    want.len()
                );
            }
            // An empty symbol needs only its pass-0 part.
            let mut out = Output::buffered();
            let mut enc = encoder(Format::Json, Interval::M1, adjusted);
            enc.begin(&mut out).unwrap();
            enc.part("E0", 0, &Columns::empty(), &mut out).unwrap();
            enc.finish(&mut out).unwrap();
            assert_eq!(out.buf, json_reference(adjusted, &[("E0", vec![])]));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&json_reference(true, &[("B", b)])).unwrap();
        assert_eq!(
            json["series"]["B"]["close"][1],
            serde_json::json!(5.0 + 1.0 / 11.0)
        );
    }

    #[test]
    fn chunk_bytes_are_keyed_by_what_they_depend_on() {
        let keys = |format| {
            [false, true].map(|adjusted| encoder(format, Interval::D1, adjusted).chunk_encoding())
        };
        let (csv, arrow) = (keys(Format::Csv), keys(Format::Arrow));
        assert!(csv.iter().chain(&arrow).all(Option::is_some));
        assert_ne!(csv[0], csv[1]);
        assert_ne!(arrow[0], arrow[1]);
        assert_ne!(csv[0], arrow[0]);
        assert_eq!(keys(Format::Json), [None, None]);
        assert_eq!(keys(Format::Parquet), [None, None]);
        // Chunk bytes appended in place of a part give the bytes of the part.
        let a: Vec<Bar> = (0..500)
            .map(|i| bar(1_704_153_600 + i * 60, 10.0, None))
            .collect();
        let cols = Columns::from_bars(&a);
        for format in [Format::Csv, Format::Arrow] {
            let mut enc = encoder(format, Interval::M1, false);
            let mut out = Output::buffered();
            enc.begin(&mut out).unwrap();
            enc.part("A", 0, &cols.slice(0, 10), &mut out).unwrap();
            let bytes = enc.chunk_bytes("A", &cols.slice(10, 490)).unwrap();
            enc.append_chunk(bytes, &mut out).unwrap();
            enc.finish(&mut out).unwrap();
            let want = encode_all(
                format,
                Interval::M1,
                false,
                &[("A", &a[..10]), ("A", &a[10..])],
            );
            if format == Format::Csv {
                assert_eq!(out.buf, want.unwrap());
            } else {
                let rows = |b: Vec<u8>| -> Vec<RecordBatch> {
                    arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(b), None)
                        .unwrap()
                        .map(|b| b.unwrap())
                        .collect()
                };
                let got = rows(out.buf);
                assert_eq!(
                    got.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
                    [10, 490]
                );
                let want = arrow_select_concat(&rows(want.unwrap()));
                assert_eq!(arrow_select_concat(&got), want);
            }
        }
    }

    /// The rows of `batches` as `(symbol, ts, close)`.
    fn arrow_select_concat(batches: &[RecordBatch]) -> Vec<(String, i64, f64)> {
        let mut out = Vec::new();
        for b in batches {
            let sym = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let ts = b
                .column(1)
                .as_any()
                .downcast_ref::<TimestampSecondArray>()
                .unwrap();
            let close = b.column(5).as_any().downcast_ref::<Float64Array>().unwrap();
            for i in 0..b.num_rows() {
                out.push((sym.value(i).to_string(), ts.value(i), close.value(i)));
            }
        }
        out
    }
}
