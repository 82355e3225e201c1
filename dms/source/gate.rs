//! `SourceGate`: what every request to a network source passes through.
//!
//! - one [`RateLimiter`] per source, shared by every job (the gate is shared);
//! - retries of retryable errors with exponential backoff and jitter (`backon`), waiting at
//!   least as long as a `Retry-After` asked;
//! - a pause: after `pause_after` refusals in a row (429, Futu frequency errors) the source is
//!   paused for `pause_for` and every call fails fast with [`SourceError::Paused`] until then,
//!   so a throttled source is reported rather than hammered;
//! - the metrics `dms_fetch_requests_total`, `dms_fetch_wait_seconds_total`,
//!   `dms_source_paused`, and a [`SourceStatus`] for the API.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::time::Instant;

use super::SourceError;
use super::ratelimit::RateLimiter;
use crate::domain::{SourceKind, time};
use crate::telemetry::{labels, metrics};

/// The longest `Retry-After` honoured by retrying in place; a longer one pauses the source.
const MAX_IN_PLACE_WAIT: Duration = Duration::from_secs(300);

/// Retry and pause policy of one source.
#[derive(Debug, Clone)]
pub struct GatePolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Refusals in a row that pause the source (0: never pause).
    pub pause_after: u32,
    pub pause_for: Duration,
}

impl Default for GatePolicy {
    fn default() -> GatePolicy {
        GatePolicy {
            max_retries: 5,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            pause_after: 5,
            pause_for: Duration::from_secs(900),
        }
    }
}

/// Status of a source for `GET /api/v1/sources`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceStatus {
    pub name: &'static str,
    pub paused: bool,
    /// RFC 3339, while paused.
    pub paused_until: Option<String>,
    pub consecutive_refusals: u32,
    pub rate_limit: RateLimitStatus,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RateLimitStatus {
    /// Requests in the current window.
    pub used: usize,
    /// Allowed per window (0: unlimited).
    pub max: usize,
    pub window_s: u64,
}

#[derive(Debug, Default)]
struct State {
    consecutive_refusals: u32,
    paused_until: Option<(Instant, i64)>,
    ok: u64,
    failed: u64,
    last_error: Option<String>,
}

/// Shared by every job that uses the source.
#[derive(Debug)]
pub struct SourceGate {
    kind: SourceKind,
    limiter: RateLimiter,
    policy: GatePolicy,
    /// A std `Mutex`: never held across an `.await`.
    state: Mutex<State>,
}

impl SourceGate {
    pub fn new(kind: SourceKind, limiter: RateLimiter, policy: GatePolicy) -> SourceGate {
        metrics()
            .source_paused
            .get_or_create(&labels([("source", kind.as_str())]))
            .set(0);
        SourceGate {
            kind,
            limiter,
            policy,
            state: Mutex::new(State::default()),
        }
    }

    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Runs `op` with rate limiting and retries. `counted` says whether the request counts
    /// against the rate limit (Futu counts only the first page of a paged download).
    pub async fn call<T, F, Fut>(&self, counted: bool, op: F) -> Result<T, SourceError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SourceError>>,
    {
        let attempt = || {
            let fut = op();
            async move {
                self.check_paused()?;
                if counted {
                    let waited = self.limiter.acquire().await;
                    if !waited.is_zero() {
                        metrics()
                            .fetch_wait_seconds
                            .get_or_create(&labels([("source", self.kind.as_str())]))
                            .inc_by(waited.as_secs_f64());
                    }
                }
                let r = fut.await;
                self.record(&r);
                r
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.policy.min_backoff)
            .with_max_delay(self.policy.max_backoff)
            .with_max_times(self.policy.max_retries as usize);
        attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e: &SourceError| e.is_retryable())
            .adjust(|e: &SourceError, delay| match e {
                SourceError::RateLimited {
                    retry_after: Some(ra), ..
                } => {
                    if *ra > MAX_IN_PLACE_WAIT {
                        self.pause(*ra);
                        None
                    } else {
                        delay.map(|d| d.max(*ra))
                    }
                }
                _ => delay,
            })
            .notify(|e: &SourceError, delay: Duration| {
                tracing::warn!(source = self.kind.as_str(), error = %e, retry_in_ms = delay.as_millis() as u64, "retrying");
            })
            .await
    }

    fn check_paused(&self) -> Result<(), SourceError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((until, _)) = st.paused_until {
            let now = Instant::now();
            if now < until {
                return Err(SourceError::Paused {
                    src: self.kind,
                    resumes_in: until - now,
                });
            }
            st.paused_until = None;
            st.consecutive_refusals = 0;
            metrics()
                .source_paused
                .get_or_create(&labels([("source", self.kind.as_str())]))
                .set(0);
            tracing::info!(source = self.kind.as_str(), "source resumed after pause");
        }
        Ok(())
    }

    fn pause(&self, for_: Duration) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + for_;
        let until_utc = chrono::Utc::now().timestamp() + for_.as_secs() as i64;
        st.paused_until = Some((until, until_utc));
        metrics()
            .source_paused
            .get_or_create(&labels([("source", self.kind.as_str())]))
            .set(1);
        tracing::warn!(
            source = self.kind.as_str(),
            paused_until = %time::rfc3339(until_utc),
            refusals = st.consecutive_refusals,
            "source paused after repeated refusals"
        );
    }

    fn record<T>(&self, r: &Result<T, SourceError>) {
        let outcome = match r {
            Ok(_) => "ok",
            Err(SourceError::Paused { .. }) => return,
            Err(e) => e.outcome(),
        };
        metrics()
            .fetch_requests
            .get_or_create(&labels([
                ("source", self.kind.as_str()),
                ("outcome", outcome),
            ]))
            .inc();
        let pause = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match r {
                Ok(_) => {
                    st.ok += 1;
                    st.consecutive_refusals = 0;
                    false
                }
                Err(e) => {
                    st.failed += 1;
                    st.last_error = Some(e.to_string());
                    if matches!(e, SourceError::RateLimited { .. }) {
                        st.consecutive_refusals += 1;
                        self.policy.pause_after > 0
                            && st.consecutive_refusals >= self.policy.pause_after
                    } else {
                        false
                    }
                }
            }
        };
        if pause {
            self.pause(self.policy.pause_for);
        }
    }

    /// Lifts a pause (an operator's successful ping).
    pub fn resume(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.paused_until.take().is_some() {
            st.consecutive_refusals = 0;
            metrics()
                .source_paused
                .get_or_create(&labels([("source", self.kind.as_str())]))
                .set(0);
            tracing::info!(source = self.kind.as_str(), "source resumed by ping");
        }
    }

    pub fn status(&self) -> SourceStatus {
        let (used, max, window) = self.limiter.usage();
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let paused = st.paused_until.filter(|(until, _)| Instant::now() < *until);
        SourceStatus {
            name: self.kind.as_str(),
            paused: paused.is_some(),
            paused_until: paused.map(|(_, utc)| time::rfc3339(utc)),
            consecutive_refusals: st.consecutive_refusals,
            rate_limit: RateLimitStatus {
                used,
                max,
                window_s: window.as_secs(),
            },
            requests_ok: st.ok,
            requests_failed: st.failed,
            last_error: st.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn gate(pause_after: u32) -> SourceGate {
        SourceGate::new(
            SourceKind::Yahoo,
            RateLimiter::new(100, Duration::from_secs(60)),
            GatePolicy {
                max_retries: 3,
                min_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(8),
                pause_after,
                pause_for: Duration::from_secs(600),
            },
        )
    }

    fn limited(after: Option<u64>) -> SourceError {
        SourceError::RateLimited {
            src: SourceKind::Yahoo,
            retry_after: after.map(Duration::from_secs),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_then_succeeds() {
        let g = gate(0);
        let calls = AtomicU32::new(0);
        let r = g
            .call(true, || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(SourceError::Transient {
                        src: SourceKind::Yahoo,
                        message: "http 503".into(),
                    }),
                    _ => Ok(7),
                }
            })
            .await;
        assert_eq!(r, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_client_errors() {
        let g = gate(0);
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = g
            .call(true, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(SourceError::UnknownSymbol {
                    src: SourceKind::Yahoo,
                    symbol: "XYZ".into(),
                })
            })
            .await;
        assert_eq!(r.unwrap_err().to_string(), "yahoo: symbol XYZ not found");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after() {
        let g = gate(0);
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let r = g
            .call(true, || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(limited(Some(42))),
                    _ => Ok(()),
                }
            })
            .await;
        assert!(r.is_ok());
        assert!(
            start.elapsed() >= Duration::from_secs(42),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn five_refusals_in_a_row_pause_the_source() {
        let g = gate(5);
        let calls = AtomicU32::new(0);
        let refuse = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(limited(None))
        };
        // 1 attempt + 3 retries = 4 refusals: not yet paused.
        assert!(matches!(
            g.call(true, refuse).await,
            Err(SourceError::RateLimited { .. })
        ));
        assert!(!g.status().paused);
        // The fifth refusal pauses; the retry after it fails fast without calling.
        assert!(matches!(
            g.call(true, refuse).await,
            Err(SourceError::Paused { .. })
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        let st = g.status();
        assert!(st.paused && st.paused_until.is_some());
        assert!(matches!(
            g.call(true, refuse).await,
            Err(SourceError::Paused { .. })
        ));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            5,
            "a paused source is not called"
        );
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(g.call(true, || async { Ok(1) }).await, Ok(1));
        assert!(!g.status().paused);
    }
}
