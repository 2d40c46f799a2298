//! The request as the cache and the origin see it: the channel rewrite of
//! the path, the cache key, and the query string forwarded to the origin.
//!
//! CloudFront's rules (`shared/reference/cloudfront-cache-waf.md` §1.2–1.3):
//! everything in the cache key is also forwarded to the origin; a
//! viewer-request rewrite runs before the lookup, so the rewritten path is
//! what is cached. shardgate joins the rewrite header to the key as well,
//! so two channels can never share an entry even if a cache policy forgets
//! the header (seed 003, scenario 2).

use std::fmt::Write as _;

use http::HeaderMap;
use shardgate_model::CachePolicy;
use shardgate_model::edge::{KeyItems, Rewrite};

/// Longest channel value accepted.
const MAX_CHANNEL: usize = 64;

/// Why a request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// The channel header's value could leave its path segment.
    #[error("header {header}: {reason}")]
    Channel {
        /// The header name.
        header: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Validates a channel value: one plain path segment. Anything that could
/// climb out of it (`..`, `/`, `\`, percent-encodings, controls) is refused.
pub fn channel_segment<'a>(header: &str, value: &'a [u8]) -> Result<&'a str, BadRequest> {
    let bad = |reason| Err(BadRequest::Channel { header: header.to_owned(), reason });
    if value.is_empty() {
        return bad("is empty");
    }
    if value.len() > MAX_CHANNEL {
        return bad("is longer than 64 bytes");
    }
    if !value.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return bad("may only hold letters, digits, '-', '_' and '.'");
    }
    if value.iter().all(|&b| b == b'.') {
        return bad("cannot be '.' or '..'");
    }
    // All bytes checked above are ASCII.
    std::str::from_utf8(value).or_else(|_| bad("is not ASCII"))
}

/// The rewritten origin path: `/<channel><path>` when the rewrite header is
/// present, else `path` unchanged (a missing header is not an error, as the
/// seed's function notes).
pub fn rewrite_path(
    rewrite: Option<&Rewrite>,
    headers: &HeaderMap,
    path: &str,
) -> Result<(String, Option<String>), BadRequest> {
    let Some(rw) = rewrite else { return Ok((path.to_owned(), None)) };
    match headers.get(rw.path_prefix_from_header.as_str()) {
        None => Ok((path.to_owned(), None)),
        Some(v) => {
            let seg = channel_segment(&rw.path_prefix_from_header, v.as_bytes())?;
            Ok((format!("/{seg}{path}"), Some(seg.to_owned())))
        }
    }
}

/// The query string forwarded to the origin and keyed on: the pairs the
/// policy includes, in the viewer's order.
pub fn filtered_query(policy: &KeyItems, query: Option<&str>) -> Option<String> {
    let query = query.filter(|q| !q.is_empty())?;
    match policy {
        KeyItems::None => None,
        KeyItems::All => Some(query.to_owned()),
        _ => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| {
                    let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
                    policy.includes(name)
                })
                .collect();
            if kept.is_empty() { None } else { Some(kept.join("&")) }
        }
    }
}

/// The cookies of the request that the policy keys on, as `name=value` in
/// the viewer's order.
pub fn filtered_cookies(policy: &KeyItems, headers: &HeaderMap) -> Vec<String> {
    if matches!(policy, KeyItems::None) {
        return Vec::new();
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| {
            let name = c.split_once('=').map_or(*c, |(n, _)| n);
            !c.is_empty() && policy.includes(name)
        })
        .map(str::to_owned)
        .collect()
}

/// Builds the cache key. Fields are length-prefixed so that no value can
/// forge another field's boundary.
pub fn cache_key(
    namespace: &str,
    origin_target: &str,
    policy: &CachePolicy,
    headers: &HeaderMap,
    channel: Option<(&str, &str)>,
    cookies: &[String],
) -> String {
    let mut key = String::with_capacity(64 + origin_target.len());
    let mut field = |tag: char, v: &str| {
        let _ = write!(key, "{tag}{}:{v}", v.len());
    };
    field('d', namespace);
    field('t', origin_target);
    for name in &policy.headers {
        field('h', name);
        let values: Vec<&[u8]> = headers.get_all(name.as_str()).iter().map(|v| v.as_bytes()).collect();
        let raw = values.join(&b","[..]);
        match std::str::from_utf8(&raw) {
            Ok(text) => field('v', text),
            // Not UTF-8: the bytes in hex, under their own tag, so that two
            // different values never share a key.
            Err(_) => field(
                'x',
                &raw.iter().fold(String::with_capacity(raw.len() * 2), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                }),
            ),
        }
    }
    if let Some((name, value)) = channel {
        field('r', name);
        field('v', value);
    }
    for c in cookies {
        field('c', c);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn channel_values_stay_in_their_segment() {
        for ok in ["a_vendor", "b-vendor", "v1.2"] {
            assert_eq!(channel_segment("x", ok.as_bytes()), Ok(ok));
        }
        for bad in ["..", ".", "a/b", "..%2f", "%2e%2e", "a\\b", "a b", "", "a\u{0}b", "é"] {
            assert!(channel_segment("x", bad.as_bytes()).is_err(), "{bad:?} must be refused");
        }
        assert!(channel_segment("x", &[b'a'; 65]).is_err());
    }

    #[test]
    fn rewrite_prefixes_the_path_only_when_the_header_is_there() {
        let rw = Rewrite { path_prefix_from_header: "x-vendor-type".into() };
        let mut h = HeaderMap::new();
        assert_eq!(rewrite_path(Some(&rw), &h, "/example.file"), Ok(("/example.file".into(), None)));
        h.insert("x-vendor-type", HeaderValue::from_static("a_vendor"));
        assert_eq!(
            rewrite_path(Some(&rw), &h, "/example.file"),
            Ok(("/a_vendor/example.file".into(), Some("a_vendor".into())))
        );
        h.insert("x-vendor-type", HeaderValue::from_static(".."));
        assert!(rewrite_path(Some(&rw), &h, "/example.file").is_err());
    }

    #[test]
    fn query_and_cookie_filters() {
        let only = KeyItems::Only(vec!["v".into()]);
        assert_eq!(filtered_query(&only, Some("a=1&v=2&v=3")), Some("v=2&v=3".into()));
        assert_eq!(filtered_query(&KeyItems::None, Some("a=1")), None);
        assert_eq!(filtered_query(&KeyItems::AllExcept(vec!["a".into()]), Some("a=1&b")), Some("b".into()));
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("s=1; lang=zh; t=2"));
        assert_eq!(filtered_cookies(&KeyItems::Only(vec!["lang".into()]), &h), vec!["lang=zh".to_owned()]);
    }

    #[test]
    fn keys_separate_what_must_be_separate() {
        let mut policy = CachePolicy::builtin();
        let h = HeaderMap::new();
        let a = cache_key("d", "/f", &policy, &h, Some(("x-vendor-type", "a")), &[]);
        let b = cache_key("d", "/f", &policy, &h, Some(("x-vendor-type", "b")), &[]);
        let none = cache_key("d", "/f", &policy, &h, None, &[]);
        let staging = cache_key("s", "/f", &policy, &h, None, &[]);
        assert!(a != b && a != none && none != staging);
        policy.headers = vec!["x-h".into()];
        let mut h1 = HeaderMap::new();
        h1.insert("x-h", HeaderValue::from_static("1"));
        assert_ne!(cache_key("d", "/f", &policy, &h1, None, &[]), cache_key("d", "/f", &policy, &h, None, &[]));
        // A value cannot imitate a field boundary.
        assert_ne!(
            cache_key("d", "/f", &policy, &h, None, &["a=1".into()]),
            cache_key("d", "/f", &policy, &h, None, &[])
        );
        // Values that are not UTF-8 stay apart (no lossy replacement).
        let raw = |b: &[u8]| {
            let mut m = HeaderMap::new();
            m.insert("x-h", HeaderValue::from_bytes(b).expect("opaque bytes are a valid header value"));
            cache_key("d", "/f", &policy, &m, None, &[])
        };
        assert_ne!(raw(b"\xff"), raw(b"\xfe"));
        assert_ne!(raw(b"\xff"), raw("\u{fffd}".as_bytes()));
    }
}
