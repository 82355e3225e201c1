//! Where a bar falls in its market's calendar, looked up once per session rather than per bar.
//!
//! Intraday bars: a [`Cursor`] keeps the session that held the previous bar; a bar inside that
//! session's span `[open, end)` is placed without touching the calendar again, so a sorted batch
//! costs one session lookup per trading day. A bar outside it looks the session up
//! ([`Calendar::session_of`]) and, when there is none, decides whether its date is closed or it
//! is merely outside the hours of an open date.
//!
//! Daily and longer bars: [`closed_period`] asks whether the bar's date (week, month) has a
//! session — an index into the calendar's table, no time-zone arithmetic — and
//! [`period_final_at`] when the bar is final, which only the newest bars of a batch need.

use chrono::{Duration, NaiveDate};

use crate::domain::{Calendar, Interval, Market, Session, time};

/// Where an intraday bar's start instant falls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Place {
    /// In continuous trading: `segment` is the `[start, end)` holding the instant (the morning
    /// or the afternoon around a lunch break, or the whole session).
    Trading { segment: (i64, i64) },
    /// In the closing auction that follows continuous trading, `[close, end)` (HKEX's CAS).
    Auction { close: i64, end: i64 },
    /// In the session's lunch break.
    Lunch { session: Session },
    /// On a trading date but before its open or after its end.
    OffHours { session: Session },
    /// On a date with no session, with the calendar's reason ("weekend", a holiday).
    Closed {
        date: NaiveDate,
        reason: &'static str,
    },
}

impl Place {
    /// The closed date and its reason, if the bar is on one.
    pub(super) fn closed(&self) -> Option<(NaiveDate, &'static str)> {
        match *self {
            Place::Closed { date, reason } => Some((date, reason)),
            _ => None,
        }
    }

    /// When a bar of `step` seconds starting at `ts` here is final: at the end of its interval,
    /// or earlier when its segment (or the auction) ends first — a US 1h bar at 15:30 is final
    /// at 16:00, an HK 1h bar at 11:30 at 12:00.
    pub(super) fn bar_end(&self, ts: i64, step: i64) -> i64 {
        let end = ts.saturating_add(step);
        match *self {
            Place::Trading { segment: (_, e) } => end.min(e),
            Place::Auction { end: e, .. } => end.min(e),
            _ => end,
        }
    }
}

/// Places sorted intraday instants, remembering the last session found.
pub(super) struct Cursor<'a> {
    calendar: &'a Calendar,
    /// FX sessions roll at 17:00 New York: an instant after it belongs to the next date.
    roll: i64,
    current: Option<Session>,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(calendar: &'a Calendar) -> Cursor<'a> {
        Cursor {
            calendar,
            roll: if calendar.market() == Market::Fx {
                7 * 3600
            } else {
                0
            },
            current: None,
        }
    }

    pub(super) fn place(&mut self, ts: i64) -> Place {
        if let Some(s) = self.current
            && s.open <= ts
            && ts < s.end()
        {
            return within(&s, ts);
        }
        if let Some(s) = self.calendar.session_of(ts) {
            self.current = Some(s);
            return within(&s, ts);
        }
        // No session holds the instant: is its date closed, or is it outside the hours?
        let date = time::local_date(ts.saturating_add(self.roll), self.calendar.timezone());
        match self.calendar.session(date) {
            Some(session) => Place::OffHours { session },
            None => Place::Closed {
                date,
                reason: self.calendar.closed_reason(date).unwrap_or("closed"),
            },
        }
    }
}

fn within(s: &Session, ts: i64) -> Place {
    if ts >= s.close {
        return Place::Auction {
            close: s.close,
            end: s.end(),
        };
    }
    match s.lunch {
        Some((a, b)) if a <= ts && ts < b => Place::Lunch { session: *s },
        Some((a, _)) if ts < a => Place::Trading {
            segment: (s.open, a),
        },
        Some((_, b)) => Place::Trading {
            segment: (b, s.close),
        },
        None => Place::Trading {
            segment: (s.open, s.close),
        },
    }
}

/// The first and last dates of the daily, weekly or monthly bar stamped `ts` (00:00 UTC of
/// its first date, as [`Interval::period_start`] makes it).
pub(super) fn period_dates(interval: Interval, ts: i64) -> (NaiveDate, NaiveDate) {
    let first = time::date_of(ts);
    let last = match interval {
        Interval::W1 => first + Duration::days(6),
        Interval::Mo1 => first
            .checked_add_months(chrono::Months::new(1))
            .map_or(first, |next| next - Duration::days(1)),
        _ => first,
    };
    (first, last)
}

/// Why the daily-or-longer bar stamped `ts` has no session, if it has none: the calendar's
/// reason for a day, "no session in the week" or "… month" for longer bars.
pub(super) fn closed_period(
    calendar: &Calendar,
    interval: Interval,
    ts: i64,
) -> Option<(NaiveDate, &'static str)> {
    let (first, last) = period_dates(interval, ts);
    if interval == Interval::D1 || first == last {
        return calendar.closed_reason(first).map(|r| (first, r));
    }
    let any = first
        .iter_days()
        .take_while(|d| *d <= last)
        .any(|d| calendar.is_session(d));
    if any {
        return None;
    }
    let reason = if interval == Interval::W1 {
        "no session in the week"
    } else {
        "no session in the month"
    };
    Some((first, reason))
}

/// When the daily-or-longer bar stamped `ts` is final: the [`Session::final_at`] of the last
/// session in its period, or, without one (an FX holiday that still carries a bar), the
/// market's regular close of its last date ([`Market::session_close`]).
pub(super) fn period_final_at(calendar: &Calendar, interval: Interval, ts: i64) -> i64 {
    let (first, last) = period_dates(interval, ts);
    let mut d = last;
    loop {
        if let Some(s) = calendar.session(d) {
            return s.final_at;
        }
        match d.pred_opt() {
            Some(p) if p >= first => d = p,
            _ => return calendar.market().session_close(last),
        }
    }
}

/// Whether every bar of the period stamped `ts` is certainly final at `now`, without asking
/// the calendar: no market's daily bar is final later than 24:00 UTC of its date (US closes by
/// 21:00 UTC, HKEX's auction by 08:40, SSE/SZSE by 07:00, crypto and FX at 24:00 UTC), so a
/// period whose last date ended two days before `now` has nothing left to form. Most bars of a
/// batch take this shortcut.
pub(super) fn surely_final(interval: Interval, ts: i64, now: i64) -> bool {
    let (_, last) = period_dates(interval, ts);
    time::date_ts(last) + 2 * 86_400 <= now
}

/// `HH:MM` of an instant in `tz`, for reasons.
pub(super) fn hm(ts: i64, tz: chrono_tz::Tz) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.with_timezone(&tz).format("%H:%M").to_string())
        .unwrap_or_default()
}

/// A session's hours in its zone, for reasons: `09:30–12:00, 13:00–16:10`.
pub(super) fn hours(s: &Session, tz: chrono_tz::Tz) -> String {
    match s.lunch {
        Some((a, b)) => format!(
            "{}–{}, {}–{}",
            hm(s.open, tz),
            hm(a, tz),
            hm(b, tz),
            hm(s.end(), tz)
        ),
        None => format!("{}–{}", hm(s.open, tz), hm(s.end(), tz)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        time::parse_instant(s).unwrap()
    }

    #[test]
    fn an_hk_day_is_morning_lunch_afternoon_and_auction() {
        let cal = Calendar::standard(Market::Hk);
        let mut c = Cursor::new(cal);
        // 2024-01-02, Hong Kong = UTC+8.
        assert_eq!(
            c.place(ts("2024-01-02T01:30:00Z")),
            Place::Trading {
                segment: (ts("2024-01-02T01:30:00Z"), ts("2024-01-02T04:00:00Z"))
            }
        );
        assert!(matches!(
            c.place(ts("2024-01-02T04:30:00Z")),
            Place::Lunch { .. }
        ));
        assert_eq!(
            c.place(ts("2024-01-02T05:00:00Z")),
            Place::Trading {
                segment: (ts("2024-01-02T05:00:00Z"), ts("2024-01-02T08:00:00Z"))
            }
        );
        assert_eq!(
            c.place(ts("2024-01-02T08:05:00Z")),
            Place::Auction {
                close: ts("2024-01-02T08:00:00Z"),
                end: ts("2024-01-02T08:10:00Z")
            }
        );
        assert!(matches!(
            c.place(ts("2024-01-02T08:10:00Z")),
            Place::OffHours { .. }
        ));
        assert_eq!(
            c.place(ts("2024-01-06T02:00:00Z")).closed(),
            Some((NaiveDate::from_ymd_opt(2024, 1, 6).unwrap(), "weekend"))
        );
    }

    #[test]
    fn fx_instants_after_the_new_york_roll_belong_to_the_next_date() {
        let cal = Calendar::standard(Market::Fx);
        let mut c = Cursor::new(cal);
        // Sunday 2024-01-07 23:00Z = 18:00 New York: Monday's session.
        assert!(matches!(
            c.place(ts("2024-01-07T23:00:00Z")),
            Place::Trading { .. }
        ));
        // Saturday: closed for the weekend.
        assert_eq!(
            c.place(ts("2024-01-06T12:00:00Z")).closed().map(|c| c.1),
            Some("weekend")
        );
        // 2024-12-24 23:00Z = 18:00 New York: the session of Christmas Day, which FX has not.
        assert_eq!(
            c.place(ts("2024-12-24T23:00:00Z")).closed().map(|c| c.1),
            Some("Christmas Day")
        );
    }

    #[test]
    fn bars_end_at_their_segment_when_it_ends_first() {
        let p = Place::Trading { segment: (0, 1800) };
        assert_eq!(p.bar_end(0, 3600), 1800);
        assert_eq!(p.bar_end(0, 60), 60);
    }

    #[test]
    fn a_week_without_sessions_is_closed_and_a_week_with_one_is_not() {
        let sh = Calendar::standard(Market::Sh);
        // Golden Week 2024: Tuesday 1 to Monday 7 October closed; the week of Monday 30
        // September trades on the 30th.
        let monday = |d: &str| ts(d);
        assert_eq!(closed_period(sh, Interval::W1, monday("2024-09-30")), None);
        let us = Calendar::standard(Market::Us);
        assert_eq!(
            closed_period(us, Interval::D1, ts("2024-07-04")).map(|c| c.1),
            Some("Independence Day")
        );
    }

    #[test]
    fn a_weekly_bar_is_final_when_its_last_session_is() {
        let us = Calendar::standard(Market::Us);
        // The week of 2024-11-25 ends with the half day after Thanksgiving, 13:00 New York.
        assert_eq!(
            period_final_at(us, Interval::W1, ts("2024-11-25")),
            ts("2024-11-29T18:00:00Z")
        );
        assert!(surely_final(
            Interval::W1,
            ts("2024-11-25"),
            ts("2024-12-03")
        ));
        assert!(!surely_final(
            Interval::W1,
            ts("2024-11-25"),
            ts("2024-12-02")
        ));
    }
}
