//! The write path around the primary store: every change to the primary goes through
//! [`Writer`].
//!
//! For a batch of raw bars of one series, [`Writer::ingest`] validates them
//! ([`crate::validate`]), quarantines the rejections in the metadata db, writes the rest and,
//! once they are written, records the flagged ones among them (stored but suspicious).
//! Every change — [`Writer::write`] (a validated batch), [`Writer::delete`] (a range),
//! [`Writer::write_actions`] (corporate actions) — then runs the same protocol:
//! 1. reserve a change-log sequence number (state `pending`);
//! 2. apply the change to the primary;
//! 3. tell every [`WriteListener`] which range changed (the reader cache drops those chunks) —
//!    *whatever the primary answered*, since a failed write may have landed in part — and
//!    update the coverage summaries gap detection reads (`store::coverage`: the written
//!    stamps are present, a deleted range is cleared, a failure marks its blocks unknown);
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
use crate::spool::{Spool, SpoolError, Spooled};
use crate::store::coverage::Marks;
use crate::store::meta::{ChangeKind, ChangeTarget, MetaDb, MetaError};
use crate::store::{Store, StoreError};
use crate::telemetry::{labels, metrics};
use crate::validate::{self, Context, Flag, Rejection, ValidatedBatch};

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
    #[error(transparent)]
    Spool(#[from] SpoolError),
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
    /// Bars the primary could not take, kept in the spool until it can.
    pub spooled: u64,
    /// Flags recorded on written bars (a bar can carry more than one).
    pub flagged: u64,
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
        self.spooled += o.spooled;
        self.flagged += o.flagged;
        self.seq = o.seq.or(self.seq);
        self.validate_time += o.validate_time;
    }
}

/// When a failed change's range is invalidated again (see [`Writer::notify_late`]).
const LATE_NOTICES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(10)];

/// What a late invalidation needs of a change, without its bars.
enum LateNotice {
    Series(SeriesKey, TimeRange),
    Actions(Symbol, TimeRange),
}

impl LateNotice {
    fn of(op: &Op) -> LateNotice {
        match op {
            Op::Write(b) => LateNotice::Series(b.series().clone(), b.range()),
            Op::Delete(s, r) => LateNotice::Series(s.clone(), *r),
            Op::Actions(s, _, r) => LateNotice::Actions(s.clone(), *r),
        }
    }

    fn tell(&self, l: &dyn WriteListener) {
        match self {
            LateNotice::Series(s, r) => l.touched(s, *r),
            LateNotice::Actions(s, r) => l.actions_touched(s, *r),
        }
    }
}

/// Where a change went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The primary acknowledged it under this change-log sequence number.
    Primary { seq: u64, count: u64 },
    /// The primary could not be reached: it is in the spool (fsynced), to be replayed.
    Spooled { count: u64 },
}

impl Applied {
    /// Bars (or actions) written, removed or spooled.
    pub fn count(self) -> u64 {
        match self {
            Applied::Primary { count, .. } | Applied::Spooled { count } => count,
        }
    }

    pub fn seq(self) -> Option<u64> {
        match self {
            Applied::Primary { seq, .. } => Some(seq),
            Applied::Spooled { .. } => None,
        }
    }
}

/// How often the replayer retries a non-empty spool.
const REPLAY_EVERY: Duration = Duration::from_secs(5);

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

    /// Writes of bars and actions can wait in the spool; a delete cannot (it acts on what
    /// the primary holds).
    fn spoolable(&self) -> bool {
        !matches!(self, Op::Delete(..))
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
    /// Where changes wait while the primary is unreachable (absent in tools that copy
    /// between stores).
    spool: Option<Arc<Spool>>,
    /// Wakes the replayer.
    kick: Arc<tokio::sync::Notify>,
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
            spool: None,
            kick: Arc::default(),
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

    /// Spools changes the primary cannot take into `spool` (see [`crate::spool`]).
    pub fn with_spool(mut self, spool: Arc<Spool>) -> Writer {
        self.spool = Some(spool);
        self
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

    /// Validates, quarantines rejections, writes the rest and records its flags.
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
            match self.write(batch).await? {
                Applied::Primary { seq, count } => {
                    report.written = count;
                    report.seq = Some(seq);
                }
                Applied::Spooled { count } => report.spooled = count,
            }
            // After the write (or the spool): a flag names a stored bar, and a retried batch is
            // flagged once.
            report.flagged = self.record_flags(&validated.flags).await?;
        }
        Ok(report)
    }

    /// Records flagged (stored) bars in the quality table and counts them.
    async fn record_flags(&self, flags: &[Flag]) -> Result<u64, WriteError> {
        for f in flags {
            metrics()
                .bars_flagged
                .get_or_create(&labels([("rule", f.rule)]))
                .inc();
            tracing::debug!(symbol = %f.series.symbol, interval = %f.series.interval, ts = f.bar.ts, rule = f.rule, reason = %f.reason, "bar flagged");
        }
        self.meta.flag(flags).await?;
        Ok(flags.len() as u64)
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

    /// Writes a validated batch through the change log (or, while the primary is
    /// unreachable, into the spool); says where it went.
    pub async fn write(&self, batch: impl Into<ValidatedBatch>) -> Result<Applied, WriteError> {
        self.apply(Op::Write(batch.into())).await
    }

    /// Deletes a range of a series through the change log (so backups delete it too); returns
    /// how many bars were removed.
    pub async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, WriteError> {
        // Never spooled: a delete acts on what the primary holds.
        self.to_primary_detached(Op::Delete(series.clone(), range))
            .await
            .map(|a| a.count())
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

    async fn to_primary_detached(&self, op: Op) -> Result<Applied, WriteError> {
        let this = self.clone();
        tokio::spawn(async move { this.to_primary(&op).await })
            .await
            .map_err(|e| WriteError::Aborted(e.to_string()))?
    }

    /// Runs one change on its own task (see the module doc) and waits for it.
    async fn apply(&self, op: Op) -> Result<Applied, WriteError> {
        self.check_writable()?;
        let this = self.clone();
        tokio::spawn(async move { this.apply_here(op).await })
            .await
            .map_err(|e| WriteError::Aborted(e.to_string()))?
    }

    /// To the primary — or, when it cannot be reached (or older changes are still waiting),
    /// to the end of the spool.
    async fn apply_here(&self, op: Op) -> Result<Applied, WriteError> {
        let Some(spool) = self.spool.clone().filter(|_| op.spoolable()) else {
            return self.to_primary(&op).await;
        };
        if !spool.is_empty() {
            return self.to_spool(&spool, op).await;
        }
        match self.to_primary(&op).await {
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "primary unavailable: spooling the change");
                self.to_spool(&spool, op).await
            }
            other => other,
        }
    }

    async fn to_spool(&self, spool: &Arc<Spool>, op: Op) -> Result<Applied, WriteError> {
        let change = match op {
            Op::Write(b) => Spooled::Bars(b),
            Op::Actions(s, a, _) => Spooled::Actions(s, a),
            Op::Delete(..) => unreachable!("deletes are never spooled"),
        };
        let n = match &change {
            Spooled::Bars(b) => b.len() as u64,
            Spooled::Actions(_, a) => a.len() as u64,
        };
        let s = spool.clone();
        tokio::task::spawn_blocking(move || s.append(&change))
            .await
            .map_err(|e| WriteError::Aborted(e.to_string()))??;
        self.kick.notify_one();
        Ok(Applied::Spooled { count: n })
    }

    /// Replays the spool into the primary, oldest first, whenever kicked (a change was
    /// spooled) and every [`REPLAY_EVERY`] while it holds anything. Runs until the runtime
    /// stops; started once by the data directory's owner.
    pub fn spawn_replayer(&self) {
        let Some(spool) = self.spool.clone() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let mut delivered = 0u64;
                loop {
                    let s = spool.clone();
                    let next = match tokio::task::spawn_blocking(move || s.peek()).await {
                        Ok(Ok(n)) => n,
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "cannot read the spool");
                            None
                        }
                        Err(_) => None,
                    };
                    let Some(change) = next else { break };
                    let op = match change {
                        Spooled::Bars(b) => Op::Write(b),
                        Spooled::Actions(s, a) => {
                            let Some(r) = TimeRange::covering(a.iter().map(|x| x.ts)) else {
                                let _ = spool.pop();
                                continue;
                            };
                            Op::Actions(s, a, r)
                        }
                    };
                    match this.to_primary(&op).await {
                        Ok(_) => {}
                        Err(e) if e.is_unavailable() => break,
                        Err(e) => {
                            tracing::error!(error = %e, "the primary refused a spooled change; it is dropped from the spool (its change-log entry stays, uncertain, for verify)")
                        }
                    }
                    delivered += op.count();
                    let s = spool.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.pop()).await {
                        tracing::error!(error = %e, "cannot advance the spool");
                        break;
                    }
                }
                if delivered > 0 {
                    tracing::info!(
                        delivered,
                        waiting = spool.bars(),
                        "spool replayed into the primary"
                    );
                }
                let idle = spool.is_empty();
                tokio::select! {
                    _ = this.kick.notified() => {}
                    _ = tokio::time::sleep(REPLAY_EVERY), if !idle => {}
                }
            }
        });
    }

    /// Wakes the replayer now (a caller that knows the primary is back).
    pub fn kick_replayer(&self) {
        self.kick.notify_one();
    }

    /// The spool, when this writer has one.
    pub fn spool(&self) -> Option<&Arc<Spool>> {
        self.spool.as_ref()
    }

    async fn to_primary(&self, op: &Op) -> Result<Applied, WriteError> {
        let (kind, range) = (op.kind(), op.range());
        let seq = self
            .meta
            .begin_change(kind, &op.target(), range, op.count())
            .await?;
        let result = match op {
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
        self.notify(op);
        if result.is_err() {
            self.notify_late(op);
        }
        self.record_coverage(op, result.is_ok()).await;
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
        if let Op::Write(b) = op {
            metrics()
                .bars_written
                .get_or_create(&labels([
                    ("store", "primary"),
                    ("interval", b.series().interval.as_str()),
                ]))
                .inc_by(n);
        }
        Ok(Applied::Primary { seq, count: n })
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

    /// A failed write can still land after its error: InfluxDB 1.x answers a partial write's
    /// 400 as soon as one shard refused, while its other shards may still be applying their
    /// lines. Nothing tells when they are done, so the range is invalidated again a little
    /// later, and once more much later: a chunk cached in between (a read of a change that
    /// was never acknowledged, so not a stale read) does not keep the old bars.
    fn notify_late(&self, op: &Op) {
        let (listeners, late) = (self.listeners.clone(), LateNotice::of(op));
        tokio::spawn(async move {
            for wait in LATE_NOTICES {
                tokio::time::sleep(wait).await;
                for l in listeners.read().unwrap_or_else(|p| p.into_inner()).iter() {
                    late.tell(l.as_ref());
                }
            }
        });
    }

    /// Keeps the coverage summaries (`store::coverage`) in step with the primary: a write's
    /// stamps become present, a delete clears its range, and after a failure the touched
    /// blocks are unknown (re-read from the store by the next gap scan). A summary that cannot
    /// be updated is only logged: the change itself succeeded or failed already, and a stale
    /// summary shows up as a gap that the next update fetches again.
    async fn record_coverage(&self, op: &Op, ok: bool) {
        let (series, r) = match (op, ok) {
            (Op::Write(b), true) => {
                let marks = Marks::from_stamps(b.series().interval, b.bars().iter().map(|x| x.ts));
                (b.series(), self.meta.coverage_add(b.series(), marks).await)
            }
            (Op::Write(b), false) => {
                let marks = Marks::from_stamps(b.series().interval, b.bars().iter().map(|x| x.ts));
                let blocks = marks.block_starts();
                (
                    b.series(),
                    self.meta.coverage_unknown(b.series(), blocks, None).await,
                )
            }
            (Op::Delete(s, r), true) => (s, self.meta.coverage_clear(s, *r).await),
            (Op::Delete(s, r), false) => {
                (s, self.meta.coverage_unknown(s, Vec::new(), Some(*r)).await)
            }
            (Op::Actions(..), _) => return,
        };
        if let Err(e) = r {
            tracing::warn!(symbol = %series.symbol, interval = %series.interval, error = %e, "cannot update the coverage summary");
        }
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
        assert_eq!(report.flagged, 1, "3.0 two days after 1.0 is a jump");
        assert_eq!(store.read(&key, TimeRange::ALL).await.unwrap().len(), 2);
        let changes = meta.changes_since(0, 10).await.unwrap();
        assert_eq!(changes[0].kind, ChangeKind::Bars);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].start, changes[0].end, changes[0].count),
            (day, day + 2 * 86_400 + 1, 2)
        );
        assert_eq!(rec.0.lock().unwrap().len(), 1);
        let quality = meta.quality(None, None, 10).await.unwrap();
        assert_eq!(
            quality
                .iter()
                .map(|q| (q.kind.as_str(), q.rule.as_str()))
                .collect::<Vec<_>>(),
            [("flagged", "jump"), ("rejected", "non_positive_price")]
        );

        let removed = writer
            .delete(&key, TimeRange::new(day, day + 1).unwrap())
            .await
            .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(meta.changes_since(0, 10).await.unwrap().len(), 2);
    }
}
