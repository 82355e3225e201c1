//! Synthetic Yahoo chart responses, shaped exactly like the recorded fixtures: the same meta
//! fields, `tradingPeriods` as a list of days for intraday, `adjclose` and `events` for daily,
//! and prices that are `f32` values widened to `f64` (`129.0399932861328`), as Yahoo sends them.
//!
//! Self-contained (std, chrono, chrono-tz and `dms::domain`'s calendar only) so that `benches/`
//! can include it with
//! `#[path = "../tests/it/helpers/yahoo_synth.rs"]` as well as the mock server using it. It
//! lives with the tests rather than in the library: it is test data, and the shipped crate
//! should not carry a fake exchange.
//!
//! The exchange is the US one as DMS's calendar has it (America/New_York, 09:30–16:00, NYSE
//! holidays and half days), so that validation's calendar rules accept every bar it sends.
//! Every bar's values depend only on the symbol and the bar's timestamp, so two requests for
//! overlapping periods agree bar for bar (chunked fetches stitch together exactly).

#![allow(dead_code)]

use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::America::New_York;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Synth {
    /// Yahoo's interval name: `1m 2m 5m 15m 30m 60m 1h 1d`.
    pub interval: String,
    /// The clock of the recording: `regularMarketTime` and `currentTradingPeriod` are derived
    /// from it. Bars are generated only before it.
    pub now: i64,
    /// Every bar whose timestamp hashes to 0 modulo this is all-null (Yahoo's "no trade" bars).
    pub null_every: Option<u64>,
    /// A split `(session open instant, ratio)`: as Yahoo does, prices before it are divided
    /// by the ratio (volumes multiplied) and the split is in `events`.
    pub split: Option<(i64, f64)>,
    /// Ranges of instants with no bars (an outage of the vendor's history, a suspension).
    pub omit: Vec<(i64, i64)>,
    /// Vendor corrections `(bar timestamp, factor)`: that bar's prices are multiplied by the
    /// factor (on the basis the bar is served in) and its volume by the same factor.
    pub revisions: Vec<(i64, f64)>,
}

impl Synth {
    pub fn new(interval: &str, now: i64) -> Synth {
        Synth {
            interval: interval.to_string(),
            now,
            null_every: None,
            split: None,
            omit: Vec::new(),
            revisions: Vec::new(),
        }
    }

    /// Revises the bar stamped `ts` (a correction the vendor publishes later): prices and
    /// volume times `factor`, so the bar stays valid.
    pub fn revising(mut self, ts: i64, factor: f64) -> Synth {
        self.revisions.push((ts, factor));
        self
    }

    /// Applies a revision to a bar, when one is set for it.
    fn revise(&self, mut b: SynthBar) -> SynthBar {
        if let Some((_, f)) = self.revisions.iter().find(|(t, _)| *t == b.ts) {
            let p = |v: Option<f64>| v.map(|x| (x * f) as f32 as f64);
            b.open = p(b.open);
            b.high = p(b.high);
            b.low = p(b.low);
            b.close = p(b.close);
            b.adjclose = p(b.adjclose);
            b.volume = b.volume.map(|v| (v as f64 * f) as u64);
        }
        b
    }

    pub fn with_split(mut self, ts: i64, ratio: f64) -> Synth {
        self.split = Some((ts, ratio));
        self
    }

    pub fn omitting(mut self, from: i64, to: i64) -> Synth {
        self.omit.push((from, to));
        self
    }

    fn omitted(&self, ts: i64) -> bool {
        self.omit.iter().any(|(a, b)| (*a..*b).contains(&ts))
    }

    /// Applies the split basis to a bar before it.
    fn adjust(&self, mut b: SynthBar) -> SynthBar {
        if let Some((at, r)) = self.split
            && b.ts < at
        {
            let p = |v: Option<f64>| v.map(|x| (x / r) as f32 as f64);
            b.open = p(b.open);
            b.high = p(b.high);
            b.low = p(b.low);
            b.close = p(b.close);
            b.adjclose = p(b.adjclose);
            b.volume = b.volume.map(|v| (v as f64 * r) as u64);
        }
        b
    }

    pub fn with_null_every(mut self, n: u64) -> Synth {
        self.null_every = Some(n);
        self
    }

    /// Bar length in seconds, `None` for daily.
    fn step(&self) -> Option<i64> {
        match self.interval.as_str() {
            "1m" => Some(60),
            "2m" => Some(120),
            "5m" => Some(300),
            "15m" => Some(900),
            "30m" => Some(1800),
            "60m" | "1h" => Some(3600),
            _ => None,
        }
    }
}

/// One generated bar (`None` values for an all-null bar).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthBar {
    pub ts: i64,
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub close: Option<f64>,
    pub volume: Option<u64>,
    pub adjclose: Option<f64>,
}

/// A US session: (local date, open UTC, close UTC).
fn sessions(from: i64, to: i64) -> Vec<(NaiveDate, i64, i64)> {
    let mut out = Vec::new();
    let Some(first) = Utc.timestamp_opt(from - 86_400, 0).single() else {
        return out;
    };
    let us = dms::domain::Calendar::standard(dms::domain::Market::Us);
    let mut d = first.with_timezone(&New_York).date_naive();
    loop {
        let open = local(d, 9, 30);
        if open >= to {
            break;
        }
        if let Some(session) = us.session(d) {
            out.push((d, session.open, session.close));
        }
        d = d.succ_opt().expect("date in range");
    }
    out
}

fn local(d: NaiveDate, h: u32, m: u32) -> i64 {
    New_York
        .from_local_datetime(&d.and_hms_opt(h, m, 0).expect("valid time"))
        .earliest()
        .expect("no DST gap at session times")
        .timestamp()
}

/// SplitMix64: deterministic noise from a symbol seed and a timestamp.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn seed(symbol: &str) -> u64 {
    symbol.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    })
}

/// A cent price as Yahoo sends it: rounded to `f32`, widened to `f64`.
fn price(cents: u64) -> f64 {
    (cents as f64 / 100.0) as f32 as f64
}

fn bar(sym_seed: u64, ts: i64, daily: bool, null_every: Option<u64>) -> SynthBar {
    let h = mix(sym_seed ^ ts as u64);
    if null_every.is_some_and(|n| n > 0 && h.is_multiple_of(n)) {
        return SynthBar {
            ts,
            open: None,
            high: None,
            low: None,
            close: None,
            volume: None,
            adjclose: None,
        };
    }
    // A slow wave (days) plus noise: 50–250 dollars.
    let base = 15_000.0 + 10_000.0 * ((ts as f64) / 3.0e6).sin();
    let base = base as u64 + (sym_seed % 5_000);
    let o = base + h % 200;
    let c = base + (h >> 8) % 200;
    let hi = o.max(c) + (h >> 16) % 50;
    let lo = o.min(c).saturating_sub((h >> 24) % 50).max(1);
    let close = price(c);
    SynthBar {
        ts,
        open: Some(price(o)),
        high: Some(price(hi)),
        low: Some(price(lo)),
        close: Some(close),
        volume: Some(1_000 + (h >> 32) % 5_000_000),
        adjclose: daily.then_some((close * 0.97) as f32 as f64),
    }
}

/// The bars a request for `[period1, period2)` returns, in time order.
pub fn bars(symbol: &str, synth: &Synth, period1: i64, period2: i64) -> Vec<SynthBar> {
    let end = period2.min(synth.now);
    let s = seed(symbol);
    let mut out = Vec::new();
    for (_, open, close) in sessions(period1, end) {
        match synth.step() {
            Some(step) => {
                let mut t = open;
                while t < close {
                    if t >= period1 && t < end && t + step <= synth.now && !synth.omitted(t) {
                        out.push(synth.revise(synth.adjust(bar(s, t, false, synth.null_every))));
                    }
                    t += step;
                }
            }
            None => {
                if open >= period1 && open < end && close <= synth.now && !synth.omitted(open) {
                    out.push(synth.revise(synth.adjust(bar(s, open, true, synth.null_every))));
                }
            }
        }
    }
    out
}

/// Dividends of a daily series: 0.25 on the first session on or after the 10th of Feb, May,
/// Aug and Nov. Keys and dates are the session open, as Yahoo sends daily events.
pub fn dividends(bars: &[SynthBar]) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    for b in bars {
        let Some(d) = Utc.timestamp_opt(b.ts, 0).single() else {
            continue;
        };
        let d = d.with_timezone(&New_York).date_naive();
        let quarter_month = matches!(d.month(), 2 | 5 | 8 | 11);
        let already = out.last().is_some_and(|(t, _)| {
            Utc.timestamp_opt(*t, 0)
                .single()
                .map(|x| x.with_timezone(&New_York).date_naive())
                .is_some_and(|x| x.year() == d.year() && x.month() == d.month())
        });
        if quarter_month && d.day() >= 10 && !already {
            out.push((b.ts, 0.25));
        }
    }
    out
}

/// The chart response for `symbol` over `[period1, period2)`.
pub fn chart_json(symbol: &str, synth: &Synth, period1: i64, period2: i64) -> String {
    let bars = bars(symbol, synth, period1, period2);
    let intraday = synth.step().is_some();
    let mut s = String::with_capacity(64 + bars.len() * 110);
    s.push_str(r#"{"chart":{"result":[{"meta":{"currency":"USD","symbol":""#);
    s.push_str(symbol);
    let last = bars.iter().rev().find_map(|b| b.close).unwrap_or(100.0);
    // Today's session, or the next one when the market is closed.
    let (today_open, today_close) = sessions(synth.now, synth.now + 7 * 86_400)
        .into_iter()
        .find(|(_, _, close)| *close > synth.now)
        .map(|(_, o, c)| (o, c))
        .unwrap_or((synth.now, synth.now));
    let _ = write!(
        s,
        r#"","exchangeName":"NMS","fullExchangeName":"NasdaqGS","instrumentType":"EQUITY","firstTradeDate":345479400,"regularMarketTime":{rmt},"hasPrePostMarketData":true,"gmtoffset":-18000,"timezone":"EST","exchangeTimezoneName":"America/New_York","regularMarketPrice":{last},"fiftyTwoWeekHigh":{last},"fiftyTwoWeekLow":{last},"regularMarketDayHigh":{last},"regularMarketDayLow":{last},"regularMarketVolume":32129951,"longName":"Synthetic {symbol}","shortName":"Synthetic {symbol}","chartPreviousClose":{last},"priceHint":2,"currentTradingPeriod":{{"pre":{{"timezone":"EST","start":{pre},"end":{today_open},"gmtoffset":-18000}},"regular":{{"timezone":"EST","start":{today_open},"end":{today_close},"gmtoffset":-18000}},"post":{{"timezone":"EST","start":{today_close},"end":{post},"gmtoffset":-18000}}}},"#,
        rmt = synth.now,
        pre = today_open - 5 * 3600 - 1800,
        post = today_close + 4 * 3600,
    );
    if intraday {
        s.push_str(r#""tradingPeriods":["#);
        for (i, (_, open, close)) in sessions(period1, period2.min(synth.now)).iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                r#"[{{"timezone":"EST","end":{close},"start":{open},"gmtoffset":-18000}}]"#
            );
        }
        s.push_str("],");
    }
    let _ = write!(
        s,
        r#""dataGranularity":"{}","range":"","validRanges":["1d","5d","1mo","3mo","6mo","1y","2y","5y","10y","ytd","max"]}}"#,
        synth.interval
    );
    if !bars.is_empty() {
        s.push_str(r#","timestamp":["#);
        join(&mut s, bars.iter().map(|b| Some(b.ts)));
        s.push(']');
        let divs = if intraday {
            Vec::new()
        } else {
            dividends(&bars)
        };
        let split = synth
            .split
            .filter(|(t, _)| !intraday && *t >= period1 && *t < period2.min(synth.now));
        if !divs.is_empty() || split.is_some() {
            s.push_str(r#","events":{"#);
            if !divs.is_empty() {
                s.push_str(r#""dividends":{"#);
                for (i, (t, amount)) in divs.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    let _ = write!(s, r#""{t}":{{"amount":{amount},"date":{t}}}"#);
                }
                s.push('}');
            }
            if let Some((t, r)) = split {
                if !divs.is_empty() {
                    s.push(',');
                }
                let _ = write!(
                    s,
                    r#""splits":{{"{t}":{{"date":{t},"numerator":{r},"denominator":1,"splitRatio":"{r}:1"}}}}"#
                );
            }
            s.push('}');
        }
        s.push_str(r#","indicators":{"quote":[{"open":["#);
        join(&mut s, bars.iter().map(|b| b.open));
        s.push_str(r#"],"high":["#);
        join(&mut s, bars.iter().map(|b| b.high));
        s.push_str(r#"],"low":["#);
        join(&mut s, bars.iter().map(|b| b.low));
        s.push_str(r#"],"close":["#);
        join(&mut s, bars.iter().map(|b| b.close));
        s.push_str(r#"],"volume":["#);
        join(&mut s, bars.iter().map(|b| b.volume));
        s.push_str("]}]");
        if !intraday {
            s.push_str(r#","adjclose":[{"adjclose":["#);
            join(&mut s, bars.iter().map(|b| b.adjclose));
            s.push_str("]}]");
        }
        s.push_str("}}");
    } else {
        s.push_str(r#","indicators":{"quote":[{}]}}"#);
    }
    s.push_str(r#"],"error":null}}"#);
    s
}

fn join<T: std::fmt::Display>(s: &mut String, values: impl Iterator<Item = Option<T>>) {
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push(',');
        }
        match v {
            Some(v) => {
                let _ = write!(s, "{v}");
            }
            None => s.push_str("null"),
        }
    }
}
