//! Integration tests: one binary, real components (a real `influxd`, a local mock Yahoo, a
//! fake OpenD), driven through the public API of the `dms` crate and its binary.

mod helpers;
mod influx;
mod store_suite;
