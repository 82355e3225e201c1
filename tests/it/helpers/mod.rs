//! Shared test helpers: bar builders and store factories.

pub mod bars;
pub mod influxd;
