//! Coalescing a window of change-log entries into the work that brings a node up to date.
//!
//! Shipping never replays entries one by one: it reads each changed range from the primary
//! *at ship time*, so two entries about overlapping ranges of one series are one piece of
//! work, and what ships is what the primary holds now (an entry whose bars were overwritten
//! since ships the newer bars; shipping an entry twice is harmless). Per series, the ranges
//! of the window are merged where they overlap or touch; per symbol, the ranges of corporate
//! actions likewise.
//!
//! A merged range is **replace** (the node's range must end *equal* to the primary's, removing
//! bars the primary no longer has there) when any entry in it is a deletion or uncertain (a
//! failed write that may have landed in part, possibly replacing bars). Otherwise an upsert of
//! the primary's bars suffices: committed writes only add or replace bars, and the bars a node
//! holds beyond the primary's can only come from deletions, which are entries of their own.
//! So a delete followed by a re-write of the same range converges either way: a window with
//! both ships one replace unit; windows apart ship the delete as a replace (then the node holds
//! whatever the primary holds by then) and the re-write as an upsert.

use std::collections::BTreeMap;

use crate::domain::{SeriesKey, Symbol, TimeRange};
use crate::store::meta::{Change, ChangeKind};
use crate::validate::{TS_MAX, TS_MIN};

/// Bars of `series` in `range` to bring to what the primary holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarsUnit {
    pub series: SeriesKey,
    pub range: TimeRange,
    /// The node's range must end equal to the primary's (see the module doc).
    pub replace: bool,
    /// Bars the entries wrote (a size hint).
    pub count: u64,
}

/// Corporate actions of `symbol` in `range` to copy from the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionsUnit {
    pub symbol: Symbol,
    pub range: TimeRange,
}

/// The work of a window of entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub bars: Vec<BarsUnit>,
    pub actions: Vec<ActionsUnit>,
    /// The last sequence number of the window: acked once every unit is applied.
    pub last_seq: u64,
}

/// The span a stored bar can have; ranges are clipped to it (a delete of "everything" is a
/// delete of this span).
pub fn storable_span() -> TimeRange {
    TimeRange::new(TS_MIN, TS_MAX).expect("a valid span")
}

/// Coalesces `changes` (in sequence order).
pub fn plan(changes: &[Change]) -> Plan {
    let span = storable_span();
    let mut bars: BTreeMap<SeriesKey, Vec<(TimeRange, bool, u64)>> = BTreeMap::new();
    let mut actions: BTreeMap<Symbol, Vec<(TimeRange, bool, u64)>> = BTreeMap::new();
    for c in changes {
        let Some(range) = c.range().intersect(span) else {
            continue;
        };
        match (c.kind, c.series()) {
            (ChangeKind::Actions, _) => actions
                .entry(c.symbol.clone())
                .or_default()
                .push((range, false, c.count)),
            (kind, Some(series)) => bars.entry(series).or_default().push((
                range,
                kind == ChangeKind::Delete || c.uncertain,
                c.count,
            )),
            (_, None) => {}
        }
    }
    Plan {
        bars: bars
            .into_iter()
            .flat_map(|(series, ranges)| {
                merge(ranges)
                    .into_iter()
                    .map(move |(range, replace, count)| BarsUnit {
                        series: series.clone(),
                        range,
                        replace,
                        count,
                    })
            })
            .collect(),
        actions: actions
            .into_iter()
            .flat_map(|(symbol, ranges)| {
                merge(ranges)
                    .into_iter()
                    .map(move |(range, _, _)| ActionsUnit {
                        symbol: symbol.clone(),
                        range,
                    })
            })
            .collect(),
        last_seq: changes.last().map(|c| c.seq).unwrap_or(0),
    }
}

/// Merges ranges that overlap or touch; a merged range is replace if any part was.
fn merge(mut ranges: Vec<(TimeRange, bool, u64)>) -> Vec<(TimeRange, bool, u64)> {
    ranges.sort_by_key(|(r, _, _)| (r.start(), r.end()));
    let mut out: Vec<(TimeRange, bool, u64)> = Vec::with_capacity(ranges.len());
    for (r, replace, count) in ranges {
        match out.last_mut() {
            Some((last, rep, n)) if r.start() <= last.end() => {
                *last = TimeRange::new(last.start(), last.end().max(r.end()))
                    .expect("start < end is kept");
                *rep |= replace;
                *n += count;
            }
            _ => out.push((r, replace, count)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Interval;

    fn change(seq: u64, kind: ChangeKind, sym: &str, start: i64, end: i64) -> Change {
        Change {
            seq,
            kind,
            symbol: Symbol::opaque(sym),
            interval: (kind != ChangeKind::Actions).then_some(Interval::D1),
            start,
            end,
            count: 1,
            uncertain: false,
            created_at: 0,
        }
    }

    #[test]
    fn overlapping_and_touching_ranges_of_a_series_merge_and_others_stay_apart() {
        let p = plan(&[
            change(1, ChangeKind::Bars, "A", 100, 200),
            change(2, ChangeKind::Bars, "B", 100, 200),
            change(3, ChangeKind::Bars, "A", 150, 300),
            change(4, ChangeKind::Bars, "A", 300, 400),
            change(5, ChangeKind::Bars, "A", 1000, 1100),
        ]);
        let got: Vec<(&str, i64, i64, bool, u64)> = p
            .bars
            .iter()
            .map(|u| {
                (
                    u.series.symbol.as_str(),
                    u.range.start(),
                    u.range.end(),
                    u.replace,
                    u.count,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("A", 100, 400, false, 3),
                ("A", 1000, 1100, false, 1),
                ("B", 100, 200, false, 1)
            ]
        );
        assert_eq!(p.last_seq, 5);
    }

    #[test]
    fn a_delete_or_an_uncertain_write_makes_its_merged_range_replace() {
        let mut uncertain = change(3, ChangeKind::Bars, "B", 0, 10);
        uncertain.uncertain = true;
        let p = plan(&[
            change(1, ChangeKind::Delete, "A", 100, 200),
            change(2, ChangeKind::Bars, "A", 150, 160),
            uncertain,
            change(4, ChangeKind::Bars, "C", 0, 10),
        ]);
        let replace: Vec<bool> = p.bars.iter().map(|u| u.replace).collect();
        assert_eq!(replace, [true, true, false]);
        assert_eq!(p.bars[0].range, TimeRange::new(100, 200).unwrap());
    }

    #[test]
    fn a_delete_of_everything_is_clipped_to_the_storable_span_and_actions_go_per_symbol() {
        let all = TimeRange::ALL;
        let p = plan(&[
            change(7, ChangeKind::Delete, "A", all.start(), all.end()),
            change(8, ChangeKind::Actions, "A", 5, 6),
            change(9, ChangeKind::Actions, "A", 6, 9),
        ]);
        assert_eq!(p.bars[0].range, storable_span());
        assert_eq!(
            p.actions,
            [ActionsUnit {
                symbol: Symbol::opaque("A"),
                range: TimeRange::new(5, 9).unwrap()
            }]
        );
    }
}
