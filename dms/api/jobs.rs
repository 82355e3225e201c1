//! `/api/v1/jobs`: submit, list, inspect, read the log of and cancel jobs.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::maintain::jobs::JobError;
use crate::maintain::task::JobSpec;
use crate::store::meta::JobRecord;

const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

impl From<JobError> for ApiError {
    fn from(e: JobError) -> ApiError {
        match e {
            JobError::Invalid(m) => ApiError::InvalidArgument(m),
            JobError::NotFound(_) => ApiError::NotFound(e.to_string()),
            JobError::NotRunning { .. } => ApiError::Conflict(e.to_string()),
            JobError::Meta(m) => m.into(),
        }
    }
}

/// A job as the API shows it (DESIGN §4).
pub fn render(j: &JobRecord) -> serde_json::Value {
    let ts = |t: Option<i64>| t.map(crate::domain::time::rfc3339);
    serde_json::json!({
        "id": j.id,
        "task": j.task,
        "status": j.status,
        "params": j.params,
        "progress": {"done": j.progress_done, "total": j.progress_total},
        "counters": j.counters,
        "errors": j.errors,
        "created_at": ts(Some(j.created_at)),
        "started_at": ts(j.started_at),
        "finished_at": ts(j.finished_at),
    })
}

/// Queues a job (`update`, `backfill`, `full`, `repair`, `verify` or `sync`; `node` for the
/// last two) and starts it.
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    tag = "write",
    request_body = JobSpec,
    responses(
        (status = 202, description = "Queued: `{\"id\": N}`", content_type = "application/json", body = Object),
        (status = 400, description = "Bad request or a task not available", body = ErrorBody),
        (status = 401, description = "A token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn submit(
    State(state): State<AppState>,
    body: Result<Json<JobSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(spec) = body?;
    let jobs = &state.services().jobs;
    let task = jobs.parse(&spec)?;
    let id = jobs.submit(task).await?;
    Ok(super::error::accepted(serde_json::json!({ "id": id })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs with this status.
    #[param(pattern = "^(queued|running|succeeded|failed|cancelled)$")]
    status: Option<String>,
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    page: Option<u64>,
    /// Jobs per page, 1 to 1000 (default 20).
    #[param(minimum = 1, maximum = 1000)]
    page_size: Option<u64>,
}

/// Jobs, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "ops",
    params(ListParams),
    responses(
        (status = 200, description = "A page of jobs", content_type = "application/json", body = Object),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    if let Some(s) = &q.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::InvalidArgument(format!(
            "status: unknown status {s:?} (expected one of {})",
            STATUSES.join(", ")
        )));
    }
    let page = q.page.unwrap_or(1);
    let page_size = q.page_size.unwrap_or(20);
    if page == 0 || !(1..=1000).contains(&page_size) {
        return Err(ApiError::InvalidArgument(
            "page counts from 1; page_size is 1 to 1000".into(),
        ));
    }
    let jobs = state
        .services()
        .meta
        .jobs(q.status, page, page_size)
        .await?;
    Ok(Json(serde_json::json!({
        "page": page,
        "page_size": page_size,
        "jobs": jobs.iter().map(render).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// One job: status, progress, counters, errors, times.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "ops",
    params(("id" = u64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", content_type = "application/json", body = Object),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "A token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn show(
    State(state): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let job = state
        .services()
        .meta
        .job(id)
        .await?
        .ok_or(JobError::NotFound(id))?;
    Ok(Json(render(&job)).into_response())
}

/// A job's log lines.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/log",
    tag = "ops",
    params(("id" = u64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The log lines", content_type = "application/json", body = Object),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "A token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn log(
    State(state): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    state
        .services()
        .meta
        .job(id)
        .await?
        .ok_or(JobError::NotFound(id))?;
    let lines = state.services().meta.job_log(id).await?;
    let lines: Vec<_> = lines
        .iter()
        .map(|l| serde_json::json!({"ts": crate::domain::time::rfc3339(l.ts), "level": l.level, "message": l.message}))
        .collect();
    Ok(Json(serde_json::json!({ "id": id, "lines": lines })).into_response())
}

/// Asks a running job to stop; it is recorded `cancelled`.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/cancel",
    tag = "write",
    params(("id" = u64, Path, description = "Job id")),
    responses(
        (status = 202, description = "Cancelling", content_type = "application/json", body = Object),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "A token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is not running", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn cancel(
    State(state): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    state.services().jobs.cancel(id).await?;
    Ok(super::error::accepted(
        serde_json::json!({ "id": id, "cancelling": true }),
    ))
}
