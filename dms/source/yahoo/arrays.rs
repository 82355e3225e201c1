//! Readers for the bar arrays of a chart response (`timestamp`, `indicators.quote[0].*`,
//! `adjclose`), which are nearly all of its bytes.
//!
//! [`super::skeleton`] finds them; these readers check and convert them in one pass: every
//! element must be a number, `null` or a number string, or the response is refused. Numbers
//! are exact: a number whose digits fit
//! in 53 bits with at most 22 decimals is `digits / 10^decimals`, one correctly rounded IEEE
//! division of two exact values (Clinger's fast path, the same one `serde_json` and the standard
//! library take); anything else goes to the standard library's correctly rounded parser. So a
//! value is the same `f64` `serde_json` with `float_roundtrip` would give, bit for bit: the
//! tests check it against both on real and generated data.

/// Exact powers of ten for the fast path.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Calls `f(index, value)` for each quote value: numbers exactly as sent, `None` for `null`,
/// and the strings `"NaN"`, `"Infinity"` and `"-Infinity"` as those `f64`s (validation then
/// quarantines the bar). Returns how many values there were. A callback rather than a `Vec` so
/// that values go straight into their bars: a ten-year minute response would otherwise
/// allocate (and page-fault in) a hundred megabytes of intermediate columns.
pub(super) fn each_number(
    raw: &[u8],
    mut f: impl FnMut(usize, Option<f64>),
) -> Result<usize, String> {
    let mut c = Cursor::new(raw)?;
    let mut n = 0;
    while let Some(first) = c.next_element()? {
        let v = match first {
            b'-' | b'0'..=b'9' => Some(c.number()?),
            b'n' => {
                c.literal("null")?;
                None
            }
            b'"' => Some(special_float(&c.string()?)?),
            _ => return Err(format!("unexpected {:?} among numbers", first as char)),
        };
        f(n, v);
        n += 1;
    }
    Ok(n)
}

/// Calls `f(index, epoch)` for each epoch-seconds value: integers, integral floats and numeric
/// strings; `null` or a non-integral value is `None` (the caller decides); anything else is
/// refused. Returns how many values there were.
pub(super) fn each_epoch(
    raw: &[u8],
    mut f: impl FnMut(usize, Option<i64>),
) -> Result<usize, String> {
    let mut c = Cursor::new(raw)?;
    let mut n = 0;
    while let Some(first) = c.next_element()? {
        let v = match first {
            b'-' | b'0'..=b'9' => c.integer()?,
            b'n' => {
                c.literal("null")?;
                None
            }
            b'"' => c.string()?.trim().parse().ok(),
            _ => return Err(format!("unexpected {:?} among timestamps", first as char)),
        };
        f(n, v);
        n += 1;
    }
    Ok(n)
}

fn special_float(s: &str) -> Result<f64, String> {
    match s.trim() {
        "NaN" | "nan" => Ok(f64::NAN),
        "Infinity" | "+Infinity" | "inf" => Ok(f64::INFINITY),
        "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
        t => t.parse::<f64>().map_err(|_| format!("bad number {s:?}")),
    }
}

/// A position in the text of one JSON array of scalars.
struct Cursor<'a> {
    /// The array's contents, without the brackets; `b` is `s` as bytes (one UTF-8 check per
    /// array, not one per number that takes the slow path).
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// Whether an element has been read (a comma is expected before the next one).
    started: bool,
}

impl<'a> Cursor<'a> {
    fn new(raw: &'a [u8]) -> Result<Cursor<'a>, String> {
        let s = raw.trim_ascii();
        match s {
            [b'[', inner @ .., b']'] => {
                let s = std::str::from_utf8(inner).map_err(|e| format!("not utf-8: {e}"))?;
                Ok(Cursor {
                    s,
                    b: s.as_bytes(),
                    i: 0,
                    started: false,
                })
            }
            _ => Err(format!(
                "expected an array, got {:?}",
                String::from_utf8_lossy(&s[..s.len().min(20)])
            )),
        }
    }

    fn skip_ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    /// Moves to the next element and returns its first byte, or `None` at the end.
    #[inline]
    fn next_element(&mut self) -> Result<Option<u8>, String> {
        self.skip_ws();
        if self.i >= self.b.len() {
            return Ok(None);
        }
        if self.started {
            if self.b[self.i] != b',' {
                return Err(format!("expected a comma at byte {}", self.i));
            }
            self.i += 1;
            self.skip_ws();
            if self.i >= self.b.len() {
                return Err("trailing comma".to_string());
            }
        }
        self.started = true;
        match self.b[self.i] {
            b'[' | b'{' => Err("nested value in a bar array".to_string()),
            first => Ok(Some(first)),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), String> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(format!("unexpected token at byte {}", self.i))
        }
    }

    /// A JSON string starting at the cursor, unescaped.
    fn string(&mut self) -> Result<std::borrow::Cow<'a, str>, String> {
        let start = self.i;
        let mut escaped = false;
        self.i += 1;
        while self.i < self.b.len() && self.b[self.i] != b'"' {
            if self.b[self.i] == b'\\' {
                escaped = true;
                self.i += 1;
            }
            self.i += 1;
        }
        if self.i >= self.b.len() {
            return Err("unterminated string".to_string());
        }
        self.i += 1;
        let tok = &self.s[start..self.i];
        if escaped {
            serde_json::from_str::<String>(tok)
                .map(Into::into)
                .map_err(|e| e.to_string())
        } else {
            Ok(tok[1..tok.len() - 1].into())
        }
    }

    /// The number token starting at `start` (digits, sign, point, exponent) as text.
    fn number_token(&mut self, start: usize) -> &'a str {
        let mut i = start;
        while i < self.b.len()
            && matches!(self.b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        {
            i += 1;
        }
        self.i = i;
        // ASCII bytes only, so `start..i` are character boundaries.
        &self.s[start..i]
    }

    /// A JSON number, exactly (see the module doc).
    #[inline]
    fn number(&mut self) -> Result<f64, String> {
        let start = self.i;
        let b = self.b;
        let mut i = start;
        let neg = b[i] == b'-';
        if neg {
            i += 1;
        }
        let mut mantissa: u64 = 0;
        let int_start = i;
        i = accumulate_digits(b, i, &mut mantissa);
        let mut digits = i - int_start;
        if digits == 0 {
            return Err(format!("bad number at byte {start}"));
        }
        let mut decimals = 0;
        if i < b.len() && b[i] == b'.' {
            let frac_start = i + 1;
            i = accumulate_digits(b, frac_start, &mut mantissa);
            decimals = i - frac_start;
            digits += decimals;
        }
        let plain = i >= b.len() || !matches!(b[i], b'e' | b'E');
        // 19 digits cannot overflow a u64; beyond that the mantissa wrapped and is not used.
        if plain && digits <= 19 && mantissa <= 1 << 53 && decimals < POW10.len() {
            self.i = i;
            let v = mantissa as f64 / POW10[decimals];
            return Ok(if neg { -v } else { v });
        }
        let tok = self.number_token(start);
        tok.parse().map_err(|_| format!("bad number {tok}"))
    }

    /// An epoch: an integer, or an integral float such as `1.7e9`; `None` when not integral.
    fn integer(&mut self) -> Result<Option<i64>, String> {
        let start = self.i;
        let tok = self.number_token(start);
        if let Ok(v) = tok.parse::<i64>() {
            return Ok(Some(v));
        }
        let v: f64 = tok.parse().map_err(|_| format!("bad number {tok}"))?;
        Ok((v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15).then_some(v as i64))
    }
}

/// Appends the decimal digits starting at `i` to `mantissa` (wrapping past 19 digits) and
/// returns the index after them. Eight digits at a time where it can (Lemire's SWAR method, as
/// in simdjson and fast_float): a price's 14-digit fraction is two steps instead of fourteen.
#[inline]
fn accumulate_digits(b: &[u8], mut i: usize, mantissa: &mut u64) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let v = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if !eight_digits(v) {
            break;
        }
        *mantissa = mantissa
            .wrapping_mul(100_000_000)
            .wrapping_add(eight_digits_value(v));
        i += 8;
    }
    while i < b.len() && b[i].is_ascii_digit() {
        *mantissa = mantissa.wrapping_mul(10).wrapping_add((b[i] - b'0') as u64);
        i += 1;
    }
    i
}

/// Whether all eight bytes of `v` are ASCII digits.
#[inline]
fn eight_digits(v: u64) -> bool {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    (v & HIGH) | ((v.wrapping_add(0x0606_0606_0606_0606) & HIGH) >> 4) == 0x3333_3333_3333_3333
}

/// The value of eight ASCII digits, the first in the lowest byte.
#[inline]
fn eight_digits_value(v: u64) -> u64 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 0x000F_4240_0000_0064; // 100 + (1_000_000 << 32)
    const MUL2: u64 = 0x0000_2710_0000_0001; // 1 + (10_000 << 32)
    let v = v.wrapping_sub(0x3030_3030_3030_3030);
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let v = (v & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2))
        >> 32;
    v & 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &[u8] {
        s.as_bytes()
    }

    fn numbers(raw: &[u8]) -> Result<Vec<Option<f64>>, String> {
        let mut out = Vec::new();
        let n = each_number(raw, |i, v| {
            assert_eq!(i, out.len());
            out.push(v);
        })?;
        assert_eq!(n, out.len());
        Ok(out)
    }

    fn epochs(raw: &[u8]) -> Result<Vec<Option<i64>>, String> {
        let mut out = Vec::new();
        each_epoch(raw, |_, v| out.push(v))?;
        Ok(out)
    }

    fn bits(v: &[Option<f64>]) -> Vec<Option<u64>> {
        v.iter().map(|x| x.map(f64::to_bits)).collect()
    }

    /// What serde_json (with `float_roundtrip`) reads from the same array.
    fn serde_bits(text: &str) -> Vec<Option<u64>> {
        let v: Vec<Option<f64>> = serde_json::from_str(text).unwrap();
        bits(&v)
    }

    #[test]
    fn numbers_are_read_exactly_with_nulls_and_special_strings() {
        let v = numbers(raw(
            r#"[131, 116.12999725341797,null ,"NaN", "Infinity","-Infinity",-2, 1e3, 225702700, "1.5", "\u004eaN", -0.0]"#,
        ))
        .unwrap();
        assert_eq!(v[0], Some(131.0));
        assert_eq!(v[1].unwrap().to_bits(), 116.12999725341797f64.to_bits());
        assert_eq!(v[2], None);
        assert!(v[3].unwrap().is_nan());
        assert_eq!(v[4], Some(f64::INFINITY));
        assert_eq!(v[5], Some(f64::NEG_INFINITY));
        assert_eq!(
            &v[6..10],
            [Some(-2.0), Some(1000.0), Some(225_702_700.0), Some(1.5)]
        );
        assert!(v[10].unwrap().is_nan());
        assert_eq!(v[11].unwrap().to_bits(), (-0.0f64).to_bits());
        assert_eq!(numbers(raw("[]")).unwrap(), []);
        assert_eq!(numbers(raw(" [ ] ")).unwrap(), []);
    }

    #[test]
    fn anything_but_numbers_nulls_and_number_strings_is_refused() {
        for bad in [
            r#"["abc"]"#,
            "[[1]]",
            "[true]",
            "{}",
            "[{}]",
            "\"x\"",
            "[-]",
            "[1e]",
            "[1,]",
            "[1 2]",
            "[1.2.3]",
            r#"["NaN]"#,
            "[nul]",
        ] {
            assert!(numbers(raw(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_serde_json_on_edge_cases() {
        let text = "[0, 1, 9007199254740992, 9007199254740993, 18446744073709551615, \
                    123456789012345678901234, 0.1, 0.3, 1.7976931348623157e308, 5e-324, \
                    2.2250738585072014e-308, 0.000000000000000000001, 1234567890.1234567, \
                    99999999999999999999.5, -1.5e-7, 1E2, 129.0399932861328, 0.10000000000000001]";
        assert_eq!(bits(&numbers(raw(text)).unwrap()), serde_bits(text));
    }

    #[test]
    fn fixture_values_are_read_bit_for_bit_as_serde_json_reads_them() {
        for text in [
            include_str!("../../../tests/fixtures/yahoo/AAPL_1m_2024-10-02.json"),
            include_str!("../../../tests/fixtures/yahoo/NVDA_1d_2021-02-01_2022-01-31_split.json"),
            include_str!("../../../tests/fixtures/yahoo/TSLA_30m_2021-11-22_prepost.json"),
        ] {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            let r = &v["chart"]["result"][0];
            let q = &r["indicators"]["quote"][0];
            for field in ["open", "high", "low", "close", "volume"] {
                let array = q[field].to_string();
                assert_eq!(
                    bits(&numbers(raw(&array)).unwrap()),
                    serde_bits(&array),
                    "{field}"
                );
            }
            let ts = r["timestamp"].to_string();
            let want: Vec<Option<i64>> = serde_json::from_str(&ts).unwrap();
            assert_eq!(epochs(raw(&ts)).unwrap(), want);
        }
    }

    #[test]
    fn random_prices_as_yahoo_sends_them_are_read_bit_for_bit() {
        // f32 prices widened to f64 and printed shortest-round-trip, plus plain decimals.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut text = String::from("[");
        for i in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let cents = x % 10_000_000;
            let v = if i % 2 == 0 {
                (cents as f64 / 100.0) as f32 as f64
            } else {
                cents as f64 / 1000.0
            };
            if i > 0 {
                text.push(',');
            }
            text.push_str(&v.to_string());
        }
        text.push(']');
        assert_eq!(bits(&numbers(raw(&text)).unwrap()), serde_bits(&text));
    }

    #[test]
    fn eight_digits_at_a_time_matches_one_at_a_time() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let text = format!("{:08}", x % 100_000_000);
            let v = u64::from_le_bytes(text.as_bytes().try_into().unwrap());
            assert!(eight_digits(v), "{text}");
            assert_eq!(
                eight_digits_value(v),
                text.parse::<u64>().unwrap(),
                "{text}"
            );
        }
        for not_digits in [
            "1234567.", "/2345678", "1234567:", "12 45678", "-1234567", "1234e678",
        ] {
            let v = u64::from_le_bytes(not_digits.as_bytes().try_into().unwrap());
            assert!(!eight_digits(v), "{not_digits}");
        }
        // Bytes past 0x7F never pass for digits.
        assert!(!eight_digits(u64::from_le_bytes([
            0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0xFA
        ])));
    }

    #[test]
    fn epochs_accept_integers_integral_floats_and_strings() {
        let e = epochs(raw(r#"[1739998801, -252322200, 1.7e9, "42", null, 1.5]"#)).unwrap();
        assert_eq!(
            e,
            [
                Some(1_739_998_801),
                Some(-252_322_200),
                Some(1_700_000_000),
                Some(42),
                None,
                None
            ]
        );
        assert!(epochs(raw("[true]")).is_err());
    }
}
