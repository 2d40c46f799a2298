//! Edge metrics, named `shardgate_edge_*`. Label values come from the
//! configuration (distribution ids, behavior patterns, origin names) or from
//! closed enums, never from requests, so cardinality stays bounded.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use shardgate_core::Metrics;

/// A label value shared with the snapshot: cloning it is a reference count,
/// not an allocation (labels are built on every request).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct Label(pub Arc<str>);

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

/// `{distribution, behavior, variant, cache}` for viewer requests.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The distribution id that served (staging's id for staging).
    pub distribution: Label,
    /// The behavior's path pattern, or `default`.
    pub behavior: Label,
    /// `primary` or `staging`.
    pub variant: &'static str,
    /// The cache phase: `hit`, `miss`, `refresh_hit`, `stale_hit`, `pass`, `error`.
    pub cache: &'static str,
}

/// `{distribution, status}` for viewer responses.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    /// The distribution id that served (staging's id for staging); empty
    /// for a request refused before any distribution (unknown host, bad
    /// input).
    pub distribution: Label,
    /// The status class: `1xx`..`5xx`.
    pub status: &'static str,
}

impl ResponseLabels {
    /// The class of a status code.
    pub fn class(status: http::StatusCode) -> &'static str {
        match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        }
    }
}

/// `{distribution, origin, status}` for origin requests.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabels {
    /// The distribution id.
    pub distribution: Label,
    /// The origin name.
    pub origin: String,
    /// `2xx`..`5xx`, or `error` when no response came.
    pub status: &'static str,
}

/// `{distribution, origin, reused}` for connections a fetch used.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginConnectionLabels {
    /// The distribution id.
    pub distribution: Label,
    /// The origin name.
    pub origin: String,
    /// `true` for an idle pooled connection reused, `false` for a new one.
    pub reused: &'static str,
}

/// `{distribution}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DistributionLabels {
    /// The distribution id.
    pub distribution: Label,
}

/// `{reason}` for requests refused before any distribution.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `no_host`, `unknown_host`, `method`, `bad_channel`.
    pub reason: &'static str,
}

/// `{web_acl, rule, action}` for WAF decisions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WafLabels {
    /// The `web_acls` resource id.
    pub web_acl: Label,
    /// The rule name, or `default` for the default action.
    pub rule: Label,
    /// `allow`, `block` or `count`.
    pub action: &'static str,
}

/// `{distribution, function, event_type}` for CloudFront Functions calls.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    /// The distribution id that served (staging's id for staging).
    pub distribution: Label,
    /// The `functions` resource id.
    pub function: Label,
    /// `viewer-request` or `viewer-response`.
    pub event_type: &'static str,
}

/// `{distribution, function, event_type, kind}` for failed function calls.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionErrorLabels {
    /// The distribution id that served (staging's id for staging).
    pub distribution: Label,
    /// The `functions` resource id.
    pub function: Label,
    /// `viewer-request` or `viewer-response`.
    pub event_type: &'static str,
    /// `timeout`, `memory`, `exception` or `invalid_return`.
    pub kind: &'static str,
}

/// The edge metric families.
#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    /// `shardgate_edge_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `shardgate_edge_responses_total`: every viewer response by status
    /// class, refusals included.
    pub responses: Family<ResponseLabels, Counter>,
    /// `shardgate_edge_refused_total`.
    pub refused: Family<RefusedLabels, Counter>,
    /// `shardgate_edge_origin_requests_total`.
    pub origin_requests: Family<OriginLabels, Counter>,
    /// `shardgate_edge_origin_connections_total`: connections fetches used,
    /// new or reused from the keep-alive pool.
    pub origin_connections: Family<OriginConnectionLabels, Counter>,
    /// `shardgate_edge_origin_response_seconds` (time to the response head).
    pub origin_seconds: Family<DistributionLabels, Histogram>,
    /// `shardgate_edge_response_bytes_total`: body bytes of responses whose size was known.
    pub response_bytes: Family<DistributionLabels, Counter>,
    /// `shardgate_edge_cache_bytes`: bytes charged in the memory tier.
    pub cache_bytes: Gauge,
    /// `shardgate_edge_cache_objects`: objects in the cache (both tiers).
    pub cache_objects: Gauge,
    /// `shardgate_edge_cache_disk_bytes`: bytes of bodies in the disk tier.
    pub cache_disk_bytes: Gauge,
    /// `shardgate_waf_requests_total{web_acl, rule, action}`.
    pub waf: Family<WafLabels, Counter>,
    /// `shardgate_edge_function_invocations_total`: CloudFront Functions calls.
    pub function_invocations: Family<FunctionLabels, Counter>,
    /// `shardgate_edge_function_errors_total`: calls that failed (the viewer got a 503).
    pub function_errors: Family<FunctionErrorLabels, Counter>,
}

impl EdgeMetrics {
    /// Registers the families.
    pub fn register(metrics: &Metrics) -> Self {
        let m = EdgeMetrics {
            requests: Family::default(),
            responses: Family::default(),
            refused: Family::default(),
            origin_requests: Family::default(),
            origin_connections: Family::default(),
            origin_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 14))),
            response_bytes: Family::default(),
            cache_bytes: Gauge::default(),
            cache_objects: Gauge::default(),
            cache_disk_bytes: Gauge::default(),
            waf: Family::default(),
            function_invocations: Family::default(),
            function_errors: Family::default(),
        };
        metrics.register(|r| {
            r.register(
                "edge_requests",
                "Viewer requests by distribution, behavior, variant and cache phase",
                m.requests.clone(),
            );
            r.register(
                "edge_responses",
                "Viewer responses by distribution (empty when refused before one) and status class",
                m.responses.clone(),
            );
            r.register("edge_refused", "Viewer requests refused before reaching a distribution", m.refused.clone());
            r.register(
                "edge_origin_requests",
                "Requests sent to origins, by response status class",
                m.origin_requests.clone(),
            );
            r.register(
                "edge_origin_connections",
                "Origin connections used by fetches: opened (reused=false) or taken from the keep-alive pool (reused=true)",
                m.origin_connections.clone(),
            );
            r.register(
                "edge_origin_response_seconds",
                "Time from sending an origin request to its response head",
                m.origin_seconds.clone(),
            );
            r.register("edge_response_bytes", "Body bytes of viewer responses of known size", m.response_bytes.clone());
            r.register("edge_cache_bytes", "Bytes held by the memory cache tier", m.cache_bytes.clone());
            r.register("edge_cache_objects", "Objects held by the cache, both tiers", m.cache_objects.clone());
            r.register(
                "waf_requests",
                "Requests by web ACL, deciding rule (or default) and action; Count rules count too",
                m.waf.clone(),
            );
            r.register(
                "edge_cache_disk_bytes",
                "Bytes of bodies held by the disk cache tier",
                m.cache_disk_bytes.clone(),
            );
            r.register(
                "edge_function_invocations",
                "CloudFront Functions calls by distribution, function and event type",
                m.function_invocations.clone(),
            );
            r.register(
                "edge_function_errors",
                "CloudFront Functions calls that failed (timeout, memory, exception, invalid_return); the viewer got a 503",
                m.function_errors.clone(),
            );
        });
        m
    }
}
