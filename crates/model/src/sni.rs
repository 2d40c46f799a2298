//! SNI patterns: an exact host name, a `*.suffix` wildcard, or `*`.
//!
//! APISIX's `host_def` pattern (`^\*$|^\*?[0-9a-zA-Z-._\[\]:]+$`, in
//! `apisix/schema_def.lua`) is looser than what can ever appear in a
//! ClientHello: RFC 6066 §3 says the SNI is a DNS host name, never an IP
//! literal, with no trailing dot. shardgate accepts the names that can match
//! and refuses the rest with a reason, instead of storing a route that never
//! matches. Names are compared lower-cased (DNS names are case-insensitive,
//! RFC 4343; rustls lower-cases the SNI it reads).

use std::fmt;

/// A validated SNI pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SniPattern {
    /// One host name, lower-cased: `gs-1.com`.
    Exact(Box<str>),
    /// `*.example.com`, stored as its suffix with the dot: `.example.com`.
    Wildcard(Box<str>),
    /// `*`: any SNI.
    Any,
}

/// Longest DNS name (RFC 1035 §2.3.4).
const MAX_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

impl SniPattern {
    /// Parses and validates a pattern as written in `sni` or `snis`.
    pub fn parse(input: &str) -> Result<Self, String> {
        if input == "*" {
            return Ok(SniPattern::Any);
        }
        let lower = input.to_ascii_lowercase();
        if let Some(suffix) = lower.strip_prefix("*.") {
            check_host_name(suffix).map_err(|e| format!("{input:?} is not a valid wildcard SNI: {e}"))?;
            return Ok(SniPattern::Wildcard(format!(".{suffix}").into()));
        }
        if lower.contains('*') {
            return Err(format!(
                "{input:?} is not a valid SNI: a wildcard must be \"*\" or start with \"*.\" (e.g. \"*.example.com\")"
            ));
        }
        check_host_name(&lower).map_err(|e| format!("{input:?} is not a valid SNI: {e}"))?;
        Ok(SniPattern::Exact(lower.into()))
    }

    /// Whether a certificate for this pattern covers `sni` (already
    /// lower-cased): a wildcard covers exactly one more label (RFC 6125 §6.4.3,
    /// and APISIX's certificate router).
    pub fn covers_one_label(&self, sni: &str) -> bool {
        match self {
            SniPattern::Exact(name) => **name == *sni,
            SniPattern::Wildcard(suffix) => {
                sni.len() > suffix.len() && sni.ends_with(&**suffix) && !sni[..sni.len() - suffix.len()].contains('.')
            }
            SniPattern::Any => true,
        }
    }

    /// Whether a stream route for this pattern matches `sni` (already
    /// lower-cased): a wildcard matches any deeper name, as APISIX's stream
    /// router does ("no certificate is involved", `apisix/stream/router/ip_port.lua`).
    pub fn matches_suffix(&self, sni: &str) -> bool {
        match self {
            SniPattern::Exact(name) => **name == *sni,
            SniPattern::Wildcard(suffix) => sni.len() > suffix.len() && sni.ends_with(&**suffix),
            SniPattern::Any => true,
        }
    }
}

/// Checks a host name: labels of letters, digits, `-` and `_`, no empty label,
/// no IP literal, within DNS lengths.
fn check_host_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("the name is longer than {MAX_NAME} characters"));
    }
    if name.parse::<std::net::IpAddr>().is_ok() || name.starts_with('[') {
        return Err("an SNI cannot be an IP address (RFC 6066 section 3)".into());
    }
    if name.ends_with('.') {
        return Err("an SNI has no trailing dot (RFC 6066 section 3)".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("the name has an empty label".into());
        }
        if label.len() > MAX_LABEL {
            return Err(format!("the label {label:?} is longer than {MAX_LABEL} characters"));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            return Err(format!("the character {c:?} is not allowed in a host name"));
        }
    }
    Ok(())
}

impl fmt::Display for SniPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SniPattern::Exact(name) => f.write_str(name),
            SniPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
            SniPattern::Any => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SniPattern {
        SniPattern::parse(s).expect(s)
    }

    #[test]
    fn parses_exact_wildcard_and_any() {
        assert_eq!(p("GS-1.com"), SniPattern::Exact("gs-1.com".into()));
        assert_eq!(p("*.Example.com"), SniPattern::Wildcard(".example.com".into()));
        assert_eq!(p("*"), SniPattern::Any);
        assert_eq!(p("*.example.com").to_string(), "*.example.com");
    }

    #[test]
    fn refuses_names_that_can_never_be_an_sni() {
        for bad in ["", "a..b", "a.b.", "127.0.0.1", "[::1]", "a b.com", "foo*.com", "*foo.com", "a.*.com", "*."] {
            assert!(SniPattern::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(SniPattern::parse(&format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn certificate_wildcards_cover_one_label_route_wildcards_any_depth() {
        let w = p("*.example.com");
        assert!(w.covers_one_label("a.example.com"));
        assert!(!w.covers_one_label("a.b.example.com"));
        assert!(!w.covers_one_label("example.com"));
        assert!(!w.covers_one_label("xexample.com"));
        assert!(w.matches_suffix("a.b.example.com"));
        assert!(!w.matches_suffix("example.com"));
        assert!(p("gs-1.com").matches_suffix("gs-1.com"));
        assert!(!p("gs-1.com").matches_suffix("gs-10.com"));
    }
}
