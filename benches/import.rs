//! `dms import` as a user runs it: the whole release `dms` process importing a 1.1M-row
//! 1-minute CSV (100 series × 10,000 bars + one of 100,000, US session minutes, the generic
//! `symbol,ts,open,high,low,close,volume` layout with RFC 3339 times, as `dms read` exports),
//! into
//! - the embedded store: bars per second of the whole process (target ≥ 1.5M/s);
//! - a real `influxd`: against `curl` posting the same bars as line protocol (the lines DMS
//!   writes, 5,000 per request, one curl process over keep-alive) into the same server
//!   (target ≥ 0.9×).
//!
//! Every run starts from an empty data directory / database and is checked afterwards
//! (1,100,000 bars stored). Runs alternate between DMS and curl. `IMPORT_RUNS=N` (default 3);
//! `IMPORT_TARGETS=embedded|influxdb` for one part. Run with `cargo bench --bench import`.

#[path = "../tests/it/helpers/influxd.rs"]
mod influxd;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, ensure};
use dms::domain::{Bar, Calendar, Interval, Market, SourceKind, TimeRange, time};
use dms::store::influx::line_protocol;
use influxd::{Influxd, Options};

const SERIES: usize = 100;
const PER_SERIES: usize = 10_000;
const BIG: usize = 100_000;
const TOTAL: u64 = (SERIES * PER_SERIES + BIG) as u64;
const LINES_PER_REQUEST: usize = 5_000;

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("IMPORT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let targets = std::env::var("IMPORT_TARGETS").unwrap_or_else(|_| "embedded,influxdb".into());
    let dir = tempfile::Builder::new()
        .prefix("dms-import-bench")
        .tempdir()?;
    let started = Instant::now();
    let (csv, lines) = generate(dir.path())?;
    println!(
        "data: {} rows, {:.1} MB of CSV, {} line-protocol requests ({:.1} MB), made in {:.1}s",
        TOTAL,
        std::fs::metadata(&csv)?.len() as f64 / 1e6,
        lines.len(),
        lines
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>() as f64
            / 1e6,
        started.elapsed().as_secs_f64()
    );
    println!("load average: {}", load_average());
    if targets.contains("embedded") {
        let mut times = Vec::new();
        for i in 0..runs {
            let data = dir.path().join(format!("embedded{i}"));
            let cfg = config(&data, "{ kind: embedded }")?;
            let t = import(&cfg, &csv)?;
            times.push(t);
            std::fs::remove_dir_all(&data).ok();
        }
        let m = median(&mut times);
        println!(
            "| `dms import` into the embedded store | {TOTAL} bars | {:.2} s (runs {}) | **{:.2}M bars/s** | ≥ 1.5M bars/s |",
            m,
            fmt_runs(&times),
            TOTAL as f64 / m / 1e6
        );
    }
    if targets.contains("influxdb") {
        let server = Influxd::start(Options::default());
        let (mut dms_t, mut curl_t) = (Vec::new(), Vec::new());
        for i in 0..runs {
            let db = format!("import{i}");
            let data = dir.path().join(format!("influx{i}"));
            let primary = format!(
                "{{ kind: influxdb, url: \"{}\", api: v1, database: {db} }}",
                server.url
            );
            let cfg = config(&data, &primary)?;
            dms_t.push(import(&cfg, &csv)?);
            ensure!(
                count(&server, &db)? == TOTAL,
                "dms import stored a different count"
            );
            std::fs::remove_dir_all(&data).ok();
            let db = format!("curl{i}");
            create_db(&server, &db)?;
            curl_t.push(curl_post(&server, &db, &lines, dir.path())?);
            ensure!(
                count(&server, &db)? == TOTAL,
                "curl stored a different count"
            );
        }
        let (d, c) = (median(&mut dms_t), median(&mut curl_t));
        println!(
            "| `dms import` into InfluxDB vs curl, same bars | {TOTAL} bars | {:.2} s = {:.0}k bars/s (runs {}) vs curl {:.2} s (runs {}) | **{:.2}×** | ≥ 0.9× |",
            d,
            TOTAL as f64 / d / 1e3,
            fmt_runs(&dms_t),
            c,
            fmt_runs(&curl_t),
            c / d
        );
    }
    Ok(())
}

fn fmt_runs(v: &[f64]) -> String {
    v.iter()
        .map(|t| format!("{t:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The bars of series `s`: `n` consecutive US session minutes from 2024-01-02.
fn series_bars(s: usize, n: usize, stamps: &[i64]) -> Vec<Bar> {
    stamps[..n]
        .iter()
        .enumerate()
        .map(|(i, &ts)| {
            let base = 50.0 + (s % 400) as f64 + ((i % 997) as f64) / 100.0;
            let (o, c) = (base, base + ((i * 7 % 13) as f64 - 6.0) / 100.0);
            Bar {
                ts,
                open: o,
                high: o.max(c) + 0.05,
                low: o.min(c) - 0.05,
                close: c,
                volume: (100 + (i * 31 % 5000)) as f64,
                adj_close: None,
                source: SourceKind::Files,
            }
        })
        .collect()
}

/// Writes the CSV and the line-protocol request bodies of the same bars.
fn generate(dir: &Path) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    let cal = Calendar::standard(Market::Us);
    let from = time::parse_instant("2024-01-02").map_err(anyhow::Error::msg)?;
    let stamps = cal.expected_stamps(
        Interval::M1,
        TimeRange::new(from, from + 400 * 86_400).map_err(anyhow::Error::msg)?,
    );
    ensure!(stamps.len() >= BIG, "not enough session minutes");
    let csv_path = dir.join("bars.csv");
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
    writeln!(csv, "symbol,ts,open,high,low,close,volume")?;
    let mut lines: Vec<PathBuf> = Vec::new();
    let mut body = Vec::new();
    let mut in_body = 0;
    let flush = |body: &mut Vec<u8>, lines: &mut Vec<PathBuf>| -> anyhow::Result<()> {
        let p = dir.join(format!("lines{:04}.lp", lines.len()));
        std::fs::write(&p, &body)?;
        lines.push(p);
        body.clear();
        Ok(())
    };
    for s in 0..=SERIES {
        let (symbol, n) = if s == SERIES {
            ("BIG".to_string(), BIG)
        } else {
            (format!("S{s:03}"), PER_SERIES)
        };
        let prefix =
            line_protocol::bars_prefix(&symbol, "1m").map_err(|e| anyhow::anyhow!("{e}"))?;
        for b in series_bars(s, n, &stamps) {
            writeln!(
                csv,
                "{symbol},{},{},{},{},{},{}",
                time::rfc3339(b.ts),
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume
            )?;
            line_protocol::push_bar(&mut body, &prefix, &b).map_err(|e| anyhow::anyhow!("{e}"))?;
            in_body += 1;
            if in_body == LINES_PER_REQUEST {
                flush(&mut body, &mut lines)?;
                in_body = 0;
            }
        }
    }
    if in_body > 0 {
        flush(&mut body, &mut lines)?;
    }
    csv.flush()?;
    Ok((csv_path, lines))
}

fn config(data: &Path, primary: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data)?;
    let cfg = data.join("dms.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server: {{ bind: 127.0.0.1:0 }}\nstorage: {{ data_dir: {:?}, primary: {primary} }}\nlogging: {{ dir: {:?}, json: true, level: warn }}\n",
            data.join("data"),
            data.join("logs")
        ),
    )?;
    Ok(cfg)
}

/// Runs the whole `dms import` process; returns its wall time.
fn import(cfg: &Path, csv: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_dms"))
        .args(["import", "--config"])
        .arg(cfg)
        .arg("--path")
        .arg(csv)
        .args(["--interval", "1m"])
        .output()
        .context("run dms import")?;
    let t = started.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "dms import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        stdout.contains(&format!("{TOTAL} written")),
        "dms import: {stdout}"
    );
    Ok(t)
}

fn curl(server: &Influxd, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("curl")
        .arg("-sS")
        .args(args)
        .output()
        .context("curl is needed as the reference")?;
    ensure!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = server;
    Ok(String::from_utf8(out.stdout)?)
}

fn create_db(server: &Influxd, db: &str) -> anyhow::Result<()> {
    curl(
        server,
        &[
            "-XPOST",
            &format!("{}/query", server.url),
            "--data-urlencode",
            &format!("q=CREATE DATABASE {db} WITH SHARD DURATION 52w"),
        ],
    )?;
    Ok(())
}

fn count(server: &Influxd, db: &str) -> anyhow::Result<u64> {
    let answer = curl(
        server,
        &[
            "-G",
            &format!("{}/query", server.url),
            "--data-urlencode",
            &format!("db={db}"),
            "--data-urlencode",
            "q=SELECT count(close) FROM bars",
        ],
    )?;
    let v: serde_json::Value = serde_json::from_str(&answer)?;
    let mut total = 0;
    for s in v["results"][0]["series"].as_array().into_iter().flatten() {
        total += s["values"][0][1].as_u64().unwrap_or(0);
    }
    Ok(total)
}

/// One curl process posting every body over keep-alive; returns its wall time.
fn curl_post(server: &Influxd, db: &str, files: &[PathBuf], dir: &Path) -> anyhow::Result<f64> {
    let mut cfg = String::new();
    for f in files {
        if !cfg.is_empty() {
            cfg.push_str("next\n");
        }
        cfg.push_str(&format!(
            "url = \"{}/write?db={db}&precision=s\"\ndata-binary = \"@{}\"\noutput = \"/dev/null\"\nwrite-out = \"%{{http_code}}\\n\"\n",
            server.url,
            f.display()
        ));
    }
    let path = dir.join("curl.cfg");
    std::fs::write(&path, cfg)?;
    let started = Instant::now();
    let out = Command::new("curl")
        .arg("-sS")
        .arg("-K")
        .arg(&path)
        .output()?;
    let t = started.elapsed().as_secs_f64();
    let codes = String::from_utf8(out.stdout)?;
    ensure!(
        codes.lines().count() == files.len() && codes.lines().all(|c| c == "204"),
        "curl answers: {codes}"
    );
    Ok(t)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
