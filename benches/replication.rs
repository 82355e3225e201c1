//! Replication figures against real `influxd` backups (three servers, started by the tests'
//! helper), with an embedded primary:
//!
//! 1. **ship**: 1,000,000 bars (100 series × 10,000 one-minute bars, already in the primary)
//!    shipped by `Replicator::sync` to three InfluxDB backups versus to one, fresh databases
//!    every run, runs alternating; the figure is the ratio of the medians.
//! 2. **lag**: a steady load — 500 symbols updated every 10 s (each update writes the newest
//!    bar and revises the two before it, what an update of a 1m universe writes per cycle),
//!    six cycles — continuously shipped to three backups by `Replicator::start`; the lag of a
//!    change is the time from its write's acknowledgement to the node's ack covering it,
//!    over every change and node.
//! 3. **verify**: 10,000,000 bars (1,000 series × 10,000 one-minute bars) on the primary and
//!    one backup; `Replicator::verify` without repair (digests computed by InfluxDB and in
//!    process) in bars compared per second; then 100 differences written straight into the
//!    backup (one wrong close in each of 100 series) and the time for `verify` to find and
//!    repair them all.
//!
//! Run with `cargo bench --bench replication` (or `-- ship`, `-- lag`, `-- verify`).
//!
//! The ship part also reports the CPU time each process spent (DMS, each `influxd`). With
//! `DMS_BENCH_NODE_CPU=<cores>` (e.g. `0.5`) each `influxd` is capped at that many cores by a
//! cgroup of its own (root, cgroup v1 `cpu` or v2), the way three backups on machines of
//! their own do not share the primary's cores; without it all of them share this machine's.

#[path = "../tests/it/helpers/influxd.rs"]
mod influxd;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use dms::config::Config;
use dms::domain::{Bar, Interval, SeriesKey, SourceKind, Symbol};
use dms::events::EventBus;
use dms::ingest::Writer;
use dms::replicate::node::{Node, StoreNode};
use dms::replicate::{Progress, Replicator, Tuning, VerifyOptions};
use dms::store::embedded::EmbeddedStore;
use dms::store::meta::MetaDb;
use dms::validate::revalidated_from_store;
use futures::{StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;

use influxd::{Influxd, Options};

/// 2024-01-02 00:00:00Z.
const T0: i64 = 1_704_153_600;
const SHIP_REPS: usize = 3;
const VERIFY_REPS: usize = 3;

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let servers = [
        Influxd::start(Options::default()),
        Influxd::start(Options::default()),
        Influxd::start(Options::default()),
    ];
    let node_cpu: Option<f64> = std::env::var("DMS_BENCH_NODE_CPU")
        .ok()
        .map(|v| v.parse().context("DMS_BENCH_NODE_CPU is a number of cores"))
        .transpose()?;
    let _caps: Vec<CpuCap> = match node_cpu {
        Some(cores) => servers
            .iter()
            .map(|s| CpuCap::new(s.pid(), cores))
            .collect::<anyhow::Result<_>>()?,
        None => Vec::new(),
    };
    if let Some(cores) = node_cpu {
        println!("each influxd capped at {cores} cores");
    }
    println!(
        "influxd pids {:?}; {} cores; load average {}",
        servers.iter().map(|s| s.pid()).collect::<Vec<_>>(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let mut table = Vec::new();
    if wanted("ship") {
        rt.block_on(ship(&servers, &mut table))?;
    }
    if wanted("lag") {
        rt.block_on(lag(&servers, &mut table))?;
    }
    if wanted("verify") {
        rt.block_on(verify(&servers[0], &mut table))?;
    }
    println!("\nload average at the end: {}\n", load_average());
    println!("| figure | measured | target |");
    println!("|---|---|---|");
    for row in &table {
        println!("{row}");
    }
    Ok(())
}

/// An embedded primary in a temp dir with its writer.
struct Primary {
    _dir: tempfile::TempDir,
    writer: Writer,
}

fn primary() -> anyhow::Result<Primary> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("bars.db"))?);
    let meta = MetaDb::open(&dir.path().join("meta.db"))?;
    Ok(Primary {
        writer: Writer::new(store, meta),
        _dir: dir,
    })
}

fn bar(ts: i64, seed: f64) -> Bar {
    let base = 100.0 + seed + (ts % 997) as f64 / 100.0;
    Bar {
        ts,
        open: base,
        high: base + 1.25,
        low: base - 0.75,
        close: base + 0.5,
        volume: 1000.0 + (ts % 89) as f64,
        adj_close: None,
        source: SourceKind::Yahoo,
    }
}

fn key(i: usize) -> SeriesKey {
    SeriesKey::new(Symbol::opaque(&format!("S{i:04}")), Interval::M1)
}

/// Writes `series` × `n` consecutive minute bars through the primary's writer.
async fn fill(p: &Primary, series: usize, n: usize) -> anyhow::Result<()> {
    for i in 0..series {
        let bars: Vec<Bar> = (0..n).map(|j| bar(T0 + j as i64 * 60, i as f64)).collect();
        let batch = revalidated_from_store(&key(i), bars).context("bars")?;
        p.writer.write(batch).await?;
    }
    Ok(())
}

fn influx_nodes(servers: &[&Influxd], prefix: &str) -> Vec<(String, Arc<dyn Node>)> {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let db = s.unique_database(prefix);
            let node: Arc<dyn Node> = Arc::new(StoreNode::influx(s.config(&db)));
            (format!("{prefix}{i}"), node)
        })
        .collect()
}

fn replicator(p: &Primary, nodes: Vec<(String, Arc<dyn Node>)>) -> Replicator {
    Replicator::with_nodes(
        &Config::default_config(),
        &p.writer,
        EventBus::new(),
        Tuning::default(),
        nodes,
    )
}

fn no_progress(_: Progress) {}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn ship(servers: &[Influxd; 3], table: &mut Vec<String>) -> anyhow::Result<()> {
    println!("\n== ship: 1M bars to 1 and to 3 InfluxDB backups");
    let p = primary()?;
    fill(&p, 100, 10_000).await?;
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for rep in 0..SHIP_REPS {
        for (slot, n) in [(0, 1), (1, 3)] {
            let chosen: Vec<&Influxd> = servers.iter().take(n).collect();
            let r = replicator(&p, influx_nodes(&chosen, &format!("ship{rep}n{n}_")));
            let cpu_before: Vec<f64> = chosen.iter().map(|s| cpu_seconds(s.pid())).collect();
            let dms_before = cpu_seconds(std::process::id());
            let t = Instant::now();
            let report = r
                .sync(None, &no_progress, &CancellationToken::new())
                .await?;
            let secs = t.elapsed().as_secs_f64();
            for node in &report.nodes {
                ensure!(
                    node.ok && node.bars_written == 1_000_000,
                    "ship to {}: {node:?}",
                    node.node
                );
            }
            let node_cpu: Vec<String> = chosen
                .iter()
                .zip(&cpu_before)
                .map(|(s, b)| format!("{:.1}", cpu_seconds(s.pid()) - b))
                .collect();
            println!(
                "run {rep}: {n} node(s) {secs:.2} s ({:.0} bars/s per node), CPU-s: dms {:.1}, influxd {}; load {}",
                1e6 / secs,
                cpu_seconds(std::process::id()) - dms_before,
                node_cpu.join(" + "),
                load_average()
            );
            times[slot].push(secs);
        }
    }
    let (one, three) = (median(times[0].clone()), median(times[1].clone()));
    table.push(format!(
        "| 1M bars to 3 InfluxDB backups vs to 1 (medians of {SHIP_REPS}) | {three:.2} s vs {one:.2} s = **{:.2}×** | ≤ 1.5× |",
        three / one
    ));
    Ok(())
}

async fn lag(servers: &[Influxd; 3], table: &mut Vec<String>) -> anyhow::Result<()> {
    const SYMBOLS: usize = 500;
    const CYCLES: i64 = 6;
    const HISTORY: usize = 390;
    println!("\n== lag: {SYMBOLS} symbols updated every 10 s, {CYCLES} cycles, 3 backups");
    let p = primary()?;
    let chosen: Vec<&Influxd> = servers.iter().collect();
    let nodes = influx_nodes(&chosen, "lag_");
    let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    let r = replicator(&p, nodes);
    p.writer.add_listener(r.listener());
    let shutdown = CancellationToken::new();
    let running = r.start(shutdown.clone());
    fill(&p, SYMBOLS, HISTORY).await?;
    let meta = p.writer.meta().clone();
    let caught_up = |target: u64| {
        let (meta, names) = (meta.clone(), names.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                let mut all = true;
                for n in &names {
                    all &= meta.acked(n).await? >= target;
                }
                if all {
                    return anyhow::Ok(());
                }
                ensure!(Instant::now() < deadline, "backups did not catch up");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    caught_up(meta.last_seq().await?).await?;
    // Watch the acks: (when, node, acked) at every change.
    let watcher = {
        let (meta, names) = (meta.clone(), names.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut seen = vec![0u64; names.len()];
            let mut timeline: Vec<(Instant, usize, u64)> = Vec::new();
            while !stop.is_cancelled() {
                for (i, n) in names.iter().enumerate() {
                    let a = meta.acked(n).await.unwrap_or(0);
                    if a != seen[i] {
                        seen[i] = a;
                        timeline.push((Instant::now(), i, a));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            timeline
        })
    };
    let mut written: Vec<(u64, Instant)> = Vec::new();
    let start = Instant::now();
    for cycle in 0..CYCLES {
        let due = start + Duration::from_secs(10 * cycle as u64);
        tokio::time::sleep_until(due.into()).await;
        for i in 0..SYMBOLS {
            let newest = HISTORY as i64 + cycle;
            let bars: Vec<Bar> = (newest - 2..=newest)
                .map(|j| bar(T0 + j * 60, i as f64 + 0.25 * (cycle + 1) as f64))
                .collect();
            let seq = p
                .writer
                .write(revalidated_from_store(&key(i), bars).context("bars")?)
                .await?
                .seq()
                .context("the primary spooled a write")?;
            written.push((seq, Instant::now()));
        }
        println!("cycle {cycle}: written, load {}", load_average());
    }
    caught_up(meta.last_seq().await?).await?;
    shutdown.cancel();
    running.join().await;
    let timeline = watcher.await?;
    let mut lags = Vec::new();
    for node in 0..names.len() {
        let acks: Vec<&(Instant, usize, u64)> =
            timeline.iter().filter(|(_, n, _)| *n == node).collect();
        for (seq, at) in &written {
            let acked = acks
                .iter()
                .find(|(_, _, a)| a >= seq)
                .context("a change never acked")?;
            lags.push(acked.0.saturating_duration_since(*at).as_secs_f64());
        }
    }
    lags.sort_by(f64::total_cmp);
    let pct = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
    println!(
        "{} changes × {} nodes: p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        written.len(),
        names.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    table.push(format!(
        "| lag, {SYMBOLS} symbols every 10 s to 3 backups ({} changes × 3 nodes) | p50 {:.2} s, **p99 {:.2} s**, max {:.2} s | p99 ≤ 5 s |",
        written.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    ));
    Ok(())
}

async fn verify(server: &Influxd, table: &mut Vec<String>) -> anyhow::Result<()> {
    const SERIES: usize = 1_000;
    const BARS: usize = 10_000;
    println!("\n== verify: {SERIES} × {BARS} bars on the primary and one backup");
    let p = primary()?;
    let t = Instant::now();
    fill(&p, SERIES, BARS).await?;
    println!("primary filled in {:.1} s", t.elapsed().as_secs_f64());
    let db = server.unique_database("verify");
    let node: Arc<dyn Node> = Arc::new(StoreNode::influx(server.config(&db)));
    let r = replicator(&p, vec![("v".into(), node)]);
    let t = Instant::now();
    let shipped = r
        .sync(None, &no_progress, &CancellationToken::new())
        .await?;
    ensure!(shipped.failed().is_empty(), "{shipped:?}");
    println!(
        "shipped 10M bars in {:.1} s ({:.0} bars/s)",
        t.elapsed().as_secs_f64(),
        (SERIES * BARS) as f64 / t.elapsed().as_secs_f64()
    );
    let run = |repair| {
        let r = r.clone();
        async move {
            let t = Instant::now();
            let mut report = r
                .verify(
                    Some("v"),
                    VerifyOptions { repair },
                    &no_progress,
                    &CancellationToken::new(),
                )
                .await?;
            anyhow::Ok((t.elapsed().as_secs_f64(), report.nodes.remove(0)))
        }
    };
    // The reference: the same digest statements (count and six sums per weekly bucket of
    // each series, four at a time, as `Tuning::default()` runs them) sent straight to the
    // backup by a plain HTTP client (one, keeping its connections): what any content check
    // of these six fields costs there.
    let grid = dms::store::BucketGrid::for_interval(Interval::M1);
    let client = reqwest::Client::new();
    let reference = || async {
        let t = Instant::now();
        let queries = (0..SERIES).map(|i| {
            let q = format!(
                "SELECT count(close) AS n, sum(open) AS o, sum(high) AS h, sum(low) AS l, \
                 sum(close) AS c, sum(volume) AS v, sum(adj_close) AS a FROM bars \
                 WHERE symbol = 'S{i:04}' AND interval = '1m' AND time >= 0s AND time < 4102444800s \
                 GROUP BY time({}s, {}s) fill(none)",
                grid.width, grid.offset
            );
            let (client, db) = (&client, &db);
            async move {
                let resp = client
                    .post(format!("{}/query", server.url))
                    .query(&[("db", db.as_str()), ("epoch", "s")])
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!(
                        "q={}",
                        url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
                    ))
                    .send()
                    .await?;
                anyhow::Ok(resp.json::<serde_json::Value>().await?)
            }
        });
        let answers: Vec<serde_json::Value> = futures::stream::iter(queries)
            .buffer_unordered(Tuning::default().verify_concurrency)
            .try_collect()
            .await?;
        ensure!(
            answers.iter().all(|a| a["results"][0]["series"].is_array()),
            "a reference query failed"
        );
        anyhow::Ok(t.elapsed().as_secs_f64())
    };
    let mut rates = Vec::new();
    let mut ratios = Vec::new();
    for rep in 0..VERIFY_REPS {
        let (dms_before, influxd_before) =
            (cpu_seconds(std::process::id()), cpu_seconds(server.pid()));
        let (secs, n) = run(false).await?;
        ensure!(
            n.ok && n.differences == 0 && n.bars_compared == (SERIES * BARS) as u64,
            "{n:?}"
        );
        println!(
            "run {rep}: {secs:.2} s, {:.2}M bars/s compared, {} buckets, {} digest mismatches, CPU-s: dms {:.1}, influxd {:.1}; load {}",
            n.bars_compared as f64 / secs / 1e6,
            n.buckets_compared,
            n.digest_mismatches,
            cpu_seconds(std::process::id()) - dms_before,
            cpu_seconds(server.pid()) - influxd_before,
            load_average()
        );
        rates.push(n.bars_compared as f64 / secs);
        let influxd_before = cpu_seconds(server.pid());
        let ref_secs = reference().await?;
        println!(
            "run {rep}: reference (the same digests straight to influxd) {ref_secs:.2} s, influxd {:.1} CPU-s; verify / reference {:.2}×",
            cpu_seconds(server.pid()) - influxd_before,
            secs / ref_secs
        );
        ratios.push(secs / ref_secs);
    }
    let rate = median(rates);
    table.push(format!(
        "| verify 10M equal bars, primary vs one InfluxDB backup (median of {VERIFY_REPS}) | **{:.2}M bars/s** compared; {:.2}× the time of the same digests asked of influxd directly | ≥ 2.5M bars/s |",
        rate / 1e6,
        median(ratios)
    ));
    // 100 scattered differences, written behind DMS's back.
    let mut lines = String::new();
    for d in 0..100 {
        let i = d * 10 + 3;
        let j = (d * 7919) % BARS;
        let b = bar(T0 + j as i64 * 60, i as f64);
        lines.push_str(&format!(
            "bars,interval=1m,symbol=S{i:04} close={} {}\n",
            b.close + 0.5,
            b.ts
        ));
    }
    let (status, body) = server.raw_write(&db, &lines).await;
    ensure!(status == 204, "raw write: {status} {body}");
    let (secs, n) = run(true).await?;
    ensure!(
        n.differences == 100 && n.repaired == 100,
        "found {} repaired {}: {:?}",
        n.differences,
        n.repaired,
        n.errors
    );
    let (_, clean) = run(false).await?;
    ensure!(clean.differences == 0, "{clean:?}");
    println!(
        "100 differences found and repaired in {secs:.2} s ({} bars written)",
        n.bars_written
    );
    table.push(format!(
        "| verify with 100 scattered differences: find and repair all | **{secs:.2} s** (100 found, 100 repaired, {} bars rewritten) | — |",
        n.bars_written
    ));
    Ok(())
}

/// CPU time (user + system) process `pid` has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command: state is the 1st, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// A cgroup of one process capping its CPU at some cores; removed when dropped.
struct CpuCap {
    dir: std::path::PathBuf,
    root: std::path::PathBuf,
    pid: u32,
}

impl CpuCap {
    fn new(pid: u32, cores: f64) -> anyhow::Result<CpuCap> {
        const PERIOD_US: u64 = 100_000;
        let quota = (cores * PERIOD_US as f64).round() as u64;
        ensure!(quota >= 1_000, "a cap of {cores} cores is too small");
        let v1 = std::path::Path::new("/sys/fs/cgroup/cpu");
        let (root, dir) = if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(format!("dms-bench-{pid}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
            (v1.to_path_buf(), dir)
        } else {
            let root = std::path::Path::new("/sys/fs/cgroup");
            let dir = root.join(format!("dms-bench-{pid}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))?;
            (root.to_path_buf(), dir)
        };
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving influxd {pid} into {}", dir.display()))?;
        Ok(CpuCap { dir, root, pid })
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // Move it back (if it still runs) so that the group is empty and can go.
        let _ = std::fs::write(self.root.join("cgroup.procs"), self.pid.to_string());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
