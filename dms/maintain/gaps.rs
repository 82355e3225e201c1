//! Gap logic (DESIGN §5), pure: given a series' calendar, its coverage summary
//! ([`crate::store::coverage`]), the sessions its source confirmed empty, its newest stored bar
//! and "now", which bars are missing. No IO and no clock: `now` is an argument. The scanner
//! that feeds it from the stores is [`super::scan`].
//!
//! # What is missing
//! The calendar expects a set of stamps ([`crate::domain::Calendar::expected_stamps`]): intraday
//! bar starts inside trading hours (lunch breaks, early closes and HKEX's closing auction have
//! none), or one stamp per session (daily), per week or month holding a session. From those,
//! remove the stamps the source confirmed absent (the `absent` slots of the coverage, a halt
//! inside a session) and every stamp of a session confirmed empty (a suspension): the source
//! answered and has nothing, so they are treated like holidays. What remains and is not stored
//! is missing.
//!
//! - **Interior gaps** are missing stamps inside `[first stored, last stored]`. Consecutive
//!   missing stamps — with no stored bar between them; weekends, holidays, lunch breaks and
//!   confirmed-empty sessions do not separate them — form one [`Gap`]: `[first missing stamp,
//!   end of the last missing bar)`, half-open. A daily gap Mon–Fri is `[Mon 00:00Z, Sat 00:00Z)`;
//!   an intraday bar ends at `stamp + interval` or at the end of its trading segment if that
//!   comes first (the 15:30 US hourly bar ends at 16:00).
//! - **The head** is what is missing after the last stored bar (or, with nothing stored, from
//!   the series' history start) up to the newest bar that is complete at `now`: the last closed
//!   session's daily bar, the last complete week or month, the last intraday bar that has ended
//!   (the still-forming bar is never expected). It is one range.
//! - **Stale**: the head holds a stamp of the last closed session or earlier — the newest bar
//!   is older than the calendar expects. An intraday series is not stale during a session for
//!   the bars of that session; a daily series is stale once a session's bar is final and absent.
//!
//! `sessions` counts the sessions a gap's missing bars belong to: one per missing daily bar,
//! the distinct sessions of the missing intraday bars (a gap from 15:50 to the next day's 09:40
//! touches two), the sessions of each missing week or month. For the head it counts the
//! sessions the range overlaps, less confirmed-empty ones.
//!
//! # Speed
//! The expected stamps of a block are computed once per market, interval and block
//! ([`Expected`]) and compared with the summary word by word: a complete block costs a few
//! word operations per 64 slots, and only words holding a missing bit are looked at bit by bit.
//! [`SessionIndex`] holds a market's sessions from 1990 to 2060 in a sorted table, so finding a
//! stamp's session is a binary search.
//!
//! # Confirming empties
//! [`confirmed_empty`] decides, from one source answer (a page: the range it answered for and
//! the stamps it returned), which sessions are confirmed empty and which intraday slots are
//! confirmed absent: expected stamps in the range with no bar, that lie before the page's last
//! bar, or whose bar has been final for [`CONFIRM_GRACE_SECS`] (a source may publish a
//! session's bars late; the day's grace keeps a late bar from being recorded as "no bar"). An
//! intraday session is empty when none of its bars came; otherwise its missing bars are absent.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate};

use crate::domain::{Calendar, Interval, Market, Overrides, Session, TimeRange, time};
use crate::store::coverage::{self, Bits, Coverage, CoverageBlock};

/// How long after a bar is final a source's silence about it counts as "no bar".
pub const CONFIRM_GRACE_SECS: i64 = 86_400;

/// A missing range of one series: `[start, end)`, and how many sessions it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub range: TimeRange,
    pub sessions: u32,
}

/// A market's sessions as a sorted table, for fast lookups (see the module doc).
pub struct SessionIndex {
    calendar: Calendar,
    /// Sessions dated 1990-01-01 to 2060-12-31, by date (their spans are in order too).
    sessions: Vec<Session>,
}

impl SessionIndex {
    pub fn new(calendar: Calendar) -> SessionIndex {
        let from = NaiveDate::from_ymd_opt(1990, 1, 1).expect("valid date");
        let to = NaiveDate::from_ymd_opt(2061, 1, 1).expect("valid date");
        let sessions = calendar.sessions(from, to).collect();
        SessionIndex { calendar, sessions }
    }

    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    pub fn market(&self) -> Market {
        self.calendar.market()
    }

    /// Whether `range` lies inside the indexed sessions' spans.
    fn indexes(&self, range: TimeRange) -> bool {
        match (self.sessions.first(), self.sessions.last()) {
            (Some(a), Some(b)) => a.open <= range.start() && range.end() <= b.end(),
            _ => false,
        }
    }

    /// The session whose span `[open, end)` holds `ts`.
    pub fn session_at(&self, ts: i64) -> Option<Session> {
        let Ok(r) = TimeRange::new(ts, ts + 1) else {
            return None;
        };
        if !self.indexes(r) {
            return self.calendar.session_of(ts);
        }
        let i = self.sessions.partition_point(|s| s.end() <= ts);
        self.sessions.get(i).filter(|s| s.open <= ts).copied()
    }

    /// The sessions whose span overlaps `range`, in order.
    pub fn overlapping(&self, range: TimeRange) -> Cow<'_, [Session]> {
        if !self.indexes(range) {
            return Cow::Owned(self.calendar.sessions_in(range).collect());
        }
        let lo = self.sessions.partition_point(|s| s.end() <= range.start());
        let hi = self.sessions.partition_point(|s| s.open < range.end());
        Cow::Borrowed(&self.sessions[lo..hi.max(lo)])
    }

    /// The sessions dated in `[from, to)`, in order.
    pub fn dated(&self, from: NaiveDate, to: NaiveDate) -> Cow<'_, [Session]> {
        let inside = match (self.sessions.first(), self.sessions.last()) {
            (Some(a), Some(b)) => a.date <= from && to <= b.date.succ_opt().unwrap_or(b.date),
            _ => false,
        };
        if !inside {
            return Cow::Owned(self.calendar.sessions(from, to).collect());
        }
        let lo = self.sessions.partition_point(|s| s.date < from);
        let hi = self.sessions.partition_point(|s| s.date < to);
        Cow::Borrowed(&self.sessions[lo..hi.max(lo)])
    }

    /// The session dated `date`.
    pub fn on(&self, date: NaiveDate) -> Option<Session> {
        self.calendar.session(date)
    }

    /// The latest session whose daily bar is final at `now`.
    pub fn last_closed(&self, now: i64) -> Option<Session> {
        let i = self.sessions.partition_point(|s| s.final_at <= now);
        if i == 0 || i == self.sessions.len() {
            return self.calendar.last_closed_session(now);
        }
        Some(self.sessions[i - 1])
    }

    /// The first session dated after `date`.
    pub fn next_after(&self, date: NaiveDate) -> Option<Session> {
        self.calendar.next_session(date)
    }
}

/// One calendar per market, with the `calendars:` overrides from config applied, built once at
/// start-up; each market's [`SessionIndex`] is built the first time it is asked for.
pub struct Calendars {
    markets: Vec<(Market, OnceLock<SessionIndex>, Calendar)>,
}

impl Calendars {
    pub fn new(overrides: &BTreeMap<Market, Overrides>) -> Calendars {
        let markets = Market::ALL
            .into_iter()
            .map(|m| {
                let cal = match overrides.get(&m) {
                    Some(o) => Calendar::with_overrides(m, o.clone()),
                    None => Calendar::standard(m).clone(),
                };
                (m, OnceLock::new(), cal)
            })
            .collect();
        Calendars { markets }
    }

    /// The published calendars, without overrides.
    pub fn standard() -> Calendars {
        Calendars::new(&BTreeMap::new())
    }

    fn entry(&self, m: Market) -> &(Market, OnceLock<SessionIndex>, Calendar) {
        self.markets
            .iter()
            .find(|(x, _, _)| *x == m)
            .expect("every market has a calendar")
    }

    pub fn get(&self, m: Market) -> &Calendar {
        &self.entry(m).2
    }

    pub fn sessions(&self, m: Market) -> &SessionIndex {
        let (_, ix, cal) = self.entry(m);
        ix.get_or_init(|| SessionIndex::new(cal.clone()))
    }

    /// Markets whose holiday table ends within `days` of `now` (or has ended), with the date:
    /// what `/health` warns about.
    pub fn ending_within(&self, now: i64, days: i64) -> Vec<(Market, NaiveDate)> {
        self.markets
            .iter()
            .filter(|(_, _, c)| c.ends_within(now, days))
            .filter_map(|(m, _, c)| c.table_end().map(|e| (*m, e)))
            .collect()
    }
}

/// The expected stamps of each block, as slots, computed once per market, interval and block.
#[derive(Default)]
pub struct Expected {
    blocks: HashMap<(Market, Interval, i64), Bits>,
}

impl Expected {
    pub fn new() -> Expected {
        Expected::default()
    }

    pub fn block(&mut self, ix: &SessionIndex, interval: Interval, block: i64) -> &Bits {
        self.blocks
            .entry((ix.market(), interval, block))
            .or_insert_with(|| {
                let end = coverage::block_end(interval, block);
                let range = TimeRange::new(block, end).expect("a block is never empty");
                let mut bits = Bits::new();
                for t in ix.calendar().expected_stamps(interval, range) {
                    if let Some(s) = coverage::slot_of(interval, block, t) {
                        bits.set(s);
                    }
                }
                bits
            })
    }
}

/// Where the expected bars end at `now`, for one market and interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// Bars stamped before this are complete (final); the head stops here.
    pub complete_before: i64,
    /// A missing bar stamped before this makes the series stale.
    pub stale_before: i64,
}

/// The [`Horizon`] of `interval` on `ix`'s market at `now`.
pub fn horizon(ix: &SessionIndex, interval: Interval, now: i64) -> Horizon {
    let Some(last) = ix.last_closed(now) else {
        return Horizon {
            complete_before: i64::MIN / 4,
            stale_before: i64::MIN / 4,
        };
    };
    match interval {
        Interval::D1 => {
            let t = last.stamp() + 1;
            Horizon {
                complete_before: t,
                stale_before: t,
            }
        }
        Interval::W1 | Interval::Mo1 => {
            let p = interval.period_start(last.date);
            let done = ix
                .next_after(last.date)
                .is_none_or(|n| interval.period_start(n.date) != p);
            let t = if done { p + 1 } else { p };
            Horizon {
                complete_before: t,
                stale_before: t,
            }
        }
        _ => {
            let mut complete_before = now;
            if let Some(s) = ix.session_at(now)
                && now < s.end()
            {
                complete_before = s.open;
                for t in s.bar_starts(interval) {
                    if bar_end(&s, interval, t) <= now {
                        complete_before = t + 1;
                    }
                }
            }
            Horizon {
                complete_before,
                stale_before: last.end(),
            }
        }
    }
}

/// The end of the intraday bar stamped `t` in session `s`: `t + interval`, cut at the end of
/// its trading segment.
fn bar_end(s: &Session, interval: Interval, t: i64) -> i64 {
    let seg_end = s
        .segments()
        .find(|(a, b)| *a <= t && t < *b)
        .map_or(s.close, |(_, b)| b);
    (t + interval.nominal_secs()).min(seg_end)
}

/// The end of the daily-or-longer period stamped `t`.
fn period_end(interval: Interval, t: i64) -> i64 {
    match interval {
        Interval::W1 => t + 7 * 86_400,
        Interval::Mo1 => {
            let d = time::date_of(t);
            let (y, m) = if d.month() == 12 {
                (d.year() + 1, 1)
            } else {
                (d.year(), d.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1).map_or(t + 31 * 86_400, time::date_ts)
        }
        _ => t + 86_400,
    }
}

/// What the gap logic needs to know about one series.
#[derive(Debug, Clone, Copy)]
pub struct SeriesFacts<'a> {
    pub interval: Interval,
    pub coverage: &'a Coverage,
    /// Sessions the source confirmed empty, sorted.
    pub empty: &'a [NaiveDate],
    /// The newest stored bar's stamp (from the store's batched `latest`).
    pub latest: Option<i64>,
    /// Where the series' history starts when nothing is stored (universe `start`, or
    /// `history.default_start_years` back).
    pub start: i64,
}

/// What [`examine`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Findings {
    /// The first stored stamp the summary knows of.
    pub first: Option<i64>,
    pub interior: Vec<Gap>,
    pub head: Option<Gap>,
    pub stale: bool,
}

/// The interior gaps, head and staleness of one series (see the module doc).
pub fn examine(
    ix: &SessionIndex,
    facts: &SeriesFacts<'_>,
    horizon: Horizon,
    expected: &mut Expected,
) -> Findings {
    let first = facts.coverage.first_present(facts.interval);
    let mut f = Findings {
        first,
        ..Findings::default()
    };
    if let (Some(first), Some(latest)) = (first, facts.latest)
        && let Ok(span) = TimeRange::new(first, latest + 1)
    {
        f.interior = runs(ix, facts, span, expected);
    }
    let head_from = match facts.latest {
        Some(l) => l + 1,
        None => facts.start,
    };
    if let Ok(span) = TimeRange::new(head_from, horizon.complete_before) {
        f.head = head(ix, facts, span, expected);
    }
    f.stale = f
        .head
        .is_some_and(|h| h.range.start() < horizon.stale_before);
    f
}

/// The slots of one block that count: expected, not confirmed absent, not in a confirmed-empty
/// session, inside `span`.
fn effective(
    ix: &SessionIndex,
    facts: &SeriesFacts<'_>,
    block: i64,
    span: TimeRange,
    expected: &mut Expected,
) -> Bits {
    let interval = facts.interval;
    let mut eff = expected.block(ix, interval, block).clone();
    let cov = facts.coverage.blocks.get(&block);
    if let Some(c) = cov {
        eff.subtract(&c.absent);
    }
    let end = coverage::block_end(interval, block);
    // Confirmed-empty sessions that can touch this block.
    let from = time::date_of(block).pred_opt().unwrap_or(NaiveDate::MIN);
    let to = time::date_of(end).succ_opt().unwrap_or(NaiveDate::MAX);
    let lo = facts.empty.partition_point(|d| *d < from);
    for &d in facts.empty[lo..].iter().take_while(|d| **d <= to) {
        let Some(s) = ix.on(d) else { continue };
        if interval.is_intraday() {
            if let Ok(r) = TimeRange::new(s.open, s.end()) {
                let (a, b) = coverage::slot_span(interval, block, r);
                eff.clear_range(a, b);
            }
        } else {
            let p = interval.period_start(d);
            let Some(slot) = coverage::slot_of(interval, block, p) else {
                continue;
            };
            // A week or month is empty only when every session in it is.
            let all_empty = interval == Interval::D1
                || ix
                    .dated(time::date_of(p), time::date_of(period_end(interval, p)))
                    .iter()
                    .all(|s| facts.empty.binary_search(&s.date).is_ok());
            if all_empty {
                eff.clear_range(slot, slot + 1);
            }
        }
    }
    // Clip to the span.
    let (a, b) = coverage::slot_span(interval, block, span);
    let n = ((end - block) / coverage::slot_secs(interval)) as usize;
    eff.clear_range(0, a);
    eff.clear_range(b, n.max(b));
    eff
}

fn present(cov: Option<&CoverageBlock>) -> Option<&Bits> {
    cov.map(|c| &c.present)
}

/// A run of missing stamps being collected.
struct Run {
    first: i64,
    end: i64,
    sessions: u32,
    /// The session of the last missing intraday stamp (to count distinct sessions).
    session: Option<Session>,
}

/// The interior gaps of `span`: runs of missing stamps not separated by a stored bar.
fn runs(
    ix: &SessionIndex,
    facts: &SeriesFacts<'_>,
    span: TimeRange,
    expected: &mut Expected,
) -> Vec<Gap> {
    let interval = facts.interval;
    let mut out = Vec::new();
    let mut run: Option<Run> = None;
    let close = |run: &mut Option<Run>, out: &mut Vec<Gap>| {
        if let Some(r) = run.take()
            && let Ok(range) = TimeRange::new(r.first, r.end)
        {
            out.push(Gap {
                range,
                sessions: r.sessions,
            });
        }
    };
    for block in coverage::blocks_in(interval, span) {
        let eff = effective(ix, facts, block, span, expected);
        let empty = Bits::new();
        let have = present(facts.coverage.blocks.get(&block)).unwrap_or(&empty);
        for (wi, &e) in eff.words().iter().enumerate() {
            let missing = e & !have.word(wi);
            let stored = e & have.word(wi);
            if missing == 0 {
                if stored != 0 {
                    close(&mut run, &mut out);
                }
                continue;
            }
            let mut both = missing | stored;
            while both != 0 {
                let bit = both.trailing_zeros();
                both &= both - 1;
                if stored >> bit & 1 == 1 {
                    close(&mut run, &mut out);
                    continue;
                }
                let t = coverage::slot_ts(interval, block, wi * 64 + bit as usize);
                extend(ix, facts, &mut run, t);
            }
        }
    }
    close(&mut run, &mut out);
    out
}

/// Adds the missing stamp `t` to the current run (starting one if none).
fn extend(ix: &SessionIndex, facts: &SeriesFacts<'_>, run: &mut Option<Run>, t: i64) {
    let interval = facts.interval;
    let r = run.get_or_insert(Run {
        first: t,
        end: t,
        sessions: 0,
        session: None,
    });
    if interval.is_intraday() {
        let s = match r.session {
            Some(s) if t < s.end() => s,
            _ => {
                let Some(s) = ix.session_at(t) else {
                    r.end = t + interval.nominal_secs();
                    return;
                };
                r.sessions += 1;
                r.session = Some(s);
                s
            }
        };
        r.end = bar_end(&s, interval, t);
    } else {
        r.end = period_end(interval, t);
        r.sessions += if interval == Interval::D1 {
            1
        } else {
            sessions_dated(ix, facts.empty, t, r.end)
        };
    }
}

/// Sessions dated in `[date(from), date(to))`, less confirmed-empty ones.
fn sessions_dated(ix: &SessionIndex, empty: &[NaiveDate], from: i64, to: i64) -> u32 {
    let (a, b) = (time::date_of(from), time::date_of(to));
    let n = ix.dated(a, b).len();
    let e = empty.partition_point(|d| *d < b) - empty.partition_point(|d| *d < a);
    n.saturating_sub(e) as u32
}

/// The head: one range from the first to the last missing stamp of `span`.
fn head(
    ix: &SessionIndex,
    facts: &SeriesFacts<'_>,
    span: TimeRange,
    expected: &mut Expected,
) -> Option<Gap> {
    let interval = facts.interval;
    let blocks: Vec<i64> = coverage::blocks_in(interval, span).collect();
    let missing_in = |block: i64, expected: &mut Expected| {
        let mut m = effective(ix, facts, block, span, expected);
        if let Some(p) = present(facts.coverage.blocks.get(&block)) {
            m.subtract(p);
        }
        m
    };
    let first = blocks.iter().find_map(|&b| {
        missing_in(b, expected)
            .first()
            .map(|s| coverage::slot_ts(interval, b, s))
    })?;
    let last = blocks.iter().rev().find_map(|&b| {
        missing_in(b, expected)
            .last()
            .map(|s| coverage::slot_ts(interval, b, s))
    })?;
    let (end, sessions) = if interval.is_intraday() {
        let end = ix
            .session_at(last)
            .map_or(last + interval.nominal_secs(), |s| {
                bar_end(&s, interval, last)
            });
        let range = TimeRange::new(first, end).ok()?;
        let touched = ix.overlapping(range);
        let empties = touched
            .iter()
            .filter(|s| facts.empty.binary_search(&s.date).is_ok())
            .count();
        (end, (touched.len() - empties) as u32)
    } else {
        let end = period_end(interval, last);
        (end, sessions_dated(ix, facts.empty, first, end))
    };
    Some(Gap {
        range: TimeRange::new(first, end).ok()?,
        sessions,
    })
}

/// What one source answer confirms (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmed {
    /// Sessions with no bar at all: recorded as confirmed-empty sessions.
    pub sessions: Vec<NaiveDate>,
    /// Missing bars inside sessions that had others (intraday), or missing weeks and months:
    /// recorded as absent slots of the coverage summary.
    pub absent: Vec<i64>,
}

/// The sessions and stamps that the answer for `range` with bars stamped `bars` confirms have
/// no bar, at `now` (see the module doc).
pub fn confirmed_empty(
    ix: &SessionIndex,
    interval: Interval,
    range: TimeRange,
    bars: &[i64],
    now: i64,
) -> Confirmed {
    let mut have: Vec<i64> = bars
        .iter()
        .copied()
        .filter(|t| range.contains(*t))
        .collect();
    have.sort_unstable();
    have.dedup();
    let last_bar = have.last().copied();
    let confirmable = |t: i64, done: i64| {
        done <= now && (last_bar.is_some_and(|l| t < l) || done + CONFIRM_GRACE_SECS <= now)
    };
    let stored = |t: i64| have.binary_search(&t).is_ok();
    let mut out = Confirmed::default();
    match interval {
        Interval::D1 => {
            let from = time::date_of(range.start());
            let to = time::date_of(range.end() - 1)
                .succ_opt()
                .unwrap_or(NaiveDate::MAX);
            for s in ix.dated(from, to).iter() {
                let t = s.stamp();
                if range.contains(t) && !stored(t) && confirmable(t, s.final_at) {
                    out.sessions.push(s.date);
                }
            }
        }
        Interval::W1 | Interval::Mo1 => {
            for t in ix.calendar().expected_stamps(interval, range) {
                let p_end = period_end(interval, t);
                let Some(done) = ix
                    .dated(time::date_of(t), time::date_of(p_end))
                    .last()
                    .map(|s| s.final_at)
                else {
                    continue;
                };
                if !stored(t) && confirmable(t, done) {
                    out.absent.push(t);
                }
            }
        }
        _ => {
            for s in ix.overlapping(range).iter() {
                let stamps: Vec<i64> = s.bar_starts(interval).collect();
                let inside = stamps.iter().all(|t| range.contains(*t));
                let missing: Vec<i64> = stamps
                    .iter()
                    .copied()
                    .filter(|t| range.contains(*t) && !stored(*t))
                    .filter(|t| confirmable(*t, bar_end(s, interval, *t)))
                    .collect();
                if inside && !stamps.is_empty() && missing.len() == stamps.len() {
                    out.sessions.push(s.date);
                } else {
                    out.absent.extend(missing);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
