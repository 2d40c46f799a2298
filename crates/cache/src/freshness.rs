//! How long a response stays fresh: RFC 9111 directives bounded by the cache
//! policy's TTLs the way CloudFront bounds them (`Expiration.md`, summarised
//! in `shared/reference/cloudfront-cache-waf.md` §1.3 and §1.5):
//!
//! - `s-maxage` wins over `max-age`, which wins over `Expires - Date`; the
//!   result is clamped to `[min_ttl, max_ttl]`;
//! - no directive at all: `default_ttl`;
//! - `no-store`, `no-cache`, `private`: not cached when `min_ttl` is 0,
//!   otherwise cached for `min_ttl` (CloudFront's documented behaviour);
//! - `stale-while-revalidate` and `stale-if-error` (RFC 5861) extend the
//!   window in which a stale copy may be served.
//!
//! Pure functions over header values; no clock reads.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{AGE, CACHE_CONTROL, DATE, EXPIRES, SET_COOKIE, VARY};

/// TTL bounds from a cache policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlBounds {
    /// Lower bound, applied even when the origin forbids caching.
    pub min: Duration,
    /// When the origin says nothing.
    pub default: Duration,
    /// Upper bound.
    pub max: Duration,
}

/// The directives of a `Cache-Control` response header that matter to a
/// shared cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (without field names).
    pub no_cache: bool,
    /// `private`.
    pub private: bool,
    /// `max-age`.
    pub max_age: Option<u64>,
    /// `s-maxage`.
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`.
    pub stale_if_error: Option<u64>,
    /// `must-revalidate` or `proxy-revalidate`: never serve stale.
    pub must_revalidate: bool,
}

impl CacheControl {
    /// Parses every `Cache-Control` header of `headers`. Unknown directives
    /// are ignored; a malformed number makes its directive count as absent,
    /// except for `max-age`/`s-maxage`, where RFC 9111 §4.2.1 says to treat
    /// an invalid value as stale (0).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut cc = CacheControl::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let directive = directive.trim();
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive, None),
                };
                let secs = || arg.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    // `no-cache="field"` only restricts those fields; treat it
                    // as the whole-response form, the safe reading.
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "max-age" => cc.max_age = Some(secs().unwrap_or(0)),
                    "s-maxage" => cc.s_maxage = Some(secs().unwrap_or(0)),
                    "stale-while-revalidate" => cc.stale_while_revalidate = secs(),
                    "stale-if-error" => cc.stale_if_error = secs(),
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    _ => {}
                }
            }
        }
        cc
    }
}

/// What the cache may do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storability {
    /// Store it, fresh for `ttl` from now, with these stale windows.
    Store {
        /// Freshness lifetime left (already minus the origin's `Age`).
        ttl: Duration,
        /// `stale-while-revalidate` window after expiry.
        stale_while_revalidate: Duration,
        /// `stale-if-error` window after expiry.
        stale_if_error: Duration,
    },
    /// Do not store it; the reason is for logs and metrics.
    Skip(&'static str),
}

/// Status codes a shared cache stores (RFC 9110 §15.1 "heuristically
/// cacheable", minus the ones an asset edge has no use for).
pub fn cacheable_status(status: u16) -> bool {
    matches!(status, 200 | 203 | 204 | 300 | 301 | 308 | 404 | 410)
}

/// The response's `Age`, if it has a valid one (RFC 9111 §5.1).
pub fn age_of(headers: &HeaderMap) -> Option<Duration> {
    headers.get(AGE).and_then(|a| a.to_str().ok()).and_then(|a| a.trim().parse::<u64>().ok()).map(Duration::from_secs)
}

/// Longest stale-while-revalidate or stale-if-error window honoured: a year.
pub const MAX_STALE_SECS: u64 = 31_536_000;

/// Decides whether and for how long to store a response received at `now`.
pub fn storability(status: u16, headers: &HeaderMap, bounds: TtlBounds, now: SystemTime) -> Storability {
    if !cacheable_status(status) {
        return Storability::Skip("status");
    }
    if headers.contains_key(SET_COOKIE) {
        // One viewer's cookie must never be served to another.
        return Storability::Skip("set-cookie");
    }
    if headers.get_all(VARY).iter().any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|p| p.trim() == "*"))) {
        return Storability::Skip("vary-star");
    }
    let cc = CacheControl::parse(headers);
    let windows = |cc: &CacheControl| {
        if cc.must_revalidate {
            (Duration::ZERO, Duration::ZERO)
        } else {
            // Bounded: an origin's absurd window must not overflow the
            // instants it is added to.
            (
                Duration::from_secs(cc.stale_while_revalidate.unwrap_or(0).min(MAX_STALE_SECS)),
                Duration::from_secs(cc.stale_if_error.unwrap_or(0).min(MAX_STALE_SECS)),
            )
        }
    };
    let (swr, sie) = windows(&cc);
    if cc.no_store || cc.no_cache || cc.private {
        if bounds.min.is_zero() {
            return Storability::Skip("cache-control");
        }
        return Storability::Store { ttl: bounds.min, stale_while_revalidate: swr, stale_if_error: sie };
    }
    let origin_ttl = if let Some(s) = cc.s_maxage.or(cc.max_age) {
        Some(Duration::from_secs(s))
    } else if let Some(expires) = headers.get(EXPIRES) {
        // An unparsable Expires means "already expired" (RFC 9111 §5.3).
        let expires = expires.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok());
        let date = headers
            .get(DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok())
            .unwrap_or(now);
        Some(expires.and_then(|e| e.duration_since(date).ok()).unwrap_or(Duration::ZERO))
    } else {
        None
    };
    let ttl = match origin_ttl {
        Some(t) => t.clamp(bounds.min, bounds.max.max(bounds.min)),
        None => bounds.default,
    };
    let age = age_of(headers).unwrap_or(Duration::ZERO);
    let ttl = ttl.saturating_sub(age);
    if ttl.is_zero() && bounds.min.is_zero() && swr.is_zero() && sie.is_zero() {
        // Stale on arrival: still worth keeping when it has validators.
        let has_validators =
            headers.contains_key(http::header::ETAG) || headers.contains_key(http::header::LAST_MODIFIED);
        if !has_validators {
            return Storability::Skip("stale-on-arrival");
        }
    }
    Storability::Store { ttl, stale_while_revalidate: swr, stale_if_error: sie }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const B: TtlBounds =
        TtlBounds { min: Duration::ZERO, default: Duration::from_secs(86_400), max: Duration::from_secs(31_536_000) };

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    fn ttl(s: Storability) -> Option<u64> {
        match s {
            Storability::Store { ttl, .. } => Some(ttl.as_secs()),
            Storability::Skip(_) => None,
        }
    }

    #[test]
    fn absurd_windows_are_bounded() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cc = "max-age=60, stale-while-revalidate=18446744073709551615, stale-if-error=18446744073709551615";
        let s = storability(200, &h(&[("cache-control", cc)]), B, now);
        let max = Duration::from_secs(MAX_STALE_SECS);
        assert!(matches!(s, Storability::Store { stale_while_revalidate, stale_if_error, .. }
            if stale_while_revalidate == max && stale_if_error == max));
    }

    #[test]
    fn directives_and_bounds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(ttl(storability(200, &h(&[]), B, now)), Some(86_400), "default TTL");
        assert_eq!(ttl(storability(200, &h(&[("cache-control", "max-age=60")]), B, now)), Some(60));
        assert_eq!(ttl(storability(200, &h(&[("cache-control", "max-age=60, s-maxage=120")]), B, now)), Some(120));
        assert_eq!(ttl(storability(200, &h(&[("cache-control", "max-age=60"), ("age", "50")]), B, now)), Some(10));
        let bounded = TtlBounds { min: Duration::from_secs(30), ..B };
        assert_eq!(ttl(storability(200, &h(&[("cache-control", "max-age=5")]), bounded, now)), Some(30));
        assert_eq!(ttl(storability(200, &h(&[("cache-control", "no-store")]), B, now)), None);
        assert_eq!(ttl(storability(200, &h(&[("cache-control", "private")]), bounded, now)), Some(30));
        assert_eq!(ttl(storability(200, &h(&[("set-cookie", "a=b")]), B, now)), None);
        assert_eq!(ttl(storability(500, &h(&[]), B, now)), None);
        assert_eq!(ttl(storability(200, &h(&[("vary", "Accept, *")]), B, now)), None);
        let expires = h(&[("date", "Tue, 14 Nov 2023 22:13:20 GMT"), ("expires", "Tue, 14 Nov 2023 22:23:20 GMT")]);
        assert_eq!(ttl(storability(200, &expires, B, now)), Some(600));
        assert_eq!(ttl(storability(200, &h(&[("expires", "0")]), B, now)), None, "invalid Expires is stale");
        assert_eq!(
            ttl(storability(200, &h(&[("expires", "0"), ("etag", "\"x\"")]), B, now)),
            Some(0),
            "kept for revalidation"
        );
    }

    #[test]
    fn stale_windows() {
        let now = SystemTime::UNIX_EPOCH;
        let s = storability(
            200,
            &h(&[("cache-control", "max-age=1, stale-while-revalidate=30, stale-if-error=600")]),
            B,
            now,
        );
        assert_eq!(
            s,
            Storability::Store {
                ttl: Duration::from_secs(1),
                stale_while_revalidate: Duration::from_secs(30),
                stale_if_error: Duration::from_secs(600)
            }
        );
        let s = storability(200, &h(&[("cache-control", "max-age=1, stale-if-error=600, must-revalidate")]), B, now);
        assert!(matches!(s, Storability::Store { stale_if_error, .. } if stale_if_error.is_zero()));
    }
}
