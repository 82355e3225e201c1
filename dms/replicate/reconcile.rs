//! Bringing a range of one series on a destination node to what a source holds: the one
//! mechanism behind shipping, the replica pull and `verify`.
//!
//! - [`Pair::copy_range`] (an upsert): the source's bars of the range, read in windows of
//!   about [`Tuning::batch_bars`] bars (`batch_bars` × the interval: a validated series has at
//!   most one bar per grid step), the next window read while the current one is written.
//! - [`Pair::reconcile`] (replace): both sides digest the range per bucket of
//!   [`BucketGrid::for_interval`] where their data lives; equal buckets are done. A bucket the
//!   source lacks is deleted on the destination, one the destination lacks is copied, and
//!   one that differs is bisected (digests of both halves from both sides) down to
//!   [`Tuning::leaf_bars`], where the bars of both sides are compared one by one: bars missing
//!   or different are written, runs of extra bars deleted. A bucket whose digests differ while
//!   its bars are equal (float sums over another shard layout, see [`RangeDigest`]) costs the
//!   bisection and is reported as such, never as a difference.
//!
//! Every destination operation is retried with backoff while the node is unavailable
//! ([`Tuning::attempts`]).

use std::cmp::Ordering;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::{StreamExt, TryStreamExt};

use super::node::{Node, NodeError};
use crate::domain::{Bar, SeriesKey, TimeRange};
use crate::store::{BucketGrid, RangeDigest};
use crate::telemetry::{labels, metrics};
use crate::validate::revalidated_from_store;

/// Sizes and retry policy of replication.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Bars per write request to a node (about; InfluxDB's guidance is 5,000 lines).
    pub batch_bars: usize,
    /// Requests in flight per node (units shipped at once).
    pub in_flight: usize,
    /// Change-log entries coalesced into one window (acked together).
    pub window_changes: usize,
    /// Attempts of one node operation while the node is unavailable.
    pub attempts: usize,
    /// First wait between attempts.
    pub min_backoff: Duration,
    /// Longest wait between shipping rounds of a failing node.
    pub max_backoff: Duration,
    /// Bisection stops at ranges of at most this many bars and compares bars.
    pub leaf_bars: u64,
    /// Series verified at once per node.
    pub verify_concurrency: usize,
    /// How often a shipper looks at the change log without being woken (a safety net).
    pub poll: Duration,
    /// Bars a replica page may carry inline.
    pub page_bars: usize,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            batch_bars: 5_000,
            in_flight: 4,
            window_changes: 1_000,
            attempts: 3,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            leaf_bars: 512,
            verify_concurrency: 4,
            poll: Duration::from_secs(5),
            page_bars: 50_000,
        }
    }
}

/// What a reconciliation (or copy) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Top-level buckets compared.
    pub buckets: u64,
    /// Bars the source holds in the compared ranges.
    pub bars: u64,
    /// Buckets whose digests differed.
    pub digest_mismatches: u64,
    /// Buckets whose bars differed (missing, extra or changed on the destination).
    pub differing: Vec<BucketDiff>,
    pub written: u64,
    pub deleted: u64,
}

impl Outcome {
    /// Adds another outcome (of another series) to this one.
    pub fn add(&mut self, o: Outcome) {
        self.buckets += o.buckets;
        self.bars += o.bars;
        self.digest_mismatches += o.digest_mismatches;
        self.differing.extend(o.differing);
        self.written += o.written;
        self.deleted += o.deleted;
    }
}

/// One bucket whose bars differed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BucketDiff {
    pub symbol: String,
    pub interval: String,
    pub start: i64,
    pub end: i64,
    /// Bars the source holds that the destination lacks.
    pub missing: u64,
    /// Bars the destination holds that the source does not.
    pub extra: u64,
    /// Bars at the same time with other values.
    pub changed: u64,
    /// The destination was changed to match.
    pub repaired: bool,
}

/// Differences found at a leaf.
#[derive(Debug, Default, Clone, Copy)]
struct LeafDiff {
    missing: u64,
    extra: u64,
    changed: u64,
    written: u64,
    deleted: u64,
}

impl std::ops::AddAssign for LeafDiff {
    fn add_assign(&mut self, o: LeafDiff) {
        self.missing += o.missing;
        self.extra += o.extra;
        self.changed += o.changed;
        self.written += o.written;
        self.deleted += o.deleted;
    }
}

/// A source and a destination.
#[derive(Clone)]
pub struct Pair {
    pub src: Arc<dyn Node>,
    pub dst: Arc<dyn Node>,
    /// The `store` label of `dms_bars_written_total` for the destination (the node's name).
    pub label: Arc<str>,
    pub tuning: Tuning,
}

/// Which of two sorted sequences comes next in a merge: `Less` the first, `Greater` the
/// second, `Equal` both (at least one is `Some`).
fn order(a: Option<i64>, b: Option<i64>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// Whether two bars hold the same values (the source is not compared, as in digests).
fn same_values(a: &Bar, b: &Bar) -> bool {
    let bits = |b: &Bar| {
        [
            b.open.to_bits(),
            b.high.to_bits(),
            b.low.to_bits(),
            b.close.to_bits(),
            b.volume.to_bits(),
        ]
    };
    bits(a) == bits(b) && a.adj_close.map(f64::to_bits) == b.adj_close.map(f64::to_bits)
}

impl Pair {
    /// Runs a destination operation, retrying with backoff while the node is unavailable.
    async fn on_dst<T, F, Fut>(&self, f: F) -> Result<T, NodeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, NodeError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.tuning.min_backoff)
            .with_max_delay(self.tuning.min_backoff * 20)
            .with_max_times(self.tuning.attempts.saturating_sub(1));
        f.retry(backoff)
            .sleep(tokio::time::sleep)
            .when(NodeError::is_unavailable)
            .await
    }

    /// Source reads are retried the same way (the source is the primary, or the primary a
    /// replica pulls from).
    async fn on_src<T, F, Fut>(&self, f: F) -> Result<T, NodeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, NodeError>>,
    {
        self.on_dst(f).await
    }

    /// Writes bars (sorted, unique) to the destination in batches.
    pub async fn write_bars(&self, series: &SeriesKey, bars: Vec<Bar>) -> Result<u64, NodeError> {
        let Some(batch) = revalidated_from_store(series, bars) else {
            return Ok(0);
        };
        let mut n = 0;
        for part in batch.chunks(self.tuning.batch_bars) {
            let part = revalidated_from_store(series, part.to_vec()).expect("non-empty");
            self.on_dst(|| self.dst.write(&part)).await?;
            n += part.len() as u64;
            metrics()
                .bars_written
                .get_or_create(&labels([
                    ("store", &self.label),
                    ("interval", series.interval.as_str()),
                ]))
                .inc_by(part.len() as u64);
        }
        Ok(n)
    }

    /// Windows of about `batch_bars` bars covering `range`.
    fn windows(&self, series: &SeriesKey, range: TimeRange) -> Vec<TimeRange> {
        let step = (self.tuning.batch_bars as i64).max(1) * series.interval.nominal_secs().max(1);
        let mut out = Vec::new();
        let mut at = range.start();
        while at < range.end() {
            let end = at.saturating_add(step).min(range.end());
            out.push(TimeRange::new(at, end).expect("at < end"));
            at = end;
        }
        out
    }

    /// Upserts the source's bars of `range` on the destination; returns how many.
    pub async fn copy_range(&self, series: &SeriesKey, range: TimeRange) -> Result<u64, NodeError> {
        let windows = self.windows(series, range);
        let mut reads = futures::stream::iter(windows)
            .map(|w| async move { self.on_src(|| self.src.read(series, w)).await })
            .buffered(2);
        let mut n = 0;
        while let Some(bars) = reads.try_next().await? {
            n += self.write_bars(series, bars).await?;
        }
        Ok(n)
    }

    /// Makes the destination's bars of `range` equal to the source's; `repair: false` only
    /// compares. See the module doc.
    pub async fn reconcile(
        &self,
        series: &SeriesKey,
        range: TimeRange,
        repair: bool,
    ) -> Result<Outcome, NodeError> {
        let grid = BucketGrid::for_interval(series.interval);
        let (src, dst) = tokio::try_join!(
            self.on_src(|| self.src.bucket_digests(series, range, grid)),
            self.on_dst(|| self.dst.bucket_digests(series, range, grid)),
        )?;
        let mut out = Outcome::default();
        let (mut i, mut j) = (0, 0);
        let mut differing = Vec::new();
        while i < src.len() || j < dst.len() {
            let (start, s, d) = match order(src.get(i).map(|x| x.0), dst.get(j).map(|x| x.0)) {
                Ordering::Equal => {
                    i += 1;
                    j += 1;
                    (src[i - 1].0, src[i - 1].1, dst[j - 1].1)
                }
                Ordering::Less => {
                    i += 1;
                    (src[i - 1].0, src[i - 1].1, RangeDigest::default())
                }
                Ordering::Greater => {
                    j += 1;
                    (dst[j - 1].0, RangeDigest::default(), dst[j - 1].1)
                }
            };
            out.buckets += 1;
            out.bars += s.count;
            if !s.matches(&d) {
                let bucket = grid
                    .bucket_of(start)
                    .intersect(range)
                    .expect("a bucket of the range");
                differing.push((bucket, s, d));
            }
        }
        out.digest_mismatches = differing.len() as u64;
        let fixed: Vec<Option<BucketDiff>> = futures::stream::iter(differing)
            .map(|(bucket, s, d)| async move {
                let diff = self.fix(series, bucket, s, d, repair).await?;
                if diff.missing + diff.extra + diff.changed == 0 {
                    return Ok::<_, NodeError>((None, diff));
                }
                Ok((
                    Some(BucketDiff {
                        symbol: series.symbol.to_string(),
                        interval: series.interval.as_str().to_string(),
                        start: bucket.start(),
                        end: bucket.end(),
                        missing: diff.missing,
                        extra: diff.extra,
                        changed: diff.changed,
                        repaired: repair,
                    }),
                    diff,
                ))
            })
            .buffer_unordered(self.tuning.in_flight.max(1))
            .map_ok(|(b, diff)| {
                out.written += diff.written;
                out.deleted += diff.deleted;
                b
            })
            .try_collect()
            .await?;
        out.differing = fixed.into_iter().flatten().collect();
        out.differing.sort_by_key(|b| b.start);
        Ok(out)
    }

    /// Reconciles a range whose digests differ: shortcuts for an empty side, bisection, then
    /// a bar-by-bar comparison at the leaves.
    fn fix<'a>(
        &'a self,
        series: &'a SeriesKey,
        range: TimeRange,
        s: RangeDigest,
        d: RangeDigest,
        repair: bool,
    ) -> Pin<Box<dyn Future<Output = Result<LeafDiff, NodeError>> + Send + 'a>> {
        Box::pin(async move {
            if s.count == 0 && d.count > 0 {
                let deleted = if repair {
                    self.on_dst(|| self.dst.delete(series, range)).await?
                } else {
                    0
                };
                return Ok(LeafDiff {
                    extra: d.count,
                    deleted,
                    ..LeafDiff::default()
                });
            }
            if d.count == 0 && s.count > 0 {
                let written = if repair {
                    self.copy_range(series, range).await?
                } else {
                    0
                };
                return Ok(LeafDiff {
                    missing: s.count,
                    written,
                    ..LeafDiff::default()
                });
            }
            let mid = range.start() + (range.end() - range.start()) / 2;
            if s.count.max(d.count) > self.tuning.leaf_bars && mid > range.start() {
                let halves = [
                    TimeRange::new(range.start(), mid).expect("start < mid"),
                    TimeRange::new(mid, range.end()).expect("mid < end"),
                ];
                let (sh, dh) = tokio::try_join!(
                    self.on_src(|| self.src.digests(series, &halves)),
                    self.on_dst(|| self.dst.digests(series, &halves)),
                )?;
                let mut total = LeafDiff::default();
                for k in 0..2 {
                    if !sh[k].matches(&dh[k]) {
                        total += self.fix(series, halves[k], sh[k], dh[k], repair).await?;
                    }
                }
                return Ok(total);
            }
            self.leaf(series, range, repair).await
        })
    }

    /// Compares the bars of both sides in `range` and, with `repair`, writes what is missing
    /// or different and deletes runs of extra bars.
    async fn leaf(
        &self,
        series: &SeriesKey,
        range: TimeRange,
        repair: bool,
    ) -> Result<LeafDiff, NodeError> {
        let (src, dst) = tokio::try_join!(
            self.on_src(|| self.src.read(series, range)),
            self.on_dst(|| self.dst.read(series, range)),
        )?;
        let mut diff = LeafDiff::default();
        let mut to_write = Vec::new();
        let mut runs: Vec<TimeRange> = Vec::new();
        // An open run of extra bars: (first ts, last ts).
        let mut run: Option<(i64, i64)> = None;
        let close = |run: &mut Option<(i64, i64)>, runs: &mut Vec<TimeRange>| {
            if let Some((a, b)) = run.take() {
                runs.push(TimeRange::new(a, b + 1).expect("a <= b"));
            }
        };
        let (mut i, mut j) = (0, 0);
        while i < src.len() || j < dst.len() {
            match order(src.get(i).map(|b| b.ts), dst.get(j).map(|b| b.ts)) {
                Ordering::Equal => {
                    close(&mut run, &mut runs);
                    if !same_values(&src[i], &dst[j]) {
                        diff.changed += 1;
                        to_write.push(src[i]);
                    }
                    i += 1;
                    j += 1;
                }
                Ordering::Less => {
                    close(&mut run, &mut runs);
                    diff.missing += 1;
                    to_write.push(src[i]);
                    i += 1;
                }
                Ordering::Greater => {
                    let ts = dst[j].ts;
                    diff.extra += 1;
                    run = Some(match run {
                        Some((a, _)) => (a, ts),
                        None => (ts, ts),
                    });
                    j += 1;
                }
            }
        }
        close(&mut run, &mut runs);
        if repair {
            for r in runs {
                diff.deleted += self.on_dst(|| self.dst.delete(series, r)).await?;
            }
            diff.written += self.write_bars(series, to_write).await?;
        }
        Ok(diff)
    }

    /// Copies the source's corporate actions of `range` to the destination.
    pub async fn copy_actions(
        &self,
        symbol: &crate::domain::Symbol,
        range: TimeRange,
    ) -> Result<u64, NodeError> {
        let actions = self.on_src(|| self.src.read_actions(symbol, range)).await?;
        if !actions.is_empty() {
            self.on_dst(|| self.dst.write_actions(symbol, &actions))
                .await?;
        }
        Ok(actions.len() as u64)
    }
}
