//! Trading calendars: which dates each [`Market`] trades, its hours on each of them as UTC
//! instants, and the bar stamps a session should carry.
//!
//! # Layout
//! - `us.rs`: NYSE/Nasdaq — rule-based holidays (Rule 7.2 observance, Good Friday, Juneteenth
//!   from 2022), early-close rules, closures on record.
//! - `hk.rs`: HKEX — published holiday tables, half days, typhoon/rainstorm closures, the hour
//!   changes of 2011 and 2012 and the closing auction.
//! - `cn.rs`: SSE and SZSE — the State Council's yearly holiday schedules as one table.
//! - `rules.rs`: date arithmetic the rules and tables are written in.
//! - `session.rs`: [`Session`] and its expected bar stamps.
//! - this file: [`Calendar`], which ties a market's rules to the overrides from config.
//!
//! Everything is pure (no IO, no clock: `now` is an argument) and built once: a `Calendar`
//! classifies every date from 1990 to 2060 when it is made and shares the result (`Arc`), so
//! cloning is a reference count and a session costs one time-zone offset lookup.
//!
//! # Coverage
//! 2000-01-01 through [`Calendar::table_end`] is checked against the exchanges' schedules:
//! 2027-12-31 for US and HK, 2026-12-31 for SH/SZ (the 2027 notice is not out yet). Past the
//! table end the US rules still apply; HK, SH and SZ trade every weekday (no holiday known), which
//! is why `/health` warns when a table ends within 120 days ([`Calendar::ends_within`]). Before
//! 2000 the US rules apply without the closures of the time, HK/SH/SZ trade every weekday.
//! Dates before 1900 or from 2200 have no sessions at all.
//!
//! # Crypto and FX
//! Crypto trades every UTC day, 00:00–24:00 UTC; a session is a UTC date. FX trades 24x5 from
//! Sunday 17:00 New York to Friday 17:00 New York: the session of date D (Monday to Friday) runs
//! from 17:00 New York on D − 1 to 17:00 New York on D (the conventional value-date roll), so
//! Monday's session opens on Sunday evening. FX is closed on 1 January and 25 December (most
//! dealers and venues stop; ECNs that keep quoting trade too thinly for bars to be expected);
//! other holidays are trading days (a source that still sends bars dated 1 Jan or 25 Dec sends
//! bars outside the calendar: validation decides what to make of them). A daily FX bar of date D is stamped 00:00 UTC of D like every
//! daily bar (Yahoo's are, and they cover the London day D); it is final at 24:00 UTC of D
//! ([`Session::final_at`]), after both that day and the New York roll have passed.
//!
//! # Overrides
//! [`Overrides`] add full-day closures (an operator's typhoon day, from the `calendars:` config
//! section) and half days (the market's half-day hours: US 13:00, HK morning only, SH/SZ morning
//! only) without a release; a closure wins over anything the tables say.

mod cn;
mod hk;
mod rules;
mod session;
mod us;

use std::sync::{Arc, OnceLock};

use chrono::{Datelike, Duration, NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;

pub use session::{BarStarts, Session};

use super::{Interval, Market, TimeRange, time};

/// What kind of day a date is for a market.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DayKind {
    Closed,
    Regular,
    /// A half day, or trading stopped early.
    EarlyClose,
    /// The morning was cancelled; trading began late.
    LateOpen,
}

/// A day's trading hours in minutes from local midnight of the session date (negative: the day
/// before, as FX's 17:00 open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hours {
    open: i32,
    lunch: Option<(i32, i32)>,
    close: i32,
    auction_end: Option<i32>,
}

impl Hours {
    const fn plain(open: i32, close: i32) -> Hours {
        Hours {
            open,
            lunch: None,
            close,
            auction_end: None,
        }
    }
}

/// Days added to a market's tables from config, without a release.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Extra full-day closures.
    pub closures: Vec<NaiveDate>,
    /// Extra half days, with the market's half-day hours.
    pub half_days: Vec<NaiveDate>,
}

/// A market's trading calendar. Cheap to clone (shared); see the module docs.
#[derive(Clone)]
pub struct Calendar {
    inner: Arc<Inner>,
}

struct Inner {
    market: Market,
    /// The zone the hours are written in (New York for FX, whose `Market::timezone` is London).
    tz: Tz,
    /// `days[i]` classifies `CACHE_START + i` days.
    days: Vec<DayKind>,
    overrides: Overrides,
}

/// First and last dates classified up front; others are classified on demand.
fn cache_bounds() -> (NaiveDate, NaiveDate) {
    (rules::date(1990, 1, 1), rules::date(2060, 12, 31))
}

/// The first cached date (1990-01-01) in days since 1970-01-01.
const CACHE_FIRST_EPOCH_DAY: i64 = 7_305;

/// How far `next_session` / `previous_session` look before giving up (SH/SZ closed for two weeks
/// at most; an operator's closures could add more).
const SEARCH_DAYS: i64 = 400;

impl Calendar {
    /// The calendar of `market` with extra full-day closures (from config).
    pub fn new(market: Market, extra_closures: &[NaiveDate]) -> Calendar {
        Calendar::with_overrides(
            market,
            Overrides {
                closures: extra_closures.to_vec(),
                half_days: Vec::new(),
            },
        )
    }

    /// The calendar of `market` with `overrides` applied.
    pub fn with_overrides(market: Market, mut overrides: Overrides) -> Calendar {
        overrides.closures.sort_unstable();
        overrides.closures.dedup();
        overrides.half_days.sort_unstable();
        overrides.half_days.dedup();
        let tz = match market {
            Market::Fx => chrono_tz::America::New_York,
            m => m.timezone(),
        };
        let (first, last) = cache_bounds();
        let mut inner = Inner {
            market,
            tz,
            days: Vec::new(),
            overrides,
        };
        inner.days = first
            .iter_days()
            .take_while(|d| *d <= last)
            .map(|d| inner.classify(d))
            .collect();
        Calendar {
            inner: Arc::new(inner),
        }
    }

    /// The calendar of `market` as published, without overrides; built once per process.
    pub fn standard(market: Market) -> &'static Calendar {
        static ALL: OnceLock<Vec<Calendar>> = OnceLock::new();
        let all = ALL.get_or_init(|| {
            Market::ALL
                .into_iter()
                .map(|m| Calendar::new(m, &[]))
                .collect()
        });
        &all[Market::ALL
            .iter()
            .position(|m| *m == market)
            .expect("every market has a calendar")]
    }

    pub fn market(&self) -> Market {
        self.inner.market
    }

    /// The zone the session hours are defined in (New York for FX).
    pub fn timezone(&self) -> Tz {
        self.inner.tz
    }

    /// The last date the market's holiday table is known for; `None` for crypto and FX, whose
    /// rules need no table. For US it is the last year checked against NYSE's published
    /// schedule (the rules go on past it).
    pub fn table_end(&self) -> Option<NaiveDate> {
        match self.inner.market {
            Market::Us => Some(rules::ymd(us::TABLE_END)),
            Market::Hk => Some(rules::ymd(hk::TABLE_END)),
            Market::Sh | Market::Sz => Some(rules::ymd(cn::TABLE_END)),
            Market::Crypto | Market::Fx => None,
        }
    }

    /// Whether the table ends (its last date is over) within `days` days of `now`, or already
    /// has: what `/health` warns about with `days = 120`.
    pub fn ends_within(&self, now: i64, days: i64) -> bool {
        self.table_end()
            .is_some_and(|end| time::date_ts(end) + 86_400 <= now + days * 86_400)
    }

    /// Whether `date` is a trading day.
    pub fn is_session(&self, date: NaiveDate) -> bool {
        self.inner.kind(date) != DayKind::Closed
    }

    /// [`Calendar::is_session`] of the date `day` days after 1970-01-01, without building the
    /// date: validation asks it once per daily bar.
    pub fn is_session_day(&self, day: i64) -> bool {
        let cached = usize::try_from(day - CACHE_FIRST_EPOCH_DAY)
            .ok()
            .and_then(|i| self.inner.days.get(i));
        match cached {
            Some(k) => *k != DayKind::Closed,
            None => self.is_session(time::date_of(day.saturating_mul(86_400))),
        }
    }

    /// The session on `date`, if it is a trading day.
    pub fn session(&self, date: NaiveDate) -> Option<Session> {
        self.inner.session(date)
    }

    /// Why `date` is not a trading day, if it is not: "weekend", the holiday or closure, or
    /// "closed by config".
    pub fn closed_reason(&self, date: NaiveDate) -> Option<&'static str> {
        let inner = &*self.inner;
        if inner.kind(date) != DayKind::Closed {
            return None;
        }
        if inner.overrides.closures.binary_search(&date).is_ok() {
            return Some("closed by config");
        }
        let table = match inner.market {
            Market::Us if !rules::is_weekend(date) => us::holiday(date),
            Market::Hk => hk::closure(date),
            Market::Sh | Market::Sz => cn::closure(date),
            Market::Fx if date.month() == 1 && date.day() == 1 => Some("New Year's Day"),
            Market::Fx if date.month() == 12 && date.day() == 25 => Some("Christmas Day"),
            _ => None,
        };
        Some(table.unwrap_or("weekend"))
    }

    /// The sessions dated in `[from, to)` (half-open, like every range in DMS), in order.
    pub fn sessions(&self, from: NaiveDate, to: NaiveDate) -> Sessions<'_> {
        Sessions {
            inner: &self.inner,
            next: from,
            end: to,
        }
    }

    /// The sessions whose span `[open, end)` overlaps `range`, in order (within the years
    /// 1900–2200).
    pub fn sessions_in(&self, range: TimeRange) -> impl Iterator<Item = Session> + '_ {
        let (from, to) = self.inner.date_span(range);
        self.sessions(from, to)
            .filter(move |s| s.open < range.end() && range.start() < s.end())
    }

    /// The session whose span `[open, end)` holds `ts` (a lunch break is inside the span; see
    /// [`Calendar::contains`] for trading hours).
    pub fn session_of(&self, ts: i64) -> Option<Session> {
        let d = time::local_date(ts, self.inner.tz);
        [d.pred_opt(), Some(d), d.succ_opt()]
            .into_iter()
            .flatten()
            .filter_map(|d| self.session(d))
            .find(|s| s.open <= ts && ts < s.end())
    }

    /// Whether `ts` is in trading hours: inside a session and not in its lunch break.
    pub fn contains(&self, ts: i64) -> bool {
        self.session_of(ts).is_some_and(|s| s.contains(ts))
    }

    /// The first session dated after `after`.
    pub fn next_session(&self, after: NaiveDate) -> Option<Session> {
        after
            .iter_days()
            .skip(1)
            .take(SEARCH_DAYS as usize)
            .find_map(|d| self.session(d))
    }

    /// The last session dated before `before`.
    pub fn previous_session(&self, before: NaiveDate) -> Option<Session> {
        (1..=SEARCH_DAYS)
            .map_while(|i| before.checked_sub_signed(Duration::days(i)))
            .find_map(|d| self.session(d))
    }

    /// The latest session whose daily bar is final at `now` (`final_at <= now`): the newest
    /// session a daily update may store.
    pub fn last_closed_session(&self, now: i64) -> Option<Session> {
        let d = time::local_date(now, self.inner.tz);
        let d = d.checked_add_signed(Duration::days(2)).unwrap_or(d);
        (0..=SEARCH_DAYS)
            .map_while(|i| d.checked_sub_signed(Duration::days(i)))
            .filter_map(|d| self.session(d))
            .find(|s| s.final_at <= now)
    }

    /// The stamps of the bars of `interval` the calendar expects in `range`, in order:
    /// intraday bar starts (see [`Session::bar_starts`]), or for daily and longer intervals the
    /// stamp of each day, week or month that holds at least one session.
    pub fn expected_stamps(&self, interval: Interval, range: TimeRange) -> Vec<i64> {
        let mut out = Vec::new();
        if interval.is_intraday() {
            for s in self.sessions_in(range) {
                out.extend(s.bar_starts(interval).filter(|t| range.contains(*t)));
            }
            return out;
        }
        // A period's stamp can be up to a month before its sessions.
        let (from, to) = clamp_span(
            local_date(range.start(), chrono_tz::UTC),
            local_date(range.end().saturating_sub(1), chrono_tz::UTC),
            1,
            32,
        );
        for s in self.sessions(from, to) {
            let t = interval.period_start(s.date);
            if range.contains(t) && out.last() != Some(&t) {
                out.push(t);
            }
        }
        out
    }
}

impl Inner {
    fn kind(&self, d: NaiveDate) -> DayKind {
        let (first, _) = cache_bounds();
        let i = (d - first).num_days();
        match usize::try_from(i).ok().and_then(|i| self.days.get(i)) {
            Some(k) => *k,
            None => self.classify(d),
        }
    }

    fn classify(&self, d: NaiveDate) -> DayKind {
        let (lo, hi) = span_bounds();
        if d < lo || d >= hi {
            return DayKind::Closed;
        }
        if self.overrides.closures.binary_search(&d).is_ok() {
            return DayKind::Closed;
        }
        let kind = match self.market {
            Market::Us => us::day(d),
            Market::Hk => hk::day(d),
            Market::Sh | Market::Sz => cn::day(d),
            Market::Crypto => DayKind::Regular,
            Market::Fx => {
                let new_year = d.month() == 1 && d.day() == 1;
                let christmas = d.month() == 12 && d.day() == 25;
                if rules::is_weekend(d) || new_year || christmas {
                    DayKind::Closed
                } else {
                    DayKind::Regular
                }
            }
        };
        if kind != DayKind::Closed && self.overrides.half_days.binary_search(&d).is_ok() {
            DayKind::EarlyClose
        } else {
            kind
        }
    }

    fn hours(&self, d: NaiveDate, kind: DayKind) -> Hours {
        match self.market {
            Market::Us => us::hours(kind),
            Market::Hk => hk::hours(d, kind),
            Market::Sh | Market::Sz => cn::hours(d, kind),
            Market::Crypto if kind == DayKind::EarlyClose => Hours::plain(0, 12 * 60),
            Market::Crypto => Hours::plain(0, 24 * 60),
            Market::Fx if kind == DayKind::EarlyClose => Hours::plain(-7 * 60, 13 * 60),
            Market::Fx => Hours::plain(-7 * 60, 17 * 60),
        }
    }

    fn session(&self, date: NaiveDate) -> Option<Session> {
        let kind = self.kind(date);
        (kind != DayKind::Closed).then(|| self.make(date, kind))
    }

    fn make(&self, date: NaiveDate, kind: DayKind) -> Session {
        let h = self.hours(date, kind);
        // Local midnight as UTC, with the offset in force at local noon: exchanges never trade
        // across a DST change (those happen at 02:00 on Sundays), and FX's Sunday-evening open
        // is after it too.
        let noon = date.and_hms_opt(12, 0, 0).expect("valid time");
        let offset = match self.tz.offset_from_local_datetime(&noon).earliest() {
            Some(o) => i64::from(o.fix().local_minus_utc()),
            None => 0,
        };
        let midnight = time::date_ts(date) - offset;
        let at = |m: i32| midnight + i64::from(m) * 60;
        let end = at(h.auction_end.unwrap_or(h.close));
        let final_at = match self.market {
            Market::Fx => end.max(time::date_ts(date) + 86_400),
            _ => end,
        };
        Session {
            date,
            open: at(h.open),
            close: at(h.close),
            lunch: h.lunch.map(|(a, b)| (at(a), at(b))),
            early_close: kind == DayKind::EarlyClose,
            auction_close: h.auction_end.map(at),
            final_at,
        }
    }

    /// Session dates that can overlap `range`, as a half-open date span.
    fn date_span(&self, range: TimeRange) -> (NaiveDate, NaiveDate) {
        clamp_span(
            local_date(range.start(), self.tz),
            local_date(range.end().saturating_sub(1), self.tz),
            1,
            2,
        )
    }
}

/// The years a calendar knows, `[1900, 2200)`: no date outside has a session, and date spans are
/// kept within them, so that a range such as `TimeRange::ALL` walks a bounded number of days.
fn span_bounds() -> (NaiveDate, NaiveDate) {
    (rules::date(1900, 1, 1), rules::date(2200, 1, 1))
}

/// The local date of `ts`, with instants outside `span_bounds` moved onto them.
fn local_date(ts: i64, tz: Tz) -> NaiveDate {
    let (lo, hi) = span_bounds();
    time::local_date(ts.clamp(time::date_ts(lo), time::date_ts(hi)), tz)
}

/// `[first − before, last + after)`.
fn clamp_span(
    first: NaiveDate,
    last: NaiveDate,
    before: i64,
    after: i64,
) -> (NaiveDate, NaiveDate) {
    (first - Duration::days(before), last + Duration::days(after))
}

/// Iterator over the sessions of a date span; see [`Calendar::sessions`].
pub struct Sessions<'a> {
    inner: &'a Inner,
    next: NaiveDate,
    end: NaiveDate,
}

impl Iterator for Sessions<'_> {
    type Item = Session;

    fn next(&mut self) -> Option<Session> {
        while self.next < self.end {
            let d = self.next;
            self.next = d.succ_opt()?;
            let kind = self.inner.kind(d);
            if kind != DayKind::Closed {
                return Some(self.inner.make(d, kind));
            }
        }
        None
    }
}

impl std::fmt::Debug for Calendar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calendar")
            .field("market", &self.inner.market)
            .field("overrides", &self.inner.overrides)
            .finish()
    }
}

#[cfg(test)]
mod tests;
