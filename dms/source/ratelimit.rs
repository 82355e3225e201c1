//! A sliding-window rate limiter: at most `max` acquisitions in any window of `per`.
//!
//! Hand-written because the semantics matter: Futu documents "at most 60 per 30 s" as "the
//! 1st and the 61st request must be more than 30 s apart", which a token bucket (GCRA, as in
//! `governor`) does not guarantee over arbitrary windows. It also runs on tokio's clock, so
//! tests drive it with paused time.
//!
//! The window survives a restart: with [`RateLimiter::remember`], every acquisition is also
//! appended (wall-clock milliseconds, one line each) to a file under `storage.data_dir`, and a
//! new process starts with the window the last one left — a `dms serve` killed and restarted
//! in the same minute does not get a second full budget from the source.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
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
    /// Where acquisitions are remembered across restarts, once [`RateLimiter::remember`] ran.
    record: Mutex<Option<Record>>,
}

/// The file of a remembered window: appended on every acquisition, rewritten with just the
/// current window when it grows past a few windows' worth of lines.
#[derive(Debug)]
struct Record {
    path: PathBuf,
    file: std::fs::File,
    lines: usize,
}

/// Most bytes of a record file read at start-up (a larger one is not ours to trust).
const RECORD_MAX_BYTES: u64 = 4 << 20;

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl RateLimiter {
    /// `max == 0` means unlimited.
    pub fn new(max: u32, per: Duration) -> RateLimiter {
        RateLimiter {
            max: max as usize,
            per,
            sent: Mutex::new(VecDeque::with_capacity(max as usize)),
            record: Mutex::new(None),
        }
    }

    /// Starts from the window recorded at `path` by an earlier process (entries older than the
    /// window, in the future or unreadable are ignored) and records every acquisition there
    /// from now on. Unlimited limiters record nothing.
    pub fn remember(&self, path: &Path) -> std::io::Result<()> {
        if self.max == 0 {
            return Ok(());
        }
        let mut text = String::new();
        if let Ok(f) = std::fs::File::open(path) {
            // Not UTF-8 or unreadable: start empty, as if nothing was recorded.
            let _ = f.take(RECORD_MAX_BYTES).read_to_string(&mut text);
        }
        let (now_wall, now) = (wall_ms(), Instant::now());
        let per_ms = self.per.as_millis() as i64;
        let mut stamps: Vec<i64> = text
            .lines()
            .filter_map(|l| l.trim().parse::<i64>().ok())
            .filter(|&t| t <= now_wall && now_wall - t < per_ms)
            .collect();
        stamps.sort_unstable();
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        for &t in &stamps {
            let age = Duration::from_millis((now_wall - t) as u64);
            sent.push_back(now.checked_sub(age).unwrap_or(now));
        }
        sent.make_contiguous().sort_unstable();
        while sent.len() > self.max {
            sent.pop_front();
        }
        let record = Record::rewrite(path, &window_stamps(&sent, now, now_wall))?;
        *self.record.lock().unwrap_or_else(|p| p.into_inner()) = Some(record);
        Ok(())
    }

    /// Appends one acquisition to the record, if there is one; a failure to write stops the
    /// recording (logged), never the request.
    fn note(&self, sent: &VecDeque<Instant>, now: Instant) {
        let mut guard = self.record.lock().unwrap_or_else(|p| p.into_inner());
        let Some(rec) = guard.as_mut() else { return };
        let now_wall = wall_ms();
        let r = if rec.lines >= 4 * self.max {
            Record::rewrite(&rec.path, &window_stamps(sent, now, now_wall)).map(|n| *rec = n)
        } else {
            writeln!(rec.file, "{now_wall}").map(|()| rec.lines += 1)
        };
        if let Err(e) = r {
            tracing::warn!(path = %rec.path.display(), error = %e, "cannot record the rate-limit window; a restart starts a fresh one");
            *guard = None;
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
                    self.note(&sent, now);
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

/// The wall-clock milliseconds of the acquisitions in `sent`.
fn window_stamps(sent: &VecDeque<Instant>, now: Instant, now_wall: i64) -> Vec<i64> {
    sent.iter()
        .map(|t| now_wall - now.duration_since(*t).as_millis() as i64)
        .collect()
}

impl Record {
    /// Replaces the file at `path` with `stamps` (through a temporary file and a rename) and
    /// opens it for appending.
    fn rewrite(path: &Path, stamps: &[i64]) -> std::io::Result<Record> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut body = String::with_capacity(stamps.len() * 14);
        for t in stamps {
            body.push_str(&t.to_string());
            body.push('\n');
        }
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)?;
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(Record {
            path: path.to_path_buf(),
            file,
            lines: stamps.len(),
        })
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

    #[tokio::test]
    async fn a_new_limiter_starts_with_the_window_an_earlier_one_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("yahoo.window");
        let first = RateLimiter::new(5, Duration::from_secs(60));
        first.remember(&path).unwrap();
        for _ in 0..5 {
            first.acquire().await;
        }
        // A restarted process: the five requests of this minute still count.
        let second = RateLimiter::new(5, Duration::from_secs(60));
        second.remember(&path).unwrap();
        assert_eq!(second.usage().0, 5);
        let waited = tokio::time::timeout(Duration::from_millis(200), second.acquire()).await;
        assert!(waited.is_err(), "a sixth request in the minute went out");
        // Garbage, stamps in the future and stamps older than the window are ignored.
        std::fs::write(
            &path,
            format!("junk\n{}\n{}\n", wall_ms() + 3_600_000, wall_ms() - 61_000),
        )
        .unwrap();
        let third = RateLimiter::new(5, Duration::from_secs(60));
        third.remember(&path).unwrap();
        assert_eq!(third.usage().0, 0);
        // The record is compacted: many acquisitions leave a few windows' worth of lines.
        let wide = RateLimiter::new(3, Duration::from_millis(20));
        wide.remember(&path).unwrap();
        for _ in 0..40 {
            wide.acquire().await;
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 4 * 3 + 1, "{lines} lines");
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let l = RateLimiter::unlimited();
        for _ in 0..10_000 {
            assert_eq!(l.acquire().await, Duration::ZERO);
        }
    }
}
