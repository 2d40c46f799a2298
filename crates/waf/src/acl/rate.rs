//! `RateBasedStatement`'s counters: requests per aggregation instance over
//! a sliding window, in a bounded table (AWS WAF developer guide,
//! "Rate-based rule statement" and "Rate-based rule aggregation instances
//! and counts"). An instance is the client address (`IP`), the first
//! address of a header (`FORWARDED_IP`), every request the scope-down
//! statement matches together (`CONSTANT`), or a combination of 1 to 5
//! request components (`CUSTOM_KEYS`).
//!
//! A request's [`Key`] is its instance, or no instance at all:
//! - a request missing a component is not counted and does not match (AWS:
//!   "Web requests that are missing any of the components specified in the
//!   aggregation keys are omitted from the rate-based rule evaluation and
//!   handling"); so is one whose forwarded address or TLS fingerprint is
//!   unreadable under `FallbackBehavior: NO_MATCH`;
//! - under `FallbackBehavior: MATCH` such a request matches the statement
//!   without being counted (AWS: "treat the web request as matching the
//!   rule statement; AWS WAF applies the rule action to the request"), so a
//!   junk `X-Forwarded-For` or a plain connection cannot share one
//!   allowance among every client that sends it.
//!
//! Custom keys on parts a client writes (a header, a cookie, a query
//! argument, the path) let one client create instances at will (adding the
//! address to the key does not stop it), and fill the bounded table
//! ([`RATE_MAX_KEYS`] instances per rule); once it is full, new instances
//! are not limited until old ones are two windows quiet. Prefer the
//! address alone, or keys a client cannot vary per request.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use super::field::{cookie_pairs, fallback, query_pairs, transforms};
use super::forwarded::{First, ForwardedIp};
use super::statement::short_label;
use super::{RequestView, WafError, err};
use crate::json::{CustomKeyJson, RateBasedJson};
use crate::transform::{Transform, apply_all};

/// Most aggregation instances a rate-based rule tracks at once.
pub(super) const RATE_MAX_KEYS: usize = 100_000;
/// Most custom keys (AWS: 1 to 5).
const MAX_CUSTOM_KEYS: usize = 5;

/// A request's place in a rate-based rule's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    /// Counted in this aggregation instance.
    Instance(u128),
    /// Not counted, and the statement does not match: a component is
    /// missing, or unreadable under `FallbackBehavior: NO_MATCH`.
    Skip,
    /// Not counted, and the statement matches: a component is unreadable
    /// under `FallbackBehavior: MATCH`.
    Match,
}

/// One component of a custom aggregation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CustomKey {
    Header {
        name: String,
        transforms: Vec<Transform>,
    },
    /// Cookie names are case-sensitive (AWS).
    Cookie {
        name: String,
        transforms: Vec<Transform>,
    },
    /// Argument names are compared without case, as `SingleQueryArgument`'s.
    QueryArgument {
        name: String,
        transforms: Vec<Transform>,
    },
    QueryString {
        transforms: Vec<Transform>,
    },
    HttpMethod,
    ForwardedIp,
    Ip,
    /// The labels of this namespace that earlier rules added; the namespace
    /// as rules write labels (a fully qualified one is shortened as
    /// `LabelMatchStatement`'s key is).
    LabelNamespace(String),
    UriPath {
        transforms: Vec<Transform>,
    },
    /// A TLS fingerprint; without one (a plain connection), `fallback`
    /// makes the statement match without counting (`MATCH`) or skips the
    /// request (`NO_MATCH`).
    Ja3 {
        fallback: bool,
    },
    Ja4 {
        fallback: bool,
    },
}

impl CustomKey {
    /// Whether a stream connection (no request) has the component.
    fn is_connection_level(&self) -> bool {
        matches!(self, CustomKey::Ip | CustomKey::LabelNamespace(_) | CustomKey::Ja3 { .. } | CustomKey::Ja4 { .. })
    }
}

/// How requests are grouped into aggregation instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Aggregate {
    Ip,
    ForwardedIp(ForwardedIp),
    Constant,
    Custom { keys: Vec<CustomKey>, forwarded: Option<ForwardedIp> },
}

impl Aggregate {
    /// Compiles `AggregateKeyType` with its `ForwardedIPConfig` and `CustomKeys`.
    pub(super) fn compile(p: &str, r: &RateBasedJson) -> Result<Aggregate, WafError> {
        let forwarded = match &r.forwarded_ip_config {
            None => None,
            Some(f) => {
                Some(ForwardedIp::compile(&format!("{p}.ForwardedIPConfig"), &f.header_name, &f.fallback_behavior)?)
            }
        };
        let custom = r.custom_keys.as_deref();
        let kind = r.aggregate_key_type.as_str();
        if custom.is_some() && kind != "CUSTOM_KEYS" {
            return Err(err(&format!("{p}.CustomKeys"), "only with AggregateKeyType CUSTOM_KEYS"));
        }
        let uses_forwarded =
            kind == "FORWARDED_IP" || custom.is_some_and(|keys| keys.iter().any(|k| k.forwarded_ip.is_some()));
        match (&forwarded, uses_forwarded) {
            (None, true) => {
                return Err(err(
                    &format!("{p}.ForwardedIPConfig"),
                    "required with FORWARDED_IP or a ForwardedIP custom key: it names the header",
                ));
            }
            (Some(_), false) => {
                return Err(err(
                    &format!("{p}.ForwardedIPConfig"),
                    "only used with FORWARDED_IP or a ForwardedIP custom key",
                ));
            }
            _ => {}
        }
        Ok(match kind {
            "IP" => Aggregate::Ip,
            "FORWARDED_IP" => Aggregate::ForwardedIp(forwarded.ok_or_else(|| err(p, "ForwardedIPConfig required"))?),
            "CONSTANT" => {
                // AWS: "With this option, you must configure the ScopeDownStatement property."
                if r.scope_down_statement.is_none() {
                    return Err(err(
                        &format!("{p}.ScopeDownStatement"),
                        "required with AggregateKeyType CONSTANT: it says which requests count together",
                    ));
                }
                Aggregate::Constant
            }
            "CUSTOM_KEYS" => {
                let list = custom.unwrap_or_default();
                if list.is_empty() || list.len() > MAX_CUSTOM_KEYS {
                    return Err(err(&format!("{p}.CustomKeys"), "1 to 5 custom keys with CUSTOM_KEYS"));
                }
                let keys = list
                    .iter()
                    .enumerate()
                    .map(|(i, k)| custom_key(&format!("{p}.CustomKeys[{i}]"), k))
                    .collect::<Result<Vec<_>, _>>()?;
                // AWS: "When you specify an IP or forwarded IP in the custom
                // key settings, you must also specify at least one other key."
                if let [only @ (CustomKey::Ip | CustomKey::ForwardedIp)] = keys.as_slice() {
                    let (name, kind) =
                        if *only == CustomKey::Ip { ("IP", "IP") } else { ("ForwardedIP", "FORWARDED_IP") };
                    return Err(err(
                        &format!("{p}.CustomKeys"),
                        format!(
                            "a {name} custom key needs at least one other key (AWS); to count by the address alone, use AggregateKeyType {kind}"
                        ),
                    ));
                }
                Aggregate::Custom { keys, forwarded }
            }
            o => {
                return Err(err(
                    &format!("{p}.AggregateKeyType"),
                    format!("{o:?} is not IP, FORWARDED_IP, CONSTANT or CUSTOM_KEYS"),
                ));
            }
        })
    }

    /// Whether a component is a TLS fingerprint.
    pub(super) fn uses_fingerprints(&self) -> bool {
        match self {
            Aggregate::Custom { keys, .. } => {
                keys.iter().any(|k| matches!(k, CustomKey::Ja3 { .. } | CustomKey::Ja4 { .. }))
            }
            _ => false,
        }
    }

    /// Whether a stream connection has every component (no request fields).
    pub(super) fn is_connection_level(&self) -> bool {
        match self {
            Aggregate::Ip | Aggregate::Constant => true,
            Aggregate::ForwardedIp(_) => false,
            Aggregate::Custom { keys, .. } => keys.iter().all(CustomKey::is_connection_level),
        }
    }
}

fn custom_key(p: &str, k: &CustomKeyJson) -> Result<CustomKey, WafError> {
    let tt = |name: &str, list| transforms(&format!("{p}.{name}.TextTransformations"), list);
    let named = |name: &str, n: &str| -> Result<String, WafError> {
        if n.is_empty() || n.len() > 64 {
            return Err(err(&format!("{p}.{name}.Name"), "1 to 64 characters"));
        }
        Ok(n.to_owned())
    };
    let mut found = Vec::new();
    if let Some(h) = &k.header {
        found.push(CustomKey::Header {
            name: named("Header", &h.name)?.to_ascii_lowercase(),
            transforms: tt("Header", &h.text_transformations)?,
        });
    }
    if let Some(c) = &k.cookie {
        found.push(CustomKey::Cookie {
            name: named("Cookie", &c.name)?,
            transforms: tt("Cookie", &c.text_transformations)?,
        });
    }
    if let Some(q) = &k.query_argument {
        found.push(CustomKey::QueryArgument {
            name: named("QueryArgument", &q.name)?,
            transforms: tt("QueryArgument", &q.text_transformations)?,
        });
    }
    if let Some(q) = &k.query_string {
        found.push(CustomKey::QueryString { transforms: tt("QueryString", &q.text_transformations)? });
    }
    if k.http_method.is_some() {
        found.push(CustomKey::HttpMethod);
    }
    if k.forwarded_ip.is_some() {
        found.push(CustomKey::ForwardedIp);
    }
    if k.ip.is_some() {
        found.push(CustomKey::Ip);
    }
    if let Some(l) = &k.label_namespace {
        // AWS: ^[0-9A-Za-z_\-:]+:$, 1 to 1024. Rules' labels are kept as
        // written, so a fully qualified namespace
        // (`awswaf:<account>:webacl:<name>:<ns>:`) is shortened to `<ns>:`.
        let short = short_label(&l.namespace);
        let ok = l.namespace.len() <= 1024
            && short.len() > 1
            && short.ends_with(':')
            && l.namespace.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-:".contains(&b));
        if !ok {
            return Err(err(&format!("{p}.LabelNamespace.Namespace"), "letters, digits, _ - and :, ending with :"));
        }
        found.push(CustomKey::LabelNamespace(short.to_owned()));
    }
    if let Some(u) = &k.uri_path {
        found.push(CustomKey::UriPath { transforms: tt("UriPath", &u.text_transformations)? });
    }
    if let Some(f) = &k.ja3_fingerprint {
        found.push(CustomKey::Ja3 {
            fallback: fallback(&format!("{p}.JA3Fingerprint.FallbackBehavior"), &f.fallback_behavior)?,
        });
    }
    if let Some(f) = &k.ja4_fingerprint {
        found.push(CustomKey::Ja4 {
            fallback: fallback(&format!("{p}.JA4Fingerprint.FallbackBehavior"), &f.fallback_behavior)?,
        });
    }
    if k.asn.is_some() {
        return Err(err(&format!("{p}.ASN"), "ASN keys are not supported by shardgate (no ASN database)"));
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(err(p, "a custom key needs exactly one member (e.g. Header)")),
        _ => Err(err(p, "a custom key has exactly one member")),
    }
}

/// An address as a table key (IPv4-mapped addresses as IPv4).
pub(super) fn ip_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Requests per aggregation instance over a window, estimated from the
/// current and previous fixed windows (the sliding-window approximation:
/// the previous window's count weighs what is left of it).
#[derive(Debug)]
pub struct RateLimiter {
    window: std::time::Duration,
    limit: u64,
    aggregate: Aggregate,
    epoch: std::time::Instant,
    /// Keys of custom-key instances: two independent, secret SipHash keys
    /// make a 128-bit digest of the components that no client can aim at.
    hashers: [std::collections::hash_map::RandomState; 2],
    /// Per instance: (window index, count in it, count in the one before);
    /// and the window index of the last sweep of old instances.
    pub(super) counts: std::sync::Mutex<(RateCounts, Option<u64>)>,
}

/// Per instance: (window index, count in it, count in the one before).
type RateCounts = HashMap<u128, (u64, u64, u64)>;

impl RateLimiter {
    pub(super) fn new(window: std::time::Duration, limit: u64, aggregate: Aggregate) -> Self {
        RateLimiter {
            window,
            limit,
            aggregate,
            epoch: std::time::Instant::now(),
            hashers: Default::default(),
            counts: std::sync::Mutex::new((HashMap::new(), None)),
        }
    }

    /// Whether `other` counts the same way (its counts can be carried over).
    pub(super) fn same_shape(&self, other: &RateLimiter) -> bool {
        self.window == other.window && self.limit == other.limit && self.aggregate == other.aggregate
    }

    /// How instances are formed.
    pub(super) fn aggregate(&self) -> &Aggregate {
        &self.aggregate
    }

    /// The request's aggregation instance, or why it has none (see [`Key`]).
    /// A missing component skips the request even when another component's
    /// fallback would match: AWS omits such requests from the rule.
    pub(super) fn key(&self, req: &RequestView<'_>, labels: &[Arc<str>]) -> Key {
        let forwarded = |f: &ForwardedIp| match f.first(req.headers) {
            First::Ip(ip) => Ok(ip),
            First::Missing => Err(Key::Skip),
            First::Unparsable if f.fallback_match => Err(Key::Match),
            First::Unparsable => Err(Key::Skip),
        };
        let (keys, forwarded_config) = match &self.aggregate {
            Aggregate::Ip => return Key::Instance(ip_key(req.client_ip)),
            Aggregate::Constant => return Key::Instance(0),
            Aggregate::ForwardedIp(f) => return forwarded(f).map_or_else(|k| k, |ip| Key::Instance(ip_key(ip))),
            Aggregate::Custom { keys, forwarded } => (keys, forwarded),
        };
        let mut h = [self.hashers[0].build_hasher(), self.hashers[1].build_hasher()];
        let mut feed = |tag: u8, bytes: &[u8]| {
            for x in &mut h {
                x.write_u8(tag);
                x.write_usize(bytes.len());
                x.write(bytes);
            }
        };
        // A component unreadable under FallbackBehavior MATCH: the request
        // matches, unless another component is missing.
        let mut fallback_matched = false;
        for (i, k) in keys.iter().enumerate() {
            let tag = i as u8;
            match k {
                CustomKey::Header { name, transforms } => {
                    let mut any = false;
                    for v in req.headers.get_all(name.as_str()) {
                        feed(tag, &apply_all(transforms, v.as_bytes()));
                        any = true;
                    }
                    if !any {
                        return Key::Skip;
                    }
                }
                CustomKey::Cookie { name, transforms } => {
                    let Some((_, v)) = cookie_pairs(req.headers).find(|(n, _)| *n == name.as_bytes()) else {
                        return Key::Skip;
                    };
                    feed(tag, &apply_all(transforms, v));
                }
                CustomKey::QueryArgument { name, transforms } => {
                    let Some((_, v)) = query_pairs(req.query).find(|(k, _)| k.eq_ignore_ascii_case(name)) else {
                        return Key::Skip;
                    };
                    feed(tag, &apply_all(transforms, v.as_bytes()));
                }
                CustomKey::QueryString { transforms } => {
                    if req.query.is_empty() {
                        return Key::Skip;
                    }
                    feed(tag, &apply_all(transforms, req.query.as_bytes()));
                }
                CustomKey::UriPath { transforms } => feed(tag, &apply_all(transforms, req.uri_path.as_bytes())),
                CustomKey::HttpMethod => feed(tag, req.method.as_bytes()),
                CustomKey::Ip => feed(tag, &ip_key(req.client_ip).to_be_bytes()),
                CustomKey::ForwardedIp => {
                    // Compile requires the config with a ForwardedIP key.
                    let Some(f) = forwarded_config else { return Key::Skip };
                    match forwarded(f) {
                        Ok(ip) => feed(tag, &ip_key(ip).to_be_bytes()),
                        Err(Key::Match) => fallback_matched = true,
                        Err(_) => return Key::Skip,
                    }
                }
                CustomKey::LabelNamespace(ns) => {
                    // AWS counts each distinct label of the namespace: the
                    // same labels in another order, or twice, are one instance.
                    let mut matching: Vec<&str> =
                        labels.iter().map(|l| &**l).filter(|l| l.starts_with(ns.as_str())).collect();
                    if matching.is_empty() {
                        return Key::Skip;
                    }
                    matching.sort_unstable();
                    matching.dedup();
                    for l in matching {
                        feed(tag, l.as_bytes());
                    }
                }
                CustomKey::Ja3 { fallback } | CustomKey::Ja4 { fallback } => match req.tls {
                    Some(f) => {
                        let v = if matches!(k, CustomKey::Ja3 { .. }) { f.ja3() } else { f.ja4() };
                        feed(tag, v.as_bytes());
                    }
                    None if *fallback => fallback_matched = true,
                    None => return Key::Skip,
                },
            }
        }
        if fallback_matched {
            return Key::Match;
        }
        let [a, b] = h;
        Key::Instance(u128::from(a.finish()) << 64 | u128::from(b.finish()))
    }

    /// Counts one request of instance `key` at `now`; whether its rate is
    /// over the limit.
    pub(super) fn hit(&self, key: u128, now: std::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.epoch);
        let w = self.window.as_nanos().max(1);
        let index = (elapsed.as_nanos() / w) as u64;
        let into = (elapsed.as_nanos() % w) as f64 / w as f64;
        let mut guard = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, swept) = &mut *guard;
        if map.len() >= RATE_MAX_KEYS && !map.contains_key(&key) {
            // Forget instances quiet for two windows, at most once per
            // window: a flood of new instances must not make every request
            // scan the table under the lock.
            if *swept != Some(index) {
                map.retain(|_, (i, _, _)| *i + 1 >= index);
                *swept = Some(index);
            }
            if map.len() >= RATE_MAX_KEYS {
                // Bounded memory first: an untracked instance is not limited.
                return false;
            }
        }
        let e = map.entry(key).or_insert((index, 0, 0));
        if e.0 != index {
            e.2 = if e.0 + 1 == index { e.1 } else { 0 };
            e.1 = 0;
            e.0 = index;
        }
        e.1 += 1;
        let estimate = e.1 as f64 + e.2 as f64 * (1.0 - into);
        estimate > self.limit as f64
    }
}
