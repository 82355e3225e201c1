//! Coverage summaries: for each series, which slots of a fixed UTC grid hold a stored bar, kept
//! in `meta.db` by the [`crate::ingest::Writer`] so that gap detection never has to read bars
//! (`maintain::gaps` compares them with the calendar's expected stamps).
//!
//! # Grid and blocks
//! A series' time line is cut into **blocks** — a UTC calendar month for 1m–15m bars, a UTC
//! calendar year for 30m, 1h and daily and longer bars — and each block into **slots** of
//! [`slot_secs`]: the interval itself up to 15m, 30 minutes for 30m and 1h (hourly bars start
//! on the hour or the half hour: US at :30, HK at 09:30, 10:30, 11:30, 13:00, ...), a day for
//! 1d, 1wk and 1mo (their stamps are 00:00 UTC of a date). A block's slots are a bitmap
//! ([`Bits`]): 44,640 bits for a month of 1m, 17,568 for a year of 1h, 366 for a year of 1d.
//! The grid is UTC and knows nothing of calendars, so a `calendars:` override or a DST change
//! never invalidates a summary. A bar whose stamp is not on a slot boundary is not recorded
//! (no calendar expects it, so it can neither fill nor hide a gap).
//!
//! # What a block holds
//! - `present`: slots holding a bar, as far as DMS knows;
//! - `absent`: slots a source answered for and had no bar (a halt inside a session, minutes
//!   without a trade): confirmed, never fetched again (`maintain::gaps::confirmed_empty`);
//! - `unknown`: the primary may differ from `present` (a write it failed, a crash mid-write):
//!   the next scan re-reads the block from the store before trusting it;
//! - `epoch`: bumped by every change, so that a rebuild from the store only replaces a block
//!   no write touched while it was reading (compare-and-set; see `MetaDb::coverage_rebuilt`).
//!
//! # Encoding
//! A bitmap is stored as whichever is shorter: its 64-bit words (little endian, trailing zero
//! words dropped; tag 0), or run lengths (tag 1: LEB128 varints alternating zero-runs and
//! one-runs, starting with zeros). A month of 1m bars of a US stock is ~100 bytes as runs
//! instead of 5.6 KB of words; a year of daily bars is 48 bytes as words.

use chrono::{Datelike, NaiveDate};

use crate::domain::{Interval, TimeRange, time};

/// Why a stored summary cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoverageError {
    #[error("coverage summary: unknown encoding tag {0}")]
    Tag(u8),
    #[error("coverage summary: truncated run-length encoding")]
    Truncated,
}

/// Seconds per slot of `interval`'s grid (see the module doc).
pub const fn slot_secs(interval: Interval) -> i64 {
    match interval {
        Interval::M1 => 60,
        Interval::M2 => 120,
        Interval::M5 => 300,
        Interval::M15 => 900,
        Interval::M30 | Interval::H1 => 1800,
        Interval::D1 | Interval::W1 | Interval::Mo1 => 86_400,
    }
}

/// Whether `interval`'s blocks are months (else years).
const fn monthly_blocks(interval: Interval) -> bool {
    matches!(
        interval,
        Interval::M1 | Interval::M2 | Interval::M5 | Interval::M15
    )
}

/// The instants the grid knows: 1900-01-01 to 2200-01-01 (the calendars' span). Anything
/// outside is clamped, so ranges such as `TimeRange::ALL` map onto finitely many blocks.
fn clamp(ts: i64) -> i64 {
    const LO: i64 = -2_208_988_800; // 1900-01-01T00:00:00Z
    const HI: i64 = 7_258_118_400; // 2200-01-01T00:00:00Z
    ts.clamp(LO, HI)
}

/// The start of the block holding `ts`.
pub fn block_start(interval: Interval, ts: i64) -> i64 {
    let d = time::date_of(clamp(ts));
    let first = if monthly_blocks(interval) {
        d.with_day(1)
    } else {
        d.with_ordinal(1)
    };
    time::date_ts(first.unwrap_or(d))
}

/// The start of the block after the one starting at `block`.
pub fn block_end(interval: Interval, block: i64) -> i64 {
    let d = time::date_of(block);
    let next = if monthly_blocks(interval) {
        let (y, m) = if d.month() == 12 {
            (d.year() + 1, 1)
        } else {
            (d.year(), d.month() + 1)
        };
        NaiveDate::from_ymd_opt(y, m, 1)
    } else {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
    };
    next.map(time::date_ts).unwrap_or(i64::MAX / 4)
}

/// The blocks overlapping `range`, in order.
pub fn blocks_in(interval: Interval, range: TimeRange) -> impl Iterator<Item = i64> {
    let end = clamp(range.end());
    let mut next = block_start(interval, range.start());
    std::iter::from_fn(move || {
        (next < end).then(|| {
            let b = next;
            next = block_end(interval, b);
            b
        })
    })
}

/// The slot of `ts` in the block starting at `block`, when `ts` is on a slot boundary.
pub fn slot_of(interval: Interval, block: i64, ts: i64) -> Option<usize> {
    let d = ts - block;
    let step = slot_secs(interval);
    (d >= 0 && d % step == 0).then(|| (d / step) as usize)
}

/// The instant of slot `slot` of the block starting at `block`.
pub fn slot_ts(interval: Interval, block: i64, slot: usize) -> i64 {
    block + slot as i64 * slot_secs(interval)
}

/// The slots `[lo, hi)` of the block starting at `block` that `range` covers.
pub fn slot_span(interval: Interval, block: i64, range: TimeRange) -> (usize, usize) {
    let step = slot_secs(interval);
    let end = block_end(interval, block);
    let n = ((end - block) / step) as usize;
    let lo = range.start().max(block);
    let hi = range.end().min(end);
    if hi <= lo {
        return (0, 0);
    }
    // First slot at or after `lo`, first slot at or after `hi`.
    let a = ((lo - block) + step - 1) / step;
    let b = ((hi - block) + step - 1) / step;
    ((a as usize).min(n), (b as usize).min(n))
}

/// A set of slots of one block.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
}

impl std::fmt::Debug for Bits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.ones()).finish()
    }
}

impl Bits {
    pub fn new() -> Bits {
        Bits::default()
    }

    /// Bits set at `slots`.
    pub fn from_slots(slots: impl IntoIterator<Item = usize>) -> Bits {
        let mut b = Bits::new();
        for s in slots {
            b.set(s);
        }
        b
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Word `i`, zero past the end.
    #[inline]
    pub fn word(&self, i: usize) -> u64 {
        self.words.get(i).copied().unwrap_or(0)
    }

    #[inline]
    pub fn set(&mut self, slot: usize) {
        let w = slot / 64;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (slot % 64);
    }

    #[inline]
    pub fn get(&self, slot: usize) -> bool {
        self.word(slot / 64) >> (slot % 64) & 1 == 1
    }

    /// Sets every slot in `[lo, hi)`.
    pub fn set_range(&mut self, lo: usize, hi: usize) {
        if lo >= hi {
            return;
        }
        let last = (hi - 1) / 64;
        if last >= self.words.len() {
            self.words.resize(last + 1, 0);
        }
        for w in lo / 64..=last {
            self.words[w] |= range_mask(w, lo, hi);
        }
    }

    /// Clears every slot in `[lo, hi)`.
    pub fn clear_range(&mut self, lo: usize, hi: usize) {
        for w in lo / 64..self.words.len().min(hi.div_ceil(64)) {
            self.words[w] &= !range_mask(w, lo, hi);
        }
        self.trim();
    }

    pub fn union_with(&mut self, o: &Bits) {
        if o.words.len() > self.words.len() {
            self.words.resize(o.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&o.words) {
            *a |= b;
        }
    }

    /// Removes every slot of `o`.
    pub fn subtract(&mut self, o: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&o.words) {
            *a &= !b;
        }
        self.trim();
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn first(&self) -> Option<usize> {
        self.words
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
    }

    pub fn last(&self) -> Option<usize> {
        self.words
            .iter()
            .enumerate()
            .rev()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + 63 - w.leading_zeros() as usize)
    }

    /// The set slots, in order.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros() as usize;
                    w &= w - 1;
                    i * 64 + b
                })
            })
        })
    }

    fn trim(&mut self) {
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
    }

    /// The stored form (see the module doc): the shorter of words and run lengths.
    pub fn encode(&self) -> Vec<u8> {
        let n = self
            .words
            .iter()
            .rposition(|w| *w != 0)
            .map_or(0, |i| i + 1);
        let mut runs = vec![1u8];
        let mut pos = 0usize;
        let total = n * 64;
        while pos < total {
            let Some(one) = next_with(&self.words[..n], pos, true) else {
                break;
            };
            let zero = next_with(&self.words[..n], one, false).unwrap_or(total);
            push_varint(&mut runs, (one - pos) as u64);
            push_varint(&mut runs, (zero - one) as u64);
            pos = zero;
            if runs.len() > 1 + n * 8 {
                break;
            }
        }
        if runs.len() <= 1 + n * 8 {
            return runs;
        }
        let mut out = Vec::with_capacity(1 + n * 8);
        out.push(0);
        for w in &self.words[..n] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Bits, CoverageError> {
        let Some((&tag, rest)) = bytes.split_first() else {
            return Ok(Bits::new());
        };
        match tag {
            0 => {
                let mut words: Vec<u64> = rest
                    .chunks(8)
                    .map(|c| {
                        let mut b = [0u8; 8];
                        b[..c.len()].copy_from_slice(c);
                        u64::from_le_bytes(b)
                    })
                    .collect();
                while words.last() == Some(&0) {
                    words.pop();
                }
                Ok(Bits { words })
            }
            1 => {
                let mut bits = Bits::new();
                let mut pos = 0usize;
                let mut rest = rest;
                while !rest.is_empty() {
                    let zeros = read_varint(&mut rest)?;
                    let ones = read_varint(&mut rest)?;
                    pos += zeros as usize;
                    bits.set_range(pos, pos + ones as usize);
                    pos += ones as usize;
                }
                Ok(bits)
            }
            t => Err(CoverageError::Tag(t)),
        }
    }
}

/// The bits of word `w` that lie in `[lo, hi)`.
#[inline]
fn range_mask(w: usize, lo: usize, hi: usize) -> u64 {
    let start = w * 64;
    let a = lo.saturating_sub(start).min(64);
    let b = hi.saturating_sub(start).min(64);
    if b <= a {
        return 0;
    }
    let upper = if b == 64 { u64::MAX } else { (1u64 << b) - 1 };
    upper & !((1u64 << a) - 1)
}

/// The first position at or after `pos` whose bit is `value`.
fn next_with(words: &[u64], pos: usize, value: bool) -> Option<usize> {
    let mut i = pos / 64;
    let mut w = words.get(i)?;
    let mut cur = if value { *w } else { !*w } & (u64::MAX << (pos % 64));
    loop {
        if cur != 0 {
            return Some(i * 64 + cur.trailing_zeros() as usize);
        }
        i += 1;
        w = words.get(i)?;
        cur = if value { *w } else { !*w };
    }
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn read_varint(rest: &mut &[u8]) -> Result<u64, CoverageError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, tail) = rest.split_first().ok_or(CoverageError::Truncated)?;
        *rest = tail;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CoverageError::Truncated)
}

/// The slots a set of stamps fills, per block: what a write adds to `present` (or a source's
/// answer to `absent`). Stamps may come in any order; sorted input (a validated batch) costs
/// one subtraction, one division and one bit per stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marks {
    interval: Interval,
    /// `(block, end of block, slots)`, in the order blocks were first met.
    blocks: Vec<(i64, i64, Bits)>,
}

impl Marks {
    pub fn new(interval: Interval) -> Marks {
        Marks {
            interval,
            blocks: Vec::new(),
        }
    }

    pub fn from_stamps(interval: Interval, stamps: impl IntoIterator<Item = i64>) -> Marks {
        let mut m = Marks::new(interval);
        for ts in stamps {
            m.add(ts);
        }
        m
    }

    pub fn interval(&self) -> Interval {
        self.interval
    }

    /// Records `ts` (ignored unless it is on a slot boundary).
    #[inline]
    pub fn add(&mut self, ts: i64) {
        let step = slot_secs(self.interval);
        let i = match self.blocks.last() {
            Some((start, end, _)) if *start <= ts && ts < *end => self.blocks.len() - 1,
            _ => match self.blocks.iter().position(|(s, e, _)| *s <= ts && ts < *e) {
                Some(i) => i,
                None => {
                    if ts != clamp(ts) {
                        return;
                    }
                    let start = block_start(self.interval, ts);
                    self.blocks
                        .push((start, block_end(self.interval, start), Bits::new()));
                    self.blocks.len() - 1
                }
            },
        };
        let (start, _, bits) = &mut self.blocks[i];
        let d = ts - *start;
        if d % step == 0 {
            bits.set((d / step) as usize);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.iter().all(|(_, _, b)| b.is_empty())
    }

    /// `(block, slots)`, sorted by block, without empty blocks.
    pub fn into_blocks(self) -> Vec<(i64, Bits)> {
        let mut v: Vec<(i64, Bits)> = self
            .blocks
            .into_iter()
            .filter(|(_, _, b)| !b.is_empty())
            .map(|(s, _, b)| (s, b))
            .collect();
        v.sort_by_key(|(s, _)| *s);
        v
    }

    /// The blocks touched, sorted.
    pub fn block_starts(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.blocks.iter().map(|(s, _, _)| *s).collect();
        v.sort_unstable();
        v
    }
}

/// One block of a series' summary, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoverageBlock {
    pub present: Bits,
    pub absent: Bits,
    /// The store may differ from `present` here (see the module doc).
    pub unknown: bool,
    pub epoch: i64,
}

/// A series' summary: its blocks by start instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    pub interval: Option<Interval>,
    pub blocks: std::collections::BTreeMap<i64, CoverageBlock>,
}

impl Coverage {
    pub fn new(interval: Interval) -> Coverage {
        Coverage {
            interval: Some(interval),
            blocks: Default::default(),
        }
    }

    /// A summary holding exactly `stamps` (tests, rebuilds).
    pub fn from_stamps(interval: Interval, stamps: impl IntoIterator<Item = i64>) -> Coverage {
        let mut c = Coverage::new(interval);
        for (b, bits) in Marks::from_stamps(interval, stamps).into_blocks() {
            c.blocks.entry(b).or_default().present = bits;
        }
        c
    }

    /// Adds confirmed-absent stamps (tests).
    pub fn with_absent(
        mut self,
        interval: Interval,
        stamps: impl IntoIterator<Item = i64>,
    ) -> Self {
        for (b, bits) in Marks::from_stamps(interval, stamps).into_blocks() {
            self.blocks.entry(b).or_default().absent.union_with(&bits);
        }
        self
    }

    /// The first stored stamp the summary knows of.
    pub fn first_present(&self, interval: Interval) -> Option<i64> {
        self.blocks
            .iter()
            .find_map(|(b, c)| c.present.first().map(|s| slot_ts(interval, *b, s)))
    }

    /// The blocks the store may disagree with.
    pub fn unknown_blocks(&self) -> Vec<i64> {
        self.blocks
            .iter()
            .filter(|(_, c)| c.unknown)
            .map(|(b, _)| *b)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        time::parse_instant(s).unwrap()
    }

    #[test]
    fn blocks_are_utc_months_for_minutes_and_years_from_30m_up() {
        let t = ts("2024-02-29T15:31:00Z");
        assert_eq!(block_start(Interval::M1, t), ts("2024-02-01"));
        assert_eq!(block_end(Interval::M1, ts("2024-02-01")), ts("2024-03-01"));
        assert_eq!(block_end(Interval::M5, ts("2024-12-01")), ts("2025-01-01"));
        assert_eq!(block_start(Interval::H1, t), ts("2024-01-01"));
        assert_eq!(block_start(Interval::D1, t), ts("2024-01-01"));
        assert_eq!(block_end(Interval::D1, ts("2024-01-01")), ts("2025-01-01"));
        let blocks: Vec<i64> = blocks_in(
            Interval::M1,
            TimeRange::new(ts("2024-01-31"), ts("2024-03-01T00:00:01Z")).unwrap(),
        )
        .collect();
        assert_eq!(
            blocks,
            [ts("2024-01-01"), ts("2024-02-01"), ts("2024-03-01")]
        );
        // The whole time line is finitely many blocks.
        assert_eq!(blocks_in(Interval::D1, TimeRange::ALL).count(), 300);
    }

    #[test]
    fn slots_follow_the_grid_and_off_grid_stamps_are_not_recorded() {
        let b = ts("2024-01-01");
        assert_eq!(slot_of(Interval::D1, b, ts("2024-01-03")), Some(2));
        assert_eq!(slot_of(Interval::D1, b, ts("2024-01-03T13:30:00Z")), None);
        // US hourly bars start at :30; HK's at :30 and on the hour: both are 30-minute slots.
        assert_eq!(
            slot_of(Interval::H1, b, ts("2024-01-01T14:30:00Z")),
            Some(29)
        );
        assert_eq!(
            slot_of(Interval::H1, b, ts("2024-01-01T05:00:00Z")),
            Some(10)
        );
        assert_eq!(slot_of(Interval::H1, b, ts("2024-01-01T05:01:00Z")), None);
        let m = Marks::from_stamps(
            Interval::D1,
            [
                ts("2024-01-02"),
                ts("2024-01-02T10:00:00Z"),
                ts("2023-12-29"),
            ],
        );
        let blocks = m.into_blocks();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].0, ts("2023-01-01"));
        assert_eq!(blocks[1].1.ones().collect::<Vec<_>>(), [1]);
        assert_eq!(
            slot_span(
                Interval::D1,
                b,
                TimeRange::new(ts("2023-06-01"), ts("2024-01-03T00:00:01Z")).unwrap()
            ),
            (0, 3)
        );
    }

    #[test]
    fn bitmaps_round_trip_through_either_encoding() {
        let cases = [
            Bits::new(),
            Bits::from_slots([0]),
            Bits::from_slots([63, 64, 65]),
            Bits::from_slots((0..366).filter(|d| d % 7 < 5)),
            Bits::from_slots((0..44_640).filter(|m| m % 1440 >= 870 && m % 1440 < 1260)),
            Bits::from_slots((0..17_568).step_by(2)),
        ];
        for b in cases {
            let enc = b.encode();
            assert_eq!(Bits::decode(&enc).unwrap(), b, "{enc:?}");
        }
        // A month of US minutes is a few runs, not 5.6 KB of words.
        let month = Bits::from_slots((0..44_640).filter(|m| m % 1440 >= 870 && m % 1440 < 1260));
        assert!(month.encode().len() < 200, "{}", month.encode().len());
        assert_eq!(month.encode()[0], 1);
        // Alternating bits are cheaper as words.
        assert_eq!(Bits::from_slots((0..17_568).step_by(2)).encode()[0], 0);
        assert_eq!(Bits::decode(&[9]), Err(CoverageError::Tag(9)));
        assert_eq!(Bits::decode(&[1, 0x80]), Err(CoverageError::Truncated));
    }

    #[test]
    fn ranges_set_and_clear_across_words() {
        let mut b = Bits::new();
        b.set_range(60, 130);
        assert_eq!(b.count(), 70);
        assert_eq!((b.first(), b.last()), (Some(60), Some(129)));
        b.clear_range(62, 128);
        assert_eq!(b.ones().collect::<Vec<_>>(), [60, 61, 128, 129]);
        b.clear_range(0, 1000);
        assert!(b.is_empty() && b.words().is_empty());
        let mut a = Bits::from_slots([1, 2, 3]);
        a.subtract(&Bits::from_slots([2]));
        a.union_with(&Bits::from_slots([100]));
        assert_eq!(a.ones().collect::<Vec<_>>(), [1, 3, 100]);
    }
}
