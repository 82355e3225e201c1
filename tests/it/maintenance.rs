//! Maintenance through the API against the mock Yahoo: incremental updates from the latest
//! stored bar, the persisted universe, splits that re-fetch stored history, schedules, alerts
//! raised by failing jobs, and requests refused before anything is created.

use std::time::Duration;

use dms::domain::{Interval, TimeRange};

use crate::helpers::app::{TestApp, spawn_app_with};
use crate::helpers::bars::key;
use crate::helpers::mock_yahoo::MockYahoo;
use crate::helpers::receiver::Receiver;
use crate::helpers::yahoo_synth::{self, Synth};

const DAY: i64 = 86_400;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn app_on(mock: &MockYahoo, universe: &str, extra: &[(&str, &str)]) -> TestApp {
    let yahoo = format!(
        "{{ base_url: \"{}\", requests_per_minute: 0 }}",
        mock.base_url()
    );
    let mut env = vec![
        ("DMS__SOURCES__YAHOO", yahoo.as_str()),
        ("DMS__UNIVERSE", universe),
    ];
    env.extend_from_slice(extra);
    spawn_app_with("", &env).await
}

async fn submit(app: &TestApp, body: serde_json::Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Submits a job (it must be accepted) and waits for it to end.
async fn run(app: &TestApp, body: serde_json::Value) -> serde_json::Value {
    app.run_job(&body).await.1
}

fn period1(r: &crate::helpers::mock_yahoo::Recorded) -> i64 {
    r.params["period1"].parse().unwrap()
}

#[tokio::test]
async fn an_update_fetches_from_the_latest_stored_bar_less_the_revision_window() {
    let mock = MockYahoo::start().await;
    mock.serve_synthetic("AAPL", Synth::new("1d", now()));
    let app = app_on(
        &mock,
        "[{symbol: AAPL, source: yahoo, intervals: [1d]}]",
        &[],
    )
    .await;
    let start = chrono::DateTime::from_timestamp(now() - 120 * DAY, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let job = run(
        &app,
        serde_json::json!({"task": "backfill", "symbols": ["AAPL"], "interval": "1d", "start": start}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let k = key("AAPL", Interval::D1);
    let stored = app.services.primary.read(&k, TimeRange::ALL).await.unwrap();
    let latest = stored.last().unwrap().ts;
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["counters"]["series"], 1, "{job}");
    let update = mock.requests_for("AAPL").pop().unwrap();
    // Three sessions (the default revision window) before the latest bar: 3 to 7 days back,
    // never the whole history again.
    let from = period1(&update);
    assert!(
        (latest - 8 * DAY..=latest - 3 * DAY + DAY).contains(&from),
        "update asked from {from}, latest bar {latest}"
    );
    // The update wrote the window again and nothing was lost.
    let after = app.services.primary.read(&k, TimeRange::ALL).await.unwrap();
    assert_eq!(after.len(), stored.len());
    assert!(
        job["counters"]["bars_written"].as_u64().unwrap() >= 3,
        "{job}"
    );
}

#[tokio::test]
async fn a_series_with_nothing_stored_starts_default_start_years_back() {
    let mock = MockYahoo::start().await;
    mock.serve_synthetic("MSFT", Synth::new("1d", now()));
    let app = app_on(
        &mock,
        "[{symbol: MSFT, source: yahoo, intervals: [1d]}]",
        &[("DMS__HISTORY__DEFAULT_START_YEARS", "2")],
    )
    .await;
    let job = run(
        &app,
        serde_json::json!({"task": "update", "symbols": ["MSFT"]}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let from = period1(&mock.requests_for("MSFT")[0]);
    let expected = now() - 2 * 36_525 * 864;
    assert!((from - expected).abs() < 3 * DAY, "{from} vs {expected}");
    let stored = app
        .services
        .primary
        .read(&key("MSFT", Interval::D1), TimeRange::ALL)
        .await
        .unwrap();
    assert!(stored.len() > 400, "{} bars", stored.len());
}

#[tokio::test]
async fn a_new_split_between_two_updates_puts_every_stored_bar_on_the_new_basis() {
    let mock = MockYahoo::start().await;
    let synth = Synth::new("1d", now());
    mock.serve_synthetic("NVDA", synth.clone());
    let app = app_on(
        &mock,
        "[{symbol: NVDA, source: yahoo, intervals: [1d], start: \"2025-01-01\"}]",
        &[],
    )
    .await;
    assert_eq!(
        run(&app, serde_json::json!({"task": "update"})).await["status"],
        "succeeded"
    );
    let k = key("NVDA", Interval::D1);
    let before = app.services.primary.read(&k, TimeRange::ALL).await.unwrap();
    // The vendor announces a 4:1 split on the last stored session: its whole history moves
    // to the new basis, and the next update only fetches the last sessions.
    let split_at = yahoo_synth::bars("NVDA", &synth, before.last().unwrap().ts - 5 * DAY, now())
        .last()
        .unwrap()
        .ts;
    let split = synth.with_split(split_at, 4.0);
    mock.serve_synthetic("NVDA", split.clone());
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["counters"]["refetched_for_splits"], 1, "{job}");
    let log: serde_json::Value = app
        .get(&format!("/api/v1/jobs/{}/log", job["id"]))
        .await
        .json()
        .await
        .unwrap();
    assert!(log.to_string().contains("new split"), "{log}");
    let after = app.services.primary.read(&k, TimeRange::ALL).await.unwrap();
    assert_eq!(after.len(), before.len());
    let expected = yahoo_synth::bars("NVDA", &split, before[0].ts, now());
    for (b, e) in after.iter().zip(&expected) {
        assert_eq!(
            Some(b.close),
            e.close,
            "stored bar at {} not on the new basis",
            b.ts
        );
    }
    assert!(after[0].close < before[0].close / 3.0);
}

#[tokio::test]
async fn the_universe_api_adds_shows_and_removes_entries() {
    let mock = MockYahoo::start().await;
    let app = app_on(
        &mock,
        "[{symbol: AAPL, source: yahoo, intervals: [1d]}]",
        &[],
    )
    .await;
    let post = |body: serde_json::Value| {
        app.client
            .post(app.url("/api/v1/universe"))
            .json(&body)
            .send()
    };
    let r =
        post(serde_json::json!({"symbol": "0700.HK", "source": "futu", "intervals": ["1d", "1m"]}))
            .await
            .unwrap();
    assert_eq!(r.status(), 201);
    let r = post(serde_json::json!({"symbol": "0700.HK", "source": "yahoo"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "replaced");
    for bad in [
        serde_json::json!({"symbol": "bad symbol!", "source": "yahoo"}),
        serde_json::json!({"symbol": "X", "source": "nowhere"}),
        serde_json::json!({"symbol": "X", "source": "yahoo", "intervals": ["7m"]}),
        serde_json::json!({"symbol": "X", "source": "yahoo", "start": "yesterday"}),
        serde_json::json!({"symbol": "X", "source": "futu", "futu_code": "../x"}),
        serde_json::json!({"symbol": "X", "source": "yahoo", "colour": "red"}),
    ] {
        let r = post(bad.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_argument", "{v}");
    }
    let list: serde_json::Value = app.get("/api/v1/universe").await.json().await.unwrap();
    let symbols: Vec<(&str, &str)> = list["universe"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["symbol"].as_str().unwrap(), e["origin"].as_str().unwrap()))
        .collect();
    assert_eq!(symbols, [("0700.HK", "api"), ("AAPL", "config")]);
    let one: serde_json::Value = app
        .get("/api/v1/universe/0700.HK")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["source"], "yahoo");
    assert_eq!(app.get("/api/v1/universe/NOPE").await.status(), 404);
    let del = |s: &str| {
        app.client
            .delete(app.url(&format!("/api/v1/universe/{s}")))
            .send()
    };
    assert_eq!(del("0700.HK").await.unwrap().status(), 200);
    assert_eq!(del("0700.HK").await.unwrap().status(), 404);
    let r = del("AAPL").await.unwrap();
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("config"),
        "{v}"
    );
    // Jobs see the universe as it is now.
    let r = submit(
        &app,
        serde_json::json!({"task": "update", "symbols": ["0700.HK"]}),
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn bad_job_requests_answer_400_and_create_nothing() {
    let mock = MockYahoo::start().await;
    let app = app_on(
        &mock,
        "[{symbol: AAPL, source: yahoo, intervals: [1d]}]",
        &[],
    )
    .await;
    let old = chrono::DateTime::from_timestamp(now() - 90 * DAY, 0).unwrap();
    let older = (old - chrono::Duration::days(5))
        .format("%Y-%m-%d")
        .to_string();
    let old = old.format("%Y-%m-%d").to_string();
    for (body, says) in [
        (serde_json::json!({"task": "defragment"}), "unknown task"),
        (
            serde_json::json!({"task": "update", "symbols": ["ZZZZ"]}),
            "not in the universe",
        ),
        (
            serde_json::json!({"task": "update", "start": "2024-01-01"}),
            "start",
        ),
        (
            serde_json::json!({"task": "update", "market": "MARS"}),
            "unknown market",
        ),
        (
            serde_json::json!({"task": "update", "market": "HK"}),
            "no series",
        ),
        (
            serde_json::json!({"task": "backfill", "symbols": ["AAPL"], "interval": "1d", "start": "2024-02-01", "end": "2024-01-01"}),
            "not after start",
        ),
        (
            serde_json::json!({"task": "backfill", "symbols": ["AAPL"], "interval": "1m", "start": older, "end": old}),
            "last 30 days",
        ),
        (
            serde_json::json!({"task": "backfill", "symbols": ["AAPL"], "interval": "1d"}),
            "start",
        ),
    ] {
        let r = submit(&app, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_argument");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{body}: {msg}");
    }
    assert!(
        app.services
            .meta
            .jobs(None, 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(mock.requests().is_empty(), "nothing was sent to the source");
}

#[tokio::test]
async fn schedules_list_their_next_run_and_run_now_starts_their_job() {
    let mock = MockYahoo::start().await;
    mock.serve_synthetic("AAPL", Synth::new("1d", now()));
    let app = app_on(
        &mock,
        "[{symbol: AAPL, source: yahoo, intervals: [1d], start: \"2026-06-01\"}]",
        &[(
            "DMS__SCHEDULE",
            "[{name: us-close, cron: \"0 30 17 * * Mon-Fri\", timezone: America/New_York, task: update, markets: [US]}]",
        )],
    )
    .await;
    let v: serde_json::Value = app.get("/api/v1/schedules").await.json().await.unwrap();
    let s = &v["schedules"][0];
    assert_eq!(
        (s["name"].as_str(), s["task"].as_str()),
        (Some("us-close"), Some("update"))
    );
    let next = chrono::DateTime::parse_from_rfc3339(s["next_run"].as_str().unwrap()).unwrap();
    let local = next.with_timezone(&chrono_tz::America::New_York);
    assert_eq!(local.format("%H:%M").to_string(), "17:30", "{s}");
    assert!(next.timestamp() > now());
    assert!(
        dms::domain::Calendar::standard(dms::domain::Market::Us).is_session(local.date_naive())
    );
    let r = app
        .client
        .post(app.url("/api/v1/schedules/us-close/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_u64()
        .unwrap();
    let job = app.wait_job(id).await;
    assert_eq!(
        (job["task"].as_str(), job["status"].as_str()),
        (Some("update"), Some("succeeded")),
        "{job}"
    );
    assert_eq!(job["params"]["schedule"], "us-close");
    let v: serde_json::Value = app.get("/api/v1/schedules").await.json().await.unwrap();
    assert_eq!(v["schedules"][0]["last_job"], id);
    let r = app
        .client
        .post(app.url("/api/v1/schedules/nope/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_failing_job_raises_a_webhook_alert_and_its_next_success_clears_it() {
    let mock = MockYahoo::start().await;
    let rx = Receiver::start("{}").await;
    let alerts = format!(
        "[{{kind: webhook, url: {:?}, events: [job_failed]}}]",
        rx.url("/hook")
    );
    let app = app_on(
        &mock,
        "[{symbol: AAPL, source: yahoo, intervals: [1d], start: \"2026-06-01\"}]",
        &[("DMS__ALERTS", &alerts)],
    )
    .await;
    // The mock serves nothing for AAPL yet: Yahoo's "Not Found".
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "failed", "{job}");
    let got = rx.wait_ok(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].body["event"], "job_failed", "{:?}", got[0].body);
    assert_eq!(got[0].body["status"], "firing", "{:?}", got[0].body);
    mock.serve_synthetic("AAPL", Synth::new("1d", now()));
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let got = rx.wait_ok(2, Duration::from_secs(20)).await;
    assert_eq!(got[1].body["status"], "resolved", "{:?}", got[1].body);
}

#[tokio::test]
async fn repair_fetches_the_sessions_of_quarantined_bars_again() {
    let mock = MockYahoo::start().await;
    mock.serve_synthetic("AAPL", Synth::new("1d", now()));
    let app = app_on(
        &mock,
        "[{symbol: AAPL, source: yahoo, intervals: [1d]}]",
        &[],
    )
    .await;
    // A file with one broken bar (high below low) on 2026-06-02.
    let csv = "Date,Open,High,Low,Close,Adj Close,Volume\n2026-06-01,10,11,9,10.5,10.5,100\n2026-06-02,10,8,9,10.5,10.5,100\n";
    let r = app
        .client
        .post(app.url("/api/v1/import?interval=1d&name=AAPL.csv"))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["files"][0]["rejected"], 1, "{v}");
    let k = key("AAPL", Interval::D1);
    let day = dms::domain::time::parse_instant("2026-06-02").unwrap();
    let day_range = TimeRange::new(day, day + DAY).unwrap();
    assert!(
        app.services
            .primary
            .read(&k, day_range)
            .await
            .unwrap()
            .is_empty()
    );
    let job = run(&app, serde_json::json!({"task": "repair"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let repaired = app.services.primary.read(&k, day_range).await.unwrap();
    assert_eq!(repaired.len(), 1, "the day is stored now, from the source");
    let asked = mock.requests_for("AAPL");
    assert_eq!(asked.len(), 1, "only the quarantined day was fetched");
    assert!(period1(&asked[0]) <= day + DAY && period1(&asked[0]) >= day - DAY);
}
