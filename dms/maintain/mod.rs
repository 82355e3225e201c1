//! Keeping the data complete: tasks and the jobs that run them.
//!
//! # Layout
//! - [`task`]: [`task::Task`], every kind of work (backfill, update, full, ...), parsed from a
//!   [`task::JobSpec`];
//! - [`jobs`]: the runner — persists jobs in the metadata db, runs them on tasks or inline,
//!   cancels, resumes after a crash;
//! - [`ctx`]: what a running task reports through (progress, counters, checkpoint, log);
//! - [`fetch`]: the one fetching path (source → `Writer::ingest`), used by every fetching
//!   task; [`backfill`], [`update`]: what they fetch;
//! - [`universe`]: the maintained series; [`locks`]: one writer per series;
//! - [`gaps`]: the pure gap logic; [`scan`]: the [`scan::GapScanner`] that runs it over many
//!   series (gap listings, update planning, and recording what a source confirms empty);
//! - [`verify`]: re-validation of stored bars and node comparison; [`sync`]: shipping to the
//!   backup nodes on demand (both through [`crate::replicate::Replicator`]).
//!
//! Dependencies point one way: `jobs → task → {backfill, update, repair, verify, sync} →
//! fetch → ctx`; `maintain` uses `replicate`, never the other way.

pub mod backfill;
pub mod ctx;
pub mod fetch;
pub mod gaps;
pub mod jobs;
pub mod locks;
pub mod rebase;
pub mod repair;
pub mod scan;
pub mod scheduled;
pub mod sync;
pub mod task;
pub mod universe;
pub mod update;
pub mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::HistoryConfig;
use crate::domain::SourceKind;
use crate::events::EventBus;
use crate::ingest::Writer;
use crate::replicate::Replicator;
use crate::source::Source;

/// What tasks run against. Cheap to clone.
#[derive(Clone)]
pub struct MaintainEnv {
    pub writer: Writer,
    pub sources: BTreeMap<SourceKind, Arc<dyn Source>>,
    pub universe: universe::Universe,
    pub locks: locks::SeriesLocks,
    pub clock: Arc<dyn Clock>,
    pub history: HistoryConfig,
    /// Job outcomes are published here (alerts subscribe).
    pub events: EventBus,
    /// Interior gaps for the update's plans; records what a source confirms empty; the
    /// configured calendars (with the `calendars:` overrides).
    pub gaps: scan::GapScanner,
    /// Shipping and node verify for the `sync` and `verify` tasks.
    pub replicator: Replicator,
}

impl MaintainEnv {
    /// The validation context at `now` for bars of `market`: the configured calendar (with
    /// the `calendars:` closures and half days), so that every path a bar takes in —
    /// sources, imports, repair — judges sessions as gaps and the scheduler do.
    pub fn validation_context(
        &self,
        now: i64,
        market: Option<crate::domain::Market>,
    ) -> crate::validate::Context {
        match market {
            Some(m) => {
                crate::validate::Context::with_calendar(now, self.gaps.calendars().get(m).clone())
            }
            None => crate::validate::Context::new(now, None),
        }
    }
}
