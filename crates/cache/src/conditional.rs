//! Viewer-side HTTP semantics served from a stored object: `Range`
//! (RFC 9110 §14) and conditional requests (`If-None-Match`,
//! `If-Modified-Since`, `If-Range`; RFC 9110 §13). Pure functions.

use http::HeaderMap;
use http::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE};

/// What a `Range` header asks of a body of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range: send the whole body with 200. Covers no header,
    /// other units, multiple ranges (shardgate does not build multipart
    /// bodies; RFC 9110 §14.2 lets a server ignore Range) and a failed
    /// `If-Range`.
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
pub fn range(headers: &HeaderMap, len: u64) -> RangeAnswer {
    let Some(value) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else { return RangeAnswer::Full };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeAnswer::Full };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeAnswer::Full };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| if s.bytes().all(|c| c.is_ascii_digit()) { s.parse::<u64>().ok() } else { None };
    match (a.is_empty(), b.is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => match parse(b) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial { start: len.saturating_sub(n), end: len - 1 },
            None => RangeAnswer::Full,
        },
        // `N-`: from N to the end.
        (false, true) => match parse(a) {
            Some(start) if start < len => RangeAnswer::Partial { start, end: len - 1 },
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Full,
        },
        (false, false) => match (parse(a), parse(b)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= len {
                    RangeAnswer::Unsatisfiable
                } else {
                    RangeAnswer::Partial { start, end: end.min(len - 1) }
                }
            }
            // RFC 9110 §14.1.1: last < first makes the header invalid: ignore it.
            _ => RangeAnswer::Full,
        },
        (true, true) => RangeAnswer::Full,
    }
}

/// Whether `If-Range` (if present) still matches the stored object, so a
/// range may be served. A strong ETag must match exactly; a date must equal
/// `Last-Modified`.
pub fn if_range_holds(req: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(cond) = req.get(IF_RANGE).and_then(|v| v.to_str().ok()) else { return true };
    let cond = cond.trim();
    if cond.starts_with('"') {
        return stored.get(ETAG).and_then(|e| e.to_str().ok()).is_some_and(|e| e == cond);
    }
    if cond.starts_with("W/") {
        return false;
    }
    stored.get(LAST_MODIFIED).and_then(|l| l.to_str().ok()).is_some_and(|l| l.trim() == cond)
}

fn opaque(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/")
}

/// Whether the viewer's validators match the stored object, so 304 Not
/// Modified may be sent instead of the body. `If-None-Match` uses the weak
/// comparison and, when present, decides alone (RFC 9110 §13.1.3).
pub fn not_modified(req: &HeaderMap, stored: &HeaderMap) -> bool {
    if req.contains_key(IF_NONE_MATCH) {
        let Some(etag) = stored.get(ETAG).and_then(|e| e.to_str().ok()) else { return false };
        return req
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == "*" || opaque(t) == opaque(etag));
    }
    let Some(since) = req.get(IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()) else { return false };
    let Ok(since) = httpdate::parse_http_date(since) else { return false };
    stored
        .get(LAST_MODIFIED)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| httpdate::parse_http_date(l).ok())
        .is_some_and(|modified| modified <= since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
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
    }

    #[test]
    fn validators() {
        let stored = h(&[("etag", "\"v1\""), ("last-modified", "Tue, 14 Nov 2023 22:13:20 GMT")]);
        assert!(not_modified(&h(&[("if-none-match", "\"v1\"")]), &stored));
        assert!(not_modified(&h(&[("if-none-match", "\"x\", W/\"v1\"")]), &stored), "weak comparison");
        assert!(not_modified(&h(&[("if-none-match", "*")]), &stored));
        assert!(!not_modified(&h(&[("if-none-match", "\"v2\"")]), &stored));
        assert!(
            !not_modified(
                &h(&[("if-none-match", "\"v2\""), ("if-modified-since", "Wed, 15 Nov 2023 00:00:00 GMT")]),
                &stored
            ),
            "If-None-Match decides alone"
        );
        assert!(not_modified(&h(&[("if-modified-since", "Wed, 15 Nov 2023 00:00:00 GMT")]), &stored));
        assert!(!not_modified(&h(&[("if-modified-since", "Mon, 13 Nov 2023 00:00:00 GMT")]), &stored));
        assert!(if_range_holds(&h(&[("if-range", "\"v1\"")]), &stored));
        assert!(!if_range_holds(&h(&[("if-range", "\"v0\"")]), &stored));
        assert!(if_range_holds(&h(&[("if-range", "Tue, 14 Nov 2023 22:13:20 GMT")]), &stored));
    }
}
