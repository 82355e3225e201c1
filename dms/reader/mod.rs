//! The read path for backtests: many symbols × one interval × a range, read in chunks through
//! an LRU cache of decoded chunks, encoded in one of the output formats and streamed.
//!
//! `GET /api/v1/bars` and `dms read` both go through [`Reader::read`], so they give the same
//! bytes for the same request.
//!
//! # Layout
//! - [`columns`]: [`Columns`], bars as shared, immutable columns — what is cached and encoded;
//! - [`cache`]: [`ChunkCache`], the LRU bounded by `cache.max_bytes`, with single-flight loads
//!   and the write invalidation that keeps "a read never returns data older than the last
//!   acknowledged write".
//!
//! # A request
//! 1. **Plan**: each symbol's range is clipped to the series' extent (so open-ended reads do
//!    not walk empty centuries) and split into chunks ([`cache::chunk_span`]).
//! 2. **Limit**: when the range could hold more than `reader.max_bars_per_request` bars, the
//!    bars are counted (cached chunks from the cache, runs of uncached chunks with one
//!    `Store::count` each) and the request refused before a byte is sent.
//! 3. **Read**: when every chunk is cached and the result is small, it is encoded at once
//!    ([`Body::Full`]). Otherwise a loader task fetches chunks through the cache,
//!    [`LOAD_CONCURRENCY`] at a time and in order, and an encoder on the blocking pool turns
//!    them into [`FLUSH_BYTES`] pieces of body ([`Body::Stream`]): memory stays bounded by the
//!    chunks in flight, whatever the size of the result.

pub mod cache;
pub mod columns;

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

pub use cache::{CacheStats, ChunkCache, ChunkKey, TextKind};
pub use columns::Columns;

use crate::domain::{Interval, SeriesKey, Symbol, TimeRange};
use crate::format::{self, EncodeError, Format, Output};
use crate::store::{Store, StoreError};

/// A batch read.
#[derive(Debug, Clone, PartialEq)]
pub struct BarsQuery {
    pub symbols: Vec<Symbol>,
    pub interval: Interval,
    pub range: TimeRange,
    pub format: Format,
    pub adjusted: bool,
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

/// Results of at most this many bars whose chunks are all cached are encoded in the request's
/// task (about a millisecond of work) instead of being streamed from the blocking pool.
const INLINE_MAX_BARS: usize = 32_768;

/// One part of the result: a chunk of a symbol clipped to the range, or an empty stand-in for
/// a symbol with nothing in range (so that JSON still lists it).
#[derive(Debug, Clone)]
struct Part {
    symbol: usize,
    chunk: Option<ChunkKey>,
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
        self.range.map_or(0, |r| {
            let span = cache::chunk_span(self.series.interval);
            (cache::chunk_start(self.series.interval, r.end() - 1)
                - cache::chunk_start(self.series.interval, r.start()))
                / span
                + 1
        })
    }

    /// This symbol's parts, in time order.
    fn parts(self) -> impl Iterator<Item = Part> + Send + 'static {
        let n = self.chunk_count();
        let Planned {
            symbol,
            series,
            range,
        } = self;
        let empty = range.is_none().then_some(Part {
            symbol,
            chunk: None,
            clip: TimeRange::ALL,
        });
        let chunks = range.into_iter().flat_map(move |r| {
            let (span, first) = (
                cache::chunk_span(series.interval),
                cache::chunk_start(series.interval, r.start()),
            );
            let series = series.clone();
            (0..n).map(move |k| Part {
                symbol,
                chunk: Some(ChunkKey {
                    series: series.clone(),
                    start: first + k * span,
                }),
                clip: r,
            })
        });
        empty.into_iter().chain(chunks)
    }
}

fn parts_of(planned: Vec<Planned>) -> impl Iterator<Item = Part> + Send + 'static {
    planned.into_iter().flat_map(Planned::parts)
}

/// Symbols whose range spans more chunks than this are counted with one `Store::count` of
/// the whole range rather than chunk by chunk.
const COUNT_BY_CHUNK_MAX: i64 = 256;

/// Serves batch reads from the primary through the chunk cache. Cheap to clone.
#[derive(Clone)]
pub struct Reader {
    store: Arc<dyn Store>,
    cache: Arc<ChunkCache>,
    max_bars: u64,
    /// Changes waiting for the primary: a read of a range they touch answers
    /// [`ReadError::Spooled`] rather than the primary's older bars.
    spool: Option<Arc<crate::spool::Spool>>,
}

impl Reader {
    /// A reader of `store` with a cache of `cache_max_bytes`, refusing requests over `max_bars`.
    pub fn new(store: Arc<dyn Store>, max_bars: u64, cache_max_bytes: u64) -> Reader {
        Reader {
            store,
            cache: ChunkCache::new(cache_max_bytes),
            max_bars,
            spool: None,
        }
    }

    /// Refuses reads of ranges with bars still in `spool` (see [`crate::spool`]).
    pub fn with_spool(mut self, spool: Arc<crate::spool::Spool>) -> Reader {
        self.spool = Some(spool);
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
            for part in p.clone().parts() {
                let Some(chunk) = &part.chunk else { continue };
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
        let parts: Vec<Part> = parts_of(planned.to_vec()).collect();
        let keys: Vec<&ChunkKey> = parts.iter().filter_map(|p| p.chunk.as_ref()).collect();
        let Some(chunks) = self.cache.get_all_cached(&keys) else {
            return Ok(None);
        };
        let mut chunks = chunks.into_iter();
        let resolved: Vec<Resolved> = parts
            .into_iter()
            .map(|p| match p.chunk {
                Some(key) => Resolved::new(
                    p.symbol,
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
        let mut out = Output::buffered();
        encode(q, resolved.into_iter().map(Ok), &mut out, Some(&self.cache))?;
        Ok(Some(Bytes::from(out.buf)))
    }

    /// Loads parts through the cache on a task and encodes them on the blocking pool.
    fn stream(
        &self,
        q: BarsQuery,
        planned: Vec<Planned>,
    ) -> BoxStream<'static, Result<Bytes, ReadError>> {
        let (part_tx, mut part_rx) =
            tokio::sync::mpsc::channel::<Result<Resolved, ReadError>>(LOAD_CONCURRENCY);
        let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Bytes, ReadError>>(4);
        let (cache, store) = (self.cache.clone(), self.store.clone());
        let cache_for_text = self.cache.clone();
        tokio::spawn(async move {
            let mut loads = futures::stream::iter(parts_of(planned))
                .map(|p| {
                    let (cache, store) = (cache.clone(), store.clone());
                    async move {
                        Ok::<_, ReadError>(match p.chunk {
                            Some(key) => {
                                let chunk = cache.get(&store, &key).await?;
                                Resolved::new(p.symbol, chunk, key, p.clip)
                            }
                            None => Resolved::empty(p.symbol),
                        })
                    }
                })
                .buffered(LOAD_CONCURRENCY);
            while let Some(r) = loads.next().await {
                let failed = r.is_err();
                if part_tx.send(r).await.is_err() || failed {
                    break;
                }
            }
        });
        tokio::task::spawn_blocking(move || {
            let err_tx = body_tx.clone();
            let mut sink = move |piece: Bytes| body_tx.blocking_send(Ok(piece)).is_ok();
            let mut out = Output::streaming(&mut sink, FLUSH_BYTES);
            let parts = std::iter::from_fn(|| part_rx.blocking_recv());
            let result =
                encode(&q, parts, &mut out, Some(&cache_for_text)).and_then(|()| Ok(out.flush()?));
            match result {
                Ok(()) | Err(ReadError::Encode(EncodeError::Closed)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "read failed after the response started");
                    let _ = err_tx.blocking_send(Err(e));
                }
            }
        });
        let mut body_rx = body_rx;
        futures::stream::poll_fn(move |cx| body_rx.poll_recv(cx)).boxed()
    }
}

/// A part with its bars: a chunk clipped to the request, and the chunk's key when the clip
/// kept all of it (its encoded text can then be cached and reused).
struct Resolved {
    symbol: usize,
    cols: Columns,
    whole: Option<ChunkKey>,
}

impl Resolved {
    fn new(symbol: usize, chunk: Columns, key: ChunkKey, clip: TimeRange) -> Resolved {
        let cols = chunk.clip(clip);
        let whole = (cols.len() == chunk.len() && !cols.is_empty()).then_some(key);
        Resolved {
            symbol,
            cols,
            whole,
        }
    }

    fn empty(symbol: usize) -> Resolved {
        Resolved {
            symbol,
            cols: Columns::empty(),
            whole: None,
        }
    }
}

/// Runs the encoder of `q` over parts in order: the one sequence of calls both the cached and
/// the streamed path make, which is why they give the same bytes. A whole chunk has the same
/// bytes in every response of a format that has chunk bytes (CSV rows, an Arrow record-batch
/// message), so those bytes are cached and reused; they take the same path with or without a
/// cache, so the output never depends on what happened to be cached.
fn encode(
    q: &BarsQuery,
    parts: impl Iterator<Item = Result<Resolved, ReadError>>,
    out: &mut Output,
    cache: Option<&ChunkCache>,
) -> Result<(), ReadError> {
    let mut enc = format::encoder(q.format, q.interval, q.adjusted);
    enc.begin(out)?;
    let kind = match (q.format, q.adjusted) {
        (Format::Csv, false) => Some(TextKind::Csv),
        (Format::Csv, true) => Some(TextKind::CsvAdjusted),
        (Format::Arrow, false) => Some(TextKind::Arrow),
        (Format::Arrow, true) => Some(TextKind::ArrowAdjusted),
        _ => None,
    };
    for part in parts {
        let part = part?;
        let symbol = q.symbols[part.symbol].as_str();
        match (kind, &part.whole) {
            (Some(kind), Some(key)) if !part.cols.is_empty() => {
                let bytes = match cache.and_then(|c| c.text(key, kind)) {
                    Some(bytes) => bytes,
                    None => {
                        let bytes = enc
                            .chunk_bytes(symbol, &part.cols)
                            .expect("csv and arrow have chunk bytes")?;
                        if let Some(cache) = cache {
                            cache.put_text(key, &part.cols, kind, bytes.clone());
                        }
                        bytes
                    }
                };
                enc.flush_pending(out)?;
                out.push_bytes(bytes)?;
            }
            _ => enc.series(symbol, &part.cols, out)?,
        }
    }
    enc.finish(out)?;
    Ok(())
}
