//! The edge resources on the wire: `distributions`, `cache_policies`,
//! `origin_request_policies`, `continuous_deployment_policies` and
//! `invalidations`.
//!
//! These are shardgate's own resources. They follow the APISIX conventions
//! of the other kinds (snake_case fields, `id`/`name`/`desc`/`labels`,
//! server-owned timestamps, unknown fields refused) and carry CloudFront's
//! meaning: a distribution is CloudFront's `DistributionConfig` (hosts =
//! `Aliases`, `origins`, `default_behavior` + ordered `behaviors`), a cache
//! policy is `CachePolicyConfig`, a continuous deployment policy is
//! `ContinuousDeploymentPolicyConfig`, an invalidation is `InvalidationBatch`
//! (the CloudFront API Reference, docs.aws.amazon.com/cloudfront/latest/APIReference).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::UpstreamWire;

common_fields! {
    /// A distribution: the hosts it answers, its origins and behaviors.
    pub struct DistributionWire {
        /// Host names (exact or `*.wildcard`) this distribution answers
        /// (CloudFront `Aliases`). Required unless `staging`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hosts: Option<Vec<String>>,
        /// A staging distribution answers no host of its own: it is reached
        /// only through a continuous deployment policy of a primary.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub staging: Option<bool>,
        /// Origins by name.
        #[serde(default)]
        pub origins: BTreeMap<String, OriginWire>,
        /// The behavior for paths no other behavior matches (CloudFront `DefaultCacheBehavior`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub default_behavior: Option<BehaviorWire>,
        /// Path-pattern behaviors, in precedence order (CloudFront `CacheBehaviors`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub behaviors: Option<Vec<BehaviorWire>>,
        /// The continuous deployment policy that sends some requests to a
        /// staging distribution (CloudFront `ContinuousDeploymentPolicyId`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub continuous_deployment_policy_id: Option<Value>,
        /// The web ACL that inspects every request (CloudFront `WebACLId`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub web_acl_id: Option<Value>,
        /// What the edge does with some error statuses from the origin
        /// (CloudFront `CustomErrorResponses`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub custom_error_responses: Option<Vec<CustomErrorResponseWire>>,
    }
}

/// CloudFront `CustomErrorResponse`: how long an error status is cached, and
/// optionally a page (and status) served instead of the origin's error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomErrorResponseWire {
    /// The origin's status this entry applies to (`ErrorCode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u64>,
    /// Seconds the error is cached (`ErrorCachingMinTTL`); default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_caching_min_ttl: Option<u64>,
    /// Status returned to the viewer with the page (`ResponseCode`); needs
    /// `response_page_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<u64>,
    /// Path of the page served instead (`ResponsePagePath`), fetched through
    /// the behavior its path matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_page_path: Option<String>,
}

/// One origin of a distribution.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginWire {
    /// Inline upstream (nodes, balancing, timeouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Box<UpstreamWire>>,
    /// Reference to an upstream resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<Value>,
    /// `http` only (HTTPS is chosen by `protocol_policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// `http-only` (default), `https-only` or `match-viewer` (CloudFront
    /// `OriginProtocolPolicy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_policy: Option<String>,
    /// Port for HTTP connections instead of the nodes' (CloudFront `HTTPPort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u64>,
    /// Port for HTTPS connections instead of the nodes' (CloudFront `HTTPSPort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_port: Option<u64>,
    /// PEM certificates trusted for HTTPS to this origin instead of the
    /// system's CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Server name sent (SNI) and verified on HTTPS; default: the Host
    /// header sent to the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Seconds an idle connection to the origin is kept for reuse
    /// (CloudFront `OriginKeepaliveTimeout`); default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_timeout: Option<f64>,
    /// Idle connections kept per origin node; 0 turns reuse off; default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_connections: Option<u64>,
    /// Prefix of every origin path (CloudFront `OriginPath`): `/production`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_path: Option<String>,
    /// Host header sent to the origin; default: the viewer's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Seconds to wait for the response head (CloudFront `OriginReadTimeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_timeout: Option<f64>,
}

/// A cache behavior.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviorWire {
    /// Path pattern (`*` any characters, `?` one), case-sensitive. Only on
    /// `behaviors`, never on `default_behavior`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_pattern: Option<String>,
    /// The origin name (a key of `origins`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The cache policy; default: shardgate's built-in policy (CloudFront's
    /// managed `CachingOptimized`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_policy_id: Option<Value>,
    /// What is forwarded to the origin without joining the cache key
    /// (CloudFront `OriginRequestPolicyId`); default: only what the cache
    /// key holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_request_policy_id: Option<Value>,
    /// Methods served (CloudFront `AllowedMethods`): `["GET","HEAD"]`
    /// (default), `["GET","HEAD","OPTIONS"]` or all seven.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_methods: Option<Vec<String>>,
    /// Methods whose responses are cached (CloudFront `CachedMethods`):
    /// `["GET","HEAD"]` (default) or `["GET","HEAD","OPTIONS"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_methods: Option<Vec<String>>,
    /// Compress responses for viewers that accept it (CloudFront
    /// `Compress`); default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// Request rewrite applied before the cache lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<RewriteWire>,
}

/// A request rewrite (seed 003 scenario 2, the viewer-request function).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteWire {
    /// When the request has this header, its value becomes the first segment
    /// of the origin path: `x-vendor-type: a_vendor` turns `/example.file`
    /// into `/a_vendor/example.file`. The header joins the cache key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix_from_header: Option<String>,
}

common_fields! {
    /// A cache policy: TTL bounds and the cache key.
    pub struct CachePolicyWire {
        /// Seconds (CloudFront `MinTTL`), default 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub min_ttl: Option<u64>,
        /// Seconds when the origin says nothing (CloudFront `DefaultTTL`), default 86400.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub default_ttl: Option<u64>,
        /// Seconds (CloudFront `MaxTTL`), default 31536000.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_ttl: Option<u64>,
        /// Request headers whose values join the cache key (and are forwarded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub headers: Option<Vec<String>>,
        /// Query strings in the key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub query_strings: Option<KeyItemsWire>,
        /// Cookies in the key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cookies: Option<KeyItemsWire>,
        /// `Accept-Encoding: gzip` joins the key (normalised) and gzip
        /// objects are cached (CloudFront `EnableAcceptEncodingGzip`); default false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub enable_accept_encoding_gzip: Option<bool>,
        /// The same for Brotli (CloudFront `EnableAcceptEncodingBrotli`); default false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub enable_accept_encoding_brotli: Option<bool>,
    }
}

common_fields! {
    /// An origin request policy: viewer headers, cookies and query strings
    /// forwarded to the origin without joining the cache key (CloudFront
    /// `OriginRequestPolicyConfig`).
    pub struct OriginRequestPolicyWire {
        /// `none`, `whitelist`, `allViewer`, `allViewerAndWhitelistCloudFront`
        /// or `allExcept`, with `items`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub headers: Option<KeyItemsWire>,
        /// `none`, `whitelist`, `all` or `allExcept`, with `items`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cookies: Option<KeyItemsWire>,
        /// `none`, `whitelist`, `all` or `allExcept`, with `items`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub query_strings: Option<KeyItemsWire>,
    }
}

/// Which query strings or cookies join the key.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyItemsWire {
    /// `none`, `all`, `whitelist` or `all_except` (CloudFront's behaviors).
    pub behavior: String,
    /// Names for `whitelist` and `all_except`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<String>>,
}

common_fields! {
    /// Sends part of a primary distribution's traffic to a staging one.
    pub struct CdPolicyWire {
        /// The staging distribution.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub staging_distribution_id: Option<Value>,
        /// Whether traffic goes to staging at all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub enabled: Option<bool>,
        /// How requests are chosen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub traffic: Option<TrafficWire>,
    }
}

/// CloudFront `TrafficConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficWire {
    /// `single_header` or `single_weight`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `single_header`: the header name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `single_header`: the value that selects staging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `single_weight`: share of requests for staging, 0.0 to 1.0 (0.01 = 1 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// `single_weight`: keep a viewer on one side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_stickiness: Option<StickinessWire>,
}

/// CloudFront `SessionStickinessConfig`, plus a header key for game clients
/// that drop cookies.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StickinessWire {
    /// Seconds a session lasts without requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_ttl: Option<u64>,
    /// Seconds a session lasts at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_ttl: Option<u64>,
    /// Key sessions on this request header (a player or device id) instead
    /// of a cookie: the same value always gets the same side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

common_fields! {
    /// Removes cached objects of one distribution.
    pub struct InvalidationWire {
        /// The distribution.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub distribution_id: Option<Value>,
        /// Paths, `*` allowed only as the last character.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub paths: Option<Vec<String>>,
        /// Free text from the caller (CloudFront `CallerReference`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub caller_reference: Option<String>,
    }
}
