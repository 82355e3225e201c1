//! Date arithmetic the holiday rules are written in: the n-th weekday of a month, Easter, and
//! the `YYYYMMDD` integers the published tables use.

use chrono::{Datelike, Duration, NaiveDate, Weekday};

/// `YYYYMMDD` as a date; the tables are written this way so a row reads like the notice.
pub(super) fn ymd(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt((n / 10_000) as i32, n / 100 % 100, n % 100)
        .unwrap_or_else(|| panic!("calendar table holds an impossible date {n}"))
}

/// A date as `YYYYMMDD`, to binary-search the tables.
pub(super) fn key(d: NaiveDate) -> u32 {
    d.year() as u32 * 10_000 + d.month() * 100 + d.day()
}

/// The reason a `(YYYYMMDD, reason)` table, sorted by date, gives for `d`.
pub(super) fn lookup(table: &'static [(u32, &'static str)], d: NaiveDate) -> Option<&'static str> {
    table
        .binary_search_by_key(&key(d), |&(k, _)| k)
        .ok()
        .map(|i| table[i].1)
}

/// Panics unless every row of `table` is a real date and the rows are strictly increasing.
#[cfg(test)]
pub(super) fn assert_table(name: &str, table: &[(u32, &str)]) {
    for w in table.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "{name}: {} is not before {}",
            w[0].0,
            w[1].0
        );
    }
    for &(k, _) in table {
        ymd(k);
    }
}

pub(super) fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

pub(super) fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The `n`-th (1-based) `wd` of `month` in `year`.
pub(super) fn nth_weekday(year: i32, month: u32, wd: Weekday, n: u32) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, wd, n as u8).expect("valid n-th weekday")
}

/// The last `wd` of `month` in `year`.
pub(super) fn last_weekday(year: i32, month: u32, wd: Weekday) -> NaiveDate {
    let next = if month == 12 {
        date(year + 1, 1, 1)
    } else {
        date(year, month + 1, 1)
    };
    let mut d = next - Duration::days(1);
    while d.weekday() != wd {
        d -= Duration::days(1);
    }
    d
}

/// Western (Gregorian) Easter Sunday: the anonymous Gregorian algorithm (Meeus/Jones/Butcher).
pub(super) fn easter(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    date(year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn easter_matches_known_dates() {
        for (y, m, d) in [
            (2000, 4, 23),
            (2008, 3, 23),
            (2011, 4, 24),
            (2024, 3, 31),
            (2027, 3, 28),
        ] {
            assert_eq!(easter(y), date(y, m, d), "{y}");
        }
    }

    #[test]
    fn weekday_helpers_find_the_holiday_mondays_and_thursdays() {
        assert_eq!(nth_weekday(2024, 11, Weekday::Thu, 4), date(2024, 11, 28));
        assert_eq!(last_weekday(2024, 5, Weekday::Mon), date(2024, 5, 27));
        assert_eq!(last_weekday(2027, 12, Weekday::Fri), date(2027, 12, 31));
        assert_eq!(key(ymd(20240212)), 20240212);
    }
}
