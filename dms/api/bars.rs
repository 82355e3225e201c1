//! `GET /api/v1/bars`: the batch read for backtests, and the request parsing shared with
//! `dms read`.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde::Deserialize;

use super::{ApiError, AppState, MAX_SYMBOLS_PER_REQUEST};
use crate::domain::{Interval, Symbol, TimeRange, time};
use crate::format::Format;
use crate::reader::BarsQuery;

/// Query of `GET /api/v1/bars`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarsParams {
    pub symbols: Option<String>,
    pub interval: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub format: Option<String>,
    pub adjusted: Option<String>,
}

/// Parses a comma-separated symbol list: each checked, duplicates removed, order kept.
pub fn parse_symbols(s: &str) -> Result<Vec<Symbol>, ApiError> {
    let mut out: Vec<Symbol> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let sym = Symbol::parse(part).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
        if !out.contains(&sym) {
            out.push(sym);
        }
        if out.len() > MAX_SYMBOLS_PER_REQUEST {
            return Err(ApiError::InvalidArgument(format!(
                "more than {MAX_SYMBOLS_PER_REQUEST} symbols"
            )));
        }
    }
    if out.is_empty() {
        return Err(ApiError::InvalidArgument(
            "symbols: at least one symbol is required".into(),
        ));
    }
    Ok(out)
}

pub fn parse_interval(s: Option<&str>) -> Result<Interval, ApiError> {
    s.ok_or_else(|| ApiError::InvalidArgument("interval: required".into()))?
        .parse()
        .map_err(ApiError::InvalidArgument)
}

/// `[start, end)` from optional dates; open ends mean "from the beginning" / "to the end".
pub fn parse_range(start: Option<&str>, end: Option<&str>) -> Result<TimeRange, ApiError> {
    let parse = |name: &str, v: Option<&str>| -> Result<Option<i64>, ApiError> {
        match v.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => time::parse_instant(v)
                .map(Some)
                .map_err(|e| ApiError::InvalidArgument(format!("{name}: {e}"))),
        }
    };
    let lo = parse("start", start)?.unwrap_or(TimeRange::ALL.start());
    let hi = parse("end", end)?.unwrap_or(TimeRange::ALL.end());
    TimeRange::new(lo, hi).map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

pub fn parse_bool(name: &str, v: Option<&str>) -> Result<bool, ApiError> {
    match v {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ApiError::InvalidArgument(format!(
            "{name}: expected true or false, got {other:?}"
        ))),
    }
}

impl BarsParams {
    pub fn into_query(self) -> Result<BarsQuery, ApiError> {
        Ok(BarsQuery {
            symbols: parse_symbols(self.symbols.as_deref().unwrap_or(""))?,
            interval: parse_interval(self.interval.as_deref())?,
            range: parse_range(self.start.as_deref(), self.end.as_deref())?,
            format: self
                .format
                .as_deref()
                .unwrap_or("json")
                .parse()
                .map_err(ApiError::InvalidArgument)?,
            adjusted: parse_bool("adjusted", self.adjusted.as_deref())?,
        })
    }
}

pub async fn bars(
    State(state): State<AppState>,
    params: Result<Query<BarsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let q = params.into_query()?;
    let reader = &state.services().reader;
    reader.check(&q).await?;
    let format: Format = q.format;
    let body = Body::from_stream(reader.stream(q));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}
