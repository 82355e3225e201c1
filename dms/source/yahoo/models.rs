//! Wire types of the v8 chart API, as lenient as the recorded responses require. They never
//! leave `source/yahoo/`: [`super::parse`] turns them into domain bars and actions.
//!
//! Leniency, each from a real response (see `../shared/research/yahoo.md` §1.3):
//! - every `meta` field is optional and unknown fields are ignored; epoch fields accept JSON
//!   integers, floats and numeric strings, and anything else reads as absent rather than failing
//!   the whole response (the meta field set has changed over the years);
//! - quote values accept integers (`"high":[131,…]`), floats, `null`, and the strings
//!   `"NaN"`, `"Infinity"`, `"-Infinity"`;
//! - `timestamp` may be missing and `quote` may be `[{}]` (an empty range);
//! - `tradingPeriods` comes as a list of days, as `{pre, regular, post}`, or as
//!   `{"pre":[],"post":[]}`; a shape we do not know is ignored, never fatal;
//! - `events` maps are keyed by epoch strings; the entry's `date` is the real event time.
//!
//! The bar arrays (`timestamp`, `indicators.quote[0].*`, `adjclose`) have no wire type:
//! they are nearly all of a response's bytes, so [`super::skeleton`] finds them and
//! [`super::arrays`] reads them in one pass. These types are for the small parts, parsed by
//! `serde_json` with `float_roundtrip`.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// `{"code":"Not Found","description":"No data found, symbol may be delisted"}`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ChartError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// The few meta fields DMS uses. `gmtoffset`/`timezone` are deliberately absent: they describe
/// the exchange at fetch time, not the bars.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Meta {
    #[serde(default)]
    pub exchange_timezone_name: Option<Lenient<String>>,
    #[serde(default)]
    pub regular_market_time: Option<Epoch>,
    #[serde(default)]
    pub regular_market_price: Option<Num>,
    #[serde(default)]
    pub data_granularity: Option<Lenient<String>>,
    #[serde(default)]
    pub current_trading_period: Option<Lenient<CurrentTradingPeriod>>,
    #[serde(default)]
    pub trading_periods: Option<Lenient<TradingPeriods>>,
}

/// Today's pre, regular and post windows.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CurrentTradingPeriod {
    #[serde(default)]
    pub regular: Option<Lenient<Period>>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(super) struct Period {
    #[serde(default)]
    pub start: Option<Epoch>,
    #[serde(default)]
    pub end: Option<Epoch>,
}

/// `tradingPeriods` in its three shapes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum TradingPeriods {
    /// `[[{start,end,…}], …]`: regular sessions only (`includePrePost=false`). Parsed to
    /// recognise the shape; nothing is dropped by it.
    Days(#[allow(dead_code)] Vec<Vec<Period>>),
    /// `{"pre":[[…]],"regular":[[…]],"post":[[…]]}` (extended hours were sent), or
    /// `{"pre":[],"post":[]}` for an empty range.
    Split {
        #[serde(default)]
        pre: Vec<Vec<Period>>,
        #[serde(default)]
        post: Vec<Vec<Period>>,
    },
}

/// Corporate actions, keyed by an epoch string: for multi-period intervals the key is the start
/// of the bar holding the event and `date` is the event itself.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Events {
    #[serde(default)]
    pub dividends: Option<HashMap<String, CashEvent>>,
    #[serde(default)]
    pub splits: Option<HashMap<String, SplitEvent>>,
    #[serde(default)]
    pub capital_gains: Option<HashMap<String, CashEvent>>,
}

/// A dividend or a capital gain.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CashEvent {
    #[serde(default)]
    pub amount: Option<Num>,
    #[serde(default)]
    pub date: Option<Epoch>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct SplitEvent {
    #[serde(default)]
    pub date: Option<Epoch>,
    #[serde(default)]
    pub numerator: Option<Num>,
    #[serde(default)]
    pub denominator: Option<Num>,
}

/// A quote value: `None` for JSON `null`, otherwise the number exactly as sent. The strings
/// `"NaN"`, `"Infinity"` and `"-Infinity"` become those `f64`s, so that validation quarantines
/// the bar instead of the parser guessing a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Num(pub Option<f64>);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

struct NumVisitor;

impl<'de> Visitor<'de> for NumVisitor {
    type Value = Num;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, null, or \"NaN\"/\"Infinity\"")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
        Ok(Num(Some(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
        Ok(Num(Some(v as f64)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
        Ok(Num(Some(v as f64)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Num, E> {
        Ok(Num(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Num, E> {
        Ok(Num(None))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
        match v.trim() {
            "NaN" | "nan" => Ok(Num(Some(f64::NAN))),
            "Infinity" | "+Infinity" | "inf" => Ok(Num(Some(f64::INFINITY))),
            "-Infinity" | "-inf" => Ok(Num(Some(f64::NEG_INFINITY))),
            s => s
                .parse::<f64>()
                .map(|x| Num(Some(x)))
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

/// An epoch-seconds field: JSON integers, integral floats and numeric strings are accepted;
/// `null` and anything else read as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Epoch(pub Option<i64>);

impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Epoch, D::Error> {
        d.deserialize_any(EpochVisitor)
    }
}

struct EpochVisitor;

impl<'de> Visitor<'de> for EpochVisitor {
    type Value = Epoch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("epoch seconds")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Epoch, E> {
        Ok(Epoch(Some(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Epoch, E> {
        Ok(Epoch(i64::try_from(v).ok()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Epoch, E> {
        let ok = v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15;
        Ok(Epoch(ok.then_some(v as i64)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Epoch, E> {
        Ok(Epoch(v.trim().parse().ok()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Epoch, E> {
        Ok(Epoch(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Epoch, E> {
        Ok(Epoch(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Epoch, E> {
        Ok(Epoch(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Epoch, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Epoch(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Epoch, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Epoch(None))
    }
}

/// A metadata value we use but do not depend on: if it has an unexpected shape it reads as
/// absent instead of failing the response. Buffers the value, so it is kept to the small `meta`
/// object, never the bar arrays.
#[derive(Debug)]
pub(super) struct Lenient<T>(pub Option<T>);

impl<T> Lenient<T> {
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lenient<T>, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(Lenient(serde_json::from_value(v).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_accept_ints_floats_nulls_and_special_strings() {
        let v: Vec<Num> = serde_json::from_str(
            r#"[131, 116.12999725341797, null, "NaN", "Infinity", "-Infinity", -2]"#,
        )
        .unwrap();
        assert_eq!(v[0], Num(Some(131.0)));
        assert_eq!(v[1].0.unwrap().to_bits(), 116.12999725341797f64.to_bits());
        assert_eq!(v[2], Num(None));
        assert!(v[3].0.unwrap().is_nan());
        assert_eq!(v[4], Num(Some(f64::INFINITY)));
        assert_eq!(v[5], Num(Some(f64::NEG_INFINITY)));
        assert_eq!(v[6], Num(Some(-2.0)));
        assert!(serde_json::from_str::<Vec<Num>>(r#"["abc"]"#).is_err());
        assert!(serde_json::from_str::<Vec<Num>>(r#"[{}]"#).is_err());
    }

    #[test]
    fn epochs_are_lenient() {
        let v: Vec<Epoch> =
            serde_json::from_str(r#"[1739998801, -252322200, 1.7e9, "42", null, 1.5, {}, []]"#)
                .unwrap();
        let got: Vec<_> = v.iter().map(|e| e.0).collect();
        assert_eq!(
            got,
            [
                Some(1_739_998_801),
                Some(-252_322_200),
                Some(1_700_000_000),
                Some(42),
                None,
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn trading_periods_come_in_three_shapes_and_unknown_ones_are_ignored() {
        let days: Lenient<TradingPeriods> = serde_json::from_str(
            r#"[[{"timezone":"EDT","end":1727812800,"start":1727789400,"gmtoffset":-14400}]]"#,
        )
        .unwrap();
        assert!(matches!(days.get(), Some(TradingPeriods::Days(d)) if d.len() == 1));
        let split: Lenient<TradingPeriods> = serde_json::from_str(
            r#"{"pre":[[{"start":1,"end":2}]],"post":[[{"start":5,"end":6}]],"regular":[[{"start":2,"end":5}]]}"#,
        )
        .unwrap();
        assert!(
            matches!(split.get(), Some(TradingPeriods::Split { pre, post }) if pre.len() == 1 && post.len() == 1)
        );
        let empty: Lenient<TradingPeriods> =
            serde_json::from_str(r#"{"pre":[],"post":[]}"#).unwrap();
        assert!(matches!(empty.get(), Some(TradingPeriods::Split { pre, .. }) if pre.is_empty()));
        let odd: Lenient<TradingPeriods> = serde_json::from_str(r#""nonsense""#).unwrap();
        assert!(odd.get().is_none());
    }

    #[test]
    fn meta_fields_of_an_unexpected_shape_read_as_absent() {
        let m: Meta = serde_json::from_str(
            r#"{"currentTradingPeriod":null,"exchangeTimezoneName":5,"regularMarketTime":"x",
                "dataGranularity":"1d","tradingPeriods":"nonsense","unknown":{"a":[1]}}"#,
        )
        .unwrap();
        assert!(m.current_trading_period.is_none());
        assert!(m.exchange_timezone_name.unwrap().get().is_none());
        assert_eq!(m.regular_market_time, Some(Epoch(None)));
        assert_eq!(
            m.data_granularity.unwrap().get().map(String::as_str),
            Some("1d")
        );
        assert!(m.trading_periods.unwrap().get().is_none());
    }
}
