//! Resource kinds and the store key layout.
//!
//! Keys follow APISIX's etcd layout, `<prefix>/<kind>/<id>` with the default
//! prefix `/apisix` (apache/apisix `apisix/core/config_etcd.lua`), so a store
//! written by shardgate reads like one written by APISIX.

use std::fmt;

use crate::ResourceId;

/// The kinds of resources the Admin API manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// `ssls`: certificates and keys, chosen by SNI.
    Ssls,
    /// `upstreams`: named sets of nodes.
    Upstreams,
    /// `stream_routes`: L4 routes.
    StreamRoutes,
    /// `cache_policies`: TTL bounds and cache keys (shardgate).
    CachePolicies,
    /// `distributions`: edge hosts, origins and behaviors (shardgate).
    Distributions,
    /// `continuous_deployment_policies`: canary traffic to a staging distribution (shardgate).
    CdPolicies,
    /// `invalidations`: cache removals (shardgate).
    Invalidations,
    /// `ip_sets`: AWS WAF IP sets.
    IpSets,
    /// `regex_pattern_sets`: AWS WAF regex pattern sets.
    RegexPatternSets,
    /// `web_acls`: AWS WAF web ACLs.
    WebAcls,
}

impl ResourceKind {
    /// Every kind, in the order a full load applies them (referenced kinds first).
    pub const ALL: [ResourceKind; 10] = [
        ResourceKind::Ssls,
        ResourceKind::Upstreams,
        ResourceKind::StreamRoutes,
        ResourceKind::IpSets,
        ResourceKind::RegexPatternSets,
        ResourceKind::WebAcls,
        ResourceKind::CachePolicies,
        ResourceKind::Distributions,
        ResourceKind::CdPolicies,
        ResourceKind::Invalidations,
    ];

    /// The plural name used in URLs and keys (`stream_routes`).
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::Ssls => "ssls",
            ResourceKind::Upstreams => "upstreams",
            ResourceKind::StreamRoutes => "stream_routes",
            ResourceKind::CachePolicies => "cache_policies",
            ResourceKind::Distributions => "distributions",
            ResourceKind::CdPolicies => "continuous_deployment_policies",
            ResourceKind::Invalidations => "invalidations",
            ResourceKind::IpSets => "ip_sets",
            ResourceKind::RegexPatternSets => "regex_pattern_sets",
            ResourceKind::WebAcls => "web_acls",
        }
    }

    /// The singular name used in messages (`stream route`).
    pub fn singular(self) -> &'static str {
        match self {
            ResourceKind::Ssls => "ssl",
            ResourceKind::Upstreams => "upstream",
            ResourceKind::StreamRoutes => "stream route",
            ResourceKind::CachePolicies => "cache policy",
            ResourceKind::Distributions => "distribution",
            ResourceKind::CdPolicies => "continuous deployment policy",
            ResourceKind::Invalidations => "invalidation",
            ResourceKind::IpSets => "IP set",
            ResourceKind::RegexPatternSets => "regex pattern set",
            ResourceKind::WebAcls => "web ACL",
        }
    }

    /// The snake-case singular used in Admin API messages (`stream_route`), as APISIX words them.
    pub fn label(self) -> &'static str {
        match self {
            ResourceKind::Ssls => "ssl",
            ResourceKind::Upstreams => "upstream",
            ResourceKind::StreamRoutes => "stream_route",
            ResourceKind::CachePolicies => "cache_policy",
            ResourceKind::Distributions => "distribution",
            ResourceKind::CdPolicies => "continuous_deployment_policy",
            ResourceKind::Invalidations => "invalidation",
            ResourceKind::IpSets => "ip_set",
            ResourceKind::RegexPatternSets => "regex_pattern_set",
            ResourceKind::WebAcls => "web_acl",
        }
    }

    /// The kind named by a URL segment, if any.
    pub fn from_plural(s: &str) -> Option<Self> {
        ResourceKind::ALL.into_iter().find(|k| k.plural() == s)
    }

    /// The store key of one resource: `<prefix>/<kind>/<id>`.
    pub fn key(self, prefix: &str, id: &ResourceId) -> String {
        format!("{prefix}/{}/{id}", self.plural())
    }

    /// The store prefix of every resource of this kind: `<prefix>/<kind>/`.
    pub fn key_prefix(self, prefix: &str) -> String {
        format!("{prefix}/{}/", self.plural())
    }

    /// Splits a store key into kind and id; `None` for keys that are not
    /// resources shardgate knows (they are ignored, as APISIX ignores them).
    pub fn parse_key(prefix: &str, key: &str) -> Option<(ResourceKind, ResourceId)> {
        let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
        let (kind, id) = rest.split_once('/')?;
        let kind = ResourceKind::from_plural(kind)?;
        let id = ResourceId::parse(id).ok()?;
        Some((kind, id))
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let id = ResourceId::parse("00000000000000000042").expect("id");
        let key = ResourceKind::StreamRoutes.key("/apisix", &id);
        assert_eq!(key, "/apisix/stream_routes/00000000000000000042");
        assert_eq!(ResourceKind::parse_key("/apisix", &key), Some((ResourceKind::StreamRoutes, id)));
        assert_eq!(ResourceKind::parse_key("/apisix", "/apisix/routes/1"), None);
        assert_eq!(ResourceKind::parse_key("/apisix", "/other/ssls/1"), None);
        assert_eq!(ResourceKind::parse_key("/apisix", "/apisix/ssls/a/b"), None);
    }
}
