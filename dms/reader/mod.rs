//! The read path for backtests: many symbols × one interval × a range, read in chunks through
//! an LRU cache of decoded chunks, encoded in one of the output formats and streamed.
//!
//! `GET /api/v1/bars` and `dms read` both go through [`Reader::read`], so they give the same
//! bytes for the same request.
//!
//! # Layout
//! - [`cache`]: [`ChunkCache`], the LRU bounded by `cache.max_bytes`, with single-flight loads
//!   and the write invalidation that keeps "a read never returns data older than the last
//!   acknowledged write"; the reader's chunk policy ([`cache::chunk_tiling`]).
//! - The bars themselves travel as [`Columns`] (`format::columns`), below both this module and
//!   the encoders.
//!
//! # A request
//! 1. **Plan**: each symbol's range is clipped to the series' extent (so open-ended reads do
//!    not walk empty centuries) and split into chunks.
//! 2. **Limit**: when the range could hold more than `reader.max_bars_per_request` bars, the
//!    bars are counted (cached chunks from the cache, runs of uncached chunks with one
//!    `Store::count` each) and the request refused before a byte is sent.
//! 3. **Read**: chunks are loaded with OHLCV only, plus `adj_close` for an adjusted read
//!    ([`Fields`]). When every chunk is cached and the result is small, it is encoded at once
//!    ([`Body::Full`]). Otherwise it is streamed ([`Body::Stream`]):
//!    - a *loader* task fetches chunks through the cache, [`LOAD_CONCURRENCY`] at a time and in
//!      order;
//!    - a *driver* task takes them in order, appends cached chunk bytes itself and hands the
//!      rest to the encoder on the blocking pool, a few parts at a time, under a permit of a
//!      semaphore shared by all requests (at most [`Reader::encoders`] encode at once), then
//!      hands [`FLUSH_BYTES`] pieces to the response;
//!    - no blocking thread ever waits for a client: a thread encodes and returns. A client that
//!      takes nothing for the write timeout ([`WRITE_TIMEOUT`]) gets its response dropped: the
//!      tasks end and free what they hold, and the body ends in an error, so the client sees
//!      a broken response, never a short one that looks complete.
//!
//!    Memory stays bounded by the chunks in flight, whatever the size of the result.
//!
//! # JSON
//! JSON is columnar per symbol, so it is written in six passes over each symbol's chunks (all
//! of `ts`, then all of `open`, ...). To keep the passes consistent, the chunks of pass 0 are
//! pinned for the later passes while they fit in [`PIN_BYTES`] (shared with the cache, so
//! usually free); chunks beyond that are loaded again through the cache for each pass and
//! checked against the fingerprint taken in pass 0. Should a write change such a chunk
//! mid-response, the response is broken off ([`StreamError::Changed`]) rather than mixing two
//! versions of the bars.

pub mod cache;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::{Semaphore, mpsc};

pub use crate::format::Columns;
pub use cache::{CacheStats, ChunkCache, ChunkKey};

use crate::domain::{Interval, SeriesKey, Symbol, TimeRange};
use crate::format::{self, EncodeError, Encoder, EncodingKey, Format, Output};
use crate::store::{Fields, Store, StoreError};

/// A batch read.
#[derive(Debug, Clone, PartialEq)]
pub struct BarsQuery {
    pub symbols: Vec<Symbol>,
    pub interval: Interval,
    pub range: TimeRange,
    pub format: Format,
    pub adjusted: bool,
}

impl BarsQuery {
    /// What the chunks of this read must hold.
    fn fields(&self) -> Fields {
        Fields {
            adj_close: self.adjusted,
            source: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "request covers at least {count} bars, more than the limit of {limit} (reader.max_bars_per_request); narrow the range or ask for fewer symbols"
    )]
    TooManyBars { count: u64, limit: u64 },
    /// Bars of the range wait in the spool for the primary to come back.
    #[error(
        "the primary store is unavailable: bars of {series} in this range wait in the spool and will be served once it answers"
    )]
    Spooled { series: SeriesKey },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A streamed response broken off after it started (never before the first byte).
    #[error(transparent)]
    Interrupted(#[from] StreamError),
}

/// Why a streamed response was broken off.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("response dropped: the client read nothing for {}s", .0.as_secs())]
    Stalled(Duration),
    #[error(
        "the bars of {0} changed while its JSON columns were being written; read again for a consistent answer"
    )]
    Changed(Symbol),
    #[error("the response ended before it was complete")]
    Incomplete,
}

/// An encoded result: whole, or a stream of pieces (an error item ends the stream early).
pub enum Body {
    Full(Bytes),
    Stream(BoxStream<'static, Result<Bytes, ReadError>>),
}

/// Chunk reads in flight per request.
pub const LOAD_CONCURRENCY: usize = 8;

/// Streamed bodies are handed on in pieces of about this many bytes.
pub const FLUSH_BYTES: usize = 256 * 1024;

/// How long a streamed response waits for its client to take the next piece before it is
/// dropped (the default of [`Reader::with_write_timeout`]).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Pieces of body a streamed response holds ready for its client.
const BODY_PIECES: usize = 4;

/// Bytes of pass-0 chunks one JSON response pins for its later passes (per symbol; the default
/// of [`Reader::with_pin_bytes`]).
pub const PIN_BYTES: usize = 16 << 20;

/// Results of at most this many bars whose chunks are all cached are encoded in the request's
/// task (about a millisecond of work) instead of being streamed.
const INLINE_MAX_BARS: usize = 32_768;

/// The driver hands the encoder at most about this many bars per blocking step.
const STEP_BARS: usize = 64 * 1024;

/// Symbols whose range spans more chunks than this are counted with one `Store::count` of
/// the whole range rather than chunk by chunk.
const COUNT_BY_CHUNK_MAX: i64 = 256;

/// One part of the result: a chunk of a symbol clipped to the range, in one encoder pass, or
/// an empty stand-in for a symbol with nothing in range (so that JSON still lists it).
#[derive(Debug, Clone)]
struct Part {
    symbol: usize,
    pass: usize,
    /// The chunk and its position among the symbol's chunks.
    chunk: Option<(ChunkKey, usize)>,
    clip: TimeRange,
}

/// A symbol of the request with its range clipped to the series' extent (`None`: no bars).
/// Parts are generated from it lazily, so a huge request costs no memory before it is refused.
#[derive(Debug, Clone)]
struct Planned {
    symbol: usize,
    series: SeriesKey,
    range: Option<TimeRange>,
}

impl Planned {
    fn chunk_count(&self) -> i64 {
        self.range
            .map_or(0, |r| cache::chunk_tiling(self.series.interval).count(r))
    }

    /// This symbol's parts: every chunk in time order, once per pass.
    fn parts(self, passes: usize) -> impl Iterator<Item = Part> + Send + 'static {
        let Planned {
            symbol,
            series,
            range,
        } = self;
        let empty = range.is_none().then_some(Part {
            symbol,
            pass: 0,
            chunk: None,
            clip: TimeRange::ALL,
        });
        let chunks = range.into_iter().flat_map(move |r| {
            let starts = cache::chunk_tiling(series.interval).starts(r);
            let series = series.clone();
            (0..passes).flat_map(move |pass| {
                let series = series.clone();
                starts.clone().enumerate().map(move |(i, start)| Part {
                    symbol,
                    pass,
                    chunk: Some((
                        ChunkKey {
                            series: series.clone(),
                            start,
                        },
                        i,
                    )),
                    clip: r,
                })
            })
        });
        empty.into_iter().chain(chunks)
    }
}

fn parts_of(planned: Vec<Planned>, passes: usize) -> impl Iterator<Item = Part> + Send + 'static {
    planned.into_iter().flat_map(move |p| p.parts(passes))
}

/// What streamed responses are doing (for tests and operators).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Responses streaming now.
    pub streaming: u64,
    /// Of those, how many are waiting for their client to take a piece.
    pub waiting_for_client: u64,
    /// Responses dropped since start-up because their client stopped reading.
    pub dropped_stalled: u64,
}

#[derive(Default)]
struct StreamCounters {
    streaming: AtomicU64,
    waiting: AtomicU64,
    dropped: AtomicU64,
}

/// Counts a value up for as long as it lives.
struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn up(c: &'a AtomicU64) -> Gauge<'a> {
        c.fetch_add(1, Ordering::Relaxed);
        Gauge(c)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves batch reads from the primary through the chunk cache. Cheap to clone.
#[derive(Clone)]
pub struct Reader {
    store: Arc<dyn Store>,
    cache: Arc<ChunkCache>,
    max_bars: u64,
    /// Changes waiting for the primary: a read of a range they touch answers
    /// [`ReadError::Spooled`] rather than the primary's older bars.
    spool: Option<Arc<crate::spool::Spool>>,
    /// Permits to encode on the blocking pool, shared by every request: CPU work for the
    /// cores, while the rest of the pool stays free for the stores' blocking calls.
    encoders: Arc<Semaphore>,
    encoder_permits: usize,
    write_timeout: Option<Duration>,
    pin_bytes: usize,
    counters: Arc<StreamCounters>,
}

impl Reader {
    /// A reader of `store` with a cache of `cache_max_bytes`, refusing requests over `max_bars`.
    /// Streamed responses are dropped after [`WRITE_TIMEOUT`] without progress; at most twice
    /// as many encoders as cores run at once. Inside a tokio runtime, the series extents start
    /// loading at once, in the background.
    pub fn new(store: Arc<dyn Store>, max_bars: u64, cache_max_bytes: u64) -> Reader {
        let permits = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
        let cache = ChunkCache::new(cache_max_bytes);
        cache.warm_extents(&store);
        Reader {
            store,
            cache,
            max_bars,
            encoders: Arc::new(Semaphore::new(permits)),
            encoder_permits: permits,
            write_timeout: Some(WRITE_TIMEOUT),
            pin_bytes: PIN_BYTES,
            counters: Arc::default(),
            spool: None,
        }
    }

    /// Refuses reads of ranges with bars still in `spool` (see [`crate::spool`]).
    pub fn with_spool(mut self, spool: Arc<crate::spool::Spool>) -> Reader {
        self.spool = Some(spool);
        self
    }

    /// The same reader pinning at most `bytes` of a symbol's chunks for the later passes of a
    /// JSON response ([`PIN_BYTES`] by default; 0 reloads every chunk for every column).
    pub fn with_pin_bytes(mut self, bytes: usize) -> Reader {
        self.pin_bytes = bytes;
        self
    }

    /// The same reader with another write timeout (`None`: wait for the consumer forever,
    /// as a command writing to a file may).
    pub fn with_write_timeout(mut self, timeout: Option<Duration>) -> Reader {
        self.write_timeout = timeout;
        self
    }

    /// The cache: register it as a [`crate::ingest::WriteListener`] of the writer of the same
    /// store, and read its statistics.
    pub fn cache(&self) -> &Arc<ChunkCache> {
        &self.cache
    }

    pub fn max_bars(&self) -> u64 {
        self.max_bars
    }

    /// How many encoders may run on the blocking pool at once.
    pub fn encoders(&self) -> usize {
        self.encoder_permits
    }

    pub fn stream_stats(&self) -> StreamStats {
        let c = &self.counters;
        StreamStats {
            streaming: c.streaming.load(Ordering::Relaxed),
            waiting_for_client: c.waiting.load(Ordering::Relaxed),
            dropped_stalled: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// Plans, checks the limit and starts the read. Errors before the first byte (a request
    /// over the limit, a store that cannot be reached) come back here, not in the body.
    pub async fn read(&self, q: BarsQuery) -> Result<Body, ReadError> {
        if let Some(spool) = &self.spool
            && let Some(s) = q
                .symbols
                .iter()
                .find(|s| spool.covers(&SeriesKey::new((*s).clone(), q.interval), q.range))
        {
            return Err(ReadError::Spooled {
                series: SeriesKey::new(s.clone(), q.interval),
            });
        }
        let planned = self.plan(&q).await?;
        self.check(&q, &planned).await?;
        if let Some(bytes) = self.encode_cached(&q, &planned)? {
            return Ok(Body::Full(bytes));
        }
        Ok(Body::Stream(self.stream(q, planned)))
    }

    /// The whole encoded result in memory (tests and small callers).
    pub async fn read_all(&self, q: BarsQuery) -> Result<Vec<u8>, ReadError> {
        match self.read(q).await? {
            Body::Full(b) => Ok(b.to_vec()),
            Body::Stream(mut s) => {
                let mut out = Vec::new();
                while let Some(piece) = s.next().await {
                    out.extend_from_slice(&piece?);
                }
                Ok(out)
            }
        }
    }

    /// Clips each symbol's range to its series' extent.
    async fn plan(&self, q: &BarsQuery) -> Result<Vec<Planned>, ReadError> {
        let keys: Vec<SeriesKey> = q
            .symbols
            .iter()
            .map(|s| SeriesKey::new(s.clone(), q.interval))
            .collect();
        let extents = self.cache.extents(&self.store, &keys).await?;
        Ok(keys
            .into_iter()
            .zip(extents)
            .enumerate()
            .map(|(symbol, (series, extent))| Planned {
                symbol,
                series,
                range: extent.and_then(|(first, last)| {
                    TimeRange::new(first, last.saturating_add(1))
                        .ok()
                        .and_then(|e| e.intersect(q.range))
                }),
            })
            .collect())
    }

    /// Refuses a request over `max_bars`. The count is skipped when the clipped ranges cannot
    /// hold that many bars; otherwise cached chunks are counted from the cache, each run of
    /// uncached chunks with one `Store::count`, and a symbol spanning very many chunks with
    /// one `Store::count` of its range.
    async fn check(&self, q: &BarsQuery, planned: &[Planned]) -> Result<(), ReadError> {
        let spacing = match q.interval {
            i if i.is_intraday() => i.nominal_secs(),
            Interval::D1 => 86_400,
            Interval::W1 => 7 * 86_400,
            _ => 28 * 86_400,
        };
        let bound: u64 = planned
            .iter()
            .filter_map(|p| p.range)
            .map(|r| ((r.end() - r.start()) / spacing + 1) as u64)
            .fold(0u64, u64::saturating_add);
        if bound <= self.max_bars {
            return Ok(());
        }
        let mut total = 0u64;
        let mut runs: Vec<(SeriesKey, TimeRange)> = Vec::new();
        for p in planned {
            let Some(range) = p.range else { continue };
            if p.chunk_count() > COUNT_BY_CHUNK_MAX {
                runs.push((p.series.clone(), range));
                continue;
            }
            for part in p.clone().parts(1) {
                let Some((chunk, _)) = &part.chunk else {
                    continue;
                };
                let Some(r) = chunk.range().intersect(part.clip) else {
                    continue;
                };
                if let Some(cols) = self.cache.peek(chunk) {
                    total += cols.count_in(r) as u64;
                    continue;
                }
                match runs.last_mut() {
                    Some((s, run)) if *s == chunk.series && run.end() == r.start() => {
                        *run = TimeRange::new(run.start(), r.end()).expect("grows");
                    }
                    _ => runs.push((chunk.series.clone(), r)),
                }
            }
        }
        let over = |total: u64| total > self.max_bars;
        if over(total) {
            return Err(ReadError::TooManyBars {
                count: total,
                limit: self.max_bars,
            });
        }
        let store = &self.store;
        let mut counts = futures::stream::iter(runs)
            .map(|(s, r)| async move { store.count(&s, r).await })
            .buffer_unordered(LOAD_CONCURRENCY);
        while let Some(n) = counts.next().await {
            total += n?;
            if over(total) {
                return Err(ReadError::TooManyBars {
                    count: total,
                    limit: self.max_bars,
                });
            }
        }
        Ok(())
    }

    /// Encodes the result at once when every chunk is cached and it is small.
    fn encode_cached(
        &self,
        q: &BarsQuery,
        planned: &[Planned],
    ) -> Result<Option<Bytes>, ReadError> {
        let chunks: i64 = planned.iter().map(Planned::chunk_count).sum();
        let per_chunk = if q.interval.is_intraday() {
            14_400
        } else {
            400
        };
        if chunks.saturating_mul(per_chunk) > (INLINE_MAX_BARS * 4) as i64 {
            return Ok(None);
        }
        let parts: Vec<Part> = parts_of(planned.to_vec(), 1).collect();
        let keys: Vec<&ChunkKey> = parts
            .iter()
            .filter_map(|p| p.chunk.as_ref().map(|(k, _)| k))
            .collect();
        let Some(chunks) = self.cache.get_all_cached(&keys, q.fields()) else {
            return Ok(None);
        };
        let mut chunks = chunks.into_iter();
        let resolved: Vec<Resolved> = parts
            .into_iter()
            .map(|p| match p.chunk {
                Some((key, _)) => Resolved::new(
                    p.symbol,
                    0,
                    chunks.next().unwrap_or_else(Columns::empty),
                    key,
                    p.clip,
                ),
                None => Resolved::empty(p.symbol),
            })
            .collect();
        if resolved.iter().map(|r| r.cols.len()).sum::<usize>() > INLINE_MAX_BARS {
            // Not small after all: stream it (the chunks are cached, so that is cheap too).
            return Ok(None);
        }
        let mut enc = format::encoder(q.format, q.interval, q.adjusted);
        let mut out = Output::buffered();
        enc.begin(&mut out)?;
        let passes = enc.passes();
        for symbol in resolved.chunk_by(|a, b| a.symbol == b.symbol) {
            for pass in 0..passes {
                for part in symbol {
                    let part = Resolved {
                        pass,
                        ..part.clone()
                    };
                    let step = Step::prepare(part, enc.chunk_encoding(), &self.cache);
                    step.run(enc.as_mut(), q, &mut out, &self.cache)?;
                }
            }
        }
        enc.finish(&mut out)?;
        Ok(Some(Bytes::from(out.buf)))
    }

    /// Streams the result: a loader task and a driver task (see the module doc).
    fn stream(
        &self,
        q: BarsQuery,
        planned: Vec<Planned>,
    ) -> BoxStream<'static, Result<Bytes, ReadError>> {
        let enc = format::encoder(q.format, q.interval, q.adjusted);
        let (part_tx, part_rx) = mpsc::channel::<Result<Resolved, ReadError>>(LOAD_CONCURRENCY);
        let (body_tx, mut body_rx) = mpsc::channel::<Result<Bytes, ReadError>>(BODY_PIECES);
        let complete = Arc::new(AtomicBool::new(false));
        let q = Arc::new(q);
        tokio::spawn(load_parts(
            self.cache.clone(),
            self.store.clone(),
            q.clone(),
            parts_of(planned, enc.passes()),
            self.pin_bytes,
            part_tx,
        ));
        let driver = Driver {
            q,
            cache: self.cache.clone(),
            encoders: self.encoders.clone(),
            write_timeout: self.write_timeout,
            counters: self.counters.clone(),
            body_tx,
        };
        tokio::spawn(driver.run(enc, part_rx, complete.clone()));
        let mut ended = false;
        futures::stream::poll_fn(move |cx| {
            if ended {
                return Poll::Ready(None);
            }
            match body_rx.poll_recv(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(item)) => {
                    // An error ends the body.
                    ended = item.is_err();
                    Poll::Ready(Some(item))
                }
                // The driver ended: cleanly only if it said so; otherwise (dropped for a
                // stalled client, a panic) the body must not look complete.
                Poll::Ready(None) => {
                    ended = true;
                    if complete.load(Ordering::Acquire) {
                        Poll::Ready(None)
                    } else {
                        Poll::Ready(Some(Err(StreamError::Incomplete.into())))
                    }
                }
            }
        })
        .boxed()
    }
}

/// The loader: fetches the parts' chunks through the cache, [`LOAD_CONCURRENCY`] at a time,
/// and sends them on in order. For a multi-pass encoder (JSON) it keeps each symbol's pass-0
/// chunks for the later passes while they fit in `pin_bytes`, and checks chunks loaded again
/// against their pass-0 fingerprint.
async fn load_parts(
    cache: Arc<ChunkCache>,
    store: Arc<dyn Store>,
    q: Arc<BarsQuery>,
    parts: impl Iterator<Item = Part> + Send + 'static,
    pin_bytes: usize,
    tx: mpsc::Sender<Result<Resolved, ReadError>>,
) {
    let fields = q.fields();
    let pins = Arc::new(Mutex::new(Pins {
        budget: pin_bytes,
        ..Pins::default()
    }));
    let settled = Arc::new(tokio::sync::Notify::new());
    let mut loads = futures::stream::iter(parts)
        .map(|p| {
            let (cache, store) = (cache.clone(), store.clone());
            let (pins, settled) = (pins.clone(), settled.clone());
            async move {
                let Some((key, i)) = &p.chunk else {
                    return Ok((p, None));
                };
                // A later pass waits until pass 0 of its chunk is settled (it comes earlier
                // in order, so it is), then takes the pin or loads the chunk again.
                let pinned = if p.pass == 0 {
                    None
                } else {
                    loop {
                        let notified = settled.notified();
                        let ready = {
                            let pins = pins.lock().unwrap_or_else(|e| e.into_inner());
                            pins.settled(p.symbol, *i).then(|| pins.get(p.symbol, *i))
                        };
                        if let Some(pin) = ready {
                            break pin;
                        }
                        notified.await;
                    }
                };
                let cols = match pinned {
                    Some(cols) => cols,
                    None => cache.get(&store, key, fields).await?,
                };
                Ok::<_, ReadError>((p, Some(cols)))
            }
        })
        .buffered(LOAD_CONCURRENCY);
    while let Some(r) = loads.next().await {
        let resolved = r.and_then(|(p, cols)| {
            let (Some((key, i)), Some(chunk)) = (p.chunk, cols) else {
                return Ok(Resolved::empty(p.symbol));
            };
            let part = Resolved::new(p.symbol, p.pass, chunk, key, p.clip);
            let mut pins = pins.lock().unwrap_or_else(|e| e.into_inner());
            let part = pins
                .settle(part, i, q.adjusted)
                .map_err(|()| StreamError::Changed(q.symbols[p.symbol].clone()).into());
            settled.notify_waiters();
            part
        });
        let failed = resolved.is_err();
        if tx.send(resolved).await.is_err() || failed {
            break;
        }
    }
}

/// A JSON response's memory of the current symbol's pass-0 chunks.
#[derive(Default)]
struct Pins {
    /// Bytes it may keep.
    budget: usize,
    /// The symbol whose pass-0 parts are held, and how many of them are settled (they settle
    /// in order).
    symbol: Option<usize>,
    settled: usize,
    /// Parts kept whole, by position among the symbol's chunks.
    kept: HashMap<usize, Columns>,
    kept_bytes: usize,
    /// Fingerprints of the parts not kept.
    prints: HashMap<usize, u64>,
}

impl Pins {
    fn get(&self, symbol: usize, i: usize) -> Option<Columns> {
        (self.symbol == Some(symbol)).then(|| self.kept.get(&i).cloned())?
    }

    /// Whether pass 0 of chunk `i` of `symbol` is settled.
    fn settled(&self, symbol: usize, i: usize) -> bool {
        self.symbol == Some(symbol) && i < self.settled
    }

    /// Records a pass-0 part, or makes a later pass's part the one of pass 0 (its pinned
    /// columns, or the reloaded ones once checked unchanged: `Err` when they changed).
    fn settle(&mut self, mut part: Resolved, i: usize, adjusted: bool) -> Result<Resolved, ()> {
        if part.pass == 0 {
            if self.symbol != Some(part.symbol) {
                *self = Pins {
                    budget: self.budget,
                    symbol: Some(part.symbol),
                    ..Pins::default()
                };
            }
            self.settled = i + 1;
            let size = part.cols.bytes();
            if self.kept_bytes + size <= self.budget {
                self.kept_bytes += size;
                self.kept.insert(i, part.cols.clone());
            } else {
                self.prints.insert(i, part.cols.fingerprint(adjusted));
            }
            return Ok(part);
        }
        if let Some(cols) = self.get(part.symbol, i) {
            part.cols = cols;
            return Ok(part);
        }
        match self.prints.get(&i) {
            Some(&fp) if fp == part.cols.fingerprint(adjusted) => Ok(part),
            _ => Err(()),
        }
    }
}

/// The driver of one streamed response: takes resolved parts in order, encodes them (on the
/// blocking pool under a permit, or in place for cached chunk bytes) and hands the pieces to
/// the response, giving up on a client that takes nothing for `write_timeout`.
struct Driver {
    q: Arc<BarsQuery>,
    cache: Arc<ChunkCache>,
    encoders: Arc<Semaphore>,
    write_timeout: Option<Duration>,
    counters: Arc<StreamCounters>,
    body_tx: mpsc::Sender<Result<Bytes, ReadError>>,
}

/// An encoder and the output it writes into, moved to the blocking pool and back.
type Encoding = (Box<dyn Encoder>, Output);

/// Why a driver stopped early.
enum Stop {
    /// The consumer went away (client disconnected): nothing more to do.
    Gone,
    Failed(ReadError),
}

impl From<ReadError> for Stop {
    fn from(e: ReadError) -> Stop {
        Stop::Failed(e)
    }
}

impl From<EncodeError> for Stop {
    fn from(e: EncodeError) -> Stop {
        Stop::Failed(e.into())
    }
}

impl Driver {
    async fn run(
        self,
        enc: Box<dyn Encoder>,
        mut parts: mpsc::Receiver<Result<Resolved, ReadError>>,
        complete: Arc<AtomicBool>,
    ) {
        let counters = self.counters.clone();
        let _streaming = Gauge::up(&counters.streaming);
        match self.drive(enc, &mut parts).await {
            Ok(()) => complete.store(true, Ordering::Release),
            Err(Stop::Gone) => {}
            Err(Stop::Failed(ReadError::Interrupted(e @ StreamError::Stalled(_)))) => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(error = %e, "streamed read dropped");
            }
            Err(Stop::Failed(e)) => {
                tracing::warn!(error = %e, "read failed after the response started");
                let _ = self.body_tx.try_send(Err(e));
            }
        }
    }

    async fn drive(
        &self,
        enc: Box<dyn Encoder>,
        parts: &mut mpsc::Receiver<Result<Resolved, ReadError>>,
    ) -> Result<(), Stop> {
        let (mut enc, mut out) = (enc, Output::streaming(FLUSH_BYTES));
        enc.begin(&mut out)?;
        let encoding = enc.chunk_encoding();
        while let Some(first) = parts.recv().await {
            // Whatever else is ready, up to a step's worth of bars.
            let mut steps = vec![Step::prepare(first?, encoding, &self.cache)];
            let mut bars = steps[0].bars();
            while bars < STEP_BARS
                && let Ok(next) = parts.try_recv()
            {
                let step = Step::prepare(next?, encoding, &self.cache);
                bars += step.bars();
                steps.push(step);
            }
            if steps.iter().all(|s| matches!(s, Step::Cached(_))) {
                for step in steps {
                    step.run(enc.as_mut(), &self.q, &mut out, &self.cache)?;
                }
            } else {
                (enc, out) = self.encode_blocking((enc, out), steps).await?;
            }
            out.maybe_flush();
            self.send_pieces(&mut out).await?;
        }
        enc.finish(&mut out)?;
        out.flush();
        self.send_pieces(&mut out).await
    }

    /// Runs `steps` on the blocking pool under an encoder permit.
    async fn encode_blocking(&self, work: Encoding, steps: Vec<Step>) -> Result<Encoding, Stop> {
        let permit = self
            .encoders
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (q, cache) = (self.q.clone(), self.cache.clone());
        let done = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let (mut enc, mut out) = work;
            let r = steps
                .into_iter()
                .try_for_each(|s| s.run(enc.as_mut(), &q, &mut out, &cache));
            r.map(|()| (enc, out))
        })
        .await;
        match done {
            Ok(r) => Ok(r?),
            Err(e) => Err(Stop::Failed(
                EncodeError::Failed {
                    format: self.q.format.as_str(),
                    message: format!("the encoder stopped: {e}"),
                }
                .into(),
            )),
        }
    }

    /// Hands the cut pieces to the response, waiting at most `write_timeout` for each.
    async fn send_pieces(&self, out: &mut Output) -> Result<(), Stop> {
        for piece in out.take_pieces() {
            let piece = match self.body_tx.try_send(Ok(piece)) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Stop::Gone),
                Err(mpsc::error::TrySendError::Full(piece)) => piece,
            };
            let _waiting = Gauge::up(&self.counters.waiting);
            let sent = match self.write_timeout {
                Some(t) => self
                    .body_tx
                    .send_timeout(piece, t)
                    .await
                    .map_err(|e| match e {
                        mpsc::error::SendTimeoutError::Timeout(_) => {
                            Stop::Failed(StreamError::Stalled(t).into())
                        }
                        mpsc::error::SendTimeoutError::Closed(_) => Stop::Gone,
                    }),
                None => self.body_tx.send(piece).await.map_err(|_| Stop::Gone),
            };
            sent?;
        }
        Ok(())
    }
}

/// A part with its bars: a chunk clipped to the request, and the chunk's key when the clip
/// kept all of it (its encoded bytes can then be cached and reused).
#[derive(Clone)]
struct Resolved {
    symbol: usize,
    pass: usize,
    cols: Columns,
    whole: Option<ChunkKey>,
}

impl Resolved {
    fn new(symbol: usize, pass: usize, chunk: Columns, key: ChunkKey, clip: TimeRange) -> Resolved {
        let cols = chunk.clip(clip);
        let whole = (cols.len() == chunk.len() && !cols.is_empty()).then_some(key);
        Resolved {
            symbol,
            pass,
            cols,
            whole,
        }
    }

    fn empty(symbol: usize) -> Resolved {
        Resolved {
            symbol,
            pass: 0,
            cols: Columns::empty(),
            whole: None,
        }
    }
}

/// One part as the encoder will take it: the cached bytes of its whole chunk, or work. Both
/// the cached and the streamed path encode through this, which is why they give the same
/// bytes; a whole chunk's bytes are the same in every response of a format that has them, so
/// they are cached and reused, and take the same path with or without a cache entry.
enum Step {
    Cached(Bytes),
    Encode(Resolved),
}

impl Step {
    fn prepare(part: Resolved, encoding: Option<EncodingKey>, cache: &ChunkCache) -> Step {
        if let (Some(encoding), Some(key)) = (encoding, &part.whole)
            && let Some(bytes) = cache.encoded(key, encoding)
        {
            return Step::Cached(bytes);
        }
        Step::Encode(part)
    }

    fn bars(&self) -> usize {
        match self {
            Step::Cached(_) => 0,
            Step::Encode(p) => p.cols.len().max(1),
        }
    }

    fn run(
        self,
        enc: &mut dyn Encoder,
        q: &BarsQuery,
        out: &mut Output,
        cache: &ChunkCache,
    ) -> Result<(), EncodeError> {
        let part = match self {
            Step::Cached(bytes) => return enc.append_chunk(bytes, out),
            Step::Encode(part) => part,
        };
        let symbol = q.symbols[part.symbol].as_str();
        match (enc.chunk_encoding(), &part.whole) {
            (Some(encoding), Some(key)) => {
                let bytes = enc.chunk_bytes(symbol, &part.cols)?;
                cache.put_encoded(key, &part.cols, encoding, bytes.clone());
                enc.append_chunk(bytes, out)
            }
            _ => enc.part(symbol, part.pass, &part.cols, out),
        }
    }
}
