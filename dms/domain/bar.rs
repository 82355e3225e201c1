//! `Bar`: one OHLCV bar, with the checked constructor every accepted bar goes through.

use std::fmt;
use std::str::FromStr;

/// Where a bar came from. Stored with every bar (`source` field in InfluxDB, a byte in the
/// embedded store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum SourceKind {
    #[default]
    Unknown = 0,
    Yahoo = 1,
    Futu = 2,
    Files = 3,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Unknown => "unknown",
            SourceKind::Yahoo => "yahoo",
            SourceKind::Futu => "futu",
            SourceKind::Files => "files",
        }
    }

    pub fn from_u8(b: u8) -> SourceKind {
        match b {
            1 => SourceKind::Yahoo,
            2 => SourceKind::Futu,
            3 => SourceKind::Files,
            _ => SourceKind::Unknown,
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<SourceKind, String> {
        match s {
            "yahoo" => Ok(SourceKind::Yahoo),
            "futu" => Ok(SourceKind::Futu),
            "files" => Ok(SourceKind::Files),
            "unknown" => Ok(SourceKind::Unknown),
            _ => Err(format!(
                "unknown source {s:?} (expected yahoo, futu or files)"
            )),
        }
    }
}

impl serde::Serialize for SourceKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for SourceKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a bar's values are impossible. Each variant is one validation rule; [`BarError::rule`]
/// is the stable name stored with quarantined bars and used as the `rule` metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BarError {
    #[error("{field} is not a finite number ({value})")]
    NonFinite { field: &'static str, value: f64 },
    #[error("{field} is not positive ({value})")]
    NonPositivePrice { field: &'static str, value: f64 },
    #[error("high {high} is below max(open, close) {max}")]
    HighTooLow { high: f64, max: f64 },
    #[error("low {low} is above min(open, close) {min}")]
    LowTooHigh { low: f64, min: f64 },
    #[error("volume is negative ({0})")]
    NegativeVolume(f64),
}

impl BarError {
    pub fn rule(&self) -> &'static str {
        match self {
            BarError::NonFinite { .. } => "non_finite",
            BarError::NonPositivePrice { .. } => "non_positive_price",
            BarError::HighTooLow { .. } => "high_below_open_close",
            BarError::LowTooHigh { .. } => "low_above_open_close",
            BarError::NegativeVolume(_) => "negative_volume",
        }
    }
}

/// One bar. `ts` is UTC epoch seconds: the start instant for intraday bars, 00:00 UTC of the
/// session date for daily and longer bars (DESIGN §1). Prices are kept exactly as the source
/// sent them. `adj_close` is present only where the source gives it.
///
/// The fields are public so that readers and encoders can use bars directly; a bar only reaches
/// a store inside a `ValidatedBatch`, which checks every bar with [`Bar::check`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub adj_close: Option<f64>,
    pub source: SourceKind,
}

impl Bar {
    /// Builds a bar, refusing impossible values.
    #[allow(clippy::too_many_arguments)]
    pub fn new_checked(
        ts: i64,
        open: f64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
        adj_close: Option<f64>,
        source: SourceKind,
    ) -> Result<Bar, BarError> {
        let bar = Bar {
            ts,
            open,
            high,
            low,
            close,
            volume,
            adj_close,
            source,
        };
        bar.check()?;
        Ok(bar)
    }

    /// The value rules: finite positive prices, `high ≥ max(open, close)`,
    /// `low ≤ min(open, close)`, finite `volume ≥ 0`, finite positive `adj_close` when present.
    pub fn check(&self) -> Result<(), BarError> {
        let prices = [
            ("open", self.open),
            ("high", self.high),
            ("low", self.low),
            ("close", self.close),
            ("adj_close", self.adj_close.unwrap_or(1.0)),
        ];
        for (field, value) in prices {
            if !value.is_finite() {
                return Err(BarError::NonFinite { field, value });
            }
            if value <= 0.0 {
                return Err(BarError::NonPositivePrice { field, value });
            }
        }
        if !self.volume.is_finite() {
            return Err(BarError::NonFinite {
                field: "volume",
                value: self.volume,
            });
        }
        if self.volume < 0.0 {
            return Err(BarError::NegativeVolume(self.volume));
        }
        let max = self.open.max(self.close);
        if self.high < max {
            return Err(BarError::HighTooLow {
                high: self.high,
                max,
            });
        }
        let min = self.open.min(self.close);
        if self.low > min {
            return Err(BarError::LowTooHigh { low: self.low, min });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(o: f64, h: f64, l: f64, c: f64, v: f64) -> Result<Bar, BarError> {
        Bar::new_checked(0, o, h, l, c, v, None, SourceKind::Files)
    }

    #[test]
    fn accepts_consistent_bars() {
        assert!(bar(10.0, 11.0, 9.0, 10.5, 0.0).is_ok());
        assert!(bar(10.0, 10.0, 10.0, 10.0, 1.0).is_ok());
    }

    #[test]
    fn names_the_rule_each_bad_bar_breaks() {
        let rule = |r: Result<Bar, BarError>| r.unwrap_err().rule();
        assert_eq!(rule(bar(f64::NAN, 11.0, 9.0, 10.0, 1.0)), "non_finite");
        assert_eq!(rule(bar(10.0, f64::INFINITY, 9.0, 10.0, 1.0)), "non_finite");
        assert_eq!(rule(bar(10.0, 11.0, 0.0, 10.0, 1.0)), "non_positive_price");
        assert_eq!(rule(bar(-1.0, 11.0, 9.0, 10.0, 1.0)), "non_positive_price");
        assert_eq!(
            rule(bar(10.0, 10.5, 9.0, 11.0, 1.0)),
            "high_below_open_close"
        );
        assert_eq!(rule(bar(10.0, 11.0, 9.5, 9.0, 1.0)), "low_above_open_close");
        assert_eq!(rule(bar(10.0, 11.0, 9.0, 10.0, -1.0)), "negative_volume");
        assert_eq!(rule(bar(10.0, 11.0, 9.0, 10.0, f64::NAN)), "non_finite");
        let adj = Bar::new_checked(0, 1.0, 1.0, 1.0, 1.0, 0.0, Some(0.0), SourceKind::Yahoo);
        assert_eq!(adj.unwrap_err().rule(), "non_positive_price");
    }
}
