//! The replica's side: pulling the primary's change log (`replication: { role: replica,
//! primary_url, token_env }`).
//!
//! A round asks `GET {primary_url}/api/v1/replication/changes?since=POS&limit=N&wait_s=W`
//! (the primary holds the request up to `W` seconds while nothing new is settled), applies the
//! page through this instance's own writer ([`WriterNode`]: the reader cache is invalidated
//! and the replica's change log records every change, so a replica can have backups of its
//! own), and only then stores the page's `next` as its position (the ack of the reserved node
//! name [`PRIMARY_POSITION`]). A replica stopped in the middle of a page starts that page
//! again: every unit is idempotent.
//!
//! Units the page carries bars for are upserted; the others are read from the primary
//! (`/api/v1/replication/bars`, in windows) or, for replace units, reconciled against the
//! primary's digests (`/api/v1/replication/digests`), exactly as the primary ships to a node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::node::{Node, NodeError, PeerNode, WriterNode};
use super::reconcile::{Pair, Tuning};
use super::wire::{self, ChangesPage};
use crate::config::Secret;
use crate::domain::{SeriesKey, TimeRange};
use crate::ingest::Writer;
use crate::store::meta::{MetaDb, MetaError};

/// The `node_acks` name under which a replica keeps its position in the primary's log.
pub const PRIMARY_POSITION: &str = "<primary>";

/// How long the primary may hold a pull while nothing is new.
pub const WAIT_S: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("primary {url}: {source}")]
    Primary { url: String, source: NodeError },
    #[error("primary {url}: {message}")]
    Page { url: String, message: String },
    #[error("applying the primary's changes: {0}")]
    Apply(NodeError),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// What the replica knows about its pulling.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PullState {
    pub primary_url: String,
    pub reachable: Option<bool>,
    /// The primary's sequence this replica has applied up to.
    pub position: u64,
    /// The primary's newest sequence at the last page.
    pub primary_last_seq: u64,
    pub last_error: Option<String>,
    pub last_ok_at: Option<i64>,
}

/// A replica's puller.
pub struct Puller {
    pub url: String,
    http: reqwest::Client,
    token: Option<Secret>,
    /// The primary as a node (reads and digests for units the page does not carry).
    pub source: Arc<dyn Node>,
    pub target: Arc<dyn Node>,
    pub meta: MetaDb,
    pub tuning: Tuning,
    /// A std `Mutex`, never held across an `.await`.
    pub state: Mutex<PullState>,
}

impl Puller {
    pub fn new(url: &str, token: Option<Secret>, writer: &Writer, tuning: Tuning) -> Puller {
        let url = url.trim_end_matches('/').to_string();
        Puller {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(WAIT_S + 60))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            source: Arc::new(PeerNode::new(&url, token.clone(), Duration::from_secs(60))),
            target: Arc::new(WriterNode::new(writer)),
            meta: writer.meta().clone(),
            token,
            state: Mutex::new(PullState {
                primary_url: url.clone(),
                ..PullState::default()
            }),
            url,
            tuning,
        }
    }

    pub fn state(&self) -> PullState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut PullState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }

    async fn page(&self, since: u64, wait_s: u64) -> Result<ChangesPage, PullError> {
        let mut req = self
            .http
            .get(format!("{}/api/v1/replication/changes", self.url))
            .query(&[
                ("since", since.to_string()),
                ("limit", self.tuning.window_changes.to_string()),
                ("wait_s", wait_s.to_string()),
            ]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let primary = |source| PullError::Primary {
            url: self.url.clone(),
            source,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| primary(NodeError::Unavailable(e.to_string())))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let e = format!(
                "changes: {} {}",
                status.as_u16(),
                body.chars().take(200).collect::<String>()
            );
            return Err(primary(if status.is_server_error() {
                NodeError::Unavailable(e)
            } else {
                NodeError::Rejected(e)
            }));
        }
        resp.json().await.map_err(|e| PullError::Page {
            url: self.url.clone(),
            message: format!("reading a page of changes: {e}"),
        })
    }

    /// Pulls pages until one comes back empty (after waiting up to `wait_s` for it); returns
    /// the changes applied.
    pub async fn round(&self, wait_s: u64, cancel: &CancellationToken) -> Result<u64, PullError> {
        let mut applied = 0;
        loop {
            let since = self.meta.acked(PRIMARY_POSITION).await?;
            let wait = if applied == 0 { wait_s } else { 0 };
            let page = tokio::select! {
                p = self.page(since, wait) => p,
                _ = cancel.cancelled() => return Ok(applied),
            };
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    self.update(|s| {
                        s.reachable = Some(false);
                        s.last_error = Some(e.to_string());
                    });
                    return Err(e);
                }
            };
            self.update(|s| {
                s.reachable = Some(true);
                s.primary_last_seq = page.last_seq;
                s.position = since;
            });
            if page.changes.is_empty() || page.next <= since {
                return Ok(applied);
            }
            // Stopping here (a shutdown) leaves the position where it was: the page is
            // applied again, idempotently, next time.
            let done = tokio::select! {
                r = self.apply(&page) => r,
                _ = cancel.cancelled() => return Ok(applied),
            };
            if let Err(e) = done {
                self.update(|s| s.last_error = Some(e.to_string()));
                return Err(e);
            }
            self.meta.set_acked(PRIMARY_POSITION, page.next).await?;
            applied += page.changes.len() as u64;
            self.update(|s| {
                s.position = page.next;
                s.last_ok_at = Some(chrono::Utc::now().timestamp());
                s.last_error = None;
            });
            tracing::debug!(
                position = page.next,
                changes = page.changes.len(),
                "replicated a page of changes"
            );
        }
    }

    async fn apply(&self, page: &ChangesPage) -> Result<(), PullError> {
        let pair = Pair {
            src: self.source.clone(),
            dst: self.target.clone(),
            label: "local".into(),
            tuning: self.tuning.clone(),
        };
        let bad = |e: wire::WireError| PullError::Page {
            url: self.url.clone(),
            message: e.to_string(),
        };
        for u in &page.units {
            let series = SeriesKey::new(wire::symbol(&u.symbol).map_err(bad)?, u.interval);
            let range = TimeRange::new(u.start, u.end).map_err(|e| PullError::Page {
                url: self.url.clone(),
                message: e.to_string(),
            })?;
            let result = match (&u.bars, u.replace) {
                (Some(bars), false) => {
                    let bars = bars.clone().into_bars().map_err(bad)?;
                    pair.write_bars(&series, bars).await.map(|_| ())
                }
                (_, true) => pair.reconcile(&series, range, true).await.map(|_| ()),
                (None, false) => pair.copy_range(&series, range).await.map(|_| ()),
            };
            result.map_err(PullError::Apply)?;
        }
        for a in &page.actions {
            let symbol = wire::symbol(&a.symbol).map_err(bad)?;
            let actions = wire::actions_from_wire(a.actions.clone()).map_err(bad)?;
            if !actions.is_empty() {
                self.target
                    .write_actions(&symbol, &actions)
                    .await
                    .map_err(PullError::Apply)?;
            }
        }
        Ok(())
    }

    /// The replica's task in `dms serve`: pull rounds, long-polling the primary, backing off
    /// while it fails.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let started = tokio::time::Instant::now();
            match self.round(WAIT_S, &shutdown).await {
                // A primary that answers at once with nothing (it does not hold the request)
                // is asked again after a pause, not in a loop.
                Ok(0) if started.elapsed() < Duration::from_millis(200) => {
                    failures = 0;
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(self.tuning.poll.min(Duration::from_secs(1))) => {}
                    }
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(primary = %self.url, error = %e, "pulling from the primary failed; retrying");
                    let wait = (self.tuning.min_backoff * 2u32.pow(failures.min(16)))
                        .min(self.tuning.max_backoff);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }
}
