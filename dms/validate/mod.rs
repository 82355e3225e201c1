//! Validation: the only way to build a [`ValidatedBatch`], the only thing a store accepts.
//!
//! # Layout
//! - `rules.rs`: the rules of DESIGN §5, one small function each, and the vendor decisions
//!   behind the calendar rules; [`RULES`] lists them.
//! - `place.rs`: where a bar falls in its market's calendar, looked up once per session.
//! - this file: [`validate`], which runs the rules over a batch, and [`Context`].
//!
//! # What `validate` does
//! It sorts the bars by time (they usually arrive sorted: that costs one pass), then runs the
//! **reject** rules on each bar in this order — `ts_out_of_range`, the value rules of
//! [`Bar::check`], `off_grid`, `future`, then, when the market is known, `closed_day`,
//! `outside_session` and the session grid (`off_grid`), and last `incomplete` (the still-forming
//! bar of an open session). A rejected bar is returned with its rule and reason for quarantine:
//! nothing is silently dropped. Of the survivors it keeps the last of duplicate timestamps (a
//! later write of the same `(series, ts)` replaces the earlier one), in place, without a second
//! buffer. Then the **flag** rules look at each kept bar and the one before it — `unit_error` or
//! `jump` (with no split between them), and `zero_volume` — and the flagged bars stay in the
//! batch, with a [`Flag`] each.
//!
//! # Without a market
//! `Context::new(now, None)` has no calendar: `closed_day`, `outside_session` and the session
//! grid do not apply (a bar on a Sunday is accepted), daily bars are final once their UTC date
//! has passed, and `zero_volume` does not flag (it cannot know whether the market trades).
//!
//! # Neighbours of the flag rules
//! Within a batch a bar is compared with the kept bar before it. The first bar of a batch is
//! compared with [`Context::previous`] when the caller passes the last stored bar before the
//! batch, and with nothing otherwise. Limits, by design of a per-batch check: a batch that
//! fills a gap is not compared with the stored bar *after* it, and bars written later (an older
//! backfill) never re-judge a stored flag. A bar that returns to the level before a flagged bar
//! is not flagged again (the end of a spike is not a second anomaly); a level shift that
//! persists is flagged once, at its first bar.
//!
//! # Cost
//! The happy path allocates nothing per bar and asks the calendar once per session for
//! intraday bars and once per date (a table lookup) for daily bars; the still-forming check of
//! daily bars looks at a session only for the newest two days. BENCHMARKS.md, "Validation".

#[cfg(test)]
mod calendar_tests;
mod place;
pub mod rules;

pub use rules::{Finding, RULES, Rule, RuleKind, TS_MAX, TS_MIN};

use self::place::Cursor;
use self::rules::Splits;
use crate::domain::{
    ActionKind, Bar, Calendar, CorporateAction, Interval, Market, SeriesKey, TimeRange,
};

/// Bars of one series that passed validation: sorted by `ts`, unique `ts`, non-empty.
/// Fields are private: only [`validate`] (and the store-to-store copy path, which reads bars that
/// were validated when first written) can build one.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedBatch {
    series: SeriesKey,
    bars: Vec<Bar>,
}

impl ValidatedBatch {
    pub fn series(&self) -> &SeriesKey {
        &self.series
    }

    pub fn bars(&self) -> &[Bar] {
        &self.bars
    }

    pub fn len(&self) -> usize {
        self.bars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bars.is_empty()
    }

    /// `[first ts, last ts + 1)`: the span this batch may change.
    pub fn range(&self) -> TimeRange {
        TimeRange::covering(self.bars.iter().map(|b| b.ts)).expect("a batch is never empty")
    }

    /// Splits into batches of at most `n` bars (store writers batch their requests).
    pub fn chunks(&self, n: usize) -> impl Iterator<Item = &[Bar]> {
        self.bars.chunks(n.max(1))
    }
}

/// Lets callers that keep their batch pass `&batch` where the write path takes ownership (it
/// moves the batch onto the task that applies it).
impl From<&ValidatedBatch> for ValidatedBatch {
    fn from(b: &ValidatedBatch) -> ValidatedBatch {
        b.clone()
    }
}

/// One bar that failed a reject rule, kept for quarantine.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub series: SeriesKey,
    pub bar: Bar,
    pub rule: &'static str,
    pub reason: String,
}

/// One stored bar that a flag rule found suspicious (`jump`, `unit_error`, `zero_volume`).
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    pub series: SeriesKey,
    pub bar: Bar,
    pub rule: &'static str,
    pub reason: String,
}

/// What validation needs to know beyond the bars: the clock, the market's calendar, and for the
/// flag rules the symbol's split dates and the last stored bar.
#[derive(Debug, Clone)]
pub struct Context {
    /// UTC epoch seconds; bars after this are in the future.
    pub now: i64,
    /// `None` when the market is unknown: no calendar rules (see the module doc).
    calendar: Option<Calendar>,
    /// Split ex-dates of the symbol (00:00 UTC of the exchange-local date), sorted, unique.
    splits: Vec<i64>,
    /// The last stored bar before the batch, the neighbour of its first bar for the flag rules.
    /// Ignored unless it is older than the batch's first bar.
    pub previous: Option<Bar>,
}

impl Context {
    /// With the market's published calendar ([`Calendar::standard`]), or none.
    pub fn new(now: i64, market: Option<Market>) -> Context {
        Context {
            now,
            calendar: market.map(|m| Calendar::standard(m).clone()),
            splits: Vec::new(),
            previous: None,
        }
    }

    /// With a calendar as configured (closures and half days from the `calendars:` section).
    pub fn with_calendar(now: i64, calendar: Calendar) -> Context {
        Context {
            now,
            calendar: Some(calendar),
            splits: Vec::new(),
            previous: None,
        }
    }

    /// Adds split ex-dates (00:00 UTC, as [`CorporateAction::ts`]).
    pub fn with_splits(mut self, splits: impl IntoIterator<Item = i64>) -> Context {
        self.splits.extend(splits);
        self.splits.sort_unstable();
        self.splits.dedup();
        self
    }

    /// Adds the splits among `actions` (a page's actions, or those stored for the symbol).
    pub fn with_actions(self, actions: &[CorporateAction]) -> Context {
        self.with_splits(
            actions
                .iter()
                .filter(|a| a.kind == ActionKind::Split)
                .map(|a| a.ts),
        )
    }

    /// Sets the last stored bar before the batch.
    pub fn with_previous(mut self, previous: Option<Bar>) -> Context {
        self.previous = previous;
        self
    }

    pub fn market(&self) -> Option<Market> {
        self.calendar.as_ref().map(Calendar::market)
    }

    pub fn calendar(&self) -> Option<&Calendar> {
        self.calendar.as_ref()
    }

    pub fn splits(&self) -> &[i64] {
        &self.splits
    }
}

/// The outcome: a batch (absent when every bar was rejected or none was given), rejections and
/// flags (bars of the batch), both in time order.
#[derive(Debug, Default)]
pub struct Validated {
    pub batch: Option<ValidatedBatch>,
    pub rejections: Vec<Rejection>,
    pub flags: Vec<Flag>,
}

/// Validates bars of one series.
pub fn validate(series: &SeriesKey, mut bars: Vec<Bar>, ctx: &Context) -> Validated {
    if !bars.is_sorted_by_key(|b| b.ts) {
        // Stable: of equal timestamps the last given stays last, and is kept.
        bars.sort_by_key(|b| b.ts);
    }
    let mut checker = Checker::new(series.interval, ctx);
    let mut rejections = Vec::new();
    let mut kept = 0;
    for i in 0..bars.len() {
        let bar = bars[i];
        match checker.check(&bar) {
            Ok(()) if kept > 0 && bars[kept - 1].ts == bar.ts => bars[kept - 1] = bar,
            Ok(()) => {
                bars[kept] = bar;
                kept += 1;
            }
            Err(f) => rejections.push(Rejection {
                series: series.clone(),
                bar,
                rule: f.rule,
                reason: f.reason,
            }),
        }
    }
    bars.truncate(kept);
    let flags = flag(series, &bars, ctx);
    Validated {
        batch: (!bars.is_empty()).then(|| ValidatedBatch {
            series: series.clone(),
            bars,
        }),
        rejections,
        flags,
    }
}

/// Runs the reject rules on one bar at a time, keeping the calendar position between bars.
struct Checker<'a> {
    interval: Interval,
    now: i64,
    calendar: Option<&'a Calendar>,
    /// For intraday bars with a calendar.
    cursor: Option<Cursor<'a>>,
}

impl<'a> Checker<'a> {
    fn new(interval: Interval, ctx: &'a Context) -> Checker<'a> {
        let calendar = ctx.calendar.as_ref();
        Checker {
            interval,
            now: ctx.now,
            calendar,
            cursor: calendar.filter(|_| interval.is_intraday()).map(Cursor::new),
        }
    }

    fn check(&mut self, bar: &Bar) -> rules::Verdict {
        let (interval, ts, now) = (self.interval, bar.ts, self.now);
        rules::ts_out_of_range(ts)?;
        rules::values(bar)?;
        rules::off_grid(interval, ts)?;
        rules::future(ts, now)?;
        let final_at = match (self.calendar, self.cursor.as_mut()) {
            (Some(cal), Some(cursor)) => {
                let place = cursor.place(ts);
                let market = cal.market();
                let tz = cal.timezone();
                rules::closed_day(market, place.closed())?;
                rules::outside_session(ts, &place, tz)?;
                rules::off_session_grid(interval, ts, &place, tz)?;
                place.bar_end(ts, interval.nominal_secs())
            }
            (Some(cal), None) => {
                // A daily bar is stamped 00:00 UTC of its date (on the grid, checked above):
                // its day number is enough to know it is on a session, the common case.
                let on_session =
                    interval == Interval::D1 && cal.is_session_day(ts.div_euclid(86_400));
                if !on_session {
                    rules::closed_day(cal.market(), place::closed_period(cal, interval, ts))?;
                }
                if place::surely_final(interval, ts, now) {
                    return Ok(());
                }
                place::period_final_at(cal, interval, ts)
            }
            (None, _) => rules::final_without_calendar(interval, ts),
        };
        rules::incomplete(interval, ts, final_at, now)
    }
}

/// Runs the flag rules over the kept bars (sorted, unique).
fn flag(series: &SeriesKey, bars: &[Bar], ctx: &Context) -> Vec<Flag> {
    let interval = series.interval;
    let splits = Splits(&ctx.splits);
    let expects_volume = rules::expects_volume(ctx.market(), &series.symbol);
    let mut flags = Vec::new();
    let mut prev = ctx
        .previous
        .filter(|p| bars.first().is_some_and(|b| p.ts < b.ts));
    // The bar before the last price-flagged one, while the previous bar is that flagged bar.
    let mut before_spike: Option<Bar> = None;
    for bar in bars {
        let mut push = |f: Finding| {
            flags.push(Flag {
                series: series.clone(),
                bar: *bar,
                rule: f.rule,
                reason: f.reason,
            })
        };
        let mut spiked = None;
        if let Some(p) = &prev {
            let back = before_spike.is_some_and(|b| {
                rules::unit_error(interval, &b, bar, splits).is_ok()
                    && rules::jump(interval, &b, bar, splits).is_ok()
            });
            if !back {
                let price = rules::unit_error(interval, p, bar, splits)
                    .and_then(|()| rules::jump(interval, p, bar, splits));
                if let Err(f) = price {
                    push(f);
                    spiked = Some(*p);
                }
            }
        }
        if let Err(f) = rules::zero_volume(interval, expects_volume, bar) {
            push(f);
        }
        before_spike = spiked;
        prev = Some(*bar);
    }
    flags
}

/// Re-wraps bars read back from a store (they were validated when first written) so that they
/// can be copied to another store: replication, repair and store-to-store tests. Sorts and
/// de-duplicates like [`validate`] but applies no rules, so history older than a rule change is
/// copied as it is.
pub fn revalidated_from_store(series: &SeriesKey, mut bars: Vec<Bar>) -> Option<ValidatedBatch> {
    bars.sort_by_key(|b| b.ts);
    bars.dedup_by_key(|b| b.ts);
    (!bars.is_empty()).then(|| ValidatedBatch {
        series: series.clone(),
        bars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SourceKind, Symbol, time};

    const DAY: i64 = 1_704_153_600; // 2024-01-02 00:00Z

    fn key(i: Interval) -> SeriesKey {
        SeriesKey::new(Symbol::parse("AAPL").unwrap(), i)
    }

    fn bar(ts: i64, close: f64) -> Bar {
        Bar {
            ts,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
            adj_close: None,
            source: SourceKind::Files,
        }
    }

    #[test]
    fn keeps_the_last_duplicate_and_sorts() {
        let ctx = Context::new(DAY + 30 * 86_400, Some(Market::Us));
        let v = validate(
            &key(Interval::D1),
            vec![bar(DAY + 86_400, 2.0), bar(DAY, 1.0), bar(DAY, 1.5)],
            &ctx,
        );
        let b = v.batch.unwrap();
        assert_eq!(
            b.bars().iter().map(|b| b.close).collect::<Vec<_>>(),
            [1.5, 2.0]
        );
        assert_eq!(b.range(), TimeRange::new(DAY, DAY + 86_401).unwrap());
        assert!(v.rejections.is_empty());
    }

    #[test]
    fn rejects_off_grid_future_and_forming_bars_with_reasons() {
        // 2024-01-02 18:00Z = 13:00 New York: the daily session is open.
        let now = DAY + 18 * 3600;
        let ctx = Context::new(now, Some(Market::Us));
        let v = validate(
            &key(Interval::D1),
            vec![
                bar(DAY - 4 * 86_400, 1.0), // Friday 2023-12-29
                bar(DAY, 1.0),
                bar(DAY + 86_400, 1.0),
                bar(DAY + 3600, 1.0),
                bar(DAY - 2 * 86_400, -1.0),
            ],
            &ctx,
        );
        // In time order.
        let rules: Vec<_> = v.rejections.iter().map(|r| r.rule).collect();
        assert_eq!(
            rules,
            ["non_positive_price", "incomplete", "off_grid", "future"]
        );
        assert_eq!(v.batch.unwrap().len(), 1);
        // After the close (16:00 New York = 21:00Z) the day's bar is final.
        let ctx = Context::new(DAY + 21 * 3600, Some(Market::Us));
        assert!(
            validate(&key(Interval::D1), vec![bar(DAY, 1.0)], &ctx)
                .rejections
                .is_empty()
        );
    }

    #[test]
    fn an_intraday_bar_is_final_when_its_interval_has_passed() {
        let t = DAY + 14 * 3600 + 30 * 60;
        let forming = Context::new(t + 59, None);
        let done = Context::new(t + 60, None);
        assert_eq!(
            validate(&key(Interval::M1), vec![bar(t, 1.0)], &forming).rejections[0].rule,
            "incomplete"
        );
        assert!(
            validate(&key(Interval::M1), vec![bar(t, 1.0)], &done)
                .batch
                .is_some()
        );
    }

    #[test]
    fn timestamps_outside_1900_to_2100_are_quarantined_not_computed_with() {
        let ctx = Context::new(DAY * 2, Some(Market::Us));
        for ts in [
            i64::MIN,
            -9_200_000_000_000_000_000,
            TS_MIN - 86_400,
            TS_MAX,
            i64::MAX,
        ] {
            let v = validate(&key(Interval::D1), vec![bar(ts, 1.0)], &ctx);
            assert_eq!(v.rejections[0].rule, "ts_out_of_range", "{ts}");
        }
        let ok = Context::new(TS_MAX, None);
        assert!(
            validate(&key(Interval::D1), vec![bar(TS_MIN, 1.0)], &ok)
                .batch
                .is_some()
        );
        assert_eq!(time::rfc3339(TS_MIN), "1900-01-01T00:00:00Z");
        assert_eq!(time::rfc3339(TS_MAX), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn all_rejected_gives_no_batch() {
        let ctx = Context::new(DAY * 2, None);
        let v = validate(&key(Interval::D1), vec![bar(DAY, f64::NAN)], &ctx);
        assert!(v.batch.is_none());
        assert_eq!(v.rejections.len(), 1);
    }
}
