//! The read path for backtests: many symbols × one interval × a range, encoded in one of the
//! output formats and streamed.
//!
//! `GET /api/v1/bars` and `dms read` both go through [`Reader`], so they give the same bytes
//! for the same request.

use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

use crate::domain::{Interval, SeriesKey, Symbol, TimeRange};
use crate::format::{self, Format};
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
        "request covers {count} bars, more than the limit of {limit} (reader.max_bars_per_request); narrow the range or ask for fewer symbols"
    )]
    TooManyBars { count: u64, limit: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Encode(#[from] format::EncodeError),
}

/// Serves batch reads from the primary.
#[derive(Clone)]
pub struct Reader {
    store: Arc<dyn Store>,
    max_bars: u64,
}

/// Bytes are handed to the consumer once this many have accumulated.
const FLUSH_BYTES: usize = 256 * 1024;

impl Reader {
    pub fn new(store: Arc<dyn Store>, max_bars: u64) -> Reader {
        Reader { store, max_bars }
    }

    /// Counts the bars the query covers and refuses it when over the limit. Run before
    /// streaming, so that a refusal is a clean error rather than a truncated body.
    pub async fn check(&self, q: &BarsQuery) -> Result<u64, ReadError> {
        let mut total = 0u64;
        for s in &q.symbols {
            total += self
                .store
                .count(&SeriesKey::new(s.clone(), q.interval), q.range)
                .await?;
            if total > self.max_bars {
                return Err(ReadError::TooManyBars {
                    count: total,
                    limit: self.max_bars,
                });
            }
        }
        Ok(total)
    }

    /// Streams the encoded result, one symbol at a time.
    pub fn stream(
        &self,
        q: BarsQuery,
    ) -> impl Stream<Item = Result<Bytes, ReadError>> + Send + 'static {
        let store = self.store.clone();
        async_stream(move |tx| async move {
            let mut enc = format::encoder(q.format, q.interval, q.adjusted);
            let mut buf = Vec::with_capacity(FLUSH_BYTES * 2);
            enc.begin(&mut buf)?;
            for s in &q.symbols {
                let bars = store
                    .read(&SeriesKey::new(s.clone(), q.interval), q.range)
                    .await?;
                enc.series(s.as_str(), &bars, &mut buf)?;
                if buf.len() >= FLUSH_BYTES && !tx.send(Bytes::from(std::mem::take(&mut buf))).await
                {
                    return Ok(());
                }
            }
            enc.finish(&mut buf)?;
            tx.send(Bytes::from(buf)).await;
            Ok(())
        })
    }

    /// The whole encoded result in memory (`dms read` to a file or stdout uses the stream).
    pub async fn read_all(&self, q: BarsQuery) -> Result<Vec<u8>, ReadError> {
        use futures::StreamExt;
        let mut out = Vec::new();
        let mut s = std::pin::pin!(self.stream(q));
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}

/// A sender half for [`async_stream`]: `send` returns false once the consumer is gone.
pub struct Sender(tokio::sync::mpsc::Sender<Result<Bytes, ReadError>>);

impl Sender {
    pub async fn send(&self, b: Bytes) -> bool {
        self.0.send(Ok(b)).await.is_ok()
    }
}

/// Runs `f` as a producer task feeding a bounded channel, and returns the channel as a stream;
/// an error returned by `f` becomes the stream's last item.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Bytes, ReadError>> + Send + 'static
where
    F: FnOnce(Sender) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ReadError>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let err_tx = tx.clone();
    tokio::spawn(async move {
        if let Err(e) = f(Sender(tx)).await {
            let _ = err_tx.send(Err(e)).await;
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
