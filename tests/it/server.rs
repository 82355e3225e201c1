//! The server: health, metrics, clean shutdown, JSON logs, and CLI commands routed to it.

use std::time::{Duration, Instant};

use crate::helpers::app::{DmsCommand, spawn_app, stderr};

#[tokio::test]
async fn health_reports_the_primary_and_counts() {
    let app = spawn_app().await;
    let r = app.get("/health").await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["primary"]["kind"], "embedded");
    assert_eq!(v["primary"]["reachable"], true);
    assert_eq!(v["primary"]["series"], 0);
    assert!(
        v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "files")
    );
}

#[tokio::test]
async fn metrics_use_the_contract_names() {
    let app = spawn_app().await;
    app.get("/health").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for name in [
        "dms_http_requests_total{route=\"/health\",status=\"200\"}",
        "dms_cache_hits_total",
        "dms_spool_bars",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
}

#[tokio::test]
async fn unknown_routes_and_bad_requests_get_the_error_shape() {
    let app = spawn_app().await;
    let r = app.get("/nope").await;
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    for q in [
        "symbols=A%20B&interval=1d",
        "symbols=AAPL&interval=7m",
        "symbols=AAPL&interval=1d&start=2024-13-01",
        "symbols=AAPL&interval=1d&start=2024-02-01&end=2024-01-01",
        "symbols=AAPL&interval=1d&format=xml",
        "symbols=AAPL&interval=1d&bogus=1",
        "interval=1d",
    ] {
        let r = app.get(&format!("/api/v1/bars?{q}")).await;
        assert_eq!(r.status(), 400, "{q}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_argument", "{q}");
    }
}

fn wait_for_line(child: &mut std::process::Child, needle: &str) -> String {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100))
            && line.contains(needle)
        {
            return line;
        }
    }
    panic!("no line containing {needle:?} within 30 s");
}

#[test]
fn serve_shuts_down_cleanly_on_sigterm_and_logs_json() {
    serve_stops_cleanly_on(libc::SIGTERM);
}

#[test]
fn serve_shuts_down_cleanly_on_sigint() {
    serve_stops_cleanly_on(libc::SIGINT);
}

fn serve_stops_cleanly_on(signal: libc::c_int) {
    let dms = DmsCommand::new("");
    let mut guard = dms.serve();
    let child = &mut guard.0;
    let line = wait_for_line(child, "listening on");
    let url = line.split_whitespace().last().unwrap().to_string();
    let body = reqwest::blocking::get(format!("{url}/health"))
        .unwrap()
        .text()
        .unwrap();
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "dms did not stop on signal {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let logs: Vec<_> = std::fs::read_dir(dms.dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    assert!(lines.iter().any(|l| l["message"] == "serving"), "{text}");
    assert!(lines.iter().any(|l| l["message"] == "stopped"), "{text}");
}

#[test]
fn import_goes_through_a_running_server() {
    // A fixed free port: the CLI finds the server at server.bind.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dms = DmsCommand::with_port(port, "");
    let mut guard = dms.serve();
    let child = &mut guard.0;
    wait_for_line(child, "listening on");
    let csv = dms.write(
        "IBM.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,160,162,159,161,150,100\n",
    );
    let o = dms.run(&[
        "import",
        "--path",
        csv.to_str().unwrap(),
        "--interval",
        "1d",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The server's own read path sees it.
    let body = reqwest::blocking::get(format!(
        "http://127.0.0.1:{port}/api/v1/bars?symbols=IBM&interval=1d&format=csv"
    ))
    .unwrap()
    .text()
    .unwrap();
    assert_eq!(
        body,
        "symbol,ts,open,high,low,close,volume\nIBM,2024-01-02T00:00:00Z,160.0,162.0,159.0,161.0,100.0\n"
    );
    let requests = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        requests.contains("dms_http_requests_total{route=\"/api/v1/import\",status=\"200\"} 1"),
        "{requests}"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
}

#[tokio::test]
async fn health_names_an_influxdb_primary_and_its_version() {
    let influxd = crate::helpers::influxd::shared();
    let db = influxd.unique_database("health");
    let primary = format!(
        "{{kind: influxdb, url: \"{}\", api: v1, database: {db}}}",
        influxd.url
    );
    let app = crate::helpers::app::spawn_app_with("", &[("DMS__STORAGE__PRIMARY", &primary)]).await;
    let v: serde_json::Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["primary"]["kind"], "influxdb");
    assert!(
        v["primary"]["version"].as_str().unwrap().contains("1.6"),
        "{v}"
    );
}
