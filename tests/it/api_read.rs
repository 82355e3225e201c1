//! The read API end to end: `/api/v1/bars` in every format, the limit, `dms read` giving the
//! same bytes, the other read endpoints, the OpenAPI document, auth, and bad input.

use std::io::Cursor;

use arrow_array::{
    Array, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, TimestampSecondArray,
};
use dms::domain::{CorporateAction, Interval, SourceKind, Symbol};
use dms::validate::Context;

use crate::helpers::app::{DmsCommand, TestApp, spawn_app, spawn_app_with, stderr};
use crate::helpers::bars::{T0, bar, bars, batch, key};

/// `(symbol, ts, open, high, low, close, volume)`.
type Row = (String, i64, f64, f64, f64, f64, f64);

async fn seed(app: &TestApp) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, s) in ["AAPL", "0700.HK", "BRK.B"].into_iter().enumerate() {
        let k = key(s, Interval::D1);
        let b = bars(T0, 400 + i * 10, Interval::D1, i as f64);
        for x in &b {
            rows.push((
                s.to_string(),
                x.ts,
                x.open,
                x.high,
                x.low,
                x.close,
                x.volume,
            ));
        }
        app.services.writer.write(&batch(&k, b)).await.unwrap();
    }
    rows
}

const SYMBOLS: &str = "AAPL,0700.HK,BRK.B";

fn rows_from_batches(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let col = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone()
        };
        let sym = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        // Seconds in Arrow, milliseconds in Parquet (which has no seconds unit).
        let ts: Vec<i64> = match b.column(1).as_any().downcast_ref::<TimestampSecondArray>() {
            Some(s) => {
                assert_eq!(s.timezone(), Some("UTC"));
                s.values().to_vec()
            }
            None => {
                let ms = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .unwrap();
                assert_eq!(ms.timezone(), Some("UTC"));
                ms.values().iter().map(|v| v / 1000).collect()
            }
        };
        let (o, h, l, c, v) = (col(2), col(3), col(4), col(5), col(6));
        for (i, &t) in ts.iter().enumerate().take(b.num_rows()) {
            out.push((
                sym.value(i).to_string(),
                t,
                o.value(i),
                h.value(i),
                l.value(i),
                c.value(i),
                v.value(i),
            ));
        }
    }
    out
}

async fn get_bytes(app: &TestApp, q: &str) -> (u16, String, Vec<u8>) {
    let r = app.get(&format!("/api/v1/bars?{q}")).await;
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_round_trips_the_same_values() {
    let app = spawn_app().await;
    let want = seed(&app).await;
    let mut arrow_bodies = Vec::new();
    for _pass in 0..2 {
        // Twice: cold, then from the cache.
        let base = format!("symbols={SYMBOLS}&interval=1d");

        let (s, ct, body) = get_bytes(&app, &format!("{base}&format=arrow")).await;
        assert_eq!(
            (s, ct.as_str()),
            (200, "application/vnd.apache.arrow.stream")
        );
        arrow_bodies.push(body.clone());
        let reader = arrow_ipc::reader::StreamReader::try_new(Cursor::new(body), None).unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(rows_from_batches(&batches), want);

        let (s, ct, body) = get_bytes(&app, &format!("{base}&format=parquet")).await;
        assert_eq!((s, ct.as_str()), (200, "application/vnd.apache.parquet"));
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(body),
        )
        .unwrap()
        .build()
        .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(rows_from_batches(&batches), want);

        let (s, _, body) = get_bytes(&app, &format!("{base}&format=csv")).await;
        assert_eq!(s, 200);
        let mut rdr = csv::Reader::from_reader(Cursor::new(body));
        assert_eq!(
            rdr.headers().unwrap(),
            vec!["symbol", "ts", "open", "high", "low", "close", "volume"]
        );
        let got: Vec<Row> = rdr
            .records()
            .map(|r| {
                let r = r.unwrap();
                let f = |i: usize| r[i].parse::<f64>().unwrap();
                (
                    r[0].to_string(),
                    dms::domain::time::parse_instant(&r[1]).unwrap(),
                    f(2),
                    f(3),
                    f(4),
                    f(5),
                    f(6),
                )
            })
            .collect();
        assert_eq!(got, want);

        let (s, ct, body) = get_bytes(&app, &base).await;
        assert_eq!((s, ct.as_str()), (200, "application/json"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["interval"], "1d");
        let mut got = Vec::new();
        for s in SYMBOLS.split(',') {
            let c = &v["series"][s];
            let col = |name: &str, i: usize| c[name][i].as_f64().unwrap();
            for i in 0..c["ts"].as_array().unwrap().len() {
                got.push((
                    s.to_string(),
                    dms::domain::time::parse_instant(c["ts"][i].as_str().unwrap()).unwrap(),
                    col("open", i),
                    col("high", i),
                    col("low", i),
                    col("close", i),
                    col("volume", i),
                ));
            }
        }
        assert_eq!(got, want);
    }
    // Cached chunk bytes (Arrow record-batch messages) give the very bytes of the cold read.
    assert_eq!(arrow_bodies[0], arrow_bodies[1]);
    let stats: serde_json::Value = app.get("/api/v1/cache").await.json().await.unwrap();
    assert!(stats["hits"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 0, "{stats}");
}

#[tokio::test]
async fn adjusted_scales_ohlc_by_adj_close_over_close() {
    let app = spawn_app().await;
    let k = key("AAPL", Interval::D1);
    let b = bar(T0, 0.0);
    app.services
        .writer
        .write(&batch(&k, vec![b]))
        .await
        .unwrap();
    let (_, _, body) = get_bytes(&app, "symbols=AAPL&interval=1d&adjusted=true").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let k = b.adj_close.unwrap() / b.close;
    let s = &v["series"]["AAPL"];
    assert_eq!(s["open"][0].as_f64().unwrap(), b.open * k);
    assert_eq!(s["high"][0].as_f64().unwrap(), b.high * k);
    assert_eq!(s["low"][0].as_f64().unwrap(), b.low * k);
    assert_eq!(s["close"][0].as_f64().unwrap(), b.adj_close.unwrap());
    assert_eq!(s["volume"][0].as_f64().unwrap(), b.volume);
}

#[tokio::test]
async fn ranges_are_half_open_and_unknown_symbols_are_empty() {
    let app = spawn_app().await;
    seed(&app).await;
    let (s, _, body) = get_bytes(
        &app,
        "symbols=AAPL,NOPE&interval=1d&start=2024-01-03&end=2024-01-05T00:00:00Z",
    )
    .await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["series"]["AAPL"]["ts"],
        serde_json::json!(["2024-01-03T00:00:00Z", "2024-01-04T00:00:00Z"])
    );
    assert_eq!(v["series"]["NOPE"]["ts"], serde_json::json!([]));
}

#[tokio::test]
async fn a_request_over_the_bar_limit_is_refused_with_the_limit_in_the_message() {
    let app = spawn_app_with("", &[("DMS__READER__MAX_BARS_PER_REQUEST", "500")]).await;
    seed(&app).await;
    let r = app
        .get(&format!("/api/v1/bars?symbols={SYMBOLS}&interval=1d"))
        .await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_argument");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("limit of 500"), "{msg}");
    // Within the limit it answers.
    let r = app.get("/api/v1/bars?symbols=AAPL&interval=1d").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_is_streamed_and_complete() {
    let app = spawn_app().await;
    let k = key("BTC-USD", Interval::M1);
    let n = 200_000;
    for part in bars(T0, n, Interval::M1, 0.0).chunks(50_000) {
        app.services
            .writer
            .write(&batch(&k, part.to_vec()))
            .await
            .unwrap();
    }
    let (s, _, body) = get_bytes(&app, "symbols=BTC-USD&interval=1m&format=csv").await;
    assert_eq!(s, 200);
    assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), n + 1);
    let (_, _, body) = get_bytes(&app, "symbols=BTC-USD&interval=1m&format=arrow").await;
    let reader = arrow_ipc::reader::StreamReader::try_new(Cursor::new(body), None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, n);
}

#[test]
fn dms_read_gives_the_same_bytes_as_the_api() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dms = DmsCommand::with_port(port, "");
    let csv = dms.write(
        "IBM.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n\
         2024-01-02,160,162,159,161,150,100\n\
         2024-01-03,161,163,160,162.5,151.25,200\n\
         2024-01-04,162,164,161,163,152,300\n",
    );
    let o = dms.run(&[
        "import",
        "--path",
        csv.to_str().unwrap(),
        "--interval",
        "1d",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut guard = dms.serve();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while reqwest::blocking::get(format!("{base}/health")).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "server did not start: {:?}",
            guard.0.try_wait()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for format in ["json", "csv", "arrow", "parquet"] {
        for adjusted in [false, true] {
            let api = reqwest::blocking::get(format!(
                "{base}/api/v1/bars?symbols=IBM&interval=1d&start=2024-01-01&format={format}&adjusted={adjusted}"
            ))
            .unwrap()
            .bytes()
            .unwrap();
            let mut args = vec![
                "read",
                "--symbols",
                "IBM",
                "--interval",
                "1d",
                "--start",
                "2024-01-01",
                "--format",
                format,
            ];
            if adjusted {
                args.push("--adjusted");
            }
            let o = dms.run(&args);
            assert!(o.status.success(), "{}", stderr(&o));
            assert!(!api.is_empty());
            assert_eq!(o.stdout, api.to_vec(), "{format} adjusted={adjusted}");
        }
    }
}

#[tokio::test]
async fn series_quality_and_actions_answer() {
    let app = spawn_app().await;
    seed(&app).await;
    let v: serde_json::Value = app.get("/api/v1/series").await.json().await.unwrap();
    let list = v["series"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let aapl = list.iter().find(|s| s["symbol"] == "AAPL").unwrap();
    assert_eq!(aapl["interval"], "1d");
    assert_eq!(aapl["first"], "2024-01-02T00:00:00Z");
    assert_eq!(aapl["count"], 400);
    // Every day from 2024-01-02 for 400 days: no session is missing; the last bar is old.
    assert_eq!(aapl["gaps"], 0, "{aapl}");
    assert_eq!(aapl["stale"], true, "{aapl}");
    // Written just now, through the change log.
    let updated = dms::domain::time::parse_instant(aapl["last_update"].as_str().unwrap()).unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - updated).abs() < 300,
        "{aapl}"
    );
    assert!(v["cache"]["max_bytes"].as_u64().unwrap() > 0);
    let v: serde_json::Value = app
        .get("/api/v1/series?symbols=BRK.B&interval=1d")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["series"].as_array().unwrap().len(), 1);

    // A bad bar goes to quarantine through the writer.
    let k = key("AAPL", Interval::D1);
    let mut bad = bar(T0 - 86_400, 0.0);
    bad.high = 1.0;
    let report = app
        .services
        .writer
        .ingest(&k, vec![bad], &Context::new(i64::MAX / 4, None))
        .await
        .unwrap();
    assert_eq!(report.rejected, 1);
    let v: serde_json::Value = app
        .get("/api/v1/quality?symbols=AAPL&interval=1d&limit=5")
        .await
        .json()
        .await
        .unwrap();
    let q = &v["quality"][0];
    assert_eq!(q["rule"], "high_below_open_close");
    assert_eq!(q["ts"], "2024-01-01T00:00:00Z");

    let aapl = Symbol::parse("AAPL").unwrap();
    app.services
        .writer
        .write_actions(
            &aapl,
            &[
                CorporateAction::dividend(T0, 0.24, SourceKind::Yahoo),
                CorporateAction::split(T0 + 86_400, 4.0, 1.0, SourceKind::Yahoo),
            ],
        )
        .await
        .unwrap();
    let v: serde_json::Value = app
        .get("/api/v1/actions?symbol=AAPL")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["symbol"], "AAPL");
    assert_eq!(v["actions"][0]["kind"], "dividend");
    assert_eq!(v["actions"][0]["amount"], 0.24);
    assert_eq!(v["actions"][1]["kind"], "split");
    assert_eq!(v["actions"][1]["numerator"], 4.0);
    let v: serde_json::Value = app
        .get("/api/v1/actions?symbol=AAPL&start=2024-01-03")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["actions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let app = spawn_app().await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    // The router registers routes only together with their documentation (utoipa-axum), so
    // the document is the list of served routes: it is what the running server serves...
    assert_eq!(doc, serde_json::to_value(dms::api::openapi()).unwrap());
    assert!(paths.len() >= 15, "{:?}", paths.keys());
    // ...and everything documented is served: no route-level 404 (our fallback says "no such
    // route"; a 404 for a missing job or source is the handler answering) and no 405.
    for (path, ops) in paths {
        let concrete = path.replace("{id}", "1").replace("{name}", "files");
        for method in ops.as_object().unwrap().keys() {
            let r = app
                .client
                .request(method.to_uppercase().parse().unwrap(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            assert!(
                !(status == 404 && body.contains("no such route")) && status != 405,
                "{method} {path} is documented but not served ({status} {body})"
            );
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn with_tokens_reads_need_a_read_or_admin_token_and_writes_the_admin_token() {
    // SAFETY: only this test sets these names, and it sets them before the app reads them.
    unsafe {
        std::env::set_var("DMS_TEST_ADMIN_TOKEN_X", "admin-secret");
        std::env::set_var("DMS_TEST_READ_TOKEN_X", "read-secret");
    }
    let app = spawn_app_with(
        "",
        &[
            ("DMS__SERVER__ADMIN_TOKEN_ENV", "DMS_TEST_ADMIN_TOKEN_X"),
            ("DMS__SERVER__READ_TOKEN_ENV", "DMS_TEST_READ_TOKEN_X"),
        ],
    )
    .await;
    let get = |path: &str, token: Option<&str>| {
        let mut r = app.client.get(app.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    for path in [
        "/api/v1/bars?symbols=AAPL&interval=1d",
        "/api/v1/series",
        "/api/v1/cache",
        "/openapi.json",
        "/metrics",
    ] {
        let r = get(path, None).await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
        assert_eq!(
            get(path, Some("wrong")).await.unwrap().status(),
            403,
            "{path}"
        );
        assert_eq!(
            get(path, Some("read-secret")).await.unwrap().status(),
            200,
            "{path}"
        );
        assert_eq!(
            get(path, Some("admin-secret")).await.unwrap().status(),
            200,
            "{path}"
        );
    }
    assert_eq!(get("/health", None).await.unwrap().status(), 200);
    let post = |token: Option<&str>| {
        let mut r = app
            .client
            .post(app.url("/api/v1/import"))
            .json(&serde_json::json!({"path": "/nonexistent", "interval": "1d"}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("read-secret")).await.unwrap().status(), 403);
    assert_eq!(post(Some("admin-secret")).await.unwrap().status(), 400);
}

#[tokio::test]
async fn bad_input_gets_a_4xx_in_the_error_shape_and_changes_nothing() {
    let app = spawn_app().await;
    seed(&app).await;
    let before: serde_json::Value = app.get("/api/v1/series").await.json().await.unwrap();
    let long = "A".repeat(200);
    let many = (0..10_001)
        .map(|i| format!("S{i}"))
        .collect::<Vec<_>>()
        .join(",");
    // 40 KB: over MAX_QUERY_BYTES, under hyper's own 64 KiB request-line limit.
    let huge_query = format!("symbols={}&interval=1d", "A,".repeat(20_000));
    let cases: Vec<String> = vec![
        "symbols=&interval=1d".into(),
        "symbols=%2C%2C&interval=1d".into(),
        "symbols=A%20B&interval=1d".into(),
        "symbols=AAPL%27%3B%20DROP%20TABLE%20bars%3B--&interval=1d".into(),
        "symbols=AAPL%22%20OR%201%3D1&interval=1d".into(),
        "symbols=..%2F..%2Fetc%2Fpasswd&interval=1d".into(),
        "symbols=%00&interval=1d".into(),
        "symbols=%E2%82%AC&interval=1d".into(),
        "symbols=.HK&interval=1d".into(),
        format!("symbols={long}&interval=1d"),
        format!("symbols={many}&interval=1d"),
        "symbols=AAPL".into(),
        "symbols=AAPL&interval=".into(),
        "symbols=AAPL&interval=1D".into(),
        "symbols=AAPL&interval=1d%27".into(),
        "symbols=AAPL&interval=1d&start=2024-13-01".into(),
        "symbols=AAPL&interval=1d&start=2024-02-30".into(),
        "symbols=AAPL&interval=1d&start=yesterday".into(),
        "symbols=AAPL&interval=1d&start=99999999-01-01".into(),
        "symbols=AAPL&interval=1d&start=2024-02-01&end=2024-01-01".into(),
        "symbols=AAPL&interval=1d&start=2024-01-01&end=2024-01-01".into(),
        "symbols=AAPL&interval=1d&format=xml".into(),
        "symbols=AAPL&interval=1d&format=JSON".into(),
        "symbols=AAPL&interval=1d&adjusted=yes".into(),
        "symbols=AAPL&interval=1d&bogus=1".into(),
        "symbols=AAPL&symbols=MSFT&interval=1d".into(),
        "symbols=AAPL&interval=1d&start=%FF".into(),
    ];
    // Too long for reqwest to build: spoken over a raw socket.
    let (status, body) = raw_get(app.addr, &format!("/api/v1/bars?{huge_query}")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"invalid_argument\""), "{body}");
    assert!(body.contains("longer than the limit"), "{body}");
    for q in &cases {
        let r = app.get(&format!("/api/v1/bars?{q}")).await;
        let status = r.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{}: {status}",
            &q[..q.len().min(80)]
        );
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            v["error"]["code"],
            "invalid_argument",
            "{}",
            &q[..q.len().min(80)]
        );
    }
    // Huge but valid ranges are fine: clipped to the data.
    for q in [
        "symbols=AAPL&interval=1m&start=0001-01-01&end=9999-12-31",
        "symbols=AAPL&interval=1d&start=1900-01-01T00:00:00%2B14:00",
        "symbols=ZZZ&interval=1m",
    ] {
        assert_eq!(
            app.get(&format!("/api/v1/bars?{q}")).await.status(),
            200,
            "{q}"
        );
    }
    for (path, q) in [
        ("/api/v1/series", "interval=7m"),
        ("/api/v1/series", "nope=1"),
        ("/api/v1/quality", "limit=0"),
        ("/api/v1/quality", "limit=abc"),
        ("/api/v1/quality", "symbols=%27"),
        ("/api/v1/actions", ""),
        ("/api/v1/actions", "symbol=%27%20OR%201%3D1"),
        ("/api/v1/actions", "symbol=AAPL&start=nope"),
    ] {
        let r = app.get(&format!("{path}?{q}")).await;
        assert_eq!(r.status(), 400, "{path}?{q}");
    }
    let r = app
        .client
        .post(app.url("/api/v1/import"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert!((400..500).contains(&r.status().as_u16()), "{}", r.status());
    let after: serde_json::Value = app.get("/api/v1/series").await.json().await.unwrap();
    assert_eq!(before["series"], after["series"]);
}

/// A GET over a plain socket: `(status, body)`.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    sock.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_century_of_minute_bars_is_counted_and_read_without_enumerating_it_up_front() {
    let app = spawn_app_with("", &[("DMS__READER__MAX_BARS_PER_REQUEST", "500")]).await;
    let k = key("OLD", Interval::M1);
    let century = 100 * 365 * 86_400;
    for ts in [T0 - century, T0] {
        app.services
            .writer
            .write(&batch(&k, vec![bar(ts, 1.0)]))
            .await
            .unwrap();
    }
    // The range could hold 52M minute bars: over the limit by its width, so it is counted
    // (one store count for the century), found to hold 2, and read.
    let (s, _, body) = get_bytes(&app, "symbols=OLD&interval=1m&format=csv").await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8(body).unwrap().lines().count(), 3);
}

/// Opens a connection with a small receive buffer, sends `GET path` and reads nothing.
async fn stalled_get(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s
}

/// Polls `cond` until it holds, failing after `secs` seconds.
async fn eventually(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[test]
fn clients_that_stop_reading_hold_no_blocking_thread_and_are_dropped_after_the_write_timeout() {
    // A blocking pool much smaller than the number of stalled clients: if a stalled response
    // held a blocking thread, the store and metadata calls below could not run.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use std::time::Duration;
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let yaml = crate::helpers::app::test_config_yaml(dir.path(), "");
        let config = dms::config::Config::from_yaml(&yaml, std::iter::empty()).unwrap();
        let mut services = dms::services::Services::open(config, "test").await.unwrap();
        let timeout = Duration::from_secs(15);
        services.reader = services.reader.clone().with_write_timeout(Some(timeout));
        // ~25 MB of CSV, far more than the socket buffers and the body pieces in flight.
        let big = key("BIG", Interval::M1);
        for part in bars(T0, 400_000, Interval::M1, 0.0).chunks(100_000) {
            let b = batch(&big, part.to_vec());
            services.writer.write(&b).await.unwrap();
        }
        let mid = key("MID", Interval::M1);
        let b = batch(&mid, bars(T0, 50_000, Interval::M1, 1.0));
        services.writer.write(&b).await.unwrap();
        let small = key("SMALL", Interval::D1);
        let b = batch(&small, bars(T0, 100, Interval::D1, 2.0));
        services.writer.write(&b).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let token = shutdown.clone();
        let router = dms::api::router(services.clone());
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
        });
        let client = reqwest::Client::new();
        let url = |p: &str| format!("http://{addr}{p}");
        let big_csv = "/api/v1/bars?symbols=BIG&interval=1m&format=csv";
        // Read once whole, so the stalled requests are served from the cache.
        let whole = client.get(url(big_csv)).send().await.unwrap();
        let whole = whole.bytes().await.unwrap().len();
        assert!(whole > 20_000_000, "{whole} bytes");
        let small_json = "/api/v1/bars?symbols=SMALL&interval=1d";
        client.get(url(small_json)).send().await.unwrap();

        let n = 300;
        let mut stalled =
            futures::future::join_all((0..n).map(|_| stalled_get(addr, big_csv))).await;
        let reader = services.reader.clone();
        eventually("every stalled response to wait for its client", 60, || {
            let s = reader.stream_stats();
            s.waiting_for_client + s.dropped_stalled == n as u64
        })
        .await;

        // Everything else still answers: the health check, a small cached read, a metadata
        // call on the blocking pool, and a large read that needs the encoders (JSON).
        let answers = async {
            let health = client.get(url("/health")).send().await.unwrap();
            assert_eq!(health.status(), 200);
            let small = client.get(url(small_json)).send().await.unwrap();
            let v: serde_json::Value = small.json().await.unwrap();
            assert_eq!(v["series"]["SMALL"]["ts"].as_array().unwrap().len(), 100);
            let series = client.get(url("/api/v1/series")).send().await.unwrap();
            let v: serde_json::Value = series.json().await.unwrap();
            assert_eq!(v["series"].as_array().unwrap().len(), 3);
            let json = "/api/v1/bars?symbols=MID&interval=1m";
            let mid = client.get(url(json)).send().await.unwrap();
            let v: serde_json::Value = mid.json().await.unwrap();
            assert_eq!(
                v["series"]["MID"]["close"].as_array().unwrap().len(),
                50_000
            );
        };
        tokio::time::timeout(timeout, answers)
            .await
            .expect("other requests answered while the stalled ones still waited");
        let stats = reader.stream_stats();
        assert!(
            stats.waiting_for_client > 16,
            "more stalled responses than blocking threads were waiting all along: {stats:?}"
        );

        // After the write timeout the stalled responses are dropped and what they held freed.
        eventually("the stalled responses to be dropped", 120, || {
            let s = reader.stream_stats();
            s.dropped_stalled == n as u64 && s.streaming == 0
        })
        .await;
        // A stalled client that reads again gets what was already on its way and then a
        // broken connection, never the end of a complete chunked body.
        let mut got = Vec::new();
        let read = stalled[0].read_to_end(&mut got);
        let _ = tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("the server closes the connection");
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            &got[..got.len().min(40)]
        );
        assert!(got.len() < whole, "{} of {whole} bytes", got.len());
        assert!(!got.ends_with(b"\r\n0\r\n\r\n"), "the body looks complete");
        drop(stalled);
        shutdown.cancel();
    });
}
