//! Validation: the only way to build a [`ValidatedBatch`], the only thing a store accepts.
//!
//! `validate` checks every bar against the value rules of [`Bar::check`] and the time rules of
//! DESIGN §5 (on the interval grid, not in the future, not the still-forming bar of an open
//! session), sorts the survivors by time and keeps the last of duplicate timestamps (a later
//! write of the same `(series, ts)` replaces the earlier one). Rejected bars are returned with
//! their rule and reason so that the caller can quarantine them: nothing is silently dropped.

use crate::domain::{Bar, Interval, Market, SeriesKey, TimeRange, time};

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

/// One bar that failed a rule, kept for quarantine.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub series: SeriesKey,
    pub bar: Bar,
    pub rule: &'static str,
    pub reason: String,
}

/// What validation needs to know beyond the bars: the clock and the market (for the session
/// date of daily bars and the close of the current session).
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// UTC epoch seconds; bars after this are in the future.
    pub now: i64,
    /// `None` when the market is unknown: daily bars are then final only once their UTC date
    /// has passed.
    pub market: Option<Market>,
}

impl Context {
    pub fn new(now: i64, market: Option<Market>) -> Context {
        Context { now, market }
    }
}

/// The outcome: a batch (absent when every bar was rejected or none was given) and rejections.
#[derive(Debug, Default)]
pub struct Validated {
    pub batch: Option<ValidatedBatch>,
    pub rejections: Vec<Rejection>,
}

/// Validates bars of one series.
pub fn validate(series: &SeriesKey, bars: Vec<Bar>, ctx: &Context) -> Validated {
    let mut ok = Vec::with_capacity(bars.len());
    let mut rejections = Vec::new();
    for bar in bars {
        match check_bar(series.interval, &bar, ctx) {
            Ok(()) => ok.push(bar),
            Err((rule, reason)) => rejections.push(Rejection {
                series: series.clone(),
                bar,
                rule,
                reason,
            }),
        }
    }
    // Stable sort, then keep the last of each run of equal timestamps.
    ok.sort_by_key(|b| b.ts);
    let mut unique: Vec<Bar> = Vec::with_capacity(ok.len());
    for bar in ok {
        match unique.last_mut() {
            Some(last) if last.ts == bar.ts => *last = bar,
            _ => unique.push(bar),
        }
    }
    Validated {
        batch: (!unique.is_empty()).then(|| ValidatedBatch {
            series: series.clone(),
            bars: unique,
        }),
        rejections,
    }
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

fn check_bar(interval: Interval, bar: &Bar, ctx: &Context) -> Result<(), (&'static str, String)> {
    bar.check().map_err(|e| (e.rule(), e.to_string()))?;
    if !interval.is_on_grid(bar.ts) {
        return Err((
            "off_grid",
            format!("{} is not on the {interval} grid", time::rfc3339(bar.ts)),
        ));
    }
    if bar.ts > ctx.now {
        return Err((
            "future",
            format!("{} is in the future", time::rfc3339(bar.ts)),
        ));
    }
    let final_at = final_at(interval, bar.ts, ctx.market);
    if final_at > ctx.now {
        return Err((
            "incomplete",
            format!(
                "the {interval} bar at {} is still forming until {}",
                time::rfc3339(bar.ts),
                time::rfc3339(final_at)
            ),
        ));
    }
    Ok(())
}

/// The instant after which a bar can no longer change.
fn final_at(interval: Interval, ts: i64, market: Option<Market>) -> i64 {
    if interval.is_intraday() {
        return ts + interval.nominal_secs();
    }
    // The last session date the bar covers.
    let first = time::date_of(ts);
    let last = match interval {
        Interval::W1 => first + chrono::Duration::days(6),
        Interval::Mo1 => {
            let next = first
                .checked_add_months(chrono::Months::new(1))
                .unwrap_or(first);
            next - chrono::Duration::days(1)
        }
        _ => first,
    };
    match market {
        Some(m) => m.session_close(last),
        None => time::date_ts(last) + 86_400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SourceKind, Symbol};

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
                bar(DAY - 86_400, 1.0),
                bar(DAY, 1.0),
                bar(DAY + 86_400, 1.0),
                bar(DAY + 3600, 1.0),
                bar(DAY - 2 * 86_400, -1.0),
            ],
            &ctx,
        );
        let rules: Vec<_> = v.rejections.iter().map(|r| r.rule).collect();
        assert_eq!(
            rules,
            ["incomplete", "future", "off_grid", "non_positive_price"]
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
    fn all_rejected_gives_no_batch() {
        let ctx = Context::new(DAY * 2, None);
        let v = validate(&key(Interval::D1), vec![bar(DAY, f64::NAN)], &ctx);
        assert!(v.batch.is_none());
        assert_eq!(v.rejections.len(), 1);
    }
}
