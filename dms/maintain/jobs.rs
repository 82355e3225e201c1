//! Jobs: every maintenance run is a job, persisted in the metadata database with its status
//! (`queued → running → succeeded | failed | cancelled`), progress `{done, total}`, counters,
//! errors, a resume checkpoint and log lines.
//!
//! [`Jobs::submit`] queues a job and runs it on a task (the API's `POST /api/v1/jobs`);
//! [`Jobs::run_inline`] runs one in the caller's task (the CLI without a server). Both record
//! the job the same way. At start-up [`Jobs::resume_interrupted`] runs again the jobs a crash or
//! restart left queued or running, from their last checkpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::ctx::{JobCtx, Progress};
use super::fetch::FetchCounters;
use super::task::{JobSpec, Task};
use super::update::Mode;
use super::{MaintainEnv, backfill, repair, sync, update, verify};
use crate::events::Event;
use crate::store::meta::{JobRecord, MetaDb, MetaError};
use crate::telemetry::{labels, metrics};

/// How often a running job's progress and counters are written to the metadata db.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What jobs run against. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    meta: MetaDb,
    env: MaintainEnv,
    /// Cancellation tokens of running jobs.
    running: Arc<Mutex<HashMap<u64, CancellationToken>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Invalid(String),
    #[error("job {0} not found")]
    NotFound(u64),
    #[error("job {id} is {status}, not running")]
    NotRunning { id: u64, status: String },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

impl Jobs {
    pub fn new(meta: MetaDb, env: MaintainEnv) -> Jobs {
        Jobs {
            meta,
            env,
            running: Arc::default(),
        }
    }

    pub fn meta(&self) -> &MetaDb {
        &self.meta
    }

    /// What tasks run against.
    pub fn env(&self) -> &MaintainEnv {
        &self.env
    }

    /// Checks a request against the universe and the sources (nothing is created).
    pub fn parse(&self, spec: &JobSpec) -> Result<Task, JobError> {
        Task::parse(spec, &self.env).map_err(JobError::Invalid)
    }

    /// Records a job as queued and starts it on a task; returns its id.
    pub async fn submit(&self, task: Task) -> Result<u64, JobError> {
        self.submit_named(task, None).await
    }

    /// Like [`Jobs::submit`], for a job a schedule starts: the schedule's name is kept with
    /// the job (its params' `schedule`) and names it in events, so that a later success of
    /// the same schedule clears an alert about its failure.
    pub async fn submit_named(&self, task: Task, schedule: Option<&str>) -> Result<u64, JobError> {
        let mut params = serde_json::to_value(&task).unwrap_or_default();
        if let Some(name) = schedule {
            params["schedule"] = name.into();
        }
        let id = self.meta.create_job(task.name(), &params).await?;
        self.spawn(id, task, None, label(&params));
        Ok(id)
    }

    fn spawn(&self, id: u64, task: Task, checkpoint: Option<serde_json::Value>, label: String) {
        let this = self.clone();
        let cancel = CancellationToken::new();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, cancel.clone());
        tokio::spawn(async move {
            this.execute(id, task, cancel, checkpoint, label, |_| {})
                .await;
        });
    }

    /// Runs a job in the caller's task; `on_progress` is called with `(done, total)` after each
    /// step. Returns the final record.
    pub async fn run_inline(
        &self,
        task: Task,
        on_progress: impl FnMut(&JobCtx),
    ) -> Result<JobRecord, JobError> {
        let id = self
            .meta
            .create_job(
                task.name(),
                &serde_json::to_value(&task).unwrap_or_default(),
            )
            .await?;
        let cancel = CancellationToken::new();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, cancel.clone());
        let label = task.name().to_string();
        self.execute(id, task, cancel, None, label, on_progress)
            .await;
        self.meta.job(id).await?.ok_or(JobError::NotFound(id))
    }

    /// Requests cancellation; the job stops at its next step and is recorded `cancelled`.
    pub async fn cancel(&self, id: u64) -> Result<(), JobError> {
        if let Some(token) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            token.cancel();
            return Ok(());
        }
        match self.meta.job(id).await? {
            None => Err(JobError::NotFound(id)),
            Some(j) => Err(JobError::NotRunning {
                id,
                status: j.status,
            }),
        }
    }

    /// Runs again the jobs left `queued` or `running` by a crash or restart, from their
    /// checkpoints. Returns how many.
    pub async fn resume_interrupted(&self) -> Result<usize, JobError> {
        let mut n = 0;
        for status in ["running", "queued"] {
            for job in self.meta.jobs(Some(status.into()), 1, 10_000).await? {
                match serde_json::from_value::<Task>(job.params.clone()) {
                    Ok(task) => {
                        tracing::info!(job_id = job.id, task = %job.task, "resuming an interrupted job");
                        self.meta
                            .append_job_log(job.id, "info", "resumed after a restart")
                            .await?;
                        self.spawn(job.id, task, job.checkpoint.clone(), label(&job.params));
                        n += 1;
                    }
                    Err(e) => {
                        self.meta
                            .append_job_log(job.id, "error", &format!("cannot resume: {e}"))
                            .await?;
                        self.meta.set_job_status(job.id, "failed").await?;
                    }
                }
            }
        }
        Ok(n)
    }

    async fn execute(
        &self,
        id: u64,
        task: Task,
        cancel: CancellationToken,
        checkpoint: Option<serde_json::Value>,
        label: String,
        mut on_progress: impl FnMut(&JobCtx),
    ) {
        let ctx = JobCtx {
            id,
            meta: self.meta.clone(),
            cancel: cancel.clone(),
            progress: Arc::new(Mutex::new(Progress {
                checkpoint,
                ..Progress::default()
            })),
        };
        let started = Instant::now();
        if let Err(e) = self.meta.set_job_status(id, "running").await {
            tracing::warn!(job_id = id, error = %e, "cannot mark the job running");
        }
        ctx.log("info", &format!("{} started", task.name())).await;
        // Flush progress every second while the task runs; report progress to the caller.
        let work = async {
            let fetched = |(c, e): (FetchCounters, Vec<String>)| {
                (serde_json::to_value(&c).unwrap_or_default(), e)
            };
            match &task {
                Task::Backfill(p) => fetched(backfill::run(&self.env, p, &ctx).await),
                Task::Update(sel) => fetched(update::run(&self.env, sel, Mode::Update, &ctx).await),
                Task::Full(sel) => fetched(update::run(&self.env, sel, Mode::Full, &ctx).await),
                Task::Repair(sel) => fetched(repair::run(&self.env, sel, &ctx).await),
                Task::Verify(p) => verify::run(&self.env, p, &ctx).await,
                Task::Sync(p) => sync::run(&self.env, p, &ctx).await,
            }
        };
        let mut work = std::pin::pin!(work);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        let (counters, errors) = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tick.tick() => {
                    on_progress(&ctx);
                    let _ = ctx.flush(&[]).await;
                }
            }
        };
        ctx.set_counters(counters);
        on_progress(&ctx);
        if let Err(e) = ctx.flush(&errors).await {
            tracing::warn!(job_id = id, error = %e, "cannot record job progress");
        }
        let status = if cancel.is_cancelled() {
            "cancelled"
        } else if errors.is_empty() {
            "succeeded"
        } else {
            "failed"
        };
        let elapsed = started.elapsed();
        ctx.log(
            if status == "failed" { "error" } else { "info" },
            &format!("{} {status} in {:.1}s", task.name(), elapsed.as_secs_f64()),
        )
        .await;
        if let Err(e) = self.meta.set_job_status(id, status).await {
            tracing::warn!(job_id = id, error = %e, "cannot record the job's final status");
        }
        metrics()
            .jobs
            .get_or_create(&labels([("task", task.name()), ("outcome", status)]))
            .inc();
        match status {
            "failed" => self.env.events.publish(Event::JobFailed {
                job_id: id,
                task: label.clone(),
                message: errors.first().cloned().unwrap_or_else(|| "failed".into()),
            }),
            "succeeded" => self.env.events.publish(Event::JobSucceeded {
                job_id: id,
                task: label.clone(),
            }),
            _ => {}
        }
        metrics()
            .job_duration
            .get_or_create(&labels([("task", task.name())]))
            .observe(elapsed.as_secs_f64());
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// What events call a job: its task, and the schedule that started it
/// (`update us-after-market`).
fn label(params: &serde_json::Value) -> String {
    let task = params["task"].as_str().unwrap_or("job");
    match params["schedule"].as_str() {
        Some(s) => format!("{task} {s}"),
        None => task.to_string(),
    }
}
