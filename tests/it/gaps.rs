//! Gap detection end to end: bars written through the write path, gaps read back through
//! `GET /api/v1/gaps`, `GET /api/v1/series` and `dms gaps`, on the embedded store and on a real
//! `influxd`; confirmed-empty sessions, config closures, failed writes and bars stored before
//! the coverage summaries existed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use dms::domain::{Calendar, Interval, Market, SourceKind, TimeRange, time};
use dms::store::Store;
use dms::store::embedded::EmbeddedStore;
use dms::store::influx::InfluxStore;

use crate::helpers::app::{
    DmsCommand, TestApp, spawn_app, spawn_app_on, spawn_app_with, stderr, stdout,
};
use crate::helpers::bars::{bar, batch, key};
use crate::helpers::gated::{MisbehavingStore, WriteGate};

fn ts(s: &str) -> i64 {
    time::parse_instant(s).unwrap()
}

/// The stamps `market`'s calendar expects for `interval` in `[from, to)`, less those in each
/// `[a, b)` of `skip`.
fn expected(
    market: Market,
    interval: Interval,
    from: &str,
    to: &str,
    skip: &[(&str, &str)],
) -> Vec<i64> {
    let r = TimeRange::new(ts(from), ts(to)).unwrap();
    let skip: Vec<TimeRange> = skip
        .iter()
        .map(|(a, b)| TimeRange::new(ts(a), ts(b)).unwrap())
        .collect();
    Calendar::standard(market)
        .expected_stamps(interval, r)
        .into_iter()
        .filter(|t| !skip.iter().any(|s| s.contains(*t)))
        .collect()
}

async fn write(app: &TestApp, symbol: &str, interval: Interval, stamps: &[i64]) {
    let k = key(symbol, interval);
    let bars = stamps.iter().map(|t| bar(*t, 1.0)).collect();
    app.services.writer.write(batch(&k, bars)).await.unwrap();
}

async fn gaps(app: &TestApp, query: &str) -> Vec<serde_json::Value> {
    let r = app.get(&format!("/api/v1/gaps?{query}")).await;
    assert_eq!(r.status(), 200, "{query}");
    let v: serde_json::Value = r.json().await.unwrap();
    v["gaps"].as_array().unwrap().clone()
}

fn gap(symbol: &str, interval: &str, start: &str, end: &str, sessions: u32) -> serde_json::Value {
    serde_json::json!({
        "symbol": symbol, "interval": interval, "start": start, "end": end,
        "sessions": sessions, "kind": "interior",
    })
}

/// IBM daily, Feb–Apr 2010, without the week of 8 March; Presidents' Day (15 Feb) is inside.
async fn ibm_without_a_week(app: &TestApp) {
    let stamps = expected(
        Market::Us,
        Interval::D1,
        "2010-02-01",
        "2010-05-01",
        &[("2010-03-08", "2010-03-13")],
    );
    assert!(!stamps.contains(&ts("2010-02-15")), "a holiday");
    write(app, "IBM", Interval::D1, &stamps).await;
}

#[tokio::test]
async fn a_missing_week_is_one_gap_with_its_sessions_and_a_holiday_is_none() {
    let app = spawn_app().await;
    ibm_without_a_week(&app).await;
    let want = [gap(
        "IBM",
        "1d",
        "2010-03-08T00:00:00Z",
        "2010-03-13T00:00:00Z",
        5,
    )];
    assert_eq!(gaps(&app, "symbols=IBM&interval=1d").await, want);
    assert_eq!(gaps(&app, "").await, want);
    assert!(gaps(&app, "interval=1m").await.is_empty());
    // The head: everything after 30 April 2010 is due.
    let with_head = gaps(&app, "symbols=IBM&head=true").await;
    assert_eq!(with_head.len(), 2, "{with_head:?}");
    assert_eq!(with_head[1]["kind"], "head");
    assert_eq!(with_head[1]["start"], "2010-05-03T00:00:00Z");
    // The series list counts the missing sessions and says the series is stale.
    let v: serde_json::Value = app.get("/api/v1/series").await.json().await.unwrap();
    let ibm = &v["series"][0];
    assert_eq!(
        (ibm["gaps"].as_u64(), ibm["stale"].as_bool()),
        (Some(5), Some(true)),
        "{ibm}"
    );
    // Filling the week closes the gap.
    write(
        &app,
        "IBM",
        Interval::D1,
        &expected(Market::Us, Interval::D1, "2010-03-08", "2010-03-13", &[]),
    )
    .await;
    assert!(gaps(&app, "symbols=IBM").await.is_empty());
    // Deleting a day opens one again.
    app.services
        .writer
        .delete(
            &key("IBM", Interval::D1),
            TimeRange::new(ts("2010-04-06"), ts("2010-04-07")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        gaps(&app, "symbols=IBM").await,
        [gap(
            "IBM",
            "1d",
            "2010-04-06T00:00:00Z",
            "2010-04-07T00:00:00Z",
            1
        )]
    );
}

#[tokio::test]
async fn hk_minutes_missing_over_lunch_are_no_gap_but_a_missing_half_hour_is() {
    let app = spawn_app().await;
    // 2 and 3 January 2024; on the 3rd, 10:00–10:30 Hong Kong (02:00–02:30Z) is missing.
    let stamps = expected(
        Market::Hk,
        Interval::M1,
        "2024-01-02",
        "2024-01-04",
        &[("2024-01-03T02:00:00Z", "2024-01-03T02:30:00Z")],
    );
    // No bar is expected over lunch (12:00–13:00, 04:00–05:00Z) nor in the closing auction.
    assert!(
        !stamps
            .iter()
            .any(|t| (ts("2024-01-02T04:00:00Z")..ts("2024-01-02T05:00:00Z")).contains(t))
    );
    write(&app, "0700.HK", Interval::M1, &stamps).await;
    assert_eq!(
        gaps(&app, "symbols=0700.HK&interval=1m").await,
        [gap(
            "0700.HK",
            "1m",
            "2024-01-03T02:00:00Z",
            "2024-01-03T02:30:00Z",
            1
        )]
    );
}

#[tokio::test]
async fn a_session_the_source_confirms_empty_is_not_reported_again() {
    let app = spawn_app().await;
    let k = key("AAPL", Interval::D1);
    let stamps = expected(
        Market::Us,
        Interval::D1,
        "2024-01-02",
        "2024-02-01",
        &[("2024-01-09", "2024-01-11")],
    );
    write(&app, "AAPL", Interval::D1, &stamps).await;
    assert_eq!(
        gaps(&app, "symbols=AAPL").await,
        [gap(
            "AAPL",
            "1d",
            "2024-01-09T00:00:00Z",
            "2024-01-11T00:00:00Z",
            2
        )]
    );
    // The source answered for January (a suspension on the 9th and 10th).
    let page = TimeRange::new(ts("2024-01-02"), ts("2024-02-01")).unwrap();
    let c = app
        .services
        .gaps
        .confirm_empty(&k, None, SourceKind::Yahoo, page, &stamps, ts("2024-03-01"))
        .await
        .unwrap();
    assert_eq!(c.sessions.len(), 2);
    assert_eq!(
        app.services.meta.empty_sessions(&k).await.unwrap(),
        c.sessions
    );
    assert!(gaps(&app, "symbols=AAPL").await.is_empty());
    let v: serde_json::Value = app
        .get("/api/v1/series?symbols=AAPL")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["series"][0]["gaps"], 0);
    // A halt inside a session: its minutes are absent, not missing.
    let m = key("AAPL", Interval::M1);
    let minutes = expected(
        Market::Us,
        Interval::M1,
        "2024-01-08",
        "2024-01-09",
        &[("2024-01-08T15:00:00Z", "2024-01-08T15:30:00Z")],
    );
    write(&app, "AAPL", Interval::M1, &minutes).await;
    assert_eq!(gaps(&app, "symbols=AAPL&interval=1m").await.len(), 1);
    let page = TimeRange::new(ts("2024-01-08"), ts("2024-01-09")).unwrap();
    let c = app
        .services
        .gaps
        .confirm_empty(
            &m,
            None,
            SourceKind::Yahoo,
            page,
            &minutes,
            ts("2024-03-01"),
        )
        .await
        .unwrap();
    assert_eq!((c.sessions.len(), c.absent.len()), (0, 30));
    assert!(gaps(&app, "symbols=AAPL&interval=1m").await.is_empty());
}

#[tokio::test]
async fn a_closure_added_in_config_removes_a_gap() {
    let stamps = expected(
        Market::Us,
        Interval::D1,
        "2024-01-02",
        "2024-02-01",
        &[("2024-01-10", "2024-01-11")],
    );
    let plain = spawn_app().await;
    write(&plain, "AAPL", Interval::D1, &stamps).await;
    assert_eq!(gaps(&plain, "").await.len(), 1);
    let closed = spawn_app_with("calendars: { US: { closures: [2024-01-10] } }\n", &[]).await;
    write(&closed, "AAPL", Interval::D1, &stamps).await;
    assert!(gaps(&closed, "").await.is_empty());
}

#[tokio::test]
async fn a_write_the_primary_failed_is_read_back_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("bars.db")).unwrap());
    let store = MisbehavingStore::new(inner, WriteGate::new(true));
    let app = spawn_app_on(store.clone(), "", &[]).await;
    let k = key("AAPL", Interval::D1);
    write(
        &app,
        "AAPL",
        Interval::D1,
        &expected(Market::Us, Interval::D1, "2024-01-02", "2024-02-01", &[]),
    )
    .await;
    // February lands in the store, but the primary reports a failure.
    store.fail_after_write.store(true, Ordering::SeqCst);
    let feb = expected(Market::Us, Interval::D1, "2024-02-01", "2024-03-01", &[]);
    let bars = feb.iter().map(|t| bar(*t, 2.0)).collect();
    // Unacknowledged, so spooled (the replay writes the same bars again).
    let applied = app.services.writer.write(batch(&k, bars)).await;
    assert!(
        matches!(applied, Ok(dms::ingest::Applied::Spooled { .. })),
        "{applied:?}"
    );
    store.fail_after_write.store(false, Ordering::SeqCst);
    let cov = app.services.meta.coverage_of(&k).await.unwrap();
    assert_eq!(cov.unknown_blocks(), [ts("2024-01-01")]);
    // The summary says nothing of February; the store has it: the scan reads it back.
    assert!(gaps(&app, "symbols=AAPL").await.is_empty());
    let cov = app.services.meta.coverage_of(&k).await.unwrap();
    assert!(cov.unknown_blocks().is_empty());
    assert_eq!(
        cov.blocks[&ts("2024-01-01")].present.count(),
        21 + feb.len() as u64
    );
}

#[tokio::test]
async fn gaps_on_influxdb_including_bars_stored_before_the_summaries() {
    let influxd = crate::helpers::influxd::shared();
    let db = influxd.unique_database("gaps");
    // Bars already in the database before DMS kept summaries (or written by another tool).
    let before = InfluxStore::connect(&influxd.config(&db)).await.unwrap();
    let old = expected(
        Market::Us,
        Interval::D1,
        "2023-01-03",
        "2023-04-01",
        &[("2023-02-06", "2023-02-08")],
    );
    let k = key("MSFT", Interval::D1);
    before
        .write(&batch(&k, old.iter().map(|t| bar(*t, 3.0)).collect()))
        .await
        .unwrap();
    let primary = format!(
        "{{kind: influxdb, url: \"{}\", api: v1, database: {db}}}",
        influxd.url
    );
    let app = spawn_app_with("", &[("DMS__STORAGE__PRIMARY", &primary)]).await;
    ibm_without_a_week(&app).await;
    let got = gaps(&app, "").await;
    assert_eq!(
        got,
        [
            gap(
                "IBM",
                "1d",
                "2010-03-08T00:00:00Z",
                "2010-03-13T00:00:00Z",
                5
            ),
            gap(
                "MSFT",
                "1d",
                "2023-02-06T00:00:00Z",
                "2023-02-08T00:00:00Z",
                2
            ),
        ]
    );
    // The old series was read once; its summary is now built and kept by the write path.
    assert!(app.services.meta.coverage_series().await.unwrap()[&k]);
    write(
        &app,
        "MSFT",
        Interval::D1,
        &expected(Market::Us, Interval::D1, "2023-02-06", "2023-02-08", &[]),
    )
    .await;
    assert_eq!(
        gaps(&app, "symbols=MSFT").await,
        Vec::<serde_json::Value>::new()
    );
    // HK minutes on InfluxDB too.
    let hk = expected(
        Market::Hk,
        Interval::M1,
        "2024-01-02",
        "2024-01-03",
        &[("2024-01-02T02:00:00Z", "2024-01-02T02:30:00Z")],
    );
    write(&app, "0700.HK", Interval::M1, &hk).await;
    assert_eq!(
        gaps(&app, "symbols=0700.HK").await,
        [gap(
            "0700.HK",
            "1m",
            "2024-01-02T02:00:00Z",
            "2024-01-02T02:30:00Z",
            1
        )]
    );
}

#[tokio::test]
async fn a_universe_series_with_nothing_stored_is_due_from_its_start() {
    let app = spawn_app_with(
        "universe: [{ symbol: MSFT, source: yahoo, intervals: [1d], start: 2024-01-02 }]\n",
        &[],
    )
    .await;
    assert!(
        gaps(&app, "").await.is_empty(),
        "no interior gaps without bars"
    );
    let head = gaps(&app, "head=true").await;
    assert_eq!(head.len(), 1, "{head:?}");
    assert_eq!(
        (head[0]["symbol"].as_str(), head[0]["kind"].as_str()),
        (Some("MSFT"), Some("head"))
    );
    assert_eq!(head[0]["start"], "2024-01-02T00:00:00Z");
    assert!(head[0]["sessions"].as_u64().unwrap() > 200);
    // The update job's view: nothing stored, due from the start, stale.
    let plans = app
        .services
        .gaps
        .plan(&[key("MSFT", Interval::D1)], chrono::Utc::now().timestamp())
        .await
        .unwrap();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].latest, None);
    assert!(plans[0].stale);
    assert_eq!(plans[0].head.unwrap().range.start(), ts("2024-01-02"));
}

#[tokio::test]
async fn bad_gap_queries_are_refused() {
    let app = spawn_app().await;
    for q in ["interval=7m", "symbols=%27", "head=maybe", "nope=1"] {
        let r = app.get(&format!("/api/v1/gaps?{q}")).await;
        assert_eq!(r.status(), 400, "{q}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_argument", "{q}");
    }
}

#[tokio::test]
async fn health_names_each_holiday_table_end_and_warns_without_degrading() {
    let app = spawn_app().await;
    let v: serde_json::Value = app.get("/health").await.json().await.unwrap();
    let cals = v["calendars"].as_array().unwrap();
    assert_eq!(cals.len(), 4, "US, HK, SH, SZ have tables: {cals:?}");
    let now = chrono::Utc::now().date_naive();
    for c in cals {
        let ends =
            chrono::NaiveDate::parse_from_str(c["ends"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        let soon = (ends - now).num_days() < 120;
        assert_eq!(c["warning"].is_string(), soon, "{c}");
    }
    assert_eq!(v["status"], "ok");
}

/// A Yahoo-layout CSV of US sessions in January 2024 without the 10th.
fn csv_without_the_tenth() -> String {
    let mut out = String::from("Date,Open,High,Low,Close,Adj Close,Volume\n");
    for t in expected(
        Market::Us,
        Interval::D1,
        "2024-01-02",
        "2024-02-01",
        &[("2024-01-10", "2024-01-11")],
    ) {
        out += &format!("{},10,11,9,10.5,10.5,1000\n", time::date_of(t));
    }
    out
}

#[test]
fn dms_gaps_prints_a_table_or_the_api_json() {
    let dms = DmsCommand::new("");
    let file = dms.write("AAPL.csv", &csv_without_the_tenth());
    let o = dms.run(&[
        "import",
        "--path",
        file.to_str().unwrap(),
        "--interval",
        "1d",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = dms.run(&["gaps", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["gaps"],
        serde_json::json!([gap(
            "AAPL",
            "1d",
            "2024-01-10T00:00:00Z",
            "2024-01-11T00:00:00Z",
            1
        )])
    );
    let o = dms.run(&["gaps", "--symbols", "AAPL", "--interval", "1d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("SYMBOL") && lines[0].contains("SESSIONS"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("AAPL") && lines[1].contains("2024-01-10T00:00:00Z"),
        "{text}"
    );
    assert_eq!(lines[2], "1 gap in 1 series, 1 session");
    let o = dms.run(&["gaps", "--interval", "1m"]);
    assert_eq!(stdout(&o), "no gaps\n");
    assert_eq!(
        dms.run(&["gaps", "--interval", "7m"]).status.code(),
        Some(2)
    );
}

#[tokio::test]
async fn dms_gaps_asks_the_server_that_holds_the_data() {
    let dms = DmsCommand::new("");
    let _server = dms.serve();
    let dir = dms.dir.path().join("data");
    let mut base = None;
    crate::helpers::eventually("dms serve to bind", || {
        base = dms::datadir::read_holder(&dir).and_then(|h| h.base_url());
        std::future::ready(base.is_some())
    })
    .await;
    let base = base.unwrap();
    let file = dms.write("AAPL.csv", &csv_without_the_tenth());
    let o = dms.run(&[
        "import",
        "--path",
        file.to_str().unwrap(),
        "--interval",
        "1d",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = dms.run(&["gaps", "--json", "--head"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let kinds: Vec<&str> = v["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["interior", "head"], "{v}");
    // The unfiltered scan set the stale gauge of the server (its own process, so no other
    // test's scan can have set it since).
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dms_series_stale{interval=\"1d\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dms_series_stale{interval=\"1m\"} 0"),
        "{metrics}"
    );
}
