//! InfluxQL text: quoting of string literals and identifiers, and time conditions. Every value
//! that reaches a query goes through [`string`] or [`ident`], so a symbol can never change a
//! query (DESIGN §6); the escapes are those of InfluxQL's own `QuoteString`/`QuoteIdent`.
//!
//! Times are written as integer nanoseconds, clamped to the span InfluxDB can store
//! (`[MinInt64 + 2, MaxInt64 - 1]` ns, about 1677–2262), so that `TimeRange::ALL` and other
//! wide ranges become valid conditions instead of errors.

use std::fmt::Write as _;

use crate::domain::TimeRange;

/// The earliest instant InfluxDB stores, in nanoseconds.
const MIN_NS: i64 = i64::MIN + 2;
/// The latest instant InfluxDB stores, in nanoseconds.
const MAX_NS: i64 = i64::MAX - 1;
const NS: i64 = 1_000_000_000;
/// The earliest whole second InfluxDB stores.
const MIN_S: i64 = MIN_NS / NS;
/// The latest whole second InfluxDB stores.
const MAX_S: i64 = MAX_NS / NS;

/// `value` as an InfluxQL string literal: `'…'` with `\` → `\\`, `'` → `\'`, newline → `\n`.
pub fn string(value: &str) -> String {
    quote(value, '\'')
}

/// `name` as a quoted InfluxQL identifier: `"…"` with `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn ident(name: &str) -> String {
    quote(name, '"')
}

fn quote(value: &str, q: char) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push(q);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// `time >= … AND time < …` for the half-open `range`, or `None` when no instant InfluxDB can
/// store lies in it (nothing can match, so there is no need to ask).
pub fn time_condition(range: TimeRange) -> Option<String> {
    if range.start() > MAX_S || range.end() <= MIN_S {
        return None;
    }
    let mut out = String::with_capacity(48);
    if range.start() <= MIN_S {
        let _ = write!(out, "time >= {MIN_NS}");
    } else {
        let _ = write!(out, "time >= {}", range.start() * NS);
    }
    if range.end() > MAX_S {
        let _ = write!(out, " AND time <= {MAX_NS}");
    } else {
        let _ = write!(out, " AND time < {}", range.end() * NS);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// InfluxQL's string scanner (`ScanString`): reads a literal and returns its value and the
    /// rest of the query, or `None` where InfluxDB reports a bad string or bad escape.
    fn scan_string(q: &str) -> Option<(String, &str)> {
        let quote = q.chars().next()?;
        let mut out = String::new();
        let mut chars = q.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => return Some((out, &q[i + 1..])),
                '\n' => return None,
                '\\' => match chars.next()?.1 {
                    'n' => out.push('\n'),
                    '\\' => out.push('\\'),
                    '\'' => out.push('\''),
                    '"' => out.push('"'),
                    _ => return None,
                },
                c => out.push(c),
            }
        }
        None
    }

    const NASTY: &[&str] = &[
        "A' OR '1'='1",
        "x'; DROP MEASUREMENT bars --",
        "x' OR symbol='VICTIM",
        "a\\b\"c",
        "ends with \\",
        "\\'",
        "\\\\'; DROP DATABASE x; --",
        "multi\nline'",
        "\"quoted\"",
        "tab\there",
        "日本株.T",
        "",
    ];

    #[test]
    fn string_literals_hold_any_value_and_end_where_they_should() {
        for v in NASTY {
            let q = format!("{} AND interval = '1d'", string(v));
            let (value, rest) = scan_string(&q).unwrap_or_else(|| panic!("{q}"));
            assert_eq!(value, *v);
            assert_eq!(rest, " AND interval = '1d'");
        }
        assert_eq!(string("A' OR '1'='1"), r"'A\' OR \'1\'=\'1'");
        assert_eq!(string("a\\b"), r"'a\\b'");
        assert_eq!(string("x\ny"), r"'x\ny'");
    }

    #[test]
    fn identifiers_hold_any_name() {
        for v in NASTY {
            let q = format!("{} WITH SHARD DURATION 52w", ident(v));
            let (value, rest) = scan_string(&q).unwrap_or_else(|| panic!("{q}"));
            assert_eq!(value, *v);
            assert_eq!(rest, " WITH SHARD DURATION 52w");
        }
        assert_eq!(ident("my\"db"), r#""my\"db""#);
    }

    #[test]
    fn time_conditions_are_half_open_and_clamped() {
        let r = TimeRange::new(1_704_153_600, 1_704_240_000).unwrap();
        assert_eq!(
            time_condition(r).unwrap(),
            "time >= 1704153600000000000 AND time < 1704240000000000000"
        );
        assert_eq!(
            time_condition(TimeRange::ALL).unwrap(),
            "time >= -9223372036854775806 AND time <= 9223372036854775806"
        );
        let before_1970 = TimeRange::new(-86_400, 0).unwrap();
        assert_eq!(
            time_condition(before_1970).unwrap(),
            "time >= -86400000000000 AND time < 0"
        );
        // The last storable second is still covered, the first unstorable one is not.
        let edge = TimeRange::new(MAX_S, MAX_S + 1).unwrap();
        assert_eq!(
            time_condition(edge).unwrap(),
            "time >= 9223372036000000000 AND time <= 9223372036854775806"
        );
        assert!(time_condition(TimeRange::new(MAX_S + 1, MAX_S + 2).unwrap()).is_none());
        assert!(time_condition(TimeRange::new(i64::MIN / 4, MIN_S).unwrap()).is_none());
        assert!(time_condition(TimeRange::new(i64::MIN / 4, MIN_S + 1).unwrap()).is_some());
    }
}
