//! Backfill figures (issue: fetchers). Run: `cargo bench --bench backfill`.
//!
//! 1. **Daily history**: 200 symbols × 10 years of daily bars from the local mock Yahoo (rate
//!    limit off) into the embedded store, in-process through `Jobs::run_inline` exactly as
//!    `dms backfill` runs without a server: end-to-end bars/s and the share of time in fetch,
//!    parse, validate and write (stage times summed over the concurrent series).
//! 2. **Peak memory**: the release `dms backfill` binary as a child process backfilling ~10M
//!    one-minute bars (1,300 symbols × the last 29 days, the window Yahoo serves minute bars
//!    for) from the mock; its peak RSS (`ru_maxrss` from `wait4`) must stay ≤ 300 MB.
//!
//! The mock server runs in this process and generates responses shaped like the recorded
//! fixtures for exactly the period asked (see `tests/it/helpers/yahoo_synth.rs`).

#[path = "../tests/it/helpers"]
mod helpers {
    pub mod mock_yahoo;
    pub mod yahoo_synth;
}

use std::time::Instant;

use dms::app::Services;
use dms::config::Config;
use dms::maintain::backfill::BackfillCounters;
use dms::maintain::jobs::{JobSpec, Task};
use helpers::mock_yahoo::{MockYahoo, Synth};

fn symbols(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("S{i:04}")).collect()
}

fn config_yaml(dir: &std::path::Path, base_url: &str) -> String {
    format!(
        "server: {{ bind: 127.0.0.1:0 }}\n\
         storage: {{ data_dir: {:?} }}\n\
         logging: {{ dir: {:?}, level: warn }}\n\
         sources: {{ yahoo: {{ base_url: {base_url:?}, requests_per_minute: 0 }} }}\n",
        dir.join("data"),
        dir.join("logs"),
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let now = chrono::Utc::now().timestamp();
    let mock = MockYahoo::start().await;
    mock.serve_synthetic("*", Synth::new("1d", now));
    mock.serve_synthetic("*", Synth::new("1m", now));

    // 1. 200 symbols × 10 years daily, in-process.
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_yaml(
        &config_yaml(dir.path(), &mock.base_url()),
        std::iter::empty(),
    )
    .unwrap();
    let services = Services::open(config, "bench").await.unwrap();
    let start = chrono::DateTime::from_timestamp(now - 10 * 365 * 86_400, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let spec = JobSpec {
        task: "backfill".into(),
        symbols: symbols(200),
        interval: Some("1d".into()),
        start: Some(start),
        end: None,
        source: Some("yahoo".into()),
    };
    let task = Task::parse(&spec).unwrap();
    let t = Instant::now();
    let job = services.jobs.run_inline(task, |_| {}).await.unwrap();
    let wall = t.elapsed();
    assert_eq!(job.status, "succeeded", "{:?}", job.errors);
    let c: BackfillCounters = serde_json::from_value(job.counters).unwrap();
    let stage_total = c.fetch_s + c.parse_s + c.validate_s + c.write_s;
    println!("## daily history: 200 symbols × 10 years 1d, mock Yahoo, rate limit off\n");
    println!(
        "| bars written | requests | wall time | end-to-end | fetch | parse | validate | write |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:.2} s | {:.0} bars/s | {:.0}% | {:.0}% | {:.0}% | {:.0}% |\n",
        c.bars_written,
        mock.requests().len(),
        wall.as_secs_f64(),
        c.bars_written as f64 / wall.as_secs_f64(),
        100.0 * c.fetch_s / stage_total,
        100.0 * c.parse_s / stage_total,
        100.0 * c.validate_s / stage_total,
        100.0 * c.write_s / stage_total,
    );

    // 2. ~10M one-minute bars through the release binary, peak RSS.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dms.yaml");
    std::fs::write(&cfg, config_yaml(dir.path(), &mock.base_url())).unwrap();
    let start = chrono::DateTime::from_timestamp(now - 29 * 86_400, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let syms = symbols(1300).join(",");
    let before = mock.requests().len();
    let t = Instant::now();
    // Reaped below with `wait4`, which also reports its peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dms"))
        .args([
            "backfill",
            "--symbols",
            &syms,
            "--interval",
            "1m",
            "--start",
            &start,
            "--source",
            "yahoo",
        ])
        .arg("--config")
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    // Reap with wait4 on a blocking thread (the mock keeps serving on this runtime meanwhile).
    let (status, maxrss_kb) = tokio::task::spawn_blocking(move || {
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our child; `status` and `usage` are valid for writes.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(rc, pid, "wait4");
        (status, usage.ru_maxrss)
    })
    .await
    .unwrap();
    let wall = t.elapsed();
    let mut out = String::new();
    use std::io::Read;
    child.stdout.unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.unwrap().read_to_string(&mut err).unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "dms backfill failed: {out}\n{err}"
    );
    let written: u64 = out
        .split(" written")
        .next()
        .and_then(|s| s.rsplit(", ").next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    println!("## peak memory: 1,300 symbols × 29 days 1m through `dms backfill` (release)\n");
    println!("| bars written | requests | wall time | end-to-end | peak RSS | target |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:.1} s | {:.0} bars/s | {:.0} MB | ≤ 300 MB |",
        written,
        mock.requests().len() - before,
        wall.as_secs_f64(),
        written as f64 / wall.as_secs_f64(),
        maxrss_kb as f64 / 1024.0
    );
    println!("\n`dms backfill` said: {}", out.trim());
}
