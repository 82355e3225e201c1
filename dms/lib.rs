//! DMS: a market-data maintenance service.
//!
//! DMS keeps historical OHLCV bars complete, correct and replicated, and serves them to
//! backtests fast. See `ARCHITECTURE.md` for the bird's-eye view and `../shared/DESIGN.md` for
//! the external contract.
//!
//! # Layout
//! - [`domain`]: symbols, intervals, bars, ranges, timestamp rules. Pure.
//! - [`validate`]: the rules every bar passes; builds the only type a store accepts.
//! - [`store`]: the `Store` trait, the embedded (SQLite) and InfluxDB stores, the metadata db.
//! - [`ingest`]: the write path around the primary: change log, cache invalidation, metrics.
//! - [`source`]: Yahoo, Futu and files behind one `Source` trait, with shared rate limits.
//! - [`maintain`]: jobs and the tasks they run (backfill).
//! - [`reader`], [`format`]: the read path and output encoders.
//! - [`replicate`]: the change log shipped to backup nodes, pulled by replicas, verified.
//! - [`services`]: everything DMS runs on, opened by the one owner of the data directory
//!   ([`datadir`]).
//! - [`events`], [`alert`], [`schedule`]: the internal event bus, alerts delivered from it, and
//!   the cron scheduler; [`ops`]: the periodic health checks that publish staleness, open gaps
//!   and ending holiday tables.
//! - [`api`], [`cli`], [`app`]: the HTTP API, the command line and the server around them.

pub mod alert;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod domain;
pub mod events;
pub mod format;
pub mod import;
pub mod ingest;
pub mod maintain;
pub mod ops;
pub mod reader;
pub mod replicate;
pub mod schedule;
pub mod services;
pub mod source;
pub mod spool;
pub mod store;
pub mod telemetry;
pub mod validate;
