//! Observability: the Prometheus metrics of DESIGN §7 and the tracing subscriber (JSON lines
//! in `logging.dir`, rotated daily; human-readable lines on a terminal).
//!
//! Metrics live in one process-wide registry, [`metrics()`], so that any module can count
//! without threading a handle through every call. Labels stay low-cardinality: never a symbol.

use std::sync::LazyLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Builds a label set.
pub fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Every metric DMS exports. Names are part of the contract (DESIGN §7).
pub struct Metrics {
    registry: Registry,
    /// `store` (primary, spool, node name), `interval`.
    pub bars_written: Family<Labels, Counter>,
    /// `rule`.
    pub bars_rejected: Family<Labels, Counter>,
    /// `rule`: bars stored but flagged as suspicious by validation.
    pub bars_flagged: Family<Labels, Counter>,
    /// `source`, `outcome` (ok, rate_limited, client_error, server_error, timeout, parse_error).
    pub fetch_requests: Family<Labels, Counter>,
    /// `source`: seconds spent waiting on the rate limiter.
    pub fetch_wait_seconds: Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// `source`: 1 while paused.
    pub source_paused: Family<Labels, Gauge>,
    /// `task`, `outcome`.
    pub jobs: Family<Labels, Counter>,
    /// `task`.
    pub job_duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// `node`.
    pub replication_lag_changes: Family<Labels, Gauge>,
    /// `node`.
    pub replication_lag_seconds: Family<Labels, Gauge>,
    pub spool_bars: Gauge,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_evictions: Counter,
    pub cache_bytes: Gauge,
    /// `interval`.
    pub series_stale: Family<Labels, Gauge>,
    /// `route`, `status`.
    pub http_requests: Family<Labels, Counter>,
    /// `route`.
    pub http_duration: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            bars_written: Family::default(),
            bars_rejected: Family::default(),
            bars_flagged: Family::default(),
            fetch_requests: Family::default(),
            fetch_wait_seconds: Family::default(),
            source_paused: Family::default(),
            jobs: Family::default(),
            job_duration: Family::new_with_constructor(histogram),
            replication_lag_changes: Family::default(),
            replication_lag_seconds: Family::default(),
            spool_bars: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_evictions: Counter::default(),
            cache_bytes: Gauge::default(),
            series_stale: Family::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(histogram),
            registry: Registry::default(),
        };
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "dms_bars_written",
            "Bars written, by store and interval",
            m.bars_written.clone(),
        );
        registry.register(
            "dms_bars_rejected",
            "Bars rejected by validation, by rule",
            m.bars_rejected.clone(),
        );
        registry.register(
            "dms_bars_flagged",
            "Bars stored but flagged by validation, by rule",
            m.bars_flagged.clone(),
        );
        registry.register(
            "dms_fetch_requests",
            "Requests to sources, by outcome",
            m.fetch_requests.clone(),
        );
        registry.register(
            "dms_fetch_wait_seconds",
            "Seconds spent waiting on a source's rate limiter",
            m.fetch_wait_seconds.clone(),
        );
        registry.register(
            "dms_source_paused",
            "1 while a source is paused",
            m.source_paused.clone(),
        );
        registry.register(
            "dms_jobs",
            "Jobs finished, by task and outcome",
            m.jobs.clone(),
        );
        registry.register(
            "dms_job_duration_seconds",
            "Job duration",
            m.job_duration.clone(),
        );
        registry.register(
            "dms_replication_lag_changes",
            "Changes not yet acked by a node",
            m.replication_lag_changes.clone(),
        );
        registry.register(
            "dms_replication_lag_seconds",
            "Age of the oldest change not yet acked by a node",
            m.replication_lag_seconds.clone(),
        );
        registry.register(
            "dms_spool_bars",
            "Bars waiting in the local spool",
            m.spool_bars.clone(),
        );
        registry.register("dms_cache_hits", "Reader cache hits", m.cache_hits.clone());
        registry.register(
            "dms_cache_misses",
            "Reader cache misses",
            m.cache_misses.clone(),
        );
        registry.register(
            "dms_cache_evictions",
            "Reader cache evictions",
            m.cache_evictions.clone(),
        );
        registry.register(
            "dms_cache_bytes",
            "Bytes held by the reader cache",
            m.cache_bytes.clone(),
        );
        registry.register(
            "dms_series_stale",
            "Series whose newest bar is older than the calendar expects",
            m.series_stale.clone(),
        );
        registry.register(
            "dms_http_requests",
            "HTTP requests, by route and status",
            m.http_requests.clone(),
        );
        registry.register(
            "dms_http_request_duration_seconds",
            "HTTP request duration",
            m.http_duration.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Sets `dms_series_stale{interval}` from a scan of every series: each interval gets its
    /// count, 0 when none of its series is stale.
    pub fn set_series_stale(
        &self,
        stale: &std::collections::BTreeMap<crate::domain::Interval, u64>,
    ) {
        for i in crate::domain::Interval::ALL {
            let n = stale.get(&i).copied().unwrap_or(0);
            self.series_stale
                .get_or_create(&labels([("interval", i.as_str())]))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Keeps the log file writer flushing until dropped (hold it for the life of the process).
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// Installs the tracing subscriber: JSON lines ([`FlatJson`]) to `dir/dms.log.YYYY-MM-DD`
/// (daily rotation) when `json`, plus human-readable lines on stderr when it is a terminal (or always, when the
/// file cannot be opened). Safe to call more than once (later calls do nothing).
pub fn init_logging(dir: &std::path::Path, level: &str, json: bool) -> LogGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;

    let filter = || tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| "info".into());
    let terminal = std::io::stderr().is_terminal();
    let file = (json && std::fs::create_dir_all(dir).is_ok())
        .then(|| {
            tracing_appender::rolling::Builder::new()
                .filename_prefix("dms.log")
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .build(dir)
                .ok()
        })
        .flatten();
    let (file_layer, guard) = match file {
        Some(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(FlatJson)
                .with_writer(writer)
                .with_filter(filter());
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let console = (terminal || guard.is_none() || !json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(terminal)
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(console)
        .try_init();
    LogGuard(guard)
}

/// One JSON object a line: `timestamp`, `level`, `target`, then the fields of every span the
/// event is in (outermost first: a job's `job_id`, a request's route) and the event's own
/// fields, all at the top level, so `jq 'select(.job_id == 7)'` finds every line of job 7,
/// whichever module wrote it. An inner field replaces an outer one of the same name.
struct FlatJson;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for FlatJson
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut map = serde_json::Map::new();
        map.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        map.insert("level".into(), meta.level().as_str().into());
        map.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                let Some(fields) = ext.get::<tracing_subscriber::fmt::FormattedFields<N>>() else {
                    continue;
                };
                // `JsonFields` stores a span's fields as one JSON object.
                if let Ok(serde_json::Value::Object(m)) =
                    serde_json::from_str::<serde_json::Value>(fields.as_str())
                {
                    map.extend(m);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut map));
        let line = serde_json::Value::Object(map).to_string();
        writeln!(writer, "{line}")
    }
}

/// Records an event's fields into a JSON object.
struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_the_fields_of_their_spans_at_the_top_level() {
        use tracing_subscriber::prelude::*;
        let buf = Buffer::default();
        let out = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(FlatJson)
            .with_writer(move || out.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let job = tracing::info_span!("job", job_id = 7u64, task = "update");
            let _in_job = job.enter();
            let series = tracing::info_span!("series", symbol = "AAPL", task = "inner");
            let _in_series = series.enter();
            tracing::warn!(source = "yahoo", attempt = 2, "retrying {}", "soon");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        let l = &lines[0];
        assert_eq!(l["job_id"], 7, "{l}");
        assert_eq!(l["symbol"], "AAPL", "{l}");
        assert_eq!(l["task"], "inner", "the inner span wins: {l}");
        assert_eq!(l["source"], "yahoo", "{l}");
        assert_eq!(l["attempt"], 2, "{l}");
        assert_eq!(l["message"], "retrying soon", "{l}");
        assert_eq!(l["level"], "WARN", "{l}");
        assert!(l["timestamp"].as_str().unwrap().ends_with('Z'), "{l}");
    }

    #[test]
    fn renders_the_contract_names() {
        let m = metrics();
        m.bars_written
            .get_or_create(&labels([("store", "primary"), ("interval", "1d")]))
            .inc();
        m.cache_hits.inc();
        m.bars_flagged
            .get_or_create(&labels([("rule", "jump")]))
            .inc();
        let text = m.render();
        for name in [
            "dms_bars_written_total{store=\"primary\",interval=\"1d\"}",
            "dms_cache_hits_total",
            "dms_bars_flagged_total{rule=\"jump\"}",
            "dms_spool_bars",
            "dms_cache_bytes",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
