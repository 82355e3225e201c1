//! Bringing stored bars a source no longer serves onto a new split's basis.
//!
//! After a new split, [`super::fetch`] re-fetches a symbol's stored history so every bar shares
//! the vendor's new basis. Yahoo serves intraday bars for a window only (5m: 60 days), so the
//! older part of an intraday series cannot be re-fetched and would stay on the old basis: one
//! series, two bases, and a backtest that sees a fourfold price jump that never traded.
//!
//! That part is rescaled the way the vendor adjusts ([`rescale`]: prices divided by the
//! product of the new splits after the bar, volume multiplied by it), but only when the stored
//! bars are shown to be on the old basis ([`judge`]): the oldest bars the re-fetch overwrote
//! before the split (those nearest the part it could not reach, stored by the same fetches;
//! newer ones may already have been rewritten on the new basis by an update) are compared
//! with what the vendor sends now. Their closes divided by the new ones must be the split
//! factor; if they are 1 the
//! stored history was already adjusted (fetched after the split, by a page that did not carry
//! it) and nothing is rescaled; anything else, or no bar to compare, leaves the bars as they
//! are and the job reports the series, so that nothing is scaled on a guess.
//!
//! The across-the-edge check ([`judge_edge`]: the last bars not re-fetched against the first
//! re-fetched ones, which are minutes or a night apart, so a split shows as a jump by its
//! factor) must not contradict that. It alone decides when the overwritten bars cannot be
//! trusted: a re-fetch resumed after a crash (its first pages were already rewritten), or a
//! rescale interrupted before its end was recorded. Since it reads only what is stored now, it
//! also makes the rescale safe to repeat: a part already rescaled shows no jump and is left.
//! The rescale is written newest bars first, a chunk at a time, so one cut short leaves an
//! older part on the old basis ending in a jump by the factor, which [`old_basis_end`] finds.

use crate::domain::Bar;

/// A split the store did not hold before this task: its ex-date and `numerator/denominator`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewSplit {
    pub ts: i64,
    pub ratio: f64,
}

/// How far from the oldest re-fetched instant the bars compared by [`judge`] may lie.
pub const PROBE_SPAN: i64 = 10 * 86_400;

/// At most this many bars are compared, the oldest first.
pub const PROBE_BARS: usize = 1_000;

/// The relative difference within which two closes count as one basis: Yahoo's prices are
/// `f32` cents, rounded again when adjusted.
const TOLERANCE: f64 = 0.02;

/// The share of compared bars that must agree on one basis.
const AGREEMENT: f64 = 0.9;

/// The factor that takes a bar stamped `ts` from the old basis to the new: the product of the
/// ratios of the splits after it.
pub fn factor(splits: &[NewSplit], ts: i64) -> f64 {
    splits
        .iter()
        .filter(|s| s.ts > ts)
        .map(|s| s.ratio)
        .product()
}

/// What the comparison of stored and re-fetched bars says about the stored basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The stored bars were on the old basis: rescale the ones not re-fetched.
    Old { compared: usize },
    /// They were already on the new basis: leave them.
    New { compared: usize },
    /// No bar to compare, or no clear answer.
    Unknown { compared: usize },
}

/// Judges the basis of `before` (`(ts, close)` stored before the re-fetch, in time order)
/// against `after` (the bars stored now, re-fetched, in time order), over the oldest
/// [`PROBE_BARS`] timestamps both hold before a new split.
pub fn judge(before: &[(i64, f64)], after: &[Bar], splits: &[NewSplit]) -> Basis {
    let (mut compared, mut old, mut new) = (0usize, 0usize, 0usize);
    let mut j = 0;
    for &(ts, close) in before {
        if compared == PROBE_BARS {
            break;
        }
        while j < after.len() && after[j].ts < ts {
            j += 1;
        }
        let Some(b) = after.get(j).filter(|b| b.ts == ts) else {
            continue;
        };
        let f = factor(splits, ts);
        if f == 1.0 || !(close > 0.0 && b.close > 0.0) {
            continue;
        }
        compared += 1;
        let r = close / b.close;
        let near = |x: f64| (r / x - 1.0).abs() <= TOLERANCE;
        // A factor within the tolerance of 1 cannot tell the bases apart.
        match (near(f), near(1.0)) {
            (true, false) => old += 1,
            (false, true) => new += 1,
            _ => {}
        }
    }
    let agreed = |n: usize| compared > 0 && n as f64 >= AGREEMENT * compared as f64;
    if agreed(old) {
        Basis::Old { compared }
    } else if agreed(new) {
        Basis::New { compared }
    } else {
        Basis::Unknown { compared }
    }
}

/// The bars either side of the edge compared by [`judge_edge`].
pub const EDGE_BARS: usize = 20;

/// Judges the basis of `tail` (the last stored bars not re-fetched) by the jump from them to
/// `head` (the first re-fetched ones). Only splits after both count, and only factors of at
/// least 1.2 (or at most 1/1.2): a smaller one is within what prices move overnight.
pub fn judge_edge(tail: &[Bar], head: &[Bar], splits: &[NewSplit]) -> Basis {
    let tail = &tail[tail.len().saturating_sub(EDGE_BARS)..];
    let head = &head[..head.len().min(EDGE_BARS)];
    let compared = tail.len().min(head.len());
    let (Some(t_last), Some(h_first), Some(h_last)) = (tail.last(), head.first(), head.last())
    else {
        return Basis::Unknown { compared: 0 };
    };
    let f = factor(splits, t_last.ts);
    // A split between the two sides, or within the head, moves the jump.
    if t_last.ts >= h_first.ts || factor(splits, h_last.ts) != f || f.ln().abs() < 1.2f64.ln() {
        return Basis::Unknown { compared };
    }
    let median = |bars: &[Bar]| {
        let mut v: Vec<f64> = bars.iter().map(|b| b.close).filter(|c| *c > 0.0).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let (Some(t), Some(h)) = (median(tail), median(head)) else {
        return Basis::Unknown { compared: 0 };
    };
    let jump = (t / h).ln();
    let tolerance = f.ln().abs() / 3.0;
    if (jump - f.ln()).abs() < tolerance {
        Basis::Old { compared }
    } else if jump.abs() < tolerance {
        Basis::New { compared }
    } else {
        Basis::Unknown { compared }
    }
}

/// The bars written by one rescale write, newest chunk first.
pub const RESCALE_CHUNK: usize = 10_000;

/// Where a part on the old basis ends within `bars` (in time order, all before the splits):
/// the newest position with a jump by the factor across it ([`judge_edge`]), or `None`.
/// Only factors of at least 2 (or at most 1/2) are looked for: a jump of a smaller one's
/// two thirds (what [`judge_edge`] accepts) can be a real move, an earnings gap.
pub fn old_basis_end(bars: &[Bar], splits: &[NewSplit]) -> Option<usize> {
    if bars
        .first()
        .is_none_or(|b| factor(splits, b.ts).ln().abs() < 2f64.ln())
    {
        return None;
    }
    // The medians either side blur the jump over a few bars: find it, then place it after
    // the last bar nearer the old level than the new one.
    let i = (1..bars.len()).rev().find(|&i| {
        matches!(
            judge_edge(&bars[..i], &bars[i..], splits),
            Basis::Old { .. }
        )
    })?;
    let mut level: Vec<f64> = bars[i..bars.len().min(i + EDGE_BARS)]
        .iter()
        .map(|b| b.close)
        .collect();
    level.sort_by(f64::total_cmp);
    let level = level[level.len() / 2];
    let old = |b: &Bar| {
        let (f, r) = (factor(splits, b.ts).ln(), (b.close / level).ln());
        (r - f).abs() < r.abs()
    };
    let lo = i.saturating_sub(EDGE_BARS);
    let hi = bars.len().min(i + EDGE_BARS);
    (lo..hi).rev().find(|&k| old(&bars[k])).map(|k| k + 1)
}

/// The basis of the part not re-fetched, from the overwritten bars' verdict (`None` when they
/// cannot be trusted) and the across-the-edge one: they must not contradict each other.
pub fn decide(overwritten: Option<Basis>, edge: Basis) -> Basis {
    use Basis::*;
    match (overwritten, edge) {
        (None, e) => e,
        (Some(Old { compared }), Old { .. } | Unknown { .. }) => Old { compared },
        (Some(New { compared }), New { .. } | Unknown { .. }) => New { compared },
        (Some(o), _) => Unknown {
            compared: match o {
                Old { compared } | New { compared } | Unknown { compared } => compared,
            },
        },
    }
}

/// `bars` on the old basis, moved to the new one.
pub fn rescale(bars: Vec<Bar>, splits: &[NewSplit]) -> Vec<Bar> {
    bars.into_iter()
        .map(|mut b| {
            let f = factor(splits, b.ts);
            if f != 1.0 {
                b.open /= f;
                b.high /= f;
                b.low /= f;
                b.close /= f;
                b.adj_close = b.adj_close.map(|a| a / f);
                b.volume *= f;
            }
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SourceKind;

    fn bar(ts: i64, close: f64) -> Bar {
        Bar {
            ts,
            open: close,
            high: close + 1.0,
            low: close - 1.0,
            close,
            volume: 100.0,
            adj_close: None,
            source: SourceKind::Yahoo,
        }
    }

    const SPLIT: NewSplit = NewSplit {
        ts: 1_000,
        ratio: 4.0,
    };

    #[test]
    fn the_factor_is_the_product_of_the_splits_after_the_bar() {
        let two = [
            SPLIT,
            NewSplit {
                ts: 2_000,
                ratio: 2.0,
            },
        ];
        assert_eq!(factor(&two, 500), 8.0);
        assert_eq!(factor(&two, 1_500), 2.0);
        assert_eq!(
            factor(&two, 1_000),
            2.0,
            "the ex-date itself is on the new basis"
        );
        assert_eq!(factor(&two, 2_500), 1.0);
    }

    #[test]
    fn stored_closes_four_times_the_refetched_ones_are_the_old_basis() {
        let before = [(100, 400.0), (200, 404.0), (300, 408.0)];
        let after = [bar(100, 100.0), bar(200, 101.0), bar(300, 102.0)];
        assert_eq!(judge(&before, &after, &[SPLIT]), Basis::Old { compared: 3 });
    }

    #[test]
    fn stored_closes_equal_to_the_refetched_ones_are_already_the_new_basis() {
        let before = [(100, 100.0), (200, 101.0)];
        let after = [bar(100, 100.01), bar(200, 101.0)];
        assert_eq!(judge(&before, &after, &[SPLIT]), Basis::New { compared: 2 });
    }

    #[test]
    fn nothing_to_compare_or_no_clear_answer_is_unknown() {
        // The only overlap is after the split: it says nothing of the basis before it.
        let after = [bar(1_100, 100.0)];
        assert_eq!(
            judge(&[(1_100, 100.0)], &after, &[SPLIT]),
            Basis::Unknown { compared: 0 }
        );
        // Half old, half new.
        let before = [(100, 400.0), (200, 101.0)];
        let after = [bar(100, 100.0), bar(200, 101.0)];
        assert_eq!(
            judge(&before, &after, &[SPLIT]),
            Basis::Unknown { compared: 2 }
        );
        // A 1.01:1 split cannot be told from no split.
        let tiny = [NewSplit {
            ts: 1_000,
            ratio: 1.01,
        }];
        assert_eq!(
            judge(&[(100, 101.0)], &[bar(100, 100.0)], &tiny),
            Basis::Unknown { compared: 1 }
        );
    }

    /// A split after every bar of the edge tests.
    const LATER: NewSplit = NewSplit {
        ts: 100_000,
        ratio: 4.0,
    };

    fn run(from: i64, closes: &[f64]) -> Vec<Bar> {
        closes
            .iter()
            .enumerate()
            .map(|(i, c)| bar(from + 300 * i as i64, *c))
            .collect()
    }

    #[test]
    fn a_jump_by_the_factor_across_the_edge_is_the_old_basis_and_none_the_new() {
        let head = run(1_000, &[100.0, 101.0, 99.0, 100.5]);
        let old_tail = run(0, &[396.0, 404.0, 400.0]);
        let new_tail = run(0, &[99.0, 101.0, 100.0]);
        assert_eq!(
            judge_edge(&old_tail, &head, &[LATER]),
            Basis::Old { compared: 3 }
        );
        assert_eq!(
            judge_edge(&new_tail, &head, &[LATER]),
            Basis::New { compared: 3 }
        );
        // Halfway (in log terms) is neither.
        let odd = run(0, &[200.0, 200.0, 200.0]);
        assert_eq!(
            judge_edge(&odd, &head, &[LATER]),
            Basis::Unknown { compared: 3 }
        );
        // A reverse split (1:4) jumps the other way.
        let reverse = [NewSplit {
            ts: 100_000,
            ratio: 0.25,
        }];
        let tail = run(0, &[25.0, 25.2, 24.9]);
        assert_eq!(
            judge_edge(&tail, &head, &reverse),
            Basis::Old { compared: 3 }
        );
    }

    #[test]
    fn the_edge_says_nothing_of_small_factors_or_splits_between_the_sides() {
        let head = run(1_000, &[100.0, 101.0]);
        let small = [NewSplit {
            ts: 100_000,
            ratio: 1.1,
        }];
        assert!(matches!(
            judge_edge(&run(0, &[110.0, 111.0]), &head, &small),
            Basis::Unknown { .. }
        ));
        let between = [NewSplit {
            ts: 400,
            ratio: 4.0,
        }];
        assert!(matches!(
            judge_edge(&run(0, &[400.0, 404.0]), &head, &between),
            Basis::Unknown { .. }
        ));
        assert_eq!(
            judge_edge(&[], &head, &[LATER]),
            Basis::Unknown { compared: 0 }
        );
    }

    #[test]
    fn an_interrupted_rescale_leaves_a_jump_where_its_old_part_ends() {
        // Oldest 30 bars still old (about 400), the newer 25 rescaled (about 100).
        let closes: Vec<f64> = (0..55)
            .map(|i| {
                if i < 30 {
                    400.0 + (i % 3) as f64
                } else {
                    100.0 + (i % 2) as f64
                }
            })
            .collect();
        let bars = run(0, &closes);
        assert_eq!(old_basis_end(&bars, &[LATER]), Some(30));
        let mut one_more = closes.clone();
        one_more[30] = 400.0;
        assert_eq!(old_basis_end(&run(0, &one_more), &[LATER]), Some(31));
        // A 3:2 split is not looked for inside stored history.
        let small = [NewSplit {
            ts: 100_000,
            ratio: 1.5,
        }];
        let closes: Vec<f64> = (0..55)
            .map(|i| if i < 30 { 150.0 } else { 100.0 })
            .collect();
        assert_eq!(old_basis_end(&run(0, &closes), &small), None);
        let done = rescale(bars[..30].to_vec(), &[LATER]);
        let all: Vec<Bar> = done.into_iter().chain(bars[30..].iter().copied()).collect();
        assert_eq!(
            old_basis_end(&all, &[LATER]),
            None,
            "nothing left to rescale"
        );
    }

    #[test]
    fn the_two_verdicts_must_not_contradict() {
        let (old, new, unknown) = (
            Basis::Old { compared: 5 },
            Basis::New { compared: 5 },
            Basis::Unknown { compared: 5 },
        );
        assert_eq!(decide(Some(old), unknown), old);
        assert_eq!(decide(Some(old), Basis::Old { compared: 9 }), old);
        assert_eq!(decide(Some(new), unknown), new);
        assert_eq!(decide(Some(old), new), unknown);
        assert_eq!(decide(Some(new), old), unknown);
        assert_eq!(decide(None, old), old);
        assert_eq!(decide(None, unknown), unknown);
    }

    #[test]
    fn rescaling_divides_prices_and_multiplies_volume_before_each_split() {
        let mut b = bar(500, 400.0);
        b.adj_close = Some(396.0);
        let after_split = bar(1_500, 100.0);
        let out = rescale(vec![b, after_split], &[SPLIT]);
        assert_eq!(
            (out[0].open, out[0].high, out[0].low, out[0].close),
            (100.0, 100.25, 99.75, 100.0)
        );
        assert_eq!(out[0].adj_close, Some(99.0));
        assert_eq!(out[0].volume, 400.0);
        assert_eq!(
            out[1], after_split,
            "bars from the ex-date on are untouched"
        );
    }
}
