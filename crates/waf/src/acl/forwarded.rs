//! Forwarded client addresses: the header a statement reads instead of the
//! connection's address (`ForwardedIPConfig` of `GeoMatchStatement` and
//! `RateBasedStatement`, `IPSetForwardedIPConfig` of
//! `IPSetReferenceStatement`), what an unreadable header matches, and how
//! addresses are read from it (AWS WAF developer guide, "Using forwarded IP
//! addresses"). One parser for every statement: a comma-separated list,
//! spaces around entries and empty entries ignored.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};

use super::field::fallback;
use super::{WafError, err};

/// Longest `HeaderName` (AWS: 1 to 255).
const MAX_HEADER_NAME: usize = 255;
/// Most addresses `Position: ANY` inspects (AWS: 10).
const ANY_MAX_ADDRESSES: usize = 10;

/// A `ForwardedIPConfig`: the header and its `FallbackBehavior`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ForwardedIp {
    header: HeaderName,
    /// `MATCH`: a request whose header holds no readable address matches
    /// the statement; `NO_MATCH`: it does not.
    pub(super) fallback_match: bool,
}

/// The first address of a forwarded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum First {
    /// No such header: AWS does not apply the statement to the request at
    /// all (API_ForwardedIPConfig), whatever the fallback.
    Missing,
    /// The header is there but its first entry is not an address (or it
    /// has none): the fallback decides.
    Unparsable,
    /// The address.
    Ip(IpAddr),
}

/// `IPSetForwardedIPConfig.Position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Position {
    First,
    Last,
    Any,
}

impl ForwardedIp {
    /// Validates `HeaderName` (AWS: `^[a-zA-Z0-9-]+$`, 1 to 255) and
    /// `FallbackBehavior`; `path` is the config's JSON path.
    pub(super) fn compile(path: &str, header_name: &str, fallback_behavior: &str) -> Result<Self, WafError> {
        let ok = !header_name.is_empty()
            && header_name.len() <= MAX_HEADER_NAME
            && header_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let header = HeaderName::from_bytes(header_name.to_ascii_lowercase().as_bytes())
            .ok()
            .filter(|_| ok)
            .ok_or_else(|| err(&format!("{path}.HeaderName"), "1 to 255 letters, digits or -"))?;
        let fallback_match = fallback(&format!("{path}.FallbackBehavior"), fallback_behavior)?;
        Ok(ForwardedIp { header, fallback_match })
    }

    /// The header's first address (what GeoMatch and RateBased use).
    pub(super) fn first(&self, headers: &HeaderMap) -> First {
        let Some(value) = headers.get(&self.header) else { return First::Missing };
        let first = value.to_str().ok().and_then(|v| entries(v).next()).and_then(|s| s.parse::<IpAddr>().ok());
        first.map_or(First::Unparsable, First::Ip)
    }

    /// Whether any address at `position` is one `contains` accepts;
    /// `fallback_match` when the header has no readable address there (an
    /// entry that is not an address counts as one only if no other
    /// matches). `false` without the header.
    pub(super) fn any_at(&self, headers: &HeaderMap, position: Position, contains: impl Fn(IpAddr) -> bool) -> bool {
        let Some(value) = headers.get(&self.header) else { return false };
        let Ok(value) = value.to_str() else { return self.fallback_match };
        let mut seen = false;
        let mut unreadable = false;
        let mut check = |entry: &str| -> bool {
            seen = true;
            match entry.parse::<IpAddr>() {
                Ok(ip) => contains(ip),
                Err(_) => {
                    unreadable = true;
                    false
                }
            }
        };
        let matched = match position {
            Position::First => entries(value).next().is_some_and(&mut check),
            Position::Last => entries(value).last().is_some_and(&mut check),
            // AWS inspects at most 10 addresses with ANY: the last 10, those
            // the proxies in front appended (a client writes the first ones).
            Position::Any => {
                let skip = entries(value).count().saturating_sub(ANY_MAX_ADDRESSES);
                entries(value).skip(skip).any(&mut check)
            }
        };
        matched || ((!seen || unreadable) && self.fallback_match)
    }
}

impl Position {
    /// `FIRST`, `LAST` or `ANY`.
    pub(super) fn compile(path: &str, v: &str) -> Result<Self, WafError> {
        match v {
            "FIRST" => Ok(Position::First),
            "LAST" => Ok(Position::Last),
            "ANY" => Ok(Position::Any),
            o => Err(err(path, format!("{o:?} is not FIRST, LAST or ANY"))),
        }
    }
}

/// The entries of a forwarded header, trimmed, empty ones left out.
fn entries(value: &str) -> impl DoubleEndedIterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}
