//! Sources: where bars come from. Yahoo Finance (HTTP), Futu OpenD (TCP) and files.
//!
//! A [`Source`] turns a [`FetchRequest`] (a series and a range) into a stream of [`Page`]s of
//! domain bars and corporate actions. Wire types never leave their fetcher: each source folder
//! holds its client, its wire models and the parse step from wire to domain. Pages keep memory
//! bounded: a ten-year minute backfill is consumed (validated, written) one page at a time.
//!
//! Every network source goes through a [`gate::SourceGate`]: one rate limiter per source shared
//! by every job, retries with exponential backoff and jitter honouring `Retry-After` (capped by
//! the source's `pause_s`), and a pause when the source keeps refusing.

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
///
/// Each variant is one kind of failure, so that retrying ([`SourceError::is_retryable`]) and
/// the `outcome` label of `dms_fetch_requests_total` ([`SourceError::outcome`]) are decided
/// by the variant alone, never by the text of a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The source does not know the symbol (Yahoo 404 "Not Found", Futu unknown security).
    #[error("{src}: symbol {symbol} not found")]
    UnknownSymbol { src: SourceKind, symbol: String },
    /// The request cannot succeed as asked (outside Yahoo's intraday windows, 400/422, an
    /// interval the source does not serve). Not retried.
    #[error("{src}: invalid request: {message}")]
    InvalidRequest { src: SourceKind, message: String },
    /// The source refused for rate (HTTP 429, Futu frequency error). Retried after the delay,
    /// which the gate caps (it is the source's to choose, not to impose).
    #[error("{src}: rate limited{}", retry_in(retry_after))]
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
    /// A transient failure of the source or of the way to it: connection refused or reset,
    /// 5xx, 408, a maintenance page, a wrong answer that a retry may fix. Retried, not before
    /// `retry_after` when the source sent one (a 503's `Retry-After`).
    #[error("{src}: {message}{}", retry_in(retry_after))]
    Transient {
        src: SourceKind,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No answer in time: connecting, the request, or the body. Retried.
    #[error("{src}: {message}")]
    Timeout { src: SourceKind, message: String },
    /// An answer that does not parse: truncated or garbled JSON, arrays that disagree, an
    /// undecodable reply. Retried: a cut body is usually a transfer problem.
    #[error("{src}: {message}")]
    Malformed { src: SourceKind, message: String },
    /// The source answered with an error that retrying will not fix (Futu `retType != 0`,
    /// quota exhausted, a body that parses but breaks the protocol).
    #[error("{src}: {message}")]
    Remote { src: SourceKind, message: String },
}

fn retry_in(d: &Option<Duration>) -> String {
    d.map(|d| format!(", retry in {}s", d.as_secs()))
        .unwrap_or_default()
}

/// The `outcome` label of `dms_fetch_requests_total`: what became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FetchOutcome {
    Ok,
    RateLimited,
    ClientError,
    ServerError,
    Timeout,
    ParseError,
}

impl FetchOutcome {
    pub const ALL: [FetchOutcome; 6] = [
        FetchOutcome::Ok,
        FetchOutcome::RateLimited,
        FetchOutcome::ClientError,
        FetchOutcome::ServerError,
        FetchOutcome::Timeout,
        FetchOutcome::ParseError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FetchOutcome::Ok => "ok",
            FetchOutcome::RateLimited => "rate_limited",
            FetchOutcome::ClientError => "client_error",
            FetchOutcome::ServerError => "server_error",
            FetchOutcome::Timeout => "timeout",
            FetchOutcome::ParseError => "parse_error",
        }
    }

    /// The outcome of a request's result.
    pub fn of<T>(r: &Result<T, SourceError>) -> FetchOutcome {
        match r {
            Ok(_) => FetchOutcome::Ok,
            Err(e) => e.outcome(),
        }
    }
}

impl std::fmt::Display for FetchOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SourceError {
    /// A [`SourceError::Transient`] without a `Retry-After`.
    pub fn transient(src: SourceKind, message: impl Into<String>) -> SourceError {
        SourceError::Transient {
            src,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Whether retrying the same request later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::RateLimited { .. }
                | SourceError::Transient { .. }
                | SourceError::Timeout { .. }
                | SourceError::Malformed { .. }
        )
    }

    /// How long the source asked to wait before the next request, as it asked it.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::RateLimited { retry_after, .. }
            | SourceError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The `outcome` label of `dms_fetch_requests_total` for this error, by variant.
    pub fn outcome(&self) -> FetchOutcome {
        match self {
            SourceError::RateLimited { .. } | SourceError::Paused { .. } => {
                FetchOutcome::RateLimited
            }
            SourceError::UnknownSymbol { .. } | SourceError::InvalidRequest { .. } => {
                FetchOutcome::ClientError
            }
            SourceError::Transient { .. } | SourceError::Remote { .. } => FetchOutcome::ServerError,
            SourceError::Timeout { .. } => FetchOutcome::Timeout,
            SourceError::Malformed { .. } => FetchOutcome::ParseError,
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
/// Serialisable both ways (job counters are persisted); missing fields read as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Dropped {
    /// All-null bars: no trade in that interval.
    pub no_trade: u64,
    /// Bars at or after the requested end (Yahoo's phantom bar).
    pub out_of_range: u64,
    /// The still-forming bar of an open session.
    pub forming: u64,
}

impl Dropped {
    /// Every bar dropped, whatever the reason.
    pub fn total(&self) -> u64 {
        self.no_trade + self.out_of_range + self.forming
    }
}

impl std::ops::Add for Dropped {
    type Output = Dropped;

    fn add(self, o: Dropped) -> Dropped {
        Dropped {
            no_trade: self.no_trade + o.no_trade,
            out_of_range: self.out_of_range + o.out_of_range,
            forming: self.forming + o.forming,
        }
    }
}

impl std::ops::AddAssign for Dropped {
    fn add_assign(&mut self, o: Dropped) {
        *self = *self + o;
    }
}

impl std::iter::Sum for Dropped {
    fn sum<I: Iterator<Item = Dropped>>(iter: I) -> Dropped {
        iter.fold(Dropped::default(), |a, b| a + b)
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

    /// Refuses, without sending anything, a request this source would refuse (a range outside
    /// what it serves). Jobs call it before they are created.
    fn check(&self, req: &FetchRequest) -> Result<(), SourceError> {
        let _ = req;
        Ok(())
    }

    /// Checks connectivity (and login, for Futu); returns a human-readable summary.
    async fn ping(&self) -> Result<String, SourceError>;

    /// Rate-limit and pause state, for `GET /api/v1/sources`.
    fn status(&self) -> gate::SourceStatus;

    /// Publishes the source's pauses and resumptions on `bus` (sources behind a
    /// [`gate::SourceGate`] forward this to it).
    fn attach_events(&self, bus: crate::events::EventBus) {
        let _ = bus;
    }

    /// Keeps the source's rate-limit window in `dir` across restarts (sources behind a
    /// [`gate::SourceGate`] with a limit forward this to its limiter, as `<kind>.window`).
    fn remember_requests(&self, dir: &std::path::Path) {
        let _ = dir;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_counts_add_up_and_survive_serde_both_ways() {
        let a = Dropped {
            no_trade: 1,
            out_of_range: 2,
            forming: 3,
        };
        let mut b = a + a;
        b += a;
        assert_eq!(
            b,
            Dropped {
                no_trade: 3,
                out_of_range: 6,
                forming: 9
            }
        );
        assert_eq!([a, a, a].into_iter().sum::<Dropped>(), b);
        assert_eq!(b.total(), 18);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, r#"{"no_trade":3,"out_of_range":6,"forming":9}"#);
        assert_eq!(serde_json::from_str::<Dropped>(&json).unwrap(), b);
        // Counters persisted before a field existed still load.
        assert_eq!(
            serde_json::from_str::<Dropped>(r#"{"no_trade":4}"#).unwrap(),
            Dropped {
                no_trade: 4,
                ..Dropped::default()
            }
        );
    }

    #[test]
    fn outcome_labels_are_the_six_of_the_metric() {
        let labels: Vec<&str> = FetchOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            labels,
            [
                "ok",
                "rate_limited",
                "client_error",
                "server_error",
                "timeout",
                "parse_error"
            ]
        );
        assert_eq!(FetchOutcome::of::<()>(&Ok(())), FetchOutcome::Ok);
        // By variant, whatever the message says.
        let e = SourceError::transient(SourceKind::Yahoo, "parse error: timed out");
        assert_eq!(e.outcome(), FetchOutcome::ServerError);
        assert_eq!(e.to_string(), "yahoo: parse error: timed out");
        let e = SourceError::Transient {
            src: SourceKind::Yahoo,
            message: "http 503 service unavailable for AAPL".into(),
            retry_after: Some(Duration::from_secs(120)),
        };
        assert_eq!(
            e.to_string(),
            "yahoo: http 503 service unavailable for AAPL, retry in 120s"
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(120)));
    }
}
