//! `GET /api/v1/series`: every stored series with its extent and count, and the cache figures.
//!
//! Without `page`/`page_size` the answer lists every matching series (the original shape);
//! with either it is one page of them, and `total` always counts every match, so a table of
//! 10,000 series (the dashboard's) asks for one page at a time, filtered (`q`, `interval`,
//! `stale`) and sorted (`sort`) on the server.
//!
//! `gaps` is the number of sessions missing inside the series' stored range (the sum of the
//! `sessions` of its interior gaps in `GET /api/v1/gaps`), `stale` whether its newest bar is
//! older than the calendar expects; both come from one gap scan of the listed series
//! (`maintain::scan`) and are `null` for a series whose market has no calendar.
//! `last_update` is the time of the series' last committed change-log entry.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::error::ErrorBody;
use super::{ApiError, AppState, parse_interval, parse_symbols};
use crate::domain::time;
use crate::reader::CacheStats;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// Only these symbols (comma-separated).
    #[param(
        pattern = r"^[A-Za-z0-9^][A-Za-z0-9.=^_-]{0,31}(,[A-Za-z0-9^][A-Za-z0-9.=^_-]{0,31})*$"
    )]
    pub symbols: Option<String>,
    /// Only this interval.
    #[param(pattern = r"^(1m|2m|5m|15m|30m|1h|1d|1wk|1mo)$")]
    pub interval: Option<String>,
    /// Only symbols containing this text, ignoring case.
    #[param(max_length = 64)]
    pub q: Option<String>,
    /// `true`: only stale series; `false`: only series known not to be stale.
    #[param(pattern = "^(true|false|1|0)$")]
    pub stale: Option<String>,
    /// Sort key, `-` first for descending: `symbol` (default; then interval), `interval`,
    /// `first`, `last`, `count`, `gaps`, `last_update`. Ties are broken by symbol and interval.
    #[param(pattern = "^-?(symbol|interval|first|last|count|gaps|last_update)$")]
    pub sort: Option<String>,
    /// Page number, from 1 (with `page_size`, default 50); without either, every match.
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// Series per page, 1 to 1000.
    #[param(minimum = 1, maximum = 1000)]
    pub page_size: Option<u64>,
}

/// Most series one page holds.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// The page size when only `page` is given.
pub const DEFAULT_PAGE_SIZE: u64 = 50;

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesList {
    pub series: Vec<SeriesInfo>,
    /// Series matching the filters, on every page.
    pub total: u64,
    /// Bars in the series matching the filters, on every page.
    pub total_bars: u64,
    /// The page shown; `null` when unpaged.
    pub page: Option<u64>,
    /// `null` when unpaged.
    pub page_size: Option<u64>,
    /// The reader cache (same as `GET /api/v1/cache`).
    pub cache: CacheStats,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesInfo {
    pub symbol: String,
    pub interval: String,
    /// Timestamp of the first bar, RFC 3339.
    pub first: String,
    /// Timestamp of the last bar, RFC 3339.
    pub last: String,
    /// Bars stored.
    pub count: u64,
    /// Sessions missing inside `[first, last]`, by the market's calendar; `null` when the
    /// symbol's market has no calendar.
    pub gaps: Option<u64>,
    /// When the series was last written, RFC 3339; `null` when not known.
    pub last_update: Option<String>,
    /// Whether the newest bar is older than the calendar expects (a closed session's bars are
    /// missing after it); `null` when the symbol's market has no calendar.
    pub stale: Option<bool>,
}

/// Every stored series.
#[utoipa::path(
    get,
    path = "/api/v1/series",
    tag = "read",
    params(SeriesParams),
    responses(
        (status = 200, description = "Series sorted by symbol and interval", body = SeriesList),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "A read token is configured and none was sent", body = ErrorBody),
        (status = 403, description = "The token is not accepted", body = ErrorBody),
        (status = 503, description = "The primary store cannot be reached", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn series(
    State(state): State<AppState>,
    params: Result<Query<SeriesParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SeriesList>, ApiError> {
    let Query(params) = params?;
    let listing = Listing::parse(&params)?;
    let symbols = params.symbols.as_deref().map(parse_symbols).transpose()?;
    let interval = params
        .interval
        .as_deref()
        .map(|i| parse_interval(Some(i)))
        .transpose()?;
    let services = state.services();
    let listed = services.primary.list_series().await?;
    let updates = services.meta.last_updates().await?;
    let listed: Vec<_> = listed
        .into_iter()
        .filter(|s| interval.is_none_or(|i| s.series.interval == i))
        .filter(|s| {
            symbols
                .as_ref()
                .is_none_or(|want| want.contains(&s.series.symbol))
        })
        .collect();
    let keys: Vec<_> = listed.iter().map(|s| s.series.clone()).collect();
    let now = chrono::Utc::now().timestamp();
    let plans: HashMap<_, _> = services
        .gaps
        .plan(&keys, now)
        .await?
        .into_iter()
        .map(|p| (p.series.clone(), p))
        .collect();
    let series = listed
        .into_iter()
        .map(|s| {
            let plan = plans.get(&s.series);
            SeriesInfo {
                symbol: s.series.symbol.to_string(),
                interval: s.series.interval.to_string(),
                first: time::rfc3339(s.first),
                last: time::rfc3339(s.last),
                count: s.count,
                gaps: plan.map(|p| p.interior_sessions()),
                last_update: updates.get(&s.series).map(|t| time::rfc3339(*t)),
                stale: plan.map(|p| p.stale),
            }
        })
        .collect();
    let (series, total, total_bars) = listing.apply(series);
    Ok(Json(SeriesList {
        series,
        total,
        total_bars,
        page: listing.page.map(|(p, _)| p),
        page_size: listing.page.map(|(_, n)| n),
        cache: services.reader.cache().stats(),
    }))
}

/// The filter, order and page a request asked for, checked before anything is read.
#[derive(Debug, PartialEq)]
struct Listing {
    /// Lowercased.
    q: Option<String>,
    stale: Option<bool>,
    sort: SortKey,
    descending: bool,
    /// `(page, page_size)`, `None` for every match.
    page: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SortKey {
    Symbol,
    Interval,
    First,
    Last,
    Count,
    Gaps,
    LastUpdate,
}

impl Listing {
    fn parse(p: &SeriesParams) -> Result<Listing, ApiError> {
        let q = match p.q.as_deref().map(str::trim) {
            Some(q) if q.chars().count() > 64 => {
                return Err(ApiError::InvalidArgument("q: at most 64 characters".into()));
            }
            Some("") | None => None,
            Some(q) => Some(q.to_lowercase()),
        };
        let stale = p
            .stale
            .as_deref()
            .map(|v| super::parse_bool("stale", Some(v)))
            .transpose()?;
        let raw = p.sort.as_deref().unwrap_or("symbol");
        let (descending, key) = match raw.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, raw),
        };
        let sort = match key {
            "symbol" => SortKey::Symbol,
            "interval" => SortKey::Interval,
            "first" => SortKey::First,
            "last" => SortKey::Last,
            "count" => SortKey::Count,
            "gaps" => SortKey::Gaps,
            "last_update" => SortKey::LastUpdate,
            _ => {
                return Err(ApiError::InvalidArgument(format!(
                    "sort: unknown key {raw:?} (expected symbol, interval, first, last, count, \
                     gaps or last_update, with - first for descending)"
                )));
            }
        };
        let page = match (p.page, p.page_size) {
            (None, None) => None,
            (page, size) => {
                let (page, size) = (page.unwrap_or(1), size.unwrap_or(DEFAULT_PAGE_SIZE));
                if page == 0 || !(1..=MAX_PAGE_SIZE).contains(&size) {
                    return Err(ApiError::InvalidArgument(format!(
                        "page counts from 1; page_size is 1 to {MAX_PAGE_SIZE}"
                    )));
                }
                Some((page, size))
            }
        };
        Ok(Listing {
            q,
            stale,
            sort,
            descending,
            page,
        })
    }

    /// Filters, sorts and pages `series`; returns the page, the number of matches and their
    /// bars.
    fn apply(&self, mut series: Vec<SeriesInfo>) -> (Vec<SeriesInfo>, u64, u64) {
        series.retain(|s| {
            self.q
                .as_deref()
                .is_none_or(|q| s.symbol.to_lowercase().contains(q))
                && self.stale.is_none_or(|want| s.stale == Some(want))
        });
        let total = series.len() as u64;
        let total_bars = series.iter().map(|s| s.count).sum();
        let sort = self.sort;
        let tie = |a: &SeriesInfo, b: &SeriesInfo| {
            (&a.symbol, interval_rank(&a.interval)).cmp(&(&b.symbol, interval_rank(&b.interval)))
        };
        series.sort_by(|a, b| match (self.sort, self.descending) {
            (SortKey::Symbol, true) => tie(b, a),
            (_, false) => sort_key(sort, a)
                .cmp(&sort_key(sort, b))
                .then_with(|| tie(a, b)),
            (_, true) => sort_key(sort, b)
                .cmp(&sort_key(sort, a))
                .then_with(|| tie(a, b)),
        });
        let Some((page, size)) = self.page else {
            return (series, total, total_bars);
        };
        let skip = usize::try_from((page - 1).saturating_mul(size)).unwrap_or(usize::MAX);
        let page = series.into_iter().skip(skip).take(size as usize).collect();
        (page, total, total_bars)
    }
}

/// What `sort` orders by. Timestamps are RFC 3339 UTC in one layout, so their text order is
/// time order.
fn sort_key(sort: SortKey, s: &SeriesInfo) -> (Option<u64>, Option<&str>) {
    match sort {
        SortKey::Symbol => (None, None),
        SortKey::Interval => (Some(interval_rank(&s.interval)), None),
        SortKey::First => (None, Some(&s.first)),
        SortKey::Last => (None, Some(&s.last)),
        SortKey::Count => (Some(s.count), None),
        SortKey::Gaps => (s.gaps, None),
        SortKey::LastUpdate => (None, s.last_update.as_deref()),
    }
}

/// Intervals order by length, not by name (`1d` before `1wk`, `5m` before `15m`).
fn interval_rank(i: &str) -> u64 {
    i.parse::<crate::domain::Interval>()
        .map(|i| i.nominal_secs().unsigned_abs())
        .unwrap_or(u64::MAX)
}
