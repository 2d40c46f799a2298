//! Statements (`Statement` in botocore's `wafv2/2019-07-29/service-2.json`):
//! one compile function per statement kind, all reached from [`compile`],
//! and the evaluation of the compiled tree. Leaf inspections of request
//! fields compile into a source's probe (see [`super::probe`]); the tree
//! keeps only their verdict bits.
//!
//! A new statement kind is: its JSON shape and [`crate::json::Member`]
//! variant, a `compile_*` function and a [`Statement`] variant with its
//! evaluation, here.

use std::sync::Arc;

use super::field::{Field, Sources, transforms};
use super::forwarded::{First, ForwardedIp, Position};
use super::matcher::{Cmp, Matcher, Position as Placement, is_word};
use super::rate::{Aggregate, Key, RateLimiter};
use super::sets::{IpSet, Sets, arn_id, regex};
use super::{Ctx, WafError, err, probe};
use crate::geo::GeoDb;
use crate::json::{
    self, ByteMatchJson, FieldJson, GeoMatchJson, IpSetRefJson, LabelMatchJson, Member, NotJson, RateBasedJson,
    RegexMatchJson, RegexSetRefJson, SizeConstraintJson, SqliMatchJson, StatementJson, StatementsJson, TransformJson,
    XssMatchJson,
};

/// Longest `SearchString` (AWS: 200 bytes).
const MAX_SEARCH: usize = 200;
/// Smallest rate-based `Limit` (AWS: 10).
const MIN_RATE_LIMIT: u64 = 10;
/// Largest rate-based `Limit` (AWS: 2,000,000,000).
const MAX_RATE_LIMIT: u64 = 2_000_000_000;

#[derive(Debug, Clone)]
pub(super) enum Statement {
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
        forwarded: Option<(ForwardedIp, Position)>,
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
        forwarded: Option<ForwardedIp>,
    },
}

/// What compiling a statement tree needs besides the JSON.
pub(super) struct Compiler<'a> {
    /// How referenced sets are found.
    pub(super) sets: &'a dyn Sets,
    /// The ACL's distinct (field, transformations) pairs so far.
    pub(super) sources: &'a mut Sources,
}

/// Compiles the statement at `path`, `depth` levels below a rule's
/// `Statement`: checks the nesting bound (parsing checks it too; a tree
/// built in code gets the same answer), then hands the one member to its
/// kind's compile function.
pub(super) fn compile(
    c: &mut Compiler<'_>,
    path: &str,
    s: &StatementJson,
    depth: usize,
) -> Result<Statement, WafError> {
    if depth >= json::MAX_STATEMENT_DEPTH {
        return Err(err(path, json::too_deep()));
    }
    let mut members = s.members();
    let (name, member) = match (members.next(), members.next()) {
        (Some(one), None) => one,
        (None, _) => return Err(err(path, "a statement needs exactly one member (e.g. ByteMatchStatement)")),
        (Some(_), Some(_)) => {
            return Err(err(path, "a statement has exactly one member; nest several in AndStatement or OrStatement"));
        }
    };
    let p = format!("{path}.{name}");
    match member {
        Member::ByteMatch(b) => compile_byte_match(c, &p, b),
        Member::RegexMatch(r) => compile_regex_match(c, &p, r),
        Member::RegexPatternSet(r) => compile_regex_set(c, &p, r),
        Member::IpSet(i) => compile_ip_set(c, &p, i),
        Member::SizeConstraint(s) => compile_size(c, &p, s),
        Member::SqliMatch(q) => compile_sqli(c, &p, q),
        Member::XssMatch(x) => compile_xss(c, &p, x),
        Member::LabelMatch(l) => compile_label(&p, l),
        Member::And(list) => Ok(Statement::And(compile_list(c, &p, list, depth)?)),
        Member::Or(list) => Ok(Statement::Or(compile_list(c, &p, list, depth)?)),
        Member::Not(n) => compile_not(c, &p, n, depth),
        Member::GeoMatch(g) => compile_geo(c, &p, g),
        Member::RateBased(r) => compile_rate(c, &p, r, depth),
        Member::ManagedRuleGroup | Member::RuleGroupReference => {
            Err(err(&p, format!("{name} is not supported by shardgate yet")))
        }
    }
}

/// A leaf inspection: the field and its transformations become (or join) a
/// source, the matcher a leaf of that source's probe.
fn inspect(
    c: &mut Compiler<'_>,
    p: &str,
    field: &FieldJson,
    tt: &[TransformJson],
    matcher: Matcher,
) -> Result<Statement, WafError> {
    let field = Field::compile(&format!("{p}.FieldToMatch"), field)?;
    if let Some(name) = field.fingerprint_name() {
        // AWS (API_JA3Fingerprint, API_JA4Fingerprint): "You can use this
        // choice only with a string match ByteMatchStatement with the
        // PositionalConstraint set to EXACTLY."
        let why = format!("{name} is matched only by a ByteMatchStatement with PositionalConstraint EXACTLY (AWS)");
        match &matcher {
            Matcher::Bytes { position: Placement::Exactly, .. } => {}
            Matcher::Bytes { .. } => return Err(err(&format!("{p}.PositionalConstraint"), why)),
            _ => return Err(err(&format!("{p}.FieldToMatch.{name}"), why)),
        }
    }
    let transforms = transforms(&format!("{p}.TextTransformations"), tt)?;
    let source = c.sources.index(field, transforms);
    Ok(Statement::Inspect { source, leaf: c.sources.probes[source].add(matcher) })
}

fn compile_byte_match(c: &mut Compiler<'_>, p: &str, b: &ByteMatchJson) -> Result<Statement, WafError> {
    let needle: Vec<u8> = match (&b.search_string, &b.search_string_base64) {
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(encoded)) => base64_strict(encoded).ok_or_else(|| {
            err(&format!("{p}.SearchStringBase64"), "not base64 (RFC 4648 standard alphabet, with padding)")
        })?,
        _ => return Err(err(p, "set exactly one of SearchString and SearchStringBase64")),
    };
    let field = if b.search_string.is_some() { "SearchString" } else { "SearchStringBase64" };
    if needle.is_empty() || needle.len() > MAX_SEARCH {
        return Err(err(&format!("{p}.{field}"), format!("must be 1 to {MAX_SEARCH} bytes")));
    }
    let position = match b.positional_constraint.as_str() {
        "EXACTLY" => Placement::Exactly,
        "STARTS_WITH" => Placement::StartsWith,
        "ENDS_WITH" => Placement::EndsWith,
        "CONTAINS" => Placement::Contains,
        "CONTAINS_WORD" => {
            if !needle.iter().copied().all(is_word) {
                return Err(err(&format!("{p}.{field}"), "CONTAINS_WORD needs letters, digits and _ only"));
            }
            Placement::ContainsWord
        }
        other => {
            return Err(err(
                &format!("{p}.PositionalConstraint"),
                format!("{other:?} is not EXACTLY, STARTS_WITH, ENDS_WITH, CONTAINS or CONTAINS_WORD"),
            ));
        }
    };
    let finder = Box::new(memchr::memmem::Finder::new(&needle).into_owned());
    let matcher = Matcher::Bytes { needle, position, finder };
    inspect(c, p, &b.field_to_match, &b.text_transformations, matcher)
}

/// Strict base64 (RFC 4648 section 4: standard alphabet, `=` padding to a
/// multiple of 4, nothing else), as CloudFormation's `SearchStringBase64`.
fn base64_strict(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let chunks = s.len() / 4;
    for (i, q) in s.chunks_exact(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

fn compile_regex_match(c: &mut Compiler<'_>, p: &str, r: &RegexMatchJson) -> Result<Statement, WafError> {
    let re = regex(&format!("{p}.RegexString"), &r.regex_string)?;
    inspect(c, p, &r.field_to_match, &r.text_transformations, Matcher::Regex(re))
}

fn compile_regex_set(c: &mut Compiler<'_>, p: &str, r: &RegexSetRefJson) -> Result<Statement, WafError> {
    let id = arn_id(&r.arn);
    let set = c
        .sets
        .regex_set(id)
        .ok_or_else(|| err(&format!("{p}.ARN"), format!("regex pattern set {id:?} does not exist")))?;
    inspect(c, p, &r.field_to_match, &r.text_transformations, Matcher::RegexSet(set))
}

fn compile_ip_set(c: &mut Compiler<'_>, p: &str, i: &IpSetRefJson) -> Result<Statement, WafError> {
    let id = arn_id(&i.arn);
    let set = c.sets.ip_set(id).ok_or_else(|| err(&format!("{p}.ARN"), format!("IP set {id:?} does not exist")))?;
    let forwarded = match &i.forwarded_ip_config {
        None => None,
        Some(f) => {
            let fp = format!("{p}.IPSetForwardedIPConfig");
            let config = ForwardedIp::compile(&fp, &f.header_name, &f.fallback_behavior)?;
            Some((config, Position::compile(&format!("{fp}.Position"), &f.position)?))
        }
    };
    Ok(Statement::IpSet { set, forwarded })
}

fn compile_size(c: &mut Compiler<'_>, p: &str, s: &SizeConstraintJson) -> Result<Statement, WafError> {
    let cmp = match s.comparison_operator.as_str() {
        "EQ" => Cmp::Eq,
        "NE" => Cmp::Ne,
        "LE" => Cmp::Le,
        "LT" => Cmp::Lt,
        "GE" => Cmp::Ge,
        "GT" => Cmp::Gt,
        o => {
            return Err(err(&format!("{p}.ComparisonOperator"), format!("{o:?} is not EQ, NE, LE, LT, GE or GT")));
        }
    };
    inspect(c, p, &s.field_to_match, &s.text_transformations, Matcher::Size { cmp, size: s.size })
}

fn compile_sqli(c: &mut Compiler<'_>, p: &str, q: &SqliMatchJson) -> Result<Statement, WafError> {
    let high = match q.sensitivity_level.as_deref() {
        None | Some("LOW") => false,
        Some("HIGH") => true,
        Some(o) => return Err(err(&format!("{p}.SensitivityLevel"), format!("{o:?} is not LOW or HIGH"))),
    };
    inspect(c, p, &q.field_to_match, &q.text_transformations, Matcher::Sqli { high })
}

fn compile_xss(c: &mut Compiler<'_>, p: &str, x: &XssMatchJson) -> Result<Statement, WafError> {
    inspect(c, p, &x.field_to_match, &x.text_transformations, Matcher::Xss)
}

fn compile_label(p: &str, l: &LabelMatchJson) -> Result<Statement, WafError> {
    let namespace = match l.scope.as_str() {
        "LABEL" => false,
        "NAMESPACE" => true,
        o => return Err(err(&format!("{p}.Scope"), format!("{o:?} is not LABEL or NAMESPACE"))),
    };
    check_label(&format!("{p}.Key"), &l.key)?;
    let key = short_label(&l.key).to_owned();
    let affix = if namespace { format!("{}:", key.trim_end_matches(':')) } else { format!(":{key}") };
    Ok(Statement::Label { namespace, key, affix })
}

/// `AndStatement` / `OrStatement`: at least two statements, one level deeper.
fn compile_list(
    c: &mut Compiler<'_>,
    p: &str,
    list: &StatementsJson,
    depth: usize,
) -> Result<Vec<Statement>, WafError> {
    let p = format!("{p}.Statements");
    if list.statements.len() < 2 {
        return Err(err(&p, "needs at least two statements"));
    }
    list.statements.iter().enumerate().map(|(i, st)| compile(c, &format!("{p}[{i}]"), st, depth + 1)).collect()
}

fn compile_not(c: &mut Compiler<'_>, p: &str, n: &NotJson, depth: usize) -> Result<Statement, WafError> {
    Ok(Statement::Not(Box::new(compile(c, &format!("{p}.Statement"), &n.statement, depth + 1)?)))
}

fn compile_rate(c: &mut Compiler<'_>, p: &str, r: &RateBasedJson, depth: usize) -> Result<Statement, WafError> {
    if depth > 0 {
        return Err(err(p, "a RateBasedStatement cannot be nested; it is a rule's top statement"));
    }
    if !(MIN_RATE_LIMIT..=MAX_RATE_LIMIT).contains(&r.limit) {
        return Err(err(
            &format!("{p}.Limit"),
            format!("{MIN_RATE_LIMIT} to {MAX_RATE_LIMIT} requests per window (AWS's bounds)"),
        ));
    }
    let window = r.evaluation_window_sec.unwrap_or(300);
    if ![60, 120, 300, 600].contains(&window) {
        return Err(err(&format!("{p}.EvaluationWindowSec"), "one of 60, 120, 300, 600"));
    }
    let aggregate = Aggregate::compile(p, r)?;
    let scope_down = match &r.scope_down_statement {
        Some(sd) => Some(Box::new(compile(c, &format!("{p}.ScopeDownStatement"), sd, depth + 1)?)),
        None => None,
    };
    let limiter = Arc::new(RateLimiter::new(std::time::Duration::from_secs(window), r.limit, aggregate));
    Ok(Statement::Rate { limiter, scope_down })
}

fn compile_geo(c: &mut Compiler<'_>, p: &str, g: &GeoMatchJson) -> Result<Statement, WafError> {
    if g.country_codes.is_empty() {
        return Err(err(&format!("{p}.CountryCodes"), "list at least one country code"));
    }
    let mut codes = Vec::with_capacity(g.country_codes.len());
    for (i, code) in g.country_codes.iter().enumerate() {
        match code.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => codes.push([*a, *b]),
            _ => {
                return Err(err(
                    &format!("{p}.CountryCodes[{i}]"),
                    format!("{code:?} is not an ISO 3166-1 alpha-2 code"),
                ));
            }
        }
    }
    let forwarded = match &g.forwarded_ip_config {
        None => None,
        Some(f) => Some(ForwardedIp::compile(&format!("{p}.ForwardedIPConfig"), &f.header_name, &f.fallback_behavior)?),
    };
    let db = c.sets.geo().map_err(|e| err(p, e))?;
    Ok(Statement::Geo { db, codes, forwarded })
}

pub(super) fn check_label(path: &str, s: &str) -> Result<(), WafError> {
    // AWS: ^[0-9A-Za-z_\-:]+$, at most 5 namespaces, parts up to 128.
    let ok = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'))
        && s.split(':').all(|p| p.len() <= 128);
    if ok { Ok(()) } else { Err(err(path, format!("{s:?} is not a label (letters, digits, _ - :)"))) }
}

/// Strips the `awswaf:<account>:webacl:<name>:` prefix of a fully
/// qualified label or namespace; shardgate keeps labels as the rules wrote
/// them.
pub(super) fn short_label(s: &str) -> &str {
    let parts: Vec<&str> = s.splitn(5, ':').collect();
    if parts.len() == 5 && parts[0] == "awswaf" && parts[2] == "webacl" { parts[4] } else { s }
}

/// Turns each inspection's probe leaf into its bit in the evaluation state.
pub(super) fn to_state_bits(st: &mut Statement, probes: &[probe::Probe]) {
    match st {
        Statement::Inspect { source, leaf } => *leaf += probes.get(*source).map_or(0, |p| p.base),
        Statement::And(l) | Statement::Or(l) => l.iter_mut().for_each(|s| to_state_bits(s, probes)),
        Statement::Not(s) => to_state_bits(s, probes),
        Statement::Rate { scope_down: Some(s), .. } => to_state_bits(s, probes),
        _ => {}
    }
}

/// `GeoMatchStatement`; also sets the country label for later rules.
#[inline(never)]
fn geo_match(c: &Ctx<'_, '_>, db: Option<&GeoDb>, codes: &[[u8; 2]], forwarded: Option<&ForwardedIp>) -> bool {
    let ip = match forwarded {
        None => Some(c.req.client_ip),
        // AWS uses the first address of the header for geo match.
        Some(f) => match f.first(c.req.headers) {
            First::Ip(ip) => Some(ip),
            First::Missing => return false,
            First::Unparsable => return f.fallback_match,
        },
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
    #[inline]
    pub(super) fn eval(&self, c: &Ctx<'_, '_>) -> bool {
        match self {
            Statement::Inspect { source, leaf } => c.leaf(*source, *leaf),
            Statement::IpSet { set, forwarded: None } => set.contains(c.req.client_ip),
            // AWS (API_IPSetForwardedIPConfig): "If the specified header
            // isn't present in the request, AWS WAF doesn't apply the rule to
            // the web request at all"; a present header without a readable
            // address at the position lets the fallback decide.
            Statement::IpSet { set, forwarded: Some((f, position)) } => {
                f.any_at(c.req.headers, *position, |ip| set.contains(ip))
            }
            Statement::Label { namespace, key, affix } => c.labels.try_borrow().is_ok_and(|labels| {
                labels.iter().any(|l| {
                    if *namespace { l.starts_with(affix.as_str()) } else { **l == **key || l.ends_with(affix.as_str()) }
                })
            }),
            Statement::Rate { limiter, scope_down } => {
                if scope_down.as_ref().is_some_and(|s| !s.eval(c)) {
                    return false;
                }
                let key = match c.labels.try_borrow() {
                    Ok(labels) => limiter.key(c.req, &labels),
                    Err(_) => Key::Skip,
                };
                match key {
                    Key::Instance(key) => limiter.hit(key, std::time::Instant::now()),
                    // FallbackBehavior MATCH: the rule applies, nothing is counted.
                    Key::Match => true,
                    // A missing component: not counted, no match (AWS).
                    Key::Skip => false,
                }
            }
            Statement::Geo { db, codes, forwarded } => geo_match(c, db.as_deref(), codes, forwarded.as_ref()),
            Statement::And(list) => list.iter().all(|s| s.eval(c)),
            Statement::Or(list) => list.iter().any(|s| s.eval(c)),
            Statement::Not(s) => !s.eval(c),
        }
    }
}
