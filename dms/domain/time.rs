//! Timestamp rules (DESIGN §1): UTC epoch seconds everywhere; daily and longer bars stamped at
//! 00:00:00 UTC of the exchange-local session date; dates parsed from `YYYY-MM-DD` or RFC 3339.
//!
//! # The stamping rule
//! Every input path — CSV and Parquet files, `POST /api/v1/import` (which reads the same
//! files), Yahoo and Futu — says when a bar is in one of three ways, a [`WrittenTime`], and
//! the same two functions turn it into a stamp:
//!
//! - **daily and longer** ([`session_date`]): a date is that date; a date-time without a zone
//!   (`2000-03-02 00:00:00`, `2000-03-02T09:30:00`, Futu's `time`) is its date, whatever the
//!   time of day; an instant exactly at 00:00:00 UTC (`2000-03-02T00:00:00Z`, epoch seconds
//!   divisible by 86 400, a Parquet timestamp at midnight UTC) is that UTC date — it is how
//!   DMS itself writes a daily stamp, so every export re-imports to the same bars; any other
//!   instant is its exchange-local date (Yahoo's session-open stamps, `…T14:30:00Z`,
//!   `2024-01-02 00:00:00-05:00` as pandas writes it). [`crate::domain::Interval::stamp`] then
//!   snaps the date to the start of its week or month and stamps 00:00 UTC.
//! - **intraday** ([`intraday_instant`]): an instant is kept as given; a date-time without a
//!   zone is read as UTC, because DESIGN §1 makes every DMS timestamp UTC and DMS's own exports
//!   write UTC; a date is its 00:00 UTC. Sources whose wire format is exchange-local wall time
//!   (Futu) convert it to an instant themselves with [`local_to_utc`].
//!
//! Why midnight UTC is a date and not an instant: read as an instant, `2000-03-02T00:00:00Z` is
//! 19:00 of 2000-03-01 in New York, and DMS's own CSV export of a daily series would re-import
//! one day early. No source stamps a real session at 00:00 UTC unless it is on that UTC date:
//! exchanges east of Greenwich are then already in the session's date (Tokyo opens at 00:00
//! UTC), and west of it the hour is 19:00–23:00 the evening before, which no exchange opens at
//! (Yahoo's late-evening DST slips, which go forward to the next day, are the same date).

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

const DAY: i64 = 86_400;

/// A bar's time as an input wrote it, before the stamping rule (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenTime {
    /// A calendar date: `2000-03-02`, a Parquet `date32`/`date64`.
    Date(NaiveDate),
    /// A date-time without a zone: `2000-03-02 00:00:00`, `2000-03-02T14:30:00`, a Parquet
    /// timestamp without a time zone, Futu's `time`.
    Naive(NaiveDateTime),
    /// An instant, UTC epoch seconds: RFC 3339 with `Z` or an offset, epoch seconds, a Parquet
    /// timestamp with a time zone, Yahoo's `timestamp`.
    Instant(i64),
}

/// The session date of a daily-or-longer bar written as `t`, for an exchange in `tz`.
pub fn session_date(t: WrittenTime, tz: Tz) -> NaiveDate {
    match t {
        WrittenTime::Date(d) => d,
        WrittenTime::Naive(dt) => dt.date(),
        WrittenTime::Instant(ts) if ts.rem_euclid(DAY) == 0 => date_of(ts),
        WrittenTime::Instant(ts) => local_date(ts, tz),
    }
}

/// The start instant of an intraday bar written as `t`: instants as given, a date-time without
/// a zone read as UTC, a date at its 00:00 UTC.
pub fn intraday_instant(t: WrittenTime) -> i64 {
    match t {
        WrittenTime::Date(d) => date_ts(d),
        WrittenTime::Naive(dt) => dt.and_utc().timestamp(),
        WrittenTime::Instant(ts) => ts,
    }
}

/// Parses a bar time as files write it: `YYYY-MM-DD`; integer epoch seconds; a date-time
/// without a zone (`YYYY-MM-DD HH:MM[:SS]`, `T` or a space between); RFC 3339 with `Z` or an
/// offset (`T` or a space). Fractions of a second are accepted only when they are zero: no
/// DMS stamp has one. Errors never quote the text (it is file content).
pub fn parse_written(s: &str) -> Result<WrittenTime, String> {
    let s = s.trim();
    if let Some(t) = fast_utc(s.as_bytes()) {
        return Ok(WrittenTime::Instant(t));
    }
    let bad = || {
        "not a time (expected YYYY-MM-DD, YYYY-MM-DD HH:MM:SS, RFC 3339 or epoch seconds)"
            .to_string()
    };
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(WrittenTime::Date(d));
    }
    if !s.is_empty()
        && s.trim_start_matches(['-', '+'])
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return s
            .parse::<i64>()
            .ok()
            .filter(|t| DateTime::from_timestamp(*t, 0).is_some())
            .map(WrittenTime::Instant)
            .ok_or_else(|| "epoch seconds out of range".to_string());
    }
    let whole = |nanos: u32| {
        if nanos == 0 {
            Ok(())
        } else {
            Err("has a fraction of a second".to_string())
        }
    };
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        whole(d.timestamp_subsec_nanos())?;
        return Ok(WrittenTime::Instant(d.timestamp()));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, format) {
            whole(dt.and_utc().timestamp_subsec_nanos())?;
            return Ok(WrittenTime::Naive(dt));
        }
    }
    Err(bad())
}

/// `YYYY-MM-DDTHH:MM:SSZ` exactly — what DMS itself exports, so the common case of an import
/// — without the general parsers (a quarter of the whole import's CPU otherwise).
fn fast_utc(b: &[u8]) -> Option<i64> {
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut v = 0u32;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(date_ts(date) + i64::from(h * 3600 + m * 60 + sec))
}

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

    use chrono_tz::America::New_York;
    use chrono_tz::Asia::{Hong_Kong, Shanghai};

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn daily(s: &str, tz: Tz) -> NaiveDate {
        session_date(parse_written(s).unwrap(), tz)
    }

    #[test]
    fn a_daily_bar_written_as_a_date_or_a_zoneless_date_time_is_that_date() {
        for tz in [New_York, Hong_Kong, Shanghai, chrono_tz::UTC] {
            for s in [
                "2000-03-02",
                "2000-03-02 00:00:00",
                "2000-03-02T00:00:00",
                "2000-03-02 23:59:59",
                "2000-03-02T14:30",
                "2000-03-02 00:00:00.000",
            ] {
                assert_eq!(daily(s, tz), date("2000-03-02"), "{s} in {tz}");
            }
        }
    }

    #[test]
    fn a_daily_bar_at_midnight_utc_is_that_utc_date_in_every_market() {
        for tz in [New_York, Hong_Kong, Shanghai, chrono_tz::America::Sao_Paulo] {
            for s in [
                "2000-03-02T00:00:00Z",
                "2000-03-02 00:00:00+00:00",
                "2000-03-02T00:00:00.000Z",
                "951955200",
            ] {
                assert_eq!(daily(s, tz), date("2000-03-02"), "{s} in {tz}");
            }
        }
        // The same instant given with an offset is the same instant.
        assert_eq!(
            daily("2000-03-01T19:00:00-05:00", New_York),
            date("2000-03-02")
        );
    }

    #[test]
    fn any_other_daily_instant_is_its_exchange_local_date() {
        // 14:30Z is the US open: 09:30 New York, 22:30 Hong Kong, both on the 2nd.
        assert_eq!(daily("2000-03-02T14:30:00Z", New_York), date("2000-03-02"));
        assert_eq!(daily("2000-03-02T14:30:00Z", Hong_Kong), date("2000-03-02"));
        // 02:00Z is 10:00 in Hong Kong on the 2nd and 21:00 in New York on the 1st.
        assert_eq!(daily("2000-03-02T02:00:00Z", Hong_Kong), date("2000-03-02"));
        assert_eq!(daily("2000-03-02T02:00:00Z", New_York), date("2000-03-01"));
        // pandas' daily index written with the exchange's offset.
        assert_eq!(
            daily("2024-01-02 00:00:00-05:00", New_York),
            date("2024-01-02")
        );
        assert_eq!(
            daily("2024-01-02 00:00:00+08:00", Hong_Kong),
            date("2024-01-02")
        );
        // Yahoo stamps a US daily bar at the open, 2024-01-02 14:30 UTC.
        assert_eq!(
            session_date(WrittenTime::Instant(1_704_205_800), New_York),
            date("2024-01-02")
        );
        // Futu's "2024-01-02 00:00:00" Beijing time, as an instant, is 2024-01-01 16:00 UTC.
        let utc = local_to_utc(date("2024-01-02").and_hms_opt(0, 0, 0).unwrap(), Shanghai);
        assert_eq!(utc, 1_704_153_600 - 8 * 3600);
        assert_eq!(
            session_date(WrittenTime::Instant(utc), Shanghai),
            date("2024-01-02")
        );
    }

    #[test]
    fn intraday_times_are_instants_and_zoneless_ones_are_utc() {
        let open = 1_704_205_800; // 2024-01-02T14:30:00Z
        for s in [
            "2024-01-02T14:30:00Z",
            "2024-01-02T09:30:00-05:00",
            "2024-01-02 14:30:00",
            "2024-01-02T14:30:00",
            "1704205800",
        ] {
            assert_eq!(intraday_instant(parse_written(s).unwrap()), open, "{s}");
        }
        assert_eq!(
            intraday_instant(parse_written("2024-01-02").unwrap()),
            1_704_153_600
        );
    }

    #[test]
    fn the_fast_path_agrees_with_rfc3339() {
        for s in [
            "2024-01-02T14:30:00Z",
            "1900-01-01T00:00:00Z",
            "2099-12-31T23:59:59Z",
            "2024-02-29T12:00:00Z",
        ] {
            assert_eq!(
                fast_utc(s.as_bytes()),
                Some(DateTime::parse_from_rfc3339(s).unwrap().timestamp()),
                "{s}"
            );
        }
        for s in [
            "2023-02-29T12:00:00Z",
            "2024-01-02T24:00:00Z",
            "2024-01-02T14:30:00+01:00",
            "2024-01-02 14:30:00Z",
            "2024-1-02T14:30:00Z",
        ] {
            assert_eq!(fast_utc(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn bad_times_are_refused_without_quoting_them() {
        for s in [
            "02/03/2000",
            "",
            "2000-13-02",
            "yesterday",
            "2000-03-02T25:00:00Z",
        ] {
            let e = parse_written(s).unwrap_err();
            assert!(e.starts_with("not a time"), "{e}");
            assert!(s.is_empty() || !e.contains(s), "{e}");
        }
        assert!(
            parse_written("2024-01-02T14:30:00.5Z")
                .unwrap_err()
                .contains("fraction")
        );
        assert!(
            parse_written("99999999999999999")
                .unwrap_err()
                .contains("out of range")
        );
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
