//! Named dates and full-year counts for every market. The yearly counts were cross-checked
//! against the exchanges' published calendars (and, for 2000–2027, against exchange_calendars
//! and pandas_market_calendars, whose differences from these tables are each explained in the
//! data files: HK's Sept 2023 weather closures and pre-2013 Lunar New Year's Eve half days).

use super::*;
use chrono::DateTime;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    rules::date(y, m, day)
}

/// `YYYY-MM-DD HH:MM` in UTC as epoch seconds.
fn utc(s: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
        .unwrap()
        .and_utc()
        .timestamp()
}

fn hhmm(t: i64, tz: Tz) -> String {
    DateTime::from_timestamp(t, 0)
        .unwrap()
        .with_timezone(&tz)
        .format("%H:%M")
        .to_string()
}

/// A session's local hours as `open-close`, `lunch`, `auction end` strings.
fn local_hours(cal: &Calendar, date: NaiveDate) -> (String, String, String) {
    let s = cal
        .session(date)
        .unwrap_or_else(|| panic!("{date} is a session"));
    let tz = cal.timezone();
    (
        format!("{}-{}", hhmm(s.open, tz), hhmm(s.close, tz)),
        s.lunch
            .map(|(a, b)| format!("{}-{}", hhmm(a, tz), hhmm(b, tz)))
            .unwrap_or_default(),
        s.auction_close.map(|t| hhmm(t, tz)).unwrap_or_default(),
    )
}

fn count(cal: &Calendar, year: i32) -> usize {
    cal.sessions(d(year, 1, 1), d(year + 1, 1, 1)).count()
}

fn closed(cal: &Calendar, date: NaiveDate) -> &'static str {
    cal.closed_reason(date)
        .unwrap_or_else(|| panic!("{} should be closed on {date}", cal.market()))
}

#[test]
fn every_table_row_is_a_real_date_in_order() {
    for (name, t) in [("us closures", us::TABLES[0]), ("us early", us::TABLES[1])] {
        rules::assert_table(name, t);
    }
    rules::assert_table("hk closures", hk::TABLES[0]);
    rules::assert_table("hk half days", hk::TABLES[1]);
    rules::assert_table("cn closures", cn::TABLES[0]);
    for t in hk::TABLES.iter().chain(cn::TABLES.iter()) {
        for &(k, why) in *t {
            assert!(
                !rules::is_weekend(rules::ymd(k)),
                "{k} ({why}) is a weekend"
            );
        }
    }
}

#[test]
fn us_sessions_per_year_match_nyse() {
    let cal = Calendar::standard(Market::Us);
    let want = [
        (2000, 252),
        (2001, 248), // 11–14 Sep closed
        (2004, 252),
        (2007, 251),
        (2008, 253),
        (2012, 250), // Hurricane Sandy
        (2018, 251),
        (2020, 253),
        (2021, 252),
        (2022, 251), // first Juneteenth
        (2023, 250),
        (2024, 252),
        (2025, 250), // President Carter's funeral
        (2026, 251),
        (2027, 251),
    ];
    for (y, n) in want {
        assert_eq!(count(cal, y), n, "US {y}");
    }
}

#[test]
fn us_holidays_follow_nyse_observance_rules() {
    let cal = Calendar::standard(Market::Us);
    assert_eq!(closed(cal, d(2024, 3, 29)), "Good Friday");
    assert_eq!(closed(cal, d(2024, 1, 15)), "Martin Luther King Jr. Day");
    // Juneteenth: open in 2021, the first closure in 2022 (Sunday the 19th → Monday the 20th),
    // a Saturday in 2027 → Friday 18 June.
    assert!(cal.is_session(d(2021, 6, 18)));
    assert_eq!(closed(cal, d(2022, 6, 20)), "Juneteenth");
    assert_eq!(closed(cal, d(2027, 6, 18)), "Juneteenth");
    // New Year's Day on a Saturday is not moved to the Friday before.
    assert!(cal.is_session(d(2021, 12, 31)));
    assert!(cal.is_session(d(2010, 12, 31)));
    // Christmas on a Saturday is observed on Friday the 24th, on a Sunday on Monday the 26th.
    assert_eq!(closed(cal, d(2027, 12, 24)), "Christmas Day");
    assert_eq!(closed(cal, d(2022, 12, 26)), "Christmas Day");
    assert_eq!(closed(cal, d(2026, 7, 3)), "Independence Day");
    assert_eq!(closed(cal, d(2027, 7, 5)), "Independence Day");
    assert_eq!(closed(cal, d(2024, 6, 1)), "weekend");
}

#[test]
fn us_unscheduled_closures_are_on_record() {
    let cal = Calendar::standard(Market::Us);
    for date in [
        d(2001, 9, 11),
        d(2001, 9, 12),
        d(2001, 9, 13),
        d(2001, 9, 14),
        d(2004, 6, 11),
        d(2007, 1, 2),
        d(2012, 10, 29),
        d(2012, 10, 30),
        d(2018, 12, 5),
        d(2025, 1, 9),
    ] {
        assert!(!cal.is_session(date), "{date}");
    }
    assert!(closed(cal, d(2025, 1, 9)).contains("Carter"));
    assert_eq!(
        cal.next_session(d(2001, 9, 10)).unwrap().date,
        d(2001, 9, 17)
    );
    assert_eq!(
        cal.previous_session(d(2012, 10, 31)).unwrap().date,
        d(2012, 10, 26)
    );
}

#[test]
fn us_early_closes_follow_the_rules_and_their_exceptions() {
    let cal = Calendar::standard(Market::Us);
    let early = |date| cal.session(date).unwrap().early_close;
    // Day after Thanksgiving and Christmas Eve, 13:00.
    assert_eq!(local_hours(cal, d(2024, 11, 29)).0, "09:30-13:00");
    assert!(early(d(2024, 12, 24)) && early(d(2026, 12, 24)));
    // 3 July on a Monday, Tuesday or Thursday; on a Wednesday only from 2013.
    assert!(early(d(2023, 7, 3)) && early(d(2018, 7, 3)) && early(d(2025, 7, 3)));
    assert!(early(d(2013, 7, 3)) && early(d(2019, 7, 3)) && early(d(2024, 7, 3)));
    // Before 2013 a Thursday 4 July moved the early close to Friday 5 July (2002); 2013 kept
    // Friday a full day.
    assert!(!early(d(2002, 7, 3)) && early(d(2002, 7, 5)));
    assert!(!early(d(2013, 7, 5)));
    // No early close before a Friday or Monday holiday.
    assert!(!early(d(2026, 7, 2)) && !early(d(2021, 7, 2)) && !early(d(2027, 7, 2)));
    // Friday 26 December: early in 2003, a full day in 2008, 2014 and 2025.
    assert!(early(d(2003, 12, 26)));
    assert!(!early(d(2008, 12, 26)) && !early(d(2014, 12, 26)) && !early(d(2025, 12, 26)));
    let early_2024: Vec<_> = cal
        .sessions(d(2024, 1, 1), d(2025, 1, 1))
        .filter(|s| s.early_close)
        .map(|s| s.date)
        .collect();
    assert_eq!(
        early_2024,
        [d(2024, 7, 3), d(2024, 11, 29), d(2024, 12, 24)]
    );
}

#[test]
fn us_hours_follow_daylight_saving_time() {
    let cal = Calendar::standard(Market::Us);
    let s = cal.session(d(2024, 3, 8)).unwrap();
    assert_eq!(
        (s.open, s.close),
        (utc("2024-03-08 14:30"), utc("2024-03-08 21:00"))
    );
    let s = cal.session(d(2024, 3, 11)).unwrap();
    assert_eq!(
        (s.open, s.close),
        (utc("2024-03-11 13:30"), utc("2024-03-11 20:00"))
    );
    assert_eq!(s.lunch, None);
}

#[test]
fn hk_sessions_per_year() {
    let cal = Calendar::standard(Market::Hk);
    for (y, n) in [
        (2008, 245),
        (2011, 246),
        (2016, 245),
        (2019, 246),
        (2023, 243), // Talim, Saola, the black rainstorm of 8 Sep
        (2024, 246), // Yagi
        (2025, 246),
        (2026, 247),
        (2027, 248),
    ] {
        assert_eq!(count(cal, y), n, "HK {y}");
    }
}

#[test]
fn hk_holidays_and_weather_closures() {
    let cal = Calendar::standard(Market::Hk);
    assert_eq!(
        closed(cal, d(2024, 2, 12)),
        "The third day of Lunar New Year"
    );
    assert!(cal.is_session(d(2024, 2, 14)));
    // From 2013 a Sunday in Lunar New Year brings back the 4th day (2027: the 2nd is a Sunday).
    assert_eq!(
        closed(cal, d(2027, 2, 9)),
        "The fourth day of Lunar New Year"
    );
    // Ching Ming on Easter Monday moves to the next day.
    assert!(!cal.is_session(d(2026, 4, 7)));
    assert!(closed(cal, d(2024, 9, 6)).contains("Yagi"));
    assert!(closed(cal, d(2023, 9, 8)).contains("rainstorm"));
    assert!(closed(cal, d(2023, 9, 1)).contains("Saola"));
    assert!(closed(cal, d(2021, 10, 13)).contains("Kompasu"));
    assert!(closed(cal, d(2017, 8, 23)).contains("Hato"));
    // The Saturday after a Friday Christmas is no holiday to move.
    assert!(cal.is_session(d(2026, 12, 28)));
}

#[test]
fn hk_half_days_only_on_weekday_eves() {
    let cal = Calendar::standard(Market::Hk);
    // Lunar New Year's Eve 2024 (a Friday): morning session, then the closing auction.
    assert_eq!(
        local_hours(cal, d(2024, 2, 9)),
        ("09:30-12:00".into(), String::new(), "12:10".into())
    );
    assert!(cal.session(d(2024, 12, 31)).unwrap().early_close);
    // Christmas Eve on a Saturday: no session, and the Friday before is a full day.
    assert!(!cal.is_session(d(2022, 12, 24)));
    assert!(!cal.session(d(2022, 12, 23)).unwrap().early_close);
    // 24 Dec 2027: NYSE is shut for Christmas, HKEX trades its morning session.
    assert!(!Calendar::standard(Market::Us).is_session(d(2027, 12, 24)));
    assert!(cal.session(d(2027, 12, 24)).unwrap().early_close);
    // Before March 2011 a half day was 10:00–12:30; the 2008–09 auction added ten minutes.
    assert_eq!(local_hours(cal, d(2010, 12, 24)).0, "10:00-12:30");
    assert_eq!(local_hours(cal, d(2008, 12, 24)).2, "12:40");
    assert_eq!(local_hours(cal, d(2008, 2, 6)).0, "10:00-12:30");
}

#[test]
fn hk_hours_changed_in_2011_2012_and_with_the_closing_auction() {
    let cal = Calendar::standard(Market::Hk);
    let h = |y, m, day| local_hours(cal, d(y, m, day));
    assert_eq!(
        h(2010, 6, 1),
        ("10:00-16:00".into(), "12:30-14:30".into(), String::new())
    );
    assert_eq!(h(2011, 3, 4).1, "12:30-14:30");
    assert_eq!(
        h(2011, 3, 7),
        ("09:30-16:00".into(), "12:00-13:30".into(), String::new())
    );
    assert_eq!(h(2012, 3, 2).1, "12:00-13:30");
    assert_eq!(h(2012, 3, 5).1, "12:00-13:00");
    // Closing auction: 26 May 2008 to 20 March 2009, and from 25 July 2016.
    assert_eq!(h(2008, 5, 23).2, "");
    assert_eq!(h(2008, 5, 26).2, "16:10");
    assert_eq!(h(2009, 3, 20).2, "16:10");
    assert_eq!(h(2009, 3, 23).2, "");
    assert_eq!(h(2016, 7, 22).2, "");
    assert_eq!(h(2016, 7, 25).2, "16:10");
    // Typhoon Higos: the morning was cancelled, trading resumed at 13:30; Koinu at 14:00.
    assert_eq!(
        h(2020, 8, 19),
        ("13:30-16:00".into(), String::new(), "16:10".into())
    );
    assert_eq!(h(2023, 10, 9).0, "14:00-16:00");
    let koinu = cal.session(d(2023, 10, 9)).unwrap();
    assert_eq!(koinu.bar_starts(Interval::H1).count(), 2);
    assert!(!koinu.early_close);
}

#[test]
fn hk_lunch_break_is_outside_trading_hours_but_inside_the_session() {
    let cal = Calendar::standard(Market::Hk);
    let lunch = utc("2024-01-02 04:30"); // 12:30 Hong Kong
    assert_eq!(cal.session_of(lunch).unwrap().date, d(2024, 1, 2));
    assert!(!cal.contains(lunch));
    assert!(cal.contains(utc("2024-01-02 05:00")));
    // The closing auction is inside the session since 2016, not before.
    assert!(cal.contains(utc("2024-01-02 08:05")));
    assert!(!cal.contains(utc("2015-01-02 08:05")));
    assert!(!cal.contains(utc("2024-01-02 08:10")));
}

#[test]
fn cn_sessions_per_year_match_the_published_schedules() {
    for m in [Market::Sh, Market::Sz] {
        let cal = Calendar::standard(m);
        for (y, n) in [
            (2000, 239),
            (2008, 246),
            (2013, 238),
            (2015, 244),
            (2020, 243),
            (2023, 242),
            (2024, 242),
            (2025, 243),
            (2026, 242),
        ] {
            assert_eq!(count(cal, y), n, "{m} {y}");
        }
    }
}

#[test]
fn cn_closes_on_make_up_weekends_and_through_the_golden_weeks() {
    let cal = Calendar::standard(Market::Sh);
    // Spring Festival 2024: closed 9–16 Feb; Sunday 4 Feb and Sunday 18 Feb were official
    // working days, but the exchanges do not trade on weekends.
    for day in [9, 12, 13, 14, 15, 16] {
        assert_eq!(
            closed(cal, d(2024, 2, day)),
            "Spring Festival",
            "2024-02-{day}"
        );
    }
    assert_eq!(closed(cal, d(2024, 2, 4)), "weekend");
    assert_eq!(closed(cal, d(2024, 2, 18)), "weekend");
    assert_eq!(
        cal.next_session(d(2024, 2, 8)).unwrap().date,
        d(2024, 2, 19)
    );
    for day in [1, 2, 5, 6, 7] {
        assert_eq!(closed(cal, d(2026, 10, day)), "National Day");
    }
    assert_eq!(closed(cal, d(2026, 9, 25)), "Mid-Autumn Festival");
    assert_eq!(closed(cal, d(2026, 6, 19)), "Dragon Boat Festival");
    assert_eq!(closed(cal, d(2025, 4, 4)), "Qingming Festival");
    assert!(closed(cal, d(2015, 9, 4)).contains("70th anniversary"));
    // Before 2008 the Spring Festival closure ran two weeks.
    assert_eq!(cal.sessions(d(2001, 1, 20), d(2001, 2, 5)).count(), 0);
    assert_eq!(
        cal.next_session(d(2001, 1, 19)).unwrap().date,
        d(2001, 2, 5)
    );
}

#[test]
fn cn_lunch_break_and_the_2016_circuit_breaker() {
    let cal = Calendar::standard(Market::Sz);
    assert_eq!(
        local_hours(cal, d(2024, 1, 2)),
        ("09:30-15:00".into(), "11:30-13:00".into(), String::new())
    );
    assert_eq!(local_hours(cal, d(2016, 1, 7)).0, "09:30-09:59");
    assert_eq!(
        local_hours(cal, d(2016, 1, 4)),
        ("09:30-13:34".into(), "11:30-13:00".into(), String::new())
    );
    let s = cal.session(d(2024, 1, 2)).unwrap();
    assert_eq!(s.bar_starts(Interval::M1).count(), 240);
    let hours: Vec<_> = s
        .bar_starts(Interval::H1)
        .map(|t| hhmm(t, cal.timezone()))
        .collect();
    assert_eq!(hours, ["09:30", "10:30", "13:00", "14:00"]);
}

#[test]
fn crypto_trades_every_utc_day() {
    let cal = Calendar::standard(Market::Crypto);
    assert_eq!(count(cal, 2024), 366);
    let s = cal.session(d(2024, 12, 25)).unwrap();
    assert_eq!(
        (s.open, s.end(), s.final_at),
        (
            utc("2024-12-25 00:00"),
            utc("2024-12-26 00:00"),
            utc("2024-12-26 00:00")
        )
    );
    assert_eq!(s.bar_starts(Interval::M1).count(), 1440);
    assert_eq!(cal.table_end(), None);
}

#[test]
fn fx_sessions_run_from_the_new_york_roll_monday_to_friday() {
    let cal = Calendar::standard(Market::Fx);
    assert_eq!(count(cal, 2024), 260); // 262 weekdays less 1 Jan and 25 Dec
    // Monday's session opens on Sunday at 17:00 New York (22:00 UTC in winter, 21:00 in summer).
    let mon = cal.session(d(2024, 1, 8)).unwrap();
    assert_eq!(
        (mon.open, mon.close),
        (utc("2024-01-07 22:00"), utc("2024-01-08 22:00"))
    );
    assert_eq!(
        cal.session(d(2024, 7, 8)).unwrap().open,
        utc("2024-07-07 21:00")
    );
    // The DST switch on Sunday 10 March 2024 is before the 17:00 open.
    assert_eq!(
        cal.session(d(2024, 3, 11)).unwrap().open,
        utc("2024-03-10 21:00")
    );
    assert!(cal.contains(utc("2024-01-07 23:00")));
    assert!(!cal.contains(utc("2024-01-06 12:00")));
    assert_eq!(
        cal.session_of(utc("2024-01-09 23:00")).unwrap().date,
        d(2024, 1, 10)
    );
    assert_eq!(closed(cal, d(2024, 12, 25)), "Christmas Day");
    assert_eq!(closed(cal, d(2024, 1, 1)), "New Year's Day");
    // Daily bar of 2 Jan: stamped 00:00 UTC, final at 24:00 UTC.
    let s = cal.session(d(2024, 1, 2)).unwrap();
    assert_eq!(
        (s.stamp(), s.final_at),
        (utc("2024-01-02 00:00"), utc("2024-01-03 00:00"))
    );
}

#[test]
fn a_closure_from_config_removes_the_session() {
    let standard = Calendar::standard(Market::Hk);
    let typhoon = d(2026, 9, 15);
    assert!(standard.is_session(typhoon));
    let cal = Calendar::new(Market::Hk, &[typhoon]);
    assert!(!cal.is_session(typhoon));
    assert_eq!(cal.closed_reason(typhoon), Some("closed by config"));
    assert_eq!(
        cal.next_session(d(2026, 9, 14)).unwrap().date,
        d(2026, 9, 16)
    );
    assert_eq!(count(&cal, 2026), count(standard, 2026) - 1);
    // Far outside the precomputed years too.
    let far = d(2070, 1, 6);
    assert!(!Calendar::new(Market::Us, &[far]).is_session(far));
    assert!(Calendar::standard(Market::Us).is_session(far));
}

#[test]
fn a_half_day_from_config_uses_the_markets_half_day_hours() {
    let cal = Calendar::with_overrides(
        Market::Us,
        Overrides {
            closures: vec![],
            half_days: vec![d(2026, 12, 31)],
        },
    );
    assert_eq!(local_hours(&cal, d(2026, 12, 31)).0, "09:30-13:00");
    let hk = Calendar::with_overrides(
        Market::Hk,
        Overrides {
            closures: vec![],
            half_days: vec![d(2026, 9, 24)],
        },
    );
    assert_eq!(
        local_hours(&hk, d(2026, 9, 24)),
        ("09:30-12:00".into(), String::new(), "12:10".into())
    );
}

#[test]
fn intraday_bar_starts_respect_lunch_breaks_and_early_closes() {
    let us = Calendar::standard(Market::Us);
    let s = us.session(d(2024, 1, 2)).unwrap();
    let h1: Vec<_> = s
        .bar_starts(Interval::H1)
        .map(|t| hhmm(t, us.timezone()))
        .collect();
    // The last hourly bar starts 15:30 and is half an hour long, as Yahoo returns it.
    assert_eq!(
        h1,
        [
            "09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"
        ]
    );
    assert_eq!(s.bar_starts(Interval::M1).count(), 390);
    assert_eq!(s.bar_starts(Interval::M30).count(), 13);
    let half = us.session(d(2024, 11, 29)).unwrap();
    assert_eq!(half.bar_starts(Interval::M1).count(), 210);
    assert_eq!(half.bar_starts(Interval::H1).count(), 4);
    let hk = Calendar::standard(Market::Hk);
    let s = hk.session(d(2024, 1, 2)).unwrap();
    let h1: Vec<_> = s
        .bar_starts(Interval::H1)
        .map(|t| hhmm(t, hk.timezone()))
        .collect();
    assert_eq!(h1, ["09:30", "10:30", "11:30", "13:00", "14:00", "15:00"]);
    assert_eq!(s.bar_starts(Interval::M1).count(), 330); // nothing in the closing auction
    assert_eq!(s.bar_starts(Interval::M1).size_hint(), (330, Some(330)));
    let old = hk.session(d(2010, 6, 1)).unwrap();
    let h1: Vec<_> = old
        .bar_starts(Interval::H1)
        .map(|t| hhmm(t, hk.timezone()))
        .collect();
    assert_eq!(h1, ["10:00", "11:00", "12:00", "14:30", "15:30"]);
    assert_eq!(
        hk.session(d(2024, 2, 9))
            .unwrap()
            .bar_starts(Interval::M5)
            .count(),
        30
    );
    for t in s.bar_starts(Interval::M5) {
        assert!(Interval::M5.is_on_grid(t) && hk.contains(t));
    }
}

#[test]
fn expected_stamps_for_daily_weekly_and_monthly_bars() {
    let cn = Calendar::standard(Market::Sh);
    let feb = TimeRange::new(utc("2024-02-01 00:00"), utc("2024-03-01 00:00")).unwrap();
    let days = cn.expected_stamps(Interval::D1, feb);
    assert_eq!(days.len(), 15); // 21 weekdays, 6 of them Spring Festival
    assert_eq!(days[0], utc("2024-02-01 00:00"));
    assert!(!days.contains(&utc("2024-02-09 00:00")));
    // The week of 12 Feb has no session, so no weekly bar.
    let weeks = cn.expected_stamps(Interval::W1, feb);
    assert_eq!(
        weeks,
        [
            utc("2024-02-05 00:00"),
            utc("2024-02-19 00:00"),
            utc("2024-02-26 00:00")
        ]
    );
    // A week's stamp is its Monday even when Monday is a holiday (US, Presidents' Day).
    let us = Calendar::standard(Market::Us);
    let r = TimeRange::new(utc("2024-02-19 00:00"), utc("2024-02-26 00:00")).unwrap();
    assert_eq!(
        us.expected_stamps(Interval::W1, r),
        [utc("2024-02-19 00:00")]
    );
    let year = TimeRange::new(utc("2024-01-01 00:00"), utc("2025-01-01 00:00")).unwrap();
    assert_eq!(us.expected_stamps(Interval::Mo1, year).len(), 12);
    assert_eq!(us.expected_stamps(Interval::D1, year).len(), 252);
    // Intraday stamps are cut to the range.
    let r = TimeRange::new(utc("2024-01-02 15:00"), utc("2024-01-02 16:00")).unwrap();
    assert_eq!(us.expected_stamps(Interval::M1, r).len(), 60);
    assert_eq!(
        us.expected_stamps(Interval::H1, r),
        [utc("2024-01-02 15:30")]
    );
}

#[test]
fn sessions_in_a_time_range_overlap_it() {
    let hk = Calendar::standard(Market::Hk);
    // 2024-01-02 07:59Z is 15:59 in Hong Kong: inside the 2 Jan session only.
    let r = TimeRange::new(utc("2024-01-02 07:59"), utc("2024-01-02 08:00")).unwrap();
    let got: Vec<_> = hk.sessions_in(r).map(|s| s.date).collect();
    assert_eq!(got, [d(2024, 1, 2)]);
    let fx = Calendar::standard(Market::Fx);
    let weekend = TimeRange::new(utc("2024-01-06 00:00"), utc("2024-01-07 22:00")).unwrap();
    assert_eq!(fx.sessions_in(weekend).count(), 0);
}

#[test]
fn last_closed_session_waits_for_the_close() {
    let us = Calendar::standard(Market::Us);
    // 3 July 2024 closed at 13:00 New York = 17:00 UTC.
    assert_eq!(
        us.last_closed_session(utc("2024-07-03 16:59"))
            .unwrap()
            .date,
        d(2024, 7, 2)
    );
    assert_eq!(
        us.last_closed_session(utc("2024-07-03 17:00"))
            .unwrap()
            .date,
        d(2024, 7, 3)
    );
    // Over the holiday the 3rd stays the last one.
    assert_eq!(
        us.last_closed_session(utc("2024-07-05 12:00"))
            .unwrap()
            .date,
        d(2024, 7, 3)
    );
    let hk = Calendar::standard(Market::Hk);
    assert_eq!(
        hk.last_closed_session(utc("2024-01-02 08:09"))
            .unwrap()
            .date,
        d(2023, 12, 29)
    );
    assert_eq!(
        hk.last_closed_session(utc("2024-01-02 08:10"))
            .unwrap()
            .date,
        d(2024, 1, 2)
    );
}

#[test]
fn tables_warn_when_they_end_within_the_horizon() {
    let now = utc("2026-12-01 00:00");
    assert!(Calendar::standard(Market::Sh).ends_within(now, 120));
    assert!(Calendar::standard(Market::Sz).ends_within(now, 120));
    assert!(!Calendar::standard(Market::Hk).ends_within(now, 120));
    assert!(!Calendar::standard(Market::Us).ends_within(now, 120));
    assert!(!Calendar::standard(Market::Crypto).ends_within(now, 120));
    assert!(Calendar::standard(Market::Hk).ends_within(utc("2027-09-10 00:00"), 120));
    assert!(!Calendar::standard(Market::Hk).ends_within(utc("2027-08-01 00:00"), 120));
    // Past the table SH trades every weekday: the Spring Festival of 2027 is not known yet.
    assert!(Calendar::standard(Market::Sh).is_session(d(2027, 2, 8)));
}

#[test]
fn unbounded_ranges_stay_bounded() {
    let us = Calendar::standard(Market::Us);
    assert!(us.sessions_in(TimeRange::ALL).count() > 50_000);
    assert!(!us.expected_stamps(Interval::Mo1, TimeRange::ALL).is_empty());
    assert_eq!(us.session_of(i64::MIN / 4), None);
    assert!(us.last_closed_session(i64::MAX / 4).is_none());
    assert!(us.previous_session(NaiveDate::MIN).is_none());
}

#[test]
fn is_session_day_agrees_with_is_session_inside_and_outside_the_cache() {
    let epoch = d(1970, 1, 1);
    assert_eq!((cache_bounds().0 - epoch).num_days(), CACHE_FIRST_EPOCH_DAY);
    for market in [
        Market::Us,
        Market::Hk,
        Market::Sh,
        Market::Fx,
        Market::Crypto,
    ] {
        let cal = Calendar::new(market, &[d(2024, 3, 5)]);
        let days = (d(1985, 1, 1) - epoch).num_days()..(d(2065, 1, 1) - epoch).num_days();
        for day in days.step_by(3) {
            let date = epoch + Duration::days(day);
            assert_eq!(
                cal.is_session_day(day),
                cal.is_session(date),
                "{market:?} {date}"
            );
        }
        assert!(!cal.is_session_day((d(2024, 3, 5) - epoch).num_days()));
    }
}
