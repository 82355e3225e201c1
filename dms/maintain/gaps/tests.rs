//! The gap logic on hand-made coverage: holidays, half days, lunch breaks, the HK closing
//! auction, DST, suspensions, absent slots, heads and staleness, and what a source answer
//! confirms.

use super::*;

fn ts(s: &str) -> i64 {
    time::parse_instant(s).unwrap()
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn ix(m: Market) -> SessionIndex {
    SessionIndex::new(Calendar::standard(m).clone())
}

fn range(a: &str, b: &str) -> TimeRange {
    TimeRange::new(ts(a), ts(b)).unwrap()
}

/// Every stamp the calendar expects in `[a, b)`.
fn all(ix: &SessionIndex, interval: Interval, a: &str, b: &str) -> Vec<i64> {
    ix.calendar().expected_stamps(interval, range(a, b))
}

/// `stamps` less those in `[a, b)`.
fn without(stamps: &[i64], a: &str, b: &str) -> Vec<i64> {
    let r = range(a, b);
    stamps.iter().copied().filter(|t| !r.contains(*t)).collect()
}

/// Interior gaps and head of a series holding `stamps` (latest = the last of them), examined
/// at `now`.
fn examine_at(
    ix: &SessionIndex,
    interval: Interval,
    coverage: &Coverage,
    empty: &[NaiveDate],
    latest: Option<i64>,
    now: i64,
) -> Findings {
    let facts = SeriesFacts {
        interval,
        coverage,
        empty,
        latest,
        start: ts("2024-01-01"),
    };
    examine(ix, &facts, horizon(ix, interval, now), &mut Expected::new())
}

fn interior(
    ix: &SessionIndex,
    interval: Interval,
    stamps: &[i64],
    empty: &[NaiveDate],
) -> Vec<Gap> {
    let cov = Coverage::from_stamps(interval, stamps.iter().copied());
    examine_at(
        ix,
        interval,
        &cov,
        empty,
        stamps.last().copied(),
        ts("2100-01-01"),
    )
    .interior
}

fn gap(a: &str, b: &str, sessions: u32) -> Gap {
    Gap {
        range: range(a, b),
        sessions,
    }
}

#[test]
fn a_missing_week_is_one_gap_of_five_sessions() {
    let us = ix(Market::Us);
    let stamps = all(&us, Interval::D1, "2010-02-01", "2010-05-01");
    let stored = without(&stamps, "2010-03-08", "2010-03-13");
    assert_eq!(
        interior(&us, Interval::D1, &stored, &[]),
        [gap("2010-03-08", "2010-03-13", 5)]
    );
    assert!(interior(&us, Interval::D1, &stamps, &[]).is_empty());
}

#[test]
fn holidays_and_weekends_neither_count_nor_split_a_gap() {
    let us = ix(Market::Us);
    // 2024-01-15 is Martin Luther King Jr. Day.
    let stamps = all(&us, Interval::D1, "2024-01-02", "2024-02-01");
    assert!(!stamps.contains(&ts("2024-01-15")));
    assert!(interior(&us, Interval::D1, &stamps, &[]).is_empty());
    // Missing Fri 12th and Tue 16th–Fri 19th: one gap over the weekend and the holiday.
    let stored = without(&stamps, "2024-01-12", "2024-01-20");
    assert_eq!(
        interior(&us, Interval::D1, &stored, &[]),
        [gap("2024-01-12", "2024-01-20", 5)]
    );
    // A stored bar between two missing days splits them.
    let mut split = without(&stamps, "2024-01-08", "2024-01-13");
    split.push(ts("2024-01-10"));
    split.sort_unstable();
    assert_eq!(
        interior(&us, Interval::D1, &split, &[]),
        [
            gap("2024-01-08", "2024-01-10", 2),
            gap("2024-01-11", "2024-01-13", 2)
        ]
    );
}

#[test]
fn a_half_day_expects_bars_only_until_its_early_close() {
    let us = ix(Market::Us);
    // 2024-11-29, the day after Thanksgiving: 09:30–13:00 New York (14:30–18:00Z).
    let day = all(&us, Interval::M1, "2024-11-29", "2024-11-30");
    assert_eq!(day.len(), 210);
    assert_eq!(*day.last().unwrap(), ts("2024-11-29T17:59:00Z"));
    let mut stamps = all(&us, Interval::M1, "2024-11-26", "2024-12-03");
    assert!(interior(&us, Interval::M1, &stamps, &[]).is_empty());
    stamps.retain(|t| *t != ts("2024-11-29T17:30:00Z"));
    assert_eq!(
        interior(&us, Interval::M1, &stamps, &[]),
        [gap("2024-11-29T17:30:00Z", "2024-11-29T17:31:00Z", 1)]
    );
}

#[test]
fn hk_lunch_break_and_closing_auction_are_not_gaps_but_a_missing_half_hour_is() {
    let hk = ix(Market::Hk);
    // 2024-01-02: 09:30–12:00 and 13:00–16:00 Hong Kong (01:30–04:00Z, 05:00–08:00Z), then
    // the closing auction to 16:10, which has no bars.
    let stamps = all(&hk, Interval::M1, "2024-01-02", "2024-01-04");
    assert_eq!(stamps.len(), 2 * 330);
    assert!(!stamps.contains(&ts("2024-01-02T04:30:00Z")));
    assert!(!stamps.contains(&ts("2024-01-02T08:05:00Z")));
    assert!(interior(&hk, Interval::M1, &stamps, &[]).is_empty());
    let stored = without(&stamps, "2024-01-02T02:00:00Z", "2024-01-02T02:30:00Z");
    assert_eq!(
        interior(&hk, Interval::M1, &stored, &[]),
        [gap("2024-01-02T02:00:00Z", "2024-01-02T02:30:00Z", 1)]
    );
    // The missing afternoon's last bar ends at the close, not at the end of the auction.
    let stored = without(&stamps, "2024-01-02T07:00:00Z", "2024-01-03T00:00:00Z");
    assert_eq!(
        interior(&hk, Interval::M1, &stored, &[]),
        [gap("2024-01-02T07:00:00Z", "2024-01-02T08:00:00Z", 1)]
    );
    // Hourly bars: 09:30, 10:30, 11:30 (to 12:00), 13:00, 14:00, 15:00.
    let hours = all(&hk, Interval::H1, "2024-01-02", "2024-01-03");
    assert_eq!(hours.len(), 6);
    let stored = without(&hours, "2024-01-02T03:30:00Z", "2024-01-02T03:31:00Z");
    assert_eq!(
        interior(&hk, Interval::H1, &stored, &[]),
        [gap("2024-01-02T03:30:00Z", "2024-01-02T04:00:00Z", 1)]
    );
}

#[test]
fn a_dst_change_moves_the_expected_bars_by_an_hour() {
    let us = ix(Market::Us);
    // Friday 2024-03-08 opens 14:30Z (EST); Monday 2024-03-11 opens 13:30Z (EDT).
    let stamps = all(&us, Interval::M1, "2024-03-08", "2024-03-12");
    assert_eq!(stamps[0], ts("2024-03-08T14:30:00Z"));
    assert!(stamps.contains(&ts("2024-03-11T13:30:00Z")));
    assert!(interior(&us, Interval::M1, &stamps, &[]).is_empty());
    // Monday written on winter hours: the first hour is missing; the bars after 20:00Z are
    // outside the session and neither fill nor open anything.
    let mut winter = without(&stamps, "2024-03-11", "2024-03-12");
    winter.extend((0..390).map(|i| ts("2024-03-11T14:30:00Z") + i * 60));
    winter.sort_unstable();
    let gaps = interior(&us, Interval::M1, &winter, &[]);
    assert_eq!(
        gaps,
        [gap("2024-03-11T13:30:00Z", "2024-03-11T14:30:00Z", 1)]
    );
}

#[test]
fn a_run_over_the_night_touches_two_sessions() {
    let us = ix(Market::Us);
    let stamps = all(&us, Interval::M1, "2024-01-08", "2024-01-10");
    // Monday 15:50 to Tuesday 09:40 New York (20:50Z to 14:40Z).
    let stored = without(&stamps, "2024-01-08T20:50:00Z", "2024-01-09T14:40:00Z");
    assert_eq!(
        interior(&us, Interval::M1, &stored, &[]),
        [gap("2024-01-08T20:50:00Z", "2024-01-09T14:40:00Z", 2)]
    );
}

#[test]
fn sessions_confirmed_empty_are_not_reported() {
    let us = ix(Market::Us);
    let stamps = all(&us, Interval::D1, "2010-02-01", "2010-05-01");
    let stored = without(&stamps, "2010-03-08", "2010-03-13");
    let week: Vec<NaiveDate> = [
        "2010-03-08",
        "2010-03-09",
        "2010-03-10",
        "2010-03-11",
        "2010-03-12",
    ]
    .into_iter()
    .map(d)
    .collect();
    assert!(interior(&us, Interval::D1, &stored, &week).is_empty());
    // Part of the week suspended: the rest is one gap counting only the unconfirmed sessions.
    assert_eq!(
        interior(&us, Interval::D1, &stored, &week[1..4]),
        [gap("2010-03-08", "2010-03-13", 2)]
    );
    // An intraday session confirmed empty has no expected bars.
    let minutes = all(&us, Interval::M1, "2024-01-08", "2024-01-11");
    let stored = without(&minutes, "2024-01-09", "2024-01-10");
    assert_eq!(interior(&us, Interval::M1, &stored, &[]).len(), 1);
    assert!(interior(&us, Interval::M1, &stored, &[d("2024-01-09")]).is_empty());
}

#[test]
fn slots_confirmed_absent_are_not_reported() {
    let hk = ix(Market::Hk);
    let stamps = all(&hk, Interval::M1, "2024-01-02", "2024-01-03");
    let halt = range("2024-01-02T02:00:00Z", "2024-01-02T02:30:00Z");
    let stored = without(&stamps, "2024-01-02T02:00:00Z", "2024-01-02T02:30:00Z");
    let cov = Coverage::from_stamps(Interval::M1, stored.iter().copied()).with_absent(
        Interval::M1,
        stamps.iter().copied().filter(|t| halt.contains(*t)),
    );
    let f = examine_at(
        &hk,
        Interval::M1,
        &cov,
        &[],
        stored.last().copied(),
        ts("2030-01-01"),
    );
    assert!(f.interior.is_empty(), "{:?}", f.interior);
}

#[test]
fn weekly_bars_are_missing_by_the_week() {
    let us = ix(Market::Us);
    let weeks = all(&us, Interval::W1, "2024-01-01", "2024-03-01");
    assert_eq!(weeks[0], ts("2024-01-01"));
    let stored = without(&weeks, "2024-01-15", "2024-01-16");
    // The week of MLK day has four sessions.
    assert_eq!(
        interior(&us, Interval::W1, &stored, &[]),
        [gap("2024-01-15", "2024-01-22", 4)]
    );
}

#[test]
fn the_head_runs_to_the_last_closed_session_and_makes_a_series_stale() {
    let us = ix(Market::Us);
    let stamps = all(&us, Interval::D1, "2024-01-02", "2024-01-10");
    let cov = Coverage::from_stamps(Interval::D1, stamps.iter().copied());
    // Thursday 2024-01-11 22:00Z: the 11th's bar is final (21:00Z), the 10th and 11th are due.
    let now = ts("2024-01-11T22:00:00Z");
    let f = examine_at(&us, Interval::D1, &cov, &[], stamps.last().copied(), now);
    assert_eq!(f.head, Some(gap("2024-01-10", "2024-01-12", 2)));
    assert!(f.stale);
    assert!(f.interior.is_empty());
    assert_eq!(f.first, Some(ts("2024-01-02")));
    // During the 11th's session only the 10th is due.
    let f = examine_at(
        &us,
        Interval::D1,
        &cov,
        &[],
        stamps.last().copied(),
        ts("2024-01-11T16:00:00Z"),
    );
    assert_eq!(f.head, Some(gap("2024-01-10", "2024-01-11", 1)));
    // Up to date: no head, not stale.
    let f = examine_at(
        &us,
        Interval::D1,
        &cov,
        &[],
        stamps.last().copied(),
        ts("2024-01-10T16:00:00Z"),
    );
    assert_eq!((f.head, f.stale), (None, false));
    // A suspension that goes on: the confirmed-empty sessions are not due.
    let f = examine_at(
        &us,
        Interval::D1,
        &cov,
        &[d("2024-01-10"), d("2024-01-11")],
        stamps.last().copied(),
        now,
    );
    assert_eq!((f.head, f.stale), (None, false));
    // Nothing stored: from the history start.
    let none = Coverage::new(Interval::D1);
    let f = examine_at(&us, Interval::D1, &none, &[], None, now);
    assert_eq!(f.head, Some(gap("2024-01-02", "2024-01-12", 8)));
}

#[test]
fn an_intraday_series_is_stale_only_when_a_closed_session_is_incomplete() {
    let us = ix(Market::Us);
    let monday = all(&us, Interval::M1, "2024-01-08", "2024-01-09");
    let cov = Coverage::from_stamps(Interval::M1, monday.iter().copied());
    // Tuesday 15:00Z, half an hour into the session: 30 bars are complete, none is stale.
    let now = ts("2024-01-09T15:00:00Z");
    let f = examine_at(&us, Interval::M1, &cov, &[], monday.last().copied(), now);
    assert_eq!(
        f.head,
        Some(gap("2024-01-09T14:30:00Z", "2024-01-09T15:00:00Z", 1))
    );
    assert!(!f.stale);
    // Monday's last hour missing: stale.
    let short = without(&monday, "2024-01-08T20:00:00Z", "2024-01-09");
    let cov = Coverage::from_stamps(Interval::M1, short.iter().copied());
    let f = examine_at(&us, Interval::M1, &cov, &[], short.last().copied(), now);
    assert_eq!(
        f.head,
        Some(gap("2024-01-08T20:00:00Z", "2024-01-09T15:00:00Z", 2))
    );
    assert!(f.stale);
}

#[test]
fn horizons_follow_final_bars() {
    let hk = ix(Market::Hk);
    // In the closing auction (16:05 Hong Kong) every continuous-trading bar is complete.
    let h = horizon(&hk, Interval::M1, ts("2024-01-02T08:05:00Z"));
    assert_eq!(h.complete_before, ts("2024-01-02T07:59:00Z") + 1);
    // During lunch the morning is complete.
    let h = horizon(&hk, Interval::M5, ts("2024-01-02T04:30:00Z"));
    assert_eq!(h.complete_before, ts("2024-01-02T03:55:00Z") + 1);
    // A week is complete once its last session is final.
    let us = ix(Market::Us);
    let h = horizon(&us, Interval::W1, ts("2024-01-12T22:00:00Z"));
    assert_eq!(h.complete_before, ts("2024-01-08") + 1);
    let h = horizon(&us, Interval::W1, ts("2024-01-11T22:00:00Z"));
    assert_eq!(h.complete_before, ts("2024-01-08"));
}

#[test]
fn a_config_closure_removes_an_expected_session() {
    let mut o = BTreeMap::new();
    o.insert(
        Market::Hk,
        Overrides {
            closures: vec![d("2024-01-03")],
            half_days: vec![],
        },
    );
    let cals = Calendars::new(&o);
    let hk = cals.sessions(Market::Hk);
    let stamps = all(hk, Interval::D1, "2024-01-02", "2024-01-06");
    assert_eq!(stamps.len(), 3);
    let standard = ix(Market::Hk);
    let with_hole = all(&standard, Interval::D1, "2024-01-02", "2024-01-06");
    let stored = without(&with_hole, "2024-01-03", "2024-01-04");
    assert_eq!(interior(&standard, Interval::D1, &stored, &[]).len(), 1);
    assert!(interior(hk, Interval::D1, &stored, &[]).is_empty());
    assert!(
        cals.ending_within(ts("2027-10-01"), 120)
            .iter()
            .any(|(m, _)| *m == Market::Hk)
    );
    assert!(cals.ending_within(ts("2024-10-01"), 120).is_empty());
}

#[test]
fn a_source_answer_confirms_the_sessions_it_has_nothing_for() {
    let us = ix(Market::Us);
    let page = range("2024-01-02", "2024-01-20");
    let days = all(&us, Interval::D1, "2024-01-02", "2024-01-20");
    // Suspended on the 9th and 10th; the page was answered on the 19th at 22:00Z, an hour
    // after the 19th closed: its bar is missing too, but may still come.
    let bars = without(&days, "2024-01-09", "2024-01-11");
    let bars = without(&bars, "2024-01-19", "2024-01-20");
    let now = ts("2024-01-19T22:00:00Z");
    let c = confirmed_empty(&us, Interval::D1, page, &bars, now);
    assert_eq!(c.sessions, [d("2024-01-09"), d("2024-01-10")]);
    assert!(c.absent.is_empty());
    // A day later the silence about the 19th counts.
    let c = confirmed_empty(&us, Interval::D1, page, &bars, now + CONFIRM_GRACE_SECS);
    assert_eq!(
        c.sessions,
        [d("2024-01-09"), d("2024-01-10"), d("2024-01-19")]
    );
    // An empty answer confirms only what is past the grace.
    let c = confirmed_empty(&us, Interval::D1, page, &[], now);
    assert_eq!(c.sessions.len(), days.len() - 1);
    // Intraday: a halt from 10:00 to 10:30 is absent; a session without bars is empty.
    let hk = ix(Market::Hk);
    let minutes = all(&hk, Interval::M1, "2024-01-02", "2024-01-05");
    let bars = without(&minutes, "2024-01-02T02:00:00Z", "2024-01-02T02:30:00Z");
    let bars = without(&bars, "2024-01-03", "2024-01-04");
    let c = confirmed_empty(
        &hk,
        Interval::M1,
        range("2024-01-02", "2024-01-05"),
        &bars,
        ts("2024-01-04T08:30:00Z"),
    );
    assert_eq!(c.sessions, [d("2024-01-03")]);
    assert_eq!(c.absent.len(), 30);
    assert_eq!(c.absent[0], ts("2024-01-02T02:00:00Z"));
    // A session the page only partly covers is never called empty.
    let c = confirmed_empty(
        &hk,
        Interval::M1,
        range("2024-01-03T03:00:00Z", "2024-01-05"),
        &bars,
        ts("2024-01-04T08:30:00Z"),
    );
    assert!(c.sessions.is_empty());
    assert!(!c.absent.is_empty());
}

#[test]
fn the_session_index_agrees_with_the_calendar() {
    let hk = ix(Market::Hk);
    let cal = Calendar::standard(Market::Hk);
    for t in [
        ts("2024-01-02T04:30:00Z"),
        ts("2024-01-02T08:05:00Z"),
        ts("2024-01-06T03:00:00Z"),
        ts("1980-01-02T03:00:00Z"),
    ] {
        assert_eq!(hk.session_at(t), cal.session_of(t), "{t}");
    }
    let r = range("2024-01-01", "2024-03-01");
    assert_eq!(
        hk.overlapping(r).to_vec(),
        cal.sessions_in(r).collect::<Vec<_>>()
    );
    assert_eq!(
        hk.last_closed(ts("2024-01-02T09:00:00Z")),
        cal.last_closed_session(ts("2024-01-02T09:00:00Z"))
    );
    assert_eq!(
        hk.dated(d("2024-02-01"), d("2024-03-01")).len(),
        cal.sessions(d("2024-02-01"), d("2024-03-01")).count()
    );
}
