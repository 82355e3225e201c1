//! `GET /api/v1/quality`: quarantined bars with the rule and reason.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::error::ErrorBody;
use super::{ApiError, AppState, parse_interval, parse_symbols};
use crate::domain::time;

/// Most records one request returns.
pub const MAX_QUALITY_LIMIT: usize = 10_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QualityParams {
    /// Only these symbols (comma-separated).
    #[param(
        pattern = r"^[A-Za-z0-9^][A-Za-z0-9.=^_-]{0,31}(,[A-Za-z0-9^][A-Za-z0-9.=^_-]{0,31})*$"
    )]
    pub symbols: Option<String>,
    /// Only this interval.
    #[param(pattern = r"^(1m|2m|5m|15m|30m|1h|1d|1wk|1mo)$")]
    pub interval: Option<String>,
    /// Most records to return, newest first (default 1000, at most 10000).
    #[param(pattern = "^[0-9]{1,5}$", example = "100")]
    pub limit: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct QualityList {
    pub quality: Vec<QualityItem>,
}

/// A quarantined bar.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct QualityItem {
    pub id: u64,
    pub symbol: String,
    pub interval: String,
    /// The bar's timestamp, RFC 3339.
    pub ts: String,
    /// The validation rule that refused it (`non_positive_price`, `high_below_open_close`, ...).
    pub rule: String,
    pub reason: String,
    /// The bar as received.
    #[schema(value_type = Object)]
    pub bar: serde_json::Value,
    pub source: String,
    /// When it was quarantined, RFC 3339.
    pub created_at: String,
}

/// Quarantined bars, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/quality",
    tag = "read",
    params(QualityParams),
    responses(
        (status = 200, description = "Quarantined bars", body = QualityList),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn quality(
    State(state): State<AppState>,
    params: Result<Query<QualityParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<QualityList>, ApiError> {
    let Query(params) = params?;
    let symbols = params.symbols.as_deref().map(parse_symbols).transpose()?;
    let interval = params
        .interval
        .as_deref()
        .map(|i| parse_interval(Some(i)))
        .transpose()?;
    let limit = match params.limit.as_deref() {
        None => 1000,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_QUALITY_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::InvalidArgument(format!(
                    "limit: expected a number from 1 to {MAX_QUALITY_LIMIT}, got {l:?}"
                ))
            })?,
    };
    let records = state
        .services()
        .meta
        .quality(symbols, interval, limit)
        .await?;
    Ok(Json(QualityList {
        quality: records
            .into_iter()
            .map(|r| QualityItem {
                id: r.id,
                symbol: r.symbol.to_string(),
                interval: r.interval.to_string(),
                ts: time::rfc3339(r.ts),
                rule: r.rule,
                reason: r.reason,
                bar: r.bar,
                source: r.source,
                created_at: time::rfc3339(r.created_at),
            })
            .collect(),
    }))
}
