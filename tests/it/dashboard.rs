//! The dashboard's server side: `GET /` and `/assets/*` served from the binary without a
//! token, with their content types and cache headers, and `GET /api/v1/series` paging,
//! filtering and sorting on the server (what keeps the page fast with 10,000 series). The page
//! itself is tested in a real browser by `scripts/dashboard_check.sh` (`tests/browser/`).

use dms::domain::Interval;

use crate::helpers::app::{TestApp, spawn_app, spawn_app_with};
use crate::helpers::bars::{T0, bars, batch, key};

/// The `/assets/...?v=...` URLs the page loads, in order.
fn asset_urls(page: &str) -> Vec<String> {
    page.split("\"/assets/")
        .skip(1)
        .map(|rest| format!("/assets/{}", &rest[..rest.find('"').unwrap()]))
        .collect()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_without_a_token_while_the_api_needs_one() {
    // SAFETY: only this test sets these names, and it sets them before the app reads them.
    unsafe {
        std::env::set_var("DMS_TEST_DASH_ADMIN", "admin-secret");
        std::env::set_var("DMS_TEST_DASH_READ", "read-secret");
    }
    let app = spawn_app_with(
        "",
        &[
            ("DMS__SERVER__ADMIN_TOKEN_ENV", "DMS_TEST_DASH_ADMIN"),
            ("DMS__SERVER__READ_TOKEN_ENV", "DMS_TEST_DASH_READ"),
        ],
    )
    .await;
    let r = app.get("/").await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self';"),
        "{csp}"
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("<title>DMS"), "{page}");

    let urls = asset_urls(&page);
    for name in [
        "app.js",
        "app.css",
        "favicon.svg",
        "lightweight-charts.standalone.production.js",
        "lightweight-charts-LICENSE.txt",
        "lightweight-charts-NOTICE.txt",
    ] {
        assert!(
            urls.iter()
                .any(|u| u.starts_with(&format!("/assets/{name}?v="))),
            "the page does not link {name}: {urls:?}"
        );
    }
    for url in &urls {
        let r = app.get(url).await;
        assert_eq!(r.status(), 200, "{url}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let want = match url.split('?').next().unwrap().rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            "txt" => "text/plain; charset=utf-8",
            other => panic!("unexpected asset kind {other}"),
        };
        assert_eq!(ct, want, "{url}");
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert!(r.headers().contains_key("etag"), "{url}");
        assert!(!r.bytes().await.unwrap().is_empty(), "{url}");
    }

    // The API behind the page still needs its tokens; only reads of the page are open.
    assert_eq!(app.get("/api/v1/series").await.status(), 401);
    assert_eq!(app.get("/openapi.json").await.status(), 401);
    let post = app.client.post(app.url("/")).send().await.unwrap();
    assert_eq!(post.status(), 401, "a POST to / is not a read of the page");
}

#[tokio::test]
async fn the_vendored_chart_library_is_served_with_its_licence_and_notice() {
    let app = spawn_app().await;
    let lib = app
        .get("/assets/lightweight-charts.standalone.production.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(lib.starts_with("/*!\n * @license\n * TradingView Lightweight Charts™ v5."));
    assert!(lib.contains("window.LightweightCharts"));
    let licence = app
        .get("/assets/lightweight-charts-LICENSE.txt")
        .await
        .text()
        .await
        .unwrap();
    assert!(licence.contains("Apache License") && licence.contains("Version 2.0"));
    let notice = app
        .get("/assets/lightweight-charts-NOTICE.txt")
        .await
        .text()
        .await
        .unwrap();
    assert!(notice.contains("TradingView, Inc."), "{notice}");
    // The page credits it, as the licence asks.
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains("https://www.tradingview.com/"));
}

#[tokio::test]
async fn an_unknown_asset_is_a_404_and_a_known_etag_a_304() {
    let app = spawn_app().await;
    let r = app.get("/assets/nope.js").await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(app.get("/assets/../mod.rs").await.status(), 404);

    let r = app.get("/assets/app.js").await;
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let again = app
        .client
        .get(app.url("/assets/app.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let other = app
        .client
        .get(app.url("/assets/app.css"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "another file's ETag does not match");
}

/// Series: `(symbol, interval, bars)`.
const SERIES: [(&str, Interval, usize); 7] = [
    ("AAPL", Interval::D1, 30),
    ("AAPL", Interval::H1, 50),
    ("0700.HK", Interval::D1, 10),
    ("9988.HK", Interval::D1, 40),
    ("BRK.B", Interval::D1, 30),
    ("MSFT", Interval::D1, 20),
    ("NVDA", Interval::D1, 60),
];

async fn seeded() -> TestApp {
    let app = spawn_app().await;
    for (i, (s, interval, n)) in SERIES.into_iter().enumerate() {
        let b = bars(T0, n, interval, i as f64);
        app.services
            .writer
            .write(&batch(&key(s, interval), b))
            .await
            .unwrap();
    }
    app
}

async fn list(app: &TestApp, query: &str) -> serde_json::Value {
    let r = app.get(&format!("/api/v1/series{query}")).await;
    assert_eq!(r.status(), 200, "{query}");
    r.json().await.unwrap()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["symbol"].as_str().unwrap(),
                s["interval"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn series_pages_filters_and_sorts_on_the_server_and_counts_every_match() {
    let app = seeded().await;

    // Unpaged, the original shape: every series, plus the count.
    let all = list(&app, "").await;
    assert_eq!(all["series"].as_array().unwrap().len(), SERIES.len());
    assert_eq!(all["total"], SERIES.len());
    let bars: usize = SERIES.iter().map(|s| s.2).sum();
    assert_eq!(all["total_bars"], bars);
    assert!(all["page"].is_null() && all["page_size"].is_null());
    assert!(all["cache"].is_object());
    assert_eq!(
        names(&all)[..3],
        [
            "0700.HK 1d",
            "9988.HK 1d",
            "AAPL 1h", // intervals by length within a symbol
        ]
    );

    // Pages: sizes, the last partial page, a page past the end, the count on each.
    let p1 = list(&app, "?page=1&page_size=3").await;
    let p3 = list(&app, "?page=3&page_size=3").await;
    let p9 = list(&app, "?page=9&page_size=3").await;
    assert_eq!(
        (p1["page"].clone(), p1["page_size"].clone()),
        (1.into(), 3.into())
    );
    assert_eq!(names(&p1), names(&all)[..3]);
    assert_eq!(names(&p3), names(&all)[6..]);
    assert!(names(&p9).is_empty());
    for p in [&p1, &p3, &p9] {
        assert_eq!(p["total"], SERIES.len());
        assert_eq!(p["total_bars"], bars);
    }
    assert_eq!(
        list(&app, "?page=2").await["page_size"],
        50,
        "the default page size"
    );

    // Filters: a symbol substring ignoring case, an interval, both.
    let hk = list(&app, "?q=.hk").await;
    assert_eq!(names(&hk), ["0700.HK 1d", "9988.HK 1d"]);
    assert_eq!(hk["total"], 2);
    assert_eq!(hk["total_bars"], 50);
    assert_eq!(list(&app, "?q=aap&interval=1h").await["total"], 1);
    assert_eq!(
        list(&app, "?q=%20%20").await["total"],
        SERIES.len(),
        "blank q"
    );
    assert_eq!(list(&app, "?q=zzz").await["total"], 0);

    // Sorting: by count descending (ties by symbol), by first, descending symbol.
    let by_count = list(&app, "?sort=-count&page_size=4").await;
    let counts: Vec<u64> = by_count["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [60, 50, 40, 30]);
    assert_eq!(by_count["total"], SERIES.len());
    let ties = list(&app, "?sort=-count&page=2&page_size=3").await;
    assert_eq!(
        names(&ties)[..2],
        ["AAPL 1d", "BRK.B 1d"],
        "equal counts in symbol order"
    );
    let desc = list(&app, "?sort=-symbol").await;
    let mut reversed = names(&all);
    reversed.reverse();
    assert_eq!(names(&desc), reversed);
    assert_eq!(
        names(&list(&app, "?sort=interval&page_size=1").await),
        ["AAPL 1h"]
    );

    // Freshness: every series `stale=true` returns is stale, every `stale=false` one is not.
    for (q, want) in [("true", true), ("false", false)] {
        let v = list(&app, &format!("?stale={q}")).await;
        for s in v["series"].as_array().unwrap() {
            assert_eq!(s["stale"], want, "{s}");
        }
    }
}

#[tokio::test]
async fn bad_paging_sorting_or_filtering_is_a_400_naming_the_parameter() {
    let app = seeded().await;
    let long_q = "x".repeat(65);
    for (query, names) in [
        ("?page=0", "page"),
        ("?page_size=0", "page_size"),
        ("?page_size=1001", "page_size"),
        ("?page=-1", "page"),
        ("?page=two", "page"),
        ("?sort=volume", "sort"),
        ("?sort=--count", "sort"),
        ("?stale=maybe", "stale"),
        (&format!("?q={long_q}") as &str, "q"),
        ("?colour=red", "colour"),
    ] {
        let r = app.get(&format!("/api/v1/series{query}")).await;
        assert_eq!(r.status(), 400, "{query}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_argument", "{query}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{query}: {message}");
    }
}
