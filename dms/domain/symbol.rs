//! `Symbol`: the canonical, Yahoo-style ticker, and `SeriesKey`, a symbol with an interval.

use std::fmt;
use std::sync::Arc;

use super::{Interval, Market};

/// Longest symbol DESIGN §1 allows (1 leading character + 31 more).
const MAX_LEN: usize = 32;

/// Why a string is not a valid symbol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    #[error("symbol is empty")]
    Empty,
    #[error("symbol {0:?} is longer than 32 characters")]
    TooLong(String),
    #[error("symbol {0:?} has a character outside [A-Za-z0-9.-=^_] (or starts with one of .-=_)")]
    BadCharacter(String),
    #[error("futu code {0:?} is not of the form MARKET.CODE (HK, US, SH, SZ)")]
    BadFutuCode(String),
}

/// A ticker such as `AAPL`, `0700.HK`, `600519.SS`, `BTC-USD`, `EURUSD=X`, `^GSPC`.
///
/// Cheap to clone (an `Arc<str>`). [`Symbol::parse`] enforces the DESIGN §1 pattern
/// `^[A-Za-z0-9^][A-Za-z0-9.\-=^_]{0,31}$` and is what every boundary (API, CLI, config, files)
/// uses. [`Symbol::opaque`] wraps any text without that check: stores must round-trip *any*
/// string safely (a symbol can never change a query), so their tests and the values they read
/// back use it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(Arc<str>);

impl Symbol {
    /// Parses a symbol at a trust boundary.
    pub fn parse(s: &str) -> Result<Symbol, SymbolError> {
        if s.is_empty() {
            return Err(SymbolError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(SymbolError::TooLong(s.to_string()));
        }
        let bytes = s.as_bytes();
        let first_ok = bytes[0].is_ascii_alphanumeric() || bytes[0] == b'^';
        let rest_ok = bytes[1..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'=' | b'^' | b'_'));
        if !first_ok || !rest_ok {
            return Err(SymbolError::BadCharacter(s.to_string()));
        }
        Ok(Symbol(Arc::from(s)))
    }

    /// Wraps text that did not come through a trust boundary check (values read back from a
    /// store, store robustness tests). Stores treat it as opaque bytes and escape it.
    pub fn opaque(s: &str) -> Symbol {
        Symbol(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The market derived from the suffix (DESIGN §1); `None` when the suffix names an exchange
    /// DMS has no calendar for (e.g. `.DE`), in which case the universe entry must set `market`.
    pub fn market(&self) -> Option<Market> {
        let s = self.as_str();
        if let Some((_, suffix)) = s.rsplit_once('.') {
            return match suffix.to_ascii_uppercase().as_str() {
                "HK" => Some(Market::Hk),
                "SS" => Some(Market::Sh),
                "SZ" => Some(Market::Sz),
                // `BRK.B`-style US class shares: a one-letter suffix is a share class.
                x if x.len() == 1 => Some(Market::Us),
                _ => None,
            };
        }
        if s.ends_with("=X") {
            return Some(Market::Fx);
        }
        if s.ends_with("-USD") || s.ends_with("-USDT") {
            return Some(Market::Crypto);
        }
        Some(Market::Us)
    }

    /// The Futu OpenD code by rule: `0700.HK` → `HK.00700`, `AAPL` → `US.AAPL`,
    /// `600519.SS` → `SH.600519`, `000001.SZ` → `SZ.000001`. `None` for markets Futu does not
    /// serve under these rules (a universe entry can still set `futu_code`).
    pub fn futu_code(&self) -> Option<String> {
        let s = self.as_str();
        match self.market()? {
            Market::Hk => {
                let code = s.rsplit_once('.')?.0;
                Some(format!("HK.{code:0>5}"))
            }
            Market::Sh => Some(format!("SH.{}", s.rsplit_once('.')?.0)),
            Market::Sz => Some(format!("SZ.{}", s.rsplit_once('.')?.0)),
            Market::Us if !s.starts_with('^') && !s.contains('=') => Some(format!("US.{s}")),
            _ => None,
        }
    }

    /// The inverse of [`Symbol::futu_code`]: `HK.00700` → `0700.HK`.
    pub fn from_futu_code(code: &str) -> Result<Symbol, SymbolError> {
        let bad = || SymbolError::BadFutuCode(code.to_string());
        let (market, rest) = code.split_once('.').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        let canonical = match market {
            "HK" => {
                // Yahoo writes HK codes with 4 digits at least: 00700 → 0700, 09988 → 9988.
                let trimmed = rest.trim_start_matches('0');
                format!("{trimmed:0>4}.HK")
            }
            "US" => rest.to_string(),
            "SH" => format!("{rest}.SS"),
            "SZ" => format!("{rest}.SZ"),
            _ => return Err(bad()),
        };
        Symbol::parse(&canonical)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl serde::Serialize for Symbol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Symbol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Symbol::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A series: one symbol at one interval. The unit of storage, gaps, caching and locking.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub symbol: Symbol,
    pub interval: Interval,
}

impl SeriesKey {
    pub fn new(symbol: Symbol, interval: Interval) -> SeriesKey {
        SeriesKey { symbol, interval }
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.symbol, self.interval)
    }
}

impl fmt::Debug for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_design_examples() {
        for s in [
            "AAPL",
            "0700.HK",
            "600519.SS",
            "000001.SZ",
            "BTC-USD",
            "EURUSD=X",
            "^GSPC",
            "GC=F",
        ] {
            assert!(Symbol::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn rejects_what_the_pattern_forbids() {
        for s in [
            "",
            ".AAPL",
            "-X",
            "A B",
            "A'B",
            "X,y=z",
            "A/B",
            "ÄPPLE",
            &"A".repeat(33),
        ] {
            assert!(Symbol::parse(s).is_err(), "{s:?}");
        }
        assert!(Symbol::parse(&"A".repeat(32)).is_ok());
    }

    #[test]
    fn derives_markets_from_suffixes() {
        let m = |s: &str| Symbol::parse(s).unwrap().market();
        assert_eq!(m("AAPL"), Some(Market::Us));
        assert_eq!(m("^GSPC"), Some(Market::Us));
        assert_eq!(m("0700.HK"), Some(Market::Hk));
        assert_eq!(m("600519.SS"), Some(Market::Sh));
        assert_eq!(m("000001.SZ"), Some(Market::Sz));
        assert_eq!(m("BTC-USD"), Some(Market::Crypto));
        assert_eq!(m("EURUSD=X"), Some(Market::Fx));
        assert_eq!(m("BRK.B"), Some(Market::Us));
        assert_eq!(m("WSU.DE"), None);
    }

    #[test]
    fn maps_futu_codes_both_ways() {
        let cases = [
            ("0700.HK", "HK.00700"),
            ("9988.HK", "HK.09988"),
            ("AAPL", "US.AAPL"),
            ("600519.SS", "SH.600519"),
            ("000001.SZ", "SZ.000001"),
        ];
        for (sym, code) in cases {
            let s = Symbol::parse(sym).unwrap();
            assert_eq!(s.futu_code().as_deref(), Some(code));
            assert_eq!(Symbol::from_futu_code(code).unwrap(), s);
        }
        assert_eq!(Symbol::parse("BTC-USD").unwrap().futu_code(), None);
        assert!(Symbol::from_futu_code("XX.1").is_err());
        assert!(Symbol::from_futu_code("HK").is_err());
    }
}
