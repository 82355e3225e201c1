//! The scheduler: starts the jobs of `schedule:` (DESIGN §2) at their cron times.
//!
//! # Rules
//! - **Time.** Each entry's cron is read on its `timezone`'s wall clock and turned into UTC
//!   instants by [`cron`] (DST gaps fire at the end of the gap, repeated times fire once).
//!   The loop sleeps on tokio's clock toward the next instant and compares against an
//!   injectable wall [`Clock`], re-checking at least every [`MAX_SLEEP`], so a wall clock that
//!   jumps (NTP, suspend) is followed and tests run on paused time with [`TokioClock`].
//! - **Closed days.** An `update` whose fire instant falls on a local date that is not a
//!   trading day ([`ScheduleTarget::is_trading_day`], the date in the entry's time zone) does
//!   not run: [`Scheduler::next_run`] skips it, so `GET /api/v1/schedules` shows the run that
//!   will really happen. Other tasks (`verify`, `sync`, `repair`) are maintenance and run on
//!   any day, weekends included. An early close changes nothing: 17:30 is still 17:30.
//! - **No overlap.** A fire whose previous job ([`LastRun::job_id`]) is still running is
//!   skipped and logged (`skipped: still running`); so is one that races another fire or a
//!   [`Scheduler::run_now`] of the same entry.
//! - **Catch-up.** At start-up, an `update` entry whose last fire instant before now (on an
//!   open day) is later than its recorded `last_run` missed a run while the service was down:
//!   it runs once, not once per missed day. An entry that never ran has missed nothing.
//! - **Persistence.** `last_run`/`last_job` go through [`ScheduleStore`] (the metadata db in
//!   the service, [`MemoryScheduleStore`] in tests); a failed save is logged, the job stands.

pub mod cron;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{ScheduleEntry, TaskKind};

pub use cron::{CronError, CronExpr};

/// The longest the loop sleeps before looking at the wall clock again.
pub const MAX_SLEEP: Duration = Duration::from_secs(300);

/// Fire instants examined by one search for an open day (each closed day costs one).
const MAX_CLOSED_DAYS: usize = 1000;

/// What the scheduler drives: the jobs system and the market calendars.
#[async_trait]
pub trait ScheduleTarget: Send + Sync {
    /// Submits a job for the entry (its task, markets, symbols, intervals); returns its id.
    async fn submit(&self, entry: &ScheduleEntry) -> Result<u64, String>;
    /// Whether the job is still queued or running.
    async fn is_running(&self, job_id: u64) -> bool;
    /// Whether `date` (in the entry's time zone) is a trading day for every market the entry
    /// names; entries without markets: always true.
    fn is_trading_day(&self, entry: &ScheduleEntry, date: NaiveDate) -> bool;
}

/// When a schedule last started a job, and which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LastRun {
    pub at: DateTime<Utc>,
    pub job_id: u64,
}

/// Where `last_run`/`last_job` survive restarts.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    async fn load(&self, name: &str) -> Result<Option<LastRun>, String>;
    async fn save(&self, name: &str, run: LastRun) -> Result<(), String>;
}

/// A [`ScheduleStore`] in memory.
#[derive(Debug, Default)]
pub struct MemoryScheduleStore {
    /// A std `Mutex`: no `.await` while it is held.
    runs: Mutex<HashMap<String, LastRun>>,
}

impl MemoryScheduleStore {
    pub fn new() -> MemoryScheduleStore {
        MemoryScheduleStore::default()
    }

    /// A store that already remembers `run` for `name` (a restart).
    pub fn with(name: &str, run: LastRun) -> MemoryScheduleStore {
        let s = MemoryScheduleStore::default();
        s.runs
            .lock()
            .expect("not poisoned")
            .insert(name.into(), run);
        s
    }
}

#[async_trait]
impl ScheduleStore for MemoryScheduleStore {
    async fn load(&self, name: &str) -> Result<Option<LastRun>, String> {
        Ok(self.runs.lock().expect("not poisoned").get(name).copied())
    }

    async fn save(&self, name: &str, run: LastRun) -> Result<(), String> {
        self.runs
            .lock()
            .expect("not poisoned")
            .insert(name.into(), run);
        Ok(())
    }
}

pub use crate::clock::{Clock, SystemClock, TokioClock};

/// One line of `GET /api/v1/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ScheduleInfo {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    /// `update`, `verify`, `sync` or `repair`.
    pub task: String,
    /// When the schedule will next start a job (RFC 3339 UTC), closed days skipped; null if
    /// never.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_run: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_run: Option<DateTime<Utc>>,
    pub last_job: Option<u64>,
}

/// Why a schedule did not start a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown schedule {0:?}")]
    Unknown(String),
    /// The previous job of the schedule is still running (`None`: another start of it is
    /// being submitted right now).
    #[error("schedule {name}: skipped: still running{}", job_id.map(|j| format!(" (job {j})")).unwrap_or_default())]
    StillRunning { name: String, job_id: Option<u64> },
    #[error("schedule {name}: cannot submit its job: {message}")]
    Submit { name: String, message: String },
}

/// Why a job is being started (logged).
#[derive(Debug, Clone, Copy)]
enum Reason {
    Cron(DateTime<Utc>),
    CatchUp(DateTime<Utc>),
    Manual,
}

/// The scheduler. Cheap to clone; every clone drives the same entries.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Vec<Slot>,
    target: Arc<dyn ScheduleTarget>,
    store: Arc<dyn ScheduleStore>,
    clock: Arc<dyn Clock>,
}

struct Slot {
    entry: ScheduleEntry,
    /// A std `Mutex`, never held across an `.await`.
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// `last_run` as loaded from the store (`loaded`) and updated by each start.
    last: Option<LastRun>,
    loaded: bool,
    /// A start is between its overlap check and its record: a second one is refused.
    busy: bool,
}

/// Clears `busy` when a start ends, however it ends.
struct Claim<'a>(&'a Mutex<SlotState>);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.lock().expect("not poisoned").busy = false;
    }
}

impl Scheduler {
    pub fn new(
        entries: &[ScheduleEntry],
        target: Arc<dyn ScheduleTarget>,
        store: Arc<dyn ScheduleStore>,
        clock: Arc<dyn Clock>,
    ) -> Scheduler {
        let slots = entries
            .iter()
            .map(|e| Slot {
                entry: e.clone(),
                state: Mutex::new(SlotState::default()),
            })
            .collect();
        Scheduler {
            inner: Arc::new(Inner {
                slots,
                target,
                store,
                clock,
            }),
        }
    }

    /// The instant `entry` will next start a job after `now`, closed days skipped (updates
    /// only). Pure but for [`ScheduleTarget::is_trading_day`].
    pub fn next_run(&self, entry: &ScheduleEntry, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_run(self.inner.target.as_ref(), entry, now)
    }

    /// `GET /api/v1/schedules`: every entry with its next and last run.
    pub async fn schedules(&self) -> Vec<ScheduleInfo> {
        let now = self.inner.clock.now_utc();
        let mut out = Vec::with_capacity(self.inner.slots.len());
        for slot in &self.inner.slots {
            let last = self.inner.last(slot).await;
            let e = &slot.entry;
            out.push(ScheduleInfo {
                name: e.name.clone(),
                cron: e.cron.as_str().to_string(),
                timezone: e.timezone.name().to_string(),
                task: task_name(&e.task).to_string(),
                next_run: self.next_run(e, now),
                last_run: last.map(|l| l.at),
                last_job: last.map(|l| l.job_id),
            });
        }
        out
    }

    /// `POST /api/v1/schedules/{name}/run`: starts the entry's job now (closed day or not),
    /// unless its previous job is still running. Returns the job id.
    pub async fn run_now(&self, name: &str) -> Result<u64, ScheduleError> {
        let slot = self
            .inner
            .slots
            .iter()
            .find(|s| s.entry.name == name)
            .ok_or_else(|| ScheduleError::Unknown(name.to_string()))?;
        self.inner.start(slot, Reason::Manual).await
    }

    /// Runs the catch-up, then every entry's loop, until `shutdown` is cancelled.
    pub fn spawn(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let tasks: Vec<_> = (0..inner.slots.len())
                .map(|i| tokio::spawn(inner.clone().run_slot(i, shutdown.clone())))
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        })
    }
}

fn task_name(t: &TaskKind) -> &'static str {
    match t {
        TaskKind::Update => "update",
        TaskKind::Verify => "verify",
        TaskKind::Sync => "sync",
        TaskKind::Repair => "repair",
    }
}

/// Whether a fire instant of `entry` really starts a job: updates only on trading days.
fn opens(target: &dyn ScheduleTarget, entry: &ScheduleEntry, at: DateTime<Utc>) -> bool {
    entry.task != TaskKind::Update
        || target.is_trading_day(entry, at.with_timezone(&entry.timezone).date_naive())
}

/// Local midnight starting `date` in `entry`'s zone, as an instant.
fn local_midnight(entry: &ScheduleEntry, date: NaiveDate) -> DateTime<Utc> {
    cron::resolve(entry.timezone, date.and_hms_opt(0, 0, 0).expect("valid"))
}

fn next_run(
    target: &dyn ScheduleTarget,
    entry: &ScheduleEntry,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut after = now;
    for _ in 0..MAX_CLOSED_DAYS {
        let at = entry.cron.next_after(entry.timezone, after)?;
        if opens(target, entry, at) {
            return Some(at);
        }
        // Skip the rest of the closed day at once.
        let date = at.with_timezone(&entry.timezone).date_naive();
        let next_day = date.succ_opt().map(|d| local_midnight(entry, d));
        after = next_day.map_or(at, |m| (m - chrono::Duration::seconds(1)).max(at));
    }
    None
}

/// The last instant at or before `now`, later than `since`, at which `entry` started (or
/// should have started) a job.
fn last_due(
    target: &dyn ScheduleTarget,
    entry: &ScheduleEntry,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut at_or_before = now;
    for _ in 0..MAX_CLOSED_DAYS {
        let at = entry.cron.last_at_or_before(entry.timezone, at_or_before)?;
        if at <= since {
            return None;
        }
        if opens(target, entry, at) {
            return Some(at);
        }
        let date = at.with_timezone(&entry.timezone).date_naive();
        let day_start = local_midnight(entry, date) - chrono::Duration::seconds(1);
        at_or_before = day_start.min(at - chrono::Duration::seconds(1));
    }
    None
}

impl Inner {
    /// The slot's last run, loaded from the store the first time.
    async fn last(&self, slot: &Slot) -> Option<LastRun> {
        {
            let st = slot.state.lock().expect("not poisoned");
            if st.loaded {
                return st.last;
            }
        }
        let loaded = match self.store.load(&slot.entry.name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(schedule = %slot.entry.name, error = %e, "cannot load the last run");
                return None;
            }
        };
        let mut st = slot.state.lock().expect("not poisoned");
        if !st.loaded {
            st.last = loaded;
            st.loaded = true;
        }
        st.last
    }

    /// Starts the slot's job unless one is still running; records the run.
    async fn start(&self, slot: &Slot, reason: Reason) -> Result<u64, ScheduleError> {
        let name = &slot.entry.name;
        {
            let mut st = slot.state.lock().expect("not poisoned");
            if st.busy {
                return Err(ScheduleError::StillRunning {
                    name: name.clone(),
                    job_id: None,
                });
            }
            st.busy = true;
        }
        let _claim = Claim(&slot.state);
        if let Some(last) = self.last(slot).await
            && self.target.is_running(last.job_id).await
        {
            return Err(ScheduleError::StillRunning {
                name: name.clone(),
                job_id: Some(last.job_id),
            });
        }
        let job_id =
            self.target
                .submit(&slot.entry)
                .await
                .map_err(|message| ScheduleError::Submit {
                    name: name.clone(),
                    message,
                })?;
        let run = LastRun {
            at: self.clock.now_utc(),
            job_id,
        };
        {
            let mut st = slot.state.lock().expect("not poisoned");
            st.last = Some(run);
            st.loaded = true;
        }
        if let Err(e) = self.store.save(name, run).await {
            tracing::warn!(schedule = %name, job_id, error = %e, "cannot record the run");
        }
        match reason {
            Reason::Cron(due) => {
                tracing::info!(schedule = %name, job_id, due = %due, "scheduled job started")
            }
            Reason::CatchUp(missed) => {
                tracing::info!(schedule = %name, job_id, missed = %missed, "missed while down: job started once")
            }
            Reason::Manual => tracing::info!(schedule = %name, job_id, "job started by request"),
        }
        Ok(job_id)
    }

    /// Starts a job from the loop or the catch-up, logging instead of returning why not.
    async fn fire(&self, slot: &Slot, reason: Reason) {
        match self.start(slot, reason).await {
            Ok(_) => {}
            Err(ScheduleError::StillRunning { job_id, .. }) => {
                tracing::info!(schedule = %slot.entry.name, job_id, "skipped: still running");
            }
            Err(e) => {
                tracing::warn!(schedule = %slot.entry.name, error = %e, "scheduled job not started")
            }
        }
    }

    async fn run_slot(self: Arc<Self>, i: usize, shutdown: CancellationToken) {
        let slot = &self.slots[i];
        let entry = &slot.entry;
        let start = self.clock.now_utc();
        if entry.task == TaskKind::Update
            && let Some(last) = self.last(slot).await
            && let Some(missed) = last_due(self.target.as_ref(), entry, start, last.at)
        {
            self.fire(slot, Reason::CatchUp(missed)).await;
        }
        let mut after = self.clock.now_utc().max(start);
        loop {
            let Some(due) = next_run(self.target.as_ref(), entry, after) else {
                tracing::warn!(schedule = %entry.name, "schedule never fires again");
                return;
            };
            loop {
                let now = self.clock.now_utc();
                if now >= due {
                    break;
                }
                let wait = (due - now).to_std().unwrap_or_default().min(MAX_SLEEP);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
            self.fire(slot, Reason::Cron(due)).await;
            // A late wake-up or a slow submit collapses the fires it overlapped into this one.
            after = due.max(self.clock.now_utc());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed(Vec<NaiveDate>);

    #[async_trait]
    impl ScheduleTarget for Closed {
        async fn submit(&self, _: &ScheduleEntry) -> Result<u64, String> {
            Ok(1)
        }
        async fn is_running(&self, _: u64) -> bool {
            false
        }
        fn is_trading_day(&self, _: &ScheduleEntry, date: NaiveDate) -> bool {
            !self.0.contains(&date)
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_holiday_skips_the_update_but_not_other_tasks() {
        let thanksgiving = Closed(vec![date("2026-11-26")]);
        let update = ScheduleEntry::new(
            "us",
            "0 30 17 * * Mon-Fri",
            "America/New_York",
            TaskKind::Update,
        )
        .unwrap();
        let at = next_run(&thanksgiving, &update, utc("2026-11-25T23:00:00Z")).unwrap();
        assert_eq!(at, utc("2026-11-27T22:30:00Z"));
        let verify = ScheduleEntry {
            task: TaskKind::Verify,
            ..update.clone()
        };
        let at = next_run(&thanksgiving, &verify, utc("2026-11-25T23:00:00Z")).unwrap();
        assert_eq!(at, utc("2026-11-26T22:30:00Z"));
        // Looking back from the Friday morning, the last due update is Wednesday's.
        let last = last_due(
            &thanksgiving,
            &update,
            utc("2026-11-27T15:00:00Z"),
            utc("2026-11-01T00:00:00Z"),
        );
        assert_eq!(last, Some(utc("2026-11-25T22:30:00Z")));
    }

    #[test]
    fn many_closed_days_in_a_row_are_skipped_a_day_at_a_time() {
        let closed: Vec<NaiveDate> = (1..=20)
            .map(|d| NaiveDate::from_ymd_opt(2026, 12, d).unwrap())
            .collect();
        let e = ScheduleEntry::new("m", "*/5 * * * *", "Asia/Hong_Kong", TaskKind::Update).unwrap();
        let at = next_run(&Closed(closed), &e, utc("2026-11-30T16:00:00Z")).unwrap();
        // 2026-12-21 00:00 HKT.
        assert_eq!(at, utc("2026-12-20T16:00:00Z"));
    }

    #[test]
    fn a_schedule_error_says_why() {
        let e = ScheduleError::StillRunning {
            name: "us".into(),
            job_id: Some(7),
        };
        assert_eq!(e.to_string(), "schedule us: skipped: still running (job 7)");
    }
}
