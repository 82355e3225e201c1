//! The wall clock, injected wherever "now" matters (jobs, validation contexts, the scheduler),
//! so that tests can run on tokio's paused time: [`SystemClock`] in production, [`TokioClock`]
//! in tests. Pure code (`domain/`) never reads a clock; it is given `now`.

use chrono::{DateTime, Utc};

/// The wall clock.
pub trait Clock: Send + Sync {
    fn now_utc(&self) -> DateTime<Utc>;

    /// Now as UTC epoch seconds.
    fn now(&self) -> i64 {
        self.now_utc().timestamp()
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_utc(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that moves with tokio's clock from a chosen instant: under
/// `tokio::time::pause()` it advances exactly as far as `advance` or auto-advance moves time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin_utc: DateTime<Utc>,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// Reads `now` at this moment of tokio's clock.
    pub fn starting_at(now: DateTime<Utc>) -> TokioClock {
        TokioClock {
            origin_utc: now,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_utc(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.origin;
        self.origin_utc + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }
}
