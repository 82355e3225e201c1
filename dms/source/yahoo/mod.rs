//! The Yahoo Finance source: `GET /v8/finance/chart/{symbol}`.
//!
//! # Layout
//! - `window.rs`: plans the `period1/period2` requests for a [`FetchRequest`] and enforces
//!   Yahoo's intraday windows before anything is sent;
//! - `client.rs`: the HTTP call and the status → [`SourceError`] mapping;
//! - `skeleton.rs` finds the parts of a response, `arrays.rs` reads its bar arrays (exactly, in
//!   one pass), `models.rs` holds the lenient wire types of the small parts (meta, events,
//!   error); all three private to this folder;
//! - [`parse`]: wire → domain bars and corporate actions, the timestamp rules, and which bars are
//!   dropped (no trade, out of range, still forming). Public for the benchmark.
//!
//! # Windows
//! 1m bars are served for the last 30 days, at most 8 days a request (DMS asks 7); 2m–30m for
//! 60 days; 1h for 730 days; daily and longer without limit. Windows count back from
//! [`FetchRequest::now`], less 15 minutes of margin. A range entirely older than its window is
//! refused with [`SourceError::InvalidRequest`] and nothing is sent; a range partly older is
//! clipped to the window, the cut is logged at WARN, and no page's `range` covers it, so it stays
//! a gap rather than being taken as confirmed empty. The end is clipped to `now`. Long ranges
//! become consecutive requests, streamed as pages in time order.
//!
//! # Gate
//! Every request, pings included, goes through one [`SourceGate`] per source: the shared rate
//! limiter, retries with backoff honouring `Retry-After` (429 and 503, capped by `pause_s`), and
//! the pause after repeated refusals.
//! A response is fetched and parsed inside one gate attempt, so a truncated or garbled body is
//! retried like a 5xx, and a response that fails to parse yields nothing at all. Parsing runs
//! on the blocking pool: a long response is tens of milliseconds of CPU.

mod arrays;
mod client;
mod models;
pub mod parse;
mod skeleton;
mod window;

use std::sync::Arc;
use std::time::Duration;

use futures::stream;

use self::client::{ChartClient, Span};
use self::parse::ChartSpec;
use self::window::Window;
use super::gate::{GatePolicy, SourceGate, SourceStatus};
use super::ratelimit::RateLimiter;
use super::{FetchRequest, Page, PageStream, Source, SourceError};
use crate::config::YahooConfig;
use crate::domain::{SourceKind, time};

pub use self::client::BuildError;

const SRC: SourceKind = SourceKind::Yahoo;

/// The symbol `ping` asks for: always listed, and a tiny response.
const PING_SYMBOL: &str = "^GSPC";

/// The Yahoo source. Cheap to clone; clones share the gate (and so the rate limit).
#[derive(Debug, Clone)]
pub struct YahooSource {
    client: ChartClient,
    /// Shared by every job fetching from Yahoo.
    gate: Arc<SourceGate>,
}

impl YahooSource {
    /// A source as configured: base URL, `requests_per_minute` (0 = unlimited), timeout,
    /// retries, pause policy and User-Agent from `sources.yahoo`.
    pub fn new(cfg: &YahooConfig) -> Result<YahooSource, BuildError> {
        let policy = GatePolicy {
            max_retries: cfg.max_retries,
            pause_after: cfg.pause_after_refusals,
            pause_for: Duration::from_secs(cfg.pause_s),
            ..GatePolicy::default()
        };
        YahooSource::with_policy(cfg, policy)
    }

    /// Like [`YahooSource::new`] with an explicit retry/pause policy (tests shorten backoffs).
    pub fn with_policy(cfg: &YahooConfig, policy: GatePolicy) -> Result<YahooSource, BuildError> {
        let limiter = RateLimiter::new(cfg.requests_per_minute, Duration::from_secs(60));
        Ok(YahooSource {
            client: ChartClient::new(cfg)?,
            gate: Arc::new(SourceGate::new(SRC, limiter, policy)),
        })
    }

    /// The gate every request passes through: its status, and `resume` for an operator.
    pub fn gate(&self) -> &SourceGate {
        &self.gate
    }
}

#[async_trait::async_trait]
impl Source for YahooSource {
    fn kind(&self) -> SourceKind {
        SRC
    }

    fn check(&self, req: &FetchRequest) -> Result<(), SourceError> {
        window::plan(req).map(|_| ())
    }

    fn fetch(&self, req: FetchRequest) -> PageStream {
        let plan = match window::plan(&req) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(
                    source = "yahoo",
                    symbol = req.series.symbol.as_str(),
                    interval = req.series.interval.as_str(),
                    error = %e,
                    "request refused before sending"
                );
                return Box::pin(stream::once(async move { Err(e) }));
            }
        };
        if let Some(clip) = plan.clipped {
            tracing::warn!(
                source = "yahoo",
                symbol = req.series.symbol.as_str(),
                interval = req.series.interval.as_str(),
                asked_start = %time::rfc3339(clip.asked.start()),
                asked_end = %time::rfc3339(clip.asked.end()),
                served_from = %time::rfc3339(clip.served_from),
                lookback_days = clip.lookback_days,
                "range clipped to what yahoo serves; the older part is not fetched"
            );
        }
        let job = Arc::new(WindowFetch {
            client: self.client.clone(),
            gate: self.gate.clone(),
            req,
        });
        let state = (plan.windows.into_iter(), false);
        Box::pin(stream::unfold(state, move |(mut windows, failed)| {
            let job = job.clone();
            async move {
                if failed {
                    return None;
                }
                let w = windows.next()?;
                let r = job.fetch(w).await;
                let failed = r.is_err();
                Some((r, (windows, failed)))
            }
        }))
    }

    async fn ping(&self) -> Result<String, SourceError> {
        let op = || async {
            let body = self
                .client
                .get(PING_SYMBOL, crate::domain::Interval::D1, Span::Range("1d"))
                .await?;
            parse::ping_summary(PING_SYMBOL, &body)
        };
        if self.gate.status().paused {
            // An operator's ping is how a paused source is checked and resumed: one attempt,
            // still under the shared rate limit.
            self.gate.limiter().acquire().await;
            let summary = op().await?;
            self.gate.resume();
            Ok(summary)
        } else {
            self.gate.call(true, op).await
        }
    }

    fn attach_events(&self, bus: crate::events::EventBus) {
        self.gate.attach_events(bus);
    }

    fn remember_requests(&self, dir: &std::path::Path) {
        let path = dir.join(format!("{}.window", self.kind()));
        if let Err(e) = self.gate.limiter().remember(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep the rate-limit window across restarts");
        }
    }

    fn status(&self) -> SourceStatus {
        self.gate.status()
    }
}

/// What one stream needs to fetch its windows.
struct WindowFetch {
    client: ChartClient,
    gate: Arc<SourceGate>,
    req: FetchRequest,
}

impl WindowFetch {
    /// Fetches and parses one window inside one gate call: a body that fails to parse is
    /// retried like any transient failure.
    async fn fetch(&self, w: Window) -> Result<Page, SourceError> {
        let symbol = self.req.series.symbol.as_str();
        let interval = self.req.series.interval;
        let span = Span::Period {
            period1: w.period1,
            period2: w.period2,
        };
        let started = std::time::Instant::now();
        let page = self
            .gate
            .call(true, || async move {
                let body = self.client.get(symbol, interval, span).await?;
                let symbol = symbol.to_string();
                let (market, now) = (self.req.market, self.req.now);
                tokio::task::spawn_blocking(move || {
                    let spec = ChartSpec {
                        symbol: &symbol,
                        interval,
                        range: w.range,
                        period2: w.period2,
                        now,
                        market,
                    };
                    let started = std::time::Instant::now();
                    parse::parse_chart(&body, &spec).map(|mut page| {
                        page.parse_time = started.elapsed();
                        page
                    })
                })
                .await
                .map_err(|e| SourceError::Remote {
                    src: SRC,
                    message: format!("parse task failed: {e}"),
                })?
            })
            .await;
        match &page {
            Ok(p) => tracing::debug!(
                source = "yahoo",
                symbol,
                interval = interval.as_str(),
                period1 = w.period1,
                period2 = w.period2,
                bars = p.bars.len(),
                actions = p.actions.len(),
                no_trade = p.dropped.no_trade,
                out_of_range = p.dropped.out_of_range,
                forming = p.dropped.forming,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "window fetched"
            ),
            Err(e) => tracing::warn!(
                source = "yahoo",
                symbol,
                interval = interval.as_str(),
                period1 = w.period1,
                period2 = w.period2,
                error = %e,
                "window failed"
            ),
        }
        page
    }
}
