//! Markets: which exchange calendar and time zone a symbol trades on.

use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;

/// A market with its own trading calendar (DESIGN §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Market {
    Us,
    Hk,
    Sh,
    Sz,
    /// Crypto: trades 24x7, sessions are UTC days.
    Crypto,
    /// FX: trades 24x5.
    Fx,
}

impl Market {
    pub const ALL: [Market; 6] = [
        Market::Us,
        Market::Hk,
        Market::Sh,
        Market::Sz,
        Market::Crypto,
        Market::Fx,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Market::Us => "US",
            Market::Hk => "HK",
            Market::Sh => "SH",
            Market::Sz => "SZ",
            Market::Crypto => "CRYPTO",
            Market::Fx => "FX",
        }
    }

    /// The exchange's time zone: the one whose local date is a daily bar's session date.
    pub fn timezone(self) -> Tz {
        match self {
            Market::Us => chrono_tz::America::New_York,
            Market::Hk => chrono_tz::Asia::Hong_Kong,
            Market::Sh | Market::Sz => chrono_tz::Asia::Shanghai,
            Market::Crypto => chrono_tz::UTC,
            Market::Fx => chrono_tz::Europe::London,
        }
    }
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Market {
    type Err = String;

    fn from_str(s: &str) -> Result<Market, String> {
        Market::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown market {s:?} (expected one of US, HK, SH, SZ, CRYPTO, FX)")
            })
    }
}

impl serde::Serialize for Market {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Market {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Market {
    /// When the daily bar of `date` (exchange-local trading date) is final, as a UTC instant:
    /// the end of that day's session in the market's calendar — early on a half day, after
    /// HKEX's closing auction where there is one, 24:00 UTC for crypto, and 24:00 UTC for FX
    /// (its session ends at the 17:00 New York roll, but Yahoo's daily FX bar covers the London
    /// day; see `Calendar`). On a date that is not a session, the regular close of that market.
    pub fn session_close(self, date: chrono::NaiveDate) -> i64 {
        if let Some(s) = super::Calendar::standard(self).session(date) {
            return s.final_at;
        }
        let (hour, minute, tz) = match self {
            Market::Us => (16, 0, self.timezone()),
            Market::Hk => (16, 10, self.timezone()),
            Market::Sh | Market::Sz => (15, 0, self.timezone()),
            Market::Crypto | Market::Fx => return super::time::date_ts(date) + 86_400,
        };
        let local = date.and_hms_opt(hour, minute, 0).expect("valid time");
        super::time::local_to_utc(local, tz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn session_close_follows_the_calendar() {
        // A regular NYSE day ends 16:00 New York = 21:00 UTC in winter.
        assert_eq!(Market::Us.session_close(d(2024, 1, 2)), 1_704_229_200);
        // The day after Thanksgiving ends at 13:00 New York = 18:00 UTC.
        assert_eq!(Market::Us.session_close(d(2024, 11, 29)), 1_732_903_200);
        // HKEX after its closing auction, 16:10 Hong Kong = 08:10 UTC; a half day at 12:10.
        assert_eq!(Market::Hk.session_close(d(2024, 1, 2)), 1_704_183_000);
        assert_eq!(Market::Hk.session_close(d(2024, 12, 24)), 1_735_013_400);
        assert_eq!(Market::Sh.session_close(d(2024, 1, 2)), 1_704_178_800);
        assert_eq!(Market::Crypto.session_close(d(2024, 1, 2)), 1_704_240_000);
        assert_eq!(Market::Fx.session_close(d(2024, 1, 2)), 1_704_240_000);
        // Not a session: the regular close still answers.
        assert_eq!(Market::Us.session_close(d(2024, 1, 1)), 1_704_142_800);
    }
}
