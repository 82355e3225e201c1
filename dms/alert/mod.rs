//! Alerts: turns events from the [`EventBus`] into messages on the channels of `alerts:`.
//!
//! # Flow
//! ```text
//!  EventBus ──▶ router task ──(per channel: events filter, thresholds, throttle)──▶ queue ──▶ channel task ──▶ webhook | slack | dingtalk | email
//! ```
//! - The **router** is the bus's one alert subscriber. For each channel it keeps the
//!   conditions currently raised ([`Condition`]): the first raise sends an alert; further raises
//!   within `throttle_s` are counted, not sent, and the first one after it sends a reminder
//!   with that count; a clear of a raised condition sends one recovery message; a clear of a
//!   condition that was never raised sends nothing. Measurements are raised or cleared against
//!   the channel's thresholds ([`classify`]). The router never waits on a channel: it hands
//!   each message to the channel's bounded queue with `try_send`, and a full queue (a channel
//!   down for a long time) drops the message with a warning.
//! - Each **channel task** delivers its queue in order, one message at a time, with a timeout
//!   per attempt and exponential backoff between attempts (`backon`) for transient failures
//!   (connection errors, timeouts, 429 and 5xx); a permanent failure (other 4xx) or the last
//!   retry gives the message up with an error log. A dead channel only delays itself.
//!
//! - The conditions raised on each channel are kept in `data_dir/alerts/raised.json`
//!   ([`RaisedFile`], rewritten whenever the set changes) and restored at start-up, so a
//!   condition raised before a restart or a crash is still resolved with one recovery message
//!   when it clears afterwards, and a condition still true is not announced twice.
//!
//! Secrets (hook URLs, the DingTalk secret, the SMTP password) are held as [`Secret`] and
//! never appear in logs or errors: channels are named `alerts[i] kind`, and HTTP errors are
//! stripped of their URL.

mod dingtalk;
mod email;
mod slack;
mod webhook;

pub use dingtalk::sign as dingtalk_sign;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{AlertConfig, AlertKind, AlertThresholds, Secret};
use crate::events::{Condition, Event, EventBus, EventKind, Signal};

/// Messages a channel may have waiting before new ones are dropped.
const QUEUE: usize = 256;

/// Whether a message reports trouble or its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

/// One message for a channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    pub status: Status,
    pub condition: Condition,
    /// The event that raised (or cleared) the condition.
    pub event: Event,
    /// Raises of this condition not sent since the previous message (throttled).
    pub suppressed: u64,
    pub at: DateTime<Utc>,
}

impl Notice {
    /// `[DMS] ALERT backup_lag b1` / `[DMS] RESOLVED backup_lag b1`.
    pub fn title(&self) -> String {
        let word = match self.status {
            Status::Firing => "ALERT",
            Status::Resolved => "RESOLVED",
        };
        format!("[DMS] {word} {}", self.condition)
    }

    /// What happened. A measurement that clears a condition (lag, staleness back under the
    /// channel's threshold) says so, since its numbers need not be zero.
    pub fn message(&self) -> String {
        let measured = matches!(
            self.event,
            Event::SeriesStale { .. } | Event::BackupLag { .. } | Event::CalendarEnding { .. }
        );
        if self.status == Status::Resolved && measured {
            format!("{}, within the alert threshold", self.event.describe())
        } else {
            self.event.describe()
        }
    }

    /// The title, what happened, and how often it repeated unsent.
    pub fn text(&self) -> String {
        let mut s = format!("{}: {}", self.title(), self.message());
        if self.suppressed > 0 {
            s.push_str(&format!(
                " (raised {} more time(s) since the last message)",
                self.suppressed
            ));
        }
        s
    }

    /// The JSON a `webhook` channel posts.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "source": "dms",
            "status": self.status,
            "event": self.condition.kind,
            "subject": self.condition.subject,
            "title": self.title(),
            "message": self.message(),
            "suppressed": self.suppressed,
            "at": self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "details": self.event,
        })
    }
}

/// Why one delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: connection refused or reset, timeout, 429, 5xx.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help: the receiver refused the message (4xx, bad signature).
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    pub fn is_transient(&self) -> bool {
        matches!(self, DeliveryError::Transient(_))
    }
}

/// Why the alert channels could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("{channel}: {reason}")]
    Channel { channel: String, reason: String },
}

/// A way of sending a [`Notice`].
#[async_trait]
trait Deliver: Send + Sync {
    async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError>;
}

/// Retry timing (the count is each channel's `retries`). Tests shorten it.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Counters of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelStats {
    /// `alerts[0] slack`.
    pub channel: String,
    /// Messages delivered.
    pub sent: u64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: u64,
    /// Messages given up after the last retry or a permanent failure.
    pub given_up: u64,
    /// Raises not sent because of `throttle_s`.
    pub suppressed: u64,
    /// Messages dropped because the channel's queue was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed_attempts: AtomicU64,
    given_up: AtomicU64,
    suppressed: AtomicU64,
    dropped: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The running alert channels. Dropping it stops them.
pub struct Alerts {
    channels: Vec<(String, Arc<Counters>)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Alerts {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Alerts {
    /// Builds every channel of `configs` and starts delivering the events of `bus` (from this
    /// call on). Fails, naming every channel that cannot be built, when a secret is missing
    /// or a URL does not parse.
    /// The conditions raised on each channel are kept under `state_dir` (see [`RaisedFile`]).
    pub fn start(
        configs: &[AlertConfig],
        bus: &EventBus,
        state_dir: &Path,
    ) -> Result<Alerts, Vec<AlertError>> {
        Alerts::start_inner(
            configs,
            bus,
            RetryPolicy::default(),
            Some(RaisedFile::new(state_dir)),
        )
    }

    /// Like [`Alerts::start`] with its own retry timing, keeping raised conditions under
    /// `state_dir` when given, in memory only otherwise.
    pub fn start_with(
        configs: &[AlertConfig],
        bus: &EventBus,
        retry: RetryPolicy,
        state_dir: Option<&Path>,
    ) -> Result<Alerts, Vec<AlertError>> {
        Alerts::start_inner(configs, bus, retry, state_dir.map(RaisedFile::new))
    }

    fn start_inner(
        configs: &[AlertConfig],
        bus: &EventBus,
        retry: RetryPolicy,
        state: Option<RaisedFile>,
    ) -> Result<Alerts, Vec<AlertError>> {
        let restored = state.as_ref().map(RaisedFile::load).unwrap_or_default();
        let mut errors = Vec::new();
        let mut routes = Vec::new();
        let mut tasks = Vec::new();
        let mut channels = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let label = format!("alerts[{i}] {}", c.kind.as_str());
            let deliver = match build(c) {
                Ok(d) => d,
                Err(reason) => {
                    errors.push(AlertError::Channel {
                        channel: label,
                        reason,
                    });
                    continue;
                }
            };
            let counters = Arc::new(Counters::default());
            let (tx, rx) = mpsc::channel(QUEUE);
            tasks.push(tokio::spawn(deliver_queue(
                label.clone(),
                deliver,
                rx,
                counters.clone(),
                Delivery {
                    timeout: Duration::from_secs(c.timeout_s.max(1)),
                    retries: c.retries,
                    retry,
                },
            )));
            // Restored conditions count as sent now: a raise within the throttle is a repeat.
            let raised = restored
                .get(&label)
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c.clone(),
                        Raised {
                            last_sent: Instant::now(),
                            suppressed: 0,
                        },
                    )
                })
                .collect();
            routes.push(Route {
                label: label.clone(),
                events: c.events.clone(),
                thresholds: c.thresholds,
                throttle: Duration::from_secs(c.throttle_s),
                raised,
                tx,
                counters: counters.clone(),
            });
            channels.push((label, counters));
        }
        if !errors.is_empty() {
            for t in &tasks {
                t.abort();
            }
            return Err(errors);
        }
        let rx = bus.subscribe();
        tasks.push(tokio::spawn(route(rx, routes, state)));
        Ok(Alerts { channels, tasks })
    }

    /// Each channel's counters, in config order.
    pub fn stats(&self) -> Vec<ChannelStats> {
        self.channels
            .iter()
            .map(|(label, c)| ChannelStats {
                channel: label.clone(),
                sent: c.sent.load(Ordering::Relaxed),
                failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
                given_up: c.given_up.load(Ordering::Relaxed),
                suppressed: c.suppressed.load(Ordering::Relaxed),
                dropped: c.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }
}

fn build(c: &AlertConfig) -> Result<Arc<dyn Deliver>, String> {
    let timeout = Duration::from_secs(c.timeout_s.max(1));
    let url = || -> Result<url::Url, String> {
        let u = c.resolved_url().ok_or_else(|| match &c.url_env {
            Some(var) => format!("environment variable {var} is not set"),
            None => "url or url_env is required".to_string(),
        })?;
        url::Url::parse(u.expose()).map_err(|_| "the url is not a URL".to_string())
    };
    let client = || {
        reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    };
    Ok(match c.kind {
        AlertKind::Webhook => Arc::new(webhook::Webhook::new(client()?, url()?)),
        AlertKind::Slack => Arc::new(slack::Slack::new(client()?, url()?)),
        AlertKind::Dingtalk => {
            let secret = match &c.secret_env {
                Some(var) => Some(
                    c.secret()
                        .ok_or_else(|| format!("environment variable {var} is not set"))?,
                ),
                None => None,
            };
            Arc::new(dingtalk::Dingtalk::new(client()?, url()?, secret))
        }
        AlertKind::Email => {
            let password: Option<Secret> = match &c.password_env {
                Some(var) => Some(
                    c.password()
                        .ok_or_else(|| format!("environment variable {var} is not set"))?,
                ),
                None => None,
            };
            Arc::new(email::Email::new(c, password, timeout)?)
        }
    })
}

/// Raises or clears an event's condition against a channel's thresholds.
pub fn classify(event: &Event, t: &AlertThresholds) -> Signal {
    let raise = match event {
        Event::BackupLag {
            changes, seconds, ..
        } => *changes > t.backup_lag_changes || *seconds > t.backup_lag_seconds,
        Event::SeriesStale { stale } => stale
            .iter()
            .any(|s| s.count > 0 && s.max_overdue_s >= t.stale_after_s),
        Event::CalendarEnding { days_left, .. } => *days_left <= i64::from(t.calendar_ending_days),
        other => return other.signal(),
    };
    if raise { Signal::Raise } else { Signal::Clear }
}

/// A channel as the router sees it.
struct Route {
    label: String,
    events: Vec<EventKind>,
    thresholds: AlertThresholds,
    throttle: Duration,
    /// Conditions raised on this channel: when the last message went, and raises since.
    raised: HashMap<Condition, Raised>,
    tx: mpsc::Sender<Notice>,
    counters: Arc<Counters>,
}

struct Raised {
    last_sent: Instant,
    suppressed: u64,
}

impl Route {
    /// Offers `event` to the channel: queues the message it calls for, if any. Returns
    /// whether the set of raised conditions changed.
    #[cfg(test)]
    fn offer(&mut self, event: &Event) -> bool {
        match self.decide(event) {
            Some((notice, changed)) => {
                self.send(notice);
                changed
            }
            None => false,
        }
    }

    /// What `event` calls for on this channel: the message, and whether the set of raised
    /// conditions changed. Updates the raised set; sends nothing.
    fn decide(&mut self, event: &Event) -> Option<(Notice, bool)> {
        if !self.events.contains(&event.kind()) {
            return None;
        }
        let condition = event.condition();
        let now = Instant::now();
        let status = match classify(event, &self.thresholds) {
            Signal::Raise => match self.raised.get_mut(&condition) {
                None => {
                    self.raised.insert(
                        condition.clone(),
                        Raised {
                            last_sent: now,
                            suppressed: 0,
                        },
                    );
                    (Status::Firing, 0, true)
                }
                Some(r) if now.duration_since(r.last_sent) >= self.throttle => {
                    let n = r.suppressed;
                    r.last_sent = now;
                    r.suppressed = 0;
                    (Status::Firing, n, false)
                }
                Some(r) => {
                    r.suppressed += 1;
                    bump(&self.counters.suppressed);
                    return None;
                }
            },
            Signal::Clear => match self.raised.remove(&condition) {
                Some(r) => (Status::Resolved, r.suppressed, true),
                None => return None,
            },
        };
        let notice = Notice {
            status: status.0,
            condition,
            event: event.clone(),
            suppressed: status.1,
            at: Utc::now(),
        };
        Some((notice, status.2))
    }

    fn send(&self, notice: Notice) {
        if let Err(e) = self.tx.try_send(notice) {
            bump(&self.counters.dropped);
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "channel stopped",
            };
            tracing::warn!(channel = %self.label, why, "alert dropped");
        }
    }
}

/// The router: never awaits anything but the next event, so the bus queue stays short.
async fn route(
    mut rx: mpsc::UnboundedReceiver<Event>,
    mut routes: Vec<Route>,
    state: Option<RaisedFile>,
) {
    while let Some(event) = rx.recv().await {
        let mut changed = false;
        let mut notices = Vec::new();
        for (i, r) in routes.iter_mut().enumerate() {
            if let Some((notice, c)) = r.decide(&event) {
                changed |= c;
                notices.push((i, notice));
            }
        }
        // Saved before anything is sent: a message delivered is a condition on disk.
        if changed && let Some(f) = &state {
            f.save(&routes);
        }
        for (i, notice) in notices {
            routes[i].send(notice);
        }
    }
}

/// The raised conditions of every channel, on disk: `{"channels": {"alerts[0] webhook":
/// [{"event": "series_stale", "subject": ""}]}}`. Written to a temporary file and renamed,
/// so a crash leaves the old set or the new one. A file that cannot be read or parsed is
/// logged and treated as empty (the worst outcome is a recovery message never sent).
pub struct RaisedFile {
    path: PathBuf,
}

#[derive(Serialize, serde::Deserialize, Default)]
struct RaisedDoc {
    channels: BTreeMap<String, Vec<RaisedEntry>>,
}

#[derive(Serialize, serde::Deserialize)]
struct RaisedEntry {
    event: String,
    subject: String,
}

impl RaisedFile {
    pub fn new(dir: &Path) -> RaisedFile {
        RaisedFile {
            path: dir.join("raised.json"),
        }
    }

    fn load(&self) -> HashMap<String, Vec<Condition>> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the raised alerts; starting with none");
                return HashMap::new();
            }
        };
        let Ok(doc) = serde_json::from_slice::<RaisedDoc>(&text) else {
            tracing::warn!(path = %self.path.display(), "the raised alerts file is not valid; starting with none");
            return HashMap::new();
        };
        doc.channels
            .into_iter()
            .map(|(label, entries)| {
                let conditions = entries
                    .into_iter()
                    .filter_map(|e| {
                        Some(Condition {
                            kind: e.event.parse().ok()?,
                            subject: e.subject,
                        })
                    })
                    .collect();
                (label, conditions)
            })
            .collect()
    }

    fn save(&self, routes: &[Route]) {
        let doc = RaisedDoc {
            channels: routes
                .iter()
                .map(|r| {
                    let mut entries: Vec<&Condition> = r.raised.keys().collect();
                    entries.sort();
                    let entries = entries
                        .into_iter()
                        .map(|c| RaisedEntry {
                            event: c.kind.as_str().to_string(),
                            subject: c.subject.clone(),
                        })
                        .collect();
                    (r.label.clone(), entries)
                })
                .collect(),
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).unwrap_or_default())?;
            std::fs::rename(&tmp, &self.path)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot save the raised alerts");
        }
    }
}

#[derive(Clone, Copy)]
struct Delivery {
    timeout: Duration,
    retries: u32,
    retry: RetryPolicy,
}

async fn deliver_queue(
    label: String,
    deliver: Arc<dyn Deliver>,
    mut rx: mpsc::Receiver<Notice>,
    counters: Arc<Counters>,
    d: Delivery,
) {
    while let Some(notice) = rx.recv().await {
        let attempt = || async {
            match tokio::time::timeout(d.timeout, deliver.deliver(&notice)).await {
                Ok(r) => r,
                Err(_) => Err(DeliveryError::Transient(format!(
                    "no answer within {}s",
                    d.timeout.as_secs()
                ))),
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(d.retry.min_backoff)
            .with_max_delay(d.retry.max_backoff)
            .with_max_times(d.retries as usize);
        let result = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(DeliveryError::is_transient)
            .notify(|e, wait| {
                bump(&counters.failed_attempts);
                tracing::warn!(channel = %label, error = %e, retry_in_ms = wait.as_millis() as u64, "alert delivery failed; retrying");
            })
            .await;
        match result {
            Ok(()) => {
                bump(&counters.sent);
                tracing::info!(channel = %label, alert = %notice.title(), "alert delivered");
            }
            Err(e) => {
                bump(&counters.failed_attempts);
                bump(&counters.given_up);
                tracing::error!(channel = %label, alert = %notice.title(), error = %e, "alert not delivered; given up");
            }
        }
    }
}

/// POSTs `body` as JSON; maps the outcome to a [`DeliveryError`] that never contains the URL.
/// Returns the response body of a 2xx answer.
async fn post_json(
    client: &reqwest::Client,
    url: url::Url,
    body: &serde_json::Value,
) -> Result<String, DeliveryError> {
    let resp = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| DeliveryError::Transient(describe(e)))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(text);
    }
    let mut msg = format!("http {}", status.as_u16());
    let snippet: String = text.chars().take(200).collect();
    if !snippet.trim().is_empty() {
        msg.push_str(": ");
        msg.push_str(snippet.trim());
    }
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        Err(DeliveryError::Transient(msg))
    } else {
        Err(DeliveryError::Permanent(msg))
    }
}

/// A reqwest error and its causes, without the URL (it may hold a token).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::StaleInterval;

    fn route_with(throttle: Duration) -> (Route, mpsc::Receiver<Notice>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Route {
                label: "test".into(),
                events: EventKind::ALL.to_vec(),
                thresholds: AlertThresholds::default(),
                throttle,
                raised: HashMap::new(),
                tx,
                counters: Arc::default(),
            },
            rx,
        )
    }

    fn lag(node: &str, changes: u64) -> Event {
        Event::BackupLag {
            node: node.into(),
            changes,
            seconds: 0,
        }
    }

    #[test]
    fn measurements_raise_only_past_the_thresholds() {
        let t = AlertThresholds {
            backup_lag_changes: 100,
            backup_lag_seconds: 60,
            stale_after_s: 600,
            calendar_ending_days: 30,
        };
        assert_eq!(classify(&lag("b1", 100), &t), Signal::Clear);
        assert_eq!(classify(&lag("b1", 101), &t), Signal::Raise);
        let slow = Event::BackupLag {
            node: "b1".into(),
            changes: 1,
            seconds: 61,
        };
        assert_eq!(classify(&slow, &t), Signal::Raise);
        let stale = |overdue| Event::SeriesStale {
            stale: vec![StaleInterval {
                interval: "1d".into(),
                count: 3,
                max_overdue_s: overdue,
            }],
        };
        assert_eq!(classify(&stale(599), &t), Signal::Clear);
        assert_eq!(classify(&stale(600), &t), Signal::Raise);
        let cal = |days_left| Event::CalendarEnding {
            market: "US".into(),
            table_end: "2026-12-31".parse().unwrap(),
            days_left,
        };
        assert_eq!(classify(&cal(31), &t), Signal::Clear);
        assert_eq!(classify(&cal(30), &t), Signal::Raise);
    }

    #[tokio::test(start_paused = true)]
    async fn repeats_within_the_throttle_are_counted_and_reported_with_the_next_message() {
        let (mut r, mut rx) = route_with(Duration::from_secs(600));
        for _ in 0..5 {
            r.offer(&lag("b1", 20_000));
        }
        r.offer(&lag("b2", 20_000));
        let first = rx.try_recv().unwrap();
        assert_eq!((first.status, first.suppressed), (Status::Firing, 0));
        assert_eq!(first.condition.subject, "b1");
        assert_eq!(rx.try_recv().unwrap().condition.subject, "b2");
        assert!(rx.try_recv().is_err());
        tokio::time::advance(Duration::from_secs(600)).await;
        r.offer(&lag("b1", 30_000));
        let reminder = rx.try_recv().unwrap();
        assert_eq!((reminder.status, reminder.suppressed), (Status::Firing, 4));
        assert!(
            reminder.text().contains("raised 4 more time(s)"),
            "{}",
            reminder.text()
        );
        // Below the threshold clears, once.
        r.offer(&lag("b1", 3));
        r.offer(&Event::BackupCaughtUp { node: "b1".into() });
        let ok = rx.try_recv().unwrap();
        assert_eq!(ok.status, Status::Resolved);
        assert_eq!(ok.title(), "[DMS] RESOLVED backup_lag b1");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_channel_ignores_events_it_did_not_ask_for() {
        let (mut r, mut rx) = route_with(Duration::from_secs(1));
        r.events = vec![EventKind::JobFailed];
        r.offer(&lag("b1", 20_000));
        assert!(rx.try_recv().is_err());
        r.offer(&Event::JobFailed {
            job_id: 3,
            task: "update".into(),
            message: "yahoo: 429".into(),
        });
        assert_eq!(
            rx.try_recv().unwrap().text(),
            "[DMS] ALERT job_failed update: job 3 (update) failed: yahoo: 429"
        );
    }

    #[tokio::test]
    async fn a_delivery_error_never_contains_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = url::Url::parse(&format!(
            "http://127.0.0.1:{port}/services/T0/B0/hunter2?access_token=hunter3"
        ))
        .unwrap();
        let e = post_json(&reqwest::Client::new(), url, &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e}");
        let text = e.to_string();
        assert!(
            !text.contains("hunter") && !text.contains(&port.to_string()),
            "{text}"
        );
        assert!(text.to_lowercase().contains("connect"), "{text}");
    }

    #[test]
    fn a_webhook_body_carries_the_condition_and_the_event() {
        let n = Notice {
            status: Status::Firing,
            condition: lag("b1", 5).condition(),
            event: lag("b1", 5),
            suppressed: 0,
            at: "2026-03-09T21:30:00Z".parse().unwrap(),
        };
        let v = n.to_json();
        assert_eq!(v["status"], "firing");
        assert_eq!(v["event"], "backup_lag");
        assert_eq!(v["subject"], "b1");
        assert_eq!(v["at"], "2026-03-09T21:30:00Z");
        assert_eq!(v["details"]["changes"], 5);
    }
}
