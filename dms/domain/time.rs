//! Timestamp rules (DESIGN §1): UTC epoch seconds everywhere; daily and longer bars stamped at
//! 00:00:00 UTC of the exchange-local session date; dates parsed from `YYYY-MM-DD` or RFC 3339.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The UTC calendar date of an epoch-seconds instant.
pub fn date_of(ts: i64) -> NaiveDate {
    DateTime::from_timestamp(ts, 0)
        .map(|d| d.date_naive())
        .unwrap_or(NaiveDate::MIN)
}

/// 00:00:00 UTC of `date`, in epoch seconds.
pub fn date_ts(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(i64::MIN)
}

/// The exchange-local date of an instant.
pub fn local_date(ts: i64, tz: Tz) -> NaiveDate {
    match DateTime::from_timestamp(ts, 0) {
        Some(d) => d.with_timezone(&tz).date_naive(),
        None => NaiveDate::MIN,
    }
}

/// The stamp of a daily bar whose session contains the instant `ts` on an exchange in `tz`:
/// 00:00 UTC of the exchange-local date.
pub fn session_stamp(ts: i64, tz: Tz) -> i64 {
    date_ts(local_date(ts, tz))
}

/// Exchange-local wall time (`2024-01-02 09:30:00` in `tz`) to a UTC instant. Ambiguous times
/// (DST fall-back) take the earlier instant; times that do not exist (spring-forward) are
/// shifted forward by the gap, as exchanges never stamp bars inside it.
pub fn local_to_utc(local: NaiveDateTime, tz: Tz) -> i64 {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(d) => d.timestamp(),
        chrono::LocalResult::Ambiguous(a, _) => a.timestamp(),
        chrono::LocalResult::None => tz
            .from_local_datetime(&(local + chrono::Duration::hours(1)))
            .earliest()
            .map(|d| d.timestamp())
            .unwrap_or_else(|| local.and_utc().timestamp()),
    }
}

/// RFC 3339 in UTC with a `Z` suffix and whole seconds: `2024-01-02T00:00:00Z`.
pub fn rfc3339(ts: i64) -> String {
    match DateTime::from_timestamp(ts, 0) {
        Some(d) => d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => ts.to_string(),
    }
}

/// Parses a date or instant as the API and CLI accept it: `YYYY-MM-DD` (00:00 UTC that day)
/// or RFC 3339 with any offset.
pub fn parse_instant(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(date_ts(d));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc).timestamp())
        .map_err(|_| format!("bad date {s:?} (expected YYYY-MM-DD or RFC 3339)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_stamps_land_on_the_exchange_local_date() {
        // Yahoo stamps a US daily bar at the open, 2024-01-02 14:30 UTC.
        assert_eq!(
            session_stamp(1_704_205_800, chrono_tz::America::New_York),
            1_704_153_600
        );
        // Futu stamps an HK daily bar "2024-01-02 00:00:00" Beijing time = 2024-01-01 16:00 UTC.
        let local = NaiveDate::from_ymd_opt(2024, 1, 2)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let utc = local_to_utc(local, chrono_tz::Asia::Shanghai);
        assert_eq!(utc, 1_704_153_600 - 8 * 3600);
        assert_eq!(session_stamp(utc, chrono_tz::Asia::Shanghai), 1_704_153_600);
    }

    #[test]
    fn parses_dates_and_rfc3339() {
        assert_eq!(parse_instant("2024-01-02").unwrap(), 1_704_153_600);
        assert_eq!(
            parse_instant("2024-01-02T00:00:00Z").unwrap(),
            1_704_153_600
        );
        assert_eq!(
            parse_instant("2024-01-02T08:00:00+08:00").unwrap(),
            1_704_153_600
        );
        assert!(parse_instant("2024-13-02").is_err());
        assert!(parse_instant("yesterday").is_err());
        assert_eq!(rfc3339(1_704_153_600), "2024-01-02T00:00:00Z");
    }

    #[test]
    fn nonexistent_local_times_shift_forward() {
        // 2024-03-10 02:30 does not exist in New York.
        let local = NaiveDate::from_ymd_opt(2024, 3, 10)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        let utc = local_to_utc(local, chrono_tz::America::New_York);
        assert_eq!(rfc3339(utc), "2024-03-10T07:30:00Z");
    }
}
