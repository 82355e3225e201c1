//! Output formats for bars: what `GET /api/v1/bars` and `dms read` emit, byte for byte the same.
//!
//! - `json`: `{"interval":"1d","series":{"A":{"ts":[..],"open":[..],..}}}`, columnar per
//!   symbol, `ts` RFC 3339;
//! - `csv`, `arrow` (Arrow IPC stream), `parquet`: long format with columns
//!   `symbol,ts,open,high,low,close,volume`, `ts` a UTC timestamp (seconds).
//!
//! Encoders are incremental — `begin`, then `series` once per symbol (possibly several times
//! for one symbol, with consecutive slices), then `finish` — each appending bytes to a buffer
//! the caller can flush, so a large result is streamed, never built whole. With `adjusted`,
//! OHLC are scaled by `adj_close / close` where the bar has an `adj_close`.

use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampSecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::domain::{Bar, Interval, time};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Arrow,
    Parquet,
}

impl Format {
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
        match s {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "arrow" => Ok(Format::Arrow),
            "parquet" => Ok(Format::Parquet),
            _ => Err(format!(
                "unknown format {s:?} (expected json, csv, arrow or parquet)"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("encoding {format}: {message}")]
pub struct EncodeError {
    format: &'static str,
    message: String,
}

/// An incremental encoder.
pub trait Encoder: Send {
    fn begin(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
    /// Appends bars of `symbol` (sorted by `ts`). Calls for one symbol are consecutive.
    fn series(&mut self, symbol: &str, bars: &[Bar], out: &mut Vec<u8>) -> Result<(), EncodeError>;
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
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
        Format::Arrow => Box::new(ArrowEncoder {
            adjusted,
            writer: None,
            sink: SharedSink::default(),
        }),
        Format::Parquet => Box::new(ParquetEncoder {
            adjusted,
            writer: None,
            sink: SharedSink::default(),
        }),
    }
}

/// Encodes everything at once (tests, small results).
pub fn encode_all(
    format: Format,
    interval: Interval,
    adjusted: bool,
    series: &[(&str, &[Bar])],
) -> Result<Vec<u8>, EncodeError> {
    let mut enc = encoder(format, interval, adjusted);
    let mut out = Vec::new();
    enc.begin(&mut out)?;
    for (s, bars) in series {
        enc.series(s, bars, &mut out)?;
    }
    enc.finish(&mut out)?;
    Ok(out)
}

/// `(open, high, low, close)`, scaled by `adj_close / close` when adjusting.
#[inline]
pub fn ohlc(b: &Bar, adjusted: bool) -> (f64, f64, f64, f64) {
    match (adjusted, b.adj_close) {
        (true, Some(adj)) => {
            let k = adj / b.close;
            (b.open * k, b.high * k, b.low * k, adj)
        }
        _ => (b.open, b.high, b.low, b.close),
    }
}

fn push_f64(out: &mut Vec<u8>, v: f64, buf: &mut ryu::Buffer) {
    if v.is_finite() {
        out.extend_from_slice(buf.format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires.
    out.extend_from_slice(
        serde_json::to_string(s)
            .unwrap_or_else(|_| "\"\"".into())
            .as_bytes(),
    );
}

struct JsonEncoder {
    interval: Interval,
    adjusted: bool,
    /// The symbol whose object is open, and its bars so far (a symbol's columns are written
    /// when it ends, as JSON columns cannot be interleaved).
    current: Option<(String, Vec<Bar>)>,
    any: bool,
}

impl JsonEncoder {
    fn flush_current(&mut self, out: &mut Vec<u8>) {
        let Some((symbol, bars)) = self.current.take() else {
            return;
        };
        if self.any {
            out.push(b',');
        }
        self.any = true;
        push_json_str(out, &symbol);
        out.extend_from_slice(b":{\"ts\":[");
        for (i, b) in bars.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(time::rfc3339(b.ts).as_bytes());
            out.push(b'"');
        }
        let mut buf = ryu::Buffer::new();
        let adjusted = self.adjusted;
        type Column<'a> = (&'a str, &'a dyn Fn(&Bar) -> f64);
        let cols: [Column<'_>; 5] = [
            ("open", &|b| ohlc(b, adjusted).0),
            ("high", &|b| ohlc(b, adjusted).1),
            ("low", &|b| ohlc(b, adjusted).2),
            ("close", &|b| ohlc(b, adjusted).3),
            ("volume", &|b| b.volume),
        ];
        for (name, get) in cols {
            out.extend_from_slice(b"],\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":[");
            for (i, b) in bars.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_f64(out, get(b), &mut buf);
            }
        }
        out.extend_from_slice(b"]}");
    }
}

impl Encoder for JsonEncoder {
    fn begin(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(b"{\"interval\":\"");
        out.extend_from_slice(self.interval.as_str().as_bytes());
        out.extend_from_slice(b"\",\"series\":{");
        Ok(())
    }

    fn series(&mut self, symbol: &str, bars: &[Bar], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match &mut self.current {
            Some((s, acc)) if s == symbol => acc.extend_from_slice(bars),
            _ => {
                self.flush_current(out);
                self.current = Some((symbol.to_string(), bars.to_vec()));
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.flush_current(out);
        out.extend_from_slice(b"}}");
        Ok(())
    }
}

struct CsvEncoder {
    adjusted: bool,
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn push_csv_field(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

impl Encoder for CsvEncoder {
    fn begin(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(b"symbol,ts,open,high,low,close,volume\n");
        Ok(())
    }

    fn series(&mut self, symbol: &str, bars: &[Bar], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut sym = Vec::new();
        push_csv_field(&mut sym, symbol);
        let mut buf = ryu::Buffer::new();
        out.reserve(bars.len() * 80);
        for b in bars {
            out.extend_from_slice(&sym);
            out.push(b',');
            out.extend_from_slice(time::rfc3339(b.ts).as_bytes());
            let (o, h, l, c) = ohlc(b, self.adjusted);
            for v in [o, h, l, c, b.volume] {
                out.push(b',');
                push_f64(out, v, &mut buf);
            }
            out.push(b'\n');
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// The long-format Arrow schema shared by `arrow` and `parquet`.
pub fn long_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
            false,
        ),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::Float64, false),
    ]))
}

/// One record batch of a symbol's bars in the long schema.
pub fn long_batch(
    symbol: &str,
    bars: &[Bar],
    adjusted: bool,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = bars.len();
    let (mut o, mut h, mut l, mut c, mut v) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for b in bars {
        let (bo, bh, bl, bc) = ohlc(b, adjusted);
        o.push(bo);
        h.push(bh);
        l.push(bl);
        c.push(bc);
        v.push(b.volume);
    }
    RecordBatch::try_new(
        long_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                symbol, n,
            ))),
            Arc::new(
                TimestampSecondArray::from_iter_values(bars.iter().map(|b| b.ts))
                    .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from(o)),
            Arc::new(Float64Array::from(h)),
            Arc::new(Float64Array::from(l)),
            Arc::new(Float64Array::from(c)),
            Arc::new(Float64Array::from(v)),
        ],
    )
}

/// A `Write` whose bytes the encoder drains into the caller's buffer after each step.
#[derive(Clone, Default)]
struct SharedSink(Arc<Mutex<Vec<u8>>>);

impl Write for SharedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedSink {
    fn drain_into(&self, out: &mut Vec<u8>) {
        out.append(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

fn err(format: &'static str, e: impl std::fmt::Display) -> EncodeError {
    EncodeError {
        format,
        message: e.to_string(),
    }
}

struct ArrowEncoder {
    adjusted: bool,
    writer: Option<arrow_ipc::writer::StreamWriter<SharedSink>>,
    sink: SharedSink,
}

impl Encoder for ArrowEncoder {
    fn begin(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let w = arrow_ipc::writer::StreamWriter::try_new(self.sink.clone(), &long_schema())
            .map_err(|e| err("arrow", e))?;
        self.writer = Some(w);
        self.sink.drain_into(out);
        Ok(())
    }

    fn series(&mut self, symbol: &str, bars: &[Bar], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if bars.is_empty() {
            return Ok(());
        }
        let batch = long_batch(symbol, bars, self.adjusted).map_err(|e| err("arrow", e))?;
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| err("arrow", "not started"))?;
        w.write(&batch).map_err(|e| err("arrow", e))?;
        self.sink.drain_into(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if let Some(mut w) = self.writer.take() {
            w.finish().map_err(|e| err("arrow", e))?;
        }
        self.sink.drain_into(out);
        Ok(())
    }
}

struct ParquetEncoder {
    adjusted: bool,
    writer: Option<parquet::arrow::ArrowWriter<SharedSink>>,
    sink: SharedSink,
}

impl Encoder for ParquetEncoder {
    fn begin(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_max_row_group_row_count(Some(256 * 1024))
            .build();
        let w = parquet::arrow::ArrowWriter::try_new(self.sink.clone(), long_schema(), Some(props))
            .map_err(|e| err("parquet", e))?;
        self.writer = Some(w);
        self.sink.drain_into(out);
        Ok(())
    }

    fn series(&mut self, symbol: &str, bars: &[Bar], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if bars.is_empty() {
            return Ok(());
        }
        let batch = long_batch(symbol, bars, self.adjusted).map_err(|e| err("parquet", e))?;
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| err("parquet", "not started"))?;
        w.write(&batch).map_err(|e| err("parquet", e))?;
        self.sink.drain_into(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if let Some(w) = self.writer.take() {
            w.close().map_err(|e| err("parquet", e))?;
        }
        self.sink.drain_into(out);
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
            &[("A", &a[..1]), ("A", &a[1..]), ("B\"", &b)],
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
    fn arrow_and_parquet_round_trip() {
        let a: Vec<Bar> = (0..1000)
            .map(|i| bar(1_704_153_600 + i * 60, 10.0 + i as f64 / 7.0, None))
            .collect();
        let out = encode_all(
            Format::Arrow,
            Interval::M1,
            false,
            &[("A", &a), ("B", &a[..10])],
        )
        .unwrap();
        let reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(out), None).unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 1010);

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
}
