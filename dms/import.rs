//! `dms import`: load CSV and Parquet files into the primary through the write path.
//!
//! Each file is parsed whole first (see [`crate::source::files`]); a malformed file is reported
//! with its name, line and reason and nothing from it is written. The bars of a good file go
//! through [`crate::ingest::Writer::ingest`] like any other write: validated, rejections
//! quarantined, the rest written and logged in the change log.

use std::path::Path;

use crate::domain::{Interval, Symbol};
use crate::ingest::{IngestReport, WriteError, Writer};
use crate::source::files::{self, FileError};
use crate::validate::Context;

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
    /// The primary failed: the import stops (a later file would fail the same way).
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Imports a file or every CSV/Parquet file of a directory. `on_file` is called after each
/// file (progress reporting).
pub async fn import_path(
    writer: &Writer,
    path: &Path,
    interval: Interval,
    symbol: Option<&Symbol>,
    mut on_file: impl FnMut(&FileReport),
) -> Result<ImportReport, ImportError> {
    let paths = files::list_files(path)?;
    let mut report = ImportReport::default();
    for p in paths {
        let display = p.display().to_string();
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
                let now = chrono::Utc::now().timestamp();
                let mut sum = IngestReport::default();
                for (series, bars) in fb.series {
                    let ctx = Context::new(now, series.symbol.market());
                    sum += writer.ingest(&series, bars, &ctx).await?;
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
