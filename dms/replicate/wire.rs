//! The JSON shapes DMS instances exchange: a peer pushed through `POST
//! /api/v1/replication/apply`, a replica pulling `GET /api/v1/replication/changes`, and the
//! reads `verify` and a pull make of another DMS (`/api/v1/replication/{bars,actions,digests,
//! series}`). Both ends are this crate, so the shapes are defined once, here.
//!
//! Bars travel columnar (`{"ts":[..],"open":[..],...}`), every field including `adj_close` and
//! `source`; floats round-trip exactly (`serde_json` with `float_roundtrip`). Timestamps are
//! epoch seconds. What arrives is checked before it reaches a store: equal column lengths,
//! [`Bar::check`], timestamps inside the validation span.

use serde::{Deserialize, Serialize};

use crate::domain::{ActionKind, Bar, CorporateAction, Interval, SeriesKey, SourceKind, Symbol};
use crate::store::RangeDigest;
use crate::store::meta::{Change, ChangeKind};
use crate::validate::{TS_MAX, TS_MIN};

/// Longest symbol accepted from another instance (stores treat symbols as opaque text).
const MAX_SYMBOL_BYTES: usize = 256;

/// Why a received payload is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

/// A symbol as another instance sent it: any non-empty text of at most 256 bytes (the primary
/// may hold symbols the API pattern would refuse, and stores escape them anyway).
pub fn symbol(s: &str) -> Result<Symbol, WireError> {
    if s.is_empty() || s.len() > MAX_SYMBOL_BYTES {
        return Err(WireError(format!(
            "symbol must be 1 to {MAX_SYMBOL_BYTES} bytes, got {}",
            s.len()
        )));
    }
    Ok(Symbol::opaque(s))
}

/// Bars of one series, columnar.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WireBars {
    pub ts: Vec<i64>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
    pub adj_close: Vec<Option<f64>>,
    #[schema(value_type = Vec<String>)]
    pub source: Vec<SourceKind>,
}

impl WireBars {
    pub fn from_bars(bars: &[Bar]) -> WireBars {
        let mut w = WireBars::default();
        for b in bars {
            w.ts.push(b.ts);
            w.open.push(b.open);
            w.high.push(b.high);
            w.low.push(b.low);
            w.close.push(b.close);
            w.volume.push(b.volume);
            w.adj_close.push(b.adj_close);
            w.source.push(b.source);
        }
        w
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The bars, each checked ([`Bar::check`] and the validation span).
    pub fn into_bars(self) -> Result<Vec<Bar>, WireError> {
        let n = self.ts.len();
        let lens = [
            self.open.len(),
            self.high.len(),
            self.low.len(),
            self.close.len(),
            self.volume.len(),
            self.adj_close.len(),
            self.source.len(),
        ];
        if lens.iter().any(|&l| l != n) {
            return Err(WireError(format!(
                "bars: columns differ in length (ts has {n}, others {lens:?})"
            )));
        }
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let b = Bar {
                ts: self.ts[i],
                open: self.open[i],
                high: self.high[i],
                low: self.low[i],
                close: self.close[i],
                volume: self.volume[i],
                adj_close: self.adj_close[i],
                source: self.source[i],
            };
            if !(TS_MIN..TS_MAX).contains(&b.ts) {
                return Err(WireError(format!(
                    "bar {i}: timestamp {} is outside 1900-01-01..2100-01-01",
                    b.ts
                )));
            }
            b.check()
                .map_err(|e| WireError(format!("bar {i} at {}: {e}", b.ts)))?;
            out.push(b);
        }
        Ok(out)
    }
}

/// One corporate action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WireAction {
    pub ts: i64,
    /// `dividend`, `split` or `capital_gain`.
    pub kind: String,
    pub amount: f64,
    #[serde(default)]
    pub numerator: Option<f64>,
    #[serde(default)]
    pub denominator: Option<f64>,
    #[schema(value_type = String)]
    pub source: SourceKind,
}

impl WireAction {
    pub fn from_action(a: &CorporateAction) -> WireAction {
        WireAction {
            ts: a.ts,
            kind: a.kind.as_str().to_string(),
            amount: a.amount,
            numerator: a.numerator,
            denominator: a.denominator,
            source: a.source,
        }
    }

    pub fn into_action(self) -> Result<CorporateAction, WireError> {
        let kind: ActionKind = self.kind.parse().map_err(WireError)?;
        let finite = |v: f64| v.is_finite();
        if !(TS_MIN..TS_MAX).contains(&self.ts)
            || !finite(self.amount)
            || !self.numerator.is_none_or(finite)
            || !self.denominator.is_none_or(finite)
        {
            return Err(WireError(format!(
                "action {kind} at {}: timestamp outside 1900..2100 or a non-finite value",
                self.ts
            )));
        }
        Ok(CorporateAction {
            ts: self.ts,
            kind,
            amount: self.amount,
            numerator: self.numerator,
            denominator: self.denominator,
            source: self.source,
        })
    }
}

pub fn actions_from_wire(actions: Vec<WireAction>) -> Result<Vec<CorporateAction>, WireError> {
    actions.into_iter().map(WireAction::into_action).collect()
}

/// One change a peer applies (`POST /api/v1/replication/apply`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum ApplyOp {
    /// Upsert these bars.
    Bars {
        symbol: String,
        #[schema(value_type = String)]
        interval: Interval,
        bars: WireBars,
    },
    /// Remove the bars in `[start, end)`.
    Delete {
        symbol: String,
        #[schema(value_type = String)]
        interval: Interval,
        start: i64,
        end: i64,
    },
    /// Upsert corporate actions.
    Actions {
        symbol: String,
        actions: Vec<WireAction>,
    },
}

/// The body of `POST /api/v1/replication/apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    pub ops: Vec<ApplyOp>,
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyReport {
    pub ops: u64,
    pub bars_written: u64,
    pub bars_deleted: u64,
    pub actions_written: u64,
}

/// A change-log entry as `GET /api/v1/replication/changes` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireChange {
    pub seq: u64,
    pub kind: ChangeKind,
    pub symbol: String,
    pub interval: Option<Interval>,
    pub start: i64,
    pub end: i64,
    pub count: u64,
    pub uncertain: bool,
    pub created_at: i64,
}

impl From<&Change> for WireChange {
    fn from(c: &Change) -> WireChange {
        WireChange {
            seq: c.seq,
            kind: c.kind,
            symbol: c.symbol.to_string(),
            interval: c.interval,
            start: c.start,
            end: c.end,
            count: c.count,
            uncertain: c.uncertain,
            created_at: c.created_at,
        }
    }
}

/// Bars of one series to bring a replica's range `[start, end)` to what the primary holds
/// now. `replace`: the range must end *equal* (bars the primary no longer has there are
/// removed), because a change in it was a deletion or may have landed in part; otherwise an
/// upsert suffices. `bars` is absent when the range holds more than the page could carry: the
/// replica then reads it through `/api/v1/replication/bars` (and digests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireUnit {
    pub symbol: String,
    pub interval: Interval,
    pub start: i64,
    pub end: i64,
    pub replace: bool,
    pub bars: Option<WireBars>,
}

/// Corporate actions of a symbol in `[start, end)`, as the primary holds them now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireActionsUnit {
    pub symbol: String,
    pub start: i64,
    pub end: i64,
    pub actions: Vec<WireAction>,
}

/// A page of `GET /api/v1/replication/changes`: the settled changes after `since` (in
/// order, up to `limit`, never past a pending one), coalesced into `units` and `actions` with
/// the data the primary holds for them *now*. Applying every unit and action brings the
/// replica to `next`, the sequence to ask from next time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangesPage {
    pub since: u64,
    pub next: u64,
    /// The primary's newest sequence number (pending ones included): the replica's lag.
    pub last_seq: u64,
    pub changes: Vec<WireChange>,
    pub units: Vec<WireUnit>,
    pub actions: Vec<WireActionsUnit>,
}

/// `GET /api/v1/replication/digests`: per range, or per bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestsAnswer {
    #[serde(default)]
    pub digests: Vec<RangeDigest>,
    #[serde(default)]
    pub buckets: Vec<(i64, RangeDigest)>,
}

/// One series, as `GET /api/v1/replication/series` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireSeries {
    pub symbol: String,
    pub interval: Interval,
}

impl WireSeries {
    pub fn key(&self) -> Result<SeriesKey, WireError> {
        Ok(SeriesKey::new(symbol(&self.symbol)?, self.interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: i64, c: f64) -> Bar {
        Bar {
            ts,
            open: c,
            high: c * 1.5,
            low: c * 0.5,
            close: c,
            volume: 1e9 / 3.0,
            adj_close: (ts % 2 == 0).then_some(c * 0.1 + 1e-17),
            source: SourceKind::Yahoo,
        }
    }

    #[test]
    fn bars_round_trip_bit_for_bit_through_json() {
        let bars: Vec<Bar> = (0..50).map(|i| bar(i * 60, 0.1 + i as f64 / 7.0)).collect();
        let text = serde_json::to_string(&WireBars::from_bars(&bars)).unwrap();
        let back: WireBars = serde_json::from_str(&text).unwrap();
        assert_eq!(back.into_bars().unwrap(), bars);
    }

    #[test]
    fn impossible_bars_and_ragged_columns_are_refused() {
        let mut w = WireBars::from_bars(&[bar(0, 1.0)]);
        w.high[0] = 0.1;
        assert!(w.clone().into_bars().unwrap_err().0.contains("bar 0"));
        w.close.push(1.0);
        assert!(w.into_bars().unwrap_err().0.contains("length"));
        let mut w = WireBars::from_bars(&[bar(0, 1.0)]);
        w.ts[0] = TS_MAX;
        assert!(w.into_bars().is_err());
        assert!(symbol("").is_err());
        assert!(symbol(&"A".repeat(300)).is_err());
    }

    #[test]
    fn apply_ops_are_tagged_by_op() {
        let req: ApplyRequest = serde_json::from_str(
            r#"{"ops":[{"op":"delete","symbol":"AAPL","interval":"1d","start":0,"end":86400}]}"#,
        )
        .unwrap();
        assert!(matches!(&req.ops[0], ApplyOp::Delete { end: 86400, .. }));
    }
}
