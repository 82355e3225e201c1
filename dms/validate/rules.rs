//! The validation rules of DESIGN §5, one small function each, in two classes:
//!
//! - **reject**: the bar is impossible or not a bar DMS stores; it goes to quarantine with the
//!   rule and a reason, and is not written.
//! - **flag**: the bar is suspicious but plausible; it is written *and* recorded with the rule
//!   and a reason, so that an operator can look at it.
//!
//! Every rule is a function returning a [`Verdict`]: `Ok(())` when the bar passes, a
//! [`Finding`] (rule name and reason) when it breaks or trips the rule. The reason is formatted
//! only then, so the happy path allocates nothing. [`RULES`] lists them all; the orchestration
//! (which rules run, in which order, with which calendar facts) is in the module above.
//!
//! # Vendor decisions (what real sources send, and what each rule makes of it)
//! - **HKEX closing auction.** A bar stamped inside the CAS (16:00–16:10, 12:00–12:10 on a half
//!   day) is inside the session ([`crate::domain::Session::contains`]): Yahoo sends the auction
//!   print there, and a Futu bar labelled 16:01–16:10 lands there. Accepted, on the whole-minute
//!   grid of its interval; it is final when the auction ends.
//! - **Lunch boundary.** HK and SH/SZ bars start at 13:00 after lunch; a bar stamped inside the
//!   break (12:00–12:59 HK, 11:30–12:59 SH/SZ) is `outside_session`. Futu's end-labelled 12:00 bar
//!   is stamped 11:59 (or 11:30 for 1h) by `source/futu`, so nothing real lands in the break.
//! - **Bars at the close instant.** A US bar stamped 16:00 (13:00 on a half day) starts when
//!   continuous trading has ended and there is no auction session: `outside_session`. Yahoo
//!   appends such a bar (the closing print, volume 0; yfinance#2806) after the last real bar,
//!   which already holds the close; parsing drops it when it is at or after `period2`, and
//!   validation quarantines it when a longer window brings it in.
//! - **Partial last bars.** A bar is judged by its start: a US 1h bar at 15:30 and an HK 1h bar
//!   at 11:30 are on their segment's grid and inside it (and final at the segment end).
//! - **Pre/post market.** DMS asks Yahoo for regular hours only; an extended-hours bar that
//!   still arrives is `outside_session`.
//! - **FX holidays.** The FX calendar closes 1 January and 25 December, but dealers keep
//!   quoting and Yahoo sends bars for them: on FX, `closed_day` rejects weekends and closures
//!   from config only, and a holiday's bars are accepted without session checks.
//! - **Volume.** Yahoo reports no volume for FX (always 0) and for many indices (`^VIX`), and
//!   minutes without trades are common in thin stocks: `zero_volume` looks at daily and longer
//!   bars of symbols that trade on an exchange only.

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::place::{self, Place};
use crate::domain::{Bar, Interval, Market, Symbol, time};

/// What a rule found: its stable name (the quarantine's `rule`, the metric label) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub reason: String,
}

/// A rule's answer for one bar.
pub type Verdict = Result<(), Finding>;

fn found(rule: &'static str, reason: String) -> Verdict {
    Err(Finding { rule, reason })
}

/// Whether a finding keeps the bar out of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Quarantined, not stored.
    Reject,
    /// Stored and recorded.
    Flag,
}

/// One entry of the rule catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub kind: RuleKind,
    pub summary: &'static str,
}

pub const TS_OUT_OF_RANGE: &str = "ts_out_of_range";
pub const OFF_GRID: &str = "off_grid";
pub const FUTURE: &str = "future";
pub const CLOSED_DAY: &str = "closed_day";
pub const OUTSIDE_SESSION: &str = "outside_session";
pub const INCOMPLETE: &str = "incomplete";
pub const JUMP: &str = "jump";
pub const UNIT_ERROR: &str = "unit_error";
pub const ZERO_VOLUME: &str = "zero_volume";

/// Every rule, in the order validation applies them.
pub const RULES: &[Rule] = &[
    Rule {
        name: TS_OUT_OF_RANGE,
        kind: RuleKind::Reject,
        summary: "timestamp outside 1900-01-01..2100-01-01",
    },
    Rule {
        name: "non_finite",
        kind: RuleKind::Reject,
        summary: "a price or the volume is not a finite number",
    },
    Rule {
        name: "non_positive_price",
        kind: RuleKind::Reject,
        summary: "a price is zero or negative",
    },
    Rule {
        name: "negative_volume",
        kind: RuleKind::Reject,
        summary: "volume below zero",
    },
    Rule {
        name: "high_below_open_close",
        kind: RuleKind::Reject,
        summary: "high < max(open, close)",
    },
    Rule {
        name: "low_above_open_close",
        kind: RuleKind::Reject,
        summary: "low > min(open, close)",
    },
    Rule {
        name: OFF_GRID,
        kind: RuleKind::Reject,
        summary: "not on the interval's grid, or not on its session's bar grid",
    },
    Rule {
        name: FUTURE,
        kind: RuleKind::Reject,
        summary: "stamped after now",
    },
    Rule {
        name: CLOSED_DAY,
        kind: RuleKind::Reject,
        summary: "on a date (week, month) the market has no session",
    },
    Rule {
        name: OUTSIDE_SESSION,
        kind: RuleKind::Reject,
        summary: "intraday bar starting outside trading hours (lunch breaks included)",
    },
    Rule {
        name: INCOMPLETE,
        kind: RuleKind::Reject,
        summary: "the still-forming bar of an open session",
    },
    Rule {
        name: UNIT_ERROR,
        kind: RuleKind::Flag,
        summary: "close about 100x or 0.01x the previous close",
    },
    Rule {
        name: JUMP,
        kind: RuleKind::Flag,
        summary: "close-to-close move beyond the interval's threshold, with no split",
    },
    Rule {
        name: ZERO_VOLUME,
        kind: RuleKind::Flag,
        summary: "zero volume on a daily (or longer) bar of an exchange-traded symbol",
    },
];

/// The kind of the rule named `name`, if there is one.
pub fn kind_of(name: &str) -> Option<RuleKind> {
    RULES.iter().find(|r| r.name == name).map(|r| r.kind)
}

// ----- thresholds -----

/// A daily close may move up to 1.5× (up 50%, or down 33%) from the previous one before it is
/// a `jump`. The move is measured as a ratio either way, so a 2:1 split (0.5×) is caught.
pub const JUMP_DAILY: f64 = 1.5;
/// Weekly and monthly bars move more between closes.
pub const JUMP_WEEKLY: f64 = 2.0;
pub const JUMP_MONTHLY: f64 = 2.5;
/// Two intraday bars of one session (less than [`SAME_SESSION_GAP`] apart) may move up to
/// 1.2× (20%): more than US limit-up/limit-down bands allow in minutes, rare anywhere. Across
/// a longer gap (overnight, a weekend) the daily threshold applies.
pub const JUMP_INTRADAY: f64 = 1.2;
/// Intraday bars closer than this are in one session (HK's lunch is 1 h, no session is 6 h
/// shorter than the gap to the next one).
pub const SAME_SESSION_GAP: i64 = 6 * 3600;
/// A `unit_error` is a close about 100× (or 1/100) the previous one — pence for pounds, cents
/// for dollars — within this factor either way (67×–150×).
pub const UNIT_RATIO: f64 = 100.0;
pub const UNIT_TOLERANCE: f64 = 1.5;

/// The most a close may move from the previous one, as a ratio ≥ 1, for bars `gap` seconds
/// apart.
pub fn jump_threshold(interval: Interval, gap: i64) -> f64 {
    match interval {
        Interval::Mo1 => JUMP_MONTHLY,
        Interval::W1 => JUMP_WEEKLY,
        Interval::D1 => JUMP_DAILY,
        _ if gap < SAME_SESSION_GAP => JUMP_INTRADAY,
        _ => JUMP_DAILY,
    }
}

// ----- reject rules -----

/// The span of instants a bar may have: 1900-01-01 to 2100-01-01 (exclusive). Outside it a
/// timestamp is a unit or sign error (milliseconds read as seconds, a sentinel), and the
/// arithmetic of chunks and calendars need not consider it.
pub const TS_MIN: i64 = -2_208_988_800;
pub const TS_MAX: i64 = 4_102_444_800;

/// `ts_out_of_range`: the timestamp is outside [`TS_MIN`]..[`TS_MAX`]. Runs first: later rules
/// compute dates from the timestamp.
pub fn ts_out_of_range(ts: i64) -> Verdict {
    if (TS_MIN..TS_MAX).contains(&ts) {
        return Ok(());
    }
    found(
        TS_OUT_OF_RANGE,
        format!("timestamp {ts} is outside 1900-01-01..2100-01-01"),
    )
}

/// The value rules of [`Bar::check`] (`non_finite`, `non_positive_price`, `negative_volume`,
/// `high_below_open_close`, `low_above_open_close`).
pub fn values(bar: &Bar) -> Verdict {
    bar.check().map_err(|e| Finding {
        rule: e.rule(),
        reason: e.to_string(),
    })
}

/// `off_grid`: the stamp cannot belong to a bar of `interval` ([`Interval::is_on_grid`]).
pub fn off_grid(interval: Interval, ts: i64) -> Verdict {
    if interval.is_on_grid(ts) {
        return Ok(());
    }
    found(
        OFF_GRID,
        format!("{} is not on the {interval} grid", time::rfc3339(ts)),
    )
}

/// `off_grid`, with a calendar: an intraday bar in continuous trading starts a whole number of
/// intervals after its segment's start, the stamps [`crate::domain::Session::bar_starts`]
/// expects (US 1h bars at :30, HK 1h bars at 13:00 after lunch). Bars in a closing auction
/// keep only the plain grid.
pub(super) fn off_session_grid(interval: Interval, ts: i64, place: &Place, tz: Tz) -> Verdict {
    let Place::Trading {
        segment: (start, _),
    } = *place
    else {
        return Ok(());
    };
    let step = interval.nominal_secs();
    if (ts - start).rem_euclid(step) == 0 {
        return Ok(());
    }
    found(
        OFF_GRID,
        format!(
            "{} ({} {tz}) is not on its session's {interval} grid: bars start at {} and every \
             {interval} after",
            time::rfc3339(ts),
            place::hm(ts, tz),
            place::hm(start, tz),
        ),
    )
}

/// `future`: stamped after `now`.
pub fn future(ts: i64, now: i64) -> Verdict {
    if ts <= now {
        return Ok(());
    }
    found(FUTURE, format!("{} is in the future", time::rfc3339(ts)))
}

/// `closed_day`: the bar's date (week, month) has no session; `closed` is that date and the
/// calendar's reason. On FX, only weekends and closures from config reject: dealers quote
/// through 1 January and 25 December (see the module doc).
pub fn closed_day(market: Market, closed: Option<(NaiveDate, &'static str)>) -> Verdict {
    let Some((date, reason)) = closed else {
        return Ok(());
    };
    if fx_holiday(market, reason) {
        return Ok(());
    }
    found(
        CLOSED_DAY,
        format!("{date} is not a {market} session ({reason})"),
    )
}

/// Whether a closed FX date is one that FX bars are accepted on.
pub fn fx_holiday(market: Market, reason: &str) -> bool {
    market == Market::Fx && reason != "weekend" && reason != "closed by config"
}

/// `outside_session`: an intraday bar starting outside trading hours — in a lunch break, before
/// the open or after the end (a closing auction is inside; see the module doc).
pub(super) fn outside_session(ts: i64, place: &Place, tz: Tz) -> Verdict {
    let (what, session) = match place {
        Place::Lunch { session } => ("in the lunch break of", session),
        Place::OffHours { session } => ("outside the hours of", session),
        _ => return Ok(()),
    };
    found(
        OUTSIDE_SESSION,
        format!(
            "{} ({} {tz}) is {what} the {} session ({})",
            time::rfc3339(ts),
            place::hm(ts, tz),
            session.date,
            place::hours(session, tz),
        ),
    )
}

/// `incomplete`: the bar can still change at `now` (it is final at `final_at`): the
/// still-forming bar of an open session.
pub fn incomplete(interval: Interval, ts: i64, final_at: i64, now: i64) -> Verdict {
    if final_at <= now {
        return Ok(());
    }
    found(
        INCOMPLETE,
        format!(
            "the {interval} bar at {} is still forming until {}",
            time::rfc3339(ts),
            time::rfc3339(final_at)
        ),
    )
}

/// When a bar is final without a calendar: intraday at the end of its interval, daily and
/// longer once the UTC day of its last date has passed.
pub fn final_without_calendar(interval: Interval, ts: i64) -> i64 {
    if interval.is_intraday() {
        return ts.saturating_add(interval.nominal_secs());
    }
    let (_, last) = place::period_dates(interval, ts);
    time::date_ts(last) + 86_400
}

// ----- flag rules -----

/// Split ex-dates of the series' symbol (00:00 UTC of the exchange-local date), sorted.
#[derive(Debug, Clone, Copy)]
pub struct Splits<'a>(pub &'a [i64]);

impl Splits<'_> {
    /// Whether a split takes effect after the bar stamped `prev` and by the end of the bar
    /// stamped `ts`: a daily bar on the ex-date, the first intraday bar of it, a week or month
    /// that holds it.
    pub fn between(&self, interval: Interval, prev: i64, ts: i64) -> bool {
        let end = match interval {
            Interval::W1 | Interval::Mo1 => time::date_ts(place::period_dates(interval, ts).1) + 1,
            _ => ts + 1,
        };
        let i = self.0.partition_point(|s| *s <= prev);
        self.0.get(i).is_some_and(|s| *s < end)
    }
}

/// How far `close` is from `prev`, as a ratio ≥ 1.
fn ratio(prev: f64, close: f64) -> f64 {
    let r = close / prev;
    if r >= 1.0 { r } else { 1.0 / r }
}

fn direction(prev: f64, close: f64) -> &'static str {
    if close >= prev { "up" } else { "down" }
}

/// `unit_error`: the close is about 100× or 1/100 the previous close (see [`UNIT_RATIO`]),
/// with no split between them. Checked before `jump`; a bar gets one of the two.
pub fn unit_error(interval: Interval, prev: &Bar, bar: &Bar, splits: Splits<'_>) -> Verdict {
    let r = ratio(prev.close, bar.close);
    if !(UNIT_RATIO / UNIT_TOLERANCE..=UNIT_RATIO * UNIT_TOLERANCE).contains(&r) {
        return Ok(());
    }
    if splits.between(interval, prev.ts, bar.ts) {
        return Ok(());
    }
    found(
        UNIT_ERROR,
        format!(
            "close {} is {r:.1}x {} the previous close {} at {}: a unit error (pence for \
             pounds, cents for dollars)?",
            bar.close,
            direction(prev.close, bar.close),
            prev.close,
            time::rfc3339(prev.ts),
        ),
    )
}

/// `jump`: the close moved from the previous close by more than [`jump_threshold`], and no
/// split of the symbol takes effect between the two bars.
pub fn jump(interval: Interval, prev: &Bar, bar: &Bar, splits: Splits<'_>) -> Verdict {
    let limit = jump_threshold(interval, bar.ts - prev.ts);
    let r = ratio(prev.close, bar.close);
    if r <= limit || splits.between(interval, prev.ts, bar.ts) {
        return Ok(());
    }
    found(
        JUMP,
        format!(
            "close {} is {r:.2}x {} the previous close {} at {}, with no split on record \
             (the threshold is {limit}x)",
            bar.close,
            direction(prev.close, bar.close),
            prev.close,
            time::rfc3339(prev.ts),
        ),
    )
}

/// Whether bars of `symbol` on `market` report volume every session: exchange-traded symbols
/// do; FX (Yahoo sends 0) and indices (`^VIX`, `^TNX` have none) do not, nor does anything
/// without a known market.
pub fn expects_volume(market: Option<Market>, symbol: &Symbol) -> bool {
    market.is_some_and(|m| m != Market::Fx) && !symbol.as_str().starts_with('^')
}

/// `zero_volume`: a daily or longer bar with volume 0 where the market trades every session
/// (`expects_volume`): a halt or suspension, or a source that lost the volume.
pub fn zero_volume(interval: Interval, expects_volume: bool, bar: &Bar) -> Verdict {
    if bar.volume != 0.0 || interval.is_intraday() || !expects_volume {
        return Ok(());
    }
    found(
        ZERO_VOLUME,
        format!(
            "volume 0 on the {interval} bar at {}: a halt or suspension, or a missing volume",
            time::rfc3339(bar.ts)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Calendar, SourceKind};
    use crate::validate::place::Cursor;

    fn ts(s: &str) -> i64 {
        time::parse_instant(s).unwrap()
    }

    fn bar(ts: i64, close: f64) -> Bar {
        Bar {
            ts,
            open: close,
            high: close,
            low: close,
            close,
            volume: 100.0,
            adj_close: None,
            source: SourceKind::Files,
        }
    }

    fn rule(v: Verdict) -> Option<&'static str> {
        v.err().map(|f| f.rule)
    }

    const NONE: Splits<'static> = Splits(&[]);

    #[test]
    fn the_catalogue_names_every_rule_once_and_every_value_rule_of_bar_check() {
        let mut names: Vec<_> = RULES.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RULES.len());
        let bad = Bar {
            high: 0.5,
            ..bar(0, 1.0)
        };
        for b in [
            Bar {
                open: f64::NAN,
                ..bar(0, 1.0)
            },
            Bar {
                low: -1.0,
                ..bar(0, 1.0)
            },
            Bar {
                volume: -1.0,
                ..bar(0, 1.0)
            },
            bad,
            Bar {
                low: 2.0,
                high: 2.0,
                ..bar(0, 1.0)
            },
        ] {
            let r = rule(values(&b)).unwrap();
            assert_eq!(kind_of(r), Some(RuleKind::Reject), "{r}");
        }
        assert_eq!(kind_of(JUMP), Some(RuleKind::Flag));
        assert_eq!(kind_of("nonsense"), None);
    }

    #[test]
    fn ts_out_of_range_bounds_the_years_1900_to_2100() {
        assert_eq!(rule(ts_out_of_range(TS_MIN)), None);
        assert_eq!(rule(ts_out_of_range(TS_MAX - 1)), None);
        assert_eq!(rule(ts_out_of_range(TS_MAX)), Some(TS_OUT_OF_RANGE));
        assert_eq!(rule(ts_out_of_range(i64::MIN)), Some(TS_OUT_OF_RANGE));
    }

    #[test]
    fn off_grid_rejects_a_daily_bar_at_noon_and_a_us_hourly_bar_at_ten() {
        assert_eq!(
            rule(off_grid(Interval::D1, ts("2024-01-02T12:00:00Z"))),
            Some(OFF_GRID)
        );
        assert_eq!(rule(off_grid(Interval::D1, ts("2024-01-02"))), None);
        let cal = Calendar::standard(Market::Us);
        let tz = cal.timezone();
        let mut c = Cursor::new(cal);
        // 2024-01-02: 09:30 New York = 14:30Z. 1h bars start at 09:30, 10:30, ...
        let at = |c: &mut Cursor, s: &str| {
            let t = ts(s);
            rule(off_session_grid(Interval::H1, t, &c.place(t), tz))
        };
        assert_eq!(at(&mut c, "2024-01-02T15:30:00Z"), None);
        assert_eq!(
            at(&mut c, "2024-01-02T20:30:00Z"),
            None,
            "15:30, the short bar"
        );
        let f = off_session_grid(
            Interval::H1,
            ts("2024-01-02T15:00:00Z"),
            &c.place(ts("2024-01-02T15:00:00Z")),
            tz,
        )
        .unwrap_err();
        assert_eq!(f.rule, OFF_GRID);
        assert!(f.reason.contains("bars start at 09:30"), "{}", f.reason);
    }

    #[test]
    fn hk_hourly_bars_restart_their_grid_after_lunch() {
        let cal = Calendar::standard(Market::Hk);
        let tz = cal.timezone();
        let mut c = Cursor::new(cal);
        // 13:00 and 14:00 Hong Kong (05:00Z, 06:00Z) are on the afternoon's grid, 13:30 is not.
        for (s, want) in [
            ("2024-01-02T05:00:00Z", None),
            ("2024-01-02T06:00:00Z", None),
            ("2024-01-02T05:30:00Z", Some(OFF_GRID)),
            ("2024-01-02T03:30:00Z", None),
        ] {
            let t = ts(s);
            assert_eq!(
                rule(off_session_grid(Interval::H1, t, &c.place(t), tz)),
                want,
                "{s}"
            );
        }
    }

    #[test]
    fn future_rejects_only_bars_after_now() {
        assert_eq!(rule(future(10, 10)), None);
        assert_eq!(rule(future(11, 10)), Some(FUTURE));
    }

    #[test]
    fn closed_day_rejects_a_us_holiday_but_accepts_fx_on_christmas() {
        let us = Calendar::standard(Market::Us);
        let july4 = place::closed_period(us, Interval::D1, ts("2024-07-04"));
        let f = closed_day(Market::Us, july4).unwrap_err();
        assert_eq!(f.rule, CLOSED_DAY);
        assert_eq!(
            f.reason,
            "2024-07-04 is not a US session (Independence Day)"
        );
        assert_eq!(
            rule(closed_day(
                Market::Us,
                place::closed_period(us, Interval::D1, ts("2024-07-05"))
            )),
            None
        );
        let fx = Calendar::standard(Market::Fx);
        let christmas = place::closed_period(fx, Interval::D1, ts("2024-12-25"));
        assert!(christmas.is_some());
        assert_eq!(rule(closed_day(Market::Fx, christmas)), None);
        let saturday = place::closed_period(fx, Interval::D1, ts("2024-12-28"));
        assert_eq!(rule(closed_day(Market::Fx, saturday)), Some(CLOSED_DAY));
    }

    #[test]
    fn outside_session_rejects_hk_lunch_and_accepts_the_afternoon_and_the_auction() {
        let cal = Calendar::standard(Market::Hk);
        let tz = cal.timezone();
        let mut c = Cursor::new(cal);
        let at = |c: &mut Cursor, s: &str| {
            let t = ts(s);
            outside_session(t, &c.place(t), tz)
        };
        // 2024-01-02 12:30 Hong Kong = 04:30Z.
        let f = at(&mut c, "2024-01-02T04:30:00Z").unwrap_err();
        assert_eq!(f.rule, OUTSIDE_SESSION);
        assert_eq!(
            f.reason,
            "2024-01-02T04:30:00Z (12:30 Asia/Hong_Kong) is in the lunch break of the 2024-01-02 \
             session (09:30–12:00, 13:00–16:10)"
        );
        assert!(
            at(&mut c, "2024-01-02T04:00:00Z").is_err(),
            "12:00 is lunch"
        );
        assert!(at(&mut c, "2024-01-02T05:00:00Z").is_ok(), "13:00");
        assert!(at(&mut c, "2024-01-02T03:59:00Z").is_ok(), "11:59");
        assert!(
            at(&mut c, "2024-01-02T08:08:00Z").is_ok(),
            "16:08, the auction"
        );
        assert!(
            at(&mut c, "2024-01-02T08:10:00Z").is_err(),
            "16:10, after it"
        );
        assert!(at(&mut c, "2024-01-02T01:29:00Z").is_err(), "09:29");
    }

    #[test]
    fn outside_session_rejects_a_us_bar_after_an_early_close() {
        let cal = Calendar::standard(Market::Us);
        let tz = cal.timezone();
        let mut c = Cursor::new(cal);
        // 2024-11-29, the day after Thanksgiving, closes at 13:00 New York (18:00Z).
        let at = |c: &mut Cursor, s: &str| {
            let t = ts(s);
            rule(outside_session(t, &c.place(t), tz))
        };
        assert_eq!(at(&mut c, "2024-11-29T18:30:00Z"), Some(OUTSIDE_SESSION));
        assert_eq!(
            at(&mut c, "2024-11-29T18:00:00Z"),
            Some(OUTSIDE_SESSION),
            "the close instant"
        );
        assert_eq!(at(&mut c, "2024-11-29T17:59:00Z"), None);
        // On a regular day 13:30 is mid-session.
        assert_eq!(at(&mut c, "2024-11-27T18:30:00Z"), None);
    }

    #[test]
    fn incomplete_rejects_until_final_at() {
        assert_eq!(rule(incomplete(Interval::D1, 0, 100, 99)), Some(INCOMPLETE));
        assert_eq!(rule(incomplete(Interval::D1, 0, 100, 100)), None);
        assert_eq!(final_without_calendar(Interval::M5, 600), 900);
        assert_eq!(
            final_without_calendar(Interval::Mo1, ts("2024-02-01")),
            ts("2024-03-01")
        );
    }

    #[test]
    fn jump_flags_a_50_percent_daily_move_unless_a_split_takes_effect() {
        let d0 = ts("2024-06-07");
        let d1 = ts("2024-06-10");
        let prev = bar(d0, 1200.0);
        let after = bar(d1, 120.0);
        // A 10:1 split on 2024-06-10 (NVDA): no jump.
        assert_eq!(rule(jump(Interval::D1, &prev, &after, Splits(&[d1]))), None);
        // Without it, a jump.
        let f = jump(Interval::D1, &prev, &after, NONE).unwrap_err();
        assert_eq!(f.rule, JUMP);
        assert!(f.reason.contains("10.00x down"), "{}", f.reason);
        // A split long before, or after this bar, does not excuse it.
        assert!(jump(Interval::D1, &prev, &after, Splits(&[d0, d1 + 86_400])).is_err());
        // 1.5x is the limit: 1.49 passes, a halving does not.
        assert!(jump(Interval::D1, &prev, &bar(d1, 1788.0), NONE).is_ok());
        assert!(jump(Interval::D1, &prev, &bar(d1, 600.0), NONE).is_err());
    }

    #[test]
    fn jump_is_stricter_inside_a_session_than_across_a_night() {
        let t = ts("2024-01-02T15:00:00Z");
        let prev = bar(t, 100.0);
        assert!(jump(Interval::M1, &prev, &bar(t + 60, 125.0), NONE).is_err());
        assert!(jump(Interval::M1, &prev, &bar(t + 60, 115.0), NONE).is_ok());
        // The next morning: the daily threshold.
        assert!(jump(Interval::M1, &prev, &bar(t + 18 * 3600, 125.0), NONE).is_ok());
        // A split takes effect on the ex-date's first intraday bar.
        let ex = ts("2024-01-03");
        assert!(
            jump(
                Interval::M1,
                &prev,
                &bar(ts("2024-01-03T14:30:00Z"), 50.0),
                Splits(&[ex])
            )
            .is_ok()
        );
    }

    #[test]
    fn a_split_inside_a_week_excuses_the_weekly_bar() {
        let w0 = ts("2024-06-03");
        let w1 = ts("2024-06-10");
        let wednesday = ts("2024-06-12");
        let prev = bar(w0, 1200.0);
        let next = bar(w1, 130.0);
        assert!(jump(Interval::W1, &prev, &next, Splits(&[wednesday])).is_ok());
        assert!(
            jump(
                Interval::W1,
                &prev,
                &next,
                Splits(&[wednesday + 7 * 86_400])
            )
            .is_err()
        );
    }

    #[test]
    fn unit_error_flags_a_100x_close_and_not_a_50x_one() {
        let prev = bar(ts("2024-01-02"), 1.2345);
        let f = unit_error(Interval::D1, &prev, &bar(ts("2024-01-03"), 123.45), NONE).unwrap_err();
        assert_eq!(f.rule, UNIT_ERROR);
        assert!(f.reason.contains("100.0x up"), "{}", f.reason);
        assert!(unit_error(Interval::D1, &prev, &bar(ts("2024-01-03"), 0.012345), NONE).is_err());
        assert!(unit_error(Interval::D1, &prev, &bar(ts("2024-01-03"), 61.7), NONE).is_ok());
        // A 1:100 reverse split is not a unit error.
        let d = ts("2024-01-03");
        assert!(unit_error(Interval::D1, &prev, &bar(d, 123.45), Splits(&[d])).is_ok());
    }

    #[test]
    fn zero_volume_flags_daily_exchange_bars_only() {
        let zero = Bar {
            volume: 0.0,
            ..bar(ts("2024-01-02"), 10.0)
        };
        let aapl = Symbol::parse("AAPL").unwrap();
        let eur = Symbol::parse("EURUSD=X").unwrap();
        let vix = Symbol::parse("^VIX").unwrap();
        assert!(expects_volume(Some(Market::Us), &aapl));
        assert!(!expects_volume(Some(Market::Fx), &eur));
        assert!(!expects_volume(Some(Market::Us), &vix));
        assert!(!expects_volume(None, &aapl));
        assert_eq!(
            rule(zero_volume(Interval::D1, true, &zero)),
            Some(ZERO_VOLUME)
        );
        assert_eq!(rule(zero_volume(Interval::D1, false, &zero)), None);
        assert_eq!(rule(zero_volume(Interval::M1, true, &zero)), None);
        assert_eq!(
            rule(zero_volume(
                Interval::D1,
                true,
                &bar(ts("2024-01-02"), 10.0)
            )),
            None
        );
    }
}
