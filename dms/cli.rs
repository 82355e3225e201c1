//! The `dms` command line (DESIGN §3). Parsing with `clap`; each command runs against the
//! running server when one answers at `server.bind` and changes data, otherwise in-process on
//! the same stores. Exit codes: 0 success, 1 failure (one line naming the cause), 2 bad usage.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::StreamExt;

use crate::api::{parse_interval, parse_range, parse_symbols};
use crate::app::{App, Services, shutdown_on_signals};
use crate::config::Config;
use crate::domain::Symbol;
use crate::format::Format;
use crate::import::{FileReport, ImportReport};
use crate::maintain::backfill::BackfillCounters;
use crate::maintain::jobs::{JobSpec, Task};
use crate::reader::BarsQuery;

const DEFAULT_CONFIG: &str = "config/dms.yaml";

#[derive(Debug, Parser)]
#[command(
    name = "dms",
    version,
    about = "Market-data maintenance service: fetch, validate, store, replicate and serve OHLCV bars"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (API, scheduler, replication).
    Serve,
    /// Load CSV or Parquet bars from a file or directory.
    Import {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        interval: String,
        /// The symbol of a Yahoo-layout file, or the one symbol to keep from a generic file.
        #[arg(long)]
        symbol: Option<String>,
    },
    /// Print bars as csv, json, parquet or arrow.
    Read {
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        symbols: Vec<String>,
        #[arg(long)]
        interval: String,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long, default_value = "csv")]
        format: String,
        /// Scale OHLC by adj_close / close.
        #[arg(long)]
        adjusted: bool,
        /// Write to a file instead of stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Fetch, validate and store a range of bars for some symbols.
    Backfill {
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        symbols: Vec<String>,
        #[arg(long)]
        interval: String,
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: Option<String>,
        /// yahoo, futu or files (default: each symbol's universe source, else yahoo).
        #[arg(long)]
        source: Option<String>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the resolved configuration (secrets redacted) or every problem.
    Check,
}

/// A command failure: printed as one line `error: ...`; exit code 1, or 2 for bad usage.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> CliError {
        fail(e)
    }
}

fn fail(e: impl std::fmt::Display) -> CliError {
    CliError {
        message: e.to_string(),
        code: 1,
    }
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError {
        message: e.to_string(),
        code: 2,
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, CliError> {
    match path {
        Some(p) => Config::load(p).map_err(|e| fail(e.to_string().trim_end())),
        None if Path::new(DEFAULT_CONFIG).exists() => {
            Config::load(Path::new(DEFAULT_CONFIG)).map_err(|e| fail(e.to_string().trim_end()))
        }
        None => Config::from_yaml("", std::env::vars()).map_err(|e| fail(e.to_string().trim_end())),
    }
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Config {
        command: ConfigCommand::Check,
    } = &cli.command
    {
        let config = load_config(cli.config.as_deref())?;
        print!("{}", config.to_redacted_yaml());
        return Ok(());
    }
    let config = load_config(cli.config.as_deref())?;
    let _log = crate::telemetry::init_logging(
        &config.logging.dir,
        &config.logging.level,
        config.logging.json,
    );
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Import {
            path,
            interval,
            symbol,
        } => import(config, &path, &interval, symbol.as_deref()).await,
        Command::Read {
            symbols,
            interval,
            start,
            end,
            format,
            adjusted,
            output,
        } => {
            let q = BarsQuery {
                symbols: parse_symbols(&symbols.join(",")).map_err(usage)?,
                interval: parse_interval(Some(&interval)).map_err(usage)?,
                range: parse_range(start.as_deref(), end.as_deref()).map_err(usage)?,
                format: format.parse::<Format>().map_err(usage)?,
                adjusted,
            };
            read(config, q, output.as_deref()).await
        }
        Command::Backfill {
            symbols,
            interval,
            start,
            end,
            source,
        } => {
            let spec = JobSpec {
                task: "backfill".into(),
                symbols,
                interval: Some(interval),
                start: Some(start),
                end,
                source,
            };
            let task = Task::parse(&spec).map_err(usage)?;
            run_job(config, spec, task).await
        }
        Command::Config { .. } => unreachable!("handled above"),
    }
}

async fn serve(config: Config) -> Result<(), CliError> {
    let app = App::build(config).await?;
    eprintln!("dms listening on http://{}", app.addr());
    app.run(shutdown_on_signals()).await?;
    Ok(())
}

/// The base URL of a server answering at `server.bind`, if one does.
async fn running_server(config: &Config) -> Option<String> {
    let mut addr = config.server.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .ok()?;
    let resp = client.get(format!("{base}/health")).send().await.ok()?;
    resp.headers()
        .get("content-type")?
        .to_str()
        .ok()?
        .starts_with("application/json")
        .then_some(base)
}

fn admin_client(config: &Config) -> Result<(reqwest::Client, Option<String>), CliError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    Ok((
        client,
        config
            .server
            .admin_token()
            .map(|t| format!("Bearer {}", t.expose())),
    ))
}

async fn import(
    config: Config,
    path: &Path,
    interval: &str,
    symbol: Option<&str>,
) -> Result<(), CliError> {
    let interval = parse_interval(Some(interval)).map_err(usage)?;
    let symbol = symbol.map(Symbol::parse).transpose().map_err(usage)?;
    let report = if let Some(base) = running_server(&config).await {
        let abs =
            std::fs::canonicalize(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let (client, auth) = admin_client(&config)?;
        let mut req = client.post(format!("{base}/api/v1/import")).json(&serde_json::json!({
            "path": abs, "interval": interval.as_str(), "symbol": symbol.as_ref().map(|s| s.as_str()),
        }));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        if !status.is_success() {
            let msg = body["error"]["message"]
                .as_str()
                .unwrap_or("request failed");
            return Err(fail(format!("server: {msg}")));
        }
        let report: ImportReport = serde_json::from_value(body)?;
        for f in &report.files {
            print_file(f);
        }
        report
    } else {
        let services = Services::open(config).await?;
        let files = crate::source::files::list_files(path)?;
        let bar = progress(files.len() as u64, "importing");
        let report =
            crate::import::import_path(&services.writer, path, interval, symbol.as_ref(), |f| {
                bar.inc(1);
                bar.suspend(|| print_file(f));
            })
            .await?;
        bar.finish_and_clear();
        report
    };
    let t = report.total();
    println!(
        "imported {}: {} series, {} bars read, {} written, {} quarantined, {} no-trade rows skipped",
        t.file, t.series, t.read, t.written, t.rejected, t.no_trade
    );
    match report.failed() {
        0 => Ok(()),
        n => Err(fail(
            match report.files.iter().find_map(|f| f.error.clone()) {
                Some(e) if n == 1 => e,
                Some(e) => format!("{n} files not imported, first: {e}"),
                None => format!("{n} files not imported"),
            },
        )),
    }
}

fn print_file(f: &FileReport) {
    match &f.error {
        Some(e) => eprintln!("{}: not imported: {e}", f.file),
        None => eprintln!(
            "{}: {} bars written, {} quarantined",
            f.file, f.written, f.rejected
        ),
    }
}

/// A progress bar on a terminal; hidden otherwise (log lines say what happens).
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

async fn read(config: Config, q: BarsQuery, output: Option<&Path>) -> Result<(), CliError> {
    let services = Services::open(config).await?;
    // The same call the API makes, so the bytes are the same.
    let body = services.reader.read(q).await?;
    let mut out: Box<dyn Write + Send> = match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| fail(format!("{}: {e}", p.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    match body {
        crate::reader::Body::Full(bytes) => out.write_all(&bytes)?,
        crate::reader::Body::Stream(mut stream) => {
            while let Some(piece) = stream.next().await {
                out.write_all(&piece?)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Runs a job through the running server (polling its progress) or in-process, then prints
/// its summary. Fails when the job did.
async fn run_job(config: Config, spec: JobSpec, task: Task) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let (status, counters, errors) = if let Some(base) = running_server(&config).await {
        let (client, auth) = admin_client(&config)?;
        let with_auth = |r: reqwest::RequestBuilder| match &auth {
            Some(a) => r.header("authorization", a),
            None => r,
        };
        let resp = with_auth(client.post(format!("{base}/api/v1/jobs")).json(&spec))
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        if !status.is_success() {
            return Err(fail(format!(
                "server: {}",
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("request failed")
            )));
        }
        let id = body["id"]
            .as_u64()
            .ok_or_else(|| fail("server: no job id in the reply"))?;
        eprintln!("job {id} submitted to {base}");
        let bar = progress(0, task.name());
        let job = loop {
            let job: serde_json::Value = with_auth(client.get(format!("{base}/api/v1/jobs/{id}")))
                .send()
                .await?
                .json()
                .await?;
            bar.set_length(job["progress"]["total"].as_u64().unwrap_or(0));
            bar.set_position(job["progress"]["done"].as_u64().unwrap_or(0));
            if matches!(
                job["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        bar.finish_and_clear();
        (
            job["status"].as_str().unwrap_or("failed").to_string(),
            job["counters"].clone(),
            serde_json::from_value::<Vec<String>>(job["errors"].clone()).unwrap_or_default(),
        )
    } else {
        let services = Services::open(config).await?;
        let bar = progress(0, task.name());
        let job = services
            .jobs
            .run_inline(task, |ctx| {
                let (done, total) = ctx.progress();
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
        bar.finish_and_clear();
        let errors = serde_json::from_value::<Vec<String>>(job.errors.clone()).unwrap_or_default();
        (job.status, job.counters, errors)
    };
    let c: BackfillCounters = serde_json::from_value(counters).unwrap_or_default();
    for e in &errors {
        eprintln!("{e}");
    }
    println!(
        "backfill {status}: {} series ({} failed), {} bars fetched, {} written, {} quarantined, {} dropped (no trade {}, out of range {}, forming {}), {} corporate actions, in {:.1}s ({})",
        c.series,
        c.series_failed,
        c.bars_fetched,
        c.bars_written,
        c.bars_rejected,
        c.dropped.no_trade + c.dropped.out_of_range + c.dropped.forming,
        c.dropped.no_trade,
        c.dropped.out_of_range,
        c.dropped.forming,
        c.actions,
        started.elapsed().as_secs_f64(),
        c.shares(),
    );
    match (status.as_str(), errors.first()) {
        ("succeeded", _) => Ok(()),
        (_, Some(e)) if errors.len() == 1 => Err(fail(e)),
        (_, Some(e)) => Err(fail(format!("{} series failed, first: {e}", errors.len()))),
        (s, None) => Err(fail(format!("backfill {s}"))),
    }
}
