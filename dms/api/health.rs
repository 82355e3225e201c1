//! `GET /health` and `GET /metrics`.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::telemetry::metrics;

/// How long `/health` reuses the series and bar counts it computed.
const COUNTS_TTL: Duration = Duration::from_secs(30);

pub async fn health(State(state): State<AppState>) -> Response {
    let services = state.services();
    let primary = services.primary.ping().await;
    let reachable = primary.is_ok();
    let (series, bars) = if reachable {
        state.counts().await
    } else {
        (None, None)
    };
    let sources: Vec<_> = services.sources.values().map(|s| s.status()).collect();
    let degraded = !reachable || sources.iter().any(|s| s.paused);
    let body = serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "primary": {
            "kind": services.primary.kind(),
            "reachable": reachable,
            "location": primary.as_ref().ok().map(|h| h.location.clone()),
            "version": primary.as_ref().ok().and_then(|h| h.version.clone()),
            "error": primary.as_ref().err().map(|e| e.to_string()),
            "series": series,
            "bars": bars,
        },
        "backups": [],
        "sources": sources,
        "uptime_s": state.inner.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let status = if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

impl AppState {
    /// Series and bar counts of the primary, cached for [`COUNTS_TTL`].
    async fn counts(&self) -> (Option<u64>, Option<u64>) {
        if let Some((at, s, b)) = *self.inner.counts.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < COUNTS_TTL
        {
            return (Some(s), Some(b));
        }
        let listed = tokio::time::timeout(
            Duration::from_secs(5),
            self.services().primary.list_series(),
        )
        .await;
        match listed {
            Ok(Ok(list)) => {
                let (s, b) = (list.len() as u64, list.iter().map(|x| x.count).sum::<u64>());
                *self.inner.counts.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), s, b));
                (Some(s), Some(b))
            }
            _ => (None, None),
        }
    }
}

pub async fn prometheus() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics().render(),
    )
        .into_response()
}
