//! `/api/v1/schedules`: the `schedule:` entries with their next and last runs, and "run now".

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::schedule::ScheduleError;

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> ApiError {
        match e {
            ScheduleError::Unknown(_) => ApiError::NotFound(e.to_string()),
            ScheduleError::StillRunning { .. } => ApiError::Conflict(e.to_string()),
            ScheduleError::Submit { .. } => ApiError::InvalidArgument(e.to_string()),
        }
    }
}

/// Every schedule: `{"schedules":[{name, cron, timezone, task, next_run, last_run, last_job}]}`;
/// `next_run` is when it will next start a job, closed days already skipped.
#[utoipa::path(
    get,
    path = "/api/v1/schedules",
    tag = "ops",
    responses(
        (status = 200, description = "The schedules", content_type = "application/json", body = Object),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn list(State(state): State<AppState>) -> Response {
    let schedules = state.services().scheduler.schedules().await;
    Json(serde_json::json!({ "schedules": schedules })).into_response()
}

/// Starts a schedule's job now (whatever the day), unless its previous job still runs.
#[utoipa::path(
    post,
    path = "/api/v1/schedules/{name}/run",
    tag = "write",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 202, description = "Started: `{\"id\": N}`", content_type = "application/json", body = Object),
        (status = 400, description = "The schedule's task cannot be started", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 409, description = "Its previous job is still running", body = ErrorBody),
        (status = 401, description = "A token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn run(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    let id = state.services().scheduler.run_now(&name).await?;
    Ok(super::error::accepted(serde_json::json!({ "id": id })))
}
