//! HTTP-date (RFC 9110 §5.6.7) for `Date`, `Expires`, `Last-Modified`,
//! `If-Modified-Since` and `If-Range`.
//!
//! Recipients must accept all three forms: IMF-fixdate
//! (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form
//! (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
//! The grammar is followed to the byte (one space where it has one, two-digit
//! hours, `GMT`), so `Thu, 18 Aug 2050 02:01:18 UTC`, a missing comma or a
//! one-digit hour are invalid, which for `Expires` means "already expired"
//! (RFC 9111 §5.3). Day, month and zone names are matched without regard to
//! case and the weekday is not checked against the date: §5.6.7 asks
//! recipients to be robust, and neither changes which instant is meant.
//!
//! An RFC 850 two-digit year that would be more than 50 years in the future
//! is the most recent past year with those digits (RFC 9110 §5.6.7); that
//! form is the only one that reads the clock, so the other two (nearly
//! every date seen) cost no clock read.
//!
//! [`format()`] writes the preferred form, IMF-fixdate, for the `Date` a
//! cache adds to a response that arrived without one (RFC 9110 §6.6.1).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

const DAYS: [&[u8; 3]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];
const LONG_DAYS: [&[u8]; 7] = [b"monday", b"tuesday", b"wednesday", b"thursday", b"friday", b"saturday", b"sunday"];
const MONTHS: [&[u8; 3]; 12] =
    [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"];

/// Parses an HTTP-date, using the current year for RFC 850's two-digit
/// years (the clock is read for that form only).
pub fn parse(value: &[u8]) -> Option<SystemTime> {
    parse_with(value, SystemTime::now)
}

/// A date-valued field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateField {
    /// Not there.
    Absent,
    /// There, but not an HTTP-date.
    Invalid,
    /// An HTTP-date.
    Valid(SystemTime),
}

impl DateField {
    /// The date, if valid.
    pub fn valid(self) -> Option<SystemTime> {
        match self {
            DateField::Valid(t) => Some(t),
            _ => None,
        }
    }
}

/// The first field line of `name` parsed as an HTTP-date: when a field that
/// takes one value appears more than once, the first occurrence is used
/// (RFC 9111 §4.2.1).
pub fn first(headers: &HeaderMap, name: &HeaderName) -> DateField {
    match headers.get(name) {
        None => DateField::Absent,
        Some(v) => parse(v.as_bytes()).map_or(DateField::Invalid, DateField::Valid),
    }
}

/// Parses an HTTP-date; `now` decides the century of RFC 850 years.
pub fn parse_at(value: &[u8], now: SystemTime) -> Option<SystemTime> {
    parse_with(value, || now)
}

/// Parses an HTTP-date; `now` is called only for an RFC 850 date, whose
/// two-digit year needs the current one.
fn parse_with(value: &[u8], now: impl FnOnce() -> SystemTime) -> Option<SystemTime> {
    let s = value.trim_ascii();
    let (year, month, day, time) = match s.len() {
        29 => imf_fixdate(s)?,
        24 => asctime(s)?,
        _ => rfc850(s, now)?,
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + time;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// `day-name "," SP 2DIGIT SP month SP 4DIGIT SP hh:mm:ss SP "GMT"`.
fn imf_fixdate(s: &[u8]) -> Option<(i64, u32, u32, i64)> {
    day_name(&s[0..3])?;
    if &s[3..5] != b", " || s[7] != b' ' || s[11] != b' ' || s[16] != b' ' || s[25] != b' ' {
        return None;
    }
    let day = digits(&s[5..7])? as u32;
    let month = month(&s[8..11])?;
    let year = digits(&s[12..16])?;
    let time = time_of_day(&s[17..25])?;
    gmt(&s[26..29])?;
    Some((year, month, day, time))
}

/// `day-name-l "," SP 2DIGIT "-" month "-" 2DIGIT SP hh:mm:ss SP "GMT"`.
fn rfc850(s: &[u8], now: impl FnOnce() -> SystemTime) -> Option<(i64, u32, u32, i64)> {
    let comma = s.iter().position(|&b| b == b',')?;
    let name = s[..comma].to_ascii_lowercase();
    if !LONG_DAYS.contains(&name.as_slice()) {
        return None;
    }
    let s = s.get(comma + 1..)?;
    // SP 2DIGIT "-" month "-" 2DIGIT SP time SP GMT = 1 + 9 + 1 + 8 + 1 + 3
    if s.len() != 23 || s[0] != b' ' || s[3] != b'-' || s[7] != b'-' || s[10] != b' ' || s[19] != b' ' {
        return None;
    }
    let day = digits(&s[1..3])? as u32;
    let month = month(&s[4..7])?;
    let yy = digits(&s[8..10])?;
    let time = time_of_day(&s[11..19])?;
    gmt(&s[20..23])?;
    Some((two_digit_year(yy, now()), month, day, time))
}

/// `day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP hh:mm:ss SP 4DIGIT`.
fn asctime(s: &[u8]) -> Option<(i64, u32, u32, i64)> {
    day_name(&s[0..3])?;
    if s[3] != b' ' || s[7] != b' ' || s[10] != b' ' || s[19] != b' ' {
        return None;
    }
    let month = month(&s[4..7])?;
    let day = if s[8] == b' ' { digits(&s[9..10])? } else { digits(&s[8..10])? } as u32;
    let time = time_of_day(&s[11..19])?;
    let year = digits(&s[20..24])?;
    Some((year, month, day, time))
}

fn day_name(s: &[u8]) -> Option<()> {
    let lower = [s[0].to_ascii_lowercase(), s[1].to_ascii_lowercase(), s[2].to_ascii_lowercase()];
    DAYS.iter().any(|d| **d == lower).then_some(())
}

fn month(s: &[u8]) -> Option<u32> {
    let lower = [s[0].to_ascii_lowercase(), s[1].to_ascii_lowercase(), s[2].to_ascii_lowercase()];
    MONTHS.iter().position(|m| **m == lower).map(|i| i as u32 + 1)
}

fn gmt(s: &[u8]) -> Option<()> {
    s.eq_ignore_ascii_case(b"GMT").then_some(())
}

/// Only ASCII digits, as many as the slice holds.
fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |n, &b| n * 10 + i64::from(b - b'0')))
}

/// `hh:mm:ss` as seconds into the day; a leap second (`:60`) is allowed by
/// the grammar's source (RFC 5322) and counted as the next second.
fn time_of_day(s: &[u8]) -> Option<i64> {
    if s[2] != b':' || s[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&s[0..2])?, digits(&s[3..5])?, digits(&s[6..8])?);
    (h <= 23 && m <= 59 && sec <= 60).then_some(h * 3600 + m * 60 + sec)
}

fn two_digit_year(yy: i64, now: SystemTime) -> i64 {
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let this_year = civil_year(now_secs.div_euclid(86_400));
    let mut year = this_year - this_year.rem_euclid(100) + yy;
    if year > this_year + 50 {
        year -= 100;
    } else if year <= this_year - 50 {
        year += 100;
    }
    year
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the era-based
/// method: 400-year eras of 146,097 days).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a day count since 1970-01-01 (inverse of
/// `days_from_civil`), proleptic Gregorian; the edge's access log writes
/// its `date` field with it.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The year of a day count since 1970-01-01.
fn civil_year(days: i64) -> i64 {
    civil_from_days(days).0
}

/// `t` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110
/// §5.6.7), whole seconds; an instant before 1970 is written as the epoch
/// (no clock of this process reads such a time).
pub fn format(t: SystemTime) -> HeaderValue {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTH_NAMES: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    let time = secs % 86_400;
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = NAMES[((days + 3) % 7) as usize];
    let text = format!(
        "{weekday}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        MONTH_NAMES[(month - 1) as usize],
        time / 3600,
        time / 60 % 60,
        time % 60
    );
    // Built from ASCII letters, digits, spaces, ':' and ',': always a valid value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// 2026-06-01, for RFC 850 years.
    const NOW: u64 = 1_780_272_000;

    fn p(s: &str) -> Option<SystemTime> {
        parse_at(s.as_bytes(), at(NOW))
    }

    #[test]
    fn the_three_forms_name_the_same_instant() {
        let want = Some(at(784_111_777));
        assert_eq!(p("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(p("Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(p("Sun Nov  6 08:49:37 1994"), want);
        assert_eq!(p("  Sun, 06 Nov 1994 08:49:37 GMT "), want, "surrounding whitespace is not the value");
        assert_eq!(p("Thu, 01 Jan 1970 00:00:00 GMT"), Some(UNIX_EPOCH));
        assert_eq!(p("Wed, 31 Dec 1969 23:59:59 GMT"), UNIX_EPOCH.checked_sub(Duration::from_secs(1)));
        assert_eq!(p("Tue, 29 Feb 2000 00:00:00 GMT"), Some(at(951_782_400)), "2000 is a leap year");
    }

    #[test]
    fn names_are_case_insensitive_and_the_weekday_is_not_checked() {
        let want = p("Thu, 18 Aug 2050 02:01:18 GMT");
        assert!(want.is_some());
        for s in ["THU, 18 Aug 2050 02:01:18 GMT", "Thu, 18 AUG 2050 02:01:18 GMT", "Thu, 18 Aug 2050 02:01:18 gMT"] {
            assert_eq!(p(s), want, "{s}");
        }
        assert_eq!(p("Mon, 18 Aug 2050 02:01:18 GMT"), want, "a wrong weekday does not change the date");
    }

    #[test]
    fn malformed_dates_are_refused() {
        for s in [
            "0",
            "",
            "-1",
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Thu, 31 Feb 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 24:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 GMT, Fri, 19 Aug 2050 02:01:18 GMT",
            "Thx, 18 Aug 2050 02:01:18 GMT",
            "Thursday, 18-Aug-2050 02:01:18 GMT",
            "Thurs, 18-Aug-50 02:01:18 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Tue, 29 Feb 2100 00:00:00 GMT",
        ] {
            assert_eq!(p(s), None, "{s:?} must be invalid");
        }
    }

    #[test]
    fn rfc850_years_are_within_fifty_years_of_now() {
        let year = |s: &str| {
            p(s).map(|t| civil_year((t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() / 86_400) as i64))
        };
        assert_eq!(year("Sunday, 06-Nov-94 08:49:37 GMT"), Some(1994));
        assert_eq!(year("Monday, 06-Nov-28 08:49:37 GMT"), Some(2028));
        assert_eq!(year("Monday, 06-Nov-76 08:49:37 GMT"), Some(2076), "50 years ahead is still the future");
        assert_eq!(year("Monday, 06-Nov-77 08:49:37 GMT"), Some(1977), "more than 50 years ahead: the past");
    }

    #[test]
    fn only_rfc_850_dates_read_the_clock() {
        let reads = std::cell::Cell::new(0);
        let clock = || {
            reads.set(reads.get() + 1);
            at(NOW)
        };
        assert!(parse_with(b"Sun, 06 Nov 1994 08:49:37 GMT", clock).is_some());
        assert!(parse_with(b"Sun Nov  6 08:49:37 1994", clock).is_some());
        assert!(parse_with(b"garbage", clock).is_none());
        assert!(parse_with(b"Sun, 06 Nov 1994 08:49:37 UTC", clock).is_none());
        assert_eq!(reads.get(), 0, "IMF-fixdate, asctime and garbage need no clock");
        assert!(parse_with(b"Sunday, 06-Nov-94 08:49:37 GMT", clock).is_some());
        assert_eq!(reads.get(), 1, "a two-digit year does");
    }

    #[test]
    fn format_writes_imf_fixdate() {
        assert_eq!(format(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(format(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(format(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(format(at(NOW)), "Mon, 01 Jun 2026 00:00:00 GMT");
        assert_eq!(format(at(1_700_000_000) + Duration::from_millis(999)), "Tue, 14 Nov 2023 22:13:20 GMT");
        // Every day of a long span reads back as the same second.
        for secs in (0..4_000_000_000u64).step_by(86_399 * 37) {
            let v = format(at(secs));
            assert_eq!(parse_at(v.as_bytes(), at(NOW)), Some(at(secs)), "{v:?}");
        }
    }

    #[test]
    fn civil_conversions_agree() {
        for days in [-800_000i64, -1, 0, 1, 10_957, 19_000, 2_932_896] {
            let y = civil_year(days);
            let start = days_from_civil(y, 1, 1);
            let next = days_from_civil(y + 1, 1, 1);
            assert!(start <= days && days < next, "day {days} in year {y}");
        }
    }
}
