//! Shared test helpers: running the app, bar builders and store factories.

pub mod app;
pub mod bars;
pub mod fake_opend;
pub mod gated;
pub mod influxd;
pub mod influxd_node;
pub mod mock_yahoo;
pub mod receiver;
pub mod smtp_sink;
pub mod stall_proxy;
pub mod yahoo_synth;

/// Polls `cond` until it holds, failing the test after 30 s with `what`.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
