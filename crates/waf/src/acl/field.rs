//! Fields to match (`FieldToMatch`): which values of a request a statement
//! inspects, with AWS's inspection limits and oversize handling (AWS WAF
//! developer guide, "Request component options" and "Oversize handling for
//! request components"), and the text transformations applied to them.

use std::borrow::Cow;

use http::HeaderMap;

use super::{RequestView, WafError, err, probe};
use crate::json::{FieldJson, MultiJson, TransformJson};
use crate::transform::Transform;

/// What AWS inspects of headers and cookies: the first 8 KiB and 200 of them.
const HEADERS_MAX_BYTES: usize = 8 * 1024;
const HEADERS_MAX_COUNT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    All,
    Key,
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Oversize {
    Continue,
    Match,
    NoMatch,
}

#[derive(Debug, Clone)]
pub(super) enum Pattern {
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
pub(super) enum Field {
    UriPath,
    QueryString,
    SingleQueryArgument(String),
    AllQueryArguments,
    SingleHeader(String),
    Headers {
        pattern: Pattern,
        scope: Scope,
        oversize: Oversize,
    },
    Cookies {
        pattern: Pattern,
        scope: Scope,
        oversize: Oversize,
    },
    Method,
    Body(Oversize),
    /// `JA3Fingerprint`, matched only by ByteMatch EXACTLY (AWS);
    /// `fallback` is what a request without one (plain HTTP, an unparsable
    /// ClientHello) matches.
    Ja3 {
        fallback: bool,
    },
    /// `JA4Fingerprint`.
    Ja4 {
        fallback: bool,
    },
}

/// The `name=value` pairs of a query string, in order; a pair without `=`
/// is a name with an empty value.
pub(super) fn query_pairs(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The cookies of every `Cookie` header, in order, as (name, value): pairs
/// split at `;`, spaces around them trimmed, empty ones left out; a pair
/// without `=` is a name with an empty value. Names are case-sensitive
/// (AWS), so callers compare them exactly.
pub(super) fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers.get_all(http::header::COOKIE).into_iter().flat_map(|header| {
        header.as_bytes().split(|&b| b == b';').map(<[u8]>::trim_ascii).filter(|c| !c.is_empty()).map(|c| {
            match c.iter().position(|&b| b == b'=') {
                Some(i) => (&c[..i], &c[i + 1..]),
                None => (c, &c[c.len()..]),
            }
        })
    })
}

impl Field {
    pub(super) fn compile(path: &str, f: &FieldJson) -> Result<Self, WafError> {
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
        for (name, f) in [("JA3Fingerprint", &f.ja3_fingerprint), ("JA4Fingerprint", &f.ja4_fingerprint)] {
            if let Some(f) = f {
                let fallback = fallback(&format!("{path}.{name}.FallbackBehavior"), &f.fallback_behavior)?;
                found.push(if name == "JA3Fingerprint" { Field::Ja3 { fallback } } else { Field::Ja4 { fallback } });
            }
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
    pub(super) fn values<'a>(&self, r: &RequestView<'a>, items: &mut Vec<Cow<'a, [u8]>>) -> Option<bool> {
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
                for (k, v) in cookie_pairs(r.headers) {
                    count += 1;
                    bytes += k.len() + 1 + v.len();
                    if count > HEADERS_MAX_COUNT || bytes > HEADERS_MAX_BYTES {
                        over = true;
                        break;
                    }
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
                return over_decision(over, *oversize);
            }
            Field::Body(oversize) => {
                let (body, more) = r.body;
                items.push(Cow::Borrowed(body));
                return over_decision(more, *oversize);
            }
            // Without a fingerprint, FallbackBehavior decides (AWS).
            Field::Ja3 { fallback } => match r.tls {
                Some(f) => items.push(Cow::Borrowed(f.ja3().as_bytes())),
                None => return Some(*fallback),
            },
            Field::Ja4 { fallback } => match r.tls {
                Some(f) => items.push(Cow::Borrowed(f.ja4().as_bytes())),
                None => return Some(*fallback),
            },
        }
        None
    }
}

impl Field {
    /// Whether the field belongs to the connection (the TLS fingerprints)
    /// rather than to a request: a stream connection has it too.
    pub(super) fn is_connection_level(&self) -> bool {
        matches!(self, Field::Ja3 { .. } | Field::Ja4 { .. })
    }

    /// The TLS fingerprint fields, by their JSON name.
    pub(super) fn fingerprint_name(&self) -> Option<&'static str> {
        match self {
            Field::Ja3 { .. } => Some("JA3Fingerprint"),
            Field::Ja4 { .. } => Some("JA4Fingerprint"),
            _ => None,
        }
    }
}

/// `FallbackBehavior`: `MATCH` or `NO_MATCH`.
pub(super) fn fallback(path: &str, v: &str) -> Result<bool, WafError> {
    match v {
        "MATCH" => Ok(true),
        "NO_MATCH" => Ok(false),
        o => Err(err(path, format!("{o:?} is not MATCH or NO_MATCH"))),
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

pub(super) fn transforms(path: &str, list: &[TransformJson]) -> Result<Vec<Transform>, WafError> {
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

/// The distinct (field, transformations) pairs of a web ACL.
#[derive(Debug, Clone, Default)]
pub(super) struct Sources {
    keys: Vec<String>,
    pub(super) list: Vec<(Field, Vec<Transform>)>,
    pub(super) probes: Vec<probe::Probe>,
}

impl Sources {
    pub(super) fn index(&mut self, field: Field, transforms: Vec<Transform>) -> usize {
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
