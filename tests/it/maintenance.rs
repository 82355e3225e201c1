//! Maintenance through the API against the mock Yahoo: incremental updates from the latest
//! stored bar and of holes inside a series, sessions a source confirms empty, HK lunch breaks,
//! the persisted universe, splits that re-fetch stored history (and rescale what Yahoo no
//! longer serves, also after a re-fetch or rescale cut short), schedules, alerts raised by
//! failing jobs, requests refused before anything is created, `sync` and `verify` jobs
//! against an embedded backup node, a backfill and a split re-fetch of the real `dms serve`
//! killed with SIGKILL and resumed, and the outage of an HK minute series served by the fake OpenD.

use std::time::Duration;

use dms::domain::{Calendar, Interval, Market, TimeRange, time};
use dms::store::Store;
use dms::store::embedded::EmbeddedStore;

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

fn stored(b: &yahoo_synth::SynthBar) -> dms::domain::Bar {
    dms::domain::Bar {
        ts: b.ts,
        open: b.open.unwrap(),
        high: b.high.unwrap(),
        low: b.low.unwrap(),
        close: b.close.unwrap(),
        volume: b.volume.unwrap() as f64,
        adj_close: b.adjclose,
        source: dms::domain::SourceKind::Yahoo,
    }
}

/// NVDA with 1d and 5m series, its 5m history stored 100 days back (from when Yahoo still
/// served it; it serves 60 days) and brought to now by an update; then a 4:1 split at the
/// open of the last stored session is served on both intervals. Returns the app, the mock,
/// the split's series, `now` and the 5m bars stored before the split. `extra`: more
/// configuration variables.
async fn nvda_5m_history_then_a_split(
    extra: &[(&str, &str)],
) -> (MockYahoo, TestApp, Synth, i64, Vec<dms::domain::Bar>) {
    let mock = MockYahoo::start().await;
    let t = now();
    let synth = Synth::new("5m", t);
    mock.serve_synthetic("NVDA", synth.clone());
    mock.serve_synthetic("NVDA", Synth::new("1d", t));
    let mut env = vec![("DMS__HISTORY__DEFAULT_START_YEARS", "1")];
    env.extend_from_slice(extra);
    let app = app_on(
        &mock,
        "[{symbol: NVDA, source: yahoo, intervals: [1d, 5m]}]",
        &env,
    )
    .await;
    let k = key("NVDA", Interval::M5);
    let old: Vec<dms::domain::Bar> = yahoo_synth::bars("NVDA", &synth, t - 100 * DAY, t - 40 * DAY)
        .iter()
        .map(stored)
        .collect();
    app.services
        .writer
        .write(dms::validate::revalidated_from_store(&k, old).unwrap())
        .await
        .unwrap();
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let before = app.services.primary.read(&k, TimeRange::ALL).await.unwrap();
    assert!(before[0].ts < t - 90 * DAY);
    // Announced on the daily series (Yahoo's intraday answers carry no events); the update
    // of the 5m series rewrites its last sessions on the new basis before the split is known.
    let mut i = before.len() - 1;
    while i > 0 && before[i].ts - before[i - 1].ts == 300 {
        i -= 1;
    }
    let split = synth.with_split(before[i].ts, 4.0);
    mock.serve_synthetic("NVDA", split.clone());
    mock.serve_synthetic("NVDA", Synth::new("1d", t).with_split(before[i].ts, 4.0));
    (mock, app, split, t, before)
}

/// Checks the job rescaled the bars older than Yahoo's window still on the old basis (all of
/// them but `already`), and that every stored 5m bar is now what Yahoo sends on the new basis.
async fn assert_all_on_the_new_basis(
    app: &TestApp,
    job: &serde_json::Value,
    (split, t, before): (&Synth, i64, &[dms::domain::Bar]),
    already: u64,
    log_says: &str,
) {
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["counters"]["refetched_for_splits"], 2, "{job}");
    let unserved = before.iter().filter(|b| b.ts < t - 60 * DAY).count() as u64 - already;
    let rebased = job["counters"]["bars_rebased"].as_u64().unwrap();
    assert!(
        rebased >= unserved && rebased < unserved + 100,
        "{rebased} bars rebased, {unserved} older than the window: {job}"
    );
    let log: serde_json::Value = app
        .get(&format!("/api/v1/jobs/{}/log", job["id"]))
        .await
        .json()
        .await
        .unwrap();
    assert!(log.to_string().contains(log_says), "{log}");
    let k = key("NVDA", Interval::M5);
    let after = app.services.primary.read(&k, TimeRange::ALL).await.unwrap();
    let expected: Vec<dms::domain::Bar> = yahoo_synth::bars("NVDA", split, before[0].ts, t)
        .iter()
        .map(stored)
        .collect();
    assert_eq!(after.len(), before.len());
    assert_eq!(after.len(), expected.len());
    for (b, e) in after.iter().zip(&expected) {
        assert_eq!(
            (b.ts, b.open, b.high, b.low, b.close, b.volume),
            (e.ts, e.open, e.high, e.low, e.close, e.volume),
            "stored bar at {} not on the new basis",
            time::rfc3339(b.ts)
        );
    }
    assert_eq!(after[0].close, before[0].close / 4.0);
    assert!(
        app.services.meta.pending_splits().await.unwrap().is_empty(),
        "the split's re-fetch is done"
    );
    // A second update finds nothing to re-fetch or rescale.
    let job = run(app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["counters"]["refetched_for_splits"], 0, "{job}");
    assert_eq!(
        app.services.primary.read(&k, TimeRange::ALL).await.unwrap(),
        after
    );
}

/// Leaves what a task killed during a split's re-fetch leaves: the split recorded as pending
/// and stored, one re-fetch started, and the 5m bars of `[from, to)` already rewritten on the
/// new basis. Returns how many of those are older than Yahoo's window.
async fn left_by_a_killed_refetch(app: &TestApp, split: &Synth, t: i64, from: i64, to: i64) -> u64 {
    let day = split.split.unwrap().0.div_euclid(DAY) * DAY;
    let meta = &app.services.meta;
    meta.add_pending_splits("NVDA", &[day]).await.unwrap();
    meta.start_split_refetch("NVDA").await.unwrap();
    app.services
        .writer
        .write_actions(
            &dms::domain::Symbol::parse("NVDA").unwrap(),
            &[dms::domain::CorporateAction::split(
                day,
                4.0,
                1.0,
                dms::domain::SourceKind::Yahoo,
            )],
        )
        .await
        .unwrap();
    let rewritten: Vec<dms::domain::Bar> = yahoo_synth::bars("NVDA", split, from, to)
        .iter()
        .map(stored)
        .collect();
    let unserved = rewritten.iter().filter(|b| b.ts < t - 60 * DAY).count() as u64;
    app.services
        .writer
        .write(
            dms::validate::revalidated_from_store(&key("NVDA", Interval::M5), rewritten).unwrap(),
        )
        .await
        .unwrap();
    unserved
}

/// The normal case on the stores `extra` configures (with a backup node `b1`): the update
/// rescales, then a `sync` ships it. Returns the app (and the mock, which must outlive it).
async fn rescaled_then_synced(extra: &[(&str, &str)]) -> (MockYahoo, TestApp) {
    let (mock, app, split, t, before) = nvda_5m_history_then_a_split(extra).await;
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_all_on_the_new_basis(
        &app,
        &job,
        (&split, t, &before),
        0,
        "the re-fetched bars before the split were stored on the old one",
    )
    .await;
    // The rescale went through the change log like any write: the backup gets it too.
    let (_, job) = app
        .run_job(&serde_json::json!({"task": "sync", "node": "b1"}))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    (mock, app)
}

#[tokio::test]
async fn a_new_split_rescales_the_5m_history_older_than_yahoos_window_once_it_shows_the_old_basis()
{
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("b1.db");
    let backups = format!("[{{ name: b1, kind: embedded, path: {backup:?} }}]");
    let (_mock, app) = rescaled_then_synced(&[("DMS__STORAGE__BACKUPS", &backups)]).await;
    let k = key("NVDA", Interval::M5);
    let node = EmbeddedStore::open(&backup).unwrap();
    assert_eq!(
        node.read(&k, TimeRange::ALL).await.unwrap(),
        app.services.primary.read(&k, TimeRange::ALL).await.unwrap()
    );
}

#[tokio::test]
async fn a_split_rescales_the_history_yahoo_no_longer_serves_on_an_influxdb_primary_and_its_backup()
{
    let influxd = crate::helpers::influxd::shared();
    let (db, backup_db) = (
        influxd.unique_database("rebase"),
        influxd.unique_database("rebase_b1"),
    );
    let primary = format!(
        "{{kind: influxdb, url: \"{}\", api: v1, database: {db}}}",
        influxd.url
    );
    let backups = format!(
        "[{{ name: b1, kind: influxdb, url: \"{}\", api: v1, database: {backup_db} }}]",
        influxd.url
    );
    let (_mock, app) = rescaled_then_synced(&[
        ("DMS__STORAGE__PRIMARY", &primary),
        ("DMS__STORAGE__BACKUPS", &backups),
    ])
    .await;
    let k = key("NVDA", Interval::M5);
    let node = dms::store::influx::InfluxStore::connect(&influxd.config(&backup_db))
        .await
        .unwrap();
    assert_eq!(
        node.read(&k, TimeRange::ALL).await.unwrap(),
        app.services.primary.read(&k, TimeRange::ALL).await.unwrap()
    );
}

#[tokio::test]
async fn two_updates_meeting_the_same_split_at_once_rescale_the_history_once() {
    let (mock, app, split, t, before) = nvda_5m_history_then_a_split(&[]).await;
    // Slow answers, so that the two jobs overlap.
    mock.fail_always(
        "*",
        crate::helpers::mock_yahoo::Fault::Slow(Duration::from_millis(300)),
    );
    // One update of each interval: no series in common, so nothing but the split re-fetch
    // itself keeps them apart; the daily one finds the split, both find it pending.
    let daily = serde_json::json!({"task": "update", "interval": "1d"});
    let minutes = serde_json::json!({"task": "update", "interval": "5m"});
    let (a, b) = tokio::join!(app.run_job(&daily), app.run_job(&minutes));
    let (a, b) = (a.1, b.1);
    assert_eq!(
        (&a["status"], &b["status"]),
        (&"succeeded".into(), &"succeeded".into()),
        "{a} {b}"
    );
    let unserved = before.iter().filter(|b| b.ts < t - 60 * DAY).count() as u64;
    let rebased = |j: &serde_json::Value| j["counters"]["bars_rebased"].as_u64().unwrap();
    let total = rebased(&a) + rebased(&b);
    assert!(
        total >= unserved && total < unserved + 100,
        "rescaled once between them: {a} {b}"
    );
    let k = key("NVDA", Interval::M5);
    let after = app.services.primary.read(&k, TimeRange::ALL).await.unwrap();
    let expected: Vec<dms::domain::Bar> = yahoo_synth::bars("NVDA", &split, before[0].ts, t)
        .iter()
        .map(stored)
        .collect();
    assert_eq!(after.len(), expected.len());
    for (b, e) in after.iter().zip(&expected) {
        assert_eq!((b.ts, b.close, b.volume), (e.ts, e.close, e.volume));
    }
    assert!(app.services.meta.pending_splits().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_split_refetch_cut_short_is_finished_by_the_next_update_judged_across_the_edge() {
    let (_mock, app, split, t, before) = nvda_5m_history_then_a_split(&[]).await;
    // The oldest week Yahoo serves was rewritten on the new basis, so the bars the next
    // re-fetch overwrites no longer show the old one.
    let from = t - 60 * DAY + 3_600;
    left_by_a_killed_refetch(&app, &split, t, from, from + 7 * DAY).await;
    // The daily page still carries the split, but it is no longer new: the pending record
    // is what brings the re-fetch back.
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_all_on_the_new_basis(
        &app,
        &job,
        (&split, t, &before),
        0,
        "the jump to the re-fetched bars is the split's",
    )
    .await;
}

#[tokio::test]
async fn a_rescale_cut_short_is_finished_by_the_next_update_and_nothing_is_rescaled_twice() {
    let (_mock, app, split, t, before) = nvda_5m_history_then_a_split(&[]).await;
    // The window was re-fetched and the newest bars older than it already rescaled (the
    // rescale writes newest first), the rest still on the old basis.
    let already = left_by_a_killed_refetch(&app, &split, t, t - 75 * DAY, t).await;
    assert!(already > 500);
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_all_on_the_new_basis(
        &app,
        &job,
        (&split, t, &before),
        already,
        "finishing a rescale cut short",
    )
    .await;
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

// ----- interior gaps, confirmed-empty sessions, lunch breaks -----

fn date_str(ts: i64) -> String {
    time::date_of(ts).format("%Y-%m-%d").to_string()
}

/// The US sessions (date, open instant) between `from` and `to` days ago.
fn us_sessions(from_days_ago: i64, to_days_ago: i64) -> Vec<(chrono::NaiveDate, i64)> {
    let cal = Calendar::standard(Market::Us);
    cal.sessions(
        time::date_of(now() - from_days_ago * DAY),
        time::date_of(now() - to_days_ago * DAY),
    )
    .map(|s| (s.date, s.open))
    .collect()
}

async fn gaps_of(app: &TestApp, query: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = app
        .get(&format!("/api/v1/gaps?{query}"))
        .await
        .json()
        .await
        .unwrap();
    v["gaps"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_update_fills_a_hole_inside_a_stored_series() {
    let mock = MockYahoo::start().await;
    let synth = Synth::new("1d", now());
    mock.serve_synthetic("AAPL", synth.clone());
    let start = date_str(now() - 150 * DAY);
    let app = app_on(
        &mock,
        &format!("[{{symbol: AAPL, source: yahoo, intervals: [1d], start: \"{start}\"}}]"),
        &[],
    )
    .await;
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let k = key("AAPL", Interval::D1);
    let full = app.services.primary.read(&k, TimeRange::ALL).await.unwrap();
    assert!(full.len() > 90, "{} bars", full.len());
    assert!(gaps_of(&app, "symbols=AAPL").await.is_empty());
    // A week two months back goes missing (a bad delete, a lost shard).
    let hole = TimeRange::new(
        time::date_ts(time::date_of(now() - 60 * DAY)),
        time::date_ts(time::date_of(now() - 53 * DAY)),
    )
    .unwrap();
    let removed = app.services.writer.delete(&k, hole).await.unwrap();
    assert!(removed >= 4, "{removed}");
    let listed = gaps_of(&app, "symbols=AAPL").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["sessions"], removed, "{listed:?}");
    let before = mock.requests_for("AAPL").len();
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // One request for the hole, one for the head; nothing else of the history.
    let asked = mock.requests_for("AAPL").split_off(before);
    assert_eq!(asked.len(), 2, "{asked:?}");
    let (p1, p2) = asked[0].period().unwrap();
    assert!(
        p1 <= hole.start() + DAY && p2 >= hole.end() - DAY && p2 < now() - 40 * DAY,
        "the hole {hole} was asked as {p1}..{p2}"
    );
    assert!(period1(&asked[1]) > now() - 15 * DAY, "the head");
    let after = app.services.primary.read(&k, TimeRange::ALL).await.unwrap();
    assert_eq!(after, full, "every bar is back, once");
    assert!(gaps_of(&app, "symbols=AAPL").await.is_empty());
}

#[tokio::test]
async fn sessions_a_source_answers_empty_for_are_recorded_not_gaps_and_not_fetched_again() {
    let mock = MockYahoo::start().await;
    // AAPL is suspended for two sessions about six weeks ago; MSFT trades throughout.
    let sessions = us_sessions(45, 35);
    let (suspended, resumed) = (&sessions[2..4], sessions[4]);
    let synth = Synth::new("1d", now()).omitting(suspended[0].1, resumed.1);
    mock.serve_synthetic("AAPL", synth);
    mock.serve_synthetic("MSFT", Synth::new("1d", now()));
    let start = date_str(now() - 120 * DAY);
    let app = app_on(
        &mock,
        &format!(
            "[{{symbol: AAPL, source: yahoo, intervals: [1d], start: \"{start}\"}}, \
              {{symbol: MSFT, source: yahoo, intervals: [1d], start: \"{start}\"}}]"
        ),
        &[],
    )
    .await;
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["counters"]["sessions_confirmed_empty"], 2, "{job}");
    let k = key("AAPL", Interval::D1);
    assert_eq!(
        app.services.meta.empty_sessions(&k).await.unwrap(),
        [suspended[0].0, suspended[1].0]
    );
    assert!(
        app.services
            .meta
            .empty_sessions(&key("MSFT", Interval::D1))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(gaps_of(&app, "").await.is_empty(), "a suspension is no gap");
    let before = mock.requests_for("AAPL").len();
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // The second update only asks for the head: the suspension is not fetched again.
    let asked = mock.requests_for("AAPL").split_off(before);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(period1(&asked[0]) > resumed.1, "{asked:?}");
    assert!(gaps_of(&app, "symbols=AAPL").await.is_empty());
}

#[tokio::test]
async fn an_hk_intraday_series_without_bars_over_lunch_has_no_gap_and_its_update_asks_only_for_a_real_hole()
 {
    let mock = MockYahoo::start().await;
    // The source answers, and has nothing more (what is stored is all there is).
    mock.serve_synthetic("0700.HK", Synth::new("5m", now()).omitting(0, i64::MAX / 2));
    let app = app_on(
        &mock,
        "[{symbol: 0700.HK, source: yahoo, intervals: [5m]}]",
        &[],
    )
    .await;
    let cal = Calendar::standard(Market::Hk);
    let sessions: Vec<dms::domain::Session> = cal
        .sessions(
            time::date_of(now() - 25 * DAY),
            time::date_of(now() - 2 * DAY),
        )
        .collect();
    assert!(sessions.len() >= 10, "{sessions:?}");
    // Ten sessions of 5-minute bars as the calendar expects them: none over lunch.
    let span = TimeRange::new(sessions[0].open, sessions[9].end()).unwrap();
    let hole_session = &sessions[3];
    let hole = TimeRange::new(hole_session.open + 3600, hole_session.open + 2 * 3600).unwrap();
    let stamps: Vec<i64> = cal
        .expected_stamps(Interval::M5, span)
        .into_iter()
        .filter(|t| !hole.contains(*t))
        .collect();
    let lunch = |t: i64| {
        let hm = chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .with_timezone(&chrono_tz::Asia::Hong_Kong)
            .format("%H:%M")
            .to_string();
        ("12:00".to_string().."13:00".to_string()).contains(&hm)
    };
    assert!(!stamps.iter().any(|t| lunch(*t)), "no bar over lunch");
    let k = key("0700.HK", Interval::M5);
    let bars: Vec<dms::domain::Bar> = stamps
        .iter()
        .map(|t| crate::helpers::bars::bar(*t, 1.0))
        .collect();
    app.services
        .writer
        .write(crate::helpers::bars::batch(&k, bars))
        .await
        .unwrap();
    let listed = gaps_of(&app, "symbols=0700.HK&interval=5m").await;
    assert_eq!(
        listed.len(),
        1,
        "only the hole, never a lunch break: {listed:?}"
    );
    assert_eq!(
        (listed[0]["start"].as_str(), listed[0]["end"].as_str()),
        (
            Some(time::rfc3339(hole.start()).as_str()),
            Some(time::rfc3339(hole.end()).as_str())
        )
    );
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let asked = mock.requests_for("0700.HK");
    assert_eq!(asked.len(), 2, "the hole and the head: {asked:?}");
    assert_eq!(asked[0].period(), Some((hole.start(), hole.end())));
    assert!(period1(&asked[1]) >= sessions[5].open, "{asked:?}");
    // The source answered for the hour with nothing: confirmed, no longer a gap.
    assert!(
        gaps_of(&app, "symbols=0700.HK&interval=5m")
            .await
            .is_empty()
    );
}

// ----- verify and sync jobs -----

#[tokio::test]
async fn a_sync_job_ships_to_a_node_and_a_verify_job_finds_and_repairs_a_wrong_bar() {
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("b1.db");
    let backups = format!("[{{ name: b1, kind: embedded, path: {backup:?} }}]");
    let app = spawn_app_with("", &[("DMS__STORAGE__BACKUPS", &backups)]).await;
    let k = key("AAPL", Interval::D1);
    let cal = Calendar::standard(Market::Us);
    let stamps = cal.expected_stamps(
        Interval::D1,
        TimeRange::new(
            time::parse_instant("2024-01-01").unwrap(),
            time::parse_instant("2024-07-01").unwrap(),
        )
        .unwrap(),
    );
    let mut stored: Vec<dms::domain::Bar> = stamps
        .iter()
        .map(|t| crate::helpers::bars::bar(*t, 1.0))
        .collect();
    // One bar on a Saturday, stored before the calendar rules existed.
    let saturday = time::parse_instant("2024-03-09").unwrap();
    stored.push(crate::helpers::bars::bar(saturday, 1.0));
    app.services
        .writer
        .write(crate::helpers::bars::batch(&k, stored.clone()))
        .await
        .unwrap();

    // sync: everything reaches the node, and the job says so.
    let (_, job) = app
        .run_job(&serde_json::json!({"task": "sync", "node": "b1"}))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let last = app.services.meta.last_seq().await.unwrap();
    assert_eq!(job["counters"]["per_node"][0]["node"], "b1", "{job}");
    assert_eq!(job["counters"]["per_node"][0]["acked_seq"], last, "{job}");
    let node = EmbeddedStore::open(&backup).unwrap();
    assert_eq!(
        node.read(&k, TimeRange::ALL).await.unwrap().len(),
        stored.len()
    );

    // Behind DMS's back: one wrong close on the node.
    let mut wrong = stored[40];
    wrong.close += 0.5;
    wrong.high += 0.5;
    node.write(&dms::validate::revalidated_from_store(&k, vec![wrong]).unwrap())
        .await
        .unwrap();
    let (_, job) = app.run_job(&serde_json::json!({"task": "verify"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let c = &job["counters"];
    assert_eq!(c["series"], 1, "{job}");
    assert_eq!(c["bars_checked"], stored.len(), "{job}");
    assert_eq!(c["bad_bars"], 1, "the Saturday bar: {job}");
    assert_eq!(c["quality_recorded"], 1, "{job}");
    assert_eq!(
        (c["differences"].as_u64(), c["repaired"].as_u64()),
        (Some(1), Some(1)),
        "{job}"
    );
    assert!(c["buckets_compared"].as_u64().unwrap() > 0, "{job}");
    assert_eq!(c["nodes"][0]["node"], "b1", "{job}");
    let on_node = node
        .read(&k, TimeRange::new(wrong.ts, wrong.ts + 1).unwrap())
        .await
        .unwrap();
    assert_eq!(on_node, [stored[40]], "repaired to the primary's bar");
    let q: serde_json::Value = app
        .get("/api/v1/quality?symbols=AAPL")
        .await
        .json()
        .await
        .unwrap();
    assert!(q.to_string().contains("closed_day"), "{q}");
    // A second verify finds nothing new to record and nothing differing.
    let (_, job) = app
        .run_job(&serde_json::json!({"task": "verify", "symbols": ["AAPL"], "node": "b1"}))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        (
            job["counters"]["bad_bars"].as_u64(),
            job["counters"]["quality_recorded"].as_u64(),
            job["counters"]["differences"].as_u64()
        ),
        (Some(1), Some(0), Some(0)),
        "{job}"
    );
    // A node that does not exist, a parameter these tasks do not take: 400, nothing created.
    let jobs_before = app.services.meta.jobs(None, 1, 100).await.unwrap().len();
    for body in [
        serde_json::json!({"task": "sync", "node": "nope"}),
        serde_json::json!({"task": "verify", "node": "nope"}),
        serde_json::json!({"task": "sync", "symbols": ["AAPL"]}),
        serde_json::json!({"task": "update", "node": "b1"}),
    ] {
        let r = submit(&app, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
    }
    assert_eq!(
        app.services.meta.jobs(None, 1, 100).await.unwrap().len(),
        jobs_before
    );
}

// ----- a job killed with SIGKILL resumes -----

/// The address of the `dms serve` holding `data`, once it answers.
async fn serving(data: &std::path::Path) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(url) = dms::datadir::read_holder(data).and_then(|h| h.base_url())
            && reqwest::get(format!("{url}/health")).await.is_ok()
        {
            return url;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dms serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_backfill_killed_with_sigkill_resumes_after_a_restart_and_stores_every_bar_once() {
    let mock = MockYahoo::start().await;
    let synth = Synth::new("1d", now());
    let symbols = [
        "AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH", "III", "JJJ", "KKK", "LLL",
    ];
    for s in symbols {
        mock.serve_synthetic(s, synth.clone());
    }
    // Every answer takes three seconds: 12 series, 8 at once, leave time to kill the job half-way.
    mock.fail_always(
        "*",
        crate::helpers::mock_yahoo::Fault::Slow(Duration::from_secs(3)),
    );
    let cmd = crate::helpers::app::DmsCommand::new(&format!(
        "sources: {{ yahoo: {{ base_url: \"{}\", requests_per_minute: 0 }} }}\n",
        mock.base_url()
    ));
    let data = cmd.dir.path().join("data");
    let client = reqwest::Client::new();
    let mut server = cmd.serve();
    let base = serving(&data).await;
    let start = date_str(now() - 400 * DAY);
    let r = client
        .post(format!("{base}/api/v1/jobs"))
        .json(&serde_json::json!({"task": "backfill", "symbols": symbols, "interval": "1d", "start": start}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_u64()
        .unwrap();
    let job_at = |base: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("{base}/api/v1/jobs/{id}"))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    // Kill it once some series are done (and checkpointed) and others are not.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let done_at_kill = loop {
        let job = job_at(base.clone()).await;
        let done = job["progress"]["done"].as_u64().unwrap_or(0);
        assert!(
            matches!(job["status"].as_str(), Some("queued" | "running")),
            "finished before the kill: {job}"
        );
        if done > 0 {
            break done;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(done_at_kill < symbols.len() as u64);
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let asked_before = mock.requests().len();

    // The same data directory: the job resumes from its checkpoint and completes.
    let _server = cmd.serve();
    let base = serving(&data).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let job = loop {
        let job = job_at(base.clone()).await;
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    let log: serde_json::Value = client
        .get(format!("{base}/api/v1/jobs/{id}/log"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(log.to_string().contains("resumed after a restart"), "{log}");
    // Series finished before the kill were not fetched again.
    let asked_after = mock.requests().len() - asked_before;
    assert!(
        asked_after as u64 <= symbols.len() as u64 - done_at_kill,
        "{asked_after} requests after the restart, {done_at_kill} series were done"
    );
    // Every bar the source has, stored exactly once.
    let from = time::parse_instant(&start).unwrap();
    let v: serde_json::Value = client
        .get(format!(
            "{base}/api/v1/bars?symbols={}&interval=1d&start={start}",
            symbols.join(",")
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for s in symbols {
        let want: Vec<String> = yahoo_synth::bars(s, &synth, from, now())
            .iter()
            .map(|b| {
                time::rfc3339(time::date_ts(time::local_date(
                    b.ts,
                    chrono_tz::America::New_York,
                )))
            })
            .collect();
        let got: Vec<String> = serde_json::from_value(v["series"][s]["ts"].clone()).unwrap();
        let got: Vec<String> = got
            .iter()
            .map(|t| time::rfc3339(time::parse_instant(t).unwrap()))
            .collect();
        assert_eq!(got, want, "{s}");
    }
}

/// The outage test through the fake OpenD, for a lunch-break-aware 1m series of an HK symbol:
/// a week goes missing from the store, `gaps` names exactly that week (never a lunch break),
/// the next update asks OpenD for the hole and fills it, and gaps are empty again.
#[tokio::test]
async fn an_hk_minute_series_from_opend_loses_a_week_and_the_update_fills_exactly_it() {
    use crate::helpers::fake_opend::{FakeKLine, FakeOpenD, HISTORY_KL};
    use chrono::TimeZone;
    let opend = FakeOpenD::start().await;
    let cal = Calendar::standard(Market::Hk);
    let tz = Market::Hk.timezone();
    let sessions: Vec<dms::domain::Session> = cal
        .sessions(time::date_of(now() - 30 * DAY), time::date_of(now() - DAY))
        .collect();
    assert!(sessions.len() >= 12, "{sessions:?}");
    // Every 1m bar of those sessions, labelled as OpenD labels them: by their end, local time.
    let mut klines = Vec::new();
    for s in &sessions {
        for t in s.bar_starts(Interval::M1) {
            let end = (t + 60).min(s.close);
            let label = chrono::Utc
                .timestamp_opt(end, 0)
                .unwrap()
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            let px = 380.0 + (t % 7_919) as f64 / 1_000.0;
            klines.push(FakeKLine::new(
                &label,
                px,
                px + 0.2,
                px - 0.2,
                px + 0.1,
                1_000,
            ));
        }
    }
    opend.add_klines("HK.00700", 1, klines);
    let futu = format!(
        "{{ host: 127.0.0.1, port: {}, max_retries: 0, timeout_s: 10 }}",
        opend.port()
    );
    let universe = format!(
        "[{{symbol: 0700.HK, source: futu, futu_code: HK.00700, intervals: [1m], start: \"{}\"}}]",
        sessions[0].date
    );
    let app = spawn_app_with(
        "",
        &[
            ("DMS__SOURCES__FUTU", futu.as_str()),
            ("DMS__UNIVERSE", universe.as_str()),
        ],
    )
    .await;
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let k = key("0700.HK", Interval::M1);
    let full = app.services.primary.read(&k, TimeRange::ALL).await.unwrap();
    let expected: usize = sessions
        .iter()
        .map(|s| s.bar_starts(Interval::M1).count())
        .sum();
    assert_eq!(
        full.len(),
        expected,
        "every minute of every session, none over lunch"
    );
    assert!(gaps_of(&app, "symbols=0700.HK").await.is_empty());

    // Sessions 3..8 go missing (a bad delete, a lost shard).
    let week = &sessions[3..8];
    let hole = TimeRange::new(week[0].open, week[4].end()).unwrap();
    let removed = app.services.writer.delete(&k, hole).await.unwrap();
    let in_week: u64 = week
        .iter()
        .map(|s| s.bar_starts(Interval::M1).count() as u64)
        .sum();
    assert_eq!(removed, in_week);
    let listed = gaps_of(&app, "symbols=0700.HK&interval=1m").await;
    assert_eq!(
        listed.len(),
        1,
        "one gap, not one per lunch break: {listed:?}"
    );
    assert_eq!(listed[0]["sessions"], 5, "{listed:?}");
    assert_eq!(
        listed[0]["start"],
        time::rfc3339(week[0].open),
        "{listed:?}"
    );

    let before = opend.requests_of(HISTORY_KL).len();
    let job = run(&app, serde_json::json!({"task": "update"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(
        opend.requests_of(HISTORY_KL).len() > before,
        "the hole was asked of OpenD"
    );
    let after = app.services.primary.read(&k, TimeRange::ALL).await.unwrap();
    assert_eq!(after, full, "every bar is back, once");
    assert!(gaps_of(&app, "symbols=0700.HK").await.is_empty());
}

/// The crash the pending-split record is for, on the real `dms serve`: killed with SIGKILL
/// once its update has stored a new split and before the re-fetch of the symbol's history has
/// ended. After the restart the resumed job finishes the re-fetch, and the 5m bars older than
/// Yahoo's window (imported earlier) end on the new basis like the rest.
#[tokio::test]
async fn a_split_refetch_killed_with_sigkill_is_finished_after_a_restart() {
    let mock = MockYahoo::start().await;
    let t = now();
    let synth = Synth::new("5m", t);
    mock.serve_synthetic("NVDA", synth.clone());
    mock.serve_synthetic("NVDA", Synth::new("1d", t));
    let cmd = crate::helpers::app::DmsCommand::new(&format!(
        "sources: {{ yahoo: {{ base_url: \"{}\", requests_per_minute: 0 }} }}\n\
         universe: [{{symbol: NVDA, source: yahoo, intervals: [1d, 5m]}}]\n\
         history: {{ default_start_years: 1 }}\n",
        mock.base_url()
    ));
    // 5m history from when Yahoo still served it, imported before the server starts.
    let old = yahoo_synth::bars("NVDA", &synth, t - 100 * DAY, t - 40 * DAY);
    let mut csv = String::from("symbol,ts,open,high,low,close,volume\n");
    for b in &old {
        csv.push_str(&format!(
            "NVDA,{},{},{},{},{},{}\n",
            time::rfc3339(b.ts),
            b.open.unwrap(),
            b.high.unwrap(),
            b.low.unwrap(),
            b.close.unwrap(),
            b.volume.unwrap()
        ));
    }
    let path = cmd.write("old.csv", &csv);
    let o = cmd.run(&[
        "import",
        "--path",
        path.to_str().unwrap(),
        "--interval",
        "5m",
    ]);
    assert!(o.status.success(), "{o:?}");
    let data = cmd.dir.path().join("data");
    let client = reqwest::Client::new();
    let submit = |base: String| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("{base}/api/v1/jobs"))
                .json(&serde_json::json!({"task": "update"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_u64()
                .unwrap()
        }
    };
    let get = |url: String| {
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let finished = |base: String, id: u64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let job = get(format!("{base}/api/v1/jobs/{id}")).await;
            if matches!(
                job["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return job;
            }
            assert!(std::time::Instant::now() < deadline, "{job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut server = cmd.serve();
    let base = serving(&data).await;
    let id = submit(base.clone()).await;
    assert_eq!(finished(base.clone(), id).await["status"], "succeeded");

    // A 4:1 split at the open of the session of the last stored bar (announced on the daily
    // series), every answer slow: kill once the job says it found the split.
    let last = yahoo_synth::bars("NVDA", &synth, t - 5 * DAY, t);
    let session_open = last
        .iter()
        .rev()
        .find(|b| last.iter().all(|p| p.ts >= b.ts || p.ts < b.ts - 4 * 3_600))
        .unwrap()
        .ts;
    let split = synth.with_split(session_open, 4.0);
    mock.serve_synthetic("NVDA", split.clone());
    mock.serve_synthetic("NVDA", Synth::new("1d", t).with_split(session_open, 4.0));
    mock.fail_always(
        "*",
        crate::helpers::mock_yahoo::Fault::Slow(Duration::from_secs(2)),
    );
    let id = submit(base.clone()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let log = get(format!("{base}/api/v1/jobs/{id}/log")).await;
        if log.to_string().contains("new split") {
            break;
        }
        let job = get(format!("{base}/api/v1/jobs/{id}")).await;
        assert!(
            matches!(job["status"].as_str(), Some("queued" | "running")),
            "finished before the kill: {job}"
        );
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    mock.clear_faults();
    let mut server = cmd.serve();
    let base = serving(&data).await;
    let job = finished(base.clone(), id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(
        job["counters"]["bars_rebased"].as_u64().unwrap() > 0,
        "{job}"
    );
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let store = EmbeddedStore::open(&data.join("bars.db")).unwrap();
    let stored = store
        .read(&key("NVDA", Interval::M5), TimeRange::ALL)
        .await
        .unwrap();
    let expected = yahoo_synth::bars("NVDA", &split, t - 100 * DAY, t);
    assert_eq!(stored.len(), expected.len());
    for (b, e) in stored.iter().zip(&expected) {
        assert_eq!(
            (b.ts, Some(b.close), b.volume),
            (e.ts, e.close, e.volume.unwrap() as f64),
            "stored bar at {} not on the new basis",
            time::rfc3339(b.ts)
        );
    }
    let meta = dms::store::meta::MetaDb::open(&data.join("meta.db")).unwrap();
    assert!(meta.pending_splits().await.unwrap().is_empty());
}
