//! `GET /api/v1/calendars/{market}/sessions`: the trading sessions of a market's calendar (the
//! standard tables plus the `calendars:` overrides of the config), as gap detection and
//! validation use them.

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{Days, NaiveDate};
use serde::Deserialize;

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::domain::{Market, time};

/// Most days one request may span (about 40 years: every session of a market since 1990).
pub const MAX_SPAN_DAYS: u64 = 40 * 366;

/// Days listed when `end` is not given.
pub const DEFAULT_SPAN_DAYS: u64 = 31;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionsParams {
    /// First date, `YYYY-MM-DD`, inclusive (default: today, UTC).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", example = "2024-01-01")]
    pub start: Option<String>,
    /// Last date, `YYYY-MM-DD`, exclusive (default: 31 days after `start`; at most 40 years
    /// after it).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", example = "2024-02-01")]
    pub end: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SessionList {
    #[schema(example = "HK")]
    pub market: String,
    pub sessions: Vec<SessionInfo>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// The exchange-local trading date.
    #[schema(example = "2024-01-02")]
    pub date: String,
    /// Start of continuous trading, RFC 3339 UTC.
    pub open: String,
    /// End of continuous trading, RFC 3339 UTC (early on a half day).
    pub close: String,
    /// The lunch break `[start, end)`, RFC 3339 UTC, where the market has one.
    pub lunch: Option<LunchBreak>,
    /// The session ends before the regular close.
    pub early_close: bool,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LunchBreak {
    pub start: String,
    pub end: String,
}

/// The sessions of a market dated in `[start, end)`.
#[utoipa::path(
    get,
    path = "/api/v1/calendars/{market}/sessions",
    tag = "read",
    params(
        ("market" = String, Path, description = "US, HK, SH, SZ, CRYPTO or FX", pattern = "^(US|HK|SH|SZ|CRYPTO|FX)$"),
        SessionsParams,
    ),
    responses(
        (status = 200, description = "Sessions in date order", body = SessionList),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 404, description = "No such market", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn sessions(
    State(state): State<AppState>,
    Path(market): Path<String>,
    params: Result<Query<SessionsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let Query(params) = params?;
    let market: Market = market.parse().map_err(ApiError::NotFound)?;
    let (start, end) = span(&params, time::date_of(chrono::Utc::now().timestamp()))?;
    let calendar = state.services().calendars.get(market);
    let sessions = calendar
        .sessions(start, end)
        .map(|s| SessionInfo {
            date: s.date.to_string(),
            open: time::rfc3339(s.open),
            close: time::rfc3339(s.close),
            lunch: s.lunch.map(|(a, b)| LunchBreak {
                start: time::rfc3339(a),
                end: time::rfc3339(b),
            }),
            early_close: s.early_close,
        })
        .collect();
    Ok(Json(SessionList {
        market: market.to_string(),
        sessions,
    }))
}

/// `[start, end)` of a request, checked.
fn span(p: &SessionsParams, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let date = |name: &str, v: &str| {
        NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| {
            ApiError::InvalidArgument(format!("{name}: not a date {v:?} (YYYY-MM-DD)"))
        })
    };
    let start = match &p.start {
        Some(s) => date("start", s)?,
        None => today,
    };
    let end = match &p.end {
        Some(e) => date("end", e)?,
        None => start
            .checked_add_days(Days::new(DEFAULT_SPAN_DAYS))
            .ok_or_else(|| ApiError::InvalidArgument("start: out of range".into()))?,
    };
    if end < start {
        return Err(ApiError::InvalidArgument("end: before start".into()));
    }
    if (end - start).num_days() as u64 > MAX_SPAN_DAYS {
        return Err(ApiError::InvalidArgument(format!(
            "end: at most {MAX_SPAN_DAYS} days after start"
        )));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn params(start: Option<&str>, end: Option<&str>) -> SessionsParams {
        SessionsParams {
            start: start.map(Into::into),
            end: end.map(Into::into),
        }
    }

    #[test]
    fn spans_default_check_order_and_are_bounded() {
        let today = d("2026-12-01");
        assert_eq!(
            span(&params(None, None), today).unwrap(),
            (today, d("2027-01-01"))
        );
        assert_eq!(
            span(&params(Some("2024-01-01"), Some("2024-02-01")), today).unwrap(),
            (d("2024-01-01"), d("2024-02-01"))
        );
        for (s, e) in [
            (Some("2024-02-01"), Some("2024-01-01")),
            (Some("1900-01-01"), Some("2100-01-01")),
            (Some("2024-13-01"), None),
        ] {
            assert!(span(&params(s, e), today).is_err(), "{s:?}..{e:?}");
        }
    }
}
