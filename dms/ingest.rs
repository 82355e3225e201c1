//! The write path around the primary store: every accepted write goes through [`Writer`].
//!
//! For a batch of raw bars of one series, [`Writer::ingest`]:
//! 1. validates them ([`crate::validate`]) and quarantines the rejections in the metadata db;
//! 2. reserves a change-log sequence number (state `pending`);
//! 3. writes the validated batch to the primary;
//! 4. tells every [`WriteListener`] which range changed (the reader cache drops those chunks),
//!    *before* the write is acknowledged;
//! 5. commits the change-log entry, so replication may ship it, and counts metrics.
//!
//! If the primary fails, the pending entry is removed and the error returned with the batch
//! untouched, so the caller can retry or spool it.

use std::sync::{Arc, RwLock};

use crate::domain::{Bar, CorporateAction, SeriesKey, Symbol, TimeRange};
use crate::store::meta::{MetaDb, MetaError};
use crate::store::{Store, StoreError};
use crate::telemetry::{labels, metrics};
use crate::validate::{self, Context, Rejection, ValidatedBatch};

/// Told about every range whose bars changed, before the write is acknowledged.
pub trait WriteListener: Send + Sync {
    fn touched(&self, series: &SeriesKey, range: TimeRange);
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Meta(#[from] MetaError),
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
}

impl std::ops::AddAssign for IngestReport {
    fn add_assign(&mut self, o: IngestReport) {
        self.written += o.written;
        self.rejected += o.rejected;
        self.seq = o.seq.or(self.seq);
    }
}

/// The only writer of the primary. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    primary: Arc<dyn Store>,
    meta: MetaDb,
    /// Registered once at start-up, read on every write.
    listeners: Arc<RwLock<Vec<Arc<dyn WriteListener>>>>,
}

impl Writer {
    pub fn new(primary: Arc<dyn Store>, meta: MetaDb) -> Writer {
        Writer {
            primary,
            meta,
            listeners: Arc::default(),
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
        let validated = validate::validate(series, bars, ctx);
        let rejected = self.quarantine(&validated.rejections).await?;
        let mut report = IngestReport {
            rejected,
            ..IngestReport::default()
        };
        if let Some(batch) = validated.batch {
            report.seq = Some(self.write(&batch).await?);
            report.written = batch.len() as u64;
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
    pub async fn write(&self, batch: &ValidatedBatch) -> Result<u64, WriteError> {
        let series = batch.series();
        let range = batch.range();
        let seq = self
            .meta
            .begin_change(series, range, batch.len() as u64)
            .await?;
        if let Err(e) = self.primary.write(batch).await {
            // Best effort: a leftover pending entry is committed at start-up, which only
            // re-ships a range; the caller gets the primary's error either way.
            let _ = self.meta.abort_change(seq).await;
            return Err(e.into());
        }
        self.notify(series, range);
        self.meta.commit_change(seq).await?;
        metrics()
            .bars_written
            .get_or_create(&labels([
                ("store", "primary"),
                ("interval", series.interval.as_str()),
            ]))
            .inc_by(batch.len() as u64);
        Ok(seq)
    }

    /// Deletes a range of a series through the change log (so backups delete it too).
    pub async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, WriteError> {
        let seq = self.meta.begin_change(series, range, 0).await?;
        let removed = match self.primary.delete(series, range).await {
            Ok(n) => n,
            Err(e) => {
                let _ = self.meta.abort_change(seq).await;
                return Err(e.into());
            }
        };
        self.notify(series, range);
        self.meta.commit_change(seq).await?;
        Ok(removed)
    }

    /// Stores corporate actions of a symbol.
    pub async fn write_actions(
        &self,
        symbol: &Symbol,
        actions: &[CorporateAction],
    ) -> Result<(), WriteError> {
        if !actions.is_empty() {
            self.primary.write_actions(symbol, actions).await?;
        }
        Ok(())
    }

    fn notify(&self, series: &SeriesKey, range: TimeRange) {
        for l in self
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            l.touched(series, range);
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
