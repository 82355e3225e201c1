//! Operations end to end: the periodic health checks publish staleness, open gaps and ending
//! holiday tables, and the alert channels turn them into one alert and one recovery each;
//! `/metrics` has every name of DESIGN §7 after some activity; a job's JSON log lines carry
//! its `job_id`.

use std::time::Duration;

use dms::domain::{Calendar, Interval, Market, time};
use dms::events::Event;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::helpers::app::{DmsCommand, TestApp, spawn_app_with, stderr};
use crate::helpers::bars::{bar, batch, key};
use crate::helpers::mock_yahoo::{Fault, MockYahoo};
use crate::helpers::receiver::{Received, Receiver};

const DEADLINE: Duration = Duration::from_secs(30);
const DAY: i64 = 86_400;

/// The notices of `event` (`series_stale`, ...) the receiver answered 200, in order, as
/// `(status, subject)`.
fn notices(rx: &Receiver, event: &str) -> Vec<(String, String)> {
    rx.received()
        .iter()
        .filter(|r| r.status == 200 && r.body["event"] == event)
        .map(|r| {
            (
                r.body["status"].as_str().unwrap_or_default().to_string(),
                r.body["subject"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn bodies(rx: &Receiver, event: &str) -> Vec<serde_json::Value> {
    rx.received()
        .into_iter()
        .filter(|r: &Received| r.status == 200 && r.body["event"] == event)
        .map(|r| r.body)
        .collect()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `n` more health-check rounds (after what is queued now) have published their
/// staleness.
async fn rounds(events: &mut UnboundedReceiver<Event>, n: usize) {
    while events.try_recv().is_ok() {}
    let mut seen = 0;
    while seen < n {
        let e = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("a health check round")
            .expect("the bus is open");
        if matches!(e, Event::SeriesStale { .. } | Event::SeriesFresh) {
            seen += 1;
        }
    }
}

/// Writes daily bars of `symbol` stamped at `days`.
async fn write_days(app: &TestApp, symbol: &str, days: &[i64]) {
    let k = key(symbol, Interval::D1);
    let bars = days.iter().map(|t| bar(*t, 1.0)).collect();
    app.services.writer.write(batch(&k, bars)).await.unwrap();
}

#[tokio::test]
async fn a_stale_series_and_an_open_gap_alert_once_and_recover_when_the_bars_arrive() {
    let rx = Receiver::start("ok").await;
    let app = spawn_app_with(
        &format!(
            "checks: {{ interval_s: 1 }}\nalerts:\n  - {{ kind: webhook, url: {:?}, events: [series_stale, gaps_open], stale_after_s: 0 }}\n",
            rx.url("/hook")
        ),
        &[],
    )
    .await;
    let mut events = app.services.events.subscribe();
    // BTC-USD trades every day: its newest final daily bar is yesterday's (UTC).
    let now = chrono::Utc::now().timestamp();
    let last = Calendar::standard(Market::Crypto)
        .last_closed_session(now)
        .unwrap()
        .stamp();
    let day = |back: i64| last - back * DAY;
    // Ten to five days back, without the eighth: stale by four days, one interior gap.
    write_days(&app, "BTC-USD", &[day(10), day(9), day(7), day(6), day(5)]).await;
    wait_until("the stale and gap alerts", || {
        !notices(&rx, "series_stale").is_empty() && !notices(&rx, "gaps_open").is_empty()
    })
    .await;
    // More rounds see the same conditions: throttled, nothing more is sent.
    rounds(&mut events, 3).await;
    assert_eq!(
        notices(&rx, "series_stale"),
        [("firing".to_string(), String::new())]
    );
    assert_eq!(
        notices(&rx, "gaps_open"),
        [("firing".to_string(), String::new())]
    );
    let stale = &bodies(&rx, "series_stale")[0]["details"]["stale"][0];
    assert_eq!(stale["interval"], "1d", "{stale}");
    assert_eq!(stale["count"], 1, "{stale}");
    // The first missing bar (four days back) has been final for at least three days.
    assert!(
        stale["max_overdue_s"].as_u64().unwrap() >= 3 * DAY as u64,
        "{stale}"
    );
    let gaps = &bodies(&rx, "gaps_open")[0]["details"];
    assert_eq!(gaps["count"], 1, "{gaps}");
    assert_eq!(gaps["series"], serde_json::json!(["BTC-USD 1d"]), "{gaps}");

    // The missing bars arrive: one recovery each, then silence.
    write_days(
        &app,
        "BTC-USD",
        &[day(8), day(4), day(3), day(2), day(1), day(0)],
    )
    .await;
    wait_until("the recoveries", || {
        notices(&rx, "series_stale").len() == 2 && notices(&rx, "gaps_open").len() == 2
    })
    .await;
    rounds(&mut events, 2).await;
    for event in ["series_stale", "gaps_open"] {
        assert_eq!(
            notices(&rx, event),
            [
                ("firing".to_string(), String::new()),
                ("resolved".to_string(), String::new())
            ],
            "{event}"
        );
    }
    // The checks set the stale gauge from their unfiltered scans.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("dms_series_stale{interval=\"1d\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn holiday_tables_ending_within_the_window_raise_calendar_ending_once() {
    let rx = Receiver::start("ok").await;
    let app = spawn_app_with(
        &format!(
            "checks: {{ interval_s: 1 }}\nalerts:\n  - {{ kind: webhook, url: {:?}, events: [calendar_ending], calendar_ending_days: 120 }}\n",
            rx.url("/hook")
        ),
        &[],
    )
    .await;
    let mut events = app.services.events.subscribe();
    // The SH and SZ tables end 2026-12-31: within 120 days of today (2026-12-01) or past.
    let now = chrono::Utc::now().timestamp();
    assert!(Calendar::standard(Market::Sh).ends_within(now, 120));
    wait_until("the calendar alerts", || {
        let n = notices(&rx, "calendar_ending");
        n.contains(&("firing".into(), "SH".into())) && n.contains(&("firing".into(), "SZ".into()))
    })
    .await;
    rounds(&mut events, 2).await;
    let n = notices(&rx, "calendar_ending");
    for m in ["SH", "SZ"] {
        assert_eq!(n.iter().filter(|(_, s)| s == m).count(), 1, "{n:?}");
    }
    let sh = bodies(&rx, "calendar_ending")
        .into_iter()
        .find(|b| b["subject"] == "SH")
        .unwrap();
    assert_eq!(sh["details"]["table_end"], "2026-12-31", "{sh}");
    let today = time::date_of(now);
    let end = chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
    assert_eq!(sh["details"]["days_left"], (end - today).num_days(), "{sh}");
    // Crypto and FX have no table: never reported.
    assert!(!n.iter().any(|(_, s)| s == "CRYPTO" || s == "FX"), "{n:?}");
}

/// Every metric name of DESIGN §7 (counters with `_total`, histograms by their `_count`).
const CONTRACT: [&str; 14] = [
    "dms_bars_written_total{",
    "dms_bars_rejected_total{",
    "dms_fetch_requests_total{",
    "dms_source_paused{",
    "dms_jobs_total{",
    "dms_job_duration_seconds_count{",
    "dms_spool_bars ",
    "dms_cache_hits_total ",
    "dms_cache_misses_total ",
    "dms_cache_evictions_total ",
    "dms_cache_bytes ",
    "dms_series_stale{",
    "dms_http_requests_total{",
    "dms_http_request_duration_seconds_count{",
];
// Not here: `dms_replication_lag_*{node}` exist once a backup node does (`replication.rs`),
// `dms_fetch_wait_seconds_total{source}` once a request waited on its rate limiter.

/// The value of the sample `name` (with its labels, as rendered) in a scrape.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_carry_every_contract_name_with_values_after_some_activity() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", "AAPL_1d_2020-08-31_2020-11-07_split_div.json");
    let app = spawn_app_with(
        &format!(
            "sources: {{ yahoo: {{ base_url: \"{}\" }} }}\nchecks: {{ interval_s: 1 }}\n",
            mock.base_url()
        ),
        &[],
    )
    .await;
    // A job fetching from Yahoo, then reads of what it wrote (a miss, then a hit).
    let (_, job) = app
        .run_job(
            &serde_json::json!({"task": "backfill", "symbols": ["AAPL"], "interval": "1d",
            "start": "2020-08-31", "end": "2020-11-07"}),
        )
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let written = job["counters"]["bars_written"].as_u64().unwrap();
    assert!(written > 40, "{job}");
    for _ in 0..2 {
        let r = app
            .get("/api/v1/bars?symbols=AAPL&interval=1d&start=2020-08-31&end=2020-11-07")
            .await;
        assert_eq!(r.status(), 200);
    }
    // A bar validation refuses (high below the close).
    let mut bad = bar(time::parse_instant("2020-11-09").unwrap(), 1.0);
    bad.high = bad.close - 1.0;
    let r = app
        .services
        .writer
        .ingest(
            &key("AAPL", Interval::D1),
            vec![bad],
            &dms::validate::Context::new(i64::MAX / 4, None),
        )
        .await
        .unwrap();
    assert_eq!(r.rejected, 1);
    // One health check round after the writes, for the stale gauge.
    let mut events = app.services.events.subscribe();
    rounds(&mut events, 1).await;

    let text = app.get("/metrics").await.text().await.unwrap();
    for name in CONTRACT {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    // Metrics are process-wide (other tests count too): values are lower bounds here.
    let at_least = |name: &str, min: f64| {
        let v = sample(&text, name).unwrap_or_else(|| panic!("{name} missing from\n{text}"));
        assert!(v >= min, "{name} = {v}, expected at least {min}");
    };
    at_least(
        "dms_bars_written_total{store=\"primary\",interval=\"1d\"}",
        written as f64,
    );
    at_least(
        "dms_fetch_requests_total{source=\"yahoo\",outcome=\"ok\"}",
        1.0,
    );
    at_least(
        "dms_jobs_total{task=\"backfill\",outcome=\"succeeded\"}",
        1.0,
    );
    at_least("dms_job_duration_seconds_count{task=\"backfill\"}", 1.0);
    at_least("dms_cache_hits_total", 1.0);
    at_least("dms_cache_misses_total", 1.0);
    at_least(
        "dms_http_requests_total{route=\"/api/v1/bars\",status=\"200\"}",
        2.0,
    );
    at_least(
        "dms_http_request_duration_seconds_count{route=\"/api/v1/bars\"}",
        2.0,
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("dms_bars_rejected_total{rule=") && !l.ends_with(" 0")),
        "{text}"
    );
    for interval in Interval::ALL {
        let name = format!("dms_series_stale{{interval=\"{}\"}}", interval.as_str());
        assert!(
            sample(&text, &name).is_some(),
            "{name} missing from\n{text}"
        );
    }
    assert!(
        sample(&text, "dms_source_paused{source=\"yahoo\"}").is_some(),
        "{text}"
    );
}

/// The JSON log lines of every `logs/dms.log.*` file in `dir`.
fn log_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("logs")).expect("a logs directory") {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with("dms.log."), "{name}");
        let text = std::fs::read_to_string(&path).unwrap();
        for l in text.lines() {
            out.push(serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")));
        }
    }
    out
}

#[tokio::test]
async fn a_jobs_log_lines_carry_its_job_id_whichever_module_writes_them() {
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", "AAPL_1d_2020-08-31_2020-11-07_split_div.json");
    // One 500 first: the source gate logs a retry, from inside the job.
    mock.fail_next("AAPL", [Fault::ServerError]);
    let dms = DmsCommand::new(&format!(
        "sources: {{ yahoo: {{ base_url: \"{}\" }} }}\n",
        mock.base_url()
    ));
    let args = [
        "backfill",
        "--symbols",
        "AAPL",
        "--interval",
        "1d",
        "--start",
        "2020-08-31",
        "--end",
        "2020-11-07",
        "--source",
        "yahoo",
    ];
    let mut cmd = dms.command(&args);
    let o = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = log_lines(dms.dir.path());
    let id = lines
        .iter()
        .find(|l| l["message"] == "backfill started")
        .and_then(|l| l["job_id"].as_u64())
        .unwrap_or_else(|| panic!("no start line with a job_id: {lines:#?}"));
    let retry = lines
        .iter()
        .find(|l| l["message"] == "retrying")
        .unwrap_or_else(|| panic!("no retry line: {lines:#?}"));
    assert_eq!(retry["job_id"], id, "{retry}");
    assert_eq!(retry["source"], "yahoo", "{retry}");
    assert_eq!(retry["level"], "WARN", "{retry}");
    let fetched = lines
        .iter()
        .find(|l| l["message"] == "series fetched")
        .unwrap_or_else(|| panic!("no series line: {lines:#?}"));
    assert_eq!(fetched["job_id"], id, "{fetched}");
    assert_eq!(fetched["symbol"], "AAPL", "{fetched}");
    assert_eq!(fetched["interval"], "1d", "{fetched}");
    assert_eq!(fetched["source"], "yahoo", "{fetched}");
}

/// The primary not answering is a condition of its own: the health check raises
/// `primary_down` (the write path only spools, it reports nothing) and clears it when the
/// primary answers again.
#[tokio::test]
async fn a_primary_that_stops_answering_raises_primary_down_and_its_return_clears_it() {
    use crate::helpers::gated::{MisbehavingStore, WriteGate};
    use std::sync::atomic::Ordering;
    let rx = Receiver::start("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let inner: std::sync::Arc<dyn dms::store::Store> = std::sync::Arc::new(
        dms::store::embedded::EmbeddedStore::open(&dir.path().join("bars.db")).unwrap(),
    );
    let store = MisbehavingStore::new(inner, WriteGate::new(true));
    let app = crate::helpers::app::spawn_app_on(
        store.clone(),
        &format!(
            "checks: {{ interval_s: 1 }}\nalerts:\n  - {{ kind: webhook, url: {:?}, events: [primary_down] }}\n",
            rx.url("/hook")
        ),
        &[],
    )
    .await;
    let mut events = app.services.events.subscribe();
    rounds(&mut events, 1).await;
    assert!(
        notices(&rx, "primary_down").is_empty(),
        "a healthy primary raises nothing"
    );
    store.ping_fails.store(true, Ordering::SeqCst);
    wait_until("the primary_down alert", || {
        !notices(&rx, "primary_down").is_empty()
    })
    .await;
    let firing = bodies(&rx, "primary_down");
    assert_eq!(firing[0]["status"], "firing", "{firing:?}");
    assert_eq!(firing[0]["subject"], "embedded", "{firing:?}");
    assert!(
        firing[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("writes go to the spool"),
        "{firing:?}"
    );
    store.ping_fails.store(false, Ordering::SeqCst);
    wait_until("the primary_down recovery", || {
        notices(&rx, "primary_down").len() == 2
    })
    .await;
    assert_eq!(
        notices(&rx, "primary_down"),
        [
            ("firing".to_string(), "embedded".to_string()),
            ("resolved".to_string(), "embedded".to_string())
        ]
    );
}
