//! Validation throughput on one core (target ≥ 10M bars/s): every reject rule with the
//! market's calendar, and the flag rules, over realistic batches —
//! - 1M one-minute bars of a US symbol, one batch spanning ~2,560 sessions (2008 on);
//! - 1M one-minute bars of an HK symbol (lunch breaks), one batch;
//! - 1M daily bars: 200 series (100 US, 100 HK) × every session of 2005–2024, one batch each.
//!
//! The reference, in the same run, is the same batches validated without a market
//! (`Context::new(now, None)`: value, grid, future and interval-end rules and the flags, no
//! calendar), so the ratio is what the calendar rules cost.
//!
//! Run: `cargo bench --bench validate` (set `VALIDATE_ITERS` for more rounds). Times are thread
//! CPU time (the machine is shared), median of the rounds; cloning each input batch (validation
//! takes it by value) happens outside the timed span.

use std::hint::black_box;
use std::time::Duration;

use chrono::NaiveDate;
use dms::domain::{
    Bar, Calendar, Interval, Market, SeriesKey, SourceKind, Symbol, TimeRange, time,
};
use dms::validate::{self, Context};

const TARGET: f64 = 10e6;
const N: usize = 1_000_000;

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

/// A random walk of small moves (no flags), deterministic.
fn walk(stamps: &[i64], seed: u64) -> Vec<Bar> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut price = 100.0;
    stamps
        .iter()
        .map(|&ts| {
            let open = price;
            let close = open * (1.0 + (next() - 0.5) / 200.0);
            price = close;
            Bar {
                ts,
                open,
                high: open.max(close) * 1.001,
                low: open.min(close) * 0.999,
                close,
                volume: 1_000.0 + (next() * 1e5).round(),
                adj_close: None,
                source: SourceKind::Yahoo,
            }
        })
        .collect()
}

fn stamps(market: Market, interval: Interval, from: &str, to: &str) -> Vec<i64> {
    let d = |s: &str| time::date_ts(NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date"));
    let range = TimeRange::new(d(from), d(to)).expect("range");
    Calendar::standard(market).expected_stamps(interval, range)
}

type Batches = Vec<(SeriesKey, Market, Vec<Bar>)>;

fn minute_batch(symbol: &str, market: Market) -> Batches {
    let mut s = stamps(market, Interval::M1, "2008-01-01", "2026-01-01");
    s.truncate(N);
    assert_eq!(s.len(), N);
    let key = SeriesKey::new(Symbol::parse(symbol).expect("symbol"), Interval::M1);
    vec![(key, market, walk(&s, 7))]
}

fn daily_batches() -> Batches {
    let mut out = Vec::new();
    for (market, suffix) in [(Market::Us, ""), (Market::Hk, ".HK")] {
        let s = stamps(market, Interval::D1, "2005-01-01", "2025-01-01");
        for i in 0..100 {
            let key = SeriesKey::new(
                Symbol::parse(&format!(
                    "{}{i:04}{suffix}",
                    if suffix.is_empty() { "S" } else { "" }
                ))
                .expect("symbol"),
                Interval::D1,
            );
            out.push((key, market, walk(&s, i)));
        }
    }
    // Exactly 1M bars: trim the last series.
    let total: usize = out.iter().map(|b| b.2.len()).sum();
    let last = out.last_mut().expect("series");
    let keep = last.2.len() - total.saturating_sub(N).min(last.2.len());
    last.2.truncate(keep);
    out
}

/// Validates every batch once; returns CPU time, bars kept, rejections and flags.
fn run(batches: &Batches, with_market: bool) -> (Duration, usize, usize, usize) {
    let now = time::parse_instant("2030-01-01").expect("now");
    let inputs: Vec<Vec<Bar>> = batches.iter().map(|b| b.2.clone()).collect();
    let ctxs: Vec<Context> = batches
        .iter()
        .map(|b| Context::new(now, with_market.then_some(b.1)))
        .collect();
    let mut counts = (0, 0, 0);
    let t = thread_cpu();
    for ((batch, input), ctx) in batches.iter().zip(inputs).zip(&ctxs) {
        let v = black_box(validate::validate(&batch.0, input, ctx));
        counts.0 += v.batch.as_ref().map_or(0, |b| b.len());
        counts.1 += v.rejections.len();
        counts.2 += v.flags.len();
    }
    (thread_cpu() - t, counts.0, counts.1, counts.2)
}

fn main() {
    let iters: usize = std::env::var("VALIDATE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let cases: [(&str, Batches); 3] = [
        (
            "US 1m, one batch of 1M bars (2008 on)",
            minute_batch("AAPL", Market::Us),
        ),
        (
            "HK 1m, one batch of 1M bars (2008 on)",
            minute_batch("0700.HK", Market::Hk),
        ),
        (
            "1d, 200 series (100 US, 100 HK) × 2005–2024 sessions",
            daily_batches(),
        ),
    ];
    // Warm the calendars (built once per process, as at start-up).
    for m in [Market::Us, Market::Hk] {
        black_box(Calendar::standard(m));
    }
    println!("validate: {iters} rounds, thread CPU time, medians");
    println!(
        "| data | bars | with calendar | figure | without market (reference) | ratio | target |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, batches) in &cases {
        let n: usize = batches.iter().map(|b| b.2.len()).sum();
        let mut with = Vec::new();
        let mut without = Vec::new();
        let mut seen = (0, 0, 0);
        for _ in 0..iters {
            let (t, kept, rejected, flagged) = run(batches, true);
            with.push(t);
            seen = (kept, rejected, flagged);
            without.push(run(batches, false).0);
        }
        assert_eq!(seen, (n, 0, 0), "{name}: every bar is valid and unflagged");
        let (with, without) = (median(with), median(without));
        let rate = n as f64 / with.as_secs_f64();
        println!(
            "| {name} | {n} | {:.1} ms ({:.1} ns/bar) | {:.1} M bars/s | {:.1} ms | {:.2}× | ≥ 10 M bars/s {} |",
            with.as_secs_f64() * 1e3,
            with.as_secs_f64() * 1e9 / n as f64,
            rate / 1e6,
            without.as_secs_f64() * 1e3,
            with.as_secs_f64() / without.as_secs_f64(),
            if rate >= TARGET { "met" } else { "MISSED" }
        );
    }
}
