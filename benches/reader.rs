//! Read-path figures (issue 7 and the read-path issue). Run: `cargo bench --bench reader`, or
//! one part: `cargo bench --bench reader -- cold|cached|wrk|rss`. Results and the machine go
//! in BENCHMARKS.md, "Read path".
//!
//! 1. **cold** (the headline): whole processes and whole HTTP requests against a real `influxd`
//!    started by the bench. One series of 100,000 1-minute bars. `curl` fetching
//!    `GET /api/v1/bars` (csv and arrow) from DMS, cold, against `curl` running the InfluxQL CSV
//!    query of exactly the OHLCV columns against the same `influxd` — what a user would do
//!    instead. Cold twice over: the first request after `dms serve` (the release binary)
//!    starts, and the first request after the reader's cache is cleared (a server in this
//!    process, `ChunkCache::clear`; the store's client and the series extents stay warm).
//!    Every time is a `curl` process's wall time, start to exit. Target ≥ 1.0× (reference
//!    time / DMS time).
//! 2. **cached**: through the HTTP API in this process (client in this process too), for the
//!    embedded store and InfluxDB: the same request cached vs cold (target ≥ 50×), encoding
//!    alone, and cached Arrow of 5M bars (50 symbols × 100k; target ≥ 20M bars/s).
//! 3. **wrk**, 2 threads, 64 connections, 10 s: a cached 1-year daily request for one symbol
//!    (target ≥ 5,000 req/s, p99 ≤ 50 ms, 0 errors) and a mixed workload over 100 symbols ×
//!    10 years of daily bars (`benches/wrk/mixed.lua`). Needs `wrk` on the PATH.
//! 4. **rss**: peak RSS (`VmHWM`) of a `dms serve` process (embedded store, `cache.max_bytes`
//!    64 MiB) while `curl` downloads a 10M-bar JSON response: 100 symbols × 100k 1-minute
//!    bars, and one symbol of 10M bars; a fresh process for each. Target ≤ 200 MB.
//!
//! `READER_BENCH_TARGETS=embedded|influxdb` picks the primaries of part 2.

#[path = "../tests/it/helpers/influxd.rs"]
mod influxd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dms::config::Config;
use dms::domain::{Bar, Interval, SeriesKey, SourceKind, Symbol, TimeRange};
use dms::ingest::Writer;
use dms::services::Services;
use dms::store::embedded::EmbeddedStore;
use dms::store::{Fields, Store};
use dms::validate::{self, Context};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// 2015-01-01T00:00:00Z.
const T0: i64 = 1_420_070_400;

/// The InfluxQL a user would send for the OHLCV of one series.
fn ohlcv_query(symbol: &str, interval: &str) -> String {
    format!(
        "SELECT open, high, low, close, volume FROM bars WHERE symbol = '{symbol}' AND interval = '{interval}'"
    )
}

fn main() {
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |p: &str| parts.is_empty() || parts.iter().any(|a| a == p);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if want("cold") {
        rt.block_on(cold());
    }
    if want("cached") || want("wrk") {
        rt.block_on(cached(want("cached"), want("wrk")));
    }
    if want("rss") {
        rt.block_on(rss());
    }
}

// ----- data -----

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

// ----- processes -----

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The YAML of a DMS config in `dir`: `primary` is the `storage.primary` mapping.
fn config_yaml(dir: &Path, port: u16, primary: &str, cache_bytes: u64) -> String {
    format!(
        "server: {{ bind: 127.0.0.1:{port} }}\nstorage: {{ data_dir: {:?}, primary: {primary} }}\ncache: {{ max_bytes: {cache_bytes} }}\nlogging: {{ dir: {:?}, json: false, level: warn }}\n",
        dir.join("data"),
        dir.join("logs")
    )
}

/// A `dms serve` child (the release binary), stopped on drop.
struct DmsServe {
    child: Child,
    base: String,
}

impl DmsServe {
    /// Starts `dms serve` with the config `yaml` (written to `dir`) and waits for `/health`.
    fn start(dir: &Path, yaml: &str, port: u16) -> DmsServe {
        let cfg = dir.join("dms.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        // `READER_BENCH_DMS` runs another build (an older one, for a before/after figure).
        let bin = std::env::var("READER_BENCH_DMS").unwrap_or(env!("CARGO_BIN_EXE_dms").into());
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dms serve");
        let server = DmsServe {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("{}/health", server.base))
                .output()
                .map(|o| o.stdout.starts_with(b"200"))
                .unwrap_or(false);
            if up {
                return server;
            }
            assert!(Instant::now() < deadline, "dms serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Lines of `/proc/PID/status` (`VmHWM`, `VmRSS`, `RssAnon`, `RssFile`) in MB.
    fn status_mb<const N: usize>(&self, fields: [&str; N]) -> [f64; N] {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        fields.map(|field| {
            let line = status
                .lines()
                .find(|l| l.starts_with(field))
                .unwrap_or_else(|| panic!("{field} in /proc status"));
            let kb: f64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap();
            kb / 1024.0
        })
    }
}

impl Drop for DmsServe {
    fn drop(&mut self) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}

/// Runs `curl` to `/dev/null`; returns its wall time (process start to exit) and the bytes
/// downloaded, panicking unless the answer was a 200.
fn curl(args: &[&str]) -> (Duration, u64) {
    let t = Instant::now();
    let out = Command::new("curl")
        .args([
            "-s",
            "-S",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .args(args)
        .output()
        .expect("curl");
    let wall = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut w = text.split_whitespace();
    assert_eq!(
        w.next(),
        Some("200"),
        "curl {args:?}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (wall, w.next().and_then(|n| n.parse().ok()).unwrap_or(0))
}

/// `curl` of the InfluxQL query `q` as CSV.
fn curl_influx(url: &str, db: &str, q: &str) -> (Duration, u64) {
    curl(&[
        "-G",
        &format!("{url}/query"),
        "-H",
        "Accept: application/csv",
        "--data-urlencode",
        &format!("db={db}"),
        "--data-urlencode",
        "epoch=s",
        "--data-urlencode",
        "chunked=true",
        "--data-urlencode",
        &format!("q={q}"),
    ])
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

// ----- 1. cold -----

async fn cold() {
    let influxd = influxd::Influxd::start(influxd::Options::default());
    let db = "reader_cold";
    let tmp = tempfile::tempdir().unwrap();
    let primary = format!(
        "{{ kind: influxdb, url: {:?}, api: v1, database: {db} }}",
        influxd.url
    );
    // A server in this process (for "after a cache clear"), which also seeds the data.
    let dir = tmp.path().join("inproc");
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(
        dms::store::influx::InfluxStore::connect(&influxd.config(db))
            .await
            .expect("influx store"),
    );
    let server = serve(store, &dir, 1 << 30).await;
    let big = key("BIG000", Interval::M1);
    seed(&server.services.writer, &big, bars(T0, 100_000, 60, 0.0)).await;
    let cache = server.services.reader.cache().clone();
    let child_dir = tmp.path().join("child");
    std::fs::create_dir_all(&child_dir).unwrap();
    let port = free_port();
    let yaml = config_yaml(&child_dir, port, &primary, 1 << 30);
    let ohlcv = ohlcv_query("BIG000", "1m");
    let all_fields = ohlcv.replace("volume FROM", "volume, adj_close, source FROM");
    println!(
        "== cold: 100,000 1m bars of one series, InfluxDB {}",
        influxd.url
    );
    println!(
        "reference: curl -G {}/query -H 'Accept: application/csv' --data-urlencode db={db} --data-urlencode epoch=s --data-urlencode chunked=true --data-urlencode \"q={ohlcv}\"",
        influxd.url
    );
    let runs = 11;
    for format in ["csv", "arrow"] {
        let path = format!("/api/v1/bars?symbols=BIG000&interval=1m&format={format}");
        let (mut reference, mut all, mut started, mut cleared) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut sizes = (0, 0);
        for _ in 0..runs {
            // Alternating, so that all see the same load.
            let (t, n) = curl_influx(&influxd.url, db, &ohlcv);
            reference.push(t);
            sizes.0 = n;
            all.push(curl_influx(&influxd.url, db, &all_fields).0);
            let child = DmsServe::start(&child_dir, &yaml, port);
            let (t, n) = curl(&[&format!("{}{path}", child.base)]);
            started.push(t);
            sizes.1 = n;
            drop(child);
            cache.clear();
            cleared.push(curl(&[&format!("{}{path}", server.base)]).0);
        }
        let (r, a, s, c) = (
            median(reference),
            median(all),
            median(started),
            median(cleared),
        );
        println!(
            "{format}: reference (OHLCV, {:.1} MB) {} | with adj_close+source {} | DMS ({:.1} MB) first request after start-up {} -> {:.2}x | after a cache clear {} -> {:.2}x (target >= 1.0x)",
            sizes.0 as f64 / 1e6,
            ms(r),
            ms(a),
            sizes.1 as f64 / 1e6,
            ms(s),
            r.as_secs_f64() / s.as_secs_f64(),
            ms(c),
            r.as_secs_f64() / c.as_secs_f64()
        );
    }
    server.shutdown.cancel();
}

// ----- 2. and 3. -----

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
            Box::pin(async move {
                s.read_fields(&k, TimeRange::ALL, Fields::OHLCV)
                    .await
                    .expect("raw read")
                    .len()
            })
        });
        out.push(("embedded", embedded, raw, "Store::read_fields(OHLCV)"));
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
                let q = ohlcv_query(k.symbol.as_str(), k.interval.as_str());
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
        out.push(("influxdb", store, raw, "InfluxQL CSV query of OHLCV"));
    }
    out
}

struct Server {
    base: String,
    services: Services,
    shutdown: CancellationToken,
}

/// The API over `store`, in this process, with its own metadata db in `dir`.
async fn serve(store: Arc<dyn Store>, dir: &Path, cache_bytes: u64) -> Server {
    let yaml = format!(
        "storage: {{ data_dir: {:?} }}\ncache: {{ max_bytes: {cache_bytes} }}\nlogging: {{ dir: {:?}, json: false, level: warn }}\n",
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

async fn cached(figures: bool, load: bool) {
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
        println!("== primary: {name} (server and client in this process)");
        if figures {
            cached_figures(&server, &client, &raw, raw_what).await;
        }
        if load {
            wrk_figures(&server, &client).await;
        }
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

async fn cached_figures(server: &Server, client: &reqwest::Client, raw: &Raw, raw_what: &str) {
    let cache = server.services.reader.cache().clone();
    // 100k one-minute bars of one series, cold and cached.
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
            fetch(client, &url).await;
            cold.push(t.elapsed());
        }
        let mut warm = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            fetch(client, &url).await;
            warm.push(t.elapsed());
        }
        let (raw_m, cold_m, warm_m) = (median(raw_t), median(cold), median(warm));
        println!(
            "cold 100k bars, {format}: API {} vs raw ({raw_what}) {} -> {:.2}x",
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
    let cols = dms::format::Columns::from_bars(&bars(T0, 100_000, 60, 0.0));
    for format in [
        dms::format::Format::Csv,
        dms::format::Format::Arrow,
        dms::format::Format::Json,
    ] {
        let mut runs = Vec::new();
        let mut size = 0;
        for _ in 0..9 {
            let t = Instant::now();
            let mut out = dms::format::Output::buffered();
            let mut enc = dms::format::encoder(format, Interval::M1, false);
            enc.begin(&mut out).unwrap();
            for pass in 0..enc.passes() {
                for start in (0..100_000).step_by(14_400) {
                    let part = cols.slice(start, (100_000 - start).min(14_400));
                    enc.part("BIG000", pass, &part, &mut out).unwrap();
                }
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

    // Cached Arrow throughput, 50 symbols x 100k bars.
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
    let bytes = fetch(client, &url).await; // warm the cache
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        fetch(client, &url).await;
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
}

async fn wrk_figures(server: &Server, client: &reqwest::Client) {
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
    fetch(client, &one).await;
    wrk("cached 1-year daily, one symbol (json)", &one, None);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/wrk/mixed.lua");
    wrk(
        "mixed: 100 symbols x 10 years daily",
        &format!("{}/", server.base),
        Some(&script),
    );
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
    let out = match Command::new("wrk").args(&args).output() {
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

// ----- 4. rss -----

async fn rss() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().to_path_buf();
    let cache_bytes = 64 << 20;
    let port = free_port();
    let yaml = config_yaml(&dir, port, "{ kind: embedded }", cache_bytes);
    println!("== rss: dms serve on the embedded store, cache.max_bytes {cache_bytes}");
    {
        // Seed through the same services `dms serve` opens, then close them.
        let config = Config::from_yaml(&yaml, std::iter::empty()).expect("config");
        let services = Services::open(config, "bench").await.expect("services");
        let t = Instant::now();
        for i in 0..100 {
            let s = format!("R{i:03}");
            let b = bars(T0, 100_000, 60, i as f64);
            seed(&services.writer, &key(&s, Interval::M1), b).await;
        }
        for m in 0..10 {
            let start = T0 + m * 1_000_000 * 60;
            let b = bars(start, 1_000_000, 60, 0.5);
            seed(&services.writer, &key("HUGE", Interval::M1), b).await;
        }
        println!("seeded 20M bars in {:.1} s", t.elapsed().as_secs_f64());
    }
    let many: Vec<String> = (0..100).map(|i| format!("R{i:03}")).collect();
    let many = many.join(",");
    for (what, query) in [
        (
            "1 symbol x 100k 1m bars, json",
            "symbols=R000&interval=1m".to_string(),
        ),
        (
            "100 symbols x 100k 1m bars, json",
            format!("symbols={many}&interval=1m"),
        ),
        (
            "1 symbol x 10M 1m bars, json",
            "symbols=HUGE&interval=1m".to_string(),
        ),
        (
            "100 symbols x 100k 1m bars, csv",
            format!("symbols={many}&interval=1m&format=csv"),
        ),
    ] {
        let server = DmsServe::start(&dir, &yaml, port);
        let [idle] = server.status_mb(["VmRSS"]);
        let url = format!("{}/api/v1/bars?{query}", server.base);
        // The peak of each part of the RSS, sampled while curl downloads.
        let download = std::thread::spawn(move || curl(&[&url]));
        let (mut anon, mut file) = (0f64, 0f64);
        while !download.is_finished() {
            let [a, f] = server.status_mb(["RssAnon", "RssFile"]);
            (anon, file) = (anon.max(a), file.max(f));
            std::thread::sleep(Duration::from_millis(10));
        }
        let (t, n) = download.join().unwrap();
        let [peak] = server.status_mb(["VmHWM"]);
        println!(
            "{what}: {:.0} MB in {:.1} s; dms serve RSS {idle:.0} MB at start, peak {peak:.0} MB (target <= 200 MB): anonymous {anon:.0} MB, file-backed {file:.0} MB (sampled peaks)",
            n as f64 / 1e6,
            t.as_secs_f64(),
        );
    }
}
