//! Line protocol: how bars and corporate actions are written to InfluxDB (DESIGN §6), and the
//! escaping of the values DMS does not control (symbols, string fields).
//!
//! ```text
//! bars,symbol=AAPL,interval=1d open=185.5,high=186.75,low=183.25,close=185.64,volume=82488700.0,adj_close=184.9,source="yahoo" 1704153600
//! bars,symbol=AAPL,interval=1m open=185.5,high=186.75,low=183.25,close=185.64,volume=1200.0,adj_close=0.0,source="yahoo" 1704153600
//! actions,symbol=AAPL,kind=split amount=4.0,numerator=4.0,denominator=1.0,source="yahoo" 1598832000
//! actions,symbol=AAPL,kind=dividend amount=0.24,numerator=0.0,denominator=0.0,source="yahoo" 1598832000
//! ```
//!
//! **Every line carries every field** of its measurement. InfluxDB merges a rewrite of a point
//! (same measurement, tags and time) into the stored one field by field, so a line that left
//! out a field would keep the stored value of it; a line with all of them replaces the point in
//! one write, with nothing deleted first, so a concurrent reader never finds the point missing.
//! (It may find it half-replaced: InfluxDB reads each field through its own cursor, so a point
//! read while it is overwritten can show some fields of each write; seen on 1.6.7.)
//!
//! An absent optional value is written as `0.0` ([`ABSENT`]): stored prices and split ratios
//! are positive, so 0 is free to mean "none" (the checksum of [`crate::store::RangeSummary`]
//! hashes an absent `adj_close` as 0 too), and reading maps both 0 and a missing field (points
//! written before this rule) to `None`. A present value that is not positive could not be told
//! from an absent one and is refused.
//!
//! Timestamps are whole seconds (`precision=s`). Floats are written with `ryu`, the shortest
//! text that parses back to the same `f64`, so values come back bit-identical.
//!
//! Tag values are escaped the way InfluxDB 1.x reads them: a backslash before `,`, `=` and
//! space. Its parser treats any one of those three as escaped when the byte before it is a
//! backslash, and unescaping only removes the backslash in front of them, so a literal
//! backslash needs no escaping and `a\,b` round-trips as `a\\,b`. What no escaping can carry
//! is refused with [`LineError`] before anything is sent: an empty value, a trailing backslash
//! (it would escape the separator after it), and line feed, carriage return and NUL (they end
//! the line, or cannot appear in an InfluxQL string literal, so the series could never be
//! read back).

use crate::domain::{Bar, CorporateAction};

/// Measurement of bars.
pub const BARS: &str = "bars";
/// Measurement of corporate actions.
pub const ACTIONS: &str = "actions";

/// Why a value cannot be written as line protocol.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {value:?} contains {ch:?}, which influxdb cannot store in a tag")]
    BadCharacter {
        what: &'static str,
        value: String,
        ch: char,
    },
    #[error("{what} {value:?} ends with a backslash, which influxdb cannot store in a tag")]
    TrailingBackslash { what: &'static str, value: String },
    #[error("{field} is not a finite number ({value})")]
    NonFinite { field: &'static str, value: f64 },
    #[error("{field} is {value}, but a stored {field} must be positive")]
    NotPositive { field: &'static str, value: f64 },
}

/// How an absent optional field (`adj_close`, a split's `numerator` and `denominator`) is
/// written and what reads back as `None` (see the module docs).
pub const ABSENT: f64 = 0.0;

/// Checks that `value` can be a tag value (see the module docs); `what` names it in the error.
pub fn check_tag_value(what: &'static str, value: &str) -> Result<(), LineError> {
    if value.is_empty() {
        return Err(LineError::Empty { what });
    }
    if let Some(ch) = value.chars().find(|c| matches!(c, '\n' | '\r' | '\0')) {
        return Err(LineError::BadCharacter {
            what,
            value: value.to_string(),
            ch,
        });
    }
    if value.ends_with('\\') {
        return Err(LineError::TrailingBackslash {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Appends `value` escaped as a tag value. The caller has checked it with [`check_tag_value`].
pub fn push_tag_value(out: &mut Vec<u8>, value: &str) {
    for &b in value.as_bytes() {
        if matches!(b, b',' | b'=' | b' ') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Appends `value` as a quoted string field value (`"` and `\` escaped).
pub fn push_string_field(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    for &b in value.as_bytes() {
        if matches!(b, b'"' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Appends `,name=value` (or `name=value` when `first`) with the shortest exact text of `value`.
fn push_float_field(
    out: &mut Vec<u8>,
    first: bool,
    name: &'static str,
    value: f64,
) -> Result<(), LineError> {
    if !value.is_finite() {
        return Err(LineError::NonFinite { field: name, value });
    }
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    Ok(())
}

/// Appends ` <ts>\n`.
fn push_timestamp(out: &mut Vec<u8>, ts: i64) {
    out.push(b' ');
    let mut digits = [0u8; 20];
    let mut n = ts.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if ts < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
    out.push(b'\n');
}

/// `bars,symbol=…,interval=… `: the part of a bar's line shared by a whole series (tags in
/// the order DESIGN §6 gives, symbol first, which InfluxDB 3 uses as the sort order).
pub fn bars_prefix(symbol: &str, interval: &str) -> Result<Vec<u8>, LineError> {
    prefix(BARS, symbol, "interval", interval)
}

/// `measurement,symbol=…,key=value `, checking the symbol.
fn prefix(measurement: &str, symbol: &str, key: &str, value: &str) -> Result<Vec<u8>, LineError> {
    check_tag_value("symbol", symbol)?;
    let mut p = Vec::with_capacity(measurement.len() + symbol.len() + key.len() + value.len() + 12);
    p.extend_from_slice(measurement.as_bytes());
    p.extend_from_slice(b",symbol=");
    push_tag_value(&mut p, symbol);
    p.push(b',');
    p.extend_from_slice(key.as_bytes());
    p.push(b'=');
    push_tag_value(&mut p, value);
    p.push(b' ');
    Ok(p)
}

/// An optional positive value as written: [`ABSENT`] for `None`.
fn optional(field: &'static str, value: Option<f64>) -> Result<f64, LineError> {
    match value {
        None => Ok(ABSENT),
        // Non-finite values are refused by `push_float_field`.
        Some(v) if v <= 0.0 => Err(LineError::NotPositive { field, value: v }),
        Some(v) => Ok(v),
    }
}

/// Appends one bar's line after `prefix` (from [`bars_prefix`]), with every field (an absent
/// `adj_close` as [`ABSENT`]).
pub fn push_bar(out: &mut Vec<u8>, prefix: &[u8], bar: &Bar) -> Result<(), LineError> {
    let start = out.len();
    out.extend_from_slice(prefix);
    let result = optional("adj_close", bar.adj_close).and_then(|adj| {
        let fields = [
            ("open", bar.open),
            ("high", bar.high),
            ("low", bar.low),
            ("close", bar.close),
            ("volume", bar.volume),
            ("adj_close", adj),
        ];
        fields
            .into_iter()
            .enumerate()
            .try_for_each(|(i, (name, value))| push_float_field(out, i == 0, name, value))
    });
    if let Err(e) = result {
        out.truncate(start);
        return Err(e);
    }
    out.extend_from_slice(b",source=");
    push_string_field(out, bar.source.as_str());
    push_timestamp(out, bar.ts);
    Ok(())
}

/// `actions,symbol=…,kind=… `: the part of an action's line shared by one symbol and kind.
pub fn actions_prefix(symbol: &str, kind: &str) -> Result<Vec<u8>, LineError> {
    prefix(ACTIONS, symbol, "kind", kind)
}

/// Appends one corporate action's line after `prefix` (from [`actions_prefix`]), with every
/// field (absent split ratios as [`ABSENT`]).
pub fn push_action(
    out: &mut Vec<u8>,
    prefix: &[u8],
    action: &CorporateAction,
) -> Result<(), LineError> {
    let start = out.len();
    out.extend_from_slice(prefix);
    let result = (|| {
        let numerator = optional("numerator", action.numerator)?;
        let denominator = optional("denominator", action.denominator)?;
        push_float_field(out, true, "amount", action.amount)?;
        push_float_field(out, false, "numerator", numerator)?;
        push_float_field(out, false, "denominator", denominator)
    })();
    if let Err(e) = result {
        out.truncate(start);
        return Err(e);
    }
    out.extend_from_slice(b",source=");
    push_string_field(out, action.source.as_str());
    push_timestamp(out, action.ts);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SourceKind;

    fn tag(v: &str) -> String {
        let mut out = Vec::new();
        push_tag_value(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    /// What InfluxDB 1.x does with a tag value: the scanner ends it at a `,` or space not
    /// preceded by a backslash (and refuses a bare `=`); unescaping removes the backslash of
    /// `\,`, `\=` and `\ `. Used to check the escaper against the reader it must satisfy.
    fn influx_reads_tag(escaped: &str) -> Option<String> {
        let b = escaped.as_bytes();
        for i in 0..b.len() {
            let escaped_here = i > 0 && b[i - 1] == b'\\';
            if matches!(b[i], b',' | b' ' | b'=') && !escaped_here {
                return None;
            }
        }
        let mut s = escaped.to_string();
        for c in [",", "=", " "] {
            s = s.replace(&format!("\\{c}"), c);
        }
        Some(s)
    }

    #[test]
    fn tag_values_escape_separators_and_nothing_else() {
        assert_eq!(tag("AAPL"), "AAPL");
        assert_eq!(tag("X,y=z w"), r"X\,y\=z\ w");
        assert_eq!(tag("A' OR '1'='1"), r"A'\ OR\ '1'\='1");
        assert_eq!(tag(r#"a\b"c"#), r#"a\b"c"#);
        assert_eq!(tag(r"a\,b"), r"a\\,b");
        assert_eq!(tag("日本株.T"), "日本株.T");
    }

    #[test]
    fn adversarial_tag_values_survive_influx_unescaping() {
        let cases = [
            "A' OR '1'='1",
            "x'; DROP MEASUREMENT bars --",
            "X,y=z w",
            r#"a\b"c"#,
            r"a\,b",
            r"a\\,b",
            r"a\ b",
            r"a\=b",
            r"\\x",
            " lead and trail ",
            "tab\there",
            "=X",
            ",",
            "  ",
            "🚀-USD",
            "\"quoted\"",
        ];
        for v in cases {
            check_tag_value("symbol", v).unwrap();
            assert_eq!(influx_reads_tag(&tag(v)).as_deref(), Some(v), "{v:?}");
        }
    }

    #[test]
    fn tag_values_no_escaping_can_carry_are_refused() {
        for v in ["", "a\nb", "a\rb", "a\0b", "ends\\", "x\\\\", "\n"] {
            assert!(check_tag_value("symbol", v).is_err(), "{v:?}");
        }
        assert_eq!(
            check_tag_value("symbol", "ab\\").unwrap_err().to_string(),
            r#"symbol "ab\\" ends with a backslash, which influxdb cannot store in a tag"#
        );
        assert!(bars_prefix("x\ny", "1d").is_err());
        assert!(actions_prefix("", "split").is_err());
    }

    #[test]
    fn string_fields_escape_quotes_and_backslashes() {
        let mut out = Vec::new();
        push_string_field(&mut out, r#"y"a\b"#);
        assert_eq!(String::from_utf8(out).unwrap(), r#""y\"a\\b""#);
        let mut out = Vec::new();
        push_string_field(&mut out, r#"\""#);
        assert_eq!(String::from_utf8(out).unwrap(), r#""\\\"""#);
    }

    fn bar(adj: Option<f64>) -> Bar {
        Bar {
            ts: 1_704_153_600,
            open: 185.5,
            high: 186.75,
            low: 0.1 + 0.2,
            close: 1e20,
            volume: 82_488_700.0,
            adj_close: adj,
            source: SourceKind::Yahoo,
        }
    }

    #[test]
    fn bars_carry_every_field_with_an_absent_adj_close_as_zero() {
        let prefix = bars_prefix("BRK B", "1d").unwrap();
        let mut out = Vec::new();
        push_bar(&mut out, &prefix, &bar(Some(184.9))).unwrap();
        push_bar(&mut out, &prefix, &bar(None)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "bars,symbol=BRK\\ B,interval=1d open=185.5,high=186.75,low=0.30000000000000004,\
             close=1e20,volume=82488700.0,adj_close=184.9,source=\"yahoo\" 1704153600\n\
             bars,symbol=BRK\\ B,interval=1d open=185.5,high=186.75,low=0.30000000000000004,\
             close=1e20,volume=82488700.0,adj_close=0.0,source=\"yahoo\" 1704153600\n"
        );
    }

    #[test]
    fn floats_are_written_exactly() {
        for v in [
            0.1 + 0.2,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            -0.0,
            123_456_789.123_456_78,
            1.0 / 3.0,
        ] {
            let mut out = Vec::new();
            push_float_field(&mut out, true, "x", v).unwrap();
            let text = String::from_utf8(out).unwrap();
            let parsed: f64 = text.strip_prefix("x=").unwrap().parse().unwrap();
            assert_eq!(parsed.to_bits(), v.to_bits(), "{text}");
        }
    }

    #[test]
    fn a_bad_value_leaves_the_buffer_as_it_was() {
        let prefix = bars_prefix("A", "1d").unwrap();
        let mut out = b"before\n".to_vec();
        let mut b = bar(Some(1.0));
        b.adj_close = Some(f64::NAN);
        assert!(matches!(
            push_bar(&mut out, &prefix, &b),
            Err(LineError::NonFinite {
                field: "adj_close",
                ..
            })
        ));
        assert_eq!(out, b"before\n");
        // A present value that would read back as absent.
        for adj in [0.0, -0.0, -1.0] {
            b.adj_close = Some(adj);
            assert!(matches!(
                push_bar(&mut out, &prefix, &b),
                Err(LineError::NotPositive {
                    field: "adj_close",
                    ..
                })
            ));
        }
        let prefix = actions_prefix("A", "split").unwrap();
        let split = CorporateAction::split(0, 0.0, 1.0, SourceKind::Yahoo);
        assert!(push_action(&mut out, &prefix, &split).is_err());
        assert_eq!(out, b"before\n");
    }

    #[test]
    fn timestamps_before_1970_keep_their_sign() {
        let mut out = Vec::new();
        push_timestamp(&mut out, -1_234_567_890);
        push_timestamp(&mut out, 0);
        push_timestamp(&mut out, i64::MIN);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            " -1234567890\n 0\n -9223372036854775808\n"
        );
    }

    #[test]
    fn actions_carry_every_field_with_absent_ratios_as_zero() {
        let prefix = actions_prefix("AAPL", "split").unwrap();
        let mut out = Vec::new();
        push_action(
            &mut out,
            &prefix,
            &CorporateAction::split(1_704_153_600, 4.0, 1.0, SourceKind::Yahoo),
        )
        .unwrap();
        let prefix = actions_prefix("AAPL", "dividend").unwrap();
        push_action(
            &mut out,
            &prefix,
            &CorporateAction::dividend(1_704_153_600, 0.24, SourceKind::Futu),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "actions,symbol=AAPL,kind=split amount=4.0,numerator=4.0,denominator=1.0,\
             source=\"yahoo\" 1704153600\n\
             actions,symbol=AAPL,kind=dividend amount=0.24,numerator=0.0,denominator=0.0,\
             source=\"futu\" 1704153600\n"
        );
    }
}
