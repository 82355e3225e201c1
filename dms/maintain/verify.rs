//! The `verify` task (`dms verify [--node N] [--symbols]`, `POST /api/v1/jobs
//! {"task":"verify"}`), in two parts:
//!
//! 1. **Stored data**: every stored series (or those of `symbols`, `intervals`, `markets`) is
//!    read back through the store, a window at a time, and run through
//!    [`validate::validate`] with its market's configured calendar and the symbol's stored
//!    splits — the same rules a fetched bar meets, so bars stored before a rule existed, or imported, are judged too. What a
//!    rule finds is recorded as a quality flag (`GET /api/v1/quality`, kind `flagged`) — the
//!    bar stays stored (a verify never deletes); `repair` re-fetches flagged sessions — once
//!    per stamp and rule however often verify runs. The counters say how many bars were
//!    checked and how many broke a rule or were flagged.
//! 2. **Backup nodes**, when any are configured: [`Replicator::verify`] per node (or the one
//!    named), comparing bucket digests, bisecting and repairing; the job reports buckets
//!    compared, differences and repaired per node.
//!
//! [`Replicator::verify`]: crate::replicate::Replicator::verify

use serde::Serialize;

use super::MaintainEnv;
use super::ctx::JobCtx;
use super::task::VerifyParams;
use crate::domain::{ActionKind, Bar, Interval, Market, SeriesKey, TimeRange};
use crate::replicate::Progress;
use crate::replicate::verify::{NodeVerify, VerifyOptions};
use crate::store::{Fields, SeriesStats};
use crate::validate::{self, Flag};

/// How much of an intraday series is read and validated at once (daily and longer series are
/// read whole: 20 years of daily bars are 5,000).
const INTRADAY_WINDOW_SECS: i64 = 30 * 86_400;

/// What a verify job reports as its counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VerifyCounters {
    /// Stored series re-validated.
    pub series: u64,
    pub bars_checked: u64,
    /// Stored bars that break a reject rule (a bar stored before the rule, or imported).
    pub bad_bars: u64,
    /// Stored bars a flag rule finds suspicious (jump, unit error, zero volume).
    pub flagged_bars: u64,
    /// Quality records added by this run (findings already recorded are not added again).
    pub quality_recorded: u64,
    /// Over every node compared.
    pub buckets_compared: u64,
    pub differences: u64,
    pub repaired: u64,
    /// Per node, as `GET /api/v1/nodes` shows the last verify.
    pub nodes: Vec<NodeSummary>,
}

/// One node's part of a verify job.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeSummary {
    pub node: String,
    pub ok: bool,
    pub series: u64,
    pub buckets_compared: u64,
    pub bars_compared: u64,
    pub differences: u64,
    pub repaired: u64,
    pub bars_written: u64,
    pub bars_deleted: u64,
}

impl From<&NodeVerify> for NodeSummary {
    fn from(n: &NodeVerify) -> NodeSummary {
        NodeSummary {
            node: n.node.clone(),
            ok: n.ok,
            series: n.series,
            buckets_compared: n.buckets_compared,
            bars_compared: n.bars_compared,
            differences: n.differences,
            repaired: n.repaired,
            bars_written: n.bars_written,
            bars_deleted: n.bars_deleted,
        }
    }
}

pub async fn run(
    env: &MaintainEnv,
    p: &VerifyParams,
    ctx: &JobCtx,
) -> (serde_json::Value, Vec<String>) {
    let mut c = VerifyCounters::default();
    let mut errors = Vec::new();
    let stored = match env.writer.primary().list_series().await {
        Ok(s) => s,
        Err(e) => {
            return (
                serde_json::Value::Null,
                vec![format!("listing series: {e}")],
            );
        }
    };
    let series: Vec<SeriesStats> = stored
        .into_iter()
        .filter(|s| p.symbols.is_empty() || p.symbols.contains(&s.series.symbol))
        .filter(|s| p.intervals.is_empty() || p.intervals.contains(&s.series.interval))
        .filter(|s| {
            p.markets.is_empty()
                || market_of(env, &s.series).is_some_and(|m| p.markets.contains(&m))
        })
        .collect();
    let nodes = match &p.node {
        Some(n) => vec![n.clone()],
        None => env.replicator.node_names(),
    };
    let stored_total = series.len() as u64;
    ctx.set_total(stored_total);
    for s in &series {
        if ctx.is_cancelled() {
            return (serde_json::to_value(&c).unwrap_or_default(), errors);
        }
        match check_series(env, s).await {
            Ok(found) => {
                c.series += 1;
                c.bars_checked += found.bars;
                c.bad_bars += found.bad;
                c.flagged_bars += found.flagged;
                c.quality_recorded += found.recorded;
                if found.bad + found.flagged > 0 {
                    ctx.log(
                        "info",
                        &format!(
                            "{}: {} bars checked, {} break a rule, {} flagged ({} newly recorded)",
                            s.series, found.bars, found.bad, found.flagged, found.recorded
                        ),
                    )
                    .await;
                }
            }
            Err(e) => {
                let line = format!("{}: {e}", s.series);
                ctx.log("error", &line).await;
                errors.push(line);
            }
        }
        ctx.inc_done();
        ctx.set_counters(serde_json::to_value(&c).unwrap_or_default());
    }
    ctx.log(
        "info",
        &format!(
            "stored data: {} series, {} bars checked, {} break a rule, {} flagged",
            c.series, c.bars_checked, c.bad_bars, c.flagged_bars
        ),
    )
    .await;
    if nodes.is_empty() {
        return (serde_json::to_value(&c).unwrap_or_default(), errors);
    }
    let progress = |pr: Progress| {
        ctx.set_total(stored_total + pr.total);
        ctx.set_done(stored_total + pr.done);
    };
    let report = match env
        .replicator
        .verify(
            p.node.as_deref(),
            VerifyOptions::default(),
            &progress,
            &ctx.cancel,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            errors.push(format!("verify nodes: {e}"));
            return (serde_json::to_value(&c).unwrap_or_default(), errors);
        }
    };
    for n in &report.nodes {
        c.buckets_compared += n.buckets_compared;
        c.differences += n.differences;
        c.repaired += n.repaired;
        ctx.log(
            if n.ok { "info" } else { "error" },
            &format!(
                "node {}: {} series, {} buckets compared, {} differ, {} repaired ({} bars written, {} deleted)",
                n.node,
                n.series,
                n.buckets_compared,
                n.differences,
                n.repaired,
                n.bars_written,
                n.bars_deleted
            ),
        )
        .await;
        for e in &n.errors {
            let line = format!("node {}: {e}", n.node);
            ctx.log("error", &line).await;
            errors.push(line);
        }
        if !n.ok && n.errors.is_empty() {
            errors.push(format!("node {}: verify failed", n.node));
        }
        c.nodes.push(NodeSummary::from(n));
    }
    (serde_json::to_value(&c).unwrap_or_default(), errors)
}

/// What re-validating one series found.
#[derive(Debug, Default)]
struct Found {
    bars: u64,
    bad: u64,
    flagged: u64,
    recorded: u64,
}

/// Reads `s` back a window at a time and validates it (see the module doc).
async fn check_series(env: &MaintainEnv, s: &SeriesStats) -> Result<Found, String> {
    let key = &s.series;
    let primary = env.writer.primary();
    let market = market_of(env, key);
    let all = TimeRange::new(s.first, s.last.saturating_add(1)).map_err(|e| e.to_string())?;
    let splits: Vec<i64> = primary
        .read_actions(&key.symbol, TimeRange::ALL)
        .await
        .map_err(|e| format!("reading corporate actions: {e}"))?
        .into_iter()
        .filter(|a| a.kind == ActionKind::Split)
        .map(|a| a.ts)
        .collect();
    let mut found = Found::default();
    let mut previous: Option<Bar> = None;
    for window in windows(key.interval, all) {
        let bars = primary
            .read_fields(key, window, Fields::ALL)
            .await
            .map_err(|e| format!("reading stored bars: {e}"))?;
        if bars.is_empty() {
            continue;
        }
        found.bars += bars.len() as u64;
        let last = bars.last().copied();
        let now = env.clock.now();
        let ctx = env
            .validation_context(now, market)
            .with_splits(splits.iter().copied())
            .with_previous(previous);
        let v = validate::validate(key, bars, &ctx);
        found.bad += v.rejections.len() as u64;
        found.flagged += v.flags.len() as u64;
        // A stored bar that breaks a reject rule stays stored (verify deletes nothing): it is
        // recorded as flagged by that rule, which `repair` re-fetches.
        let mut findings: Vec<Flag> = v
            .rejections
            .into_iter()
            .map(|r| Flag {
                series: r.series,
                bar: r.bar,
                rule: r.rule,
                reason: format!("stored bar: {}", r.reason),
            })
            .collect();
        findings.extend(v.flags);
        found.recorded += env
            .writer
            .meta()
            .flag_new(&findings)
            .await
            .map_err(|e| format!("recording findings: {e}"))?;
        previous = last;
    }
    Ok(found)
}

/// The market of a stored series: its universe entry's, else its symbol's suffix.
fn market_of(env: &MaintainEnv, key: &SeriesKey) -> Option<Market> {
    env.universe
        .get(&key.symbol)
        .and_then(|e| e.market)
        .or_else(|| key.symbol.market())
}

/// `range` cut into the windows a series is read in.
fn windows(interval: Interval, range: TimeRange) -> Vec<TimeRange> {
    if !interval.is_intraday() {
        return vec![range];
    }
    let mut out = Vec::new();
    let mut start = range.start();
    while start < range.end() {
        let end = start.saturating_add(INTRADAY_WINDOW_SECS).min(range.end());
        if let Ok(w) = TimeRange::new(start, end) {
            out.push(w);
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intraday_series_are_read_in_windows_that_tile_the_range() {
        let r = TimeRange::new(0, 70 * 86_400 + 5).unwrap();
        let w = windows(Interval::M1, r);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].start(), 0);
        assert!(w.windows(2).all(|p| p[0].end() == p[1].start()));
        assert_eq!(w[2].end(), r.end());
        assert_eq!(windows(Interval::D1, r), [r]);
    }
}
