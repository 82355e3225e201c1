//! Gap-detection figures (issue 8 §2). Run: `cargo bench --bench gaps`
//! (`GAPS_BENCH_TARGETS=embedded|influxdb` for one primary). Results go in BENCHMARKS.md,
//! "Gaps".
//!
//! Data: 10,000 US symbols, each with 20 years of daily bars, 730 days of hourly bars and 30
//! days of minute bars ending at the last closed session; 1 % of the series of each interval
//! miss a stretch (a week of days, a day of hours, half an hour of minutes). The coverage
//! summaries in `meta.db` describe all of it, written by `MetaDb::coverage_add` — the call the
//! `Writer` makes after every store write, with the same marks. The primary holds a subset of
//! the bars (one in 21 daily, 50 hourly, 500 minute bars, and the last 30 of each series),
//! written through the `Writer`: a scan reads nothing of the store but one batched `latest`,
//! whose cost depends on the number of series, not of bars, so the subset keeps the data on
//! disk small without changing what is measured (the InfluxDB data still spans 20 years of
//! shards).
//!
//! Figures (medians of 5, after one warm-up):
//! 1. interior gap scan of the 10,000 daily series: `GET /api/v1/gaps?interval=1d`, the
//!    whole request with curl (what a user meets), and the in-process `GapScanner::scan`
//!    beside it — targets ≤ 2 s embedded, ≤ 10 s InfluxDB;
//! 2. update planning (latest + gaps) of the 30,000 series: `GapScanner::plan`, and
//!    `GET /api/v1/gaps?head=true` (every series with its head) with curl — targets ≤ 1 s
//!    embedded, ≤ 5 s InfluxDB;
//! 3. the one-time build of summaries for bars stored before they existed: 100 daily series
//!    × 20 years written straight to the primary, then planned twice;
//! 4. (embedded only) what keeping the summaries costs the write path per bar: `Marks` plus
//!    `coverage_add` for 100 batches of 10,000 minute bars, against the 667 ns a bar of the
//!    1.5M bars/s import target.

#[path = "../tests/it/helpers/influxd.rs"]
mod influxd;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dms::app::Services;
use dms::config::Config;
use dms::domain::{Bar, Calendar, Interval, Market, SeriesKey, SourceKind, Symbol, TimeRange};
use dms::maintain::scan::SeriesFilter;
use dms::store::Store;
use dms::store::coverage::Marks;
use dms::store::embedded::EmbeddedStore;
use dms::store::influx::InfluxStore;
use dms::validate::{self, Context};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Symbols (default 10,000; `GAPS_BENCH_SYMBOLS` for a quick run).
fn symbols() -> usize {
    std::env::var("GAPS_BENCH_SYMBOLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}
const RUNS: usize = 5;

fn bar(ts: i64) -> Bar {
    let p = 100.0 + (ts % 997) as f64 / 100.0;
    Bar {
        ts,
        open: p,
        high: p + 1.0,
        low: p - 1.0,
        close: p + 0.5,
        volume: 1000.0,
        adj_close: None,
        source: SourceKind::Files,
    }
}

fn symbol(i: usize) -> Symbol {
    Symbol::parse(&format!("S{i:05}")).unwrap()
}

/// Per interval: the history span and the stride of the bars the store holds.
const SERIES: [(Interval, i64, usize); 3] = [
    (Interval::D1, 20 * 365, 21),
    (Interval::H1, 730, 50),
    (Interval::M1, 30, 500),
];

/// What each series of `interval` holds: every expected stamp of its span ending at `end`,
/// less a stretch for 1 % of the symbols.
fn stamps(interval: Interval, days: i64, end: i64, i: usize) -> Vec<i64> {
    let cal = Calendar::standard(Market::Us);
    let r = TimeRange::new(end - days * 86_400, end).unwrap();
    let mut all = cal.expected_stamps(interval, r);
    if i % 100 == 7 {
        let at = all.len() / 2;
        let n = match interval {
            Interval::D1 => 5,
            Interval::H1 => 7,
            _ => 30,
        };
        all.drain(at..at + n);
    }
    all
}

struct Server {
    base: String,
    services: Services,
    shutdown: CancellationToken,
}

async fn serve(store: Arc<dyn Store>, dir: &Path) -> Server {
    let yaml = format!(
        "storage: {{ data_dir: {:?} }}\nlogging: {{ dir: {:?}, json: false, level: warn }}\n",
        dir.join("data"),
        dir.join("logs")
    );
    let config = Config::from_yaml(&yaml, std::iter::empty()).expect("config");
    let lock = dms::services::lock_data_dir(&config, "bench").expect("data dir");
    let services = Services::with_primary(config, store, lock)
        .await
        .expect("services");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let (router, token) = (dms::api::router(services.clone()), shutdown.clone());
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
    });
    Server {
        base,
        services,
        shutdown,
    }
}

/// Writes the data set (see the module doc); returns how many stamps the summaries hold.
async fn load(services: &Services, end: &dyn Fn(Interval) -> i64) -> u64 {
    let ctx = Context::new(i64::MAX / 4, None);
    let mut jobs = Vec::new();
    for i in 0..symbols() {
        for (interval, days, stride) in SERIES {
            jobs.push((i, interval, days, stride, end(interval)));
        }
    }
    futures::stream::iter(jobs.into_iter().map(|(i, interval, days, stride, end)| {
        let (writer, meta) = (services.writer.clone(), services.meta.clone());
        let ctx = ctx.clone();
        async move {
            let k = SeriesKey::new(symbol(i), interval);
            let all = stamps(interval, days, end, i);
            let n = all.len();
            let stored: Vec<Bar> = all
                .iter()
                .enumerate()
                .filter(|(j, _)| j % stride == 0 || *j + 30 >= n)
                .map(|(_, t)| bar(*t))
                .collect();
            let v = validate::validate(&k, stored, &ctx);
            writer.write(v.batch.expect("valid")).await.expect("write");
            meta.coverage_add(&k, Marks::from_stamps(interval, all))
                .await
                .expect("coverage");
            n as u64
        }
    }))
    .buffer_unordered(8)
    .fold(0u64, |a, n| async move { a + n })
    .await
}

/// `curl` wall time of one GET, the body to /dev/null; returns (seconds, bytes).
fn curl(url: &str) -> (f64, u64) {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{time_total} %{size_download} %{http_code}",
            url,
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let parts: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(parts.get(2), Some(&"200"), "{url}: {text}");
    (parts[0].parse().unwrap(), parts[1].parse().unwrap())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

async fn timed<F, Fut, T>(mut f: F) -> (Duration, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let _ = f().await;
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        last = Some(f().await);
        times.push(t.elapsed());
    }
    (median(times), last.unwrap())
}

fn curl_timed(url: &str) -> (Duration, u64) {
    curl(url);
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..RUNS {
        let (t, b) = curl(url);
        times.push(Duration::from_secs_f64(t));
        bytes = b;
    }
    (median(times), bytes)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let wanted = std::env::var("GAPS_BENCH_TARGETS").unwrap_or_else(|_| "embedded,influxdb".into());
    let tmp = tempfile::Builder::new()
        .prefix("dms-gaps-bench")
        .tempdir_in("/tmp")
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let cal = Calendar::standard(Market::Us);
    let last = cal.last_closed_session(now).expect("a closed session");
    let end = move |i: Interval| {
        if i.is_intraday() {
            last.end()
        } else {
            last.stamp() + 1
        }
    };
    let influxd = wanted
        .contains("influxdb")
        .then(|| influxd::Influxd::start(influxd::Options::default()));
    let mut targets: Vec<(&str, Arc<dyn Store>)> = Vec::new();
    if wanted.contains("embedded") {
        targets.push((
            "embedded",
            Arc::new(EmbeddedStore::open(&tmp.path().join("bars.db")).expect("embedded")),
        ));
    }
    if let Some(server) = &influxd {
        let cfg = server.config(&server.unique_database("gapsbench"));
        targets.push((
            "influxdb",
            Arc::new(InfluxStore::connect(&cfg).await.expect("influx")),
        ));
    }
    for (name, store) in targets {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let server = serve(store.clone(), &dir).await;
        let services = &server.services;
        println!("== primary: {name}");
        let t = Instant::now();
        let summarised = load(services, &end).await;
        println!(
            "loaded {} series, summaries of {summarised} bars, in {}",
            symbols() * SERIES.len(),
            secs(t.elapsed())
        );

        // 1. Interior gap scan of the daily series.
        let daily = SeriesFilter {
            symbols: None,
            interval: Some(Interval::D1),
        };
        let (scan_t, plans) =
            timed(|| async { services.gaps.scan(&daily, now).await.expect("scan") }).await;
        assert_eq!(plans.len(), symbols());
        let gaps: usize = plans.iter().map(|p| p.interior.len()).sum();
        assert_eq!(gaps, symbols() / 100, "one gap in 1 % of the series");
        let (http_t, bytes) = curl_timed(&format!("{}/api/v1/gaps?interval=1d", server.base));
        println!(
            "interior scan, {} daily series x 20 years: GET /api/v1/gaps {} ({bytes} bytes, {gaps} gaps); in-process scan {}",
            symbols(),
            secs(http_t),
            secs(scan_t)
        );

        // 2. Update planning: latest + gaps of every series.
        let keys: Vec<SeriesKey> = (0..symbols())
            .flat_map(|i| SERIES.map(|(iv, _, _)| SeriesKey::new(symbol(i), iv)))
            .collect();
        let (plan_t, plans) =
            timed(|| async { services.gaps.plan(&keys, now).await.expect("plan") }).await;
        assert_eq!(plans.len(), keys.len());
        let interior: usize = plans.iter().map(|p| p.interior.len()).sum();
        assert_eq!(interior, 3 * symbols() / 100);
        let (latest_t, _) =
            timed(|| async { store.latest(&keys).await.expect("latest").len() }).await;
        let (head_t, bytes) = curl_timed(&format!("{}/api/v1/gaps?head=true", server.base));
        println!(
            "planning, {} series (1d, 1h, 1m): GapScanner::plan {} (of which Store::latest alone {}); GET /api/v1/gaps?head=true {} ({bytes} bytes)",
            keys.len(),
            secs(plan_t),
            secs(latest_t),
            secs(head_t)
        );

        // 3. Summaries built from the store, once.
        let ctx = Context::new(i64::MAX / 4, None);
        let old: Vec<SeriesKey> = (0..100)
            .map(|i| SeriesKey::new(Symbol::parse(&format!("OLD{i:03}")).unwrap(), Interval::D1))
            .collect();
        let mut bars = 0;
        for (i, k) in old.iter().enumerate() {
            let all: Vec<Bar> = stamps(Interval::D1, 20 * 365, end(Interval::D1), i)
                .into_iter()
                .map(bar)
                .collect();
            bars += all.len();
            let v = validate::validate(k, all, &ctx);
            store.write(&v.batch.expect("valid")).await.expect("write");
        }
        let t = Instant::now();
        let first = services.gaps.plan(&old, now).await.expect("plan");
        let build_t = t.elapsed();
        let t = Instant::now();
        let again = services.gaps.plan(&old, now).await.expect("plan");
        let warm_t = t.elapsed();
        assert_eq!(first, again);
        assert_eq!(first.iter().map(|p| p.interior.len()).sum::<usize>(), 1);
        println!(
            "summaries built from the store: 100 daily series x 20 years ({bars} bars) in {} ({:.1} ms a series, {:.0} bars/s); planned again in {}",
            secs(build_t),
            build_t.as_secs_f64() * 10.0,
            bars as f64 / build_t.as_secs_f64(),
            secs(warm_t)
        );

        // 4. The write path's cost per bar (embedded only: the store is not involved).
        if name == "embedded" {
            let mut times = Vec::new();
            for run in 0..RUNS {
                let mut total = Duration::ZERO;
                for s in 0..100 {
                    let k = SeriesKey::new(
                        Symbol::parse(&format!("W{run}{s:03}")).unwrap(),
                        Interval::M1,
                    );
                    let start = 1_704_153_600 + s as i64 * 86_400;
                    let ts: Vec<i64> = (0..10_000).map(|j| start + j * 60).collect();
                    let t = Instant::now();
                    let marks = Marks::from_stamps(Interval::M1, ts.iter().copied());
                    services
                        .meta
                        .coverage_add(&k, marks)
                        .await
                        .expect("coverage");
                    total += t.elapsed();
                }
                times.push(total);
            }
            let m = median(times);
            let per_bar = m.as_secs_f64() * 1e9 / 1e6;
            let mut marks_only = Vec::new();
            for _ in 0..RUNS {
                let ts: Vec<i64> = (0..1_000_000).map(|j| 1_704_153_600 + j * 60).collect();
                let t = Instant::now();
                let m = Marks::from_stamps(Interval::M1, ts.iter().copied());
                marks_only.push(t.elapsed());
                assert!(!m.is_empty());
            }
            println!(
                "write-path cost: 1M minute bars in 100 batches: {} = {per_bar:.0} ns a bar ({:.1} % of the 667 ns a bar of 1.5M bars/s); marks alone {:.1} ns a bar",
                secs(m),
                per_bar / 666.7 * 100.0,
                median(marks_only).as_secs_f64() * 1e9 / 1e6
            );
        }
        server.shutdown.cancel();
    }
    drop(influxd);
    drop(tmp);
}
