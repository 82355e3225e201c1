//! Shared test helpers: running the app, bar builders and store factories.

pub mod app;
pub mod bars;
pub mod fake_opend;
pub mod influxd;
pub mod mock_yahoo;
pub mod stall_proxy;
pub mod yahoo_synth;
