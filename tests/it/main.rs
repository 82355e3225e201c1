//! Integration tests: one binary, real components (a real `influxd`, a local mock Yahoo, a
//! fake OpenD), driven through the public API of the `dms` crate and its binary.

mod alerts;
mod api_read;
mod calendars;
mod cli;
mod dashboard;
mod futu;
mod gaps;
mod helpers;
mod influx;
mod integrity;
mod jobs;
mod maintenance;
mod quality;
mod read_cache;
mod replication;
mod roundtrip;
mod schedule;
mod server;
mod store_suite;
mod yahoo;
