//! Repair: fetch again the ranges of quarantined bars of the selected series (DESIGN §4
//! `repair`). A bar the vendor sent broken is often fixed by the next answer; the session
//! around each quarantined bar is fetched through the normal path, so what is good now is
//! stored and what is still broken is quarantined again (and stays visible in
//! `/api/v1/quality`). The most recent 10,000 records of the selection are considered.

use std::collections::BTreeMap;

use super::MaintainEnv;
use super::ctx::JobCtx;
use super::fetch::{FetchCounters, Plan, fetch_plans};
use super::universe::Selection;
use crate::domain::{Calendar, SeriesKey, TimeRange, time};

/// Quality records considered per repair.
const MAX_RECORDS: usize = 10_000;

pub async fn run(
    env: &MaintainEnv,
    selection: &Selection,
    ctx: &JobCtx,
) -> (FetchCounters, Vec<String>) {
    let targets = selection.resolve(&env.universe);
    let symbols = targets.iter().map(|t| t.series.symbol.clone()).collect();
    let records = match env
        .writer
        .meta()
        .quality(Some(symbols), None, MAX_RECORDS)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return (
                FetchCounters::default(),
                vec![format!("quality records: {e}")],
            );
        }
    };
    let mut ranges: BTreeMap<SeriesKey, Vec<TimeRange>> = BTreeMap::new();
    for r in &records {
        let series = SeriesKey::new(r.symbol.clone(), r.interval);
        let Some(t) = targets.iter().find(|t| t.series == series) else {
            continue;
        };
        let range = around(t.market.map(Calendar::standard), &series, r.ts);
        ranges.entry(series).or_default().extend(range);
    }
    let plans: Vec<Plan> = targets
        .into_iter()
        .filter_map(|t| {
            let rs = merge(ranges.remove(&t.series)?);
            Some(Plan {
                target: t,
                ranges: rs,
            })
        })
        .collect();
    ctx.log(
        "info",
        &format!(
            "{} quarantined bars in {} series to fetch again",
            records.len(),
            plans.len()
        ),
    )
    .await;
    fetch_plans(env, plans, ctx).await
}

/// What to fetch again for a quarantined bar at `ts`: its session (intraday), or its
/// period (daily and longer).
fn around(cal: Option<&Calendar>, series: &SeriesKey, ts: i64) -> Option<TimeRange> {
    let i = series.interval;
    if i.is_intraday() {
        if let Some(s) = cal.and_then(|c| c.session_of(ts)) {
            return TimeRange::new(s.open, s.close).ok();
        }
        return TimeRange::new(ts, ts + i.nominal_secs()).ok();
    }
    let start = i.period_start(time::date_of(ts));
    let end = match i {
        crate::domain::Interval::D1 => start + 86_400,
        crate::domain::Interval::W1 => start + 7 * 86_400,
        _ => start + 31 * 86_400,
    };
    TimeRange::new(start, end).ok()
}

/// Sorted, overlapping or touching ranges joined.
fn merge(mut rs: Vec<TimeRange>) -> Vec<TimeRange> {
    rs.sort_by_key(|r| r.start());
    let mut out: Vec<TimeRange> = Vec::new();
    for r in rs {
        match out.last_mut() {
            Some(last) if r.start() <= last.end() => {
                if let Ok(j) = TimeRange::new(last.start(), last.end().max(r.end())) {
                    *last = j;
                }
            }
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Interval, Market, Symbol};

    #[test]
    fn a_quarantined_bar_is_fetched_again_with_its_session_or_period() {
        let d = |s: &str| time::parse_instant(s).unwrap();
        let k = SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::M5);
        let cal = Calendar::standard(Market::Us);
        assert_eq!(
            around(Some(cal), &k, d("2024-01-03T15:00:00Z")),
            TimeRange::new(d("2024-01-03T14:30:00Z"), d("2024-01-03T21:00:00Z")).ok()
        );
        let k = SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::D1);
        assert_eq!(
            around(Some(cal), &k, d("2024-01-03")),
            TimeRange::new(d("2024-01-03"), d("2024-01-04")).ok()
        );
        let r = |a: i64, b: i64| TimeRange::new(a, b).unwrap();
        assert_eq!(
            merge(vec![r(5, 9), r(0, 3), r(3, 4), r(8, 12)]),
            [r(0, 4), r(5, 12)]
        );
    }
}
