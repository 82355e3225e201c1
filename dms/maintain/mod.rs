//! Keeping the data complete: jobs (persisted in the metadata db, with progress, counters and a
//! log) and the tasks they run. Today: `backfill`. The update, gap, repair, verify and sync
//! tasks of DESIGN §5 plug into the same runner. `gaps` is the pure gap logic, `scan` the
//! [`scan::GapScanner`] that runs it over many series (and plans updates).

pub mod backfill;
pub mod gaps;
pub mod jobs;
pub mod locks;
pub mod scan;
