//! Corporate actions: dividends, splits and capital gains, stored per symbol.

use std::fmt;
use std::str::FromStr;

use super::SourceKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    Dividend,
    Split,
    CapitalGain,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Dividend => "dividend",
            ActionKind::Split => "split",
            ActionKind::CapitalGain => "capital_gain",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionKind {
    type Err = String;

    fn from_str(s: &str) -> Result<ActionKind, String> {
        match s {
            "dividend" => Ok(ActionKind::Dividend),
            "split" => Ok(ActionKind::Split),
            "capital_gain" => Ok(ActionKind::CapitalGain),
            _ => Err(format!("unknown corporate action kind {s:?}")),
        }
    }
}

impl serde::Serialize for ActionKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ActionKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        [
            ActionKind::Dividend,
            ActionKind::Split,
            ActionKind::CapitalGain,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown action kind {s:?}")))
    }
}

/// One corporate action. `ts` is 00:00 UTC of the exchange-local ex-date (the same rule as daily
/// bars). Dividends and capital gains carry `amount` per share; splits carry
/// `numerator:denominator` (4:1 means one old share became four), with `amount` = the ratio.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CorporateAction {
    pub ts: i64,
    pub kind: ActionKind,
    pub amount: f64,
    pub numerator: Option<f64>,
    pub denominator: Option<f64>,
    pub source: SourceKind,
}

impl CorporateAction {
    pub fn dividend(ts: i64, amount: f64, source: SourceKind) -> CorporateAction {
        CorporateAction {
            ts,
            kind: ActionKind::Dividend,
            amount,
            numerator: None,
            denominator: None,
            source,
        }
    }

    pub fn capital_gain(ts: i64, amount: f64, source: SourceKind) -> CorporateAction {
        CorporateAction {
            kind: ActionKind::CapitalGain,
            ..CorporateAction::dividend(ts, amount, source)
        }
    }

    pub fn split(ts: i64, numerator: f64, denominator: f64, source: SourceKind) -> CorporateAction {
        CorporateAction {
            ts,
            kind: ActionKind::Split,
            amount: numerator / denominator,
            numerator: Some(numerator),
            denominator: Some(denominator),
            source,
        }
    }
}
