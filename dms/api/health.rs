//! `GET /health` and `GET /metrics`.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::telemetry::metrics;

/// How long `/health` reuses the series and bar counts it computed.
const COUNTS_TTL: Duration = Duration::from_secs(30);

/// Liveness and the state of the primary, backups and sources, and how long each market's
/// holiday table lasts; open without a token.
#[utoipa::path(
    get,
    path = "/health",
    tag = "ops",
    responses(
        (status = 200, description = "`status` is `ok` or `degraded`", content_type = "application/json", body = Object),
        (status = 503, description = "The primary store cannot be reached", content_type = "application/json", body = Object),
    ),
)]
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
    let calendars = calendar_warnings(services, chrono::Utc::now().timestamp());
    // What replication last saw of each node: /health never waits on a node.
    let backups: Vec<_> = services
        .replicator
        .nodes_status()
        .await
        .into_iter()
        .map(|n| {
            serde_json::json!({
                "name": n.name,
                "kind": n.kind,
                "reachable": n.reachable,
                "acked_seq": n.acked_seq,
                "lag_changes": n.lag_changes,
                "lag_seconds": n.lag_seconds,
                "last_error": n.last_error,
            })
        })
        .collect();
    let degraded = !reachable
        || sources.iter().any(|s| s.paused)
        || backups.iter().any(|b| b["reachable"] == false);
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
        "backups": backups,
        "sources": sources,
        "calendars": calendars,
        "uptime_s": state.inner.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    super::error::health(body, reachable)
}

// How close to its end a holiday table may come before `/health` warns (the window the
// health checks publish `calendar_ending` in).
use crate::ops::CALENDAR_WARN_DAYS;

/// Each market with a holiday table: where it ends and, when that is within
/// [`CALENDAR_WARN_DAYS`] (or past), a warning. Only a warning: the service stays `ok`, since
/// past its table a market still trades on weekdays and closures can be added in config.
fn calendar_warnings(services: &crate::services::Services, now: i64) -> Vec<serde_json::Value> {
    let ending = services.calendars.ending_within(now, CALENDAR_WARN_DAYS);
    crate::domain::Market::ALL
        .into_iter()
        .filter_map(|m| {
            let end = services.calendars.get(m).table_end()?;
            let warning = ending.iter().any(|(e, _)| *e == m).then(|| {
                format!(
                    "the {m} holiday table ends on {end}: add its closures under calendars.{m} in the config, or upgrade DMS"
                )
            });
            Some(serde_json::json!({"market": m.as_str(), "ends": end.to_string(), "warning": warning}))
        })
        .collect()
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

/// Prometheus text exposition (metric names: DESIGN §7).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "A read token is configured and none was sent", body = super::error::ErrorBody),
        (status = 403, description = "The token is not accepted", body = super::error::ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
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
