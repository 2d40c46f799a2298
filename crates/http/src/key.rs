//! The request as the cache and the origin see it: the normalised path, the
//! channel rewrite of the path, the cache key, and the query string
//! forwarded to the origin.
//!
//! CloudFront's rules (Amazon CloudFront Developer Guide, "Understand cache
//! policies" and "CloudFront Functions event structure"): everything in the
//! cache key is also forwarded to the origin; a viewer-request rewrite runs
//! before the lookup, so the rewritten path is what is cached. shardgate
//! joins the rewrite header to the key as well, so two channels (the
//! per-vendor folders a header selects) can never share an entry even if a
//! cache policy forgets the header.
//!
//! Paths are normalised once, before anything reads them
//! ([`normalize_path`]): routing, the web ACL, the cache key, invalidation
//! and the origin all see the same path, so `/x/../admin` cannot pass a rule
//! written for `/admin` nor be cached apart from it. Paths that stay one
//! thing here but become another at an origin that decodes `%2F`, takes
//! `\` as a separator or strips `;` parameters (`/x/..%2Fadmin`,
//! `/x\..\admin`, `/x/..;/admin`) are refused.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderValue, Request};
use shardgate_model::CachePolicy;
use shardgate_model::edge::{KeyItems, Rewrite};
use shardgate_waf::transform::{PathRules, percent_byte};

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

/// Why viewer input is refused before anything reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The `reason` label of `shardgate_edge_refused_total`.
    pub reason: &'static str,
    /// What the viewer is told.
    pub message: String,
}

fn bad(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { reason, message: message.into() }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a bracketed IP
/// literal or a reg-name (unreserved, pct-encoded, sub-delims), then an
/// optional port of digits. No userinfo, no path, no whitespace.
fn valid_host(raw: &[u8]) -> bool {
    let port = if raw.first() == Some(&b'[') {
        let Some(close) = raw.iter().position(|&b| b == b']') else { return false };
        let literal = &raw[1..close];
        if literal.is_empty() || !literal.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return false;
        }
        match &raw[close + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        }
    } else {
        let (host, port) = match raw.iter().rposition(|&b| b == b':') {
            Some(i) => (&raw[..i], Some(&raw[i + 1..])),
            None => (raw, None),
        };
        let reg_name = |b: u8| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')')
                || matches!(b, b'*' | b'+' | b',' | b';' | b'=')
        };
        if host.is_empty() || !host.iter().all(|&b| reg_name(b)) {
            return false;
        }
        port
    };
    port.is_none_or(|p| p.iter().all(u8::is_ascii_digit))
}

/// The host of an authority or `Host` value, without port or trailing dot.
fn bare_host(raw: &[u8]) -> &[u8] {
    let host = if raw.first() == Some(&b'[') {
        raw.iter().position(|&b| b == b']').map_or(raw, |i| &raw[..=i])
    } else {
        raw.iter().rposition(|&b| b == b':').map_or(raw, |i| &raw[..i])
    };
    host.strip_suffix(b".").unwrap_or(host)
}

/// Checks and normalises what the viewer sent, before routing, the web ACL,
/// the cache key or the origin read it:
///
/// - `Host`: more than one line, or a value that is not `host[:port]`, is a
///   400 (RFC 9112 §3.2: "any request message that contains more than one
///   Host header field line or a Host header field with an invalid field
///   value"), as is an HTTP/1.1 request without one;
/// - an authority in the target (HTTP/1.1 absolute-form, HTTP/2
///   `:authority`): with userinfo, 400 (RFC 9110 §4.2.4); for HTTP/2, a
///   `Host` naming another host is malformed (RFC 9113 §8.3.1), 400; for
///   HTTP/1.1 the authority wins and `Host` is replaced by it (RFC 9112
///   §3.2.2: "MUST ignore the received Host header field ... and instead
///   use the host information of the request-target"), so the web ACL
///   inspects the host that routes the request;
/// - the path: normalised by [`normalize_path`] and written back into
///   the URI; `%00`, broken percent-encodings and dot-segments hidden from
///   it (see [`BadPath`]) are a 400.
pub fn check_viewer_input<B>(req: &mut Request<B>) -> Result<(), Refusal> {
    // Read without copying: this runs on every request, hits included.
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next().map(HeaderValue::as_bytes);
    if hosts.next().is_some() {
        return Err(bad("bad_host", "the request has more than one Host header line"));
    }
    if host.is_some_and(|h| !valid_host(h)) {
        return Err(bad("bad_host", "the Host header is not a valid host[:port]"));
    }
    let replace_host = match (req.uri().authority(), host) {
        (Some(authority), _) if authority.as_str().contains('@') => {
            return Err(bad("bad_host", "the request target's authority holds user information"));
        }
        (Some(authority), Some(h)) if !bare_host(h).eq_ignore_ascii_case(bare_host(authority.as_str().as_bytes())) => {
            if req.version() == http::Version::HTTP_2 {
                return Err(bad("bad_host", "the Host header names another host than :authority"));
            }
            match HeaderValue::from_str(authority.as_str()) {
                Ok(v) => Some(v),
                Err(_) => return Err(bad("bad_host", "the request target's authority is not a valid host")),
            }
        }
        (None, None) if req.version() == http::Version::HTTP_11 => {
            return Err(bad("no_host", "an HTTP/1.1 request must have a Host header"));
        }
        _ => None,
    };
    if let Some(v) = replace_host {
        req.headers_mut().insert(http::header::HOST, v);
    }
    let normal = match normalize_path(req.uri().path()) {
        Ok(None) => return Ok(()),
        Ok(Some(p)) => p,
        Err(e) => return Err(bad("bad_path", e.to_string())),
    };
    let target = match req.uri().query() {
        Some(q) => format!("{normal}?{q}"),
        None => normal,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = match target.parse() {
        Ok(pq) => Some(pq),
        Err(_) => return Err(bad("bad_path", "the normalised path is not a valid request target")),
    };
    *req.uri_mut() = match http::Uri::from_parts(parts) {
        Ok(u) => u,
        Err(_) => return Err(bad("bad_path", "the normalised path is not a valid request target")),
    };
    Ok(())
}

/// Why a request path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    /// `%00`: a NUL would end the path early in many origins' code.
    #[error("the path holds an encoded NUL (%00)")]
    Nul,
    /// `%` not followed by two hex digits (RFC 3986 §2.1).
    #[error("the path holds a '%' that is not followed by two hex digits")]
    Percent,
    /// A `.` or `..` segment that only an encoded slash or a backslash
    /// separates (`/x/..%2Fadmin`, `/x\..\admin`, `/x/%2e%2e%5Cadmin`):
    /// one segment here, a dot-segment at an origin that decodes `%2F` or
    /// `%5C`, or takes `\` as `/`, before removing dot-segments (nginx,
    /// many application servers; IIS for `\`), so the origin would serve a
    /// path that the web ACL, the cache key and routing never saw.
    #[error(
        "the path holds a '.' or '..' segment behind an encoded slash or a backslash (%2F, %5C or \\), \
         which an origin that decodes them would read as a dot-segment"
    )]
    HiddenDotSegment,
    /// A segment that is `..` or `.` with parameters (`..;a=b`, `.;`,
    /// also as `%3B`): Tomcat and other servlet containers strip path
    /// parameters and then read it as a dot-segment.
    #[error(
        "the path holds a dot-segment with parameters ('..;' or '.;'), which an origin that strips path parameters reads as '..' or '.'"
    )]
    DotSegmentParameters,
}

/// The path in normal form, or `None` when it already is (the usual case,
/// found by one scan without allocating):
///
/// - percent-encodings of unreserved characters are decoded and the others
///   get upper-case hex digits (RFC 3986 §6.2.2.1–§6.2.2.2); reserved
///   characters stay encoded, so `%2F` is never a segment separator and
///   `/a%2Fb` stays one segment (decoding it would change which resource is
///   named);
/// - dot-segments are removed (RFC 3986 §5.2.4, after the decoding, so
///   `%2e%2e` is `..` too; `waf::transform::normalize_path` with
///   [`PathRules::Rfc3986`]); `..` at the root stays at the root;
/// - `%00`, broken percent-encodings, and dot-segments that only an origin
///   would see ([`BadPath::HiddenDotSegment`],
///   [`BadPath::DotSegmentParameters`]) are refused.
pub fn normalize_path(path: &str) -> Result<Option<String>, BadPath> {
    let bytes = path.as_bytes();
    // Every path that could change or be refused has a '%', or a '.' that
    // starts a segment (after '/' or '\').
    let suspect = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'%' || (b == b'.' && (i == 0 || matches!(bytes[i - 1], b'/' | b'\\'))));
    if !suspect || !path.starts_with('/') {
        return Ok(None);
    }
    let decoded = normalize_percent(bytes)?;
    let out = shardgate_waf::transform::normalize_path(&decoded, PathRules::Rfc3986);
    refuse_hidden_dot_segments(&out)?;
    // Only ASCII was decoded, and only at ASCII separators was the path cut,
    // so what was UTF-8 is still UTF-8.
    let out = String::from_utf8(out).map_err(|_| BadPath::Percent)?;
    Ok((out != path).then_some(out))
}

/// Decodes unreserved percent-encodings, upper-cases the others. Other
/// bytes (UTF-8 included, which `http` lets through) are copied as they are.
fn normalize_percent(bytes: &[u8]) -> Result<Vec<u8>, BadPath> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let v = percent_byte(bytes, i).ok_or(BadPath::Percent)?;
        if v == 0 {
            return Err(BadPath::Nul);
        }
        if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
            out.push(v);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(v >> 4)], HEX[usize::from(v & 15)]]);
        }
        i += 3;
    }
    Ok(out)
}

/// Refuses a normalised path (dot-segments removed, percent-encodings in
/// upper case) in which cutting also at `\`, `%2F` and `%5C` gives a `.` or
/// `..` segment, or any segment starts with `.;` or `..;` (`;` also as
/// `%3B`). Plain `%2F` elsewhere stays data: `/a%2Fb` passes.
fn refuse_hidden_dot_segments(path: &[u8]) -> Result<(), BadPath> {
    let mut rest = path;
    loop {
        // The next separator: '/', '\', or an encoded slash or backslash.
        let (end, skip) = rest
            .iter()
            .enumerate()
            .find_map(|(i, &b)| match b {
                b'/' | b'\\' => Some((i, 1)),
                b'%' if matches!(rest.get(i + 1..i + 3), Some(b"2F" | b"5C")) => Some((i, 3)),
                _ => None,
            })
            .unwrap_or((rest.len(), 0));
        let segment = &rest[..end];
        if segment == b"." || segment == b".." {
            return Err(BadPath::HiddenDotSegment);
        }
        let name = segment.strip_prefix(b"..").or_else(|| segment.strip_prefix(b".")).unwrap_or(b"-");
        if name.starts_with(b";") || name.starts_with(b"%3B") {
            return Err(BadPath::DotSegmentParameters);
        }
        if skip == 0 {
            return Ok(());
        }
        rest = &rest[end + skip..];
    }
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
        // `fmt::Write for String` only appends and always returns `Ok`:
        // there is no error to handle, and no allocation beyond the key's.
        write!(key, "{tag}{}:{v}", v.len()).ok();
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
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    s.push(char::from(HEX[usize::from(b >> 4)]));
                    s.push(char::from(HEX[usize::from(b & 15)]));
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

/// Appends the normalised `Accept-Encoding` (`br,gzip`, `br` or `gzip`,
/// see [`crate::compress::Codings::normalised`]) to a cache key, as a field
/// of its own (`e`), when the cache policy's compression flags put it in
/// the key.
pub fn push_accept_encoding(key: &mut String, normalised: &str) {
    write!(key, "e{}:{normalised}", normalised.len()).ok();
}

/// The key of the variant the edge compresses with `coding` (a content
/// coding token) from the identity object stored under `key`: a field
/// (`z`) that [`cache_key`] never writes, so it can name no fetched object.
pub fn compressed_key(key: &str, coding: &str) -> String {
    let mut k = String::with_capacity(key.len() + 8);
    k.push_str(key);
    write!(k, "z{}:{coding}", coding.len()).ok();
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn request(version: http::Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn host_lines_and_authorities() {
        use http::Version;
        let check = |v, uri: &str, hosts: &[&str]| {
            let mut r = request(v, uri, hosts);
            check_viewer_input(&mut r).map(|()| (r.uri().to_string(), r.headers().get("host").cloned()))
        };
        let reason = |v, uri: &str, hosts: &[&str]| check(v, uri, hosts).map_err(|e| e.reason);
        assert!(check(Version::HTTP_11, "/a", &["a.example"]).is_ok());
        assert!(check(Version::HTTP_11, "/a", &["a.example:8080"]).is_ok());
        assert!(check(Version::HTTP_11, "/a", &["[::1]:8080"]).is_ok());
        assert!(check(Version::HTTP_11, "/a", &["A.Example."]).is_ok());
        assert_eq!(reason(Version::HTTP_11, "/a", &["a.example", "a.example"]), Err("bad_host"), "two lines");
        assert_eq!(reason(Version::HTTP_11, "/a", &["a.example", "b.example"]), Err("bad_host"));
        assert_eq!(reason(Version::HTTP_2, "/a", &["a.example", "b.example"]), Err("bad_host"));
        for bad in ["a b", "a/b", "user@a", "a:80x", "[::1", "[zz]", "[::1]x", "", ":80", "a.example:1:2"] {
            assert_eq!(reason(Version::HTTP_11, "/a", &[bad]), Err("bad_host"), "{bad:?}");
        }
        assert_eq!(reason(Version::HTTP_11, "/a", &[]), Err("no_host"), "HTTP/1.1 needs a Host");
        assert!(check(Version::HTTP_10, "/a", &[]).is_ok(), "HTTP/1.0 may omit it (then 400 as no host later)");
        // HTTP/2: :authority and a Host for the same host (any port or case) are fine.
        assert!(check(Version::HTTP_2, "https://a.example/x", &["A.example:443"]).is_ok());
        assert!(check(Version::HTTP_2, "https://a.example/x", &[]).is_ok());
        assert_eq!(reason(Version::HTTP_2, "https://a.example/x", &["b.example"]), Err("bad_host"));
        assert_eq!(reason(Version::HTTP_2, "https://u@a.example/x", &[]), Err("bad_host"), "userinfo");
        // HTTP/1.1 absolute-form: the authority wins and replaces Host.
        let (_, host) = check(Version::HTTP_11, "http://a.example:8080/x", &["b.example"]).expect("absolute-form");
        assert_eq!(host, Some(HeaderValue::from_static("a.example:8080")));
    }

    #[test]
    fn the_request_target_is_rewritten_in_place() {
        let mut r = request(http::Version::HTTP_11, "/x/%2e%2E/admin/./p?q=/../a%2e", &["a.example"]);
        check_viewer_input(&mut r).expect("valid");
        assert_eq!(r.uri(), "/admin/p?q=/../a%2e", "the query is left alone");
        let mut r = request(http::Version::HTTP_2, "https://a.example/a/../b", &[]);
        check_viewer_input(&mut r).expect("valid");
        assert_eq!(r.uri(), "https://a.example/b", "scheme and authority kept");
        let mut r = request(http::Version::HTTP_11, "/a%00", &["a.example"]);
        assert_eq!(check_viewer_input(&mut r).map_err(|e| e.reason), Err("bad_path"));
    }

    #[test]
    fn paths_are_normalised_once_and_only_when_needed() {
        let n = |p: &str| normalize_path(p);
        // Nothing to do: no allocation, `None`.
        for p in ["/", "/a/b.png", "/v1.2/x..y", "/a//b", "/a/b/", "/a%2Fb", "/%C3%A9", "/.well-known/x", "/a/.b"] {
            assert_eq!(n(p), Ok(None), "{p}");
        }
        // RFC 3986 §5.2.4 (and its §5.4 examples where they apply to paths).
        for (p, want) in [
            ("/a/../b", "/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/.", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/x/../admin", "/admin"),
            ("//a/../b", "//b"),
            ("/a/./", "/a/"),
            // Encoded dots are dots (RFC 3986 §6.2.2.2 then §5.2.4).
            ("/x/%2e%2e/admin", "/admin"),
            ("/x/%2E%2E/admin", "/admin"),
            ("/x/.%2e/admin", "/admin"),
            ("/%2e/a", "/a"),
            // Unreserved characters are decoded, the rest get upper-case hex.
            ("/%41%62c%7e%2D", "/Abc~-"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2f..b%2fc", "/a%2F..b%2Fc"),
            ("/a/%2e%2e%2e%3b", "/a/...%3B"),
            ("/%c3%a9", "/%C3%A9"),
            ("/é/../x%41", "/xA"),
            ("/é/%2e/x", "/é/x"),
        ] {
            assert_eq!(n(p), Ok(Some(want.to_owned())), "{p}");
        }
        assert_eq!(n("/a%00b"), Err(BadPath::Nul));
        assert_eq!(n("/a/%00"), Err(BadPath::Nul));
        assert_eq!(n("/a%0"), Err(BadPath::Percent));
        assert_eq!(n("/a%zz"), Err(BadPath::Percent));
        assert_eq!(n("/a%"), Err(BadPath::Percent));
        assert_eq!(n("*"), Ok(None), "asterisk-form is not a path");
    }

    #[test]
    fn dot_segments_hidden_from_the_normal_form_are_refused() {
        let n = |p: &str| normalize_path(p);
        // A separator an origin may decode, or a backslash, around a dot-segment.
        for p in [
            "/x/..%2Fadmin",
            "/x/..%2fadmin",
            "/x/%2e%2e%5Cadmin",
            "/x/%2E%2E%5cadmin",
            "/x\\..\\admin",
            "/x/..\\admin",
            "/x%2F..%2Fb",
            "/public/..%2Fadmin",
            "/x/.%2Fadmin",
            "/x/a%2F.",
            "/x/..%5C",
            "/x\\.\\a",
            "/%2F..",
            "\\..",
        ] {
            let want = if p.starts_with('/') { Err(BadPath::HiddenDotSegment) } else { Ok(None) };
            assert_eq!(n(p), want, "{p}");
        }
        // Path parameters on a dot-segment (Tomcat strips `;...`).
        for p in ["/x/..;/admin", "/x/.;/admin", "/x/..;jsessionid=1/admin", "/x/%2e%2e;/admin", "/x/..%3b/a", "/x/..;"]
        {
            assert_eq!(n(p), Err(BadPath::DotSegmentParameters), "{p}");
        }
        assert_eq!(n("/x\\..;\\admin"), Err(BadPath::DotSegmentParameters), "behind a backslash too");
        // Encoded slashes and backslashes elsewhere are data; so are names
        // that merely start with dots.
        for p in ["/a%2Fb", "/a%5Cb", "/a\\b", "/x/...;/a", "/x/..a;/b", "/x/a;..", "/x/%2F%2F", "/v1..2%2Fx"] {
            assert!(n(p).is_ok(), "{p}: {:?}", n(p));
        }
        assert_eq!(n("/a%2fb%5c"), Ok(Some("/a%2Fb%5C".into())));
        // The messages name the problem.
        assert!(BadPath::HiddenDotSegment.to_string().contains("%2F"));
        assert!(BadPath::DotSegmentParameters.to_string().contains("..;"));
        let mut r = request(http::Version::HTTP_11, "/x/..%2Fadmin", &["a.example"]);
        assert_eq!(check_viewer_input(&mut r).map_err(|e| e.reason), Err("bad_path"));
    }

    /// Arbitrary targets and hosts: no panic, and a normalised path is a
    /// fixed point with no dot-segment left.
    #[test]
    fn viewer_input_survives_arbitrary_targets() {
        const ALPHABET: &[u8] = b"/./%2eE0fFaA?#:@[]- \\x5cC;3bB";
        let mut state = 0x0bad_5eed_u64;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for _ in 0..20_000 {
            let len = 1 + (next() % 24) as usize;
            let tail: String =
                (0..len).map(|_| char::from(ALPHABET[(next() % ALPHABET.len() as u64) as usize])).collect();
            let target = format!("/{tail}");
            if let Ok(normal) = normalize_path(&target) {
                let p = normal.unwrap_or_else(|| target.clone());
                assert_eq!(normalize_path(&p), Ok(None), "{target:?} -> {p:?} is not a fixed point");
                // No dot-segment left, even for an origin that decodes `%2F`
                // and `%5C` and takes `\` as a separator.
                let loose = p.replace("%2F", "/").replace("%5C", "/").replace('\\', "/");
                assert!(!loose.split('/').any(|seg| seg == "." || seg == ".."), "{target:?} -> {p:?}");
                let params = loose.replace("%3B", ";");
                assert!(!params.split('/').any(|seg| seg.starts_with(".;") || seg.starts_with("..;")), "{target:?}");
            }
            let mut b = Request::builder().uri("/");
            b = b.header("host", HeaderValue::from_bytes(tail.as_bytes()).unwrap_or(HeaderValue::from_static("h")));
            if let (Ok(mut r), Ok(uri)) = (b.body(()), target.parse::<http::Uri>()) {
                *r.uri_mut() = uri;
                if check_viewer_input(&mut r).is_ok() {
                    assert_eq!(normalize_path(r.uri().path()), Ok(None), "{target:?}");
                }
            }
        }
    }

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
        assert_eq!(cache_key("dist", &"/x".repeat(6), &policy, &h, None, &[]), "d4:distt12:/x/x/x/x/x/x");
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
