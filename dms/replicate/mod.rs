//! Replication: the primary's change log shipped to backup nodes, pulled by replicas, and
//! verified.
//!
//! # Layout
//! - [`node`]: the [`Node`] abstraction — InfluxDB and embedded backups ([`node::StoreNode`]),
//!   a peer DMS over HTTP ([`node::PeerNode`]), a replica's own store ([`node::WriterNode`]).
//! - [`plan`]: a window of change-log entries coalesced into units of work.
//! - [`reconcile`]: bringing a range of a destination to the source's bars (upsert, or replace
//!   by bucketed digests, bisection and a bar-by-bar comparison at the leaves).
//! - [`ship`]: one task per backup node, its acked sequence, retries and lag.
//! - [`verify`]: the `verify` comparison and repair of a node.
//! - [`pull`]: a replica pulling its primary.
//! - [`wire`]: the JSON shapes instances exchange.
//!
//! # Invariants
//! - Only this module talks to backup nodes; the write path only wakes it
//!   ([`WriteListener::settled`]).
//! - A node's ack advances only after the node confirmed every unit up to it, and never past a
//!   pending entry; what ships is the range as the primary holds it at ship time.
//! - A dead node delays nothing but itself: each node ships on its own task, and neither the
//!   primary's writes nor jobs wait on any node.
//!
//! [`Replicator`] is the entry point: built from the config by [`crate::services::Services`],
//! started by `dms serve` ([`Replicator::start`]), and called by jobs and the CLI
//! ([`Replicator::sync`], [`Replicator::verify`]) and the API ([`Replicator::nodes_status`],
//! [`Replicator::ping`], [`Replicator::changes_page`], [`Replicator::apply`]).

pub mod node;
pub mod plan;
pub mod pull;
pub mod reconcile;
pub mod ship;
pub mod verify;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::node::{Node, StoreNode};
use self::pull::{PullState, Puller};
pub use self::reconcile::{BucketDiff, Tuning};
pub use self::ship::{Lag, ShipError};
use self::ship::{NodeHandle, RoundReport, Shipper};
pub use self::verify::{NodeVerify, VerifyOptions};
use self::wire::{
    ApplyOp, ApplyReport, ApplyRequest, ChangesPage, WireAction, WireActionsUnit, WireBars,
    WireChange, WireError, WireUnit,
};
use crate::config::{Config, ReplicationConfig, secret_from_env};
use crate::domain::{SeriesKey, Symbol, TimeRange};
use crate::events::{Event, EventBus};
use crate::ingest::{WriteError, WriteListener, Writer};
use crate::store::meta::{MetaDb, MetaError};
use crate::validate::revalidated_from_store;

pub use self::pull::PRIMARY_POSITION;

/// Why a replication call failed (per-node failures are in the reports, not here).
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("no backup node named {0:?}")]
    UnknownNode(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("primary store: {0}")]
    Primary(String),
}

impl From<WireError> for ReplicationError {
    fn from(e: WireError) -> ReplicationError {
        ReplicationError::Invalid(e.to_string())
    }
}

/// Progress of a sync or verify: units done out of a total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// What `sync` did for one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeSync {
    pub node: String,
    pub ok: bool,
    pub changes: u64,
    pub bars_written: u64,
    pub bars_deleted: u64,
    pub actions_written: u64,
    pub acked_seq: u64,
    /// The primary's last sequence when the sync started: what it shipped up to.
    pub target_seq: u64,
    pub error: Option<String>,
}

/// What `sync` did (`dms sync`, the `sync` job). A node that failed is reported, with the
/// others shipped regardless.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub nodes: Vec<NodeSync>,
    /// On a replica: changes pulled from the primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulled: Option<u64>,
    /// On a replica: why pulling failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_error: Option<String>,
}

impl SyncReport {
    /// Names of the nodes that could not be brought up to date (and the primary, for a
    /// replica that could not pull).
    pub fn failed(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !n.ok)
            .map(|n| n.node.clone())
            .collect();
        if self.pull_error.is_some() {
            out.push(PRIMARY_POSITION.into());
        }
        out
    }
}

/// What `verify` did, per node.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    pub nodes: Vec<NodeVerify>,
}

impl VerifyReport {
    /// Differing buckets over every node.
    pub fn differences(&self) -> u64 {
        self.nodes.iter().map(|n| n.differences).sum()
    }
}

/// A node as `GET /api/v1/nodes` and `/health` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    pub name: String,
    /// `influxdb`, `embedded` or `dms`.
    pub kind: &'static str,
    pub location: String,
    /// The last ping or shipping round succeeded; `null` before the first.
    pub reachable: Option<bool>,
    pub version: Option<String>,
    pub acked_seq: u64,
    pub lag_changes: u64,
    pub lag_seconds: u64,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_error_at: Option<String>,
    pub last_ok_at: Option<String>,
    /// The last verify of this node.
    pub last_verify: Option<serde_json::Value>,
}

/// How this instance takes part in replication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica { primary_url: String },
}

/// Replication of this instance. Cheap to clone.
#[derive(Clone)]
pub struct Replicator {
    inner: Arc<Inner>,
}

struct Inner {
    role: Role,
    meta: MetaDb,
    writer: Writer,
    /// The primary store as a node: what every node is brought to.
    primary: Arc<dyn Node>,
    nodes: Vec<Arc<NodeHandle>>,
    puller: Option<Arc<Puller>>,
    events: EventBus,
    tuning: Tuning,
    /// The newest settled sequence the writer reported: long polls of
    /// `/api/v1/replication/changes` wait on it.
    settled: watch::Sender<u64>,
}

/// The writer's hook: wakes every node's shipper and the long polls after each settled write.
struct Waker {
    wakes: Vec<Arc<Notify>>,
    settled: watch::Sender<u64>,
}

impl WriteListener for Waker {
    fn touched(&self, _: &SeriesKey, _: TimeRange) {}

    fn settled(&self, seq: u64) {
        for w in &self.wakes {
            w.notify_one();
        }
        self.settled.send_if_modified(|s| {
            let newer = seq > *s;
            if newer {
                *s = seq;
            }
            newer
        });
    }
}

/// The tasks [`Replicator::start`] spawned.
pub struct Running {
    tasks: JoinSet<()>,
}

impl Running {
    /// Waits until every task has stopped (after the shutdown token given to `start` fired).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Replicator {
    /// Builds the nodes of `storage.backups` and, for a replica, the puller; opens nothing yet
    /// (nodes connect on first use). Register [`Replicator::listener`] with `writer`.
    pub fn new(config: &Config, writer: &Writer, events: EventBus) -> Replicator {
        Replicator::with_tuning(config, writer, events, Tuning::default())
    }

    pub fn with_tuning(
        config: &Config,
        writer: &Writer,
        events: EventBus,
        tuning: Tuning,
    ) -> Replicator {
        let nodes = config
            .storage
            .backups
            .iter()
            .map(|c| {
                Arc::new(NodeHandle::new(
                    &c.name,
                    node::from_config(c),
                    Arc::new(Notify::new()),
                ))
            })
            .collect();
        Replicator::from_parts(config, writer, events, tuning, nodes)
    }

    /// A replicator over nodes built elsewhere (tests and benchmarks put a store of their own
    /// behind a node this way).
    pub fn with_nodes(
        config: &Config,
        writer: &Writer,
        events: EventBus,
        tuning: Tuning,
        nodes: Vec<(String, Arc<dyn Node>)>,
    ) -> Replicator {
        let nodes = nodes
            .into_iter()
            .map(|(name, n)| Arc::new(NodeHandle::new(&name, n, Arc::new(Notify::new()))))
            .collect();
        Replicator::from_parts(config, writer, events, tuning, nodes)
    }

    fn from_parts(
        config: &Config,
        writer: &Writer,
        events: EventBus,
        tuning: Tuning,
        nodes: Vec<Arc<NodeHandle>>,
    ) -> Replicator {
        let (role, puller) = match &config.replication {
            ReplicationConfig::Primary => (Role::Primary, None),
            ReplicationConfig::Replica {
                primary_url,
                token_env,
            } => (
                Role::Replica {
                    primary_url: primary_url.clone(),
                },
                Some(Arc::new(Puller::new(
                    primary_url,
                    secret_from_env(token_env.as_deref()),
                    writer,
                    tuning.clone(),
                ))),
            ),
        };
        let primary: Arc<dyn Node> = Arc::new(StoreNode::open(writer.primary().clone(), "primary"));
        Replicator {
            inner: Arc::new(Inner {
                role,
                meta: writer.meta().clone(),
                writer: writer.for_replication(),
                primary,
                nodes,
                puller,
                events,
                tuning,
                settled: watch::Sender::new(0),
            }),
        }
    }

    /// The hook to register with the writer (`Writer::add_listener`).
    pub fn listener(&self) -> Arc<dyn WriteListener> {
        Arc::new(Waker {
            wakes: self.inner.nodes.iter().map(|n| n.wake.clone()).collect(),
            settled: self.inner.settled.clone(),
        })
    }

    pub fn role(&self) -> &Role {
        &self.inner.role
    }

    /// Names of the backup nodes, in config order.
    pub fn node_names(&self) -> Vec<String> {
        self.inner.nodes.iter().map(|n| n.name.clone()).collect()
    }

    fn shipper<'a>(&'a self, handle: &'a NodeHandle) -> Shipper<'a> {
        Shipper {
            meta: &self.inner.meta,
            primary: &self.inner.primary,
            handle,
            tuning: &self.inner.tuning,
            events: &self.inner.events,
        }
    }

    fn select(&self, node: Option<&str>) -> Result<Vec<Arc<NodeHandle>>, ReplicationError> {
        match node {
            None => Ok(self.inner.nodes.clone()),
            Some(name) => self
                .inner
                .nodes
                .iter()
                .find(|n| n.name == name)
                .cloned()
                .map(|n| vec![n])
                .ok_or_else(|| ReplicationError::UnknownNode(name.to_string())),
        }
    }

    /// Starts replication in `dms serve`: a health check and then continuous shipping per
    /// backup node, and the pull loop on a replica. Everything stops when `shutdown` fires;
    /// [`Running::join`] waits for it.
    pub fn start(&self, shutdown: CancellationToken) -> Running {
        let mut tasks = JoinSet::new();
        for handle in &self.inner.nodes {
            let (this, handle, shutdown) = (self.clone(), handle.clone(), shutdown.clone());
            tasks.spawn(async move { ship::run_node(this.shipper(&handle), shutdown).await });
        }
        if let Some(p) = &self.inner.puller {
            let (p, shutdown) = (p.clone(), shutdown.clone());
            tasks.spawn(async move { p.run(shutdown).await });
        }
        Running { tasks }
    }

    /// Ships every settled change up to now to `node` (or every node, in parallel), waiting
    /// for each to confirm; on a replica, also pulls from the primary until caught up. A node
    /// that fails is reported in its [`NodeSync`], never as an `Err`.
    pub async fn sync(
        &self,
        node: Option<&str>,
        progress: &(dyn Fn(Progress) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<SyncReport, ReplicationError> {
        let handles = self.select(node)?;
        let target = self.inner.meta.last_seq().await?;
        let total = handles.len() as u64;
        let done = std::sync::atomic::AtomicU64::new(0);
        let nodes = join_all(handles.iter().map(|h| async {
            let shipper = self.shipper(h);
            let r = shipper.ship_round(Some(target), cancel).await;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(Progress { done: n, total });
            let acked = self.inner.meta.acked(&h.name).await.unwrap_or(0);
            match r {
                Ok(RoundReport {
                    changes,
                    bars_written,
                    bars_deleted,
                    actions_written,
                    acked_seq,
                }) => NodeSync {
                    node: h.name.clone(),
                    ok: true,
                    changes,
                    bars_written,
                    bars_deleted,
                    actions_written,
                    acked_seq,
                    target_seq: target,
                    error: None,
                },
                Err(e) => NodeSync {
                    node: h.name.clone(),
                    ok: false,
                    acked_seq: acked,
                    target_seq: target,
                    error: Some(e.to_string()),
                    ..NodeSync::default()
                },
            }
        }))
        .await;
        let mut report = SyncReport {
            nodes,
            ..SyncReport::default()
        };
        if node.is_none()
            && let Some(p) = &self.inner.puller
        {
            match p.round(0, cancel).await {
                Ok(n) => report.pulled = Some(n),
                Err(e) => report.pull_error = Some(e.to_string()),
            }
        }
        Ok(report)
    }

    /// Compares the primary with `node` (or every node, in parallel) and repairs what differs
    /// (`options.repair`). Each node is caught up first and not shipped to while it is
    /// verified. The reports are kept for `GET /api/v1/nodes` and published as
    /// `VerifyDiff`/`VerifyClean` events. The `verify` job also validates the primary's own
    /// data: that is the job's part, before or after this call.
    pub async fn verify(
        &self,
        node: Option<&str>,
        options: VerifyOptions,
        progress: &(dyn Fn(Progress) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<VerifyReport, ReplicationError> {
        let handles = self.select(node)?;
        let per_node: Vec<std::sync::Mutex<(u64, u64)>> = handles
            .iter()
            .map(|_| std::sync::Mutex::new((0, 0)))
            .collect();
        let report_progress = |i: usize, done: u64, total: u64| {
            *per_node[i].lock().unwrap_or_else(|p| p.into_inner()) = (done, total);
            let (d, t) = per_node.iter().fold((0, 0), |(d, t), m| {
                let (a, b) = *m.lock().unwrap_or_else(|p| p.into_inner());
                (d + a, t + b)
            });
            progress(Progress { done: d, total: t });
        };
        let nodes = join_all(handles.iter().enumerate().map(|(i, h)| {
            let report_progress = &report_progress;
            async move {
                // Catch up first, so that changes on their way are not differences.
                let shipper = self.shipper(h);
                let target = self.inner.meta.last_seq().await.unwrap_or(0);
                let caught_up = shipper.ship_round(Some(target), cancel).await;
                let _round = h.shipping.lock().await;
                let mut report = verify::verify_node(
                    &self.inner.primary,
                    h,
                    &self.inner.tuning,
                    options,
                    &|d, t| report_progress(i, d, t),
                    cancel,
                )
                .await;
                if let Err(e) = caught_up {
                    report
                        .errors
                        .insert(0, format!("catching up before the comparison: {e}"));
                    report.ok = false;
                }
                self.keep_verify(h, &report).await;
                report
            }
        }))
        .await;
        Ok(VerifyReport { nodes })
    }

    async fn keep_verify(&self, h: &NodeHandle, report: &NodeVerify) {
        let summary = verify_summary(report);
        if let Err(e) = self.inner.meta.set_verify_report(&h.name, &summary).await {
            tracing::warn!(node = %h.name, error = %e, "cannot record the verify report");
        }
        if !report.errors.is_empty() {
            h.record(Err(&report.errors.join("; ")));
        }
        tracing::info!(node = %h.name, buckets = report.buckets_compared, differences = report.differences, repaired = report.repaired, errors = report.errors.len(), "verify finished");
        if report.differences > 0 {
            self.inner.events.publish(Event::VerifyDiff {
                node: h.name.clone(),
                differences: report.differences,
            });
        } else if report.ok {
            self.inner.events.publish(Event::VerifyClean {
                node: h.name.clone(),
            });
        }
    }

    /// Every backup node: reachability, ack, lag, last error, last verify.
    pub async fn nodes_status(&self) -> Vec<NodeStatus> {
        join_all(self.inner.nodes.iter().map(|h| self.status_of(h))).await
    }

    async fn status_of(&self, h: &NodeHandle) -> NodeStatus {
        let lag = ship::lag(&self.inner.meta, &h.name)
            .await
            .unwrap_or_default();
        let s = h.state();
        let ts = |t: Option<i64>| t.map(crate::domain::time::rfc3339);
        NodeStatus {
            name: h.name.clone(),
            kind: h.node.kind(),
            location: h.node.location(),
            reachable: s.reachable,
            version: s.version,
            acked_seq: lag.acked_seq,
            lag_changes: lag.changes,
            lag_seconds: lag.seconds,
            last_error: s.last_error,
            last_error_at: ts(s.last_error_at),
            last_ok_at: ts(s.last_ok_at),
            last_verify: self.inner.meta.verify_report(&h.name).await.ok().flatten(),
        }
    }

    /// The lag of `node` now.
    pub async fn lag(&self, node: &str) -> Result<Lag, ReplicationError> {
        self.select(Some(node))?;
        Ok(ship::lag(&self.inner.meta, node).await?)
    }

    /// Checks `name` answers now (10 s at most); a node that answers is shipped to at once.
    pub async fn ping(&self, name: &str) -> Result<NodeStatus, ReplicationError> {
        let h = self
            .select(Some(name))?
            .pop()
            .expect("select returns the node");
        match tokio::time::timeout(Duration::from_secs(10), h.node.ping()).await {
            Ok(Ok(health)) => {
                h.update(|s| s.version = health.version);
                h.record(Ok(()));
                h.kick.notify_one();
            }
            Ok(Err(e)) => h.record(Err(&e.to_string())),
            Err(_) => h.record(Err("ping: no answer within 10 s")),
        }
        Ok(self.status_of(&h).await)
    }

    /// On a replica: its pulling state.
    pub fn pull_state(&self) -> Option<PullState> {
        self.inner.puller.as_ref().map(|p| p.state())
    }

    /// A page of `GET /api/v1/replication/changes`: settled changes after `since` with the
    /// data the primary holds for them now (see [`ChangesPage`]). With nothing new, waits up
    /// to `wait` for a write to settle.
    pub async fn changes_page(
        &self,
        since: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangesPage, ReplicationError> {
        let meta = &self.inner.meta;
        let mut changes = meta.changes_since(since, limit).await?;
        if changes.is_empty() && !wait.is_zero() {
            let mut rx = self.inner.settled.subscribe();
            let deadline = tokio::time::Instant::now() + wait;
            while changes.is_empty() {
                // A write may have settled between the query and the subscription: look again
                // after every wake and at the deadline.
                let woke = tokio::time::timeout_at(deadline, rx.changed()).await;
                changes = meta.changes_since(since, limit).await?;
                if !matches!(woke, Ok(Ok(()))) {
                    break;
                }
            }
        }
        let window = plan::plan(&changes);
        let primary = &self.inner.primary;
        let mut budget = self.inner.tuning.page_bars as u64;
        let mut units = Vec::with_capacity(window.bars.len());
        for u in &window.bars {
            let mut bars = None;
            if !u.replace && u.count <= budget {
                let read = primary
                    .read(&u.series, u.range)
                    .await
                    .map_err(|e| ReplicationError::Primary(e.to_string()))?;
                if read.len() as u64 <= budget {
                    budget -= read.len() as u64;
                    bars = Some(WireBars::from_bars(&read));
                }
            }
            units.push(WireUnit {
                symbol: u.series.symbol.to_string(),
                interval: u.series.interval,
                start: u.range.start(),
                end: u.range.end(),
                replace: u.replace,
                bars,
            });
        }
        let mut actions = Vec::with_capacity(window.actions.len());
        for a in &window.actions {
            let read = primary
                .read_actions(&a.symbol, a.range)
                .await
                .map_err(|e| ReplicationError::Primary(e.to_string()))?;
            actions.push(WireActionsUnit {
                symbol: a.symbol.to_string(),
                start: a.range.start(),
                end: a.range.end(),
                actions: read.iter().map(WireAction::from_action).collect(),
            });
        }
        Ok(ChangesPage {
            since,
            next: if changes.is_empty() {
                since
            } else {
                window.last_seq
            },
            last_seq: meta.last_seq().await?,
            changes: changes.iter().map(WireChange::from).collect(),
            units,
            actions,
        })
    }

    /// Applies a batch a peer pushed (`POST /api/v1/replication/apply`) through this
    /// instance's writer (replication may write even on a replica). Every op is checked before
    /// the first is applied.
    pub async fn apply(&self, request: ApplyRequest) -> Result<ApplyReport, ReplicationError> {
        enum Checked {
            Bars(crate::validate::ValidatedBatch),
            Delete(SeriesKey, TimeRange),
            Actions(Symbol, Vec<crate::domain::CorporateAction>),
        }
        let mut checked = Vec::with_capacity(request.ops.len());
        for (i, op) in request.ops.into_iter().enumerate() {
            let at = |e: WireError| ReplicationError::Invalid(format!("ops[{i}]: {e}"));
            checked.push(match op {
                ApplyOp::Bars {
                    symbol,
                    interval,
                    bars,
                } => {
                    let series = SeriesKey::new(wire::symbol(&symbol).map_err(at)?, interval);
                    let bars = bars.into_bars().map_err(at)?;
                    match revalidated_from_store(&series, bars) {
                        Some(b) => Checked::Bars(b),
                        None => continue,
                    }
                }
                ApplyOp::Delete {
                    symbol,
                    interval,
                    start,
                    end,
                } => {
                    let range =
                        TimeRange::new(start, end).map_err(|e| at(WireError(e.to_string())))?;
                    // Nothing is stored outside the validation span.
                    let Some(range) = range.intersect(plan::storable_span()) else {
                        continue;
                    };
                    Checked::Delete(
                        SeriesKey::new(wire::symbol(&symbol).map_err(at)?, interval),
                        range,
                    )
                }
                ApplyOp::Actions { symbol, actions } => Checked::Actions(
                    wire::symbol(&symbol).map_err(at)?,
                    wire::actions_from_wire(actions).map_err(at)?,
                ),
            });
        }
        let w = &self.inner.writer;
        let mut report = ApplyReport::default();
        for op in checked {
            match op {
                Checked::Bars(b) => {
                    report.bars_written += b.len() as u64;
                    w.write(b).await?;
                }
                Checked::Delete(s, r) => report.bars_deleted += w.delete(&s, r).await?,
                Checked::Actions(s, a) => {
                    report.actions_written += a.len() as u64;
                    w.write_actions(&s, &a).await?;
                }
            }
            report.ops += 1;
        }
        Ok(report)
    }

    /// The primary's bars of a series, every field (`GET /api/v1/replication/bars`).
    pub async fn read_bars(
        &self,
        series: &SeriesKey,
        range: TimeRange,
    ) -> Result<Vec<crate::domain::Bar>, ReplicationError> {
        self.inner
            .primary
            .read(series, range)
            .await
            .map_err(|e| ReplicationError::Primary(e.to_string()))
    }

    /// The primary's corporate actions of a symbol (`GET /api/v1/replication/actions`).
    pub async fn read_actions(
        &self,
        symbol: &Symbol,
        range: TimeRange,
    ) -> Result<Vec<crate::domain::CorporateAction>, ReplicationError> {
        self.inner
            .primary
            .read_actions(symbol, range)
            .await
            .map_err(|e| ReplicationError::Primary(e.to_string()))
    }

    /// The primary's digests (`GET /api/v1/replication/digests`).
    pub fn primary(&self) -> &Arc<dyn Node> {
        &self.inner.primary
    }
}

/// What `GET /api/v1/nodes` shows of a verify: the report without the bucket list beyond 20.
fn verify_summary(report: &NodeVerify) -> serde_json::Value {
    let mut short = report.clone();
    short.differing.truncate(20);
    serde_json::to_value(short).unwrap_or_default()
}
