//! The `dms` command line (DESIGN §3). Parsing with `clap`. Every command that touches data
//! goes through the server that holds the data directory when one does (so its cache, locks
//! and rate limits see everything), and otherwise takes the directory itself and runs
//! in-process on the same stores ([`Target`]). Which one is decided by the data directory's
//! lock ([`crate::datadir`]), never by timing. Exit codes: 0 success, 1 failure (one line
//! naming the cause), 2 bad usage.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::StreamExt;

use crate::api::{parse_interval, parse_range, parse_symbols};
use crate::app::{App, shutdown_on_signals};
use crate::config::Config;
use crate::datadir::{self, Acquired, DataDirLock};
use crate::domain::Symbol;
use crate::format::Format;
use crate::import::{FileReport, ImportReport};
use crate::maintain::fetch::FetchCounters;
use crate::maintain::task::JobSpec;
use crate::reader::BarsQuery;
use crate::services::{Services, busy_message};

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
    /// Fetch every universe series from its latest stored bar (minus the revision window) to
    /// now; series with nothing stored from their start.
    Update {
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        symbols: Vec<String>,
        #[arg(long)]
        interval: Option<String>,
        /// Only the universe's series of this market (US, HK, SH, SZ, CRYPTO, FX).
        #[arg(long)]
        market: Option<String>,
        /// Re-fetch each series' whole history instead (the `full` task).
        #[arg(long)]
        full: bool,
    },
    /// Re-validate stored bars (findings become quality flags) and compare every backup node
    /// (or --node) with the primary, repairing what differs.
    Verify {
        /// Only this backup node (a `storage.backups` name).
        #[arg(long)]
        node: Option<String>,
        /// Only the stored series of these symbols.
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        symbols: Vec<String>,
        #[arg(long)]
        interval: Option<String>,
    },
    /// Push pending changes to every backup node (or --node) now and wait until they confirm.
    Sync {
        /// Only this backup node (a `storage.backups` name).
        #[arg(long)]
        node: Option<String>,
    },
    /// List, show or cancel jobs.
    Jobs {
        #[command(subcommand)]
        command: Option<JobsCommand>,
        /// Print the API's JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
    /// List missing ranges per series (calendar-aware): inside the stored range, and with
    /// --head what is missing after each series' newest bar.
    Gaps {
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        symbols: Vec<String>,
        #[arg(long)]
        interval: Option<String>,
        /// Also list each series' head (what the next update fetches).
        #[arg(long)]
        head: bool,
        /// Print the JSON of `GET /api/v1/gaps` instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Recent jobs, newest first.
    List {
        /// Only jobs with this status (queued, running, succeeded, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
    /// One job with its log.
    Show { id: u64 },
    /// Cancel a running job.
    Cancel { id: u64 },
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
                ..JobSpec::default()
            };
            run_job(config, spec).await
        }
        Command::Update {
            symbols,
            interval,
            market,
            full,
        } => {
            let spec = JobSpec {
                task: if full { "full" } else { "update" }.into(),
                symbols,
                interval,
                market,
                ..JobSpec::default()
            };
            run_job(config, spec).await
        }
        Command::Verify {
            node,
            symbols,
            interval,
        } => {
            let spec = JobSpec {
                task: "verify".into(),
                symbols,
                interval,
                node,
                ..JobSpec::default()
            };
            run_job(config, spec).await
        }
        Command::Sync { node } => {
            let spec = JobSpec {
                task: "sync".into(),
                node,
                ..JobSpec::default()
            };
            run_job(config, spec).await
        }
        Command::Jobs { command, json } => jobs(config, command, json).await,
        Command::Gaps {
            symbols,
            interval,
            head,
            json,
        } => {
            let params = crate::api::gaps::GapsParams {
                symbols: (!symbols.is_empty()).then(|| symbols.join(",")),
                interval,
                head: Some(head.to_string()),
            };
            gaps(config, params, json).await
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

/// Where a data command runs.
enum Target {
    /// Through the `dms serve` that holds the data directory.
    Server(Remote),
    /// In this process, which now holds the data directory.
    Local(Box<Services>),
}

/// A running server and how to authenticate to it.
struct Remote {
    base: String,
    client: reqwest::Client,
    /// `Bearer <token>`: the admin token when set, else the read token.
    auth: Option<String>,
}

impl Remote {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Some(a) => r.header("authorization", a),
            None => r,
        }
    }

    /// Sends a request and decodes a JSON answer; a non-2xx answer is an error naming the
    /// server's message.
    async fn json(&self, req: reqwest::RequestBuilder) -> Result<serde_json::Value, CliError> {
        let resp = req.send().await.map_err(|e| fail(format!("server: {e}")))?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| fail(format!("server: {e}")))?;
        if !status.is_success() {
            return Err(server_error(status, &body));
        }
        Ok(body)
    }
}

fn server_error(status: reqwest::StatusCode, body: &serde_json::Value) -> CliError {
    let msg = body["error"]["message"]
        .as_str()
        .unwrap_or("request failed");
    let code = if status.is_client_error() && status != reqwest::StatusCode::CONFLICT {
        // The server refused the request itself (bad argument, unknown symbol, ...).
        2
    } else {
        1
    };
    CliError {
        message: format!("server: {msg}"),
        code,
    }
}

/// How long a command waits for a `dms serve` that holds the directory but is still starting
/// (opening its stores) to publish its address.
const SERVER_START_PATIENCE: Duration = Duration::from_secs(60);

/// Finds the server holding the data directory, or takes the directory for `command`.
async fn target(config: Config, command: &str) -> Result<Target, CliError> {
    let dir = config.storage.data_dir.clone();
    loop {
        match DataDirLock::try_acquire(&dir, command)? {
            Acquired::Mine(lock) => {
                return Ok(Target::Local(Box::new(
                    Services::open_locked(config, lock).await?,
                )));
            }
            Acquired::Held(_) => match datadir::serving_holder(&dir, SERVER_START_PATIENCE).await {
                Ok(Some(h)) => {
                    let base = h.base_url().expect("a serving holder has an address");
                    let client = reqwest::Client::builder()
                        .connect_timeout(Duration::from_secs(10))
                        .build()?;
                    let auth = config
                        .server
                        .admin_token()
                        .or_else(|| config.server.read_token())
                        .map(|t| format!("Bearer {}", t.expose()));
                    return Ok(Target::Server(Remote { base, client, auth }));
                }
                // Released meanwhile: try to take it.
                Ok(None) => continue,
                Err(h) => return Err(fail(busy_message(&dir, Some(h)))),
            },
        }
    }
}

async fn import(
    config: Config,
    path: &Path,
    interval: &str,
    symbol: Option<&str>,
) -> Result<(), CliError> {
    let interval = parse_interval(Some(interval)).map_err(usage)?;
    let symbol = symbol.map(Symbol::parse).transpose().map_err(usage)?;
    let files = crate::source::files::list_files(path)?;
    let bar = progress(files.len() as u64, "importing");
    let report = match target(config, "import").await? {
        // Each file is uploaded: the server may not see this machine's files, and must not
        // read paths outside its own drop folder.
        Target::Server(remote) => {
            let mut report = ImportReport::default();
            for file in files {
                let f = upload(&remote, &file, interval, symbol.as_ref()).await?;
                bar.inc(1);
                bar.suspend(|| print_file(&f));
                report.files.push(f);
            }
            report
        }
        Target::Local(services) => {
            crate::import::import_path(services.jobs.env(), path, interval, symbol.as_ref(), |f| {
                bar.inc(1);
                bar.suspend(|| print_file(f));
            })
            .await?
        }
    };
    bar.finish_and_clear();
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

/// Streams one file to `POST /api/v1/import` as the request body.
async fn upload(
    remote: &Remote,
    file: &Path,
    interval: crate::domain::Interval,
    symbol: Option<&Symbol>,
) -> Result<FileReport, CliError> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| fail(format!("{}: {e}", file.display())))?;
    let len = f.metadata().await.map(|m| m.len()).ok();
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024));
    let mut query = vec![("interval", interval.as_str().to_string()), ("name", name)];
    if let Some(s) = symbol {
        query.push(("symbol", s.to_string()));
    }
    let mut req = remote
        .request(reqwest::Method::POST, "/api/v1/import")
        .query(&query)
        .header("content-type", crate::import::content_type_of(file))
        .body(body);
    if let Some(len) = len {
        req = req.header("content-length", len);
    }
    let mut report: ImportReport = serde_json::from_value(remote.json(req).await?)?;
    let mut f = report.files.pop().unwrap_or_default();
    // Report the file under the name the user gave.
    f.file = file.display().to_string();
    Ok(f)
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
    let mut out: Box<dyn Write + Send> = match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| fail(format!("{}: {e}", p.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    match target(config, "read").await? {
        // The same bytes as the in-process read: the server runs the same `Reader::read`.
        Target::Server(remote) => {
            let mut query = vec![
                (
                    "symbols",
                    q.symbols
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("interval", q.interval.as_str().to_string()),
                ("format", q.format.as_str().to_string()),
                ("adjusted", q.adjusted.to_string()),
            ];
            if q.range.start() != crate::domain::TimeRange::ALL.start() {
                query.push(("start", crate::domain::time::rfc3339(q.range.start())));
            }
            if q.range.end() != crate::domain::TimeRange::ALL.end() {
                query.push(("end", crate::domain::time::rfc3339(q.range.end())));
            }
            let resp = remote
                .request(reqwest::Method::GET, "/api/v1/bars")
                .query(&query)
                .send()
                .await
                .map_err(|e| fail(format!("server: {e}")))?;
            let status = resp.status();
            if !status.is_success() {
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                return Err(server_error(status, &body));
            }
            let mut stream = resp.bytes_stream();
            while let Some(piece) = stream.next().await {
                out.write_all(&piece.map_err(|e| fail(format!("server: {e}")))?)?;
            }
        }
        Target::Local(services) => match services.reader.read(q).await? {
            crate::reader::Body::Full(bytes) => out.write_all(&bytes)?,
            crate::reader::Body::Stream(mut stream) => {
                while let Some(piece) = stream.next().await {
                    out.write_all(&piece?)?;
                }
            }
        },
    }
    out.flush()?;
    Ok(())
}

/// `dms gaps`: the same list as `GET /api/v1/gaps`, from the server holding the data
/// directory or in-process; a table, or the API's JSON with `--json`.
async fn gaps(
    config: Config,
    params: crate::api::gaps::GapsParams,
    json: bool,
) -> Result<(), CliError> {
    use crate::api::gaps::{GapList, gap_list, parse_params};
    let (filter, head) = parse_params(&params).map_err(usage)?;
    let list: GapList = match target(config, "gaps").await? {
        Target::Server(remote) => {
            let mut query = vec![("head", head.to_string())];
            if let Some(s) = &params.symbols {
                query.push(("symbols", s.clone()));
            }
            if let Some(i) = &params.interval {
                query.push(("interval", i.clone()));
            }
            let req = remote
                .request(reqwest::Method::GET, "/api/v1/gaps")
                .query(&query);
            serde_json::from_value(remote.json(req).await?)?
        }
        Target::Local(services) => {
            let now = chrono::Utc::now().timestamp();
            gap_list(&services.gaps.scan(&filter, now).await?, head)
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout());
    if json {
        serde_json::to_writer(&mut out, &list)?;
        writeln!(out)?;
    } else if list.gaps.is_empty() {
        writeln!(out, "no gaps")?;
    } else {
        let header = ["SYMBOL", "INTERVAL", "START", "END", "SESSIONS", "KIND"];
        let rows: Vec<[String; 6]> = list
            .gaps
            .iter()
            .map(|g| {
                [
                    g.symbol.clone(),
                    g.interval.clone(),
                    g.start.clone(),
                    g.end.clone(),
                    g.sessions.to_string(),
                    g.kind.clone(),
                ]
            })
            .collect();
        let mut width = header.map(str::len);
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        let line = |cells: [&str; 6]| {
            let mut l = String::new();
            for (i, (c, w)) in cells.iter().zip(width).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    l.push_str(&format!("{c:<w$}  "));
                }
            }
            l
        };
        writeln!(out, "{}", line(header))?;
        for r in &rows {
            writeln!(out, "{}", line(r.each_ref().map(String::as_str)))?;
        }
        let series: std::collections::HashSet<(&str, &str)> = list
            .gaps
            .iter()
            .map(|g| (g.symbol.as_str(), g.interval.as_str()))
            .collect();
        let sessions: u64 = list.gaps.iter().map(|g| u64::from(g.sessions)).sum();
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        writeln!(
            out,
            "{} in {} series, {}",
            plural(list.gaps.len(), "gap", "gaps"),
            series.len(),
            plural(sessions as usize, "session", "sessions")
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Runs a job through the running server (polling its progress) or in-process, then prints
/// its summary. Fails when the job did.
async fn run_job(config: Config, spec: JobSpec) -> Result<(), CliError> {
    let name = spec.task.clone();
    let started = std::time::Instant::now();
    let (status, counters, errors) = match target(config, &name).await? {
        Target::Server(remote) => {
            let body = remote
                .json(
                    remote
                        .request(reqwest::Method::POST, "/api/v1/jobs")
                        .json(&spec),
                )
                .await?;
            let id = body["id"]
                .as_u64()
                .ok_or_else(|| fail("server: no job id in the reply"))?;
            eprintln!("job {id} submitted to {}", remote.base);
            let bar = progress(0, &name);
            let job = loop {
                let job = remote
                    .json(remote.request(reqwest::Method::GET, &format!("/api/v1/jobs/{id}")))
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
        }
        Target::Local(services) => {
            let task = services.jobs.parse(&spec).map_err(usage)?;
            let bar = progress(0, &name);
            let job = services
                .jobs
                .run_inline(task, |ctx| {
                    let (done, total) = ctx.progress();
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await?;
            bar.finish_and_clear();
            let errors =
                serde_json::from_value::<Vec<String>>(job.errors.clone()).unwrap_or_default();
            (job.status, job.counters, errors)
        }
    };
    for e in &errors {
        eprintln!("{e}");
    }
    let secs = started.elapsed().as_secs_f64();
    match name.as_str() {
        "verify" => print_verify(&status, &counters, secs),
        "sync" => print_sync(&status, &counters, secs),
        _ => print_fetch(&name, &status, counters, secs),
    }
    match (status.as_str(), errors.first()) {
        ("succeeded", _) => Ok(()),
        (_, Some(e)) if errors.len() == 1 => Err(fail(e)),
        (_, Some(e)) => Err(fail(format!("{} failures, first: {e}", errors.len()))),
        (s, None) => Err(fail(format!("{name} {s}"))),
    }
}

/// The summary line of a fetching job (backfill, update, full, repair).
fn print_fetch(name: &str, status: &str, counters: serde_json::Value, secs: f64) {
    let c: FetchCounters = serde_json::from_value(counters).unwrap_or_default();
    println!(
        "{name} {status}: {} series ({} failed), {} bars fetched, {} written, {} spooled, {} quarantined, {} dropped (no trade {}, out of range {}, forming {}), {} corporate actions, in {:.1}s ({})",
        c.series,
        c.series_failed,
        c.bars_fetched,
        c.bars_written,
        c.bars_spooled,
        c.bars_rejected,
        c.dropped.no_trade + c.dropped.out_of_range + c.dropped.forming,
        c.dropped.no_trade,
        c.dropped.out_of_range,
        c.dropped.forming,
        c.actions,
        secs,
        c.shares(),
    );
}

/// The summary of a verify job: the stored data, then one line per node.
fn print_verify(status: &str, c: &serde_json::Value, secs: f64) {
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    println!(
        "verify {status}: {} series, {} bars checked, {} break a rule, {} flagged, in {secs:.1}s",
        n(c, "series"),
        n(c, "bars_checked"),
        n(c, "bad_bars"),
        n(c, "flagged_bars"),
    );
    for node in c["nodes"].as_array().into_iter().flatten() {
        println!(
            "  node {}: {} buckets compared, {} differ, {} repaired",
            node["node"].as_str().unwrap_or("?"),
            n(node, "buckets_compared"),
            n(node, "differences"),
            n(node, "repaired"),
        );
    }
}

/// The summary of a sync job: one line per node.
fn print_sync(status: &str, c: &serde_json::Value, secs: f64) {
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    println!(
        "sync {status}: {} nodes ({} failed), {} changes shipped, in {secs:.1}s",
        n(c, "nodes"),
        n(c, "nodes_failed"),
        n(c, "changes"),
    );
    for node in c["per_node"].as_array().into_iter().flatten() {
        println!(
            "  node {}: {} changes, {} bars written, {} deleted, acked {}",
            node["node"].as_str().unwrap_or("?"),
            n(node, "changes"),
            n(node, "bars_written"),
            n(node, "bars_deleted"),
            n(node, "acked_seq"),
        );
    }
}

/// `dms jobs [list|show ID|cancel ID] [--json]`.
async fn jobs(config: Config, command: Option<JobsCommand>, json: bool) -> Result<(), CliError> {
    let command = command.unwrap_or(JobsCommand::List {
        status: None,
        limit: 20,
    });
    let out: serde_json::Value = match (target(config, "jobs").await?, &command) {
        (Target::Server(r), JobsCommand::List { status, limit }) => {
            let mut q = vec![("page_size", limit.to_string())];
            if let Some(s) = status {
                q.push(("status", s.clone()));
            }
            r.json(r.request(reqwest::Method::GET, "/api/v1/jobs").query(&q))
                .await?
        }
        (Target::Server(r), JobsCommand::Show { id }) => {
            let mut job = r
                .json(r.request(reqwest::Method::GET, &format!("/api/v1/jobs/{id}")))
                .await?;
            job["log"] = r
                .json(r.request(reqwest::Method::GET, &format!("/api/v1/jobs/{id}/log")))
                .await?["lines"]
                .take();
            job
        }
        (Target::Server(r), JobsCommand::Cancel { id }) => {
            r.json(r.request(reqwest::Method::POST, &format!("/api/v1/jobs/{id}/cancel")))
                .await?
        }
        (Target::Local(s), JobsCommand::List { status, limit }) => {
            let list = s
                .meta
                .jobs(status.clone(), 1, (*limit).clamp(1, 1000))
                .await?;
            serde_json::json!({ "jobs": list.iter().map(crate::api::jobs::render).collect::<Vec<_>>() })
        }
        (Target::Local(s), JobsCommand::Show { id }) => {
            let job = s
                .meta
                .job(*id)
                .await?
                .ok_or_else(|| fail(format!("job {id} not found")))?;
            let mut v = crate::api::jobs::render(&job);
            v["log"] = s
                .meta
                .job_log(*id)
                .await?
                .iter()
                .map(|l| serde_json::json!({"ts": crate::domain::time::rfc3339(l.ts), "level": l.level, "message": l.message}))
                .collect();
            v
        }
        (Target::Local(s), JobsCommand::Cancel { id }) => {
            // No server runs, so no job runs: one recorded as running was interrupted and
            // resumes when `dms serve` starts.
            s.jobs.cancel(*id).await?;
            serde_json::json!({ "id": id, "cancelling": true })
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    match command {
        JobsCommand::List { .. } => {
            println!(
                "{:>6}  {:<9} {:<10} {:>13}  {:<20}  errors",
                "id", "task", "status", "progress", "created"
            );
            for j in out["jobs"].as_array().into_iter().flatten() {
                println!(
                    "{:>6}  {:<9} {:<10} {:>13}  {:<20}  {}",
                    j["id"],
                    j["task"].as_str().unwrap_or(""),
                    j["status"].as_str().unwrap_or(""),
                    format!("{}/{}", j["progress"]["done"], j["progress"]["total"]),
                    j["created_at"].as_str().unwrap_or(""),
                    j["errors"].as_array().map_or(0, Vec::len),
                );
            }
        }
        JobsCommand::Show { .. } => {
            println!(
                "job {} {} {} ({}/{}), created {}, started {}, finished {}",
                out["id"],
                out["task"].as_str().unwrap_or(""),
                out["status"].as_str().unwrap_or(""),
                out["progress"]["done"],
                out["progress"]["total"],
                out["created_at"].as_str().unwrap_or("-"),
                out["started_at"].as_str().unwrap_or("-"),
                out["finished_at"].as_str().unwrap_or("-"),
            );
            println!("counters: {}", out["counters"]);
            for e in out["errors"].as_array().into_iter().flatten() {
                println!("error: {}", e.as_str().unwrap_or(""));
            }
            for l in out["log"].as_array().into_iter().flatten() {
                println!(
                    "{} {:<5} {}",
                    l["ts"].as_str().unwrap_or(""),
                    l["level"].as_str().unwrap_or(""),
                    l["message"].as_str().unwrap_or("")
                );
            }
        }
        JobsCommand::Cancel { id } => println!("job {id}: cancelling"),
    }
    Ok(())
}
