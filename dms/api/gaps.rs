//! `GET /api/v1/gaps?symbols=&interval=&head=`: missing ranges per series (DESIGN §4, §5),
//! calendar-aware, half-open, with the sessions they touch. Interior gaps — inside the stored
//! range — by default; `head=true` adds, per series, what is missing after its newest bar up
//! to the newest complete one (what the next update fetches; from the history start for a
//! universe series with nothing stored), marked `"kind": "head"`. `dms gaps` prints the same.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::error::ErrorBody;
use super::{ApiError, AppState, parse_bool, parse_interval, parse_symbols};
use crate::domain::time;
use crate::maintain::scan::{ScanError, SeriesFilter, SeriesPlan};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GapsParams {
    /// Only these symbols (comma-separated); every series stored or in the universe when
    /// absent.
    #[param(
        pattern = r"^[A-Za-z0-9^][A-Za-z0-9.=^_-]{0,31}(,[A-Za-z0-9^][A-Za-z0-9.=^_-]{0,31})*$"
    )]
    pub symbols: Option<String>,
    /// Only this interval.
    #[param(pattern = r"^(1m|2m|5m|15m|30m|1h|1d|1wk|1mo)$")]
    pub interval: Option<String>,
    /// Also list each series' head (missing after its newest bar); default false.
    #[param(pattern = "^(true|false|1|0)$")]
    pub head: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct GapList {
    /// Sorted by symbol, interval and start.
    pub gaps: Vec<GapInfo>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct GapInfo {
    pub symbol: String,
    pub interval: String,
    /// First missing bar's stamp, RFC 3339.
    pub start: String,
    /// End of the last missing bar, RFC 3339 (exclusive).
    pub end: String,
    /// Sessions the range's missing bars belong to, by the market's calendar.
    pub sessions: u32,
    /// `interior` (inside the stored range) or `head` (after the newest bar).
    #[schema(pattern = "^(interior|head)$")]
    pub kind: String,
}

impl From<ScanError> for ApiError {
    fn from(e: ScanError) -> ApiError {
        match e {
            ScanError::Store(s) => s.into(),
            ScanError::Meta(m) => m.into(),
            ScanError::Aborted(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// The gaps of `plans` as the API lists them.
pub fn gap_list(plans: &[SeriesPlan], head: bool) -> GapList {
    let mut gaps = Vec::new();
    for p in plans {
        let row = |g: &crate::maintain::gaps::Gap, kind: &str| GapInfo {
            symbol: p.series.symbol.to_string(),
            interval: p.series.interval.to_string(),
            start: time::rfc3339(g.range.start()),
            end: time::rfc3339(g.range.end()),
            sessions: g.sessions,
            kind: kind.to_string(),
        };
        gaps.extend(p.interior.iter().map(|g| row(g, "interior")));
        if head && let Some(g) = &p.head {
            gaps.push(row(g, "head"));
        }
    }
    GapList { gaps }
}

/// Parses the query into a scan filter and the `head` flag.
pub fn parse_params(p: &GapsParams) -> Result<(SeriesFilter, bool), ApiError> {
    let symbols = p.symbols.as_deref().map(parse_symbols).transpose()?;
    let interval = p
        .interval
        .as_deref()
        .map(|i| parse_interval(Some(i)))
        .transpose()?;
    Ok((
        SeriesFilter { symbols, interval },
        parse_bool("head", p.head.as_deref())?,
    ))
}

/// Missing ranges per series.
#[utoipa::path(
    get,
    path = "/api/v1/gaps",
    tag = "read",
    params(GapsParams),
    responses(
        (status = 200, description = "Missing ranges, half-open, with their session counts", body = GapList),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn gaps(
    State(state): State<AppState>,
    params: Result<Query<GapsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<GapList>, ApiError> {
    let Query(params) = params?;
    let (filter, head) = parse_params(&params)?;
    let now = chrono::Utc::now().timestamp();
    let plans = state.services().gaps.scan(&filter, now).await?;
    Ok(Json(gap_list(&plans, head)))
}
