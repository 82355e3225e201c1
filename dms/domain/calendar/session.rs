//! `Session`: one trading day of a market as UTC instants, and the bar stamps it should carry.

use chrono::NaiveDate;

use crate::domain::Interval;
use crate::domain::time;

/// One trading session. Every instant is UTC epoch seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Session {
    /// The exchange-local trading date (for FX the New York date the session ends on).
    pub date: NaiveDate,
    /// Start of continuous trading (the first intraday bar starts here).
    pub open: i64,
    /// End of continuous trading (the last intraday bar ends here, cut short if need be).
    pub close: i64,
    /// The lunch break, `[start, end)`, on markets and days that have one.
    pub lunch: Option<(i64, i64)>,
    /// The session ends before the regular close (a half day or an unscheduled stop).
    pub early_close: bool,
    /// End of the closing auction that follows continuous trading, where there is one after
    /// `close` (HKEX's CAS: 16:10, or 12:10 on a half day). Bars are not expected inside it, but
    /// a bar stamped there is inside the session.
    pub auction_close: Option<i64>,
    /// When the session's daily bar is final: its `end`, except FX, whose daily bar is final at
    /// 24:00 UTC of the date (Yahoo labels FX daily bars by the London day, which ends after
    /// the 17:00 New York roll; see `Calendar`'s FX notes).
    pub final_at: i64,
}

impl Session {
    /// The last instant of the session, exclusive: the end of the closing auction if there is
    /// one, else `close`.
    pub fn end(&self) -> i64 {
        self.auction_close.unwrap_or(self.close)
    }

    /// The stamp of this session's daily bar: 00:00 UTC of `date` (DESIGN §1).
    pub fn stamp(&self) -> i64 {
        time::date_ts(self.date)
    }

    /// Whether `ts` is in trading hours: in `[open, end)` and not in the lunch break.
    pub fn contains(&self, ts: i64) -> bool {
        self.open <= ts && ts < self.end() && !self.lunch.is_some_and(|(a, b)| a <= ts && ts < b)
    }

    /// The continuous-trading segments, `[start, end)`: one, or two around a lunch break.
    pub fn segments(&self) -> impl Iterator<Item = (i64, i64)> + use<> {
        let segs = match self.lunch {
            Some((a, b)) => [Some((self.open, a)), Some((b, self.close))],
            None => [Some((self.open, self.close)), None],
        };
        segs.into_iter().flatten().filter(|(a, b)| a < b)
    }

    /// Seconds of continuous trading.
    pub fn trading_secs(&self) -> i64 {
        self.segments().map(|(a, b)| b - a).sum()
    }

    /// The stamps this session's bars of `interval` should carry.
    ///
    /// Intraday: bars start at each segment's start (the open, the end of the lunch break) and
    /// every `interval` after it while they start before the segment ends, so the last bar of a
    /// segment may be short — a US 1h bar at 15:30 covers 15:30–16:00, an HK 1h bar at 11:30
    /// covers 11:30–12:00. That is what Yahoo returns (hourly US bars at :30, HK hourly bars at
    /// 09:30, 10:30, 11:30, 13:00, 14:00, 15:00) and what DMS makes of Futu's end-labelled bars
    /// (`source/futu`). Nothing is expected in a closing auction.
    ///
    /// Daily and longer: the one stamp of the bar this session belongs to,
    /// `interval.period_start(date)` (00:00 UTC of the date, of the week's Monday, of the
    /// month's 1st).
    pub fn bar_starts(&self, interval: Interval) -> BarStarts {
        if !interval.is_intraday() {
            let t = interval.period_start(self.date);
            return BarStarts {
                segs: [(t, t + 1), (0, 0)],
                seg: 0,
                next: t,
                step: 1,
            };
        }
        let mut segs = [(0, 0); 2];
        for (slot, s) in segs.iter_mut().zip(self.segments()) {
            *slot = s;
        }
        BarStarts {
            segs,
            seg: 0,
            next: segs[0].0,
            step: interval.nominal_secs(),
        }
    }
}

/// Iterator over a session's bar stamps; see [`Session::bar_starts`].
#[derive(Clone, Debug)]
pub struct BarStarts {
    segs: [(i64, i64); 2],
    seg: usize,
    next: i64,
    step: i64,
}

impl Iterator for BarStarts {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        loop {
            let (_, end) = *self.segs.get(self.seg)?;
            if self.next < end {
                let t = self.next;
                self.next += self.step;
                return Some(t);
            }
            self.seg += 1;
            self.next = self.segs.get(self.seg)?.0;
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left: i64 = self.segs[self.seg.min(2)..]
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| {
                let from = if i == 0 { self.next } else { a };
                if b > from {
                    (b - from + self.step - 1) / self.step
                } else {
                    0
                }
            })
            .sum();
        (left as usize, Some(left as usize))
    }
}
