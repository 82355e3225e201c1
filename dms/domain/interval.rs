//! `Interval`: the bar sizes DMS stores (`1m 2m 5m 15m 30m 1h 1d 1wk 1mo`).

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, Weekday};
use chrono_tz::Tz;

use super::time;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    M1,
    M2,
    M5,
    M15,
    M30,
    H1,
    D1,
    W1,
    Mo1,
}

impl Interval {
    pub const ALL: [Interval; 9] = [
        Interval::M1,
        Interval::M2,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::D1,
        Interval::W1,
        Interval::Mo1,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M2 => "2m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::D1 => "1d",
            Interval::W1 => "1wk",
            Interval::Mo1 => "1mo",
        }
    }

    /// Intraday bars are stamped at their start instant; daily and longer at a session date.
    pub fn is_intraday(self) -> bool {
        self < Interval::D1
    }

    /// Nominal length in seconds (a month counts as 31 days: an upper bound, for sizing).
    pub fn nominal_secs(self) -> i64 {
        match self {
            Interval::M1 => 60,
            Interval::M2 => 120,
            Interval::M5 => 300,
            Interval::M15 => 900,
            Interval::M30 => 1800,
            Interval::H1 => 3600,
            Interval::D1 => 86_400,
            Interval::W1 => 7 * 86_400,
            Interval::Mo1 => 31 * 86_400,
        }
    }

    /// Whether `ts` (UTC seconds) can be the stamp of a bar of this interval, judged without a
    /// calendar: intraday stamps fall on whole minutes that are a multiple of the interval from
    /// the top of the hour for sub-hour bars (sessions open on the hour or half hour in every
    /// market DMS serves) and on whole minutes for hourly bars (US hourly bars start at :30);
    /// daily bars at 00:00 UTC; weekly bars on a Monday; monthly bars on the 1st.
    pub fn is_on_grid(self, ts: i64) -> bool {
        match self {
            Interval::M1 | Interval::H1 => ts.rem_euclid(60) == 0,
            Interval::M2 | Interval::M5 | Interval::M15 | Interval::M30 => {
                ts.rem_euclid(60) == 0 && ts.rem_euclid(self.nominal_secs().min(1800)) == 0
            }
            Interval::D1 => ts.rem_euclid(86_400) == 0,
            Interval::W1 => {
                ts.rem_euclid(86_400) == 0 && time::date_of(ts).weekday() == Weekday::Mon
            }
            Interval::Mo1 => ts.rem_euclid(86_400) == 0 && time::date_of(ts).day() == 1,
        }
    }

    /// The DESIGN §1 stamp of a bar of this interval written as `t` on an exchange in `tz`:
    /// the rule of [`time`]'s module doc — intraday [`time::intraday_instant`], daily and longer
    /// [`time::session_date`] snapped by [`Interval::period_start`]. Every input path stamps
    /// through here.
    pub fn stamp(self, t: time::WrittenTime, tz: Tz) -> i64 {
        if self.is_intraday() {
            time::intraday_instant(t)
        } else {
            self.period_start(time::session_date(t, tz))
        }
    }

    /// The stamp of the bar that holds `date` for daily and longer intervals (its session date,
    /// the Monday of its week, the 1st of its month), as 00:00 UTC.
    pub fn period_start(self, date: NaiveDate) -> i64 {
        let d = match self {
            Interval::W1 => {
                date - chrono::Duration::days(date.weekday().num_days_from_monday() as i64)
            }
            Interval::Mo1 => date.with_day(1).unwrap_or(date),
            _ => date,
        };
        time::date_ts(d)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = String;

    fn from_str(s: &str) -> Result<Interval, String> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| {
                format!("unknown interval {s:?} (expected one of 1m 2m 5m 15m 30m 1h 1d 1wk 1mo)")
            })
    }
}

impl serde::Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for i in Interval::ALL {
            assert_eq!(i.as_str().parse::<Interval>().unwrap(), i);
        }
        assert!("60m".parse::<Interval>().is_err());
        assert!("1D".parse::<Interval>().is_err());
    }

    #[test]
    fn grid_checks_follow_the_timestamp_rules() {
        let day = 1_704_153_600; // 2024-01-02 00:00:00Z, a Tuesday
        assert!(Interval::D1.is_on_grid(day));
        assert!(!Interval::D1.is_on_grid(day + 13 * 3600 + 1800));
        assert!(Interval::M30.is_on_grid(day + 14 * 3600 + 1800));
        assert!(!Interval::M30.is_on_grid(day + 14 * 3600 + 900));
        assert!(Interval::H1.is_on_grid(day + 13 * 3600 + 1800));
        assert!(!Interval::M1.is_on_grid(day + 1));
        assert!(!Interval::W1.is_on_grid(day));
        assert!(Interval::W1.is_on_grid(day - 86_400));
        assert!(Interval::Mo1.is_on_grid(1_704_067_200));
        assert!(!Interval::Mo1.is_on_grid(day));
    }

    #[test]
    fn stamps_follow_one_rule_and_snap_to_the_period() {
        use time::WrittenTime::{Instant, Naive};
        let ny = chrono_tz::America::New_York;
        // Wednesday 2024-01-03, given as DMS writes a daily stamp.
        let wed = Instant(1_704_240_000);
        assert_eq!(Interval::D1.stamp(wed, ny), 1_704_240_000);
        assert_eq!(Interval::W1.stamp(wed, ny), 1_704_067_200);
        assert_eq!(Interval::Mo1.stamp(wed, ny), 1_704_067_200);
        // 2024-02-01 02:00Z is still January in New York.
        assert_eq!(
            Interval::Mo1.stamp(Instant(1_706_752_800), ny),
            1_704_067_200
        );
        let naive = NaiveDate::from_ymd_opt(2024, 2, 1)
            .unwrap()
            .and_hms_opt(2, 0, 0)
            .unwrap();
        assert_eq!(Interval::Mo1.stamp(Naive(naive), ny), 1_706_745_600);
        // Intraday: instants as given, zoneless times as UTC.
        assert_eq!(
            Interval::M1.stamp(Instant(1_706_752_800), ny),
            1_706_752_800
        );
        assert_eq!(Interval::M1.stamp(Naive(naive), ny), 1_706_752_800);
    }

    #[test]
    fn period_start_snaps_to_week_and_month() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 3).unwrap(); // Wednesday
        assert_eq!(Interval::W1.period_start(d), 1_704_067_200); // Monday 2024-01-01
        assert_eq!(Interval::Mo1.period_start(d), 1_704_067_200);
        assert_eq!(Interval::D1.period_start(d), 1_704_240_000);
    }
}
