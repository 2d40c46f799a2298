//! A web ACL compiled once and evaluated per request: rules in `Priority`
//! order, each a statement tree; `Allow` and `Block` end the evaluation,
//! `Count` records the match and goes on; rule labels are added when a rule
//! matches, for later rules' `LabelMatchStatement`; the `DefaultAction`
//! applies when no terminating rule matched (AWS WAF developer guide,
//! "How AWS WAF processes a web ACL").
//!
//! # Layout
//! - this module: the compiled [`WebAcl`], its evaluation state and verdict;
//! - [`sets`]: IP sets, regex pattern sets and how compile finds them;
//! - `field`: fields to match, inspection limits, text transformations;
//! - `forwarded`: client addresses from a forwarded header;
//! - `matcher`: leaf matchers, run together per source by `probe`;
//! - `statement`: one compile function per statement kind, and evaluation;
//! - `rate`: rate-based counters;
//! - `action`: rule and default actions.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::fingerprint::TlsFingerprint;
use crate::json::{RuleJson, TagJson, WebAclJson};
use crate::transform::{Transform, apply_all};

mod action;
mod field;
mod forwarded;
mod matcher;
mod probe;
mod rate;
pub mod sets;
mod statement;
#[cfg(test)]
mod tests;

use action::{HeaderBudget, Inserted, RuleAction, compile_action, compile_default};
use field::{Field, Sources};
use statement::{Compiler, Statement, check_label, to_state_bits};

pub use rate::RateLimiter;
pub use sets::{IpSet, NoSets, RegexPatternSet, Sets, arn_id};

/// Most rules in one web ACL.
pub const MAX_RULES: usize = 1000;
/// Body bytes inspected (CloudFront's default, 16 KiB).
pub const BODY_MAX_BYTES: usize = 16 * 1024;

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
    /// The connection's TLS fingerprints, computed once per connection;
    /// `None` on plain connections, and on connections whose listener had
    /// no web ACL reading them when the connection began (a fingerprint
    /// field's or rate key's `FallbackBehavior` decides).
    pub tls: Option<&'a TlsFingerprint>,
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
    /// `ResponseHeaders`, sent as written (AWS prefixes only the headers it
    /// inserts into requests).
    pub headers: Vec<(HeaderName, HeaderValue)>,
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
    /// Headers to insert into the request the origin receives
    /// (`x-amzn-waf-<name>`): from matching Count rules, the Allow rule or
    /// the Allow default action. A later rule's header replaces an earlier
    /// one of the same name, as AWS does. Empty (no allocation) when no
    /// action inserts any; meaningless when the action is Block.
    pub request_headers: Vec<(HeaderName, HeaderValue)>,
}

/// Inserts `add` into `into`, replacing headers of the same name.
fn insert_headers(into: &mut Vec<(HeaderName, HeaderValue)>, add: &[(HeaderName, HeaderValue)]) {
    for (name, value) in add {
        match into.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.clone(),
            None => into.push((name.clone(), value.clone())),
        }
    }
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

#[derive(Debug, Clone)]
struct Rule {
    name: Arc<str>,
    statement: Statement,
    action: RuleAction,
    labels: Vec<Arc<str>>,
    sampled: bool,
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
    /// Headers the default action (Allow) inserts.
    default_headers: Inserted,
    /// Whether sampling is on for the default action.
    pub sampled: bool,
    /// Whether a rule reads the connection's TLS fingerprints.
    uses_fingerprints: bool,
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
        TagJson::check_all(json.tags.as_deref()).map_err(|(path, reason)| err(&path, reason))?;
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
        let mut budget = HeaderBudget::default();
        let (default, default_headers) = match &json.default_action {
            None => return Err(err("DefaultAction", "required")),
            Some(a) => compile_default("DefaultAction", a, &bodies, &mut budget)?,
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
                Some(a) => compile_action(&format!("{p}.Action"), a, &bodies, &mut budget)?,
                None => return Err(err(&format!("{p}.Action"), "required")),
            };
            let statement = statement::compile(
                &mut Compiler { sets, sources: &mut sources },
                &format!("{p}.Statement"),
                &r.statement,
                0,
            )?;
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
        let uses_fingerprints = sources.list.iter().any(|(f, _)| f.fingerprint_name().is_some())
            || rules.iter().any(
                |r| matches!(&r.statement, Statement::Rate { limiter, .. } if limiter.aggregate().uses_fingerprints()),
            );
        Ok(WebAcl {
            name: Arc::from(name.as_str()),
            rules,
            sources: sources.list,
            probes: sources.probes,
            steps,
            state_words: next_bit.div_ceil(64),
            default,
            default_headers,
            uses_fingerprints,
            sampled: json.visibility_config.as_ref().is_some_and(|v| v.sampled_requests_enabled),
        })
    }

    /// Whether a rule reads the connection's TLS fingerprints
    /// (`JA3Fingerprint`/`JA4Fingerprint` fields or rate keys): a stream
    /// listener then runs the ACL once the ClientHello is read instead of at
    /// accept, and computes them only then.
    pub fn uses_tls_fingerprints(&self) -> bool {
        self.uses_fingerprints
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
        let mut request_headers = Vec::new();
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
                RuleAction::Count(h) => {
                    counted.push(Arc::clone(&rule.name));
                    insert_headers(&mut request_headers, h);
                }
                RuleAction::Allow(h) => {
                    insert_headers(&mut request_headers, h);
                    let labels = labels.into_inner();
                    return Verdict { action: Action::Allow, rule: rule_name, counted, labels, request_headers };
                }
                RuleAction::Block(b) => {
                    let action = Action::Block(b.clone());
                    let labels = labels.into_inner();
                    return Verdict { action, rule: rule_name, counted, labels, request_headers: Vec::new() };
                }
            }
        }
        let labels = labels.into_inner();
        match self.default {
            Action::Allow => insert_headers(&mut request_headers, &self.default_headers),
            Action::Block(_) => request_headers.clear(),
        }
        Verdict { action: self.default.clone(), rule: None, counted, labels, request_headers }
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
    /// the connection (the client address: IP sets, country; its TLS
    /// fingerprints: JA3/JA4 fields; labels; rate limits aggregated by IP,
    /// CONSTANT or custom keys IP, LabelNamespace, JA3/JA4; and boolean
    /// combinations of them), if any: an ACL without one can run on a stream
    /// connection, which has no request.
    pub fn request_rule(&self) -> Option<&str> {
        self.rules.iter().find(|r| !connection_level(&r.statement, &self.sources)).map(|r| &*r.name)
    }
}

/// Whether `s` reads only what a stream connection has (see
/// [`WebAcl::request_rule`]). Recursive: compiled trees are at most
/// `MAX_STATEMENT_DEPTH` deep.
fn connection_level(s: &Statement, sources: &[(Field, Vec<Transform>)]) -> bool {
    match s {
        Statement::IpSet { forwarded: None, .. } | Statement::Label { .. } => true,
        Statement::Geo { forwarded: None, .. } => true,
        // The TLS fingerprints belong to the connection.
        Statement::Inspect { source, .. } => sources.get(*source).is_some_and(|(f, _)| f.is_connection_level()),
        Statement::Rate { scope_down, limiter } => {
            limiter.aggregate().is_connection_level()
                && scope_down.as_deref().is_none_or(|s| connection_level(s, sources))
        }
        Statement::And(l) | Statement::Or(l) => l.iter().all(|s| connection_level(s, sources)),
        Statement::Not(s) => connection_level(s, sources),
        _ => false,
    }
}
