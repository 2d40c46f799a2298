//! Whether a response may be stored, and for how long: the directives of
//! RFC 9111 bounded by the cache policy's TTLs as CloudFront bounds them
//! (Amazon CloudFront Developer Guide, "Managing how long content stays in
//! the cache (expiration)"):
//!
//! - the freshness lifetime is `s-maxage`, else `max-age`, else
//!   `Expires - Date` (RFC 9111 §4.2.1), clamped to `[min_ttl, max_ttl]`;
//!   without any of them, `default_ttl` (CloudFront's place for the
//!   heuristic freshness of §4.2.2);
//! - the response's age when it arrives (`Age`, the time the fetch took and
//!   the apparent age from `Date`, §4.2.3) counts against that lifetime;
//! - `no-store`, `no-cache`, `private`: not stored when `min_ttl` is 0,
//!   otherwise stored for `min_ttl` (CloudFront's documented behaviour);
//!   `no-cache="field"` and `private="field"` store the response without
//!   those fields (§5.2.2.4, §5.2.2.7);
//! - a targeted field such as `CDN-Cache-Control` (RFC 9213), when present
//!   and valid, replaces `Cache-Control` and `Expires` for this cache; the
//!   TTL bounds still apply to it. One that is not valid (RFC 9213 §2.1: a
//!   known directive with a value of the wrong type, such as
//!   `max-age="600"` or `max-age=1.5`) gives no freshness, but the
//!   `no-store`, `private`, `no-cache`, `must-revalidate` and
//!   `proxy-revalidate` that parsed in it still apply (see
//!   [`CacheControl::parse_targeted`]);
//! - `stale-while-revalidate` and `stale-if-error` (RFC 5861) extend the
//!   window in which a stale copy may be served; `must-revalidate`,
//!   `proxy-revalidate` and an unqualified `no-cache` close it (RFC 9111
//!   §4.2.4 names them as forbidding stale responses).
//!
//! `s-maxage` and stale serving, a decision. For a shared cache `s-maxage`
//! "incorporates the semantics of the proxy-revalidate response directive"
//! (RFC 9111 §5.2.2.10), and §4.2.4 forbids generating a stale response
//! when an applicable `s-maxage` prohibits it. shardgate nevertheless
//! honours `stale-while-revalidate` and `stale-if-error` sent in the same
//! response as `s-maxage`. They are the origin's explicit, more specific
//! instruction about this very response: §4.2.4 itself counts RFC 5861's
//! extension directives as the origin's explicit permission to serve
//! stale, and RFC 5861 §4 lets a stale response be used on error
//! "regardless of other freshness information". And it is how CDNs are
//! driven in practice: Next.js sends `s-maxage=<revalidate>,
//! stale-while-revalidate=<seconds>` for CDNs ("Using a CDN with Next.js";
//! `s-maxage=1, stale-while-revalidate=59` is its long-documented example),
//! and CloudFront honours both directives (AWS What's New, May 2023).
//! Without one of them nothing is ever served stale, `s-maxage` or not; and
//! `must-revalidate` or `proxy-revalidate` (which name stale serving
//! explicitly) still turn both windows off.
//!
//! Parsing follows the RFCs' error handling rather than a happy path:
//! directives are split on commas outside quoted strings; names compare
//! case-insensitively; a directive that appears twice keeps its first value
//! (§4.2.1); a `max-age` or `s-maxage` whose value is not a delta-seconds
//! (`max-age=a1`, `max-age =1`, `max-age='1'`) makes the response stale
//! rather than being ignored (§4.2.1: "consider responses that have invalid
//! freshness information ... to be stale"); values beyond 2^31 are 2^31
//! (§1.2.2); `Age` uses the first member of its list and is ignored when
//! that member is not a delta-seconds (§5.1); an `Expires` that is not an
//! HTTP-date is in the past (§5.3).
//!
//! Functions over header values; the caller passes the clock (only an
//! RFC 850 date's two-digit year reads the current year).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{AGE, CACHE_CONTROL, DATE, ETAG, EXPIRES, HeaderName, LAST_MODIFIED, SET_COOKIE, VARY};

use crate::date::{self, DateField};
use crate::structured::{self, Item, is_tchar};

/// The largest delta-seconds honoured; larger values mean this
/// (RFC 9111 §1.2.2: "the cache MUST consider the value to be 2147483648").
pub const DELTA_SECONDS_MAX: u64 = 2_147_483_648;

/// Longest stale-while-revalidate or stale-if-error window honoured: a year.
pub const MAX_STALE_SECS: u64 = 31_536_000;

/// Most field names a qualified `no-cache` or `private` may list; a longer
/// list counts as the unqualified directive (the safe reading).
pub const MAX_FIELD_NAMES: usize = 32;

/// Most targeted fields a cache may be configured with.
pub const MAX_TARGETED_FIELDS: usize = 8;

/// A header field name (re-exported so that configuration code need not
/// depend on `http`).
pub type FieldName = HeaderName;

/// Checks a configured targeted field name (RFC 9213 §2.1's target list):
/// a valid field name that is not one of the fields it replaces.
pub fn targeted_field(name: &str) -> Result<HeaderName, &'static str> {
    let field = HeaderName::from_bytes(name.as_bytes()).map_err(|_| "is not a valid header field name")?;
    if field == CACHE_CONTROL || field == EXPIRES || field == AGE || field == VARY {
        return Err("is a field a targeted field replaces, not a targeted field");
    }
    Ok(field)
}

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

/// The response directives that matter to a shared cache, from
/// `Cache-Control` or from a targeted field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` without field names (or with a list that does not parse).
    pub no_cache: bool,
    /// The fields of `no-cache="a, b"`: not served without revalidation,
    /// so not stored.
    pub no_cache_fields: Vec<HeaderName>,
    /// `private` without field names.
    pub private: bool,
    /// The fields of `private="a"`: a shared cache must not store them.
    pub private_fields: Vec<HeaderName>,
    /// `max-age`; `Some(0)` when its value was invalid.
    pub max_age: Option<u64>,
    /// `s-maxage`; `Some(0)` when its value was invalid.
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`.
    pub stale_if_error: Option<u64>,
    /// `must-revalidate` or `proxy-revalidate` (the same for a shared
    /// cache, RFC 9111 §5.2.2.8): never serve stale.
    pub must_revalidate: bool,
}

impl CacheControl {
    /// Parses every `Cache-Control` field line of `headers` (RFC 9111 §5.2).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut cc = CacheControl::default();
        for line in headers.get_all(CACHE_CONTROL) {
            for element in list_members(line.as_bytes()) {
                cc.apply(element);
            }
        }
        cc
    }

    /// Parses the targeted field `name` as a Structured Field Dictionary
    /// (RFC 9213 §2.1).
    ///
    /// RFC 9213 §2.1 maps each directive's value to a Structured Field type
    /// (no value: Boolean; delta-seconds: Integer; quoted-string: String),
    /// says implementations "SHOULD NOT consume values that violate these
    /// inferred constraints", and that a field that is empty or fails to
    /// parse as a Dictionary SHOULD be ignored, the cache falling back to
    /// the other cache-control mechanisms. A field in which a known
    /// directive has a value of the wrong type (`max-age="600"`,
    /// `max-age=1.5`) is therefore not valid either: it gives no freshness,
    /// and a cache selects the next targeted field or `Cache-Control`
    /// instead (§2.2: "the first ... field with a valid, non-empty value").
    /// The restrictive directives that did parse in it (`no-store`,
    /// `private`, `no-cache`, `must-revalidate`, `proxy-revalidate`) are
    /// still the origin's explicit word to this cache, and dropping them
    /// would make the cache more permissive than both fields: they are kept
    /// ([`TargetedField::Invalid`]) and still prevent storing and reuse.
    pub fn parse_targeted(headers: &HeaderMap, name: &HeaderName) -> TargetedField {
        let Some(Ok(members)) = structured::dictionary(headers, name) else { return TargetedField::Ignored };
        if members.is_empty() {
            return TargetedField::Ignored;
        }
        let mut cc = CacheControl::default();
        let mut wrong_type = false;
        for (key, item) in &members {
            let seconds = || match item {
                Item::Integer(n) if *n >= 0 => Some((*n as u64).min(DELTA_SECONDS_MAX)),
                _ => None,
            };
            let field = match key.as_str() {
                "max-age" => &mut cc.max_age,
                "s-maxage" => &mut cc.s_maxage,
                "stale-while-revalidate" => &mut cc.stale_while_revalidate,
                "stale-if-error" => &mut cc.stale_if_error,
                "no-store" | "must-revalidate" | "proxy-revalidate" => {
                    match item {
                        Item::Boolean(true) if key == "no-store" => cc.no_store = true,
                        Item::Boolean(true) => cc.must_revalidate = true,
                        Item::Boolean(false) => {}
                        _ => wrong_type = true,
                    }
                    continue;
                }
                "no-cache" | "private" => {
                    let (whole, fields) = if key == "no-cache" {
                        (&mut cc.no_cache, &mut cc.no_cache_fields)
                    } else {
                        (&mut cc.private, &mut cc.private_fields)
                    };
                    match item {
                        Item::Boolean(true) => *whole = true,
                        Item::Boolean(false) => {}
                        Item::String(list) => qualify(whole, fields, Some(list.as_bytes())),
                        _ => wrong_type = true,
                    }
                    continue;
                }
                _ => continue,
            };
            match seconds() {
                Some(n) => *field = Some(n),
                None => wrong_type = true,
            }
        }
        if wrong_type { TargetedField::Invalid(cc.restrictions()) } else { TargetedField::Valid(cc) }
    }

    /// Only the directives that forbid something: storing or sharing
    /// (`no-store`, `private`, `no-cache`, with their field lists) and
    /// serving stale (`must-revalidate`, `proxy-revalidate`).
    fn restrictions(self) -> CacheControl {
        CacheControl {
            no_store: self.no_store,
            no_cache: self.no_cache,
            no_cache_fields: self.no_cache_fields,
            private: self.private,
            private_fields: self.private_fields,
            must_revalidate: self.must_revalidate,
            ..CacheControl::default()
        }
    }

    /// Adds the restrictions of `other` (see [`CacheControl::restrictions`]).
    fn restrict(&mut self, other: &CacheControl) {
        self.no_store |= other.no_store;
        self.no_cache |= other.no_cache;
        self.private |= other.private;
        self.must_revalidate |= other.must_revalidate;
        for (mine, theirs) in
            [(&mut self.no_cache_fields, &other.no_cache_fields), (&mut self.private_fields, &other.private_fields)]
        {
            for name in theirs {
                if !mine.contains(name) {
                    mine.push(name.clone());
                }
            }
        }
    }

    /// Applies one `cache-directive` (`token [ "=" ( token / quoted-string ) ]`).
    fn apply(&mut self, element: &[u8]) {
        let eq = element.iter().position(|&b| b == b'=' || b == b'"');
        let (name, arg) = match eq {
            Some(i) if element[i] == b'=' => (&element[..i], Some(directive_argument(&element[i + 1..]))),
            Some(_) => (element, None),
            None => (element, None),
        };
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            // `max-age =60` is no directive at all, but it plainly meant to
            // give a lifetime: invalid freshness information, so stale.
            let meant = name.split(|&b| b == b' ' || b == b'\t' || b == b'"').next().unwrap_or_default();
            if meant.eq_ignore_ascii_case(b"max-age") {
                self.max_age.get_or_insert(0);
            } else if meant.eq_ignore_ascii_case(b"s-maxage") {
                self.s_maxage.get_or_insert(0);
            }
            return;
        }
        let is = |d: &str| name.eq_ignore_ascii_case(d.as_bytes());
        let seconds = || arg.as_ref().and_then(|a| a.as_deref()).and_then(delta_seconds);
        if is("max-age") {
            // First occurrence wins (RFC 9111 §4.2.1); invalid means stale.
            self.max_age.get_or_insert(seconds().unwrap_or(0));
        } else if is("s-maxage") {
            self.s_maxage.get_or_insert(seconds().unwrap_or(0));
        } else if is("stale-while-revalidate") {
            if self.stale_while_revalidate.is_none() {
                self.stale_while_revalidate = seconds();
            }
        } else if is("stale-if-error") {
            if self.stale_if_error.is_none() {
                self.stale_if_error = seconds();
            }
        } else if is("no-store") {
            self.no_store = true;
        } else if is("must-revalidate") || is("proxy-revalidate") {
            self.must_revalidate = true;
        } else if is("no-cache") {
            match &arg {
                None => self.no_cache = true,
                Some(a) => qualify(&mut self.no_cache, &mut self.no_cache_fields, a.as_deref()),
            }
        } else if is("private") {
            match &arg {
                None => self.private = true,
                Some(a) => qualify(&mut self.private, &mut self.private_fields, a.as_deref()),
            }
        }
    }

    /// The response fields a shared cache must not store.
    pub fn omitted_fields(&self) -> impl Iterator<Item = &HeaderName> {
        self.no_cache_fields.iter().chain(self.private_fields.iter())
    }
}

/// Records the field names of a qualified `no-cache`/`private`; anything
/// that is not a short list of valid field names counts as the unqualified
/// directive.
fn qualify(whole: &mut bool, fields: &mut Vec<HeaderName>, list: Option<&[u8]>) {
    let Some(list) = list else {
        *whole = true;
        return;
    };
    let mut names = Vec::new();
    for member in list_members(list) {
        match HeaderName::from_bytes(&member.to_ascii_lowercase()) {
            Ok(n) if names.len() < MAX_FIELD_NAMES => names.push(n),
            _ => {
                *whole = true;
                return;
            }
        }
    }
    if names.is_empty() {
        *whole = true;
        return;
    }
    for n in names {
        if !fields.contains(&n) {
            fields.push(n);
        }
    }
}

/// A directive's argument: a token, or a quoted-string with its escapes
/// undone (recipients accept both forms, RFC 9111 §5.2). `None` when it is
/// neither (`max-age= 60`, `max-age='60'`).
fn directive_argument(arg: &[u8]) -> Option<Vec<u8>> {
    if let Some(rest) = arg.strip_prefix(b"\"") {
        let mut out = Vec::with_capacity(rest.len());
        let mut escaped = false;
        for (i, &b) in rest.iter().enumerate() {
            if escaped {
                out.push(b);
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                return (i + 1 == rest.len()).then_some(out);
            } else {
                out.push(b);
            }
        }
        return None;
    }
    (!arg.is_empty() && arg.iter().all(|&b| is_tchar(b))).then(|| arg.to_vec())
}

/// `delta-seconds = 1*DIGIT`, saturating at 2^31 (RFC 9111 §1.2.2).
fn delta_seconds(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &b| (n * 10 + u64::from(b - b'0')).min(DELTA_SECONDS_MAX)))
}

/// The members of a comma-separated list (RFC 9110 §5.6.1), split outside
/// quoted strings, trimmed of whitespace, empty members skipped.
pub(crate) fn list_members(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = line;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let (mut quoted, mut escaped, mut end) = (false, false, rest.len());
            for (i, &b) in rest.iter().enumerate() {
                if escaped {
                    escaped = false;
                } else if quoted && b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    quoted = !quoted;
                } else if b == b',' && !quoted {
                    end = i;
                    break;
                }
            }
            let member = rest[..end].trim_ascii();
            rest = rest.get(end + 1..).unwrap_or_default();
            if !member.is_empty() {
                return Some(member);
            }
        }
    })
}

/// A targeted field of one response, as [`CacheControl::parse_targeted`]
/// reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetedField {
    /// Absent, empty, or not a Structured Field Dictionary: as if absent.
    Ignored,
    /// A Dictionary in which a known directive has a value of the wrong
    /// type: ignored for freshness, but its restrictive directives (the
    /// only ones held here) still apply.
    Invalid(CacheControl),
    /// Valid: replaces `Cache-Control` and `Expires` for this cache.
    Valid(CacheControl),
}

/// The directives this cache obeys for a response: the first targeted field
/// of `targeted` that is present and valid (RFC 9213 §2.2), else
/// `Cache-Control`; either way with the restrictive directives of any
/// invalid targeted field before it added (see
/// [`CacheControl::parse_targeted`]). The flag tells whether a targeted
/// field was used (then `Expires` is ignored too).
pub fn directives(headers: &HeaderMap, targeted: &[HeaderName]) -> (CacheControl, bool) {
    let mut restrictions: Option<CacheControl> = None;
    let (mut cc, from_targeted) = 'chosen: {
        for name in targeted {
            match CacheControl::parse_targeted(headers, name) {
                TargetedField::Valid(cc) => break 'chosen (cc, true),
                TargetedField::Invalid(r) => restrictions.get_or_insert_with(CacheControl::default).restrict(&r),
                TargetedField::Ignored => {}
            }
        }
        (CacheControl::parse(headers), false)
    };
    if let Some(r) = &restrictions {
        cc.restrict(r);
    }
    (cc, from_targeted)
}

/// The response's `Age`: the first member of its list, if that member is a
/// delta-seconds; otherwise the field is ignored (RFC 9111 §5.1).
pub fn age_of(headers: &HeaderMap) -> Option<Duration> {
    let first = headers.get_all(AGE).iter().flat_map(|line| list_members(line.as_bytes())).next()?;
    delta_seconds(first).map(Duration::from_secs)
}

/// When a response was asked for and when it arrived (RFC 9111 §4.2.3's
/// `request_time` and `response_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// When the request that produced the response was sent.
    pub request_time: SystemTime,
    /// When the response head arrived.
    pub response_time: SystemTime,
}

impl Timing {
    /// A response that arrived at once.
    pub fn at(t: SystemTime) -> Self {
        Timing { request_time: t, response_time: t }
    }
}

fn whole_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The age of a response when it arrived (RFC 9111 §4.2.3's
/// `corrected_initial_age`): the larger of the apparent age
/// (`response_time - Date`) and `Age` plus the time the request took. Whole
/// seconds, as `Date` and `Age` are.
pub fn initial_age(headers: &HeaderMap, timing: Timing) -> Duration {
    let response = whole_secs(timing.response_time);
    let apparent = date::first(headers, &DATE).valid().map_or(0, |d| response.saturating_sub(whole_secs(d)));
    let delay = timing.response_time.duration_since(timing.request_time).map_or(0, |d| d.as_secs());
    let corrected = age_of(headers).map_or(0, |a| a.as_secs()).saturating_add(delay);
    Duration::from_secs(apparent.max(corrected).min(DELTA_SECONDS_MAX))
}

/// What storing a response means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness left when the response arrived (lifetime minus its age).
    pub ttl: Duration,
    /// Its age when it arrived; the `Age` sent downstream grows from it.
    pub initial_age: Duration,
    /// `stale-while-revalidate` window after expiry.
    pub stale_while_revalidate: Duration,
    /// `stale-if-error` window after expiry.
    pub stale_if_error: Duration,
    /// Fields not to store (qualified `no-cache` and `private`).
    pub omit: Vec<HeaderName>,
}

/// What the cache may do with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storability {
    /// Store it.
    Store(Freshness),
    /// Do not store it; the reason is for logs and metrics.
    Skip(&'static str),
}

/// Status codes a shared cache stores with the cache policy's default TTL
/// when the origin gives no lifetime (RFC 9110 §15.1 "heuristically
/// cacheable", minus the ones an asset edge has no use for). 404 and the
/// other errors CloudFront caches follow [`crate::errors`] instead.
pub fn cacheable_status(status: u16) -> bool {
    matches!(status, 200 | 203 | 204 | 300 | 301 | 308 | 410)
}

/// Status codes stored only with an explicit lifetime from the origin
/// (`s-maxage`, `max-age` or `Expires`): the temporary redirects. RFC 9111
/// §3 lets a cache store any status it understands when the response has
/// explicit freshness, and §4.2.2 keeps heuristic freshness (the default
/// TTL's place) to the heuristically cacheable ones. CloudFront caches 3xx
/// "according to the settings in your CloudFront distribution and the
/// headers in the response", and 307 and 308 "only when you include the
/// Cache-Control header" (CloudFront Developer Guide, "How CloudFront
/// processes HTTP 3xx status codes from your origin"). 308 stays
/// heuristically cacheable here, as RFC 9110 §15.4.9 makes it.
pub fn explicitly_cacheable_status(status: u16) -> bool {
    matches!(status, 302 | 303 | 307)
}

/// Whether `Vary` makes the response unusable for any other request: a `*`
/// member, or a member that is not a field name (RFC 9111 §4.1: such a
/// response "always fails to match").
pub(crate) fn varies_on_everything(headers: &HeaderMap) -> bool {
    headers
        .get_all(VARY)
        .iter()
        .flat_map(|v| list_members(v.as_bytes()))
        .any(|m| m == b"*" || !m.iter().all(|&b| is_tchar(b)))
}

/// Decides whether and for how long to store a response. `targeted` is the
/// ordered list of targeted cache-control fields this cache obeys (RFC 9213),
/// empty to obey `Cache-Control` only.
pub fn storability(
    status: u16,
    headers: &HeaderMap,
    bounds: TtlBounds,
    targeted: &[HeaderName],
    timing: Timing,
) -> Storability {
    let heuristic = cacheable_status(status);
    if !heuristic && !explicitly_cacheable_status(status) {
        return Storability::Skip("status");
    }
    if varies_on_everything(headers) {
        return Storability::Skip("vary-star");
    }
    let (cc, from_targeted) = directives(headers, targeted);
    let explicit = cc.s_maxage.is_some()
        || cc.max_age.is_some()
        || (!from_targeted && !matches!(date::first(headers, &EXPIRES), DateField::Absent));
    if !heuristic && !explicit {
        // A 302 without a lifetime: no default TTL for it (see
        // explicitly_cacheable_status).
        return Storability::Skip("status");
    }
    let omit: Vec<HeaderName> = cc.omitted_fields().cloned().collect();
    if headers.contains_key(SET_COOKIE) && !omit.contains(&SET_COOKIE) {
        // One viewer's cookie must never be served to another.
        return Storability::Skip("set-cookie");
    }
    // Which directives may turn stale serving off, and why s-maxage is not
    // one of them here: see the module documentation.
    let (swr, sie) = if cc.must_revalidate || cc.no_cache {
        (Duration::ZERO, Duration::ZERO)
    } else {
        // Bounded: an origin's absurd window must not overflow the
        // instants it is added to.
        (
            Duration::from_secs(cc.stale_while_revalidate.unwrap_or(0).min(MAX_STALE_SECS)),
            Duration::from_secs(cc.stale_if_error.unwrap_or(0).min(MAX_STALE_SECS)),
        )
    };
    let initial_age = initial_age(headers, timing);
    if cc.no_store || cc.no_cache || cc.private {
        if bounds.min.is_zero() {
            return Storability::Skip("cache-control");
        }
        return Storability::Store(Freshness {
            ttl: bounds.min,
            initial_age,
            stale_while_revalidate: swr,
            stale_if_error: sie,
            omit,
        });
    }
    let lifetime = if let Some(s) = cc.s_maxage.or(cc.max_age) {
        Some(Duration::from_secs(s))
    } else if from_targeted {
        // RFC 9213 §2.1: the targeted field replaces Expires too.
        None
    } else {
        match date::first(headers, &EXPIRES) {
            DateField::Absent => None,
            // An invalid Expires means "already expired" (RFC 9111 §5.3).
            DateField::Invalid => Some(Duration::ZERO),
            DateField::Valid(expires) => {
                let date = date::first(headers, &DATE).valid().unwrap_or(timing.response_time);
                Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
            }
        }
    };
    let lifetime = match lifetime {
        Some(t) => t.clamp(bounds.min, bounds.max.max(bounds.min)),
        None => bounds.default,
    };
    let ttl = lifetime.saturating_sub(initial_age);
    if ttl.is_zero() && bounds.min.is_zero() && swr.is_zero() && sie.is_zero() {
        // Stale on arrival: still worth keeping when it has validators.
        if !headers.contains_key(ETAG) && !headers.contains_key(LAST_MODIFIED) {
            return Storability::Skip("stale-on-arrival");
        }
    }
    Storability::Store(Freshness { ttl, initial_age, stale_while_revalidate: swr, stale_if_error: sie, omit })
}

#[cfg(test)]
mod tests;
