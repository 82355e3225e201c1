//! Shipping the change log to one backup node.
//!
//! Each node has its own task ([`run_node`]), its own acked sequence (`node_acks` in the
//! metadata db) and its own failures, so a slow or dead node delays only itself; the primary's
//! write path never waits on any of them (a write only wakes the tasks, through
//! [`WriteListener::settled`](crate::ingest::WriteListener::settled)).
//!
//! A round ([`ship_round`]) repeats until the node is caught up: read the settled entries after
//! the node's ack (at most [`Tuning::window_changes`], never past a pending one), coalesce them
//! ([`super::plan`]), apply every unit with at most [`Tuning::in_flight`] at once — reading each
//! range from the primary *now* — and only when every unit is confirmed, advance the ack to
//! the window's last entry. A window that fails is not acked and is shipped whole again (every
//! unit is idempotent), after a backoff that doubles up to [`Tuning::max_backoff`]; so a node
//! that returns after an outage catches up from its ack. One round runs at a time per node
//! (`NodeHandle::shipping`), whether the task or `sync` started it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::node::{Node, NodeError};
use super::plan::{self, Plan};
use super::reconcile::{Pair, Tuning};
use crate::events::{Event, EventBus};
use crate::store::meta::{MetaDb, MetaError};
use crate::telemetry::{labels, metrics};

/// Why a round stopped.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("node {node}: {source}")]
    Node { node: String, source: NodeError },
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("cancelled")]
    Cancelled,
}

/// What replication knows about a node, kept in memory (the ack lives in `meta.db`).
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    /// The outcome of the last ping or round; `None` before the first.
    pub reachable: Option<bool>,
    pub version: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub last_ok_at: Option<i64>,
    /// Rounds failed in a row.
    pub failures: u32,
    /// A lag was published and no catch-up since.
    pub lag_published: bool,
}

/// One backup node: its connection, state and the signals its task waits on.
pub struct NodeHandle {
    pub name: String,
    pub node: Arc<dyn Node>,
    /// A std `Mutex`: held only to read or update the fields, never across an `.await`.
    pub state: Mutex<NodeState>,
    /// Notified after every settled write (shared with the writer's listener).
    pub wake: Arc<Notify>,
    /// Notified by a successful ping: cuts a failing node's backoff short.
    pub kick: Notify,
    /// One round at a time per node. A tokio mutex, held across the round's awaits on
    /// purpose: it is the round's exclusive section, not shared data.
    pub shipping: tokio::sync::Mutex<()>,
}

impl NodeHandle {
    pub fn new(name: &str, node: Arc<dyn Node>, wake: Arc<Notify>) -> NodeHandle {
        NodeHandle {
            name: name.to_string(),
            node,
            state: Mutex::new(NodeState::default()),
            wake,
            kick: Notify::new(),
            shipping: tokio::sync::Mutex::new(()),
        }
    }

    pub fn state(&self) -> NodeState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn update<T>(&self, f: impl FnOnce(&mut NodeState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records the outcome of an operation on the node.
    pub fn record(&self, outcome: Result<(), &str>) {
        let now = chrono::Utc::now().timestamp();
        self.update(|s| match outcome {
            Ok(()) => {
                s.reachable = Some(true);
                s.last_ok_at = Some(now);
                s.failures = 0;
            }
            Err(e) => {
                s.reachable = Some(false);
                s.last_error = Some(e.to_string());
                s.last_error_at = Some(now);
                s.failures = s.failures.saturating_add(1);
            }
        });
    }
}

/// What a round shipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoundReport {
    pub changes: u64,
    pub bars_written: u64,
    pub bars_deleted: u64,
    pub actions_written: u64,
    pub acked_seq: u64,
}

/// Everything a round needs.
pub struct Shipper<'a> {
    pub meta: &'a MetaDb,
    pub primary: &'a Arc<dyn Node>,
    pub handle: &'a NodeHandle,
    pub tuning: &'a Tuning,
    pub events: &'a EventBus,
}

impl Shipper<'_> {
    fn pair(&self) -> Pair {
        Pair {
            src: self.primary.clone(),
            dst: self.handle.node.clone(),
            label: self.handle.name.as_str().into(),
            tuning: self.tuning.clone(),
        }
    }

    /// Ships windows until the node's ack reaches `until` (or, without one, until nothing
    /// settled is left), then updates the lag gauges and events.
    pub async fn ship_round(
        &self,
        until: Option<u64>,
        cancel: &CancellationToken,
    ) -> Result<RoundReport, ShipError> {
        let _round = self.handle.shipping.lock().await;
        let result = self.ship_windows(until, cancel).await;
        match &result {
            Ok(_) => self.handle.record(Ok(())),
            Err(ShipError::Cancelled) => {}
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(node = %self.handle.name, error = %message, "shipping to a backup node failed; it will be retried");
                self.handle.record(Err(&message));
            }
        }
        self.measure(result.is_ok()).await;
        result
    }

    async fn ship_windows(
        &self,
        until: Option<u64>,
        cancel: &CancellationToken,
    ) -> Result<RoundReport, ShipError> {
        let name = &self.handle.name;
        let mut report = RoundReport {
            acked_seq: self.meta.acked(name).await?,
            ..RoundReport::default()
        };
        loop {
            if until.is_some_and(|u| report.acked_seq >= u) {
                break;
            }
            if cancel.is_cancelled() {
                return Err(ShipError::Cancelled);
            }
            let changes = self
                .meta
                .changes_since(report.acked_seq, self.tuning.window_changes)
                .await?;
            if changes.is_empty() {
                break;
            }
            let window = plan::plan(&changes);
            let done = tokio::select! {
                done = self.apply(&window) => done,
                _ = cancel.cancelled() => return Err(ShipError::Cancelled),
            };
            let (written, deleted, actions) = done.map_err(|source| ShipError::Node {
                node: name.clone(),
                source,
            })?;
            // Only now is every unit of the window confirmed by the node.
            self.meta.set_acked(name, window.last_seq).await?;
            report.acked_seq = window.last_seq;
            report.changes += changes.len() as u64;
            report.bars_written += written;
            report.bars_deleted += deleted;
            report.actions_written += actions;
            tracing::debug!(node = %name, acked = window.last_seq, changes = changes.len(), bars = written, "window shipped");
        }
        Ok(report)
    }

    /// Applies every unit of a window, `in_flight` at a time; returns bars written, bars
    /// deleted and actions written.
    async fn apply(&self, window: &Plan) -> Result<(u64, u64, u64), NodeError> {
        let pair = self.pair();
        // Owned units and a clone of the pair per unit: the futures must not borrow from the
        // closure's argument (they run on a spawned task).
        let bars = futures::stream::iter(window.bars.clone())
            .map(|u| {
                let pair = pair.clone();
                async move {
                    if u.replace {
                        let o = pair.reconcile(&u.series, u.range, true).await?;
                        Ok::<_, NodeError>((o.written, o.deleted))
                    } else {
                        Ok((pair.copy_range(&u.series, u.range).await?, 0))
                    }
                }
            })
            .buffer_unordered(self.tuning.in_flight.max(1));
        let bars = async move {
            let mut bars = std::pin::pin!(bars);
            let (mut w, mut d) = (0, 0);
            while let Some((w2, d2)) = bars.try_next().await? {
                (w, d) = (w + w2, d + d2);
            }
            Ok::<_, NodeError>((w, d))
        };
        let actions = futures::stream::iter(window.actions.clone())
            .map(|u| {
                let pair = pair.clone();
                async move { pair.copy_actions(&u.symbol, u.range).await }
            })
            .buffer_unordered(self.tuning.in_flight.max(1));
        let actions = async move {
            let mut actions = std::pin::pin!(actions);
            let mut n = 0;
            while let Some(m) = actions.try_next().await? {
                n += m;
            }
            Ok::<_, NodeError>(n)
        };
        let ((written, deleted), actions) = tokio::try_join!(bars, actions)?;
        Ok((written, deleted, actions))
    }

    /// Sets the lag gauges and publishes the lag (after a failed round) or the catch-up.
    pub async fn measure(&self, ok: bool) {
        let Ok(lag) = lag(self.meta, &self.handle.name).await else {
            return;
        };
        let l = labels([("node", self.handle.name.as_str())]);
        let m = metrics();
        m.replication_lag_changes
            .get_or_create(&l)
            .set(lag.changes as i64);
        m.replication_lag_seconds
            .get_or_create(&l)
            .set(lag.seconds as i64);
        let node = self.handle.name.clone();
        if !ok && lag.changes > 0 {
            self.handle.update(|s| s.lag_published = true);
            self.events.publish(Event::BackupLag {
                node,
                changes: lag.changes,
                seconds: lag.seconds,
            });
        } else if ok
            && lag.changes == 0
            && self.handle.update(|s| std::mem::take(&mut s.lag_published))
        {
            self.events.publish(Event::BackupCaughtUp { node });
        }
    }
}

/// A node's distance behind the change log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Lag {
    pub acked_seq: u64,
    /// Entries after the ack (pending ones included).
    pub changes: u64,
    /// Age of the oldest of them, in seconds (0 when caught up).
    pub seconds: u64,
}

pub async fn lag(meta: &MetaDb, node: &str) -> Result<Lag, MetaError> {
    let acked = meta.acked(node).await?;
    let (changes, oldest) = meta.backlog(acked).await?;
    let now = chrono::Utc::now().timestamp();
    Ok(Lag {
        acked_seq: acked,
        changes,
        seconds: oldest.map(|t| (now - t).max(0) as u64).unwrap_or(0),
    })
}

/// The node's task in `dms serve`: a round at start, then after every write (and every
/// [`Tuning::poll`]), backing off while the node fails.
pub async fn run_node(shipper: Shipper<'_>, shutdown: CancellationToken) {
    let handle = shipper.handle;
    // The start-up health check.
    match handle.node.ping().await {
        Ok(h) => {
            tracing::info!(node = %handle.name, kind = handle.node.kind(), location = %handle.node.location(), version = h.version.as_deref(), "backup node reachable");
            handle.update(|s| s.version = h.version);
            handle.record(Ok(()));
        }
        Err(e) => {
            tracing::warn!(node = %handle.name, location = %handle.node.location(), error = %e, "backup node unreachable at start-up; shipping will retry");
            handle.record(Err(&e.to_string()));
        }
    }
    loop {
        let failed = match shipper.ship_round(None, &shutdown).await {
            Ok(_) => false,
            Err(ShipError::Cancelled) => return,
            Err(_) => true,
        };
        if failed {
            let failures = handle.state().failures.min(16);
            let wait = (shipper.tuning.min_backoff * 2u32.pow(failures))
                .min(shipper.tuning.max_backoff)
                .max(Duration::from_millis(10));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = handle.kick.notified() => {}
            }
        } else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = handle.wake.notified() => {}
                _ = handle.kick.notified() => {}
                _ = tokio::time::sleep(shipper.tuning.poll) => {}
            }
        }
    }
}
