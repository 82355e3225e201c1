//! The Futu source end to end: `FutuSource` against the fake OpenD, bars through validation and
//! the embedded store. The fake sends a 1003 notification before every reply and checks the
//! framing, serials and required fields of everything it receives; every test ends by asserting
//! it saw no violation.
//!
//! Timing tests run on tokio's paused clock with the fake in the same runtime: loopback packets
//! wake their reader before the clock may auto-advance, so the fake sees each request at the
//! virtual instant it was sent, and 30-second windows take no real time.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tokio::time::Instant;

use dms::domain::time::parse_instant;
use dms::domain::{Bar, Interval, Market, SeriesKey, SourceKind, Symbol, TimeRange};
use dms::source::futu::FutuSource;
use dms::source::{FetchRequest, Page, Source, SourceError};
use dms::store::Store;
use dms::store::embedded::EmbeddedStore;
use dms::validate::{self, Context};

use crate::helpers::fake_opend::{
    Body, FakeKLine, FakeOpenD, GET_GLOBAL_STATE, HISTORY_KL, HISTORY_KL_QUOTA, INIT_CONNECT,
    KEEP_ALIVE, Misbehave, QUOTA_MSG, RATE_LIMIT_MSG, Recorded,
};

const KL_1M: i32 = 1;
const KL_DAY: i32 = 2;

fn ts(s: &str) -> i64 {
    parse_instant(s).unwrap()
}

fn req(symbol: &str, interval: Interval, start: &str, end: &str) -> FetchRequest {
    FetchRequest {
        series: SeriesKey::new(Symbol::parse(symbol).unwrap(), interval),
        range: TimeRange::new(ts(start), ts(end)).unwrap(),
        market: None,
        futu_code: None,
        now: ts("2030-01-01"),
    }
}

async fn fetch(src: &FutuSource, r: FetchRequest) -> Result<Vec<Page>, SourceError> {
    src.fetch(r).try_collect().await
}

fn bars_of(pages: &[Page]) -> Vec<Bar> {
    pages.iter().flat_map(|p| p.bars.iter().copied()).collect()
}

/// Validates (nothing may be rejected), writes to a fresh embedded store, reads back.
async fn through_the_store(series: &SeriesKey, bars: Vec<Bar>, market: Market) -> Vec<Bar> {
    let v = validate::validate(series, bars, &Context::new(ts("2030-01-01"), Some(market)));
    assert!(v.rejections.is_empty(), "rejected: {:?}", v.rejections);
    let batch = v.batch.expect("bars");
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("bars.db")).unwrap();
    store.write(&batch).await.unwrap();
    store.read(series, TimeRange::ALL).await.unwrap()
}

fn kl(time: &str, o: f64, h: f64, l: f64, c: f64, v: i64) -> FakeKLine {
    FakeKLine::new(time, o, h, l, c, v)
}

fn daily(date: &str, close: f64) -> FakeKLine {
    kl(
        &format!("{date} 00:00:00"),
        close - 1.0,
        close + 2.0,
        close - 3.0,
        close,
        1_000,
    )
}

fn assert_clean(fake: &FakeOpenD) {
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn hk_daily_bars_land_on_their_session_dates_through_validation_and_the_store() {
    let fake = FakeOpenD::start().await;
    fake.add_klines(
        "HK.00700",
        KL_DAY,
        vec![
            kl(
                "2024-01-02 00:00:00",
                381.0,
                385.2,
                377.0,
                383.4,
                11_000_000,
            ),
            kl(
                "2024-01-03 00:00:00",
                380.0,
                381.0,
                372.2,
                373.0,
                13_500_000,
            ),
            kl("2024-01-04 00:00:00", 373.0, 376.8, 370.0, 371.2, 9_900_000),
            kl("2024-01-05 00:00:00", 372.0, 374.0, 368.0, 369.0, 9_000_000),
        ],
    );
    let src = FutuSource::new(&fake.config());
    let r = req("0700.HK", Interval::D1, "2024-01-02", "2024-01-05");
    let series = r.series.clone();
    let pages = fetch(&src, r).await.unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(
        pages[0].range,
        TimeRange::new(ts("2024-01-02"), ts("2024-01-05")).ok()
    );

    let stored = through_the_store(&series, bars_of(&pages), Market::Hk).await;
    let got: Vec<(i64, f64, f64, f64, f64, f64, SourceKind)> = stored
        .iter()
        .map(|b| (b.ts, b.open, b.high, b.low, b.close, b.volume, b.source))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                ts("2024-01-02T00:00:00Z"),
                381.0,
                385.2,
                377.0,
                383.4,
                11e6,
                SourceKind::Futu
            ),
            (
                ts("2024-01-03T00:00:00Z"),
                380.0,
                381.0,
                372.2,
                373.0,
                13.5e6,
                SourceKind::Futu
            ),
            (
                ts("2024-01-04T00:00:00Z"),
                373.0,
                376.8,
                370.0,
                371.2,
                9.9e6,
                SourceKind::Futu
            ),
        ]
    );

    // What went over the wire: InitConnect first, the quota, then the K-lines in local time.
    let reqs = fake.requests();
    let protos: Vec<u32> = reqs.iter().map(|r| r.proto_id).collect();
    assert_eq!(protos, [INIT_CONNECT, HISTORY_KL_QUOTA, HISTORY_KL]);
    assert_eq!(
        reqs[0].body,
        Body::InitConnect {
            client_ver: 300,
            client_id: format!("dms-{}", std::process::id()),
            recv_notify: Some(false),
            packet_enc_algo: Some(-1),
            push_proto_fmt: Some(0),
            programming_language: Some("Rust".into()),
        }
    );
    let k = &fake.kl_requests()[0];
    assert_eq!(
        (k.rehab_type, k.kl_type, k.code.as_str()),
        (0, KL_DAY, "HK.00700")
    );
    assert_eq!(
        (k.begin_time.as_str(), k.end_time.as_str()),
        ("2024-01-02 00:00:00", "2024-01-04 23:59:59")
    );
    assert_eq!(
        (k.max_ack_kl_num, k.next_req_key.as_ref()),
        (Some(1000), None)
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn hk_minute_bars_are_stamped_at_their_start_with_the_opening_auction_folded_in() {
    let fake = FakeOpenD::start().await;
    let mut blank = kl("2024-01-02 09:33:00", 0.0, 0.0, 0.0, 0.0, 0);
    blank.blank = true;
    let mut hp = kl("2024-01-02 09:32:00", 383.6, 383.8, 383.0, 383.2, 31);
    hp.hp_volume = Some(31_250.0);
    fake.add_klines(
        "HK.00700",
        KL_1M,
        vec![
            kl("2024-01-02 09:30:00", 383.0, 383.0, 383.0, 383.0, 500_000), // opening auction
            kl("2024-01-02 09:31:00", 383.2, 384.0, 382.4, 383.6, 120_000),
            hp,
            blank,
            kl("2024-01-02 09:34:00", 383.2, 383.4, 382.8, 383.0, 40_000),
            kl("2024-01-02 09:35:00", 383.0, 383.2, 382.6, 382.8, 30_000),
        ],
    );
    let src = FutuSource::new(&fake.config());
    // 09:30–09:34 Hong Kong time.
    let r = req(
        "0700.HK",
        Interval::M1,
        "2024-01-02T01:30:00Z",
        "2024-01-02T01:34:00Z",
    );
    let series = r.series.clone();
    let pages = fetch(&src, r).await.unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].dropped.no_trade, 1, "the blank point");

    let stored = through_the_store(&series, bars_of(&pages), Market::Hk).await;
    let got: Vec<(i64, f64, f64, f64, f64, f64)> = stored
        .iter()
        .map(|b| (b.ts, b.open, b.high, b.low, b.close, b.volume))
        .collect();
    assert_eq!(
        got,
        vec![
            // Auction + 09:30–09:31: the auction's open, the minute's close, volumes summed.
            (
                ts("2024-01-02T01:30:00Z"),
                383.0,
                384.0,
                382.4,
                383.6,
                620_000.0
            ),
            // 09:31–09:32 with its high-precision volume.
            (
                ts("2024-01-02T01:31:00Z"),
                383.6,
                383.8,
                383.0,
                383.2,
                31_250.0
            ),
            // 09:33–09:34 (09:32–09:33 was blank).
            (
                ts("2024-01-02T01:33:00Z"),
                383.2,
                383.4,
                382.8,
                383.0,
                40_000.0
            ),
        ]
    );
    let k = &fake.kl_requests()[0];
    assert_eq!(
        (k.begin_time.as_str(), k.end_time.as_str()),
        ("2024-01-02 09:30:00", "2024-01-02 09:34:59")
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn us_bars_across_the_daylight_saving_change_get_the_right_utc_stamps() {
    let fake = FakeOpenD::start().await;
    fake.add_klines(
        "US.AAPL",
        KL_1M,
        vec![
            // Friday 2024-03-08, EST (UTC−5).
            kl("2024-03-08 09:31:00", 169.0, 169.5, 168.9, 169.3, 900_000),
            kl("2024-03-08 16:00:00", 170.6, 170.8, 170.5, 170.7, 1_200_000),
            // Monday 2024-03-11, EDT (UTC−4) since Sunday.
            kl("2024-03-11 09:31:00", 172.9, 173.4, 172.8, 173.2, 800_000),
        ],
    );
    fake.add_klines(
        "US.AAPL",
        KL_DAY,
        vec![daily("2024-03-08", 170.7), daily("2024-03-11", 172.8)],
    );
    let src = FutuSource::new(&fake.config());

    let r = req(
        "AAPL",
        Interval::M1,
        "2024-03-08T14:30:00Z",
        "2024-03-11T20:00:00Z",
    );
    let series = r.series.clone();
    let pages = fetch(&src, r).await.unwrap();
    let stored = through_the_store(&series, bars_of(&pages), Market::Us).await;
    let stamps: Vec<i64> = stored.iter().map(|b| b.ts).collect();
    assert_eq!(
        stamps,
        [
            ts("2024-03-08T14:30:00Z"), // 09:30 EST
            ts("2024-03-08T20:59:00Z"), // 15:59 EST, the last minute
            ts("2024-03-11T13:30:00Z"), // 09:30 EDT
        ]
    );
    assert_eq!(stored[2].close, 173.2);
    let k = &fake.kl_requests()[0];
    assert_eq!(
        (k.code.as_str(), k.begin_time.as_str(), k.end_time.as_str()),
        ("US.AAPL", "2024-03-08 09:30:00", "2024-03-11 16:00:59")
    );

    let r = req("AAPL", Interval::D1, "2024-03-08", "2024-03-12");
    let series = r.series.clone();
    let stored =
        through_the_store(&series, bars_of(&fetch(&src, r).await.unwrap()), Market::Us).await;
    let stamps: Vec<i64> = stored.iter().map(|b| b.ts).collect();
    assert_eq!(stamps, [ts("2024-03-08"), ts("2024-03-11")]);
    assert_clean(&fake);
}

#[tokio::test]
async fn paging_resends_the_key_until_the_last_page_and_only_the_first_counts() {
    let fake = FakeOpenD::start().await;
    fake.set(|s| s.page_cap = 4);
    let days: Vec<FakeKLine> = (2..=12)
        .filter(|d| ![6, 7].contains(d))
        .map(|d| daily(&format!("2024-01-{d:02}"), 100.0 + d as f64))
        .collect();
    assert_eq!(days.len(), 9);
    fake.add_klines("HK.00700", KL_DAY, days);
    let src = FutuSource::new(&fake.config());
    let r = req("0700.HK", Interval::D1, "2024-01-01", "2024-02-01");
    let pages = fetch(&src, r.clone()).await.unwrap();

    let sizes: Vec<usize> = pages.iter().map(|p| p.bars.len()).collect();
    assert_eq!(sizes, [4, 4, 1]);
    let all = bars_of(&pages);
    assert!(all.windows(2).all(|w| w[0].ts < w[1].ts));
    // The pages' ranges tile the request: each ends after its last bar, the last at the end.
    let ranges: Vec<TimeRange> = pages.iter().map(|p| p.range.unwrap()).collect();
    assert_eq!(ranges[0].start(), r.range.start());
    assert_eq!(ranges[0].end(), all[3].ts + 1);
    assert_eq!(ranges[1].start(), ranges[0].end());
    assert_eq!(ranges[2].start(), ranges[1].end());
    assert_eq!(ranges[2].end(), r.range.end());

    let kls = fake.kl_requests();
    let keys: Vec<Option<String>> = kls
        .iter()
        .map(|k| {
            k.next_req_key
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        })
        .collect();
    assert_eq!(
        keys,
        [
            None,
            Some("fake-offset:4".into()),
            Some("fake-offset:8".into())
        ]
    );
    for k in &kls[1..] {
        let mut same = k.clone();
        same.next_req_key = None;
        assert_eq!(same, kls[0], "later pages repeat the first request");
    }
    assert_eq!(
        src.status().rate_limit.used,
        1,
        "only the first page counts"
    );
    assert_eq!(
        src.status().requests_ok,
        4,
        "the quota check and three pages"
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn an_opend_that_never_stops_paging_is_stopped_at_the_page_limit_of_the_range() {
    let fake = FakeOpenD::start().await;
    fake.set(|s| {
        s.page_cap = 2;
        s.endless_paging = true;
    });
    let days = (2..=5)
        .map(|d| daily(&format!("2024-01-{d:02}"), 100.0 + d as f64))
        .collect();
    fake.add_klines("HK.00700", KL_DAY, days);
    let src = FutuSource::new(&fake.config());
    // Four days hold at most a page of daily bars; the limit adds four pages of slack.
    let r = req("0700.HK", Interval::D1, "2024-01-02", "2024-01-06");
    let e = tokio::time::timeout(Duration::from_secs(30), fetch(&src, r))
        .await
        .expect("paging ends")
        .unwrap_err();
    assert!(
        matches!(&e, SourceError::Remote { .. }) && !e.is_retryable(),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "futu: paging for HK.00700 1d did not end after 5 pages, more than \
         2024-01-02T00:00:00Z..2024-01-06T00:00:00Z can hold: opend keeps sending nextReqKey"
    );
    let kls = fake.kl_requests();
    assert_eq!(kls.len(), 5, "five pages sent, no sixth");
    assert!(kls[4].next_req_key.is_some());
    assert_clean(&fake);
}

#[tokio::test]
async fn a_later_publication_replaces_the_klines_and_the_next_fetch_sees_it() {
    let fake = FakeOpenD::start().await;
    fake.add_klines("HK.00700", KL_DAY, vec![daily("2024-01-02", 380.0)]);
    let src = FutuSource::new(&fake.config());
    let r = || req("0700.HK", Interval::D1, "2024-01-02", "2024-01-04");
    let closes = |pages: &[Page]| bars_of(pages).iter().map(|b| b.close).collect::<Vec<_>>();
    assert_eq!(closes(&fetch(&src, r()).await.unwrap()), [380.0]);

    // The vendor's next publication: a revised first day and one more session.
    fake.set_klines(
        "HK.00700",
        KL_DAY,
        vec![daily("2024-01-02", 381.0), daily("2024-01-03", 382.0)],
    );
    assert_eq!(closes(&fetch(&src, r()).await.unwrap()), [381.0, 382.0]);
    assert_clean(&fake);
}

#[tokio::test]
async fn opend_refusals_become_typed_errors_with_opend_s_message() {
    let fake = FakeOpenD::start().await;
    fake.add_klines("HK.00700", KL_DAY, vec![daily("2024-01-02", 380.0)]);
    let src = FutuSource::new(&fake.config());
    let r = || req("0700.HK", Interval::D1, "2024-01-02", "2024-01-03");
    let refuse = |msg: &str| Misbehave::Refuse {
        ret_type: -1,
        msg: msg.into(),
    };

    fake.misbehave_next(HISTORY_KL, refuse(RATE_LIMIT_MSG));
    let e = fetch(&src, r()).await.unwrap_err();
    assert_eq!(
        e,
        SourceError::RateLimited {
            src: SourceKind::Futu,
            retry_after: Some(Duration::from_secs(30))
        }
    );

    fake.misbehave_next(HISTORY_KL, refuse(QUOTA_MSG));
    let e = fetch(&src, r()).await.unwrap_err();
    assert!(
        matches!(e, SourceError::Remote { .. }) && !e.is_retryable(),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("futu: history k-line quota exhausted (retType -1, errCode 1: {QUOTA_MSG})")
    );

    fake.misbehave_next(HISTORY_KL, refuse("参数错误"));
    let e = fetch(&src, r()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "futu: Qot_RequestHistoryKL refused: retType -1, errCode 1: 参数错误"
    );

    // The source is still usable, on the same connection.
    assert_eq!(bars_of(&fetch(&src, r()).await.unwrap()).len(), 1);
    assert_eq!(fake.connections(), 1);
    assert_clean(&fake);
}

#[tokio::test]
async fn an_interval_opend_does_not_serve_is_refused_before_anything_is_sent() {
    let fake = FakeOpenD::start().await;
    let src = FutuSource::new(&fake.config());
    let e = fetch(&src, req("AAPL", Interval::M2, "2024-03-08", "2024-03-09"))
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::InvalidRequest { .. }), "{e:?}");
    assert!(e.to_string().contains("interval 2m"), "{e}");
    let e = fetch(
        &src,
        req("BTC-USD", Interval::D1, "2024-03-08", "2024-03-09"),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no futu code"), "{e}");
    assert_eq!(fake.connections(), 0);
}

#[tokio::test]
async fn a_dropped_connection_fails_the_request_and_the_next_call_reconnects() {
    let fake = FakeOpenD::start().await;
    fake.add_klines("HK.00700", KL_DAY, vec![daily("2024-01-02", 380.0)]);
    let src = FutuSource::new(&fake.config());
    let r = || req("0700.HK", Interval::D1, "2024-01-02", "2024-01-03");

    fake.misbehave_next(HISTORY_KL, Misbehave::Drop);
    let e = fetch(&src, r()).await.unwrap_err();
    // A FIN, normally; a reset if something was still unread on the fake's side.
    assert!(
        matches!(&e, SourceError::Transient { message, .. }
            if message == "connection closed by opend"
                || message.starts_with("connection to opend lost: ")),
        "{e:?}"
    );
    assert!(e.is_retryable());

    let pages = fetch(&src, r()).await.unwrap();
    assert_eq!(bars_of(&pages).len(), 1);
    assert_eq!(fake.connections(), 2);
    let reqs = fake.requests();
    let second: Vec<_> = reqs.iter().filter(|r| r.conn == 2).collect();
    assert_eq!(second[0].proto_id, INIT_CONNECT, "InitConnect again first");
    // Serials keep increasing across the reconnect.
    let serials: Vec<u32> = reqs.iter().map(|r| r.serial).collect();
    assert!(serials.windows(2).all(|w| w[0] < w[1]), "{serials:?}");
    assert_clean(&fake);
}

#[tokio::test]
async fn a_corrupt_body_hash_fails_the_request_and_the_connection_is_replaced() {
    let fake = FakeOpenD::start().await;
    fake.add_klines("HK.00700", KL_DAY, vec![daily("2024-01-02", 380.0)]);
    let src = FutuSource::new(&fake.config());
    let r = || req("0700.HK", Interval::D1, "2024-01-02", "2024-01-03");

    fake.misbehave_next(HISTORY_KL, Misbehave::CorruptHash);
    let e = fetch(&src, r()).await.unwrap_err();
    let serial = fake.requests_of(HISTORY_KL)[0].serial;
    assert_eq!(
        e.to_string(),
        format!("futu: body sha-1 mismatch on proto 3103 serial {serial}")
    );
    assert!(e.is_retryable());
    assert_eq!(bars_of(&fetch(&src, r()).await.unwrap()).len(), 1);
    assert_eq!(fake.connections(), 2);
    assert_clean(&fake);
}

#[tokio::test(start_paused = true)]
async fn with_retries_a_connection_dropped_while_idle_is_replaced_transparently() {
    let fake = FakeOpenD::start().await;
    fake.add_klines("HK.00700", KL_DAY, vec![daily("2024-01-02", 380.0)]);
    let mut cfg = fake.config();
    cfg.max_retries = 3;
    let src = FutuSource::new(&cfg);
    let r = || req("0700.HK", Interval::D1, "2024-01-02", "2024-01-03");
    assert_eq!(bars_of(&fetch(&src, r()).await.unwrap()).len(), 1);

    fake.drop_connections();
    fake.misbehave_next(HISTORY_KL, Misbehave::Drop);
    assert_eq!(bars_of(&fetch(&src, r()).await.unwrap()).len(), 1);
    // The one dropped while idle, the one dropped mid-request, the one that worked.
    assert_eq!(fake.connections(), 3);
    assert_clean(&fake);
}

#[tokio::test(start_paused = true)]
async fn keepalives_are_sent_every_four_fifths_of_the_interval_opend_asks_for() {
    let fake = FakeOpenD::start().await;
    fake.set(|s| s.keep_alive_interval = 10);
    let src = FutuSource::new(&fake.config());
    src.ping().await.unwrap();
    fake.wait_for(Duration::from_secs(60), "three keepalives", |reqs| {
        reqs.iter().filter(|r| r.proto_id == KEEP_ALIVE).count() >= 3
    })
    .await;

    let reqs = fake.requests();
    let init = reqs.iter().find(|r| r.proto_id == INIT_CONNECT).unwrap().at;
    let kas: Vec<Instant> = reqs
        .iter()
        .filter(|r| r.proto_id == KEEP_ALIVE)
        .map(|r| r.at)
        .collect();
    let mut gaps = vec![kas[0] - init];
    gaps.extend(kas.windows(2).map(|w| w[1] - w[0]));
    assert_eq!(gaps[..3], [Duration::from_secs(8); 3], "{gaps:?}");
    let now_unix = chrono::Utc::now().timestamp();
    for r in reqs.iter().filter(|r| r.proto_id == KEEP_ALIVE) {
        let Body::KeepAlive { time } = r.body else {
            panic!("{r:?}")
        };
        assert!(
            (now_unix - time).abs() < 60,
            "keepalive carries the unix time"
        );
    }
    assert_eq!(fake.connections(), 1);
    assert_clean(&fake);
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_declared_dead_and_the_next_call_reconnects() {
    let fake = FakeOpenD::start().await;
    let src = FutuSource::new(&fake.config());
    src.ping().await.unwrap();
    let start = Instant::now();

    // Half-open: OpenD stops answering, keepalives included.
    fake.set(|s| s.silent = true);
    // Keepalives go out every 8 s; at the tick after 33 s of silence (40 s) the connection is
    // given up. Move the paused clock well past that.
    tokio::time::sleep_until(start + Duration::from_secs(90)).await;
    let keepalives: Vec<Duration> = fake
        .requests_of(KEEP_ALIVE)
        .iter()
        .map(|r| r.at - start)
        .collect();
    assert_eq!(keepalives, [8, 16, 24, 32].map(Duration::from_secs));
    fake.set(|s| s.silent = false);

    src.ping().await.unwrap();
    assert_eq!(fake.connections(), 2);
    assert_clean(&fake);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_gets_no_reply_times_out_and_the_connection_stays_usable() {
    let fake = FakeOpenD::start().await;
    fake.add_klines("HK.00700", KL_DAY, vec![daily("2024-01-02", 380.0)]);
    let mut cfg = fake.config();
    cfg.timeout_s = 20;
    let src = FutuSource::new(&cfg);
    let r = || req("0700.HK", Interval::D1, "2024-01-02", "2024-01-03");

    fake.misbehave_next(HISTORY_KL, Misbehave::Silence);
    let e = fetch(&src, r()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "futu: Qot_RequestHistoryKL timed out after 20s"
    );
    assert_eq!(e.outcome().as_str(), "timeout");
    assert_eq!(bars_of(&fetch(&src, r()).await.unwrap()).len(), 1);
    assert_eq!(fake.connections(), 1);
    assert_clean(&fake);
}

#[tokio::test(start_paused = true)]
async fn concurrent_fetches_never_exceed_the_first_page_rate() {
    const PER_WINDOW: usize = 5;
    const WINDOW: Duration = Duration::from_secs(30);
    let fake = FakeOpenD::start().await;
    // OpenD enforces the same limit and would refuse the first page that broke it.
    fake.set(|s| {
        s.page_cap = 2;
        s.first_page_limit = Some((PER_WINDOW, WINDOW));
    });
    let codes: Vec<String> = (1..=12).map(|i| format!("{i:04}.HK")).collect();
    for c in &codes {
        let futu = Symbol::parse(c).unwrap().futu_code().unwrap();
        let days = (2..=6)
            .map(|d| daily(&format!("2024-01-{d:02}"), 10.0))
            .collect();
        fake.add_klines(&futu, KL_DAY, days);
    }
    let mut cfg = fake.config();
    cfg.requests_per_30s = PER_WINDOW as u32;
    let src = Arc::new(FutuSource::new(&cfg));
    let started = Instant::now();
    let tasks: Vec<_> = codes
        .iter()
        .map(|c| {
            let (src, r) = (
                src.clone(),
                req(c, Interval::D1, "2024-01-01", "2024-01-08"),
            );
            tokio::spawn(async move { fetch(&src, r).await })
        })
        .collect();
    for t in tasks {
        let pages = t.await.unwrap().unwrap();
        assert_eq!(pages.len(), 3);
        assert_eq!(bars_of(&pages).len(), 5);
    }
    let elapsed = started.elapsed();

    assert_eq!(
        fake.requests_of(HISTORY_KL_QUOTA).len(),
        1,
        "twelve new securities, one quota check"
    );
    let kl = fake.requests_of(HISTORY_KL);
    assert_eq!(kl.len(), 36, "12 securities × 3 pages");
    let first = |r: &Recorded| matches!(&r.body, Body::HistoryKl(k) if k.next_req_key.is_none());
    let first_pages: Vec<Instant> = kl.iter().filter(|r| first(r)).map(|r| r.at).collect();
    assert_eq!(first_pages.len(), 12);
    // The 1st and the 6th first page are at least a window apart, every time.
    for w in first_pages.windows(PER_WINDOW + 1) {
        assert!(w[PER_WINDOW] - w[0] >= WINDOW, "{:?}", w[PER_WINDOW] - w[0]);
    }
    // Twelve first pages need three windows and no more: the later pages, not counted, never
    // waited (counted, the 36 requests would have needed seven windows).
    assert_eq!(elapsed, 2 * WINDOW);
    let waited: Vec<&Recorded> = kl
        .iter()
        .filter(|r| !first(r) && first_pages.iter().all(|t| r.at != *t))
        .collect();
    assert!(
        waited.is_empty(),
        "later pages sent at other instants: {waited:?}"
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn the_quota_is_checked_before_new_securities_and_an_exhausted_quota_stops_them() {
    let fake = FakeOpenD::start().await;
    fake.set(|s| {
        s.quota_used = 100;
        s.quota_remaining = 0;
        s.quota_codes = vec!["HK.00700".into()];
    });
    fake.add_klines("HK.00700", KL_DAY, vec![daily("2024-01-02", 380.0)]);
    fake.add_klines("HK.09988", KL_DAY, vec![daily("2024-01-02", 70.0)]);
    let src = FutuSource::new(&fake.config());

    // Already in the window: free.
    let pages = fetch(
        &src,
        req("0700.HK", Interval::D1, "2024-01-02", "2024-01-03"),
    )
    .await
    .unwrap();
    assert_eq!(bars_of(&pages).len(), 1);
    // New, with nothing left: refused without asking for K-lines.
    let e = fetch(
        &src,
        req("9988.HK", Interval::D1, "2024-01-02", "2024-01-03"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, SourceError::Remote { .. }) && !e.is_retryable());
    assert!(
        e.to_string()
            .starts_with("futu: history k-line quota exhausted (used 100, remaining 0): HK.09988"),
        "{e}"
    );
    let codes: Vec<String> = fake.kl_requests().into_iter().map(|k| k.code).collect();
    assert_eq!(codes, ["HK.00700"]);
    let quota_asks = fake.requests_of(HISTORY_KL_QUOTA);
    assert_eq!(quota_asks.len(), 1, "one check serves both");
    assert_eq!(
        quota_asks[0].body,
        Body::HistoryKlQuota { get_detail: true }
    );
    let q = src.quota().unwrap();
    assert_eq!((q.used, q.remaining, q.securities), (100, 0, 1));
    assert_clean(&fake);
}

#[tokio::test]
async fn new_securities_are_accounted_locally_between_quota_checks() {
    let fake = FakeOpenD::start().await;
    fake.set(|s| s.quota_remaining = 1);
    fake.add_klines("US.AAPL", KL_DAY, vec![daily("2024-01-02", 185.0)]);
    fake.add_klines("US.MSFT", KL_DAY, vec![daily("2024-01-02", 370.0)]);
    let src = FutuSource::new(&fake.config());
    let aapl = || req("AAPL", Interval::D1, "2024-01-02", "2024-01-03");
    fetch(&src, aapl()).await.unwrap();
    let e = fetch(&src, req("MSFT", Interval::D1, "2024-01-02", "2024-01-03"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("US.MSFT"), "{e}");
    // AAPL, now in the window, still works, at another interval too.
    fetch(&src, aapl()).await.unwrap();
    fetch(&src, req("AAPL", Interval::M1, "2024-01-02", "2024-01-03"))
        .await
        .unwrap();
    assert_eq!(fake.requests_of(HISTORY_KL_QUOTA).len(), 1);
    let q = src.quota().unwrap();
    assert_eq!((q.used, q.remaining, q.securities), (1, 0, 1));
    assert_clean(&fake);
}

#[tokio::test]
async fn ping_reports_version_login_and_quota_and_fails_when_quotes_are_not_logged_in() {
    let fake = FakeOpenD::start().await;
    let src = FutuSource::new(&fake.config());
    let summary = src.ping().await.unwrap();
    assert_eq!(
        summary,
        "opend 10.9.6908, connection 7000000000000000001, quotes logged in, ready, \
         history quota 0 used, 100 remaining"
    );
    // GetGlobalState carries the login user id InitConnect returned.
    let gs = fake.requests_of(GET_GLOBAL_STATE);
    assert_eq!(gs[0].body, Body::GetGlobalState { user_id: 4242 });

    fake.set(|s| s.qot_logined = false);
    let e = src.ping().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "futu: opend 10.9.6908 is not logged in to quotes (program status: ready)"
    );
    fake.set(|s| {
        s.qot_logined = true;
        s.program_status = 4;
    });
    let e = src.ping().await.unwrap_err();
    assert!(
        e.to_string().contains("needs phone verification code"),
        "{e}"
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn a_refused_init_connect_is_reported_and_retried_on_the_next_call() {
    let fake = FakeOpenD::start().await;
    let src = FutuSource::new(&fake.config());
    fake.misbehave_next(
        INIT_CONNECT,
        Misbehave::Refuse {
            ret_type: -1,
            msg: "client version too old".into(),
        },
    );
    let e = src.ping().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "futu: InitConnect refused: retType -1, errCode 1: client version too old"
    );
    src.ping().await.unwrap();
    assert_eq!(fake.connections(), 2);
    assert_clean(&fake);
}
