//! `GET /api/v1/calendars/{market}/sessions` end to end.

use crate::helpers::app::{spawn_app, spawn_app_with};

async fn sessions(app: &crate::helpers::app::TestApp, path: &str) -> (u16, serde_json::Value) {
    let r = app.get(path).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

fn dates(v: &serde_json::Value) -> Vec<String> {
    v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["date"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn hong_kong_lunar_new_year_half_day_and_lunch_break() {
    let app = spawn_app().await;
    let (status, v) = sessions(
        &app,
        "/api/v1/calendars/HK/sessions?start=2024-02-08&end=2024-02-17",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["market"], "HK");
    // 2024-02-10 is the Lunar New Year (a Saturday): HKEX closed on the 12th and 13th, and
    // the eve (the 9th) was a half day with no afternoon session.
    assert_eq!(
        dates(&v),
        [
            "2024-02-08",
            "2024-02-09",
            "2024-02-14",
            "2024-02-15",
            "2024-02-16"
        ]
    );
    let s = &v["sessions"];
    assert_eq!(s[0]["open"], "2024-02-08T01:30:00Z");
    assert_eq!(s[0]["close"], "2024-02-08T08:00:00Z");
    assert_eq!(s[0]["lunch"]["start"], "2024-02-08T04:00:00Z");
    assert_eq!(s[0]["lunch"]["end"], "2024-02-08T05:00:00Z");
    assert_eq!(s[0]["early_close"], false);
    assert_eq!(s[1]["early_close"], true);
    assert_eq!(s[1]["close"], "2024-02-09T04:00:00Z");
}

#[tokio::test]
async fn us_thanksgiving_week_and_a_configured_closure() {
    let app = spawn_app().await;
    let path = "/api/v1/calendars/us/sessions?start=2024-11-25&end=2024-12-02";
    let (status, v) = sessions(&app, path).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        dates(&v),
        ["2024-11-25", "2024-11-26", "2024-11-27", "2024-11-29"]
    );
    // The day after Thanksgiving closes at 13:00 New York (18:00 UTC).
    assert_eq!(v["sessions"][3]["close"], "2024-11-29T18:00:00Z");
    assert_eq!(v["sessions"][3]["early_close"], true);
    assert!(v["sessions"][0]["lunch"].is_null());

    // An operator's extra closure (config `calendars:`) is not a session.
    let closed = spawn_app_with("calendars: { US: { closures: [2024-11-26] } }\n", &[]).await;
    let (_, v) = sessions(&closed, path).await;
    assert_eq!(dates(&v), ["2024-11-25", "2024-11-27", "2024-11-29"]);
}

#[tokio::test]
async fn unknown_markets_and_bad_ranges_are_refused() {
    let app = spawn_app().await;
    let (status, v) = sessions(&app, "/api/v1/calendars/XX/sessions").await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "not_found");
    for q in [
        "start=2024-02-01&end=2024-01-01",
        "start=2024-13-01",
        "start=1900-01-01&end=2100-01-01",
        "begin=2024-01-01",
    ] {
        let (status, v) = sessions(&app, &format!("/api/v1/calendars/US/sessions?{q}")).await;
        assert_eq!(status, 400, "{q}: {v}");
    }
    // Without a range: the next 31 days from today, crypto trades every day.
    let (status, v) = sessions(&app, "/api/v1/calendars/CRYPTO/sessions").await;
    assert_eq!(status, 200);
    assert_eq!(v["sessions"].as_array().unwrap().len(), 31);
}
