//! Wiring: [`Services`] (stores, metadata, write path, sources, reader) built from a
//! [`Config`], and [`App`], the HTTP server around them. `main` and the tests build the app
//! the same way; tests bind port 0 and read [`App::addr`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, StoreConfig};
use crate::domain::SourceKind;
use crate::ingest::Writer;
use crate::maintain::backfill::BackfillEnv;
use crate::maintain::jobs::Jobs;
use crate::maintain::locks::SeriesLocks;
use crate::reader::Reader;
use crate::source::Source;
use crate::source::files::FilesSource;
use crate::source::futu::FutuSource;
use crate::source::yahoo::YahooSource;
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;
use crate::store::influx::InfluxStore;
use crate::store::meta::MetaDb;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("primary store: {0}")]
    Primary(#[from] crate::store::StoreError),
    #[error(transparent)]
    Meta(#[from] crate::store::meta::MetaError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// Everything DMS runs on, shared by the server and in-process CLI commands. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub primary: Arc<dyn Store>,
    pub meta: MetaDb,
    pub writer: Writer,
    pub reader: Reader,
    pub sources: BTreeMap<SourceKind, Arc<dyn Source>>,
    pub jobs: Jobs,
}

impl Services {
    /// Opens the primary store named by the config, then everything else
    /// ([`Services::with_primary`]).
    pub async fn open(config: Config) -> Result<Services, StartError> {
        let storage = &config.storage;
        std::fs::create_dir_all(&storage.data_dir).map_err(|e| {
            StartError::Other(format!("cannot create {}: {e}", storage.data_dir.display()))
        })?;
        let primary: Arc<dyn Store> = match &storage.primary {
            StoreConfig::Embedded => Arc::new(EmbeddedStore::open(&storage.bars_path())?),
            StoreConfig::Influxdb(cfg) => Arc::new(InfluxStore::connect(cfg).await?),
        };
        Services::with_primary(config, primary).await
    }

    /// Builds the services around an already open primary: the metadata database (recovering
    /// change-log entries a crash left pending), the write path, the cached reader and the
    /// sources. Benchmarks use it to put any store behind the real API.
    pub async fn with_primary(
        config: Config,
        primary: Arc<dyn Store>,
    ) -> Result<Services, StartError> {
        let config = Arc::new(config);
        let storage = &config.storage;
        std::fs::create_dir_all(&storage.data_dir).map_err(|e| {
            StartError::Other(format!("cannot create {}: {e}", storage.data_dir.display()))
        })?;
        let meta = MetaDb::open(&storage.meta_path())?;
        let recovered = meta.recover_pending().await?;
        if recovered > 0 {
            tracing::warn!(
                recovered,
                "committed change-log entries left pending by a crash"
            );
        }
        let writer = Writer::new(primary.clone(), meta.clone());
        let reader = Reader::new(
            primary.clone(),
            config.reader.max_bars_per_request,
            config.cache.max_bytes,
        );
        // Every write drops the chunks it touches before it is acknowledged.
        writer.add_listener(reader.cache().clone());
        let mut sources: BTreeMap<SourceKind, Arc<dyn Source>> = BTreeMap::new();
        sources.insert(
            SourceKind::Files,
            Arc::new(FilesSource::new(&config.sources.files.dir)),
        );
        let yahoo = YahooSource::new(&config.sources.yahoo)
            .map_err(|e| StartError::Other(format!("yahoo: {e}")))?;
        sources.insert(SourceKind::Yahoo, Arc::new(yahoo));
        sources.insert(
            SourceKind::Futu,
            Arc::new(FutuSource::new(&config.sources.futu)),
        );
        // The universe: the config's entries, then those added through the API (which win).
        let mut universe = config.universe.clone();
        for e in meta.universe().await? {
            universe.retain(|u| u.symbol != e.symbol);
            universe.push(e);
        }
        let jobs = Jobs::new(
            meta.clone(),
            BackfillEnv {
                writer: writer.clone(),
                sources: sources.clone(),
                universe,
                locks: SeriesLocks::default(),
            },
        );
        Ok(Services {
            config,
            primary,
            meta,
            writer,
            reader,
            sources,
            jobs,
        })
    }
}

/// The running service.
pub struct App {
    services: Services,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl App {
    /// Opens everything and binds `server.bind` (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<App, StartError> {
        let bind = config.server.bind;
        let services = Services::open(config).await?;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|source| StartError::Bind { addr: bind, source })?;
        let addr = listener.local_addr().map_err(StartError::Serve)?;
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
        let router = crate::api::router(self.services.clone());
        tracing::info!(addr = %self.addr, primary = self.services.primary.kind(), "serving");
        axum::serve(self.listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(StartError::Serve)?;
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
