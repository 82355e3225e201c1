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
//!   series (gap listings and update planning).
//!
//! Dependencies point one way: `jobs → task → {backfill, update} → fetch → ctx`.

pub mod backfill;
pub mod ctx;
pub mod fetch;
pub mod gaps;
pub mod jobs;
pub mod locks;
pub mod repair;
pub mod scan;
pub mod scheduled;
pub mod task;
pub mod universe;
pub mod update;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::HistoryConfig;
use crate::domain::SourceKind;
use crate::events::EventBus;
use crate::ingest::Writer;
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
}
