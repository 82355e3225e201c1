//! `/api/v1/universe[/{symbol}]`: the maintained series (DESIGN §4), persisted.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::domain::{SourceKind, Symbol, time};
use crate::maintain::universe::Removed;
use crate::store::meta::UniverseEntry;

/// One entry as shown: the entry, and whether it comes from the config file or the API.
fn render(u: &crate::maintain::universe::Universe, e: &UniverseEntry) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    v["origin"] = u.origin(&e.symbol).into();
    v
}

/// Every universe entry.
#[utoipa::path(
    get,
    path = "/api/v1/universe",
    tag = "read",
    responses(
        (status = 200, description = "`{\"universe\": [entry...]}`, entries with `origin` `config` or `api`", content_type = "application/json", body = Object),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn list(State(state): State<AppState>) -> Response {
    let u = &state.services().universe;
    let all: Vec<_> = u.entries().iter().map(|e| render(u, e)).collect();
    Json(serde_json::json!({ "universe": all })).into_response()
}

/// One universe entry.
#[utoipa::path(
    get,
    path = "/api/v1/universe/{symbol}",
    tag = "read",
    params(("symbol" = String, Path, description = "A symbol, e.g. `0700.HK`")),
    responses(
        (status = 200, description = "The entry", content_type = "application/json", body = Object),
        (status = 400, description = "Not a symbol", body = ErrorBody),
        (status = 404, description = "Not in the universe", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn show(
    State(state): State<AppState>,
    symbol: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let symbol = parse_symbol(symbol?.0)?;
    let u = &state.services().universe;
    let e = u
        .get(&symbol)
        .ok_or_else(|| ApiError::NotFound(format!("{symbol} is not in the universe")))?;
    Ok(Json(render(u, &e)).into_response())
}

/// Adds or replaces an entry: `{symbol, source, intervals?, market?, futu_code?, start?}`.
#[utoipa::path(
    post,
    path = "/api/v1/universe",
    tag = "write",
    request_body(content = Object, description = "`{\"symbol\":\"AAPL\",\"source\":\"yahoo\",\"intervals\":[\"1d\"],\"market\":\"US\",\"futu_code\":\"US.AAPL\",\"start\":\"2015-01-01\"}`"),
    responses(
        (status = 201, description = "Added", content_type = "application/json", body = Object),
        (status = 200, description = "Replaced", content_type = "application/json", body = Object),
        (status = 400, description = "Bad entry", body = ErrorBody),
        (status = 401, description = "A token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn upsert(
    State(state): State<AppState>,
    body: Result<Json<UniverseEntry>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(entry) = body?;
    check_entry(&entry).map_err(ApiError::InvalidArgument)?;
    let u = &state.services().universe;
    let added = u.upsert(&entry).await?;
    let body = render(u, &entry);
    Ok(if added {
        super::error::created(body)
    } else {
        Json(body).into_response()
    })
}

/// Removes an entry added through the API.
#[utoipa::path(
    delete,
    path = "/api/v1/universe/{symbol}",
    tag = "write",
    params(("symbol" = String, Path, description = "A symbol, e.g. `0700.HK`")),
    responses(
        (status = 200, description = "Removed: `{\"symbol\", \"removed\": true, \"reverted_to_config\"}`", content_type = "application/json", body = Object),
        (status = 400, description = "Not a symbol", body = ErrorBody),
        (status = 404, description = "Not in the universe", body = ErrorBody),
        (status = 409, description = "Only the config file names it: remove it there", body = ErrorBody),
        (status = 401, description = "A token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn remove(
    State(state): State<AppState>,
    symbol: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let symbol = parse_symbol(symbol?.0)?;
    match state.services().universe.remove(&symbol).await? {
        Removed::Removed { reverted_to_config } => Ok(Json(serde_json::json!({
            "symbol": symbol, "removed": true, "reverted_to_config": reverted_to_config,
        }))
        .into_response()),
        Removed::NotFound => Err(ApiError::NotFound(format!(
            "{symbol} is not in the universe"
        ))),
        Removed::InConfig => Err(ApiError::Conflict(format!(
            "{symbol} is defined in the config file's universe; remove it there"
        ))),
    }
}

fn parse_symbol(s: String) -> Result<Symbol, ApiError> {
    Symbol::parse(&s).map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

/// What the entry's own types do not check.
fn check_entry(e: &UniverseEntry) -> Result<(), String> {
    if e.source == SourceKind::Unknown {
        return Err("source: expected yahoo, futu or files".into());
    }
    if e.intervals.is_empty() {
        return Err("intervals: at least one interval".into());
    }
    if let Some(s) = &e.start {
        time::parse_instant(s).map_err(|err| format!("start: {err}"))?;
    }
    if let Some(c) = &e.futu_code
        && !(c.len() <= 32
            && c.split_once('.').is_some_and(|(m, code)| {
                !m.is_empty()
                    && m.chars().all(|ch| ch.is_ascii_uppercase())
                    && !code.is_empty()
                    && code
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '.')
            }))
    {
        return Err("futu_code: expected MARKET.CODE, e.g. HK.00700".into());
    }
    Ok(())
}
