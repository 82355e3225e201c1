//! Calendar throughput: expected-session generation for 20 years × 5 markets (target ≤ 50 ms),
//! and the expected 1-minute bar starts of 20 years of one market.
//!
//! Run: `cargo bench --bench calendar` (set `CALENDAR_ITERS` for more rounds). Times are
//! thread CPU time (the machine is shared), median of the rounds; building the calendars (every
//! date 1990–2060 classified once, as the service does at start-up) is timed apart.

use std::hint::black_box;
use std::time::Duration;

use chrono::NaiveDate;
use dms::domain::{Calendar, Interval, Market, TimeRange, time};

const TARGET: Duration = Duration::from_millis(50);
const MARKETS: [Market; 5] = [Market::Us, Market::Hk, Market::Sh, Market::Sz, Market::Fx];

/// CPU time of this thread: unlike wall time, not inflated when other processes share the cores.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = thread_cpu();
    let out = f();
    (thread_cpu() - t, out)
}

fn main() {
    let iters: usize = std::env::var("CALENDAR_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    let from = NaiveDate::from_ymd_opt(2006, 1, 1).expect("date");
    let to = NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");

    let mut build = Vec::new();
    let mut sessions = Vec::new();
    let mut stamps = Vec::new();
    let mut counts = (0, 0);
    for _ in 0..iters {
        let (t, cals) = timed(|| {
            MARKETS
                .iter()
                .map(|m| Calendar::new(*m, &[]))
                .collect::<Vec<_>>()
        });
        build.push(t);
        let (t, n) = timed(|| {
            cals.iter()
                .map(|c| black_box(c.sessions(from, to).collect::<Vec<_>>()).len())
                .sum::<usize>()
        });
        sessions.push(t);
        let range = TimeRange::new(time::date_ts(from), time::date_ts(to)).expect("range");
        let (t, bars) = timed(|| black_box(cals[0].expected_stamps(Interval::M1, range)).len());
        stamps.push(t);
        counts = (n, bars);
    }
    let (build, sessions, stamps) = (median(build), median(sessions), median(stamps));
    println!("calendar: {iters} rounds, thread CPU time, medians");
    println!("| measurement | data | time | figure | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| build 5 calendars | every date 1990–2060 classified | {:.2} ms | — | — |",
        build.as_secs_f64() * 1e3
    );
    println!(
        "| expected sessions | 20 years × 5 markets (US, HK, SH, SZ, FX), {} sessions | {:.2} ms | {:.1} M sessions/s | ≤ 50 ms {} |",
        counts.0,
        sessions.as_secs_f64() * 1e3,
        counts.0 as f64 / sessions.as_secs_f64() / 1e6,
        if sessions <= TARGET { "✅" } else { "❌" }
    );
    println!(
        "| expected 1m bar starts | US 2006–2025, {} stamps | {:.2} ms | {:.0} M stamps/s | — |",
        counts.1,
        stamps.as_secs_f64() * 1e3,
        counts.1 as f64 / stamps.as_secs_f64() / 1e6
    );
}
