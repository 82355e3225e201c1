//! The API's error type: the only place that knows HTTP status codes. Every error answers
//! `{"error": {"code": "...", "message": "..."}}` (DESIGN §4).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Every error: `{"error": {"code": ..., "message": ...}}` (DESIGN §4).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `invalid_argument`, `not_found`, `unauthorized`, `forbidden`, `conflict`, `unavailable`
    /// or `internal`.
    #[schema(
        pattern = "^(invalid_argument|not_found|unauthorized|forbidden|conflict|unavailable|internal)$"
    )]
    pub code: String,
    /// What was wrong, naming the cause.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("missing or malformed bearer token")]
    Unauthorized,
    /// The request is understood and refused (a token that may not do this, a `Host` that is
    /// not allowed).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) => "invalid_argument",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Internal(_)) {
            tracing::error!(error = %self, "internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
            },
        };
        let mut resp = (self.status(), Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        match e {
            crate::store::StoreError::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
            crate::store::StoreError::Rejected { .. } => ApiError::InvalidArgument(e.to_string()),
            crate::store::StoreError::Corrupt { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::store::meta::MetaError> for ApiError {
    fn from(e: crate::store::meta::MetaError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::reader::ReadError> for ApiError {
    fn from(e: crate::reader::ReadError) -> ApiError {
        match e {
            crate::reader::ReadError::TooManyBars { .. } => {
                ApiError::InvalidArgument(e.to_string())
            }
            crate::reader::ReadError::Store(s) => s.into(),
            crate::reader::ReadError::Spooled { .. } => ApiError::Unavailable(e.to_string()),
            crate::reader::ReadError::Encode(_) | crate::reader::ReadError::Interrupted(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<crate::ingest::WriteError> for ApiError {
    fn from(e: crate::ingest::WriteError) -> ApiError {
        match e {
            crate::ingest::WriteError::Store(s) => s.into(),
            crate::ingest::WriteError::Meta(m) => m.into(),
            crate::ingest::WriteError::Aborted(_) | crate::ingest::WriteError::Spool(_) => {
                ApiError::Internal(e.to_string())
            }
            crate::ingest::WriteError::ReadOnly(m) => ApiError::Conflict(m),
        }
    }
}

/// `202 Accepted` with a JSON body: work was queued (`POST /api/v1/jobs`).
pub fn accepted(body: impl serde::Serialize) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// `201 Created` with a JSON body.
pub fn created(body: impl serde::Serialize) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

/// A `/health` answer: `200` while the primary answers, `503` when it does not (so load
/// balancers take the instance out), the JSON body either way.
pub fn health(body: serde_json::Value, primary_reachable: bool) -> Response {
    let status = if primary_reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Axum's own rejections (bad query strings, bad JSON) in our error shape.
impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::InvalidArgument(e.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> ApiError {
        ApiError::InvalidArgument(e.body_text())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> ApiError {
        ApiError::InvalidArgument(e.body_text())
    }
}
