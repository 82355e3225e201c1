//! Request planning: the `period1/period2` requests that answer one [`FetchRequest`], checked
//! against Yahoo's intraday limits **before** anything is sent.
//!
//! | interval    | served for the last | per request |
//! |-------------|---------------------|-------------|
//! | 1m          | 30 days             | 7 days (Yahoo says 8; it said 7 before, and the exact edge is unconfirmed) |
//! | 2m–30m      | 60 days             | whole range |
//! | 1h          | 730 days            | whole range |
//! | 1d, 1wk, 1mo| unlimited           | whole range |
//!
//! **Clipping policy.** Windows are relative to [`FetchRequest::now`], less a
//! [`EDGE_MARGIN`] so that a request sent a little later (rate limiter, retries) is still inside
//! Yahoo's window when it arrives.
//! - A range entirely older than the window is refused with [`SourceError::InvalidRequest`]
//!   and nothing is sent.
//! - A range partly older is clipped to the window: the fetchable part is fetched, the clipped
//!   part is logged (WARN, with the asked and served spans) and is visible to the caller because
//!   no page's `range` covers it, so gap tracking keeps it as a gap rather than "confirmed empty".
//!   A backfill asking 1m from 90 days ago thus gets the last 30 days and a clear note, not an
//!   error that throws away what Yahoo can serve.
//! - A range starting at or after `now` is refused: there is nothing to fetch yet.
//!
//! The end is clipped to `now` (bars cannot start later), so an open-ended range never turns
//! into endless requests. Windows are returned in time order and do not overlap.
//!
//! **Daily and longer.** Requests are asked in the exchange's local dates (as yfinance does)
//! when the market is known: `period1` is local midnight of the first wanted date, `period2`
//! local midnight of the first unwanted one. Weekly requests start on a Monday and monthly ones
//! on the 1st, because Yahoo aligns multi-day bars to `period1`. Without a market, UTC midnights
//! are used, with one extra day before a daily range for exchanges east of UTC whose session
//! opens on the previous UTC date; parsing drops what falls outside the range.

use chrono::{Datelike, Months, NaiveDate};
use chrono_tz::Tz;

use crate::domain::{Interval, SourceKind, TimeRange, time};
use crate::source::{FetchRequest, SourceError};

const DAY: i64 = 86_400;

/// Served windows are shortened by this much at their old end.
pub(super) const EDGE_MARGIN: i64 = 15 * 60;

/// Yahoo's limits for an intraday interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// How far back from now Yahoo serves the interval, in seconds.
    pub lookback: i64,
    /// The longest span one request may cover, in seconds.
    pub max_span: Option<i64>,
}

pub(super) fn limits(interval: Interval) -> Option<Limits> {
    match interval {
        Interval::M1 => Some(Limits {
            lookback: 30 * DAY,
            max_span: Some(7 * DAY),
        }),
        Interval::M2 | Interval::M5 | Interval::M15 | Interval::M30 => Some(Limits {
            lookback: 60 * DAY,
            max_span: None,
        }),
        Interval::H1 => Some(Limits {
            lookback: 730 * DAY,
            max_span: None,
        }),
        Interval::D1 | Interval::W1 | Interval::Mo1 => None,
    }
}

/// One request to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    /// The stamps (DESIGN §1) this request answers.
    pub range: TimeRange,
    pub period1: i64,
    pub period2: i64,
}

/// The part of a request that Yahoo's window cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Clip {
    pub asked: TimeRange,
    /// The oldest instant that is fetched.
    pub served_from: i64,
    pub lookback_days: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub windows: Vec<Window>,
    pub clipped: Option<Clip>,
}

pub(super) fn plan(req: &FetchRequest) -> Result<Plan, SourceError> {
    let (range, now, interval) = (req.range, req.now, req.series.interval);
    let symbol = req.series.symbol.as_str();
    if range.start() >= now {
        return Err(invalid(format!(
            "{symbol} {interval}: range {range} starts at or after now ({})",
            time::rfc3339(now)
        )));
    }
    match limits(interval) {
        Some(l) => plan_intraday(symbol, interval, range, now, l),
        None => Ok(plan_daily(req)),
    }
}

fn plan_intraday(
    symbol: &str,
    interval: Interval,
    range: TimeRange,
    now: i64,
    limits: Limits,
) -> Result<Plan, SourceError> {
    let earliest = ceil_to(now - limits.lookback + EDGE_MARGIN, 60);
    let end = range.end().min(now);
    let lookback_days = limits.lookback / DAY;
    if end <= earliest {
        return Err(invalid(format!(
            "{symbol}: {interval} bars are served for the last {lookback_days} days only (from {}); \
             range {range} is entirely older",
            time::rfc3339(earliest)
        )));
    }
    let start = range.start().max(earliest);
    let clipped = (start > range.start()).then_some(Clip {
        asked: range,
        served_from: start,
        lookback_days,
    });
    let span = limits.max_span.unwrap_or(i64::MAX);
    let mut windows = Vec::new();
    let mut s = start;
    while s < end {
        let e = s.saturating_add(span).min(end);
        windows.push(Window {
            range: TimeRange::new(s, e).expect("s < e"),
            period1: s,
            period2: e,
        });
        s = e;
    }
    Ok(Plan { windows, clipped })
}

fn plan_daily(req: &FetchRequest) -> Plan {
    let (range, now, interval) = (req.range, req.now, req.series.interval);
    let first = first_stamp_at_or_after(interval, range.start());
    let end = first_stamp_at_or_after(interval, range.end());
    let local_midnight = |stamp: i64| match req.market {
        Some(m) => midnight(time::date_of(stamp), m.timezone()),
        None => stamp,
    };
    let mut period1 = local_midnight(first);
    if req.market.is_none() && interval == Interval::D1 {
        period1 -= DAY;
    }
    let period2 = local_midnight(end).min(now);
    let windows = match (TimeRange::new(first, end), period1 < period2) {
        (Ok(stamps), true) => match stamps.intersect(range) {
            Some(r) => vec![Window {
                range: r,
                period1,
                period2,
            }],
            None => Vec::new(),
        },
        _ => Vec::new(),
    };
    Plan {
        windows,
        clipped: None,
    }
}

/// The smallest bar stamp of `interval` (a date, a Monday, a 1st) at or after `ts`.
fn first_stamp_at_or_after(interval: Interval, ts: i64) -> i64 {
    let mut date = time::date_of(ts);
    if time::date_ts(date) < ts {
        date = date.succ_opt().unwrap_or(date);
    }
    let stamp = interval.period_start(date);
    if stamp >= ts {
        return stamp;
    }
    let next = match interval {
        Interval::W1 => time::date_of(stamp) + chrono::Duration::days(7),
        Interval::Mo1 => time::date_of(stamp)
            .with_day(1)
            .and_then(|d| d.checked_add_months(Months::new(1)))
            .unwrap_or(date),
        _ => date,
    };
    time::date_ts(next)
}

fn midnight(date: NaiveDate, tz: Tz) -> i64 {
    match date.and_hms_opt(0, 0, 0) {
        Some(local) => time::local_to_utc(local, tz),
        None => time::date_ts(date),
    }
}

fn ceil_to(ts: i64, step: i64) -> i64 {
    ts + (step - ts.rem_euclid(step)) % step
}

fn invalid(message: String) -> SourceError {
    SourceError::InvalidRequest {
        src: SourceKind::Yahoo,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Market, SeriesKey, Symbol};

    fn t(s: &str) -> i64 {
        time::parse_instant(s).unwrap()
    }

    fn req(
        interval: Interval,
        start: &str,
        end: &str,
        now: &str,
        market: Option<Market>,
    ) -> FetchRequest {
        FetchRequest {
            series: SeriesKey::new(Symbol::parse("AAPL").unwrap(), interval),
            range: TimeRange::new(t(start), t(end)).unwrap(),
            market,
            futu_code: None,
            now: t(now),
        }
    }

    #[test]
    fn a_twenty_day_minute_range_becomes_three_contiguous_requests() {
        let p = plan(&req(
            Interval::M1,
            "2024-10-01",
            "2024-10-21",
            "2024-10-22",
            None,
        ))
        .unwrap();
        assert_eq!(p.clipped, None);
        assert_eq!(p.windows.len(), 3);
        assert_eq!(p.windows[0].period1, t("2024-10-01"));
        assert_eq!(p.windows[2].period2, t("2024-10-21"));
        for w in p.windows.windows(2) {
            assert_eq!(w[0].period2, w[1].period1);
        }
        assert!(p.windows.iter().all(|w| w.period2 - w.period1 <= 8 * DAY));
    }

    #[test]
    fn a_minute_range_older_than_thirty_days_is_refused() {
        let e = plan(&req(
            Interval::M1,
            "2024-08-01",
            "2024-08-05",
            "2024-10-22",
            None,
        ))
        .unwrap_err();
        assert!(matches!(e, SourceError::InvalidRequest { .. }));
        assert!(e.to_string().contains("last 30 days"), "{e}");
    }

    #[test]
    fn a_minute_range_partly_older_is_clipped_to_the_window() {
        let p = plan(&req(
            Interval::M1,
            "2024-07-24",
            "2024-10-22",
            "2024-10-22",
            None,
        ))
        .unwrap();
        let clip = p.clipped.unwrap();
        let earliest = t("2024-09-22") + EDGE_MARGIN;
        assert_eq!(clip.served_from, earliest);
        assert_eq!(p.windows[0].period1, earliest);
        assert_eq!(p.windows.last().unwrap().period2, t("2024-10-22"));
        assert_eq!(p.windows.len(), 5);
    }

    #[test]
    fn other_intraday_windows_are_sixty_and_seven_hundred_thirty_days() {
        let p = plan(&req(
            Interval::M5,
            "2024-01-01",
            "2024-10-22",
            "2024-10-22",
            None,
        ))
        .unwrap();
        assert_eq!(p.windows.len(), 1);
        assert_eq!(p.clipped.unwrap().lookback_days, 60);
        assert!(
            plan(&req(
                Interval::M30,
                "2024-01-01",
                "2024-08-01",
                "2024-10-22",
                None
            ))
            .is_err()
        );
        let p = plan(&req(
            Interval::H1,
            "2020-01-01",
            "2024-10-22",
            "2024-10-22",
            None,
        ))
        .unwrap();
        assert_eq!(p.windows[0].period1, t("2022-10-23") + EDGE_MARGIN);
    }

    #[test]
    fn the_end_is_clipped_to_now_and_a_future_start_is_refused() {
        let p = plan(&req(
            Interval::M1,
            "2024-10-21",
            "2030-01-01",
            "2024-10-22",
            None,
        ))
        .unwrap();
        assert_eq!(p.windows.len(), 1);
        assert_eq!(p.windows[0].period2, t("2024-10-22"));
        assert!(
            plan(&req(
                Interval::D1,
                "2024-10-23",
                "2024-10-24",
                "2024-10-22",
                None
            ))
            .is_err()
        );
    }

    #[test]
    fn daily_requests_use_exchange_local_midnights() {
        let p = plan(&req(
            Interval::D1,
            "2020-08-31",
            "2020-11-07",
            "2025-01-01",
            Some(Market::Us),
        ))
        .unwrap();
        let w = p.windows[0];
        assert_eq!(time::rfc3339(w.period1), "2020-08-31T04:00:00Z");
        assert_eq!(time::rfc3339(w.period2), "2020-11-07T05:00:00Z");
        assert_eq!(
            w.range,
            TimeRange::new(t("2020-08-31"), t("2020-11-07")).unwrap()
        );
        let p = plan(&req(
            Interval::D1,
            "2024-01-02",
            "2024-01-03",
            "2025-01-01",
            Some(Market::Hk),
        ))
        .unwrap();
        assert_eq!(time::rfc3339(p.windows[0].period1), "2024-01-01T16:00:00Z");
        // Unknown market: UTC, with a day's margin before a daily range.
        let p = plan(&req(
            Interval::D1,
            "2024-01-02",
            "2024-01-03",
            "2025-01-01",
            None,
        ))
        .unwrap();
        assert_eq!(time::rfc3339(p.windows[0].period1), "2024-01-01T00:00:00Z");
        assert_eq!(time::rfc3339(p.windows[0].period2), "2024-01-03T00:00:00Z");
    }

    #[test]
    fn weekly_and_monthly_requests_start_on_a_period_boundary() {
        // 2024-01-03 is a Wednesday: the first whole week starts Monday 2024-01-08.
        let p = plan(&req(
            Interval::W1,
            "2024-01-03",
            "2024-03-01",
            "2025-01-01",
            None,
        ))
        .unwrap();
        assert_eq!(time::rfc3339(p.windows[0].period1), "2024-01-08T00:00:00Z");
        assert_eq!(time::rfc3339(p.windows[0].period2), "2024-03-04T00:00:00Z");
        let p = plan(&req(
            Interval::Mo1,
            "2024-01-01",
            "2024-03-15",
            "2025-01-01",
            Some(Market::Us),
        ))
        .unwrap();
        assert_eq!(time::rfc3339(p.windows[0].period1), "2024-01-01T05:00:00Z");
        assert_eq!(time::rfc3339(p.windows[0].period2), "2024-04-01T04:00:00Z");
        // No Monday in [Tue, Fri): nothing to ask.
        let p = plan(&req(
            Interval::W1,
            "2024-01-02",
            "2024-01-05",
            "2025-01-01",
            None,
        ))
        .unwrap();
        assert!(p.windows.is_empty());
    }

    #[test]
    fn a_daily_request_ending_in_the_future_asks_up_to_now() {
        let p = plan(&req(
            Interval::D1,
            "2024-10-01",
            "2030-01-01",
            "2024-10-22T15:00:00Z",
            Some(Market::Us),
        ))
        .unwrap();
        assert_eq!(p.windows[0].period2, t("2024-10-22T15:00:00Z"));
    }
}
