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
    /// The end of the regular session on `date` (exchange-local date) as a UTC instant: when a
    /// daily bar for that date becomes final. Early closes end sooner, so this is conservative.
    /// Crypto sessions end at 24:00 UTC; FX days at 17:00 New York, the conventional roll.
    pub fn session_close(self, date: chrono::NaiveDate) -> i64 {
        let (hour, minute, tz) = match self {
            Market::Us => (16, 0, self.timezone()),
            Market::Hk => (16, 10, self.timezone()), // closing auction ends by 16:10
            Market::Sh | Market::Sz => (15, 0, self.timezone()),
            Market::Crypto => return super::time::date_ts(date) + 86_400,
            Market::Fx => (17, 0, chrono_tz::America::New_York),
        };
        let local = date.and_hms_opt(hour, minute, 0).expect("valid time");
        super::time::local_to_utc(local, tz)
    }
}
