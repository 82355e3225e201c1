//! Yahoo chart parse throughput: one generated response of ten years of minute bars
//! (~1M bars, ~100 MB, shaped exactly like the recorded fixtures) parsed into a domain page,
//! as `YahooSource` does for every response. Target: at least 2M bars/s.
//!
//! Run: `cargo bench --bench yahoo_parse` (set `YAHOO_PARSE_ITERS` for more rounds). The
//! generator is the one the mock server uses, included from the tests folder.

#[path = "../tests/it/helpers/yahoo_synth.rs"]
mod yahoo_synth;

use std::hint::black_box;
use std::time::{Duration, Instant};

use dms::domain::{Interval, Market, TimeRange, time};
use dms::source::yahoo::parse::{ChartSpec, parse_chart};

const TARGET_BARS_PER_S: f64 = 2_000_000.0;

/// CPU time of this thread: unlike wall time, not inflated when other processes share the
/// cores (the development machine runs several builds at once).
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

fn main() {
    let iters: usize = std::env::var("YAHOO_PARSE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let now = time::parse_instant("2025-01-01").expect("date");
    let start = time::parse_instant("2015-01-01").expect("date");
    let synth = yahoo_synth::Synth::new("1m", now).with_null_every(5_000);

    let t = Instant::now();
    let body = yahoo_synth::chart_json("BENCH", &synth, start, now);
    let generated = t.elapsed();
    let spec = ChartSpec {
        symbol: "BENCH",
        interval: Interval::M1,
        range: TimeRange::new(start, now).expect("range"),
        period2: now,
        now,
        market: Some(Market::Us),
    };
    let page = parse_chart(body.as_bytes(), &spec).expect("the generated response parses");
    let bars = page.bars.len() + page.dropped.no_trade as usize;
    println!(
        "yahoo_parse: 10 years of 1m bars: {bars} bars ({} kept, {} all-null), {:.1} MB of JSON, generated in {:.2?}",
        page.bars.len(),
        page.dropped.no_trade,
        body.len() as f64 / 1e6,
        generated
    );

    let mut wall_rates = Vec::with_capacity(iters);
    let mut cpu_rates = Vec::with_capacity(iters);
    for i in 0..iters {
        let (wall, cpu) = (Instant::now(), thread_cpu());
        let page = black_box(parse_chart(black_box(body.as_bytes()), &spec)).expect("parses");
        let (wall, cpu) = (
            wall.elapsed().as_secs_f64(),
            (thread_cpu() - cpu).as_secs_f64(),
        );
        assert_eq!(page.bars.len() + page.dropped.no_trade as usize, bars);
        drop(page);
        println!(
            "  round {}: {:.0} ms wall, {:.0} ms cpu: {:.2} M bars/s wall, {:.2} M bars/s cpu, {:.0} MB/s cpu",
            i + 1,
            wall * 1e3,
            cpu * 1e3,
            bars as f64 / wall / 1e6,
            bars as f64 / cpu / 1e6,
            body.len() as f64 / cpu / 1e6
        );
        wall_rates.push(bars as f64 / wall);
        cpu_rates.push(bars as f64 / cpu);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (wall, cpu) = (median(&mut wall_rates), median(&mut cpu_rates));
    println!(
        "yahoo_parse: median {:.2} M bars/s (cpu time), {:.2} M bars/s (wall); target {:.1} M bars/s: {}",
        cpu / 1e6,
        wall / 1e6,
        TARGET_BARS_PER_S / 1e6,
        if cpu >= TARGET_BARS_PER_S {
            "ok"
        } else {
            "BELOW TARGET"
        }
    );
}
