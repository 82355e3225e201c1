//! `TimeRange`: a half-open `[start, end)` span of UTC epoch seconds.

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
}
