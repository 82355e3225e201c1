//! Streaming decoding of `/query` responses into series headers and rows, fed network chunk by
//! network chunk so that a large read never holds more than one chunk of undecoded bytes.
//!
//! Two formats, one event model ([`Sink`]):
//! - **MessagePack** (`Accept: application/x-msgpack`), what the store asks for: the fastest
//!   format InfluxDB 1.x/2.x produce, floats travel as their exact 64 bits, tags as exact
//!   strings, and errors inside a 200 response are reported (`results[i].error`). CSV, the
//!   other fast format, silently drops those errors on 1.6.7: a query against a missing
//!   database or a failing statement answers `200` with an empty or short body, which a reader
//!   cannot tell from "no data".
//! - **JSON**, the fallback for servers that answer JSON whatever is asked (InfluxDB 3's v1
//!   API). With `chunked=true` it is one document per line, decoded line by line.
//!
//! Both are a sequence of documents `{"results":[{"statement_id":0,"series":[{"name":…,
//! "tags":{…},"columns":[…],"values":[[…],…]}],"error":…}]}`. The MessagePack decoder is a small
//! push parser: a tokenizer that stops at an incomplete token, and a stack of containers that
//! knows where in that structure each token sits. Keys it does not know are skipped.

use std::collections::BTreeMap;

/// One cell of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl<'a> Value<'a> {
    /// A number as `f64` (integers convert; InfluxDB writes a float field as an integer in
    /// JSON when it has no fraction).
    pub fn as_f64(self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(f),
            Value::Int(i) => Some(i as f64),
            _ => None,
        }
    }

    pub fn as_i64(self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_str(self) -> Option<&'a str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A row as the decoder holds it; strings live in one shared text buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(usize, usize),
}

/// One row of the current series, in the order of its columns.
pub struct Row<'a> {
    cells: &'a [Cell],
    text: &'a str,
}

impl<'a> Row<'a> {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// The cell in column `i`; `Null` past the end.
    pub fn get(&self, i: usize) -> Value<'a> {
        match self.cells.get(i) {
            None | Some(Cell::Null) => Value::Null,
            Some(&Cell::Bool(b)) => Value::Bool(b),
            Some(&Cell::Int(n)) => Value::Int(n),
            Some(&Cell::Float(f)) => Value::Float(f),
            Some(&Cell::Str(a, b)) => Value::Str(&self.text[a..b]),
        }
    }
}

/// The header of a series in a result: rows that follow belong to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesHeader {
    /// Which statement of a multi-statement query this series answers (0-based).
    pub statement_id: u64,
    pub name: String,
    pub tags: Vec<(String, String)>,
    pub columns: Vec<String>,
}

impl SeriesHeader {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// Receives what a response holds. An `Err` stops decoding with [`DecodeError::Sink`].
pub trait Sink {
    fn series(&mut self, header: &SeriesHeader) -> Result<(), String>;
    fn row(&mut self, row: &Row<'_>) -> Result<(), String>;
}

/// A sink for statements that return no data (`CREATE`, `DELETE`).
pub struct Ignore;

impl Sink for Ignore {
    fn series(&mut self, _: &SeriesHeader) -> Result<(), String> {
        Ok(())
    }

    fn row(&mut self, _: &Row<'_>) -> Result<(), String> {
        Ok(())
    }
}

/// Why a response could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// InfluxDB answered the query with an error (inside a successful HTTP response).
    #[error("{0}")]
    Server(String),
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The data did not have the shape the caller expects.
    #[error("unexpected data: {0}")]
    Sink(String),
}

fn malformed(what: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(what.into())
}

/// The response formats the decoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Msgpack,
    Json,
}

impl Format {
    /// The `Accept` header value that asks for this format.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Msgpack => "application/x-msgpack",
            Format::Json => "application/json",
        }
    }

    /// The format of a response from its `Content-Type`.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        match mime {
            "application/x-msgpack" => Some(Format::Msgpack),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// A streaming decoder: [`Decoder::feed`] each chunk of the body, then [`Decoder::finish`].
pub struct Decoder {
    format: Format,
    buf: Vec<u8>,
    /// JSON: how far `buf` has been searched for a newline.
    scanned: usize,
    documents: usize,
    msgpack: MsgpackState,
}

impl Decoder {
    pub fn new(format: Format) -> Decoder {
        Decoder {
            format,
            buf: Vec::new(),
            scanned: 0,
            documents: 0,
            msgpack: MsgpackState::default(),
        }
    }

    pub fn feed(&mut self, bytes: &[u8], sink: &mut dyn Sink) -> Result<(), DecodeError> {
        self.buf.extend_from_slice(bytes);
        match self.format {
            Format::Msgpack => self.feed_msgpack(sink),
            Format::Json => self.feed_json(sink),
        }
    }

    /// Ends the body: fails when it stopped inside a document or held none.
    pub fn finish(mut self, sink: &mut dyn Sink) -> Result<(), DecodeError> {
        if self.format == Format::Json && !self.buf.iter().all(u8::is_ascii_whitespace) {
            // A non-chunked response need not end with a newline.
            let doc = std::mem::take(&mut self.buf);
            self.json_document(&doc, sink)?;
        }
        if !self.buf.is_empty() || !self.msgpack.stack.is_empty() {
            return Err(malformed("the response ended in the middle of a document"));
        }
        if self.documents == 0 {
            return Err(malformed("empty response"));
        }
        Ok(())
    }

    fn feed_json(&mut self, sink: &mut dyn Sink) -> Result<(), DecodeError> {
        let buf = std::mem::take(&mut self.buf);
        let mut start = 0;
        let mut result = Ok(());
        while let Some(nl) = buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + nl;
            let line = &buf[start..end];
            start = end + 1;
            self.scanned = start;
            if !line.iter().all(u8::is_ascii_whitespace) {
                result = self.json_document(line, sink);
                if result.is_err() {
                    break;
                }
            }
        }
        self.buf = buf;
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        result
    }

    fn json_document(&mut self, doc: &[u8], sink: &mut dyn Sink) -> Result<(), DecodeError> {
        let doc: JsonDocument =
            serde_json::from_slice(doc).map_err(|e| malformed(format!("json: {e}")))?;
        self.documents += 1;
        if let Some(e) = doc.error {
            return Err(DecodeError::Server(e));
        }
        let mut cells = Vec::new();
        let mut text = String::new();
        for result in doc.results {
            if let Some(e) = result.error {
                return Err(DecodeError::Server(e));
            }
            for series in result.series {
                let header = SeriesHeader {
                    statement_id: result.statement_id,
                    name: series.name,
                    tags: series.tags.into_iter().collect(),
                    columns: series.columns,
                };
                sink.series(&header).map_err(DecodeError::Sink)?;
                for values in series.values {
                    cells.clear();
                    text.clear();
                    for v in values {
                        cells.push(match v {
                            serde_json::Value::Null => Cell::Null,
                            serde_json::Value::Bool(b) => Cell::Bool(b),
                            serde_json::Value::Number(n) => match n.as_i64() {
                                Some(i) => Cell::Int(i),
                                None => Cell::Float(n.as_f64().ok_or_else(|| {
                                    malformed(format!("json: number {n} out of range"))
                                })?),
                            },
                            serde_json::Value::String(s) => {
                                let a = text.len();
                                text.push_str(&s);
                                Cell::Str(a, text.len())
                            }
                            other => {
                                return Err(malformed(format!("json: unexpected value {other}")));
                            }
                        });
                    }
                    let row = Row {
                        cells: &cells,
                        text: &text,
                    };
                    sink.row(&row).map_err(DecodeError::Sink)?;
                }
            }
        }
        Ok(())
    }

    fn feed_msgpack(&mut self, sink: &mut dyn Sink) -> Result<(), DecodeError> {
        let buf = std::mem::take(&mut self.buf);
        let mut pos = 0;
        let result = loop {
            match token(&buf[pos..]) {
                Ok(Some((tok, n))) => {
                    pos += n;
                    match self.msgpack.handle(tok, sink) {
                        Ok(true) => self.documents += 1,
                        Ok(false) => {}
                        Err(e) => break Err(e),
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.buf = buf;
        self.buf.drain(..pos);
        result
    }
}

#[derive(serde::Deserialize)]
struct JsonDocument {
    #[serde(default)]
    results: Vec<JsonResult>,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct JsonResult {
    #[serde(default)]
    statement_id: u64,
    #[serde(default)]
    series: Vec<JsonSeries>,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct JsonSeries {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
}

// ---- MessagePack ---------------------------------------------------------------------------

/// One complete MessagePack token: a scalar, or the header of a container.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a [u8]),
    /// Binary and extension values: nothing in a query response DMS reads.
    Opaque,
    Array(u64),
    Map(u64),
}

/// Reads the token at the start of `b`: `Ok(None)` when `b` holds only part of it.
fn token(b: &[u8]) -> Result<Option<(Token<'_>, usize)>, DecodeError> {
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    // A big-endian unsigned of `n` bytes at `b[at..]`, if present.
    let uint = |at: usize, n: usize| -> Option<u64> {
        let bytes = b.get(at..at + n)?;
        Some(bytes.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    };
    // `len` payload bytes after a `head`-byte header.
    let payload = |head: usize, len: u64| -> Option<(&[u8], usize)> {
        let len = usize::try_from(len).ok()?;
        let end = head.checked_add(len)?;
        Some((b.get(head..end)?, end))
    };
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(None),
            }
        };
    }
    let tok = match first {
        0x00..=0x7f => (Token::Int(first as i64), 1),
        0x80..=0x8f => (Token::Map((first & 0x0f) as u64), 1),
        0x90..=0x9f => (Token::Array((first & 0x0f) as u64), 1),
        0xa0..=0xbf => {
            let (s, end) = need!(payload(1, (first & 0x1f) as u64));
            (Token::Str(s), end)
        }
        0xc0 => (Token::Nil, 1),
        0xc1 => return Err(malformed("msgpack: reserved byte 0xc1")),
        0xc2 => (Token::Bool(false), 1),
        0xc3 => (Token::Bool(true), 1),
        0xc4..=0xc6 => {
            let n = 1 << (first - 0xc4);
            let len = need!(uint(1, n));
            (Token::Opaque, need!(payload(1 + n, len)).1)
        }
        0xc7..=0xc9 => {
            let n = 1 << (first - 0xc7);
            let len = need!(uint(1, n));
            // One type byte, then the data.
            (Token::Opaque, need!(payload(2 + n, len)).1)
        }
        0xca => {
            let bits = need!(uint(1, 4)) as u32;
            (Token::Float(f32::from_bits(bits) as f64), 5)
        }
        0xcb => (Token::Float(f64::from_bits(need!(uint(1, 8)))), 9),
        0xcc..=0xcf => {
            let n = 1 << (first - 0xcc);
            let v = need!(uint(1, n));
            let v = i64::try_from(v).map_err(|_| malformed("msgpack: integer out of range"))?;
            (Token::Int(v), 1 + n)
        }
        0xd0..=0xd3 => {
            let n = 1 << (first - 0xd0);
            let v = need!(uint(1, n));
            // Sign-extend the n-byte two's complement value.
            let shift = 64 - 8 * n as u32;
            (Token::Int(((v << shift) as i64) >> shift), 1 + n)
        }
        0xd4..=0xd8 => {
            let len = 1u64 << (first - 0xd4);
            (Token::Opaque, need!(payload(2, len)).1)
        }
        0xd9..=0xdb => {
            let n = 1 << (first - 0xd9);
            let len = need!(uint(1, n));
            let (s, end) = need!(payload(1 + n, len));
            (Token::Str(s), end)
        }
        0xdc | 0xdd => {
            let n = if first == 0xdc { 2 } else { 4 };
            (Token::Array(need!(uint(1, n))), 1 + n)
        }
        0xde | 0xdf => {
            let n = if first == 0xde { 2 } else { 4 };
            (Token::Map(need!(uint(1, n))), 1 + n)
        }
        0xe0..=0xff => (Token::Int(first as i8 as i64), 1),
    };
    Ok(Some(tok))
}

/// Where a container sits in a response document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Document,
    Results,
    Result,
    SeriesList,
    Series,
    Tags,
    Columns,
    Values,
    Row,
    /// Something DMS does not read (`messages`, unknown keys): its contents are skipped.
    Skip,
}

/// The last key read in a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    None,
    Results,
    StatementId,
    Series,
    Error,
    Name,
    Tags,
    Columns,
    Values,
    Other,
}

impl Key {
    fn of(s: &[u8]) -> Key {
        match s {
            b"results" => Key::Results,
            b"statement_id" => Key::StatementId,
            b"series" => Key::Series,
            b"error" => Key::Error,
            b"name" => Key::Name,
            b"tags" => Key::Tags,
            b"columns" => Key::Columns,
            b"values" => Key::Values,
            _ => Key::Other,
        }
    }
}

#[derive(Debug)]
struct Frame {
    role: Role,
    is_map: bool,
    /// Entries (maps) or elements (arrays) still to read.
    remaining: u64,
    /// Maps: the next token is a key.
    expect_key: bool,
    key: Key,
}

#[derive(Default)]
struct MsgpackState {
    stack: Vec<Frame>,
    statement_id: u64,
    header: SeriesHeader,
    tag_key: String,
    cells: Vec<Cell>,
    text: String,
}

fn utf8(s: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(s).map_err(|_| malformed("msgpack: string is not utf-8"))
}

impl MsgpackState {
    /// Handles one token; `Ok(true)` when it completed a document.
    fn handle(&mut self, tok: Token<'_>, sink: &mut dyn Sink) -> Result<bool, DecodeError> {
        if let Some(top) = self.stack.last_mut()
            && top.is_map
            && top.expect_key
        {
            let Token::Str(s) = tok else {
                return Err(malformed("msgpack: a map key is not a string"));
            };
            top.expect_key = false;
            match top.role {
                Role::Tags => {
                    self.tag_key.clear();
                    self.tag_key.push_str(utf8(s)?);
                }
                Role::Skip => {}
                _ => top.key = Key::of(s),
            }
            return Ok(false);
        }
        let parent = self.stack.last().map(|f| (f.role, f.key));
        let role = match parent {
            None => Role::Document,
            Some((Role::Document, Key::Results)) => Role::Results,
            Some((Role::Results, _)) => Role::Result,
            Some((Role::Result, Key::Series)) => Role::SeriesList,
            Some((Role::SeriesList, _)) => Role::Series,
            Some((Role::Series, Key::Tags)) => Role::Tags,
            Some((Role::Series, Key::Columns)) => Role::Columns,
            Some((Role::Series, Key::Values)) => Role::Values,
            Some((Role::Values, _)) => Role::Row,
            _ => Role::Skip,
        };
        match tok {
            Token::Map(n) | Token::Array(n) => {
                let is_map = matches!(tok, Token::Map(_));
                let wants_map = matches!(
                    role,
                    Role::Document | Role::Result | Role::Series | Role::Tags
                );
                if role != Role::Skip && wants_map != is_map {
                    return Err(malformed(format!(
                        "msgpack: expected a {} at {role:?}",
                        if wants_map { "map" } else { "array" }
                    )));
                }
                self.open(role, sink)?;
                if n > 0 {
                    self.stack.push(Frame {
                        role,
                        is_map,
                        remaining: n,
                        expect_key: is_map,
                        key: Key::None,
                    });
                    return Ok(false);
                }
                self.close(role, sink)?;
            }
            scalar => self.scalar(parent, scalar)?,
        }
        self.value_done(sink)
    }

    /// A container starts.
    fn open(&mut self, role: Role, sink: &mut dyn Sink) -> Result<(), DecodeError> {
        match role {
            Role::Result => self.statement_id = 0,
            Role::Series => {
                self.header.name.clear();
                self.header.tags.clear();
                self.header.columns.clear();
            }
            Role::Values => {
                self.header.statement_id = self.statement_id;
                sink.series(&self.header).map_err(DecodeError::Sink)?;
            }
            Role::Row => {
                self.cells.clear();
                self.text.clear();
            }
            _ => {}
        }
        Ok(())
    }

    /// A container ends.
    fn close(&mut self, role: Role, sink: &mut dyn Sink) -> Result<(), DecodeError> {
        if role == Role::Row {
            let row = Row {
                cells: &self.cells,
                text: &self.text,
            };
            sink.row(&row).map_err(DecodeError::Sink)?;
        }
        Ok(())
    }

    fn scalar(&mut self, parent: Option<(Role, Key)>, tok: Token<'_>) -> Result<(), DecodeError> {
        match parent {
            None => return Err(malformed("msgpack: a document is not a map")),
            Some((Role::Document | Role::Result, Key::Error)) => {
                let msg = match tok {
                    Token::Str(s) => String::from_utf8_lossy(s).into_owned(),
                    other => format!("{other:?}"),
                };
                return Err(DecodeError::Server(msg));
            }
            Some((Role::Result, Key::StatementId)) => {
                if let Token::Int(i) = tok {
                    self.statement_id = u64::try_from(i).unwrap_or(0);
                }
            }
            Some((Role::Series, Key::Name)) => {
                if let Token::Str(s) = tok {
                    self.header.name = utf8(s)?.to_owned();
                }
            }
            Some((Role::Tags, _)) => {
                let value = match tok {
                    Token::Str(s) => utf8(s)?.to_owned(),
                    Token::Nil => String::new(),
                    _ => return Err(malformed("msgpack: a tag value is not a string")),
                };
                self.header
                    .tags
                    .push((std::mem::take(&mut self.tag_key), value));
            }
            Some((Role::Columns, _)) => {
                let Token::Str(s) = tok else {
                    return Err(malformed("msgpack: a column name is not a string"));
                };
                self.header.columns.push(utf8(s)?.to_owned());
            }
            Some((Role::Row, _)) => {
                let cell = match tok {
                    Token::Bool(b) => Cell::Bool(b),
                    Token::Int(i) => Cell::Int(i),
                    Token::Float(f) => Cell::Float(f),
                    Token::Str(s) => {
                        let a = self.text.len();
                        self.text.push_str(utf8(s)?);
                        Cell::Str(a, self.text.len())
                    }
                    // Binary and extension values (and containers, which never get here).
                    Token::Nil | Token::Opaque | Token::Array(_) | Token::Map(_) => Cell::Null,
                };
                self.cells.push(cell);
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// A value (scalar or whole container) in the top frame is complete; closes every frame
    /// that this completes. `Ok(true)` when the document itself is complete.
    fn value_done(&mut self, sink: &mut dyn Sink) -> Result<bool, DecodeError> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(true);
            };
            top.remaining -= 1;
            top.expect_key = top.is_map;
            if top.remaining > 0 {
                return Ok(false);
            }
            let role = top.role;
            self.stack.pop();
            self.close(role, sink)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes the MessagePack InfluxDB sends, for tests.
    #[derive(Clone)]
    enum M {
        Nil,
        Int(i64),
        F(f64),
        S(&'static str),
        A(Vec<M>),
        Map(Vec<(&'static str, M)>),
    }

    fn enc(m: &M, out: &mut Vec<u8>) {
        match m {
            M::Nil => out.push(0xc0),
            M::Int(i) => {
                out.push(0xd3);
                out.extend_from_slice(&i.to_be_bytes());
            }
            M::F(f) => {
                out.push(0xcb);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            M::S(s) => {
                if s.len() < 32 {
                    out.push(0xa0 | s.len() as u8);
                } else {
                    out.push(0xd9);
                    out.push(s.len() as u8);
                }
                out.extend_from_slice(s.as_bytes());
            }
            M::A(items) => {
                out.push(0xdc);
                out.extend_from_slice(&(items.len() as u16).to_be_bytes());
                items.iter().for_each(|i| enc(i, out));
            }
            M::Map(entries) => {
                out.push(0x80 | entries.len() as u8);
                for (k, v) in entries {
                    enc(&M::S(k), out);
                    enc(v, out);
                }
            }
        }
    }

    #[derive(Default, Debug, PartialEq)]
    struct Collect {
        headers: Vec<SeriesHeader>,
        rows: Vec<Vec<String>>,
    }

    impl Sink for Collect {
        fn series(&mut self, h: &SeriesHeader) -> Result<(), String> {
            self.headers.push(h.clone());
            Ok(())
        }
        fn row(&mut self, row: &Row<'_>) -> Result<(), String> {
            self.rows.push(
                (0..row.len())
                    .map(|i| format!("{:?}", row.get(i)))
                    .collect(),
            );
            Ok(())
        }
    }

    fn series(tags: Vec<(&'static str, M)>, rows: Vec<M>) -> M {
        M::Map(vec![
            ("name", M::S("bars")),
            ("tags", M::Map(tags)),
            (
                "columns",
                M::A(vec![M::S("time"), M::S("close"), M::S("source")]),
            ),
            ("values", M::A(rows)),
            ("partial", M::Nil),
        ])
    }

    fn document() -> Vec<u8> {
        let doc = M::Map(vec![(
            "results",
            M::A(vec![
                M::Map(vec![
                    ("statement_id", M::Int(0)),
                    (
                        "series",
                        M::A(vec![series(
                            vec![("symbol", M::S("A' OR '1'='1")), ("interval", M::S("1d"))],
                            vec![
                                M::A(vec![M::Int(1_704_153_600), M::F(0.1 + 0.2), M::S("yahoo")]),
                                M::A(vec![M::Int(-5), M::F(-0.0), M::Nil]),
                            ],
                        )]),
                    ),
                ]),
                M::Map(vec![
                    ("statement_id", M::Int(1)),
                    ("messages", M::A(vec![M::Map(vec![("text", M::S("warn"))])])),
                    (
                        "series",
                        M::A(vec![series(
                            vec![],
                            vec![M::A(vec![
                                M::Int(7),
                                M::F(1e300),
                                M::S("a long string value that needs str8 encoding"),
                            ])],
                        )]),
                    ),
                ]),
            ]),
        )]);
        let mut out = Vec::new();
        enc(&doc, &mut out);
        out
    }

    fn expected() -> Collect {
        Collect {
            headers: vec![
                SeriesHeader {
                    statement_id: 0,
                    name: "bars".into(),
                    tags: vec![
                        ("symbol".into(), "A' OR '1'='1".into()),
                        ("interval".into(), "1d".into()),
                    ],
                    columns: vec!["time".into(), "close".into(), "source".into()],
                },
                SeriesHeader {
                    statement_id: 1,
                    name: "bars".into(),
                    tags: vec![],
                    columns: vec!["time".into(), "close".into(), "source".into()],
                },
            ],
            rows: vec![
                vec![
                    "Int(1704153600)".into(),
                    format!("{:?}", Value::Float(0.1 + 0.2)),
                    "Str(\"yahoo\")".into(),
                ],
                vec!["Int(-5)".into(), "Float(-0.0)".into(), "Null".into()],
                vec![
                    "Int(7)".into(),
                    "Float(1e300)".into(),
                    "Str(\"a long string value that needs str8 encoding\")".into(),
                ],
            ],
        }
    }

    #[test]
    fn msgpack_decodes_the_same_whatever_the_chunking() {
        let mut body = document();
        body.extend(document());
        let mut want = expected();
        want.headers.extend(expected().headers);
        want.rows.extend(expected().rows);
        for size in [1, 2, 3, 7, 64, body.len()] {
            let mut d = Decoder::new(Format::Msgpack);
            let mut got = Collect::default();
            for chunk in body.chunks(size) {
                d.feed(chunk, &mut got).unwrap();
            }
            d.finish(&mut got).unwrap();
            assert_eq!(got, want, "chunks of {size}");
        }
    }

    #[test]
    fn msgpack_reports_server_errors_and_truncation() {
        let mut body = Vec::new();
        enc(
            &M::Map(vec![(
                "results",
                M::A(vec![M::Map(vec![
                    ("statement_id", M::Int(0)),
                    ("error", M::S("database not found: x")),
                ])]),
            )]),
            &mut body,
        );
        let mut d = Decoder::new(Format::Msgpack);
        assert_eq!(
            d.feed(&body, &mut Collect::default()),
            Err(DecodeError::Server("database not found: x".into()))
        );
        let full = document();
        for cut in [0, 1, full.len() / 2, full.len() - 1] {
            let mut d = Decoder::new(Format::Msgpack);
            let mut sink = Collect::default();
            d.feed(&full[..cut], &mut sink).unwrap();
            assert!(
                matches!(d.finish(&mut sink), Err(DecodeError::Malformed(_))),
                "cut at {cut}"
            );
        }
        let mut d = Decoder::new(Format::Msgpack);
        assert!(d.feed(&[0xc1], &mut Collect::default()).is_err());
        let mut d = Decoder::new(Format::Msgpack);
        assert!(
            d.feed(&[0x92, 0x01, 0x02], &mut Collect::default())
                .is_err()
        );
    }

    #[test]
    fn msgpack_reads_every_integer_width() {
        let cases: &[(&[u8], i64)] = &[
            (&[0x05], 5),
            (&[0xff], -1),
            (&[0xe0], -32),
            (&[0xcc, 0xff], 255),
            (&[0xcd, 0x01, 0x00], 256),
            (&[0xce, 0x65, 0x93, 0x52, 0x00], 1_704_153_600),
            (&[0xd0, 0x80], -128),
            (&[0xd1, 0xff, 0x00], -256),
            (&[0xd2, 0x65, 0x93, 0x52, 0x00], 1_704_153_600),
            (&[0xd2, 0xff, 0xff, 0xff, 0xfe], -2),
            (&[0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd], -3),
            (&[0xcf, 0, 0, 0, 0, 0, 0, 1, 0], 256),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                token(bytes).unwrap(),
                Some((Token::Int(*want), bytes.len())),
                "{bytes:x?}"
            );
            assert_eq!(token(&bytes[..bytes.len() - 1]).unwrap_or(None), None);
        }
        assert!(token(&[0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert_eq!(
            token(&[0xca, 0x3f, 0xc0, 0, 0]).unwrap(),
            Some((Token::Float(1.5), 5))
        );
        assert_eq!(
            token(&[0xd6, 0xff, 1, 2, 3, 4, 0xc0]).unwrap(),
            Some((Token::Opaque, 6))
        );
    }

    #[test]
    fn json_decodes_chunked_lines_and_reports_errors() {
        let body = concat!(
            r#"{"results":[{"statement_id":0,"series":[{"name":"bars","tags":{"symbol":"x\\y","interval":"1d"},"columns":["time","close","source"],"values":[[1704153600,5,"yahoo"],[1704153660,1e-7,null]],"partial":true}],"partial":true}]}"#,
            "\n",
            r#"{"results":[{"statement_id":1,"series":[{"name":"bars","columns":["time","close"],"values":[[1,150000000000000000000]]}]}]}"#,
            "\n",
        );
        for size in [1, 5, body.len()] {
            let mut d = Decoder::new(Format::Json);
            let mut got = Collect::default();
            for chunk in body.as_bytes().chunks(size) {
                d.feed(chunk, &mut got).unwrap();
            }
            d.finish(&mut got).unwrap();
            assert_eq!(got.headers.len(), 2);
            assert_eq!(got.headers[0].tag("symbol"), Some("x\\y"));
            assert_eq!(got.headers[1].statement_id, 1);
            assert_eq!(
                got.rows,
                vec![
                    vec!["Int(1704153600)", "Int(5)", "Str(\"yahoo\")"],
                    vec!["Int(1704153660)", "Float(1e-7)", "Null"],
                    vec!["Int(1)", "Float(1.5e20)"],
                ]
            );
        }
        let mut d = Decoder::new(Format::Json);
        let err = d.feed(
            b"{\"results\":[{\"statement_id\":0,\"error\":\"database not found: nope\"}]}\n",
            &mut Collect::default(),
        );
        assert_eq!(
            err,
            Err(DecodeError::Server("database not found: nope".into()))
        );
        // Not chunked: no trailing newline.
        let mut d = Decoder::new(Format::Json);
        let mut got = Collect::default();
        d.feed(br#"{"results":[{"statement_id":0}]}"#, &mut got)
            .unwrap();
        d.finish(&mut got).unwrap();
        assert!(
            Decoder::new(Format::Json)
                .finish(&mut Collect::default())
                .is_err()
        );
    }

    #[test]
    fn content_types_pick_the_decoder() {
        assert_eq!(
            Format::from_content_type("application/x-msgpack"),
            Some(Format::Msgpack)
        );
        assert_eq!(
            Format::from_content_type("application/json; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(Format::from_content_type("text/csv"), None);
    }
}
