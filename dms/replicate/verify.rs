//! `verify`: compares the primary and a node series by series and bucket by bucket, and
//! repairs what differs (see [`super::reconcile`] for the comparison itself).
//!
//! The series compared are those either side lists ([`Node::series_keys`], answered from an
//! index where there is one), so a series only the node holds is found (and deleted) too. A
//! node is caught up first (a round of shipping), and its shipping waits while it is verified,
//! so changes still on their way are not reported as differences. Writes to the primary
//! *during* a verify can still show up as differences in buckets compared after them; the
//! repair then copies the primary's bars early, which the later shipping repeats harmlessly.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::node::Node;
use super::plan::storable_span;
use super::reconcile::{BucketDiff, Outcome, Pair, Tuning};
use super::ship::NodeHandle;
use crate::domain::SeriesKey;

/// At most this many differing buckets are listed in a report (all are counted).
pub const LISTED_DIFFERENCES: usize = 1_000;

/// What a verify of one node found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeVerify {
    pub node: String,
    /// The comparison ran to the end without an error.
    pub ok: bool,
    pub series: u64,
    /// Buckets compared by digest.
    pub buckets_compared: u64,
    /// Bars the primary holds in them.
    pub bars_compared: u64,
    /// Buckets whose digests differed (bisected down to bars).
    pub digest_mismatches: u64,
    /// Buckets whose bars differed.
    pub differences: u64,
    /// Buckets brought back to the primary's bars.
    pub repaired: u64,
    pub bars_written: u64,
    pub bars_deleted: u64,
    /// The first [`LISTED_DIFFERENCES`] differing buckets.
    pub differing: Vec<BucketDiff>,
    pub errors: Vec<String>,
    pub duration_ms: u64,
    /// RFC 3339.
    pub finished_at: String,
}

/// How a verify runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Repair what differs (the `verify` job does); `false` only reports.
    pub repair: bool,
}

impl Default for VerifyOptions {
    fn default() -> VerifyOptions {
        VerifyOptions { repair: true }
    }
}

/// Verifies one node against the primary. `progress(done, total)` is called after each
/// series.
pub async fn verify_node(
    primary: &Arc<dyn Node>,
    handle: &NodeHandle,
    tuning: &Tuning,
    options: VerifyOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
    cancel: &CancellationToken,
) -> NodeVerify {
    let started = Instant::now();
    let mut report = NodeVerify {
        node: handle.name.clone(),
        ..NodeVerify::default()
    };
    let pair = Pair {
        src: primary.clone(),
        dst: handle.node.clone(),
        label: handle.name.as_str().into(),
        tuning: tuning.clone(),
    };
    let listed = tokio::try_join!(primary.series_keys(), handle.node.series_keys());
    let series: BTreeSet<SeriesKey> = match listed {
        Ok((a, b)) => a.into_iter().chain(b).collect(),
        Err(e) => {
            report.errors.push(format!("listing series: {e}"));
            return finish(report, started);
        }
    };
    report.series = series.len() as u64;
    let total = series.len() as u64;
    let done = AtomicU64::new(0);
    let span = storable_span();
    let pair = &pair;
    let done = &done;
    let mut results = futures::stream::iter(series)
        .map(|key| async move {
            if cancel.is_cancelled() {
                return (key, None);
            }
            let r = pair.reconcile(&key, span, options.repair).await;
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            (key, Some(r))
        })
        .buffer_unordered(tuning.verify_concurrency.max(1));
    let mut outcome = Outcome::default();
    let mut cancelled = false;
    while let Some((key, r)) = results.next().await {
        match r {
            None => cancelled = true,
            Some(Ok(o)) => outcome.add(o),
            Some(Err(e)) => report.errors.push(format!("{key}: {e}")),
        }
    }
    if cancelled {
        report.errors.push("cancelled".into());
    }
    report.buckets_compared = outcome.buckets;
    report.bars_compared = outcome.bars;
    report.digest_mismatches = outcome.digest_mismatches;
    report.differences = outcome.differing.len() as u64;
    report.repaired = outcome.differing.iter().filter(|d| d.repaired).count() as u64;
    report.bars_written = outcome.written;
    report.bars_deleted = outcome.deleted;
    outcome.differing.truncate(LISTED_DIFFERENCES);
    report.differing = outcome.differing;
    finish(report, started)
}

fn finish(mut report: NodeVerify, started: Instant) -> NodeVerify {
    report.ok = report.errors.is_empty();
    report.duration_ms = started.elapsed().as_millis() as u64;
    report.finished_at = crate::domain::time::rfc3339(chrono::Utc::now().timestamp());
    report
}
