//! Viewer-side HTTP semantics served from a stored object: `Range`
//! (RFC 9110 §14) and conditional requests (`If-None-Match`,
//! `If-Modified-Since`, `If-Range`; RFC 9110 §13). Pure functions.
//!
//! Entity tags are parsed as the grammar has them (`W/"..."`, commas allowed
//! inside the quotes), so a list is split only between tags; a member that
//! is not a well-formed tag never matches anything.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{DATE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE};

use crate::date;

/// What a `Range` header asks of a body of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range: send the whole body with 200. Covers no header,
    /// other units, multiple ranges (shardgate does not build multipart
    /// bodies; RFC 9110 §14.2 lets a server ignore Range), an invalid
    /// header and a failed `If-Range`.
    Full,
    /// Send bytes `start..=end` with 206.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parses the request's `Range` for a body of `len` bytes.
///
/// The unit is case-insensitive (RFC 9110 §14.1); empty list members are
/// skipped (§5.6.1); several `Range` lines or any invalid range-spec make the
/// header invalid, which is ignored (§14.2).
pub fn range(headers: &HeaderMap, len: u64) -> RangeAnswer {
    let mut lines = headers.get_all(RANGE).iter();
    let (Some(value), None) = (lines.next(), lines.next()) else { return RangeAnswer::Full };
    let Ok(value) = value.to_str() else { return RangeAnswer::Full };
    let Some((unit, set)) = value.trim().split_once('=') else { return RangeAnswer::Full };
    if !unit.eq_ignore_ascii_case("bytes") {
        return RangeAnswer::Full;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let Some(first) = specs.next() else { return RangeAnswer::Full };
    let Some(answer) = range_spec(first, len) else { return RangeAnswer::Full };
    // More than one range: the whole body.
    if specs.next().is_some() {
        return RangeAnswer::Full;
    }
    answer
}

/// One `int-range` or `suffix-range`; `None` when it is not valid syntax.
fn range_spec(spec: &str, len: u64) -> Option<RangeAnswer> {
    let (a, b) = spec.split_once('-')?;
    let parse = |s: &str| {
        if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
            Some(s.parse::<u64>().unwrap_or(u64::MAX))
        } else {
            None
        }
    };
    Some(match (a.is_empty(), b.is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => match parse(b)? {
            0 => RangeAnswer::Unsatisfiable,
            _ if len == 0 => RangeAnswer::Unsatisfiable,
            n => RangeAnswer::Partial { start: len.saturating_sub(n), end: len - 1 },
        },
        // `N-`: from N to the end.
        (false, true) => match parse(a)? {
            start if start < len => RangeAnswer::Partial { start, end: len - 1 },
            _ => RangeAnswer::Unsatisfiable,
        },
        (false, false) => {
            let (start, end) = (parse(a)?, parse(b)?);
            // RFC 9110 §14.1.1: last < first makes the header invalid.
            if end < start {
                return None;
            }
            if start >= len {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial { start, end: end.min(len - 1) }
            }
        }
        (true, true) => return None,
    })
}

/// An entity tag (RFC 9110 §8.8.3): its weakness and its opaque tag with the quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

impl<'a> EntityTag<'a> {
    /// Parses a whole field value as one tag.
    fn parse(value: &'a [u8]) -> Option<Self> {
        let (tag, rest) = Self::prefix(value.trim_ascii())?;
        rest.is_empty().then_some(tag)
    }

    /// A tag at the start of `s`, and what follows it.
    fn prefix(s: &'a [u8]) -> Option<(Self, &'a [u8])> {
        // `W/` is case-sensitive in the grammar; a lower-case `w/` is read
        // as weak too (being weak only ever makes a match less likely).
        let (weak, s) = match s.strip_prefix(b"W/").or_else(|| s.strip_prefix(b"w/")) {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if s.first() != Some(&b'"') {
            return None;
        }
        // etagc = %x21 / %x23-7E / obs-text: anything visible but DQUOTE.
        let close = 1 + s[1..].iter().position(|&b| b == b'"')?;
        if !s[1..close].iter().all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80) {
            return None;
        }
        Some((EntityTag { weak, opaque: &s[..=close] }, &s[close + 1..]))
    }

    /// Weak comparison (RFC 9110 §8.8.3.2): the opaque tags match.
    fn weak_eq(&self, other: &EntityTag<'_>) -> bool {
        self.opaque == other.opaque
    }

    /// Strong comparison: neither is weak and the opaque tags match.
    fn strong_eq(&self, other: &EntityTag<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }
}

/// One member of an `If-None-Match` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member<'a> {
    /// `*`.
    Any,
    /// An entity tag.
    Tag(EntityTag<'a>),
    /// Something that is not a tag (`abc`, `W"abc"`), trimmed.
    Other(&'a [u8]),
}

/// The members of an `If-None-Match` list, split between tags (so a comma
/// inside quotes stays in its tag); empty members are skipped.
fn tag_list(value: &[u8]) -> impl Iterator<Item = Member<'_>> {
    let mut rest = value;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_ascii_start();
            let &first = rest.first()?;
            if first == b',' {
                rest = &rest[1..];
                continue;
            }
            let until_comma = |r: &[u8]| r.iter().position(|&b| b == b',').unwrap_or(r.len());
            if let Some((tag, after)) = EntityTag::prefix(rest) {
                let after_trimmed = after.trim_ascii_start();
                if after_trimmed.is_empty() || after_trimmed[0] == b',' {
                    rest = after_trimmed;
                    return Some(Member::Tag(tag));
                }
            }
            let end = until_comma(rest);
            let member = rest[..end].trim_ascii();
            rest = &rest[end..];
            return Some(if member == b"*" { Member::Any } else { Member::Other(member) });
        }
    })
}

/// The dates of a stored response that conditionals compare against,
/// parsed once when the response is stored rather than on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredDates {
    /// Its `Last-Modified`, if that is a valid HTTP-date.
    pub last_modified: Option<SystemTime>,
    /// Its `Date`, or when it was received if it has no valid one.
    pub date: SystemTime,
}

impl StoredDates {
    /// Reads `Last-Modified` and `Date` of a response received at `received`.
    pub fn of(stored: &HeaderMap, received: SystemTime) -> Self {
        StoredDates {
            last_modified: date::first(stored, &LAST_MODIFIED).valid(),
            date: date::first(stored, &DATE).valid().unwrap_or(received),
        }
    }

    /// The time of last modification for conditionals: `Last-Modified`,
    /// else `Date`, else when it was received (RFC 9111 §4.3.2).
    fn modified(&self) -> SystemTime {
        self.last_modified.unwrap_or(self.date)
    }
}

/// Whether `If-Range` (if present) still matches the stored object, so a
/// range may be served (RFC 9110 §13.1.5): an entity tag must match
/// strongly; a date must equal the stored `Last-Modified`, which must itself
/// be strong (at least a second before the stored `Date`, §8.8.2.2).
/// `stored` gives the entity tag, `dates` the stored dates.
pub fn if_range_holds(req: &HeaderMap, stored: &HeaderMap, dates: &StoredDates) -> bool {
    let mut lines = req.get_all(IF_RANGE).iter();
    let Some(cond) = lines.next() else { return true };
    if lines.next().is_some() {
        return false;
    }
    let cond = cond.as_bytes().trim_ascii();
    if cond.starts_with(b"\"") || cond.starts_with(b"W/") {
        let (Some(want), Some(have)) =
            (EntityTag::parse(cond), stored.get(ETAG).and_then(|e| EntityTag::parse(e.as_bytes())))
        else {
            return false;
        };
        return want.strong_eq(&have);
    }
    let Some(modified) = dates.last_modified else { return false };
    let Some(since) = date::parse(cond) else { return false };
    since == modified && modified + Duration::from_secs(1) <= dates.date
}

/// Whether the viewer's validators match the stored object, so 304 Not
/// Modified may be sent instead of the body (RFC 9110 §13.1.1–§13.1.3,
/// RFC 9111 §4.3.2). `If-None-Match` uses the weak comparison and, when
/// present, decides alone; `If-Modified-Since` is ignored unless it is one
/// valid HTTP-date, and compared with `dates` (see [`StoredDates::of`]).
pub fn not_modified(req: &HeaderMap, stored: &HeaderMap, dates: &StoredDates) -> bool {
    if req.contains_key(IF_NONE_MATCH) {
        let stored_raw = stored.get(ETAG).map(|e| e.as_bytes().trim_ascii());
        let stored_tag = stored_raw.and_then(EntityTag::parse);
        return req.get_all(IF_NONE_MATCH).iter().flat_map(|v| tag_list(v.as_bytes())).any(|member| match member {
            Member::Any => true,
            Member::Tag(tag) => stored_tag.is_some_and(|e| e.weak_eq(&tag)),
            // Not a tag on either side: only the very text we sent matches.
            Member::Other(raw) => stored_tag.is_none() && stored_raw == Some(raw),
        });
    }
    let mut lines = req.get_all(IF_MODIFIED_SINCE).iter();
    let (Some(since), None) = (lines.next(), lines.next()) else { return false };
    let Some(since) = date::parse(since.as_bytes()) else { return false };
    dates.modified() <= since
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::UNIX_EPOCH;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    /// The function under test, with the stored dates read as the cache
    /// reads them when it stores a response.
    fn not_modified(req: &HeaderMap, stored: &HeaderMap, received: SystemTime) -> bool {
        super::not_modified(req, stored, &StoredDates::of(stored, received))
    }

    /// The function under test, as [`not_modified`].
    fn if_range_holds(req: &HeaderMap, stored: &HeaderMap, received: SystemTime) -> bool {
        super::if_range_holds(req, stored, &StoredDates::of(stored, received))
    }

    #[test]
    fn stored_dates_are_read_once() {
        let received = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let dated = h(&[("date", "Tue, 14 Nov 2023 22:13:20 GMT"), ("last-modified", "Mon, 13 Nov 2023 00:00:00 GMT")]);
        let d = StoredDates::of(&dated, later());
        assert_eq!(d.date, received);
        assert_eq!(d.last_modified, Some(UNIX_EPOCH + Duration::from_secs(1_699_833_600)));
        // An invalid or missing Date is the receipt time; an invalid Last-Modified is none.
        let bad = h(&[("date", "yesterday"), ("last-modified", "0")]);
        assert_eq!(StoredDates::of(&bad, received), StoredDates { last_modified: None, date: received });
        // What a request compares against is what was read when storing.
        let req = h(&[("if-modified-since", "Tue, 14 Nov 2023 00:00:00 GMT")]);
        assert!(super::not_modified(&req, &HeaderMap::new(), &d), "Last-Modified decides, not the headers passed");
    }

    /// Long after every date in these tests.
    fn later() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn ranges() {
        let r = |v: &'static str, len| range(&h(&[("range", v)]), len);
        assert_eq!(r("bytes=0-99", 1000), RangeAnswer::Partial { start: 0, end: 99 });
        assert_eq!(r("bytes=900-", 1000), RangeAnswer::Partial { start: 900, end: 999 });
        assert_eq!(r("bytes=-100", 1000), RangeAnswer::Partial { start: 900, end: 999 });
        assert_eq!(r("bytes=-5000", 1000), RangeAnswer::Partial { start: 0, end: 999 });
        assert_eq!(r("bytes=500-5000", 1000), RangeAnswer::Partial { start: 500, end: 999 });
        assert_eq!(r("bytes=1000-", 1000), RangeAnswer::Unsatisfiable);
        assert_eq!(r("bytes=-0", 1000), RangeAnswer::Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6", 1000), RangeAnswer::Full, "multi-range: whole body");
        assert_eq!(r("bytes=9-1", 1000), RangeAnswer::Full);
        assert_eq!(r("items=0-1", 1000), RangeAnswer::Full);
        assert_eq!(r("bytes=+1-2", 1000), RangeAnswer::Full);
        assert_eq!(range(&h(&[]), 10), RangeAnswer::Full);
        // The unit is case-insensitive; empty list members do not count.
        assert_eq!(r("Bytes=0-1", 1000), RangeAnswer::Partial { start: 0, end: 1 });
        assert_eq!(r("BYTES=0-1, ", 1000), RangeAnswer::Partial { start: 0, end: 1 });
        assert_eq!(r("bytes=, 0-1", 1000), RangeAnswer::Partial { start: 0, end: 1 });
        assert_eq!(r("bytes=", 1000), RangeAnswer::Full);
        assert_eq!(r("bytes=0-1x", 1000), RangeAnswer::Full);
        assert_eq!(r("bytes=0-99999999999999999999999", 10), RangeAnswer::Partial { start: 0, end: 9 });
        assert_eq!(range(&h(&[("range", "bytes=0-1"), ("range", "bytes=2-3")]), 10), RangeAnswer::Full, "two lines");
        // partial-store-complete-reuse-partial(-no-last, -suffix).
        assert_eq!(r("bytes=0-1", 11), RangeAnswer::Partial { start: 0, end: 1 });
        assert_eq!(r("bytes=1-", 11), RangeAnswer::Partial { start: 1, end: 10 });
        assert_eq!(r("bytes=-1", 11), RangeAnswer::Partial { start: 10, end: 10 });
    }

    #[test]
    fn if_none_match() {
        let stored = h(&[("etag", "\"v1\""), ("last-modified", "Tue, 14 Nov 2023 22:13:20 GMT")]);
        let inm = |v: &'static str| not_modified(&h(&[("if-none-match", v)]), &stored, later());
        assert!(inm("\"v1\""));
        assert!(inm("\"x\", W/\"v1\""), "weak comparison");
        assert!(inm("*"));
        assert!(!inm("\"v2\""));
        // conditional-etag-strong-respond-multiple-first / -second / -last.
        assert!(inm("\"v1\", \"1234\", \"5678\""));
        assert!(inm("\"1234\", \"v1\", \"5678\""));
        assert!(inm("\"1234\", \"5678\", \"v1\""));
        assert!(inm(" , \"v1\""), "empty members are skipped");
        assert!(!inm("v1"), "an unquoted member is not a tag");
        assert!(!inm("\"v1"), "an unterminated tag matches nothing");
        assert!(!inm("\"v1\"x"), "a tag with trailing junk is not a tag");
        assert!(inm("junk, \"v1\""), "a bad member does not hide the others");
        assert!(
            not_modified(&h(&[("if-none-match", "\"x\""), ("if-none-match", "\"v1\"")]), &stored, later()),
            "lists across lines"
        );
        // A comma inside a tag is part of it (etagc includes %x2C).
        let comma = h(&[("etag", "\"a,b\"")]);
        assert!(not_modified(&h(&[("if-none-match", "\"a,b\"")]), &comma, later()));
        assert!(!not_modified(&h(&[("if-none-match", "\"a\"")]), &comma, later()));
        assert!(!not_modified(&h(&[("if-none-match", "b\"")]), &comma, later()));
        // conditional-etag-weak-respond.
        let weak = h(&[("etag", "W/\"abcdef\"")]);
        assert!(not_modified(&h(&[("if-none-match", "W/\"abcdef\"")]), &weak, later()));
        assert!(not_modified(&h(&[("if-none-match", "\"abcdef\"")]), &weak, later()));
        // A stored tag that is not valid matches `*` and its own text only
        // (conditional-etag-unquoted-respond-unquoted, -weak-respond-omit-slash,
        // -weak-respond-backslash); a valid tag never matches such text.
        let bad = h(&[("etag", "abcdef")]);
        assert!(not_modified(&h(&[("if-none-match", "abcdef")]), &bad, later()));
        assert!(not_modified(&h(&[("if-none-match", "x, abcdef")]), &bad, later()));
        assert!(!not_modified(&h(&[("if-none-match", "\"abcdef\"")]), &bad, later()));
        assert!(!not_modified(&h(&[("if-none-match", "abcdefg")]), &bad, later()));
        assert!(not_modified(&h(&[("if-none-match", "*")]), &bad, later()));
        let no_slash = h(&[("etag", "W\"abcdef\"")]);
        assert!(not_modified(&h(&[("if-none-match", "W\"abcdef\"")]), &no_slash, later()));
        let quoted = h(&[("etag", "\"abcdef\"")]);
        assert!(!not_modified(&h(&[("if-none-match", "abcdef")]), &quoted, later()));
        // conditional-etag-weak-respond-lowercase.
        let lower = h(&[("etag", "w/\"abcdef\"")]);
        assert!(not_modified(&h(&[("if-none-match", "w/\"abcdef\"")]), &lower, later()));
        assert!(!if_range_holds(&h(&[("if-range", "\"abcdef\"")]), &lower, later()), "still weak for If-Range");
        // conditional-etag-strong-respond-obs-text.
        let mut obs = HeaderMap::new();
        obs.insert(ETAG, HeaderValue::from_bytes(b"\"abc\xc3\xbc\"").expect("obs-text"));
        let mut req = HeaderMap::new();
        req.insert(IF_NONE_MATCH, HeaderValue::from_bytes(b"\"abc\xc3\xbc\"").expect("obs-text"));
        assert!(not_modified(&req, &obs, later()));
        // conditional-etag-precedence: If-None-Match decides alone.
        assert!(
            !not_modified(
                &h(&[("if-none-match", "\"v2\""), ("if-modified-since", "Wed, 15 Nov 2023 00:00:00 GMT")]),
                &stored,
                later()
            ),
            "If-None-Match decides alone"
        );
    }

    #[test]
    fn if_modified_since() {
        let stored = h(&[("etag", "\"v1\""), ("last-modified", "Tue, 14 Nov 2023 22:13:20 GMT")]);
        let ims = |v: &'static str| not_modified(&h(&[("if-modified-since", v)]), &stored, later());
        assert!(ims("Wed, 15 Nov 2023 00:00:00 GMT"));
        assert!(ims("Tue, 14 Nov 2023 22:13:20 GMT"), "conditional-lm-fresh");
        assert!(!ims("Mon, 13 Nov 2023 00:00:00 GMT"));
        assert!(ims("Tuesday, 14-Nov-23 22:13:20 GMT"), "conditional-lm-fresh-rfc850");
        assert!(ims("Tue Nov 14 22:13:20 2023"), "asctime");
        assert!(!ims("yesterday"), "an invalid date is ignored");
        assert!(
            !not_modified(
                &h(&[("if-modified-since", "Wed, 15 Nov 2023 00:00:00 GMT"), ("if-modified-since", "x")]),
                &stored,
                later()
            ),
            "more than one member: ignored"
        );
        // conditional-lm-fresh-no-lm: no Last-Modified, so Date, then the receipt time.
        let dated = h(&[("date", "Tue, 14 Nov 2023 22:13:20 GMT")]);
        assert!(not_modified(&h(&[("if-modified-since", "Wed, 15 Nov 2023 00:00:00 GMT")]), &dated, later()));
        assert!(!not_modified(&h(&[("if-modified-since", "Mon, 13 Nov 2023 00:00:00 GMT")]), &dated, later()));
        let received = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let bare = HeaderMap::new();
        assert!(not_modified(&h(&[("if-modified-since", "Wed, 15 Nov 2023 00:00:00 GMT")]), &bare, received));
        assert!(!not_modified(&h(&[("if-modified-since", "Mon, 13 Nov 2023 00:00:00 GMT")]), &bare, received));
    }

    #[test]
    fn if_range() {
        let stored = h(&[
            ("etag", "\"v1\""),
            ("last-modified", "Tue, 14 Nov 2023 22:13:20 GMT"),
            ("date", "Wed, 15 Nov 2023 00:00:00 GMT"),
        ]);
        let holds = |v: &'static str| if_range_holds(&h(&[("if-range", v)]), &stored, later());
        assert!(if_range_holds(&h(&[]), &stored, later()));
        assert!(holds("\"v1\""));
        assert!(!holds("\"v0\""));
        assert!(!holds("W/\"v1\""), "weak tags never match If-Range");
        assert!(holds("Tue, 14 Nov 2023 22:13:20 GMT"));
        assert!(holds("Tuesday, 14-Nov-23 22:13:20 GMT"), "the same date in another form");
        assert!(!holds("Tue, 14 Nov 2023 22:13:21 GMT"));
        assert!(!holds("garbage"));
        let weak_tag = h(&[("etag", "W/\"v1\"")]);
        assert!(!if_range_holds(&h(&[("if-range", "\"v1\"")]), &weak_tag, later()));
        // A Last-Modified equal to Date is weak: it cannot validate a range.
        let same_second =
            h(&[("last-modified", "Tue, 14 Nov 2023 22:13:20 GMT"), ("date", "Tue, 14 Nov 2023 22:13:20 GMT")]);
        assert!(!if_range_holds(&h(&[("if-range", "Tue, 14 Nov 2023 22:13:20 GMT")]), &same_second, later()));
        assert!(!if_range_holds(&h(&[("if-range", "\"v1\""), ("if-range", "\"v1\"")]), &stored, later()));
    }
}
