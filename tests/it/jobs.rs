//! Jobs, backfill and the sources API end to end: through `POST /api/v1/jobs` (against the fake
//! OpenD) and through `dms backfill` (against the files drop folder).

use crate::helpers::app::{DmsCommand, TestApp, spawn_app, spawn_app_with, stderr, stdout};
use crate::helpers::fake_opend::{FakeKLine, FakeOpenD};

async fn run_job(app: &TestApp, body: &serde_json::Value) -> (u64, serde_json::Value) {
    app.run_job(body).await
}

fn daily(date: &str, close: f64) -> FakeKLine {
    FakeKLine::new(
        &format!("{date} 00:00:00"),
        close - 1.0,
        close + 2.0,
        close - 3.0,
        close,
        1_000,
    )
}

#[tokio::test]
async fn a_backfill_job_fetches_from_futu_and_the_bars_are_served() {
    let fake = FakeOpenD::start().await;
    fake.add_klines(
        "HK.00700",
        2,
        vec![
            daily("2024-01-02", 300.0),
            daily("2024-01-03", 301.5),
            daily("2024-01-04", 299.0),
        ],
    );
    let app = spawn_app_with(
        &format!(
            "sources: {{ futu: {{ host: 127.0.0.1, port: {} }} }}\n",
            fake.port()
        ),
        &[],
    )
    .await;
    let (id, job) = run_job(
        &app,
        &serde_json::json!({"task": "backfill", "symbols": ["0700.HK"], "interval": "1d",
            "start": "2024-01-01", "end": "2024-01-10", "source": "futu"}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"], serde_json::json!({"done": 1, "total": 1}));
    assert_eq!(job["counters"]["bars_fetched"], 3);
    assert_eq!(job["counters"]["bars_written"], 3);
    assert!(job["started_at"].is_string() && job["finished_at"].is_string());

    let csv = app
        .get("/api/v1/bars?symbols=0700.HK&interval=1d&format=csv")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv,
        "symbol,ts,open,high,low,close,volume\n\
         0700.HK,2024-01-02T00:00:00Z,299.0,302.0,297.0,300.0,1000.0\n\
         0700.HK,2024-01-03T00:00:00Z,300.5,303.5,298.5,301.5,1000.0\n\
         0700.HK,2024-01-04T00:00:00Z,298.0,301.0,296.0,299.0,1000.0\n"
    );
    let log: serde_json::Value = app
        .get(&format!("/api/v1/jobs/{id}/log"))
        .await
        .json()
        .await
        .unwrap();
    let messages: Vec<&str> = log["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("0700.HK@1d: 3 bars fetched, 3 written")),
        "{messages:?}"
    );
    assert!(
        messages.last().unwrap().starts_with("backfill succeeded"),
        "{messages:?}"
    );

    let list: serde_json::Value = app
        .get("/api/v1/jobs?status=succeeded")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["jobs"][0]["id"], id);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("dms_jobs_total{task=\"backfill\",outcome=\"succeeded\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failing_series_fails_the_job_with_the_cause_and_the_others_still_land() {
    let fake = FakeOpenD::start().await;
    fake.add_klines("HK.00700", 2, vec![daily("2024-01-02", 300.0)]);
    let app = spawn_app_with(
        &format!(
            "sources: {{ futu: {{ host: 127.0.0.1, port: {}, max_retries: 0 }} }}\n",
            fake.port()
        ),
        &[],
    )
    .await;
    let (_, job) = run_job(
        &app,
        &serde_json::json!({"task": "backfill", "symbols": ["0700.HK", "BTC-USD"], "interval": "1d",
            "start": "2024-01-01", "source": "futu"}),
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["counters"]["series_failed"], 1);
    assert_eq!(job["counters"]["bars_written"], 1);
    let errors = job["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].as_str().unwrap().starts_with("BTC-USD: futu: "),
        "{errors:?}"
    );
}

#[tokio::test]
async fn bad_job_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    for body in [
        serde_json::json!({"task": "dance"}),
        serde_json::json!({"task": "backfill", "interval": "1d", "start": "2024-01-01"}),
        serde_json::json!({"task": "backfill", "symbols": ["A B"], "interval": "1d", "start": "2024-01-01"}),
        serde_json::json!({"task": "backfill", "symbols": ["AAPL"], "interval": "1d"}),
        serde_json::json!({"task": "backfill", "symbols": ["AAPL"], "interval": "1d", "start": "2024-01-02", "end": "2024-01-01"}),
        serde_json::json!({"task": "backfill", "symbols": ["AAPL"], "interval": "1d", "start": "2024-01-01", "source": "bloomberg"}),
        serde_json::json!({"task": "backfill", "symbols": ["AAPL"], "interval": "1d", "start": "2024-01-01", "colour": "red"}),
        serde_json::json!({"task": "update"}),
    ] {
        let r = app
            .client
            .post(app.url("/api/v1/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_argument", "{body}");
    }
    let r = app
        .client
        .post(app.url("/api/v1/jobs"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let list: serde_json::Value = app.get("/api/v1/jobs").await.json().await.unwrap();
    assert_eq!(list["jobs"], serde_json::json!([]), "nothing was recorded");
    assert_eq!(app.get("/api/v1/jobs/999").await.status(), 404);
    assert_eq!(
        app.client
            .post(app.url("/api/v1/jobs/999/cancel"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(app.get("/api/v1/jobs?status=weird").await.status(), 400);
    assert_eq!(app.get("/api/v1/jobs?page=0").await.status(), 400);
}

#[tokio::test]
async fn sources_report_their_state_and_answer_pings() {
    let fake = FakeOpenD::start().await;
    let app = spawn_app_with(
        &format!(
            "sources: {{ futu: {{ host: 127.0.0.1, port: {} }} }}\n",
            fake.port()
        ),
        &[],
    )
    .await;
    let v: serde_json::Value = app.get("/api/v1/sources").await.json().await.unwrap();
    let names: Vec<&str> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"futu") && names.contains(&"files"), "{v}");
    assert_eq!(v["sources"][0]["paused"], false);
    let r: serde_json::Value = app
        .client
        .post(app.url("/api/v1/sources/futu/ping"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["reachable"], true, "{r}");
    drop(fake);
    let r = app
        .client
        .post(app.url("/api/v1/sources/nope/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn dms_backfill_runs_in_process_and_prints_a_summary() {
    let dms = DmsCommand::new("sources: { files: { dir: drop } }\n");
    std::fs::create_dir(dms.dir.path().join("drop")).unwrap();
    dms.write(
        "drop/AAPL.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,187.15,188.44,183.89,185.64,184.94,82488700\n2024-01-03,184.22,185.88,183.43,184.25,183.55,58414500\n2024-01-04,null,null,null,null,null,null\n",
    );
    let o = dms.run(&[
        "backfill",
        "--symbols",
        "AAPL",
        "--interval",
        "1d",
        "--start",
        "2024-01-01",
        "--source",
        "files",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("backfill succeeded: 1 series (0 failed), 2 bars fetched, 2 written, 0 spooled, 0 quarantined, 1 dropped (no trade 1"),
        "{out}"
    );
    assert!(out.contains("fetch ") && out.contains("write "), "{out}");
    let o = dms.run(&["read", "--symbols", "AAPL", "--interval", "1d"]);
    assert_eq!(stdout(&o).lines().count(), 3);

    let o = dms.run(&[
        "backfill",
        "--symbols",
        "MSFT",
        "--interval",
        "1d",
        "--start",
        "2024-01-01",
        "--source",
        "files",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let last = stderr(&o).lines().last().unwrap().to_string();
    assert!(
        last.starts_with("error: MSFT: files: symbol MSFT@1d"),
        "{last}"
    );
    let o = dms.run(&["backfill", "--symbols", "MSFT", "--interval", "1d"]);
    assert_eq!(o.status.code(), Some(2), "missing --start is bad usage");
}

#[tokio::test]
async fn a_yahoo_that_keeps_refusing_is_paused_and_the_pause_is_reported() {
    use crate::helpers::mock_yahoo::{Fault, MockYahoo};
    let mock = MockYahoo::start().await;
    mock.serve_fixture("AAPL", "1d", "AAPL_1d_2020-08-31_2020-11-07_split_div.json");
    mock.fail_always("AAPL", Fault::TooManyRequests { retry_after: None });
    let app = spawn_app_with(
        &format!(
            "sources: {{ yahoo: {{ base_url: \"{}\", max_retries: 1, pause_after_refusals: 2, pause_s: 600 }} }}\n",
            mock.base_url()
        ),
        &[],
    )
    .await;
    let (_, job) = run_job(
        &app,
        &serde_json::json!({"task": "backfill", "symbols": ["AAPL"], "interval": "1d",
            "start": "2020-08-31", "end": "2020-11-07"}),
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["errors"][0].as_str().unwrap();
    assert!(error.starts_with("AAPL: yahoo: "), "{error}");
    // Two refusals, then nothing more reaches Yahoo.
    assert_eq!(mock.requests_for("AAPL").len(), 2);

    let v: serde_json::Value = app.get("/api/v1/sources").await.json().await.unwrap();
    let yahoo = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "yahoo")
        .unwrap()
        .clone();
    assert_eq!(yahoo["paused"], true, "{yahoo}");
    assert!(yahoo["paused_until"].is_string(), "{yahoo}");
    let health: serde_json::Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    // `dms_source_paused` is not asserted here: metrics are process-wide and other tests build
    // Yahoo gates at the same time. The counter below only grows.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("dms_fetch_requests_total{source=\"yahoo\",outcome=\"rate_limited\"}"),
        "{metrics}"
    );

    // A second job fails fast with the pause, without sending anything.
    let (_, job) = run_job(&app, &serde_json::json!({"task": "backfill", "symbols": ["AAPL"], "interval": "1d", "start": "2020-08-31", "end": "2020-11-07"})).await;
    assert!(
        job["errors"][0].as_str().unwrap().contains("paused"),
        "{job}"
    );
    assert_eq!(mock.requests_for("AAPL").len(), 2);
}
