//! Incremental update and full re-fetch of the universe's series (DESIGN §5).
//!
//! **Update**: one gap scan for every selected series (one batched latest-bar query and the
//! coverage summaries, [`super::scan::GapScanner::plan`]), then for each series a fetch of
//! every interior gap (a hole inside the stored range; sessions a source confirmed empty are
//! not gaps) and of the head: from its latest bar — moved back by
//! `history.revision_window_sessions` sessions of its market's calendar, so vendor
//! corrections of the last sessions replace what is stored — to now. Interior gaps older than
//! what the series' source serves (Yahoo's intraday windows) are left out and logged. A series with nothing stored starts at its universe entry's `start`, or
//! `history.default_start_years` back. What the source answers is upserted: an empty or
//! shorter answer never deletes a stored bar.
//!
//! **Full**: every selected series from its start to now, whatever is stored.

use std::collections::{HashMap, HashSet};

use super::MaintainEnv;
use super::ctx::JobCtx;
use super::fetch::{FetchCounters, Plan, fetch_plans};
use super::gaps::Gap;
use super::universe::{Maintained, Selection};
use crate::domain::{Calendar, Interval, SeriesKey, TimeRange, time};
use crate::source::FetchRequest;

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
    let planned = match plan(env, targets, mode).await {
        Ok(p) => p,
        Err(e) => return (FetchCounters::default(), vec![e]),
    };
    if planned.interior_ranges > 0 || planned.refused_ranges > 0 {
        ctx.log(
            "info",
            &format!(
                "{} interior gap ranges to fill ({} sessions){}",
                planned.interior_ranges,
                planned.interior_sessions,
                if planned.refused_ranges > 0 {
                    format!(
                        "; {} more lie outside what their source serves and stay gaps",
                        planned.refused_ranges
                    )
                } else {
                    String::new()
                }
            ),
        )
        .await;
    }
    fetch_plans(env, planned.plans, ctx).await
}

/// What [`plan`] decided.
#[derive(Debug, Default)]
pub struct Planned {
    pub plans: Vec<Plan>,
    /// Interior gap ranges added to the plans (after merging neighbours).
    pub interior_ranges: u64,
    /// Missing sessions inside them.
    pub interior_sessions: u64,
    /// Interior gap ranges left out because their source refuses them (older than Yahoo's
    /// intraday windows): fetching them would only fail the series.
    pub refused_ranges: u64,
}

/// The fetch plan of each target. **Update**: the gap scan ([`GapScanner::plan`]: one
/// batched latest query, then the coverage summaries — no bar is read) gives each series'
/// newest bar and interior gaps; the plan fetches the interior gaps (neighbours merged) and
/// the head from the revision window's start to now. **Full**: the whole history.
///
/// [`GapScanner::plan`]: super::scan::GapScanner::plan
pub async fn plan(
    env: &MaintainEnv,
    targets: Vec<Maintained>,
    mode: Mode,
) -> Result<Planned, String> {
    let now = env.clock.now();
    let mut scanned = match mode {
        Mode::Full => Scanned::default(),
        Mode::Update => scan(env, &targets, now).await?,
    };
    let default_start = now - i64::from(env.history.default_start_years) * 36_525 * 864;
    let mut out = Planned::default();
    for t in targets {
        let start = match scanned.latest.get(&t.series) {
            Some(&ts) => revision_start(&t, ts, env.history.revision_window_sessions),
            None => t.start.unwrap_or(default_start),
        };
        let mut ranges = Vec::new();
        let head = TimeRange::new(start, now + 1).ok();
        let interior = scanned.interior.remove(&t.series).unwrap_or_default();
        for (range, sessions) in merge_gaps(t.series.interval, interior) {
            // Inside the head already.
            if head.is_some_and(|h| range.start() >= h.start()) {
                continue;
            }
            let refused = env.sources.get(&t.source).is_some_and(|s| {
                s.check(&FetchRequest {
                    series: t.series.clone(),
                    range,
                    market: t.market,
                    futu_code: t.futu_code.clone(),
                    now,
                })
                .is_err()
            });
            if refused {
                out.refused_ranges += 1;
                continue;
            }
            out.interior_ranges += 1;
            out.interior_sessions += u64::from(sessions);
            ranges.push(range);
        }
        ranges.extend(head);
        if ranges.is_empty() {
            continue;
        }
        out.plans.push(Plan { target: t, ranges });
    }
    Ok(out)
}

/// What the gap scan says of the targets.
#[derive(Default)]
struct Scanned {
    latest: HashMap<SeriesKey, i64>,
    interior: HashMap<SeriesKey, Vec<Gap>>,
}

async fn scan(env: &MaintainEnv, targets: &[Maintained], now: i64) -> Result<Scanned, String> {
    let keys: Vec<SeriesKey> = targets.iter().map(|t| t.series.clone()).collect();
    let plans = env
        .gaps
        .plan(&keys, now)
        .await
        .map_err(|e| format!("gap scan: {e}"))?;
    let mut out = Scanned::default();
    let mut seen: HashSet<SeriesKey> = HashSet::with_capacity(plans.len());
    for p in plans {
        seen.insert(p.series.clone());
        if let Some(l) = p.latest {
            out.latest.insert(p.series.clone(), l);
        }
        if !p.interior.is_empty() {
            out.interior.insert(p.series, p.interior);
        }
    }
    // The scan leaves out series whose market has no calendar: their newest bar alone.
    let rest: Vec<SeriesKey> = keys.into_iter().filter(|k| !seen.contains(k)).collect();
    if !rest.is_empty() {
        let latest = env
            .writer
            .primary()
            .latest(&rest)
            .await
            .map_err(|e| format!("latest stored bars: {e}"))?;
        out.latest
            .extend(latest.into_iter().map(|(k, b)| (k, b.ts)));
    }
    Ok(out)
}

/// Interior gaps as fetch ranges, in time order, with their sessions: gaps closer than
/// [`merge_distance`] are fetched as one range (the stored bars between are written again,
/// harmlessly — writes are upserts), so a series with many small holes costs few requests.
fn merge_gaps(interval: Interval, mut gaps: Vec<Gap>) -> Vec<(TimeRange, u32)> {
    gaps.sort_by_key(|g| g.range.start());
    let near = merge_distance(interval);
    let mut out: Vec<(TimeRange, u32)> = Vec::new();
    for g in gaps {
        match out.last_mut() {
            Some((r, n)) if g.range.start() - r.end() <= near => {
                if let Ok(joined) = TimeRange::new(r.start(), r.end().max(g.range.end())) {
                    *r = joined;
                    *n += g.sessions;
                }
            }
            _ => out.push((g.range, g.sessions)),
        }
    }
    out
}

/// How far apart two gaps may be and still be fetched as one range: a day of intraday bars,
/// a month of daily ones, a year of weekly or monthly ones.
fn merge_distance(interval: Interval) -> i64 {
    match interval {
        i if i.is_intraday() => 86_400,
        Interval::D1 => 31 * 86_400,
        _ => 366 * 86_400,
    }
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
    fn interior_gaps_close_together_are_fetched_as_one_range() {
        let d = |s: &str| time::parse_instant(s).unwrap();
        let g = |a: &str, b: &str, sessions: u32| Gap {
            range: TimeRange::new(d(a), d(b)).unwrap(),
            sessions,
        };
        let r = |a: &str, b: &str| TimeRange::new(d(a), d(b)).unwrap();
        // Daily: gaps within a month of each other are one range; out of order in, in order out.
        let merged = merge_gaps(
            Interval::D1,
            vec![
                g("2024-03-04", "2024-03-05", 1),
                g("2024-01-08", "2024-01-10", 2),
                g("2024-01-15", "2024-01-16", 1),
            ],
        );
        assert_eq!(
            merged,
            [
                (r("2024-01-08", "2024-01-16"), 3),
                (r("2024-03-04", "2024-03-05"), 1)
            ]
        );
        // Intraday: within a day only.
        let merged = merge_gaps(
            Interval::M5,
            vec![
                g("2024-01-08T15:00:00Z", "2024-01-08T16:00:00Z", 1),
                g("2024-01-08T19:00:00Z", "2024-01-08T19:05:00Z", 1),
                g("2024-01-10T15:00:00Z", "2024-01-10T15:05:00Z", 1),
            ],
        );
        assert_eq!(
            merged,
            [
                (r("2024-01-08T15:00:00Z", "2024-01-08T19:05:00Z"), 2),
                (r("2024-01-10T15:00:00Z", "2024-01-10T15:05:00Z"), 1)
            ]
        );
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
