//! A sliding-window rate limiter: at most `max` acquisitions in any window of `per`.
//!
//! Hand-written because the semantics matter: Futu documents "at most 60 per 30 s" as "the
//! 1st and the 61st request must be more than 30 s apart", which a token bucket (GCRA, as in
//! `governor`) does not guarantee over arbitrary windows. It also runs on tokio's clock, so
//! tests drive it with paused time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Shared by every job using one source.
#[derive(Debug)]
pub struct RateLimiter {
    max: usize,
    per: Duration,
    /// Times of the last `max` acquisitions, oldest first. A std `Mutex`: never held across an
    /// `.await`.
    sent: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    /// `max == 0` means unlimited.
    pub fn new(max: u32, per: Duration) -> RateLimiter {
        RateLimiter {
            max: max as usize,
            per,
            sent: Mutex::new(VecDeque::with_capacity(max as usize)),
        }
    }

    pub fn unlimited() -> RateLimiter {
        RateLimiter::new(0, Duration::from_secs(1))
    }

    /// Waits until one more request fits in the window, records it, and returns how long it
    /// waited.
    pub async fn acquire(&self) -> Duration {
        if self.max == 0 {
            return Duration::ZERO;
        }
        let start = Instant::now();
        loop {
            let wait_until = {
                let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.per)
                {
                    sent.pop_front();
                }
                if sent.len() < self.max {
                    sent.push_back(now);
                    return now.duration_since(start);
                }
                *sent.front().expect("full window") + self.per
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// `(used, max, window)`: how many acquisitions the current window holds.
    pub fn usage(&self) -> (usize, usize, Duration) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.per)
        {
            sent.pop_front();
        }
        (sent.len(), self.max, self.per)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_never_exceed_the_window() {
        let limiter = Arc::new(RateLimiter::new(60, Duration::from_secs(30)));
        let times = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (l, t) = (limiter.clone(), times.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..40 {
                    l.acquire().await;
                    t.lock().unwrap().push(Instant::now());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut times = times.lock().unwrap().clone();
        times.sort();
        assert_eq!(times.len(), 320);
        // In any window of 30 s there are at most 60: the 1st and 61st are ≥ 30 s apart.
        for w in times.windows(61) {
            assert!(w[60].duration_since(w[0]) >= Duration::from_secs(30));
        }
        // And the limiter does not wait needlessly: 320 requests take 5 windows.
        let span = times[319].duration_since(times[0]);
        assert!(
            span >= Duration::from_secs(150) && span < Duration::from_secs(151),
            "{span:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let l = RateLimiter::unlimited();
        for _ in 0..10_000 {
            assert_eq!(l.acquire().await, Duration::ZERO);
        }
    }
}
