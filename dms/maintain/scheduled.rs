//! What the scheduler drives ([`crate::schedule`]): its [`ScheduleTarget`] is the jobs runner
//! (a schedule entry becomes a [`Task`] over its selection), its trading days come from the
//! exchange calendars, and its last runs are kept in the metadata database.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::jobs::Jobs;
use super::task::{SyncParams, Task, VerifyParams};
use super::universe::Selection;
use crate::config::{ScheduleEntry, TaskKind};
use crate::domain::Calendar;
use crate::schedule::{LastRun, ScheduleStore, ScheduleTarget};
use crate::store::meta::MetaDb;

/// The scheduler's target: jobs, calendars.
pub struct JobsTarget {
    pub jobs: Jobs,
}

impl JobsTarget {
    /// The task a schedule entry starts.
    pub fn task(entry: &ScheduleEntry) -> Result<Task, String> {
        let selection = Selection {
            symbols: entry.symbols.clone(),
            intervals: entry.intervals.clone(),
            markets: entry.markets.clone(),
        };
        match entry.task {
            TaskKind::Update => Ok(Task::Update(selection)),
            TaskKind::Repair => Ok(Task::Repair(selection)),
            // The stored series of the entry's selection, and every backup node.
            TaskKind::Verify => Ok(Task::Verify(VerifyParams {
                node: None,
                symbols: selection.symbols,
                intervals: selection.intervals,
                markets: selection.markets,
            })),
            TaskKind::Sync => Ok(Task::Sync(SyncParams::default())),
        }
    }
}

#[async_trait]
impl ScheduleTarget for JobsTarget {
    async fn submit(&self, entry: &ScheduleEntry) -> Result<u64, String> {
        let task = JobsTarget::task(entry)?;
        if let Task::Update(sel) | Task::Repair(sel) = &task {
            sel.check(&self.jobs.env().universe)?;
        }
        self.jobs
            .submit_named(task, Some(&entry.name))
            .await
            .map_err(|e| e.to_string())
    }

    async fn is_running(&self, job_id: u64) -> bool {
        match self.jobs.meta().job(job_id).await {
            Ok(Some(j)) => matches!(j.status.as_str(), "queued" | "running"),
            // Unknown or unreadable: do not block the schedule forever.
            _ => false,
        }
    }

    fn is_trading_day(&self, entry: &ScheduleEntry, date: NaiveDate) -> bool {
        entry
            .markets
            .iter()
            .all(|m| Calendar::standard(*m).is_session(date))
    }
}

/// Last runs in the metadata database.
pub struct MetaScheduleStore(pub MetaDb);

#[async_trait]
impl ScheduleStore for MetaScheduleStore {
    async fn load(&self, name: &str) -> Result<Option<LastRun>, String> {
        let run = self.0.schedule_run(name).await.map_err(|e| e.to_string())?;
        Ok(run.and_then(|(at, job_id)| {
            DateTime::<Utc>::from_timestamp(at, 0).map(|at| LastRun { at, job_id })
        }))
    }

    async fn save(&self, name: &str, run: LastRun) -> Result<(), String> {
        self.0
            .set_schedule_run(name, run.at.timestamp(), run.job_id)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Interval, Symbol};

    #[test]
    fn every_schedule_task_kind_starts_its_task_over_the_entry_selection() {
        let mut e = ScheduleEntry::new("nightly", "0 0 18 * * *", "UTC", TaskKind::Verify).unwrap();
        e.symbols = vec![Symbol::parse("AAPL").unwrap()];
        e.intervals = vec![Interval::D1];
        assert_eq!(
            JobsTarget::task(&e).unwrap(),
            Task::Verify(VerifyParams {
                node: None,
                symbols: e.symbols.clone(),
                intervals: vec![Interval::D1],
                markets: Vec::new(),
            })
        );
        e.task = TaskKind::Sync;
        assert_eq!(
            JobsTarget::task(&e).unwrap(),
            Task::Sync(SyncParams::default())
        );
        e.task = TaskKind::Repair;
        assert!(matches!(JobsTarget::task(&e), Ok(Task::Repair(s)) if s.symbols == e.symbols));
        e.task = TaskKind::Update;
        assert!(matches!(JobsTarget::task(&e), Ok(Task::Update(_))));
    }
}
