//! Cron expressions evaluated on an exchange's wall clock, right across DST changes.
//!
//! `croner` parses the expression (5 fields, or 6 with seconds first; names such as `Mon-Fri`
//! and `Jan`, ranges, steps, lists, `L`, `W`, `#`, `@daily`) and walks the *wall clock only*:
//! it is asked for matches among `NaiveDateTime`s, which have no time zone and so no DST to get
//! wrong (croner's own zoned search has had DST bugs). This module then maps each local match
//! to an instant with `chrono-tz`, by one rule, [`resolve`]:
//!
//! - a local time that exists once is that instant;
//! - a local time that happens twice (autumn, clocks go back) fires once, at its **first**
//!   occurrence: 01:30 on 2026-11-01 in New York is 05:30 UTC (EDT), never also 06:30 UTC;
//! - a local time that does not exist (spring, clocks go forward) fires at the **first instant
//!   after the gap**, as Vixie cron does: 02:30 on 2026-03-08 in New York fires at 03:00 EDT
//!   (07:00 UTC). Several matches inside one gap fire once.
//!
//! [`resolve`] never decreases as the local time grows, so "the first match whose instant is
//! after `t`" is found by walking local matches forward from `t`'s local time, and "the last
//! match at or before `t`" by walking backward from a little after it.
//!
//! This module is pure: it imports nothing from the crate and reads no clock.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Local matches examined per search before giving up. A match that resolves at or before the
/// reference instant costs one step; only the repeated hour of a fall-back produces more than
/// one such step, at most one per matching second of that hour.
const MAX_STEPS: usize = 10_000;

/// The widest backward jump of a zone's clock that [`CronExpr::last_at_or_before`] looks
/// past (real fall-backs are one hour, a few historical ones two).
const MAX_FALL_BACK: Duration = Duration::hours(3);

/// A parsed cron expression. Compares, prints and serializes as the text it was parsed from.
#[derive(Clone)]
pub struct CronExpr {
    source: String,
    cron: Cron,
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("{expr:?} has {found} fields (expected 5, or 6 with seconds)")]
    FieldCount { expr: String, found: usize },
    #[error("{expr:?}: {reason}")]
    Invalid { expr: String, reason: String },
    #[error("{expr:?} never fires")]
    Never { expr: String },
}

impl CronExpr {
    /// Parses `expr`: 5 fields (`min hour dom month dow`), 6 with seconds first, or an
    /// `@nickname`. Day-of-week numbers are POSIX (0 or 7 is Sunday); when both day fields
    /// are restricted a day matching either fires (Vixie cron). An expression that can never
    /// fire (`0 0 30 2 *`) is refused.
    pub fn parse(expr: &str) -> Result<CronExpr, CronError> {
        let text = expr.trim();
        if !text.starts_with('@') {
            let found = text.split_whitespace().count();
            if !(5..=6).contains(&found) {
                return Err(CronError::FieldCount {
                    expr: expr.to_string(),
                    found,
                });
            }
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| CronError::Invalid {
                expr: expr.to_string(),
                reason: e.to_string().trim_end_matches('.').to_lowercase(),
            })?;
        let out = CronExpr {
            source: expr.to_string(),
            cron,
        };
        let probe = NaiveDateTime::parse_from_str("2000-01-01 00:00:00", "%Y-%m-%d %H:%M:%S")
            .expect("valid literal");
        if out.cron.find_next_occurrence(&probe, false).is_err() {
            return Err(CronError::Never {
                expr: expr.to_string(),
            });
        }
        Ok(out)
    }

    /// The text the expression was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first fire instant strictly after `after`, the expression read on `tz`'s wall
    /// clock. `None` only when no match exists before croner's year limit.
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut local = after.with_timezone(&tz).naive_local();
        for _ in 0..MAX_STEPS {
            local = self.cron.find_next_occurrence(&local, false).ok()?;
            let at = resolve(tz, local);
            if at > after {
                return Some(at);
            }
        }
        None
    }

    /// The last fire instant at or before `at`, the expression read on `tz`'s wall clock.
    pub fn last_at_or_before(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Start past any local time whose first occurrence is still at or before `at`: after
        // a fall-back the wall clock reads up to MAX_FALL_BACK less than it did.
        let mut local = at.with_timezone(&tz).naive_local() + MAX_FALL_BACK;
        for _ in 0..MAX_STEPS {
            local = self.cron.find_previous_occurrence(&local, false).ok()?;
            let fire = resolve(tz, local);
            if fire <= at {
                return Some(fire);
            }
        }
        None
    }
}

/// The instant a local match fires at (see the module doc): the single occurrence, the first
/// of two, or the first instant after a gap.
pub fn resolve(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => after_gap(tz, local),
    }
}

/// The first instant after the gap that swallowed `local`: walk the wall clock forward a minute
/// at a time to the first local time that exists, then back second by second to where the gap
/// really ends (transitions are on the minute in every current zone, so that walk is short).
fn after_gap(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let minute = local
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(local);
    let mut probe = minute;
    // A gap is at most a day (Samoa skipped 2011-12-30); two days is a safe bound.
    for _ in 0..(2 * 24 * 60) {
        probe += Duration::minutes(1);
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            let mut first = t;
            for _ in 0..60 {
                let earlier = first - Duration::seconds(1);
                if earlier.naive_local() > local {
                    first = earlier;
                } else {
                    break;
                }
            }
            return first.with_timezone(&Utc);
        }
    }
    // Unreachable for real zones; fall back to reading the time as UTC.
    Utc.from_utc_datetime(&local)
}

impl FromStr for CronExpr {
    type Err = CronError;

    fn from_str(s: &str) -> Result<CronExpr, CronError> {
        CronExpr::parse(s)
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.source)
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &CronExpr) -> bool {
        self.source == other.source
    }
}

impl Eq for CronExpr {}

impl serde::Serialize for CronExpr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Asia::Hong_Kong;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, tz: Tz, after: &str) -> String {
        CronExpr::parse(expr)
            .unwrap()
            .next_after(tz, utc(after))
            .unwrap()
            .to_rfc3339()
    }

    fn fires(expr: &str, tz: Tz, after: &str, n: usize) -> Vec<String> {
        let c = CronExpr::parse(expr).unwrap();
        let mut t = utc(after);
        (0..n)
            .map(|_| {
                t = c.next_after(tz, t).unwrap();
                t.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn six_fields_with_seconds_and_five_without_mean_the_same_time() {
        assert_eq!(
            next("0 30 17 * * Mon-Fri", New_York, "2026-01-05T12:00:00Z"),
            "2026-01-05T22:30:00+00:00"
        );
        assert_eq!(
            next("30 17 * * Mon-Fri", New_York, "2026-01-05T12:00:00Z"),
            "2026-01-05T22:30:00+00:00"
        );
        assert_eq!(
            next("15 30 17 * * *", Hong_Kong, "2026-01-05T00:00:00Z"),
            "2026-01-05T09:30:15+00:00"
        );
    }

    #[test]
    fn day_names_ranges_steps_and_lists_are_understood() {
        // Friday evening → Monday.
        assert_eq!(
            next("30 17 * * MON-FRI", New_York, "2026-01-09T23:00:00Z"),
            "2026-01-12T22:30:00+00:00"
        );
        assert_eq!(
            fires("0 */20 9-10 * * 1,3", Hong_Kong, "2026-01-05T00:00:00Z", 7),
            [
                "2026-01-05T01:00:00+00:00",
                "2026-01-05T01:20:00+00:00",
                "2026-01-05T01:40:00+00:00",
                "2026-01-05T02:00:00+00:00",
                "2026-01-05T02:20:00+00:00",
                "2026-01-05T02:40:00+00:00",
                "2026-01-07T01:00:00+00:00",
            ]
        );
        assert_eq!(
            next("0 6 1 Jan,Jul *", chrono_tz::UTC, "2026-01-02T00:00:00Z"),
            "2026-07-01T06:00:00+00:00"
        );
    }

    #[test]
    fn bad_expressions_are_refused_with_the_reason() {
        let e = CronExpr::parse("0 17 * *").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"0 17 * *\" has 4 fields (expected 5, or 6 with seconds)"
        );
        assert!(matches!(
            CronExpr::parse("0 0 17 * * * 2026"),
            Err(CronError::FieldCount { found: 7, .. })
        ));
        assert!(matches!(
            CronExpr::parse("61 * * * *"),
            Err(CronError::Invalid { .. })
        ));
        assert!(matches!(
            CronExpr::parse("0 17 * * Funday"),
            Err(CronError::Invalid { .. })
        ));
        assert!(matches!(
            CronExpr::parse("0 0 30 2 *"),
            Err(CronError::Never { .. })
        ));
    }

    #[test]
    fn us_after_market_follows_new_york_across_the_march_dst_start() {
        // 2026-03-08 (Sunday) clocks go forward: Friday 17:30 EST = 22:30Z, Monday 17:30 EDT = 21:30Z.
        assert_eq!(
            fires("0 30 17 * * Mon-Fri", New_York, "2026-03-05T23:00:00Z", 2),
            ["2026-03-06T22:30:00+00:00", "2026-03-09T21:30:00+00:00"]
        );
    }

    #[test]
    fn us_after_market_follows_new_york_across_the_november_dst_end() {
        // 2026-11-01 (Sunday) clocks go back: Friday 17:30 EDT = 21:30Z, Monday 17:30 EST = 22:30Z.
        assert_eq!(
            fires("0 30 17 * * Mon-Fri", New_York, "2026-10-29T22:00:00Z", 2),
            ["2026-10-30T21:30:00+00:00", "2026-11-02T22:30:00+00:00"]
        );
    }

    #[test]
    fn hong_kong_has_no_dst_so_its_utc_time_never_moves() {
        for after in ["2026-03-05T12:00:00Z", "2026-10-29T12:00:00Z"] {
            let f = fires("0 30 16 * * Mon-Fri", Hong_Kong, after, 5);
            assert!(f.iter().all(|t| t.ends_with("T08:30:00+00:00")), "{f:?}");
        }
    }

    #[test]
    fn a_time_the_spring_forward_skips_fires_at_the_end_of_the_gap() {
        // 02:30 does not exist in New York on 2026-03-08: fire at 03:00 EDT (07:00Z), once.
        assert_eq!(
            fires("30 2 * * *", New_York, "2026-03-07T00:00:00Z", 3),
            [
                "2026-03-07T07:30:00+00:00",
                "2026-03-08T07:00:00+00:00",
                "2026-03-09T06:30:00+00:00",
            ]
        );
        // Several matches inside the gap still fire once.
        assert_eq!(
            fires("*/20 2 * * *", New_York, "2026-03-08T06:50:00Z", 2),
            ["2026-03-08T07:00:00+00:00", "2026-03-09T06:00:00+00:00"]
        );
    }

    #[test]
    fn a_time_the_fall_back_repeats_fires_once_at_its_first_occurrence() {
        // 01:30 happens twice in New York on 2026-11-01: 05:30Z (EDT) and 06:30Z (EST).
        assert_eq!(
            fires("30 1 * * *", New_York, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
        );
        // Asked from inside the second pass of the hour, the next run is the next day.
        assert_eq!(
            next("30 1 * * *", New_York, "2026-11-01T06:10:00Z"),
            "2026-11-02T06:30:00+00:00"
        );
        // 02:30 exists once on that day (after the repeat).
        assert_eq!(
            fires("30 2 * * *", New_York, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T07:30:00+00:00", "2026-11-02T07:30:00+00:00"]
        );
    }

    #[test]
    fn the_last_fire_at_or_before_an_instant_mirrors_the_next() {
        let c = CronExpr::parse("0 30 17 * * Mon-Fri").unwrap();
        let at = |s| c.last_at_or_before(New_York, utc(s)).unwrap().to_rfc3339();
        // Monday morning after the DST start: the last run was Friday 17:30 EST.
        assert_eq!(at("2026-03-09T12:00:00Z"), "2026-03-06T22:30:00+00:00");
        // Exactly at a fire instant: that instant.
        assert_eq!(at("2026-03-09T21:30:00Z"), "2026-03-09T21:30:00+00:00");
        let c = CronExpr::parse("30 1 * * *").unwrap();
        // In the second pass of the repeated hour, the first 01:30 (05:30Z) already fired.
        assert_eq!(
            c.last_at_or_before(New_York, utc("2026-11-01T06:10:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-11-01T05:30:00+00:00"
        );
        let c = CronExpr::parse("30 2 * * *").unwrap();
        assert_eq!(
            c.last_at_or_before(New_York, utc("2026-03-08T07:00:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-03-08T07:00:00+00:00"
        );
        assert_eq!(
            c.last_at_or_before(New_York, utc("2026-03-08T06:59:59Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-03-07T07:30:00+00:00"
        );
    }

    #[test]
    fn expressions_compare_and_serialize_as_their_text() {
        let c = CronExpr::parse("0 30 17 * * Mon-Fri").unwrap();
        assert_eq!(c, "0 30 17 * * Mon-Fri".parse().unwrap());
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            "\"0 30 17 * * Mon-Fri\""
        );
        assert_eq!(format!("{c:?}"), "CronExpr(\"0 30 17 * * Mon-Fri\")");
    }
}
