//! The resources a web ACL refers to by ARN: IP sets and regex pattern sets
//! (`CreateIPSet`, `CreateRegexPatternSet` in botocore's
//! `wafv2/2019-07-29/service-2.json`), validated on their own, and [`Sets`],
//! how a web ACL's compile finds them.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::{WafError, err};
use crate::geo::GeoDb;
use crate::json::{IpSetJson, RegexSetJson, TagJson};

/// Compiled regex size bound (the `regex` crate's NFA), per pattern.
pub(super) const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Longest `RegexString` (AWS: 512).
pub(super) const MAX_REGEX: usize = 512;
/// Most addresses in one IP set (AWS: 10,000).
const MAX_ADDRESSES: usize = 10_000;

/// A resolved IP set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    nets: Vec<IpNet>,
}

impl IpSet {
    /// Validates `CreateIPSet` JSON.
    pub fn compile(json: &IpSetJson) -> Result<Self, WafError> {
        TagJson::check_all(json.tags.as_deref()).map_err(|(path, reason)| err(&path, reason))?;
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
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// A resolved regex pattern set.
#[derive(Debug, Clone)]
pub struct RegexPatternSet {
    pub(super) set: RegexSet,
}

impl PartialEq for RegexPatternSet {
    fn eq(&self, other: &Self) -> bool {
        self.set.patterns() == other.set.patterns()
    }
}

pub(super) fn regex(path: &str, pattern: &str) -> Result<Regex, WafError> {
    if pattern.is_empty() || pattern.len() > MAX_REGEX {
        return Err(err(path, format!("must be 1 to {MAX_REGEX} characters")));
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| err(path, regex_reason(&e)))
}

pub(super) fn regex_reason(e: &regex::Error) -> String {
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
        TagJson::check_all(json.tags.as_deref()).map_err(|(path, reason)| err(&path, reason))?;
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
