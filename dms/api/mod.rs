//! The HTTP API (DESIGN §4): router, shared state, auth and metrics middleware, handlers.
//!
//! Handlers parse and validate their input into domain types (a bad request changes nothing
//! and answers 4xx in the shape of [`error::ApiError`]), call into [`crate::services::Services`],
//! and render JSON or a streamed body.

pub mod actions;
pub mod bars;
pub mod cache;
pub mod calendars;
pub mod dashboard;
pub mod error;
pub mod gaps;
pub mod health;
pub mod import;
pub mod jobs;
pub mod nodes;
pub mod openapi;
pub mod quality;
pub mod replication;
pub mod schedules;
pub mod series;
pub mod sources;
pub mod universe;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Secret;
use crate::services::Services;
use crate::telemetry::{labels, metrics};
pub use bars::{parse_bool, parse_interval, parse_range, parse_symbols};
pub use error::ApiError;

/// Most symbols one request may name.
pub const MAX_SYMBOLS_PER_REQUEST: usize = 10_000;

/// Longest query string accepted (about 4,000 tickers). Request lines over 64 KiB are refused
/// by hyper itself, with a bare 414, before this check runs.
pub const MAX_QUERY_BYTES: usize = 32 * 1024;

/// Largest batch `POST /api/v1/replication/apply` accepts.
pub const REPLICATION_BODY_BYTES: usize = 64 * 1024 * 1024;

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    services: Services,
    admin_token: Option<Secret>,
    read_token: Option<Secret>,
    started: Instant,
    /// `(when, series, bars)`; a std `Mutex`, never held across an `.await`.
    counts: Mutex<Option<(Instant, u64, u64)>>,
    /// `/openapi.json`, built with the routes.
    openapi: Arc<utoipa::openapi::OpenApi>,
}

impl AppState {
    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    pub fn openapi(&self) -> &utoipa::openapi::OpenApi {
        &self.inner.openapi
    }
}

/// Builds the router. Tokens are read from the environment variables the config names, once.
pub fn router(services: Services) -> Router {
    let server = &services.config.server;
    let max_body = server.max_body_bytes as usize;
    let max_upload = usize::try_from(server.max_upload_bytes).unwrap_or(usize::MAX);
    let (routes, doc) = routes(max_upload).split_for_parts();
    let state = AppState {
        inner: Arc::new(Inner {
            admin_token: server.admin_token(),
            read_token: server.read_token(),
            started: Instant::now(),
            counts: Mutex::new(None),
            openapi: Arc::new(doc),
            services: services.clone(),
        }),
    };
    routes
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn_with_state(state.clone(), guard_host))
        .layer(middleware::from_fn(limit_query))
        .layer(middleware::from_fn(http_metrics))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Every route with its OpenAPI operation, from the handlers' `#[utoipa::path]`: a route is
/// added only here and only this way, so `/openapi.json` cannot miss one.
fn routes(max_upload: usize) -> OpenApiRouter<AppState> {
    let (schemas, paths, import) = routes!(import::import);
    let import = import.layer(axum::extract::DefaultBodyLimit::max(max_upload));
    // A peer pushes batches of about 5,000 bars (about 1 MB of JSON): more than other bodies.
    let (apply_schemas, apply_paths, apply) = routes!(replication::apply);
    let apply = apply.layer(axum::extract::DefaultBodyLimit::max(REPLICATION_BODY_BYTES));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::prometheus))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(bars::bars))
        .routes(routes!(series::series))
        .routes(routes!(gaps::gaps))
        .routes(routes!(quality::quality))
        .routes(routes!(actions::actions))
        .routes(routes!(cache::cache))
        .routes((schemas, paths, import))
        .routes(routes!(jobs::list, jobs::submit))
        .routes(routes!(jobs::show))
        .routes(routes!(jobs::log))
        .routes(routes!(jobs::cancel))
        .routes(routes!(calendars::sessions))
        .routes(routes!(sources::list))
        .routes(routes!(sources::ping))
        .routes(routes!(schedules::list))
        .routes(routes!(schedules::run))
        .routes(routes!(universe::list, universe::upsert))
        .routes(routes!(universe::show, universe::remove))
        .routes(routes!(dashboard::index))
        .routes(routes!(dashboard::asset))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::ping))
        .routes(routes!(replication::changes))
        .routes((apply_schemas, apply_paths, apply))
        .routes(routes!(replication::bars))
        .routes(routes!(replication::actions))
        .routes(routes!(replication::digests))
        .routes(routes!(replication::series))
}

/// The OpenAPI document of the routes [`router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes(0).into_openapi()
}

/// Refuses over-long query strings before any handler parses them.
async fn limit_query(req: Request, next: Next) -> Response {
    match req.uri().query() {
        Some(q) if q.len() > MAX_QUERY_BYTES => ApiError::InvalidArgument(format!(
            "query string of {} bytes is longer than the limit of {MAX_QUERY_BYTES}",
            q.len()
        ))
        .into_response(),
        _ => next.run(req).await,
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Counts requests and their duration by matched route (never by raw path).
async fn http_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = metrics();
    m.http_requests
        .get_or_create(&labels([
            ("route", &route),
            ("status", resp.status().as_str()),
        ]))
        .inc();
    m.http_duration
        .get_or_create(&labels([("route", &route)]))
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// Bearer-token auth: when any token is configured, mutating requests need the admin token
/// (with only a read token set, nothing may mutate); when the read token is set, reads need it
/// or the admin token. `/health` is always open, and so are reads of the dashboard page and
/// its assets ([`dashboard::is_public`]: they hold no data; the page asks for a token when the
/// API it calls answers 401 or 403). No token → 401, a token that is not accepted → 403.
/// Comparisons are constant-time.
async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/health" || dashboard::is_public(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let (admin, read) = (&state.inner.admin_token, &state.inner.read_token);
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let accepted: Vec<&Secret> = if mutating {
        match (admin, read) {
            (Some(a), _) => vec![a],
            (None, Some(_)) => {
                return ApiError::Forbidden(
                    "changes need the admin token, and none is configured (server.admin_token_env)"
                        .into(),
                )
                .into_response();
            }
            (None, None) => return next.run(req).await,
        }
    } else {
        match read {
            Some(r) => std::iter::once(r).chain(admin.iter()).collect(),
            None => return next.run(req).await,
        }
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = presented else {
        return ApiError::Unauthorized.into_response();
    };
    let ok = accepted.iter().fold(false, |acc, s| {
        acc | bool::from(s.expose().as_bytes().ct_eq(token.as_bytes()))
    });
    if ok {
        next.run(req).await
    } else {
        ApiError::Forbidden(if mutating {
            "changes need the admin token".into()
        } else {
            "this token is not accepted".into()
        })
        .into_response()
    }
}

/// The DNS-rebinding guard: a request must name this server in its `Host` (or HTTP/2
/// authority): an IP literal of the bind address (any IP when bound to an unspecified address,
/// any loopback IP when bound to loopback), `localhost`, or a name in `server.allowed_hosts`
/// (`"*"` allows any). A web page whose own name was pointed at this machine therefore cannot
/// drive the API from a browser. Requests without a host (HTTP/1.0 clients) pass; `/health`
/// is always open.
async fn guard_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .uri()
        .authority()
        .map(|a| a.host().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(host_of)
        });
    match host {
        Some(h) if req.uri().path() != "/health" && !state.host_allowed(&h) => ApiError::Forbidden(
            format!("host {h:?} is not allowed: add it to server.allowed_hosts"),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}

/// The host part of a `Host` header value (`[::1]:80` → `::1`, `a.b:80` → `a.b`).
fn host_of(value: &str) -> String {
    let v = value.trim();
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    match v.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => v.to_string(),
    }
}

impl AppState {
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server = &self.services().config.server;
        if host.eq_ignore_ascii_case("localhost")
            || server
                .allowed_hosts
                .iter()
                .any(|a| a == "*" || a.eq_ignore_ascii_case(host))
        {
            return true;
        }
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                let bind = server.bind.ip();
                ip == bind || bind.is_unspecified() || (bind.is_loopback() && ip.is_loopback())
            }
            Err(_) => false,
        }
    }
}
