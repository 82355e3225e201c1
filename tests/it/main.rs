//! Integration tests: one binary, real components (a real `influxd`, a local mock Yahoo, a
//! fake OpenD), driven through the public API of the `dms` crate and its binary.

mod cli;
mod futu;
mod helpers;
mod influx;
mod jobs;
mod server;
mod store_suite;
mod yahoo;
