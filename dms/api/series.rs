//! `GET /api/v1/series`: every stored series with its extent and count, and the cache figures.
//!
//! `gaps` is the number of sessions missing inside the series' stored range (the sum of the
//! `sessions` of its interior gaps in `GET /api/v1/gaps`), `stale` whether its newest bar is
//! older than the calendar expects; both come from one gap scan of the listed series
//! (`maintain::scan`) and are `null` for a series whose market has no calendar.
//! `last_update` is the time of the series' last committed change-log entry.

use std::collections::HashMap;

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
    /// Sessions missing inside `[first, last]`, by the market's calendar; `null` when the
    /// symbol's market has no calendar.
    pub gaps: Option<u64>,
    /// When the series was last written, RFC 3339; `null` when not known.
    pub last_update: Option<String>,
    /// Whether the newest bar is older than the calendar expects (a closed session's bars are
    /// missing after it); `null` when the symbol's market has no calendar.
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
    let listed: Vec<_> = listed
        .into_iter()
        .filter(|s| interval.is_none_or(|i| s.series.interval == i))
        .filter(|s| {
            symbols
                .as_ref()
                .is_none_or(|want| want.contains(&s.series.symbol))
        })
        .collect();
    let keys: Vec<_> = listed.iter().map(|s| s.series.clone()).collect();
    let now = chrono::Utc::now().timestamp();
    let plans: HashMap<_, _> = services
        .gaps
        .plan(&keys, now)
        .await?
        .into_iter()
        .map(|p| (p.series.clone(), p))
        .collect();
    let series = listed
        .into_iter()
        .map(|s| {
            let plan = plans.get(&s.series);
            SeriesInfo {
                symbol: s.series.symbol.to_string(),
                interval: s.series.interval.to_string(),
                first: time::rfc3339(s.first),
                last: time::rfc3339(s.last),
                count: s.count,
                gaps: plan.map(|p| p.interior_sessions()),
                last_update: updates.get(&s.series).map(|t| time::rfc3339(*t)),
                stale: plan.map(|p| p.stale),
            }
        })
        .collect();
    Ok(Json(SeriesList {
        series,
        cache: services.reader.cache().stats(),
    }))
}
