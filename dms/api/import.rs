//! `POST /api/v1/import`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::domain::{Interval, Symbol};

/// Body of `POST /api/v1/import` (an extension of DESIGN §4 that `dms import` uses when a
/// server is running, so the server's cache sees the writes): a path on the server's machine.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    pub path: String,
    pub interval: String,
    #[serde(default)]
    pub symbol: Option<String>,
}

/// Imports a CSV/Parquet file or directory on the server's machine (admin token).
#[utoipa::path(
    post,
    path = "/api/v1/import",
    tag = "write",
    request_body = ImportBody,
    responses(
        (status = 200, description = "Per-file report", content_type = "application/json", body = Object),
        (status = 400, description = "Bad or oversized body (`server.max_body_bytes`), or an unreadable file", body = super::openapi::ErrorBody),
        (status = 401, description = "A token is configured and none was sent", body = super::openapi::ErrorBody),
        (status = 403, description = "The token is not accepted", body = super::openapi::ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = super::openapi::ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn import(
    State(state): State<AppState>,
    body: Result<Json<ImportBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let interval: Interval = body.interval.parse().map_err(ApiError::InvalidArgument)?;
    let symbol = body
        .symbol
        .as_deref()
        .map(Symbol::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    let path = std::path::PathBuf::from(&body.path);
    let report = crate::import::import_path(
        &state.services().writer,
        &path,
        interval,
        symbol.as_ref(),
        |_| {},
    )
    .await
    .map_err(|e| match e {
        crate::import::ImportError::File(f) => ApiError::InvalidArgument(f.to_string()),
        crate::import::ImportError::Write(w) => w.into(),
    })?;
    Ok(Json(report).into_response())
}
