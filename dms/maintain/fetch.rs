//! Fetching series into the primary: the one path every fetching task uses (backfill, update,
//! full, repair). For each series of a plan, under its series lock: source pages →
//! [`Writer::ingest`] (validate, quarantine, write through the change log) → corporate
//! actions; several series at once within the sources' shared rate limits.
//!
//! Pages are consumed as they arrive, so memory stays bounded by a page whatever the range.
//! The time of each stage is summed so a run can say where it went (fetch includes waiting on
//! the rate limiter; parse is what the source reports for turning responses into bars).
//!
//! **Splits.** Yahoo's prices are split-adjusted as of fetch time (DESIGN §1), so a split
//! that appears for a symbol makes its stored history the old basis. A page carrying a split
//! the store did not have yet, for a series with stored bars older than what the task
//! fetches, is reported ([`SeriesOutcome::new_splits`]), and
//! [`fetch_plans`] then re-fetches every stored series of that symbol over its whole stored
//! range, logging why, so all stored bars share one basis. The part the source no longer
//! serves (Yahoo's intraday windows) is rescaled by the split ratios once the bars the
//! re-fetch overwrote and the jump across the edge show it is on the old basis
//! ([`super::rebase`]). The re-fetch is recorded pending in `meta.db` before the split is
//! stored and cleared when the symbol is done, so a task killed in between leaves it to the
//! next one fetching the symbol.
//!
//! **Confirmed empties.** Each page a source answered says which span it covers
//! ([`crate::source::Page::range`]); after the page is stored, the sessions of that span the
//! calendar expects and the answer left without a bar (a halt, a suspension) are recorded
//! through [`super::scan::GapScanner::confirm_empty`], so gap listings and later updates skip
//! them. A failed request yields no page, so nothing it did not answer is recorded.
//!
//! A series finished is recorded in the job's checkpoint (`{"done": ["AAPL@1d", ...]}`): a job
//! resumed after a crash skips it, and re-fetches the rest — writes are upserts, so whatever a
//! killed run had written of an unfinished series is written again, never duplicated.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::MaintainEnv;
use super::ctx::JobCtx;
use super::rebase::{self, Basis, NewSplit};
use super::universe::Maintained;
use crate::domain::{ActionKind, Bar, SeriesKey, SourceKind, Symbol, TimeRange, time};
use crate::ingest::WriteError;
use crate::source::{Dropped, FetchRequest, SourceError};

/// How many series a task fetches at once (the sources' rate limiters still apply).
pub const CONCURRENCY: usize = 8;

/// Counters of a fetching task, reported by the job and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FetchCounters {
    pub series: u64,
    pub series_failed: u64,
    pub pages: u64,
    pub bars_fetched: u64,
    pub bars_written: u64,
    /// Bars the primary could not take, kept in the spool (fsynced) until it can.
    pub bars_spooled: u64,
    pub bars_rejected: u64,
    pub dropped: Dropped,
    pub actions: u64,
    /// Series whose history was re-fetched because a new split appeared.
    pub refetched_for_splits: u64,
    /// Stored bars older than what the source serves, rescaled onto a new split's basis.
    pub bars_rebased: u64,
    /// Sessions a source answered for with no bar (halts, suspensions), recorded so they are
    /// neither reported as gaps nor fetched again.
    pub sessions_confirmed_empty: u64,
    /// Seconds spent in each stage, summed over series (they overlap in wall time).
    pub fetch_s: f64,
    pub parse_s: f64,
    pub validate_s: f64,
    pub write_s: f64,
}

impl FetchCounters {
    pub fn add(&mut self, o: &FetchCounters) {
        self.series += o.series;
        self.series_failed += o.series_failed;
        self.pages += o.pages;
        self.bars_fetched += o.bars_fetched;
        self.bars_written += o.bars_written;
        self.bars_spooled += o.bars_spooled;
        self.bars_rejected += o.bars_rejected;
        self.dropped += o.dropped;
        self.actions += o.actions;
        self.refetched_for_splits += o.refetched_for_splits;
        self.bars_rebased += o.bars_rebased;
        self.sessions_confirmed_empty += o.sessions_confirmed_empty;
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

/// What to fetch of one series: its ranges, in order (they may overlap; writes are upserts).
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Maintained,
    pub ranges: Vec<TimeRange>,
}

/// Why a series could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("no {0} source is configured")]
    NoSource(SourceKind),
    #[error("cancelled")]
    Cancelled,
}

/// The outcome of one series.
#[derive(Debug, Default)]
pub struct SeriesOutcome {
    pub counters: FetchCounters,
    /// Split dates (`ts`) the source reported that the store did not hold before.
    pub new_splits: Vec<i64>,
    /// The oldest instant a page answered for (what the source serves of the ranges asked).
    pub answered_from: Option<i64>,
}

/// Fetches every plan (skipping series the checkpoint lists as done), then re-fetches the
/// stored history of symbols that gained a split. Returns the counters and one error line
/// per failed series.
pub async fn fetch_plans(
    env: &MaintainEnv,
    plans: Vec<Plan>,
    ctx: &JobCtx,
) -> (FetchCounters, Vec<String>) {
    let mut done: Vec<String> = ctx
        .checkpoint()
        .and_then(|c| serde_json::from_value(c["done"].clone()).ok())
        .unwrap_or_default();
    let total = plans.len() as u64;
    let plan_symbols: BTreeSet<Symbol> = plans
        .iter()
        .map(|p| p.target.series.symbol.clone())
        .collect();
    let todo: Vec<Plan> = plans
        .into_iter()
        .filter(|p| !done.contains(&p.target.series.to_string()))
        .collect();
    ctx.set_total(total);
    ctx.set_done(total - todo.len() as u64);
    let mut totals = FetchCounters::default();
    let mut errors = Vec::new();
    let mut results = futures::stream::iter(todo.into_iter().map(|plan| {
        let env = env.clone();
        async move {
            let r = fetch_series(&env, &plan, ctx).await;
            (plan, r)
        }
    }))
    .buffer_unordered(CONCURRENCY);
    while let Some((plan, (outcome, result))) = results.next().await {
        let series = &plan.target.series;
        totals.add(&outcome.counters);
        let c = &outcome.counters;
        match result {
            Ok(()) => {
                let spooled = if c.bars_spooled > 0 {
                    format!(", {} spooled (the primary is unreachable)", c.bars_spooled)
                } else {
                    String::new()
                };
                ctx.log(
                    "info",
                    &format!(
                        "{series}: {} bars fetched, {} written, {} quarantined{spooled}",
                        c.bars_fetched, c.bars_written, c.bars_rejected
                    ),
                )
                .await;
                done.push(series.to_string());
            }
            Err(FetchError::Cancelled) => {}
            Err(e) => {
                totals.series_failed += 1;
                let line = format!("{}: {e}", series.symbol);
                ctx.log("error", &line).await;
                errors.push(line);
            }
        }
        for ts in &outcome.new_splits {
            ctx.log(
                "info",
                &format!(
                    "{}: new split on {}: re-fetching its stored history so every stored bar shares the new basis",
                    series.symbol,
                    time::date_of(*ts)
                ),
            )
            .await;
        }
        ctx.inc_done();
        ctx.set_counters(serde_json::to_value(&totals).unwrap_or_default());
        ctx.set_checkpoint(serde_json::json!({ "done": done }));
        if ctx.is_cancelled() {
            return (totals, errors);
        }
    }
    drop(results);
    // What meta.db holds pending includes the splits just found (recorded before they were
    // stored) and those a task killed before its re-fetch ended left. One task at a time: a
    // job that waited finds what the other finished cleared, or counted as started.
    match pending_splits(env, &plan_symbols).await {
        Ok(p) if p.is_empty() => {}
        Ok(_) => {
            let _one_at_a_time = env.locks.lock_split_refetch().await;
            match pending_splits(env, &plan_symbols).await {
                Ok(pending) if !pending.is_empty() => {
                    let (c, e) = refetch_history(env, &pending, ctx).await;
                    totals.add(&c);
                    errors.extend(e);
                    ctx.set_counters(serde_json::to_value(&totals).unwrap_or_default());
                }
                Ok(_) => {}
                Err(e) => errors.push(format!("cannot read the pending split re-fetches: {e}")),
            }
        }
        Err(e) => errors.push(format!("cannot read the pending split re-fetches: {e}")),
    }
    (totals, errors)
}

/// The pending splits of `symbols`.
async fn pending_splits(
    env: &MaintainEnv,
    symbols: &BTreeSet<Symbol>,
) -> Result<BTreeMap<Symbol, Pending>, crate::store::meta::MetaError> {
    let mut out: BTreeMap<Symbol, Pending> = BTreeMap::new();
    for (symbol, ts, attempts) in env.writer.meta().pending_splits().await? {
        let Ok(symbol) = Symbol::parse(&symbol) else {
            continue;
        };
        if symbols.contains(&symbol) {
            let p = out.entry(symbol).or_default();
            p.dates.insert(ts);
            p.attempts = p.attempts.max(attempts);
        }
    }
    Ok(out)
}

/// Splits of one symbol whose re-fetch has not completed.
#[derive(Debug, Clone, Default)]
struct Pending {
    dates: BTreeSet<i64>,
    /// Re-fetches started before (by a task that did not finish it).
    attempts: u32,
}

/// Re-fetches, for each symbol, every stored series over its whole stored range; the part
/// older than what the source serves is rescaled when it is shown to be on the old basis
/// ([`rebase`]). A symbol's pending splits are cleared once all its series are done.
async fn refetch_history(
    env: &MaintainEnv,
    symbols: &BTreeMap<Symbol, Pending>,
    ctx: &JobCtx,
) -> (FetchCounters, Vec<String>) {
    let mut totals = FetchCounters::default();
    let mut errors = Vec::new();
    let stored = match env.writer.primary().list_series().await {
        Ok(s) => s,
        Err(e) => return (totals, vec![format!("cannot list stored series: {e}")]),
    };
    let meta = env.writer.meta();
    for (symbol, pending) in symbols {
        // Bars a re-fetch overwrote tell the old basis only if no re-fetch ran before.
        let first_attempt = pending.attempts == 0;
        if let Err(e) = meta.start_split_refetch(symbol.as_str()).await {
            errors.push(format!("{symbol}: cannot record the split re-fetch: {e}"));
            continue;
        }
        let mut complete = true;
        for s in stored.iter().filter(|s| &s.series.symbol == symbol) {
            let target = match env.universe.get(&s.series.symbol) {
                Some(e) => Maintained::of(&e, s.series.interval),
                None => Maintained {
                    series: s.series.clone(),
                    source: SourceKind::Yahoo,
                    market: s.series.symbol.market(),
                    futu_code: None,
                    start: None,
                },
            };
            let Ok(range) = TimeRange::new(s.first, env.clock.now() + 1) else {
                continue;
            };
            // The stored closes before the splits, to judge the basis of the bars the
            // re-fetch cannot reach by those it overwrites.
            let before = if first_attempt {
                let _guard = env.locks.lock(&s.series).await;
                match probe(env, &s.series, s.first, &pending.dates).await {
                    Ok(v) => Some(v),
                    Err(e) => {
                        errors.push(format!("{}: reading its stored bars: {e}", s.series));
                        complete = false;
                        continue;
                    }
                }
            } else {
                None
            };
            let market = target.market;
            let plan = Plan {
                target,
                ranges: vec![range],
            };
            let (outcome, r) = fetch_series(env, &plan, ctx).await;
            totals.add(&outcome.counters);
            totals.refetched_for_splits += 1;
            if let Err(e) = r {
                let line = format!("{}: re-fetch after a split: {e}", s.series);
                ctx.log("error", &line).await;
                errors.push(line);
                complete = false;
                continue;
            }
            // Stored bars older than every page answered were not re-fetched.
            let Some(served_from) = outcome.answered_from.filter(|a| *a > s.first) else {
                continue;
            };
            let splits = match new_splits(env, symbol, &pending.dates).await {
                Ok(v) => v,
                Err(e) => {
                    errors.push(format!("{}: reading its splits: {e}", s.series));
                    complete = false;
                    continue;
                }
            };
            let unserved = Unserved {
                series: &s.series,
                market,
                first: s.first,
                served_from,
            };
            // Like the re-fetch, under the series lock: no other task writes it meanwhile.
            let guard = env.locks.lock(&s.series).await;
            let rebased = rebase_unserved(env, &unserved, &splits, before.as_deref()).await;
            drop(guard);
            match rebased {
                Ok((n, line)) => {
                    totals.bars_rebased += n;
                    ctx.log("info", &line).await;
                }
                Err(line) => {
                    ctx.log("error", &line).await;
                    errors.push(line);
                }
            }
        }
        let dates: Vec<i64> = pending.dates.iter().copied().collect();
        if complete {
            if let Err(e) = meta.clear_pending_splits(symbol.as_str(), &dates).await {
                errors.push(format!(
                    "{symbol}: cannot record the split re-fetch done: {e}"
                ));
            }
        } else {
            ctx.log(
                "error",
                &format!("{symbol}: the re-fetch after its split stays pending; the next task fetching {symbol} retries it"),
            )
            .await;
        }
    }
    (totals, errors)
}

/// The new splits of `symbol` (dated `dates`) with their ratios, as stored by the fetch.
async fn new_splits(
    env: &MaintainEnv,
    symbol: &Symbol,
    dates: &BTreeSet<i64>,
) -> Result<Vec<NewSplit>, crate::store::StoreError> {
    let Some(range) = TimeRange::covering(dates.iter().copied()) else {
        return Ok(Vec::new());
    };
    let actions = env.writer.primary().read_actions(symbol, range).await?;
    Ok(actions
        .iter()
        .filter(|a| a.kind == ActionKind::Split && dates.contains(&a.ts))
        .filter(|a| a.amount.is_finite() && a.amount > 0.0)
        .map(|a| NewSplit {
            ts: a.ts,
            ratio: a.amount,
        })
        .collect())
}

/// `(ts, close)` of the stored bars before the earliest split (16 bytes a bar are kept).
async fn probe(
    env: &MaintainEnv,
    series: &SeriesKey,
    first: i64,
    dates: &BTreeSet<i64>,
) -> Result<Vec<(i64, f64)>, crate::store::StoreError> {
    let Some(&earliest) = dates.first() else {
        return Ok(Vec::new());
    };
    let Ok(range) = TimeRange::new(first, earliest) else {
        return Ok(Vec::new());
    };
    let bars = env.writer.primary().read(series, range).await?;
    Ok(bars.iter().map(|b| (b.ts, b.close)).collect())
}

/// The stored part of a series that a re-fetch could not reach: `[first, served_from)`.
struct Unserved<'a> {
    series: &'a SeriesKey,
    market: Option<crate::domain::Market>,
    first: i64,
    served_from: i64,
}

/// Rescales the stored bars the source no longer serves when [`rebase::decide`] finds them
/// on the old basis: by `before` (the closes the re-fetch overwrote, `None` when they cannot
/// be trusted) compared with what the re-fetch stored, and by the jump across the edge.
/// Returns the bars rescaled and the line for the job's log, or the error line.
async fn rebase_unserved(
    env: &MaintainEnv,
    part: &Unserved<'_>,
    splits: &[NewSplit],
    before: Option<&[(i64, f64)]>,
) -> Result<(u64, String), String> {
    let (series, served_from) = (part.series, part.served_from);
    let from = time::rfc3339(served_from);
    let fail =
        |e: &dyn std::fmt::Display| format!("{series}: rebasing the bars before {from}: {e}");
    let read = |r: Result<TimeRange, _>| async move {
        match r {
            Ok(r) => env
                .writer
                .primary()
                .read(series, r)
                .await
                .map_err(|e| fail(&e)),
            Err(_) => Ok(Vec::new()),
        }
    };
    // The oldest re-fetched bars (nearest the part the source no longer serves), and the
    // newest of that part.
    let earliest = splits.iter().map(|s| s.ts).min().unwrap_or(served_from);
    let head = read(TimeRange::new(
        served_from,
        earliest.min(served_from + rebase::PROBE_SPAN),
    ))
    .await?;
    let tail = read(TimeRange::new(
        part.first.max(served_from - rebase::PROBE_SPAN),
        served_from,
    ))
    .await?;
    let overwritten = before.map(|b| rebase::judge(b, &head, splits));
    let basis = rebase::decide(overwritten, rebase::judge_edge(&tail, &head, splits));
    let by = if overwritten.is_some() {
        "the re-fetched bars before the split were stored on the old one"
    } else {
        "the jump to the re-fetched bars is the split's"
    };
    let old = TimeRange::new(part.first, served_from).map_err(|e| fail(&e))?;
    let (from, fail) = (&from, &fail);
    let rescale = |bars: Vec<Bar>, why: String| async move {
        let n = bars.len() as u64;
        let vctx = env.validation_context(env.clock.now(), part.market);
        // Newest first, a chunk at a time: a rescale cut short leaves an older part on the
        // old basis ending in a jump, which the next attempt finds.
        let mut rescaled = rebase::rescale(bars, splits);
        while !rescaled.is_empty() {
            let chunk = rescaled.split_off(rescaled.len().saturating_sub(rebase::RESCALE_CHUNK));
            let r = env
                .writer
                .ingest(series, chunk, &vctx)
                .await
                .map_err(|e| fail(&e))?;
            if r.rejected > 0 {
                return Err(fail(&format!(
                    "{} of {n} rescaled bars failed validation and are quarantined",
                    r.rejected
                )));
            }
        }
        Ok((
            n,
            format!(
                "{series}: {n} bars before {from} are older than the source serves; \
                 rescaled onto the new split basis ({why})"
            ),
        ))
    };
    match basis {
        Basis::Old { compared } => {
            let bars = read(Ok(old)).await?;
            rescale(bars, format!("{by}; {compared} bars compared")).await
        }
        // After an earlier attempt, the newest of them on the new basis may be the part of
        // a rescale cut short that was written.
        Basis::New { .. } if overwritten.is_none() => {
            let bars = read(Ok(old)).await?;
            match rebase::old_basis_end(&bars, splits) {
                Some(end) => {
                    let mut bars = bars;
                    bars.truncate(end);
                    rescale(
                        bars,
                        "finishing a rescale cut short: the jump within them is the split's".into(),
                    )
                    .await
                }
                None => Ok((
                    0,
                    format!(
                        "{series}: the bars before {from} are older than the source serves and \
                         already on the new split basis; left as stored"
                    ),
                )),
            }
        }
        Basis::New { compared } => Ok((
            0,
            format!(
                "{series}: the bars before {from} are older than the source serves and already \
                 on the new split basis ({compared} bars compared); left as stored"
            ),
        )),
        Basis::Unknown { compared } => Err(format!(
            "{series}: the bars before {from} are older than the source serves and their split \
             basis cannot be told ({compared} bars compared); they are left as stored and may \
             be on the old basis: delete or re-import them"
        )),
    }
}

/// Fetches the ranges of one series under its series lock.
pub async fn fetch_series(
    env: &MaintainEnv,
    plan: &Plan,
    ctx: &JobCtx,
) -> (SeriesOutcome, Result<(), FetchError>) {
    let mut out = SeriesOutcome {
        counters: FetchCounters {
            series: 1,
            ..FetchCounters::default()
        },
        ..SeriesOutcome::default()
    };
    let t = &plan.target;
    let Some(source) = env.sources.get(&t.source).cloned() else {
        return (out, Err(FetchError::NoSource(t.source)));
    };
    let _guard = env.locks.lock(&t.series).await;
    // Bars before the first range are history this task does not rewrite: on the old basis
    // if a split appears.
    let history_before = plan
        .ranges
        .iter()
        .map(|r| r.start())
        .min()
        .unwrap_or(i64::MIN);
    for &range in &plan.ranges {
        let req = FetchRequest {
            series: t.series.clone(),
            range,
            market: t.market,
            futu_code: t.futu_code.clone(),
            now: env.clock.now(),
        };
        if let Err(e) = fetch_range(env, source.as_ref(), req, history_before, ctx, &mut out).await
        {
            return (out, Err(e));
        }
    }
    tracing::info!(
        job_id = ctx.id(),
        symbol = %t.series.symbol,
        interval = %t.series.interval,
        source = t.source.as_str(),
        fetched = out.counters.bars_fetched,
        written = out.counters.bars_written,
        rejected = out.counters.bars_rejected,
        "series fetched"
    );
    (out, Ok(()))
}

async fn fetch_range(
    env: &MaintainEnv,
    source: &dyn crate::source::Source,
    req: FetchRequest,
    history_before: i64,
    ctx: &JobCtx,
    out: &mut SeriesOutcome,
) -> Result<(), FetchError> {
    let series: SeriesKey = req.series.clone();
    let market = req.market;
    let mut pages = source.fetch(req);
    loop {
        if ctx.is_cancelled() {
            return Err(FetchError::Cancelled);
        }
        let c = &mut out.counters;
        let t = Instant::now();
        let next = pages.next().await;
        let waited = t.elapsed();
        let page = match next {
            None => return Ok(()),
            Some(Err(e)) => {
                c.fetch_s += waited.as_secs_f64();
                return Err(e.into());
            }
            Some(Ok(p)) => p,
        };
        let parse = page.parse_time.min(waited);
        c.fetch_s += (waited - parse).as_secs_f64();
        c.parse_s += parse.as_secs_f64();
        c.pages += 1;
        c.bars_fetched += page.bars.len() as u64;
        c.dropped += page.dropped;
        let t = Instant::now();
        // Validated against the clock of now, not of the job's start: a long task must not
        // call a bar that completed meanwhile "in the future".
        let vctx = env.validation_context(env.clock.now(), market);
        let splits: Vec<i64> = page
            .actions
            .iter()
            .filter(|a| a.kind == ActionKind::Split)
            .map(|a| a.ts)
            .collect();
        if !splits.is_empty() {
            let unseen = unseen_splits(env, &series.symbol, &splits).await?;
            if !unseen.is_empty() && has_history_before(env, &series, history_before).await? {
                // Recorded before the split is stored: a task killed after storing it would
                // otherwise never see it as new again.
                env.writer
                    .meta()
                    .add_pending_splits(series.symbol.as_str(), &unseen)
                    .await
                    .map_err(WriteError::from)?;
                out.new_splits.extend(unseen);
            }
        }
        // What the answer covers, and every stamp it returned (before validation: a
        // quarantined bar is not an empty session).
        let answered = page.range;
        if let Some(r) = answered {
            out.answered_from = Some(out.answered_from.map_or(r.start(), |a| a.min(r.start())));
        }
        let stamps: Vec<i64> = match answered {
            Some(_) => page.bars.iter().map(|b| b.ts).collect(),
            None => Vec::new(),
        };
        let r = env.writer.ingest(&series, page.bars, &vctx).await?;
        c.bars_rejected += r.rejected;
        c.bars_written += r.written;
        c.bars_spooled += r.spooled;
        c.validate_s += r.validate_time.as_secs_f64();
        if !page.actions.is_empty() {
            env.writer
                .write_actions(&series.symbol, &page.actions)
                .await?;
            c.actions += page.actions.len() as u64;
        }
        c.write_s += (t.elapsed() - r.validate_time).as_secs_f64();
        // Only after the page is stored, and only for the span this (successful) answer
        // covers; `confirm_empty` leaves out sessions not yet final (the open one).
        if let Some(range) = answered {
            match env
                .gaps
                .confirm_empty(
                    &series,
                    market,
                    source.kind(),
                    range,
                    &stamps,
                    env.clock.now(),
                )
                .await
            {
                Ok(confirmed) => c.sessions_confirmed_empty += confirmed.sessions.len() as u64,
                Err(e) => tracing::warn!(
                    job_id = ctx.id(),
                    symbol = %series.symbol,
                    interval = %series.interval,
                    error = %e,
                    "cannot record the sessions the source confirmed empty; they stay gaps"
                ),
            }
        }
        tracing::debug!(
            job_id = ctx.id(),
            symbol = %series.symbol,
            interval = %series.interval,
            bars = c.bars_fetched,
            "page stored"
        );
    }
}

/// Whether the store holds bars of `series` before `ts`.
async fn has_history_before(
    env: &MaintainEnv,
    series: &SeriesKey,
    ts: i64,
) -> Result<bool, FetchError> {
    let Ok(before) = TimeRange::new(crate::validate::TS_MIN, ts) else {
        return Ok(false);
    };
    let n = env
        .writer
        .primary()
        .count(series, before)
        .await
        .map_err(WriteError::from)?;
    Ok(n > 0)
}

/// The split dates among `splits` that the store does not hold for `symbol`.
async fn unseen_splits(
    env: &MaintainEnv,
    symbol: &Symbol,
    splits: &[i64],
) -> Result<Vec<i64>, FetchError> {
    let Some(range) = TimeRange::covering(splits.iter().copied()) else {
        return Ok(Vec::new());
    };
    let stored = env
        .writer
        .primary()
        .read_actions(symbol, range)
        .await
        .map_err(WriteError::from)?;
    Ok(splits
        .iter()
        .copied()
        .filter(|ts| {
            !stored
                .iter()
                .any(|a| a.kind == ActionKind::Split && a.ts == *ts)
        })
        .collect())
}
