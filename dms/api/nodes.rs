//! `/api/v1/nodes`: the backup nodes (reachable, acked change sequence, lag in changes and
//! seconds, last error, last verify) and a connectivity check of one.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::replicate::ReplicationError;

impl From<ReplicationError> for ApiError {
    fn from(e: ReplicationError) -> ApiError {
        match e {
            ReplicationError::UnknownNode(_) => ApiError::NotFound(e.to_string()),
            ReplicationError::Invalid(m) => ApiError::InvalidArgument(m),
            ReplicationError::Meta(m) => m.into(),
            ReplicationError::Write(w) => w.into(),
            ReplicationError::Primary(m) => ApiError::Unavailable(format!("primary store: {m}")),
        }
    }
}

/// Every backup node with its replication state; on a replica, its pulling state too.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    tag = "ops",
    responses(
        (status = 200, description = "`{\"role\":..,\"last_seq\":N,\"nodes\":[..],\"pull\":..}`", content_type = "application/json", body = Object),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let services = state.services();
    let r = &services.replicator;
    Ok(Json(serde_json::json!({
        "role": r.role(),
        "last_seq": services.meta.last_seq().await?,
        "nodes": r.nodes_status().await,
        "pull": r.pull_state(),
    }))
    .into_response())
}

/// Checks that a node answers now; a node that answers is shipped to at once.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{name}/ping",
    tag = "ops",
    params(("name" = String, Path, description = "A node name from storage.backups")),
    responses(
        (status = 200, description = "The node's state after the check (`reachable`, `last_error`)", content_type = "application/json", body = Object),
        (status = 401, description = "A token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 404, description = "No such node", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn ping(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    let status = state.services().replicator.ping(&name).await?;
    Ok(Json(status).into_response())
}
