//! Node templates: one upstream node that stands for a fleet of room
//! servers, its host name made from the SNI of each connection (a
//! shardgate extension).
//!
//! A template is the `host` of a node in the array form of `nodes`, with
//! placeholders in braces:
//!
//! - `{sni}`: the whole SNI (lower-cased, no trailing dot);
//! - `{sni_label_N}`: its N-th label counting from the left, from 1: for
//!   the SNI `room-7.rooms.example.com`, `{sni_label_1}` is `room-7` and
//!   `{sni_label_2}` is `rooms`.
//!
//! ```json
//! {"nodes": [{"host": "{sni_label_1}.rooms.game.svc.cluster.local", "port": 7777, "weight": 1}]}
//! ```
//!
//! With a route `"sni": "*.rooms.example.com"`, a player asking for
//! `room-7.rooms.example.com` is sent to `room-7.rooms.game.svc.cluster.local:7777`.
//! The port is the node's and fixed; the name is resolved through DNS for
//! each connection (cached: see `shardgate_upstream::resolver`).
//!
//! Rules, checked when the upstream is written (the Admin API answers 400
//! naming the field):
//! - placeholders are `{sni}` and `{sni_label_1}` to `{sni_label_127}` (a
//!   253-byte name has at most 127 labels); anything else in braces is an
//!   unknown placeholder;
//! - the fixed text is letters, digits, `-` and `.`, and the template must
//!   end in fixed labels (`{sni_label_1}.rooms`, not `rooms.{sni_label_1}`
//!   nor `{sni}`): a player's SNI picks a name inside a domain the operator
//!   chose, never an arbitrary host;
//! - with every placeholder standing for one letter the result is a valid
//!   DNS name (no empty label, no label starting or ending with `-`, within
//!   DNS lengths), so a template that can never render is refused;
//! - templates only in the array form of `nodes` (the map form's keys are
//!   `host:port` strings, where a template would hide its port), and an
//!   upstream with a template has only templates (a fixed node beside them
//!   would get the whole fleet's traffic whenever its weight or priority
//!   says so, whatever room the player asked for);
//! - no `checks` (a template names a different server for every SNI: there
//!   is no fixed node to probe);
//! - a route whose upstream has a template must have `sni` or `snis`, and
//!   an edge origin cannot use one (its connections carry no SNI).
//!
//! At connect time the rendered name must be a valid DNS name by the LDH
//! rule (RFC 1035 section 2.3.1, RFC 5891: letters, digits and `-`, 1 to 63
//! bytes a label, no label starting or ending with `-`, at most 253 bytes)
//! whose last label is not all digits (RFC 3696 section 2: so no SNI renders
//! to an IP address a resolver would take literally). A name that is not,
//! or an SNI with fewer labels than the template uses, is refused before
//! any lookup: a player cannot make shardgate send junk to DNS.

use std::fmt;

use serde_json::Value;

use crate::wire::UpstreamWire;
use crate::{Host, Invalid, Node, SniPattern, Upstream};

/// Highest `N` of `{sni_label_N}`: a 253-byte name has at most 127 labels.
pub const MAX_LABEL_INDEX: u8 = 127;
/// Longest template accepted (placeholders included).
const MAX_TEMPLATE_LEN: usize = 1024;
/// Longest DNS name (RFC 1035 section 2.3.4), without the trailing dot.
const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

/// A node host name made from each connection's SNI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeTemplate {
    source: Box<str>,
    parts: Box<[Part]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Literal(Box<str>),
    Sni,
    /// 1-based.
    SniLabel(u8),
}

/// Why a template could not render a name for an SNI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The SNI has fewer labels than `{sni_label_N}` asks for.
    #[error("the SNI has no label {0}")]
    MissingLabel(u8),
    /// The rendered name is not a valid DNS name.
    #[error("{name:?} is not a valid DNS name: {reason}")]
    InvalidName {
        /// The rendered name, cut to 80 bytes for logs.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

impl NodeTemplate {
    /// The template as written (lower-cased).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Parses a template; the error says what to write instead.
    pub fn parse(input: &str) -> Result<NodeTemplate, String> {
        if input.len() > MAX_TEMPLATE_LEN {
            return Err(format!("a node template is at most {MAX_TEMPLATE_LEN} characters"));
        }
        let source = input.to_ascii_lowercase();
        let mut parts = Vec::new();
        let mut rest = source.as_str();
        while !rest.is_empty() {
            let literal_end = rest.find(['{', '}']).unwrap_or(rest.len());
            if literal_end > 0 {
                let literal = &rest[..literal_end];
                if let Some(c) = literal.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.')) {
                    return Err(format!(
                        "the character {c:?} cannot be in a host name; a node template's fixed text is letters, digits, '-' and '.'"
                    ));
                }
                parts.push(Part::Literal(literal.into()));
                rest = &rest[literal_end..];
                continue;
            }
            if rest.starts_with('}') {
                return Err("a '}' without its '{'".into());
            }
            let close = rest.find('}').ok_or_else(|| "a '{' without its '}'".to_owned())?;
            let name = &rest[1..close];
            parts.push(placeholder(name)?);
            rest = &rest[close + 1..];
        }
        if !parts.iter().any(|p| !matches!(p, Part::Literal(_))) {
            return Err("a node template has at least one placeholder: {sni} or {sni_label_N}".into());
        }
        match parts.last() {
            Some(Part::Literal(tail)) if tail.contains('.') && !tail.ends_with('.') => {}
            _ => {
                return Err(format!(
                    "{input:?} must end in fixed labels (e.g. \"{{sni_label_1}}.rooms.game.svc.cluster.local\"), so a player's SNI picks a name inside a domain you chose"
                ));
            }
        }
        let template = NodeTemplate { source: source.clone().into(), parts: parts.into() };
        // Every placeholder as one letter: the result must be a DNS name.
        let sample: String = template
            .parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s,
                Part::Sni | Part::SniLabel(_) => "a",
            })
            .collect();
        check_dns_name(&sample).map_err(|reason| format!("{input:?} can never render a valid DNS name: {reason}"))?;
        Ok(template)
    }

    /// The host name for a connection whose SNI is `sni` (lower-cased, no
    /// trailing dot, as the stream listener gives it), checked by the
    /// rules in the module's documentation.
    pub fn render(&self, sni: &str) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.source.len() + sni.len());
        for part in self.parts.iter() {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Sni => out.push_str(sni),
                Part::SniLabel(n) => {
                    let label = sni.split('.').nth(usize::from(*n) - 1).ok_or(RenderError::MissingLabel(*n))?;
                    out.push_str(label);
                }
            }
            if out.len() > MAX_NAME + 1 {
                break;
            }
        }
        check_dns_name(&out).map_err(|reason| RenderError::InvalidName { name: cut(&out, 80), reason })?;
        Ok(out)
    }
}

impl fmt::Display for NodeTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn placeholder(name: &str) -> Result<Part, String> {
    if name == "sni" {
        return Ok(Part::Sni);
    }
    let unknown = || {
        format!(
            "unknown placeholder {{{name}}}; use {{sni}} or {{sni_label_N}} (N counts the SNI's labels from the left, from 1 to {MAX_LABEL_INDEX})"
        )
    };
    let digits = name.strip_prefix("sni_label_").ok_or_else(unknown)?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 3 {
        return Err(unknown());
    }
    match digits.parse::<u8>() {
        Ok(n) if (1..=MAX_LABEL_INDEX).contains(&n) => Ok(Part::SniLabel(n)),
        _ => Err(unknown()),
    }
}

/// The LDH rule with DNS lengths, and a last label that is not all digits.
/// Answers which rule `name` breaks.
pub fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_NAME {
        return Err("the name is longer than 253 bytes");
    }
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err("a label is empty");
        }
        if label.len() > MAX_LABEL {
            return Err("a label is longer than 63 bytes");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("a label holds a character other than letters, digits and '-'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the last label is all digits, as in an IP address");
    }
    Ok(())
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A node's `host` as a template, or `None` when it has no braces (then it
/// is a plain address or name).
pub(crate) fn parse_host(host: &str) -> Option<Result<Host, String>> {
    if !host.contains(['{', '}']) {
        return None;
    }
    Some(NodeTemplate::parse(host).map(Host::Template))
}

/// Refuses a template as a key of the map form of `nodes`.
pub(crate) fn refuse_in_map(field: &str, addr: &str) -> Result<(), Invalid> {
    if addr.contains(['{', '}']) {
        return Err(Invalid::new(
            field,
            format!(
                "node templates are accepted in the array form of nodes only: [{{\"host\": {:?}, \"port\": <port>, \"weight\": 1}}]",
                addr.rsplit_once(':').map_or(addr, |(h, _)| h)
            ),
        ));
    }
    Ok(())
}

/// Refuses `checks` beside a node template (read from the wire, so this
/// holds whatever else validates `checks`).
pub(crate) fn refuse_checks(w: &UpstreamWire) -> Result<(), Invalid> {
    let Some(Value::Array(nodes)) = &w.nodes else { return Ok(()) };
    let template = nodes.iter().any(|n| n.get("host").and_then(Value::as_str).is_some_and(|h| h.contains(['{', '}'])));
    if template && w.checks.is_some() {
        return Err(Invalid::new(
            "checks",
            "a node template names a different server for every SNI, so there is no fixed node to probe; remove checks (a rendered name that fails a connect fails that connection only, and is never marked down)",
        ));
    }
    Ok(())
}

/// Refuses an upstream that mixes templates with fixed nodes.
pub(crate) fn check_nodes(nodes: &[Node]) -> Result<(), Invalid> {
    let templates = nodes.iter().filter(|n| matches!(n.host, Host::Template(_))).count();
    if templates > 0 && templates < nodes.len() {
        let fixed = nodes.iter().position(|n| !matches!(n.host, Host::Template(_))).unwrap_or(0);
        return Err(Invalid::new(
            format!("nodes[{fixed}].host"),
            "an upstream with a node template has only templates: a fixed node beside them would get the fleet's traffic whatever room the player asked for; put it in an upstream of its own",
        ));
    }
    Ok(())
}

/// Refuses a route without `sni`/`snis` whose inline upstream has a
/// template (there would be nothing to render it from).
pub(crate) fn check_route(snis: &[SniPattern], upstream: Option<&Upstream>) -> Result<(), Invalid> {
    if snis.is_empty()
        && let Some(u) = upstream
        && let Some(i) = u.template_node()
    {
        return Err(Invalid::new(
            format!("upstream.nodes[{i}].host"),
            "a node template takes the connection's SNI; give the route sni or snis",
        ));
    }
    Ok(())
}

/// Refuses a template in an edge origin's inline upstream.
pub(crate) fn refuse_in_origin(upstream: &Upstream) -> Result<(), Invalid> {
    match upstream.template_node() {
        None => Ok(()),
        Some(i) => Err(Invalid::new(
            format!("nodes[{i}].host"),
            "node templates take a stream connection's SNI; an edge origin's connections have none",
        )),
    }
}

impl Upstream {
    /// Whether its nodes are templates (then all of them are).
    pub fn is_template(&self) -> bool {
        self.template_node().is_some()
    }

    /// The index of the first template node.
    fn template_node(&self) -> Option<usize> {
        self.nodes.iter().position(|n| matches!(n.host, Host::Template(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NodeTemplate {
        NodeTemplate::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn labels_count_from_the_left_and_sni_is_the_whole_name() {
        let room = t("{sni_label_1}.rooms.game.svc.cluster.local");
        assert_eq!(room.render("room-7.rooms.example.com").as_deref(), Ok("room-7.rooms.game.svc.cluster.local"));
        let two = t("{SNI_LABEL_2}-{sni_label_1}.Fleet");
        assert_eq!(two.as_str(), "{sni_label_2}-{sni_label_1}.fleet");
        assert_eq!(two.render("a.eu.example.com").as_deref(), Ok("eu-a.fleet"));
        let whole = t("{sni}.internal");
        assert_eq!(whole.render("gs-1.example.com").as_deref(), Ok("gs-1.example.com.internal"));
        assert_eq!(room.render("room"), Ok("room.rooms.game.svc.cluster.local".to_owned()));
        assert_eq!(t("{sni_label_3}.x").render("a.b"), Err(RenderError::MissingLabel(3)));
    }

    #[test]
    fn names_that_break_the_ldh_rule_are_refused_before_any_lookup() {
        let room = t("{sni_label_1}.rooms.svc");
        for (sni, rule) in [
            ("x_y.rooms.example.com", "other than letters"),
            ("-room.rooms.example.com", "starts or ends"),
            ("room-.rooms.example.com", "starts or ends"),
            (&*format!("{}.rooms.example.com", "a".repeat(64)), "longer than 63"),
            ("r%00m.x", "other than letters"),
            ("caf\u{e9}.x", "other than letters"),
        ] {
            match room.render(sni) {
                Err(RenderError::InvalidName { reason, .. }) => assert!(reason.contains(rule), "{sni}: {reason}"),
                other => panic!("{sni}: {other:?}"),
            }
        }
        // No SNI renders to an address a resolver would take literally: the
        // last label is the template's own, and never all digits.
        assert!(NodeTemplate::parse("{sni}.10").expect_err("numeric").contains("digits"));
        assert_eq!(check_dns_name("198.51.100.1"), Err("the last label is all digits, as in an IP address"));
        let long = t("{sni}.rooms");
        let sni = ["a".repeat(62).as_str(); 4].join(".");
        assert!(matches!(long.render(&sni), Err(RenderError::InvalidName { reason, .. }) if reason.contains("253")));
    }

    #[test]
    fn bad_templates_are_refused_with_the_fix() {
        for (bad, says) in [
            ("{room}.rooms.svc", "unknown placeholder {room}"),
            ("{sni_label_0}.rooms.svc", "unknown placeholder"),
            ("{sni_label_128}.rooms.svc", "unknown placeholder"),
            ("{sni_label_01}.rooms.svc", "unknown placeholder"),
            ("{sni_label_1.rooms.svc", "without its '}'"),
            ("x}.rooms.svc", "without its '{'"),
            ("{sni_label_1}_x.rooms.svc", "'_'"),
            ("rooms.{sni_label_1}", "must end in fixed labels"),
            ("{sni}", "must end in fixed labels"),
            ("{sni_label_1}.rooms.", "must end in fixed labels"),
            ("{sni_label_1}-.rooms", "can never render"),
            ("{sni_label_1}..rooms", "can never render"),
            (".{sni_label_1}.rooms", "can never render"),
        ] {
            let e = NodeTemplate::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(parse_host("198.51.100.1").is_none() && parse_host("gs-1.svc").is_none());
    }
}
