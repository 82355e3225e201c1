//! The scheduler on paused tokio time: the shipped after-market crons across the US DST
//! changes and in Hong Kong (no DST), a cron inside the DST gap and the repeated hour, no
//! overlap, the start-up catch-up of a missed update, the holiday skip, an early close, and
//! `run_now` / the listing behind `GET /api/v1/schedules`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use dms::config::{Config, ScheduleEntry, TaskKind};
use dms::schedule::{
    Clock, LastRun, MemoryScheduleStore, ScheduleError, ScheduleStore, ScheduleTarget, Scheduler,
    TokioClock,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The `schedule:` of the shipped config/dms.yaml.
fn shipped_schedule() -> Vec<ScheduleEntry> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/dms.yaml")).unwrap();
    Config::from_yaml(&text, vec![]).unwrap().schedule
}

fn entry(name: &str) -> ScheduleEntry {
    shipped_schedule()
        .into_iter()
        .find(|e| e.name == name)
        .unwrap()
}

/// A job submitted by the scheduler, at the wall-clock time it was submitted.
#[derive(Debug, Clone, PartialEq)]
struct Submitted {
    schedule: String,
    job_id: u64,
    at: DateTime<Utc>,
}

/// Jobs and calendars for the scheduler: records submissions, keeps jobs running while
/// `hold` is set, and closes the listed dates.
struct FakeJobs {
    clock: TokioClock,
    closed: Vec<NaiveDate>,
    hold: AtomicBool,
    next_id: AtomicU64,
    running: Mutex<HashSet<u64>>,
    log: Mutex<Vec<Submitted>>,
    tx: mpsc::UnboundedSender<Submitted>,
}

impl FakeJobs {
    fn new(
        clock: TokioClock,
        closed: &[&str],
    ) -> (Arc<FakeJobs>, mpsc::UnboundedReceiver<Submitted>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let jobs = FakeJobs {
            clock,
            closed: closed.iter().map(|d| d.parse().unwrap()).collect(),
            hold: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            running: Mutex::new(HashSet::new()),
            log: Mutex::new(Vec::new()),
            tx,
        };
        (Arc::new(jobs), rx)
    }

    fn finish(&self, job_id: u64) {
        self.running.lock().unwrap().remove(&job_id);
    }

    fn log(&self) -> Vec<Submitted> {
        self.log.lock().unwrap().clone()
    }
}

#[async_trait]
impl ScheduleTarget for FakeJobs {
    async fn submit(&self, entry: &ScheduleEntry) -> Result<u64, String> {
        let job_id = self.next_id.fetch_add(1, Ordering::SeqCst);
        if self.hold.load(Ordering::SeqCst) {
            self.running.lock().unwrap().insert(job_id);
        }
        let s = Submitted {
            schedule: entry.name.clone(),
            job_id,
            at: self.clock.now_utc(),
        };
        self.log.lock().unwrap().push(s.clone());
        let _ = self.tx.send(s);
        Ok(job_id)
    }

    async fn is_running(&self, job_id: u64) -> bool {
        self.running.lock().unwrap().contains(&job_id)
    }

    fn is_trading_day(&self, _: &ScheduleEntry, date: NaiveDate) -> bool {
        !self.closed.contains(&date)
    }
}

/// A running scheduler over the fake, stopped on drop.
struct Running {
    scheduler: Scheduler,
    jobs: Arc<FakeJobs>,
    subs: mpsc::UnboundedReceiver<Submitted>,
    store: Arc<MemoryScheduleStore>,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn start(
    now: &str,
    entries: &[ScheduleEntry],
    closed: &[&str],
    store: MemoryScheduleStore,
) -> Running {
    let clock = TokioClock::starting_at(utc(now));
    let (jobs, subs) = FakeJobs::new(clock, closed);
    let store = Arc::new(store);
    let scheduler = Scheduler::new(entries, jobs.clone(), store.clone(), Arc::new(clock));
    let shutdown = CancellationToken::new();
    scheduler.spawn(shutdown.clone());
    Running {
        scheduler,
        jobs,
        subs,
        store,
        shutdown,
    }
}

impl Running {
    /// The next submission, letting paused time run ahead to it (at most `within`).
    async fn next(&mut self, within: Duration) -> Submitted {
        tokio::time::timeout(within, self.subs.recv())
            .await
            .unwrap_or_else(|_| panic!("no job within {within:?}: {:?}", self.jobs.log()))
            .unwrap()
    }

    /// The instants of the next `n` submissions.
    async fn next_times(&mut self, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.next(Duration::from_secs(8 * 86_400)).await.at);
        }
        out
    }

    async fn next_run(&self, name: &str) -> Option<DateTime<Utc>> {
        self.scheduler
            .schedules()
            .await
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .next_run
    }
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test(start_paused = true)]
async fn the_us_update_runs_at_1730_new_york_on_both_sides_of_the_march_dst_start() {
    // Thursday 2026-03-05 18:00 EST; clocks go forward on Sunday 2026-03-08.
    let mut r = start(
        "2026-03-05T23:00:00Z",
        &[entry("us-after-market")],
        &[],
        MemoryScheduleStore::new(),
    );
    assert_eq!(
        r.next_run("us-after-market").await,
        Some(utc("2026-03-06T22:30:00Z"))
    );
    assert_eq!(
        r.next_times(2).await,
        [utc("2026-03-06T22:30:00Z"), utc("2026-03-09T21:30:00Z")]
    );
    assert_eq!(
        r.next_run("us-after-market").await,
        Some(utc("2026-03-10T21:30:00Z"))
    );
}

#[tokio::test(start_paused = true)]
async fn the_us_update_runs_at_1730_new_york_on_both_sides_of_the_november_dst_end() {
    // Thursday 2026-10-29 18:00 EDT; clocks go back on Sunday 2026-11-01.
    let mut r = start(
        "2026-10-29T22:00:00Z",
        &[entry("us-after-market")],
        &[],
        MemoryScheduleStore::new(),
    );
    assert_eq!(
        r.next_times(2).await,
        [utc("2026-10-30T21:30:00Z"), utc("2026-11-02T22:30:00Z")]
    );
}

#[tokio::test(start_paused = true)]
async fn the_hong_kong_update_runs_at_0830_utc_whatever_new_york_does() {
    // Thursday to Tuesday across each US change (Sunday 2026-03-08, Sunday 2026-11-01).
    for (now, expect) in [
        (
            "2026-03-05T09:00:00Z",
            [
                "2026-03-06T08:30:00Z",
                "2026-03-09T08:30:00Z",
                "2026-03-10T08:30:00Z",
            ],
        ),
        (
            "2026-10-29T09:00:00Z",
            [
                "2026-10-30T08:30:00Z",
                "2026-11-02T08:30:00Z",
                "2026-11-03T08:30:00Z",
            ],
        ),
    ] {
        let mut r = start(
            now,
            &[entry("hk-after-market")],
            &[],
            MemoryScheduleStore::new(),
        );
        assert_eq!(r.next_times(3).await, expect.map(utc));
    }
}

#[tokio::test(start_paused = true)]
async fn a_0230_cron_in_new_york_runs_at_0300_on_the_spring_forward_day() {
    let daily = ScheduleEntry::new(
        "nightly",
        "0 30 2 * * *",
        "America/New_York",
        TaskKind::Verify,
    )
    .unwrap();
    let mut r = start(
        "2026-03-07T00:00:00Z",
        &[daily],
        &[],
        MemoryScheduleStore::new(),
    );
    assert_eq!(
        r.next_times(3).await,
        [
            utc("2026-03-07T07:30:00Z"), // 02:30 EST
            utc("2026-03-08T07:00:00Z"), // 02:30 does not exist: 03:00 EDT
            utc("2026-03-09T06:30:00Z"), // 02:30 EDT
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_0130_cron_in_new_york_runs_once_on_the_fall_back_day() {
    let daily = ScheduleEntry::new(
        "nightly",
        "0 30 1 * * *",
        "America/New_York",
        TaskKind::Verify,
    )
    .unwrap();
    let mut r = start(
        "2026-10-31T12:00:00Z",
        &[daily],
        &[],
        MemoryScheduleStore::new(),
    );
    // 01:30 EDT (05:30Z) runs; 01:30 EST (06:30Z) the same day does not; the next is 06:30Z on 11-02.
    assert_eq!(
        r.next_times(2).await,
        [utc("2026-11-01T05:30:00Z"), utc("2026-11-02T06:30:00Z")]
    );
}

#[tokio::test(start_paused = true)]
async fn a_schedule_never_overlaps_itself() {
    let every_minute = ScheduleEntry::new("sync", "0 * * * * *", "UTC", TaskKind::Sync).unwrap();
    let mut r = start(
        "2026-05-04T10:00:30Z",
        &[every_minute],
        &[],
        MemoryScheduleStore::new(),
    );
    r.jobs.hold.store(true, Ordering::SeqCst);
    let first = r.next(Duration::from_secs(60)).await;
    assert_eq!(first.at, utc("2026-05-04T10:01:00Z"));
    // Minutes 10:02 and 10:03 pass while job 1 runs: nothing is started.
    tokio::time::sleep(Duration::from_secs(150)).await;
    assert_eq!(r.jobs.log().len(), 1, "{:?}", r.jobs.log());
    assert_eq!(
        r.scheduler.run_now("sync").await,
        Err(ScheduleError::StillRunning {
            name: "sync".into(),
            job_id: Some(first.job_id)
        })
    );
    // Once it finishes, the next minute starts a new one.
    r.jobs.finish(first.job_id);
    let second = r.next(Duration::from_secs(60)).await;
    assert_eq!(second.at, utc("2026-05-04T10:04:00Z"));
    assert_eq!(r.jobs.log().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_update_missed_while_down_runs_once_at_start_up() {
    // Last run Monday 2026-03-02 17:30 EST; the service comes back Thursday 10:00 EST, having
    // missed Tuesday's and Wednesday's updates.
    let store = MemoryScheduleStore::with(
        "us-after-market",
        LastRun {
            at: utc("2026-03-02T22:30:05Z"),
            job_id: 7,
        },
    );
    let mut r = start(
        "2026-03-05T15:00:00Z",
        &[entry("us-after-market")],
        &[],
        store,
    );
    assert_eq!(
        r.next_times(2).await,
        [utc("2026-03-05T15:00:00Z"), utc("2026-03-05T22:30:00Z")],
        "once at start-up (not once per missed day), then on schedule"
    );
    assert_eq!(r.jobs.log().len(), 2);
    let saved = r.store.load("us-after-market").await.unwrap().unwrap();
    assert_eq!(saved.at, utc("2026-03-05T22:30:00Z"));
}

#[tokio::test(start_paused = true)]
async fn nothing_is_caught_up_when_nothing_was_missed() {
    let fresh = |name: &str, task| ScheduleEntry {
        name: name.into(),
        task,
        ..entry("us-after-market")
    };
    // Ran at its last due time (Wednesday 17:30 EST): nothing missed.
    let on_time = MemoryScheduleStore::with(
        "us-after-market",
        LastRun {
            at: utc("2026-03-04T22:30:01Z"),
            job_id: 1,
        },
    );
    on_time
        .save(
            "us-verify",
            LastRun {
                at: utc("2026-03-02T22:30:00Z"),
                job_id: 2,
            },
        )
        .await
        .unwrap();
    let mut r = start(
        "2026-03-05T15:00:00Z",
        &[
            entry("us-after-market"),
            // A verify that missed runs is not caught up (only updates are) ...
            fresh("us-verify", TaskKind::Verify),
            // ... nor an update that never ran.
            fresh("us-new", TaskKind::Update),
        ],
        &[],
        on_time,
    );
    let first = r.next(DAY).await;
    assert_eq!(first.at, utc("2026-03-05T22:30:00Z"), "{:?}", r.jobs.log());
    assert_eq!(r.next(DAY).await.at, first.at);
    assert_eq!(r.next(DAY).await.at, first.at);
}

#[tokio::test(start_paused = true)]
async fn a_holiday_skips_the_update_and_an_early_close_moves_nothing() {
    // Wednesday 2026-11-25 18:00 EST, after that day's update. Thursday is Thanksgiving (closed);
    // Friday closes early at 13:00, but the update still runs at 17:30.
    let mut r = start(
        "2026-11-25T23:00:00Z",
        &[entry("us-after-market")],
        &["2026-11-26"],
        MemoryScheduleStore::new(),
    );
    assert_eq!(
        r.next_run("us-after-market").await,
        Some(utc("2026-11-27T22:30:00Z"))
    );
    assert_eq!(r.next_times(1).await, [utc("2026-11-27T22:30:00Z")]);
    assert!(
        r.jobs
            .log()
            .iter()
            .all(|s| s.at.date_naive() != "2026-11-26".parse::<NaiveDate>().unwrap())
    );
}

#[tokio::test(start_paused = true)]
async fn run_now_starts_a_job_at_once_and_the_listing_shows_it() {
    let r = start(
        "2026-03-07T12:00:00Z", // a Saturday: run_now ignores the calendar
        &shipped_schedule(),
        &[],
        MemoryScheduleStore::new(),
    );
    let job = r.scheduler.run_now("hk-after-market").await.unwrap();
    assert_eq!(
        r.scheduler.run_now("nope").await,
        Err(ScheduleError::Unknown("nope".into()))
    );
    let list = serde_json::to_value(r.scheduler.schedules().await).unwrap();
    assert_eq!(
        list,
        serde_json::json!([
            {
                "name": "us-after-market",
                "cron": "0 30 17 * * Mon-Fri",
                "timezone": "America/New_York",
                "task": "update",
                "next_run": "2026-03-09T21:30:00Z",
                "last_run": null,
                "last_job": null,
            },
            {
                "name": "hk-after-market",
                "cron": "0 30 16 * * Mon-Fri",
                "timezone": "Asia/Hong_Kong",
                "task": "update",
                "next_run": "2026-03-09T08:30:00Z",
                "last_run": "2026-03-07T12:00:00Z",
                "last_job": job,
            },
        ])
    );
    let saved = r.store.load("hk-after-market").await.unwrap().unwrap();
    assert_eq!(saved.job_id, job);
}
