//! NYSE / Nasdaq: rule-based holidays, the early-close rules, and the unscheduled closures on
//! record. Nasdaq follows NYSE's schedule.
//!
//! Sources: NYSE Rule 7.2 (holidays and their weekend observance), NYSE's "Holidays & Trading
//! Hours" page and its annual press release (the latest checked: "NYSE Group Announces 2025,
//! 2026 and 2027 Holiday and Early Closings Calendar", ir.theice.com, 2024), and NYSE's notices
//! for the closures below. Checked against every session 2000–2027 of the published
//! calendars (see the tests in `mod.rs` for the yearly counts).
//!
//! Regular hours 09:30–16:00 New York; early closes at 13:00.
//!
//! Not modelled (the session keeps its regular hours): the late opens for moments of silence
//! (09:33 on 2001-09-17, 09:31 on 2001-10-08, 09:32 on 2003-03-20, 2004-06-07 and 2006-12-27),
//! the noon open of 2002-09-11, and the 15:56 stop of 2005-06-01 (systems problem). Add them as
//! data here if intraday history of those days matters.

use chrono::{Datelike, Duration, NaiveDate, Weekday};

use super::rules::{date, easter, is_weekend, last_weekday, lookup, nth_weekday};
use super::{DayKind, Hours};

/// Regular session: 09:30–16:00 local.
const REGULAR: Hours = Hours::plain(9 * 60 + 30, 16 * 60);
/// Early close: 09:30–13:00 local.
const EARLY: Hours = Hours::plain(9 * 60 + 30, 13 * 60);

/// The last year checked against a schedule NYSE has published; the rules go on past it.
pub(super) const TABLE_END: u32 = 20271231;

/// Unscheduled full-day closures (YYYYMMDD, sorted).
const CLOSURES: &[(u32, &str)] = &[
    (
        20010911,
        "September 11 attacks (NYSE closed 11–14 Sep 2001)",
    ),
    (20010912, "September 11 attacks"),
    (20010913, "September 11 attacks"),
    (20010914, "September 11 attacks"),
    (20040611, "national day of mourning for President Reagan"),
    (20070102, "national day of mourning for President Ford"),
    (20121029, "Hurricane Sandy"),
    (20121030, "Hurricane Sandy"),
    (
        20181205,
        "national day of mourning for President George H. W. Bush",
    ),
    (20250109, "national day of mourning for President Carter"),
];

/// Early closes (13:00) that no rule produces (YYYYMMDD, sorted).
const EXTRA_EARLY_CLOSES: &[(u32, &str)] = &[
    (19971226, "day after Christmas 1997"),
    (19991231, "New Year's Eve 1999 (Y2K)"),
    (20031226, "day after Christmas 2003"),
];

/// Why NYSE is closed on `d`, a weekday, if it is: the holiday rules, then the closures on record.
pub(super) fn holiday(d: NaiveDate) -> Option<&'static str> {
    let y = d.year();
    // Rule 7.2: a holiday on a Saturday is observed the Friday before, on a Sunday the Monday
    // after.
    let observed = |m: u32, day: u32| -> NaiveDate {
        let h = date(y, m, day);
        match h.weekday() {
            Weekday::Sat => h - Duration::days(1),
            Weekday::Sun => h + Duration::days(1),
            _ => h,
        }
    };
    let rule = match d.month() {
        // New Year's Day on a Saturday is not observed on the Friday before (Rule 7.2: not when
        // that Friday ends a year); `observed` then yields 31 Dec of the year before, never `d`.
        1 if d == observed(1, 1) => Some("New Year's Day"),
        1 if y >= 1998 && d == nth_weekday(y, 1, Weekday::Mon, 3) => {
            Some("Martin Luther King Jr. Day")
        }
        2 if d == nth_weekday(y, 2, Weekday::Mon, 3) => Some("Washington's Birthday"),
        3 | 4 if d == easter(y) - Duration::days(2) => Some("Good Friday"),
        5 if d == last_weekday(y, 5, Weekday::Mon) => Some("Memorial Day"),
        // Juneteenth National Independence Day: a federal holiday from 2021, closed from 2022.
        6 if y >= 2022 && d == observed(6, 19) => Some("Juneteenth"),
        7 if d == observed(7, 4) => Some("Independence Day"),
        9 if d == nth_weekday(y, 9, Weekday::Mon, 1) => Some("Labor Day"),
        11 if d == nth_weekday(y, 11, Weekday::Thu, 4) => Some("Thanksgiving Day"),
        12 if d == observed(12, 25) => Some("Christmas Day"),
        _ => None,
    };
    rule.or_else(|| lookup(CLOSURES, d))
}

/// Why the session on `d` (a trading day) closes at 13:00, if it does.
pub(super) fn early_close(d: NaiveDate) -> Option<&'static str> {
    let y = d.year();
    let (m, day, wd) = (d.month(), d.day(), d.weekday());
    // The day after Thanksgiving (from 1993 at 13:00).
    if m == 11 && wd == Weekday::Fri && d == nth_weekday(y, 11, Weekday::Thu, 4) + Duration::days(1)
    {
        return Some("day after Thanksgiving");
    }
    // Christmas Eve on a Monday to Thursday (on a Friday it is the observed Christmas holiday).
    if m == 12 && day == 24 && wd != Weekday::Fri {
        return Some("Christmas Eve");
    }
    // The day before Independence Day: 3 July on a Monday, Tuesday or Thursday (from 1995); on a
    // Wednesday only from 2013 — until 2012 the early close of a Thursday 4 July fell on Friday
    // 5 July instead (2002), and in 2013 NYSE moved it to Wednesday 3 July. On a Friday 3 July
    // is the observed holiday itself; a Sunday 4 July brings no early close on Friday 2 July.
    if m == 7 && day == 3 {
        match wd {
            Weekday::Mon | Weekday::Tue | Weekday::Thu if y >= 1995 => {
                return Some("day before Independence Day");
            }
            Weekday::Wed if y >= 2013 => return Some("day before Independence Day"),
            _ => {}
        }
    }
    if m == 7 && day == 5 && wd == Weekday::Fri && (1996..=2012).contains(&y) {
        return Some("day after Independence Day");
    }
    lookup(EXTRA_EARLY_CLOSES, d)
}

pub(super) fn day(d: NaiveDate) -> DayKind {
    if is_weekend(d) || holiday(d).is_some() {
        DayKind::Closed
    } else if early_close(d).is_some() {
        DayKind::EarlyClose
    } else {
        DayKind::Regular
    }
}

pub(super) fn hours(kind: DayKind) -> Hours {
    match kind {
        DayKind::EarlyClose => EARLY,
        _ => REGULAR,
    }
}

#[cfg(test)]
pub(super) const TABLES: [&[(u32, &str)]; 2] = [CLOSURES, EXTRA_EARLY_CLOSES];
