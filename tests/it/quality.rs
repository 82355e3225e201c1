//! Validation end to end (issue 8 §4): files imported over HTTP go through the calendar rules
//! and the flag rules; `GET /api/v1/quality` lists the rejections (quarantined, not stored) and
//! the flags (stored), each with its kind, rule and reason, and the flagged bars read back
//! through `/api/v1/bars`.

use crate::helpers::app::{TestApp, spawn_app};

async fn upload(app: &TestApp, query: &str, csv: &str) -> serde_json::Value {
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/import?{query}")))
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn get_json(app: &TestApp, path: &str) -> serde_json::Value {
    let resp = app.get(path).await;
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// `(kind, ts, rule)` of each quality record, oldest first.
fn records(v: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = v["quality"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["kind"].as_str().unwrap().to_string(),
                q["ts"].as_str().unwrap().to_string(),
                q["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.reverse();
    out
}

fn triple(kind: &str, ts: &str, rule: &str) -> (String, String, String) {
    (kind.to_string(), ts.to_string(), rule.to_string())
}

#[tokio::test]
async fn imported_bars_are_rejected_or_flagged_by_rule_and_listed_with_kind_rule_and_reason() {
    let app = spawn_app().await;

    // AAPL daily bars around Independence Day 2024, Yahoo's CSV layout.
    let daily = "Date,Open,High,Low,Close,Adj Close,Volume\n\
        2024-07-01,216.0,218.0,215.0,217.5,217.5,1000\n\
        2024-07-02,217.5,220.0,217.0,219.0,219.0,1000\n\
        2024-07-03,219.0,221.0,218.5,220.5,220.5,1000\n\
        2024-07-04,220.5,221.0,220.0,220.8,220.8,1000\n\
        2024-07-05,22050,22600,22000,22600,22600,1000\n\
        2024-07-08,226.0,228.0,225.0,227.8,227.8,1000\n\
        2024-07-09,227.8,229.0,227.0,228.7,228.7,0\n\
        2024-07-10,228.7,228.0,227.0,232.9,232.9,1000\n\
        2024-07-13,232.9,234.0,232.0,233.0,233.0,1000\n";
    let report = upload(&app, "interval=1d&name=AAPL.csv", daily).await;
    let file = &report["files"][0];
    assert_eq!(
        (file["written"].as_u64(), file["rejected"].as_u64()),
        (Some(6), Some(3)),
        "{report}"
    );

    // Tencent minute bars: 11:59, 12:30 (lunch), 13:00 and 16:05 (the closing auction), Hong
    // Kong time on 2024-01-02.
    let minutes = "symbol,ts,open,high,low,close,volume\n\
        0700.HK,2024-01-02T03:59:00Z,381.0,381.2,380.8,381.0,1000\n\
        0700.HK,2024-01-02T04:30:00Z,381.0,381.2,380.8,381.0,1000\n\
        0700.HK,2024-01-02T05:00:00Z,381.0,381.4,380.8,381.2,1000\n\
        0700.HK,2024-01-02T08:05:00Z,381.2,381.2,381.2,381.2,90000\n";
    let report = upload(&app, "interval=1m&name=tencent.csv", minutes).await;
    let file = &report["files"][0];
    assert_eq!(
        (file["written"].as_u64(), file["rejected"].as_u64()),
        (Some(3), Some(1)),
        "{report}"
    );

    let all = get_json(&app, "/api/v1/quality").await;
    assert_eq!(
        records(&all),
        [
            triple("rejected", "2024-07-04T00:00:00Z", "closed_day"),
            triple("rejected", "2024-07-10T00:00:00Z", "high_below_open_close"),
            triple("rejected", "2024-07-13T00:00:00Z", "closed_day"),
            triple("flagged", "2024-07-05T00:00:00Z", "unit_error"),
            triple("flagged", "2024-07-09T00:00:00Z", "zero_volume"),
            triple("rejected", "2024-01-02T04:30:00Z", "outside_session"),
        ],
        "{all}"
    );
    let reason = |ts: &str| {
        all["quality"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["ts"] == ts)
            .map(|q| q["reason"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(
        reason("2024-07-04T00:00:00Z"),
        "2024-07-04 is not a US session (Independence Day)"
    );
    assert_eq!(
        reason("2024-07-13T00:00:00Z"),
        "2024-07-13 is not a US session (weekend)"
    );
    assert!(
        reason("2024-07-05T00:00:00Z").contains("unit error"),
        "{all}"
    );
    assert!(
        reason("2024-01-02T04:30:00Z").contains("lunch break"),
        "{all}"
    );
    let unit = all["quality"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["rule"] == "unit_error")
        .unwrap();
    assert_eq!(
        (&unit["symbol"], &unit["interval"], &unit["bar"]["close"]),
        (
            &serde_json::json!("AAPL"),
            &serde_json::json!("1d"),
            &serde_json::json!(22600.0)
        )
    );

    // The filters: by kind, and with symbol and interval.
    let flagged = get_json(&app, "/api/v1/quality?kind=flagged").await;
    assert_eq!(
        records(&flagged),
        [
            triple("flagged", "2024-07-05T00:00:00Z", "unit_error"),
            triple("flagged", "2024-07-09T00:00:00Z", "zero_volume"),
        ]
    );
    let hk = get_json(
        &app,
        "/api/v1/quality?kind=rejected&symbols=0700.HK&interval=1m",
    )
    .await;
    assert_eq!(
        records(&hk),
        [triple(
            "rejected",
            "2024-01-02T04:30:00Z",
            "outside_session"
        )]
    );
    let bad = app.get("/api/v1/quality?kind=suspicious").await;
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_argument", "{body}");

    // Flagged bars are stored; rejected ones are not.
    let bars = get_json(&app, "/api/v1/bars?symbols=AAPL&interval=1d&format=json").await;
    let aapl = &bars["series"]["AAPL"];
    let ts: Vec<&str> = aapl["ts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        ts,
        [
            "2024-07-01T00:00:00Z",
            "2024-07-02T00:00:00Z",
            "2024-07-03T00:00:00Z",
            "2024-07-05T00:00:00Z",
            "2024-07-08T00:00:00Z",
            "2024-07-09T00:00:00Z",
        ]
    );
    assert_eq!(aapl["close"][3], 22600.0);
    assert_eq!(aapl["volume"][5], 0.0);
    let hk = get_json(&app, "/api/v1/bars?symbols=0700.HK&interval=1m&format=json").await;
    assert_eq!(
        hk["series"]["0700.HK"]["ts"],
        serde_json::json!([
            "2024-01-02T03:59:00Z",
            "2024-01-02T05:00:00Z",
            "2024-01-02T08:05:00Z"
        ])
    );

    // Both kinds are counted by rule.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "dms_bars_flagged_total{rule=\"unit_error\"}",
        "dms_bars_rejected_total{rule=\"outside_session\"}",
        "dms_bars_rejected_total{rule=\"closed_day\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing");
    }
}

/// Imported (and fetched) bars are judged by the configured calendar: a closure from config
/// rejects the bar of that day as `closed_day`, the standard calendar alone would store it.
#[tokio::test]
async fn a_closure_from_config_rejects_the_bars_of_that_day() {
    let daily = "Date,Open,High,Low,Close,Adj Close,Volume\n\
        2024-01-09,185.0,186.0,184.0,185.5,185.5,1000\n\
        2024-01-10,185.5,187.0,185.0,186.5,186.5,1000\n\
        2024-01-11,186.5,188.0,186.0,187.5,187.5,1000\n";
    let plain = spawn_app().await;
    let report = upload(&plain, "interval=1d&name=AAPL.csv", daily).await;
    assert_eq!(report["files"][0]["rejected"].as_u64(), Some(0), "{report}");

    let closed =
        crate::helpers::app::spawn_app_with("calendars: { US: { closures: [2024-01-10] } }\n", &[])
            .await;
    let report = upload(&closed, "interval=1d&name=AAPL.csv", daily).await;
    let file = &report["files"][0];
    assert_eq!(
        (file["written"].as_u64(), file["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{report}"
    );
    let q = get_json(&closed, "/api/v1/quality").await;
    let rec = &q["quality"][0];
    assert_eq!(
        (rec["rule"].as_str(), rec["kind"].as_str()),
        (Some("closed_day"), Some("rejected")),
        "{q}"
    );
    assert!(
        rec["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("closed by config"),
        "{q}"
    );
}
