//! Shared test helpers: bar builders and store factories.

pub mod bars;
pub mod mock_yahoo;
pub mod yahoo_synth;
