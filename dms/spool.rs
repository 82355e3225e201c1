//! The spool: validated changes the primary could not take, kept durably on local disk until
//! it answers again (DESIGN §5 "Primary writes": nothing is lost, and the job reports it).
//!
//! # Format
//! One append-only file, `spool/spool.log` under the data directory, of records
//! `[len: u32][xxh3-64 of payload: u64][payload]`, and `spool/spool.pos`, the offset of the
//! first record not yet replayed (8 bytes). A payload is a kind byte, then
//! - `B` (bars): symbol (u16 length + bytes), interval (u8 length + bytes), the bars as an
//!   embedded-store chunk ([`crate::store::chunk`]);
//! - `A` (corporate actions): symbol, then the actions as JSON.
//!
//! # Rules
//! - **Durable before counted**: [`Spool::append`] returns only after the record is fsynced,
//!   so a job counts spooled bars that survive SIGKILL. A record torn by a crash mid-append
//!   was never acknowledged; recovery truncates it.
//! - **In order**: while the spool holds anything, every new change goes to its end (the
//!   [`crate::ingest::Writer`] checks), and one replayer applies records oldest first through
//!   the normal write path (each replayed record gets its own change-log entry), advancing
//!   `spool.pos` after each. A crash between a replayed write and the position update replays
//!   that record again: writes are upserts, so it is applied twice, stored once.
//! - **Reads know**: [`Spool::covers`] tells whether a series range has spooled bars, so a
//!   read can answer 503 instead of older bars.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::domain::{CorporateAction, SeriesKey, Symbol, TimeRange};
use crate::store::chunk;
use crate::telemetry::metrics;
use crate::validate::ValidatedBatch;

const HEADER: usize = 12;
/// Largest record accepted when reading back (a corrupt length must not allocate wildly).
const MAX_RECORD: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
#[error("spool {path}: {message}")]
pub struct SpoolError {
    path: String,
    message: String,
}

/// A spooled change.
#[derive(Debug, Clone, PartialEq)]
pub enum Spooled {
    Bars(ValidatedBatch),
    Actions(Symbol, Vec<CorporateAction>),
}

impl Spooled {
    fn len(&self) -> u64 {
        match self {
            Spooled::Bars(b) => b.len() as u64,
            Spooled::Actions(..) => 0,
        }
    }
}

/// Where a record is and what it holds (kept in memory for `covers` and `peek`).
#[derive(Debug)]
struct Entry {
    offset: u64,
    end: u64,
    series: Option<SeriesKey>,
    range: Option<TimeRange>,
    bars: u64,
}

#[derive(Debug)]
struct State {
    log: File,
    /// Records not yet replayed, oldest first.
    entries: VecDeque<Entry>,
    /// End of the last whole record.
    end: u64,
    bars: u64,
    /// Spooled ranges per series (for `covers`), as a count per range.
    ranges: HashMap<SeriesKey, Vec<TimeRange>>,
}

/// The durable spool. Cheap to share behind an `Arc`; calls block briefly on disk I/O
/// (callers run them on the blocking pool).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    /// A std `Mutex`: held only for file I/O, never across an `.await`.
    state: Mutex<State>,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, recovering what a crash left: records not yet
    /// replayed are kept, a torn last record is cut.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        let err = |m: String| SpoolError {
            path: dir.display().to_string(),
            message: m,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let mut log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("spool.log"))
            .map_err(|e| err(e.to_string()))?;
        let pos = read_pos(&dir.join("spool.pos")).map_err(|e| err(e.to_string()))?;
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)
            .map_err(|e| err(e.to_string()))?;
        let mut entries = VecDeque::new();
        let mut ranges: HashMap<SeriesKey, Vec<TimeRange>> = HashMap::new();
        let mut bars = 0;
        let mut at = (pos as usize).min(bytes.len());
        while let Some((payload, next)) = record_at(&bytes, at) {
            let Some(change) = decode(payload) else {
                break;
            };
            let e = entry_of(at as u64, next as u64, &change);
            if let (Some(s), Some(r)) = (&e.series, e.range) {
                ranges.entry(s.clone()).or_default().push(r);
            }
            bars += e.bars;
            entries.push_back(e);
            at = next;
        }
        if at < bytes.len() {
            tracing::warn!(
                dir = %dir.display(),
                cut = bytes.len() - at,
                "spool: cutting a torn record left by a crash (it was never acknowledged)"
            );
            log.set_len(at as u64).map_err(|e| err(e.to_string()))?;
            log.sync_all().map_err(|e| err(e.to_string()))?;
        }
        log.seek(SeekFrom::End(0)).map_err(|e| err(e.to_string()))?;
        metrics().spool_bars.set(bars as i64);
        Ok(Spool {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                log,
                entries,
                end: at as u64,
                bars,
                ranges,
            }),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> SpoolError {
        SpoolError {
            path: self.dir.display().to_string(),
            message: e.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// Bars waiting to be replayed.
    pub fn bars(&self) -> u64 {
        self.lock().bars
    }

    /// Records waiting to be replayed.
    pub fn records(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether spooled bars of `series` overlap `range`.
    pub fn covers(&self, series: &SeriesKey, range: TimeRange) -> bool {
        self.lock()
            .ranges
            .get(series)
            .is_some_and(|rs| rs.iter().any(|r| r.intersect(range).is_some()))
    }

    /// Appends a change and fsyncs it.
    pub fn append(&self, change: &Spooled) -> Result<(), SpoolError> {
        let payload = encode(change);
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        let mut st = self.lock();
        let offset = st.end;
        st.log.write_all(&record).map_err(|e| self.err(e))?;
        st.log.sync_data().map_err(|e| self.err(e))?;
        st.end += record.len() as u64;
        let e = entry_of(offset, st.end, change);
        if let (Some(s), Some(r)) = (&e.series, e.range) {
            st.ranges.entry(s.clone()).or_default().push(r);
        }
        st.bars += e.bars;
        st.entries.push_back(e);
        metrics().spool_bars.set(st.bars as i64);
        let n = change.len();
        if n > 0
            && let Spooled::Bars(b) = change
        {
            metrics()
                .bars_written
                .get_or_create(&crate::telemetry::labels([
                    ("store", "spool"),
                    ("interval", b.series().interval.as_str()),
                ]))
                .inc_by(n);
        }
        Ok(())
    }

    /// The oldest record not yet replayed.
    pub fn peek(&self) -> Result<Option<Spooled>, SpoolError> {
        let mut st = self.lock();
        let Some((offset, end)) = st.entries.front().map(|e| (e.offset, e.end)) else {
            return Ok(None);
        };
        let mut buf = vec![0u8; (end - offset) as usize];
        let log = &mut st.log;
        log.seek(SeekFrom::Start(offset)).map_err(|e| self.err(e))?;
        log.read_exact(&mut buf).map_err(|e| self.err(e))?;
        log.seek(SeekFrom::End(0)).map_err(|e| self.err(e))?;
        let (payload, _) = record_at(&buf, 0).ok_or_else(|| self.err("corrupt record"))?;
        decode(payload)
            .map(Some)
            .ok_or_else(|| self.err("undecodable record"))
    }

    /// Marks the oldest record replayed (persisted); empties the files once all are.
    pub fn pop(&self) -> Result<(), SpoolError> {
        let mut st = self.lock();
        let Some(e) = st.entries.pop_front() else {
            return Ok(());
        };
        st.bars -= e.bars;
        if let (Some(s), Some(r)) = (&e.series, e.range)
            && let Some(rs) = st.ranges.get_mut(s)
        {
            if let Some(i) = rs.iter().position(|x| *x == r) {
                rs.swap_remove(i);
            }
            if rs.is_empty() {
                st.ranges.remove(s);
            }
        }
        if st.entries.is_empty() {
            // Position first: a crash between the two leaves a position past the end, which
            // recovery clamps.
            write_pos(&self.dir.join("spool.pos"), 0).map_err(|e| self.err(e))?;
            st.log.set_len(0).map_err(|e| self.err(e))?;
            st.log.sync_all().map_err(|e| self.err(e))?;
            st.log.seek(SeekFrom::Start(0)).map_err(|e| self.err(e))?;
            st.end = 0;
        } else {
            write_pos(&self.dir.join("spool.pos"), e.end).map_err(|e| self.err(e))?;
        }
        metrics().spool_bars.set(st.bars as i64);
        Ok(())
    }
}

fn entry_of(offset: u64, end: u64, change: &Spooled) -> Entry {
    match change {
        Spooled::Bars(b) => Entry {
            offset,
            end,
            series: Some(b.series().clone()),
            range: Some(b.range()),
            bars: b.len() as u64,
        },
        Spooled::Actions(..) => Entry {
            offset,
            end,
            series: None,
            range: None,
            bars: 0,
        },
    }
}

fn read_pos(path: &Path) -> std::io::Result<u64> {
    match std::fs::read(path) {
        Ok(b) if b.len() == 8 => Ok(u64::from_le_bytes(b.try_into().expect("8 bytes"))),
        Ok(_) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes the position atomically (temp file, fsync, rename).
fn write_pos(path: &Path, pos: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("pos.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&pos.to_le_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The payload of the whole record at `at`, and where the next begins.
fn record_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let head = bytes.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(head[4..12].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    (xxhash_rust::xxh3::xxh3_64(payload) == sum).then_some((payload, at + HEADER + len))
}

fn put_str(out: &mut Vec<u8>, s: &str, wide: bool) {
    if wide {
        out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    } else {
        out.push(s.len() as u8);
    }
    out.extend_from_slice(s.as_bytes());
}

fn encode(change: &Spooled) -> Vec<u8> {
    let mut out = Vec::new();
    match change {
        Spooled::Bars(b) => {
            out.push(b'B');
            put_str(&mut out, b.series().symbol.as_str(), true);
            put_str(&mut out, b.series().interval.as_str(), false);
            out.extend_from_slice(&chunk::encode(b.bars()));
        }
        Spooled::Actions(s, a) => {
            out.push(b'A');
            put_str(&mut out, s.as_str(), true);
            out.extend_from_slice(&serde_json::to_vec(a).unwrap_or_default());
        }
    }
    out
}

fn decode(p: &[u8]) -> Option<Spooled> {
    let (&kind, rest) = p.split_first()?;
    let n = u16::from_le_bytes(rest.get(0..2)?.try_into().ok()?) as usize;
    let symbol = Symbol::opaque(std::str::from_utf8(rest.get(2..2 + n)?).ok()?);
    let rest = &rest[2 + n..];
    match kind {
        b'B' => {
            let m = *rest.first()? as usize;
            let interval = std::str::from_utf8(rest.get(1..1 + m)?)
                .ok()?
                .parse()
                .ok()?;
            let bars = chunk::decode(&rest[1 + m..]).ok()?;
            crate::validate::revalidated_from_store(&SeriesKey::new(symbol, interval), bars)
                .map(Spooled::Bars)
        }
        b'A' => Some(Spooled::Actions(symbol, serde_json::from_slice(rest).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Bar, Interval, SourceKind};

    fn batch(symbol: &str, start: i64, n: usize) -> ValidatedBatch {
        let bars = (0..n as i64)
            .map(|i| Bar {
                ts: start + i * 60,
                open: 1.0 + i as f64,
                high: 2.0 + i as f64,
                low: 0.5,
                close: 1.5 + i as f64,
                volume: 10.0,
                adj_close: None,
                source: SourceKind::Yahoo,
            })
            .collect();
        crate::validate::revalidated_from_store(
            &SeriesKey::new(Symbol::opaque(symbol), Interval::M1),
            bars,
        )
        .unwrap()
    }

    #[test]
    fn records_survive_reopening_in_order_and_popping_persists() {
        let dir = tempfile::tempdir().unwrap();
        let a = Spooled::Bars(batch("AAPL", 60_000, 3));
        let b = Spooled::Actions(
            Symbol::opaque("AAPL"),
            vec![CorporateAction::dividend(86_400, 0.24, SourceKind::Yahoo)],
        );
        let c = Spooled::Bars(batch("MSFT", 120_000, 2));
        {
            let s = Spool::open(dir.path()).unwrap();
            for x in [&a, &b, &c] {
                s.append(x).unwrap();
            }
            assert_eq!((s.records(), s.bars()), (3, 5));
            let k = SeriesKey::new(Symbol::opaque("AAPL"), Interval::M1);
            assert!(s.covers(&k, TimeRange::new(60_060, 60_061).unwrap()));
            assert!(!s.covers(&k, TimeRange::new(0, 60_000).unwrap()));
            assert_eq!(s.peek().unwrap().unwrap(), a);
            s.pop().unwrap();
            assert!(!s.covers(&k, TimeRange::ALL));
        }
        let s = Spool::open(dir.path()).unwrap();
        assert_eq!((s.records(), s.bars()), (2, 2));
        assert_eq!(s.peek().unwrap().unwrap(), b);
        s.pop().unwrap();
        assert_eq!(s.peek().unwrap().unwrap(), c);
        s.pop().unwrap();
        assert!(s.is_empty());
        assert_eq!(
            std::fs::metadata(dir.path().join("spool.log"))
                .unwrap()
                .len(),
            0
        );
        // And it keeps working after emptying.
        s.append(&a).unwrap();
        drop(s);
        assert_eq!(Spool::open(dir.path()).unwrap().peek().unwrap().unwrap(), a);
    }

    #[test]
    fn a_record_torn_by_a_crash_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = Spooled::Bars(batch("AAPL", 60_000, 3));
        {
            let s = Spool::open(dir.path()).unwrap();
            s.append(&a).unwrap();
            s.append(&Spooled::Bars(batch("AAPL", 90_000, 3))).unwrap();
        }
        let log = dir.path().join("spool.log");
        let len = std::fs::metadata(&log).unwrap().len();
        let f = OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(len - 7).unwrap();
        drop(f);
        let s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.records(), 1);
        assert_eq!(s.peek().unwrap().unwrap(), a);
        // New records go after the cut, not after the garbage.
        s.append(&a).unwrap();
        drop(s);
        assert_eq!(Spool::open(dir.path()).unwrap().records(), 2);
    }
}
