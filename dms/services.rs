//! [`Services`]: everything DMS runs on — the primary store, the metadata database, the write
//! path, the cached reader, the sources and the jobs — built from a [`Config`] by the process
//! that holds the data directory ([`crate::datadir`]). The HTTP API and in-process CLI commands
//! both run on it; [`crate::app::App`] serves the API around it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::{Config, ReplicationConfig, StoreConfig};
use crate::datadir::DataDirLock;
use crate::domain::SourceKind;
use crate::events::EventBus;
use crate::ingest::Writer;
use crate::maintain::MaintainEnv;
use crate::maintain::gaps::Calendars;
use crate::maintain::jobs::Jobs;
use crate::maintain::locks::SeriesLocks;
use crate::maintain::scan::GapScanner;
use crate::maintain::scheduled::{JobsTarget, MetaScheduleStore};
use crate::maintain::universe::Universe;
use crate::reader::Reader;
use crate::replicate::Replicator;
use crate::schedule::Scheduler;
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
    #[error(transparent)]
    Lock(#[from] crate::datadir::LockError),
    /// Another process holds the data directory.
    #[error("{0}")]
    Busy(String),
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
    /// The maintained series (config + API entries).
    pub universe: Universe,
    /// The internal event bus: jobs, sources and replication publish, alerts subscribe.
    pub events: EventBus,
    /// The `schedule:` entries; their loops run only in `dms serve` ([`crate::app::App::run`]).
    pub scheduler: Scheduler,
    /// One trading calendar per market, with the `calendars:` overrides of the config.
    pub calendars: Arc<Calendars>,
    /// Gap detection and update planning over the coverage summaries.
    pub gaps: GapScanner,
    /// Shipping to backup nodes, pulling from a primary (on a replica), verify.
    pub replicator: Replicator,
    /// This process's ownership of `storage.data_dir`, held as long as any clone lives.
    pub lock: Arc<DataDirLock>,
}

impl Services {
    /// Takes the data directory for `command` (failing with [`StartError::Busy`] when another
    /// process holds it), then opens everything ([`Services::open_locked`]).
    pub async fn open(config: Config, command: &str) -> Result<Services, StartError> {
        let lock = lock_data_dir(&config, command)?;
        Services::open_locked(config, lock).await
    }

    /// Opens the primary store named by the config, then everything else
    /// ([`Services::with_primary`]), in the process holding the data directory.
    pub async fn open_locked(config: Config, lock: DataDirLock) -> Result<Services, StartError> {
        let storage = &config.storage;
        let primary: Arc<dyn Store> = match &storage.primary {
            StoreConfig::Embedded => Arc::new(EmbeddedStore::open(&storage.bars_path())?),
            StoreConfig::Influxdb(cfg) => Arc::new(InfluxStore::connect(cfg).await?),
        };
        Services::with_primary(config, primary, lock).await
    }

    /// Builds the services around an already open primary: the metadata database (recovering
    /// change-log entries a crash left pending), the write path, the cached reader and the
    /// sources. Benchmarks use it to put any store behind the real API.
    pub async fn with_primary(
        config: Config,
        primary: Arc<dyn Store>,
        lock: DataDirLock,
    ) -> Result<Services, StartError> {
        let config = Arc::new(config);
        let storage = &config.storage;
        let meta = MetaDb::open(&storage.meta_path())?;
        // Before the entries stop being pending: their blocks may differ from the store.
        meta.coverage_recover_pending().await?;
        let recovered = meta.recover_pending().await?;
        if recovered > 0 {
            tracing::warn!(
                recovered,
                "committed change-log entries left pending by a crash"
            );
        }
        let spool = Arc::new(
            crate::spool::Spool::open(&storage.data_dir.join("spool"))
                .map_err(|e| StartError::Other(e.to_string()))?,
        );
        if !spool.is_empty() {
            tracing::warn!(
                bars = spool.bars(),
                records = spool.records(),
                "the spool holds changes the primary has not taken yet; replaying them"
            );
        }
        let mut writer = Writer::new(primary.clone(), meta.clone()).with_spool(spool.clone());
        if let ReplicationConfig::Replica { primary_url, .. } = &config.replication {
            // Only replication writes here: everything else answers 409.
            writer = writer.read_only(format!(
                "this instance is a replica of {primary_url}: it takes changes only from there"
            ));
        }
        let events = EventBus::new();
        let replicator = Replicator::new(&config, &writer, events.clone());
        // Every settled write wakes the shippers (after the primary acknowledged it).
        writer.add_listener(replicator.listener());
        writer.spawn_replayer();
        let reader = Reader::new(
            primary.clone(),
            config.reader.max_bars_per_request,
            config.cache.max_bytes,
        )
        .with_spool(spool);
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
        let universe = Universe::load(config.universe.clone(), meta.clone()).await?;
        for s in sources.values() {
            s.attach_events(events.clone());
            s.remember_requests(&storage.data_dir.join("ratelimit"));
        }
        let calendars = Arc::new(Calendars::new(
            &config
                .calendars
                .iter()
                .map(|(m, o)| (*m, o.to_overrides()))
                .collect(),
        ));
        let gaps = GapScanner::new(
            primary.clone(),
            meta.clone(),
            calendars.clone(),
            universe.clone(),
            config.history.default_start_years,
        );
        // Learn, before anything writes, which series the store held before coverage
        // summaries (once per data directory); if the primary is down, the first scan does.
        if let Err(e) = gaps.ensure_seeded().await {
            tracing::warn!(error = %e, "cannot list the stored series for the coverage summaries yet");
        }
        let jobs = Jobs::new(
            meta.clone(),
            MaintainEnv {
                writer: writer.clone(),
                sources: sources.clone(),
                universe: universe.clone(),
                locks: SeriesLocks::default(),
                clock: Arc::new(SystemClock),
                history: config.history.clone(),
                events: events.clone(),
                gaps: gaps.clone(),
                replicator: replicator.clone(),
            },
        );
        let scheduler = Scheduler::new(
            &config.schedule,
            Arc::new(JobsTarget { jobs: jobs.clone() }),
            Arc::new(MetaScheduleStore(meta.clone())),
            Arc::new(SystemClock),
        );
        Ok(Services {
            config,
            primary,
            meta,
            writer,
            reader,
            sources,
            jobs,
            universe,
            events,
            scheduler,
            calendars,
            gaps,
            replicator,
            lock: Arc::new(lock),
        })
    }
}

/// Takes `storage.data_dir` for `command`, or fails with [`StartError::Busy`] naming its holder.
pub fn lock_data_dir(config: &Config, command: &str) -> Result<DataDirLock, StartError> {
    let dir = &config.storage.data_dir;
    match DataDirLock::try_acquire(dir, command)? {
        crate::datadir::Acquired::Mine(l) => Ok(l),
        crate::datadir::Acquired::Held(h) => Err(StartError::Busy(busy_message(dir, h))),
    }
}

/// One line saying who holds a data directory.
pub fn busy_message(dir: &std::path::Path, holder: Option<crate::datadir::Holder>) -> String {
    match holder {
        Some(h) => match h.base_url() {
            Some(url) if h.command == "serve" => format!(
                "data directory {} is already served by dms serve (pid {}) at {url}",
                dir.display(),
                h.pid
            ),
            _ => format!(
                "data directory {} is in use by dms {} (pid {})",
                dir.display(),
                h.command,
                h.pid
            ),
        },
        None => format!(
            "data directory {} is in use by another process",
            dir.display()
        ),
    }
}
