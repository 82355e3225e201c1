//! `dms import`: load CSV and Parquet files into the primary through the write path.
//!
//! Each file is parsed whole first (see [`crate::source::files`]); a malformed file is reported
//! with its name, line and reason and nothing from it is written. The bars of a good file go
//! through [`crate::ingest::Writer::ingest`] like any other write, holding the series lock
//! (one writer per series, jobs included): validated, rejections
//! quarantined, the rest written and logged in the change log.

use std::path::{Path, PathBuf};

use futures::StreamExt;

use crate::domain::{Interval, Symbol};
use crate::ingest::{IngestReport, WriteError};
use crate::maintain::MaintainEnv;
use crate::source::files::{self, FileError};

/// The outcome of importing one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileReport {
    pub file: String,
    /// Series found in the file.
    pub series: u64,
    /// Bars parsed.
    pub read: u64,
    pub written: u64,
    /// Bars quarantined by validation.
    pub rejected: u64,
    /// Rows without any value ("no trade").
    pub no_trade: u64,
    /// Why the file was not imported; nothing from it was written.
    pub error: Option<String>,
}

/// The outcome of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportReport {
    pub files: Vec<FileReport>,
}

impl ImportReport {
    pub fn failed(&self) -> usize {
        self.files.iter().filter(|f| f.error.is_some()).count()
    }

    pub fn total(&self) -> FileReport {
        let mut t = FileReport {
            file: format!("{} file(s)", self.files.len()),
            ..FileReport::default()
        };
        for f in &self.files {
            t.series += f.series;
            t.read += f.read;
            t.written += f.written;
            t.rejected += f.rejected;
            t.no_trade += f.no_trade;
        }
        t
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    File(#[from] FileError),
    /// A path the server was asked to read is not inside its drop folder.
    #[error(
        "{path}: only files inside sources.files.dir ({dir}) can be imported by path; upload the file instead"
    )]
    Outside { path: String, dir: String },
    /// The primary failed: the import stops (a later file would fail the same way).
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Imports a file or every CSV/Parquet file of a directory (the CLI in-process: the user's own
/// files). `on_file` is called after each file (progress reporting).
pub async fn import_path(
    env: &MaintainEnv,
    path: &Path,
    interval: Interval,
    symbol: Option<&Symbol>,
    on_file: impl FnMut(&FileReport),
) -> Result<ImportReport, ImportError> {
    let files = files::list_files(path)?
        .into_iter()
        .map(|p| (p.display().to_string(), p))
        .collect();
    import_files(env, files, interval, symbol, on_file).await
}

/// Imports a path named by a remote caller: only what resolves (symlinks included) inside
/// `dir`, the configured drop folder. A relative path is taken relative to `dir`; every file
/// of a directory is checked too (a symlink inside may point anywhere). Reports name files
/// relative to `dir`.
pub async fn import_confined(
    env: &MaintainEnv,
    dir: &Path,
    requested: &Path,
    interval: Interval,
    symbol: Option<&Symbol>,
) -> Result<ImportReport, ImportError> {
    let root = confine(dir, dir, requested)?;
    let mut files = Vec::new();
    for p in files::list_files(&root)? {
        let real = confine(dir, &root, &p)?;
        let shown = real
            .strip_prefix(canonical(dir).unwrap_or_default())
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| real.display().to_string());
        files.push((shown, real));
    }
    import_files(env, files, interval, symbol, |_| {}).await
}

/// Resolves `requested` (relative to `base`) and checks it lies inside `dir`.
fn confine(dir: &Path, base: &Path, requested: &Path) -> Result<PathBuf, ImportError> {
    let outside = || ImportError::Outside {
        path: requested.display().to_string(),
        dir: dir.display().to_string(),
    };
    let root = canonical(dir).map_err(|_| outside())?;
    let joined = base.join(requested);
    match canonical(&joined) {
        Ok(real) if real.starts_with(&root) => Ok(real),
        Ok(_) => Err(outside()),
        // Say "not found" only for paths that are lexically inside: whether a file exists
        // elsewhere on the server is not the caller's business.
        Err(e) if lexically_inside(&root, &joined) => Err(FileError::Unreadable {
            file: requested.display().to_string(),
            reason: e.kind().to_string(),
        }
        .into()),
        Err(_) => Err(outside()),
    }
}

fn canonical(p: &Path) -> std::io::Result<PathBuf> {
    std::fs::canonicalize(p)
}

/// Whether `p`, with `.` and `..` resolved lexically, lies inside `root`.
fn lexically_inside(root: &Path, p: &Path) -> bool {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out.starts_with(root)
}

/// Imports one uploaded file (stored by the API in a private temporary directory), reported
/// under `name`.
pub async fn import_upload(
    env: &MaintainEnv,
    stored: PathBuf,
    name: &str,
    interval: Interval,
    symbol: Option<&Symbol>,
) -> Result<ImportReport, ImportError> {
    import_files(
        env,
        vec![(name.to_string(), stored)],
        interval,
        symbol,
        |_| {},
    )
    .await
}

/// Series of one file written at once.
const IMPORT_CONCURRENCY: usize = 4;

/// Parses each file whole, then writes its bars through the write path.
async fn import_files(
    env: &MaintainEnv,
    files: Vec<(String, PathBuf)>,
    interval: Interval,
    symbol: Option<&Symbol>,
    mut on_file: impl FnMut(&FileReport),
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    for (display, p) in files {
        let sym = symbol.cloned();
        let parsed =
            tokio::task::spawn_blocking(move || files::read_file(&p, interval, sym.as_ref()))
                .await
                .map_err(|e| FileError::Unreadable {
                    file: display.clone(),
                    reason: e.to_string(),
                })?;
        let mut fr = FileReport {
            file: display,
            ..FileReport::default()
        };
        match parsed {
            Err(e) => fr.error = Some(e.to_string()),
            Ok(fb) => {
                fr.series = fb.series.len() as u64;
                fr.read = fb.bar_count() as u64;
                fr.no_trade = fb.dropped.no_trade;
                let mut sum = IngestReport::default();
                // A few series at once: one's validation, change-log and coverage work
                // overlaps another's store write.
                let mut writes =
                    futures::stream::iter(fb.series.into_iter().map(|(series, bars)| {
                        let env = env.clone();
                        async move {
                            // One writer per series: an import waits for a job writing the series.
                            let _guard = env.locks.lock(&series).await;
                            let ctx =
                                env.validation_context(env.clock.now(), series.symbol.market());
                            env.writer.ingest(&series, bars, &ctx).await
                        }
                    }))
                    .buffer_unordered(IMPORT_CONCURRENCY);
                while let Some(r) = writes.next().await {
                    sum += r?;
                }
                fr.written = sum.written;
                fr.rejected = sum.rejected;
            }
        }
        if let Some(e) = &fr.error {
            tracing::warn!(file = %fr.file, error = %e, "file not imported");
        } else {
            tracing::info!(file = %fr.file, written = fr.written, rejected = fr.rejected, "file imported");
        }
        on_file(&fr);
        report.files.push(fr);
    }
    Ok(report)
}

/// The media type an upload of `path` is sent with (`POST /api/v1/import`).
pub fn content_type_of(path: &Path) -> &'static str {
    match path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .as_deref()
    {
        Some("parquet") => PARQUET_MEDIA_TYPE,
        _ => "text/csv",
    }
}

/// Parquet's registered media type.
pub const PARQUET_MEDIA_TYPE: &str = "application/vnd.apache.parquet";
