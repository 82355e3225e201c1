//! `/api/v1/replication/*`: what DMS instances ask of each other (shapes in
//! [`crate::replicate::wire`]).
//!
//! - `GET changes?since=SEQ&limit=N&wait_s=W`: the change log for a replica that pulls, with
//!   the bars and actions the primary holds for it now (DESIGN §4); waits up to `W` seconds
//!   (at most 5) while nothing is new.
//! - `POST apply`: a peer pushes a batch of changes (admin token; allowed on a replica too,
//!   since it *is* replication).
//! - `GET bars`, `GET actions`, `GET digests`, `GET series` (extensions of DESIGN §4): every
//!   field of a series' bars, a symbol's actions, digests computed here (so equal data never
//!   crosses the network) and the list of series — what `verify` and a replica read of
//!   another instance.
//!
//! Times are epoch seconds.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::domain::{SeriesKey, TimeRange};
use crate::replicate::wire::{self, ApplyRequest, DigestsAnswer, WireAction, WireBars, WireSeries};
use crate::store::BucketGrid;

/// Most changes one page may list.
const MAX_LIMIT: usize = 10_000;
/// Longest a pull may wait for something new.
const MAX_WAIT_S: u64 = 5;
/// Most ranges one digest request may name.
const MAX_RANGES: usize = 1_000;
/// The widest digest bucket: 100 years.
const MAX_WIDTH: i64 = 100 * 366 * 86_400;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// The last sequence number already applied (default 0).
    #[param(minimum = 0)]
    since: Option<u64>,
    /// Most changes to list, 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// Seconds to wait while nothing is new, 0 to 5 (default 0).
    #[param(minimum = 0, maximum = 5)]
    wait_s: Option<u64>,
}

/// The change log after `since`, coalesced, with the primary's current data.
#[utoipa::path(
    get,
    path = "/api/v1/replication/changes",
    tag = "ops",
    params(ChangesParams),
    responses(
        (status = 200, description = "`{since, next, last_seq, changes, units, actions}`", content_type = "application/json", body = Object),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn changes(
    State(state): State<AppState>,
    q: Result<Query<ChangesParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(1000);
    let wait = q.wait_s.unwrap_or(0);
    if !(1..=MAX_LIMIT).contains(&limit) || wait > MAX_WAIT_S {
        return Err(ApiError::InvalidArgument(format!(
            "limit is 1 to {MAX_LIMIT}; wait_s is 0 to {MAX_WAIT_S}"
        )));
    }
    let page = state
        .services()
        .replicator
        .changes_page(q.since.unwrap_or(0), limit, Duration::from_secs(wait))
        .await?;
    Ok(Json(page).into_response())
}

/// Applies a batch of changes a peer pushed (every op is checked before the first applies).
#[utoipa::path(
    post,
    path = "/api/v1/replication/apply",
    tag = "write",
    request_body = ApplyRequest,
    responses(
        (status = 200, description = "What was applied", content_type = "application/json", body = wire::ApplyReport),
        (status = 400, description = "A malformed batch or an impossible bar", body = ErrorBody),
        (status = 401, description = "A token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 503, description = "The store cannot be reached", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn apply(
    State(state): State<AppState>,
    body: Result<Json<ApplyRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let services = state.services().clone();
    // The batch is applied on its own task: a peer that goes away mid-batch does not cut it.
    let report = tokio::spawn(async move { services.replicator.apply(req).await })
        .await
        .map_err(|e| ApiError::Internal(format!("apply task failed: {e}")))??;
    Ok(Json(report).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesRangeParams {
    #[param(min_length = 1, max_length = 256)]
    symbol: String,
    /// `1m` ... `1mo`.
    #[param(pattern = "^(1m|2m|5m|15m|30m|1h|1d|1wk|1mo)$")]
    interval: String,
    /// Epoch seconds (default: the earliest storable instant).
    start: Option<i64>,
    /// Epoch seconds, exclusive (default: the latest).
    end: Option<i64>,
}

fn series_of(symbol: &str, interval: &str) -> Result<SeriesKey, ApiError> {
    let symbol =
        wire::symbol(symbol).map_err(|e| ApiError::InvalidArgument(format!("symbol: {e}")))?;
    Ok(SeriesKey::new(
        symbol,
        super::parse_interval(Some(interval))?,
    ))
}

/// `[start, end)` clipped to the span a stored bar can have (`None`: nothing can be there).
fn range_of(start: Option<i64>, end: Option<i64>) -> Result<Option<TimeRange>, ApiError> {
    let span = crate::replicate::plan::storable_span();
    let range = TimeRange::new(start.unwrap_or(span.start()), end.unwrap_or(span.end()))
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    Ok(range.intersect(span))
}

/// Every field of a series' bars in `[start, end)`, columnar.
#[utoipa::path(
    get,
    path = "/api/v1/replication/bars",
    tag = "read",
    params(SeriesRangeParams),
    responses(
        (status = 200, description = "`{ts, open, high, low, close, volume, adj_close, source}`", content_type = "application/json", body = WireBars),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn bars(
    State(state): State<AppState>,
    q: Result<Query<SeriesRangeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let series = series_of(&q.symbol, &q.interval)?;
    let bars = match range_of(q.start, q.end)? {
        Some(range) => {
            state
                .services()
                .replicator
                .read_bars(&series, range)
                .await?
        }
        None => Vec::new(),
    };
    Ok(Json(WireBars::from_bars(&bars)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActionsParams {
    #[param(min_length = 1, max_length = 256)]
    symbol: String,
    start: Option<i64>,
    end: Option<i64>,
}

/// A symbol's corporate actions in `[start, end)`, every field.
#[utoipa::path(
    get,
    path = "/api/v1/replication/actions",
    tag = "read",
    params(ActionsParams),
    responses(
        (status = 200, description = "A list of actions", content_type = "application/json", body = Vec<WireAction>),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn actions(
    State(state): State<AppState>,
    q: Result<Query<ActionsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let symbol =
        wire::symbol(&q.symbol).map_err(|e| ApiError::InvalidArgument(format!("symbol: {e}")))?;
    let actions = match range_of(q.start, q.end)? {
        Some(range) => {
            state
                .services()
                .replicator
                .read_actions(&symbol, range)
                .await?
        }
        None => Vec::new(),
    };
    let out: Vec<WireAction> = actions.iter().map(WireAction::from_action).collect();
    Ok(Json(out).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DigestParams {
    #[param(min_length = 1, max_length = 256)]
    symbol: String,
    /// `1m` ... `1mo`.
    #[param(pattern = "^(1m|2m|5m|15m|30m|1h|1d|1wk|1mo)$")]
    interval: String,
    /// Digest each of these ranges: `start_end,start_end,…` (epoch seconds, at most 1000).
    ranges: Option<String>,
    /// Otherwise digest each bucket of `width` seconds (from `offset`) in `[start, end)`.
    start: Option<i64>,
    end: Option<i64>,
    #[param(minimum = 1)]
    width: Option<i64>,
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// Order-independent digests of a series, computed where the data lives.
#[utoipa::path(
    get,
    path = "/api/v1/replication/digests",
    tag = "read",
    params(DigestParams),
    responses(
        (status = 200, description = "`{digests: [..]}` per range or `{buckets: [[start, digest], ..]}`", content_type = "application/json", body = Object),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn digests(
    State(state): State<AppState>,
    q: Result<Query<DigestParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let series = series_of(&q.symbol, &q.interval)?;
    let primary = state.services().replicator.primary().clone();
    let unavailable = |e: crate::replicate::node::NodeError| ApiError::Unavailable(e.to_string());
    let answer = match q.ranges {
        Some(list) => {
            let ranges = parse_ranges(&list)?;
            DigestsAnswer {
                digests: clipped_digests(&primary, &series, &ranges)
                    .await
                    .map_err(unavailable)?,
                buckets: Vec::new(),
            }
        }
        None => {
            let width = q.width.unwrap_or(0);
            let offset = q.offset.unwrap_or(0);
            if !(1..=MAX_WIDTH).contains(&width) || !(0..width).contains(&offset) {
                return Err(ApiError::InvalidArgument(format!(
                    "give ranges, or width (1 to {MAX_WIDTH} s) and offset (0 to width - 1)"
                )));
            }
            let grid = BucketGrid { width, offset };
            let buckets = match range_of(q.start, q.end)? {
                Some(range) => primary
                    .bucket_digests(&series, range, grid)
                    .await
                    .map_err(unavailable)?,
                None => Vec::new(),
            };
            DigestsAnswer {
                digests: Vec::new(),
                buckets,
            }
        }
    };
    Ok(Json(answer).into_response())
}

fn parse_ranges(list: &str) -> Result<Vec<TimeRange>, ApiError> {
    let bad = |m: String| ApiError::InvalidArgument(format!("ranges: {m}"));
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part
            .split_once('_')
            .ok_or_else(|| bad(format!("{part:?} is not START_END")))?;
        let num = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| bad(format!("{s:?} is not a number of seconds")))
        };
        out.push(TimeRange::new(num(a)?, num(b)?).map_err(|e| bad(e.to_string()))?);
    }
    if out.is_empty() || out.len() > MAX_RANGES {
        return Err(bad(format!("give 1 to {MAX_RANGES} ranges")));
    }
    Ok(out)
}

/// Digests of `ranges`, each clipped to the storable span (a range outside it is empty).
async fn clipped_digests(
    primary: &std::sync::Arc<dyn crate::replicate::node::Node>,
    series: &SeriesKey,
    ranges: &[TimeRange],
) -> Result<Vec<crate::store::RangeDigest>, crate::replicate::node::NodeError> {
    let span = crate::replicate::plan::storable_span();
    let inside: Vec<(usize, TimeRange)> = ranges
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.intersect(span).map(|r| (i, r)))
        .collect();
    let clipped: Vec<TimeRange> = inside.iter().map(|(_, r)| *r).collect();
    let digests = primary.digests(series, &clipped).await?;
    let mut out = vec![crate::store::RangeDigest::default(); ranges.len()];
    for ((i, _), d) in inside.into_iter().zip(digests) {
        out[i] = d;
    }
    Ok(out)
}

/// Every series this instance holds (from the store's index where it has one).
#[utoipa::path(
    get,
    path = "/api/v1/replication/series",
    tag = "read",
    responses(
        (status = 200, description = "`{series: [{symbol, interval}, ..]}`", content_type = "application/json", body = Object),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn series(State(state): State<AppState>) -> Result<Response, ApiError> {
    let keys = state
        .services()
        .replicator
        .primary()
        .series_keys()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let series: Vec<WireSeries> = keys
        .into_iter()
        .map(|k| WireSeries {
            symbol: k.symbol.to_string(),
            interval: k.interval,
        })
        .collect();
    Ok(Json(serde_json::json!({ "series": series })).into_response())
}
