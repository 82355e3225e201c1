//! Series locks: a series is never written by two jobs at once (DESIGN §5).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::domain::SeriesKey;

/// One async mutex per series, created on first use and dropped when nobody holds or waits
/// for it. Cheap to clone.
#[derive(Clone, Default)]
pub struct SeriesLocks {
    /// A std `Mutex` around the map: held only to find or insert an entry, never across an
    /// `.await` (the per-series tokio mutex is awaited after it is released).
    map: Arc<Mutex<HashMap<SeriesKey, Arc<tokio::sync::Mutex<()>>>>>,
    /// Held by the one task re-fetching history after splits (they are rare; two jobs meeting
    /// the same split must not both rescale what the source no longer serves).
    splits: Arc<tokio::sync::Mutex<()>>,
}

/// Holds a series until dropped.
pub struct SeriesGuard {
    _guard: OwnedMutexGuard<()>,
    series: SeriesKey,
    locks: SeriesLocks,
}

impl Drop for SeriesGuard {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and the guard's (about to go) — nobody else waits.
        if map
            .get(&self.series)
            .is_some_and(|m| Arc::strong_count(m) <= 2)
        {
            map.remove(&self.series);
        }
    }
}

impl SeriesLocks {
    /// Waits until no other task re-fetches history after a split, then holds that.
    pub async fn lock_split_refetch(&self) -> OwnedMutexGuard<()> {
        self.splits.clone().lock_owned().await
    }

    /// Waits until no other job holds `series`, then holds it.
    pub async fn lock(&self, series: &SeriesKey) -> SeriesGuard {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(series.clone()).or_default().clone()
        };
        SeriesGuard {
            _guard: m.lock_owned().await,
            series: series.clone(),
            locks: self.clone(),
        }
    }

    /// Series currently held or awaited.
    pub fn held(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{Interval, Symbol};

    #[tokio::test(start_paused = true)]
    async fn a_series_is_held_by_one_holder_at_a_time() {
        let locks = SeriesLocks::default();
        let k = SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::D1);
        let other = SeriesKey::new(Symbol::parse("AAPL").unwrap(), Interval::M1);
        let g = locks.lock(&k).await;
        let _o = locks.lock(&other).await; // another series is independent
        let l2 = locks.clone();
        let k2 = k.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(&k2).await;
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(g);
        waiter.await.unwrap();
        drop(_o);
        assert_eq!(locks.held(), 0);
    }
}
