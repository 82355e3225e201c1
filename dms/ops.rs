//! The periodic health checks of `dms serve`: a publisher on the [`EventBus`] for the
//! conditions no job or node reports by itself — series past their expected bar, interior gaps
//! left open, holiday tables running out.
//!
//! [`HealthChecks::spawn`] runs [`HealthChecks::check`] once at start-up (after
//! [`FIRST_ROUND_AFTER`]) and then every `checks.interval_s`. Each round
//! 1. scans every series ([`GapScanner::scan`] with no filter: one batched `latest` and the
//!    coverage summaries, no bar read; it also sets `dms_series_stale{interval}`);
//! 2. publishes [`Event::SeriesStale`] with the stale series per interval and how long past its
//!    expected bar the most overdue one is, or [`Event::SeriesFresh`] when none is stale;
//! 3. publishes [`Event::GapsOpen`] with the interior gaps (missing sessions inside a series'
//!    stored range; what is missing after its newest bar is staleness), or [`Event::GapsClosed`];
//! 4. publishes, for each market with a holiday table, [`Event::CalendarEnding`] with the days
//!    left when the table ends within [`CALENDAR_WARN_DAYS`] (the window `/health` warns in),
//!    or [`Event::CalendarOk`].
//!
//! 5. before all of that, pings the primary store: [`Event::PrimaryDown`] (with the bars the
//!    spool holds) when it does not answer, [`Event::PrimaryUp`] when it does. Nothing else
//!    reports an outage of the primary: the write path absorbs it into the spool.
//!
//! Every round publishes every condition's state, raised or cleared: this module knows no
//! channel, threshold or throttle. The alert router ([`crate::alert`]) sends the first raise,
//! throttles the repeats and sends one recovery when a raised condition clears; a clear of a
//! condition never raised sends nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::{Interval, time};
use crate::events::{Event, EventBus, StaleInterval};
use crate::maintain::gaps::{Calendars, SessionIndex};
use crate::maintain::scan::{GapScanner, ScanError, SeriesFilter, SeriesPlan};

/// A holiday table that ends within this many days is reported (as `/health` warns).
pub const CALENDAR_WARN_DAYS: i64 = 120;

/// How long after start-up the first round runs: the start-up work (resumed jobs, the spool's
/// replay, the first requests) goes first, and a round never reports what a replay is about to
/// fill.
pub const FIRST_ROUND_AFTER: Duration = Duration::from_secs(5);

/// Series named in a `GapsOpen` event (the count covers them all).
const GAPS_NAMED: usize = 50;

/// What one round found, as published.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub series: usize,
    pub stale: Vec<StaleInterval>,
    pub gaps: u64,
    /// Markets whose table ends within [`CALENDAR_WARN_DAYS`], with the days left.
    pub calendars_ending: Vec<(String, i64)>,
}

/// See the module doc. Cheap to clone.
#[derive(Clone)]
pub struct HealthChecks {
    primary: Arc<dyn crate::store::Store>,
    gaps: GapScanner,
    calendars: Arc<Calendars>,
    events: EventBus,
    clock: Arc<dyn Clock>,
    every: Duration,
}

impl HealthChecks {
    pub fn new(
        primary: Arc<dyn crate::store::Store>,
        gaps: GapScanner,
        calendars: Arc<Calendars>,
        events: EventBus,
        clock: Arc<dyn Clock>,
        every: Duration,
    ) -> HealthChecks {
        HealthChecks {
            primary,
            gaps,
            calendars,
            events,
            clock,
            every,
        }
    }

    /// Runs a round shortly after start-up ([`FIRST_ROUND_AFTER`], or the interval if that is
    /// shorter) and then every interval until `shutdown`. A round that fails (the primary is
    /// down) is logged; the calendar check of that round still publishes.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let first = tokio::time::Instant::now() + FIRST_ROUND_AFTER.min(self.every);
            let mut tick = tokio::time::interval_at(first, self.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match self.check().await {
                    Ok(r) => tracing::debug!(
                        series = r.series,
                        stale = r.stale.iter().map(|s| s.count).sum::<u64>(),
                        gaps = r.gaps,
                        "health check done"
                    ),
                    Err(e) => tracing::warn!(error = %e, "health check: cannot scan the series"),
                }
            }
        })
    }

    /// One round (see the module doc): publishes what it found and returns it.
    pub async fn check(&self) -> Result<CheckReport, ScanError> {
        self.check_primary().await;
        let now = self.clock.now();
        let calendars_ending = self.check_calendars(now);
        let plans = self.gaps.scan(&SeriesFilter::default(), now).await?;
        let stale = stale_by_interval(&plans, &self.calendars, now);
        if stale.is_empty() {
            self.events.publish(Event::SeriesFresh);
        } else {
            self.events.publish(Event::SeriesStale {
                stale: stale.clone(),
            });
        }
        let gaps: u64 = plans.iter().map(|p| p.interior.len() as u64).sum();
        if gaps == 0 {
            self.events.publish(Event::GapsClosed);
        } else {
            let series = plans
                .iter()
                .filter(|p| !p.interior.is_empty())
                .take(GAPS_NAMED)
                .map(|p| format!("{} {}", p.series.symbol, p.series.interval))
                .collect();
            self.events.publish(Event::GapsOpen {
                count: gaps,
                series,
            });
        }
        Ok(CheckReport {
            series: plans.len(),
            stale,
            gaps,
            calendars_ending,
        })
    }

    fn check_calendars(&self, now: i64) -> Vec<(String, i64)> {
        let today = time::date_of(now);
        let mut ending = Vec::new();
        for m in crate::domain::Market::ALL {
            let cal = self.calendars.get(m);
            let Some(end) = cal.table_end() else {
                continue;
            };
            if cal.ends_within(now, CALENDAR_WARN_DAYS) {
                let days_left = (end - today).num_days();
                ending.push((m.as_str().to_string(), days_left));
                self.events.publish(Event::CalendarEnding {
                    market: m.as_str().to_string(),
                    table_end: end,
                    days_left,
                });
            } else {
                self.events.publish(Event::CalendarOk {
                    market: m.as_str().to_string(),
                });
            }
        }
        ending
    }
}

impl HealthChecks {
    /// Publishes whether the primary store answers its ping.
    async fn check_primary(&self) {
        let store = self.primary.kind().to_string();
        match self.primary.ping().await {
            Ok(_) => self.events.publish(Event::PrimaryUp { store }),
            Err(e) => self.events.publish(Event::PrimaryDown {
                store,
                error: e.to_string(),
                spooled_bars: u64::try_from(crate::telemetry::metrics().spool_bars.get())
                    .unwrap_or(0),
            }),
        }
    }
}

/// The stale series of `plans` per interval, with how long the most overdue of each has been
/// past its first missing bar's final time; intervals with none left out.
fn stale_by_interval(plans: &[SeriesPlan], calendars: &Calendars, now: i64) -> Vec<StaleInterval> {
    let mut by: BTreeMap<Interval, (u64, u64)> = BTreeMap::new();
    for p in plans.iter().filter(|p| p.stale) {
        let overdue = p.head.map_or(0, |h| {
            let ix = calendars.sessions(p.market);
            let due = final_at(ix, p.series.interval, h.range.start());
            u64::try_from(now - due).unwrap_or(0)
        });
        let e = by.entry(p.series.interval).or_default();
        e.0 += 1;
        e.1 = e.1.max(overdue);
    }
    by.into_iter()
        .map(|(i, (count, max_overdue_s))| StaleInterval {
            interval: i.as_str().to_string(),
            count,
            max_overdue_s,
        })
        .collect()
}

/// When the bar stamped `stamp` is final: an intraday bar when it ends, a daily bar when its
/// session's daily bar is final, a week or month when the last session inside it is.
fn final_at(ix: &SessionIndex, interval: Interval, stamp: i64) -> i64 {
    if interval.is_intraday() {
        return stamp + interval.nominal_secs();
    }
    let from = time::date_of(stamp);
    let to = from + chrono::Duration::days(interval.nominal_secs() / 86_400);
    ix.dated(from, to)
        .iter()
        .filter(|s| interval.period_start(s.date) == stamp)
        .map(|s| s.final_at)
        .max()
        .unwrap_or(stamp + interval.nominal_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Market;

    #[test]
    fn a_bar_is_final_when_its_session_or_period_is() {
        let cals = Calendars::standard();
        let us = cals.sessions(Market::Us);
        let day = time::parse_instant("2024-01-05").unwrap();
        // Friday's daily bar is final at the 16:00 New York close.
        assert_eq!(
            final_at(us, Interval::D1, day),
            time::parse_instant("2024-01-05T21:00:00Z").unwrap()
        );
        // The week of Monday 2024-01-01 ends with Friday's session.
        let monday = time::parse_instant("2024-01-01").unwrap();
        assert_eq!(
            final_at(us, Interval::W1, monday),
            time::parse_instant("2024-01-05T21:00:00Z").unwrap()
        );
        // An intraday bar when it ends.
        let bar = time::parse_instant("2024-01-05T15:00:00Z").unwrap();
        assert_eq!(final_at(us, Interval::M5, bar), bar + 300);
    }
}
