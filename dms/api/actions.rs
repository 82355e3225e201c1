//! `GET /api/v1/actions`: a symbol's corporate actions (dividends, splits, capital gains).

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::error::ErrorBody;
use super::{ApiError, AppState, parse_range};
use crate::domain::{Symbol, time};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActionsParams {
    /// The symbol.
    #[param(
        required = true,
        pattern = r"^[A-Za-z0-9^][A-Za-z0-9.=^_-]{0,31}$",
        example = "AAPL"
    )]
    pub symbol: Option<String>,
    /// Inclusive start: `YYYY-MM-DD` or RFC 3339.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    pub start: Option<String>,
    /// Exclusive end: `YYYY-MM-DD` or RFC 3339.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    pub end: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ActionsList {
    pub symbol: String,
    pub actions: Vec<ActionItem>,
}

/// One corporate action.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ActionItem {
    /// The ex-date at 00:00 UTC, RFC 3339.
    pub ts: String,
    /// `dividend`, `split` or `capital_gain`.
    pub kind: String,
    /// Cash per share, or for a split the ratio `numerator / denominator`.
    pub amount: f64,
    /// Split numerator (4 in a 4:1 split).
    pub numerator: Option<f64>,
    pub denominator: Option<f64>,
    pub source: String,
}

/// Corporate actions of one symbol, in time order.
#[utoipa::path(
    get,
    path = "/api/v1/actions",
    tag = "read",
    params(ActionsParams),
    responses(
        (status = 200, description = "Actions in time order (empty when none are stored)", body = ActionsList),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn actions(
    State(state): State<AppState>,
    params: Result<Query<ActionsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ActionsList>, ApiError> {
    let Query(params) = params?;
    let symbol = params
        .symbol
        .as_deref()
        .ok_or_else(|| ApiError::InvalidArgument("symbol: required".into()))
        .and_then(|s| Symbol::parse(s).map_err(|e| ApiError::InvalidArgument(e.to_string())))?;
    let range = parse_range(params.start.as_deref(), params.end.as_deref())?;
    let actions = state
        .services()
        .primary
        .read_actions(&symbol, range)
        .await?;
    Ok(Json(ActionsList {
        symbol: symbol.to_string(),
        actions: actions
            .into_iter()
            .map(|a| ActionItem {
                ts: time::rfc3339(a.ts),
                kind: a.kind.to_string(),
                amount: a.amount,
                numerator: a.numerator,
                denominator: a.denominator,
                source: a.source.to_string(),
            })
            .collect(),
    }))
}
