//! `/api/v1/sources`: each source's rate-limit and pause state, and a connectivity check.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::domain::SourceKind;

/// Each source's rate-limit and pause state.
#[utoipa::path(
    get,
    path = "/api/v1/sources",
    tag = "ops",
    responses(
        (status = 200, description = "Source status", content_type = "application/json", body = Object),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn list(State(state): State<AppState>) -> Response {
    let sources: Vec<_> = state
        .services()
        .sources
        .values()
        .map(|s| s.status())
        .collect();
    Json(serde_json::json!({ "sources": sources })).into_response()
}

/// Checks connectivity now. A successful ping of a paused source does not lift the pause: the
/// pause protects against refusals, which a ping does not test.
#[utoipa::path(
    post,
    path = "/api/v1/sources/{name}/ping",
    tag = "ops",
    params(("name" = String, Path, description = "yahoo, futu or files")),
    responses(
        (status = 200, description = "Reachable or not, with the detail or error", content_type = "application/json", body = Object),
        (status = 401, description = "A token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 404, description = "No such source", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn ping(
    State(state): State<AppState>,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    let kind: SourceKind = name
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no source named {name:?}")))?;
    let source = state
        .services()
        .sources
        .get(&kind)
        .ok_or_else(|| ApiError::NotFound(format!("no source named {name:?}")))?;
    let started = std::time::Instant::now();
    let result = source.ping().await;
    let ms = started.elapsed().as_millis() as u64;
    Ok(Json(match result {
        Ok(detail) => serde_json::json!({"source": kind.as_str(), "reachable": true, "detail": detail, "latency_ms": ms}),
        Err(e) => serde_json::json!({"source": kind.as_str(), "reachable": false, "error": e.to_string(), "latency_ms": ms}),
    })
    .into_response())
}
