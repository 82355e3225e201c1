//! The HTTP side of the chart endpoint: builds `GET {base}/v8/finance/chart/{symbol}?…`, sends
//! it with a timeout, and turns the status and body into bytes or a [`SourceError`]. It does
//! not retry or rate-limit: every call goes through the source's `SourceGate`, which does.
//!
//! Status mapping (research §1.4):
//! - 2xx → the body (HTML bodies and `chart.error` inside a 200 are [`super::parse`]'s job);
//! - 404 with Yahoo's JSON `chart.error` → [`SourceError::UnknownSymbol`]; a 404 without it
//!   (seen during outages) → transient;
//! - 400 / 422 → [`SourceError::InvalidRequest`] carrying Yahoo's description;
//! - 429 (a plain-text body) → [`SourceError::RateLimited`] with its `Retry-After`, and 503
//!   → [`SourceError::Transient`] with its `Retry-After`: seconds or any of the three HTTP
//!   date forms ([`gate::parse_retry_after`]; the gate caps the wait);
//! - 5xx, 408, connection and body errors → [`SourceError::Transient`]; timeouts →
//!   [`SourceError::Timeout`];
//! - 401 / 403 and anything else → [`SourceError::Remote`] (not retried: Yahoo is refusing us).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{DATE, RETRY_AFTER};

use super::parse::{chart_error, error_of};
use crate::config::YahooConfig;
use crate::domain::{Interval, SourceKind};
use crate::source::{SourceError, gate};

const SRC: SourceKind = SourceKind::Yahoo;

/// A chart response is at most a few MB (a 7-day minute window is ~1 MB, 100 years of daily
/// bars ~3 MB). Anything far larger is not a chart response and is refused before it fills
/// memory.
const MAX_BODY: usize = 256 << 20;

/// Why the Yahoo source could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("yahoo: base_url {0:?} is not an http(s) url")]
    BadBaseUrl(String),
    #[error("yahoo: cannot build the http client: {0}")]
    Client(String),
}

/// What to ask for besides the symbol and interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Span {
    /// `period1`/`period2`, UTC epoch seconds.
    Period { period1: i64, period2: i64 },
    /// A named range (`1d`, `5d`, …): used by `ping`.
    Range(&'static str),
}

/// Cheap to clone (`reqwest::Client` is an `Arc` inside).
#[derive(Debug, Clone)]
pub(super) struct ChartClient {
    http: reqwest::Client,
    base: url::Url,
    timeout: Duration,
}

impl ChartClient {
    pub fn new(cfg: &YahooConfig) -> Result<ChartClient, BuildError> {
        let base = url::Url::parse(&cfg.base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| BuildError::BadBaseUrl(cfg.base_url.clone()))?;
        let timeout = Duration::from_secs(cfg.timeout_s.max(1));
        let http = reqwest::Client::builder()
            .user_agent(cfg.user_agent.clone())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| BuildError::Client(e.to_string()))?;
        Ok(ChartClient {
            http,
            base,
            timeout,
        })
    }

    /// `{base}/v8/finance/chart/{symbol}` with the symbol percent-encoded (`^GSPC` → `%5EGSPC`,
    /// `EURUSD=X` → `EURUSD%3DX`), as browsers and yfinance send it.
    pub fn url(&self, symbol: &str) -> url::Url {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!(
            "{prefix}/v8/finance/chart/{}",
            encode_segment(symbol)
        ));
        url
    }

    /// One request; no retries.
    pub async fn get(
        &self,
        symbol: &str,
        interval: Interval,
        span: Span,
    ) -> Result<Bytes, SourceError> {
        let mut query: Vec<(&str, String)> =
            // Yahoo's interval names are DMS's (`1h` is sent as `1h`; Yahoo also accepts `60m`).
            vec![("interval", interval.as_str().to_string())];
        match span {
            Span::Period { period1, period2 } => {
                query.push(("period1", period1.to_string()));
                query.push(("period2", period2.to_string()));
            }
            Span::Range(r) => query.push(("range", r.to_string())),
        }
        query.push(("events", "div,splits,capitalGains".to_string()));
        query.push(("includePrePost", "false".to_string()));

        let resp = self
            .http
            .get(self.url(symbol))
            .query(&query)
            .send()
            .await
            .map_err(|e| self.request_error(symbol, &e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = self.read_body(symbol, resp).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(status_error(symbol, status, &headers, &body))
    }

    /// Reads the body in chunks, refusing one larger than [`MAX_BODY`].
    async fn read_body(
        &self,
        symbol: &str,
        mut resp: reqwest::Response,
    ) -> Result<Bytes, SourceError> {
        let hint = resp.content_length().unwrap_or(0) as usize;
        if hint > MAX_BODY {
            return Err(too_large(symbol));
        }
        let mut buf = BytesMut::with_capacity(hint.max(8 << 10));
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > MAX_BODY {
                        return Err(too_large(symbol));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(buf.freeze()),
                Err(e) => return Err(self.request_error(symbol, &e)),
            }
        }
    }

    fn request_error(&self, symbol: &str, e: &reqwest::Error) -> SourceError {
        if e.is_timeout() {
            return SourceError::Timeout {
                src: SRC,
                message: format!(
                    "request for {symbol} timed out after {}s",
                    self.timeout.as_secs()
                ),
            };
        }
        let message = if e.is_connect() {
            let host = self.base.host_str().unwrap_or("?");
            format!("cannot connect to {host}: {}", source_chain(e))
        } else if e.is_body() || e.is_decode() {
            format!("response body for {symbol} cut off: {}", source_chain(e))
        } else {
            format!("request for {symbol} failed: {}", source_chain(e))
        };
        SourceError::transient(SRC, message)
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error and its causes on one line, without the URL (logged separately).
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        parts.push(c.to_string());
        cur = c.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

fn too_large(symbol: &str) -> SourceError {
    SourceError::Remote {
        src: SRC,
        message: format!(
            "response for {symbol} is larger than {} MiB",
            MAX_BODY >> 20
        ),
    }
}

/// Maps a non-2xx response.
fn status_error(
    symbol: &str,
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> SourceError {
    let chart = || error_of(body);
    let code = status.as_u16();
    match code {
        429 => SourceError::RateLimited {
            src: SRC,
            retry_after: retry_after(headers),
        },
        404 => match chart() {
            Some(err) => chart_error(symbol, &err),
            None => {
                SourceError::transient(SRC, format!("http 404 for {symbol} without a chart error"))
            }
        },
        400 | 422 => {
            let message = match chart() {
                Some(err) => match chart_error(symbol, &err) {
                    e @ SourceError::InvalidRequest { .. } => return e,
                    SourceError::UnknownSymbol { .. } => {
                        return SourceError::UnknownSymbol {
                            src: SRC,
                            symbol: symbol.to_string(),
                        };
                    }
                    other => other.to_string(),
                },
                None => snippet(body),
            };
            SourceError::InvalidRequest {
                src: SRC,
                message: format!("{symbol}: http {code}: {message}"),
            }
        }
        408 | 500..=599 => SourceError::Transient {
            src: SRC,
            message: format!("http {code} {} for {symbol}", reason(status)),
            retry_after: (code == 503).then(|| retry_after(headers)).flatten(),
        },
        _ => SourceError::Remote {
            src: SRC,
            message: format!(
                "http {code} {} for {symbol}: {}",
                reason(status),
                snippet(body)
            ),
        },
    }
}

fn reason(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("").to_ascii_lowercase()
}

/// The start of a text body, on one line, for messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        "empty body".to_string()
    } else {
        one_line
    }
}

/// The `Retry-After` of a response, as asked: an HTTP date is measured from the response's own
/// `Date` (so that a skewed local clock does not stretch or cut the wait), or from now when it
/// has none. `None` when absent or unreadable.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let reference = text(DATE)
        .and_then(gate::http_date)
        .unwrap_or_else(std::time::SystemTime::now);
    gate::parse_retry_after(text(RETRY_AFTER)?, reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_percent_encoded_in_the_path() {
        let cfg = YahooConfig {
            base_url: "http://127.0.0.1:9/prefix/".into(),
            requests_per_minute: 0,
            timeout_s: 1,
            max_retries: 0,
            pause_after_refusals: 0,
            pause_s: 1,
            user_agent: "test".into(),
        };
        let c = ChartClient::new(&cfg).unwrap();
        assert_eq!(
            c.url("^GSPC").as_str(),
            "http://127.0.0.1:9/prefix/v8/finance/chart/%5EGSPC"
        );
        assert_eq!(
            c.url("EURUSD=X").path(),
            "/prefix/v8/finance/chart/EURUSD%3DX"
        );
        assert_eq!(c.url("0700.HK").path(), "/prefix/v8/finance/chart/0700.HK");
        let bad = YahooConfig {
            base_url: "ftp://example.com".into(),
            ..cfg
        };
        assert!(matches!(
            ChartClient::new(&bad),
            Err(BuildError::BadBaseUrl(_))
        ));
    }

    #[test]
    fn statuses_map_to_source_errors() {
        let h = reqwest::header::HeaderMap::new();
        let not_found = br#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#;
        let e = status_error("XYZ", StatusCode::NOT_FOUND, &h, not_found);
        assert_eq!(e.to_string(), "yahoo: symbol XYZ not found");
        let e = status_error("XYZ", StatusCode::NOT_FOUND, &h, b"<html></html>");
        assert!(e.is_retryable());
        let bad = br#"{"chart":{"result":null,"error":{"code":"Bad Request","description":"Invalid input - interval=5h is not supported."}}}"#;
        let e = status_error("AAPL", StatusCode::BAD_REQUEST, &h, bad);
        assert_eq!(
            e.to_string(),
            "yahoo: invalid request: AAPL: Invalid input - interval=5h is not supported."
        );
        let e = status_error("AAPL", StatusCode::UNPROCESSABLE_ENTITY, &h, b"nope");
        assert_eq!(
            e.to_string(),
            "yahoo: invalid request: AAPL: http 422: nope"
        );
        let mut h429 = reqwest::header::HeaderMap::new();
        h429.insert(RETRY_AFTER, "7".parse().unwrap());
        let e = status_error(
            "AAPL",
            StatusCode::TOO_MANY_REQUESTS,
            &h429,
            b"Edge: Too Many Requests",
        );
        assert_eq!(e.to_string(), "yahoo: rate limited, retry in 7s");
        let e = status_error("AAPL", StatusCode::SERVICE_UNAVAILABLE, &h, b"");
        assert_eq!(e.outcome(), crate::source::FetchOutcome::ServerError);
        assert!(e.is_retryable());
        let e = status_error("AAPL", StatusCode::FORBIDDEN, &h, b"denied");
        assert!(!e.is_retryable());
    }
}
