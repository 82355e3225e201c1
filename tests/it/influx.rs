//! The InfluxDB store against a real `influxd`: the shared store suite (each test in its own
//! database on one server per test binary), and what only InfluxDB has — database creation,
//! retention policies, authentication, error mapping, injection attempts, both response
//! formats.

use std::time::Duration;

use dms::config::InfluxApi;
use dms::domain::{CorporateAction, Interval, SourceKind, Symbol, TimeRange};
use dms::store::influx::{InfluxOptions, InfluxStore, ReadFormat};
use dms::store::{Store, StoreError};

use crate::helpers::bars::{T0, bars, batch, key};
use crate::helpers::influxd::{self, Influxd, Options};

/// An InfluxDB store on the shared server, in a database of its own.
pub struct Guard(InfluxStore);

impl std::ops::Deref for Guard {
    type Target = InfluxStore;
    fn deref(&self) -> &InfluxStore {
        &self.0
    }
}

pub async fn make() -> Guard {
    let server = influxd::shared();
    let config = server.config(&server.unique_database("suite"));
    Guard(InfluxStore::connect(&config).await.expect("connect"))
}

crate::store_suite!(influx_store, crate::influx::make);

/// The `series` of a raw JSON answer's first result, or an empty list.
fn series(answer: &serde_json::Value) -> Vec<serde_json::Value> {
    answer["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable { .. } => "unavailable",
        StoreError::Rejected { .. } => "rejected",
        StoreError::Corrupt { .. } => "corrupt",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_creates_a_missing_database_with_52_week_shards() {
    let server = influxd::shared();
    let db = server.unique_database("created");
    let store = InfluxStore::connect(&server.config(&db)).await.unwrap();
    let policies = server
        .raw_query(&db, &format!("SHOW RETENTION POLICIES ON \"{db}\""))
        .await;
    assert_eq!(
        series(&policies)[0]["values"],
        serde_json::json!([["autogen", "0s", "8736h0m0s", 1, true]])
    );
    // Connecting again to the existing database changes nothing.
    InfluxStore::connect(&server.config(&db)).await.unwrap();
    let health = store.ping().await.unwrap();
    assert_eq!(health.kind, "influxdb");
    assert!(health.version.unwrap().starts_with("1."));
    assert!(health.location.contains(&db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_retention_policy_is_created_with_the_database_and_used() {
    let server = influxd::shared();
    let db = server.unique_database("rp");
    let mut config = server.config(&db);
    config.retention_policy = Some("bars five years".into());
    let store = InfluxStore::connect(&config).await.unwrap();
    let k = key("RP", Interval::D1);
    let b = bars(T0, 10, Interval::D1, 1.0);
    store.write(&batch(&k, b.clone())).await.unwrap();
    assert_eq!(store.read(&k, TimeRange::ALL).await.unwrap(), b);
    let count = server
        .raw_query(
            &db,
            &format!("SELECT count(close) FROM \"{db}\".\"bars five years\".bars"),
        )
        .await;
    assert_eq!(series(&count)[0]["values"][0][1], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_use_the_configured_policy_of_an_existing_database() {
    let server = influxd::shared();
    let db = server.unique_database("rp_existing");
    server
        .raw_query(&db, &format!("CREATE DATABASE \"{db}\""))
        .await;
    server
        .raw_query(
            &db,
            &format!("CREATE RETENTION POLICY \"short\" ON \"{db}\" DURATION INF REPLICATION 1"),
        )
        .await;
    let mut config = server.config(&db);
    config.retention_policy = Some("short".into());
    let store = InfluxStore::connect(&config).await.unwrap();
    let k = key("RP2", Interval::D1);
    let b = bars(T0, 3, Interval::D1, 1.0);
    store.write(&batch(&k, b.clone())).await.unwrap();
    assert_eq!(store.read(&k, TimeRange::ALL).await.unwrap(), b);
    let in_default = server
        .raw_query(&db, "SELECT count(close) FROM autogen.bars")
        .await;
    assert!(series(&in_default).is_empty());
    let in_short = server
        .raw_query(&db, "SELECT count(close) FROM short.bars")
        .await;
    assert_eq!(series(&in_short)[0]["values"][0][1], 3);

    config.retention_policy = Some("missing".into());
    let err = InfluxStore::connect(&config).await.err().unwrap();
    assert_eq!(kind(&err), "rejected");
    assert!(
        err.to_string()
            .contains("retention policy \"missing\" does not exist")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_attempts_change_no_query_and_leave_other_series_intact() {
    let server = influxd::shared();
    let db = server.unique_database("inject");
    let store = InfluxStore::connect(&server.config(&db)).await.unwrap();
    let victim = key("VICTIM", Interval::D1);
    let victim_bars = bars(T0, 5, Interval::D1, 1.0);
    store
        .write(&batch(&victim, victim_bars.clone()))
        .await
        .unwrap();
    let attacks = [
        "x'; DROP MEASUREMENT bars --".to_string(),
        format!("x'; DROP DATABASE \"{db}\"; --"),
        "x' OR symbol='VICTIM".to_string(),
        "x\\' OR symbol=\\'VICTIM".to_string(),
        "x' OR '1'='1".to_string(),
        "x'\nDROP MEASUREMENT bars".to_string(),
    ];
    let range = TimeRange::ALL;
    for attack in &attacks {
        let k = key(attack, Interval::D1);
        assert!(
            store.read(&k, range).await.unwrap().is_empty(),
            "{attack:?}"
        );
        assert_eq!(store.delete(&k, range).await.unwrap(), 0, "{attack:?}");
        assert!(
            store
                .latest(std::slice::from_ref(&k))
                .await
                .unwrap()
                .is_empty(),
            "{attack:?}"
        );
        assert!(store.summary(&k, range).await.unwrap().count == 0);
        let sym = Symbol::opaque(attack);
        assert!(store.read_actions(&sym, range).await.unwrap().is_empty());
    }
    // Stored as themselves (the one with a newline cannot be stored at all).
    for attack in &attacks[..5] {
        let k = key(attack, Interval::D1);
        let b = bars(T0, 2, Interval::D1, 2.0);
        store.write(&batch(&k, b.clone())).await.unwrap();
        assert_eq!(store.read(&k, range).await.unwrap(), b, "{attack:?}");
        assert_eq!(store.delete(&k, range).await.unwrap(), 2, "{attack:?}");
    }
    assert_eq!(store.read(&victim, range).await.unwrap(), victim_bars);
    let measurements = server.raw_query(&db, "SHOW MEASUREMENTS").await;
    assert_eq!(
        series(&measurements)[0]["values"],
        serde_json::json!([["bars"]])
    );
    let stats = store.list_series().await.unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].series, victim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_line_protocol_cannot_carry_are_rejected_before_anything_is_sent() {
    let server = influxd::shared();
    let db = server.unique_database("unstorable");
    let store = InfluxStore::connect(&server.config(&db)).await.unwrap();
    for sym in [
        "new\nline",
        "carriage\rreturn",
        "nul\0byte",
        "trailing\\",
        "",
    ] {
        let k = key(sym, Interval::D1);
        let err = store
            .write(&batch(&k, bars(T0, 2, Interval::D1, 1.0)))
            .await
            .unwrap_err();
        assert_eq!(kind(&err), "rejected", "{sym:?}: {err}");
        let action = CorporateAction::dividend(T0, 0.5, SourceKind::Yahoo);
        let err = store
            .write_actions(&Symbol::opaque(sym), &[action])
            .await
            .unwrap_err();
        assert_eq!(kind(&err), "rejected", "{sym:?}: {err}");
        assert!(store.read(&k, TimeRange::ALL).await.unwrap().is_empty());
    }
    assert!(store.list_series().await.unwrap().is_empty());
    assert!(series(&server.raw_query(&db, "SHOW MEASUREMENTS").await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_without_adj_close_removes_only_the_points_that_lose_it() {
    let server = influxd::shared();
    let db = server.unique_database("adj");
    let store = InfluxStore::connect(&server.config(&db)).await.unwrap();
    let k = key("ADJ", Interval::D1);
    let mut all = bars(T0, 12, Interval::D1, 1.0);
    for b in &mut all[8..] {
        b.adj_close = None;
    }
    store.write(&batch(&k, all.clone())).await.unwrap();
    // Rewrite bars 1, 2, 3, 5, 9 without adj_close; 4 and 6..8 are not rewritten and keep it.
    let mut rewrite = Vec::new();
    for i in [1, 2, 3, 5, 9] {
        let mut b = all[i];
        b.adj_close = None;
        b.close += 0.5;
        b.high += 0.5;
        all[i] = b;
        rewrite.push(b);
    }
    store.write(&batch(&k, rewrite)).await.unwrap();
    assert_eq!(store.read(&k, TimeRange::ALL).await.unwrap(), all);
    // And back: a later write with adj_close sets it again.
    all[2].adj_close = Some(all[2].close);
    store.write(&batch(&k, vec![all[2]])).await.unwrap();
    assert_eq!(store.read(&k, TimeRange::ALL).await.unwrap(), all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_split_without_ratios_loses_them() {
    let server = influxd::shared();
    let db = server.unique_database("actions");
    let store = InfluxStore::connect(&server.config(&db)).await.unwrap();
    let sym = Symbol::parse("AAPL").unwrap();
    let split = CorporateAction::split(T0, 4.0, 1.0, SourceKind::Yahoo);
    store
        .write_actions(&sym, std::slice::from_ref(&split))
        .await
        .unwrap();
    let mut bare = split.clone();
    bare.numerator = None;
    bare.denominator = None;
    bare.source = SourceKind::Futu;
    store.write_actions(&sym, &[bare.clone()]).await.unwrap();
    assert_eq!(
        store.read_actions(&sym, TimeRange::ALL).await.unwrap(),
        vec![bare]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_error_is_an_error_not_an_empty_answer() {
    let server = influxd::shared();
    let db = server.unique_database("dropped");
    let store = InfluxStore::connect(&server.config(&db)).await.unwrap();
    let k = key("GONE", Interval::D1);
    store
        .write(&batch(&k, bars(T0, 3, Interval::D1, 1.0)))
        .await
        .unwrap();
    server
        .raw_query(&db, &format!("DROP DATABASE \"{db}\""))
        .await;
    let err = store.read(&k, TimeRange::ALL).await.unwrap_err();
    assert_eq!(kind(&err), "rejected");
    assert!(err.to_string().contains("database not found"), "{err}");
    let err = store.latest(std::slice::from_ref(&k)).await.unwrap_err();
    assert!(err.to_string().contains("database not found"), "{err}");
    let err = store
        .write(&batch(&k, bars(T0, 1, Interval::D1, 1.0)))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), "rejected");
    assert!(err.to_string().contains("database not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_write_is_rejected_with_influxdbs_message() {
    let server = influxd::shared();
    let db = server.unique_database("partial");
    let store = InfluxStore::connect(&server.config(&db)).await.unwrap();
    // Someone else made `volume` a string field.
    let (status, _) = server
        .raw_write(
            &db,
            "bars,symbol=OTHER,interval=1d volume=\"x\" 1704153600\n",
        )
        .await;
    assert_eq!(status, 204);
    let k = key("CONFLICT", Interval::D1);
    let err = store
        .write(&batch(&k, bars(T0, 3, Interval::D1, 1.0)))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), "rejected");
    assert!(err.to_string().contains("partial write"), "{err}");
    assert!(err.to_string().contains("field type conflict"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_msgpack_responses_read_the_same_bars() {
    let server = influxd::shared();
    let db = server.unique_database("formats");
    let config = server.config(&db);
    let msgpack = InfluxStore::connect(&config).await.unwrap();
    let options = InfluxOptions {
        read_format: ReadFormat::Json,
        chunk_size: 333,
        ..InfluxOptions::default()
    };
    let json = InfluxStore::connect_with(&config, options).await.unwrap();
    let keys = [key("A' B,C=D", Interval::M1), key("日本株.T", Interval::D1)];
    let mut b = bars(T0, 2_000, Interval::M1, 1.0);
    // Values whose decimal text is long or unusual must survive JSON too.
    let odd = 0.1 + 0.2;
    (b[7].open, b[7].high, b[7].low, b[7].close) = (odd, odd, odd, odd);
    b[8].volume = 1e20;
    b[9].volume = 0.0;
    b[10].adj_close = None;
    msgpack.write(&batch(&keys[0], b.clone())).await.unwrap();
    let d = bars(T0, 40, Interval::D1, 2.0);
    msgpack.write(&batch(&keys[1], d.clone())).await.unwrap();
    for store in [&msgpack, &json] {
        assert_eq!(store.read(&keys[0], TimeRange::ALL).await.unwrap(), b);
        assert_eq!(store.read(&keys[1], TimeRange::ALL).await.unwrap(), d);
        let latest = store.latest(&keys).await.unwrap();
        assert_eq!(latest[&keys[0]], b[1_999]);
        assert_eq!(latest[&keys[1]], d[39]);
        let stats = store.list_series().await.unwrap();
        assert_eq!(
            stats.iter().map(|s| s.count).collect::<Vec<_>>(),
            vec![2_000, 40]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_is_unavailable() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = influxd::shared().config("nowhere");
    config.url = format!("http://127.0.0.1:{port}");
    let err = InfluxStore::connect(&config).await.err().unwrap();
    assert_eq!(kind(&err), "unavailable", "{err}");
    assert!(err.to_string().contains("connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_makes_every_call_unavailable() {
    let server = Influxd::start(Options::default());
    let store = InfluxStore::connect(&server.config("stops")).await.unwrap();
    let k = key("DOWN", Interval::D1);
    let b = batch(&k, bars(T0, 3, Interval::D1, 1.0));
    store.write(&b).await.unwrap();
    drop(server);
    assert_eq!(kind(&store.write(&b).await.unwrap_err()), "unavailable");
    assert_eq!(
        kind(&store.read(&k, TimeRange::ALL).await.unwrap_err()),
        "unavailable"
    );
    assert_eq!(
        kind(&store.latest(std::slice::from_ref(&k)).await.unwrap_err()),
        "unavailable"
    );
    assert_eq!(kind(&store.ping().await.unwrap_err()), "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_as_unavailable() {
    // Accepts connections and never sends a byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let mut config = influxd::shared().config("silent");
    config.url = format!("http://{addr}");
    config.timeout_s = 1;
    let started = std::time::Instant::now();
    let err = InfluxStore::connect(&config).await.err().unwrap();
    assert_eq!(kind(&err), "unavailable", "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_works_against_a_server_with_auth_enabled() {
    let server = Influxd::start(Options { auth: true });
    // The password is an environment variable every process has, so the test needs no
    // `set_var` (which races with other threads reading the environment).
    let password = std::env::var("PATH").expect("PATH is set");
    let answer = server
        .raw_query(
            "",
            &format!(
                "CREATE USER admin WITH PASSWORD {} WITH ALL PRIVILEGES",
                dms::store::influx::influxql::string(&password)
            ),
        )
        .await;
    assert!(answer["results"][0]["error"].is_null(), "{answer}");
    let mut config = server.config("secured");
    config.username = Some("admin".into());
    config.password_env = Some("PATH".into());
    let store = InfluxStore::connect(&config).await.unwrap();
    let k = key("AUTH", Interval::D1);
    let b = bars(T0, 3, Interval::D1, 1.0);
    store.write(&batch(&k, b.clone())).await.unwrap();
    assert_eq!(store.read(&k, TimeRange::ALL).await.unwrap(), b);

    // Without credentials, and with the wrong user: refused, not retried.
    let err = InfluxStore::connect(&server.config("secured"))
        .await
        .err()
        .unwrap();
    assert_eq!(kind(&err), "rejected", "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    config.username = Some("intruder".into());
    let err = InfluxStore::connect(&config).await.err().unwrap();
    assert_eq!(kind(&err), "rejected", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v2_queries_the_bucket_by_name_and_writes_to_api_v2_write() {
    let server = influxd::shared();
    let db = server.unique_database("bucket");
    let v1 = InfluxStore::connect(&server.config(&db)).await.unwrap();
    let k = key("V2", Interval::D1);
    let b = bars(T0, 3, Interval::D1, 1.0);
    v1.write(&batch(&k, b.clone())).await.unwrap();
    let mut config = server.config("unused");
    config.api = InfluxApi::V2;
    config.database = None;
    config.org = Some("acme".into());
    config.bucket = Some(db.clone());
    let v2 = InfluxStore::connect(&config).await.unwrap();
    // Reads go through the v1 compatibility API, which 1.x is.
    assert_eq!(v2.read(&k, TimeRange::ALL).await.unwrap(), b);
    // InfluxDB 1.6 has no /api/v2/write: the 404 shows the write went there.
    let err = v2.write(&batch(&k, b)).await.unwrap_err();
    assert_eq!(kind(&err), "rejected", "{err}");
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_requests_in_flight_together_store_every_bar() {
    let server = influxd::shared();
    let db = server.unique_database("in_flight");
    let options = InfluxOptions {
        lines_per_request: 100,
        writes_in_flight: 3,
        ..InfluxOptions::default()
    };
    let store = InfluxStore::connect_with(&server.config(&db), options)
        .await
        .unwrap();
    let k = key("MANY", Interval::M5);
    let mut b = bars(T0, 2_345, Interval::M5, 1.0);
    for bar in b.iter_mut().step_by(3) {
        bar.adj_close = None;
    }
    store.write(&batch(&k, b.clone())).await.unwrap();
    assert_eq!(store.read(&k, TimeRange::ALL).await.unwrap(), b);
    let stats = store.list_series().await.unwrap();
    assert_eq!(
        (stats[0].count, stats[0].first, stats[0].last),
        (2_345, b[0].ts, b[2_344].ts)
    );
}
