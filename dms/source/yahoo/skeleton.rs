//! Finds the parts of a chart response without parsing its bar arrays.
//!
//! A response is `{"chart":{"result":[{"meta":…,"timestamp":[…],"events":…,"indicators":{
//! "quote":[{"open":[…],…}],"adjclose":[{"adjclose":[…]}]}}],"error":…}}` and nearly all of its
//! bytes are the bar arrays. Handing the whole body to `serde_json` would scan those bytes once
//! to check them and [`super::arrays`] would scan them again to read them; this walker instead
//! finds where each part is (a bar array ends at its first `]`), so the
//! bar arrays are read once, by [`super::arrays`], which checks every element. The small parts
//! (`meta`, `events`, `error`) are handed to `serde_json` as raw text and fully checked there.
//!
//! The walker itself checks the structure it walks: a truncated body, a missing brace or
//! garbage after the end is an error, never a partial result. Values under keys DMS does not
//! use are skipped by bracket matching without further checks.

/// The parts of a chart response, as raw JSON text (`None` when absent or `null`).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Chart<'a> {
    /// The first element of `chart.result`, when it is a non-empty array.
    pub result: Option<Parts<'a>>,
    pub error: Option<&'a [u8]>,
}

/// The parts of `chart.result[0]` that DMS reads.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Parts<'a> {
    pub meta: Option<&'a [u8]>,
    pub events: Option<&'a [u8]>,
    pub timestamp: Option<&'a [u8]>,
    /// `indicators.quote[0]`'s arrays.
    pub open: Option<&'a [u8]>,
    pub high: Option<&'a [u8]>,
    pub low: Option<&'a [u8]>,
    pub close: Option<&'a [u8]>,
    pub volume: Option<&'a [u8]>,
    /// `indicators.adjclose[0].adjclose`.
    pub adjclose: Option<&'a [u8]>,
}

/// Walks a chart response body.
pub(super) fn chart(body: &[u8]) -> Result<Chart<'_>, String> {
    let mut w = Walker { b: body, i: 0 };
    let mut chart = Chart::default();
    w.object(|w, key| match key {
        b"chart" => w.object(|w, key| match key {
            b"result" => {
                if w.null()? {
                    return Ok(());
                }
                w.array(|w, index| {
                    if index > 0 {
                        return w.skip().map(drop);
                    }
                    let mut parts = Parts::default();
                    w.object(|w, key| result_part(w, key, &mut parts))?;
                    chart.result = Some(parts);
                    Ok(())
                })
            }
            b"error" => {
                chart.error = w.value()?;
                Ok(())
            }
            _ => w.skip().map(drop),
        }),
        _ => w.skip().map(drop),
    })?;
    w.ws();
    if w.i != body.len() {
        return Err(format!(
            "unexpected data after the response at byte {}",
            w.i
        ));
    }
    Ok(chart)
}

fn result_part<'a>(w: &mut Walker<'a>, key: &[u8], parts: &mut Parts<'a>) -> Result<(), String> {
    match key {
        b"meta" => parts.meta = w.value()?,
        b"events" => parts.events = w.value()?,
        b"timestamp" => parts.timestamp = w.flat_array()?,
        b"indicators" => w.object(|w, key| match key {
            b"quote" => w.array(|w, index| {
                if index > 0 {
                    return w.skip().map(drop);
                }
                w.object(|w, key| {
                    let slot = match key {
                        b"open" => &mut parts.open,
                        b"high" => &mut parts.high,
                        b"low" => &mut parts.low,
                        b"close" => &mut parts.close,
                        b"volume" => &mut parts.volume,
                        _ => return w.skip().map(drop),
                    };
                    *slot = w.flat_array()?;
                    Ok(())
                })
            }),
            b"adjclose" => w.array(|w, index| {
                if index > 0 {
                    return w.skip().map(drop);
                }
                w.object(|w, key| match key {
                    b"adjclose" => {
                        parts.adjclose = w.flat_array()?;
                        Ok(())
                    }
                    _ => w.skip().map(drop),
                })
            }),
            _ => w.skip().map(drop),
        })?,
        _ => {
            w.skip()?;
        }
    }
    Ok(())
}

struct Walker<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Walker<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn end(&self) -> String {
        format!("unexpected end of the response at byte {}", self.i)
    }

    fn peek(&mut self) -> Result<u8, String> {
        self.ws();
        self.b.get(self.i).copied().ok_or_else(|| self.end())
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.peek()? {
            x if x == c => {
                self.i += 1;
                Ok(())
            }
            x => Err(format!(
                "expected {:?} at byte {}, found {:?}",
                c as char, self.i, x as char
            )),
        }
    }

    /// Consumes `null` if it is next.
    fn null(&mut self) -> Result<bool, String> {
        if self.peek()? == b'n' && self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            return Ok(true);
        }
        Ok(false)
    }

    /// A string's raw contents (escapes kept); the cursor must be on its opening quote.
    fn string(&mut self) -> Result<&'a [u8], String> {
        self.expect(b'"')?;
        let start = self.i;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Ok(&self.b[start..self.i - 1]);
                }
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
        Err(self.end())
    }

    /// Calls `f(walker, key)` for each member of an object; `f` must consume the value.
    fn object(
        &mut self,
        mut f: impl FnMut(&mut Self, &'a [u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            f(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                x => {
                    return Err(format!(
                        "expected ',' or '}}' at byte {}, found {:?}",
                        self.i, x as char
                    ));
                }
            }
        }
    }

    /// Calls `f(walker, index)` for each element of an array; `f` must consume the element.
    fn array(
        &mut self,
        mut f: impl FnMut(&mut Self, usize) -> Result<(), String>,
    ) -> Result<(), String> {
        self.expect(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            f(self, index)?;
            index += 1;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Ok(());
                }
                x => {
                    return Err(format!(
                        "expected ',' or ']' at byte {}, found {:?}",
                        self.i, x as char
                    ));
                }
            }
        }
    }

    /// A value's raw text, `None` for `null`.
    fn value(&mut self) -> Result<Option<&'a [u8]>, String> {
        if self.null()? {
            return Ok(None);
        }
        self.skip().map(Some)
    }

    /// A bar array's raw text, `[` to its first `]` (it holds no nested arrays; a `]` inside a
    /// string would cut it short and fail when the array is read), `None` for `null`.
    fn flat_array(&mut self) -> Result<Option<&'a [u8]>, String> {
        if self.null()? {
            return Ok(None);
        }
        if self.peek()? != b'[' {
            return Err(format!("expected an array at byte {}", self.i));
        }
        let start = self.i;
        match memchr(b']', &self.b[start..]) {
            Some(len) => {
                self.i = start + len + 1;
                Ok(Some(&self.b[start..self.i]))
            }
            None => Err(self.end()),
        }
    }

    /// Skips any value by bracket matching and returns its raw text.
    fn skip(&mut self) -> Result<&'a [u8], String> {
        let start = {
            self.ws();
            self.i
        };
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    let Some(&c) = self.b.get(self.i) else {
                        return Err(self.end());
                    };
                    match c {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            b'}' | b']' | b',' | b':' => {
                return Err(format!("expected a value at byte {}", self.i));
            }
            _ => {
                while self.i < self.b.len()
                    && !matches!(self.b[self.i], b',' | b'}' | b']')
                    && !self.b[self.i].is_ascii_whitespace()
                {
                    self.i += 1;
                }
            }
        }
        Ok(&self.b[start..self.i])
    }
}

/// The index of the first `c` in `hay`, eight bytes at a time (a bar array is megabytes).
fn memchr(c: u8, hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * c as u64;
    let mut i = 0;
    while let Some(word) = hay.get(i..i + 8) {
        let v = u64::from_le_bytes(word.try_into().expect("8 bytes")) ^ pattern;
        // Exactly when some byte of `v` is zero, i.e. some byte of the word is `c`.
        if v.wrapping_sub(LO) & !v & HI != 0 {
            break;
        }
        i += 8;
    }
    hay[i..].iter().position(|&x| x == c).map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAPL_1D: &str =
        include_str!("../../../tests/fixtures/yahoo/AAPL_1d_2020-08-31_2020-11-07_split_div.json");

    fn text(b: Option<&[u8]>) -> Option<&str> {
        b.map(|b| std::str::from_utf8(b).unwrap())
    }

    #[test]
    fn finds_every_part_of_a_response() {
        let c = chart(AAPL_1D.as_bytes()).unwrap();
        assert_eq!(c.error, None);
        let p = c.result.unwrap();
        let v: serde_json::Value = serde_json::from_str(AAPL_1D).unwrap();
        let r = &v["chart"]["result"][0];
        let same = |part: Option<&[u8]>, want: &serde_json::Value| {
            let got: serde_json::Value = serde_json::from_slice(part.unwrap()).unwrap();
            assert_eq!(&got, want);
        };
        same(p.meta, &r["meta"]);
        same(p.events, &r["events"]);
        same(p.timestamp, &r["timestamp"]);
        for (part, key) in [
            (p.open, "open"),
            (p.high, "high"),
            (p.low, "low"),
            (p.close, "close"),
            (p.volume, "volume"),
        ] {
            same(part, &r["indicators"]["quote"][0][key]);
        }
        same(p.adjclose, &r["indicators"]["adjclose"][0]["adjclose"]);
    }

    #[test]
    fn whitespace_and_key_order_do_not_matter() {
        let v: serde_json::Value = serde_json::from_str(AAPL_1D).unwrap();
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        let p = chart(pretty.as_bytes()).unwrap().result.unwrap();
        let closes: Vec<f64> = serde_json::from_slice(p.close.unwrap()).unwrap();
        assert_eq!(closes.len(), 49);
        let reordered = r#" { "chart" : { "error" : null , "result" : [ { "indicators" : { "adjclose" : [ ] , "quote" : [ { } ] } , "extra" : { "a" : [ 1 , { "b" : "]}" } ] } , "meta" : { "x" : "}" } } , { "ignored" : true } ] } } "#;
        let c = chart(reordered.as_bytes()).unwrap();
        let p = c.result.unwrap();
        assert_eq!(text(p.meta), Some(r#"{ "x" : "}" }"#));
        assert_eq!((p.timestamp, p.close, p.adjclose), (None, None, None));
    }

    #[test]
    fn errors_and_nulls_are_found() {
        let c = chart(
            br#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#,
        )
        .unwrap();
        assert_eq!(c.result, None);
        assert_eq!(
            text(c.error),
            Some(r#"{"code":"Not Found","description":"No data found, symbol may be delisted"}"#)
        );
        let c = chart(br#"{"chart":{"result":[],"error":null}}"#).unwrap();
        assert_eq!(c, Chart::default());
        let c = chart(br#"{"chart":{"result":[{"timestamp":null,"meta":null}]}}"#).unwrap();
        assert_eq!(c.result, Some(Parts::default()));
    }

    #[test]
    fn a_truncated_body_is_an_error_at_every_length() {
        let body = AAPL_1D.trim_end().as_bytes();
        for len in 0..body.len() {
            // Cuts inside a bar array are caught when it is read; everything else here.
            if let Ok(c) = chart(&body[..len]) {
                panic!("accepted a body cut at {len}: {c:?}");
            }
        }
    }

    #[test]
    fn malformed_structure_is_refused() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"chart":}"#,
            r#"{"chart":{"result":[{"meta":{}}]}} trailing"#,
            r#"{"chart":{"result":[{"meta":{}}]},}"#,
            r#"{"chart":{"result":[{"timestamp":5}]}}"#,
            r#"{"chart" {"result":[]}}"#,
            r#"{"chart":{"result":[{"meta":{"a":"unterminated}]}}"#,
        ] {
            assert!(chart(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn memchr_finds_the_first_byte_at_any_position() {
        for len in 0..40 {
            for at in 0..len {
                let mut hay = vec![b'1'; len];
                hay[at] = b']';
                if at + 3 < len {
                    hay[at + 3] = b']';
                }
                assert_eq!(memchr(b']', &hay), Some(at), "{len} {at}");
            }
            assert_eq!(memchr(b']', &vec![0xDDu8; len]), None);
        }
        // Bytes one above and below the target never match.
        assert_eq!(memchr(b']', &[b'\\', b'^', 0x5D, 0xDD]), Some(2));
    }
}
