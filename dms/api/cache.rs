//! `GET /api/v1/cache`: what the reader's chunk cache holds and has done.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::error::ErrorBody;
use crate::reader::CacheStats;

/// Reader cache statistics (also in `GET /api/v1/series` and, process-wide, in `/metrics`).
#[utoipa::path(
    get,
    path = "/api/v1/cache",
    tag = "ops",
    responses(
        (status = 200, description = "Cache statistics since start-up", body = CacheStats),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn cache(State(state): State<AppState>) -> Json<CacheStats> {
    Json(state.services().reader.cache().stats())
}
