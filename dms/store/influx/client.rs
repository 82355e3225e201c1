//! A thin InfluxDB HTTP client on `reqwest`: `GET /ping`, line-protocol writes (`/write` for
//! `api: v1`, `/api/v2/write` for `api: v2`) and InfluxQL over `/query`, streamed through
//! `super::response`. It knows URLs, authentication, timeouts and HTTP status codes, and
//! nothing about bars.
//!
//! - **Auth**: `Authorization: Token …` when `token_env` is set (InfluxDB 2 and 3, and 1.x
//!   ignores it when auth is off), HTTP basic with `username` and `password_env` when a
//!   username is set, otherwise none. Secrets are read from the environment once, at
//!   construction, and the header is marked sensitive so that it never appears in logs.
//! - **Targets**: `api: v1` writes and queries `database` (and `retention_policy`); `api: v2`
//!   writes to `org`/`bucket` and queries the bucket by name through the v1 compatibility API
//!   (the virtual DBRP mapping every 2.x bucket has; InfluxDB 3 maps its databases the same way).
//! - **Timeouts**: every request has a connect timeout and an idle-read timeout of `timeout_s`
//!   (a stalled server fails, a long healthy stream does not); pings and writes also have a
//!   total deadline of `timeout_s`. Query bodies are streamed and may take longer than
//!   `timeout_s` in total while data keeps flowing (a multi-year backtest read).
//! - **Errors** ([`ClientError`], mapped to [`StoreError`] in one place): connection failures,
//!   timeouts, 5xx, 408 and 429 are `Unavailable` (retry later); other 4xx, including InfluxDB's
//!   "partial write", are `Rejected` with InfluxDB's message; an answer DMS cannot read is
//!   `Corrupt`. Messages say what may have happened on the server, because a failed write is
//!   not always a write that did nothing: a refused or failed connection sent nothing ("nothing
//!   was sent"); a timeout or a connection lost after the request started may have been applied
//!   ("may have been applied"); a 400 "partial write" stores every other line of the request
//!   (verified on 1.6.7, which may still be storing them when it answers). Server messages are
//!   cut to their first line and [`MAX_MESSAGE`] bytes; URLs (which may carry credentials)
//!   never appear.
//! - Responses are not gzip-compressed on purpose: on a LAN compression costs InfluxDB more CPU
//!   than it saves.

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use super::response::{DecodeError, Decoder, Format, Sink};
use crate::config::{InfluxApi, InfluxConfig, Secret};
use crate::store::StoreError;

/// The `store` name in errors.
pub const STORE: &str = "influxdb";

/// Longest server message kept in an error.
pub const MAX_MESSAGE: usize = 300;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The request did not complete: connection refused or reset, timeout, broken body.
    #[error("{what}: {message}")]
    Transport { what: String, message: String },
    /// InfluxDB answered with an error status.
    #[error("{what}: {status}: {message}")]
    Status {
        what: String,
        status: StatusCode,
        message: String,
    },
    #[error("{what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: DecodeError,
    },
    #[error("{what}: unexpected response: {message}")]
    Protocol { what: String, message: String },
}

impl From<ClientError> for StoreError {
    fn from(e: ClientError) -> StoreError {
        let message = e.to_string();
        let store = STORE;
        match e {
            ClientError::Transport { .. } => StoreError::Unavailable { store, message },
            ClientError::Status { status, .. }
                if status.is_server_error()
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                StoreError::Unavailable { store, message }
            }
            ClientError::Status { status, .. } if status.is_client_error() => {
                StoreError::Rejected { store, message }
            }
            ClientError::Config(_)
            | ClientError::Decode {
                source: DecodeError::Server(_),
                ..
            } => StoreError::Rejected { store, message },
            ClientError::Status { .. }
            | ClientError::Decode { .. }
            | ClientError::Protocol { .. } => StoreError::Corrupt { store, message },
        }
    }
}

/// How requests authenticate.
#[derive(Clone)]
enum Auth {
    None,
    Basic {
        username: String,
        password: Secret,
    },
    /// The complete `Token …` header value, marked sensitive.
    Token(HeaderValue),
}

/// Where data goes and comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    V1 {
        database: String,
        retention_policy: Option<String>,
    },
    V2 {
        org: String,
        bucket: String,
    },
}

/// The client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct InfluxClient {
    http: reqwest::Client,
    /// The server root, ending in `/`.
    base: Url,
    auth: Auth,
    target: Target,
    timeout: Duration,
    format: Format,
    chunk_size: usize,
}

impl InfluxClient {
    /// Builds a client for `config`, reading its secrets from the environment. Sends nothing.
    /// `format` is the response format to ask `/query` for; `chunk_size` the rows per chunk.
    pub fn new(
        config: &InfluxConfig,
        format: Format,
        chunk_size: usize,
    ) -> Result<InfluxClient, ClientError> {
        let auth = auth_from(config, config.token(), config.password())?;
        InfluxClient::with_auth(config, auth, format, chunk_size)
    }

    fn with_auth(
        config: &InfluxConfig,
        auth: Auth,
        format: Format,
        chunk_size: usize,
    ) -> Result<InfluxClient, ClientError> {
        let mut base = Url::parse(&config.url)
            .map_err(|e| ClientError::Config(format!("url {:?}: {e}", config.url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "url {:?}: scheme must be http or https",
                config.url
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);
        base.set_fragment(None);
        let target = match config.api {
            InfluxApi::V1 => Target::V1 {
                database: nonempty(&config.database, "database (required with api: v1)")?,
                retention_policy: config.retention_policy.clone().filter(|s| !s.is_empty()),
            },
            InfluxApi::V2 => {
                if config.retention_policy.is_some() {
                    return Err(ClientError::Config(
                        "retention_policy applies to api: v1 only; with api: v2 the bucket \
                         holds the retention"
                            .into(),
                    ));
                }
                Target::V2 {
                    org: nonempty(&config.org, "org (required with api: v2)")?,
                    bucket: nonempty(&config.bucket, "bucket (required with api: v2)")?,
                }
            }
        };
        let timeout = Duration::from_secs(config.timeout_s.max(1));
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .no_gzip()
            .tcp_nodelay(true)
            .user_agent(concat!("dms/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("http client: {e}")))?;
        Ok(InfluxClient {
            http,
            base,
            auth,
            target,
            timeout,
            format,
            chunk_size: chunk_size.max(1),
        })
    }

    /// Whether this client writes through the v1 API (and so may manage the database).
    pub fn is_v1(&self) -> bool {
        matches!(self.target, Target::V1 { .. })
    }

    /// The database (v1) or bucket (v2) queries run against.
    pub fn database(&self) -> &str {
        match &self.target {
            Target::V1 { database, .. } => database,
            Target::V2 { bucket, .. } => bucket,
        }
    }

    pub fn retention_policy(&self) -> Option<&str> {
        match &self.target {
            Target::V1 {
                retention_policy, ..
            } => retention_policy.as_deref(),
            Target::V2 { .. } => None,
        }
    }

    /// The server and database for humans: never credentials.
    pub fn location(&self) -> String {
        let mut url = self.base.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let root = url.as_str().trim_end_matches('/');
        match &self.target {
            Target::V1 {
                database,
                retention_policy: Some(rp),
            } => format!("{root} (database {database}, retention policy {rp})"),
            Target::V1 { database, .. } => format!("{root} (database {database})"),
            Target::V2 { org, bucket } => format!("{root} (org {org}, bucket {bucket})"),
        }
    }

    /// `GET /ping`: 204 (1.x, 2.x) or 200 (3.x). Returns the `X-Influxdb-Version` header.
    pub async fn ping(&self) -> Result<Option<String>, ClientError> {
        let what = "ping";
        let req = self.request(Method::GET, self.endpoint("ping", &[])?);
        let resp = self.send(what, req.timeout(self.timeout)).await?;
        let status = resp.status();
        if status != StatusCode::OK && status != StatusCode::NO_CONTENT {
            return Err(self.error_status(what, resp).await);
        }
        Ok(resp
            .headers()
            .get("x-influxdb-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// Writes a line-protocol body of `lines` lines (precision seconds). An empty body sends
    /// nothing: InfluxDB answers one with success, which would hide a bug.
    pub async fn write(&self, body: Vec<u8>, lines: usize) -> Result<(), ClientError> {
        if body.is_empty() {
            return Ok(());
        }
        let what = "write";
        let resp = self.send(what, self.write_request(body)?).await?;
        if !resp.status().is_success() {
            let mut e = self.error_status(what, resp).await;
            if let ClientError::Status { message, .. } = &mut e {
                note_partial_write(message, lines);
            }
            return Err(e);
        }
        Ok(())
    }

    fn write_request(&self, body: Vec<u8>) -> Result<reqwest::RequestBuilder, ClientError> {
        let url = match &self.target {
            Target::V1 {
                database,
                retention_policy,
            } => {
                let mut params = vec![("db", database.as_str())];
                if let Some(rp) = retention_policy {
                    params.push(("rp", rp));
                }
                params.push(("precision", "s"));
                self.endpoint("write", &params)?
            }
            Target::V2 { org, bucket } => self.endpoint(
                "api/v2/write",
                &[("org", org), ("bucket", bucket), ("precision", "s")],
            )?,
        };
        Ok(self
            .request(Method::POST, url)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .timeout(self.timeout)
            .body(body))
    }

    /// Runs InfluxQL `q` (one or more `;`-separated statements) and streams the response into
    /// `sink`. An error any statement reports fails the call.
    pub async fn query(&self, q: &str, sink: &mut (dyn Sink + Send)) -> Result<(), ClientError> {
        let what = "query";
        let resp = self.send(what, self.query_request(q)?).await?;
        if resp.status() != StatusCode::OK {
            return Err(self.error_status(what, resp).await);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let format =
            Format::from_content_type(content_type).ok_or_else(|| ClientError::Protocol {
                what: what.into(),
                message: format!("content type {content_type:?}"),
            })?;
        let mut decoder = Decoder::new(format);
        let mut body = resp.bytes_stream();
        let decode = |source| ClientError::Decode {
            what: what.into(),
            source,
        };
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.transport(what, Stage::Body, &e))?;
            decoder.feed(&chunk, sink).map_err(decode)?;
        }
        decoder.finish(sink).map_err(decode)
    }

    /// Runs statements that return no data (`CREATE`, `DELETE`), failing on any error.
    pub async fn execute(&self, q: &str) -> Result<(), ClientError> {
        self.query(q, &mut super::response::Ignore).await
    }

    fn query_request(&self, q: &str) -> Result<reqwest::RequestBuilder, ClientError> {
        let chunk_size = self.chunk_size.to_string();
        let mut params = vec![("db", self.database())];
        if let Some(rp) = self.retention_policy() {
            params.push(("rp", rp));
        }
        params.extend([
            ("epoch", "s"),
            ("chunked", "true"),
            ("chunk_size", &chunk_size),
        ]);
        let url = self.endpoint("query", &params)?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", q)
            .finish();
        Ok(self
            .request(Method::POST, url)
            .header(ACCEPT, self.format.mime())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form))
    }

    fn endpoint(&self, path: &str, params: &[(&str, &str)]) -> Result<Url, ClientError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| ClientError::Config(format!("url {}: {e}", self.base)))?;
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        Ok(url)
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url);
        match &self.auth {
            Auth::None => req,
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.expose())),
            Auth::Token(header) => req.header(AUTHORIZATION, header.clone()),
        }
    }

    async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        req.send()
            .await
            .map_err(|e| self.transport(what, Stage::Request, &e))
    }
}

fn nonempty(value: &Option<String>, what: &str) -> Result<String, ClientError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(ClientError::Config(format!("missing {what}"))),
    }
}

/// The auth mode `config` asks for, with the secrets its `*_env` variables hold.
fn auth_from(
    config: &InfluxConfig,
    token: Option<Secret>,
    password: Option<Secret>,
) -> Result<Auth, ClientError> {
    if let Some(var) = &config.token_env {
        let token = token
            .ok_or_else(|| ClientError::Config(format!("environment variable {var} is not set")))?;
        let mut header =
            HeaderValue::from_str(&format!("Token {}", token.expose())).map_err(|_| {
                ClientError::Config(format!("the token in {var} is not a valid header"))
            })?;
        header.set_sensitive(true);
        return Ok(Auth::Token(header));
    }
    if let Some(username) = &config.username {
        let password = match &config.password_env {
            None => Secret::new(""),
            Some(var) => password.ok_or_else(|| {
                ClientError::Config(format!("environment variable {var} is not set"))
            })?,
        };
        return Ok(Auth::Basic {
            username: username.clone(),
            password,
        });
    }
    Ok(Auth::None)
}

/// Where a transport failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the response status arrived: the request may or may not have reached InfluxDB.
    Request,
    /// While reading the body of a response whose status had arrived.
    Body,
}

impl InfluxClient {
    /// A transport failure, described by what failed, whether the request may have been
    /// applied, and the innermost cause (`connection refused`), never with the URL, which
    /// could carry credentials.
    fn transport(&self, what: &str, stage: Stage, e: &reqwest::Error) -> ClientError {
        // The reqwest error itself names the URL: only its sources are shown.
        let mut innermost = None;
        let mut next = std::error::Error::source(e);
        while let Some(cause) = next {
            innermost = Some(cause);
            next = cause.source();
        }
        let detail = innermost.map(|c| c.to_string()).unwrap_or_default();
        let secs = self.timeout.as_secs();
        let message = match stage {
            Stage::Request if e.is_connect() && e.is_timeout() => {
                format!("cannot connect: timed out after {secs}s (nothing was sent)")
            }
            Stage::Request if e.is_connect() => {
                format!("cannot connect: {detail} (nothing was sent)")
            }
            Stage::Request if e.is_timeout() => {
                format!("no answer within {secs}s (the request may have been applied)")
            }
            Stage::Request => {
                format!(
                    "connection lost before the answer: {detail} (the request may have been applied)"
                )
            }
            Stage::Body if e.is_timeout() => {
                format!("the response stalled for more than {secs}s")
            }
            Stage::Body => format!("the response broke off: {detail}"),
        };
        ClientError::Transport {
            what: what.into(),
            message: message.to_lowercase(),
        }
    }

    /// The error InfluxDB gave with a non-success status: its JSON `error`, else the
    /// `X-Influxdb-Error` header, else the start of the body; see [`short`].
    async fn error_status(&self, what: &str, resp: reqwest::Response) -> ClientError {
        let status = resp.status();
        let header = resp
            .headers()
            .get("x-influxdb-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return self.transport(what, Stage::Body, &e),
        };
        let from_json = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_string));
        let text = from_json
            .or(header)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let mut message = short(&text);
        if message.is_empty() {
            message = status
                .canonical_reason()
                .unwrap_or("no message")
                .to_lowercase();
        }
        ClientError::Status {
            what: what.into(),
            status,
            message,
        }
    }
}

/// Says what a 400 "partial write" stored: InfluxDB (verified on 1.6.7) stores every line of
/// the request but the `dropped=N` it names, possibly only after it answered (1.6 answers as
/// soon as one shard fails, while the others may still be writing).
fn note_partial_write(message: &mut String, lines: usize) {
    if !message.starts_with("partial write") {
        return;
    }
    let dropped = message.rsplit_once("dropped=").and_then(|(_, n)| {
        n.trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse::<usize>()
            .ok()
    });
    let note = match dropped {
        Some(n) if n >= lines => " (no line of the request was stored)".to_string(),
        Some(n) => format!(
            " (influxdb stores the other {} lines of the request)",
            lines - n
        ),
        None => " (influxdb may store other lines of the request)".to_string(),
    };
    message.push_str(&note);
}

/// The first line of a server message, at most [`MAX_MESSAGE`] bytes (cut at a character
/// boundary, marked with `…`).
fn short(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("").trim_end();
    if line.len() <= MAX_MESSAGE {
        return line.to_string();
    }
    let mut cut = MAX_MESSAGE;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &line[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(api: InfluxApi) -> InfluxConfig {
        InfluxConfig {
            url: "http://influx.example:8086".into(),
            api,
            database: Some("md".into()),
            org: Some("acme & co".into()),
            bucket: Some("bars/autogen".into()),
            username: None,
            password_env: None,
            token_env: None,
            retention_policy: None,
            timeout_s: 7,
        }
    }

    fn client(c: &InfluxConfig) -> InfluxClient {
        InfluxClient::new(c, Format::Msgpack, 10_000).unwrap()
    }

    fn build(req: reqwest::RequestBuilder) -> reqwest::Request {
        req.build().unwrap()
    }

    #[test]
    fn v1_writes_and_queries_name_the_database_and_retention_policy() {
        let mut c = config(InfluxApi::V1);
        c.retention_policy = Some("five years".into());
        let cl = client(&c);
        let w = build(cl.write_request(b"x".to_vec()).unwrap());
        assert_eq!(w.method(), Method::POST);
        assert_eq!(
            w.url().as_str(),
            "http://influx.example:8086/write?db=md&rp=five+years&precision=s"
        );
        assert_eq!(w.timeout(), Some(&Duration::from_secs(7)));
        let q = build(cl.query_request("SELECT 1").unwrap());
        assert_eq!(
            q.url().as_str(),
            "http://influx.example:8086/query?db=md&rp=five+years&epoch=s&chunked=true&chunk_size=10000"
        );
        assert_eq!(q.headers()[ACCEPT], "application/x-msgpack");
        assert_eq!(
            q.body().and_then(|b| b.as_bytes()),
            Some(&b"q=SELECT+1"[..])
        );
        assert!(q.headers().get(AUTHORIZATION).is_none());
        assert_eq!(
            cl.location(),
            "http://influx.example:8086 (database md, retention policy five years)"
        );
    }

    #[test]
    fn v2_writes_to_the_bucket_and_queries_it_by_name() {
        let cl = client(&config(InfluxApi::V2));
        let w = build(cl.write_request(b"x".to_vec()).unwrap());
        assert_eq!(
            w.url().as_str(),
            "http://influx.example:8086/api/v2/write?org=acme+%26+co&bucket=bars%2Fautogen&precision=s"
        );
        let q = build(cl.query_request("SELECT 1").unwrap());
        assert_eq!(
            q.url().as_str(),
            "http://influx.example:8086/query?db=bars%2Fautogen&epoch=s&chunked=true&chunk_size=10000"
        );
        assert!(!cl.is_v1());
        let mut c = config(InfluxApi::V2);
        c.retention_policy = Some("rp".into());
        assert!(matches!(
            InfluxClient::new(&c, Format::Msgpack, 1),
            Err(ClientError::Config(_))
        ));
    }

    #[test]
    fn a_base_path_is_kept() {
        let mut c = config(InfluxApi::V1);
        c.url = "https://proxy.example/influx?x=1".into();
        let cl = client(&c);
        let p = build(cl.request(Method::GET, cl.endpoint("ping", &[]).unwrap()));
        assert_eq!(p.url().as_str(), "https://proxy.example/influx/ping");
    }

    fn client_with(c: &InfluxConfig, token: Option<&str>, password: Option<&str>) -> InfluxClient {
        let auth = auth_from(c, token.map(Secret::new), password.map(Secret::new)).unwrap();
        InfluxClient::with_auth(c, auth, Format::Msgpack, 10_000).unwrap()
    }

    #[test]
    fn token_auth_sends_a_sensitive_token_header() {
        let mut c = config(InfluxApi::V2);
        c.token_env = Some("DMS_INFLUX_TOKEN".into());
        c.username = Some("ignored".into());
        let cl = client_with(&c, Some("s3cr3t"), None);
        for req in [
            build(cl.write_request(b"x".to_vec()).unwrap()),
            build(cl.query_request("SELECT 1").unwrap()),
            build(cl.request(Method::GET, cl.endpoint("ping", &[]).unwrap())),
        ] {
            let h = &req.headers()[AUTHORIZATION];
            assert_eq!(h, "Token s3cr3t");
            assert!(h.is_sensitive());
        }
        let err = auth_from(&c, None, None).err().unwrap();
        assert_eq!(
            err.to_string(),
            "invalid configuration: environment variable DMS_INFLUX_TOKEN is not set"
        );
    }

    #[test]
    fn basic_auth_uses_the_username_and_password_from_the_environment() {
        let mut c = config(InfluxApi::V1);
        c.username = Some("dms".into());
        c.password_env = Some("DMS_INFLUX_PASSWORD".into());
        let cl = client_with(&c, None, Some("pa:ss"));
        let w = build(cl.write_request(b"x".to_vec()).unwrap());
        // base64("dms:pa:ss")
        assert_eq!(w.headers()[AUTHORIZATION], "Basic ZG1zOnBhOnNz");
        assert!(w.headers()[AUTHORIZATION].is_sensitive());
        assert!(auth_from(&c, None, None).is_err());
        // A username without password_env logs in with an empty password.
        c.password_env = None;
        let w = build(
            client_with(&c, None, None)
                .write_request(b"x".to_vec())
                .unwrap(),
        );
        assert_eq!(w.headers()[AUTHORIZATION], "Basic ZG1zOg==");
    }

    #[test]
    fn the_location_never_shows_credentials() {
        let mut c = config(InfluxApi::V1);
        c.url = "http://user:hunter2@influx.example:8086/".into();
        assert_eq!(
            client(&c).location(),
            "http://influx.example:8086 (database md)"
        );
    }

    #[test]
    fn bad_configurations_are_refused_before_anything_is_sent() {
        let mut c = config(InfluxApi::V1);
        c.database = None;
        assert!(InfluxClient::new(&c, Format::Msgpack, 1).is_err());
        let mut c = config(InfluxApi::V1);
        c.url = "ftp://x".into();
        assert!(InfluxClient::new(&c, Format::Msgpack, 1).is_err());
    }

    #[test]
    fn errors_map_to_what_callers_do_next() {
        let status = |s: u16| ClientError::Status {
            what: "write".into(),
            status: StatusCode::from_u16(s).unwrap(),
            message: "m".into(),
        };
        let kind = |e: ClientError| match StoreError::from(e) {
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Rejected { .. } => "rejected",
            StoreError::Corrupt { .. } => "corrupt",
        };
        assert_eq!(kind(status(400)), "rejected");
        assert_eq!(kind(status(401)), "rejected");
        assert_eq!(kind(status(404)), "rejected");
        assert_eq!(kind(status(413)), "rejected");
        assert_eq!(kind(status(408)), "unavailable");
        assert_eq!(kind(status(429)), "unavailable");
        assert_eq!(kind(status(500)), "unavailable");
        assert_eq!(kind(status(503)), "unavailable");
        assert_eq!(kind(status(302)), "corrupt");
        let decode = |source| ClientError::Decode {
            what: "query".into(),
            source,
        };
        assert_eq!(
            kind(decode(DecodeError::Server("database not found".into()))),
            "rejected"
        );
        assert_eq!(kind(decode(DecodeError::Malformed("x".into()))), "corrupt");
        let e = StoreError::from(status(400));
        assert_eq!(
            e.to_string(),
            "influxdb: rejected: write: 400 Bad Request: m"
        );
    }

    #[test]
    fn a_partial_write_says_how_many_lines_were_stored() {
        let note = |m: &str, lines| {
            let mut m = m.to_string();
            note_partial_write(&mut m, lines);
            m
        };
        let conflict = "partial write: field type conflict: input field \"volume\" on \
                        measurement \"bars\" is type float, already exists as type string dropped=1";
        assert_eq!(
            note(conflict, 5_000),
            format!("{conflict} (influxdb stores the other 4999 lines of the request)")
        );
        assert!(note(conflict, 1).ends_with("(no line of the request was stored)"));
        assert!(
            note("partial write: max-values-per-tag limit exceeded", 9)
                .ends_with("(influxdb may store other lines of the request)")
        );
        assert_eq!(
            note("database not found: \"x\"", 9),
            "database not found: \"x\""
        );
    }

    #[test]
    fn server_messages_are_cut_to_one_short_line() {
        assert_eq!(short("  database not found: x\n"), "database not found: x");
        assert_eq!(short("<html>\n<body>secret stuff</body>"), "<html>");
        let long = "é".repeat(MAX_MESSAGE);
        let cut = short(&long);
        assert!(cut.len() <= MAX_MESSAGE + '…'.len_utf8(), "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(short(""), "");
    }
}
