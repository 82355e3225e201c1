//! The event bus: what jobs, sources, replication and gap checks publish, and alerts consume.
//!
//! Publishers know nothing about alerts: they call [`EventBus::publish`] with what they saw
//! (a job failed, a node is 1200 changes behind) and go on. `publish` never blocks and never
//! fails: it pushes the event onto one unbounded queue per subscriber, so a burst is never
//! lost (a `broadcast` channel would drop the oldest events of a subscriber that lags, and a
//! flood of one repeated event could push out the only report of another). Unbounded is safe
//! because the one subscriber in the service, the alert router, never waits on anything while
//! it drains its queue. With no subscriber an event is simply dropped.
//!
//! Every event concerns a *condition* ([`Event::condition`]): a kind of trouble
//! ([`EventKind`], the name used in `alerts[].events`) and what it is about (a node, a source,
//! a market, a task). An event either **raises** its condition (`BackupLag`, `JobFailed`) or
//! **clears** it (`BackupCaughtUp`, `JobSucceeded`) — [`Event::signal`]. Measurements such as
//! `BackupLag` carry their numbers and are raised or cleared against each channel's own
//! thresholds by the alert dispatcher, so a publisher may send them every time it measures.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The kinds of trouble an alert channel can subscribe to, by their config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    JobFailed,
    GapsOpen,
    SeriesStale,
    BackupLag,
    VerifyDiff,
    SourcePaused,
    CalendarEnding,
    PrimaryDown,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::JobFailed,
        EventKind::GapsOpen,
        EventKind::SeriesStale,
        EventKind::BackupLag,
        EventKind::VerifyDiff,
        EventKind::SourcePaused,
        EventKind::CalendarEnding,
        EventKind::PrimaryDown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::JobFailed => "job_failed",
            EventKind::GapsOpen => "gaps_open",
            EventKind::SeriesStale => "series_stale",
            EventKind::BackupLag => "backup_lag",
            EventKind::VerifyDiff => "verify_diff",
            EventKind::SourcePaused => "source_paused",
            EventKind::CalendarEnding => "calendar_ending",
            EventKind::PrimaryDown => "primary_down",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<EventKind, String> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown event {s:?} (expected one of {})", names.join(", "))
            })
    }
}

/// Stale series of one interval, as a freshness check counts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleInterval {
    /// `1d`, `1h`, ...
    pub interval: String,
    /// Series of this interval past their expected bar.
    pub count: u64,
    /// How long past its expected bar the most overdue one is, in seconds.
    pub max_overdue_s: u64,
}

/// Something a part of DMS saw. Serialized with an `event` tag (`{"event":"backup_lag",...}`):
/// that is the `details` of a webhook alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A job failed. `task` names what failed (e.g. `update` or `update us-after-market`): a
    /// later success of the same `task` clears it.
    JobFailed {
        job_id: u64,
        task: String,
        message: String,
    },
    JobSucceeded {
        job_id: u64,
        task: String,
    },
    /// Gaps still open after an update: how many, and some of the series (`AAPL 1d`).
    GapsOpen {
        count: u64,
        series: Vec<String>,
    },
    GapsClosed,
    /// Series past their expected bar, per interval.
    SeriesStale {
        stale: Vec<StaleInterval>,
    },
    SeriesFresh,
    /// A backup node's replication lag, as measured (raised against the thresholds).
    BackupLag {
        node: String,
        changes: u64,
        seconds: u64,
    },
    BackupCaughtUp {
        node: String,
    },
    /// A verify run found differences between the primary and a node.
    VerifyDiff {
        node: String,
        differences: u64,
    },
    VerifyClean {
        node: String,
    },
    /// A source stopped sending requests until `until` (repeated refusals).
    SourcePaused {
        source: String,
        until: DateTime<Utc>,
        reason: String,
    },
    SourceResumed {
        source: String,
    },
    /// A market's holiday table ends soon (or has ended: `days_left` ≤ 0).
    CalendarEnding {
        market: String,
        table_end: NaiveDate,
        days_left: i64,
    },
    CalendarOk {
        market: String,
    },
    /// The primary store does not answer its health check: writes go to the spool.
    PrimaryDown {
        store: String,
        error: String,
        /// Bars waiting in the spool when it was checked.
        spooled_bars: u64,
    },
    PrimaryUp {
        store: String,
    },
}

/// Whether an event raises or clears its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Raise,
    Clear,
}

/// What an alert is about: throttling and recovery are per condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Condition {
    pub kind: EventKind,
    /// The node, source, market or task concerned; empty for store-wide conditions.
    pub subject: String,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subject.is_empty() {
            f.write_str(self.kind.as_str())
        } else {
            write!(f, "{} {}", self.kind, self.subject)
        }
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.condition_parts().0
    }

    pub fn condition(&self) -> Condition {
        let (kind, subject) = self.condition_parts();
        Condition {
            kind,
            subject: subject.to_string(),
        }
    }

    fn condition_parts(&self) -> (EventKind, &str) {
        match self {
            Event::JobFailed { task, .. } | Event::JobSucceeded { task, .. } => {
                (EventKind::JobFailed, task)
            }
            Event::GapsOpen { .. } | Event::GapsClosed => (EventKind::GapsOpen, ""),
            Event::SeriesStale { .. } | Event::SeriesFresh => (EventKind::SeriesStale, ""),
            Event::BackupLag { node, .. } | Event::BackupCaughtUp { node } => {
                (EventKind::BackupLag, node)
            }
            Event::VerifyDiff { node, .. } | Event::VerifyClean { node } => {
                (EventKind::VerifyDiff, node)
            }
            Event::SourcePaused { source, .. } | Event::SourceResumed { source } => {
                (EventKind::SourcePaused, source)
            }
            Event::CalendarEnding { market, .. } | Event::CalendarOk { market } => {
                (EventKind::CalendarEnding, market)
            }
            Event::PrimaryDown { store, .. } | Event::PrimaryUp { store } => {
                (EventKind::PrimaryDown, store)
            }
        }
    }

    /// What the publisher says: raise or clear. Counts of zero clear (`GapsOpen { count: 0 }`);
    /// measurements against thresholds are left to the alert dispatcher.
    pub fn signal(&self) -> Signal {
        let raise = match self {
            Event::JobFailed { .. } | Event::SourcePaused { .. } | Event::PrimaryDown { .. } => {
                true
            }
            Event::GapsOpen { count, .. } => *count > 0,
            Event::SeriesStale { stale } => stale.iter().any(|s| s.count > 0),
            Event::BackupLag {
                changes, seconds, ..
            } => *changes > 0 || *seconds > 0,
            Event::VerifyDiff { differences, .. } => *differences > 0,
            Event::CalendarEnding { .. } => true,
            Event::JobSucceeded { .. }
            | Event::GapsClosed
            | Event::SeriesFresh
            | Event::BackupCaughtUp { .. }
            | Event::VerifyClean { .. }
            | Event::SourceResumed { .. }
            | Event::CalendarOk { .. }
            | Event::PrimaryUp { .. } => false,
        };
        if raise { Signal::Raise } else { Signal::Clear }
    }

    /// One line for a person.
    pub fn describe(&self) -> String {
        match self {
            Event::JobFailed {
                job_id,
                task,
                message,
            } => format!("job {job_id} ({task}) failed: {message}"),
            Event::JobSucceeded { job_id, task } => {
                format!("{task} succeeded again (job {job_id})")
            }
            Event::GapsOpen { count, series } => {
                let mut s = format!("{count} gap(s) still open after the update");
                if !series.is_empty() {
                    const SHOWN: usize = 10;
                    let shown: Vec<&str> = series.iter().take(SHOWN).map(String::as_str).collect();
                    s.push_str(": ");
                    s.push_str(&shown.join(", "));
                    if series.len() > SHOWN {
                        s.push_str(&format!(" and {} more", series.len() - SHOWN));
                    }
                }
                s
            }
            Event::GapsClosed => "no gaps open".to_string(),
            Event::SeriesStale { stale } => {
                let total: u64 = stale.iter().map(|s| s.count).sum();
                let parts: Vec<String> = stale
                    .iter()
                    .map(|s| {
                        format!(
                            "{}: {} (up to {} late)",
                            s.interval,
                            s.count,
                            human_secs(s.max_overdue_s)
                        )
                    })
                    .collect();
                format!(
                    "{total} series past their expected bar ({})",
                    parts.join(", ")
                )
            }
            Event::SeriesFresh => "every series has its expected bar".to_string(),
            Event::BackupLag {
                node,
                changes,
                seconds,
            } => format!(
                "backup node {node} is {changes} change(s) behind, oldest unshipped {} ago",
                human_secs(*seconds)
            ),
            Event::BackupCaughtUp { node } => format!("backup node {node} caught up"),
            Event::VerifyDiff { node, differences } => {
                format!("verify found {differences} difference(s) on node {node}")
            }
            Event::VerifyClean { node } => format!("verify found node {node} identical"),
            Event::SourcePaused {
                source,
                until,
                reason,
            } => format!(
                "source {source} paused until {}: {reason}",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Event::SourceResumed { source } => format!("source {source} resumed"),
            Event::CalendarEnding {
                market,
                table_end,
                days_left,
            } => {
                if *days_left > 0 {
                    format!("the {market} holiday table ends {table_end} ({days_left} day(s) left)")
                } else {
                    format!("the {market} holiday table ended {table_end}")
                }
            }
            Event::CalendarOk { market } => format!("the {market} holiday table is current"),
            Event::PrimaryDown {
                store,
                error,
                spooled_bars,
            } => format!(
                "the primary store ({store}) does not answer: {error}; writes go to the spool ({spooled_bars} bars waiting)"
            ),
            Event::PrimaryUp { store } => format!("the primary store ({store}) answers again"),
        }
    }
}

/// `3725` → `1h 2m`.
fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The one internal bus. Clone it freely: every clone publishes to the same subscribers.
#[derive(Clone, Default)]
pub struct EventBus {
    /// A std `Mutex`, held only to push onto the queues (never across an `.await`).
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Event>>>>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.subscribers.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("EventBus").field("subscribers", &n).finish()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        EventBus::default()
    }

    /// Hands `event` to every current subscriber. Never blocks, never fails.
    pub fn publish(&self, event: Event) {
        tracing::debug!(event = event.kind().as_str(), "event published");
        let mut subs = match self.subscribers.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A send fails only when the subscriber is gone: forget it.
        subs.retain(|tx| tx.send(event.clone()).is_ok());
    }

    /// Every event published from now on, in order. Dropping the receiver unsubscribes.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        match self.subscribers.lock() {
            Ok(mut s) => s.push(tx),
            Err(poisoned) => poisoned.into_inner().push(tx),
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_and_clear_events_share_their_condition() {
        let lag = Event::BackupLag {
            node: "b1".into(),
            changes: 5,
            seconds: 9,
        };
        let ok = Event::BackupCaughtUp { node: "b1".into() };
        assert_eq!(lag.condition(), ok.condition());
        assert_eq!(lag.condition().to_string(), "backup_lag b1");
        assert_eq!(lag.signal(), Signal::Raise);
        assert_eq!(ok.signal(), Signal::Clear);
        let failed = Event::JobFailed {
            job_id: 1,
            task: "update".into(),
            message: "boom".into(),
        };
        let fine = Event::JobSucceeded {
            job_id: 2,
            task: "update".into(),
        };
        assert_eq!(failed.condition(), fine.condition());
        assert_ne!(
            failed.condition(),
            Event::JobSucceeded {
                job_id: 2,
                task: "verify".into()
            }
            .condition()
        );
        assert_eq!(
            Event::GapsOpen {
                count: 0,
                series: vec![]
            }
            .signal(),
            Signal::Clear
        );
    }

    #[test]
    fn event_names_parse_and_unknown_ones_list_the_choices() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        let e = "job_failure".parse::<EventKind>().unwrap_err();
        assert!(
            e.contains("\"job_failure\"") && e.contains("calendar_ending"),
            "{e}"
        );
    }

    #[test]
    fn events_serialize_with_their_name_as_the_tag() {
        let v = serde_json::to_value(Event::VerifyDiff {
            node: "b1".into(),
            differences: 3,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "verify_diff", "node": "b1", "differences": 3})
        );
    }

    #[tokio::test]
    async fn publish_never_blocks_and_a_burst_reaches_every_subscriber_whole() {
        let bus = EventBus::new();
        // No subscriber: dropped, no error.
        bus.publish(Event::GapsClosed);
        let mut a = bus.subscribe();
        let b = bus.subscribe();
        let publisher = bus.clone();
        for i in 0..10_000 {
            publisher.publish(Event::JobSucceeded {
                job_id: i,
                task: "update".into(),
            });
        }
        for i in 0..10_000 {
            assert!(
                matches!(a.recv().await, Some(Event::JobSucceeded { job_id, .. }) if job_id == i)
            );
        }
        // A dropped subscriber is forgotten at the next publish.
        drop(b);
        bus.publish(Event::GapsClosed);
        assert_eq!(bus.subscribers.lock().unwrap().len(), 1);
        assert_eq!(a.recv().await, Some(Event::GapsClosed));
    }

    #[test]
    fn descriptions_name_the_numbers() {
        let s = Event::SeriesStale {
            stale: vec![StaleInterval {
                interval: "1d".into(),
                count: 4,
                max_overdue_s: 3725,
            }],
        }
        .describe();
        assert_eq!(
            s,
            "4 series past their expected bar (1d: 4 (up to 1h 2m late))"
        );
        let g = Event::GapsOpen {
            count: 12,
            series: (0..12).map(|i| format!("S{i} 1d")).collect(),
        }
        .describe();
        assert!(g.ends_with("S9 1d and 2 more"), "{g}");
    }
}
