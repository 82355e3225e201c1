//! Dashboard figures (issue 10 §4: "fast with 10,000 series"). Run:
//! `cargo bench --bench dashboard`.
//!
//! A `dms` server (this process, the release build, embedded store) holds 10,000 daily series
//! of 10 bars. `curl` (its own `time_total`, so process start-up is not counted) asks for what
//! the dashboard asks for: one page of the series table (first, last, filtered and sorted), the
//! stale count of the summary tiles, and the page and chart library; the reference is the
//! unpaged `GET /api/v1/series` that a page without server-side paging would need. Medians of
//! 15 runs, alternating requests so that all see the same load.
//!
//! With `DASHBOARD_BROWSER=1` (and Debian `chromium` plus `npm ci` in `tests/browser`), it
//! also loads the page in headless Chromium 5 times (`tests/browser/load_time.mjs`): time from
//! navigation to the first table row, and to the chart drawn.

use std::process::Command;
use std::time::Instant;

use dms::app::App;
use dms::config::Config;
use dms::domain::{Bar, Interval, SeriesKey, SourceKind, Symbol};
use dms::validate::{self, Context};
use tokio_util::sync::CancellationToken;

const SERIES: usize = 10_000;
const BARS: usize = 10;
const RUNS: usize = 15;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "server: {{ bind: 127.0.0.1:0 }}\nstorage: {{ data_dir: {:?} }}\n\
         logging: {{ dir: {:?}, level: warn }}\n",
        dir.path().join("data"),
        dir.path().join("logs"),
    );
    let config = Config::from_yaml(&yaml, std::iter::empty()).unwrap();
    let app = App::build(config).await.unwrap();
    let base = format!("http://{}", app.addr());
    let services = app.services().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    let t = Instant::now();
    let day0 = 1_704_153_600; // 2024-01-02
    for i in 0..SERIES {
        let key = SeriesKey::new(Symbol::opaque(&format!("S{i:05}")), Interval::D1);
        let bars: Vec<Bar> = (0..BARS + i % 7)
            .map(|d| {
                let p = 50.0 + (i % 400) as f64 + d as f64 * 0.1;
                Bar {
                    ts: day0 + d as i64 * 86_400,
                    open: p,
                    high: p + 1.0,
                    low: p - 1.0,
                    close: p + 0.5,
                    volume: 1000.0,
                    adj_close: None,
                    source: SourceKind::Files,
                }
            })
            .collect();
        let v = validate::validate(&key, bars, &Context::new(i64::MAX / 4, None));
        services.writer.write(&v.batch.unwrap()).await.unwrap();
    }
    eprintln!(
        "seeded {SERIES} series in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let requests: [(&str, String); 7] = [
        ("every series, unpaged (reference)", "/api/v1/series".into()),
        (
            "table: first page",
            "/api/v1/series?page=1&page_size=25&sort=symbol".into(),
        ),
        (
            "table: last page",
            format!("/api/v1/series?page={}&page_size=25", SERIES / 25),
        ),
        (
            "table: filtered and sorted",
            "/api/v1/series?page=1&page_size=25&q=s012&sort=-count".into(),
        ),
        (
            "summary: stale count",
            "/api/v1/series?stale=true&page_size=1".into(),
        ),
        ("the page", "/".into()),
        (
            "chart library",
            "/assets/lightweight-charts.standalone.production.js".into(),
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); requests.len()];
    let mut sizes = vec![0u64; requests.len()];
    for _ in 0..RUNS {
        for (i, (_, path)) in requests.iter().enumerate() {
            let (secs, bytes) = curl(&format!("{base}{path}"));
            times[i].push(secs);
            sizes[i] = bytes;
        }
    }
    let med: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    println!(
        "## dashboard: {SERIES} daily series, release build, embedded store, curl, median of {RUNS}\n"
    );
    println!("| request | body | median | vs unpaged |");
    println!("|---|---|---|---|");
    for (i, (label, path)) in requests.iter().enumerate() {
        println!(
            "| {label} `{path}` | {} | {:.1} ms | {:.2}× |",
            human(sizes[i]),
            med[i] * 1e3,
            med[i] / med[0]
        );
    }

    if std::env::var("DASHBOARD_BROWSER").as_deref() == Ok("1") {
        let out = Command::new("node")
            .arg("tests/browser/load_time.mjs")
            .arg(&base)
            .arg("S00042")
            .output()
            .expect("node runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("\n{}", String::from_utf8_lossy(&out.stdout).trim_end());
    }
    shutdown.cancel();
    let _ = server.await;
}

/// `(time_total in seconds, bytes)` of one GET by curl.
fn curl(url: &str) -> (f64, u64) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total} %{size_download}",
        ])
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut parts = text.split_whitespace();
    assert_eq!(parts.next(), Some("200"), "{url}: {text}");
    let secs = parts.next().unwrap().parse().unwrap();
    let bytes = parts.next().unwrap().parse().unwrap();
    (secs, bytes)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
