//! Chart response → domain: one response body becomes one [`Page`] or one error, never part
//! of one.
//!
//! What a bar goes through, in order (each drop is counted in [`Dropped`]):
//! 1. **Stamp** (DESIGN §1). Intraday bars keep Yahoo's start instant. Daily and longer bars
//!    are dated by DMS's one rule for an instant ([`time::session_date`]) in
//!    `meta.exchangeTimezoneName` (never `gmtoffset`, which describes the exchange at fetch
//!    time), with yfinance's fix for bars Yahoo stamps at 22:00/23:00 local the evening before,
//!    then snapped by [`Interval::period_start`] (daily → the date, weekly → Monday, monthly →
//!    the 1st) and stamped at 00:00 UTC.
//! 2. **Out of range** (`out_of_range`): a stamp outside the request window, anything at or after
//!    `period2` (Yahoo appends a phantom "latest price" bar after the end), and pre/post-market
//!    bars that Yahoo labels as such in `tradingPeriods` although DMS asks with
//!    `includePrePost=false`.
//! 3. **Still forming** (`forming`), never emitted:
//!    - intraday: the bar's end (`start + interval`) is after `now`;
//!    - daily and longer: the last bar is a live snapshot, stamped at `regularMarketTime` or off
//!      the whole-minute grid (completed bars are stamped at the session open); or
//!      `currentTradingPeriod.regular` is a session inside the bar's period that has not ended
//!      at `now`; or the period's last session has not closed at `now` (the same rule as
//!      validation's `incomplete`, so a bar emitted here is never quarantined for it).
//! 4. **No trade** (`no_trade`): open, high, low and close all `null` and volume `null` or 0.
//! 5. Everything else becomes a [`Bar`]: a `null` among the values becomes NaN, so validation
//!    quarantines the bar with a reason instead of it vanishing. `adj_close` is kept for daily
//!    and longer bars only.
//!
//! Corporate actions are dated by the event's own `date` (for multi-period intervals the map key
//! is the start of the containing bar), at 00:00 UTC of the exchange-local date.

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use chrono_tz::Tz;
use serde::de::DeserializeOwned;

use super::arrays;
use super::models::{ChartError, Events, Meta, Period, TradingPeriods};
use super::skeleton::{self, Parts};
use crate::domain::{Bar, CorporateAction, Interval, Market, SourceKind, TimeRange, time};
use crate::source::{Dropped, Page, SourceError};

const SRC: SourceKind = SourceKind::Yahoo;

/// Marks a JSON `null` in a bar column: a quiet NaN with a payload that neither parsing
/// (`"NaN"` gives the canonical NaN) nor arithmetic produces. It never leaves this module:
/// nulls become "no trade" or a canonical NaN before bars are returned.
const NULL: f64 = f64::from_bits(0x7FF8_DEAD_BEEF_0001);

fn is_null(v: f64) -> bool {
    v.to_bits() == NULL.to_bits()
}

/// What a response answers: everything parsing needs to know besides the body.
#[derive(Debug, Clone, Copy)]
pub struct ChartSpec<'a> {
    pub symbol: &'a str,
    pub interval: Interval,
    /// The request window in stamp space (DESIGN §1): only bars stamped inside it are emitted.
    pub range: TimeRange,
    /// The `period2` sent: anything at or after it is Yahoo's phantom bar.
    pub period2: i64,
    /// UTC epoch seconds; judges the still-forming bar.
    pub now: i64,
    /// From the universe entry or the suffix: a fallback time zone, and the session close that
    /// makes a daily bar final (as validation judges it).
    pub market: Option<Market>,
}

/// Parses one chart response body.
pub fn parse_chart(body: &[u8], spec: &ChartSpec<'_>) -> Result<Page, SourceError> {
    let parts = result_parts(spec.symbol, body)?;
    page_from_parts(&parts, spec)
}

/// The one-line summary of a `ping` response: `^GSPC 5904.12 (America/New_York)`.
pub(super) fn ping_summary(symbol: &str, body: &[u8]) -> Result<String, SourceError> {
    let parts = result_parts(symbol, body)?;
    let meta: Meta = small_part(symbol, "meta", parts.meta)?.unwrap_or_default();
    let price = meta
        .regular_market_price
        .and_then(|p| p.0)
        .map_or_else(|| "no price".to_string(), |p| p.to_string());
    let tz = meta
        .exchange_timezone_name
        .as_ref()
        .and_then(|t| t.get().cloned())
        .unwrap_or_else(|| "unknown time zone".to_string());
    Ok(format!("{symbol} {price} ({tz})"))
}

/// The parts of `chart.result[0]`, or the error the response carries instead.
fn result_parts<'a>(symbol: &str, body: &'a [u8]) -> Result<Parts<'a>, SourceError> {
    if looks_like_html(body) {
        return Err(transient(
            "maintenance page (html) instead of json".to_string(),
        ));
    }
    let chart = skeleton::chart(body)
        .map_err(|e| malformed(format!("parse error in chart response for {symbol}: {e}")))?;
    if let Some(parts) = chart.result {
        return Ok(parts);
    }
    match small_part::<ChartError>(symbol, "error", chart.error)? {
        Some(err) => Err(chart_error(symbol, &err)),
        None => Err(SourceError::Remote {
            src: SRC,
            message: format!("chart response for {symbol} has neither result nor error"),
        }),
    }
}

/// Parses one of the small parts of a response (`meta`, `events`, `error`) with serde_json.
fn small_part<T: DeserializeOwned>(
    symbol: &str,
    name: &str,
    raw: Option<&[u8]>,
) -> Result<Option<T>, SourceError> {
    raw.map(|r| {
        serde_json::from_slice(r).map_err(|e| {
            malformed(format!(
                "parse error in chart response for {symbol}: {name}: {e}"
            ))
        })
    })
    .transpose()
}

/// The `chart.error` of a body, for error statuses (404, 400, 422).
pub(super) fn error_of(body: &[u8]) -> Option<ChartError> {
    let chart = skeleton::chart(body).ok()?;
    serde_json::from_slice(chart.error?).ok()
}

/// Maps Yahoo's `chart.error` (in a 200 or in an error status) to a [`SourceError`].
pub(super) fn chart_error(symbol: &str, err: &ChartError) -> SourceError {
    let code = err.code.as_deref().unwrap_or("").trim();
    let description = err
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or(code);
    match code.to_ascii_lowercase().as_str() {
        "not found" => SourceError::UnknownSymbol {
            src: SRC,
            symbol: symbol.to_string(),
        },
        "bad request" | "unprocessable entity" => SourceError::InvalidRequest {
            src: SRC,
            message: format!("{symbol}: {description}"),
        },
        "too many requests" => SourceError::RateLimited {
            src: SRC,
            retry_after: None,
        },
        "internal server error" | "service unavailable" | "bad gateway" | "gateway timeout" => {
            transient(format!("yahoo error {code:?} for {symbol}"))
        }
        _ => SourceError::Remote {
            src: SRC,
            message: format!("yahoo error {code:?} for {symbol}: {description}"),
        },
    }
}

/// Yahoo's maintenance page ("Will be right back") and edge errors are HTML.
pub(super) fn looks_like_html(body: &[u8]) -> bool {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => true,
        Some(b'{') => false,
        _ => contains(body, b"Will be right back"),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn transient(message: String) -> SourceError {
    SourceError::transient(SRC, message)
}

/// A body that does not parse as a chart response: retried like a transfer error.
fn malformed(message: String) -> SourceError {
    SourceError::Malformed { src: SRC, message }
}

fn protocol(spec: &ChartSpec<'_>, what: String) -> SourceError {
    malformed(format!(
        "parse error in chart response for {}: {what}",
        spec.symbol
    ))
}

fn page_from_parts(parts: &Parts<'_>, spec: &ChartSpec<'_>) -> Result<Page, SourceError> {
    let meta: Meta = small_part(spec.symbol, "meta", parts.meta)?.unwrap_or_default();
    let interval = spec.interval;
    if let Some(g) = meta.data_granularity.as_ref().and_then(|g| g.get())
        && !granularity_matches(interval, g)
    {
        return Err(transient(format!(
            "asked for {interval} bars of {}, got {g:?} bars",
            spec.symbol
        )));
    }
    let tz = resolve_tz(&meta, spec)?;
    let ctx = Ctx::new(&meta, spec, tz);

    let mut ts: Vec<i64> = Vec::new();
    let mut bad_ts: Option<usize> = None;
    if let Some(raw) = parts.timestamp {
        ts.reserve(raw.len() / 11 + 1);
        arrays::each_epoch(raw, |i, t| {
            if t.is_none() {
                bad_ts.get_or_insert(i);
            }
            ts.push(t.unwrap_or_default());
        })
        .map_err(|e| protocol(spec, format!("timestamp: {e}")))?;
    }
    if let Some(i) = bad_ts {
        return Err(protocol(spec, format!("timestamp {i} is not a number")));
    }
    let n = ts.len();
    if n > 0
        && [parts.open, parts.high, parts.low, parts.close]
            .iter()
            .all(Option::is_none)
    {
        // Not "no trade": nothing was sent, and a page must not confirm a span it did not see.
        return Err(protocol(
            spec,
            format!("{n} timestamps but no price arrays"),
        ));
    }
    // Columns as plain `f64`s with [`NULL`] for `null`: half the memory of `Option<f64>`,
    // which matters for the ten-year minute responses of backfills and benchmarks.
    let column = |name: &str, raw: Option<&[u8]>| -> Result<Option<Vec<f64>>, SourceError> {
        let Some(raw) = raw else { return Ok(None) };
        let mut values = Vec::with_capacity(n);
        let count = arrays::each_number(raw, |_, v| values.push(v.unwrap_or(NULL)))
            .map_err(|e| protocol(spec, format!("{name}: {e}")))?;
        if count != n {
            return Err(protocol(
                spec,
                format!("{name} has {count} values for {n} timestamps"),
            ));
        }
        Ok(Some(values))
    };
    let opens = column("open", parts.open)?;
    let highs = column("high", parts.high)?;
    let lows = column("low", parts.low)?;
    let closes = column("close", parts.close)?;
    let volumes = column("volume", parts.volume)?;
    let adjs = if interval.is_intraday() {
        None
    } else {
        column("adjclose", parts.adjclose)?
    };
    let at = |c: &Option<Vec<f64>>, i: usize| c.as_ref().map_or(NULL, |v| v[i]);
    // A partial-null bar keeps NaN in place of the nulls: validation quarantines it.
    let value = |v: f64| if is_null(v) { f64::NAN } else { v };

    let mut bars = Vec::with_capacity(n);
    let mut dropped = Dropped::default();
    let mut first_forming: Option<i64> = None;
    for (i, &raw) in ts.iter().enumerate() {
        let stamp = ctx.stamp(raw);
        if raw >= spec.period2 || !spec.range.contains(stamp) || ctx.extended_hours(raw) {
            dropped.out_of_range += 1;
            continue;
        }
        if ctx.is_forming(raw, stamp, i + 1 == n) {
            dropped.forming += 1;
            first_forming = Some(first_forming.map_or(stamp, |f| f.min(stamp)));
            continue;
        }
        let (open, high, low, close, volume) = (
            at(&opens, i),
            at(&highs, i),
            at(&lows, i),
            at(&closes, i),
            at(&volumes, i),
        );
        let no_prices = is_null(open) && is_null(high) && is_null(low) && is_null(close);
        if no_prices && (is_null(volume) || volume == 0.0) {
            dropped.no_trade += 1;
            continue;
        }
        bars.push(Bar {
            ts: stamp,
            open: value(open),
            high: value(high),
            low: value(low),
            close: value(close),
            volume: value(volume),
            adj_close: adjs.as_ref().map(|a| value(a[i])),
            source: SRC,
        });
    }
    if !bars.is_sorted_by_key(|b| b.ts) {
        bars.sort_by_key(|b| b.ts);
    }
    let events: Option<Events> = small_part(spec.symbol, "events", parts.events)?;
    let actions = match events {
        Some(ev) => actions(&ev, &ctx, spec),
        None => Vec::new(),
    };
    let confirmed_end = spec
        .range
        .end()
        .min(ctx.horizon())
        .min(first_forming.unwrap_or(i64::MAX));
    Ok(Page {
        range: TimeRange::new(spec.range.start(), confirmed_end).ok(),
        bars,
        actions,
        dropped,
        parse_time: std::time::Duration::ZERO,
    })
}

/// Yahoo echoes the interval in `meta.dataGranularity`; it has been seen answering 30m requests
/// with 60m bars, which must not be stored as 30m bars.
fn granularity_matches(interval: Interval, g: &str) -> bool {
    match interval {
        Interval::H1 => g == "1h" || g == "60m",
        i => g == i.as_str(),
    }
}

fn resolve_tz(meta: &Meta, spec: &ChartSpec<'_>) -> Result<Tz, SourceError> {
    let named = meta.exchange_timezone_name.as_ref().and_then(|n| n.get());
    if let Some(tz) = named.and_then(|n| n.parse::<Tz>().ok()) {
        return Ok(tz);
    }
    if let Some(m) = spec.market {
        return Ok(m.timezone());
    }
    if spec.interval.is_intraday() {
        // Intraday stamps are instants; the zone only bounds the confirmed range.
        return Ok(chrono_tz::UTC);
    }
    Err(SourceError::Remote {
        src: SRC,
        message: format!(
            "cannot date daily bars of {}: exchange time zone {named:?} unknown and no market set",
            spec.symbol
        ),
    })
}

/// The per-response facts every bar is judged by.
struct Ctx {
    interval: Interval,
    tz: Tz,
    now: i64,
    market: Option<Market>,
    regular_market_time: Option<i64>,
    /// Today's regular session `(start, end)`, when Yahoo sent it.
    current_regular: Option<(i64, i64)>,
    /// Pre- and post-market periods `(start, end)`, sorted by start: only present when Yahoo
    /// sent extended hours.
    extended: Vec<(i64, i64)>,
}

impl Ctx {
    fn new(meta: &Meta, spec: &ChartSpec<'_>, tz: Tz) -> Ctx {
        let current_regular = meta
            .current_trading_period
            .as_ref()
            .and_then(|c| c.get())
            .and_then(|c| c.regular.as_ref()?.get().copied())
            .and_then(period_bounds);
        let mut extended = Vec::new();
        if let Some(TradingPeriods::Split { pre, post }) =
            meta.trading_periods.as_ref().and_then(|t| t.get())
        {
            extended.extend(
                pre.iter()
                    .chain(post)
                    .flatten()
                    .filter_map(|p| period_bounds(*p)),
            );
            extended.sort_unstable();
        }
        Ctx {
            interval: spec.interval,
            tz,
            now: spec.now,
            market: spec.market,
            regular_market_time: meta.regular_market_time.and_then(|e| e.0),
            current_regular,
            extended,
        }
    }

    /// The DESIGN §1 stamp of a bar Yahoo stamped at `raw`.
    fn stamp(&self, raw: i64) -> i64 {
        if self.interval.is_intraday() {
            raw
        } else {
            self.interval.period_start(session_date(raw, self.tz))
        }
    }

    fn extended_hours(&self, raw: i64) -> bool {
        if self.extended.is_empty() {
            return false;
        }
        let i = self.extended.partition_point(|(start, _)| *start <= raw);
        i > 0 && raw < self.extended[i - 1].1
    }

    fn is_forming(&self, raw: i64, stamp: i64, is_last: bool) -> bool {
        if self.interval.is_intraday() {
            return raw + self.interval.nominal_secs() > self.now;
        }
        // Completed daily bars are stamped at the session open, on a whole minute; the live
        // snapshot at the time of the last trade.
        let snapshot = Some(raw) == self.regular_market_time || raw.rem_euclid(60) != 0;
        (is_last && snapshot) || self.period_open(stamp)
    }

    /// Whether the daily-or-longer period stamped `stamp` can still change at `now`.
    fn period_open(&self, stamp: i64) -> bool {
        let (first, last) = period_dates(self.interval, stamp);
        if let Some((start, end)) = self.current_regular {
            let d = time::local_date(start, self.tz);
            if first <= d && d <= last && end > self.now {
                return true;
            }
        }
        // The same rule as validation's `incomplete`, so an emitted bar is never quarantined
        // for it.
        let final_at = match self.market {
            Some(m) => m.session_close(last),
            None => time::date_ts(last) + 86_400,
        };
        final_at > self.now
    }

    /// Stamps below this can be final at `now`; the confirmed range of a page never reaches
    /// past it (a session that has not happened yet is not "confirmed empty").
    fn horizon(&self) -> i64 {
        if self.interval.is_intraday() {
            return self.now - self.interval.nominal_secs() + 1;
        }
        let current = self
            .interval
            .period_start(time::local_date(self.now, self.tz));
        if self.period_open(current) {
            current
        } else {
            time::date_ts(period_dates(self.interval, current).1) + 86_400
        }
    }
}

fn period_bounds(p: Period) -> Option<(i64, i64)> {
    let (s, e) = (p.start?.0?, p.end?.0?);
    (s < e).then_some((s, e))
}

/// The session date of a daily-or-longer bar Yahoo stamped at `raw`: DMS's one rule for an
/// instant ([`time::session_date`]: its exchange-local date, or its UTC date at 00:00 UTC),
/// with one Yahoo fix. Yahoo sometimes stamps such bars at 22:00 or 23:00 local the evening
/// before (DST mistakes); those belong to the next day (yfinance `fix_Yahoo_dst_issue`). The
/// two agree wherever both apply: 22:00–23:59 local is 00:00 UTC only at offsets −1 and −2,
/// where the next local day is that UTC date.
fn session_date(raw: i64, tz: Tz) -> NaiveDate {
    let Some(utc) = DateTime::from_timestamp(raw, 0) else {
        return NaiveDate::MIN;
    };
    let local = utc.with_timezone(&tz);
    if local.hour() >= 22 {
        let date = local.date_naive();
        return date.succ_opt().unwrap_or(date);
    }
    time::session_date(time::WrittenTime::Instant(raw), tz)
}

/// First and last calendar date of the daily-or-longer bar stamped `stamp`.
fn period_dates(interval: Interval, stamp: i64) -> (NaiveDate, NaiveDate) {
    let first = time::date_of(stamp);
    let last = match interval {
        Interval::W1 => first + chrono::Duration::days(6),
        Interval::Mo1 => first
            .with_day(1)
            .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
            .and_then(|d| d.pred_opt())
            .unwrap_or(first),
        _ => first,
    };
    (first, last)
}

fn actions(ev: &Events, ctx: &Ctx, spec: &ChartSpec<'_>) -> Vec<CorporateAction> {
    let mut out = Vec::new();
    // Intraday windows partition instants and daily-or-longer windows partition stamps, so each
    // event lands in exactly one window.
    let in_window = |raw: i64, stamp: i64| {
        if spec.interval.is_intraday() {
            spec.range.contains(raw)
        } else {
            spec.range.contains(stamp)
        }
    };
    let when = |key: &str, date: Option<i64>| date.or_else(|| key.trim().parse().ok());
    let invalid = |kind: &str, key: &str, why: &str| {
        tracing::warn!(
            source = "yahoo",
            symbol = spec.symbol,
            kind,
            key,
            why,
            "ignoring a malformed corporate action"
        );
    };
    let cash = [
        (
            ev.dividends.as_ref(),
            CorporateAction::dividend as fn(i64, f64, SourceKind) -> CorporateAction,
        ),
        (ev.capital_gains.as_ref(), CorporateAction::capital_gain),
    ];
    for (map, make) in cash {
        for (key, e) in map.into_iter().flatten() {
            let Some(raw) = when(key, e.date.and_then(|d| d.0)) else {
                invalid("cash", key, "no date");
                continue;
            };
            let stamp = time::date_ts(session_date(raw, ctx.tz));
            if !in_window(raw, stamp) {
                continue;
            }
            match e.amount.and_then(|a| a.0) {
                Some(a) if a.is_finite() && a > 0.0 => out.push(make(stamp, a, SRC)),
                _ => invalid("cash", key, "amount missing or not positive"),
            }
        }
    }
    for (key, e) in ev.splits.iter().flatten() {
        let Some(raw) = when(key, e.date.and_then(|d| d.0)) else {
            invalid("split", key, "no date");
            continue;
        };
        let stamp = time::date_ts(session_date(raw, ctx.tz));
        if !in_window(raw, stamp) {
            continue;
        }
        match (
            e.numerator.and_then(|n| n.0),
            e.denominator.and_then(|d| d.0),
        ) {
            (Some(n), Some(d)) if n.is_finite() && d.is_finite() && n > 0.0 && d > 0.0 => {
                out.push(CorporateAction::split(stamp, n, d, SRC))
            }
            _ => invalid(
                "split",
                key,
                "numerator or denominator missing or not positive",
            ),
        }
    }
    out.sort_by_key(|a| (a.ts, a.kind));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ActionKind;
    use crate::source::FetchOutcome;

    const AAPL_1D: &str =
        include_str!("../../../tests/fixtures/yahoo/AAPL_1d_2020-08-31_2020-11-07_split_div.json");
    const AAPL_1M: &str = include_str!("../../../tests/fixtures/yahoo/AAPL_1m_2024-10-02.json");
    const WEEKEND: &str =
        include_str!("../../../tests/fixtures/yahoo/AAPL_1m_2025-02-01_weekend_empty.json");
    const TSLA_30M: &str =
        include_str!("../../../tests/fixtures/yahoo/TSLA_30m_2021-11-22_prepost.json");
    const VFINX: &str =
        include_str!("../../../tests/fixtures/yahoo/VFINX_3mo_dividends_capital_gains.json");
    const NOT_FOUND: &str = include_str!("../../../tests/fixtures/yahoo/error_not_found.json");

    fn spec(interval: Interval, start: &str, end: &str, now: &str) -> ChartSpec<'static> {
        let range = TimeRange::new(
            time::parse_instant(start).unwrap(),
            time::parse_instant(end).unwrap(),
        )
        .unwrap();
        ChartSpec {
            symbol: "AAPL",
            interval,
            range,
            period2: range.end(),
            now: time::parse_instant(now).unwrap(),
            market: Some(Market::Us),
        }
    }

    #[test]
    fn daily_bars_land_on_their_session_date_with_actions() {
        let s = spec(Interval::D1, "2020-08-31", "2020-11-07", "2025-02-20");
        let page = parse_chart(AAPL_1D.as_bytes(), &s).unwrap();
        assert_eq!(page.bars.len(), 49);
        assert_eq!(page.dropped, Dropped::default());
        assert_eq!(page.bars[0].ts, time::parse_instant("2020-08-31").unwrap());
        assert_eq!(page.bars[48].ts, time::parse_instant("2020-11-06").unwrap());
        // Exactly as sent (one ULP off without `float_roundtrip`).
        assert_eq!(page.bars[48].low.to_bits(), 116.12999725341797f64.to_bits());
        assert_eq!(
            page.bars[48].close.to_bits(),
            118.69000244140625f64.to_bits()
        );
        assert!(page.bars.iter().all(|b| b.adj_close.is_some()));
        let kinds: Vec<_> = page
            .actions
            .iter()
            .map(|a| (a.kind, time::rfc3339(a.ts)))
            .collect();
        assert_eq!(
            kinds,
            [
                (ActionKind::Split, "2020-08-31T00:00:00Z".to_string()),
                (ActionKind::Dividend, "2020-11-06T00:00:00Z".to_string())
            ]
        );
        assert_eq!(page.range, Some(s.range));
    }

    #[test]
    fn minute_bars_drop_the_null_bar_and_the_phantom_bar() {
        let s = spec(Interval::M1, "2024-10-02", "2024-10-03", "2024-10-04");
        let page = parse_chart(AAPL_1M.as_bytes(), &s).unwrap();
        assert_eq!(page.bars.len(), 389);
        assert_eq!(
            page.dropped,
            Dropped {
                no_trade: 1,
                out_of_range: 1,
                forming: 0
            }
        );
        assert!(page.bars.iter().all(|b| b.adj_close.is_none()));
        assert!(!page.bars.iter().any(|b| b.ts == 1_727_882_100));
    }

    #[test]
    fn an_intraday_bar_that_has_not_ended_is_not_emitted() {
        // 19:59:30 UTC: the 19:59 bar is still forming.
        let s = spec(
            Interval::M1,
            "2024-10-02",
            "2024-10-03",
            "2024-10-02T19:59:30Z",
        );
        let page = parse_chart(AAPL_1M.as_bytes(), &s).unwrap();
        assert_eq!(page.bars.len(), 388);
        assert_eq!(page.dropped.forming, 1);
        assert_eq!(
            page.range.unwrap().end(),
            time::parse_instant("2024-10-02T19:58:31Z").unwrap()
        );
    }

    #[test]
    fn the_live_daily_bar_is_not_emitted_while_its_session_is_open() {
        // Rewrite the last bar as Yahoo's live snapshot: stamped at regularMarketTime.
        let live = AAPL_1D.replace("1604673000]", "1739998801]");
        let s = spec(
            Interval::D1,
            "2020-08-31",
            "2025-03-01",
            "2025-02-20T15:00:00Z",
        );
        let page = parse_chart(live.as_bytes(), &s).unwrap();
        assert_eq!(page.bars.len(), 48);
        assert_eq!(page.dropped.forming, 1);
        // Nothing after the forming bar is claimed as confirmed.
        assert_eq!(
            page.range.unwrap().end(),
            time::parse_instant("2025-02-19").unwrap()
        );

        // A bar on today's date while currentTradingPeriod.regular has not ended.
        let today = AAPL_1D.replace("1604673000]", "1740061800]");
        let s = spec(
            Interval::D1,
            "2020-08-31",
            "2025-03-01",
            "2025-02-20T15:00:00Z",
        );
        assert_eq!(
            parse_chart(today.as_bytes(), &s).unwrap().dropped.forming,
            1
        );
        // After the close it is final.
        let s = spec(
            Interval::D1,
            "2020-08-31",
            "2025-03-01",
            "2025-02-20T21:30:00Z",
        );
        let page = parse_chart(today.as_bytes(), &s).unwrap();
        assert_eq!(page.dropped.forming, 0);
        assert_eq!(
            page.bars.last().unwrap().ts,
            time::parse_instant("2025-02-20").unwrap()
        );
    }

    #[test]
    fn pre_and_post_market_bars_are_not_emitted() {
        let s = spec(
            Interval::M30,
            "2021-11-22",
            "2021-11-23",
            "2021-11-23T06:00:00Z",
        );
        let page = parse_chart(TSLA_30M.as_bytes(), &s).unwrap();
        assert_eq!(page.bars.len(), 13);
        assert_eq!(page.dropped.out_of_range, 17);
        assert_eq!(time::rfc3339(page.bars[0].ts), "2021-11-22T14:30:00Z");
        assert_eq!(time::rfc3339(page.bars[12].ts), "2021-11-22T20:30:00Z");
    }

    #[test]
    fn an_empty_range_is_an_empty_page_that_still_confirms_its_span() {
        let s = spec(Interval::M1, "2025-02-01", "2025-02-02", "2025-02-20");
        let page = parse_chart(WEEKEND.as_bytes(), &s).unwrap();
        assert!(page.bars.is_empty() && page.actions.is_empty());
        assert_eq!(page.range, Some(s.range));
        // The other empty form: empty arrays.
        let body = r#"{"chart":{"result":[{"meta":{"exchangeTimezoneName":"America/Sao_Paulo"},
            "timestamp":[],"indicators":{"quote":[{"open":[],"close":[]}]}}],"error":null}}"#;
        assert!(parse_chart(body.as_bytes(), &s).unwrap().bars.is_empty());
    }

    #[test]
    fn multi_period_events_are_dated_by_their_date_not_their_key() {
        let range = TimeRange::new(0, time::parse_instant("2026-01-01").unwrap()).unwrap();
        let s = ChartSpec {
            symbol: "VFINX",
            interval: Interval::Mo1,
            range,
            period2: range.end(),
            now: time::parse_instant("2025-10-30").unwrap(),
            market: Some(Market::Us),
        };
        let body = VFINX.replace("\"dataGranularity\":\"3mo\"", "\"dataGranularity\":\"1mo\"");
        let page = parse_chart(body.as_bytes(), &s).unwrap();
        let count = |k| page.actions.iter().filter(|a| a.kind == k).count();
        assert_eq!(count(ActionKind::Dividend), 164);
        assert_eq!(count(ActionKind::CapitalGain), 21);
        // Key 560059200 (1987-10-01) holds a capital gain dated 567786600 (1987-12-29).
        let cg = page
            .actions
            .iter()
            .find(|a| a.kind == ActionKind::CapitalGain)
            .unwrap();
        assert_eq!(time::rfc3339(cg.ts), "1987-12-29T00:00:00Z");
        assert!((cg.amount - 0.17).abs() < 1e-12);
        // Bars stamped 00:00 New York snap to the 1st; the current quarter is still forming.
        assert!(page.bars.iter().all(|b| Interval::Mo1.is_on_grid(b.ts)));
        assert_eq!(page.dropped.forming, 1);
    }

    #[test]
    fn partial_null_bars_become_nan_so_validation_quarantines_them() {
        let body = r#"{"chart":{"result":[{"meta":{"exchangeTimezoneName":"America/New_York"},
            "timestamp":[1727875800,1727875860,1727875920],
            "indicators":{"quote":[{"open":[1.5,null,null],"high":[2,null,null],"low":[1,null,null],
            "close":[null,null,"NaN"],"volume":[10,null,0]}]}}],"error":null}}"#;
        let s = spec(Interval::M1, "2024-10-02", "2024-10-03", "2024-10-04");
        let page = parse_chart(body.as_bytes(), &s).unwrap();
        assert_eq!(page.bars.len(), 2);
        assert_eq!(page.dropped.no_trade, 1);
        assert!(page.bars[0].close.is_nan() && page.bars[0].open == 1.5);
        assert!(page.bars[1].open.is_nan() && page.bars[1].close.is_nan());
    }

    #[test]
    fn daily_bars_stamped_late_the_evening_before_move_to_the_next_day() {
        // 2022-01-03 23:00 in Sao Paulo (02:00Z on the 4th) is the 2022-01-04 session.
        let body = r#"{"chart":{"result":[{"meta":{"exchangeTimezoneName":"America/Sao_Paulo","dataGranularity":"1d"},
            "timestamp":[1641261600],
            "indicators":{"quote":[{"open":[1],"high":[1],"low":[1],"close":[1],"volume":[1]}]}}],"error":null}}"#;
        let mut s = spec(Interval::D1, "2022-01-01", "2022-02-01", "2022-03-01");
        s.market = None;
        let page = parse_chart(body.as_bytes(), &s).unwrap();
        assert_eq!(time::rfc3339(page.bars[0].ts), "2022-01-04T00:00:00Z");
    }

    #[test]
    fn yahoo_s_evening_fix_agrees_with_the_midnight_utc_rule() {
        // 2018-01-04 00:00Z is 22:00 on the 3rd in Sao Paulo (then on DST, UTC−2): both say the 4th.
        let tz: Tz = "America/Sao_Paulo".parse().unwrap();
        let raw = time::parse_instant("2018-01-04T00:00:00Z").unwrap();
        let want = NaiveDate::from_ymd_opt(2018, 1, 4).unwrap();
        assert_eq!(session_date(raw, tz), want);
        assert_eq!(
            time::session_date(time::WrittenTime::Instant(raw), tz),
            want
        );
        // Tokyo opens at 00:00 UTC: the same date either way.
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        assert_eq!(session_date(raw, tokyo), want);
        assert_eq!(time::local_date(raw, tokyo), want);
    }

    #[test]
    fn errors_map_to_source_errors() {
        let s = spec(Interval::D1, "2020-08-31", "2020-11-07", "2025-02-20");
        let e = parse_chart(NOT_FOUND.as_bytes(), &s).unwrap_err();
        assert_eq!(e.to_string(), "yahoo: symbol AAPL not found");
        let e = parse_chart(&AAPL_1D.as_bytes()[..3000], &s).unwrap_err();
        assert!(
            e.is_retryable() && e.outcome() == FetchOutcome::ParseError,
            "{e}"
        );
        let e = parse_chart(b"<html>Will be right back</html>", &s).unwrap_err();
        assert!(
            e.is_retryable() && e.outcome() == FetchOutcome::ServerError,
            "{e}"
        );
        let e = parse_chart(b"Edge: Will be right back", &s).unwrap_err();
        assert!(e.is_retryable(), "{e}");
        let wrong = AAPL_1D.replace("\"dataGranularity\":\"1d\"", "\"dataGranularity\":\"1wk\"");
        let e = parse_chart(wrong.as_bytes(), &s).unwrap_err();
        assert!(e.to_string().contains("asked for 1d bars"), "{e}");
        let no_prices = r#"{"chart":{"result":[{"meta":{"exchangeTimezoneName":"America/New_York"},
            "timestamp":[1598880600,1598967000],"indicators":{"quote":[{"volume":[1,2]}]}}]}}"#;
        let e = parse_chart(no_prices.as_bytes(), &s).unwrap_err();
        assert!(
            e.to_string().contains("2 timestamps but no price arrays"),
            "{e}"
        );
        let misaligned = AAPL_1D.replace("[1598880600,", "[");
        let e = parse_chart(misaligned.as_bytes(), &s).unwrap_err();
        assert!(e.to_string().contains("values for 48 timestamps"), "{e}");
        let unprocessable = r#"{"chart":{"result":null,"error":{"code":"Unprocessable Entity","description":"1m data not available for startTime=1 and endTime=2. The requested range must be within the last 30 days."}}}"#;
        let e = parse_chart(unprocessable.as_bytes(), &s).unwrap_err();
        assert!(matches!(e, SourceError::InvalidRequest { .. }));
        assert!(e.to_string().contains("within the last 30 days"), "{e}");
    }
}
