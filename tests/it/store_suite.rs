//! The shared behavioural suite every `Store` passes. `store_suite!(name, factory)` expands to
//! one test per behaviour for a store made by `factory`, an async fn returning a guard that
//! derefs to the store (and keeps whatever it needs, a temp dir or an `influxd`, alive).

use std::collections::HashMap;

use dms::domain::{Bar, CorporateAction, Interval, SourceKind, Symbol, TimeRange};
use dms::store::{Fields, RangeSummary, Store};

use crate::helpers::bars::{T0, bar, bars, batch, key};

const DAY: i64 = 86_400;

pub async fn rewriting_the_same_batch_leaves_one_copy(s: &dyn Store) {
    let k = key("AAPL", Interval::D1);
    let b = batch(&k, bars(T0, 30, Interval::D1, 1.0));
    s.write(&b).await.unwrap();
    s.write(&b).await.unwrap();
    let got = s.read(&k, TimeRange::ALL).await.unwrap();
    assert_eq!(got, b.bars());
    let stats = s.list_series().await.unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].count, stats[0].first, stats[0].last),
        (30, T0, T0 + 29 * DAY)
    );
}

pub async fn a_changed_bar_overwrites_the_stored_one(s: &dyn Store) {
    let k = key("MSFT", Interval::M1);
    let original = bars(T0, 500, Interval::M1, 2.0);
    s.write(&batch(&k, original.clone())).await.unwrap();
    let mut changed = original[250];
    changed.close += 0.125;
    changed.high += 0.125;
    changed.adj_close = None;
    changed.source = SourceKind::Yahoo;
    s.write(&batch(&k, vec![changed])).await.unwrap();
    let got = s.read(&k, TimeRange::ALL).await.unwrap();
    assert_eq!(got.len(), 500);
    assert_eq!(got[250], changed);
    assert_eq!(got[249], original[249]);
    assert_eq!(s.list_series().await.unwrap()[0].count, 500);
}

pub async fn reads_are_half_open(s: &dyn Store) {
    let k = key("HALF", Interval::M5);
    let all = bars(T0, 100, Interval::M5, 3.0);
    s.write(&batch(&k, all.clone())).await.unwrap();
    let r = TimeRange::new(all[10].ts, all[20].ts).unwrap();
    assert_eq!(s.read(&k, r).await.unwrap(), all[10..20]);
    let r = TimeRange::new(all[10].ts + 1, all[20].ts + 1).unwrap();
    assert_eq!(s.read(&k, r).await.unwrap(), all[11..21]);
    let before = TimeRange::new(T0 - DAY, T0).unwrap();
    assert!(s.read(&k, before).await.unwrap().is_empty());
    let r = TimeRange::new(all[99].ts, all[99].ts + 1).unwrap();
    assert_eq!(s.read(&k, r).await.unwrap(), all[99..]);
    assert_eq!(
        s.count(&k, TimeRange::new(all[10].ts, all[20].ts).unwrap())
            .await
            .unwrap(),
        10
    );
    assert_eq!(s.count(&k, TimeRange::ALL).await.unwrap(), 100);
    assert_eq!(s.count(&k, before).await.unwrap(), 0);
    // Another interval of the same symbol is another series.
    assert!(
        s.read(&key("HALF", Interval::M1), TimeRange::ALL)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn latest_covers_a_thousand_series_in_one_call(s: &dyn Store) {
    let mut expected = HashMap::new();
    let mut keys = Vec::new();
    for i in 0..1000 {
        let k = key(&format!("S{i:04}"), Interval::D1);
        let n = 1 + i % 7;
        let b = bars(T0 + (i as i64 % 5) * DAY, n, Interval::D1, i as f64);
        expected.insert(k.clone(), *b.last().unwrap());
        s.write(&batch(&k, b)).await.unwrap();
        keys.push(k);
    }
    let got = s.latest(&keys).await.unwrap();
    assert_eq!(got.len(), 1000);
    assert_eq!(got, expected);
    // A subset, plus series that do not exist.
    let some = vec![
        keys[3].clone(),
        keys[999].clone(),
        key("NOPE", Interval::D1),
        key("S0003", Interval::M1),
    ];
    let got = s.latest(&some).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[&keys[999]], expected[&keys[999]]);
}

pub async fn latest_moves_back_when_the_newest_bars_are_deleted(s: &dyn Store) {
    let k = key("DEL", Interval::D1);
    let all = bars(T0, 10, Interval::D1, 4.0);
    s.write(&batch(&k, all.clone())).await.unwrap();
    let removed = s
        .delete(&k, TimeRange::new(all[7].ts, T0 + 100 * DAY).unwrap())
        .await
        .unwrap();
    assert_eq!(removed, 3);
    assert_eq!(
        s.latest(std::slice::from_ref(&k)).await.unwrap()[&k],
        all[6]
    );
    let removed = s
        .delete(&k, TimeRange::new(all[2].ts, all[4].ts).unwrap())
        .await
        .unwrap();
    assert_eq!(removed, 2);
    let left: Vec<i64> = s
        .read(&k, TimeRange::ALL)
        .await
        .unwrap()
        .iter()
        .map(|b| b.ts)
        .collect();
    assert_eq!(
        left,
        [all[0].ts, all[1].ts, all[4].ts, all[5].ts, all[6].ts]
    );
    let stats = s.list_series().await.unwrap();
    assert_eq!((stats[0].count, stats[0].last), (5, all[6].ts));
    assert_eq!(s.delete(&k, TimeRange::ALL).await.unwrap(), 5);
    assert!(s.latest(std::slice::from_ref(&k)).await.unwrap().is_empty());
    assert!(s.list_series().await.unwrap().is_empty());
}

pub async fn checksum_changes_when_one_value_changes(s: &dyn Store) {
    let k = key("SUM", Interval::H1);
    let all = bars(T0, 200, Interval::H1, 5.0);
    s.write(&batch(&k, all.clone())).await.unwrap();
    let r = TimeRange::new(all[0].ts, all[199].ts + 1).unwrap();
    let before = s.summary(&k, r).await.unwrap();
    assert_eq!(before, RangeSummary::of(&all));
    assert_eq!(before.count, 200);
    let mut one = all[123];
    one.volume += 1.0;
    s.write(&batch(&k, vec![one])).await.unwrap();
    let after = s.summary(&k, r).await.unwrap();
    assert_eq!(after.count, 200);
    assert_ne!(after.checksum, before.checksum);
    // Outside the changed bar the summary is unchanged.
    let head = TimeRange::new(all[0].ts, all[123].ts).unwrap();
    assert_eq!(
        s.summary(&k, head).await.unwrap(),
        RangeSummary::of(&all[..123])
    );
}

/// Symbols that would break a naive query or line protocol writer, and unicode. Each must be
/// stored and read back as itself, and none may touch another series.
pub const ODD_SYMBOLS: &[&str] = &[
    "A' OR '1'='1",
    "X,y=z w",
    "x'; DROP MEASUREMENT bars --",
    "a\\b\"c",
    "\"quoted\"",
    " lead and trail ",
    "tab\there",
    "日本株.T",
    "🚀-USD",
    "$sym",
    "=X",
    "^GSPC",
];

pub async fn odd_symbols_round_trip_and_never_alter_a_query(s: &dyn Store) {
    let victim = key("VICTIM", Interval::D1);
    let victim_bars = bars(T0, 5, Interval::D1, 9.0);
    s.write(&batch(&victim, victim_bars.clone())).await.unwrap();
    for (i, sym) in ODD_SYMBOLS.iter().enumerate() {
        let k = key(sym, Interval::D1);
        let b = bars(T0 + i as i64 * DAY, 3, Interval::D1, i as f64);
        s.write(&batch(&k, b.clone())).await.unwrap();
        assert_eq!(
            s.read(&k, TimeRange::ALL).await.unwrap(),
            b,
            "symbol {sym:?}"
        );
        assert_eq!(
            s.latest(std::slice::from_ref(&k)).await.unwrap()[&k],
            b[2],
            "symbol {sym:?}"
        );
        let action = CorporateAction::dividend(T0, 0.5 + i as f64, SourceKind::Yahoo);
        s.write_actions(&k.symbol, std::slice::from_ref(&action))
            .await
            .unwrap();
        assert_eq!(
            s.read_actions(&k.symbol, TimeRange::ALL).await.unwrap(),
            vec![action],
            "symbol {sym:?}"
        );
    }
    // An injection aimed at the victim reads nothing and deletes nothing.
    let probe = key("x' OR symbol='VICTIM", Interval::D1);
    assert!(s.read(&probe, TimeRange::ALL).await.unwrap().is_empty());
    assert_eq!(s.delete(&probe, TimeRange::ALL).await.unwrap(), 0);
    assert_eq!(s.read(&victim, TimeRange::ALL).await.unwrap(), victim_bars);
    let mut listed: Vec<String> = s
        .list_series()
        .await
        .unwrap()
        .iter()
        .map(|x| x.series.symbol.to_string())
        .collect();
    listed.sort();
    let mut want: Vec<String> = ODD_SYMBOLS
        .iter()
        .map(|s| s.to_string())
        .chain(["VICTIM".to_string()])
        .collect();
    want.sort();
    assert_eq!(listed, want);
}

pub async fn corporate_actions_are_upserted_per_kind_and_date(s: &dyn Store) {
    let sym = Symbol::parse("AAPL").unwrap();
    let split = CorporateAction::split(T0 + DAY, 4.0, 1.0, SourceKind::Yahoo);
    let div = CorporateAction::dividend(T0 + DAY, 0.205, SourceKind::Yahoo);
    let gain = CorporateAction::capital_gain(T0 + 5 * DAY, 1.5, SourceKind::Yahoo);
    s.write_actions(&sym, &[split.clone(), div.clone(), gain.clone()])
        .await
        .unwrap();
    let revised = CorporateAction::dividend(T0 + DAY, 0.21, SourceKind::Yahoo);
    s.write_actions(&sym, std::slice::from_ref(&revised))
        .await
        .unwrap();
    let mut got = s.read_actions(&sym, TimeRange::ALL).await.unwrap();
    got.sort_by_key(|a| (a.ts, a.kind));
    assert_eq!(got, vec![revised.clone(), split.clone(), gain.clone()]);
    let first_week = TimeRange::new(T0, T0 + 5 * DAY).unwrap();
    assert_eq!(s.read_actions(&sym, first_week).await.unwrap().len(), 2);
    assert!(
        s.read_actions(&Symbol::parse("MSFT").unwrap(), TimeRange::ALL)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn large_batches_spanning_many_chunks_round_trip(s: &dyn Store) {
    let k = key("BIG", Interval::M1);
    let all = bars(T0, 20_000, Interval::M1, 6.0);
    s.write(&batch(&k, all.clone())).await.unwrap();
    assert_eq!(s.read(&k, TimeRange::ALL).await.unwrap(), all);
    let r = TimeRange::new(all[1_000].ts + 1, all[18_000].ts).unwrap();
    assert_eq!(s.count(&k, r).await.unwrap(), 16_999);
    // Overlapping rewrite of the middle with new values.
    let mid: Vec<_> = all[5_000..15_000].iter().map(|b| bar(b.ts, 42.0)).collect();
    s.write(&batch(&k, mid.clone())).await.unwrap();
    let got = s.read(&k, TimeRange::ALL).await.unwrap();
    assert_eq!(got.len(), 20_000);
    assert_eq!(got[5_000..15_000], mid[..]);
    assert_eq!(got[..5_000], all[..5_000]);
    assert_eq!(got[15_000..], all[15_000..]);
}

pub async fn a_projected_read_returns_the_same_bars_less_what_it_leaves_out(s: &dyn Store) {
    let k = key("PROJ", Interval::M1);
    let mut all = bars(T0, 3_000, Interval::M1, 7.0);
    for (i, b) in all.iter_mut().enumerate() {
        if i % 3 == 0 {
            b.adj_close = None;
        }
        if i % 2 == 0 {
            b.source = SourceKind::Yahoo;
        }
    }
    s.write(&batch(&k, all.clone())).await.unwrap();
    let r = TimeRange::new(all[100].ts, all[2_900].ts).unwrap();
    let want = &all[100..2_900];
    assert_eq!(s.read_fields(&k, r, Fields::ALL).await.unwrap(), want);
    let combos = [
        Fields::OHLCV,
        Fields {
            adj_close: true,
            source: false,
        },
        Fields {
            adj_close: false,
            source: true,
        },
    ];
    for fields in combos {
        let got = s.read_fields(&k, r, fields).await.unwrap();
        assert_eq!(got.len(), want.len(), "{fields:?}");
        for (g, w) in got.iter().zip(want) {
            // OHLCV always; an optional field is either read or left at its "absent" value.
            let ohlcv = |b: &Bar| (b.ts, b.open, b.high, b.low, b.close, b.volume);
            assert_eq!(ohlcv(g), ohlcv(w), "{fields:?}");
            if fields.adj_close {
                assert_eq!(g.adj_close, w.adj_close, "{fields:?}");
            } else {
                assert!(g.adj_close.is_none() || g.adj_close == w.adj_close);
            }
            if fields.source {
                assert_eq!(g.source, w.source, "{fields:?}");
            } else {
                assert!(g.source == SourceKind::Unknown || g.source == w.source);
            }
        }
    }
    // A series or range with nothing in it.
    let none = TimeRange::new(T0 - DAY, T0).unwrap();
    assert!(
        s.read_fields(&k, none, Fields::OHLCV)
            .await
            .unwrap()
            .is_empty()
    );
    let other = key("PROJ", Interval::M5);
    assert!(
        s.read_fields(&other, TimeRange::ALL, Fields::OHLCV)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn an_overwrite_that_drops_adj_close_leaves_none_behind(s: &dyn Store) {
    let k = key("DROPADJ", Interval::D1);
    let with = bars(T0, 40, Interval::D1, 3.0);
    s.write(&batch(&k, with.clone())).await.unwrap();
    let without: Vec<Bar> = with[10..30]
        .iter()
        .map(|b| Bar {
            adj_close: None,
            close: b.close + 0.25,
            high: b.high + 0.25,
            ..*b
        })
        .collect();
    s.write(&batch(&k, without.clone())).await.unwrap();
    let mut want = with.clone();
    want[10..30].copy_from_slice(&without);
    assert_eq!(s.read(&k, TimeRange::ALL).await.unwrap(), want);
    assert_eq!(
        s.summary(&k, TimeRange::ALL).await.unwrap(),
        RangeSummary::of(&want)
    );
    assert_eq!(s.count(&k, TimeRange::ALL).await.unwrap(), 40);
}

/// Expands to one `#[tokio::test]` per behaviour for the store built by `$factory`.
#[macro_export]
macro_rules! store_suite {
    ($module:ident, $factory:path) => {
        mod $module {
            use $crate::store_suite as suite;
            $crate::store_suite!(@tests $factory;
                rewriting_the_same_batch_leaves_one_copy,
                a_changed_bar_overwrites_the_stored_one,
                reads_are_half_open,
                latest_covers_a_thousand_series_in_one_call,
                latest_moves_back_when_the_newest_bars_are_deleted,
                checksum_changes_when_one_value_changes,
                odd_symbols_round_trip_and_never_alter_a_query,
                corporate_actions_are_upserted_per_kind_and_date,
                large_batches_spanning_many_chunks_round_trip,
                a_projected_read_returns_the_same_bars_less_what_it_leaves_out,
                an_overwrite_that_drops_adj_close_leaves_none_behind,
            );
        }
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = $factory().await;
                suite::$name(&*store).await;
            }
        )*
    };
}

mod embedded {
    use dms::store::embedded::EmbeddedStore;

    /// An embedded store in a temp dir that lives as long as the guard.
    pub struct Guard(#[allow(dead_code)] tempfile::TempDir, EmbeddedStore);

    impl std::ops::Deref for Guard {
        type Target = EmbeddedStore;
        fn deref(&self) -> &EmbeddedStore {
            &self.1
        }
    }

    pub async fn make() -> Guard {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("bars.db")).unwrap();
        Guard(dir, store)
    }
}

store_suite!(embedded_store, crate::store_suite::embedded::make);
