//! Backfill: fetch → validate → store for each series of a request, several series at once
//! within the sources' shared rate limits.
//!
//! Pages are consumed as they arrive (validated, quarantined, written), so memory stays bounded
//! by a page whatever the range. Each series holds its series lock while it writes. The time of
//! each stage is summed so a run can say where it went (fetch includes waiting on the rate
//! limiter; parse is what the source reports for turning responses into bars).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::jobs::JobCtx;
use super::locks::SeriesLocks;
use crate::domain::{Interval, Market, SeriesKey, SourceKind, Symbol, TimeRange, time};
use crate::ingest::Writer;
use crate::source::{Dropped, FetchRequest, Source, SourceError};
use crate::store::meta::UniverseEntry;
use crate::validate::Context;

/// How many series a backfill fetches at once (the sources' rate limiters still apply).
pub const CONCURRENCY: usize = 8;

/// What to backfill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillParams {
    pub symbols: Vec<Symbol>,
    pub interval: Interval,
    pub start: i64,
    /// Exclusive; "now" when absent.
    pub end: Option<i64>,
    /// Overrides each symbol's universe source (default: the universe entry's, else Yahoo).
    pub source: Option<SourceKind>,
}

/// Counters of a backfill, reported by the job and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackfillCounters {
    pub series: u64,
    pub series_failed: u64,
    pub pages: u64,
    pub bars_fetched: u64,
    pub bars_written: u64,
    pub bars_rejected: u64,
    pub dropped: DroppedCounts,
    pub actions: u64,
    /// Seconds spent in each stage, summed over series (they overlap in wall time).
    pub fetch_s: f64,
    pub parse_s: f64,
    pub validate_s: f64,
    pub write_s: f64,
}

/// [`Dropped`], serialisable both ways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedCounts {
    pub no_trade: u64,
    pub out_of_range: u64,
    pub forming: u64,
}

impl From<Dropped> for DroppedCounts {
    fn from(d: Dropped) -> DroppedCounts {
        DroppedCounts {
            no_trade: d.no_trade,
            out_of_range: d.out_of_range,
            forming: d.forming,
        }
    }
}

impl BackfillCounters {
    fn add(&mut self, o: &BackfillCounters) {
        self.series += o.series;
        self.series_failed += o.series_failed;
        self.pages += o.pages;
        self.bars_fetched += o.bars_fetched;
        self.bars_written += o.bars_written;
        self.bars_rejected += o.bars_rejected;
        self.dropped.no_trade += o.dropped.no_trade;
        self.dropped.out_of_range += o.dropped.out_of_range;
        self.dropped.forming += o.dropped.forming;
        self.actions += o.actions;
        self.fetch_s += o.fetch_s;
        self.parse_s += o.parse_s;
        self.validate_s += o.validate_s;
        self.write_s += o.write_s;
    }

    /// `fetch 61%, parse 9%, validate 3%, write 27%`.
    pub fn shares(&self) -> String {
        let total = self.fetch_s + self.parse_s + self.validate_s + self.write_s;
        if total <= 0.0 {
            return "no time measured".into();
        }
        let pct = |x: f64| 100.0 * x / total;
        format!(
            "fetch {:.0}%, parse {:.0}%, validate {:.0}%, write {:.0}%",
            pct(self.fetch_s),
            pct(self.parse_s),
            pct(self.validate_s),
            pct(self.write_s)
        )
    }
}

/// What a backfill needs from the service.
#[derive(Clone)]
pub struct BackfillEnv {
    pub writer: Writer,
    pub sources: BTreeMap<SourceKind, Arc<dyn Source>>,
    pub universe: Vec<UniverseEntry>,
    pub locks: SeriesLocks,
}

/// Runs a backfill; returns the counters and one error line per failed series. Series listed
/// in `ctx`'s checkpoint as done are skipped (a resumed job).
pub async fn run(
    env: &BackfillEnv,
    params: &BackfillParams,
    ctx: &JobCtx,
) -> (BackfillCounters, Vec<String>) {
    let now = chrono::Utc::now().timestamp();
    let end = params.end.unwrap_or(now + 1).min(now + 1);
    let done_before: Vec<String> = ctx
        .checkpoint()
        .and_then(|c| serde_json::from_value(c["done"].clone()).ok())
        .unwrap_or_default();
    let todo: Vec<Symbol> = params
        .symbols
        .iter()
        .filter(|s| !done_before.iter().any(|d| d == s.as_str()))
        .cloned()
        .collect();
    ctx.set_total(params.symbols.len() as u64);
    ctx.set_done((params.symbols.len() - todo.len()) as u64);
    let range = match TimeRange::new(params.start, end) {
        Ok(r) => r,
        Err(e) => return (BackfillCounters::default(), vec![format!("backfill: {e}")]),
    };
    let mut totals = BackfillCounters::default();
    let mut errors = Vec::new();
    let mut done = done_before;
    let mut results = futures::stream::iter(todo.into_iter().map(|symbol| {
        let env = env.clone();
        async move {
            let r = backfill_series(&env, params, &symbol, range, now, ctx).await;
            (symbol, r)
        }
    }))
    .buffer_unordered(CONCURRENCY);
    while let Some((symbol, (counters, result))) = results.next().await {
        totals.add(&counters);
        match result {
            Ok(()) => {
                ctx.log(
                    "info",
                    &format!(
                        "{symbol}: {} bars fetched, {} written, {} quarantined",
                        counters.bars_fetched, counters.bars_written, counters.bars_rejected
                    ),
                )
                .await;
                done.push(symbol.to_string());
            }
            Err(e) => {
                totals.series_failed += 1;
                let line = format!("{symbol}: {e}");
                ctx.log("error", &line).await;
                errors.push(line);
            }
        }
        ctx.inc_done();
        ctx.set_counters(serde_json::to_value(&totals).unwrap_or_default());
        ctx.set_checkpoint(serde_json::json!({ "done": done }));
        if ctx.is_cancelled() {
            break;
        }
    }
    (totals, errors)
}

/// The source, market and Futu code of a symbol: the universe entry's, else by rule.
fn resolve(
    env: &BackfillEnv,
    params: &BackfillParams,
    symbol: &Symbol,
) -> (SourceKind, Option<Market>, Option<String>) {
    let entry = env.universe.iter().find(|u| &u.symbol == symbol);
    let source = params
        .source
        .or(entry.map(|e| e.source))
        .unwrap_or(SourceKind::Yahoo);
    let market = entry.and_then(|e| e.market).or_else(|| symbol.market());
    (source, market, entry.and_then(|e| e.futu_code.clone()))
}

async fn backfill_series(
    env: &BackfillEnv,
    params: &BackfillParams,
    symbol: &Symbol,
    range: TimeRange,
    now: i64,
    ctx: &JobCtx,
) -> (BackfillCounters, Result<(), SourceOrWrite>) {
    let mut c = BackfillCounters {
        series: 1,
        ..BackfillCounters::default()
    };
    let (kind, market, futu_code) = resolve(env, params, symbol);
    let Some(source) = env.sources.get(&kind).cloned() else {
        return (c, Err(SourceOrWrite::NoSource(kind)));
    };
    let series = SeriesKey::new(symbol.clone(), params.interval);
    let _guard = env.locks.lock(&series).await;
    let req = FetchRequest {
        series: series.clone(),
        range,
        market,
        futu_code,
        now,
    };
    let mut pages = source.fetch(req);
    loop {
        if ctx.is_cancelled() {
            return (c, Err(SourceOrWrite::Cancelled));
        }
        let t = Instant::now();
        let next = pages.next().await;
        let waited = t.elapsed();
        let page = match next {
            None => break,
            Some(Err(e)) => {
                c.fetch_s += waited.as_secs_f64();
                return (c, Err(SourceOrWrite::Source(e)));
            }
            Some(Ok(p)) => p,
        };
        let parse = page.parse_time.min(waited);
        c.fetch_s += (waited - parse).as_secs_f64();
        c.parse_s += parse.as_secs_f64();
        c.pages += 1;
        c.bars_fetched += page.bars.len() as u64;
        let d = DroppedCounts::from(page.dropped);
        c.dropped.no_trade += d.no_trade;
        c.dropped.out_of_range += d.out_of_range;
        c.dropped.forming += d.forming;
        let t = Instant::now();
        // Validated against the clock of now, not of the job's start: a long backfill must not
        // call a bar that completed meanwhile "in the future".
        let vctx = Context::new(chrono::Utc::now().timestamp(), market);
        let written = async {
            let r = env.writer.ingest(&series, page.bars, &vctx).await?;
            c.bars_rejected += r.rejected;
            c.bars_written += r.written;
            c.validate_s += r.validate_time.as_secs_f64();
            if !page.actions.is_empty() {
                env.writer.write_actions(symbol, &page.actions).await?;
                c.actions += page.actions.len() as u64;
            }
            Ok::<(), crate::ingest::WriteError>(())
        }
        .await;
        c.write_s += t.elapsed().as_secs_f64();
        if let Err(e) = written {
            return (c, Err(SourceOrWrite::Write(e)));
        }
        tracing::debug!(
            job_id = ctx.id(),
            symbol = %symbol,
            interval = %params.interval,
            source = kind.as_str(),
            bars = c.bars_fetched,
            "page stored"
        );
    }
    tracing::info!(
        job_id = ctx.id(),
        symbol = %symbol,
        interval = %params.interval,
        source = kind.as_str(),
        fetched = c.bars_fetched,
        written = c.bars_written,
        rejected = c.bars_rejected,
        range = %range,
        "series backfilled"
    );
    (c, Ok(()))
}

#[derive(Debug, thiserror::Error)]
enum SourceOrWrite {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Write(#[from] crate::ingest::WriteError),
    #[error("no {0} source is configured")]
    NoSource(SourceKind),
    #[error("cancelled")]
    Cancelled,
}

/// Parses the user-facing parameters of a backfill (API body or CLI flags).
pub fn parse_params(
    symbols: &[String],
    interval: Option<&str>,
    start: Option<&str>,
    end: Option<&str>,
    source: Option<&str>,
) -> Result<BackfillParams, String> {
    let mut syms = Vec::new();
    for s in symbols
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let sym = Symbol::parse(s).map_err(|e| e.to_string())?;
        if !syms.contains(&sym) {
            syms.push(sym);
        }
    }
    if syms.is_empty() {
        return Err("symbols: at least one symbol is required".into());
    }
    let interval: Interval = interval.ok_or("interval: required")?.parse()?;
    let start = time::parse_instant(start.ok_or("start: required for a backfill")?)
        .map_err(|e| format!("start: {e}"))?;
    let end = end
        .map(time::parse_instant)
        .transpose()
        .map_err(|e| format!("end: {e}"))?;
    if let Some(e) = end
        && e <= start
    {
        return Err(format!(
            "end {} is not after start {}",
            time::rfc3339(e),
            time::rfc3339(start)
        ));
    }
    let source = source.map(str::parse::<SourceKind>).transpose()?;
    if source == Some(SourceKind::Unknown) {
        return Err("source: expected yahoo, futu or files".into());
    }
    Ok(BackfillParams {
        symbols: syms,
        interval,
        start,
        end,
        source,
    })
}

/// Rounds for human output.
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
