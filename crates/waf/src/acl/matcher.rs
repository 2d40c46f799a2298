//! Leaf matchers: what one inspection checks on one value (a ByteMatch
//! needle at its position, a regex, a regex pattern set, a size, the SQLi
//! and XSS detectors). Leaves run together per source in [`super::probe`].

use std::sync::Arc;

use regex::bytes::Regex;

use super::probe;
use super::sets::RegexPatternSet;
use crate::detect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Position {
    Exactly,
    StartsWith,
    EndsWith,
    Contains,
    ContainsWord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Le,
    Lt,
    Ge,
    Gt,
}

#[derive(Debug, Clone)]
pub(super) enum Matcher {
    Bytes { needle: Vec<u8>, position: Position, finder: Box<memchr::memmem::Finder<'static>> },
    Regex(Regex),
    RegexSet(Arc<RegexPatternSet>),
    Size { cmp: Cmp, size: u64 },
    Sqli { high: bool },
    Xss,
}

pub(super) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Matcher {
    /// Whether two leaves always give the same verdict (one runs for both).
    pub(super) fn same_as(&self, o: &Matcher) -> bool {
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

    pub(super) fn matches(&self, v: &[u8]) -> bool {
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
