//! The Futu OpenD source: historical K-lines over OpenD's binary TCP protocol.
//!
//! # Layout
//! - `frame.rs`: the 44-byte header, body-length cap and SHA-1 check.
//! - `proto.rs`: hand-written prost messages for the protocols used (1001–1004, 3103, 3104).
//! - `client.rs`: the connection (a task owning the socket; InitConnect, keepalive, serials,
//!   reply matching, reconnect).
//! - `error.rs`: `retType`/`retMsg` refusals classified into [`SourceError`]s.
//! - `quota.rs`: the distinct-securities history quota (3104).
//! - `parse.rs`: K-lines to domain bars, and the request window.
//! - this file: [`FutuSource`], the [`Source`] tying them together with the [`SourceGate`].
//!
//! # A download
//! [`FetchRequest`] → Futu code (`FetchRequest::futu_code` or [`Symbol::futu_code`]) and
//! `KLType` (an interval OpenD does not serve, `2m`, is refused before anything is sent) → the
//! quota is checked if the security is new → Qot_RequestHistoryKL pages of at most 1000 bars,
//! resent with `nextReqKey` until OpenD stops sending one — but never more pages than the range
//! can fill ([`page_limit`]): an OpenD that keeps sending keys fails the download with an error
//! instead of paging forever. Every page goes through the shared
//! [`SourceGate`], but only the first page of each security counts against the rate limit
//! (`requests_per_30s`, 60 per 30 s by default), as OpenD counts them. Each reply becomes one
//! [`Page`], so memory stays bounded whatever the range.
//!
//! # Time labelling (the decision, and why)
//! DESIGN §1 stamps intraday bars at their **start** instant and daily and longer bars at
//! 00:00 UTC of their session date. Futu's K-line `time` is market-local wall time (Beijing
//! time for HK and A-shares, US Eastern for US, per the 3103 docs). For daily and longer bars it
//! is the session date at `00:00:00`, so DMS takes its date. For intraday bars the evidence is
//! that `time` labels the bar's **end**: the official HK sample's `09:30:00` 1-minute bar has
//! O = H = L = C, which only makes sense as the opening-auction print (HK's auction matches
//! before 09:30 and continuous trading starts at 09:30), and Chinese vendors conventionally label
//! minute bars 09:31 … 11:30, 13:01 … 15:00. So DMS stamps an intraday bar at `time − interval`,
//! with two refinements that keep every stamp inside the session:
//! - a bar never starts before the previous bar's end (the HK hourly bar labelled 12:00 covers
//!   11:30–12:00 and is stamped 11:30, as Yahoo stamps it);
//! - a bar ending at or after the regular open (09:30 in HK, SH, SZ and US) never starts before
//!   it. The auction bar labelled 09:30 therefore lands on 09:30, the stamp of the first
//!   continuous minute, and the two are **merged** (auction open, extreme high/low, first
//!   minute's close, summed volume). Folding is preferred over dropping (the auction volume is
//!   real and the day's open is the auction price — Yahoo's first bar also opens at it) and over
//!   keeping it as a separate bar (it would sit at 09:29, outside the session, where validation
//!   and gap detection would trip on it). When no continuous bar follows (a halt right after the
//!   auction), the auction bar is kept on its own at 09:30.
//!
//! The end-labelling is UNCONFIRMED against a live OpenD (research §3.3/§8). If it proves wrong,
//! only `parse::KLineParser::stamp` changes. Each K-line's `timestamp` is compared with its
//! converted `time` and a disagreement is logged, so a wrong time-zone assumption shows up in
//! the logs of the first real download.

mod client;
mod error;
mod frame;
mod parse;
mod proto;
mod quota;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

pub use quota::QuotaStatus;

use self::client::{CallError, Client, ClientConfig};
use self::error::RefusalKind;
use self::parse::KLineParser;
use self::proto::{
    KL_FIELDS_ALL, common::Security, global_state, history_kl, history_kl_quota, kl_type,
    qot_market, rehab_type,
};
use self::quota::{Admission, QuotaTracker, Refresh};
use super::gate::{GatePolicy, SourceGate, SourceStatus};
use super::ratelimit::RateLimiter;
use super::{FetchRequest, Page, PageStream, Source, SourceError};
use crate::config::{FutuConfig, Rehab};
use crate::domain::{Interval, Market, SourceKind, Symbol, TimeRange};

/// Bars asked per page; OpenD's documented maximum for one reply.
const PAGE_SIZE: i32 = 1000;
/// InitConnect `clientVer`: what the official SDK (3.x protocol) sends.
const CLIENT_VER: i32 = 300;
/// Pages in a row that bring no K-lines but still a `nextReqKey` before DMS gives up.
const MAX_EMPTY_PAGES: u32 = 16;

/// The most pages a download of `range` may take: the most bars the range could hold for the
/// interval — every minute of every day for intraday bars (sessions are far shorter), the end
/// widened as [`parse::request_window`] widens it, nothing after `now` + 1 day — at
/// [`PAGE_SIZE`] a page, plus a quarter and four pages of slack for short pages.
fn page_limit(interval: Interval, range: TimeRange, now: i64) -> u32 {
    let widen = match interval {
        Interval::W1 => 6 * 86_400,
        Interval::Mo1 => 31 * 86_400,
        _ => 0,
    };
    let start = range.start().max(0);
    let end = range.end().min(now.saturating_add(86_400));
    let span = end.saturating_sub(start).max(0).saturating_add(widen);
    let bars = (span / interval.nominal_secs()).unsigned_abs() + 2;
    let pages = bars.div_ceil(PAGE_SIZE as u64);
    u32::try_from(pages + pages / 4 + 4).unwrap_or(u32::MAX)
}

/// The Futu OpenD source. Build one per process and share it: it owns the connection to
/// OpenD, the rate limiter every job shares, and the quota bookkeeping. Its connection task is
/// spawned on the Tokio runtime of its first request and lives as long as the source.
pub struct FutuSource {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    gate: SourceGate,
    rehab: Rehab,
    quota: QuotaTracker,
}

impl FutuSource {
    /// A source for the OpenD at `cfg.host:cfg.port`, with the gate its config describes: at
    /// most `requests_per_30s` first pages in any 30 s, `max_retries` retries, a pause after
    /// `pause_after_refusals` refusals. Nothing connects until the first request.
    pub fn new(cfg: &FutuConfig) -> FutuSource {
        let gate = SourceGate::new(
            SourceKind::Futu,
            RateLimiter::new(cfg.requests_per_30s, Duration::from_secs(30)),
            GatePolicy {
                max_retries: cfg.max_retries,
                min_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(60),
                pause_after: cfg.pause_after_refusals,
                pause_for: Duration::from_secs(cfg.pause_s),
            },
        );
        let client = Client::new(ClientConfig {
            host: cfg.host.clone(),
            port: cfg.port,
            timeout: Duration::from_secs(cfg.timeout_s.max(1)),
            client_id: format!("dms-{}", std::process::id()),
            client_ver: CLIENT_VER,
        });
        FutuSource {
            inner: Arc::new(Inner {
                client,
                gate,
                rehab: cfg.rehab,
                quota: QuotaTracker::default(),
            }),
        }
    }

    /// The gate (rate limiter, retries, pause) every request goes through.
    pub fn gate(&self) -> &SourceGate {
        &self.inner.gate
    }

    /// The history quota as last checked, `None` before the first check.
    pub fn quota(&self) -> Option<QuotaStatus> {
        self.inner.quota.status()
    }

    /// Asks OpenD for the history quota now (3104) and returns it.
    pub async fn check_quota(&self) -> Result<QuotaStatus, SourceError> {
        self.inner.refresh_quota().await?;
        self.inner
            .quota
            .status()
            .ok_or_else(|| SourceError::Remote {
                src: SourceKind::Futu,
                message: "quota check recorded nothing".into(),
            })
    }
}

impl Inner {
    async fn refresh_quota(&self) -> Result<(), SourceError> {
        let s2c = self
            .gate
            .call(false, || async {
                self.client
                    .call::<history_kl_quota::Proto>(|_| history_kl_quota::C2s {
                        b_get_detail: Some(true),
                        header: None,
                    })
                    .await
                    .map(|(s2c, _)| s2c)
                    .map_err(|e| e.into_source_error(None))
            })
            .await?;
        self.quota.update(&s2c, chrono::Utc::now().timestamp());
        Ok(())
    }

    /// Checks the quota before the first page of a security. When several downloads need a
    /// check at once, one asks OpenD and the others wait for its answer.
    async fn admit(&self, code: &str) -> Result<(), SourceError> {
        let mut fresh = false;
        // At most: wait for another caller's check, make one's own, decide.
        for _ in 0..4 {
            match self.quota.admit(code, fresh) {
                Admission::Admitted => return Ok(()),
                Admission::Refused(e) => return Err(e),
                Admission::Refresh => match self.quota.begin_refresh() {
                    Refresh::Lead(_guard) => {
                        self.refresh_quota().await?;
                        fresh = true;
                    }
                    Refresh::Follow(mut done) => {
                        let _ = done.changed().await;
                        fresh = true;
                    }
                },
            }
        }
        Err(SourceError::transient(
            SourceKind::Futu,
            format!("history quota check for {code} did not settle"),
        ))
    }

    /// One page of 3103.
    async fn page(
        &self,
        target: &Target,
        c2s: &history_kl::C2s,
        counted: bool,
    ) -> Result<history_kl::S2c, SourceError> {
        self.gate
            .call(counted, || async {
                let c2s = c2s.clone();
                match self.client.call::<history_kl::Proto>(move |_| c2s).await {
                    Ok((s2c, _)) => Ok(s2c),
                    Err(CallError::Refused(r)) => {
                        match r.kind() {
                            RefusalKind::QuotaExhausted => {
                                self.quota.mark_exhausted(chrono::Utc::now().timestamp())
                            }
                            RefusalKind::RateLimited => tracing::warn!(
                                source = "futu",
                                code = %target.code,
                                ret_msg = %r.ret_msg,
                                "opend refused for rate"
                            ),
                            _ => {}
                        }
                        Err(r.into_error(Some(target.symbol.as_str())))
                    }
                    Err(CallError::Failed(e)) => Err(e),
                }
            })
            .await
    }
}

/// A Futu code split into OpenD's `Security`.
#[derive(Debug, Clone, PartialEq)]
struct FutuCode {
    /// `HK.00700`, for logs, errors and the quota.
    display: String,
    security: Security,
    market: Market,
}

impl FutuCode {
    fn parse(code: &str) -> Result<FutuCode, String> {
        let (prefix, rest) = code
            .split_once('.')
            .filter(|(_, rest)| !rest.is_empty())
            .ok_or_else(|| format!("futu code {code:?} is not of the form MARKET.CODE"))?;
        let (market_id, market) = match prefix {
            "HK" => (qot_market::HK_SECURITY, Market::Hk),
            "US" => (qot_market::US_SECURITY, Market::Us),
            "SH" => (qot_market::CNSH_SECURITY, Market::Sh),
            "SZ" => (qot_market::CNSZ_SECURITY, Market::Sz),
            _ => {
                return Err(format!(
                    "futu code {code:?} names an unsupported market (expected HK, US, SH or SZ)"
                ));
            }
        };
        Ok(FutuCode {
            display: code.to_string(),
            security: Security {
                market: market_id,
                code: rest.to_string(),
            },
            market,
        })
    }
}

impl std::fmt::Display for FutuCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// OpenD's K-line type for an interval; `None` for intervals it does not serve.
fn kl_type_of(interval: Interval) -> Option<i32> {
    Some(match interval {
        Interval::M1 => kl_type::MIN_1,
        Interval::M5 => kl_type::MIN_5,
        Interval::M15 => kl_type::MIN_15,
        Interval::M30 => kl_type::MIN_30,
        Interval::H1 => kl_type::MIN_60,
        Interval::D1 => kl_type::DAY,
        Interval::W1 => kl_type::WEEK,
        Interval::Mo1 => kl_type::MONTH,
        Interval::M2 => return None,
    })
}

fn rehab_type_of(r: Rehab) -> i32 {
    match r {
        Rehab::None => rehab_type::NONE,
        Rehab::Forward => rehab_type::FORWARD,
        Rehab::Backward => rehab_type::BACKWARD,
    }
}

/// Everything one download needs, worked out before anything is sent.
#[derive(Debug)]
struct Target {
    symbol: Symbol,
    interval: Interval,
    code: FutuCode,
    market: Market,
    range: TimeRange,
    now: i64,
    /// The first page's request; later pages add `nextReqKey`.
    request: history_kl::C2s,
    /// [`page_limit`] of the range.
    max_pages: u32,
}

impl Target {
    /// `Ok(None)` when the range holds nothing OpenD could be asked for.
    fn plan(req: &FetchRequest, rehab: Rehab) -> Result<Option<Target>, SourceError> {
        let invalid = |message: String| SourceError::InvalidRequest {
            src: SourceKind::Futu,
            message,
        };
        let symbol = req.series.symbol.clone();
        let interval = req.series.interval;
        let kl_type = kl_type_of(interval).ok_or_else(|| {
            invalid(format!(
                "interval {interval} is not served by opend (use 1m, 5m, 15m, 30m, 1h, 1d, 1wk or 1mo)"
            ))
        })?;
        let code = match &req.futu_code {
            Some(c) => c.clone(),
            None => symbol.futu_code().ok_or_else(|| {
                invalid(format!(
                    "symbol {symbol} has no futu code by rule; set futu_code in its universe entry"
                ))
            })?,
        };
        let code = FutuCode::parse(&code).map_err(invalid)?;
        let market = req.market.unwrap_or(code.market);
        let Some((begin_time, end_time)) =
            parse::request_window(interval, market.timezone(), req.range)
        else {
            return Ok(None);
        };
        let request = history_kl::C2s {
            rehab_type: rehab_type_of(rehab),
            kl_type,
            security: code.security.clone(),
            begin_time,
            end_time,
            max_ack_kl_num: Some(PAGE_SIZE),
            need_kl_fields_flag: Some(KL_FIELDS_ALL),
            next_req_key: None,
            extended_time: None,
            session: None,
            header: None,
        };
        Ok(Some(Target {
            symbol,
            interval,
            code,
            market,
            range: req.range,
            now: req.now,
            request,
            max_pages: page_limit(interval, req.range, req.now),
        }))
    }
}

/// Where a download is between two pages.
struct Paging {
    inner: Arc<Inner>,
    target: Arc<Target>,
    parser: KLineParser,
    /// `None` before the first page.
    next_key: Option<Vec<u8>>,
    pages: u32,
    empty_pages_in_a_row: u32,
    /// Start of the span the next page answers.
    cursor: i64,
    done: bool,
}

impl Paging {
    async fn next_page(mut self) -> Result<Option<(Page, Paging)>, SourceError> {
        if self.done {
            return Ok(None);
        }
        let t = self.target.clone();
        let first = self.pages == 0;
        if first {
            self.inner.admit(&t.code.display).await?;
        }
        if self.pages >= t.max_pages {
            tracing::warn!(
                source = "futu",
                symbol = %t.symbol,
                interval = %t.interval,
                code = %t.code,
                pages = self.pages,
                "opend keeps paging past what the range can hold; giving up"
            );
            return Err(SourceError::Remote {
                src: SourceKind::Futu,
                message: format!(
                    "paging for {} {} did not end after {} pages, more than {}..{} can hold: opend keeps sending nextReqKey",
                    t.code,
                    t.interval,
                    self.pages,
                    crate::domain::time::rfc3339(t.range.start()),
                    crate::domain::time::rfc3339(t.range.end()),
                ),
            });
        }
        let mut c2s = t.request.clone();
        c2s.next_req_key = self.next_key.clone();
        let s2c = self.inner.page(&t, &c2s, first).await?;
        self.pages += 1;
        let remote = |message: String| SourceError::Remote {
            src: SourceKind::Futu,
            message,
        };
        if s2c.security != t.code.security {
            return Err(remote(format!(
                "asked for {} but the reply is for {}",
                t.code,
                quota::code_of(&s2c.security)
            )));
        }
        let next_key = s2c.next_req_key.filter(|k| !k.is_empty());
        if next_key.is_some() && next_key == self.next_key {
            return Err(remote(format!(
                "paging for {} did not advance (the same nextReqKey twice)",
                t.code
            )));
        }
        if s2c.kl_list.is_empty() && next_key.is_some() {
            self.empty_pages_in_a_row += 1;
            if self.empty_pages_in_a_row > MAX_EMPTY_PAGES {
                return Err(remote(format!(
                    "paging for {} returned {MAX_EMPTY_PAGES} empty pages in a row",
                    t.code
                )));
            }
        } else {
            self.empty_pages_in_a_row = 0;
        }
        let parse_started = std::time::Instant::now();
        let mut parsed = self
            .parser
            .page(&s2c.kl_list)
            .map_err(|e| remote(format!("{} {}: {e}", t.code, t.interval)))?;
        let last = next_key.is_none();
        if last {
            self.parser.finish(&mut parsed);
        }
        // The span this page answers: up to its last bar, or the whole rest on the last page.
        let until = if last {
            Some(t.range.end())
        } else {
            parsed.bars.last().map(|b| b.ts + 1)
        };
        let range = until.and_then(|end| TimeRange::new(self.cursor, end).ok());
        if let Some(r) = range {
            self.cursor = r.end();
        }
        tracing::debug!(
            source = "futu",
            symbol = %t.symbol,
            interval = %t.interval,
            code = %t.code,
            page = self.pages,
            klines = s2c.kl_list.len(),
            bars = parsed.bars.len(),
            more = !last,
            "k-line page"
        );
        self.next_key = next_key;
        self.done = last;
        let page = Page {
            range,
            bars: parsed.bars,
            actions: Vec::new(),
            dropped: parsed.dropped,
            parse_time: parse_started.elapsed(),
        };
        Ok(Some((page, self)))
    }
}

#[async_trait::async_trait]
impl Source for FutuSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Futu
    }

    fn fetch(&self, req: FetchRequest) -> PageStream {
        let target = match Target::plan(&req, self.inner.rehab) {
            Ok(Some(t)) => t,
            Ok(None) => return futures::stream::empty().boxed(),
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        let paging = Paging {
            inner: self.inner.clone(),
            parser: KLineParser::new(target.interval, target.market, target.range, target.now),
            cursor: target.range.start(),
            target: Arc::new(target),
            next_key: None,
            pages: 0,
            empty_pages_in_a_row: 0,
            done: false,
        };
        futures::stream::try_unfold(paging, Paging::next_page).boxed()
    }

    /// GetGlobalState: OpenD's version, quote login and program status, plus the history
    /// quota. Not logged in to quotes, or not ready, is an error. A successful ping lifts a
    /// pause.
    async fn ping(&self) -> Result<String, SourceError> {
        let (s2c, conn) = self
            .inner
            .client
            .call::<global_state::Proto>(|info| global_state::C2s {
                user_id: info.login_user_id,
            })
            .await
            .map_err(|e| e.into_source_error(None))?;
        let version = format!(
            "{}.{}.{}",
            s2c.server_ver / 100,
            s2c.server_ver % 100,
            s2c.server_build_no
        );
        let status = s2c.program_status.as_ref().map(|p| p.r#type);
        let status_name = status.map_or("not reported", proto::program_status_name);
        tracing::info!(
            source = "futu",
            server_ver = %version,
            conn_id = conn.conn_id,
            qot_logined = s2c.qot_logined,
            program_status = status_name,
            "opend global state"
        );
        let refuse = |why: &str| SourceError::Remote {
            src: SourceKind::Futu,
            message: format!("opend {version} {why} (program status: {status_name})"),
        };
        if !s2c.qot_logined {
            return Err(refuse("is not logged in to quotes"));
        }
        if status.is_some_and(|s| s != proto::PROGRAM_STATUS_READY) {
            return Err(refuse("is not ready"));
        }
        self.inner.gate.resume();
        let quota = match self.check_quota().await {
            Ok(q) => format!("history quota {} used, {} remaining", q.used, q.remaining),
            Err(e) => format!("history quota unknown ({e})"),
        };
        Ok(format!(
            "opend {version}, connection {}, quotes logged in, {status_name}, {quota}",
            conn.conn_id
        ))
    }

    fn attach_events(&self, bus: crate::events::EventBus) {
        self.gate().attach_events(bus);
    }

    fn remember_requests(&self, dir: &std::path::Path) {
        let path = dir.join(format!("{}.window", self.kind()));
        if let Err(e) = self.gate().limiter().remember(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep the rate-limit window across restarts");
        }
    }

    fn status(&self) -> SourceStatus {
        self.inner.gate.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SeriesKey;
    use crate::domain::time::parse_instant;

    fn req(symbol: &str, interval: Interval) -> FetchRequest {
        FetchRequest {
            series: SeriesKey::new(Symbol::parse(symbol).unwrap(), interval),
            range: TimeRange::new(
                parse_instant("2024-01-02").unwrap(),
                parse_instant("2024-01-05").unwrap(),
            )
            .unwrap(),
            market: None,
            futu_code: None,
            now: parse_instant("2025-01-01").unwrap(),
        }
    }

    #[test]
    fn maps_every_interval_but_2m_to_a_kl_type() {
        let got: Vec<Option<i32>> = Interval::ALL.into_iter().map(kl_type_of).collect();
        assert_eq!(
            got,
            [
                Some(1),
                None,
                Some(6),
                Some(7),
                Some(8),
                Some(9),
                Some(2),
                Some(3),
                Some(4)
            ]
        );
    }

    #[test]
    fn plans_the_request_the_sdk_would_send() {
        let t = Target::plan(&req("0700.HK", Interval::D1), Rehab::Forward)
            .unwrap()
            .unwrap();
        assert_eq!(t.code.display, "HK.00700");
        assert_eq!(t.market, Market::Hk);
        let r = &t.request;
        assert_eq!((r.rehab_type, r.kl_type), (1, 2));
        assert_eq!(
            r.security,
            Security {
                market: 1,
                code: "00700".into()
            }
        );
        assert_eq!(
            (r.begin_time.as_str(), r.end_time.as_str()),
            ("2024-01-02 00:00:00", "2024-01-04 23:59:59")
        );
        assert_eq!(r.max_ack_kl_num, Some(1000));
    }

    #[test]
    fn the_page_limit_covers_the_range_with_slack_and_stays_finite() {
        let range = |a: &str, b: &str| {
            TimeRange::new(parse_instant(a).unwrap(), parse_instant(b).unwrap()).unwrap()
        };
        let now = parse_instant("2025-01-01").unwrap();
        // Three days of daily bars fit one page.
        assert_eq!(
            page_limit(Interval::D1, range("2024-01-02", "2024-01-05"), now),
            5
        );
        // Ten years of minutes: 5,258,880 minutes, 5,259 pages, plus a quarter and four.
        let ten_years = range("2014-01-01", "2024-01-01");
        assert_eq!(page_limit(Interval::M1, ten_years, now), 6_577);
        // A range reaching far past now counts only up to now; TimeRange::ALL is finite.
        assert_eq!(
            page_limit(Interval::D1, range("2024-01-01", "2224-01-01"), now),
            page_limit(Interval::D1, range("2024-01-01", "2025-01-02"), now)
        );
        assert!(page_limit(Interval::M1, TimeRange::ALL, now) < 100_000);
    }

    #[test]
    fn refuses_what_opend_cannot_serve_before_sending() {
        let e = Target::plan(&req("AAPL", Interval::M2), Rehab::None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "futu: invalid request: interval 2m is not served by opend (use 1m, 5m, 15m, 30m, 1h, 1d, 1wk or 1mo)"
        );
        let e = Target::plan(&req("BTC-USD", Interval::D1), Rehab::None).unwrap_err();
        assert!(matches!(e, SourceError::InvalidRequest { .. }), "{e}");
        let mut r = req("AAPL", Interval::D1);
        r.futu_code = Some("JP.7203".into());
        let e = Target::plan(&r, Rehab::None).unwrap_err();
        assert!(e.to_string().contains("unsupported market"), "{e}");
        r.futu_code = Some("US.BRK.B".into());
        let t = Target::plan(&r, Rehab::None).unwrap().unwrap();
        assert_eq!(t.request.security.code, "BRK.B");
    }
}
