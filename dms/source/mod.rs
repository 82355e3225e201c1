//! Sources: where bars come from. Yahoo Finance (HTTP), Futu OpenD (TCP) and files.
//!
//! A [`Source`] turns a [`FetchRequest`] (a series and a range) into a stream of [`Page`]s of
//! domain bars and corporate actions. Wire types never leave their fetcher: each source folder
//! holds its client, its wire models and the parse step from wire to domain. Pages keep memory
//! bounded: a ten-year minute backfill is consumed (validated, written) one page at a time.
//!
//! Every network source goes through a [`gate::SourceGate`]: one rate limiter per source shared
//! by every job, retries with exponential backoff and jitter honouring `Retry-After`, and a pause
//! when the source keeps refusing.

pub mod files;
pub mod futu;
pub mod gate;
pub mod ratelimit;
pub mod yahoo;

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;

use crate::domain::{Bar, CorporateAction, Market, SeriesKey, SourceKind, TimeRange};

/// Why a fetch failed. Messages name the source first: `yahoo: symbol XYZ not found`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The source does not know the symbol (Yahoo 404 "Not Found", Futu unknown security).
    #[error("{src}: symbol {symbol} not found")]
    UnknownSymbol { src: SourceKind, symbol: String },
    /// The request cannot succeed as asked (outside Yahoo's intraday windows, 400/422, an
    /// interval the source does not serve). Not retried.
    #[error("{src}: invalid request: {message}")]
    InvalidRequest { src: SourceKind, message: String },
    /// The source refused for rate (HTTP 429, Futu frequency error). Retried after the delay.
    #[error("{src}: rate limited{}", retry_after.map(|d| format!(", retry in {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        src: SourceKind,
        retry_after: Option<Duration>,
    },
    /// The source is paused after refusing too often; nothing was sent.
    #[error("{src}: paused after repeated refusals, resumes in {}s", resumes_in.as_secs())]
    Paused {
        src: SourceKind,
        resumes_in: Duration,
    },
    /// A transient failure: connection, timeout, 5xx, HTML or truncated body. Retried.
    #[error("{src}: {message}")]
    Transient { src: SourceKind, message: String },
    /// The source answered with an error that retrying will not fix (Futu `retType != 0`,
    /// quota exhausted, a body that parses but breaks the protocol).
    #[error("{src}: {message}")]
    Remote { src: SourceKind, message: String },
}

impl SourceError {
    /// Whether retrying the same request later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::RateLimited { .. } | SourceError::Transient { .. }
        )
    }

    /// The `outcome` label of `dms_fetch_requests_total` for this error.
    pub fn outcome(&self) -> &'static str {
        match self {
            SourceError::RateLimited { .. } | SourceError::Paused { .. } => "rate_limited",
            SourceError::UnknownSymbol { .. } | SourceError::InvalidRequest { .. } => {
                "client_error"
            }
            SourceError::Transient { message, .. } if message.contains("timed out") => "timeout",
            SourceError::Transient { message, .. } if message.contains("parse") => "parse_error",
            SourceError::Transient { .. } => "server_error",
            SourceError::Remote { .. } => "server_error",
        }
    }
}

/// What to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchRequest {
    pub series: SeriesKey,
    /// Half-open; sources never return bars outside it.
    pub range: TimeRange,
    /// The market (for session dates and local-time conversion), from the universe entry or the
    /// symbol's suffix.
    pub market: Option<Market>,
    /// Overrides the rule-derived Futu code (`HK.00700`).
    pub futu_code: Option<String>,
    /// The clock, UTC epoch seconds: intraday windows are relative to it and the still-forming
    /// bar is judged by it.
    pub now: i64,
}

/// Bars a source dropped on purpose while parsing, counted so the job can report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    /// All-null bars: no trade in that interval.
    pub no_trade: u64,
    /// Bars at or after the requested end (Yahoo's phantom bar).
    pub out_of_range: u64,
    /// The still-forming bar of an open session.
    pub forming: u64,
}

impl std::ops::AddAssign for Dropped {
    fn add_assign(&mut self, o: Dropped) {
        self.no_trade += o.no_trade;
        self.out_of_range += o.out_of_range;
        self.forming += o.forming;
    }
}

/// One response's worth of data for one series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The sub-range this page answers (a request window); empty pages still say which span the
    /// source confirmed has no bars.
    pub range: Option<TimeRange>,
    /// Raw domain bars, not yet validated, sorted by `ts`.
    pub bars: Vec<Bar>,
    pub actions: Vec<CorporateAction>,
    pub dropped: Dropped,
    /// Time spent turning the response into bars (the rest of a page's latency is fetching).
    pub parse_time: Duration,
}

pub type PageStream = Pin<Box<dyn Stream<Item = Result<Page, SourceError>> + Send>>;

/// A source of bars.
#[async_trait::async_trait]
pub trait Source: Send + Sync + 'static {
    fn kind(&self) -> SourceKind;

    /// Streams the pages answering `req`, in time order. Each page is either wholly parsed or an
    /// error: nothing partial comes out of a response that failed to parse.
    fn fetch(&self, req: FetchRequest) -> PageStream;

    /// Checks connectivity (and login, for Futu); returns a human-readable summary.
    async fn ping(&self) -> Result<String, SourceError>;

    /// Rate-limit and pause state, for `GET /api/v1/sources`.
    fn status(&self) -> gate::SourceStatus;
}
