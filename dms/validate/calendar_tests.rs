//! `validate` on named dates: the calendar rules and the flag rules on whole batches, as the
//! write path meets them.

use super::*;
use crate::domain::{SourceKind, Symbol, time};

fn ts(s: &str) -> i64 {
    time::parse_instant(s).unwrap()
}

fn key(symbol: &str, i: Interval) -> SeriesKey {
    SeriesKey::new(Symbol::parse(symbol).unwrap(), i)
}

fn bar(ts: i64, close: f64) -> Bar {
    Bar {
        ts,
        open: close,
        high: close,
        low: close,
        close,
        volume: 1_000.0,
        adj_close: None,
        source: SourceKind::Files,
    }
}

fn stamps(v: &Validated) -> Vec<String> {
    v.batch
        .as_ref()
        .map(|b| b.bars().iter().map(|b| time::rfc3339(b.ts)).collect())
        .unwrap_or_default()
}

fn rejected(v: &Validated) -> Vec<(String, &'static str)> {
    v.rejections
        .iter()
        .map(|r| (time::rfc3339(r.bar.ts), r.rule))
        .collect()
}

fn flagged(v: &Validated) -> Vec<(String, &'static str)> {
    v.flags
        .iter()
        .map(|f| (time::rfc3339(f.bar.ts), f.rule))
        .collect()
}

fn later() -> i64 {
    ts("2030-01-01")
}

#[test]
fn a_daily_bar_on_independence_day_is_rejected_as_closed_day() {
    let ctx = Context::new(later(), Some(Market::Us));
    let v = validate(
        &key("AAPL", Interval::D1),
        vec![
            bar(ts("2024-07-03"), 10.0),
            bar(ts("2024-07-04"), 10.0),
            bar(ts("2024-07-05"), 10.0),
        ],
        &ctx,
    );
    assert_eq!(
        rejected(&v),
        [("2024-07-04T00:00:00Z".to_string(), "closed_day")]
    );
    assert_eq!(
        v.rejections[0].reason,
        "2024-07-04 is not a US session (Independence Day)"
    );
    assert_eq!(stamps(&v).len(), 2);
}

#[test]
fn a_minute_bar_on_a_holiday_or_a_weekend_is_rejected_as_closed_day() {
    let ctx = Context::new(later(), Some(Market::Us));
    let v = validate(
        &key("AAPL", Interval::M1),
        vec![
            bar(ts("2024-07-04T14:30:00Z"), 10.0),
            bar(ts("2024-07-06T14:30:00Z"), 10.0),
        ],
        &ctx,
    );
    let reasons: Vec<_> = v.rejections.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "2024-07-04 is not a US session (Independence Day)",
            "2024-07-06 is not a US session (weekend)"
        ]
    );
}

#[test]
fn an_hk_minute_bar_at_12_30_is_rejected_as_lunch_and_one_at_13_00_is_accepted() {
    let ctx = Context::new(later(), Some(Market::Hk));
    // 2024-01-02 in Hong Kong (UTC+8): 11:59, 12:30, 13:00, and 16:05 in the closing auction.
    let v = validate(
        &key("0700.HK", Interval::M1),
        vec![
            bar(ts("2024-01-02T03:59:00Z"), 380.0),
            bar(ts("2024-01-02T04:30:00Z"), 380.0),
            bar(ts("2024-01-02T05:00:00Z"), 380.0),
            bar(ts("2024-01-02T08:05:00Z"), 380.0),
        ],
        &ctx,
    );
    assert_eq!(
        rejected(&v),
        [("2024-01-02T04:30:00Z".to_string(), "outside_session")]
    );
    assert!(
        v.rejections[0].reason.contains("lunch break"),
        "{}",
        v.rejections[0].reason
    );
    assert_eq!(
        stamps(&v),
        [
            "2024-01-02T03:59:00Z",
            "2024-01-02T05:00:00Z",
            "2024-01-02T08:05:00Z"
        ]
    );
}

#[test]
fn hk_hourly_bars_as_yahoo_and_futu_stamp_them_are_all_accepted() {
    let ctx = Context::new(later(), Some(Market::Hk));
    // 09:30, 10:30, 11:30 (the short bar to 12:00), 13:00, 14:00, 15:00 Hong Kong.
    let hours = [1, 2, 3, 5, 6, 7];
    let bars = hours
        .iter()
        .map(|h| {
            bar(
                ts("2024-01-02T00:00:00Z") + h * 3600 + if *h < 4 { 1800 } else { 0 },
                1.0,
            )
        })
        .collect();
    let v = validate(&key("0700.HK", Interval::H1), bars, &ctx);
    assert!(v.rejections.is_empty(), "{:?}", rejected(&v));
    assert_eq!(stamps(&v).len(), 6);
}

#[test]
fn a_us_bar_at_13_30_on_an_early_close_day_is_rejected() {
    let ctx = Context::new(later(), Some(Market::Us));
    // 2024-11-29, the day after Thanksgiving: 09:30–13:00 New York (14:30Z–18:00Z).
    let v = validate(
        &key("AAPL", Interval::M1),
        vec![
            bar(ts("2024-11-29T17:59:00Z"), 230.0),
            bar(ts("2024-11-29T18:30:00Z"), 230.0),
        ],
        &ctx,
    );
    assert_eq!(
        rejected(&v),
        [("2024-11-29T18:30:00Z".to_string(), "outside_session")]
    );
    assert_eq!(
        v.rejections[0].reason,
        "2024-11-29T18:30:00Z (13:30 America/New_York) is outside the hours of the 2024-11-29 \
         session (09:30–13:00)"
    );
}

#[test]
fn a_daily_bar_of_today_is_forming_at_15_00_new_york_and_final_after_the_close() {
    let today = ts("2024-03-15");
    let s = key("AAPL", Interval::D1);
    // 15:00 New York (EDT) = 19:00Z; the close is 16:00 = 20:00Z.
    let at_three = Context::new(ts("2024-03-15T19:00:00Z"), Some(Market::Us));
    let v = validate(&s, vec![bar(today, 170.0)], &at_three);
    assert_eq!(
        rejected(&v),
        [("2024-03-15T00:00:00Z".to_string(), "incomplete")]
    );
    assert_eq!(
        v.rejections[0].reason,
        "the 1d bar at 2024-03-15T00:00:00Z is still forming until 2024-03-15T20:00:00Z"
    );
    let at_close = Context::new(ts("2024-03-15T20:00:00Z"), Some(Market::Us));
    assert_eq!(
        stamps(&validate(&s, vec![bar(today, 170.0)], &at_close)).len(),
        1
    );
}

#[test]
fn a_configured_half_day_makes_the_daily_bar_final_at_13_00() {
    let cal = Calendar::with_overrides(
        Market::Us,
        crate::domain::Overrides {
            closures: vec![chrono::NaiveDate::from_ymd_opt(2024, 3, 14).unwrap()],
            half_days: vec![chrono::NaiveDate::from_ymd_opt(2024, 3, 15).unwrap()],
        },
    );
    let s = key("AAPL", Interval::D1);
    // 13:30 New York: past the configured 13:00 close.
    let ctx = Context::with_calendar(ts("2024-03-15T17:30:00Z"), cal);
    let v = validate(
        &s,
        vec![bar(ts("2024-03-14"), 1.0), bar(ts("2024-03-15"), 1.0)],
        &ctx,
    );
    assert_eq!(stamps(&v), ["2024-03-15T00:00:00Z"]);
    assert_eq!(
        v.rejections[0].reason,
        "2024-03-14 is not a US session (closed by config)"
    );
}

#[test]
fn a_short_last_hour_is_final_at_the_close_not_an_hour_after_its_start() {
    let s = key("AAPL", Interval::H1);
    let bar_1530 = bar(ts("2024-01-02T20:30:00Z"), 1.0);
    let before = Context::new(ts("2024-01-02T20:59:59Z"), Some(Market::Us));
    assert_eq!(
        validate(&s, vec![bar_1530], &before).rejections[0].rule,
        "incomplete"
    );
    let at_close = Context::new(ts("2024-01-02T21:00:00Z"), Some(Market::Us));
    assert!(validate(&s, vec![bar_1530], &at_close).batch.is_some());
}

#[test]
fn an_hk_auction_bar_is_final_when_the_auction_ends() {
    let s = key("0700.HK", Interval::M5);
    let b = bar(ts("2024-01-02T08:05:00Z"), 1.0);
    let during = Context::new(ts("2024-01-02T08:09:00Z"), Some(Market::Hk));
    assert_eq!(
        validate(&s, vec![b], &during).rejections[0].rule,
        "incomplete"
    );
    let after = Context::new(ts("2024-01-02T08:10:00Z"), Some(Market::Hk));
    assert!(validate(&s, vec![b], &after).batch.is_some());
}

#[test]
fn a_us_hourly_bar_on_the_hour_is_off_its_session_grid() {
    let ctx = Context::new(later(), Some(Market::Us));
    let v = validate(
        &key("AAPL", Interval::H1),
        vec![bar(ts("2024-01-02T15:00:00Z"), 1.0)],
        &ctx,
    );
    assert_eq!(v.rejections[0].rule, "off_grid");
}

#[test]
fn a_weekly_bar_of_a_week_without_sessions_is_rejected() {
    let ctx = Context::new(later(), Some(Market::Sh));
    let cal = Calendar::standard(Market::Sh);
    // Spring Festival 2024: SSE closed Friday 9 to Saturday 17 February.
    let d = |day| chrono::NaiveDate::from_ymd_opt(2024, 2, day).unwrap();
    assert!((12..=16).all(|day| !cal.is_session(d(day))));
    let v = validate(
        &key("600519.SS", Interval::W1),
        vec![
            bar(ts("2024-02-05"), 1.0),
            bar(ts("2024-02-12"), 1.0),
            bar(ts("2024-02-19"), 1.0),
        ],
        &ctx,
    );
    assert_eq!(
        rejected(&v),
        [("2024-02-12T00:00:00Z".to_string(), "closed_day")]
    );
    assert_eq!(
        v.rejections[0].reason,
        "2024-02-12 is not a SH session (no session in the week)"
    );
}

#[test]
fn fx_bars_on_christmas_are_accepted_and_on_a_saturday_rejected() {
    let ctx = Context::new(later(), Some(Market::Fx));
    let v = validate(
        &key("EURUSD=X", Interval::D1),
        vec![
            bar(ts("2023-12-22"), 1.1),
            bar(ts("2023-12-23"), 1.1),
            bar(ts("2023-12-25"), 1.1),
        ],
        &ctx,
    );
    assert_eq!(
        rejected(&v),
        [("2023-12-23T00:00:00Z".to_string(), "closed_day")]
    );
    // Minute bars through the Christmas session, which the FX calendar does not have.
    let v = validate(
        &key("EURUSD=X", Interval::M1),
        vec![
            bar(ts("2023-12-24T23:00:00Z"), 1.1),
            bar(ts("2023-12-25T10:00:00Z"), 1.1),
            bar(ts("2023-12-26T10:00:00Z"), 1.1),
        ],
        &ctx,
    );
    assert!(v.rejections.is_empty(), "{:?}", rejected(&v));
    // Volume 0 is what Yahoo sends for FX: not a flag.
    assert!(v.flags.is_empty());
}

#[test]
fn crypto_trades_on_weekends() {
    let ctx = Context::new(later(), Some(Market::Crypto));
    let v = validate(
        &key("BTC-USD", Interval::D1),
        vec![
            bar(ts("2024-01-06"), 44_000.0),
            bar(ts("2024-01-07"), 44_000.0),
        ],
        &ctx,
    );
    assert!(v.rejections.is_empty());
}

#[test]
fn without_a_market_no_calendar_rule_applies() {
    let ctx = Context::new(later(), None);
    let v = validate(
        &key("AAPL", Interval::M1),
        vec![
            bar(ts("2024-01-06T03:00:00Z"), 1.0),
            bar(ts("2024-07-04T14:30:00Z"), 1.0),
        ],
        &ctx,
    );
    assert!(v.rejections.is_empty());
    assert!(v.flags.is_empty(), "and no zero_volume either");
}

#[test]
fn a_split_on_the_date_suppresses_the_jump_flag() {
    // NVDA's 10:1 split took effect on 2024-06-10.
    let bars = vec![
        bar(ts("2024-06-07"), 1208.88),
        bar(ts("2024-06-10"), 121.79),
    ];
    let s = key("NVDA", Interval::D1);
    let ctx = Context::new(later(), Some(Market::Us));
    let v = validate(&s, bars.clone(), &ctx);
    assert_eq!(flagged(&v), [("2024-06-10T00:00:00Z".to_string(), "jump")]);
    let split = CorporateAction {
        ts: ts("2024-06-10"),
        kind: ActionKind::Split,
        amount: 10.0,
        numerator: Some(10.0),
        denominator: Some(1.0),
        source: SourceKind::Yahoo,
    };
    let dividend = CorporateAction::dividend(ts("2024-06-11"), 0.001, SourceKind::Yahoo);
    let ctx = ctx.with_actions(&[split, dividend]);
    assert_eq!(ctx.splits(), [ts("2024-06-10")]);
    let v = validate(&s, bars, &ctx);
    assert!(v.flags.is_empty(), "{:?}", flagged(&v));
    assert_eq!(stamps(&v).len(), 2);
}

#[test]
fn a_100x_bar_is_flagged_and_stored_and_the_return_is_not_flagged_again() {
    let ctx = Context::new(later(), Some(Market::Us));
    let v = validate(
        &key("VOD", Interval::D1),
        vec![
            bar(ts("2024-01-02"), 0.72),
            bar(ts("2024-01-03"), 72.1),
            bar(ts("2024-01-04"), 0.73),
            bar(ts("2024-01-05"), 0.74),
        ],
        &ctx,
    );
    assert!(v.rejections.is_empty());
    assert_eq!(stamps(&v).len(), 4, "flagged bars are stored");
    assert_eq!(
        flagged(&v),
        [("2024-01-03T00:00:00Z".to_string(), "unit_error")]
    );
    assert!(
        v.flags[0].reason.contains("unit error"),
        "{}",
        v.flags[0].reason
    );
}

#[test]
fn a_lasting_level_shift_is_flagged_once() {
    let ctx = Context::new(later(), Some(Market::Us));
    let v = validate(
        &key("XYZ", Interval::D1),
        vec![
            bar(ts("2024-01-02"), 10.0),
            bar(ts("2024-01-03"), 30.0),
            bar(ts("2024-01-04"), 31.0),
            bar(ts("2024-01-05"), 30.5),
        ],
        &ctx,
    );
    assert_eq!(flagged(&v), [("2024-01-03T00:00:00Z".to_string(), "jump")]);
}

#[test]
fn zero_volume_on_a_session_is_flagged() {
    let ctx = Context::new(later(), Some(Market::Us));
    let halted = Bar {
        volume: 0.0,
        ..bar(ts("2024-01-03"), 10.0)
    };
    let v = validate(
        &key("AAPL", Interval::D1),
        vec![bar(ts("2024-01-02"), 10.0), halted],
        &ctx,
    );
    assert_eq!(
        flagged(&v),
        [("2024-01-03T00:00:00Z".to_string(), "zero_volume")]
    );
    assert_eq!(stamps(&v).len(), 2);
    // Not for an index, whose volume Yahoo often leaves at 0.
    let v = validate(&key("^VIX", Interval::D1), vec![halted], &ctx);
    assert!(v.flags.is_empty());
}

#[test]
fn the_first_bar_is_compared_with_the_previous_stored_bar_when_it_is_older() {
    let s = key("AAPL", Interval::D1);
    let stored = bar(ts("2024-01-02"), 10.0);
    let ctx = Context::new(later(), Some(Market::Us)).with_previous(Some(stored));
    let v = validate(&s, vec![bar(ts("2024-01-03"), 20.0)], &ctx);
    assert_eq!(flagged(&v), [("2024-01-03T00:00:00Z".to_string(), "jump")]);
    // A re-fetch that overlaps the stored bar does not compare with it.
    let v = validate(
        &s,
        vec![bar(ts("2024-01-02"), 20.0), bar(ts("2024-01-03"), 20.0)],
        &ctx,
    );
    assert!(v.flags.is_empty());
}

#[test]
fn an_unsorted_batch_is_judged_in_time_order() {
    let ctx = Context::new(later(), Some(Market::Us));
    let v = validate(
        &key("AAPL", Interval::D1),
        vec![
            bar(ts("2024-01-04"), 10.0),
            bar(ts("2024-01-02"), 10.0),
            bar(ts("2024-01-03"), 10.0),
            bar(ts("2024-01-03"), 10.5),
        ],
        &ctx,
    );
    let b = v.batch.unwrap();
    assert_eq!(
        b.bars().iter().map(|b| b.close).collect::<Vec<_>>(),
        [10.0, 10.5, 10.0]
    );
    assert!(v.flags.is_empty());
}
