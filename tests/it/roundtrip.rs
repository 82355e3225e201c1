//! DMS's own exports re-import to identical bars (issue 7): for `csv` and `parquet` × `1m`,
//! `1d`, `1wk`, `1mo` × a US, an HK and an SH symbol, bars on their grid are written into one
//! data dir, exported with the `dms read` binary, imported with `dms import` into a fresh data
//! dir, and compared bar for bar — `ts` and the values the format carries, bit for bit. Plus
//! the regression: generic CSV rows whose `ts` is midnight UTC, a zoneless date-time
//! or an instant land on the dates DESIGN §1 says.
//!
//! The binaries run without a server (each command opens the data dir itself); the seeding
//! and the read-back run in-process on a runtime of their own that is shut down before any
//! binary starts, so no connection of the test is open while the binary works.

use chrono::NaiveDate;
use dms::app::Services;
use dms::config::Config;
use dms::domain::time::{self, local_to_utc};
use dms::domain::{Bar, Calendar, Interval, Market, SeriesKey, SourceKind, Symbol, TimeRange};
use dms::validate::Context;

use crate::helpers::app::{DmsCommand, stderr, stdout};

const SYMBOLS: [&str; 3] = ["AAPL", "0700.HK", "600519.SS"];
const INTERVALS: [Interval; 4] = [Interval::M1, Interval::D1, Interval::W1, Interval::Mo1];

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Regular sessions, exchange-local `(start, end)` as `HH:MM`.
fn sessions(market: Market) -> &'static [(&'static str, &'static str)] {
    match market {
        Market::Us => &[("09:30", "16:00")],
        Market::Hk => &[("09:30", "12:00"), ("13:00", "16:00")],
        Market::Sh | Market::Sz => &[("09:30", "11:30"), ("13:00", "15:00")],
        _ => &[("00:00", "23:59")],
    }
}

/// The daily or weekly stamps of the market's calendar from `from` to `to` (inclusive).
fn calendar_stamps(market: Market, interval: Interval, from: &str, to: &str) -> Vec<i64> {
    let range = TimeRange::new(time::date_ts(date(from)), time::date_ts(date(to)) + 1).unwrap();
    Calendar::standard(market).expected_stamps(interval, range)
}

/// The stamps of a series on its grid: minute bars inside the sessions of a Friday and a
/// Monday either side of the 2024 US daylight-saving change; daily bars on two years of
/// sessions; weekly bars on the Mondays of weeks with a session; monthly bars on the 1st.
fn stamps(market: Market, interval: Interval) -> Vec<i64> {
    match interval {
        Interval::M1 => {
            let tz = market.timezone();
            let mut out = Vec::new();
            for day in [date("2024-03-08"), date("2024-03-11")] {
                for (open, close) in sessions(market) {
                    let at = |hm: &str| {
                        let t = chrono::NaiveTime::parse_from_str(hm, "%H:%M").unwrap();
                        local_to_utc(day.and_time(t), tz)
                    };
                    out.extend((at(open)..at(close)).step_by(60));
                }
            }
            out
        }
        Interval::D1 => calendar_stamps(market, interval, "2023-01-02", "2024-12-31"),
        Interval::W1 => calendar_stamps(market, interval, "2020-01-06", "2024-12-30"),
        Interval::Mo1 => (0..120)
            .map(|m| time::date_ts(date("2015-01-01") + chrono::Months::new(m)))
            .collect(),
        other => panic!("no grid for {other}"),
    }
}

/// Bars with prices that do not print short (so the CSV text must carry every digit),
/// derived from a small LCG seeded by the series.
fn realistic_bars(symbol: &str, interval: Interval) -> Vec<Bar> {
    let market = Symbol::parse(symbol).unwrap().market().unwrap();
    let mut state = symbol.bytes().fold(interval as u64 + 1, |a, b| {
        a.wrapping_mul(31).wrapping_add(b as u64)
    });
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut price = match market {
        Market::Us => 187.149994,
        Market::Hk => 381.2,
        _ => 1_702.03,
    };
    stamps(market, interval)
        .into_iter()
        .map(|ts| {
            let open = price;
            let close = open * (1.0 + (next() - 0.5) / 50.0);
            let high = open.max(close) * (1.0 + next() / 100.0);
            let low = open.min(close) * (1.0 - next() / 100.0);
            price = close;
            // Whole shares mostly; now and then a fractional volume (Futu's hpVolume).
            let volume = (next() * 1e7).round() + if next() < 0.1 { 0.25 } else { 0.0 };
            Bar {
                ts,
                open,
                high,
                low,
                close,
                volume,
                adj_close: (!interval.is_intraday()).then_some(close * 0.99),
                source: SourceKind::Yahoo,
            }
        })
        .collect()
}

fn series(symbol: &str, interval: Interval) -> SeriesKey {
    SeriesKey::new(Symbol::parse(symbol).unwrap(), interval)
}

/// Runs `f` on a runtime of its own, shut down before returning.
fn in_process<T>(f: impl std::future::Future<Output = T>) -> T {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(f);
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    out
}

fn services(dms: &DmsCommand) -> impl std::future::Future<Output = Services> {
    let config = Config::load(&dms.config).unwrap();
    async move { Services::open(config, "test").await.unwrap() }
}

/// What the exported formats carry: `ts` and the values, as bits.
fn carried(bars: &[Bar]) -> Vec<(i64, [u64; 5])> {
    bars.iter()
        .map(|b| {
            (
                b.ts,
                [b.open, b.high, b.low, b.close, b.volume].map(f64::to_bits),
            )
        })
        .collect()
}

fn run_ok(dms: &DmsCommand, args: &[&str]) -> String {
    let o = dms.run(args);
    assert!(
        o.status.success(),
        "dms {}: {}{}",
        args.join(" "),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

#[test]
fn every_export_format_re_imports_to_identical_bars() {
    let source = DmsCommand::new("");
    in_process(async {
        let s = services(&source).await;
        for symbol in SYMBOLS {
            let market = Symbol::parse(symbol).unwrap().market();
            for interval in INTERVALS {
                let bars = realistic_bars(symbol, interval);
                let n = bars.len();
                let report = s
                    .writer
                    .ingest(
                        &series(symbol, interval),
                        bars,
                        &Context::new(time::parse_instant("2030-01-01").unwrap(), market),
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    (report.written, report.rejected),
                    (n as u64, 0),
                    "{symbol} {interval}"
                );
            }
        }
    });

    let symbols = SYMBOLS.join(",");
    for format in ["csv", "parquet"] {
        for interval in INTERVALS {
            let file = source
                .dir
                .path()
                .join(format!("export_{interval}.{format}"));
            let file_arg = file.to_str().unwrap();
            run_ok(
                &source,
                &[
                    "read",
                    "--symbols",
                    &symbols,
                    "--interval",
                    interval.as_str(),
                    "--format",
                    format,
                    "-o",
                    file_arg,
                ],
            );
            let target = DmsCommand::new("");
            run_ok(
                &target,
                &[
                    "import",
                    "--path",
                    file_arg,
                    "--interval",
                    interval.as_str(),
                ],
            );
            let got = in_process(async {
                let s = services(&target).await;
                let mut got = Vec::new();
                for symbol in SYMBOLS {
                    let bars = s
                        .primary
                        .read(&series(symbol, interval), TimeRange::ALL)
                        .await
                        .unwrap();
                    got.push(bars);
                }
                got
            });
            for (symbol, got) in SYMBOLS.iter().zip(got) {
                let want = realistic_bars(symbol, interval);
                assert!(!want.is_empty());
                assert_eq!(
                    got.len(),
                    want.len(),
                    "{format} {interval} {symbol}: bar count"
                );
                let (got, want) = (carried(&got), carried(&want));
                if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
                    panic!(
                        "{format} {interval} {symbol}: bar {i} differs: stored {} {:?}, re-imported {} {:?}",
                        time::rfc3339(want[i].0),
                        want[i].1.map(f64::from_bits),
                        time::rfc3339(got[i].0),
                        got[i].1.map(f64::from_bits),
                    );
                }
            }
        }
    }
}

#[test]
fn generic_csv_rows_land_on_the_dates_design_section_1_gives_them() {
    let dms = DmsCommand::new("");
    // One symbol per case, so that no row replaces another.
    let cases = [
        ("IBM", "2000-03-02T00:00:00Z", "2000-03-02"),
        ("MSFT", "2000-03-02 00:00:00", "2000-03-02"),
        ("ORCL", "2000-03-02", "2000-03-02"),
        ("AAPL", "2000-03-02T14:30:00Z", "2000-03-02"),
        ("0005.HK", "2000-03-02T02:00:00Z", "2000-03-02"),
        ("GE", "2000-03-02T02:00:00Z", "2000-03-01"),
        ("600519.SS", "2000-03-02 09:30:00", "2000-03-02"),
        ("KO", "951955200", "2000-03-02"),
    ];
    let mut csv = "symbol,ts,open,high,low,close,volume\n".to_string();
    for (symbol, ts, _) in cases {
        csv.push_str(&format!("{symbol},{ts},105.5,110.25,101.0,108.75,1200\n"));
    }
    let path = dms.write("issue7.csv", &csv);
    let out = run_ok(
        &dms,
        &[
            "import",
            "--path",
            path.to_str().unwrap(),
            "--interval",
            "1d",
        ],
    );
    assert!(out.contains("8 written"), "{out}");
    let symbols: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let text = run_ok(
        &dms,
        &[
            "read",
            "--symbols",
            &symbols.join(","),
            "--interval",
            "1d",
            "--format",
            "csv",
        ],
    );
    for (symbol, ts, day) in cases {
        let row = format!("{symbol},{day}T00:00:00Z,105.5,110.25,101.0,108.75,1200.0");
        assert!(
            text.lines().any(|l| l == row),
            "{symbol} {ts} should land on {day}:\n{text}"
        );
    }
}
