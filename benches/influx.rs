//! Benchmarks of the InfluxDB store against a real `influxd`, with `curl` on the same server in
//! the same run as the reference:
//!
//! 1. ingest 1,000,000 bars (100 series × 10,000 one-minute bars) through `InfluxStore::write`
//!    versus posting the same line protocol (the store's own encoder writes the files) with
//!    `curl -K`, 5,000 lines per request over keep-alive, one and two curl processes; for
//!    context also curl posting the lines without the `adj_close=0.0` every line now carries,
//!    the same files gzip-compressed, and the store with 10,000 lines per request;
//! 2. read one series of 100,000 bars through `InfluxStore::read_fields(…, Fields::OHLCV)` (what
//!    a backtest asks) versus curl's InfluxQL CSV query of exactly those columns (its own
//!    `time_total`, so process start-up is not counted); the store's full `read` for context;
//! 3. the newest bar of each of 10,000 series with `InfluxStore::latest`.
//!
//! Every ingest run writes to a fresh database and is verified (`count(close)` = 1,000,000,
//! every curl answer 204). Runs of the store and of curl alternate so that both see the same
//! machine load. Run with `cargo bench --bench influx` (or `-- ingest`, `-- read`, `-- latest`
//! for one part); the figures go into `BENCHMARKS.md`.

#[path = "../tests/it/helpers/influxd.rs"]
mod influxd;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use dms::domain::{Bar, Interval, SeriesKey, SourceKind, Symbol, TimeRange};
use dms::store::influx::{InfluxOptions, InfluxStore, influxql, line_protocol};
use dms::store::{Fields, Store};
use dms::validate::{ValidatedBatch, revalidated_from_store};

use influxd::{Influxd, Options};

/// 2024-01-02 00:00:00Z.
const T0: i64 = 1_704_153_600;
const INGEST_SERIES: usize = 100;
const INGEST_BARS: usize = 10_000;
const LINES_PER_REQUEST: usize = 5_000;
const INGEST_REPS: usize = 5;
const READ_BARS: usize = 100_000;
const READ_REPS: usize = 9;
const LATEST_SERIES: usize = 10_000;
const LATEST_BARS: usize = 100;
const LATEST_REPS: usize = 5;

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let curl_version = run(Command::new("curl").arg("--version"))
        .context("curl is needed as the reference client")?;
    let server = Influxd::start(Options::default());
    let scratch = tempfile::tempdir()?;
    println!(
        "influxd pid {} at {}; {}; {} cores; load average {}",
        server.pid(),
        server.url,
        curl_version.lines().next().unwrap_or(""),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    // `cargo bench --bench influx -- read latest` runs only those parts.
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let mut table = Vec::new();
    if wanted("ingest") {
        rt.block_on(ingest(&server, scratch.path(), &mut table))?;
    }
    if wanted("read") {
        rt.block_on(read(&server, &mut table))?;
    }
    if wanted("latest") {
        rt.block_on(latest(&server, &mut table))?;
    }
    println!("\nload average at the end: {}\n", load_average());
    println!("| benchmark | DMS store | reference | ratio | target |");
    println!("|---|---|---|---|---|");
    for row in &table {
        println!("{row}");
    }
    Ok(())
}

/// A one-minute bar with cent prices, like a real feed (about 110 bytes of line protocol).
fn bar(ts: i64, seed: u64) -> Bar {
    let x = (ts as u64 / 60)
        .wrapping_mul(2_654_435_761)
        .wrapping_add(seed * 97);
    let base = 50.0 + (x % 10_000) as f64 / 100.0;
    let cents = |v: f64| (v * 100.0).round() / 100.0;
    Bar {
        ts,
        open: cents(base),
        high: cents(base + 0.37),
        low: cents(base - 0.21),
        close: cents(base + 0.05),
        volume: (x % 100_000) as f64,
        adj_close: None,
        source: SourceKind::Yahoo,
    }
}

/// `n` bars of one series; with `adj` every bar has an `adj_close` (daily bars from Yahoo do,
/// intraday bars do not).
fn series(symbol: &str, interval: Interval, n: usize, seed: u64, adj: bool) -> ValidatedBatch {
    let key = SeriesKey::new(Symbol::opaque(symbol), interval);
    let step = interval.nominal_secs();
    let bars = (0..n)
        .map(|i| {
            let mut b = bar(T0 + i as i64 * step, seed);
            b.adj_close = adj.then_some(b.close);
            b
        })
        .collect();
    revalidated_from_store(&key, bars).expect("non-empty")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU seconds `influxd` has used so far.
fn server_cpu(server: &Influxd) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / ticks
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

async fn count(server: &Influxd, db: &str) -> anyhow::Result<i64> {
    let answer = server.raw_query(db, "SELECT count(close) FROM bars").await;
    answer["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .with_context(|| format!("count in {answer}"))
}

/// CPU seconds used so far by this process (`RUSAGE_SELF`) or its waited-for children
/// (`RUSAGE_CHILDREN`: the curl processes).
fn client_cpu(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

struct Run {
    seconds: f64,
    server_cpu: f64,
    client_cpu: f64,
}

async fn ingest(server: &Influxd, dir: &Path, table: &mut Vec<String>) -> anyhow::Result<()> {
    let batches: Vec<ValidatedBatch> = (0..INGEST_SERIES)
        .map(|i| {
            series(
                &format!("SYM{i:03}"),
                Interval::M1,
                INGEST_BARS,
                i as u64,
                false,
            )
        })
        .collect();
    let total = (INGEST_SERIES * INGEST_BARS) as i64;
    // The same requests the store sends: each series in chunks of 5,000 lines; the same
    // without the `adj_close=0.0` of bars that have none; and the first gzip-compressed.
    let mut files = Files::default();
    let (mut bytes, mut bytes_no_adj, mut bytes_gzip) = (0, 0, 0);
    for b in &batches {
        let prefix = line_protocol::bars_prefix(b.series().symbol.as_str(), "1m")?;
        for chunk in b.chunks(LINES_PER_REQUEST) {
            let mut body = Vec::new();
            for bar in chunk {
                line_protocol::push_bar(&mut body, &prefix, bar)?;
            }
            bytes += body.len();
            let n = files.same.len();
            let path = dir.join(format!("part{n:04}.lp"));
            std::fs::write(&path, &body)?;
            let no_adj = String::from_utf8(body)?.replace(",adj_close=0.0,", ",");
            bytes_no_adj += no_adj.len();
            let no_adj_path = dir.join(format!("noadj{n:04}.lp"));
            std::fs::write(&no_adj_path, no_adj)?;
            run(Command::new("gzip").arg("-kf").arg(&path))?;
            let gz = path.with_extension("lp.gz");
            bytes_gzip += std::fs::metadata(&gz)?.len();
            files.same.push(path);
            files.no_adj.push(no_adj_path);
            files.gzip.push(gz);
        }
    }
    println!(
        "\ningest: {total} bars, {} requests of {LINES_PER_REQUEST} lines, {:.0} MB, {:.0} bytes/line \
         ({:.0} bytes/line without adj_close; {:.0} MB gzip-compressed)",
        files.same.len(),
        bytes as f64 / 1e6,
        bytes as f64 / total as f64,
        bytes_no_adj as f64 / total as f64,
        bytes_gzip as f64 / 1e6
    );

    let batches = std::sync::Arc::new(batches);
    let mut runs: Vec<Vec<Run>> = INGEST_VARIANTS.iter().map(|_| Vec::new()).collect();
    for rep in 0..INGEST_REPS {
        for (v, variant) in INGEST_VARIANTS.iter().enumerate() {
            let db = format!("ingest_{v}_{rep}");
            let cpu0 = server_cpu(server);
            let who = match variant {
                Ingest::Store { .. } => libc::RUSAGE_SELF,
                Ingest::Curl { .. } => libc::RUSAGE_CHILDREN,
            };
            let client0 = client_cpu(who);
            let seconds = match *variant {
                Ingest::Store {
                    writers,
                    in_flight,
                    lines,
                } => {
                    let options = InfluxOptions {
                        writes_in_flight: in_flight,
                        lines_per_request: lines,
                        ..InfluxOptions::default()
                    };
                    let store = InfluxStore::connect_with(&server.config(&db), options).await?;
                    let started = Instant::now();
                    let tasks: Vec<_> = (0..writers)
                        .map(|w| {
                            let (store, batches) = (store.clone(), batches.clone());
                            tokio::spawn(async move {
                                for b in batches.iter().skip(w).step_by(writers) {
                                    store.write(b).await?;
                                }
                                anyhow::Ok(())
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await??;
                    }
                    started.elapsed().as_secs_f64()
                }
                Ingest::Curl { processes, body } => {
                    server
                        .raw_query(&db, &format!("CREATE DATABASE {db}"))
                        .await;
                    let list = match body {
                        Body::Same => &files.same,
                        Body::NoAdjClose => &files.no_adj,
                        Body::Gzip => &files.gzip,
                    };
                    curl_ingest(server, &db, list, dir, processes, body == Body::Gzip)?
                }
            };
            let run = Run {
                seconds,
                server_cpu: server_cpu(server) - cpu0,
                client_cpu: client_cpu(who) - client0,
            };
            let n = count(server, &db).await?;
            ensure!(n == total, "{variant}: {n} bars stored, not {total}");
            println!(
                "  rep {rep} {:<40} {:>6.2} s  {:>8.0} bars/s  influxd {:>5.2} CPU-s  \
                 client {:>5.2} CPU-s  load {}",
                variant.to_string(),
                run.seconds,
                total as f64 / run.seconds,
                run.server_cpu,
                run.client_cpu,
                load_average()
            );
            runs[v].push(run);
            server.raw_query(&db, &format!("DROP DATABASE {db}")).await;
        }
    }
    let rate = |s: f64| total as f64 / s;
    let pair: Vec<String> = (runs[0].iter().zip(&runs[1]))
        .map(|(s, c)| format!("{:.2}", c.seconds / s.seconds))
        .collect();
    println!("  one writer vs one curl, run by run: {}", pair.join(", "));
    let mut med = Vec::new();
    for (v, variant) in INGEST_VARIANTS.iter().enumerate() {
        let secs = median(&mut runs[v].iter().map(|x| x.seconds).collect::<Vec<_>>());
        let cpu = median(&mut runs[v].iter().map(|x| x.server_cpu).collect::<Vec<_>>());
        let client = median(&mut runs[v].iter().map(|x| x.client_cpu).collect::<Vec<_>>());
        println!(
            "  median {:<40} {secs:>6.2} s  {:>8.0} bars/s  influxd {cpu:.2} CPU-s  \
             client {client:.2} CPU-s",
            variant.to_string(),
            rate(secs)
        );
        med.push(secs);
    }
    // Pair like with like: the store with its default options against one curl, and two
    // concurrent writers against two curls (both posting the store's bytes).
    for (label, store_v, curl_v) in [("one writer", 0, 1), ("two writers", 2, 3)] {
        let (s, c) = (med[store_v], med[curl_v]);
        table.push(format!(
            "| ingest 1M bars (100 series × 10k 1m bars, 5k lines/request), {label}, median of \
             {INGEST_REPS} | {s:.2} s = {:.0} bars/s ({}) | {c:.2} s = {:.0} bars/s ({}) | {:.2}× | ≥ 0.9× |",
            rate(s),
            INGEST_VARIANTS[store_v],
            rate(c),
            INGEST_VARIANTS[curl_v],
            c / s
        ));
    }
    Ok(())
}

/// The request bodies curl posts.
#[derive(Default)]
struct Files {
    /// What the store sends.
    same: Vec<PathBuf>,
    /// The same without `adj_close=0.0` (the line format before every line carried every
    /// field).
    no_adj: Vec<PathBuf>,
    /// `same`, gzip-compressed.
    gzip: Vec<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    Same,
    NoAdjClose,
    Gzip,
}

/// How an ingest run sends its requests.
#[derive(Clone, Copy)]
enum Ingest {
    /// `writers` tasks calling `InfluxStore::write` one series after another, each call with
    /// up to `in_flight` requests of `lines` lines at once.
    Store {
        writers: usize,
        in_flight: usize,
        lines: usize,
    },
    /// `processes` curl processes, each sending its requests one after another.
    Curl { processes: usize, body: Body },
}

/// In run order: each store variant next to the curl run it is compared with, so that both
/// see about the same machine load.
const INGEST_VARIANTS: [Ingest; 8] = [
    Ingest::Store {
        writers: 1,
        in_flight: 1,
        lines: LINES_PER_REQUEST,
    },
    Ingest::Curl {
        processes: 1,
        body: Body::Same,
    },
    Ingest::Store {
        writers: 2,
        in_flight: 1,
        lines: LINES_PER_REQUEST,
    },
    Ingest::Curl {
        processes: 2,
        body: Body::Same,
    },
    Ingest::Store {
        writers: 1,
        in_flight: 2,
        lines: LINES_PER_REQUEST,
    },
    Ingest::Store {
        writers: 1,
        in_flight: 1,
        lines: 2 * LINES_PER_REQUEST,
    },
    Ingest::Curl {
        processes: 1,
        body: Body::NoAdjClose,
    },
    Ingest::Curl {
        processes: 1,
        body: Body::Gzip,
    },
];

impl std::fmt::Display for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ingest::Store {
                writers,
                in_flight,
                lines,
            } => write!(
                f,
                "store: {writers} writer(s) × {in_flight} in flight × {lines} lines"
            ),
            Ingest::Curl { processes, body } => {
                let what = match body {
                    Body::Same => "",
                    Body::NoAdjClose => ", no adj_close",
                    Body::Gzip => ", gzip",
                };
                write!(f, "curl -K: {processes} process(es){what}")
            }
        }
    }
}

/// Posts `files` with `processes` curl processes (files dealt round-robin), each sending its
/// requests one after another over one keep-alive connection. Returns the wall time.
fn curl_ingest(
    server: &Influxd,
    db: &str,
    files: &[PathBuf],
    dir: &Path,
    processes: usize,
    gzip: bool,
) -> anyhow::Result<f64> {
    let mut configs = Vec::new();
    for p in 0..processes {
        let mut cfg = String::new();
        for f in files.iter().skip(p).step_by(processes) {
            if !cfg.is_empty() {
                cfg.push_str("next\n");
            }
            cfg.push_str(&format!(
                "url = \"{}/write?db={db}&precision=s\"\ndata-binary = \"@{}\"\n\
                 output = \"/dev/null\"\nwrite-out = \"%{{http_code}}\\n\"\n",
                server.url,
                f.display()
            ));
            if gzip {
                cfg.push_str("header = \"Content-Encoding: gzip\"\n");
            }
        }
        let path = dir.join(format!("curl{p}.cfg"));
        std::fs::write(&path, cfg)?;
        configs.push(path);
    }
    let started = Instant::now();
    let children: Vec<_> = configs
        .iter()
        .map(|c| {
            Command::new("curl")
                .arg("-sS")
                .arg("-K")
                .arg(c)
                .stdout(std::process::Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut codes = Vec::new();
    for child in children {
        let out = child.wait_with_output()?;
        ensure!(out.status.success(), "curl failed: {:?}", out.status);
        codes.extend(String::from_utf8(out.stdout)?.lines().map(str::to_string));
    }
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        codes.len() == files.len() && codes.iter().all(|c| c == "204"),
        "curl answers: {codes:?}"
    );
    Ok(seconds)
}

/// curl's own `time_total` of one query, checking it answered 200 with at least `min_bytes`.
fn curl_query(
    server: &Influxd,
    db: &str,
    q: &str,
    accept: &str,
    min_bytes: u64,
) -> anyhow::Result<f64> {
    let out = run(Command::new("curl")
        .arg("-sS")
        .arg("-o")
        .arg("/dev/null")
        .arg("-w")
        .arg("%{http_code} %{time_total} %{size_download}")
        .arg("-H")
        .arg(format!("Accept: {accept}"))
        .arg("--data-urlencode")
        .arg(format!("q={q}"))
        .arg(format!(
            "{}/query?db={db}&epoch=s&chunked=true&chunk_size=10000",
            server.url
        )))?;
    let mut parts = out.split_whitespace();
    let (code, time, size) = (parts.next(), parts.next(), parts.next());
    if code != Some("200") || size.is_none_or(|s| s.parse::<u64>().unwrap_or(0) < min_bytes) {
        bail!("curl query answered {out}");
    }
    Ok(time.unwrap_or("0").parse()?)
}

async fn read(server: &Influxd, table: &mut Vec<String>) -> anyhow::Result<()> {
    let db = "read";
    let store = InfluxStore::connect(&server.config(db)).await?;
    let batch = series("BIG", Interval::M1, READ_BARS, 7, false);
    store.write(&batch).await?;
    let key = batch.series().clone();
    // The store's OHLCV query, as text for curl: what a backtest asks for.
    let q = format!(
        "SELECT open, high, low, close, volume FROM bars \
         WHERE symbol = 'BIG' AND interval = '1m' AND {}",
        influxql::time_condition(TimeRange::ALL).unwrap_or_default()
    );
    println!("\nread: one series of {READ_BARS} bars; query: {q}");
    // Warm up both paths (and check the store returns exactly what was written).
    ensure!(
        store.read(&key, TimeRange::ALL).await? == batch.bars(),
        "read mismatch"
    );
    let ohlcv: Vec<Bar> = batch
        .bars()
        .iter()
        .map(|b| Bar {
            adj_close: None,
            source: SourceKind::Unknown,
            ..*b
        })
        .collect();
    ensure!(
        store
            .read_fields(&key, TimeRange::ALL, Fields::OHLCV)
            .await?
            == ohlcv,
        "OHLCV read mismatch"
    );
    curl_query(server, db, &q, "application/csv", 1_000_000)?;
    let (mut ours, mut full, mut csv, mut msgpack) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..READ_REPS {
        let started = Instant::now();
        let bars = store
            .read_fields(&key, TimeRange::ALL, Fields::OHLCV)
            .await?;
        ours.push(started.elapsed().as_secs_f64());
        ensure!(bars.len() == READ_BARS, "read {} bars", bars.len());
        csv.push(curl_query(server, db, &q, "application/csv", 1_000_000)?);
        let started = Instant::now();
        let bars = store.read(&key, TimeRange::ALL).await?;
        full.push(started.elapsed().as_secs_f64());
        ensure!(bars.len() == READ_BARS, "read {} bars", bars.len());
        msgpack.push(curl_query(
            server,
            db,
            &q,
            "application/x-msgpack",
            1_000_000,
        )?);
    }
    let (s, f, c, m) = (
        median(&mut ours),
        median(&mut full),
        median(&mut csv),
        median(&mut msgpack),
    );
    println!(
        "  median of {READ_REPS}: store OHLCV {:.0} ms, store all fields {:.0} ms, \
         curl csv {:.0} ms, curl msgpack {:.0} ms",
        s * 1e3,
        f * 1e3,
        c * 1e3,
        m * 1e3
    );
    println!(
        "  all runs (ms): store {:?}, curl csv {:?}",
        ours.iter().map(|x| (x * 1e3).round()).collect::<Vec<_>>(),
        csv.iter().map(|x| (x * 1e3).round()).collect::<Vec<_>>()
    );
    table.push(format!(
        "| read 100k bars of one series, OHLCV, median of {READ_REPS} | {:.0} ms = {:.0} bars/s, \
         decoded to `Vec<Bar>` (all fields: {:.0} ms) | {:.0} ms (curl, CSV of the OHLCV \
         columns to /dev/null; msgpack {:.0} ms) | {:.2}× | ≥ 1.0× |",
        s * 1e3,
        READ_BARS as f64 / s,
        f * 1e3,
        c * 1e3,
        m * 1e3,
        c / s
    ));
    Ok(())
}

async fn latest(server: &Influxd, table: &mut Vec<String>) -> anyhow::Result<()> {
    let db = "latest";
    let store = InfluxStore::connect(&server.config(db)).await?;
    // Set-up, not measured: 10,000 daily series of 100 bars, loaded in bulk.
    let mut keys = Vec::with_capacity(LATEST_SERIES);
    let mut newest = Vec::with_capacity(LATEST_SERIES);
    let mut body = Vec::new();
    for i in 0..LATEST_SERIES {
        let b = series(
            &format!("L{i:05}"),
            Interval::D1,
            LATEST_BARS,
            i as u64,
            true,
        );
        let prefix = line_protocol::bars_prefix(b.series().symbol.as_str(), "1d")?;
        for bar in b.bars() {
            line_protocol::push_bar(&mut body, &prefix, bar)?;
            if body.len() > 600_000 {
                let (status, text) = server.raw_write(db, std::str::from_utf8(&body)?).await;
                ensure!(status == 204, "load: {status} {text}");
                body.clear();
            }
        }
        keys.push(b.series().clone());
        newest.push(*b.bars().last().expect("non-empty"));
    }
    let (status, text) = server.raw_write(db, std::str::from_utf8(&body)?).await;
    ensure!(status == 204, "load: {status} {text}");
    println!(
        "\nlatest: {LATEST_SERIES} series × {LATEST_BARS} daily bars ({} points)",
        LATEST_SERIES * LATEST_BARS
    );
    // The store's query, as text for curl.
    let q = format!(
        "SELECT open, high, low, close, volume, adj_close, source FROM bars \
         WHERE (interval = '1d') AND {} GROUP BY symbol, interval ORDER BY time DESC LIMIT 1",
        influxql::time_condition(TimeRange::ALL).unwrap_or_default()
    );
    let (mut times, mut csv, mut msgpack) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..LATEST_REPS {
        let started = Instant::now();
        let got = store.latest(&keys).await?;
        times.push(started.elapsed().as_secs_f64());
        csv.push(curl_query(server, db, &q, "application/csv", 100_000)?);
        msgpack.push(curl_query(
            server,
            db,
            &q,
            "application/x-msgpack",
            100_000,
        )?);
        ensure!(
            got.len() == LATEST_SERIES,
            "latest found {} series",
            got.len()
        );
        for (k, want) in keys.iter().zip(&newest) {
            ensure!(got.get(k) == Some(want), "latest of {k} is wrong");
        }
    }
    let (t, c, m) = (median(&mut times), median(&mut csv), median(&mut msgpack));
    println!(
        "  median of {LATEST_REPS}: store {:.0} ms (runs {:?} ms), curl csv {:.0} ms, \
         curl msgpack {:.0} ms",
        t * 1e3,
        times.iter().map(|x| (x * 1e3).round()).collect::<Vec<_>>(),
        c * 1e3,
        m * 1e3
    );
    table.push(format!(
        "| latest bar of 10,000 series (× 100 daily bars), one query, median of {LATEST_REPS} | \
         {:.0} ms | {:.0} ms (curl, same query as CSV; msgpack {:.0} ms) | {:.2}× | ≤ 3 s |",
        t * 1e3,
        c * 1e3,
        m * 1e3,
        c / t
    ));
    ensure!(
        t < Duration::from_secs(3).as_secs_f64(),
        "latest took {t:.2} s"
    );
    Ok(())
}
