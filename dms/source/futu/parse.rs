//! K-lines → domain bars, and the request window in OpenD's terms.
//!
//! The rules (reasoning in the [module doc of `futu`](super)):
//! - `time` is market-local wall time; it is converted with the market's time zone
//!   ([`Market::timezone`], DST-aware through [`time::local_to_utc`]).
//! - Daily, weekly and monthly bars: the date of `time` is the session date (DMS's one rule
//!   for a zoneless date-time, [`time::session_date`]); the bar is stamped at 00:00 UTC of the
//!   period's start ([`Interval::stamp`]).
//! - Intraday bars: `time` labels the bar's **end**; the bar is stamped at its start,
//!   `end − interval`, but never before the previous bar's end (HK's 11:30–12:00 hourly bar
//!   starts at 11:30, not 11:00) and never before the regular open when it ends at or after it
//!   (the opening-auction bar labelled 09:30 starts at 09:30). Bars that land on the same stamp
//!   are merged in time order (open of the first, close of the last, extreme high and low,
//!   summed volume): the auction bar folds into the first bar of the session.
//! - `isBlank` points and bars without any price are dropped as no-trade; a bar missing only
//!   some prices keeps them as NaN, so validation quarantines it rather than DMS guessing.
//! - `hpVolume` is preferred over `volume`; no volume at all counts as 0, as in the SDK.
//! - Bars outside the requested range and bars still forming at `now` are dropped and counted.
//!
//! Because a merge can span a page boundary, the parser holds back the last intraday bar of each
//! page until the next page (or [`KLineParser::finish`]) shows whether it continues.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use chrono_tz::Tz;

use super::proto::common::KLine;
use crate::domain::{Bar, Interval, Market, SourceKind, TimeRange, time};
use crate::source::Dropped;

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The regular session open, local time, of the markets Futu serves under DMS's code rules:
/// HK, Shanghai, Shenzhen and US regular sessions all open at 09:30 (HK since March 2011).
fn regular_open(market: Market) -> Option<NaiveTime> {
    match market {
        Market::Us | Market::Hk | Market::Sh | Market::Sz => NaiveTime::from_hms_opt(9, 30, 0),
        Market::Crypto | Market::Fx => None,
    }
}

/// The bars of one reply, ready for a [`crate::source::Page`].
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub bars: Vec<Bar>,
    pub dropped: Dropped,
}

/// Turns the pages of one download into bars; see the module doc for the rules.
#[derive(Debug)]
pub struct KLineParser {
    interval: Interval,
    market: Market,
    tz: Tz,
    range: TimeRange,
    now: i64,
    /// The label (end) of the previous intraday bar.
    prev_label: Option<NaiveDateTime>,
    /// The last intraday bar, held back in case the next one shares its stamp.
    carry: Option<Bar>,
    /// Whether a `timestamp` disagreeing with `time` was already reported.
    warned_timestamp: bool,
}

impl KLineParser {
    pub fn new(interval: Interval, market: Market, range: TimeRange, now: i64) -> KLineParser {
        KLineParser {
            interval,
            market,
            tz: market.timezone(),
            range,
            now,
            prev_label: None,
            carry: None,
            warned_timestamp: false,
        }
    }

    /// Parses one reply's K-lines. Either the whole page parses or nothing is returned.
    pub fn page(&mut self, klines: &[KLine]) -> Result<Parsed, String> {
        let mut sorted: Vec<&KLine> = klines.iter().collect();
        // Fixed-width `yyyy-MM-dd HH:mm:ss` sorts chronologically; OpenD sends ascending
        // order anyway, this only makes the merge rules independent of it.
        sorted.sort_by(|a, b| a.time.cmp(&b.time));
        let labels = sorted
            .iter()
            .map(|k| parse_time(&k.time))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Parsed::default();
        for (k, label) in sorted.into_iter().zip(labels) {
            if k.is_blank {
                out.dropped.no_trade += 1;
                continue;
            }
            let prices = [k.open_price, k.high_price, k.low_price, k.close_price];
            if prices.iter().all(Option::is_none) {
                out.dropped.no_trade += 1;
                continue;
            }
            self.check_timestamp(k, label);
            let bar = Bar {
                ts: self.stamp(label),
                open: k.open_price.unwrap_or(f64::NAN),
                high: k.high_price.unwrap_or(f64::NAN),
                low: k.low_price.unwrap_or(f64::NAN),
                close: k.close_price.unwrap_or(f64::NAN),
                volume: k.hp_volume.or(k.volume.map(|v| v as f64)).unwrap_or(0.0),
                adj_close: None,
                source: SourceKind::Futu,
            };
            self.push(bar, &mut out);
        }
        Ok(out)
    }

    /// Releases the bar held back after the last page.
    pub fn finish(&mut self, out: &mut Parsed) {
        if let Some(bar) = self.carry.take() {
            self.emit(bar, out);
        }
    }

    fn stamp(&mut self, label: NaiveDateTime) -> i64 {
        if !self.interval.is_intraday() {
            // DMS's one rule: a zoneless date-time is its date.
            return self
                .interval
                .stamp(time::WrittenTime::Naive(label), self.tz);
        }
        let mut start = label - chrono::Duration::seconds(self.interval.nominal_secs());
        if let Some(prev) = self.prev_label
            && prev > start
            && prev < label
        {
            start = prev;
        }
        if let Some(open) = regular_open(self.market) {
            let open = label.date().and_time(open);
            if start < open && label >= open {
                start = open;
            }
        }
        self.prev_label = Some(label);
        time::local_to_utc(start, self.tz)
    }

    fn push(&mut self, bar: Bar, out: &mut Parsed) {
        if !self.interval.is_intraday() {
            // One K-line per period: nothing to merge, nothing to hold back.
            self.emit(bar, out);
            return;
        }
        match self.carry.take() {
            Some(mut c) if c.ts == bar.ts => {
                c.high = c.high.max(bar.high);
                c.low = c.low.min(bar.low);
                c.close = bar.close;
                c.volume += bar.volume;
                self.carry = Some(c);
            }
            Some(c) => {
                self.emit(c, out);
                self.carry = Some(bar);
            }
            None => self.carry = Some(bar),
        }
    }

    fn emit(&self, bar: Bar, out: &mut Parsed) {
        if !self.range.contains(bar.ts) {
            out.dropped.out_of_range += 1;
        } else if self.final_at(bar.ts) > self.now {
            out.dropped.forming += 1;
        } else {
            out.bars.push(bar);
        }
    }

    /// When the bar stamped `ts` can no longer change: its end for intraday bars, the close of
    /// the last session it covers otherwise.
    fn final_at(&self, ts: i64) -> i64 {
        if self.interval.is_intraday() {
            return ts + self.interval.nominal_secs();
        }
        let first = time::date_of(ts);
        let last = match self.interval {
            Interval::W1 => first + chrono::Duration::days(6),
            Interval::Mo1 => first
                .checked_add_months(chrono::Months::new(1))
                .map_or(first, |d| d - chrono::Duration::days(1)),
            _ => first,
        };
        self.market.session_close(last)
    }

    /// OpenD also sends `timestamp`, the Unix seconds of `time`. A disagreement means the time
    /// zone assumption is wrong for this market: reported once per download, not fatal.
    fn check_timestamp(&mut self, k: &KLine, label: NaiveDateTime) {
        let Some(sent) = k.timestamp else {
            return;
        };
        let ours = time::local_to_utc(label, self.tz);
        if !self.warned_timestamp && (sent - ours as f64).abs() >= 1.0 {
            self.warned_timestamp = true;
            tracing::warn!(
                source = "futu",
                time = %k.time,
                timestamp = sent,
                expected = ours,
                tz = %self.tz,
                "k-line timestamp disagrees with its local time"
            );
        }
    }
}

fn parse_time(s: &str) -> Result<NaiveDateTime, String> {
    NaiveDateTime::parse_from_str(s, TIME_FORMAT)
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_time(NaiveTime::MIN)))
        .map_err(|_| format!("cannot parse k-line time {s:?} (expected yyyy-MM-dd HH:mm:ss)"))
}

/// The earliest and latest instants a request window may name (1970-01-01 and a margin
/// before year 10000), so that `TimeRange::ALL` still formats.
const MIN_TS: i64 = 0;
const MAX_TS: i64 = 253_402_300_799 - 40 * 86_400;

/// `beginTime` and `endTime` (market-local, inclusive) covering every bar stamped in `range`,
/// or `None` when the range holds no representable instant.
///
/// Intraday: bars are labelled by their end, so the window runs from `range.start` (which
/// keeps an opening-auction bar labelled exactly at the open) to the label of the last bar
/// starting before `range.end`. Daily and longer: whole dates, widened at the end by the length
/// of a week or month because those bars may be labelled with any date of their period. Bars
/// the window catches outside `range` are dropped by the parser.
pub fn request_window(interval: Interval, tz: Tz, range: TimeRange) -> Option<(String, String)> {
    let start = range.start().clamp(MIN_TS, MAX_TS);
    let end = range.end().clamp(MIN_TS, MAX_TS);
    if start >= end {
        return None;
    }
    let local = |ts: i64| {
        chrono::DateTime::from_timestamp(ts, 0).map(|d| d.with_timezone(&tz).naive_local())
    };
    let (begin, end) = if interval.is_intraday() {
        (local(start)?, local(end + interval.nominal_secs() - 1)?)
    } else {
        let widen = match interval {
            Interval::W1 => 6,
            Interval::Mo1 => 31,
            _ => 0,
        };
        let first = time::date_of(start);
        let last = time::date_of(end - 1) + chrono::Duration::days(widen);
        (
            first.and_time(NaiveTime::MIN),
            last.and_hms_opt(23, 59, 59)?,
        )
    };
    Some((
        begin.format(TIME_FORMAT).to_string(),
        end.format(TIME_FORMAT).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::parse_instant;

    fn kl(time: &str, o: f64, h: f64, l: f64, c: f64, v: i64) -> KLine {
        KLine {
            time: time.into(),
            is_blank: false,
            open_price: Some(o),
            high_price: Some(h),
            low_price: Some(l),
            close_price: Some(c),
            volume: Some(v),
            ..Default::default()
        }
    }

    fn ts(s: &str) -> i64 {
        parse_instant(s).unwrap()
    }

    fn all(interval: Interval, market: Market) -> KLineParser {
        KLineParser::new(interval, market, TimeRange::ALL, i64::MAX / 8)
    }

    fn parse(p: &mut KLineParser, pages: &[Vec<KLine>]) -> Parsed {
        let mut out = Parsed::default();
        for page in pages {
            let got = p.page(page).unwrap();
            out.bars.extend(got.bars);
            out.dropped += got.dropped;
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn daily_bars_land_on_their_session_date() {
        let mut p = all(Interval::D1, Market::Hk);
        let got = parse(
            &mut p,
            &[vec![
                kl("2024-01-02 00:00:00", 1.0, 2.0, 0.5, 1.5, 10),
                kl("2024-01-03 00:00:00", 1.0, 2.0, 0.5, 1.5, 10),
            ]],
        );
        let stamps: Vec<i64> = got.bars.iter().map(|b| b.ts).collect();
        assert_eq!(
            stamps,
            [ts("2024-01-02T00:00:00Z"), ts("2024-01-03T00:00:00Z")]
        );
    }

    #[test]
    fn weekly_and_monthly_bars_snap_to_the_period_start() {
        let mut p = all(Interval::W1, Market::Us);
        // Whatever day labels the week (here the Friday), the stamp is its Monday.
        let got = parse(
            &mut p,
            &[vec![kl("2024-01-05 00:00:00", 1.0, 2.0, 0.5, 1.5, 1)]],
        );
        assert_eq!(got.bars[0].ts, ts("2024-01-01T00:00:00Z"));
        let mut p = all(Interval::Mo1, Market::Us);
        let got = parse(
            &mut p,
            &[vec![kl("2024-02-29 00:00:00", 1.0, 2.0, 0.5, 1.5, 1)]],
        );
        assert_eq!(got.bars[0].ts, ts("2024-02-01T00:00:00Z"));
    }

    #[test]
    fn the_hk_opening_auction_bar_folds_into_the_first_minute() {
        let mut p = all(Interval::M1, Market::Hk);
        let got = parse(
            &mut p,
            &[vec![
                kl("2024-01-02 09:30:00", 100.0, 100.0, 100.0, 100.0, 500),
                kl("2024-01-02 09:31:00", 100.2, 101.0, 99.0, 100.5, 40),
                kl("2024-01-02 09:32:00", 100.5, 100.6, 100.1, 100.2, 30),
            ]],
        );
        assert_eq!(got.bars.len(), 2);
        let b = got.bars[0];
        assert_eq!(b.ts, ts("2024-01-02T01:30:00Z"));
        assert_eq!(
            (b.open, b.high, b.low, b.close, b.volume),
            (100.0, 101.0, 99.0, 100.5, 540.0)
        );
        assert_eq!(got.bars[1].ts, ts("2024-01-02T01:31:00Z"));
    }

    #[test]
    fn the_auction_merge_survives_a_page_boundary() {
        let mut p = all(Interval::M1, Market::Hk);
        let got = parse(
            &mut p,
            &[
                vec![kl("2024-01-02 09:30:00", 100.0, 100.0, 100.0, 100.0, 500)],
                vec![kl("2024-01-02 09:31:00", 100.2, 101.0, 99.0, 100.5, 40)],
            ],
        );
        assert_eq!(got.bars.len(), 1);
        assert_eq!(got.bars[0].volume, 540.0);
    }

    #[test]
    fn an_auction_bar_without_a_following_minute_is_kept_at_the_open() {
        let mut p = all(Interval::M1, Market::Sh);
        let got = parse(
            &mut p,
            &[vec![
                kl("2024-01-02 09:30:00", 10.0, 10.0, 10.0, 10.0, 5),
                kl("2024-01-02 09:35:00", 10.1, 10.1, 10.1, 10.1, 1),
            ]],
        );
        let stamps: Vec<i64> = got.bars.iter().map(|b| b.ts).collect();
        assert_eq!(
            stamps,
            [ts("2024-01-02T01:30:00Z"), ts("2024-01-02T01:34:00Z")]
        );
    }

    #[test]
    fn hourly_bars_cut_short_by_the_lunch_break_start_at_the_previous_end() {
        let mut p = all(Interval::H1, Market::Hk);
        let day = |t: &str| kl(&format!("2024-01-02 {t}"), 1.0, 2.0, 0.5, 1.5, 1);
        let got = parse(
            &mut p,
            &[vec![
                day("10:30:00"),
                day("11:30:00"),
                day("12:00:00"),
                day("14:00:00"),
            ]],
        );
        let stamps: Vec<i64> = got.bars.iter().map(|b| b.ts).collect();
        // Local 09:30, 10:30, 11:30, 13:00 in UTC+8.
        assert_eq!(
            stamps,
            [
                ts("2024-01-02T01:30:00Z"),
                ts("2024-01-02T02:30:00Z"),
                ts("2024-01-02T03:30:00Z"),
                ts("2024-01-02T05:00:00Z"),
            ]
        );
    }

    #[test]
    fn us_minute_bars_follow_daylight_saving() {
        let mut p = all(Interval::M1, Market::Us);
        let got = parse(
            &mut p,
            &[vec![
                kl("2024-03-08 09:31:00", 1.0, 2.0, 0.5, 1.5, 1),
                kl("2024-03-11 09:31:00", 1.0, 2.0, 0.5, 1.5, 1),
            ]],
        );
        let stamps: Vec<i64> = got.bars.iter().map(|b| b.ts).collect();
        assert_eq!(
            stamps,
            [ts("2024-03-08T14:30:00Z"), ts("2024-03-11T13:30:00Z")]
        );
    }

    #[test]
    fn blanks_empty_bars_range_and_forming_bars_are_counted_not_kept() {
        let range = TimeRange::new(ts("2024-01-02T01:31:00Z"), ts("2024-01-02T01:34:00Z")).unwrap();
        let now = ts("2024-01-02T01:33:30Z");
        let mut p = KLineParser::new(Interval::M1, Market::Hk, range, now);
        let blank = KLine {
            time: "2024-01-02 09:33:00".into(),
            is_blank: true,
            ..Default::default()
        };
        let empty = KLine {
            time: "2024-01-02 09:33:30".into(),
            ..Default::default()
        };
        let got = parse(
            &mut p,
            &[vec![
                kl("2024-01-02 09:31:00", 1.0, 2.0, 0.5, 1.5, 1), // starts 09:30: before range
                kl("2024-01-02 09:32:00", 1.0, 2.0, 0.5, 1.5, 1), // kept
                blank,
                empty,
                kl("2024-01-02 09:34:00", 1.0, 2.0, 0.5, 1.5, 1), // 09:33–09:34: forming
                kl("2024-01-02 09:35:00", 1.0, 2.0, 0.5, 1.5, 1), // starts at range end
            ]],
        );
        assert_eq!(got.bars.len(), 1);
        assert_eq!(got.bars[0].ts, ts("2024-01-02T01:31:00Z"));
        assert_eq!(
            got.dropped,
            Dropped {
                no_trade: 2,
                out_of_range: 2,
                forming: 1
            }
        );
    }

    #[test]
    fn hp_volume_wins_and_missing_prices_become_nan() {
        let mut p = all(Interval::D1, Market::Us);
        let k = KLine {
            hp_volume: Some(1234.5),
            high_price: None,
            ..kl("2024-01-02 00:00:00", 1.0, 2.0, 0.5, 1.5, 1)
        };
        let got = parse(&mut p, &[vec![k]]);
        assert_eq!(got.bars[0].volume, 1234.5);
        assert!(got.bars[0].high.is_nan());
    }

    #[test]
    fn a_bad_time_fails_the_whole_page() {
        let mut p = all(Interval::D1, Market::Us);
        let err = p
            .page(&[
                kl("2024-01-02 00:00:00", 1.0, 2.0, 0.5, 1.5, 1),
                kl("02/01/2024", 1.0, 2.0, 0.5, 1.5, 1),
            ])
            .unwrap_err();
        assert!(err.contains("\"02/01/2024\""), "{err}");
    }

    #[test]
    fn request_windows_are_market_local_and_cover_end_labels() {
        let r = TimeRange::new(ts("2024-03-08T14:30:00Z"), ts("2024-03-11T20:00:00Z")).unwrap();
        assert_eq!(
            request_window(Interval::M1, chrono_tz::America::New_York, r),
            Some(("2024-03-08 09:30:00".into(), "2024-03-11 16:00:59".into()))
        );
        let r = TimeRange::new(ts("2024-01-02"), ts("2024-01-05")).unwrap();
        assert_eq!(
            request_window(Interval::D1, chrono_tz::Asia::Hong_Kong, r),
            Some(("2024-01-02 00:00:00".into(), "2024-01-04 23:59:59".into()))
        );
        assert_eq!(
            request_window(Interval::W1, chrono_tz::Asia::Hong_Kong, r)
                .unwrap()
                .1,
            "2024-01-10 23:59:59"
        );
        let all = request_window(Interval::D1, chrono_tz::UTC, TimeRange::ALL).unwrap();
        assert_eq!(all.0, "1970-01-01 00:00:00");
        let before = TimeRange::new(-100, -10).unwrap();
        assert_eq!(request_window(Interval::D1, chrono_tz::UTC, before), None);
    }
}
