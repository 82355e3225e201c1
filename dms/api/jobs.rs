//! `/api/v1/jobs`: submit, list, inspect, read the log of and cancel jobs.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::maintain::jobs::{JobError, JobSpec, Task};
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
fn render(j: &JobRecord) -> serde_json::Value {
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

pub async fn submit(
    State(state): State<AppState>,
    body: Result<Json<JobSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(spec) = body?;
    let task = Task::parse(&spec).map_err(ApiError::InvalidArgument)?;
    let id = state.services().jobs.submit(task).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<String>,
    page: Option<u64>,
    page_size: Option<u64>,
}

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

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    let job = state
        .services()
        .meta
        .job(id)
        .await?
        .ok_or(JobError::NotFound(id))?;
    Ok(Json(render(&job)).into_response())
}

pub async fn log(State(state): State<AppState>, Path(id): Path<u64>) -> Result<Response, ApiError> {
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

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    state.services().jobs.cancel(id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "cancelling": true })),
    )
        .into_response())
}
