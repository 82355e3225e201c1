//! The write path around the primary store: every change to the primary goes through
//! [`Writer`].
//!
//! For a batch of raw bars of one series, [`Writer::ingest`] validates them
//! ([`crate::validate`]), quarantines the rejections in the metadata db and writes the rest.
//! Every change — [`Writer::write`] (a validated batch), [`Writer::delete`] (a range),
//! [`Writer::write_actions`] (corporate actions) — then runs the same protocol:
//! 1. reserve a change-log sequence number (state `pending`);
//! 2. apply the change to the primary;
//! 3. tell every [`WriteListener`] which range changed (the reader cache drops those chunks) —
//!    *whatever the primary answered*, since a failed write may have landed in part;
//! 4. settle the entry: `committed` on success, `uncertain` on failure (the primary may hold
//!    all, part or none of it; replication re-ships the range as the primary holds it and
//!    verification re-checks it). No entry is ever removed: the change log never under-reports.
//!
//! # Cancel safety
//! Steps 1–4 run on a task of their own, spawned before the first step: once a change has
//! started, it completes even if the caller's future is dropped (a cancelled job, a client
//! that went away). So the store, the cache and the change log always end in agreement, and a
//! pending entry exists only while its write is in flight (or after a crash, which start-up
//! recovery marks uncertain).
//!
//! # Replicas
//! On a replica (`replication: { role: replica }`) the writer is [`Writer::read_only`]: every
//! change fails with [`WriteError::ReadOnly`] (the API answers 409 `conflict`), except through
//! the clone [`Writer::for_replication`] that `replicate::pull` and `POST
//! /api/v1/replication/apply` use. Replicated changes run the same protocol, so the replica's
//! cache and its own change log follow them (a replica can have backups of its own).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::domain::{Bar, CorporateAction, SeriesKey, Symbol, TimeRange};
use crate::store::meta::{ChangeKind, ChangeTarget, MetaDb, MetaError};
use crate::store::{Store, StoreError};
use crate::telemetry::{labels, metrics};
use crate::validate::{self, Context, Rejection, ValidatedBatch};

/// Told about every range whose bars changed (or may have changed), before the change is
/// acknowledged.
pub trait WriteListener: Send + Sync {
    fn touched(&self, series: &SeriesKey, range: TimeRange);

    /// Corporate actions of `symbol` changed within `range`.
    fn actions_touched(&self, symbol: &Symbol, range: TimeRange) {
        let _ = (symbol, range);
    }

    /// The change-log entry `seq` was settled (committed or uncertain): replication may ship
    /// it now. Called after the change is acknowledged by the primary (or failed).
    fn settled(&self, seq: u64) {
        let _ = seq;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The task applying the change panicked (a bug); its entry was left pending and start-up
    /// recovery marks it uncertain.
    #[error("write task failed: {0}")]
    Aborted(String),
    /// This instance does not take writes (a replica): the reason names its primary.
    #[error("{0}")]
    ReadOnly(String),
}

impl WriteError {
    /// The primary could not be reached: the batch can be retried or spooled.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, WriteError::Store(e) if e.is_unavailable())
    }
}

/// What one ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    /// Bars written to the primary.
    pub written: u64,
    /// Bars quarantined by validation.
    pub rejected: u64,
    /// The change-log sequence number of the write, when there was one.
    pub seq: Option<u64>,
    /// Time spent validating (stage timing of backfills).
    #[serde(skip)]
    pub validate_time: Duration,
}

impl std::ops::AddAssign for IngestReport {
    fn add_assign(&mut self, o: IngestReport) {
        self.written += o.written;
        self.rejected += o.rejected;
        self.seq = o.seq.or(self.seq);
        self.validate_time += o.validate_time;
    }
}

/// One change to the primary.
enum Op {
    Write(ValidatedBatch),
    Delete(SeriesKey, TimeRange),
    Actions(Symbol, Vec<CorporateAction>, TimeRange),
}

impl Op {
    fn kind(&self) -> ChangeKind {
        match self {
            Op::Write(_) => ChangeKind::Bars,
            Op::Delete(..) => ChangeKind::Delete,
            Op::Actions(..) => ChangeKind::Actions,
        }
    }

    fn target(&self) -> ChangeTarget {
        match self {
            Op::Write(b) => ChangeTarget::Series(b.series().clone()),
            Op::Delete(s, _) => ChangeTarget::Series(s.clone()),
            Op::Actions(s, ..) => ChangeTarget::Symbol(s.clone()),
        }
    }

    fn range(&self) -> TimeRange {
        match self {
            Op::Write(b) => b.range(),
            Op::Delete(_, r) | Op::Actions(_, _, r) => *r,
        }
    }

    fn count(&self) -> u64 {
        match self {
            Op::Write(b) => b.len() as u64,
            Op::Delete(..) => 0,
            Op::Actions(_, a, _) => a.len() as u64,
        }
    }
}

/// The only writer of the primary. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    primary: Arc<dyn Store>,
    meta: MetaDb,
    /// Registered once at start-up, read on every write.
    listeners: Arc<RwLock<Vec<Arc<dyn WriteListener>>>>,
    /// Why this writer refuses changes (a replica), if it does.
    read_only: Option<Arc<str>>,
}

impl Writer {
    pub fn new(primary: Arc<dyn Store>, meta: MetaDb) -> Writer {
        Writer {
            primary,
            meta,
            listeners: Arc::default(),
            read_only: None,
        }
    }

    /// This writer (and every clone of it) refuses every change with
    /// [`WriteError::ReadOnly`]`(reason)`, except through [`Writer::for_replication`].
    pub fn read_only(mut self, reason: impl Into<String>) -> Writer {
        self.read_only = Some(reason.into().into());
        self
    }

    /// Why this writer refuses changes, if it does.
    pub fn read_only_reason(&self) -> Option<&str> {
        self.read_only.as_deref()
    }

    /// A clone that takes changes even on a replica: only replication applies through it.
    pub fn for_replication(&self) -> Writer {
        Writer {
            read_only: None,
            ..self.clone()
        }
    }

    fn check_writable(&self) -> Result<(), WriteError> {
        match &self.read_only {
            Some(reason) => Err(WriteError::ReadOnly(reason.to_string())),
            None => Ok(()),
        }
    }

    pub fn primary(&self) -> &Arc<dyn Store> {
        &self.primary
    }

    pub fn meta(&self) -> &MetaDb {
        &self.meta
    }

    pub fn add_listener(&self, l: Arc<dyn WriteListener>) {
        self.listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(l);
    }

    /// Validates, quarantines rejections and writes the rest.
    pub async fn ingest(
        &self,
        series: &SeriesKey,
        bars: Vec<Bar>,
        ctx: &Context,
    ) -> Result<IngestReport, WriteError> {
        self.check_writable()?;
        let t = std::time::Instant::now();
        let validated = validate::validate(series, bars, ctx);
        let validate_time = t.elapsed();
        let rejected = self.quarantine(&validated.rejections).await?;
        let mut report = IngestReport {
            rejected,
            validate_time,
            ..IngestReport::default()
        };
        if let Some(batch) = validated.batch {
            report.written = batch.len() as u64;
            report.seq = Some(self.write(batch).await?);
        }
        Ok(report)
    }

    /// Records rejected bars in quarantine and counts them.
    pub async fn quarantine(&self, rejections: &[Rejection]) -> Result<u64, WriteError> {
        for r in rejections {
            metrics()
                .bars_rejected
                .get_or_create(&labels([("rule", r.rule)]))
                .inc();
            tracing::debug!(symbol = %r.series.symbol, interval = %r.series.interval, ts = r.bar.ts, rule = r.rule, reason = %r.reason, "bar quarantined");
        }
        self.meta.quarantine(rejections).await?;
        Ok(rejections.len() as u64)
    }

    /// Writes a validated batch through the change log; returns its sequence number.
    pub async fn write(&self, batch: impl Into<ValidatedBatch>) -> Result<u64, WriteError> {
        self.apply(Op::Write(batch.into()))
            .await
            .map(|(seq, _)| seq)
    }

    /// Deletes a range of a series through the change log (so backups delete it too); returns
    /// how many bars were removed.
    pub async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, WriteError> {
        self.apply(Op::Delete(series.clone(), range))
            .await
            .map(|(_, n)| n)
    }

    /// Stores corporate actions of a symbol through the change log.
    pub async fn write_actions(
        &self,
        symbol: &Symbol,
        actions: &[CorporateAction],
    ) -> Result<(), WriteError> {
        let Some(range) = TimeRange::covering(actions.iter().map(|a| a.ts)) else {
            return Ok(());
        };
        self.apply(Op::Actions(symbol.clone(), actions.to_vec(), range))
            .await
            .map(|_| ())
    }

    /// Runs one change on its own task (see the module doc) and waits for it.
    async fn apply(&self, op: Op) -> Result<(u64, u64), WriteError> {
        self.check_writable()?;
        let this = self.clone();
        tokio::spawn(async move { this.apply_here(op).await })
            .await
            .map_err(|e| WriteError::Aborted(e.to_string()))?
    }

    async fn apply_here(&self, op: Op) -> Result<(u64, u64), WriteError> {
        let (kind, range) = (op.kind(), op.range());
        let seq = self
            .meta
            .begin_change(kind, &op.target(), range, op.count())
            .await?;
        let result = match &op {
            Op::Write(b) => self.primary.write(b).await.map(|()| b.len() as u64),
            Op::Delete(s, r) => self.primary.delete(s, *r).await,
            Op::Actions(s, a, _) => self
                .primary
                .write_actions(s, a)
                .await
                .map(|()| a.len() as u64),
        };
        // The primary may differ in this range now, even when it failed: drop cached copies
        // before anyone is told the outcome.
        self.notify(&op);
        let settled = match &result {
            Ok(_) => self.settle(seq, true).await,
            Err(e) => {
                tracing::warn!(seq, kind = kind.as_str(), error = %e, "primary write failed; its change-log entry stays, uncertain");
                self.settle(seq, false).await
            }
        };
        if settled.is_ok() {
            self.notify_settled(seq);
        }
        let n = result?;
        settled?;
        if let Op::Write(b) = &op {
            metrics()
                .bars_written
                .get_or_create(&labels([
                    ("store", "primary"),
                    ("interval", b.series().interval.as_str()),
                ]))
                .inc_by(n);
        }
        Ok((seq, n))
    }

    /// Settles a change-log entry, retrying briefly: an entry left pending would hold back
    /// replication of everything after it until the next start-up.
    async fn settle(&self, seq: u64, ok: bool) -> Result<(), WriteError> {
        let mut last = None;
        for attempt in 0..3u32 {
            let r = if ok {
                self.meta.commit_change(seq).await
            } else {
                self.meta.mark_uncertain(seq).await
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(seq, attempt, error = %e, "cannot settle a change-log entry");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        tracing::error!(
            seq,
            "change-log entry left pending: replication waits for the next start-up"
        );
        Err(last.expect("three attempts failed").into())
    }

    fn notify_settled(&self, seq: u64) {
        let listeners = self.listeners.read().unwrap_or_else(|p| p.into_inner());
        for l in listeners.iter() {
            l.settled(seq);
        }
    }

    fn notify(&self, op: &Op) {
        let listeners = self.listeners.read().unwrap_or_else(|p| p.into_inner());
        for l in listeners.iter() {
            match op {
                Op::Write(b) => l.touched(b.series(), b.range()),
                Op::Delete(s, r) => l.touched(s, *r),
                Op::Actions(s, _, r) => l.actions_touched(s, *r),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::domain::{Interval, SourceKind};
    use crate::store::embedded::EmbeddedStore;

    struct Recorder(Mutex<Vec<(SeriesKey, TimeRange)>>);

    impl WriteListener for Recorder {
        fn touched(&self, series: &SeriesKey, range: TimeRange) {
            self.0.lock().unwrap().push((series.clone(), range));
        }
    }

    fn bar(ts: i64, close: f64) -> Bar {
        Bar {
            ts,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
            adj_close: None,
            source: SourceKind::Files,
        }
    }

    #[tokio::test]
    async fn ingest_quarantines_writes_logs_and_notifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("bars.db")).unwrap());
        let meta = MetaDb::open(&dir.path().join("meta.db")).unwrap();
        let writer = Writer::new(store.clone(), meta.clone());
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        writer.add_listener(rec.clone());
        let key = SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::D1);
        let day = 1_704_153_600;
        let ctx = Context::new(day + 10 * 86_400, None);
        let report = writer
            .ingest(
                &key,
                vec![
                    bar(day, 1.0),
                    bar(day + 86_400, -2.0),
                    bar(day + 2 * 86_400, 3.0),
                ],
                &ctx,
            )
            .await
            .unwrap();
        assert_eq!((report.written, report.rejected), (2, 1));
        assert_eq!(store.read(&key, TimeRange::ALL).await.unwrap().len(), 2);
        let changes = meta.changes_since(0, 10).await.unwrap();
        assert_eq!(changes[0].kind, ChangeKind::Bars);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].start, changes[0].end, changes[0].count),
            (day, day + 2 * 86_400 + 1, 2)
        );
        assert_eq!(rec.0.lock().unwrap().len(), 1);
        assert_eq!(
            meta.quality(None, None, 10).await.unwrap()[0].rule,
            "non_positive_price"
        );

        let removed = writer
            .delete(&key, TimeRange::new(day, day + 1).unwrap())
            .await
            .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(meta.changes_since(0, 10).await.unwrap().len(), 2);
    }
}
