//! Text building blocks of the JSON and CSV encoders: numbers, timestamps, quoting.

use crate::domain::time;

/// A finite `f64` in its shortest round-trip form (`ryu`); `null` otherwise (never produced by
/// stored bars, which are finite).
#[inline]
pub fn push_f64(out: &mut Vec<u8>, v: f64, buf: &mut ryu::Buffer) {
    if v.is_finite() {
        out.extend_from_slice(buf.format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `ts` as `YYYY-MM-DDTHH:MM:SSZ`, identical to [`time::rfc3339`] but without allocating
/// (this runs once per bar in JSON and CSV output).
#[inline]
pub fn push_rfc3339(out: &mut Vec<u8>, ts: i64) {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        out.extend_from_slice(time::rfc3339(ts).as_bytes());
        return;
    }
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let two = |v: i64| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    let y = y as u32;
    let b = [
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
        two(m)[0],
        two(m)[1],
        b'-',
        two(d)[0],
        two(d)[1],
        b'T',
        two(hh)[0],
        two(hh)[1],
        b':',
        two(mm)[0],
        two(mm)[1],
        b':',
        two(ss)[0],
        two(ss)[1],
        b'Z',
    ];
    out.extend_from_slice(&b);
}

/// [`push_rfc3339`] for runs of timestamps: the `YYYY-MM-DDT` of the last day is kept, so bars
/// of one day (intraday data) only format their time of day.
pub struct TsFormatter {
    day: i64,
    date: [u8; 11],
}

impl Default for TsFormatter {
    fn default() -> TsFormatter {
        TsFormatter {
            day: i64::MIN,
            date: [0; 11],
        }
    }
}

impl TsFormatter {
    #[inline]
    pub fn push(&mut self, out: &mut Vec<u8>, ts: i64) {
        let day = ts.div_euclid(86_400);
        if day != self.day {
            let mut tmp = Vec::with_capacity(20);
            push_rfc3339(&mut tmp, day * 86_400);
            if tmp.len() != 20 {
                // Outside years 0..=9999: the slow, general path.
                out.extend_from_slice(time::rfc3339(ts).as_bytes());
                return;
            }
            self.date.copy_from_slice(&tmp[..11]);
            self.day = day;
        }
        let secs = ts.rem_euclid(86_400);
        let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
        let d = |v: i64| b'0' + v as u8;
        let mut b = [0u8; 20];
        b[..11].copy_from_slice(&self.date);
        b[11..].copy_from_slice(&[
            d(hh / 10),
            d(hh % 10),
            b':',
            d(mm / 10),
            d(mm % 10),
            b':',
            d(ss / 10),
            d(ss % 10),
            b'Z',
        ]);
        out.extend_from_slice(&b);
    }
}

/// Proleptic Gregorian `(year, month, day)` of a count of days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A JSON string literal.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; a `&str` always serialises.
    out.extend_from_slice(
        serde_json::to_string(s)
            .unwrap_or_else(|_| "\"\"".into())
            .as_bytes(),
    );
}

/// A CSV field, quoted when it needs it (RFC 4180).
pub fn push_csv_field(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_the_domain_formatter_everywhere() {
        let mut ts = -62_167_219_200 - 86_400; // the day before 0000-01-01
        let step = 7_919 * 13; // prime-ish stride through years, months, hours and leap days
        while ts < 253_402_300_800 + 86_400 * 2 {
            let mut out = Vec::new();
            push_rfc3339(&mut out, ts);
            assert_eq!(String::from_utf8(out).unwrap(), time::rfc3339(ts), "{ts}");
            ts += step * 97;
        }
        let mut f = TsFormatter::default();
        for ts in (1_704_153_000..1_704_500_000)
            .step_by(599)
            .chain([-1, 0, 86_399, 86_400])
        {
            let mut out = Vec::new();
            f.push(&mut out, ts);
            assert_eq!(String::from_utf8(out).unwrap(), time::rfc3339(ts), "{ts}");
        }
        for ts in [0, 951_782_400, 1_709_164_800, 4_107_542_399] {
            let mut out = Vec::new();
            push_rfc3339(&mut out, ts);
            assert_eq!(String::from_utf8(out).unwrap(), time::rfc3339(ts));
        }
    }
}
