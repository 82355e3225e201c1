//! A local Yahoo chart server for tests: an axum app on `127.0.0.1:0` answering
//! `GET /v8/finance/chart/{symbol}` from recorded fixtures or generated data, with scriptable
//! faults, recording every request it receives.
//!
//! - **Routes** map `(symbol, interval)` to a body: a recorded fixture (served as recorded,
//!   whatever the period asked: the phantom bar and friends are part of the recording), a fixed
//!   string, or [`Synth`] data generated for exactly the `period1/period2` asked, so chunked
//!   requests get the bars of their own window. `"*"` matches any symbol or interval. A symbol
//!   with no route gets Yahoo's 404 "Not Found" body.
//! - **Faults** per symbol (`"*"` for any): [`MockYahoo::fail_next`] queues faults for the next
//!   requests, in order; [`MockYahoo::fail_always`] sets one for every request.
//! - **Recording**: [`MockYahoo::requests`] lists path, query and the answer given, so tests can
//!   check windows and chunking, and that refused requests never reached the server.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use super::yahoo_synth::Synth;
use super::yahoo_synth::chart_json;

/// Yahoo's body for an unknown or delisted symbol.
pub const NOT_FOUND_BODY: &str = r#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#;

/// A recorded fixture from `tests/fixtures/yahoo/`.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/yahoo/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// What a route answers with.
#[derive(Debug, Clone)]
pub enum Body {
    /// A fixed 200 body (a recorded fixture).
    Json(Arc<str>),
    /// Generated for the period asked.
    Synthetic(Synth),
}

/// A fault to answer with instead of the route's body.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 with Yahoo's plain-text body and, when given, a `Retry-After` value (seconds or an
    /// HTTP date, as written).
    TooManyRequests { retry_after: Option<String> },
    /// 500 with an empty body.
    ServerError,
    /// 503 with an empty body and, when given, a `Retry-After` value (as written).
    ServiceUnavailable { retry_after: Option<String> },
    /// 200 with Yahoo's HTML maintenance page.
    Html,
    /// 200 with the route's body cut in half.
    TruncatedJson,
    /// The route's body, after a delay (set it beyond the client timeout).
    Slow(Duration),
    /// 404 with Yahoo's "Not Found" JSON.
    NotFound,
    /// 422 "Unprocessable Entity" with this description.
    Unprocessable(String),
    /// 400 "Bad Request" with this description.
    BadRequest(String),
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Decoded from the path.
    pub symbol: String,
    /// As received, percent-encoded (`/v8/finance/chart/%5EGSPC`).
    pub path: String,
    /// The raw query string.
    pub query: String,
    pub params: HashMap<String, String>,
    pub user_agent: Option<String>,
    /// What the server did: `ok`, `not_found`, or the fault's name.
    pub answer: String,
    /// When the request arrived (for rate checks).
    pub at: std::time::Instant,
}

impl Recorded {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }

    /// `(period1, period2)` when both were sent.
    pub fn period(&self) -> Option<(i64, i64)> {
        Some((
            self.param("period1")?.parse().ok()?,
            self.param("period2")?.parse().ok()?,
        ))
    }
}

#[derive(Default)]
struct MockState {
    routes: HashMap<(String, String), Body>,
    next_faults: HashMap<String, VecDeque<Fault>>,
    always: HashMap<String, Fault>,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<MockState>>;

/// The running server; stops when dropped.
pub struct MockYahoo {
    addr: SocketAddr,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockYahoo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockYahoo {
    pub async fn start() -> MockYahoo {
        let state: Shared = Arc::default();
        let app = Router::new()
            .route("/v8/finance/chart/{symbol}", get(chart))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock yahoo");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockYahoo { addr, state, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MockState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `body` for `symbol` at Yahoo interval `interval` (`"*"` matches any).
    pub fn serve(&self, symbol: &str, interval: &str, body: Body) {
        self.lock()
            .routes
            .insert((symbol.to_string(), interval.to_string()), body);
    }

    /// Serves the recorded fixture `name` (a file in `tests/fixtures/yahoo/`) as recorded.
    pub fn serve_fixture(&self, symbol: &str, interval: &str, name: &str) {
        self.serve(symbol, interval, Body::Json(fixture(name).into()));
    }

    /// Serves generated bars for whatever period is asked.
    pub fn serve_synthetic(&self, symbol: &str, synth: Synth) {
        let interval = synth.interval.clone();
        self.serve(symbol, &interval, Body::Synthetic(synth));
    }

    /// The next requests for `symbol` (`"*"`: any) get these faults, in order.
    pub fn fail_next(&self, symbol: &str, faults: impl IntoIterator<Item = Fault>) {
        self.lock()
            .next_faults
            .entry(symbol.to_string())
            .or_default()
            .extend(faults);
    }

    /// Every request for `symbol` (`"*"`: any) gets this fault, after queued ones.
    pub fn fail_always(&self, symbol: &str, fault: Fault) {
        self.lock().always.insert(symbol.to_string(), fault);
    }

    pub fn clear_faults(&self) {
        let mut st = self.lock();
        st.next_faults.clear();
        st.always.clear();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn requests_for(&self, symbol: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.symbol == symbol)
            .collect()
    }
}

/// What the handler decided under the lock; acted on after it is released.
enum Answer {
    Fault(Fault, Option<String>),
    Body(String),
    NotFound,
}

async fn chart(
    State(state): State<Shared>,
    Path(symbol): Path<String>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let interval = params.get("interval").cloned().unwrap_or_default();
    let decided = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let fault = [symbol.as_str(), "*"].iter().find_map(|k| {
            st.next_faults
                .get_mut(*k)
                .and_then(VecDeque::pop_front)
                .or_else(|| st.always.get(*k).cloned())
        });
        let route = [
            (symbol.clone(), interval.clone()),
            (symbol.clone(), "*".to_string()),
            ("*".to_string(), interval.clone()),
        ]
        .into_iter()
        .find_map(|k| st.routes.get(&k).cloned());
        let body = route.map(|b| render(&symbol, &b, &params));
        let decided = match (fault, body) {
            (Some(f), body) => Answer::Fault(f, body),
            (None, Some(body)) => Answer::Body(body),
            (None, None) => Answer::NotFound,
        };
        let answer = match &decided {
            Answer::Fault(f, _) => format!("{f:?}"),
            Answer::Body(_) => "ok".to_string(),
            Answer::NotFound => "not_found".to_string(),
        };
        st.requests.push(Recorded {
            symbol: symbol.clone(),
            path: uri.path().to_string(),
            query: query.clone(),
            params,
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            answer,
            at: std::time::Instant::now(),
        });
        decided
    };
    match decided {
        Answer::Body(body) => json(StatusCode::OK, body),
        Answer::NotFound => json(StatusCode::NOT_FOUND, NOT_FOUND_BODY.to_string()),
        Answer::Fault(fault, body) => answer_fault(fault, body).await,
    }
}

fn render(symbol: &str, body: &Body, params: &HashMap<String, String>) -> String {
    match body {
        Body::Json(s) => s.to_string(),
        Body::Synthetic(synth) => {
            let num = |k: &str| params.get(k).and_then(|v| v.parse::<i64>().ok());
            let (p1, p2) = match (num("period1"), num("period2")) {
                (Some(a), Some(b)) => (a, b),
                // `range=…` (ping): the last few days.
                _ => (synth.now - 5 * 86_400, synth.now),
            };
            chart_json(symbol, synth, p1, p2)
        }
    }
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        body,
    )
        .into_response()
}

async fn answer_fault(fault: Fault, body: Option<String>) -> Response {
    let error = |status: StatusCode, code: &str, description: &str| {
        let body = serde_json::json!({
            "chart": {"result": null, "error": {"code": code, "description": description}}
        });
        json(status, body.to_string())
    };
    match fault {
        Fault::TooManyRequests { retry_after } => with_retry_after(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::CONTENT_TYPE, "text/plain")],
                "Edge: Too Many Requests",
            )
                .into_response(),
            retry_after,
        ),
        Fault::ServerError => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Fault::ServiceUnavailable { retry_after } => {
            with_retry_after(StatusCode::SERVICE_UNAVAILABLE.into_response(), retry_after)
        }
        Fault::Html => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<!DOCTYPE html><html><head><title>Yahoo</title></head>\
             <body><h1>Will be right back...</h1><p>Thank you for your patience.</p></body></html>",
        )
            .into_response(),
        Fault::TruncatedJson => {
            let full = body.unwrap_or_else(|| NOT_FOUND_BODY.to_string());
            json(StatusCode::OK, full[..full.len() / 2].to_string())
        }
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            match body {
                Some(b) => json(StatusCode::OK, b),
                None => json(StatusCode::NOT_FOUND, NOT_FOUND_BODY.to_string()),
            }
        }
        Fault::NotFound => error(
            StatusCode::NOT_FOUND,
            "Not Found",
            "No data found, symbol may be delisted",
        ),
        Fault::Unprocessable(d) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Entity", &d)
        }
        Fault::BadRequest(d) => error(StatusCode::BAD_REQUEST, "Bad Request", &d),
    }
}

fn with_retry_after(mut resp: Response, retry_after: Option<String>) -> Response {
    if let Some(ra) = retry_after {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            ra.parse().expect("valid Retry-After header value"),
        );
    }
    resp
}
