//! `SourceGate`: what every request to a network source passes through.
//!
//! - one [`RateLimiter`] per source, shared by every job (the gate is shared);
//! - retries of retryable errors with exponential backoff and jitter (`backon`), waiting at
//!   least as long as a `Retry-After` asked (429 and 503), but never longer than `pause_for`
//!   (the source's `pause_s`): a `Retry-After` is the source's wish, and a hostile or broken
//!   one (`Retry-After: 1000000000`) must not stop a source for 31 years;
//! - a pause: after `pause_after` refusals in a row (429, Futu frequency errors) the source is
//!   paused for `pause_for`, and a `Retry-After` longer than [`MAX_IN_PLACE_WAIT`] pauses it
//!   for that long (capped the same way); every call then fails fast with
//!   [`SourceError::Paused`], so a throttled source is reported rather than hammered;
//! - the metrics `dms_fetch_requests_total` (by [`SourceError::outcome`]),
//!   `dms_fetch_wait_seconds_total`, `dms_source_paused`, and a [`SourceStatus`] for the API.
//!
//! Durations from outside (a `Retry-After`, config values) meet the clock only through
//! [`instant_after`] and saturating arithmetic: no value, however large, can overflow
//! `Instant + Duration` and panic inside a job.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use tokio::time::Instant;

use super::ratelimit::RateLimiter;
use super::{FetchOutcome, SourceError};
use crate::domain::{SourceKind, time};
use crate::telemetry::{labels, metrics};

/// The longest `Retry-After` honoured by retrying in place; a longer one pauses the source.
pub const MAX_IN_PLACE_WAIT: Duration = Duration::from_secs(300);

/// The longest span DMS puts on a clock: a hundred years. Anything longer is "never", and
/// capping it first keeps every `Instant + Duration` in range.
const NEVER: Duration = Duration::from_secs(100 * 366 * 86_400);

/// `now + d` on tokio's clock, saturating instead of overflowing.
pub fn instant_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(NEVER)).unwrap_or(now)
}

/// An HTTP date in any of the three forms of RFC 9110 §5.6.7: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form (`Sunday, 06-Nov-94 08:49:37
/// GMT`; two-digit years read as 1970–2069, as `httpdate` does) and asctime (`Sun Nov  6
/// 08:49:37 1994`).
pub fn http_date(value: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(value.trim()).ok()
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delta-seconds (a number too large for `u64` is
/// the longest wait there is, not garbage) or an HTTP date, measured from `reference` (the
/// response's `Date`, or now). A date in the past means "now"; anything else is `None`.
/// The result is what the source asked; the gate caps it.
pub fn parse_retry_after(value: &str, reference: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = http_date(value)?;
    Some(at.duration_since(reference).unwrap_or(Duration::ZERO))
}

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
    /// Requests sent, by the `outcome` label of `dms_fetch_requests_total`.
    pub requests_by_outcome: BTreeMap<&'static str, u64>,
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
    by_outcome: BTreeMap<FetchOutcome, u64>,
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
    /// Where pauses and resumptions are published (set once the service wires its bus).
    events: std::sync::OnceLock<crate::events::EventBus>,
}

impl SourceGate {
    /// Publishes this source's pauses and resumptions on `bus` from now on.
    pub fn attach_events(&self, bus: crate::events::EventBus) {
        let _ = self.events.set(bus);
    }

    fn publish(&self, event: crate::events::Event) {
        if let Some(bus) = self.events.get() {
            bus.publish(event);
        }
    }

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
            events: std::sync::OnceLock::new(),
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
            .adjust(|e: &SourceError, delay| match self.wait_asked(e) {
                Some(wait) if wait > MAX_IN_PLACE_WAIT => {
                    self.pause(wait);
                    None
                }
                Some(wait) => delay.map(|d| d.max(wait)),
                None => delay,
            })
            .notify(|e: &SourceError, delay: Duration| {
                tracing::warn!(source = self.kind.as_str(), error = %e, retry_in_ms = delay.as_millis() as u64, "retrying");
            })
            .await
    }

    /// The wait a `Retry-After` asks for, capped by `pause_for`.
    fn wait_asked(&self, e: &SourceError) -> Option<Duration> {
        let asked = e.retry_after()?;
        let cap = self.policy.pause_for;
        if asked > cap {
            tracing::warn!(
                source = self.kind.as_str(),
                retry_after_s = asked.as_secs(),
                capped_to_s = cap.as_secs(),
                "retry-after longer than pause_s; waiting pause_s"
            );
        }
        Some(asked.min(cap))
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
            self.publish(crate::events::Event::SourceResumed {
                source: self.kind.as_str().to_string(),
            });
        }
        Ok(())
    }

    fn pause(&self, for_: Duration) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let for_ = for_.min(NEVER);
        let until = instant_after(for_);
        let until_utc = chrono::Utc::now()
            .timestamp()
            .saturating_add(for_.as_secs() as i64);
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
        self.publish(crate::events::Event::SourcePaused {
            source: self.kind.as_str().to_string(),
            until: chrono::DateTime::from_timestamp(until_utc, 0).unwrap_or_default(),
            reason: format!("{} refusals in a row", st.consecutive_refusals),
        });
    }

    fn record<T>(&self, r: &Result<T, SourceError>) {
        if let Err(SourceError::Paused { .. }) = r {
            // Nothing was sent.
            return;
        }
        let outcome = FetchOutcome::of(r);
        metrics()
            .fetch_requests
            .get_or_create(&labels([
                ("source", self.kind.as_str()),
                ("outcome", outcome.as_str()),
            ]))
            .inc();
        let pause = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            *st.by_outcome.entry(outcome).or_default() += 1;
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
            self.publish(crate::events::Event::SourceResumed {
                source: self.kind.as_str().to_string(),
            });
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
            requests_by_outcome: st
                .by_outcome
                .iter()
                .map(|(o, n)| (o.as_str(), *n))
                .collect(),
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
                    0 | 1 => Err(SourceError::transient(SourceKind::Yahoo, "http 503")),
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

    fn at(s: &str) -> SystemTime {
        SystemTime::from(chrono::DateTime::parse_from_rfc3339(s).unwrap())
    }

    #[test]
    fn retry_after_reads_delta_seconds_and_all_three_http_date_forms() {
        let now = at("1994-11-06T08:48:37Z");
        let minute = Some(Duration::from_secs(60));
        assert_eq!(parse_retry_after("60", now), minute);
        assert_eq!(parse_retry_after(" 60 ", now), minute);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            minute
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            minute
        );
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), minute);
        // A date in the past means now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        // Too large for u64 is still "a very long time", to be capped, not garbage.
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for garbage in [
            "soon",
            "",
            "-5",
            "1.5",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "0x10",
        ] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
        // A far-future date in each form is a long, finite wait.
        for far in [
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Friday, 31-Dec-60 23:59:59 GMT",
            "Fri Dec 31 23:59:59 9999",
        ] {
            let d = parse_retry_after(far, now).unwrap();
            assert!(d > Duration::from_secs(60 * 365 * 86_400), "{far}: {d:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn instants_after_any_duration_do_not_overflow() {
        let now = Instant::now();
        assert!(instant_after(Duration::MAX) > now);
        assert!(instant_after(Duration::from_secs(u64::MAX)) > now);
        assert_eq!(instant_after(Duration::ZERO), now);
    }

    fn gate_pausing_for(pause_for: Duration) -> SourceGate {
        SourceGate::new(
            SourceKind::Yahoo,
            RateLimiter::new(100, Duration::from_secs(60)),
            GatePolicy {
                max_retries: 3,
                min_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(8),
                pause_after: 5,
                pause_for,
            },
        )
    }

    /// The pause as the status reports it, in seconds from now.
    fn paused_for_s(g: &SourceGate) -> Option<i64> {
        let until = g.status().paused_until?;
        Some(time::parse_instant(&until).unwrap() - chrono::Utc::now().timestamp())
    }

    #[tokio::test(start_paused = true)]
    async fn a_hostile_retry_after_pauses_the_source_for_at_most_pause_for() {
        for asked in [1_000_000_000, u64::MAX] {
            for limited in [
                limited(Some(asked)),
                SourceError::Transient {
                    src: SourceKind::Yahoo,
                    message: "http 503 service unavailable for AAPL".into(),
                    retry_after: Some(Duration::from_secs(asked)),
                },
            ] {
                let g = gate_pausing_for(Duration::from_secs(600));
                let calls = AtomicU32::new(0);
                let r: Result<(), _> = g
                    .call(true, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Err(limited.clone())
                    })
                    .await;
                assert_eq!(r.unwrap_err(), limited);
                assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried in place");
                let st = g.status();
                assert!(st.paused, "{st:?}");
                let s = paused_for_s(&g).unwrap();
                assert!(
                    (598..=600).contains(&s),
                    "paused for {s}s after asking {asked}s"
                );
                tokio::time::advance(Duration::from_secs(601)).await;
                assert_eq!(g.call(true, || async { Ok(1) }).await, Ok(1));
                assert!(!g.status().paused);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_above_a_short_pause_for_waits_pause_for_in_place() {
        let g = gate_pausing_for(Duration::from_secs(60));
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let r = g
            .call(true, || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(limited(Some(1_000_000_000))),
                    _ => Ok(()),
                }
            })
            .await;
        assert!(r.is_ok());
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(60) && waited < Duration::from_secs(61),
            "{waited:?}"
        );
        assert!(!g.status().paused);
    }

    #[tokio::test(start_paused = true)]
    async fn a_503_with_retry_after_is_retried_after_the_wait() {
        let g = gate(0);
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let r = g
            .call(true, || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(SourceError::Transient {
                        src: SourceKind::Yahoo,
                        message: "http 503".into(),
                        retry_after: Some(Duration::from_secs(42)),
                    }),
                    _ => Ok(()),
                }
            })
            .await;
        assert!(r.is_ok());
        assert!(start.elapsed() >= Duration::from_secs(42));
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_pause_s_does_not_overflow_the_clock() {
        let g = gate_pausing_for(Duration::MAX);
        for _ in 0..2 {
            let _ = g.call(true, || async { Err::<(), _>(limited(None)) }).await;
        }
        let st = g.status();
        assert!(st.paused, "{st:?}");
        assert!(matches!(
            g.call(true, || async { Ok(()) }).await,
            Err(SourceError::Paused { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn every_request_is_counted_under_its_outcome() {
        let g = SourceGate::new(
            SourceKind::Yahoo,
            RateLimiter::unlimited(),
            GatePolicy {
                max_retries: 0,
                pause_after: 0,
                ..GatePolicy::default()
            },
        );
        let src = SourceKind::Yahoo;
        let errors = [
            limited(None),
            SourceError::UnknownSymbol {
                src,
                symbol: "XYZ".into(),
            },
            SourceError::InvalidRequest {
                src,
                message: "parse error in the name only".into(),
            },
            SourceError::transient(src, "timed out, says the message"),
            SourceError::Remote {
                src,
                message: "x".into(),
            },
            SourceError::Timeout {
                src,
                message: "x".into(),
            },
            SourceError::Malformed {
                src,
                message: "x".into(),
            },
        ];
        for e in &errors {
            let _ = g.call(true, || async { Err::<(), _>(e.clone()) }).await;
        }
        let _ = g.call(true, || async { Ok(()) }).await;
        let by: Vec<(&str, u64)> = g.status().requests_by_outcome.into_iter().collect();
        assert_eq!(
            by,
            [
                ("client_error", 2),
                ("ok", 1),
                ("parse_error", 1),
                ("rate_limited", 1),
                ("server_error", 2),
                ("timeout", 1),
            ]
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
