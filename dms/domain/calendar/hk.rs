//! HKEX securities market: published holiday tables, half days, closures on record and the
//! changes of trading hours since 2000.
//!
//! HKEX closes on Hong Kong's general holidays, which move with the lunar calendar and the
//! substitution rules of the General Holidays Ordinance (Cap. 149; from 2013 a Sunday during
//! Lunar New Year is replaced by the 4th day, before that by Lunar New Year's Eve), so they are
//! a table here, not rules. Sources: the Government's yearly list of general holidays
//! (`www.gov.hk/en/about/abouthk/holiday/<year>.htm`, 2027 gazetted in 2026) and HKEX's yearly
//! circular on the trading calendar (for 2027: HKEX circular MO/DT/133/26). Closures for bad
//! weather come from HKEX's market communications of the day (typhoon signal No. 8 or above, or a
//! black rainstorm warning, in force at noon cancels the whole day — HKEX Rules, Chapter 5, and
//! "Trading arrangements during typhoons and black rainstorms"); from 23 Sep 2024 HKEX keeps
//! trading in severe weather ("Severe Weather Trading", HKEX news release 2024-09), so later
//! closures are not expected but can be added through the `calendars:` config.
//!
//! # Hours (continuous trading, local time)
//! The 2011/2012 changes are HKEx's two-phase extension of trading hours (news release
//! 2011-01-24, "…approval … to extend the trading hours … in two phases"). Nothing is matched
//! during the lunch break.
//!
//! | from | morning | afternoon | half day |
//! |---|---|---|---|
//! | (before 2011-03-07) | 10:00–12:30 | 14:30–16:00 | 10:00–12:30 |
//! | 2011-03-07 (phase 1 of HKEX's trading-hours extension) | 09:30–12:00 | 13:30–16:00 | 09:30–12:00 |
//! | 2012-03-05 (phase 2) | 09:30–12:00 | 13:00–16:00 | 09:30–12:00 |
//!
//! The closing auction session (CAS) runs after continuous trading: 2008-05-26 to 2009-03-20
//! until 16:10, or 12:40 on a half day (HKEx news releases 2008-05-19 "Closing Auction Session
//! Set for Implementation on 26 May 2008" and 2009-03-12 "HKEx Proposes to Suspend Securities
//! Market's CAS from 23 March"), and again from 2016-07-25 until 16:08–16:10, or 12:08–12:10
//! on a half day (HKEX, "HKEX Successfully Launches Closing Auction Session", 2016-07-25).
//! The session ends at the latest close, 16:10 (12:10, 12:40).
//!
//! Half days (no afternoon session) are the eves of Christmas, New Year and Lunar New Year when
//! they fall on a weekday (HKEX Rule 501; the 2008 release above names all three); on a weekend
//! there is no session at all and none is moved.

use chrono::NaiveDate;

use super::rules::lookup;
use super::{DayKind, Hours};

/// The last date the tables below are known for.
pub(super) const TABLE_END: u32 = 20271231;

/// Weekdays HKEX was (or will be) closed: general holidays and closures on record.
const CLOSURES: &[(u32, &str)] = &[
    // 2000
    (20000204, "Lunar New Year's Eve"),
    (20000207, "The third day of Lunar New Year"),
    (20000404, "Ching Ming Festival"),
    (20000421, "Good Friday"),
    (20000424, "Easter Monday"),
    (20000501, "Labour Day"),
    (20000511, "The Buddha's Birthday"),
    (20000606, "Tuen Ng Festival"),
    (20000913, "The Day following Mid-Autumn Festival"),
    (20001002, "National Day (substitute)"),
    (20001006, "Chung Yeung Festival"),
    (20001225, "Christmas Day"),
    (20001226, "The first weekday after Christmas Day"),
    // 2001
    (20010101, "New Year's Day"),
    (20010124, "Lunar New Year"),
    (20010125, "The second day of Lunar New Year"),
    (20010126, "The third day of Lunar New Year"),
    (20010405, "Ching Ming Festival"),
    (20010413, "Good Friday"),
    (20010416, "Easter Monday"),
    (20010430, "The Buddha's Birthday"),
    (20010501, "Labour Day"),
    (20010625, "Tuen Ng Festival"),
    (20010702, "The day following HKSAR Establishment Day"),
    (20010706, "Typhoon Utor: signal No. 8, trading cancelled"),
    (20010725, "Typhoon Yutu: signal No. 8, trading cancelled"),
    (20011001, "National Day"),
    (20011002, "The Day following Mid-Autumn Festival"),
    (20011025, "Chung Yeung Festival"),
    (20011225, "Christmas Day"),
    (20011226, "The first weekday after Christmas Day"),
    // 2002
    (20020101, "New Year's Day"),
    (20020212, "Lunar New Year"),
    (20020213, "The second day of Lunar New Year"),
    (20020214, "The third day of Lunar New Year"),
    (20020329, "Good Friday"),
    (20020401, "Easter Monday"),
    (20020405, "Ching Ming Festival"),
    (20020501, "Labour Day"),
    (20020520, "The day following the Buddha's Birthday"),
    (20020701, "HKSAR Establishment Day"),
    (20021001, "National Day"),
    (20021014, "Chung Yeung Festival"),
    (20021225, "Christmas Day"),
    (20021226, "The first weekday after Christmas Day"),
    // 2003
    (20030101, "New Year's Day"),
    (20030131, "Lunar New Year's Eve"),
    (20030203, "The third day of Lunar New Year"),
    (20030418, "Good Friday"),
    (20030421, "Easter Monday"),
    (20030501, "Labour Day"),
    (20030508, "The Buddha's Birthday"),
    (20030604, "Tuen Ng Festival"),
    (20030701, "HKSAR Establishment Day"),
    (20030912, "The Day following Mid-Autumn Festival"),
    (20031001, "National Day"),
    (20031225, "Christmas Day"),
    (20031226, "The first weekday after Christmas Day"),
    // 2004
    (20040101, "New Year's Day"),
    (20040122, "Lunar New Year"),
    (20040123, "The second day of Lunar New Year"),
    (20040405, "The day following Ching Ming Festival"),
    (20040409, "Good Friday"),
    (20040412, "Easter Monday"),
    (20040526, "The Buddha's Birthday"),
    (20040622, "Tuen Ng Festival"),
    (20040701, "HKSAR Establishment Day"),
    (20040929, "The Day following Mid-Autumn Festival"),
    (20041001, "National Day"),
    (20041022, "Chung Yeung Festival"),
    (20041227, "The first weekday after Christmas Day"),
    // 2005
    (20050209, "Lunar New Year"),
    (20050210, "The second day of Lunar New Year"),
    (20050211, "The third day of Lunar New Year"),
    (20050325, "Good Friday"),
    (20050328, "Easter Monday"),
    (20050405, "Ching Ming Festival"),
    (20050502, "The day following Labour Day"),
    (20050516, "The day following the Buddha's Birthday"),
    (20050701, "HKSAR Establishment Day"),
    (20050919, "The Day following Mid-Autumn Festival"),
    (20051011, "Chung Yeung Festival"),
    (20051226, "The first weekday after Christmas Day"),
    (20051227, "The second weekday after Christmas Day"),
    // 2006
    (20060102, "The day following New Year's Day"),
    (20060130, "The second day of Lunar New Year"),
    (20060131, "The third day of Lunar New Year"),
    (20060405, "Ching Ming Festival"),
    (20060414, "Good Friday"),
    (20060417, "Easter Monday"),
    (20060501, "Labour Day"),
    (20060505, "The Buddha's Birthday"),
    (20060531, "Tuen Ng Festival"),
    (20061002, "National Day (substitute)"),
    (20061030, "Chung Yeung Festival"),
    (20061225, "Christmas Day"),
    (20061226, "The first weekday after Christmas Day"),
    // 2007
    (20070101, "New Year's Day"),
    (20070219, "The second day of Lunar New Year"),
    (20070220, "The third day of Lunar New Year"),
    (20070405, "Ching Ming Festival"),
    (20070406, "Good Friday"),
    (20070409, "Easter Monday"),
    (20070501, "Labour Day"),
    (20070524, "The Buddha's Birthday"),
    (20070619, "Tuen Ng Festival"),
    (20070702, "The day following HKSAR Establishment Day"),
    (20070926, "The Day following Mid-Autumn Festival"),
    (20071001, "National Day"),
    (20071019, "Chung Yeung Festival"),
    (20071225, "Christmas Day"),
    (20071226, "The first weekday after Christmas Day"),
    // 2008
    (20080101, "New Year's Day"),
    (20080207, "Lunar New Year"),
    (20080208, "The second day of Lunar New Year"),
    (20080321, "Good Friday"),
    (20080324, "Easter Monday"),
    (20080404, "Ching Ming Festival"),
    (20080501, "Labour Day"),
    (20080512, "The Buddha's Birthday"),
    (20080609, "The day following Tuen Ng Festival"),
    (20080701, "HKSAR Establishment Day"),
    (20080806, "Typhoon Kammuri: signal No. 8, trading cancelled"),
    (20080822, "Typhoon Nuri: signal No. 8, trading cancelled"),
    (20080915, "The Day following Mid-Autumn Festival"),
    (20081001, "National Day"),
    (20081007, "Chung Yeung Festival"),
    (20081225, "Christmas Day"),
    (20081226, "The first weekday after Christmas Day"),
    // 2009
    (20090101, "New Year's Day"),
    (20090126, "Lunar New Year"),
    (20090127, "The second day of Lunar New Year"),
    (20090128, "The third day of Lunar New Year"),
    (20090410, "Good Friday"),
    (20090413, "Easter Monday"),
    (20090501, "Labour Day"),
    (20090528, "Tuen Ng Festival"),
    (20090701, "HKSAR Establishment Day"),
    (20091001, "National Day"),
    (20091026, "Chung Yeung Festival"),
    (20091225, "Christmas Day"),
    // 2010
    (20100101, "New Year's Day"),
    (20100215, "The second day of Lunar New Year"),
    (20100216, "The third day of Lunar New Year"),
    (20100402, "Good Friday"),
    (20100405, "Easter Monday / Ching Ming Festival"),
    (20100406, "The day following Ching Ming Festival"),
    (20100521, "The Buddha's Birthday"),
    (20100616, "Tuen Ng Festival"),
    (20100701, "HKSAR Establishment Day"),
    (20100923, "The Day following Mid-Autumn Festival"),
    (20101001, "National Day"),
    (20101227, "The first weekday after Christmas Day"),
    // 2011
    (20110203, "Lunar New Year"),
    (20110204, "The second day of Lunar New Year"),
    (20110405, "Ching Ming Festival"),
    (20110422, "Good Friday"),
    (20110425, "Easter Monday"),
    (20110502, "The day following Labour Day"),
    (20110510, "The Buddha's Birthday"),
    (20110606, "Tuen Ng Festival"),
    (20110701, "HKSAR Establishment Day"),
    (20110913, "The Day following Mid-Autumn Festival"),
    (20110929, "Typhoon Nesat: signal No. 8, trading cancelled"),
    (20111005, "Chung Yeung Festival"),
    (20111226, "The first weekday after Christmas Day"),
    (20111227, "The second weekday after Christmas Day"),
    // 2012
    (20120102, "The day following New Year's Day"),
    (20120123, "Lunar New Year"),
    (20120124, "The second day of Lunar New Year"),
    (20120125, "The third day of Lunar New Year"),
    (20120404, "Ching Ming Festival"),
    (20120406, "Good Friday"),
    (20120409, "Easter Monday"),
    (20120501, "Labour Day"),
    (20120702, "The day following HKSAR Establishment Day"),
    (
        20121001,
        "National Day / The Day following Mid-Autumn Festival",
    ),
    (20121002, "National Day (substitute)"),
    (20121023, "Chung Yeung Festival"),
    (20121225, "Christmas Day"),
    (20121226, "The first weekday after Christmas Day"),
    // 2013
    (20130101, "New Year's Day"),
    (20130211, "The second day of Lunar New Year"),
    (20130212, "The third day of Lunar New Year"),
    (20130213, "The fourth day of Lunar New Year"),
    (20130329, "Good Friday"),
    (20130401, "Easter Monday"),
    (20130404, "Ching Ming Festival"),
    (20130501, "Labour Day"),
    (20130517, "The Buddha's Birthday"),
    (20130612, "Tuen Ng Festival"),
    (20130701, "HKSAR Establishment Day"),
    (20130814, "Typhoon Utor: signal No. 8, trading cancelled"),
    (20130920, "The Day following Mid-Autumn Festival"),
    (20131001, "National Day"),
    (20131014, "The day following Chung Yeung Festival"),
    (20131225, "Christmas Day"),
    (20131226, "The first weekday after Christmas Day"),
    // 2014
    (20140101, "New Year's Day"),
    (20140131, "Lunar New Year"),
    (20140203, "The fourth day of Lunar New Year"),
    (20140418, "Good Friday"),
    (20140421, "Easter Monday"),
    (20140501, "Labour Day"),
    (20140506, "The Buddha's Birthday"),
    (20140602, "Tuen Ng Festival"),
    (20140701, "HKSAR Establishment Day"),
    (20140909, "The Day following Mid-Autumn Festival"),
    (20141001, "National Day"),
    (20141002, "Chung Yeung Festival"),
    (20141225, "Christmas Day"),
    (20141226, "The first weekday after Christmas Day"),
    // 2015
    (20150101, "New Year's Day"),
    (20150219, "Lunar New Year"),
    (20150220, "The second day of Lunar New Year"),
    (20150403, "Good Friday"),
    (20150406, "The day following Ching Ming Festival"),
    (20150407, "The day following Easter Monday"),
    (20150501, "Labour Day"),
    (20150525, "The Buddha's Birthday"),
    (20150701, "HKSAR Establishment Day"),
    (
        20150903,
        "70th anniversary of the victory of the War of Resistance (one-off general holiday)",
    ),
    (20150928, "The Day following Mid-Autumn Festival"),
    (20151001, "National Day"),
    (20151021, "Chung Yeung Festival"),
    (20151225, "Christmas Day"),
    // 2016
    (20160101, "New Year's Day"),
    (20160208, "Lunar New Year"),
    (20160209, "The second day of Lunar New Year"),
    (20160210, "The third day of Lunar New Year"),
    (20160325, "Good Friday"),
    (20160328, "Easter Monday"),
    (20160404, "Ching Ming Festival"),
    (20160502, "The day following Labour Day"),
    (20160609, "Tuen Ng Festival"),
    (20160701, "HKSAR Establishment Day"),
    (20160802, "Typhoon Nida: signal No. 8, trading cancelled"),
    (20160916, "The Day following Mid-Autumn Festival"),
    (20161010, "The day following Chung Yeung Festival"),
    (20161021, "Typhoon Haima: signal No. 8, trading cancelled"),
    (20161226, "The first weekday after Christmas Day"),
    (20161227, "The second weekday after Christmas Day"),
    // 2017
    (20170102, "The day following New Year's Day"),
    (20170130, "The third day of Lunar New Year"),
    (20170131, "The fourth day of Lunar New Year"),
    (20170404, "Ching Ming Festival"),
    (20170414, "Good Friday"),
    (20170417, "Easter Monday"),
    (20170501, "Labour Day"),
    (20170503, "The Buddha's Birthday"),
    (20170530, "Tuen Ng Festival"),
    (20170823, "Typhoon Hato: signal No. 10, trading cancelled"),
    (20171002, "National Day (substitute)"),
    (20171005, "The Day following Mid-Autumn Festival"),
    (20171225, "Christmas Day"),
    (20171226, "The first weekday after Christmas Day"),
    // 2018
    (20180101, "New Year's Day"),
    (20180216, "Lunar New Year"),
    (20180219, "The fourth day of Lunar New Year"),
    (20180330, "Good Friday"),
    (20180402, "Easter Monday"),
    (20180405, "Ching Ming Festival"),
    (20180501, "Labour Day"),
    (20180522, "The Buddha's Birthday"),
    (20180618, "Tuen Ng Festival"),
    (20180702, "The day following HKSAR Establishment Day"),
    (20180925, "The Day following Mid-Autumn Festival"),
    (20181001, "National Day"),
    (20181017, "Chung Yeung Festival"),
    (20181225, "Christmas Day"),
    (20181226, "The first weekday after Christmas Day"),
    // 2019
    (20190101, "New Year's Day"),
    (20190205, "Lunar New Year"),
    (20190206, "The second day of Lunar New Year"),
    (20190207, "The third day of Lunar New Year"),
    (20190405, "Ching Ming Festival"),
    (20190419, "Good Friday"),
    (20190422, "Easter Monday"),
    (20190501, "Labour Day"),
    (20190513, "The day following the Buddha's Birthday"),
    (20190607, "Tuen Ng Festival"),
    (20190701, "HKSAR Establishment Day"),
    (20191001, "National Day"),
    (20191007, "Chung Yeung Festival"),
    (20191225, "Christmas Day"),
    (20191226, "The first weekday after Christmas Day"),
    // 2020
    (20200101, "New Year's Day"),
    (20200127, "The third day of Lunar New Year"),
    (20200128, "The fourth day of Lunar New Year"),
    (20200410, "Good Friday"),
    (20200413, "Easter Monday"),
    (20200430, "The Buddha's Birthday"),
    (20200501, "Labour Day"),
    (20200625, "Tuen Ng Festival"),
    (20200701, "HKSAR Establishment Day"),
    (20201001, "National Day"),
    (20201002, "The Day following Mid-Autumn Festival"),
    (
        20201013,
        "Typhoon Nangka: signal No. 8, trading cancelled (HKEX news 2010132)",
    ),
    (20201026, "The day following Chung Yeung Festival"),
    (20201225, "Christmas Day"),
    // 2021
    (20210101, "New Year's Day"),
    (20210212, "Lunar New Year"),
    (20210215, "The fourth day of Lunar New Year"),
    (20210402, "Good Friday"),
    (20210405, "The day following Ching Ming Festival"),
    (20210406, "The day following Easter Monday"),
    (20210519, "The Buddha's Birthday"),
    (20210614, "Tuen Ng Festival"),
    (20210701, "HKSAR Establishment Day"),
    (20210922, "The Day following Mid-Autumn Festival"),
    (20211001, "National Day"),
    (
        20211013,
        "Typhoon Kompasu: signal No. 8, trading cancelled (HKEX news 2110132)",
    ),
    (20211014, "Chung Yeung Festival"),
    (20211227, "The first weekday after Christmas Day"),
    // 2022
    (20220201, "Lunar New Year"),
    (20220202, "The second day of Lunar New Year"),
    (20220203, "The third day of Lunar New Year"),
    (20220405, "Ching Ming Festival"),
    (20220415, "Good Friday"),
    (20220418, "Easter Monday"),
    (20220502, "The day following Labour Day"),
    (20220509, "The day following the Buddha's Birthday"),
    (20220603, "Tuen Ng Festival"),
    (20220701, "HKSAR Establishment Day"),
    (20220912, "The Second Day following Mid-Autumn Festival"),
    (20221004, "Chung Yeung Festival"),
    (20221226, "The first weekday after Christmas Day"),
    (20221227, "The second weekday after Christmas Day"),
    // 2023
    (20230102, "The day following New Year's Day"),
    (20230123, "The second day of Lunar New Year"),
    (20230124, "The third day of Lunar New Year"),
    (20230125, "The fourth day of Lunar New Year"),
    (20230405, "Ching Ming Festival"),
    (20230407, "Good Friday"),
    (20230410, "Easter Monday"),
    (20230501, "Labour Day"),
    (20230526, "The Buddha's Birthday"),
    (20230622, "Tuen Ng Festival"),
    (20230717, "Typhoon Talim: signal No. 8, trading cancelled"),
    (
        20230901,
        "Typhoon Saola: signal No. 8, trading cancelled (HKEX news 2309012)",
    ),
    (
        20230908,
        "Black rainstorm and extreme conditions, trading cancelled (HKEX news 2309083)",
    ),
    (20231002, "National Day (substitute)"),
    (20231023, "Chung Yeung Festival"),
    (20231225, "Christmas Day"),
    (20231226, "The first weekday after Christmas Day"),
    // 2024
    (20240101, "New Year's Day"),
    (20240212, "The third day of Lunar New Year"),
    (20240213, "The fourth day of Lunar New Year"),
    (20240329, "Good Friday"),
    (20240401, "Easter Monday"),
    (20240404, "Ching Ming Festival"),
    (20240501, "Labour Day"),
    (20240515, "The Buddha's Birthday"),
    (20240610, "Tuen Ng Festival"),
    (20240701, "HKSAR Establishment Day"),
    (
        20240906,
        "Typhoon Yagi: signal No. 8 past noon, trading cancelled",
    ),
    (20240918, "The Day following Mid-Autumn Festival"),
    (20241001, "National Day"),
    (20241011, "Chung Yeung Festival"),
    (20241225, "Christmas Day"),
    (20241226, "The first weekday after Christmas Day"),
    // 2025
    (20250101, "New Year's Day"),
    (20250129, "Lunar New Year"),
    (20250130, "The second day of Lunar New Year"),
    (20250131, "The third day of Lunar New Year"),
    (20250404, "Ching Ming Festival"),
    (20250418, "Good Friday"),
    (20250421, "Easter Monday"),
    (20250501, "Labour Day"),
    (20250505, "The Buddha's Birthday"),
    (20250701, "HKSAR Establishment Day"),
    (20251001, "National Day"),
    (20251007, "The Day following Mid-Autumn Festival"),
    (20251029, "Chung Yeung Festival"),
    (20251225, "Christmas Day"),
    (20251226, "The first weekday after Christmas Day"),
    // 2026
    (20260101, "New Year's Day"),
    (20260217, "Lunar New Year"),
    (20260218, "The second day of Lunar New Year"),
    (20260219, "The third day of Lunar New Year"),
    (20260403, "Good Friday"),
    (
        20260406,
        "Easter Monday / The day following Ching Ming Festival",
    ),
    (20260407, "The day following Easter Monday"),
    (20260501, "Labour Day"),
    (20260525, "The day following the Buddha's Birthday"),
    (20260619, "Tuen Ng Festival"),
    (20260701, "HKSAR Establishment Day"),
    (20261001, "National Day"),
    (20261019, "The day following Chung Yeung Festival"),
    (20261225, "Christmas Day"),
    // 2027
    (20270101, "New Year's Day"),
    (20270208, "The third day of Lunar New Year"),
    (20270209, "The fourth day of Lunar New Year"),
    (20270326, "Good Friday"),
    (20270329, "Easter Monday"),
    (20270405, "Ching Ming Festival"),
    (20270513, "The Buddha's Birthday"),
    (20270609, "Tuen Ng Festival"),
    (20270701, "HKSAR Establishment Day"),
    (20270916, "The Day following Mid-Autumn Festival"),
    (20271001, "National Day"),
    (20271008, "Chung Yeung Festival"),
    (20271227, "The first weekday after Christmas Day"),
];

/// Half days: the morning session only (plus the closing auction when there is one).
const HALF_DAYS: &[(u32, &str)] = &[
    (20010123, "Lunar New Year's Eve"),
    (20011224, "Christmas Eve"),
    (20011231, "New Year's Eve"),
    (20020211, "Lunar New Year's Eve"),
    (20021224, "Christmas Eve"),
    (20021231, "New Year's Eve"),
    (20031224, "Christmas Eve"),
    (20031231, "New Year's Eve"),
    (20040121, "Lunar New Year's Eve"),
    (20041224, "Christmas Eve"),
    (20041231, "New Year's Eve"),
    (20050208, "Lunar New Year's Eve"),
    (20071224, "Christmas Eve"),
    (20071231, "New Year's Eve"),
    (20080206, "Lunar New Year's Eve"),
    (20081224, "Christmas Eve"),
    (20081231, "New Year's Eve"),
    (20091224, "Christmas Eve"),
    (20091231, "New Year's Eve"),
    (20101224, "Christmas Eve"),
    (20101231, "New Year's Eve"),
    (20110202, "Lunar New Year's Eve"),
    (20121224, "Christmas Eve"),
    (20121231, "New Year's Eve"),
    (20131224, "Christmas Eve"),
    (20131231, "New Year's Eve"),
    (20140130, "Lunar New Year's Eve"),
    (20141224, "Christmas Eve"),
    (20141231, "New Year's Eve"),
    (20150218, "Lunar New Year's Eve"),
    (20151224, "Christmas Eve"),
    (20151231, "New Year's Eve"),
    (20170127, "Lunar New Year's Eve"),
    (20180215, "Lunar New Year's Eve"),
    (20181224, "Christmas Eve"),
    (20181231, "New Year's Eve"),
    (20190204, "Lunar New Year's Eve"),
    (20191224, "Christmas Eve"),
    (20191231, "New Year's Eve"),
    (20200124, "Lunar New Year's Eve"),
    (20201224, "Christmas Eve"),
    (20201231, "New Year's Eve"),
    (20210211, "Lunar New Year's Eve"),
    (20211224, "Christmas Eve"),
    (20211231, "New Year's Eve"),
    (20220131, "Lunar New Year's Eve"),
    (20240209, "Lunar New Year's Eve"),
    (20241224, "Christmas Eve"),
    (20241231, "New Year's Eve"),
    (20250128, "Lunar New Year's Eve"),
    (20251224, "Christmas Eve"),
    (20251231, "New Year's Eve"),
    (20260216, "Lunar New Year's Eve"),
    (20261224, "Christmas Eve"),
    (20261231, "New Year's Eve"),
    (20270205, "Lunar New Year's Eve"),
    (20271224, "Christmas Eve"),
    (20271231, "New Year's Eve"),
];

/// Days the morning session was cancelled for bad weather and trading began in the afternoon,
/// with the local minute it began (no lunch break that day; intraday bars are expected from that
/// minute on, so a 13:30 start puts hourly bars at 13:30, 14:30 and 15:30). HKEX's rule: a signal lowered
/// between 09:00 and 12:00 reopens the market on the first half hour about two hours later, at
/// 13:00 at the earliest. The times are from HKEX's announcements of the day as reported
/// (Reuters, Bloomberg, SCMP, WSJ).
/// Known but not yet timed, so kept as full days (an expected morning bar there is a false gap,
/// to be fixed once HKEX's notice of the day is found): 2008-06-25, 2009-09-15, 2012-07-24,
/// 2013-05-22.
const LATE_OPENS: &[(u32, u16, &str)] = &[
    (
        20130923,
        13 * 60,
        "Typhoon Usagi: signal No. 8 lowered 09:20, trading from 13:00",
    ),
    (
        20140916,
        13 * 60,
        "Typhoon Kalmaegi: signal No. 8 lowered 10:40, trading from 13:00",
    ),
    (
        20200819,
        13 * 60 + 30,
        "Typhoon Higos: signal No. 8 lowered before noon, trading from 13:30 (HKEX news 2008192)",
    ),
    (
        20210628,
        13 * 60 + 30,
        "black rainstorm lowered 11:05, trading from 13:30",
    ),
    (
        20220825,
        13 * 60,
        "Typhoon Ma-on: signal No. 8 lowered after 09:00, trading from 13:00",
    ),
    (
        20231009,
        14 * 60,
        "Typhoon Koinu and black rainstorm: trading from 14:00",
    ),
];

const HOURS_2011: u32 = 20110307;
const HOURS_2012: u32 = 20120305;
const CAS_2008: (u32, u32) = (20080526, 20090320);
const CAS_2016: u32 = 20160725;

pub(super) fn day(d: NaiveDate) -> DayKind {
    if super::rules::is_weekend(d) || lookup(CLOSURES, d).is_some() {
        DayKind::Closed
    } else if lookup(HALF_DAYS, d).is_some() {
        DayKind::EarlyClose
    } else if late_open(d).is_some() {
        DayKind::LateOpen
    } else {
        DayKind::Regular
    }
}

/// Why HKEX is closed on `d`, when a table says so.
pub(super) fn closure(d: NaiveDate) -> Option<&'static str> {
    lookup(CLOSURES, d)
}

fn late_open(d: NaiveDate) -> Option<u16> {
    let k = super::rules::key(d);
    LATE_OPENS
        .binary_search_by_key(&k, |&(day, _, _)| day)
        .ok()
        .map(|i| LATE_OPENS[i].1)
}

pub(super) fn hours(d: NaiveDate, kind: DayKind) -> Hours {
    let k = super::rules::key(d);
    let (open, morning_end, afternoon) = if k < HOURS_2011 {
        (10 * 60, 12 * 60 + 30, 14 * 60 + 30)
    } else if k < HOURS_2012 {
        (9 * 60 + 30, 12 * 60, 13 * 60 + 30)
    } else {
        (9 * 60 + 30, 12 * 60, 13 * 60)
    };
    let cas = (CAS_2008.0..=CAS_2008.1).contains(&k) || k >= CAS_2016;
    let close = 16 * 60;
    match kind {
        DayKind::EarlyClose => Hours {
            open,
            lunch: None,
            close: morning_end,
            auction_end: cas.then_some(morning_end + 10),
        },
        DayKind::LateOpen => Hours {
            open: late_open(d).map(i32::from).unwrap_or(afternoon),
            lunch: None,
            close,
            auction_end: cas.then_some(close + 10),
        },
        _ => Hours {
            open,
            lunch: Some((morning_end, afternoon)),
            close,
            auction_end: cas.then_some(close + 10),
        },
    }
}

#[cfg(test)]
pub(super) const TABLES: [&[(u32, &str)]; 2] = [CLOSURES, HALF_DAYS];
