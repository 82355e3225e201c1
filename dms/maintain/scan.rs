//! [`GapScanner`]: finds the gaps, heads and staleness of many series at once, for
//! `GET /api/v1/gaps`, `GET /api/v1/series`, `dms gaps` and the update job's planning
//! ([`GapScanner::plan`]); and records what a source answer confirms empty
//! ([`GapScanner::confirm_empty`]).
//!
//! # One scan
//! 1. One batched [`Store::latest`] for every series asked about (DESIGN §5).
//! 2. The coverage summaries from `meta.db` (`store::coverage`), read on a connection of their
//!    own, and the confirmed-empty sessions: no bar is read from the store.
//! 3. The pure gap logic ([`super::gaps`]) per series against its market's calendar
//!    ([`Calendars`], with the `calendars:` overrides).
//!
//! # When the store is read
//! Only where a summary cannot be trusted, and once:
//! - a series whose bars were stored before summaries existed (or written to the primary by
//!   something else than DMS) has no built summary: the first scan that meets it with a newest
//!   bar reads the whole series (`Store::read_fields`, OHLCV; memory: the series' bars) and
//!   builds it. On InfluxDB that costs what a read costs (~350k bars/s on the reference
//!   machine, BENCHMARKS "InfluxDB store"): ~15 ms for 20 years of daily bars, ~0.3 s for
//!   100,000 minute bars; up to four series are built at once;
//! - blocks marked unknown by a failed write are re-read, block by block.
//!
//! A rebuild only replaces blocks no write touched while it read (their epoch is unchanged);
//! the rest stay unknown and are read again by the next scan.
//!
//! Which series were in the store before summaries existed is learnt once, at start-up
//! ([`GapScanner::ensure_seeded`], one `list_series`): after that, a series the write path meets
//! for the first time is new, and its summary is complete from its first bar.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use chrono::{Datelike, NaiveDate};
use futures::StreamExt;

use super::gaps::{self, Calendars, Confirmed, Expected, Findings, Gap, Horizon, SeriesFacts};
use super::universe::Universe;
use crate::domain::{Interval, Market, SeriesKey, SourceKind, Symbol, TimeRange, time};
use crate::store::coverage::{self, Coverage, Marks};
use crate::store::meta::{MetaDb, MetaError, RebuildScope, UniverseEntry};
use crate::store::{Fields, Store, StoreError};
use crate::telemetry::metrics;

/// How many series are built from the store at once.
const BUILD_CONCURRENCY: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("gap scan task failed: {0}")]
    Aborted(String),
}

/// Which series to scan: all known ones, or some symbols and/or one interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesFilter {
    pub symbols: Option<Vec<Symbol>>,
    pub interval: Option<Interval>,
}

impl SeriesFilter {
    pub fn is_all(&self) -> bool {
        self.symbols.is_none() && self.interval.is_none()
    }

    fn admits(&self, k: &SeriesKey) -> bool {
        self.interval.is_none_or(|i| k.interval == i)
            && self.symbols.as_ref().is_none_or(|s| s.contains(&k.symbol))
    }
}

/// What a scan found for one series: what the update job fetches and what the API reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesPlan {
    pub series: SeriesKey,
    pub market: Market,
    /// Stamp of the newest stored bar.
    pub latest: Option<i64>,
    /// Stamp of the oldest stored bar, as the summary knows it.
    pub first: Option<i64>,
    /// Missing after the newest bar (or from the history start when nothing is stored) up to
    /// the newest bar complete at `now`.
    pub head: Option<Gap>,
    /// Missing inside `[first, latest]`.
    pub interior: Vec<Gap>,
    /// The newest bar is older than the calendar expects.
    pub stale: bool,
}

impl SeriesPlan {
    /// Missing sessions inside the stored range (what `GET /api/v1/series` calls `gaps`).
    pub fn interior_sessions(&self) -> u64 {
        self.interior.iter().map(|g| u64::from(g.sessions)).sum()
    }
}

/// See the module doc. Cheap to clone.
#[derive(Clone)]
pub struct GapScanner {
    inner: Arc<Inner>,
}

struct Inner {
    primary: Arc<dyn Store>,
    meta: MetaDb,
    calendars: Arc<Calendars>,
    /// The live universe (config + API entries, the API's winning), so a scan sees an entry
    /// the moment the API adds it.
    universe: Universe,
    default_start_years: u32,
    /// Set once `meta.db` says every pre-existing series is listed.
    seeded: AtomicBool,
}

/// What a series' scan needs besides its summary.
#[derive(Debug, Clone, Copy)]
struct Input {
    market: Market,
    start: i64,
    latest: Option<i64>,
}

impl GapScanner {
    pub fn new(
        primary: Arc<dyn Store>,
        meta: MetaDb,
        calendars: Arc<Calendars>,
        universe: Universe,
        default_start_years: u32,
    ) -> GapScanner {
        GapScanner {
            inner: Arc::new(Inner {
                primary,
                meta,
                calendars,
                universe,
                default_start_years,
                seeded: AtomicBool::new(false),
            }),
        }
    }

    pub fn calendars(&self) -> &Arc<Calendars> {
        &self.inner.calendars
    }

    /// Lists the series the store holds in `meta.db` the first time this data directory is
    /// opened with coverage summaries (one `list_series`); afterwards a flag read.
    pub async fn ensure_seeded(&self) -> Result<(), ScanError> {
        let inner = &self.inner;
        if inner.seeded.load(Ordering::Acquire) {
            return Ok(());
        }
        if !inner.meta.coverage_seeded().await? {
            let stored = inner.primary.list_series().await?;
            tracing::info!(
                series = stored.len(),
                "coverage summaries: listing the series stored before them"
            );
            inner
                .meta
                .coverage_seed(stored.into_iter().map(|s| s.series).collect())
                .await?;
        }
        inner.seeded.store(true, Ordering::Release);
        Ok(())
    }

    /// The universe as it is now: the config's entries and those added through the API
    /// (which win).
    pub fn universe(&self) -> Vec<UniverseEntry> {
        self.inner.universe.entries()
    }

    /// The series a scan of `filter` covers: every universe entry × its intervals, every
    /// series the summaries know (everything stored), and the symbols the filter names at its
    /// interval (or every interval), sorted.
    pub async fn series(&self, filter: &SeriesFilter) -> Result<Vec<SeriesKey>, ScanError> {
        self.ensure_seeded().await?;
        let mut out: HashSet<SeriesKey> = self
            .universe()
            .into_iter()
            .flat_map(|u| {
                u.intervals
                    .iter()
                    .map(|i| SeriesKey::new(u.symbol.clone(), *i))
                    .collect::<Vec<_>>()
            })
            .collect();
        out.extend(self.inner.meta.coverage_series().await?.into_keys());
        if let Some(symbols) = &filter.symbols {
            let intervals = match filter.interval {
                Some(i) => vec![i],
                None => Interval::ALL.to_vec(),
            };
            for s in symbols {
                out.extend(intervals.iter().map(|i| SeriesKey::new(s.clone(), *i)));
            }
        }
        let mut out: Vec<SeriesKey> = out.into_iter().filter(|k| filter.admits(k)).collect();
        out.sort();
        Ok(out)
    }

    /// Scans the series of `filter` at `now`. An unfiltered scan also sets the
    /// `dms_series_stale{interval}` gauge.
    pub async fn scan(
        &self,
        filter: &SeriesFilter,
        now: i64,
    ) -> Result<Vec<SeriesPlan>, ScanError> {
        let series = self.series(filter).await?;
        let plans = self.plan(&series, now).await?;
        if filter.is_all() {
            let mut stale: BTreeMap<Interval, u64> = BTreeMap::new();
            for p in plans.iter().filter(|p| p.stale) {
                *stale.entry(p.series.interval).or_default() += 1;
            }
            metrics().set_series_stale(&stale);
        }
        Ok(plans)
    }

    /// The plan of each of `series` at `now`, sorted by series: its newest bar (one batched
    /// `latest` for all), head, interior gaps and staleness. Left out: series whose market is
    /// unknown (no universe `market` and a suffix without a calendar), and series with nothing
    /// stored that the universe does not list. This is what the update job fetches from.
    pub async fn plan(&self, series: &[SeriesKey], now: i64) -> Result<Vec<SeriesPlan>, ScanError> {
        let inner = &self.inner;
        self.ensure_seeded().await?;
        let universe = self.universe();
        let entries: HashMap<&Symbol, &UniverseEntry> =
            universe.iter().map(|u| (&u.symbol, u)).collect();
        let default_start = years_before(now, inner.default_start_years);
        let mut inputs: HashMap<SeriesKey, Input> = HashMap::with_capacity(series.len());
        for k in series {
            let entry = entries.get(&k.symbol);
            let Some(market) = entry.and_then(|e| e.market).or_else(|| k.symbol.market()) else {
                tracing::debug!(symbol = %k.symbol, "no calendar for this symbol; not scanned");
                continue;
            };
            let start = entry
                .and_then(|e| e.start.as_deref())
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .map_or(default_start, time::date_ts);
            inputs.insert(
                k.clone(),
                Input {
                    market,
                    start,
                    latest: None,
                },
            );
        }
        let keys: Vec<SeriesKey> = inputs.keys().cloned().collect();
        for (k, bar) in inner.primary.latest(&keys).await? {
            if let Some(i) = inputs.get_mut(&k) {
                i.latest = Some(bar.ts);
            }
        }
        // A series with nothing stored is only due when the universe asks for it.
        inputs.retain(|k, i| {
            i.latest.is_some()
                || entries
                    .get(&k.symbol)
                    .is_some_and(|e| e.intervals.contains(&k.interval))
        });
        // Summaries never built (bars stored before they existed): read once from the store.
        let built = inner.meta.coverage_series().await?;
        let unbuilt: Vec<SeriesKey> = inputs
            .iter()
            .filter(|(k, i)| i.latest.is_some() && built.get(*k) != Some(&true))
            .map(|(k, _)| k.clone())
            .collect();
        self.rebuild_many(unbuilt.into_iter().map(|k| (k, RebuildScope::Whole)))
            .await?;

        let empties = Arc::new(inner.meta.all_empty_sessions().await?);
        let inputs = Arc::new(inputs);
        let state = ScanState::new(self.inner.calendars.clone(), now);
        let visit_inputs = inputs.clone();
        let visit_empties = empties.clone();
        let wanted: HashSet<SeriesKey> = inputs.keys().cloned().collect();
        let mut state = inner
            .meta
            .coverage_scan(Some(wanted), state, move |st, key, cov| {
                let Some(input) = visit_inputs.get(&key) else {
                    return;
                };
                let unknown = cov.unknown_blocks();
                if unknown.is_empty() {
                    st.examine(&key, input, &cov, &visit_empties);
                } else {
                    st.unknown.push((key, unknown));
                }
            })
            .await?;
        // Blocks a failed write left unknown: re-read, then examine those series.
        let unknown = std::mem::take(&mut state.unknown);
        let rescan: Vec<SeriesKey> = unknown.iter().map(|(k, _)| k.clone()).collect();
        self.rebuild_many(
            unknown
                .into_iter()
                .map(|(k, blocks)| (k, RebuildScope::Blocks(blocks))),
        )
        .await?;
        let mut covs = Vec::with_capacity(rescan.len());
        for k in rescan {
            let c = inner.meta.coverage_of(&k).await?;
            covs.push((k, c));
        }
        // The rest (series with no summary: nothing stored) and the rescans, off the runtime.
        let state = tokio::task::spawn_blocking(move || {
            let mut state = state;
            for (k, c) in covs {
                if let Some(input) = inputs.get(&k) {
                    state.examine(&k, input, &c, &empties);
                }
            }
            let missing: Vec<(SeriesKey, Input)> = inputs
                .iter()
                .filter(|(k, _)| !state.found.contains_key(*k))
                .map(|(k, i)| (k.clone(), *i))
                .collect();
            for (k, input) in missing {
                let c = Coverage::new(k.interval);
                state.examine(&k, &input, &c, &empties);
            }
            state
        })
        .await
        .map_err(|e| ScanError::Aborted(e.to_string()))?;
        let mut plans: Vec<SeriesPlan> = state
            .found
            .into_iter()
            .map(|(series, (market, latest, f))| SeriesPlan {
                series,
                market,
                latest,
                first: f.first,
                head: f.head,
                interior: f.interior,
                stale: f.stale,
            })
            .collect();
        plans.sort_by(|a, b| a.series.cmp(&b.series));
        Ok(plans)
    }

    /// Rebuilds summaries from the store, a few series at once.
    async fn rebuild_many(
        &self,
        work: impl Iterator<Item = (SeriesKey, RebuildScope)>,
    ) -> Result<(), ScanError> {
        let mut results = futures::stream::iter(
            work.map(|(k, scope)| async move { self.rebuild(&k, scope).await }),
        )
        .buffer_unordered(BUILD_CONCURRENCY);
        while let Some(r) = results.next().await {
            r?;
        }
        Ok(())
    }

    /// Reads `scope` of `series` from the store and stores it as its summary (see the module
    /// doc); returns whether every block was replaced.
    async fn rebuild(&self, series: &SeriesKey, scope: RebuildScope) -> Result<bool, ScanError> {
        let inner = &self.inner;
        let t = Instant::now();
        let seen = inner.meta.coverage_epochs(series).await?;
        let ranges = match &scope {
            RebuildScope::Whole => vec![TimeRange::ALL],
            RebuildScope::Blocks(blocks) => block_runs(series.interval, blocks),
        };
        let mut marks = Marks::new(series.interval);
        let mut bars = 0usize;
        for r in ranges {
            let got = inner.primary.read_fields(series, r, Fields::OHLCV).await?;
            bars += got.len();
            for b in &got {
                marks.add(b.ts);
            }
        }
        let all = inner
            .meta
            .coverage_rebuilt(series, scope.clone(), marks, seen)
            .await?;
        tracing::info!(
            symbol = %series.symbol,
            interval = %series.interval,
            bars,
            whole = scope == RebuildScope::Whole,
            complete = all,
            ms = t.elapsed().as_millis() as u64,
            "coverage summary rebuilt from the store"
        );
        Ok(all)
    }

    /// Records what one source answer confirms has no bar (see `gaps::confirmed_empty`): the
    /// sessions of `range` with no bar as confirmed-empty sessions, and missing bars inside
    /// answered sessions as absent slots; neither is reported or fetched again. `bars` are the
    /// stamps the answer returned (all of them, before validation: a quarantined bar is not
    /// an empty session). Sessions and slots the store holds bars for are left out (a short
    /// answer is not an empty one). Every fetching job calls it per answered page, after
    /// writing it.
    pub async fn confirm_empty(
        &self,
        series: &SeriesKey,
        market: Option<Market>,
        source: SourceKind,
        range: TimeRange,
        bars: &[i64],
        now: i64,
    ) -> Result<Confirmed, ScanError> {
        let Some(market) = market.or_else(|| series.symbol.market()) else {
            return Ok(Confirmed::default());
        };
        let ix = self.inner.calendars.sessions(market);
        let mut c = gaps::confirmed_empty(ix, series.interval, range, bars, now);
        if !c.sessions.is_empty() || !c.absent.is_empty() {
            // An answer that lacks bars the store holds is a short answer, not an empty
            // session: what is stored stays what counts.
            let cov = self.inner.meta.coverage_of(series).await?;
            let interval = series.interval;
            let stored = |ts: i64| {
                let b = coverage::block_start(interval, ts);
                cov.blocks.get(&b).is_some_and(|blk| {
                    coverage::slot_of(interval, b, ts).is_some_and(|s| blk.present.get(s))
                })
            };
            c.absent.retain(|t| !stored(*t));
            c.sessions.retain(|d| match ix.calendar().session(*d) {
                Some(s) if interval.is_intraday() => !s.bar_starts(interval).any(&stored),
                Some(s) => !stored(s.stamp()),
                None => true,
            });
        }
        for d in &c.sessions {
            self.inner
                .meta
                .record_empty_session(series, *d, source.as_str())
                .await?;
        }
        if !c.absent.is_empty() {
            let marks = Marks::from_stamps(series.interval, c.absent.iter().copied());
            self.inner.meta.coverage_absent(series, marks).await?;
        }
        if !c.sessions.is_empty() || !c.absent.is_empty() {
            tracing::info!(
                symbol = %series.symbol,
                interval = %series.interval,
                source = source.as_str(),
                sessions = c.sessions.len(),
                absent = c.absent.len(),
                "source confirmed sessions or bars empty"
            );
        }
        Ok(c)
    }
}

/// The per-scan state: caches shared by every series and the findings.
struct ScanState {
    calendars: Arc<Calendars>,
    now: i64,
    expected: Expected,
    horizons: HashMap<(Market, Interval), Horizon>,
    found: HashMap<SeriesKey, (Market, Option<i64>, Findings)>,
    unknown: Vec<(SeriesKey, Vec<i64>)>,
}

impl ScanState {
    fn new(calendars: Arc<Calendars>, now: i64) -> ScanState {
        ScanState {
            calendars,
            now,
            expected: Expected::new(),
            horizons: HashMap::new(),
            found: HashMap::new(),
            unknown: Vec::new(),
        }
    }

    fn examine(
        &mut self,
        key: &SeriesKey,
        input: &Input,
        cov: &Coverage,
        empties: &HashMap<SeriesKey, Vec<NaiveDate>>,
    ) {
        let ix = self.calendars.sessions(input.market);
        let now = self.now;
        let h = *self
            .horizons
            .entry((input.market, key.interval))
            .or_insert_with(|| gaps::horizon(ix, key.interval, now));
        let facts = SeriesFacts {
            interval: key.interval,
            coverage: cov,
            empty: empties.get(key).map_or(&[], |v| v.as_slice()),
            latest: input.latest,
            start: input.start,
        };
        let f = gaps::examine(ix, &facts, h, &mut self.expected);
        self.found
            .insert(key.clone(), (input.market, input.latest, f));
    }
}

/// Contiguous runs of `blocks` as ranges.
fn block_runs(interval: Interval, blocks: &[i64]) -> Vec<TimeRange> {
    let mut sorted = blocks.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for b in sorted {
        let end = coverage::block_end(interval, b);
        match out.last_mut() {
            Some((_, e)) if *e == b => *e = end,
            _ => out.push((b, end)),
        }
    }
    out.into_iter()
        .filter_map(|(a, b)| TimeRange::new(a, b).ok())
        .collect()
}

/// 00:00 UTC of the date `years` before `now`'s (29 February → 28 February).
fn years_before(now: i64, years: u32) -> i64 {
    let d = time::date_of(now);
    let y = d.year() - years as i32;
    let back = d
        .with_year(y)
        .or_else(|| NaiveDate::from_ymd_opt(y, d.month(), 28))
        .unwrap_or(d);
    time::date_ts(back)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_runs_join_neighbours() {
        let y = |n: i32| time::date_ts(NaiveDate::from_ymd_opt(n, 1, 1).unwrap());
        assert_eq!(
            block_runs(Interval::D1, &[y(2021), y(2019), y(2020), y(2023)]),
            [
                TimeRange::new(y(2019), y(2022)).unwrap(),
                TimeRange::new(y(2023), y(2024)).unwrap()
            ]
        );
    }

    #[test]
    fn history_starts_whole_years_back() {
        let now = time::parse_instant("2024-02-29T15:00:00Z").unwrap();
        assert_eq!(
            years_before(now, 5),
            time::parse_instant("2019-02-28").unwrap()
        );
        assert_eq!(
            years_before(now, 4),
            time::parse_instant("2020-02-29").unwrap()
        );
    }
}
