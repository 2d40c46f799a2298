//! Resource kinds: the one table that lists them, and the store key layout.
//!
//! Every kind is one row of `kind_table!`: its enum variant, its names, its
//! wire and domain types and its [`ConfigState`](crate::ConfigState) field.
//! The enum and [`ResourceKind::ALL`] (here), the [`Wire`](crate::resource::Wire)
//! and [`Resource`](crate::Resource) enums and their dispatch
//! ([`resource`](crate::resource)) and the state's per-kind maps, apply,
//! diff and counts ([`state`](crate::state)) are all generated from it, so
//! export, the store layout and the state cannot miss a kind, and a new kind
//! is one row plus one [`WireKind`](crate::resource::WireKind) impl (how its
//! wire form validates and what it refers to).
//!
//! Keys follow APISIX's etcd layout, `<prefix>/<kind>/<id>` with the default
//! prefix `/apisix` (apache/apisix `apisix/core/config_etcd.lua`), so a store
//! written by shardgate reads like one written by APISIX.

use std::fmt;

use crate::ResourceId;

/// The table of resource kinds, handed to `$then!` (a macro of the module
/// that generates its part from the rows). Rows are in dependency order
/// (referenced kinds first): that is the order of [`ResourceKind::ALL`], of a
/// full load, and of [`ResourceKind`]'s `Ord`.
///
/// A row: the kind's doc and variant, then
/// - `plural`: URL segment and store key part (`stream_routes`);
/// - `singular`: the name in messages (`stream route`);
/// - `label`: the snake-case singular of Admin API messages (`stream_route`);
/// - `wire`: the variant of [`Wire`](crate::resource::Wire) and
///   [`Resource`](crate::Resource), its wire type, and (after `=>`) its
///   validated domain type, which the wire type's
///   [`WireKind`](crate::resource::WireKind) impl must produce;
/// - `state`: its field (a map by id) in [`ConfigState`](crate::ConfigState).
macro_rules! kind_table {
    ($then:ident) => {
        $then! {
            /// `ssls`: certificates and keys, chosen by SNI.
            Ssls {
                plural: "ssls", singular: "ssl", label: "ssl",
                wire: Ssl(crate::wire::SslWire) => crate::Ssl,
                state: ssls,
            },
            /// `upstreams`: named sets of nodes.
            Upstreams {
                plural: "upstreams", singular: "upstream", label: "upstream",
                wire: Upstream(crate::wire::UpstreamWire) => crate::Upstream,
                state: upstreams,
            },
            /// `ip_sets`: AWS WAF IP sets.
            IpSets {
                plural: "ip_sets", singular: "IP set", label: "ip_set",
                wire: IpSet(shardgate_waf::json::IpSetJson) => shardgate_waf::IpSet,
                state: ip_sets,
            },
            /// `regex_pattern_sets`: AWS WAF regex pattern sets.
            RegexPatternSets {
                plural: "regex_pattern_sets", singular: "regex pattern set", label: "regex_pattern_set",
                wire: RegexSet(shardgate_waf::json::RegexSetJson) => shardgate_waf::RegexPatternSet,
                state: regex_sets,
            },
            /// `web_acls`: AWS WAF web ACLs (kept as checked JSON; the
            /// snapshot compiles each with the sets it refers to).
            WebAcls {
                plural: "web_acls", singular: "web ACL", label: "web_acl",
                wire: WebAcl(shardgate_waf::json::WebAclJson) => shardgate_waf::json::WebAclJson,
                state: web_acls,
            },
            /// `stream_routes`: L4 routes.
            StreamRoutes {
                plural: "stream_routes", singular: "stream route", label: "stream_route",
                wire: StreamRoute(crate::wire::StreamRouteWire) => crate::StreamRoute,
                state: stream_routes,
            },
            /// `cache_policies`: TTL bounds and cache keys (shardgate).
            CachePolicies {
                plural: "cache_policies", singular: "cache policy", label: "cache_policy",
                wire: CachePolicy(crate::wire::CachePolicyWire) => crate::CachePolicy,
                state: cache_policies,
            },
            /// `origin_request_policies`: what reaches the origin without
            /// joining the cache key (shardgate).
            OriginRequestPolicies {
                plural: "origin_request_policies", singular: "origin request policy", label: "origin_request_policy",
                wire: OriginRequestPolicy(crate::wire::OriginRequestPolicyWire) => crate::edge::OriginRequestPolicy,
                state: origin_request_policies,
            },
            /// `distributions`: edge hosts, origins and behaviors (shardgate).
            Distributions {
                plural: "distributions", singular: "distribution", label: "distribution",
                wire: Distribution(crate::wire::DistributionWire) => crate::Distribution,
                state: distributions,
            },
            /// `continuous_deployment_policies`: canary traffic to a staging
            /// distribution (shardgate).
            CdPolicies {
                plural: "continuous_deployment_policies", singular: "continuous deployment policy",
                label: "continuous_deployment_policy",
                wire: CdPolicy(crate::wire::CdPolicyWire) => crate::CdPolicy,
                state: cd_policies,
            },
            /// `invalidations`: cache removals (shardgate).
            Invalidations {
                plural: "invalidations", singular: "invalidation", label: "invalidation",
                wire: Invalidation(crate::wire::InvalidationWire) => crate::Invalidation,
                state: invalidations,
            },
        }
    };
}
pub(crate) use kind_table;

/// Generates [`ResourceKind`], [`ResourceKind::ALL`] and the names from the rows.
macro_rules! define_kinds {
    ($(
        $(#[$doc:meta])*
        $kind:ident {
            plural: $plural:literal, singular: $singular:literal, label: $label:literal,
            wire: $var:ident($wire:ty) => $domain:ty,
            state: $field:ident $(,)?
        }
    ),* $(,)?) => {
        /// The kinds of resources the Admin API manages, in dependency order
        /// (referenced kinds first; `Ord` follows it).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ResourceKind {
            $($(#[$doc])* $kind,)*
        }

        impl ResourceKind {
            /// Every kind, in the order a full load applies them (referenced kinds first).
            pub const ALL: [ResourceKind; [$(stringify!($kind)),*].len()] = [$(ResourceKind::$kind),*];

            /// The plural name used in URLs and keys (`stream_routes`).
            pub fn plural(self) -> &'static str {
                match self {
                    $(ResourceKind::$kind => $plural,)*
                }
            }

            /// The singular name used in messages (`stream route`).
            pub fn singular(self) -> &'static str {
                match self {
                    $(ResourceKind::$kind => $singular,)*
                }
            }

            /// The snake-case singular used in Admin API messages (`stream_route`), as APISIX words them.
            pub fn label(self) -> &'static str {
                match self {
                    $(ResourceKind::$kind => $label,)*
                }
            }
        }
    };
}

kind_table!(define_kinds);

impl ResourceKind {
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

    /// Every kind is in `ALL` exactly once, in declaration order (so `Ord`
    /// is the dependency order), and round-trips through its key and its
    /// plural; the names are unique and agree with each other.
    #[test]
    fn every_kind_is_listed_once_and_round_trips() {
        let id = ResourceId::parse("r-1").expect("id");
        let mut seen = std::collections::HashSet::new();
        for (i, kind) in ResourceKind::ALL.into_iter().enumerate() {
            // A unit-only enum's discriminants are 0, 1, ... in declaration
            // order: `ALL` lists every variant, once, in that order.
            assert_eq!(kind as usize, i, "{kind:?} is out of place in ALL");
            assert!(seen.insert(kind), "{kind:?} twice in ALL");

            let key = kind.key("/apisix", &id);
            assert_eq!(key, format!("/apisix/{}/r-1", kind.plural()));
            assert!(key.starts_with(&kind.key_prefix("/apisix")));
            assert_eq!(ResourceKind::parse_key("/apisix", &key), Some((kind, id.clone())));
            assert_eq!(ResourceKind::from_plural(kind.plural()), Some(kind));
            assert_eq!(kind.to_string(), kind.plural());
            assert_eq!(kind.label(), kind.singular().to_lowercase().replace(' ', "_"), "{kind:?}");
        }
        for name in [ResourceKind::plural, ResourceKind::singular, ResourceKind::label] {
            let names: std::collections::HashSet<_> = ResourceKind::ALL.into_iter().map(name).collect();
            assert_eq!(names.len(), ResourceKind::ALL.len(), "names must be unique");
        }
        assert!(ResourceKind::ALL.is_sorted(), "Ord follows ALL");
    }

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
