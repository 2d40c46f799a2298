//! Whether an origin's error (4xx, 5xx) is stored, and for how long:
//! CloudFront's error caching (Amazon CloudFront Developer Guide, "How
//! CloudFront processes HTTP 4xx and 5xx status codes from your origin"
//! and "Control how long CloudFront caches errors"):
//!
//! - 404, 405, 410, 414, 500, 501, 502, 503 and 504 are always cached; 400,
//!   403, 412 and 415 only when the origin sends `max-age` or `s-maxage`;
//!   other errors (416 among them) never;
//! - for the error caching minimum TTL of the status (per status in the
//!   distribution's custom error responses, [`DEFAULT_ERROR_CACHING_MIN_TTL`]
//!   otherwise), or for the origin's `s-maxage`, `max-age` or `Expires`
//!   when that is longer; the origin's value is bounded by the cache
//!   policy's maximum TTL, the policy's minimum and default TTLs do not
//!   apply;
//! - a minimum TTL of 0 with no lifetime from the origin: not cached;
//! - `no-store`, `no-cache` or `private` stop the caching of a 404, 410,
//!   414 or 501 only; for any other error CloudFront ignores them and
//!   caches it for the error caching minimum TTL (the origin's lifetime is
//!   ignored then too);
//! - an error carrying a `Set-Cookie` (one viewer's cookie), or with
//!   `Vary: *` (RFC 9111 §4.1: it never matches a later request), is never
//!   stored;
//! - an error is never served stale (`stale-while-revalidate` and
//!   `stale-if-error` of an error response are ignored). A stale *object*
//!   whose revalidation meets a 5xx is still served within its own
//!   `stale-if-error` (see [`crate::admit`]).

use std::time::Duration;

use http::HeaderMap;
use http::header::{EXPIRES, HeaderName, SET_COOKIE};

use crate::date::{self, DateField};
use crate::freshness::{Freshness, Storability, Timing, TtlBounds, directives, initial_age, varies_on_everything};

/// How long an error is cached when the distribution says nothing for its
/// status: CloudFront's default `ErrorCachingMinTTL`, 10 seconds.
pub const DEFAULT_ERROR_CACHING_MIN_TTL: Duration = Duration::from_secs(10);

/// Errors CloudFront caches whatever the origin's headers say (unless they
/// forbid it).
pub fn always_cached_error(status: u16) -> bool {
    matches!(status, 404 | 405 | 410 | 414 | 500 | 501 | 502 | 503 | 504)
}

/// Errors whose caching `no-store`, `no-cache` or `private` stop; other
/// cached errors are cached for the error caching minimum TTL whatever
/// they say (CloudFront Developer Guide, "Control how long CloudFront
/// caches errors").
pub fn restrictable_error(status: u16) -> bool {
    matches!(status, 404 | 410 | 414 | 501)
}

/// Errors CloudFront caches only when the origin sends `max-age` or `s-maxage`.
pub fn cached_error_with_max_age(status: u16) -> bool {
    matches!(status, 400 | 403 | 412 | 415)
}

/// Whether `status` is an error this module decides on (4xx or 5xx).
pub fn is_error(status: u16) -> bool {
    (400..600).contains(&status)
}

/// The error caching minimum TTL of `status`: the configured one from
/// `configured` (status, TTL pairs, as the distribution's custom error
/// responses give them), else [`DEFAULT_ERROR_CACHING_MIN_TTL`].
pub fn error_min_ttl(configured: &[(u16, Duration)], status: u16) -> Duration {
    configured.iter().find(|(s, _)| *s == status).map_or(DEFAULT_ERROR_CACHING_MIN_TTL, |(_, ttl)| *ttl)
}

/// Decides whether and for how long to store an error response of
/// `status` (see the module documentation); `min_ttl` is the error caching
/// minimum TTL of that status.
pub fn error_storability(
    status: u16,
    headers: &HeaderMap,
    bounds: TtlBounds,
    targeted: &[HeaderName],
    timing: Timing,
    min_ttl: Duration,
) -> Storability {
    let always = always_cached_error(status);
    if !always && !cached_error_with_max_age(status) {
        return Storability::Skip("status");
    }
    if varies_on_everything(headers) {
        return Storability::Skip("vary-star");
    }
    let (cc, from_targeted) = directives(headers, targeted);
    let omit: Vec<HeaderName> = cc.omitted_fields().cloned().collect();
    if headers.contains_key(SET_COOKIE) && !omit.contains(&SET_COOKIE) {
        return Storability::Skip("set-cookie");
    }
    let restricted = cc.no_store || cc.no_cache || cc.private;
    if restricted && restrictable_error(status) {
        return Storability::Skip("cache-control");
    }
    let max_age = cc.s_maxage.or(cc.max_age).map(Duration::from_secs);
    if !always && max_age.is_none() {
        return Storability::Skip("status");
    }
    let lifetime = max_age.or_else(|| {
        if from_targeted || restricted {
            return None;
        }
        match date::first(headers, &EXPIRES) {
            DateField::Absent => None,
            DateField::Invalid => Some(Duration::ZERO),
            DateField::Valid(expires) => {
                let date = date::first(headers, &http::header::DATE).valid().unwrap_or(timing.response_time);
                Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
            }
        }
    });
    let initial_age = initial_age(headers, timing);
    // A restricted error that is cached anyway keeps the minimum TTL only.
    let lifetime = lifetime.filter(|_| !restricted);
    let from_origin = lifetime.map_or(Duration::ZERO, |l| l.min(bounds.max).saturating_sub(initial_age));
    let ttl = from_origin.max(min_ttl);
    if ttl.is_zero() {
        return Storability::Skip("error-caching-min-ttl");
    }
    Storability::Store(Freshness {
        ttl,
        initial_age,
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        omit,
    })
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use http::HeaderValue;

    use super::*;

    const B: TtlBounds =
        TtlBounds { min: Duration::from_secs(5), default: Duration::from_secs(86_400), max: Duration::from_secs(600) };

    fn ttl(status: u16, pairs: &[(&str, &str)], min: u64) -> Option<u64> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("value"));
        }
        let at = Timing::at(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        match error_storability(status, &h, B, &[], at, Duration::from_secs(min)) {
            Storability::Store(f) => Some(f.ttl.as_secs()),
            Storability::Skip(_) => None,
        }
    }

    #[test]
    fn the_always_cached_errors_take_the_min_ttl_or_a_longer_lifetime() {
        for status in [404, 405, 410, 414, 500, 501, 502, 503, 504] {
            assert_eq!(ttl(status, &[], 10), Some(10), "{status}: the min TTL without headers");
            assert_eq!(ttl(status, &[("cache-control", "max-age=60")], 10), Some(60), "{status}: the longer");
            assert_eq!(ttl(status, &[("cache-control", "max-age=3")], 10), Some(10), "{status}: the min TTL");
            assert_eq!(ttl(status, &[("cache-control", "max-age=6000")], 10), Some(600), "{status}: max TTL");
            assert_eq!(ttl(status, &[], 0), None, "{status}: a min TTL of 0 and nothing else: not cached");
            assert_eq!(ttl(status, &[("cache-control", "max-age=60")], 0), Some(60), "{status}: the origin's");
            // no-store, no-cache and private stop the caching of 404, 410,
            // 414 and 501 only; other errors are cached for the min TTL.
            let restricted = if restrictable_error(status) { None } else { Some(10) };
            for cc in ["no-store", "no-cache", "private, max-age=60", "no-store, s-maxage=300"] {
                assert_eq!(ttl(status, &[("cache-control", cc)], 10), restricted, "{status}: {cc}");
            }
            assert_eq!(ttl(status, &[("cache-control", "no-store")], 0), None, "{status}: min TTL 0");
            assert_eq!(ttl(status, &[("set-cookie", "a=b")], 10), None, "{status}: a cookie");
            assert_eq!(ttl(status, &[("vary", "*")], 10), None, "{status}: Vary: *");
            assert_eq!(ttl(status, &[("vary", "accept, *")], 10), None, "{status}: Vary: *");
            assert_eq!(ttl(status, &[("vary", "accept")], 10), Some(10), "{status}: Vary");
        }
        for status in [404, 410, 414, 501] {
            assert!(restrictable_error(status), "{status}");
        }
        // The policy's min TTL (5 s) does not apply to errors.
        assert_eq!(ttl(404, &[("cache-control", "max-age=1")], 0), Some(1));
    }

    #[test]
    fn some_errors_need_max_age_and_others_are_never_cached() {
        for status in [400, 403, 412, 415] {
            assert_eq!(ttl(status, &[], 10), None, "{status}");
            assert_eq!(ttl(status, &[("cache-control", "s-maxage=30")], 10), Some(30), "{status}");
            assert_eq!(ttl(status, &[("cache-control", "max-age=3")], 10), Some(10), "{status}");
            assert_eq!(ttl(status, &[("cache-control", "no-store, max-age=60")], 10), Some(10), "{status}");
            assert_eq!(ttl(status, &[("cache-control", "no-store")], 10), None, "{status}: no max-age");
        }
        for status in [401, 407, 408, 416, 429, 505] {
            assert_eq!(ttl(status, &[("cache-control", "max-age=60")], 10), None, "{status}");
        }
    }

    #[test]
    fn the_configured_min_ttl_is_per_status() {
        let configured = [(404, Duration::from_secs(2)), (503, Duration::ZERO)];
        assert_eq!(error_min_ttl(&configured, 404), Duration::from_secs(2));
        assert_eq!(error_min_ttl(&configured, 503), Duration::ZERO);
        assert_eq!(error_min_ttl(&configured, 500), DEFAULT_ERROR_CACHING_MIN_TTL);
        assert!(is_error(404) && is_error(599) && !is_error(302) && !is_error(600));
    }
}
