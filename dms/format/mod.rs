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
//! Encoders are incremental — `begin`, then `series` once per part of a symbol's bars (a
//! symbol's parts are consecutive and in time order), then `finish` — writing into an
//! [`Output`] that hands full buffers to a sink as it goes, so a large result is streamed,
//! never built whole. JSON columns cannot be interleaved, so the JSON encoder holds a symbol's
//! parts (shared, not copied: see [`Columns`]) until the symbol ends, then writes it column by
//! column, flushing between parts. Arrow and Parquet coalesce small parts into record batches
//! of up to [`BATCH_ROWS`] rows. With `adjusted`, OHLC are scaled by `adj_close / close` where
//! the bar has an `adj_close`.

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

use crate::domain::{Bar, Interval};
use crate::reader::Columns;
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
    /// The consumer of a streamed result went away (the client disconnected): stop quietly.
    #[error("the reader of the result went away")]
    Closed,
}

/// Where an encoder writes: a buffer, handed to a sink whenever it holds at least
/// `flush_at` bytes (streaming), or kept whole (small results, tests).
pub struct Output<'a> {
    pub buf: Vec<u8>,
    /// Takes a full buffer; returns false when the consumer is gone.
    sink: Option<&'a mut (dyn FnMut(Bytes) -> bool + Send)>,
    flush_at: usize,
}

impl<'a> Output<'a> {
    /// An output that keeps everything in `buf`.
    pub fn buffered() -> Output<'static> {
        Output {
            buf: Vec::new(),
            sink: None,
            flush_at: usize::MAX,
        }
    }

    /// An output that hands `buf` to `sink` once it holds `flush_at` bytes.
    pub fn streaming(sink: &'a mut (dyn FnMut(Bytes) -> bool + Send), flush_at: usize) -> Self {
        Output {
            buf: Vec::with_capacity(flush_at + flush_at / 4),
            sink: Some(sink),
            flush_at,
        }
    }

    /// Hands the buffer to the sink if it is full enough. Encoders call this at safe points.
    pub fn maybe_flush(&mut self) -> Result<(), EncodeError> {
        if self.buf.len() >= self.flush_at {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands whatever is buffered to the sink (a no-op for a buffered output).
    pub fn flush(&mut self) -> Result<(), EncodeError> {
        if let Some(sink) = self.sink.as_mut()
            && !self.buf.is_empty()
        {
            let full = std::mem::replace(
                &mut self.buf,
                Vec::with_capacity(self.flush_at + self.flush_at / 4),
            );
            if !sink(Bytes::from(full)) {
                return Err(EncodeError::Closed);
            }
        }
        Ok(())
    }

    /// Appends already encoded bytes (a cached chunk's text): handed on as they are when
    /// streaming, copied when buffering.
    pub fn push_bytes(&mut self, bytes: Bytes) -> Result<(), EncodeError> {
        if self.sink.is_none() {
            self.buf.extend_from_slice(&bytes);
            return Ok(());
        }
        self.flush()?;
        if let Some(sink) = self.sink.as_mut()
            && !sink(bytes)
        {
            return Err(EncodeError::Closed);
        }
        Ok(())
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
    fn begin(&mut self, out: &mut Output) -> Result<(), EncodeError>;
    /// Appends a part of `symbol`'s bars (sorted by `ts`). Parts of one symbol are consecutive.
    fn series(&mut self, symbol: &str, part: &Columns, out: &mut Output)
    -> Result<(), EncodeError>;
    fn finish(&mut self, out: &mut Output) -> Result<(), EncodeError>;

    /// The bytes that stand for a whole chunk of `symbol` wherever it appears in a response of
    /// this format (CSV: its rows; Arrow: one IPC record-batch message), so the reader can
    /// cache them and append them verbatim after [`Encoder::flush_pending`]. `None`: the
    /// format has no such bytes (JSON columns span a symbol; Parquet pages span row groups).
    fn chunk_bytes(
        &mut self,
        _symbol: &str,
        _part: &Columns,
    ) -> Option<Result<Bytes, EncodeError>> {
        None
    }

    /// Writes what the encoder holds back, before chunk bytes are appended.
    fn flush_pending(&mut self, _out: &mut Output) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// Builds the encoder for a request.
pub fn encoder(format: Format, interval: Interval, adjusted: bool) -> Box<dyn Encoder> {
    match format {
        Format::Json => Box::new(JsonEncoder {
            interval,
            adjusted,
            current: None,
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

/// Encodes everything at once (tests, small results, file fixtures).
pub fn encode_all(
    format: Format,
    interval: Interval,
    adjusted: bool,
    series: &[(&str, &[Bar])],
) -> Result<Vec<u8>, EncodeError> {
    let mut enc = encoder(format, interval, adjusted);
    let mut out = Output::buffered();
    enc.begin(&mut out)?;
    for (s, bars) in series {
        enc.series(s, &Columns::from_bars(bars), &mut out)?;
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

struct JsonEncoder {
    interval: Interval,
    adjusted: bool,
    /// The symbol whose object is open, and its parts so far.
    current: Option<(String, Vec<Columns>)>,
    any: bool,
}

impl JsonEncoder {
    fn write_current(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        let Some((symbol, parts)) = self.current.take() else {
            return Ok(());
        };
        if self.any {
            out.buf.push(b',');
        }
        self.any = true;
        text::push_json_str(&mut out.buf, &symbol);
        out.buf.extend_from_slice(b":{\"ts\":[");
        let mut first = true;
        let mut tsf = TsFormatter::default();
        for p in &parts {
            out.buf.reserve(p.len() * 23);
            for &ts in p.ts.iter() {
                if !first {
                    out.buf.push(b',');
                }
                first = false;
                out.buf.push(b'"');
                tsf.push(&mut out.buf, ts);
                out.buf.push(b'"');
            }
            out.maybe_flush()?;
        }
        let mut fmt = ryu::Buffer::new();
        for (k, name) in ["open", "high", "low", "close", "volume"]
            .into_iter()
            .enumerate()
        {
            out.buf.extend_from_slice(b"],\"");
            out.buf.extend_from_slice(name.as_bytes());
            out.buf.extend_from_slice(b"\":[");
            let mut first = true;
            for p in &parts {
                out.buf.reserve(p.len() * 12);
                for i in 0..p.len() {
                    if !first {
                        out.buf.push(b',');
                    }
                    first = false;
                    let v = match k {
                        4 => p.volume[i],
                        _ => {
                            let (o, h, l, c) = p.ohlc(i, self.adjusted);
                            [o, h, l, c][k]
                        }
                    };
                    push_f64(&mut out.buf, v, &mut fmt);
                }
                out.maybe_flush()?;
            }
        }
        out.buf.extend_from_slice(b"]}");
        Ok(())
    }
}

impl Encoder for JsonEncoder {
    fn begin(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        out.buf.extend_from_slice(b"{\"interval\":\"");
        out.buf.extend_from_slice(self.interval.as_str().as_bytes());
        out.buf.extend_from_slice(b"\",\"series\":{");
        Ok(())
    }

    fn series(
        &mut self,
        symbol: &str,
        part: &Columns,
        out: &mut Output,
    ) -> Result<(), EncodeError> {
        match &mut self.current {
            Some((s, parts)) if s == symbol => parts.push(part.clone()),
            _ => {
                self.write_current(out)?;
                self.current = Some((symbol.to_string(), vec![part.clone()]));
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        self.write_current(out)?;
        out.buf.extend_from_slice(b"}}");
        Ok(())
    }
}

// ----- CSV -----

struct CsvEncoder {
    adjusted: bool,
}

impl Encoder for CsvEncoder {
    fn chunk_bytes(&mut self, symbol: &str, part: &Columns) -> Option<Result<Bytes, EncodeError>> {
        let mut own = Output::buffered();
        Some(
            self.series(symbol, part, &mut own)
                .map(|()| Bytes::from(own.buf)),
        )
    }

    fn begin(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        out.buf
            .extend_from_slice(b"symbol,ts,open,high,low,close,volume\n");
        Ok(())
    }

    fn series(
        &mut self,
        symbol: &str,
        part: &Columns,
        out: &mut Output,
    ) -> Result<(), EncodeError> {
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
            out.maybe_flush()?;
        }
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
    fn chunk_bytes(_batch: &RecordBatch) -> Option<Result<Bytes, EncodeError>> {
        None
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
    fn chunk_bytes(batch: &RecordBatch) -> Option<Result<Bytes, EncodeError>> {
        let encode = || -> Result<Bytes, EncodeError> {
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
        };
        Some(encode())
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
        out.maybe_flush()
    }
}

impl<W: BatchWriter> Encoder for BatchEncoder<W> {
    fn begin(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        let mut w = W::start()?;
        out.append(w.written());
        self.writer = Some(w);
        Ok(())
    }

    fn series(
        &mut self,
        symbol: &str,
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

    fn chunk_bytes(&mut self, symbol: &str, part: &Columns) -> Option<Result<Bytes, EncodeError>> {
        if !W::CHUNK_BYTES {
            return None;
        }
        match self.batcher.batch(&[(symbol, part)]) {
            Ok(batch) => W::chunk_bytes(&batch),
            Err(e) => Some(Err(e)),
        }
    }

    fn flush_pending(&mut self, out: &mut Output) -> Result<(), EncodeError> {
        if let Some(batch) = self.batcher.take()? {
            self.write(&batch, out)?;
        }
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
            let mut pieces: Vec<Vec<u8>> = Vec::new();
            let mut sink = |b: Bytes| {
                pieces.push(b.to_vec());
                true
            };
            let mut out = Output::streaming(&mut sink, 4096);
            let mut enc = encoder(format, Interval::M1, true);
            enc.begin(&mut out).unwrap();
            enc.series("A", &cols.slice(0, 40_000), &mut out).unwrap();
            enc.series("A", &cols.slice(40_000, 60_000), &mut out)
                .unwrap();
            enc.finish(&mut out).unwrap();
            out.flush().unwrap();
            drop(out);
            // Parquet holds a row group (up to 256k rows) before writing it; the others stream.
            if format != Format::Parquet {
                assert!(pieces.len() >= 3, "{format:?} was not streamed");
            }
            let got = pieces.concat();
            let diff = got.iter().zip(&whole).position(|(a, b)| a != b);
            assert!(got == whole, "{format:?}: first difference at {diff:?}");
        }
    }

    #[test]
    fn a_closed_consumer_stops_the_encoder() {
        let a: Vec<Bar> = (0..10_000).map(|i| bar(i * 60, 10.0, None)).collect();
        let mut sink = |_b: Bytes| false;
        let mut out = Output::streaming(&mut sink, 1024);
        let mut enc = encoder(Format::Csv, Interval::M1, false);
        enc.begin(&mut out).unwrap();
        let r = enc.series("A", &Columns::from_bars(&a), &mut out);
        assert!(matches!(r, Err(EncodeError::Closed)));
    }
}
