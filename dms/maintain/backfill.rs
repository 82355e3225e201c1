//! Backfill: fetch a given range of some symbols (DESIGN §3 `dms backfill`), any symbol, not
//! only the universe's: each symbol takes its universe entry's source, market and Futu code
//! when it has one, else Yahoo and the market of its suffix.

use serde::{Deserialize, Serialize};

use super::MaintainEnv;
use super::ctx::JobCtx;
use super::fetch::{FetchCounters, Plan, fetch_plans};
use super::universe::Maintained;
use crate::domain::{Interval, SeriesKey, SourceKind, Symbol, TimeRange, time};

/// What to backfill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillParams {
    pub symbols: Vec<Symbol>,
    pub interval: Interval,
    pub start: i64,
    /// Exclusive; "now" when absent.
    pub end: Option<i64>,
    /// Overrides each symbol's universe source (default: the universe entry's, else Yahoo).
    pub source: Option<SourceKind>,
}

impl BackfillParams {
    /// The range asked, ending no later than `now` (inclusive of `now`'s second).
    pub fn range(&self, now: i64) -> Option<TimeRange> {
        let end = self.end.unwrap_or(now + 1).min(now + 1);
        TimeRange::new(self.start, end).ok()
    }

    /// What each symbol is fetched with.
    pub fn targets(&self, env: &MaintainEnv) -> Vec<Maintained> {
        self.symbols
            .iter()
            .map(|s| {
                let mut t = match env.universe.get(s) {
                    Some(e) => Maintained::of(&e, self.interval),
                    None => Maintained {
                        series: SeriesKey::new(s.clone(), self.interval),
                        source: SourceKind::Yahoo,
                        market: s.market(),
                        futu_code: None,
                        start: None,
                    },
                };
                if let Some(src) = self.source {
                    t.source = src;
                }
                t
            })
            .collect()
    }
}

/// Runs a backfill; returns the counters and one error line per failed series.
pub async fn run(
    env: &MaintainEnv,
    params: &BackfillParams,
    ctx: &JobCtx,
) -> (FetchCounters, Vec<String>) {
    let Some(range) = params.range(env.clock.now()) else {
        return (
            FetchCounters::default(),
            vec!["backfill: the range ends before it starts".into()],
        );
    };
    let plans = params
        .targets(env)
        .into_iter()
        .map(|target| Plan {
            target,
            ranges: vec![range],
        })
        .collect();
    fetch_plans(env, plans, ctx).await
}

/// Parses the user-facing parameters of a backfill (API body or CLI flags).
pub fn parse_params(
    symbols: &[String],
    interval: Option<&str>,
    start: Option<&str>,
    end: Option<&str>,
    source: Option<&str>,
) -> Result<BackfillParams, String> {
    let syms = super::task::parse_symbol_list(symbols)?;
    if syms.is_empty() {
        return Err("symbols: at least one symbol is required".into());
    }
    let interval: Interval = interval.ok_or("interval: required")?.parse()?;
    let start = time::parse_instant(start.ok_or("start: required for a backfill")?)
        .map_err(|e| format!("start: {e}"))?;
    let end = end
        .map(time::parse_instant)
        .transpose()
        .map_err(|e| format!("end: {e}"))?;
    if let Some(e) = end
        && e <= start
    {
        return Err(format!(
            "end {} is not after start {}",
            time::rfc3339(e),
            time::rfc3339(start)
        ));
    }
    let source = source.map(str::parse::<SourceKind>).transpose()?;
    if source == Some(SourceKind::Unknown) {
        return Err("source: expected yahoo, futu or files".into());
    }
    Ok(BackfillParams {
        symbols: syms,
        interval,
        start,
        end,
        source,
    })
}
