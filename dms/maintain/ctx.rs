//! [`JobCtx`]: what a running task reports through — progress `{done, total}`, counters, a
//! resume checkpoint, log lines — and how it learns it was cancelled. Tasks (`backfill`,
//! `update`, ...) depend on this module only; the runner in [`super::jobs`] creates contexts
//! and persists what they hold, so tasks and runner do not import each other.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::store::meta::{MetaDb, MetaError};

#[derive(Debug, Default)]
pub(super) struct Progress {
    pub(super) done: u64,
    pub(super) total: u64,
    pub(super) counters: serde_json::Value,
    pub(super) checkpoint: Option<serde_json::Value>,
    pub(super) dirty: bool,
}

/// A running job's handle to report through. Cheap to clone.
#[derive(Clone)]
pub struct JobCtx {
    pub(super) id: u64,
    pub(super) meta: MetaDb,
    pub(super) cancel: CancellationToken,
    /// A std `Mutex`: only held to read or update the numbers, never across an `.await`.
    pub(super) progress: Arc<Mutex<Progress>>,
}

impl JobCtx {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Progress) -> T) -> T {
        let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        p.dirty = true;
        f(&mut p)
    }

    pub fn set_total(&self, n: u64) {
        self.with(|p| p.total = n);
    }

    pub fn set_done(&self, n: u64) {
        self.with(|p| p.done = n);
    }

    pub fn inc_done(&self) {
        self.with(|p| p.done += 1);
    }

    pub fn set_counters(&self, c: serde_json::Value) {
        self.with(|p| p.counters = c);
    }

    pub fn set_checkpoint(&self, c: serde_json::Value) {
        self.with(|p| p.checkpoint = Some(c));
    }

    pub fn checkpoint(&self) -> Option<serde_json::Value> {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .checkpoint
            .clone()
    }

    /// `(done, total)`.
    pub fn progress(&self) -> (u64, u64) {
        let p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        (p.done, p.total)
    }

    /// Appends a line to the job's log (and to the process log).
    pub async fn log(&self, level: &str, message: &str) {
        match level {
            "error" => tracing::warn!(job_id = self.id, "{message}"),
            _ => tracing::info!(job_id = self.id, "{message}"),
        }
        if let Err(e) = self.meta.append_job_log(self.id, level, message).await {
            tracing::warn!(job_id = self.id, error = %e, "cannot record a job log line");
        }
    }

    pub(super) async fn flush(&self, errors: &[String]) -> Result<(), MetaError> {
        let snapshot = {
            let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
            if !p.dirty {
                return Ok(());
            }
            p.dirty = false;
            (p.done, p.total, p.counters.clone(), p.checkpoint.clone())
        };
        self.meta
            .update_job(
                self.id,
                snapshot.0,
                snapshot.1,
                &snapshot.2,
                &serde_json::json!(errors),
                snapshot.3.as_ref(),
            )
            .await
    }
}
