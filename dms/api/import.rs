//! `POST /api/v1/import`: what `dms import` calls on a running server (an extension of
//! DESIGN §4).
//!
//! Three ways to send bars, chosen by `Content-Type`:
//! - the file itself as the body (`text/csv`, `application/vnd.apache.parquet` or
//!   `application/octet-stream`), with `interval`, `symbol` and the file's `name` in the query
//!   — what the CLI sends;
//! - `multipart/form-data` with a `file` part and `interval` / `symbol` fields (a browser form);
//! - `application/json` `{"path": ..., "interval": ..., "symbol": ...}`: a file or directory
//!   **inside `sources.files.dir`** on the server (symlinks resolved; anything else is refused
//!   with a 400 naming the rule), for files already dropped there.
//!
//! An upload is streamed to a private temporary directory under `storage.data_dir/tmp`, at most
//! `server.max_upload_bytes`, and parsed whole before anything is written (a malformed file
//! writes nothing). A request dropped during the upload leaves nothing behind; once the upload
//! is complete, the import runs on its own task and finishes even if the client goes away, so
//! the store, the cache and the change log never disagree about it.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{ApiError, AppState};
use crate::domain::{Interval, Symbol};
use crate::import::{ImportError, ImportReport, PARQUET_MEDIA_TYPE};

/// Body of a by-path import.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// A file or directory inside `sources.files.dir` (relative paths are relative to it).
    pub path: String,
    pub interval: String,
    #[serde(default)]
    pub symbol: Option<String>,
}

/// Query of an upload.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// `1m` ... `1mo`; required for uploads.
    pub interval: Option<String>,
    /// The symbol of a Yahoo-layout file, or the one symbol to keep from a generic file.
    pub symbol: Option<String>,
    /// The file's name (`AAPL.csv`): names the symbol of a Yahoo-layout file and the report.
    pub name: Option<String>,
}

/// Imports CSV/Parquet bars: uploaded, or from `sources.files.dir` (admin token).
#[utoipa::path(
    post,
    path = "/api/v1/import",
    tag = "write",
    params(UploadQuery),
    request_body(content(
        (ImportBody = "application/json"),
        (String = "text/csv"),
        (Vec<u8> = "application/vnd.apache.parquet"),
        (Vec<u8> = "application/octet-stream"),
    )),
    responses(
        (status = 200, description = "Per-file report", content_type = "application/json", body = Object),
        (status = 400, description = "Bad request, a path outside `sources.files.dir`, an oversized upload or an unreadable file", body = super::error::ErrorBody),
        (status = 401, description = "A token is configured and none was sent", body = super::error::ErrorBody),
        (status = 403, description = "The token is not accepted", body = super::error::ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = super::error::ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn import(
    State(state): State<AppState>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let services = state.services();
    let report = match media.as_str() {
        "application/json" => {
            // The route accepts large uploads; a JSON body keeps the ordinary limit.
            let max = services.config.server.max_body_bytes as usize;
            let raw = axum::body::to_bytes(req.into_body(), max)
                .await
                .map_err(|_| {
                    ApiError::InvalidArgument(format!(
                        "body is larger than server.max_body_bytes ({max} bytes) or was interrupted"
                    ))
                })?;
            let body: ImportBody = serde_json::from_slice(&raw)
                .map_err(|e| ApiError::InvalidArgument(format!("bad JSON body: {e}")))?;
            let interval = parse_interval(Some(&body.interval))?;
            let symbol = parse_symbol(body.symbol.as_deref())?;
            let (writer, dir) = (
                services.writer.clone(),
                services.config.sources.files.dir.clone(),
            );
            run_detached(async move {
                crate::import::import_confined(
                    &writer,
                    &dir,
                    Path::new(&body.path),
                    interval,
                    symbol.as_ref(),
                )
                .await
            })
            .await?
        }
        "multipart/form-data" => {
            let multipart = Multipart::from_request(req, &state)
                .await
                .map_err(|e| ApiError::InvalidArgument(e.body_text()))?;
            let upload = receive_multipart(&state, multipart, query).await?;
            upload.import(&state).await?
        }
        "text/csv" | "application/octet-stream" | PARQUET_MEDIA_TYPE => {
            let ext = match media.as_str() {
                "text/csv" => Some("csv"),
                PARQUET_MEDIA_TYPE => Some("parquet"),
                _ => None,
            };
            let interval = parse_interval(query.interval.as_deref())?;
            let symbol = parse_symbol(query.symbol.as_deref())?;
            let name = stored_name(query.name.as_deref(), ext)?;
            let mut upload = Upload::new(&state, name, interval, symbol)?;
            upload
                .receive(
                    req.into_body().into_data_stream(),
                    state.services().config.server.max_upload_bytes,
                )
                .await?;
            upload.import(&state).await?
        }
        other => {
            return Err(ApiError::InvalidArgument(format!(
                "content type {other:?} is not accepted: send the file as text/csv, {PARQUET_MEDIA_TYPE} or application/octet-stream, as multipart/form-data, or a JSON body naming a path inside sources.files.dir"
            )));
        }
    };
    Ok(Json(report).into_response())
}

/// Runs an import on its own task and waits for it: the import completes even when the
/// request is dropped.
async fn run_detached(
    f: impl Future<Output = Result<ImportReport, ImportError>> + Send + 'static,
) -> Result<ImportReport, ApiError> {
    tokio::spawn(f)
        .await
        .map_err(|e| ApiError::Internal(format!("import task failed: {e}")))?
        .map_err(|e| match e {
            ImportError::File(f) => ApiError::InvalidArgument(f.to_string()),
            ImportError::Outside { .. } => ApiError::InvalidArgument(e.to_string()),
            ImportError::Write(w) => w.into(),
        })
}

/// An uploaded file in its own temporary directory (removed when dropped).
struct Upload {
    dir: tempfile::TempDir,
    name: String,
    interval: Interval,
    symbol: Option<Symbol>,
}

impl Upload {
    fn new(
        state: &AppState,
        name: String,
        interval: Interval,
        symbol: Option<Symbol>,
    ) -> Result<Upload, ApiError> {
        let tmp = state.services().config.storage.data_dir.join("tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", tmp.display())))?;
        let dir = tempfile::Builder::new()
            .prefix("upload-")
            .tempdir_in(&tmp)
            .map_err(|e| ApiError::Internal(format!("cannot create an upload directory: {e}")))?;
        Ok(Upload {
            dir,
            name,
            interval,
            symbol,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }

    /// Streams the body to the file, refusing more than `max` bytes.
    async fn receive<E: std::fmt::Display>(
        &mut self,
        mut body: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        max: u64,
    ) -> Result<(), ApiError> {
        let path = self.path();
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
        let mut size = 0u64;
        while let Some(piece) = body.next().await {
            let piece =
                piece.map_err(|e| ApiError::InvalidArgument(format!("upload interrupted: {e}")))?;
            size += piece.len() as u64;
            if size > max {
                return Err(ApiError::InvalidArgument(format!(
                    "upload is larger than server.max_upload_bytes ({max} bytes)"
                )));
            }
            file.write_all(&piece)
                .await
                .map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
        }
        file.flush()
            .await
            .map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
        Ok(())
    }

    /// Imports the complete upload (on its own task) and removes it.
    async fn import(self, state: &AppState) -> Result<ImportReport, ApiError> {
        let writer = state.services().writer.clone();
        run_detached(async move {
            let stored = self.path();
            let r = crate::import::import_upload(
                &writer,
                stored,
                &self.name,
                self.interval,
                self.symbol.as_ref(),
            )
            .await;
            drop(self.dir);
            r
        })
        .await
    }
}

/// Reads a multipart form: `interval` and `symbol` fields (or the query's), and one `file`.
async fn receive_multipart(
    state: &AppState,
    mut form: Multipart,
    query: UploadQuery,
) -> Result<Upload, ApiError> {
    let (mut interval, mut symbol) = (query.interval, query.symbol);
    let bad =
        |e: axum::extract::multipart::MultipartError| ApiError::InvalidArgument(e.body_text());
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "interval" => interval = Some(field.text().await.map_err(bad)?),
            "symbol" => symbol = Some(field.text().await.map_err(bad)?).filter(|s| !s.is_empty()),
            "file" => {
                let ext = match field.content_type() {
                    Some("text/csv") => Some("csv"),
                    Some(PARQUET_MEDIA_TYPE) => Some("parquet"),
                    _ => None,
                };
                let name = stored_name(field.file_name().or(query.name.as_deref()), ext)?;
                let mut upload = Upload::new(
                    state,
                    name,
                    parse_interval(interval.as_deref())?,
                    parse_symbol(symbol.as_deref())?,
                )?;
                upload
                    .receive(field, state.services().config.server.max_upload_bytes)
                    .await?;
                return Ok(upload);
            }
            other => {
                return Err(ApiError::InvalidArgument(format!(
                    "unexpected form field {other:?} (expected interval, symbol, file; the file last)"
                )));
            }
        }
    }
    Err(ApiError::InvalidArgument(
        "the form has no \"file\" part".into(),
    ))
}

fn parse_interval(s: Option<&str>) -> Result<Interval, ApiError> {
    s.ok_or_else(|| ApiError::InvalidArgument("interval: required".into()))?
        .parse()
        .map_err(ApiError::InvalidArgument)
}

fn parse_symbol(s: Option<&str>) -> Result<Option<Symbol>, ApiError> {
    s.map(Symbol::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

/// The name an upload is stored (and reported) under: the base name the client gave when it
/// is a plain file name, with the extension the content type implies.
fn stored_name(given: Option<&str>, ext: Option<&str>) -> Result<String, ApiError> {
    let base = given
        .and_then(|g| Path::new(g).file_name())
        .and_then(|n| n.to_str())
        .filter(|n| {
            n.len() <= 128
                && !n.starts_with('.')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-^=".contains(c))
        });
    let has_ext = |n: &str, e: &str| {
        Path::new(n)
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case(e))
    };
    Ok(match (base, ext) {
        (Some(n), Some(e)) if has_ext(n, e) => n.to_string(),
        (Some(n), Some(e)) => format!("{n}.{e}"),
        (Some(n), None) if has_ext(n, "csv") || has_ext(n, "parquet") => n.to_string(),
        (Some(_), None) | (None, None) => {
            return Err(ApiError::InvalidArgument(
                "application/octet-stream uploads need a name ending in .csv or .parquet".into(),
            ));
        }
        (None, Some(e)) => format!("upload.{e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_are_plain_file_names_with_the_right_extension() {
        assert_eq!(
            stored_name(Some("AAPL.csv"), Some("csv")).unwrap(),
            "AAPL.csv"
        );
        assert_eq!(
            stored_name(Some("/etc/AAPL.csv"), None).unwrap(),
            "AAPL.csv"
        );
        assert_eq!(
            stored_name(Some("0700.HK"), Some("csv")).unwrap(),
            "0700.HK.csv"
        );
        assert_eq!(
            stored_name(Some("../../x y.csv"), Some("csv")).unwrap(),
            "upload.csv"
        );
        assert_eq!(
            stored_name(Some(".."), Some("parquet")).unwrap(),
            "upload.parquet"
        );
        assert!(stored_name(Some("bars.txt"), None).is_err());
        assert!(stored_name(None, None).is_err());
    }
}
