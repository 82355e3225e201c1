//! Stores that misbehave on purpose, wrapped around a real one: writes held at a gate (so a
//! test can drop the caller mid-write), and writes that land and then fail (what InfluxDB's
//! partial writes and late timeouts look like to the write path).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use dms::domain::{Bar, CorporateAction, SeriesKey, Symbol, TimeRange};
use dms::store::{Fields, SeriesStats, Store, StoreError, StoreHealth};
use dms::validate::ValidatedBatch;
use tokio::sync::watch;

/// Holds writes while closed.
pub struct WriteGate {
    open: watch::Sender<bool>,
    waiting: AtomicUsize,
}

impl WriteGate {
    pub fn new(open: bool) -> Arc<WriteGate> {
        Arc::new(WriteGate {
            open: watch::Sender::new(open),
            waiting: AtomicUsize::new(0),
        })
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Writes currently held at the gate.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    async fn pass(&self) {
        let mut rx = self.open.subscribe();
        if *rx.borrow() {
            return;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _ = rx.wait_for(|open| *open).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Delegates to `inner`; writes wait at `gate` before reaching it; when `fail_after_write` is
/// set, a write reaches `inner` and then reports a timeout (the bars are stored, the caller is
/// told it failed).
pub struct MisbehavingStore {
    pub inner: Arc<dyn Store>,
    pub gate: Arc<WriteGate>,
    pub fail_after_write: AtomicBool,
    /// `ping` answers unavailable while set (everything else still works).
    pub ping_fails: AtomicBool,
}

impl MisbehavingStore {
    pub fn new(inner: Arc<dyn Store>, gate: Arc<WriteGate>) -> Arc<MisbehavingStore> {
        Arc::new(MisbehavingStore {
            inner,
            gate,
            fail_after_write: AtomicBool::new(false),
            ping_fails: AtomicBool::new(false),
        })
    }
}

#[async_trait]
impl Store for MisbehavingStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn ping(&self) -> Result<StoreHealth, StoreError> {
        if self.ping_fails.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                store: "test",
                message: "connection refused".into(),
            });
        }
        self.inner.ping().await
    }
    async fn write(&self, batch: &ValidatedBatch) -> Result<(), StoreError> {
        self.gate.pass().await;
        self.inner.write(batch).await?;
        if self.fail_after_write.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                store: "test",
                message: "timed out after the request was sent".into(),
            });
        }
        Ok(())
    }
    async fn read(&self, series: &SeriesKey, range: TimeRange) -> Result<Vec<Bar>, StoreError> {
        self.inner.read(series, range).await
    }
    async fn read_fields(
        &self,
        series: &SeriesKey,
        range: TimeRange,
        fields: Fields,
    ) -> Result<Vec<Bar>, StoreError> {
        self.inner.read_fields(series, range, fields).await
    }
    async fn latest(&self, series: &[SeriesKey]) -> Result<HashMap<SeriesKey, Bar>, StoreError> {
        self.inner.latest(series).await
    }
    async fn count(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, StoreError> {
        self.inner.count(series, range).await
    }
    async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, StoreError> {
        self.gate.pass().await;
        self.inner.delete(series, range).await
    }
    async fn list_series(&self) -> Result<Vec<SeriesStats>, StoreError> {
        self.inner.list_series().await
    }
    async fn write_actions(&self, s: &Symbol, a: &[CorporateAction]) -> Result<(), StoreError> {
        self.gate.pass().await;
        self.inner.write_actions(s, a).await
    }
    async fn read_actions(
        &self,
        s: &Symbol,
        range: TimeRange,
    ) -> Result<Vec<CorporateAction>, StoreError> {
        self.inner.read_actions(s, range).await
    }
}
