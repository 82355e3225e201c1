//! [`Node`]: what replication reads from and writes to, whatever it is — the primary store, a
//! backup node of `storage.backups` (`influxdb`, `embedded` or a peer `dms`), a replica's own
//! store behind its writer, or the primary a replica pulls from.
//!
//! - [`StoreNode`]: a [`Store`] (an InfluxDB or a second embedded store), opened on first use
//!   and again after a failed open, so a node that is down at start-up is picked up when it
//!   returns (and an InfluxDB database is created then).
//! - [`PeerNode`]: another DMS over HTTP: writes through `POST /api/v1/replication/apply`
//!   (admin token), reads and digests through `/api/v1/replication/*` (computed on the peer).
//! - [`WriterNode`]: this instance's own store for a replica: reads from the store, writes
//!   through [`Writer::for_replication`] so that the cache and the change log follow.
//!
//! Errors are [`NodeError::Unavailable`] (retried with backoff) or [`NodeError::Rejected`]
//! (the same request would fail the same way; retried only at the next round).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::wire::{
    ApplyOp, ApplyReport, ApplyRequest, DigestsAnswer, WireAction, WireBars, WireSeries,
};
use crate::config::{InfluxConfig, NodeConfig, NodeTarget, Secret, secret_from_env};
use crate::domain::{Bar, CorporateAction, SeriesKey, Symbol, TimeRange};
use crate::ingest::{WriteError, Writer};
use crate::store::embedded::EmbeddedStore;
use crate::store::influx::InfluxStore;
use crate::store::{BucketGrid, RangeDigest, Store, StoreError, StoreHealth};
use crate::validate::ValidatedBatch;

/// Why a node operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The node cannot be reached or is failing now: retried with backoff.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node refused the request.
    #[error("rejected: {0}")]
    Rejected(String),
}

impl NodeError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, NodeError::Unavailable(_))
    }
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> NodeError {
        match e {
            StoreError::Unavailable { .. } => NodeError::Unavailable(e.to_string()),
            _ => NodeError::Rejected(e.to_string()),
        }
    }
}

impl From<WriteError> for NodeError {
    fn from(e: WriteError) -> NodeError {
        match e {
            WriteError::Store(s) => s.into(),
            WriteError::Meta(_) | WriteError::Aborted(_) | WriteError::Spool(_) => {
                NodeError::Unavailable(e.to_string())
            }
            WriteError::ReadOnly(_) => NodeError::Rejected(e.to_string()),
        }
    }
}

/// Something replication reads bars from or writes bars to. Every method is idempotent.
#[async_trait]
pub trait Node: Send + Sync + 'static {
    /// `influxdb`, `embedded` or `dms`.
    fn kind(&self) -> &'static str;
    /// Where it is (a URL or path, never with credentials).
    fn location(&self) -> String;
    async fn ping(&self) -> Result<StoreHealth, NodeError>;
    /// Bars with every field, sorted by `ts`.
    async fn read(&self, series: &SeriesKey, range: TimeRange) -> Result<Vec<Bar>, NodeError>;
    async fn read_actions(
        &self,
        symbol: &Symbol,
        range: TimeRange,
    ) -> Result<Vec<CorporateAction>, NodeError>;
    async fn digests(
        &self,
        series: &SeriesKey,
        ranges: &[TimeRange],
    ) -> Result<Vec<RangeDigest>, NodeError>;
    async fn bucket_digests(
        &self,
        series: &SeriesKey,
        range: TimeRange,
        grid: BucketGrid,
    ) -> Result<Vec<(i64, RangeDigest)>, NodeError>;
    async fn series_keys(&self) -> Result<Vec<SeriesKey>, NodeError>;
    async fn write(&self, batch: &ValidatedBatch) -> Result<(), NodeError>;
    async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, NodeError>;
    async fn write_actions(
        &self,
        symbol: &Symbol,
        actions: &[CorporateAction],
    ) -> Result<(), NodeError>;
}

/// Builds the node a `storage.backups` entry names.
pub fn from_config(config: &NodeConfig) -> Arc<dyn Node> {
    match &config.target {
        NodeTarget::Influxdb(c) => Arc::new(StoreNode::influx(c.clone())),
        NodeTarget::Embedded { path } => Arc::new(StoreNode::embedded(path.clone())),
        NodeTarget::Dms { url, token_env } => Arc::new(PeerNode::new(
            url,
            secret_from_env(token_env.as_deref()),
            Duration::from_secs(30),
        )),
    }
}

enum Opener {
    Influx(Box<InfluxConfig>),
    Embedded(PathBuf),
}

/// A store as a node, opened on first use (and again after a failed open).
pub struct StoreNode {
    kind: &'static str,
    location: String,
    opener: Option<Opener>,
    store: OnceCell<Arc<dyn Store>>,
}

impl StoreNode {
    /// A store that is already open (the primary).
    pub fn open(store: Arc<dyn Store>, location: impl Into<String>) -> StoreNode {
        StoreNode {
            kind: store.kind(),
            location: location.into(),
            opener: None,
            store: OnceCell::new_with(Some(store)),
        }
    }

    pub fn influx(config: InfluxConfig) -> StoreNode {
        let mut location = url::Url::parse(&config.url)
            .map(|mut u| {
                let _ = u.set_password(None);
                let _ = u.set_username("");
                u.to_string()
            })
            .unwrap_or_else(|_| "influxdb".into());
        if let Some(db) = config.database.as_deref().or(config.bucket.as_deref()) {
            location = format!("{location} ({db})");
        }
        StoreNode {
            kind: "influxdb",
            location,
            opener: Some(Opener::Influx(Box::new(config))),
            store: OnceCell::new(),
        }
    }

    pub fn embedded(path: PathBuf) -> StoreNode {
        StoreNode {
            kind: "embedded",
            location: path.display().to_string(),
            opener: Some(Opener::Embedded(path)),
            store: OnceCell::new(),
        }
    }

    async fn store(&self) -> Result<&Arc<dyn Store>, NodeError> {
        self.store
            .get_or_try_init(|| async {
                let store: Arc<dyn Store> = match &self.opener {
                    Some(Opener::Influx(c)) => Arc::new(InfluxStore::connect(c).await?),
                    Some(Opener::Embedded(path)) => {
                        let path = path.clone();
                        let opened =
                            tokio::task::spawn_blocking(move || EmbeddedStore::open(&path))
                                .await
                                .map_err(|e| NodeError::Unavailable(format!("open task: {e}")))?;
                        Arc::new(opened?)
                    }
                    None => return Err(NodeError::Unavailable("store is not open".into())),
                };
                Ok::<_, NodeError>(store)
            })
            .await
    }
}

#[async_trait]
impl Node for StoreNode {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    async fn ping(&self) -> Result<StoreHealth, NodeError> {
        Ok(self.store().await?.ping().await?)
    }

    async fn read(&self, series: &SeriesKey, range: TimeRange) -> Result<Vec<Bar>, NodeError> {
        Ok(self.store().await?.read(series, range).await?)
    }

    async fn read_actions(
        &self,
        symbol: &Symbol,
        range: TimeRange,
    ) -> Result<Vec<CorporateAction>, NodeError> {
        Ok(self.store().await?.read_actions(symbol, range).await?)
    }

    async fn digests(
        &self,
        series: &SeriesKey,
        ranges: &[TimeRange],
    ) -> Result<Vec<RangeDigest>, NodeError> {
        Ok(self.store().await?.digests(series, ranges).await?)
    }

    async fn bucket_digests(
        &self,
        series: &SeriesKey,
        range: TimeRange,
        grid: BucketGrid,
    ) -> Result<Vec<(i64, RangeDigest)>, NodeError> {
        Ok(self
            .store()
            .await?
            .bucket_digests(series, range, grid)
            .await?)
    }

    async fn series_keys(&self) -> Result<Vec<SeriesKey>, NodeError> {
        Ok(self.store().await?.series_keys().await?)
    }

    async fn write(&self, batch: &ValidatedBatch) -> Result<(), NodeError> {
        Ok(self.store().await?.write(batch).await?)
    }

    async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, NodeError> {
        Ok(self.store().await?.delete(series, range).await?)
    }

    async fn write_actions(
        &self,
        symbol: &Symbol,
        actions: &[CorporateAction],
    ) -> Result<(), NodeError> {
        Ok(self.store().await?.write_actions(symbol, actions).await?)
    }
}

/// This instance's own store, written through its writer: what a replica applies to.
pub struct WriterNode {
    writer: Writer,
}

impl WriterNode {
    pub fn new(writer: &Writer) -> WriterNode {
        WriterNode {
            writer: writer.for_replication(),
        }
    }
}

#[async_trait]
impl Node for WriterNode {
    fn kind(&self) -> &'static str {
        self.writer.primary().kind()
    }

    fn location(&self) -> String {
        "local".into()
    }

    async fn ping(&self) -> Result<StoreHealth, NodeError> {
        Ok(self.writer.primary().ping().await?)
    }

    async fn read(&self, series: &SeriesKey, range: TimeRange) -> Result<Vec<Bar>, NodeError> {
        Ok(self.writer.primary().read(series, range).await?)
    }

    async fn read_actions(
        &self,
        symbol: &Symbol,
        range: TimeRange,
    ) -> Result<Vec<CorporateAction>, NodeError> {
        Ok(self.writer.primary().read_actions(symbol, range).await?)
    }

    async fn digests(
        &self,
        series: &SeriesKey,
        ranges: &[TimeRange],
    ) -> Result<Vec<RangeDigest>, NodeError> {
        Ok(self.writer.primary().digests(series, ranges).await?)
    }

    async fn bucket_digests(
        &self,
        series: &SeriesKey,
        range: TimeRange,
        grid: BucketGrid,
    ) -> Result<Vec<(i64, RangeDigest)>, NodeError> {
        Ok(self
            .writer
            .primary()
            .bucket_digests(series, range, grid)
            .await?)
    }

    async fn series_keys(&self) -> Result<Vec<SeriesKey>, NodeError> {
        Ok(self.writer.primary().series_keys().await?)
    }

    async fn write(&self, batch: &ValidatedBatch) -> Result<(), NodeError> {
        self.writer.write(batch).await?;
        Ok(())
    }

    async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, NodeError> {
        Ok(self.writer.delete(series, range).await?)
    }

    async fn write_actions(
        &self,
        symbol: &Symbol,
        actions: &[CorporateAction],
    ) -> Result<(), NodeError> {
        Ok(self.writer.write_actions(symbol, actions).await?)
    }
}

/// Another DMS over HTTP.
pub struct PeerNode {
    base: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl PeerNode {
    /// `base` is the peer's root URL (`http://host:11183`); `token` its admin token (or a read
    /// token, for a replica that only reads its primary).
    pub fn new(base: &str, token: Option<Secret>, timeout: Duration) -> PeerNode {
        PeerNode {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        }
    }

    /// Sends, and decodes a 2xx JSON answer; maps everything else to a [`NodeError`].
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, NodeError> {
        let resp = req
            .send()
            .await
            .map_err(|e| NodeError::Unavailable(format!("{what}: {}", transport(&e))))?;
        let status = resp.status();
        if status.is_success() {
            return resp
                .json()
                .await
                .map_err(|e| NodeError::Unavailable(format!("{what}: reading the answer: {e}")));
        }
        let body = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.chars().take(200).collect());
        let text = format!("{what}: {} {message}", status.as_u16());
        Err(
            if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                NodeError::Unavailable(text)
            } else {
                NodeError::Rejected(text)
            },
        )
    }

    async fn apply(&self, op: ApplyOp) -> Result<ApplyReport, NodeError> {
        let body = ApplyRequest { ops: vec![op] };
        self.call(
            self.request(reqwest::Method::POST, "/api/v1/replication/apply")
                .json(&body),
            "apply",
        )
        .await
    }

    fn series_query(series: &SeriesKey, range: TimeRange) -> Vec<(&'static str, String)> {
        vec![
            ("symbol", series.symbol.to_string()),
            ("interval", series.interval.as_str().to_string()),
            ("start", range.start().to_string()),
            ("end", range.end().to_string()),
        ]
    }
}

/// A transport error in one line, with its cause (`connection refused`, `timed out`).
fn transport(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s = format!("{s}: {inner}");
        source = inner.source();
    }
    s
}

#[async_trait]
impl Node for PeerNode {
    fn kind(&self) -> &'static str {
        "dms"
    }

    fn location(&self) -> String {
        self.base.clone()
    }

    async fn ping(&self) -> Result<StoreHealth, NodeError> {
        let resp = self
            .request(reqwest::Method::GET, "/health")
            .send()
            .await
            .map_err(|e| NodeError::Unavailable(format!("health: {}", transport(&e))))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(NodeError::Unavailable(format!(
                "health: {} (its primary store: {})",
                status.as_u16(),
                body["primary"]["error"].as_str().unwrap_or("unreachable")
            )));
        }
        Ok(StoreHealth {
            kind: "dms",
            location: self.base.clone(),
            version: body["version"].as_str().map(str::to_string),
        })
    }

    async fn read(&self, series: &SeriesKey, range: TimeRange) -> Result<Vec<Bar>, NodeError> {
        let bars: WireBars = self
            .call(
                self.request(reqwest::Method::GET, "/api/v1/replication/bars")
                    .query(&PeerNode::series_query(series, range)),
                "bars",
            )
            .await?;
        bars.into_bars()
            .map_err(|e| NodeError::Rejected(format!("bars: {e}")))
    }

    async fn read_actions(
        &self,
        symbol: &Symbol,
        range: TimeRange,
    ) -> Result<Vec<CorporateAction>, NodeError> {
        let actions: Vec<WireAction> = self
            .call(
                self.request(reqwest::Method::GET, "/api/v1/replication/actions")
                    .query(&[
                        ("symbol", symbol.to_string()),
                        ("start", range.start().to_string()),
                        ("end", range.end().to_string()),
                    ]),
                "actions",
            )
            .await?;
        super::wire::actions_from_wire(actions)
            .map_err(|e| NodeError::Rejected(format!("actions: {e}")))
    }

    async fn digests(
        &self,
        series: &SeriesKey,
        ranges: &[TimeRange],
    ) -> Result<Vec<RangeDigest>, NodeError> {
        let mut out = Vec::with_capacity(ranges.len());
        // A query string holds about a thousand ranges comfortably.
        for part in ranges.chunks(500) {
            let list: Vec<String> = part
                .iter()
                .map(|r| format!("{}_{}", r.start(), r.end()))
                .collect();
            let answer: DigestsAnswer = self
                .call(
                    self.request(reqwest::Method::GET, "/api/v1/replication/digests")
                        .query(&[
                            ("symbol", series.symbol.to_string()),
                            ("interval", series.interval.as_str().to_string()),
                            ("ranges", list.join(",")),
                        ]),
                    "digests",
                )
                .await?;
            if answer.digests.len() != part.len() {
                return Err(NodeError::Rejected(format!(
                    "digests: asked for {} ranges, got {}",
                    part.len(),
                    answer.digests.len()
                )));
            }
            out.extend(answer.digests);
        }
        Ok(out)
    }

    async fn bucket_digests(
        &self,
        series: &SeriesKey,
        range: TimeRange,
        grid: BucketGrid,
    ) -> Result<Vec<(i64, RangeDigest)>, NodeError> {
        let mut q = PeerNode::series_query(series, range);
        q.push(("width", grid.width.to_string()));
        q.push(("offset", grid.offset.to_string()));
        let answer: DigestsAnswer = self
            .call(
                self.request(reqwest::Method::GET, "/api/v1/replication/digests")
                    .query(&q),
                "digests",
            )
            .await?;
        Ok(answer.buckets)
    }

    async fn series_keys(&self) -> Result<Vec<SeriesKey>, NodeError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            series: Vec<WireSeries>,
        }
        let answer: Answer = self
            .call(
                self.request(reqwest::Method::GET, "/api/v1/replication/series"),
                "series",
            )
            .await?;
        answer
            .series
            .iter()
            .map(|s| {
                s.key()
                    .map_err(|e| NodeError::Rejected(format!("series: {e}")))
            })
            .collect()
    }

    async fn write(&self, batch: &ValidatedBatch) -> Result<(), NodeError> {
        let s = batch.series();
        self.apply(ApplyOp::Bars {
            symbol: s.symbol.to_string(),
            interval: s.interval,
            bars: WireBars::from_bars(batch.bars()),
        })
        .await?;
        Ok(())
    }

    async fn delete(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, NodeError> {
        Ok(self
            .apply(ApplyOp::Delete {
                symbol: series.symbol.to_string(),
                interval: series.interval,
                start: range.start(),
                end: range.end(),
            })
            .await?
            .bars_deleted)
    }

    async fn write_actions(
        &self,
        symbol: &Symbol,
        actions: &[CorporateAction],
    ) -> Result<(), NodeError> {
        self.apply(ApplyOp::Actions {
            symbol: symbol.to_string(),
            actions: actions.iter().map(WireAction::from_action).collect(),
        })
        .await?;
        Ok(())
    }
}
