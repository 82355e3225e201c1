//! The InfluxDB store against a real `influxd`: the shared store suite (each test in its own
//! database on one server per test binary), and what only InfluxDB has — database creation,
//! retention policies, authentication, error mapping, injection attempts, both response
//! formats.

use std::time::Duration;

use dms::config::InfluxApi;
use dms::domain::{Bar, CorporateAction, Interval, SourceKind, Symbol, TimeRange};
use dms::store::influx::{InfluxOptions, InfluxStore, ReadFormat};
use dms::store::{Fields, Store, StoreError};

use crate::helpers::bars::{T0, bars, batch, key};
use crate::helpers::influxd::{self, Influxd, Options};
use crate::helpers::stall_proxy::{Mode, StallProxy};

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

/// The stored fields of every point of `symbol`, by raw query: `[time, adj_close, close]`.
async fn raw_points(server: &Influxd, db: &str, symbol: &str) -> Vec<serde_json::Value> {
    let q = format!("SELECT adj_close, close FROM bars WHERE symbol = '{symbol}'");
    series(&server.raw_query(db, &q).await)
        .first()
        .and_then(|s| s["values"].as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_without_adj_close_replaces_it_in_the_same_write() {
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
    // Stored as 0, the "absent" value, by the write itself: no point was deleted.
    let points = raw_points(server, &db, "ADJ").await;
    assert_eq!(points.len(), 12);
    for (p, b) in points.iter().zip(&all) {
        assert_eq!(p[1].as_f64().unwrap(), b.adj_close.unwrap_or(0.0), "{p}");
    }
    // And back: a later write with adj_close sets it again.
    all[2].adj_close = Some(all[2].close);
    store.write(&batch(&k, vec![all[2]])).await.unwrap();
    assert_eq!(store.read(&k, TimeRange::ALL).await.unwrap(), all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_stored_without_an_adj_close_field_read_as_none() {
    // Points written before every line carried every field, or by another writer.
    let server = influxd::shared();
    let db = server.unique_database("old_points");
    let store = InfluxStore::connect(&server.config(&db)).await.unwrap();
    let body = format!(
        "bars,symbol=OLD,interval=1d open=1.5,high=2.5,low=1.0,close=2.0,volume=10.0,source=\"yahoo\" {T0}\n\
         bars,symbol=OLD,interval=1d open=1.5,high=2.5,low=1.0,close=2.0,volume=10.0 {}\n",
        T0 + 86_400
    );
    let (status, text) = server.raw_write(&db, &body).await;
    assert_eq!(status, 204, "{text}");
    let k = key("OLD", Interval::D1);
    let got = store.read(&k, TimeRange::ALL).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].adj_close, got[0].source, got[0].close),
        (None, SourceKind::Yahoo, 2.0)
    );
    assert_eq!(
        (got[1].adj_close, got[1].source),
        (None, SourceKind::Unknown)
    );
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

/// Bar `i` as write number `g` of the overwrite test writes it: every field derived from
/// `(g, i)` (exactly: the fractions are binary), `adj_close` present and the source Yahoo on
/// odd writes only, so that the write each field of a read bar came from can be told.
fn generation_bar(ts: i64, i: usize, g: u32) -> Bar {
    let base = 100.0 + g as f64 + (i % 97) as f64 / 128.0;
    Bar {
        ts,
        open: base,
        high: base + 1.0,
        low: base - 1.0,
        close: base + 0.5,
        volume: (g as f64) * 1e6 + i as f64,
        adj_close: (g % 2 == 1).then_some(base + 0.25),
        source: if g % 2 == 1 {
            SourceKind::Yahoo
        } else {
            SourceKind::Futu
        },
    }
}

/// The write each numeric field of `b` (bar `i`) came from — open, high, low, close, volume,
/// adj_close (`None` when absent: every even write) — checking that each field holds a value
/// some write of [`generation_bar`] gave it, and that the source agrees with `adj_close`.
fn generations(b: &Bar, i: usize, writes: u32) -> [Option<u32>; 6] {
    let frac = (i % 97) as f64 / 128.0;
    let of = |v: f64, offset: f64, what: &str| {
        let g = v - 100.0 - offset - frac;
        assert!(
            g.fract() == 0.0 && (0.0..=writes as f64).contains(&g),
            "bar {i}: {what} {v} was never written"
        );
        Some(g as u32)
    };
    let volume = (b.volume - i as f64) / 1e6;
    assert!(
        volume.fract() == 0.0 && volume <= writes as f64,
        "bar {i}: volume {} was never written",
        b.volume
    );
    let adj = b.adj_close.map(|a| {
        let g = of(a, 0.25, "adj_close").unwrap();
        assert!(g % 2 == 1, "bar {i}: adj_close {a} was never written");
        g
    });
    [
        of(b.open, 0.0, "open"),
        of(b.high, 1.0, "high"),
        of(b.low, -1.0, "low"),
        of(b.close, 0.5, "close"),
        Some(volume as u32),
        adj,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_during_repeated_overwrites_never_sees_fewer_bars_or_older_values() {
    let server = influxd::shared();
    let db = server.unique_database("overwrite");
    // Three requests per write, so that a read can fall between two of them.
    let options = InfluxOptions {
        lines_per_request: 1_000,
        ..InfluxOptions::default()
    };
    let store = InfluxStore::connect_with(&server.config(&db), options)
        .await
        .unwrap();
    let k = key("FLIP", Interval::M1);
    const N: usize = 3_000;
    const WRITES: u32 = 30;
    let ts: Vec<i64> = bars(T0, N, Interval::M1, 0.0)
        .iter()
        .map(|b| b.ts)
        .collect();
    let write_of = |g: u32| -> Vec<Bar> {
        ts.iter()
            .enumerate()
            .map(|(i, &t)| generation_bar(t, i, g))
            .collect()
    };
    store.write(&batch(&k, write_of(0))).await.unwrap();

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, k, done, ts) = (store.clone(), k.clone(), done.clone(), ts.clone());
        tokio::spawn(async move {
            let mut reads = 0u32;
            let mut mixed = 0usize;
            let mut seen = std::collections::BTreeSet::new();
            let mut last: Vec<[Option<u32>; 6]> = vec![[Some(0); 6]; N];
            // At least a few reads, then until the writer is done.
            while reads < 5 || !done.load(std::sync::atomic::Ordering::SeqCst) {
                let got = store.read(&k, TimeRange::ALL).await.unwrap();
                assert_eq!(got.len(), N, "read {reads} saw {} bars, not {N}", got.len());
                for (i, b) in got.iter().enumerate() {
                    assert_eq!(b.ts, ts[i]);
                    let g = generations(b, i, WRITES);
                    for (field, (now, before)) in g.iter().zip(&last[i]).enumerate() {
                        if let (Some(now), Some(before)) = (now, before) {
                            assert!(
                                now >= before,
                                "read {reads}: field {field} of bar {i} went back from \
                                 write {before} to write {now}"
                            );
                        }
                    }
                    let known: Vec<u32> = g.iter().flatten().copied().collect();
                    if known.iter().any(|&x| x != known[0]) || (g[5].is_none() && known[0] % 2 == 1)
                    {
                        mixed += 1;
                    }
                    seen.extend(known);
                    last[i] = g;
                }
                reads += 1;
            }
            (reads, seen.len(), mixed)
        })
    };
    for g in 1..=WRITES {
        store.write(&batch(&k, write_of(g))).await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (reads, generations, mixed) = reader.await.unwrap();
    // InfluxDB reads each field through its own cursor, so a point read while it is being
    // overwritten can hold some fields of the old write and some of the new (seen on 1.6.7);
    // never a missing bar, never a value older than one read before.
    eprintln!("{reads} reads saw {generations} writes; {mixed} bars had fields of two writes");
    assert!(reads >= 5);
    // The reads did overlap the writes (they saw more than the first and last write).
    assert!(generations > 2, "{reads} reads saw {generations} writes");
    assert_eq!(
        store.read(&k, TimeRange::ALL).await.unwrap(),
        write_of(WRITES)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ohlcv_read_asks_for_no_optional_field() {
    let server = influxd::shared();
    let db = server.unique_database("projection");
    let store = InfluxStore::connect(&server.config(&db)).await.unwrap();
    let k = key("PROJ", Interval::D1);
    let b = bars(T0, 20, Interval::D1, 1.0);
    store.write(&batch(&k, b.clone())).await.unwrap();
    let got = store
        .read_fields(&k, TimeRange::ALL, Fields::OHLCV)
        .await
        .unwrap();
    let want: Vec<Bar> = b
        .iter()
        .map(|x| Bar {
            adj_close: None,
            source: SourceKind::Unknown,
            ..*x
        })
        .collect();
    assert_eq!(got, want);
    let adj_only = Fields {
        adj_close: true,
        source: false,
    };
    let got = store
        .read_fields(&k, TimeRange::ALL, adj_only)
        .await
        .unwrap();
    assert!(
        got.iter()
            .zip(&b)
            .all(|(g, x)| g.adj_close == x.adj_close && g.source == SourceKind::Unknown)
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
    assert!(
        err.to_string()
            .contains("no line of the request was stored"),
        "{err}"
    );
    assert!(store.read(&k, TimeRange::ALL).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_point_in_a_request_fails_the_write_and_the_rest_is_stored() {
    let server = influxd::shared();
    let db = server.unique_database("one_bad");
    let store = InfluxStore::connect(&server.config(&db)).await.unwrap();
    // `volume` is a string in the 2020 shard (52-week shards), so only the one bar of this
    // batch that falls there conflicts; the other 4,999 go to the 2024 shard.
    let early = T0 - 4 * 365 * 86_400;
    let (status, text) = server
        .raw_write(
            &db,
            &format!("bars,symbol=OTHER,interval=1m volume=\"x\" {early}\n"),
        )
        .await;
    assert_eq!(status, 204, "{text}");
    let k = key("MOSTLY", Interval::M1);
    let mut b = bars(T0, 4_999, Interval::M1, 1.0);
    b.insert(0, crate::helpers::bars::bar(early + 60, 1.0));
    let err = store.write(&batch(&k, b.clone())).await.unwrap_err();
    assert_eq!(kind(&err), "rejected", "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("400 Bad Request: partial write: field type conflict"),
        "{msg}"
    );
    assert!(msg.contains("dropped=1"), "{msg}");
    assert!(
        msg.contains("influxdb stores the other 4999 lines of the request"),
        "{msg}"
    );
    assert!(msg.len() < 600, "{msg}");
    // InfluxDB answers as soon as one shard fails, while the other shard may still be writing
    // (1.6's `PointsWriter` returns the first error without waiting): the good lines land, but
    // possibly after the answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stored(&db, "MOSTLY").await < 4_999 {
        assert!(
            std::time::Instant::now() < deadline,
            "the good lines never landed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.read(&k, TimeRange::ALL).await.unwrap(), b[1..]);
}

/// A store on the shared server reached through a [`StallProxy`], with a 1 s timeout, in a
/// database of its own (created through the proxy in `Forward` mode).
async fn behind_a_proxy(prefix: &str) -> (StallProxy, InfluxStore, String) {
    let server = influxd::shared();
    let proxy = StallProxy::start(server.addr);
    let db = server.unique_database(prefix);
    let mut config = server.config(&db);
    config.url = proxy.url();
    config.timeout_s = 1;
    let store = InfluxStore::connect(&config).await.unwrap();
    (proxy, store, db)
}

/// How many bars of `symbol` the shared server holds, asked directly (not through a proxy).
async fn stored(db: &str, symbol: &str) -> u64 {
    let q = format!("SELECT count(close) FROM bars WHERE symbol = '{symbol}'");
    let answer = influxd::shared().raw_query(db, &q).await;
    series(&answer)
        .first()
        .and_then(|s| s["values"][0][1].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_stalls_past_the_timeout_is_unavailable_and_has_landed() {
    let (proxy, store, db) = behind_a_proxy("stall").await;
    proxy.set_mode(Mode::StallAnswers);
    let k = key("STALL", Interval::D1);
    let b = bars(T0, 50, Interval::D1, 1.0);
    let err = store.write(&batch(&k, b.clone())).await.unwrap_err();
    assert_eq!(kind(&err), "unavailable", "{err}");
    assert_eq!(
        err.to_string(),
        "influxdb: unavailable: write: no answer within 1s (the request may have been applied)"
    );
    assert_eq!(proxy.stalled(), 1);
    // InfluxDB answers only after applying a write, and it did answer (the proxy swallowed it).
    assert_eq!(stored(&db, "STALL").await, 50);
    proxy.set_mode(Mode::Forward);
    assert_eq!(store.read(&k, TimeRange::ALL).await.unwrap(), b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_instead_of_the_answer_is_unavailable_and_the_write_has_landed() {
    let (proxy, store, db) = behind_a_proxy("reset_after").await;
    proxy.set_mode(Mode::ResetAfterRequest);
    let k = key("RESET", Interval::D1);
    let err = store
        .write(&batch(&k, bars(T0, 40, Interval::D1, 1.0)))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), "unavailable", "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("write: connection lost before the answer"),
        "{msg}"
    );
    assert!(
        msg.ends_with("(the request may have been applied)"),
        "{msg}"
    );
    assert!(proxy.resets() >= 1);
    assert_eq!(stored(&db, "RESET").await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_mid_request_is_unavailable_and_nothing_is_stored() {
    let (proxy, store, db) = behind_a_proxy("reset_mid").await;
    proxy.set_mode(Mode::ResetMidRequest);
    let k = key("MID", Interval::D1);
    let b = batch(&k, bars(T0, 40, Interval::D1, 1.0));
    let err = store.write(&b).await.unwrap_err();
    assert_eq!(kind(&err), "unavailable", "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("write: connection lost before the answer"),
        "{msg}"
    );
    assert!(
        msg.ends_with("(the request may have been applied)"),
        "{msg}"
    );
    assert!(proxy.resets() >= 1);
    assert_eq!(stored(&db, "MID").await, 0);
    // Writing again once the network is back stores the batch.
    proxy.set_mode(Mode::Forward);
    store.write(&b).await.unwrap();
    assert_eq!(stored(&db, "MID").await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_unavailable_and_says_nothing_was_sent() {
    let (proxy, store, db) = behind_a_proxy("refused").await;
    proxy.set_mode(Mode::Refuse);
    let k = key("REFUSED", Interval::D1);
    let b = batch(&k, bars(T0, 10, Interval::D1, 1.0));
    // A keep-alive connection pooled before the refusal can still be written to before its
    // close is seen (it happens under load): that attempt can only say the request may have
    // been applied. With the pool empty, every attempt is refused at connect.
    let mut err = store.write(&b).await.unwrap_err();
    if err
        .to_string()
        .contains("connection lost before the answer")
    {
        err = store.write(&b).await.unwrap_err();
    }
    assert_eq!(kind(&err), "unavailable", "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("influxdb: unavailable: write: cannot connect: "),
        "{msg}"
    );
    assert!(msg.ends_with("(nothing was sent)"), "{msg}");
    assert!(
        !msg.contains("127.0.0.1"),
        "the url stays out of messages: {msg}"
    );
    assert_eq!(stored(&db, "REFUSED").await, 0);
    proxy.set_mode(Mode::Forward);
    store.write(&b).await.unwrap();
    assert_eq!(stored(&db, "REFUSED").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxd_killed_mid_batch_keeps_a_prefix_and_writing_again_completes_it() {
    let mut server = Influxd::start(Options::default());
    let db = "killed";
    let options = InfluxOptions {
        lines_per_request: 1_000,
        ..InfluxOptions::default()
    };
    let store = InfluxStore::connect_with(&server.config(db), options)
        .await
        .unwrap();
    let k = key("KILLED", Interval::M1);
    let b = batch(&k, bars(T0, 100_000, Interval::M1, 1.0));
    let writing = {
        let (store, b) = (store.clone(), b.clone());
        tokio::spawn(async move { store.write(&b).await })
    };
    // Kill it once a few requests have landed, well before the 100th.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = server.raw_query(db, "SELECT count(close) FROM bars").await;
        let n = series(&answer)
            .first()
            .and_then(|s| s["values"][0][1].as_u64())
            .unwrap_or(0);
        if n >= 3_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {n} bars stored");
        assert!(!writing.is_finished(), "the write finished before the kill");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let err = writing.await.unwrap().unwrap_err();
    assert_eq!(kind(&err), "unavailable", "{err}");
    server.restart();
    // Every acknowledged request survived the kill (InfluxDB syncs its WAL before answering),
    // and what is stored is a prefix of the batch, value for value.
    let got = store.read(&k, TimeRange::ALL).await.unwrap();
    assert!(
        got.len() >= 3_000 && got.len() < 100_000,
        "{} bars",
        got.len()
    );
    assert_eq!(got, b.bars()[..got.len()]);
    store.write(&b).await.unwrap();
    assert_eq!(store.read(&k, TimeRange::ALL).await.unwrap(), b.bars());
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
    assert!(err.to_string().contains("no answer within 1s"), "{err}");
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

/// InfluxDB 1.x hides a series' points in a shard (until it restarts) when a `DELETE` of the
/// series runs while a write is adding the series to that shard; the store keeps deletes of a
/// series apart from its writes. Each round writes a backfill into two new shards of a fresh
/// database while deleting other bars of the same series, then reads the backfill back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_racing_a_backfill_into_new_shards_never_hide_its_bars() {
    const DAY: i64 = 86_400;
    let server = influxd::shared();
    let k = key("AAPL", Interval::D1);
    let past = TimeRange::new(T0 - 2000 * DAY, T0 - 1500 * DAY).unwrap();
    for round in 0..20 {
        let store = InfluxStore::connect(&server.config(&server.unique_database("race")))
            .await
            .unwrap();
        store
            .write(&batch(&k, bars(T0, 300, Interval::D1, 1.0)))
            .await
            .unwrap();
        let backfill = batch(&k, bars(past.start(), 500, Interval::D1, 2.0));
        let deletes = async {
            for i in 0..10 {
                let at = T0 + (10 + 20 * i) * DAY;
                let r = TimeRange::new(at, at + 5 * DAY).unwrap();
                store.delete(&k, r).await.unwrap();
            }
        };
        let (written, ()) = tokio::join!(store.write(&backfill), deletes);
        written.unwrap();
        let got = store.read(&k, past).await.unwrap();
        assert_eq!(
            got.len(),
            500,
            "round {round}: the backfill reads back {} of its 500 bars",
            got.len()
        );
        assert_eq!(store.read(&k, TimeRange::ALL).await.unwrap().len(), 750);
    }
}

/// `latest` looks in the last days first and widens only for the series not found there: each
/// series' newest bar comes back wherever it is, and a series with nothing stored is absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_finds_newest_bars_of_any_age_in_one_call() {
    const DAY: i64 = 86_400;
    let store = make().await;
    let today = chrono::Utc::now().timestamp().div_euclid(DAY) * DAY;
    let ages = [1, 100, 1_000, 7_300];
    let mut keys = Vec::new();
    for (i, age) in ages.iter().enumerate() {
        let k = key(&format!("AGE{i}"), Interval::D1);
        // Three bars ending `age` days ago, plus one far older.
        let mut b = bars(today - (age + 2) * DAY, 3, Interval::D1, 1.0 + i as f64);
        b.insert(0, bars(today - (age + 4000) * DAY, 1, Interval::D1, 9.0)[0]);
        store.write(&batch(&k, b)).await.unwrap();
        keys.push(k);
    }
    keys.push(key("NOTHING", Interval::D1));
    let latest = store.latest(&keys).await.unwrap();
    assert_eq!(latest.len(), ages.len(), "{latest:?}");
    for (i, age) in ages.iter().enumerate() {
        assert_eq!(latest[&keys[i]].ts, today - age * DAY, "AGE{i}");
    }
}
