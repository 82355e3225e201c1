//! `GET /api/v1/bars`: the batch read for backtests, and the request parsing shared with
//! `dms read` and the other read endpoints.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde::Deserialize;

use super::error::ErrorBody;
use super::{ApiError, AppState, MAX_SYMBOLS_PER_REQUEST};
use crate::domain::{Interval, Symbol, TimeRange, time};
use crate::format::Format;
use crate::reader::{BarsQuery, Body as ReadBody};

/// Query of `GET /api/v1/bars`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BarsParams {
    /// Comma-separated symbols (DESIGN §1 pattern each), at most 10,000.
    #[param(
        required = true,
        pattern = r"^[A-Za-z0-9^][A-Za-z0-9.=^_-]{0,31}(,[A-Za-z0-9^][A-Za-z0-9.=^_-]{0,31})*$",
        example = "AAPL,MSFT"
    )]
    pub symbols: Option<String>,
    /// `1m 2m 5m 15m 30m 1h 1d 1wk 1mo`.
    #[param(
        required = true,
        pattern = r"^(1m|2m|5m|15m|30m|1h|1d|1wk|1mo)$",
        example = "1d"
    )]
    pub interval: Option<String>,
    /// Inclusive start: `YYYY-MM-DD` or RFC 3339. From the first bar when absent.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$",
        example = "2024-01-01"
    )]
    pub start: Option<String>,
    /// Exclusive end: `YYYY-MM-DD` or RFC 3339. To the last bar when absent.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$",
        example = "2025-01-01"
    )]
    pub end: Option<String>,
    /// `json` (default; columnar per symbol), `csv`, `arrow` (IPC stream) or `parquet`.
    #[param(pattern = "^(json|csv|arrow|parquet)$", example = "arrow")]
    pub format: Option<String>,
    /// Scale OHLC by `adj_close / close` (bars without `adj_close` are unchanged).
    #[param(pattern = "^(true|false|1|0)$", example = "false")]
    pub adjusted: Option<String>,
}

/// `format=json`: columns per symbol.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BarsJson {
    pub interval: String,
    pub series: BTreeMap<String, SeriesColumns>,
}

/// One symbol's bars as columns of equal length, in time order.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesColumns {
    /// Bar timestamps, RFC 3339 UTC (`2024-01-02T00:00:00Z`).
    pub ts: Vec<String>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
}

/// Parses a comma-separated symbol list: each checked, duplicates removed (in linear time),
/// order of first appearance kept, at most [`MAX_SYMBOLS_PER_REQUEST`] distinct symbols. Used by
/// every endpoint and command that takes a symbol list.
pub fn parse_symbols(s: &str) -> Result<Vec<Symbol>, ApiError> {
    let out = crate::maintain::task::parse_symbol_list(&[s.to_string()])
        .map_err(ApiError::InvalidArgument)?;
    if out.len() > MAX_SYMBOLS_PER_REQUEST {
        return Err(ApiError::InvalidArgument(format!(
            "more than {MAX_SYMBOLS_PER_REQUEST} symbols"
        )));
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

/// The batch read for backtests.
#[utoipa::path(
    get,
    path = "/api/v1/bars",
    tag = "read",
    params(BarsParams),
    responses(
        (status = 200, description = "Bars of every symbol, streamed. `csv`, `arrow` and `parquet` \
            are long format `symbol,ts,open,high,low,close,volume`.",
            content(
                (BarsJson = "application/json"),
                (String = "text/csv"),
                ("application/vnd.apache.arrow.stream"),
                ("application/vnd.apache.parquet"),
            )),
        (status = 400, description = "Bad parameter or more bars than `reader.max_bars_per_request`", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn bars(
    State(state): State<AppState>,
    params: Result<Query<BarsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let q = params.into_query()?;
    let format: Format = q.format;
    let body = match state.services().reader.read(q).await? {
        ReadBody::Full(bytes) => Body::from(bytes),
        ReadBody::Stream(stream) => Body::from_stream(stream),
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_deduplicated_in_order_of_first_appearance() {
        let got = parse_symbols(" MSFT,AAPL, MSFT,,0700.HK,AAPL ").unwrap();
        let got: Vec<&str> = got.iter().map(Symbol::as_str).collect();
        assert_eq!(got, ["MSFT", "AAPL", "0700.HK"]);
        // The limit counts distinct symbols: the most there may be, each sent twice, pass.
        let many: Vec<String> = (0..MAX_SYMBOLS_PER_REQUEST)
            .map(|i| format!("S{i}"))
            .collect();
        let twice = format!("{},{}", many.join(","), many.join(","));
        assert_eq!(
            parse_symbols(&twice).unwrap().len(),
            MAX_SYMBOLS_PER_REQUEST
        );
        let err = parse_symbols(&format!("{twice},ONE.MORE")).unwrap_err();
        assert!(err.to_string().contains("more than 10000 symbols"), "{err}");
        assert!(parse_symbols(" , ").is_err());
        assert!(parse_symbols("AAPL,BAD SYMBOL").is_err());
    }
}
