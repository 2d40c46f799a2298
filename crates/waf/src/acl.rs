//! A web ACL compiled once and evaluated per request: rules in `Priority`
//! order, each a statement tree; `Allow` and `Block` end the evaluation,
//! `Count` records the match and goes on; rule labels are added when a rule
//! matches, for later rules' `LabelMatchStatement`; the `DefaultAction`
//! applies when no terminating rule matched (AWS WAF developer guide,
//! "How AWS WAF processes a web ACL"; reference §3.1).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::detect;
use crate::geo::GeoDb;
use crate::json::{
    ActionJson, FieldJson, IpSetJson, MultiJson, RegexSetJson, RuleJson, StatementJson, TransformJson, WebAclJson,
};
use crate::transform::{Transform, apply_all};

/// Most rules in one web ACL.
pub const MAX_RULES: usize = 1000;
/// Deepest statement nesting.
const MAX_DEPTH: usize = 20;
/// Compiled regex size bound (the `regex` crate's NFA), per pattern.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Longest `SearchString` (AWS: 200 bytes) and `RegexString` (AWS: 512).
const MAX_SEARCH: usize = 200;
const MAX_REGEX: usize = 512;
/// What AWS inspects of headers and cookies: the first 8 KiB and 200 of them.
const HEADERS_MAX_BYTES: usize = 8 * 1024;
const HEADERS_MAX_COUNT: usize = 200;
/// Body bytes inspected (CloudFront's default, 16 KiB).
pub const BODY_MAX_BYTES: usize = 16 * 1024;
/// Most addresses in one IP set (AWS: 10,000).
const MAX_ADDRESSES: usize = 10_000;

/// A compile error with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct WafError {
    /// `Rules[0].Statement.OrStatement.Statements[1].RegexMatchStatement.RegexString`.
    pub path: String,
    /// Why.
    pub reason: String,
}

fn err(path: &str, reason: impl Into<String>) -> WafError {
    WafError { path: path.to_owned(), reason: reason.into() }
}

/// The request as the WAF sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// `GET`, `HEAD`, ...
    pub method: &'a str,
    /// The path as received (not decoded).
    pub uri_path: &'a str,
    /// The query string without `?`, as received.
    pub query: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// The first bytes of the body, and whether there were more.
    pub body: (&'a [u8], bool),
    /// The connection's client address.
    pub client_ip: IpAddr,
}

/// What ends an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Refuse it.
    Block(BlockResponse),
}

/// The response a block sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockResponse {
    /// Status, 403 by default.
    pub status: u16,
    /// Extra headers (`x-amzn-waf-` prefixed, as AWS does).
    pub headers: Vec<(String, String)>,
    /// Body and content type, if a custom body was named.
    pub body: Option<(String, String)>,
}

impl BlockResponse {
    fn default_403() -> Self {
        BlockResponse { status: 403, headers: Vec::new(), body: None }
    }
}

/// The outcome of evaluating one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Allow or block.
    pub action: Action,
    /// The rule that decided, `None` for the default action.
    pub rule: Option<Arc<str>>,
    /// Rules with `Count` that matched, in evaluation order.
    pub counted: Vec<Arc<str>>,
    /// Labels added by matching rules.
    pub labels: Vec<Arc<str>>,
}

/// A resolved IP set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    nets: Vec<IpNet>,
}

impl IpSet {
    /// Validates `CreateIPSet` JSON.
    pub fn compile(json: &IpSetJson) -> Result<Self, WafError> {
        let version = json.ip_address_version.as_deref();
        if !matches!(version, None | Some("IPV4") | Some("IPV6")) {
            return Err(err("IPAddressVersion", "must be IPV4 or IPV6"));
        }
        let list = json.addresses.as_deref().unwrap_or_default();
        if list.len() > MAX_ADDRESSES {
            return Err(err("Addresses", format!("at most {MAX_ADDRESSES} addresses")));
        }
        let mut nets = Vec::with_capacity(list.len());
        for (i, a) in list.iter().enumerate() {
            let net: IpNet = a
                .parse()
                .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| err(&format!("Addresses[{i}]"), format!("{a:?} is not an IP address or CIDR")))?;
            // AWS accepts every prefix length but /0.
            if net.prefix_len() == 0 {
                return Err(err(&format!("Addresses[{i}]"), "a /0 range is not allowed"));
            }
            let family_ok = match version {
                Some("IPV4") => net.addr().is_ipv4(),
                Some("IPV6") => net.addr().is_ipv6(),
                _ => true,
            };
            if !family_ok {
                return Err(err(&format!("Addresses[{i}]"), format!("{a} does not match IPAddressVersion")));
            }
            nets.push(net.trunc());
        }
        Ok(IpSet { nets })
    }

    /// Whether `ip` is in the set (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// A resolved regex pattern set.
#[derive(Debug, Clone)]
pub struct RegexPatternSet {
    set: RegexSet,
}

impl PartialEq for RegexPatternSet {
    fn eq(&self, other: &Self) -> bool {
        self.set.patterns() == other.set.patterns()
    }
}

fn regex(path: &str, pattern: &str) -> Result<Regex, WafError> {
    if pattern.is_empty() || pattern.len() > MAX_REGEX {
        return Err(err(path, format!("must be 1 to {MAX_REGEX} characters")));
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| err(path, regex_reason(&e)))
}

fn regex_reason(e: &regex::Error) -> String {
    // AWS's dialect is PCRE without backreferences, look-around, atomic
    // groups, possessive quantifiers, recursion and callouts
    // (`waf-rule-statement-type-regex-match.md`); the `regex` crate runs in
    // linear time and refuses those too.
    let msg = e.to_string().replace('\n', " ");
    format!("not a supported regular expression (linear-time dialect: no backreferences or look-around): {msg}")
}

impl RegexPatternSet {
    /// Validates `CreateRegexPatternSet` JSON.
    pub fn compile(json: &RegexSetJson) -> Result<Self, WafError> {
        let list = json.regular_expression_list.as_deref().unwrap_or_default();
        if list.is_empty() || list.len() > 10 {
            // AWS: at most 10 regexes per set.
            return Err(err("RegularExpressionList", "must hold 1 to 10 regular expressions"));
        }
        let mut patterns = Vec::with_capacity(list.len());
        for (i, r) in list.iter().enumerate() {
            let path = format!("RegularExpressionList[{i}].RegexString");
            regex(&path, &r.regex_string)?;
            patterns.push(r.regex_string.clone());
        }
        let set = RegexSetBuilder::new(&patterns)
            .size_limit(REGEX_SIZE_LIMIT * 4)
            .dfa_size_limit(REGEX_SIZE_LIMIT * 4)
            .build()
            .map_err(|e| err("RegularExpressionList", regex_reason(&e)))?;
        Ok(RegexPatternSet { set })
    }
}

/// How compile finds the sets a web ACL refers to.
pub trait Sets {
    /// The IP set named by `id`.
    fn ip_set(&self, id: &str) -> Option<Arc<IpSet>>;
    /// The regex pattern set named by `id`.
    fn regex_set(&self, id: &str) -> Option<Arc<RegexPatternSet>>;
    /// The country database, if the gateway has one. `Err` carries why a
    /// `GeoMatchStatement` cannot be compiled without one.
    fn geo(&self) -> Result<Option<Arc<GeoDb>>, String> {
        Err("GeoMatchStatement needs a country database: set waf.geoip_database in the bootstrap file".into())
    }
}

/// No sets at all (syntax checks before the references are known).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSets;

impl Sets for NoSets {
    fn ip_set(&self, _: &str) -> Option<Arc<IpSet>> {
        Some(Arc::new(IpSet::default()))
    }
    fn regex_set(&self, _: &str) -> Option<Arc<RegexPatternSet>> {
        Some(Arc::new(RegexPatternSet { set: RegexSet::empty() }))
    }
    fn geo(&self) -> Result<Option<Arc<GeoDb>>, String> {
        // Syntax checks only: the gateway's database is checked when compiled.
        Ok(None)
    }
}

/// The id an `ARN` names: the last `/` segment of an AWS ARN
/// (`arn:aws:wafv2:…:ipset/<name>/<id>`), or the string itself.
pub fn arn_id(arn: &str) -> &str {
    if arn.starts_with("arn:") { arn.rsplit('/').next().unwrap_or(arn) } else { arn }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    All,
    Key,
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Oversize {
    Continue,
    Match,
    NoMatch,
}

#[derive(Debug, Clone)]
enum Pattern {
    All,
    Included(Vec<String>),
    Excluded(Vec<String>),
}

impl Pattern {
    fn admits(&self, name: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Included(list) => list.iter().any(|n| n.eq_ignore_ascii_case(name)),
            Pattern::Excluded(list) => !list.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }
}

#[derive(Debug, Clone)]
enum Field {
    UriPath,
    QueryString,
    SingleQueryArgument(String),
    AllQueryArguments,
    SingleHeader(String),
    Headers { pattern: Pattern, scope: Scope, oversize: Oversize },
    Cookies { pattern: Pattern, scope: Scope, oversize: Oversize },
    Method,
    Body(Oversize),
}

fn query_pairs(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

impl Field {
    fn compile(path: &str, f: &FieldJson) -> Result<Self, WafError> {
        let mut found: Vec<Field> = Vec::new();
        if f.uri_path.is_some() {
            found.push(Field::UriPath);
        }
        if f.query_string.is_some() {
            found.push(Field::QueryString);
        }
        if let Some(n) = &f.single_query_argument {
            found.push(Field::SingleQueryArgument(n.name.to_ascii_lowercase()));
        }
        if f.all_query_arguments.is_some() {
            found.push(Field::AllQueryArguments);
        }
        if let Some(n) = &f.single_header {
            found.push(Field::SingleHeader(n.name.to_ascii_lowercase()));
        }
        if let Some(h) = &f.headers {
            let (pattern, scope, oversize) = multi(&format!("{path}.Headers"), h)?;
            found.push(Field::Headers { pattern, scope, oversize });
        }
        if let Some(c) = &f.cookies {
            let (pattern, scope, oversize) = multi(&format!("{path}.Cookies"), c)?;
            found.push(Field::Cookies { pattern, scope, oversize });
        }
        if f.method.is_some() {
            found.push(Field::Method);
        }
        if let Some(b) = &f.body {
            found
                .push(Field::Body(oversize(&format!("{path}.Body.OversizeHandling"), b.oversize_handling.as_deref())?));
        }
        if f.json_body.is_some() {
            return Err(err(&format!("{path}.JsonBody"), "JsonBody is not supported by shardgate yet; use Body"));
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(err(path, "exactly one field to match is required")),
            _ => Err(err(path, "set exactly one field to match")),
        }
    }

    /// Pushes the values this field yields onto `items` (empty on entry).
    /// Returns `Some(true)`/`Some(false)` when oversize handling decides
    /// without inspection.
    fn values<'a>(&self, r: &RequestView<'a>, items: &mut Vec<Cow<'a, [u8]>>) -> Option<bool> {
        match self {
            Field::UriPath => items.push(Cow::Borrowed(r.uri_path.as_bytes())),
            Field::QueryString => items.push(Cow::Borrowed(r.query.as_bytes())),
            Field::Method => items.push(Cow::Borrowed(r.method.as_bytes())),
            Field::SingleQueryArgument(name) => items.extend(
                query_pairs(r.query)
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| Cow::Borrowed(v.as_bytes())),
            ),
            // AWS: "inspects all query argument values".
            Field::AllQueryArguments => items.extend(query_pairs(r.query).map(|(_, v)| Cow::Borrowed(v.as_bytes()))),
            Field::SingleHeader(name) => {
                items.extend(r.headers.get_all(name.as_str()).iter().map(|v| Cow::Borrowed(v.as_bytes())))
            }
            Field::Headers { pattern, scope, oversize } => {
                let (mut bytes, mut count, mut over) = (0usize, 0usize, false);
                for (k, v) in r.headers {
                    count += 1;
                    bytes += k.as_str().len() + v.len() + 4;
                    if count > HEADERS_MAX_COUNT || bytes > HEADERS_MAX_BYTES {
                        over = true;
                        break;
                    }
                    if !pattern.admits(k.as_str()) {
                        continue;
                    }
                    // AWS, Headers with MatchScope ALL: the keys and the values
                    // are inspected, each on its own; a match on any is a match.
                    if matches!(scope, Scope::All | Scope::Key) {
                        items.push(Cow::Borrowed(k.as_str().as_bytes()));
                    }
                    if matches!(scope, Scope::All | Scope::Value) {
                        items.push(Cow::Borrowed(v.as_bytes()));
                    }
                }
                return over_decision(over, *oversize);
            }
            Field::Cookies { pattern, scope, oversize } => {
                let (mut bytes, mut count, mut over) = (0usize, 0usize, false);
                'outer: for header in r.headers.get_all(http::header::COOKIE) {
                    for c in header.as_bytes().split(|&b| b == b';') {
                        let c = c.trim_ascii();
                        if c.is_empty() {
                            continue;
                        }
                        count += 1;
                        bytes += c.len();
                        if count > HEADERS_MAX_COUNT || bytes > HEADERS_MAX_BYTES {
                            over = true;
                            break 'outer;
                        }
                        let (k, v) = match c.iter().position(|&b| b == b'=') {
                            Some(i) => (&c[..i], &c[i + 1..]),
                            None => (c, &c[c.len()..]),
                        };
                        // Cookie names are case-sensitive for AWS; `admits`
                        // compares case-insensitively, so check exactly here.
                        let admitted = match pattern {
                            Pattern::All => true,
                            Pattern::Included(l) => l.iter().any(|n| n.as_bytes() == k),
                            Pattern::Excluded(l) => !l.iter().any(|n| n.as_bytes() == k),
                        };
                        if !admitted {
                            continue;
                        }
                        if matches!(scope, Scope::All | Scope::Key) {
                            items.push(Cow::Borrowed(k));
                        }
                        if matches!(scope, Scope::All | Scope::Value) {
                            items.push(Cow::Borrowed(v));
                        }
                    }
                }
                return over_decision(over, *oversize);
            }
            Field::Body(oversize) => {
                let (body, more) = r.body;
                items.push(Cow::Borrowed(body));
                return over_decision(more, *oversize);
            }
        }
        None
    }
}

fn over_decision(over: bool, handling: Oversize) -> Option<bool> {
    match (over, handling) {
        (false, _) | (true, Oversize::Continue) => None,
        (true, Oversize::Match) => Some(true),
        (true, Oversize::NoMatch) => Some(false),
    }
}

fn oversize(path: &str, v: Option<&str>) -> Result<Oversize, WafError> {
    match v {
        None | Some("CONTINUE") => Ok(Oversize::Continue),
        Some("MATCH") => Ok(Oversize::Match),
        Some("NO_MATCH") => Ok(Oversize::NoMatch),
        Some(other) => Err(err(path, format!("{other:?} is not CONTINUE, MATCH or NO_MATCH"))),
    }
}

fn multi(path: &str, m: &MultiJson) -> Result<(Pattern, Scope, Oversize), WafError> {
    let p = &m.match_pattern;
    let pattern = match (&p.all, &p.included, &p.excluded) {
        (Some(_), None, None) => Pattern::All,
        (None, Some(l), None) => Pattern::Included(l.clone()),
        (None, None, Some(l)) => Pattern::Excluded(l.clone()),
        _ => return Err(err(&format!("{path}.MatchPattern"), "set exactly one of All, Included…, Excluded…")),
    };
    let scope = match m.match_scope.as_str() {
        "ALL" => Scope::All,
        "KEY" => Scope::Key,
        "VALUE" => Scope::Value,
        other => return Err(err(&format!("{path}.MatchScope"), format!("{other:?} is not ALL, KEY or VALUE"))),
    };
    Ok((pattern, scope, oversize(&format!("{path}.OversizeHandling"), Some(&m.oversize_handling))?))
}

fn transforms(path: &str, list: &[TransformJson]) -> Result<Vec<Transform>, WafError> {
    if list.is_empty() {
        return Err(err(path, "at least one transformation is required (use NONE)"));
    }
    let mut sorted: Vec<(i64, Transform)> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let kind = Transform::parse(&t.kind).map_err(|e| err(&format!("{path}[{i}].Type"), e))?;
        if sorted.iter().any(|(p, _)| *p == t.priority) {
            return Err(err(&format!("{path}[{i}].Priority"), "priorities must be unique"));
        }
        sorted.push((t.priority, kind));
    }
    sorted.sort_by_key(|(p, _)| *p);
    Ok(sorted.into_iter().map(|(_, t)| t).filter(|t| *t != Transform::None).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Exactly,
    StartsWith,
    EndsWith,
    Contains,
    ContainsWord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Le,
    Lt,
    Ge,
    Gt,
}

#[derive(Debug, Clone)]
enum Matcher {
    Bytes { needle: Vec<u8>, position: Position, finder: Box<memchr::memmem::Finder<'static>> },
    Regex(Regex),
    RegexSet(Arc<RegexPatternSet>),
    Size { cmp: Cmp, size: u64 },
    Sqli { high: bool },
    Xss,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Matcher {
    /// Whether two leaves always give the same verdict (one runs for both).
    fn same_as(&self, o: &Matcher) -> bool {
        match (self, o) {
            (Matcher::Bytes { needle: a, position: p, .. }, Matcher::Bytes { needle: b, position: q, .. }) => {
                a == b && p == q
            }
            (Matcher::Regex(a), Matcher::Regex(b)) => a.as_str() == b.as_str(),
            (Matcher::RegexSet(a), Matcher::RegexSet(b)) => Arc::ptr_eq(a, b),
            (Matcher::Size { cmp: a, size: x }, Matcher::Size { cmp: b, size: y }) => a == b && x == y,
            (Matcher::Sqli { high: a }, Matcher::Sqli { high: b }) => a == b,
            (Matcher::Xss, Matcher::Xss) => true,
            _ => false,
        }
    }

    fn matches(&self, v: &[u8]) -> bool {
        match self {
            // Length and first-byte checks before the comparison: most values
            // fail there, and a call to memcmp costs more than the check.
            Matcher::Bytes { needle, position, finder } => match position {
                Position::Exactly => v.len() == needle.len() && v.first() == needle.first() && v == needle.as_slice(),
                Position::StartsWith => v.len() >= needle.len() && v.first() == needle.first() && v.starts_with(needle),
                Position::EndsWith => v.len() >= needle.len() && v.last() == needle.last() && v.ends_with(needle),
                Position::Contains => finder.find(v).is_some(),
                // AWS: the string equals the value or is bounded by non-word
                // characters or the value's ends.
                Position::ContainsWord => finder
                    .find_iter(v)
                    .any(|start| probe::placed(Position::ContainsWord, v, start, start + needle.len())),
            },
            Matcher::Regex(r) => r.is_match(v),
            Matcher::RegexSet(s) => s.set.is_match(v),
            Matcher::Size { cmp, size } => {
                let n = v.len() as u64;
                match cmp {
                    Cmp::Eq => n == *size,
                    Cmp::Ne => n != *size,
                    Cmp::Le => n <= *size,
                    Cmp::Lt => n < *size,
                    Cmp::Ge => n >= *size,
                    Cmp::Gt => n > *size,
                }
            }
            Matcher::Sqli { high } => detect::is_sqli(v, *high),
            Matcher::Xss => detect::is_xss(v),
        }
    }
}

#[derive(Debug, Clone)]
enum ForwardedPosition {
    First,
    Last,
    Any,
}

#[derive(Debug, Clone)]
struct Forwarded {
    header: String,
    fallback_match: bool,
    position: ForwardedPosition,
}

#[derive(Debug, Clone)]
enum Statement {
    /// `source` indexes the web ACL's distinct (field, transformations)
    /// pairs: each is extracted, transformed and probed once per request,
    /// however many rules inspect it; `leaf` is this inspection's leaf in
    /// the source's probe (see [`probe`]) while compiling, and its verdict's
    /// bit in the evaluation state once compiled.
    Inspect {
        source: usize,
        leaf: usize,
    },
    IpSet {
        set: Arc<IpSet>,
        forwarded: Option<Forwarded>,
    },
    /// `LabelMatchStatement`: `key` is the whole label, `affix` the
    /// `ns:` prefix (NAMESPACE scope) or the `:key` suffix (LABEL scope).
    Label {
        namespace: bool,
        key: String,
        affix: String,
    },
    And(Vec<Statement>),
    Or(Vec<Statement>),
    Not(Box<Statement>),
    Rate {
        limiter: Arc<RateLimiter>,
        scope_down: Option<Box<Statement>>,
    },
    Geo {
        db: Option<Arc<GeoDb>>,
        codes: Vec<[u8; 2]>,
        forwarded: Option<(String, bool)>,
    },
}

/// Most client addresses a rate-based rule tracks at once.
const RATE_MAX_KEYS: usize = 100_000;

/// Requests per client address over a window, estimated from the current
/// and previous fixed windows (the sliding-window approximation: the
/// previous window's count weighs what is left of it).
#[derive(Debug)]
pub struct RateLimiter {
    window: std::time::Duration,
    limit: u64,
    epoch: std::time::Instant,
    /// Per address: (window index, count in it, count in the one before);
    /// and the window index of the last sweep of old addresses.
    counts: std::sync::Mutex<(RateCounts, Option<u64>)>,
}

/// Per address: (window index, count in it, count in the one before).
type RateCounts = HashMap<IpAddr, (u64, u64, u64)>;

impl RateLimiter {
    fn new(window: std::time::Duration, limit: u64) -> Self {
        RateLimiter {
            window,
            limit,
            epoch: std::time::Instant::now(),
            counts: std::sync::Mutex::new((HashMap::new(), None)),
        }
    }

    fn same_shape(&self, other: &RateLimiter) -> bool {
        self.window == other.window && self.limit == other.limit
    }

    /// Counts one request from `ip` at `now`; whether its rate is over the limit.
    fn hit(&self, ip: IpAddr, now: std::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.epoch);
        let w = self.window.as_nanos().max(1);
        let index = (elapsed.as_nanos() / w) as u64;
        let into = (elapsed.as_nanos() % w) as f64 / w as f64;
        let mut guard = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, swept) = &mut *guard;
        if map.len() >= RATE_MAX_KEYS && !map.contains_key(&ip) {
            // Forget addresses quiet for two windows, at most once per
            // window: a flood of new addresses must not make every request
            // scan the table under the lock.
            if *swept != Some(index) {
                map.retain(|_, (i, _, _)| *i + 1 >= index);
                *swept = Some(index);
            }
            if map.len() >= RATE_MAX_KEYS {
                // Bounded memory first: an untracked address is not limited.
                return false;
            }
        }
        let e = map.entry(ip).or_insert((index, 0, 0));
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

/// The distinct (field, transformations) pairs of a web ACL.
#[derive(Debug, Clone, Default)]
struct Sources {
    keys: Vec<String>,
    list: Vec<(Field, Vec<Transform>)>,
    probes: Vec<probe::Probe>,
}

impl Sources {
    fn index(&mut self, field: Field, transforms: Vec<Transform>) -> usize {
        let key = format!("{field:?}{transforms:?}");
        if let Some(i) = self.keys.iter().position(|k| *k == key) {
            return i;
        }
        self.keys.push(key);
        self.list.push((field, transforms));
        self.probes.push(probe::Probe::default());
        self.list.len() - 1
    }
}

fn compile_statement(
    path: &str,
    s: &StatementJson,
    sets: &dyn Sets,
    depth: usize,
    sources: &mut Sources,
) -> Result<Statement, WafError> {
    if depth > MAX_DEPTH {
        return Err(err(path, format!("statements nest at most {MAX_DEPTH} deep")));
    }
    let mut out: Vec<Statement> = Vec::new();
    let mut inspect =
        |name: &str, field: &FieldJson, tt: &[TransformJson], matcher: Matcher| -> Result<Statement, WafError> {
            let field = Field::compile(&format!("{path}.{name}.FieldToMatch"), field)?;
            let transforms = transforms(&format!("{path}.{name}.TextTransformations"), tt)?;
            let source = sources.index(field, transforms);
            Ok(Statement::Inspect { source, leaf: sources.probes[source].add(matcher) })
        };
    if let Some(b) = &s.byte_match {
        let p = format!("{path}.ByteMatchStatement");
        if b.search_string.is_empty() || b.search_string.len() > MAX_SEARCH {
            return Err(err(&format!("{p}.SearchString"), format!("must be 1 to {MAX_SEARCH} bytes")));
        }
        let position = match b.positional_constraint.as_str() {
            "EXACTLY" => Position::Exactly,
            "STARTS_WITH" => Position::StartsWith,
            "ENDS_WITH" => Position::EndsWith,
            "CONTAINS" => Position::Contains,
            "CONTAINS_WORD" => {
                if !b.search_string.bytes().all(is_word) {
                    return Err(err(&format!("{p}.SearchString"), "CONTAINS_WORD needs letters, digits and _ only"));
                }
                Position::ContainsWord
            }
            other => {
                return Err(err(
                    &format!("{p}.PositionalConstraint"),
                    format!("{other:?} is not EXACTLY, STARTS_WITH, ENDS_WITH, CONTAINS or CONTAINS_WORD"),
                ));
            }
        };
        let needle = b.search_string.as_bytes().to_vec();
        let finder = Box::new(memchr::memmem::Finder::new(&needle).into_owned());
        let matcher = Matcher::Bytes { needle, position, finder };
        out.push(inspect("ByteMatchStatement", &b.field_to_match, &b.text_transformations, matcher)?);
    }
    if let Some(r) = &s.regex_match {
        let re = regex(&format!("{path}.RegexMatchStatement.RegexString"), &r.regex_string)?;
        out.push(inspect("RegexMatchStatement", &r.field_to_match, &r.text_transformations, Matcher::Regex(re))?);
    }
    if let Some(r) = &s.regex_pattern_set {
        let p = format!("{path}.RegexPatternSetReferenceStatement");
        let set = sets.regex_set(arn_id(&r.arn)).ok_or_else(|| {
            err(&format!("{p}.ARN"), format!("regex pattern set {:?} does not exist", arn_id(&r.arn)))
        })?;
        out.push(inspect(
            "RegexPatternSetReferenceStatement",
            &r.field_to_match,
            &r.text_transformations,
            Matcher::RegexSet(set),
        )?);
    }
    if let Some(i) = &s.ip_set {
        let p = format!("{path}.IPSetReferenceStatement");
        let set = sets
            .ip_set(arn_id(&i.arn))
            .ok_or_else(|| err(&format!("{p}.ARN"), format!("IP set {:?} does not exist", arn_id(&i.arn))))?;
        let forwarded = match &i.forwarded_ip_config {
            None => None,
            Some(f) => {
                let fp = format!("{p}.IPSetForwardedIPConfig");
                let fallback_match = match f.fallback_behavior.as_str() {
                    "MATCH" => true,
                    "NO_MATCH" => false,
                    o => return Err(err(&format!("{fp}.FallbackBehavior"), format!("{o:?} is not MATCH or NO_MATCH"))),
                };
                let position = match f.position.as_str() {
                    "FIRST" => ForwardedPosition::First,
                    "LAST" => ForwardedPosition::Last,
                    "ANY" => ForwardedPosition::Any,
                    o => return Err(err(&format!("{fp}.Position"), format!("{o:?} is not FIRST, LAST or ANY"))),
                };
                Some(Forwarded { header: f.header_name.to_ascii_lowercase(), fallback_match, position })
            }
        };
        out.push(Statement::IpSet { set, forwarded });
    }
    if let Some(c) = &s.size_constraint {
        let cmp = match c.comparison_operator.as_str() {
            "EQ" => Cmp::Eq,
            "NE" => Cmp::Ne,
            "LE" => Cmp::Le,
            "LT" => Cmp::Lt,
            "GE" => Cmp::Ge,
            "GT" => Cmp::Gt,
            o => {
                return Err(err(
                    &format!("{path}.SizeConstraintStatement.ComparisonOperator"),
                    format!("{o:?} is not EQ, NE, LE, LT, GE or GT"),
                ));
            }
        };
        let m = Matcher::Size { cmp, size: c.size };
        out.push(inspect("SizeConstraintStatement", &c.field_to_match, &c.text_transformations, m)?);
    }
    if let Some(q) = &s.sqli_match {
        let high = match q.sensitivity_level.as_deref() {
            None | Some("LOW") => false,
            Some("HIGH") => true,
            Some(o) => {
                return Err(err(
                    &format!("{path}.SqliMatchStatement.SensitivityLevel"),
                    format!("{o:?} is not LOW or HIGH"),
                ));
            }
        };
        out.push(inspect("SqliMatchStatement", &q.field_to_match, &q.text_transformations, Matcher::Sqli { high })?);
    }
    if let Some(x) = &s.xss_match {
        out.push(inspect("XssMatchStatement", &x.field_to_match, &x.text_transformations, Matcher::Xss)?);
    }
    if let Some(l) = &s.label_match {
        let p = format!("{path}.LabelMatchStatement");
        let namespace = match l.scope.as_str() {
            "LABEL" => false,
            "NAMESPACE" => true,
            o => return Err(err(&format!("{p}.Scope"), format!("{o:?} is not LABEL or NAMESPACE"))),
        };
        check_label(&format!("{p}.Key"), &l.key)?;
        let key = short_label(&l.key).to_owned();
        let affix = if namespace { format!("{}:", key.trim_end_matches(':')) } else { format!(":{key}") };
        out.push(Statement::Label { namespace, key, affix });
    }
    for (name, list) in [("AndStatement", &s.and), ("OrStatement", &s.or)] {
        if let Some(list) = list {
            let p = format!("{path}.{name}.Statements");
            if list.statements.len() < 2 {
                return Err(err(&p, "needs at least two statements"));
            }
            let inner = list
                .statements
                .iter()
                .enumerate()
                .map(|(i, st)| compile_statement(&format!("{p}[{i}]"), st, sets, depth + 1, sources))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(if name == "AndStatement" { Statement::And(inner) } else { Statement::Or(inner) });
        }
    }
    if let Some(n) = &s.not {
        out.push(Statement::Not(Box::new(compile_statement(
            &format!("{path}.NotStatement.Statement"),
            &n.statement,
            sets,
            depth + 1,
            sources,
        )?)));
    }
    if let Some(r) = &s.rate_based {
        let p = format!("{path}.RateBasedStatement");
        if depth > 0 {
            return Err(err(&p, "a RateBasedStatement cannot be nested; it is a rule's top statement"));
        }
        if r.limit < 10 {
            return Err(err(&format!("{p}.Limit"), "at least 10 (AWS's minimum)"));
        }
        let window = r.evaluation_window_sec.unwrap_or(300);
        if ![60, 120, 300, 600].contains(&window) {
            return Err(err(&format!("{p}.EvaluationWindowSec"), "one of 60, 120, 300, 600"));
        }
        if r.aggregate_key_type != "IP" {
            return Err(err(&format!("{p}.AggregateKeyType"), "shardgate aggregates by IP only"));
        }
        let scope_down = match &r.scope_down_statement {
            Some(sd) => {
                Some(Box::new(compile_statement(&format!("{p}.ScopeDownStatement"), sd, sets, depth + 1, sources)?))
            }
            None => None,
        };
        let limiter = Arc::new(RateLimiter::new(std::time::Duration::from_secs(window), r.limit));
        out.push(Statement::Rate { limiter, scope_down });
    }
    if let Some(g) = &s.geo_match {
        let p = format!("{path}.GeoMatchStatement");
        if g.country_codes.is_empty() {
            return Err(err(&format!("{p}.CountryCodes"), "list at least one country code"));
        }
        let mut codes = Vec::with_capacity(g.country_codes.len());
        for (i, c) in g.country_codes.iter().enumerate() {
            match c.as_bytes() {
                [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => codes.push([*a, *b]),
                _ => {
                    return Err(err(
                        &format!("{p}.CountryCodes[{i}]"),
                        format!("{c:?} is not an ISO 3166-1 alpha-2 code"),
                    ));
                }
            }
        }
        let forwarded = match &g.forwarded_ip_config {
            None => None,
            Some(f) => {
                let fallback = match f.fallback_behavior.as_str() {
                    "MATCH" => true,
                    "NO_MATCH" => false,
                    o => {
                        return Err(err(
                            &format!("{p}.ForwardedIPConfig.FallbackBehavior"),
                            format!("{o:?} is not MATCH or NO_MATCH"),
                        ));
                    }
                };
                Some((f.header_name.to_ascii_lowercase(), fallback))
            }
        };
        let db = sets.geo().map_err(|e| err(&p, e))?;
        out.push(Statement::Geo { db, codes, forwarded });
    }
    for (name, present) in [
        ("ManagedRuleGroupStatement", s.managed_rule_group.is_some()),
        ("RuleGroupReferenceStatement", s.rule_group_reference.is_some()),
    ] {
        if present {
            return Err(err(&format!("{path}.{name}"), format!("{name} is not supported by shardgate yet")));
        }
    }
    match out.len() {
        1 => Ok(out.remove(0)),
        0 => Err(err(path, "a statement needs exactly one member (e.g. ByteMatchStatement)")),
        _ => Err(err(path, "a statement has exactly one member; nest several in AndStatement or OrStatement")),
    }
}

fn check_label(path: &str, s: &str) -> Result<(), WafError> {
    // AWS: ^[0-9A-Za-z_\-:]+$, at most 5 namespaces, parts up to 128.
    let ok = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'))
        && s.split(':').all(|p| p.len() <= 128);
    if ok { Ok(()) } else { Err(err(path, format!("{s:?} is not a label (letters, digits, _ - :)"))) }
}

/// Strips the `awswaf:<account>:webacl:<name>:` prefix of a fully
/// qualified label; shardgate keeps labels as the rules wrote them.
fn short_label(s: &str) -> &str {
    let parts: Vec<&str> = s.splitn(5, ':').collect();
    if parts.len() == 5 && parts[0] == "awswaf" && parts[2] == "webacl" { parts[4] } else { s }
}

/// Whether a request matched, for one evaluation.
struct Ctx<'a, 'r> {
    req: &'a RequestView<'r>,
    /// Labels added by the rules evaluated so far.
    labels: &'a RefCell<Vec<Arc<str>>>,
    sources: &'a [(Field, Vec<Transform>)],
    probes: &'a [probe::Probe],
    /// One bit per source (probed yet?), then one bit per leaf of every
    /// source (its verdict): see [`WebAcl::state_words`].
    bits: &'a [Cell<u64>],
    /// Values of the source being probed, reused from source to source.
    scratch: &'a RefCell<Vec<Cow<'r, [u8]>>>,
    /// The country label the first GeoMatch produced (AWS adds
    /// `awswaf:clientip:geo:country:<CC>`, or `forwardedip` with a forwarded
    /// address, whether or not the statement matched).
    geo_label: &'a std::cell::OnceCell<Option<Arc<str>>>,
}

/// Bit `i` of `bits`.
fn bit(bits: &[Cell<u64>], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| w.get() & (1 << (i % 64)) != 0)
}

/// Sets bit `i` of `bits`.
fn set_bit(bits: &[Cell<u64>], i: usize) {
    if let Some(w) = bits.get(i / 64) {
        w.set(w.get() | 1 << (i % 64));
    }
}

impl Ctx<'_, '_> {
    /// The verdict at state bit `verdict`, a leaf of `source`: extracts,
    /// transforms and probes the source on first use.
    #[inline]
    fn leaf(&self, source: usize, verdict: usize) -> bool {
        if !bit(self.bits, source) {
            self.probe(source);
        }
        bit(self.bits, verdict)
    }

    #[inline(never)]
    fn probe(&self, source: usize) {
        set_bit(self.bits, source);
        let Some(probe) = self.probes.get(source) else { return };
        let (field, transforms) = &self.sources[source];
        let Ok(mut values) = self.scratch.try_borrow_mut() else { return };
        values.clear();
        // Oversize handling MATCH / NO_MATCH decides without inspection.
        if let Some(decided) = field.values(self.req, &mut values) {
            if decided {
                (0..probe.len()).for_each(|i| set_bit(self.bits, probe.base + i));
            }
            return;
        }
        if !transforms.is_empty() {
            for v in values.iter_mut() {
                let taken = std::mem::take(v);
                *v = match taken {
                    Cow::Borrowed(b) => apply_all(transforms, b),
                    Cow::Owned(o) => Cow::Owned(apply_all(transforms, &o).into_owned()),
                };
            }
        }
        probe.run(&values, self.bits);
    }
}

fn forwarded_ips(value: &str, position: &ForwardedPosition) -> Vec<Option<IpAddr>> {
    let all: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let parse = |s: &str| s.parse::<IpAddr>().ok();
    match position {
        ForwardedPosition::First => all.first().map(|s| vec![parse(s)]).unwrap_or_default(),
        ForwardedPosition::Last => all.last().map(|s| vec![parse(s)]).unwrap_or_default(),
        // AWS inspects at most 10 addresses with ANY: the last 10, those the
        // proxies in front appended (a client writes the first ones).
        ForwardedPosition::Any => all.iter().skip(all.len().saturating_sub(10)).map(|s| parse(s)).collect(),
    }
}

/// `IPSetReferenceStatement` with `IPSetForwardedIPConfig`.
#[inline(never)]
fn forwarded_in_set(c: &Ctx<'_, '_>, set: &IpSet, f: &Forwarded) -> bool {
    // AWS (API_IPSetForwardedIPConfig): "If the specified header isn't
    // present in the request, AWS WAF doesn't apply the rule to the web
    // request at all" -- no match, and no fallback. An unreadable value is
    // present, so the fallback decides.
    let Some(header) = c.req.headers.get(f.header.as_str()) else { return false };
    let Ok(value) = header.to_str() else { return f.fallback_match };
    let ips = forwarded_ips(value, &f.position);
    if ips.is_empty() || ips.iter().any(Option::is_none) {
        // A missing or malformed address: the fallback decides.
        if !ips.iter().flatten().any(|ip| set.contains(*ip)) {
            return f.fallback_match;
        }
    }
    ips.iter().flatten().any(|ip| set.contains(*ip))
}

/// `GeoMatchStatement`; also sets the country label for later rules.
#[inline(never)]
fn geo_match(c: &Ctx<'_, '_>, db: Option<&GeoDb>, codes: &[[u8; 2]], forwarded: Option<&(String, bool)>) -> bool {
    let ip = match forwarded {
        None => Some(c.req.client_ip),
        // AWS uses the first address of the header for geo match.
        Some((header, fallback)) => {
            // A missing header: the rule does not apply (API_ForwardedIPConfig).
            let Some(value) = c.req.headers.get(header.as_str()) else { return false };
            let first =
                value.to_str().ok().and_then(|v| v.split(',').next().and_then(|s| s.trim().parse::<IpAddr>().ok()));
            match first {
                Some(ip) => Some(ip),
                None => return *fallback,
            }
        }
    };
    let country = ip.and_then(|ip| db.and_then(|d| d.country(ip)));
    // AWS labels the country of the address it used.
    let origin = if forwarded.is_some() { "forwardedip" } else { "clientip" };
    c.geo_label.get_or_init(|| {
        country.map(|cc| Arc::from(format!("awswaf:{origin}:geo:country:{}", String::from_utf8_lossy(&cc))))
    });
    country.is_some_and(|cc| codes.contains(&cc))
}

impl Statement {
    fn eval(&self, c: &Ctx<'_, '_>) -> bool {
        match self {
            Statement::Inspect { source, leaf } => c.leaf(*source, *leaf),
            Statement::IpSet { set, forwarded: None } => set.contains(c.req.client_ip),
            Statement::IpSet { set, forwarded: Some(f) } => forwarded_in_set(c, set, f),
            Statement::Label { namespace, key, affix } => c.labels.try_borrow().is_ok_and(|labels| {
                labels.iter().any(|l| {
                    if *namespace { l.starts_with(affix.as_str()) } else { **l == **key || l.ends_with(affix.as_str()) }
                })
            }),
            Statement::Rate { limiter, scope_down } => {
                if scope_down.as_ref().is_some_and(|s| !s.eval(c)) {
                    return false;
                }
                limiter.hit(c.req.client_ip, std::time::Instant::now())
            }
            Statement::Geo { db, codes, forwarded } => geo_match(c, db.as_deref(), codes, forwarded.as_ref()),
            Statement::And(list) => list.iter().all(|s| s.eval(c)),
            Statement::Or(list) => list.iter().any(|s| s.eval(c)),
            Statement::Not(s) => !s.eval(c),
        }
    }
}

#[derive(Debug, Clone)]
enum RuleAction {
    Allow,
    Block(BlockResponse),
    Count,
}

#[derive(Debug, Clone)]
struct Rule {
    name: Arc<str>,
    statement: Statement,
    action: RuleAction,
    labels: Vec<Arc<str>>,
    sampled: bool,
}

/// Turns each inspection's probe leaf into its bit in the evaluation state.
fn to_state_bits(st: &mut Statement, probes: &[probe::Probe]) {
    match st {
        Statement::Inspect { source, leaf } => *leaf += probes.get(*source).map_or(0, |p| p.base),
        Statement::And(l) | Statement::Or(l) => l.iter_mut().for_each(|s| to_state_bits(s, probes)),
        Statement::Not(s) => to_state_bits(s, probes),
        Statement::Rate { scope_down: Some(s), .. } => to_state_bits(s, probes),
        _ => {}
    }
}

/// How a rule is evaluated, decided without touching the rule when the
/// statement's shape allows: most rules are one inspection, whose verdict is
/// read directly; a label match cannot match before any label exists; an
/// `AndStatement` whose first member is an inspection fails when that does.
#[derive(Debug, Clone, Copy)]
enum Step {
    Leaf { source: u32, verdict: u32 },
    Label,
    AndFirst { source: u32, verdict: u32 },
    Tree,
}

impl Step {
    fn of(st: &Statement) -> Step {
        let leaf = |source: usize, leaf: usize| Some((u32::try_from(source).ok()?, u32::try_from(leaf).ok()?));
        match st {
            Statement::Inspect { source, leaf: l } => {
                leaf(*source, *l).map_or(Step::Tree, |(source, verdict)| Step::Leaf { source, verdict })
            }
            Statement::Label { .. } => Step::Label,
            Statement::And(list) => match list.first() {
                Some(Statement::Inspect { source, leaf: l }) => {
                    leaf(*source, *l).map_or(Step::Tree, |(source, verdict)| Step::AndFirst { source, verdict })
                }
                _ => Step::Tree,
            },
            _ => Step::Tree,
        }
    }
}

/// A compiled web ACL.
#[derive(Debug, Clone)]
pub struct WebAcl {
    /// `Name`.
    pub name: Arc<str>,
    rules: Vec<Rule>,
    sources: Vec<(Field, Vec<Transform>)>,
    probes: Vec<probe::Probe>,
    /// Per rule, how it is evaluated (parallel to `rules`).
    steps: Vec<Step>,
    /// 64-bit words of one evaluation's state: a bit per source, then a bit
    /// per leaf of every probe.
    state_words: usize,
    default: Action,
    /// Whether sampling is on for the default action.
    pub sampled: bool,
}

fn compile_action(
    path: &str,
    a: &ActionJson,
    bodies: &HashMap<&str, (&str, &str)>,
    allow_count: bool,
) -> Result<RuleAction, WafError> {
    let mut found = Vec::new();
    if a.allow.is_some() {
        found.push(RuleAction::Allow);
    }
    if a.count.is_some() {
        if !allow_count {
            return Err(err(&format!("{path}.Count"), "a default action is Allow or Block"));
        }
        found.push(RuleAction::Count);
    }
    if let Some(b) = &a.block {
        let mut resp = BlockResponse::default_403();
        if let Some(c) = &b.custom_response {
            let cp = format!("{path}.Block.CustomResponse");
            if !(200..=599).contains(&c.response_code) {
                return Err(err(&format!("{cp}.ResponseCode"), "must be 200 to 599"));
            }
            resp.status = c.response_code;
            if let Some(key) = &c.custom_response_body_key {
                let (ct, body) = bodies.get(key.as_str()).ok_or_else(|| {
                    err(&format!("{cp}.CustomResponseBodyKey"), format!("no CustomResponseBodies entry named {key:?}"))
                })?;
                resp.body = Some(((*ct).to_owned(), (*body).to_owned()));
            }
            for (i, h) in c.response_headers.iter().flatten().enumerate() {
                let ok = !h.name.is_empty() && h.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !ok {
                    return Err(err(&format!("{cp}.ResponseHeaders[{i}].Name"), "not a header name"));
                }
                // AWS prefixes custom header names with x-amzn-waf-.
                resp.headers.push((format!("x-amzn-waf-{}", h.name.to_ascii_lowercase()), h.value.clone()));
            }
        }
        found.push(RuleAction::Block(resp));
    }
    if a.captcha.is_some() || a.challenge.is_some() {
        return Err(err(path, "Captcha and Challenge actions are not supported by shardgate"));
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(err(path, "an action needs exactly one of Allow, Block, Count")),
        _ => Err(err(path, "set exactly one action")),
    }
}

impl WebAcl {
    /// Compiles a web ACL, resolving set references through `sets`.
    pub fn compile(json: &WebAclJson, sets: &dyn Sets) -> Result<Self, WafError> {
        let name = match &json.name {
            Some(n)
                if !n.is_empty()
                    && n.len() <= 128
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) =>
            {
                n
            }
            Some(_) => return Err(err("Name", "1 to 128 letters, digits, - or _")),
            None => return Err(err("Name", "required")),
        };
        if let Some(scope) = &json.scope
            && !matches!(scope.as_str(), "CLOUDFRONT" | "REGIONAL")
        {
            return Err(err("Scope", "must be CLOUDFRONT or REGIONAL"));
        }
        if json.visibility_config.is_none() {
            return Err(err("VisibilityConfig", "required"));
        }
        let mut bodies = HashMap::new();
        for (k, b) in json.custom_response_bodies.iter().flatten() {
            let ct = match b.content_type.as_str() {
                "TEXT_PLAIN" => "text/plain; charset=utf-8",
                "TEXT_HTML" => "text/html; charset=utf-8",
                "APPLICATION_JSON" => "application/json",
                o => {
                    return Err(err(
                        &format!("CustomResponseBodies.{k}.ContentType"),
                        format!("{o:?} is not supported"),
                    ));
                }
            };
            bodies.insert(k.as_str(), (ct, b.content.as_str()));
        }
        let default = match &json.default_action {
            None => return Err(err("DefaultAction", "required")),
            Some(a) => match compile_action("DefaultAction", a, &bodies, false)? {
                RuleAction::Allow => Action::Allow,
                RuleAction::Block(b) => Action::Block(b),
                RuleAction::Count => Action::Allow,
            },
        };
        let rules_json: &[RuleJson] = json.rules.as_deref().unwrap_or_default();
        if rules_json.len() > MAX_RULES {
            return Err(err("Rules", format!("at most {MAX_RULES} rules")));
        }
        let mut rules: Vec<(i64, Rule)> = Vec::with_capacity(rules_json.len());
        let mut sources = Sources::default();
        for (i, r) in rules_json.iter().enumerate() {
            let p = format!("Rules[{i}]");
            let ok = !r.name.is_empty()
                && r.name.len() <= 128
                && r.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !ok {
                return Err(err(&format!("{p}.Name"), "1 to 128 letters, digits, - or _"));
            }
            if rules.iter().any(|(_, x)| *x.name == *r.name) {
                return Err(err(&format!("{p}.Name"), format!("rule name {:?} is used twice", r.name)));
            }
            if r.priority < 0 || rules.iter().any(|(prio, _)| *prio == r.priority) {
                return Err(err(&format!("{p}.Priority"), "priorities are unique and not negative"));
            }
            if r.override_action.is_some() {
                return Err(err(
                    &format!("{p}.OverrideAction"),
                    "only for rule groups, which shardgate does not support",
                ));
            }
            let action = match &r.action {
                Some(a) => compile_action(&format!("{p}.Action"), a, &bodies, true)?,
                None => return Err(err(&format!("{p}.Action"), "required")),
            };
            let statement = compile_statement(&format!("{p}.Statement"), &r.statement, sets, 0, &mut sources)?;
            let mut labels = Vec::new();
            for (j, l) in r.rule_labels.iter().flatten().enumerate() {
                check_label(&format!("{p}.RuleLabels[{j}].Name"), &l.name)?;
                labels.push(Arc::from(l.name.as_str()));
            }
            rules.push((
                r.priority,
                Rule {
                    name: Arc::from(r.name.as_str()),
                    statement,
                    action,
                    labels,
                    sampled: r.visibility_config.sampled_requests_enabled,
                },
            ));
        }
        rules.sort_by_key(|(p, _)| *p);
        // Each source's leaves run together: one automaton for its
        // ByteMatch needles, one set for its regexes. Verdict bits follow
        // the per-source bits.
        let mut next_bit = sources.probes.len();
        for probe in &mut sources.probes {
            probe.finish(next_bit).map_err(|e| err("Rules", e))?;
            next_bit += probe.len();
        }
        let mut rules: Vec<Rule> = rules.into_iter().map(|(_, r)| r).collect();
        for r in &mut rules {
            to_state_bits(&mut r.statement, &sources.probes);
        }
        let steps = rules.iter().map(|r| Step::of(&r.statement)).collect();
        Ok(WebAcl {
            name: Arc::from(name.as_str()),
            rules,
            sources: sources.list,
            probes: sources.probes,
            steps,
            state_words: next_bit.div_ceil(64),
            default,
            sampled: json.visibility_config.as_ref().is_some_and(|v| v.sampled_requests_enabled),
        })
    }

    /// Rule names in evaluation order.
    pub fn rule_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.rules.iter().map(|r| &r.name)
    }

    /// Whether sampling is on for `rule` (`None`: the default action).
    pub fn sampled(&self, rule: Option<&str>) -> bool {
        match rule {
            None => self.sampled,
            Some(n) => self.rules.iter().any(|r| &*r.name == n && r.sampled),
        }
    }

    /// Evaluates one request.
    pub fn evaluate(&self, req: &RequestView<'_>) -> Verdict {
        let labels: RefCell<Vec<Arc<str>>> = RefCell::new(Vec::new());
        let mut counted = Vec::new();
        // The evaluation's bits live on the stack unless the ACL has many
        // sources and leaves (512 bits hold most ACLs).
        let small: [Cell<u64>; 8] = Default::default();
        let heap: Vec<Cell<u64>>;
        let bits: &[Cell<u64>] = if self.state_words <= small.len() {
            &small[..self.state_words]
        } else {
            heap = (0..self.state_words).map(|_| Cell::new(0)).collect();
            &heap
        };
        // Room for every header's name and value at once: one allocation.
        let scratch = RefCell::new(Vec::with_capacity(2 * req.headers.len() + 2));
        let geo_label = std::cell::OnceCell::new();
        let mut geo_added = false;
        let ctx = Ctx {
            req,
            labels: &labels,
            sources: &self.sources,
            probes: &self.probes,
            bits,
            scratch: &scratch,
            geo_label: &geo_label,
        };
        for (rule, step) in self.rules.iter().zip(&self.steps) {
            // Most rules are one inspection: a verdict read from the compact
            // step list, without touching the rule or walking a tree.
            let matched = match *step {
                Step::Leaf { source, verdict } => ctx.leaf(source as usize, verdict as usize),
                Step::Label => labels.try_borrow().is_ok_and(|l| !l.is_empty()) && rule.statement.eval(&ctx),
                Step::AndFirst { source, verdict } => {
                    ctx.leaf(source as usize, verdict as usize) && rule.statement.eval(&ctx)
                }
                Step::Tree => rule.statement.eval(&ctx),
            };
            // Labels land at the end of the rule's evaluation, for later rules.
            if !geo_added && let Some(Some(l)) = geo_label.get() {
                labels.borrow_mut().push(Arc::clone(l));
                geo_added = true;
            }
            if !matched {
                continue;
            }
            labels.borrow_mut().extend(rule.labels.iter().cloned());
            let rule_name = Some(Arc::clone(&rule.name));
            match &rule.action {
                RuleAction::Count => counted.push(Arc::clone(&rule.name)),
                RuleAction::Allow => {
                    return Verdict { action: Action::Allow, rule: rule_name, counted, labels: labels.into_inner() };
                }
                RuleAction::Block(b) => {
                    let action = Action::Block(b.clone());
                    return Verdict { action, rule: rule_name, counted, labels: labels.into_inner() };
                }
            }
        }
        let labels = labels.into_inner();
        Verdict { action: self.default.clone(), rule: None, counted, labels }
    }

    /// Carries the counts of `prev`'s rate-based rules over to this ACL's
    /// rules of the same name, window and limit, so that recompiling (after
    /// any configuration change) does not hand every flooding address a
    /// fresh allowance. Rules that changed start from zero.
    pub fn keep_rate_counts(&mut self, prev: &WebAcl) {
        for rule in &mut self.rules {
            let Statement::Rate { limiter, .. } = &mut rule.statement else { continue };
            let old = prev.rules.iter().find_map(|r| match &r.statement {
                Statement::Rate { limiter: l, .. } if r.name == rule.name && l.same_shape(limiter) => Some(l),
                _ => None,
            });
            if let Some(old) = old {
                *limiter = Arc::clone(old);
            }
        }
    }

    /// The first rule (by priority) that inspects a request field rather than
    /// the client address (IP sets, country, labels, rate limits and boolean
    /// combinations of them), if any: an ACL without one can run on a stream
    /// connection, which has no request.
    pub fn request_rule(&self) -> Option<&str> {
        fn only(s: &Statement) -> bool {
            match s {
                Statement::IpSet { forwarded: None, .. } | Statement::Label { .. } => true,
                Statement::Geo { forwarded: None, .. } => true,
                Statement::Rate { scope_down, .. } => scope_down.as_deref().is_none_or(only),
                Statement::And(l) | Statement::Or(l) => l.iter().all(only),
                Statement::Not(s) => only(s),
                _ => false,
            }
        }
        self.rules.iter().find(|r| !only(&r.statement)).map(|r| &*r.name)
    }
}

mod probe;
#[cfg(test)]
mod tests;
