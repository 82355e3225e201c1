//! `GET /api/v1/series`: every stored series with its extent and count, and the cache figures.
//!
//! `gaps` and `stale` need the trading calendars (a later maintenance issue) and are `null`
//! until they land; `last_update` is the time of the series' last committed change-log entry.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::error::ErrorBody;
use super::{ApiError, AppState, parse_interval, parse_symbols};
use crate::domain::time;
use crate::reader::CacheStats;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// Only these symbols (comma-separated).
    #[param(
        pattern = r"^[A-Za-z0-9^][A-Za-z0-9.=^_-]{0,31}(,[A-Za-z0-9^][A-Za-z0-9.=^_-]{0,31})*$"
    )]
    pub symbols: Option<String>,
    /// Only this interval.
    #[param(pattern = r"^(1m|2m|5m|15m|30m|1h|1d|1wk|1mo)$")]
    pub interval: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesList {
    pub series: Vec<SeriesInfo>,
    /// The reader cache (same as `GET /api/v1/cache`).
    pub cache: CacheStats,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesInfo {
    pub symbol: String,
    pub interval: String,
    /// Timestamp of the first bar, RFC 3339.
    pub first: String,
    /// Timestamp of the last bar, RFC 3339.
    pub last: String,
    /// Bars stored.
    pub count: u64,
    /// Missing sessions inside `[first, last]`; `null` until trading calendars are available.
    pub gaps: Option<u64>,
    /// When the series was last written, RFC 3339; `null` when not known.
    pub last_update: Option<String>,
    /// Whether the newest bar is older than the calendar expects; `null` until trading
    /// calendars are available.
    pub stale: Option<bool>,
}

/// Every stored series.
#[utoipa::path(
    get,
    path = "/api/v1/series",
    tag = "read",
    params(SeriesParams),
    responses(
        (status = 200, description = "Series sorted by symbol and interval", body = SeriesList),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn series(
    State(state): State<AppState>,
    params: Result<Query<SeriesParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SeriesList>, ApiError> {
    let Query(params) = params?;
    let symbols = params.symbols.as_deref().map(parse_symbols).transpose()?;
    let interval = params
        .interval
        .as_deref()
        .map(|i| parse_interval(Some(i)))
        .transpose()?;
    let services = state.services();
    let listed = services.primary.list_series().await?;
    let updates = services.meta.last_updates().await?;
    let series = listed
        .into_iter()
        .filter(|s| interval.is_none_or(|i| s.series.interval == i))
        .filter(|s| {
            symbols
                .as_ref()
                .is_none_or(|want| want.contains(&s.series.symbol))
        })
        .map(|s| SeriesInfo {
            symbol: s.series.symbol.to_string(),
            interval: s.series.interval.to_string(),
            first: time::rfc3339(s.first),
            last: time::rfc3339(s.last),
            count: s.count,
            gaps: None,
            last_update: updates.get(&s.series).map(|t| time::rfc3339(*t)),
            stale: None,
        })
        .collect();
    Ok(Json(SeriesList {
        series,
        cache: services.reader.cache().stats(),
    }))
}
