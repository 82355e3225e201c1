//! Incremental update and full re-fetch of the universe's series (DESIGN §5).
//!
//! **Update**: one batched latest-bar query for every selected series, then for each series a
//! fetch from its latest bar — moved back by `history.revision_window_sessions` sessions of
//! its market's calendar, so vendor corrections of the last sessions replace what is stored —
//! to now. A series with nothing stored starts at its universe entry's `start`, or
//! `history.default_start_years` back. What the source answers is upserted: an empty or
//! shorter answer never deletes a stored bar.
//!
//! **Full**: every selected series from its start to now, whatever is stored.

use super::MaintainEnv;
use super::ctx::JobCtx;
use super::fetch::{FetchCounters, Plan, fetch_plans};
use super::universe::{Maintained, Selection};
use crate::domain::{Calendar, Interval, SeriesKey, TimeRange, time};

/// Which of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Update,
    Full,
}

/// Runs an update or a full re-fetch of the selection.
pub async fn run(
    env: &MaintainEnv,
    selection: &Selection,
    mode: Mode,
    ctx: &JobCtx,
) -> (FetchCounters, Vec<String>) {
    let targets = selection.resolve(&env.universe);
    let plans = match plan(env, targets, mode).await {
        Ok(p) => p,
        Err(e) => return (FetchCounters::default(), vec![e]),
    };
    fetch_plans(env, plans, ctx).await
}

/// The fetch plan of each target.
pub async fn plan(
    env: &MaintainEnv,
    targets: Vec<Maintained>,
    mode: Mode,
) -> Result<Vec<Plan>, String> {
    let now = env.clock.now();
    let latest = match mode {
        Mode::Full => Default::default(),
        Mode::Update => {
            let keys: Vec<SeriesKey> = targets.iter().map(|t| t.series.clone()).collect();
            env.writer
                .primary()
                .latest(&keys)
                .await
                .map_err(|e| format!("latest stored bars: {e}"))?
        }
    };
    let default_start = now - i64::from(env.history.default_start_years) * 36_525 * 864;
    let mut plans = Vec::with_capacity(targets.len());
    for t in targets {
        let start = match latest.get(&t.series) {
            Some(bar) => revision_start(&t, bar.ts, env.history.revision_window_sessions),
            None => t.start.unwrap_or(default_start),
        };
        let Ok(range) = TimeRange::new(start, now + 1) else {
            continue;
        };
        plans.push(Plan {
            target: t,
            ranges: vec![range],
        });
    }
    Ok(plans)
}

/// Where an update of a series whose newest stored bar is at `latest` starts: the start of
/// the session `sessions` sessions before the latest bar's (so the last `sessions` stored
/// sessions are fetched again), by the market's calendar; by whole days without a market.
pub fn revision_start(t: &Maintained, latest: i64, sessions: u32) -> i64 {
    let interval = t.series.interval;
    let Some(market) = t.market else {
        return latest - i64::from(sessions) * 86_400;
    };
    let cal = Calendar::standard(market);
    // The session the latest bar belongs to.
    let mut date = if interval.is_intraday() {
        match cal.session_of(latest) {
            Some(s) => s.date,
            None => time::local_date(latest, cal.timezone()),
        }
    } else {
        time::date_of(latest)
    };
    for _ in 0..sessions {
        match cal.previous_session(date) {
            Some(s) => date = s.date,
            None => break,
        }
    }
    let start = match interval {
        i if i.is_intraday() => cal
            .session(date)
            .map(|s| s.open)
            .unwrap_or_else(|| time::date_ts(date)),
        Interval::W1 | Interval::Mo1 => interval.period_start(date),
        _ => time::date_ts(date),
    };
    start.min(latest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Market, SourceKind, Symbol};

    fn target(symbol: &str, interval: Interval) -> Maintained {
        let symbol = Symbol::parse(symbol).unwrap();
        Maintained {
            market: symbol.market(),
            series: SeriesKey::new(symbol, interval),
            source: SourceKind::Yahoo,
            futu_code: None,
            start: None,
        }
    }

    #[test]
    fn the_revision_window_counts_sessions_not_days() {
        let d = |s: &str| time::parse_instant(s).unwrap();
        // Latest AAPL bar on Tuesday 2024-01-02 (Monday 1 Jan is a holiday): three sessions
        // back is Wednesday 2023-12-27.
        let t = target("AAPL", Interval::D1);
        assert_eq!(revision_start(&t, d("2024-01-02"), 3), d("2023-12-27"));
        assert_eq!(revision_start(&t, d("2024-01-02"), 0), d("2024-01-02"));
        // Intraday: from the open of that session, 09:30 New York.
        let t = target("AAPL", Interval::M5);
        assert_eq!(
            revision_start(&t, d("2024-01-02T20:55:00Z"), 3),
            d("2023-12-27T14:30:00Z")
        );
        // HK: 1 and 2 Jan... 2024-01-02 is a session; one back is Friday 2023-12-29.
        let t = target("0700.HK", Interval::D1);
        assert_eq!(t.market, Some(Market::Hk));
        assert_eq!(revision_start(&t, d("2024-01-02"), 1), d("2023-12-29"));
    }
}
