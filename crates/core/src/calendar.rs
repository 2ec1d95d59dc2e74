//! Service calendars: when the clock of a contract runs.
//!
//! Time is UTC epoch milliseconds everywhere; a calendar works in Asia/Shanghai local time, which is
//! UTC+8 all year (China has no daylight saving since 1991), so local time is plain arithmetic.
//!
//! A calendar says, for each local date, which windows of the day count:
//! - `days`: every date, or only Chinese working days (Monday–Friday, minus public holidays, plus
//!   make-up workdays 调休), taken from a [`HolidayTable`];
//! - `seasons`: per part of the year (e.g. 004: May 1–Oct 31 07:30–22:30, Nov 1–Apr 30 07:30–21:30),
//!   the windows of the day; no seasons means the whole day.
//!
//! A date in a year the holiday table has no data for is treated as an ordinary week and reported in
//! [`Span::missing_years`], so that every deadline computed across it can say "holiday data missing".

use std::collections::BTreeSet;

pub const MS_PER_MIN: i64 = 60_000;
pub const MS_PER_DAY: i64 = 86_400_000;
/// Asia/Shanghai is UTC+8.
pub const SHANGHAI_OFFSET_MS: i64 = 8 * 3_600_000;
/// A search for business time gives up after this many days of a calendar with no open window.
const MAX_SCAN_DAYS: i64 = 3 * 366;

/// Days since 1970-01-01 → (year, month, day). Howard Hinnant's civil-from-days.
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// 0 = Monday … 6 = Sunday.
pub fn weekday(days: i64) -> u32 {
    (days + 3).rem_euclid(7) as u32
}

/// Parses `YYYY-MM-DD` into days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !s.is_ascii() {
        return None;
    }
    let (y, m, d) = (s[0..4].parse().ok()?, s[5..7].parse().ok()?, s[8..10].parse().ok()?);
    let days = days_from_civil(y, m, d);
    (civil_from_days(days) == (y, m, d)).then_some(days)
}

/// Local (Shanghai) date of an instant.
pub fn local_day(utc_ms: i64) -> i64 {
    (utc_ms + SHANGHAI_OFFSET_MS).div_euclid(MS_PER_DAY)
}

/// The UTC instant of local midnight starting a local date.
pub fn day_start_utc(day: i64) -> i64 {
    day * MS_PER_DAY - SHANGHAI_OFFSET_MS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    Working,
    Off,
}

/// Official exceptions to the normal week, by year (the State Council's yearly notice).
#[derive(Debug, Clone, Default)]
pub struct HolidayTable {
    first_day: i64,
    /// One entry per day from `first_day`: 0 = no exception, 1 = day off, 2 = make-up workday.
    kinds: Vec<u8>,
    names: Vec<(i64, String)>,
    years: BTreeSet<i32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HolidayError {
    #[error("not a holiday data file: {0}")]
    Format(String),
    #[error("date {0} lies outside the year {1} of its file")]
    OutsideYear(String, i32),
}

#[derive(serde::Deserialize)]
struct YearFile {
    year: i32,
    days: Vec<YearDay>,
}

#[derive(serde::Deserialize)]
struct YearDay {
    name: String,
    date: String,
    #[serde(rename = "isOffDay")]
    is_off_day: bool,
}

const EMBEDDED: &[&str] = &[
    include_str!("../data/holidays-cn/2019.json"),
    include_str!("../data/holidays-cn/2020.json"),
    include_str!("../data/holidays-cn/2021.json"),
    include_str!("../data/holidays-cn/2022.json"),
    include_str!("../data/holidays-cn/2023.json"),
    include_str!("../data/holidays-cn/2024.json"),
    include_str!("../data/holidays-cn/2025.json"),
    include_str!("../data/holidays-cn/2026.json"),
    include_str!("../data/holidays-cn/2027.json"),
];

impl HolidayTable {
    /// The data shipped in the binary: 2019–2027.
    pub fn embedded() -> HolidayTable {
        let mut t = HolidayTable::default();
        for text in EMBEDDED {
            t.add_year_json(text).expect("embedded holiday data is valid");
        }
        t
    }

    /// Adds (or replaces) one year from a file in the holiday-cn format. Returns the year.
    pub fn add_year_json(&mut self, text: &str) -> Result<i32, HolidayError> {
        let file: YearFile = serde_json::from_str(text).map_err(|e| HolidayError::Format(e.to_string()))?;
        let mut parsed = Vec::with_capacity(file.days.len());
        for d in &file.days {
            let day = parse_date(&d.date).ok_or_else(|| HolidayError::Format(format!("bad date {:?}", d.date)))?;
            // A notice covers its year, plus the make-up days around New Year that it announces.
            let (y, _, _) = civil_from_days(day);
            if (y - file.year).abs() > 1 {
                return Err(HolidayError::OutsideYear(d.date.clone(), file.year));
            }
            parsed.push((day, d.is_off_day, d.name.clone()));
        }
        let (start, end) = (days_from_civil(file.year - 1, 12, 1), days_from_civil(file.year + 1, 2, 1));
        self.ensure_range(start, end);
        for (day, off, name) in parsed {
            self.kinds[(day - self.first_day) as usize] = if off { 1 } else { 2 };
            self.names.retain(|(d, _)| *d != day);
            self.names.push((day, name));
        }
        self.years.insert(file.year);
        Ok(file.year)
    }

    fn ensure_range(&mut self, start: i64, end: i64) {
        if self.kinds.is_empty() {
            self.first_day = start;
            self.kinds = vec![0; (end - start) as usize];
            return;
        }
        if start < self.first_day {
            let mut v = vec![0; (self.first_day - start) as usize];
            v.extend_from_slice(&self.kinds);
            self.kinds = v;
            self.first_day = start;
        }
        let last = self.first_day + self.kinds.len() as i64;
        if end > last {
            self.kinds.resize(self.kinds.len() + (end - last) as usize, 0);
        }
    }

    pub fn has_year(&self, year: i32) -> bool {
        self.years.contains(&year)
    }

    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.iter().copied()
    }

    /// Whether a local date is a working day, and whether that answer rests on published data.
    pub fn day_kind(&self, day: i64) -> (DayKind, bool) {
        let (y, _, _) = civil_from_days(day);
        let known = self.years.contains(&y);
        let idx = day - self.first_day;
        let exception = if idx >= 0 && (idx as usize) < self.kinds.len() { self.kinds[idx as usize] } else { 0 };
        let kind = match exception {
            1 => DayKind::Off,
            2 => DayKind::Working,
            _ if weekday(day) < 5 => DayKind::Working,
            _ => DayKind::Off,
        };
        (kind, known)
    }

    /// The holiday's name for a listed date (春节, 国庆节 …).
    pub fn name(&self, day: i64) -> Option<&str> {
        self.names.iter().find(|(d, _)| *d == day).map(|(_, n)| n.as_str())
    }
}

/// Which dates a calendar serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Days {
    /// Every date, weekends and holidays included.
    All,
    /// Chinese working days only (holidays excluded, make-up workdays included).
    WorkingDays,
}

/// Windows of the day for one part of the year; `from`/`to` are (month, day), inclusive, and may wrap
/// over New Year (Nov 1 → Apr 30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Season {
    pub from: (u32, u32),
    pub to: (u32, u32),
    /// Minutes after local midnight, `[start, end)`, sorted and not overlapping.
    pub windows: Vec<(u32, u32)>,
}

impl Season {
    fn contains(&self, month: u32, day: u32) -> bool {
        let md = (month, day);
        if self.from <= self.to { self.from <= md && md <= self.to } else { md >= self.from || md <= self.to }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    pub days: Days,
    /// Empty: the whole day on every served date.
    pub seasons: Vec<Season>,
}

/// Why a calendar definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("window {0:02}:{1:02}–{2:02}:{3:02} is empty or runs past midnight")]
    BadWindow(u32, u32, u32, u32),
    #[error("windows overlap or are out of order")]
    Overlap,
    #[error("a season has no windows")]
    NoWindows,
    #[error("invalid month/day {0}-{1}")]
    BadDate(u32, u32),
    #[error("dates {0:02}-{1:02} are covered by two seasons")]
    SeasonsOverlap(u32, u32),
}

/// What a business-time computation touched beyond the answer itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Span {
    /// Years whose holiday data was missing where it mattered: shown as "holiday data missing for YYYY".
    pub missing_years: BTreeSet<i32>,
}

impl Calendar {
    pub fn always() -> Calendar {
        Calendar { days: Days::All, seasons: Vec::new() }
    }

    /// Validates windows and seasons: non-empty, ordered, within the day, no date in two seasons.
    pub fn validate(&self) -> Result<(), CalendarError> {
        for s in &self.seasons {
            for (m, d) in [s.from, s.to] {
                if !(1..=12).contains(&m)
                    || d == 0
                    || d > [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(m - 1) as usize]
                {
                    return Err(CalendarError::BadDate(m, d));
                }
            }
            if s.windows.is_empty() {
                return Err(CalendarError::NoWindows);
            }
            let mut prev_end = 0;
            for (i, &(a, b)) in s.windows.iter().enumerate() {
                if a >= b || b > 1440 {
                    return Err(CalendarError::BadWindow(a / 60, a % 60, b / 60, b % 60));
                }
                if i > 0 && a < prev_end {
                    return Err(CalendarError::Overlap);
                }
                prev_end = b;
            }
        }
        // Every (month, day) of a leap year may belong to at most one season.
        for m in 1..=12u32 {
            for d in 1..=[31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(m - 1) as usize] {
                if self.seasons.iter().filter(|s| s.contains(m, d)).count() > 1 {
                    return Err(CalendarError::SeasonsOverlap(m, d));
                }
            }
        }
        Ok(())
    }

    /// The windows of one local date as UTC `[start, end)` pairs, and whether the date's holiday
    /// status was unknown (only matters for `Days::WorkingDays`).
    fn windows_of(&self, day: i64, holidays: &HolidayTable, out: &mut Vec<(i64, i64)>) -> Option<i32> {
        out.clear();
        let mut missing = None;
        if self.days == Days::WorkingDays {
            let (kind, known) = holidays.day_kind(day);
            if !known {
                missing = Some(civil_from_days(day).0);
            }
            if kind == DayKind::Off {
                return missing;
            }
        }
        let base = day_start_utc(day);
        if self.seasons.is_empty() {
            out.push((base, base + MS_PER_DAY));
            return missing;
        }
        let (_, m, d) = civil_from_days(day);
        if let Some(season) = self.seasons.iter().find(|s| s.contains(m, d)) {
            for &(a, b) in &season.windows {
                out.push((base + i64::from(a) * MS_PER_MIN, base + i64::from(b) * MS_PER_MIN));
            }
        }
        missing
    }

    /// Business time between two instants (`0` when `to <= from`).
    pub fn business_between(&self, from: i64, to: i64, holidays: &HolidayTable, span: &mut Span) -> i64 {
        if to <= from {
            return 0;
        }
        if self.days == Days::All && self.seasons.is_empty() {
            return to - from;
        }
        let mut total = 0;
        let mut buf = Vec::with_capacity(4);
        for day in local_day(from)..=local_day(to - 1) {
            if let Some(y) = self.windows_of(day, holidays, &mut buf) {
                span.missing_years.insert(y);
            }
            for &(a, b) in &buf {
                let (a, b) = (a.max(from), b.min(to));
                if b > a {
                    total += b - a;
                }
            }
        }
        total
    }

    /// The instant at which `amount` of business time has passed since `from`. `None` when the
    /// calendar has no open window within three years (an empty calendar).
    pub fn add_business(&self, from: i64, amount: i64, holidays: &HolidayTable, span: &mut Span) -> Option<i64> {
        if amount <= 0 {
            return Some(from);
        }
        if self.days == Days::All && self.seasons.is_empty() {
            return Some(from + amount);
        }
        let mut left = amount;
        let mut buf = Vec::with_capacity(4);
        let first = local_day(from);
        for day in first..first + MAX_SCAN_DAYS {
            if let Some(y) = self.windows_of(day, holidays, &mut buf) {
                span.missing_years.insert(y);
            }
            for &(a, b) in &buf {
                let a = a.max(from);
                if b <= a {
                    continue;
                }
                if b - a >= left {
                    return Some(a + left);
                }
                left -= b - a;
            }
        }
        None
    }

    /// Whether an instant lies inside a window (the clock is "ticking" then).
    pub fn is_open(&self, at: i64, holidays: &HolidayTable) -> bool {
        let mut span = Span::default();
        self.business_between(at, at + 1, holidays, &mut span) == 1
    }

    /// The next instant at or after `at` when the calendar opens or closes (for schedulers).
    pub fn next_boundary(&self, at: i64, holidays: &HolidayTable) -> Option<i64> {
        if self.days == Days::All && self.seasons.is_empty() {
            return None;
        }
        let mut buf = Vec::with_capacity(4);
        let first = local_day(at);
        for day in first..first + MAX_SCAN_DAYS {
            self.windows_of(day, holidays, &mut buf);
            for &(a, b) in &buf {
                if a > at {
                    return Some(a);
                }
                if b > at {
                    return Some(b);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(date: &str, hh: i64, mm: i64) -> i64 {
        day_start_utc(parse_date(date).unwrap()) + hh * 3_600_000 + mm * MS_PER_MIN
    }

    fn office() -> Calendar {
        Calendar {
            days: Days::WorkingDays,
            seasons: vec![Season { from: (1, 1), to: (12, 31), windows: vec![(510, 720), (840, 1050)] }],
        }
    }

    /// 004 §(4): May 1–Oct 31 07:30–22:30, Nov 1–Apr 30 07:30–21:30, every day.
    fn seasonal_004() -> Calendar {
        Calendar {
            days: Days::All,
            seasons: vec![
                Season { from: (5, 1), to: (10, 31), windows: vec![(450, 1350)] },
                Season { from: (11, 1), to: (4, 30), windows: vec![(450, 1290)] },
            ],
        }
    }

    #[test]
    fn civil_dates_round_trip() {
        for z in -800_000..800_000i64 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(weekday(parse_date("2026-11-23").unwrap()), 0, "2026-11-23 is a Monday");
        assert_eq!(parse_date("2026-02-29"), None);
    }

    #[test]
    fn holiday_table_knows_make_up_days() {
        let h = HolidayTable::embedded();
        let d = |s| parse_date(s).unwrap();
        assert_eq!(h.day_kind(d("2026-02-14")), (DayKind::Working, true), "make-up Saturday");
        assert_eq!(h.day_kind(d("2026-01-02")), (DayKind::Off, true), "a Friday off");
        assert_eq!(h.day_kind(d("2026-02-16")), (DayKind::Off, true));
        assert_eq!(h.name(d("2026-02-16")), Some("春节"));
        assert_eq!(h.day_kind(d("2026-11-23")), (DayKind::Working, true));
        assert_eq!(h.day_kind(d("2028-03-01")), (DayKind::Working, false), "no data for 2028");
        assert!((2019..=2027).all(|y| h.has_year(y)));
    }

    #[test]
    fn importing_a_year_replaces_it() {
        let mut h = HolidayTable::embedded();
        let y = h
            .add_year_json(r#"{"year": 2028, "days": [{"name": "元旦", "date": "2028-01-03", "isOffDay": true}]}"#)
            .unwrap();
        assert_eq!(y, 2028);
        assert_eq!(h.day_kind(parse_date("2028-01-03").unwrap()), (DayKind::Off, true));
        assert!(h.add_year_json("{}").is_err());
        assert!(
            h.add_year_json(r#"{"year": 2028, "days": [{"name": "x", "date": "2031-01-03", "isOffDay": true}]}"#)
                .is_err()
        );
    }

    #[test]
    fn office_hours_skip_spring_festival_and_count_the_make_up_saturday() {
        let h = HolidayTable::embedded();
        let cal = office();
        let mut span = Span::default();
        // Friday 2026-02-13 16:00, 2 hours of office time: 1.5 h left on Friday, then the make-up
        // Saturday 2026-02-14 opens at 08:30 → due 09:00 on Saturday.
        let due = cal.add_business(at("2026-02-13", 16, 0), 2 * 3_600_000, &h, &mut span).unwrap();
        assert_eq!(due, at("2026-02-14", 9, 0));
        // From Saturday 17:00, 1 hour: 30 min until 17:30, the holiday runs 15–23 Feb, the other
        // 30 min from Tuesday 24 Feb 08:30 → 09:00.
        let due = cal.add_business(at("2026-02-14", 17, 0), 3_600_000, &h, &mut span).unwrap();
        assert_eq!(due, at("2026-02-24", 9, 0));
        assert!(span.missing_years.is_empty());
    }

    #[test]
    fn seasonal_004_hours() {
        let h = HolidayTable::embedded();
        let cal = seasonal_004();
        cal.validate().unwrap();
        let mut span = Span::default();
        // Winter: closes 21:30. 21:00 + 1 h → 30 min tonight, 30 min from 07:30 → 08:00.
        assert_eq!(cal.add_business(at("2026-11-20", 21, 0), 3_600_000, &h, &mut span), Some(at("2026-11-21", 8, 0)));
        // Summer: closes 22:30.
        assert_eq!(cal.add_business(at("2026-07-03", 21, 0), 3_600_000, &h, &mut span), Some(at("2026-07-03", 22, 0)));
    }

    #[test]
    fn missing_holiday_data_is_flagged() {
        let h = HolidayTable::embedded();
        let mut span = Span::default();
        office().add_business(at("2027-12-31", 16, 0), 8 * 3_600_000, &h, &mut span).unwrap();
        assert_eq!(span.missing_years.iter().copied().collect::<Vec<_>>(), vec![2028]);
    }

    #[test]
    fn invalid_calendars_are_refused() {
        let bad_window = Calendar {
            days: Days::All,
            seasons: vec![Season { from: (1, 1), to: (12, 31), windows: vec![(600, 540)] }],
        };
        assert!(matches!(bad_window.validate(), Err(CalendarError::BadWindow(..))));
        let overlap = Calendar {
            days: Days::All,
            seasons: vec![Season { from: (1, 1), to: (12, 31), windows: vec![(0, 600), (500, 700)] }],
        };
        assert_eq!(overlap.validate(), Err(CalendarError::Overlap));
        let seasons = Calendar {
            days: Days::All,
            seasons: vec![
                Season { from: (1, 1), to: (6, 30), windows: vec![(0, 60)] },
                Season { from: (6, 1), to: (12, 31), windows: vec![(0, 60)] },
            ],
        };
        assert_eq!(seasons.validate(), Err(CalendarError::SeasonsOverlap(6, 1)));
        let empty = Calendar { days: Days::All, seasons: vec![Season { from: (1, 1), to: (12, 31), windows: vec![] }] };
        assert_eq!(empty.validate(), Err(CalendarError::NoWindows));
        // A calendar that never opens yields no due time instead of looping.
        let never =
            Calendar { days: Days::All, seasons: vec![Season { from: (2, 30), to: (2, 30), windows: vec![(0, 60)] }] };
        assert_eq!(never.add_business(0, 1, &HolidayTable::embedded(), &mut Span::default()), None);
    }

    fn any_calendar() -> impl Strategy<Value = Calendar> {
        prop_oneof![Just(Calendar::always()), Just(office()), Just(seasonal_004())]
    }

    proptest! {
        #[test]
        fn business_time_is_additive_and_bounded(cal in any_calendar(), a in 1_700_000_000_000i64..1_800_000_000_000, d1 in 0i64..20 * MS_PER_DAY, d2 in 0i64..20 * MS_PER_DAY) {
            let h = HolidayTable::embedded();
            let mut s = Span::default();
            let (b, c) = (a + d1, a + d1 + d2);
            let ab = cal.business_between(a, b, &h, &mut s);
            let bc = cal.business_between(b, c, &h, &mut s);
            prop_assert_eq!(ab + bc, cal.business_between(a, c, &h, &mut s));
            prop_assert!(ab <= b - a, "business time never exceeds wall-clock time");
        }

        #[test]
        fn add_business_inverts_business_between(cal in any_calendar(), a in 1_700_000_000_000i64..1_800_000_000_000, amount in 1i64..10 * MS_PER_DAY) {
            let h = HolidayTable::embedded();
            let mut s = Span::default();
            let due = cal.add_business(a, amount, &h, &mut s).unwrap();
            prop_assert!(due >= a);
            prop_assert_eq!(cal.business_between(a, due, &h, &mut s), amount);
            // Monotone: more time is never due earlier.
            let later = cal.add_business(a, amount + 1, &h, &mut s).unwrap();
            prop_assert!(later > due);
        }
    }
}
