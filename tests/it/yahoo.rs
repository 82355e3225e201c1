//! The Yahoo source end to end against the local mock: fetch → validate → embedded store →
//! read back, for every recorded fixture; each fault mode's error and retry behaviour; and the
//! intraday windows (refused before sending, chunked, clipped).
//!
//! Expected values are computed here from the fixture JSON, independently of the parser, and
//! compared bit for bit. The tests use real time (the mock is a real TCP server, and tokio's
//! paused clock would fire the client's timeouts while it waits on a socket); every wait is
//! short and bounded by [`DEADLINE`].

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate};
use dms::config::YahooConfig;
use dms::domain::{
    ActionKind, Bar, CorporateAction, Interval, SeriesKey, SourceKind, Symbol, TimeRange, time,
};
use dms::source::gate::GatePolicy;
use dms::source::yahoo::YahooSource;
use dms::source::{Dropped, FetchRequest, Page, Source, SourceError};
use dms::store::Store;
use dms::store::embedded::EmbeddedStore;
use dms::validate::{self, Context, Rejection};
use futures::StreamExt;
use serde_json::Value;

use crate::helpers::mock_yahoo::{Body, Fault, MockYahoo, Synth, fixture};
use crate::helpers::yahoo_synth;

/// No test waits longer than this for a fetch.
const DEADLINE: Duration = Duration::from_secs(30);

const AAPL_1D: &str = "AAPL_1d_2020-08-31_2020-11-07_split_div.json";
const AAPL_1M: &str = "AAPL_1m_2024-10-02.json";
const WEEKEND: &str = "AAPL_1m_2025-02-01_weekend_empty.json";
const MSFT_1D: &str = "MSFT_1d_2021-02-01_2022-01-31_dividends.json";
const NVDA_1D: &str = "NVDA_1d_2021-02-01_2022-01-31_split.json";
const TSLA_30M: &str = "TSLA_30m_2021-11-22_prepost.json";
const VFINX_3MO: &str = "VFINX_3mo_dividends_capital_gains.json";

// ---------------------------------------------------------------------------------------------
// Harness

fn t(s: &str) -> i64 {
    time::parse_instant(s).unwrap()
}

fn config(mock: &MockYahoo, timeout_s: u64) -> YahooConfig {
    YahooConfig {
        base_url: mock.base_url(),
        requests_per_minute: 0,
        timeout_s,
        max_retries: 2,
        pause_after_refusals: 5,
        pause_s: 900,
        user_agent: "dms-tests".into(),
    }
}

/// Short backoffs so that retries take milliseconds.
fn policy(max_retries: u32, pause_after: u32) -> GatePolicy {
    GatePolicy {
        max_retries,
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        pause_after,
        pause_for: Duration::from_secs(600),
    }
}

fn source(mock: &MockYahoo, max_retries: u32) -> YahooSource {
    YahooSource::with_policy(&config(mock, 5), policy(max_retries, 5)).unwrap()
}

fn request(symbol: &str, interval: Interval, start: &str, end: &str, now: &str) -> FetchRequest {
    let symbol = Symbol::parse(symbol).unwrap();
    FetchRequest {
        market: symbol.market(),
        series: SeriesKey::new(symbol, interval),
        range: TimeRange::new(t(start), t(end)).unwrap(),
        futu_code: None,
        now: t(now),
    }
}

struct TestStore {
    _dir: tempfile::TempDir,
    store: EmbeddedStore,
}

fn store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("bars.db")).unwrap();
    TestStore { _dir: dir, store }
}

/// What one fetch did, page by page, through validation into the store.
#[derive(Debug, Default)]
struct Run {
    pages: Vec<Page>,
    error: Option<SourceError>,
    rejections: Vec<Rejection>,
    written: usize,
}

impl Run {
    fn dropped(&self) -> Dropped {
        let mut d = Dropped::default();
        for p in &self.pages {
            d += p.dropped;
        }
        d
    }
}

/// Streams `req` from the source, validating each page and writing it as it arrives, as a
/// backfill does. Stops at the first error.
async fn fetch_into(src: &YahooSource, store: &EmbeddedStore, req: &FetchRequest) -> Run {
    let work = async {
        let mut run = Run::default();
        let mut pages = src.fetch(req.clone());
        while let Some(item) = pages.next().await {
            match item {
                Ok(page) => {
                    let ctx = Context::new(req.now, req.market);
                    let v = validate::validate(&req.series, page.bars.clone(), &ctx);
                    if let Some(batch) = &v.batch {
                        store.write(batch).await.unwrap();
                        run.written += batch.len();
                    }
                    if !page.actions.is_empty() {
                        store
                            .write_actions(&req.series.symbol, &page.actions)
                            .await
                            .unwrap();
                    }
                    run.rejections.extend(v.rejections);
                    run.pages.push(page);
                }
                Err(e) => {
                    run.error = Some(e);
                    break;
                }
            }
        }
        run
    };
    tokio::time::timeout(DEADLINE, work)
        .await
        .expect("fetch finished before the deadline")
}

/// One bar of a fixture, read straight from its JSON.
#[derive(Debug, Clone, Copy)]
struct Row {
    raw: i64,
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    close: Option<f64>,
    volume: Option<f64>,
    adj: Option<f64>,
}

impl Row {
    fn all_null(&self) -> bool {
        [self.open, self.high, self.low, self.close, self.volume]
            .iter()
            .all(Option::is_none)
    }
}

fn result_of(name: &str) -> Value {
    let v: Value = serde_json::from_str(&fixture(name)).unwrap();
    v["chart"]["result"][0].clone()
}

fn rows(name: &str) -> Vec<Row> {
    let r = result_of(name);
    let q = &r["indicators"]["quote"][0];
    let adj = &r["indicators"]["adjclose"][0]["adjclose"];
    let at = |v: &Value, i: usize| v.get(i).and_then(Value::as_f64);
    r["timestamp"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .enumerate()
                .map(|(i, t)| Row {
                    raw: t.as_i64().unwrap(),
                    open: at(&q["open"], i),
                    high: at(&q["high"], i),
                    low: at(&q["low"], i),
                    close: at(&q["close"], i),
                    volume: at(&q["volume"], i),
                    adj: at(adj, i),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// DESIGN §1 for a US daily bar: 00:00 UTC of its New York date.
fn ny_session_stamp(raw: i64) -> i64 {
    let local = DateTime::from_timestamp(raw, 0)
        .unwrap()
        .with_timezone(&chrono_tz::America::New_York);
    local
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

/// Asserts `got` holds exactly the `expected` rows, stamped by `stamp`, bit for bit.
fn assert_bars_equal(got: &[Bar], expected: &[Row], stamp: fn(i64) -> i64, daily: bool) {
    assert_eq!(got.len(), expected.len(), "bar count");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let ctx = format!("bar {i} (raw {})", time::rfc3339(e.raw));
        assert_eq!(g.ts, stamp(e.raw), "{ctx}: ts");
        let pairs = [
            ("open", g.open, e.open),
            ("high", g.high, e.high),
            ("low", g.low, e.low),
            ("close", g.close, e.close),
            ("volume", g.volume, e.volume),
        ];
        for (field, got, want) in pairs {
            assert_eq!(got.to_bits(), want.unwrap().to_bits(), "{ctx}: {field}");
        }
        match (daily, g.adj_close) {
            (true, Some(a)) => assert_eq!(a.to_bits(), e.adj.unwrap().to_bits(), "{ctx}: adj"),
            (false, None) => {}
            (_, other) => panic!("{ctx}: unexpected adj_close {other:?}"),
        }
        assert_eq!(g.source, SourceKind::Yahoo, "{ctx}: source");
    }
}

/// An action as `(kind, ts, amount, (numerator, denominator))`, for comparisons.
type ActionRow = (ActionKind, i64, f64, Option<(f64, f64)>);

/// The fixture's events as actions, computed independently of the parser.
fn expected_actions(name: &str) -> Vec<ActionRow> {
    let r = result_of(name);
    let mut out = Vec::new();
    let ev = &r["events"];
    for (kind, key) in [
        (ActionKind::Dividend, "dividends"),
        (ActionKind::CapitalGain, "capitalGains"),
    ] {
        for e in ev[key].as_object().into_iter().flat_map(|m| m.values()) {
            let ts = ny_session_stamp(e["date"].as_i64().unwrap());
            out.push((kind, ts, e["amount"].as_f64().unwrap(), None));
        }
    }
    for e in ev["splits"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        let (n, d) = (
            e["numerator"].as_f64().unwrap(),
            e["denominator"].as_f64().unwrap(),
        );
        let ts = ny_session_stamp(e["date"].as_i64().unwrap());
        out.push((ActionKind::Split, ts, n / d, Some((n, d))));
    }
    out.sort_by_key(|a| (a.1, a.0));
    out
}

fn action_tuples(actions: &[CorporateAction]) -> Vec<ActionRow> {
    actions
        .iter()
        .map(|a| (a.kind, a.ts, a.amount, a.numerator.zip(a.denominator)))
        .collect()
}

/// A daily fixture end to end: every bar stored bit for bit at its session date, actions
/// stored, nothing dropped or rejected.
async fn daily_fixture_round_trips(symbol: &str, name: &str, start: &str, end: &str) -> Run {
    let mock = MockYahoo::start().await;
    mock.serve_fixture(symbol, "1d", name);
    let src = source(&mock, 2);
    let s = store();
    let req = request(symbol, Interval::D1, start, end, "2025-02-22T12:00:00Z");
    let run = fetch_into(&src, &s.store, &req).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert!(run.rejections.is_empty(), "{:?}", run.rejections);
    assert_eq!(run.dropped(), Dropped::default());
    let expected = rows(name);
    assert_eq!(run.written, expected.len());
    let stored = s.store.read(&req.series, TimeRange::ALL).await.unwrap();
    assert_bars_equal(&stored, &expected, ny_session_stamp, true);
    let actions = s
        .store
        .read_actions(&req.series.symbol, TimeRange::ALL)
        .await
        .unwrap();
    assert_eq!(action_tuples(&actions), expected_actions(name));
    assert!(actions.iter().all(|a| a.source == SourceKind::Yahoo));
    run
}

// ---------------------------------------------------------------------------------------------
// Recorded fixtures, bar by bar

#[tokio::test]
async fn aapl_daily_bars_with_a_split_and_a_dividend_are_stored_bar_by_bar() {
    let run = daily_fixture_round_trips("AAPL", AAPL_1D, "2020-08-31", "2020-11-07").await;
    assert_eq!(run.pages.len(), 1);
    assert_eq!(run.pages[0].bars.len(), 49);
    let kinds: Vec<_> = run.pages[0]
        .actions
        .iter()
        .map(|a| (a.kind, time::rfc3339(a.ts)))
        .collect();
    assert_eq!(
        kinds,
        [
            (ActionKind::Split, "2020-08-31T00:00:00Z".to_string()),
            (ActionKind::Dividend, "2020-11-06T00:00:00Z".to_string()),
        ]
    );
}

#[tokio::test]
async fn the_daily_request_asks_exchange_local_dates_with_events_no_extended_hours_and_our_user_agent()
 {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", AAPL_1D);
    let src = source(&mock, 0);
    let s = store();
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    fetch_into(&src, &s.store, &req).await;
    let sent = mock.requests();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r.path, "/v8/finance/chart/AAPL");
    assert_eq!(r.user_agent.as_deref(), Some("dms-tests"));
    assert_eq!(r.param("interval"), Some("1d"));
    assert_eq!(r.param("events"), Some("div,splits,capitalGains"));
    assert_eq!(r.param("includePrePost"), Some("false"));
    // Midnight in New York: 04:00Z in summer, 05:00Z after the clocks change.
    assert_eq!(
        r.period(),
        Some((t("2020-08-31T04:00:00Z"), t("2020-11-07T05:00:00Z")))
    );
}

#[tokio::test]
async fn nvda_split_is_stored_as_a_four_for_one_action_on_its_ex_date() {
    let run = daily_fixture_round_trips("NVDA", NVDA_1D, "2021-02-01", "2022-01-31").await;
    assert_eq!(run.written, 252);
    let split = &run.pages[0].actions[0];
    assert_eq!(split.kind, ActionKind::Split);
    assert_eq!(time::rfc3339(split.ts), "2021-07-20T00:00:00Z");
    assert_eq!((split.numerator, split.denominator), (Some(4.0), Some(1.0)));
}

#[tokio::test]
async fn msft_dividends_are_stored_with_their_ex_dates() {
    let run = daily_fixture_round_trips("MSFT", MSFT_1D, "2021-02-01", "2022-01-31").await;
    assert_eq!(run.written, 252);
    let divs = &run.pages[0].actions;
    assert_eq!(divs.len(), 4);
    assert!(divs.iter().all(|a| a.kind == ActionKind::Dividend));
    assert_eq!(time::rfc3339(divs[0].ts), "2021-02-17T00:00:00Z");
}

#[tokio::test]
async fn aapl_minute_bars_skip_the_null_bar_and_the_phantom_bar_after_the_end() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1m", AAPL_1M);
    let src = source(&mock, 2);
    let s = store();
    let req = request(
        "AAPL",
        Interval::M1,
        "2024-10-02",
        "2024-10-03",
        "2024-10-04",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert!(run.rejections.is_empty(), "{:?}", run.rejections);
    assert_eq!(
        run.dropped(),
        Dropped {
            no_trade: 1,
            out_of_range: 1,
            forming: 0
        }
    );
    let all = rows(AAPL_1M);
    assert_eq!(all.len(), 391);
    let expected: Vec<Row> = all
        .into_iter()
        .filter(|r| r.raw < t("2024-10-03") && !r.all_null())
        .collect();
    assert_eq!(expected.len(), 389);
    let stored = s.store.read(&req.series, TimeRange::ALL).await.unwrap();
    assert_bars_equal(&stored, &expected, |raw| raw, false);
    assert!(
        !stored
            .iter()
            .any(|b| time::rfc3339(b.ts) == "2024-10-02T15:15:00Z")
    );
    assert_eq!(
        mock.requests()[0].period(),
        Some((t("2024-10-02"), t("2024-10-03")))
    );
}

#[tokio::test]
async fn tsla_thirty_minute_bars_keep_the_regular_session_only() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("TSLA", "30m", TSLA_30M);
    let src = source(&mock, 2);
    let s = store();
    let req = request(
        "TSLA",
        Interval::M30,
        "2021-11-22",
        "2021-11-23",
        "2021-11-23T06:00:00Z",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert!(run.rejections.is_empty(), "{:?}", run.rejections);
    // 11 pre-market and 6 post-market bars, sent although includePrePost=false.
    assert_eq!(run.dropped().out_of_range, 17);
    let expected: Vec<Row> = rows(TSLA_30M)
        .into_iter()
        .filter(|r| (t("2021-11-22T14:30:00Z")..t("2021-11-22T21:00:00Z")).contains(&r.raw))
        .collect();
    assert_eq!(expected.len(), 13);
    let stored = s.store.read(&req.series, TimeRange::ALL).await.unwrap();
    assert_bars_equal(&stored, &expected, |raw| raw, false);
}

#[tokio::test]
async fn a_weekend_minute_range_is_an_empty_page_that_confirms_the_span() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1m", WEEKEND);
    let src = source(&mock, 2);
    let s = store();
    let req = request(
        "AAPL",
        Interval::M1,
        "2025-02-01",
        "2025-02-02",
        "2025-02-20",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.pages.len(), 1);
    assert!(run.pages[0].bars.is_empty());
    assert_eq!(run.pages[0].range, Some(req.range));
    assert_eq!(run.written, 0);
    assert!(s.store.list_series().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_symbol_fails_with_not_found_and_is_not_retried() {
    let mock = MockYahoo::start().await;
    let src = source(&mock, 3);
    let s = store();
    let req = request(
        "XYZ",
        Interval::D1,
        "2024-01-02",
        "2024-02-01",
        "2024-03-01",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    let e = run.error.expect("an error");
    assert_eq!(e.to_string(), "yahoo: symbol XYZ not found");
    assert_eq!(e.outcome().as_str(), "client_error");
    assert_eq!(mock.requests().len(), 1);
    // The recorded body, served by a route, maps the same way.
    mock.serve_fixture("GONE", "1d", "error_not_found.json");
    let req = request(
        "GONE",
        Interval::D1,
        "2024-01-02",
        "2024-02-01",
        "2024-03-01",
    );
    let e = fetch_into(&src, &s.store, &req)
        .await
        .error
        .expect("an error");
    assert!(matches!(e, SourceError::UnknownSymbol { .. }), "{e}");
}

#[tokio::test]
async fn a_three_month_response_to_a_monthly_request_is_refused_as_the_wrong_granularity() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("VFINX", "1mo", VFINX_3MO);
    let src = source(&mock, 1);
    let s = store();
    let req = request(
        "VFINX",
        Interval::Mo1,
        "1985-01-01",
        "2025-10-01",
        "2025-10-30",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    let e = run.error.expect("an error");
    assert!(
        e.to_string()
            .contains("asked for 1mo bars of VFINX, got \"3mo\""),
        "{e}"
    );
    assert_eq!(run.written, 0);
    assert_eq!(mock.requests().len(), 2, "retried once, as a transient");
}

// ---------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_waiting() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", AAPL_1D);
    mock.fail_next(
        "AAPL",
        [Fault::TooManyRequests {
            retry_after: Some("1".into()),
        }],
    );
    let src = source(&mock, 3);
    let s = store();
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    let started = Instant::now();
    let run = fetch_into(&src, &s.store, &req).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.written, 49);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        started.elapsed()
    );
    let answers: Vec<_> = mock.requests().into_iter().map(|r| r.answer).collect();
    assert_eq!(answers.len(), 2);
    assert!(answers[0].starts_with("TooManyRequests"), "{answers:?}");
    assert_eq!(answers[1], "ok");
    assert_eq!(src.status().consecutive_refusals, 0);
}

#[tokio::test]
async fn five_429s_in_a_row_pause_the_source_and_status_shows_it() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", AAPL_1D);
    mock.fail_always("AAPL", Fault::TooManyRequests { retry_after: None });
    let src = YahooSource::with_policy(&config(&mock, 5), policy(5, 5)).unwrap();
    let s = store();
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    let e = run.error.expect("an error");
    assert!(matches!(e, SourceError::Paused { .. }), "{e}");
    assert_eq!(
        mock.requests().len(),
        5,
        "the retry after the fifth refusal is not sent"
    );
    let st = src.status();
    assert!(st.paused, "{st:?}");
    assert!(st.paused_until.is_some());
    assert_eq!(st.consecutive_refusals, 5);
    assert!(st.last_error.unwrap().contains("rate limited"));
    // While paused nothing is sent at all.
    let run = fetch_into(&src, &s.store, &req).await;
    assert!(matches!(run.error, Some(SourceError::Paused { .. })));
    assert_eq!(mock.requests().len(), 5);
    assert_eq!(run.written, 0);
}

/// `Retry-After` values no source may be obeyed on: 31 years, more seconds than `u64` holds,
/// and a far-future date in each of the three HTTP-date forms.
fn hostile_retry_afters() -> Vec<String> {
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
    vec![
        "1000000000".into(),
        "18446744073709551615".into(),
        at("2094-11-06T08:49:37Z")
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
        // RFC 850's two-digit year: 60 is 2060.
        at("2060-11-06T08:49:37Z")
            .format("%A, %d-%b-%y %H:%M:%S GMT")
            .to_string(),
        at("2094-11-06T08:49:37Z")
            .format("%a %b %e %H:%M:%S %Y")
            .to_string(),
    ]
}

#[tokio::test]
async fn a_hostile_retry_after_on_429_or_503_pauses_yahoo_for_at_most_pause_s() {
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    for value in hostile_retry_afters() {
        for fault in [
            Fault::TooManyRequests {
                retry_after: Some(value.clone()),
            },
            Fault::ServiceUnavailable {
                retry_after: Some(value.clone()),
            },
        ] {
            let mock = MockYahoo::start().await;
            mock.serve_fixture("AAPL", "1d", AAPL_1D);
            mock.fail_always("AAPL", fault.clone());
            // pause_s = 600 (the policy's pause_for).
            let src = source(&mock, 3);
            let s = store();
            let before = chrono::Utc::now().timestamp();
            let run = fetch_into(&src, &s.store, &req).await;
            let e = run.error.expect("an error");
            assert!(e.is_retryable(), "{fault:?}: {e}");
            assert_eq!(mock.requests().len(), 1, "{fault:?}: not retried in place");
            let st = src.status();
            assert!(st.paused, "{fault:?}: {st:?}");
            let until = t(st.paused_until.as_deref().unwrap());
            let after = chrono::Utc::now().timestamp();
            assert!(
                until >= before + 600 && until <= after + 600,
                "{fault:?}: paused until {} (now {})",
                time::rfc3339(until),
                time::rfc3339(after)
            );
            // Paused: the next fetch sends nothing.
            let run = fetch_into(&src, &s.store, &req).await;
            assert!(matches!(run.error, Some(SourceError::Paused { .. })));
            assert_eq!(mock.requests().len(), 1);
        }
    }
}

#[tokio::test]
async fn a_garbage_retry_after_is_ignored_and_the_request_retried_after_backoff() {
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    for garbage in ["soon", "-5", "1.5", "Sun, 32 Nov 1994 08:49:37 GMT"] {
        for fault in [
            Fault::TooManyRequests {
                retry_after: Some(garbage.into()),
            },
            Fault::ServiceUnavailable {
                retry_after: Some(garbage.into()),
            },
        ] {
            let mock = MockYahoo::start().await;
            mock.serve_fixture("AAPL", "1d", AAPL_1D);
            mock.fail_next("AAPL", [fault.clone()]);
            let src = source(&mock, 3);
            let s = store();
            let run = fetch_into(&src, &s.store, &req).await;
            assert!(run.error.is_none(), "{fault:?}: {:?}", run.error);
            assert_eq!(run.written, 49);
            assert_eq!(mock.requests().len(), 2, "{fault:?}");
            assert!(!src.status().paused);
        }
    }
}

#[tokio::test]
async fn a_503_with_a_short_retry_after_is_retried_after_waiting() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", AAPL_1D);
    mock.fail_next(
        "AAPL",
        [Fault::ServiceUnavailable {
            retry_after: Some("1".into()),
        }],
    );
    let src = source(&mock, 3);
    let s = store();
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    let started = Instant::now();
    let run = fetch_into(&src, &s.store, &req).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.written, 49);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        started.elapsed()
    );
}

/// `dms_fetch_requests_total{source="yahoo", outcome}` now.
fn fetch_requests(outcome: &str) -> u64 {
    dms::telemetry::metrics()
        .fetch_requests
        .get_or_create(&dms::telemetry::labels([
            ("source", "yahoo"),
            ("outcome", outcome),
        ]))
        .get()
}

#[tokio::test]
async fn each_fault_of_yahoo_is_counted_under_its_outcome_label() {
    let cases = [
        (None, "ok"),
        (
            Some(Fault::TooManyRequests { retry_after: None }),
            "rate_limited",
        ),
        (Some(Fault::ServerError), "server_error"),
        (
            Some(Fault::ServiceUnavailable { retry_after: None }),
            "server_error",
        ),
        (Some(Fault::Html), "server_error"),
        (Some(Fault::TruncatedJson), "parse_error"),
        (Some(Fault::Slow(Duration::from_secs(5))), "timeout"),
        (Some(Fault::NotFound), "client_error"),
        (
            Some(Fault::Unprocessable("timed out parse error".into())),
            "client_error",
        ),
        (
            Some(Fault::BadRequest("Invalid input".into())),
            "client_error",
        ),
    ];
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    for (fault, label) in cases {
        let mock = MockYahoo::start().await;
        mock.serve_fixture("AAPL", "1d", AAPL_1D);
        if let Some(f) = &fault {
            mock.fail_next("AAPL", [f.clone()]);
        }
        let src = YahooSource::with_policy(&config(&mock, 1), policy(0, 5)).unwrap();
        let s = store();
        let before = fetch_requests(label);
        let run = fetch_into(&src, &s.store, &req).await;
        match &run.error {
            Some(e) => assert_eq!(e.outcome().as_str(), label, "{fault:?}: {e}"),
            None => assert_eq!(label, "ok", "{fault:?} did not fail"),
        }
        // This source's own tally is exact; the process-wide counter is shared with
        // concurrent tests, so it has grown by at least this request.
        let by: Vec<(&str, u64)> = src.status().requests_by_outcome.into_iter().collect();
        assert_eq!(by, [(label, 1)], "{fault:?}");
        assert!(fetch_requests(label) > before, "{fault:?}");
    }
}

#[tokio::test]
async fn server_errors_are_retried_and_then_succeed() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", AAPL_1D);
    mock.fail_next("AAPL", [Fault::ServerError, Fault::ServerError]);
    let src = source(&mock, 3);
    let s = store();
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.written, 49);
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn a_maintenance_page_is_retried_as_a_server_error() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", AAPL_1D);
    mock.fail_next("AAPL", [Fault::Html]);
    let src = source(&mock, 2);
    let s = store();
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    assert_eq!(fetch_into(&src, &s.store, &req).await.written, 49);
    assert_eq!(mock.requests().len(), 2);

    mock.fail_always("AAPL", Fault::Html);
    let run = fetch_into(&src, &s.store, &req).await;
    let e = run.error.expect("an error");
    assert!(e.to_string().contains("html"), "{e}");
    assert_eq!(e.outcome().as_str(), "server_error");
    assert_eq!(mock.requests().len(), 2 + 3);
}

#[tokio::test]
async fn truncated_json_is_retried_then_fails_with_nothing_written() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", AAPL_1D);
    mock.fail_always("AAPL", Fault::TruncatedJson);
    let src = source(&mock, 2);
    let s = store();
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    let e = run.error.expect("an error");
    assert!(e.is_retryable());
    assert_eq!(e.outcome().as_str(), "parse_error", "{e}");
    assert!(run.pages.is_empty());
    assert_eq!(mock.requests().len(), 3);
    assert!(s.store.list_series().await.unwrap().is_empty());
    assert!(
        s.store
            .read_actions(&req.series.symbol, TimeRange::ALL)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_slow_response_times_out_and_is_labelled_a_timeout() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", AAPL_1D);
    mock.fail_always("AAPL", Fault::Slow(Duration::from_secs(10)));
    let src = YahooSource::with_policy(&config(&mock, 1), policy(1, 5)).unwrap();
    let s = store();
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    let started = Instant::now();
    let run = fetch_into(&src, &s.store, &req).await;
    let e = run.error.expect("an error");
    assert_eq!(e.to_string(), "yahoo: request for AAPL timed out after 1s");
    assert_eq!(e.outcome().as_str(), "timeout");
    assert_eq!(mock.requests().len(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.written, 0);
}

#[tokio::test]
async fn a_422_is_an_invalid_request_with_yahoos_description_and_is_not_retried() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", AAPL_1D);
    let description = "1m data not available for startTime=1 and endTime=2. \
                       The requested range must be within the last 30 days.";
    mock.fail_next(
        "AAPL",
        [
            Fault::Unprocessable(description.into()),
            Fault::BadRequest("Invalid input - interval=5h is not supported.".into()),
        ],
    );
    let src = source(&mock, 3);
    let s = store();
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    let e = fetch_into(&src, &s.store, &req)
        .await
        .error
        .expect("an error");
    assert!(matches!(e, SourceError::InvalidRequest { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("yahoo: invalid request: AAPL: {description}")
    );
    assert_eq!(mock.requests().len(), 1);
    let e = fetch_into(&src, &s.store, &req)
        .await
        .error
        .expect("an error");
    assert!(
        e.to_string().contains("interval=5h is not supported"),
        "{e}"
    );
    assert_eq!(mock.requests().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Intraday windows

#[tokio::test]
async fn a_minute_request_older_than_thirty_days_is_refused_before_sending() {
    let mock = MockYahoo::start().await;
    mock.serve_synthetic("AAPL", Synth::new("1m", t("2024-10-22")));
    let src = source(&mock, 2);
    let s = store();
    let req = request(
        "AAPL",
        Interval::M1,
        "2024-09-01",
        "2024-09-08",
        "2024-10-22",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    let e = run.error.expect("an error");
    assert!(matches!(e, SourceError::InvalidRequest { .. }), "{e}");
    assert!(e.to_string().contains("last 30 days"), "{e}");
    assert!(mock.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_twenty_day_minute_range_is_fetched_in_time_ordered_requests_of_at_most_eight_days() {
    let now = t("2024-10-22");
    let mock = MockYahoo::start().await;
    let synth = Synth::new("1m", now).with_null_every(997);
    mock.serve_synthetic("AAPL", synth.clone());
    let src = source(&mock, 2);
    let s = store();
    let req = request(
        "AAPL",
        Interval::M1,
        "2024-10-01",
        "2024-10-21",
        "2024-10-22",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert!(run.rejections.is_empty(), "{:?}", run.rejections);

    let periods: Vec<(i64, i64)> = mock
        .requests()
        .iter()
        .map(|r| r.period().unwrap())
        .collect();
    assert_eq!(periods.len(), 3);
    assert_eq!(periods[0].0, req.range.start());
    assert_eq!(periods[2].1, req.range.end());
    for w in periods.windows(2) {
        assert_eq!(w[0].1, w[1].0, "contiguous and in time order");
    }
    assert!(periods.iter().all(|(p1, p2)| p2 - p1 <= 8 * 86_400));
    let page_ranges: Vec<(i64, i64)> = run
        .pages
        .iter()
        .map(|p| p.range.map(|r| (r.start(), r.end())).unwrap())
        .collect();
    assert_eq!(page_ranges, periods);

    // Every generated bar arrives once, in order, with the generator's exact values.
    let expected = yahoo_synth::bars("AAPL", &synth, req.range.start(), req.range.end());
    let kept: Vec<_> = expected.iter().filter(|b| b.close.is_some()).collect();
    assert_eq!(run.dropped().no_trade as usize, expected.len() - kept.len());
    let stored = s.store.read(&req.series, TimeRange::ALL).await.unwrap();
    assert_eq!(stored.len(), kept.len());
    assert_eq!(stored.len(), 14 * 390 - run.dropped().no_trade as usize);
    for (g, e) in stored.iter().zip(kept) {
        assert_eq!(g.ts, e.ts);
        assert_eq!(g.close.to_bits(), e.close.unwrap().to_bits());
        assert_eq!(g.volume, e.volume.unwrap() as f64);
    }
}

#[tokio::test]
async fn a_minute_backfill_from_ninety_days_ago_gets_the_last_thirty_days() {
    let now = t("2024-10-22T12:00:00Z");
    let mock = MockYahoo::start().await;
    mock.serve_synthetic("AAPL", Synth::new("1m", now));
    let src = source(&mock, 2);
    let s = store();
    let req = request(
        "AAPL",
        Interval::M1,
        "2024-07-24",
        "2024-10-22",
        "2024-10-22T12:00:00Z",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    let sent = mock.requests();
    assert_eq!(sent.len(), 5);
    let oldest = now - 30 * 86_400;
    for r in &sent {
        let (p1, p2) = r.period().unwrap();
        assert!(p1 >= oldest, "{} is older than 30 days", time::rfc3339(p1));
        assert!(p2 - p1 <= 8 * 86_400);
    }
    // The clipped part is not claimed: the first page starts where Yahoo's window does.
    let first = run.pages[0].range.unwrap().start();
    assert!(first > req.range.start() && first >= oldest);
    assert!(run.written > 20 * 390);
    let stored = s.store.read(&req.series, TimeRange::ALL).await.unwrap();
    assert!(stored.first().unwrap().ts >= oldest);
}

#[tokio::test]
async fn an_hourly_request_is_sent_as_1h_and_stored_at_bar_starts() {
    let now = t("2024-10-22T12:00:00Z");
    let mock = MockYahoo::start().await;
    mock.serve_synthetic("MSFT", Synth::new("1h", now));
    let src = source(&mock, 2);
    let s = store();
    let req = request(
        "MSFT",
        Interval::H1,
        "2024-10-14",
        "2024-10-19",
        "2024-10-22T12:00:00Z",
    );
    let run = fetch_into(&src, &s.store, &req).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(mock.requests()[0].param("interval"), Some("1h"));
    // 7 hourly bars a day (the last one is 15:30–16:00), 5 days.
    assert_eq!(run.written, 35);
    let stored = s.store.read(&req.series, TimeRange::ALL).await.unwrap();
    assert_eq!(time::rfc3339(stored[0].ts), "2024-10-14T13:30:00Z");
}

#[tokio::test]
async fn any_symbol_can_be_served_years_of_generated_daily_bars_with_dividends() {
    let mock = MockYahoo::start().await;
    mock.serve(
        "*",
        "1d",
        Body::Synthetic(Synth::new("1d", t("2025-01-01"))),
    );
    let src = source(&mock, 2);
    let s = store();
    let sessions = dms::domain::Calendar::standard(dms::domain::Market::Us)
        .sessions(
            NaiveDate::from_ymd_opt(2021, 1, 4).unwrap(),
            NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        )
        .count();
    for symbol in ["SYNA", "SYNB"] {
        let req = request(
            symbol,
            Interval::D1,
            "2021-01-04",
            "2024-01-01",
            "2025-01-01",
        );
        let run = fetch_into(&src, &s.store, &req).await;
        assert!(run.error.is_none(), "{:?}", run.error);
        assert!(run.rejections.is_empty(), "{:?}", run.rejections);
        assert_eq!(run.written, sessions, "{symbol}");
        let actions = s
            .store
            .read_actions(&req.series.symbol, TimeRange::ALL)
            .await
            .unwrap();
        assert_eq!(actions.len(), 12, "four dividends a year");
        assert!(
            actions
                .iter()
                .all(|a| a.kind == ActionKind::Dividend && a.amount == 0.25)
        );
    }
    let stats = s.store.list_series().await.unwrap();
    assert_eq!(stats.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Ping and status

#[tokio::test]
async fn ping_reports_the_index_and_resumes_a_paused_source() {
    let now = chrono::Utc::now().timestamp();
    let mock = MockYahoo::start().await;
    mock.serve_synthetic("^GSPC", Synth::new("1d", now));
    mock.serve_fixture("AAPL", "1d", AAPL_1D);
    let src = YahooSource::with_policy(&config(&mock, 5), policy(5, 5)).unwrap();
    let summary = src.ping().await.unwrap();
    assert!(summary.starts_with("^GSPC "), "{summary}");
    assert!(summary.contains("America/New_York"), "{summary}");
    let r = &mock.requests_for("^GSPC")[0];
    assert_eq!(
        (r.param("range"), r.param("interval")),
        (Some("1d"), Some("1d"))
    );

    mock.fail_always("AAPL", Fault::TooManyRequests { retry_after: None });
    let s = store();
    let req = request(
        "AAPL",
        Interval::D1,
        "2020-08-31",
        "2020-11-07",
        "2025-02-22",
    );
    fetch_into(&src, &s.store, &req).await;
    assert!(src.status().paused);
    assert!(src.ping().await.is_ok());
    assert!(!src.status().paused, "a successful ping resumes the source");
    mock.clear_faults();
    assert_eq!(fetch_into(&src, &s.store, &req).await.written, 49);
}

#[tokio::test]
async fn ping_fails_with_the_cause_when_yahoo_is_unreachable() {
    let mock = MockYahoo::start().await;
    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = YahooConfig {
        base_url: format!("http://{}", closed.local_addr().unwrap()),
        ..config(&mock, 2)
    };
    drop(closed);
    let src = YahooSource::with_policy(&cfg, policy(0, 5)).unwrap();
    let e = tokio::time::timeout(DEADLINE, src.ping())
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.is_retryable());
    assert!(
        e.to_string()
            .starts_with("yahoo: cannot connect to 127.0.0.1"),
        "{e}"
    );
    assert_eq!(src.status().requests_failed, 1);
}
