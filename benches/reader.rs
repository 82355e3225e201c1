//! Read-path figures (issue: read path). Run: `cargo bench --bench reader` (needs `wrk` on the
//! PATH for the load figures). Results and the machine go in BENCHMARKS.md, "Read path".
//!
//! Every figure is measured through the real HTTP API (`dms::api::router` on a loopback port,
//! in this process) against a store given as an `Arc<dyn Store>`, so the same harness runs
//! against any primary: [`targets`] lists them. The embedded store is compared with a raw
//! `Store::read` of the same bars; the InfluxDB primary (a real `influxd` started by the bench)
//! with the raw InfluxQL CSV query of DESIGN §6 (`SELECT ... FROM bars WHERE symbol=... AND
//! interval=...` with `Accept: application/csv`, the whole body read). `READER_BENCH_TARGETS`
//! picks them (default `embedded,influxdb`).
//!
//! 1. cold read of 100k 1-minute bars through the API (cache emptied before each run) vs the
//!    raw baseline — target ≥ 1.0× (baseline time / API time);
//! 2. the same request cached — target ≥ 50× faster than cold;
//! 3. cached Arrow output of 5M bars (50 symbols × 100k) — target ≥ 20M bars/s;
//! 4. wrk, 2 threads, 64 connections, 10 s: a cached 1-year daily request for one symbol —
//!    target ≥ 5,000 req/s, p99 ≤ 50 ms, 0 errors; and a mixed workload over 100 symbols × 10
//!    years of daily bars (`benches/wrk/mixed.lua`).

#[path = "../tests/it/helpers/influxd.rs"]
mod influxd;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dms::app::Services;
use dms::config::Config;
use dms::domain::{Bar, Interval, SeriesKey, SourceKind, Symbol, TimeRange};
use dms::ingest::Writer;
use dms::store::Store;
use dms::store::embedded::EmbeddedStore;
use dms::validate::{self, Context};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// 2015-01-01T00:00:00Z.
const T0: i64 = 1_420_070_400;

/// A raw read of one series straight from the store's own interface, returning the rows read:
/// the baseline the API's cold read is compared with.
type Raw = Arc<dyn Fn(SeriesKey) -> BoxFuture<'static, usize> + Send + Sync>;

/// The primaries to measure, each with its raw baseline.
async fn targets(
    dir: &Path,
    influxd: Option<&influxd::Influxd>,
) -> Vec<(&'static str, Arc<dyn Store>, Raw, &'static str)> {
    let mut out = Vec::new();
    let wanted =
        std::env::var("READER_BENCH_TARGETS").unwrap_or_else(|_| "embedded,influxdb".into());
    if wanted.contains("embedded") {
        let embedded: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.join("bars.db")).expect("embedded store"));
        let s = embedded.clone();
        let raw: Raw = Arc::new(move |k: SeriesKey| {
            let s = s.clone();
            Box::pin(async move { s.read(&k, TimeRange::ALL).await.expect("raw read").len() })
        });
        out.push(("embedded", embedded, raw, "Store::read of the series"));
    }
    if let Some(server) = influxd {
        let config = server.config("reader_bench");
        let store: Arc<dyn Store> = Arc::new(
            dms::store::influx::InfluxStore::connect(&config)
                .await
                .expect("influx store"),
        );
        let url = format!("{}/query", server.url);
        let client = reqwest::Client::new();
        let raw: Raw = Arc::new(move |k: SeriesKey| {
            let (url, client) = (url.clone(), client.clone());
            Box::pin(async move {
                // The same query text the store sends (time bounds included), so the
                // baseline does exactly the server-side work the store asks for.
                let q = format!(
                    "SELECT open, high, low, close, volume, adj_close, source FROM bars WHERE symbol = '{}' AND interval = '{}' AND {}",
                    k.symbol,
                    k.interval,
                    dms::store::influx::influxql::time_condition(TimeRange::ALL)
                        .unwrap_or_default()
                );
                let body = client
                    .post(&url)
                    .header("accept", "application/csv")
                    .query(&[
                        ("db", "reader_bench"),
                        ("epoch", "s"),
                        ("chunked", "true"),
                        ("q", q.as_str()),
                    ])
                    .send()
                    .await
                    .expect("raw query")
                    .bytes()
                    .await
                    .expect("raw body");
                // Rows, less the header.
                body.iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    .saturating_sub(1)
            })
        });
        out.push(("influxdb", store, raw, "raw InfluxQL CSV query over HTTP"));
    }
    out
}

fn bars(start: i64, n: usize, step: i64, seed: f64) -> Vec<Bar> {
    (0..n)
        .map(|i| {
            let p = 100.0 + seed + ((i * 7919) % 997) as f64 / 100.0;
            Bar {
                ts: start + i as i64 * step,
                open: p,
                high: p + 1.0,
                low: p - 1.0,
                close: p + 0.5,
                volume: 1000.0 + i as f64,
                adj_close: Some(p + 0.25),
                source: SourceKind::Files,
            }
        })
        .collect()
}

fn key(s: &str, interval: Interval) -> SeriesKey {
    SeriesKey::new(Symbol::parse(s).unwrap(), interval)
}

async fn seed(writer: &Writer, k: &SeriesKey, all: Vec<Bar>) {
    let ctx = Context::new(i64::MAX / 4, None);
    for part in all.chunks(50_000) {
        let v = validate::validate(k, part.to_vec(), &ctx);
        writer.write(&v.batch.expect("valid")).await.expect("write");
    }
}

struct Server {
    base: String,
    services: Services,
    shutdown: CancellationToken,
}

/// The API over `store`, with its own metadata db in `dir`.
async fn serve(store: Arc<dyn Store>, dir: &Path, cache_bytes: u64) -> Server {
    let yaml = format!(
        "storage: {{ data_dir: {:?} }}\ncache: {{ max_bytes: {cache_bytes} }}\nlogging: {{ dir: {:?}, json: false, level: warn }}\n",
        dir.join("data"),
        dir.join("logs")
    );
    let config = Config::from_yaml(&yaml, std::iter::empty()).expect("config");
    let services = Services::with_primary(config, store)
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

/// GETs `url`, reading (and dropping) the body; returns its length.
async fn fetch(client: &reqwest::Client, url: &str) -> usize {
    use futures::StreamExt;
    let resp = client.get(url).send().await.expect("request");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let mut n = 0;
    let mut body = resp.bytes_stream();
    while let Some(piece) = body.next().await {
        n += piece.expect("body").len();
    }
    n
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let client = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    let wanted =
        std::env::var("READER_BENCH_TARGETS").unwrap_or_else(|_| "embedded,influxdb".into());
    let influxd = wanted
        .contains("influxdb")
        .then(|| influxd::Influxd::start(influxd::Options::default()));
    for (name, store, raw, raw_what) in targets(tmp.path(), influxd.as_ref()).await {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let server = serve(store, &dir, 1 << 30).await;
        let cache = server.services.reader.cache().clone();
        println!("== primary: {name}");

        // 1-2: 100k one-minute bars of one series, cold and cached.
        let big = key("BIG000", Interval::M1);
        seed(&server.services.writer, &big, bars(T0, 100_000, 60, 0.0)).await;
        for format in ["csv", "arrow"] {
            let url = format!(
                "{}/api/v1/bars?symbols=BIG000&interval=1m&format={format}",
                server.base
            );
            let mut raw_t = Vec::new();
            let mut cold = Vec::new();
            for _ in 0..7 {
                let t = Instant::now();
                assert_eq!(raw(big.clone()).await, 100_000);
                raw_t.push(t.elapsed());
                cache.clear();
                let t = Instant::now();
                fetch(&client, &url).await;
                cold.push(t.elapsed());
            }
            let mut warm = Vec::new();
            for _ in 0..30 {
                let t = Instant::now();
                fetch(&client, &url).await;
                warm.push(t.elapsed());
            }
            let (raw_m, cold_m, warm_m) = (median(raw_t), median(cold), median(warm));
            println!(
                "cold 100k bars, {format}: API {} vs raw ({raw_what}) {} -> {:.2}x (target >= 1.0x)",
                ms(cold_m),
                ms(raw_m),
                raw_m.as_secs_f64() / cold_m.as_secs_f64()
            );
            println!(
                "cached 100k bars, {format}: {} -> {:.1}x faster than cold (target >= 50x)",
                ms(warm_m),
                cold_m.as_secs_f64() / warm_m.as_secs_f64()
            );
        }

        // Where the cached time goes: encoding alone, in process, no HTTP.
        let cols = dms::reader::Columns::from_bars(&bars(T0, 100_000, 60, 0.0));
        for format in [dms::format::Format::Csv, dms::format::Format::Arrow] {
            let mut runs = Vec::new();
            let mut size = 0;
            for _ in 0..9 {
                let t = Instant::now();
                let mut out = dms::format::Output::buffered();
                let mut enc = dms::format::encoder(format, Interval::M1, false);
                enc.begin(&mut out).unwrap();
                for start in (0..100_000).step_by(14_400) {
                    let part = cols.slice(start, (100_000 - start).min(14_400));
                    enc.part("BIG000", 0, &part, &mut out).unwrap();
                }
                enc.finish(&mut out).unwrap();
                size = out.buf.len();
                runs.push(t.elapsed());
            }
            println!(
                "encode only, 100k bars, {}: {} ({:.1} MB)",
                format.as_str(),
                ms(median(runs)),
                size as f64 / 1e6
            );
        }

        // 3: cached Arrow throughput, 50 symbols x 100k bars.
        let symbols: Vec<String> = (0..50).map(|i| format!("T{i:03}")).collect();
        for (i, s) in symbols.iter().enumerate() {
            seed(
                &server.services.writer,
                &key(s, Interval::M1),
                bars(T0, 100_000, 60, i as f64),
            )
            .await;
        }
        let url = format!(
            "{}/api/v1/bars?symbols={}&interval=1m&format=arrow",
            server.base,
            symbols.join(",")
        );
        let bytes = fetch(&client, &url).await; // warm the cache
        let mut runs = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            fetch(&client, &url).await;
            runs.push(t.elapsed());
        }
        let m = median(runs);
        println!(
            "cached arrow, 5,000,000 bars ({:.0} MB): {} -> {:.1}M bars/s (target >= 20M)",
            bytes as f64 / 1e6,
            ms(m),
            5e6 / m.as_secs_f64() / 1e6
        );
        cache.clear();

        // 4: wrk.
        let daily: Vec<String> = (0..100).map(|i| format!("D{i:03}")).collect();
        for (i, s) in daily.iter().enumerate() {
            // Ten years of weekdays.
            let b: Vec<Bar> = bars(T0, 3653, 86_400, i as f64)
                .into_iter()
                .filter(|b| (b.ts / 86_400 + 3) % 7 < 5)
                .collect();
            seed(&server.services.writer, &key(s, Interval::D1), b).await;
        }
        let one = format!(
            "{}/api/v1/bars?symbols=D000&interval=1d&start=2024-01-01&end=2025-01-01",
            server.base
        );
        fetch(&client, &one).await;
        wrk("cached 1-year daily, one symbol (json)", &one, None);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/wrk/mixed.lua");
        wrk(
            "mixed: 100 symbols x 10 years daily",
            &format!("{}/", server.base),
            Some(&script),
        );
        let stats = cache.stats();
        println!(
            "cache after the run: {} entries, {:.1} MB, {} hits, {} misses, {} loads, {} evictions",
            stats.entries,
            stats.bytes as f64 / 1e6,
            stats.hits,
            stats.misses,
            stats.loads,
            stats.evictions
        );
        server.shutdown.cancel();
    }
}

/// Runs wrk and prints its figures; the exact command is printed too.
fn wrk(what: &str, url: &str, script: Option<&Path>) {
    let mut args = vec![
        "-t2".to_string(),
        "-c64".into(),
        "-d10s".into(),
        "--latency".into(),
    ];
    if let Some(s) = script {
        args.push("-s".into());
        args.push(s.display().to_string());
    }
    args.push(url.to_string());
    println!("$ wrk {}", args.join(" "));
    let out = match std::process::Command::new("wrk").args(&args).output() {
        Ok(o) => o,
        Err(e) => {
            println!("{what}: wrk not available ({e}); skipped");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let find = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| format!("{prefix} (none)"))
    };
    println!(
        "{what}: {} | p50 {} | p99 {} | {} | {}",
        find("Requests/sec:"),
        find("50%"),
        find("99%"),
        find("Non-2xx"),
        find("Socket errors")
    );
}
