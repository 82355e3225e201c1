//! "A day in production" (issue 11): a compressed trading week played against the real
//! `dms serve` binary with the faults users meet, then checked end to end.
//!
//! Run: `DMS_SCENARIO=smoke cargo test --test scenario` (what `scripts/test.sh` runs, about a
//! minute) or `DMS_SCENARIO=full cargo test --release --test scenario` (500 symbols: 400 US,
//! 50 HK, 50 SH/SZ; the release binary; by hand). Results go in BENCHMARKS.md, "Scenario".
//!
//! # What runs (all on loopback)
//! - three real `influxd` (the primary and the backups `b1`, `b2`; `helpers::influxd`);
//! - the mock Yahoo (`helpers::mock_yahoo`) serving generated bars (`helpers::yahoo_synth`)
//!   for N US symbols, daily for all, 5m for a quarter, 1m for a tenth;
//! - the fake OpenD (`helpers::fake_opend`, Futu's real framing and protobuf) serving generated
//!   K-lines (`futu_bars` below) for HK symbols (`0700.HK`, Futu `HK.00700`) and SH/SZ symbols
//!   (`600519.SS` → `SH.600519`, `000001.SZ` → `SZ.000001`), universe entries with
//!   `source: futu`, daily for all, 5m for every fifth of each group (smoke: 2 HK + 2 SH/SZ,
//!   one of each also 5m; full: 50 + 50, beside 400 US symbols);
//! - a webhook receiver (`helpers::receiver`) as the one `alerts:` channel;
//! - `dms serve` (the binary of this build, or `DMS_SCENARIO_BIN`) under `libfaketime`: its
//!   wall clock is the simulated one (the monotonic clock is left alone, so tokio's timers and
//!   the rate limiter run in real time). Without that, a source that has not yet "published"
//!   the later days of the week would look, to a service on today's clock, like a source that
//!   confirmed those sessions empty.
//!
//! # The week (US sessions, autumn 2026)
//! - day 0, Fri 30 Oct: the first after-market update fetches every series' history;
//! - day 1, Mon: Yahoo answers 429 for a stretch (with and without `Retry-After`), the source
//!   is paused, then recovers;
//! - day 2, Tue: the primary `influxd` is SIGKILLed while the update writes, and restarted;
//! - day 3, Wed: backup `b2` is down for the whole day, back afterwards; one symbol is
//!   suspended (no bars Wed and Thu);
//! - day 4, Thu: `dms serve` is SIGKILLed in the middle of a backfill of older history, and
//!   restarted (the job resumes);
//! - day 5, Fri: the source revises three of Wednesday's daily bars and announces a 2:1 split
//!   for one symbol (DMS re-fetches its history; the symbol also has 5m bars reaching back
//!   100 days, imported before day 0 from when Yahoo still served them: the part older than
//!   Yahoo's 60-day window cannot be re-fetched and is rescaled);
//! - Mon 9 Nov, before the open: a last update.
//!
//! # HK and SH/SZ (the fake OpenD)
//! The simulated clock is UTC and the runs are timed for the US after-market; HK sessions
//! (09:30–12:00, 13:00–16:00 Beijing time, closing auction to 16:10) and SH/SZ sessions
//! (09:30–11:30, 13:00–15:00) have closed by then, so each publication holds every closed
//! session of those markets' calendars (`dms::domain::Calendar`: holidays, half days and lunch
//! breaks as DMS has them) up to the simulated now, and of nothing later. As OpenD sends them,
//! K-line times are exchange-local: a daily K-line carries its session date at `00:00:00`, an
//! intraday one the **end** of its bar (`09:35:00` for 09:30–09:35, `12:00:00` for HK's last bar
//! before lunch, `13:05:00` for the first after it), which DMS stamps at the bar's start
//! (`dms/source/futu`); any other stamping shows up as quarantined or merged bars in the end
//! checks and as head gaps. The series are in every update of the week, so they live through
//! the primary's outage (day 2), b2's absence (day 3) and the restart (day 4); on day 1 OpenD
//! also drops every connection while idle and then the update's first K-line request without
//! answering (DMS reconnects and retries). The after-market schedule runs on New York time, so
//! once the clock jumps to a US close the HK and SH/SZ series are hours past their last
//! session: `series_stale` is raised until the update has fetched them, and must be cleared
//! like every other alert.
//!
//! Throughout, a reader replays backtest reads (`GET /api/v1/bars?format=arrow`) and checks
//! each answer against what had been acknowledged before it was sent.
//!
//! # What is checked (printed as a table, then asserted)
//! Every bar either source serves for a closed session is in the primary and in both backups,
//! exactly once, with the source's final values (count and sums per series, by InfluxQL on
//! each server, against the generator); the revised bars and the split symbol's first bar
//! hold the new values everywhere; `GET /api/v1/gaps` is empty (the suspension is not a gap);
//! no reader request failed other than with the designed 503 for spooled ranges or while the
//! scenario had killed the server, and none returned data older than an acknowledged write;
//! requests to Yahoo never exceeded the configured rate (arrivals in any 59 s); every alert
//! raised was cleared; the verify job finds the backups equal to the primary (the harness
//! also compares the stores itself, above); the HK and SH/SZ series are current after the
//! updates of day 1 (OpenD's dropped connections) and day 2 (the primary's outage); the fake
//! OpenD saw no breach of the protocol (framing, serials, required fields).

#[path = "../it/helpers/mod.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chrono::{NaiveDate, TimeZone, Utc};
use dms::domain::{Calendar, Interval, Market};

use helpers::fake_opend::{FakeKLine, FakeOpenD, HISTORY_KL, Misbehave};
use helpers::influxd::{Influxd, Options};
use helpers::mock_yahoo::{Fault, MockYahoo};
use helpers::receiver::Receiver;
use helpers::yahoo_synth::{self, Synth};

/// Smoke or full: the sizes that differ.
#[derive(Debug, Clone)]
struct Params {
    name: &'static str,
    /// US symbols, served by the mock Yahoo.
    symbols: usize,
    /// HK symbols, and SH/SZ symbols, served by the fake OpenD.
    hk_symbols: usize,
    cn_symbols: usize,
    history_years: u32,
    yahoo_rpm: u32,
    /// How long the primary stays down.
    primary_down: Duration,
    /// How long the backup stays down after the day's update.
    backup_down_after: Duration,
    reader_symbols: usize,
}

impl Params {
    fn from_env() -> Params {
        let full = std::env::var("DMS_SCENARIO").is_ok_and(|v| v == "full")
            || std::env::args().any(|a| a == "--full");
        if full {
            Params {
                name: "full",
                symbols: 400,
                hk_symbols: 50,
                cn_symbols: 50,
                history_years: 5,
                yahoo_rpm: 600,
                primary_down: Duration::from_secs(60),
                backup_down_after: Duration::from_secs(20),
                reader_symbols: 100,
            }
        } else {
            Params {
                name: "smoke",
                symbols: 20,
                hk_symbols: 2,
                cn_symbols: 2,
                history_years: 2,
                yahoo_rpm: 300,
                primary_down: Duration::from_secs(5),
                backup_down_after: Duration::from_secs(8),
                reader_symbols: 20,
            }
        }
    }
}

const DB: &str = "dms";
const BACKUP_DB: &str = "dms_backup";
const DAY: i64 = 86_400;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

/// `(open, close)` of a US session, UTC seconds.
fn session(d: NaiveDate) -> (i64, i64) {
    let s = Calendar::standard(Market::Us)
        .session(d)
        .unwrap_or_else(|| panic!("{d} is not a US session"));
    (s.open, s.close)
}

/// 00:00 UTC of the session date: how DMS stamps daily bars.
fn daily_stamp(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp()
}

fn rfc(t: i64) -> String {
    Utc.timestamp_opt(t, 0)
        .single()
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// The series the universe holds: `(symbol, intervals)`.
fn universe(p: &Params) -> Vec<(String, Vec<&'static str>)> {
    (0..p.symbols)
        .map(|i| {
            let mut iv = vec!["1d"];
            // The split symbol (`roles().split`) too.
            if i % 4 == 0 || i == 2 {
                iv.push("5m");
            }
            if i % 10 == 0 {
                iv.push("1m");
            }
            (format!("U{i:03}"), iv)
        })
        .collect()
}

/// A symbol served by the fake OpenD (`source: futu`).
#[derive(Debug, Clone)]
struct FutuSymbol {
    /// As DMS names it: `0700.HK`, `600519.SS`, `000001.SZ` (Futu `HK.00700`, `SH.600519`,
    /// `SZ.000001` by rule, `Symbol::futu_code`).
    symbol: String,
    market: Market,
    intervals: Vec<&'static str>,
}

impl FutuSymbol {
    fn code(&self) -> String {
        dms::domain::Symbol::parse(&self.symbol)
            .ok()
            .and_then(|s| s.futu_code())
            .unwrap_or_else(|| panic!("{} has no futu code", self.symbol))
    }
}

/// The HK and SH/SZ symbols: daily for all, 5m for every fifth (from the first) of each
/// market group.
fn futu_universe(p: &Params) -> Vec<FutuSymbol> {
    let intervals = |i: usize| {
        if i.is_multiple_of(5) {
            vec!["1d", "5m"]
        } else {
            vec!["1d"]
        }
    };
    let hk = (0..p.hk_symbols).map(|i| {
        let code = match i {
            0 => 700,
            1 => 5,
            n => 1000 + n,
        };
        FutuSymbol {
            symbol: format!("{code:04}.HK"),
            market: Market::Hk,
            intervals: intervals(i),
        }
    });
    let cn = (0..p.cn_symbols).map(|i| {
        let (symbol, market) = if i % 2 == 0 {
            (format!("{:06}.SS", 600_519 + i), Market::Sh)
        } else {
            (format!("{i:06}.SZ"), Market::Sz)
        };
        FutuSymbol {
            symbol,
            market,
            intervals: intervals(i),
        }
    });
    hk.chain(cn).collect()
}

/// OpenD's `KLType` of an interval.
fn kl_type(interval: &str) -> i32 {
    match interval {
        "1m" => 1,
        "1d" => 2,
        "5m" => 6,
        other => panic!("no futu K-line type for {other} in the scenario"),
    }
}

fn interval_of(interval: &str) -> Interval {
    match interval {
        "1m" => Interval::M1,
        "5m" => Interval::M5,
        "1d" => Interval::D1,
        other => panic!("interval {other} not used by the scenario"),
    }
}

/// SplitMix64 over a symbol seed and a timestamp: the fake OpenD's bar values.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The K-lines OpenD has for a series at `now`: `(DMS's stamp, K-line)`, for the bars stamped
/// from `from` on that are final at `now` — only closed sessions of the market's calendar
/// (lunch breaks, holidays and half days included), and of the day's session only the bars
/// that have ended. `time` is market-local (Beijing time for HK and SH/SZ); a daily K-line is
/// labelled with its session date at `00:00:00`, an intraday one with its **end** (the 5m bar
/// of 09:30–09:35 is `09:35:00`, the last before lunch `12:00:00` in HK, `11:30:00` in SH/SZ),
/// which DMS stamps at the bar's start (`source/futu`). Values depend only on the symbol and
/// the stamp, so every day's publication agrees with the previous one bar for bar.
fn futu_bars(f: &FutuSymbol, interval: &str, from: i64, now: i64) -> Vec<(i64, FakeKLine)> {
    let cal = Calendar::standard(f.market);
    let tz = f.market.timezone();
    let day = |t: i64| Utc.timestamp_opt(t, 0).single().expect("ts").date_naive();
    let seed = f.symbol.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    });
    let kline = |ts: i64, time: String| {
        let h = mix(seed ^ ts as u64);
        // A slow wave plus noise, 20–330 (HKD or CNY), in cents.
        let base = (8_000.0 + 5_000.0 * ((ts as f64) / 2.5e6).sin()) as u64 + seed % 20_000;
        let (o, c) = (base + h % 150, base + (h >> 8) % 150);
        let hi = o.max(c) + (h >> 16) % 40;
        let lo = o.min(c).saturating_sub((h >> 24) % 40).max(1);
        let px = |cents: u64| cents as f64 / 100.0;
        let volume = 100 * (1 + ((h >> 32) % 50_000) as i64);
        FakeKLine::new(&time, px(o), px(hi), px(lo), px(c), volume)
    };
    let iv = interval_of(interval);
    let mut out = Vec::new();
    for s in cal.sessions(
        day(from) - chrono::Duration::days(1),
        day(now) + chrono::Duration::days(1),
    ) {
        if !iv.is_intraday() {
            if s.stamp() >= from && s.final_at <= now {
                out.push((s.stamp(), kline(s.stamp(), format!("{} 00:00:00", s.date))));
            }
            continue;
        }
        let step = iv.nominal_secs();
        for t in s.bar_starts(iv) {
            let end = (t + step).min(s.close);
            if t >= from && end <= now {
                let label = Utc
                    .timestamp_opt(end, 0)
                    .single()
                    .expect("ts")
                    .with_timezone(&tz)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string();
                out.push((t, kline(t, label)));
            }
        }
    }
    out
}

/// What the fake OpenD serves for a series over `[from, to)`, stamped as DMS stamps it.
fn futu_agg(f: &FutuSymbol, interval: &str, from: i64, to: i64) -> Agg {
    let mut agg = Agg {
        count: 0,
        sum_close: 0.0,
        sum_volume: 0.0,
        first: i64::MAX,
    };
    for (t, k) in futu_bars(f, interval, from, to) {
        if t >= to {
            continue;
        }
        agg.count += 1;
        agg.sum_close += k.close;
        agg.sum_volume += k.volume as f64;
        agg.first = agg.first.min(t);
    }
    agg
}

/// The roles symbols play in the faults.
struct Roles {
    split: String,
    suspended: String,
    revised: Vec<String>,
    deep_backfill: Vec<String>,
}

fn roles() -> Roles {
    Roles {
        split: "U002".into(),
        suspended: "U008".into(),
        revised: vec!["U003".into(), "U005".into(), "U006".into()],
        deep_backfill: (11..17).map(|i| format!("U{i:03}")).collect(),
    }
}

/// What the simulated source publishes: its clock, and the events of the week so far.
#[derive(Clone)]
struct World {
    now: i64,
    /// `(symbol, split session open, ratio)`, once announced.
    split: Option<(String, i64, f64)>,
    /// `(symbol, from, to)`: no bars in `[from, to)`.
    suspension: (String, i64, i64),
    /// `(symbol, daily bar timestamp as the source stamps it, factor)`, once published.
    revisions: Vec<(String, i64, f64)>,
    /// The HK and SH/SZ symbols, and the first instant OpenD has history for.
    futu: Vec<FutuSymbol>,
    futu_from: i64,
}

impl World {
    fn synth(&self, symbol: &str, interval: &str) -> Synth {
        let mut s = Synth::new(interval, self.now);
        if let Some((sym, at, r)) = &self.split
            && sym == symbol
        {
            s = s.with_split(*at, *r);
        }
        let (sym, a, b) = &self.suspension;
        if sym == symbol {
            s = s.omitting(*a, *b);
        }
        if interval == "1d" {
            for (sym, ts, f) in &self.revisions {
                if sym == symbol {
                    s = s.revising(*ts, *f);
                }
            }
        }
        s
    }

    /// Serves this state on the mock Yahoo (a route for every interval, and one per special
    /// symbol) and on the fake OpenD (every HK and SH/SZ series, as closed at `now`).
    fn publish(&self, mock: &MockYahoo, opend: &FakeOpenD) {
        for f in &self.futu {
            for iv in &f.intervals {
                let klines = futu_bars(f, iv, self.futu_from, self.now);
                opend.set_klines(
                    &f.code(),
                    kl_type(iv),
                    klines.into_iter().map(|b| b.1).collect(),
                );
            }
        }
        let mut special: Vec<&str> = vec![self.suspension.0.as_str()];
        special.extend(self.split.iter().map(|s| s.0.as_str()));
        special.extend(self.revisions.iter().map(|r| r.0.as_str()));
        for iv in ["1d", "5m", "1m"] {
            mock.serve_synthetic("*", self.synth("*", iv));
            for s in &special {
                mock.serve_synthetic(s, self.synth(s, iv));
            }
        }
    }
}

/// Imports `symbol`'s 5m bars of the 100 to 50 days before `world.now` with `dms import`
/// (before `dms serve` starts), as Yahoo served them then.
fn import_history_older_than_yahoos_window(dms: &Dms, world: &World, symbol: &str) {
    let bars = yahoo_synth::bars(
        symbol,
        &world.synth(symbol, "5m"),
        world.now - 100 * DAY,
        world.now - 50 * DAY,
    );
    let mut csv = String::from("symbol,ts,open,high,low,close,volume\n");
    for b in &bars {
        let _ = writeln!(
            csv,
            "{symbol},{},{},{},{},{},{}",
            rfc(b.ts),
            b.open.expect("open"),
            b.high.expect("high"),
            b.low.expect("low"),
            b.close.expect("close"),
            b.volume.expect("volume")
        );
    }
    let path = dms.dir.join("old-5m.csv");
    std::fs::write(&path, csv).expect("write the import");
    let mut c = Command::new(&dms.bin);
    c.args(["import", "--interval", "5m", "--path"])
        .arg(&path)
        .arg("--config")
        .arg(&dms.config)
        .current_dir(&dms.dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("DMS") {
            c.env_remove(k);
        }
    }
    let out = c.output().expect("run dms import");
    assert!(
        out.status.success(),
        "dms import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "[{:.0} s] imported {} 5m bars of {symbol} older than Yahoo's window",
        since_start(),
        bars.len()
    );
}

/// The `dms serve` process, on a fixed port, under libfaketime.
struct Dms {
    bin: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    clock_file: PathBuf,
    faketime: PathBuf,
    child: Option<Child>,
    url: String,
    starts: u32,
}

impl Dms {
    fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("serve-{}.log", self.starts)))
            .expect("serve log");
        let mut c = Command::new(&self.bin);
        c.args(["serve", "--config"])
            .arg(&self.config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .env("LD_PRELOAD", &self.faketime)
            .env("FAKETIME_TIMESTAMP_FILE", &self.clock_file)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("FAKETIME_CACHE_DURATION", "1");
        for (k, _) in std::env::vars() {
            if k.starts_with("DMS") {
                c.env_remove(k);
            }
        }
        self.child = Some(c.spawn().expect("spawn dms serve"));
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Peak resident set (VmHWM) in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Writes the clock file libfaketime reads: `t` as an offset from now, so it keeps ticking.
    fn write_clock(&self, t: i64) {
        let offset = t - Utc::now().timestamp();
        std::fs::write(&self.clock_file, format!("{offset:+}\n")).expect("clock file");
    }

    /// Sets the service's wall clock to `t` (a relative offset, so it keeps ticking) and
    /// waits until the service's own clock shows it: libfaketime re-reads the file at most
    /// once per cache period (1 s, counted in whole seconds, so up to ~3 s), and the `Date`
    /// header of a response is the service's wall clock.
    async fn set_clock(&self, t: i64) {
        self.write_clock(t);
        let client = reqwest::Client::new();
        let asked = Instant::now();
        loop {
            let shown = client
                .get(format!("{}/health", self.url))
                .send()
                .await
                .ok()
                .and_then(|r| {
                    let d = r.headers().get(reqwest::header::DATE)?.to_str().ok()?;
                    httpdate::parse_http_date(d).ok()
                })
                .and_then(|d| d.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            if shown.is_some_and(|s| (s - t).abs() <= 2 + asked.elapsed().as_secs() as i64) {
                return;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(20),
                "dms serve's clock did not move to {t} within 20 s (it shows {shown:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Dms {
    fn drop(&mut self) {
        self.kill();
    }
}

fn faketime_library() -> PathBuf {
    if let Some(p) = std::env::var_os("DMS_FAKETIME_LIB") {
        return PathBuf::from(p);
    }
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "libfaketime not found: the scenario runs dms serve on a simulated clock. \
                 Install it (Debian/Ubuntu: `apt-get install libfaketime`) or set DMS_FAKETIME_LIB"
            )
        })
}

/// What the reader must see: bars acknowledged before a request was sent.
#[derive(Default, Clone)]
struct Expect {
    /// `(interval, symbol)` → the newest bar acknowledged (epoch s).
    newest: HashMap<(String, String), i64>,
    /// `(interval, symbol, ts)` → the close acknowledged.
    values: HashMap<(String, String, i64), f64>,
}

#[derive(Default)]
struct ReaderStats {
    ok: u64,
    /// 503: bars of the range wait in the spool (DMS's designed answer during an outage).
    spooled_503: u64,
    /// 503: the primary did not answer (a range not in the cache while it was down).
    unavailable_503: u64,
    /// Connection failures while the scenario had killed `dms serve`.
    server_killed: u64,
    /// Requests that failed while the scenario had killed the primary `influxd` (a 200 whose
    /// streamed body breaks off because a chunk load failed: DMS ends such a body in an error
    /// rather than let it look complete).
    primary_outage: Vec<String>,
    failed: Vec<String>,
    stale: Vec<String>,
    latencies_ms: Vec<f64>,
    rows: u64,
}

struct Reader {
    expect: Arc<Mutex<Expect>>,
    stats: Arc<Mutex<ReaderStats>>,
    stop: Arc<AtomicBool>,
    server_down: Arc<AtomicBool>,
    /// Set while the primary `influxd` is down (from its kill until the spool has drained).
    primary_down: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reader {
    /// Replays backtest reads until stopped: all daily symbols' whole history, then the 5m
    /// symbols, in turn, one request at a time.
    fn spawn(
        &self,
        base: String,
        requests: Vec<(String, Vec<String>)>,
    ) -> tokio::task::JoinHandle<()> {
        let (expect, stats, stop, down, primary_down) = (
            self.expect.clone(),
            self.stats.clone(),
            self.stop.clone(),
            self.server_down.clone(),
            self.primary_down.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client");
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (interval, symbols) = &requests[i % requests.len()];
                i += 1;
                let snapshot = lock(&expect).clone();
                let url = format!(
                    "{base}/api/v1/bars?symbols={}&interval={interval}&format=arrow",
                    symbols.join(",")
                );
                let started = Instant::now();
                let outage = primary_down.load(Ordering::Relaxed);
                let answer = match client.get(&url).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        r.bytes().await.map(|b| (status, b)).map_err(|e| {
                            match std::error::Error::source(&e) {
                                Some(cause) => format!("{e}: {cause}"),
                                None => e.to_string(),
                            }
                        })
                    }
                    Err(e) => Err(e.to_string()),
                };
                let ms = started.elapsed().as_secs_f64() * 1e3;
                {
                    let mut st = lock(&stats);
                    match answer {
                        Ok((200, body)) => {
                            st.latencies_ms.push(ms);
                            st.ok += 1;
                            match check_arrow(&body, interval, symbols, &snapshot) {
                                Ok(rows) => st.rows += rows,
                                Err(e) => st.stale.push(e),
                            }
                        }
                        Ok((503, body)) if String::from_utf8_lossy(&body).contains("spool") => {
                            st.spooled_503 += 1
                        }
                        Ok((503, _)) => st.unavailable_503 += 1,
                        Ok((status, body)) if outage || primary_down.load(Ordering::Relaxed) => st
                            .primary_outage
                            .push(format!("{interval}: {status} {}", body.len())),
                        Ok((status, body)) => st.failed.push(format!(
                            "{interval} at {:.1} s: {status} {}",
                            since_start(),
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        )),
                        Err(_) if down.load(Ordering::Relaxed) => st.server_killed += 1,
                        Err(e) if outage || primary_down.load(Ordering::Relaxed) => {
                            st.primary_outage.push(format!("{interval}: {e}"))
                        }
                        Err(e) => st.failed.push(format!(
                            "{interval} at {:.1} s (sent at {:.1} s): {e}",
                            since_start(),
                            since_start() - ms / 1e3
                        )),
                    }
                }
                if down.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    }
}

/// Decodes an Arrow stream and checks it against what was acknowledged before the request.
fn check_arrow(
    body: &[u8],
    interval: &str,
    asked: &[String],
    expect: &Expect,
) -> Result<u64, String> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
        .map_err(|e| format!("not an arrow stream: {e}"))?;
    let mut newest: HashMap<String, i64> = HashMap::new();
    let mut rows = 0u64;
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| format!("arrow batch: {e}"))?;
        rows += batch.num_rows() as u64;
        let symbols = batch.column_by_name("symbol").ok_or("no symbol column")?;
        let symbols = symbols.as_string::<i32>();
        let ts = seconds(batch.column_by_name("ts").ok_or("no ts column")?)?;
        let close = batch.column_by_name("close").ok_or("no close column")?;
        let close = close.as_primitive::<arrow_array::types::Float64Type>();
        for (row, &t) in ts.iter().enumerate() {
            let s = symbols.value(row);
            let e = newest.entry(s.to_string()).or_insert(i64::MIN);
            *e = (*e).max(t);
            let key = (interval.to_string(), s.to_string(), t);
            if let Some(want) = expect.values.get(&key)
                && close.value(row) != *want
            {
                return Err(format!(
                    "{interval} {s} {}: close {} but {want} was acknowledged",
                    rfc(t),
                    close.value(row)
                ));
            }
        }
    }
    for ((iv, s), want) in &expect.newest {
        if iv != interval || !asked.contains(s) {
            continue;
        }
        if let Some(&got) = newest.get(s)
            && got < *want
        {
            return Err(format!(
                "{iv} {s}: newest bar {} but {} was acknowledged",
                rfc(got),
                rfc(*want)
            ));
        }
        if !newest.contains_key(s) {
            return Err(format!("{iv} {s}: no bars, {} acknowledged", rfc(*want)));
        }
    }
    Ok(rows)
}

fn seconds(a: &arrow_array::ArrayRef) -> Result<Vec<i64>, String> {
    Ok(match a.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            a.as_primitive::<TimestampSecondType>().values().to_vec()
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => a
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .iter()
            .map(|v| v / 1_000)
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => a
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .iter()
            .map(|v| v / 1_000_000)
            .collect(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => a
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .iter()
            .map(|v| v / 1_000_000_000)
            .collect(),
        t => return Err(format!("ts column of type {t}")),
    })
}

/// The harness's HTTP calls to `dms serve`.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn json(&self, path: &str) -> serde_json::Value {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        r.json().await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/health", self.base))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "dms serve did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the after-market update through its schedule (a job of the same schedule still
    /// running: waits for it and tries again).
    async fn start_update(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (status, v) = self
                .post("/api/v1/schedules/after-market/run", serde_json::json!({}))
                .await;
            if status == 202 {
                return v["id"].as_u64().expect("job id");
            }
            assert!(
                status == 409 && Instant::now() < deadline,
                "schedule run: {status} {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn job(&self, id: u64) -> serde_json::Value {
        self.json(&format!("/api/v1/jobs/{id}")).await
    }

    async fn wait_job(&self, id: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let j = self.job(id).await;
            if matches!(
                j["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return j;
            }
            assert!(Instant::now() < deadline, "job {id} did not end: {j}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn wait_spool_empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.metric("dms_spool_bars").await > 0.0 {
            assert!(Instant::now() < deadline, "the spool did not drain");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every backup node is reachable and has acked the whole change log.
    async fn wait_replicated(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let nodes = self.json("/api/v1/nodes").await;
            let all = nodes["nodes"].as_array().cloned().unwrap_or_default();
            if all.len() == 2
                && all
                    .iter()
                    .all(|n| n["reachable"] == true && n["lag_changes"] == 0)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "backups did not catch up: {nodes}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One row of a per-series aggregate: `count, sum(close), sum(volume), first, last`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Agg {
    count: u64,
    sum_close: f64,
    sum_volume: f64,
    first: i64,
}

/// `(symbol, interval)` → aggregate, computed by `influxd` itself.
async fn aggregates(server: &Influxd, db: &str) -> BTreeMap<(String, String), Agg> {
    let q = r#"SELECT count("close"), sum("close"), sum("volume") FROM "bars" GROUP BY "symbol", "interval""#;
    let sums = server.raw_query(db, q).await;
    let q = r#"SELECT first("close") FROM "bars" GROUP BY "symbol", "interval""#;
    let firsts = server.raw_query(db, q).await;
    let mut first: HashMap<(String, String), i64> = HashMap::new();
    for s in series_of(&firsts) {
        let key = tag_key(s);
        first.insert(key, s["values"][0][0].as_i64().unwrap_or_default());
    }
    let mut out = BTreeMap::new();
    for s in series_of(&sums) {
        let key = tag_key(s);
        let v = &s["values"][0];
        out.insert(
            key.clone(),
            Agg {
                count: v[1].as_u64().unwrap_or_default(),
                sum_close: v[2].as_f64().unwrap_or_default(),
                sum_volume: v[3].as_f64().unwrap_or_default(),
                first: first.get(&key).copied().unwrap_or_default(),
            },
        );
    }
    out
}

fn series_of(answer: &serde_json::Value) -> Vec<&serde_json::Value> {
    answer["results"][0]["series"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn tag_key(s: &serde_json::Value) -> (String, String) {
    (
        s["tags"]["symbol"].as_str().unwrap_or_default().to_string(),
        s["tags"]["interval"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// The newest bar of every series in the primary, as `influxd` has it.
async fn newest(server: &Influxd) -> HashMap<(String, String), i64> {
    let q = r#"SELECT last("close") FROM "bars" GROUP BY "symbol", "interval""#;
    let a = server.raw_query(DB, q).await;
    series_of(&a)
        .into_iter()
        .map(|s| {
            let (sym, iv) = tag_key(s);
            ((iv, sym), s["values"][0][0].as_i64().unwrap_or_default())
        })
        .collect()
}

/// How many of the HK and SH/SZ series the primary holds up to the last bar OpenD has at
/// `world.now`, and a line for each that it does not.
async fn futu_current(primary: &Influxd, world: &World) -> (usize, Vec<String>) {
    let have = newest(primary).await;
    let (mut current, mut behind) = (0, Vec::new());
    for f in &world.futu {
        for iv in &f.intervals {
            let want = futu_bars(f, iv, world.now - 10 * DAY, world.now)
                .last()
                .map(|b| b.0);
            let got = have.get(&(iv.to_string(), f.symbol.clone())).copied();
            if want.is_some() && got == want {
                current += 1;
            } else {
                behind.push(format!(
                    "{} {iv}: newest {} (OpenD has {})",
                    f.symbol,
                    got.map(rfc).unwrap_or_default(),
                    want.map(rfc).unwrap_or_default()
                ));
            }
        }
    }
    (current, behind)
}

/// The close one server holds for one bar.
async fn close_at(server: &Influxd, db: &str, symbol: &str, interval: &str, t: i64) -> f64 {
    let q = format!(
        r#"SELECT "close" FROM "bars" WHERE "symbol" = '{symbol}' AND "interval" = '{interval}' AND time = {t}s"#
    );
    let a = server.raw_query(db, &q).await;
    series_of(&a)
        .first()
        .and_then(|s| s["values"][0][1].as_f64())
        .unwrap_or(f64::NAN)
}

/// What the source serves for a series over `[from, to)`, stamped as DMS stamps it.
fn source_agg(world: &World, symbol: &str, interval: &str, from: i64, to: i64) -> Agg {
    let synth = world.synth(symbol, interval);
    let bars = yahoo_synth::bars(symbol, &synth, from - DAY, to);
    let stamp = |t: i64| {
        if interval == "1d" {
            let d = Utc
                .timestamp_opt(t, 0)
                .single()
                .expect("ts")
                .with_timezone(&chrono_tz::America::New_York)
                .date_naive();
            daily_stamp(d)
        } else {
            t
        }
    };
    let mut agg = Agg {
        count: 0,
        sum_close: 0.0,
        sum_volume: 0.0,
        first: i64::MAX,
    };
    for b in bars {
        let t = stamp(b.ts);
        if t < from || t >= to {
            continue;
        }
        let (Some(c), Some(v)) = (b.close, b.volume) else {
            continue;
        };
        agg.count += 1;
        agg.sum_close += c;
        agg.sum_volume += v as f64;
        agg.first = agg.first.min(t);
    }
    agg
}

fn close_enough(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The largest number of requests in any window of `per`.
fn max_in_window(times: &[Instant], per: Duration) -> usize {
    let mut t: Vec<Instant> = times.to_vec();
    t.sort();
    let (mut best, mut lo) = (0, 0);
    for hi in 0..t.len() {
        while t[hi].duration_since(t[lo]) >= per {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn write_config(
    p: &Params,
    dir: &Path,
    port: u16,
    servers: [&Influxd; 3],
    yahoo: &str,
    opend_port: u16,
    hook: &str,
) {
    let [primary, b1, b2] = servers;
    let mut u = String::new();
    for (s, iv) in universe(p) {
        u.push_str(&format!(
            "  - {{ symbol: {s}, source: yahoo, intervals: [{}] }}\n",
            iv.join(", ")
        ));
    }
    for f in futu_universe(p) {
        u.push_str(&format!(
            "  - {{ symbol: \"{}\", source: futu, intervals: [{}] }}\n",
            f.symbol,
            f.intervals.join(", ")
        ));
    }
    let yaml = format!(
        r#"server: {{ bind: "127.0.0.1:{port}" }}
storage:
  data_dir: {data:?}
  primary: {{ kind: influxdb, url: "{purl}", api: v1, database: {DB}, timeout_s: 5 }}
  backups:
    - {{ name: b1, kind: influxdb, url: "{b1}", api: v1, database: {BACKUP_DB}, timeout_s: 5 }}
    - {{ name: b2, kind: influxdb, url: "{b2}", api: v1, database: {BACKUP_DB}, timeout_s: 5 }}
sources:
  yahoo: {{ base_url: "{yahoo}", requests_per_minute: {rpm}, timeout_s: 20, max_retries: 5, pause_after_refusals: 5, pause_s: 3 }}
  futu: {{ host: 127.0.0.1, port: {opend_port}, requests_per_30s: 60, timeout_s: 10, max_retries: 3, pause_after_refusals: 5, pause_s: 3 }}
  files: {{ dir: {import:?} }}
history: {{ default_start_years: {years}, revision_window_sessions: 3 }}
schedule:
  - {{ name: after-market, cron: "30 17 * * 1-5", timezone: America/New_York, task: update }}
alerts:
  - {{ kind: webhook, url: "{hook}", timeout_s: 2, retries: 3, backup_lag_seconds: 5, calendar_ending_days: 1 }}
logging: {{ dir: {logs:?}, level: info, json: true }}
checks: {{ interval_s: 2 }}
universe:
{u}"#,
        data = dir.join("data"),
        purl = primary.url,
        b1 = b1.url,
        b2 = b2.url,
        rpm = p.yahoo_rpm,
        import = dir.join("import"),
        years = p.history_years,
        logs = dir.join("logs"),
    );
    std::fs::write(dir.join("dms.yaml"), yaml).expect("write config");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Table rows: `(check, figure, outcome)`; no outcome for a figure that is only reported.
struct Table(Vec<(String, String, Option<bool>)>);

impl Table {
    fn row(&mut self, check: &str, figure: String, ok: bool) {
        self.0.push((check.to_string(), figure, Some(ok)));
    }

    fn figure(&mut self, name: &str, figure: String) {
        self.0.push((name.to_string(), figure, None));
    }

    fn print(&self, title: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "\n### {title}\n\n| check | figure | ok |\n|---|---|---|"
        );
        for (c, f, ok) in &self.0 {
            let mark = match ok {
                None => "—",
                Some(false) => "❌",
                Some(true) => "✅",
            };
            let _ = writeln!(out, "| {c} | {f} | {mark} |");
        }
        let _ = writeln!(out);
    }
}

fn main() {
    let p = Params::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let failures = rt.block_on(run(p));
    if !failures.is_empty() {
        eprintln!("scenario failed:\n  {}", failures.join("\n  "));
        std::process::exit(1);
    }
}

/// Plays the week; returns the checks that failed (empty: all passed).
async fn run(p: Params) -> Vec<String> {
    let wall = Instant::now();
    since_start();
    eprintln!(
        "scenario ({}): {} US symbols, {} HK, {} SH/SZ",
        p.name, p.symbols, p.hk_symbols, p.cn_symbols
    );
    let faketime = faketime_library();
    let dir = tempfile::Builder::new()
        .prefix("dms-scenario-")
        .tempdir()
        .expect("temp dir");
    let servers = tokio::task::spawn_blocking(|| {
        [
            Influxd::start(Options::default()),
            Influxd::start(Options::default()),
            Influxd::start(Options::default()),
        ]
    })
    .await
    .expect("influxd");
    let [mut primary, b1, mut b2] = servers;
    let mock = MockYahoo::start().await;
    let opend = FakeOpenD::start().await;
    // Room for every security of the full run in OpenD's 30-day history quota.
    opend.set(|s| s.quota_remaining = 1_000);
    let futu = futu_universe(&p);
    let hook = Receiver::start("ok").await;
    let port = free_port();
    write_config(
        &p,
        dir.path(),
        port,
        [&primary, &b1, &b2],
        &mock.base_url(),
        opend.port(),
        &hook.url("/hook"),
    );
    let roles = roles();

    // The week's sessions and the simulated instants of each after-market run.
    let day0 = date(2026, 10, 30);
    let days: Vec<NaiveDate> = (2..=6).map(|d| date(2026, 11, d)).collect();
    let after_close = |d: NaiveDate| session(d).1 + 600;
    let final_now = date(2026, 11, 9)
        .and_hms_opt(13, 0, 0)
        .expect("time")
        .and_utc()
        .timestamp();
    let mut world = World {
        now: after_close(day0),
        split: None,
        suspension: (
            roles.suspended.clone(),
            session(days[2]).0,
            session(days[3]).1,
        ),
        revisions: Vec::new(),
        futu: futu.clone(),
        futu_from: daily_stamp(date(2026 - p.history_years as i32 - 1, 1, 1)),
    };
    world.publish(&mock, &opend);

    let bin = std::env::var_os("DMS_SCENARIO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dms")));
    let mut dms = Dms {
        bin,
        config: dir.path().join("dms.yaml"),
        dir: dir.path().to_path_buf(),
        clock_file: dir.path().join("clock"),
        faketime,
        child: None,
        url: format!("http://127.0.0.1:{port}"),
        starts: 0,
    };
    import_history_older_than_yahoos_window(&dms, &world, &roles.split);
    dms.write_clock(world.now);
    dms.start();
    let api = Api {
        base: dms.url.clone(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client"),
    };
    api.wait_healthy().await;

    let mut table = Table(Vec::new());
    let mut failures: Vec<String> = Vec::new();
    let mut check = |table: &mut Table, name: &str, figure: String, ok: bool| {
        if !ok {
            failures.push(format!("{name}: {figure}"));
        }
        table.row(name, figure, ok);
    };

    // The clock DMS runs on is the simulated one.
    let health = api.json("/health").await;
    let id = api.start_update().await;
    let job = api.wait_job(id).await;
    let created = job["created_at"].as_str().unwrap_or_default().to_string();
    check(
        &mut table,
        "dms serve runs on the simulated clock",
        format!("day-0 job created {created}"),
        created.starts_with("2026-10-30"),
    );
    let counters = &job["counters"];
    let initial_bars = counters["bars_written"].as_f64().unwrap_or_default();
    let secs = job_seconds(&job);
    let ingest_rate = initial_bars / secs.max(1e-3);
    eprintln!(
        "[{:.0} s] day 0: initial update {} ({initial_bars} bars in {secs:.1} s); health {}",
        since_start(),
        job["status"],
        health["status"]
    );
    check(
        &mut table,
        "day 0: first update (history)",
        format!(
            "{} bars in {secs:.1} s = {ingest_rate:.0} bars/s",
            initial_bars
        ),
        job["status"] == "succeeded" && initial_bars > 0.0,
    );

    // The reader, from here to the end.
    let reader = Reader {
        expect: Arc::default(),
        stats: Arc::default(),
        stop: Arc::default(),
        server_down: Arc::default(),
        primary_down: Arc::default(),
    };
    let uni = universe(&p);
    // The daily reads take in a few HK and SH/SZ symbols as well.
    let daily: Vec<String> = uni
        .iter()
        .take(p.reader_symbols)
        .map(|(s, _)| s.clone())
        .chain(futu.iter().take(4).map(|f| f.symbol.clone()))
        .collect();
    let five: Vec<String> = uni
        .iter()
        .filter(|(_, iv)| iv.contains(&"5m"))
        .take(p.reader_symbols)
        .map(|(s, _)| s.clone())
        .collect();
    let acknowledge = |expect: &Arc<Mutex<Expect>>, newest: HashMap<(String, String), i64>| {
        let mut e = lock(expect);
        for (k, t) in newest {
            let v = e.newest.entry(k).or_insert(t);
            *v = (*v).max(t);
        }
    };
    acknowledge(&reader.expect, newest(&primary).await);
    let reader_task = reader.spawn(
        dms.url.clone(),
        vec![("1d".into(), daily.clone()), ("5m".into(), five.clone())],
    );

    // Day 1: Yahoo refuses for a stretch, then recovers.
    world.now = after_close(days[0]);
    world.publish(&mock, &opend);
    dms.set_clock(world.now).await;
    let refusals: Vec<Fault> = (0..8)
        .map(|i| Fault::TooManyRequests {
            retry_after: (i % 2 == 0).then(|| "1".to_string()),
        })
        .collect();
    mock.fail_next("*", refusals);
    // OpenD drops every connection while idle, then the first K-line request of the update
    // without answering: the client reconnects, the gate retries.
    let opend_connections = opend.connections();
    opend.drop_connections();
    opend.misbehave_next(HISTORY_KL, Misbehave::Drop);
    let id = api.start_update().await;
    let first = api.wait_job(id).await;
    let paused = api
        .metric("dms_fetch_requests_total{source=\"yahoo\",outcome=\"rate_limited\"}")
        .await;
    // A paused source fails fast (reported, not hammered): series it refused are fetched by
    // the next update, run once the pause (3 s) is over.
    let second = if first["status"] == "succeeded" {
        first.clone()
    } else {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let id = api.start_update().await;
        api.wait_job(id).await
    };
    let refused = mock
        .requests()
        .iter()
        .filter(|r| r.answer.starts_with("TooManyRequests"))
        .count();
    eprintln!(
        "[{:.0} s] day 1: update {} ({} series failed) after {refused} refusals, then {} (errors: {})",
        since_start(),
        first["status"],
        first["counters"]["series_failed"],
        second["status"],
        second["errors"]
            .as_array()
            .map(|e| e
                .iter()
                .take(3)
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("; "))
            .unwrap_or_default()
    );
    check(
        &mut table,
        "day 1: Yahoo 429 ×8 (4 with Retry-After), source paused, recovers",
        format!(
            "{refused} refused ({paused} counted rate_limited); update {} ({} series failed), rerun after the pause {}",
            first["status"], first["counters"]["series_failed"], second["status"]
        ),
        refused == 8 && second["status"] == "succeeded",
    );
    let (current, behind) = futu_current(&primary, &world).await;
    let reconnects = opend.connections() - opend_connections;
    check(
        &mut table,
        "day 1: OpenD drops its connections (idle, then mid-request), DMS reconnects",
        format!(
            "{reconnects} new connections; {current}/{} HK and SH/SZ series current to the day{}",
            current + behind.len(),
            behind
                .first()
                .map(|b| format!(", behind: {b}"))
                .unwrap_or_default()
        ),
        reconnects >= 2 && behind.is_empty(),
    );
    acknowledge(&reader.expect, newest(&primary).await);

    // Day 2: the primary dies while the update writes, and comes back.
    world.now = after_close(days[1]);
    world.publish(&mock, &opend);
    dms.set_clock(world.now).await;
    for (i, (s, _)) in uni.iter().enumerate().skip(1).step_by(5).take(4) {
        mock.fail_next(
            s,
            [Fault::Slow(Duration::from_millis(1500 + 300 * i as u64))],
        );
    }
    let id = api.start_update().await;
    wait_progress(&api, id, 1).await;
    reader.primary_down.store(true, Ordering::Relaxed);
    tokio::task::block_in_place(|| primary.kill());
    let killed_at = Instant::now();
    tokio::time::sleep(p.primary_down).await;
    let spooled_peak = api.metric("dms_spool_bars").await;
    tokio::task::block_in_place(|| primary.restart());
    let down_for = killed_at.elapsed();
    let job = api.wait_job(id).await;
    api.wait_spool_empty().await;
    reader.primary_down.store(false, Ordering::Relaxed);
    let spooled = job["counters"]["bars_spooled"].as_f64().unwrap_or_default();
    eprintln!(
        "[{:.0} s] day 2: update {}, {spooled} bars spooled (gauge {spooled_peak} while down), primary down {down_for:.1?}",
        since_start(),
        job["status"]
    );
    check(
        &mut table,
        "day 2: primary influxd SIGKILLed mid-update, restarted",
        format!(
            "down {:.1} s; {spooled} bars spooled, replayed; update {}",
            down_for.as_secs_f64(),
            job["status"]
        ),
        spooled > 0.0 && job["status"] == "succeeded",
    );
    let (current, behind) = futu_current(&primary, &world).await;
    check(
        &mut table,
        "day 2: HK and SH/SZ series fetched through the primary's outage",
        format!(
            "{current}/{} current to the day{}",
            current + behind.len(),
            behind
                .first()
                .map(|b| format!(", behind: {b}"))
                .unwrap_or_default()
        ),
        behind.is_empty(),
    );
    acknowledge(&reader.expect, newest(&primary).await);

    // Day 3: backup b2 is down for the whole day (and the suspension begins).
    world.now = after_close(days[2]);
    world.publish(&mock, &opend);
    dms.set_clock(world.now).await;
    tokio::task::block_in_place(|| b2.kill());
    let id = api.start_update().await;
    let job = api.wait_job(id).await;
    tokio::time::sleep(p.backup_down_after).await;
    let lag = api.json("/api/v1/nodes").await;
    tokio::task::block_in_place(|| b2.restart());
    let caught = Instant::now();
    api.wait_replicated().await;
    let b2_lag = lag["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == "b2"))
        .map(|n| n["lag_changes"].clone())
        .unwrap_or_default();
    eprintln!(
        "[{:.0} s] day 3: update {}; b2 lag while down {b2_lag}; caught up {:.1?} after restart",
        since_start(),
        job["status"],
        caught.elapsed()
    );
    check(
        &mut table,
        "day 3: backup b2 down for the day, catches up",
        format!(
            "lag while down {b2_lag} changes; caught up {:.1} s after return",
            caught.elapsed().as_secs_f64()
        ),
        job["status"] == "succeeded" && b2_lag.as_u64().is_some_and(|l| l > 0),
    );
    acknowledge(&reader.expect, newest(&primary).await);

    // Day 4: dms serve is SIGKILLed in the middle of a backfill of older history.
    world.now = after_close(days[3]);
    world.publish(&mock, &opend);
    dms.set_clock(world.now).await;
    for (i, s) in roles.deep_backfill.iter().enumerate() {
        mock.fail_always(s, Fault::Slow(Duration::from_millis(800 * (i as u64 + 1))));
    }
    let deep_start = format!("{}-01-01", 2026 - p.history_years as i32 - 3);
    let (status, v) = api
        .post(
            "/api/v1/jobs",
            serde_json::json!({"task": "backfill", "symbols": roles.deep_backfill,
                "interval": "1d", "start": deep_start}),
        )
        .await;
    assert_eq!(status, 202, "backfill: {v}");
    let backfill = v["id"].as_u64().expect("job id");
    let at_kill = wait_progress(&api, backfill, 1).await;
    let rss_first = dms.peak_rss_kib();
    reader.server_down.store(true, Ordering::Relaxed);
    dms.kill();
    mock.clear_faults();
    dms.start();
    api.wait_healthy().await;
    reader.server_down.store(false, Ordering::Relaxed);
    let job = api.wait_job(backfill).await;
    let log = api.json(&format!("/api/v1/jobs/{backfill}/log")).await;
    let resumed = log.to_string().contains("resumed after a restart");
    eprintln!(
        "[{:.0} s] day 4: backfill killed at {at_kill}, then {} (resumed: {resumed})",
        since_start(),
        job["status"]
    );
    check(
        &mut table,
        "day 4: dms serve SIGKILLed mid-backfill, restarted, job resumes",
        format!(
            "killed at {at_kill} series done; after restart {} (log says resumed: {resumed})",
            job["status"]
        ),
        job["status"] == "succeeded" && resumed,
    );
    let id = api.start_update().await;
    let job = api.wait_job(id).await;
    check(
        &mut table,
        "day 4: update after the restart",
        format!("{}", job["status"]),
        job["status"] == "succeeded",
    );
    acknowledge(&reader.expect, newest(&primary).await);

    // Day 5: three revisions of Wednesday's daily bars, and a 2:1 split.
    world.now = after_close(days[4]);
    let wed_open = session(days[2]).0;
    for s in &roles.revised {
        world.revisions.push((s.clone(), wed_open, 1.01));
    }
    world.split = Some((roles.split.clone(), session(days[4]).0, 2.0));
    let previous_job = api.json("/api/v1/jobs?page_size=1").await["jobs"][0]["id"]
        .as_u64()
        .unwrap_or_default();
    world.publish(&mock, &opend);
    dms.set_clock(world.now).await;
    let id = api.start_update().await;
    let job = api.wait_job(id).await;
    // The schedule may fire on the clock change too (its after-market run is due): whichever
    // update met the split first re-fetched the history, so count every job of the day.
    let (mut refetched, mut rebased) = (0, 0);
    for other in (previous_job + 1)..=id {
        let j = api.wait_job(other).await;
        refetched += j["counters"]["refetched_for_splits"]
            .as_u64()
            .unwrap_or_default();
        rebased += j["counters"]["bars_rebased"].as_u64().unwrap_or_default();
    }
    eprintln!(
        "[{:.0} s] day 5: update {}, {refetched} series re-fetched for the split",
        since_start(),
        job["status"]
    );
    check(
        &mut table,
        "day 5: revisions + split: update re-fetches the split symbol's history",
        format!("{refetched} series re-fetched; update {}", job["status"]),
        job["status"] == "succeeded" && refetched >= 1,
    );
    // The 5m bars stored before Yahoo's window at day 5: imported ones and those the day-0
    // update fetched that have since left the window (the check of every bar below says
    // they hold the new basis).
    check(
        &mut table,
        "day 5: the split symbol's 5m history older than Yahoo's window rescaled",
        format!("{rebased} bars rescaled"),
        rebased > 0,
    );
    acknowledge(&reader.expect, newest(&primary).await);
    {
        let mut e = lock(&reader.expect);
        for s in &roles.revised {
            let want = world.synth(s, "1d");
            let bar = yahoo_synth::bars(s, &want, wed_open, wed_open + 1);
            e.values.insert(
                ("1d".into(), s.clone(), daily_stamp(days[2])),
                bar[0].close.expect("close"),
            );
        }
    }

    // Monday before the open: a last update, replication settles.
    world.now = final_now;
    world.publish(&mock, &opend);
    dms.set_clock(world.now).await;
    let id = api.start_update().await;
    let job = api.wait_job(id).await;
    check(
        &mut table,
        "Mon 9 Nov pre-open: last update",
        format!("{}", job["status"]),
        job["status"] == "succeeded",
    );
    api.wait_replicated().await;
    acknowledge(&reader.expect, newest(&primary).await);
    // A few more reads against the final state, then the reader stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    reader.stop.store(true, Ordering::Relaxed);
    let _ = reader_task.await;

    // Every bar the source served, in every store, exactly once, with the final values.
    let stores = [
        ("primary", &primary, DB),
        ("b1", &b1, BACKUP_DB),
        ("b2", &b2, BACKUP_DB),
    ];
    let primary_aggs = aggregates(&primary, DB).await;
    let mut expected_bars = 0u64;
    let mut mismatches: Vec<String> = Vec::new();
    let mut expected: BTreeMap<(String, String), Agg> = BTreeMap::new();
    let mut shallow: Vec<String> = Vec::new();
    let futu_series: Vec<(String, Vec<&'static str>)> = futu
        .iter()
        .map(|f| (f.symbol.clone(), f.intervals.clone()))
        .collect();
    for (s, ivs) in uni.iter().chain(&futu_series) {
        for iv in ivs {
            let key = (s.clone(), iv.to_string());
            let Some(first) = primary_aggs.get(&key).map(|a| a.first) else {
                mismatches.push(format!("{s} {iv}: not in the primary"));
                continue;
            };
            let min_days = match *iv {
                "1d" => 365 * p.history_years as i64 - 10,
                "5m" => 50,
                _ => 25,
            };
            if first > after_close(day0) - min_days * DAY {
                shallow.push(format!("{s} {iv} starts {}", rfc(first)));
            }
            let want = match futu.iter().find(|f| &f.symbol == s) {
                Some(f) => futu_agg(f, iv, first, final_now),
                None => source_agg(&world, s, iv, first, final_now),
            };
            expected_bars += want.count;
            expected.insert(key, want);
        }
    }
    let is_futu = |k: &(String, String)| futu.iter().any(|f| f.symbol == k.0);
    let mut futu_rows: Vec<String> = Vec::new();
    let mut futu_ok = true;
    for (name, server, db) in stores {
        let got = aggregates(server, db).await;
        let mut bad = 0;
        let (mut futu_bad, mut futu_bars_got, mut futu_n) = (0, 0, 0);
        for (key, want) in &expected {
            let ok = got.get(key).is_some_and(|g| {
                g.count == want.count
                    && close_enough(g.sum_close, want.sum_close)
                    && close_enough(g.sum_volume, want.sum_volume)
            });
            if is_futu(key) {
                futu_n += 1;
                futu_bars_got += got.get(key).map_or(0, |g| g.count);
                futu_bad += u32::from(!ok);
            }
            if !ok {
                bad += 1;
                if mismatches.len() < 10 {
                    mismatches.push(format!(
                        "{name} {} {}: got {:?}, source {want:?}",
                        key.0,
                        key.1,
                        got.get(key)
                    ));
                }
            }
        }
        futu_ok &= futu_bad == 0 && futu_n == futu_series.iter().map(|s| s.1.len()).sum::<usize>();
        futu_rows.push(format!(
            "{name} {futu_bars_got} bars in {futu_n} series, {futu_bad} differ"
        ));
        let extra = got.keys().filter(|k| !expected.contains_key(*k)).count();
        let total: u64 = got.values().map(|a| a.count).sum();
        check(
            &mut table,
            &format!("{name}: every source bar once, final values"),
            format!(
                "{total} bars in {} series; {bad} series differ from the source, {extra} unexpected",
                got.len()
            ),
            bad == 0 && extra == 0,
        );
    }
    check(
        &mut table,
        "HK and SH/SZ (fake OpenD): every bar once in all stores, final values",
        futu_rows.join("; "),
        futu_ok,
    );
    check(
        &mut table,
        "history depth (first stored bar)",
        if shallow.is_empty() {
            format!("every series reaches back its full window ({expected_bars} bars expected)")
        } else {
            shallow.join("; ")
        },
        shallow.is_empty(),
    );
    for m in &mismatches {
        eprintln!("  mismatch: {m}");
    }

    // The revised bars and the split symbol's basis, in every store.
    let mut revised_ok = true;
    let mut revised_fig = Vec::new();
    for s in &roles.revised {
        let want = world.synth(s, "1d");
        let want = yahoo_synth::bars(s, &want, wed_open, wed_open + 1)[0]
            .close
            .expect("close");
        for (name, server, db) in stores {
            let got = close_at(server, db, s, "1d", daily_stamp(days[2])).await;
            revised_ok &= got == want;
            if name == "b2" {
                revised_fig.push(format!("{s} {want}"));
            }
        }
    }
    check(
        &mut table,
        "revised bars (3) hold the revised close in all stores",
        revised_fig.join(", "),
        revised_ok,
    );
    let split_first = primary_aggs
        .get(&(roles.split.clone(), "1d".into()))
        .map(|a| a.first)
        .unwrap_or_default();
    let first_date = Utc
        .timestamp_opt(split_first, 0)
        .single()
        .expect("ts")
        .date_naive();
    let (first_open, _) = session(first_date);
    let new_basis = yahoo_synth::bars(
        &roles.split,
        &world.synth(&roles.split, "1d"),
        first_open,
        first_open + 1,
    )[0]
    .close
    .expect("close");
    let old_basis = yahoo_synth::bars(
        &roles.split,
        &Synth::new("1d", final_now),
        first_open,
        first_open + 1,
    )[0]
    .close
    .expect("close");
    let mut split_ok = true;
    for (_, server, db) in stores {
        split_ok &= close_at(server, db, &roles.split, "1d", split_first).await == new_basis;
    }
    check(
        &mut table,
        "split symbol on the new basis everywhere",
        format!(
            "{} first bar {first_date}: close {new_basis} (was {old_basis})",
            roles.split
        ),
        split_ok,
    );

    // Gaps: none, and the suspension is not one.
    let gaps = api.json("/api/v1/gaps?head=true").await;
    let all_gaps = gaps["gaps"].as_array().cloned().unwrap_or_default();
    let (suspension_gaps, other_gaps): (Vec<_>, Vec<_>) = all_gaps
        .iter()
        .partition(|g| g["symbol"] == roles.suspended.as_str());
    check(
        &mut table,
        "GET /api/v1/gaps?head=true: no gap outside the suspension",
        format!(
            "{} gaps{}",
            other_gaps.len(),
            other_gaps
                .first()
                .map(|g| format!(", first: {g}"))
                .unwrap_or_default()
        ),
        !gaps["gaps"].is_null() && other_gaps.is_empty(),
    );
    // The suspension: the source answered pages around Wed and Thu with no bars in them, so
    // they are recorded as confirmed-empty sessions (DESIGN §5), not listed as a gap.
    check(
        &mut table,
        "suspension (2 sessions) recorded, not a gap",
        if suspension_gaps.is_empty() {
            format!(
                "{}: Wed and Thu recorded as confirmed empty, no gap",
                roles.suspended
            )
        } else {
            format!(
                "{} listed as a gap: {}",
                roles.suspended, suspension_gaps[0]
            )
        },
        suspension_gaps.is_empty(),
    );
    let (status, v) = api
        .post("/api/v1/jobs", serde_json::json!({"task": "verify"}))
        .await;
    let verify = match v["id"].as_u64() {
        Some(id) if status == 202 => api.wait_job(id).await,
        _ => v.clone(),
    };
    check(
        &mut table,
        "dms verify (the verify job): primary and backups agree",
        format!(
            "{}: {}",
            verify["status"],
            verify["counters"]
                .to_string()
                .chars()
                .take(300)
                .collect::<String>()
        ),
        verify["status"] == "succeeded" && verify["counters"]["differences"] == 0,
    );

    // The reader.
    // The reader has stopped: take its figures out of the lock.
    let st = std::mem::take(&mut *lock(&reader.stats));
    let mut lat = st.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    check(
        &mut table,
        "reader: no request failed",
        format!(
            "{} ok ({} rows), {} answered 503 (spooled range), {} 503 (primary down), {} refused while dms was killed, {} broken off while the primary was down{}, {} failed{}",
            st.ok,
            st.rows,
            st.spooled_503,
            st.unavailable_503,
            st.server_killed,
            st.primary_outage.len(),
            st.primary_outage
                .first()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default(),
            st.failed.len(),
            st.failed
                .first()
                .map(|f| format!(": {f}"))
                .unwrap_or_default()
        ),
        st.failed.is_empty() && st.ok > 0,
    );
    check(
        &mut table,
        "reader: nothing older than an acknowledged write",
        format!(
            "{} stale{}",
            st.stale.len(),
            st.stale
                .first()
                .map(|f| format!(": {f}"))
                .unwrap_or_default()
        ),
        st.stale.is_empty(),
    );
    table.figure(
        "reader latency (Arrow, whole history)",
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} reads",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            lat.len()
        ),
    );

    // The source's rate.
    let reqs = mock.requests();
    let times: Vec<Instant> = reqs.iter().map(|r| r.at).collect();
    // The limiter admits at most `rpm` sends in any 60 s of DMS's clock; the mock sees them
    // arrive a little later, each by its own transit and scheduling delay (up to seconds on a
    // loaded machine), which can squeeze more arrivals into 60 s of the mock's clock. So the
    // bound is checked over 59 s (1 s of delay spread allowed), and the 60 s count shown.
    let peak = max_in_window(&times, Duration::from_secs(60));
    let peak_59 = max_in_window(&times, Duration::from_secs(59));
    let wait = api.metric("dms_fetch_wait_seconds_total").await;
    check(
        &mut table,
        "Yahoo requests never above the configured rate",
        format!(
            "{} requests; at most {peak_59} arriving in any 59 s, {peak} in any 60 s (limit {} a minute); {wait:.1} s waited on the limiter",
            reqs.len(),
            p.yahoo_rpm
        ),
        peak_59 <= p.yahoo_rpm as usize,
    );

    // Resources.
    let rss = dms.peak_rss_kib().max(rss_first);
    table.figure(
        "peak RSS of dms serve (VmHWM)",
        format!("{:.1} MiB", rss as f64 / 1024.0),
    );

    // Alerts: each raised condition cleared.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (fired, unresolved) = loop {
        let got = hook.received();
        let mut state: BTreeMap<(String, String), (u32, u32, String)> = BTreeMap::new();
        for r in &got {
            let key = (
                r.body["event"].as_str().unwrap_or_default().to_string(),
                r.body["subject"].as_str().unwrap_or_default().to_string(),
            );
            let e = state.entry(key).or_default();
            match r.body["status"].as_str() {
                Some("resolved") => e.1 += 1,
                _ => e.0 += 1,
            }
            e.2 = r.body["status"].as_str().unwrap_or_default().to_string();
        }
        let unresolved: Vec<String> = state
            .iter()
            .filter(|(_, v)| v.2 != "resolved")
            .map(|(k, _)| format!("{} {}", k.0, k.1))
            .collect();
        if unresolved.is_empty() || Instant::now() > deadline {
            break (state, unresolved);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let summary: Vec<String> = fired
        .iter()
        .map(|((e, s), (f, r, _))| format!("{e} {s}: {f} raised, {r} cleared"))
        .collect();
    check(
        &mut table,
        "alerts (webhook): every raised condition cleared",
        if summary.is_empty() {
            "none".into()
        } else {
            summary.join("; ")
        },
        unresolved.is_empty(),
    );
    table.figure(
        "bars/s ingested (day-0 update, job counters)",
        format!("{ingest_rate:.0} bars/s"),
    );
    table.figure(
        "wall time",
        format!("{:.0} s", wall.elapsed().as_secs_f64()),
    );
    let violations = opend.violations();
    check(
        &mut table,
        "fake OpenD: no protocol violation (framing, serials, required fields)",
        format!(
            "{} requests on {} connections; {} violations{}",
            opend.requests().len(),
            opend.connections(),
            violations.len(),
            violations
                .first()
                .map(|v| format!(": {v}"))
                .unwrap_or_default()
        ),
        violations.is_empty(),
    );
    table.print(&format!(
        "Scenario ({}, {} symbols: {} US, {} HK, {} SH/SZ; {} series)",
        p.name,
        p.symbols + futu.len(),
        p.symbols,
        p.hk_symbols,
        p.cn_symbols,
        expected.len()
    ));
    dms.kill();
    if !failures.is_empty() {
        // The serve logs (serve-N.log), config and data stay for a look at what went wrong.
        let kept = dir.keep();
        eprintln!("scenario directory kept: {}", kept.display());
    }
    failures
}

/// Seconds since the scenario started, for the lines it prints and the reader's failures.
fn since_start() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Seconds between a job's start and end.
fn job_seconds(job: &serde_json::Value) -> f64 {
    let t = |k: &str| {
        job[k]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp_millis() as f64 / 1e3)
    };
    match (t("started_at"), t("finished_at")) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    }
}

/// Waits until a job has finished at least `n` series (and is still running); returns the
/// progress seen.
async fn wait_progress(api: &Api, id: u64, n: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = api.job(id).await;
        let done = j["progress"]["done"].as_u64().unwrap_or_default();
        let total = j["progress"]["total"].as_u64().unwrap_or_default();
        assert!(
            j["status"] == "running" || j["status"] == "queued",
            "job {id} ended before the fault could be injected: {j}"
        );
        if done >= n {
            return format!("{done}/{total}");
        }
        assert!(Instant::now() < deadline, "job {id} made no progress: {j}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
