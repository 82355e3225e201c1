//! `TimeRange`: a half-open `[start, end)` span of UTC epoch seconds; [`Tiling`]: the time line
//! cut into equal, epoch-aligned tiles (the chunks of the embedded store and of the reader's
//! cache), and the one place that does that arithmetic.

use std::fmt;

use super::time;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("empty range: start {start} is not before end {end}")]
    Empty { start: String, end: String },
}

/// Half-open `[start, end)`, `start < end`, in UTC epoch seconds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeRange {
    start: i64,
    end: i64,
}

impl TimeRange {
    pub fn new(start: i64, end: i64) -> Result<TimeRange, RangeError> {
        if start < end {
            Ok(TimeRange { start, end })
        } else {
            Err(RangeError::Empty {
                start: time::rfc3339(start),
                end: time::rfc3339(end),
            })
        }
    }

    /// Everything representable; for "the whole series".
    pub const ALL: TimeRange = TimeRange {
        start: i64::MIN / 4,
        end: i64::MAX / 4,
    };

    pub fn start(self) -> i64 {
        self.start
    }

    pub fn end(self) -> i64 {
        self.end
    }

    pub fn contains(self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }

    pub fn intersect(self, other: TimeRange) -> Option<TimeRange> {
        TimeRange::new(self.start.max(other.start), self.end.min(other.end)).ok()
    }

    /// The smallest range holding every timestamp in `ts` (which must be non-empty).
    pub fn covering(ts: impl IntoIterator<Item = i64>) -> Option<TimeRange> {
        let mut it = ts.into_iter();
        let first = it.next()?;
        let (lo, hi) = it.fold((first, first), |(lo, hi), t| (lo.min(t), hi.max(t)));
        Some(TimeRange {
            start: lo,
            end: hi + 1,
        })
    }
}

/// The time line cut into tiles of `span` seconds, aligned on multiples of `span` from the
/// epoch: tile `k` is `[k * span, (k + 1) * span)`, for negative `k` too (euclidean division),
/// so every timestamp lies in exactly one tile.
///
/// Each user picks its own span per interval (its *policy*: `store::chunk::tiling` for the
/// embedded store's rows, `reader::cache::chunk_tiling` for the reader's chunks); this type is
/// only the arithmetic they share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tiling {
    span: i64,
}

impl Tiling {
    /// Tiles of `span` seconds. Panics when `span` is not positive (spans are constants).
    pub const fn new(span: i64) -> Tiling {
        assert!(span > 0, "a tile spans a positive number of seconds");
        Tiling { span }
    }

    pub const fn span(self) -> i64 {
        self.span
    }

    /// The start of the tile holding `ts`.
    pub const fn start_of(self, ts: i64) -> i64 {
        ts.div_euclid(self.span) * self.span
    }

    /// The tile starting at `start` (a value [`Tiling::start_of`] returned).
    pub fn tile(self, start: i64) -> TimeRange {
        TimeRange {
            start,
            end: start + self.span,
        }
    }

    /// How many tiles `range` overlaps.
    pub fn count(self, range: TimeRange) -> i64 {
        (self.start_of(range.end - 1) - self.start_of(range.start)) / self.span + 1
    }

    /// The starts of the tiles `range` overlaps, in time order; lazy, so a wide range costs
    /// nothing until it is walked.
    pub fn starts(self, range: TimeRange) -> impl Iterator<Item = i64> + Clone + Send + 'static {
        let (first, span) = (self.start_of(range.start), self.span);
        (0..self.count(range)).map(move |k| first + k * span)
    }
}

impl fmt::Display for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {})",
            time::rfc3339(self.start),
            time::rfc3339(self.end)
        )
    }
}

impl fmt::Debug for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_half_open_and_never_empty() {
        let r = TimeRange::new(10, 20).unwrap();
        assert!(r.contains(10) && r.contains(19) && !r.contains(20) && !r.contains(9));
        assert!(TimeRange::new(5, 5).is_err());
        assert!(TimeRange::new(6, 5).is_err());
        assert_eq!(
            r.intersect(TimeRange::new(15, 30).unwrap()),
            TimeRange::new(15, 20).ok()
        );
        assert_eq!(r.intersect(TimeRange::new(20, 30).unwrap()), None);
        assert_eq!(TimeRange::covering([3, 9, 5]), TimeRange::new(3, 10).ok());
    }

    #[test]
    fn tiles_cover_a_range_without_gaps_or_overlap_on_both_sides_of_the_epoch() {
        let t = Tiling::new(10);
        assert_eq!((t.start_of(0), t.start_of(9), t.start_of(10)), (0, 0, 10));
        assert_eq!(
            (t.start_of(-1), t.start_of(-10), t.start_of(-11)),
            (-10, -10, -20)
        );
        let r = TimeRange::new(-15, 21).unwrap();
        let starts: Vec<i64> = t.starts(r).collect();
        assert_eq!(starts, [-20, -10, 0, 10, 20]);
        assert_eq!(t.count(r), 5);
        for w in starts.windows(2) {
            assert_eq!(t.tile(w[0]).end(), t.tile(w[1]).start());
        }
        // A range inside one tile, and one ending exactly on a boundary.
        assert_eq!(t.count(TimeRange::new(3, 4).unwrap()), 1);
        assert_eq!(
            t.starts(TimeRange::new(0, 20).unwrap()).collect::<Vec<_>>(),
            [0, 10]
        );
        // The widest range is counted without overflow.
        let all = Tiling::new(86_400).count(TimeRange::ALL);
        assert!(all > 0);
    }
}
