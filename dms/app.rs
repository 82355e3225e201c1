//! [`App`], the HTTP server around [`Services`]: binds, serves, shuts down gracefully. `main`
//! and the tests build the app the same way; tests bind port 0 and read [`App::addr`].

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
pub use crate::services::{Services, StartError};

/// The running service.
pub struct App {
    services: Services,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl App {
    /// Opens everything and binds `server.bind` (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<App, StartError> {
        App::from_services(Services::open(config, "serve").await?).await
    }

    /// Binds `server.bind` for services already open (tests put a store of their own behind
    /// the real API this way).
    pub async fn from_services(services: Services) -> Result<App, StartError> {
        let bind = services.config.server.bind;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|source| StartError::Bind { addr: bind, source })?;
        let addr = listener.local_addr().map_err(StartError::Serve)?;
        // From here on CLI commands on this data directory go through this server.
        services.lock.set_addr(addr)?;
        Ok(App {
            services,
            listener,
            addr,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StartError> {
        match self.services.jobs.resume_interrupted().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "resumed interrupted jobs"),
            Err(e) => tracing::warn!(error = %e, "cannot resume interrupted jobs"),
        }
        // Alerts listen to the event bus for as long as the server runs.
        let _alerts = match crate::alert::Alerts::start(
            &self.services.config.alerts,
            &self.services.events,
            &self.services.config.storage.data_dir.join("alerts"),
        ) {
            Ok(a) => Some(a),
            Err(errors) => {
                for e in &errors {
                    tracing::error!(error = %e, "alert channel not started");
                }
                None
            }
        };
        let scheduler = self.services.scheduler.spawn(shutdown.clone());
        // Stale series, open gaps and ending holiday tables: once now, then periodically.
        let checks = crate::ops::HealthChecks::new(
            self.services.primary.clone(),
            self.services.gaps.clone(),
            self.services.calendars.clone(),
            self.services.events.clone(),
            std::sync::Arc::new(crate::clock::SystemClock),
            std::time::Duration::from_secs(self.services.config.checks.interval_s),
        )
        .spawn(shutdown.clone());
        // Shipping to backup nodes (or pulling, on a replica) until shutdown.
        let replication = self.services.replicator.start(shutdown.clone());
        let router = crate::api::router(self.services.clone());
        tracing::info!(addr = %self.addr, primary = self.services.primary.kind(), "serving");
        axum::serve(self.listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(StartError::Serve)?;
        scheduler.abort();
        checks.abort();
        replication.join().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Cancels the returned token on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
            _ = term => tracing::info!("SIGTERM: shutting down"),
        }
        t.cancel();
    });
    token
}
