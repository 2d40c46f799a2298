//! Upstream metrics: connects, connect failures and active connections per
//! node, local connect errors per upstream, and health checks
//! ([`HealthMetrics`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use shardgate_core::Metrics;

/// Labels of a per-node series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// `upstreams/<id>` or `stream_routes/<id>` for an inline upstream.
    pub upstream: String,
    /// `host:port` as configured.
    pub node: String,
}

/// Labels of a per-upstream series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `upstreams/<id>` or `stream_routes/<id>` for an inline upstream.
    pub upstream: String,
}

/// The upstream metric families.
#[derive(Debug, Clone, Default)]
pub struct UpstreamMetrics {
    /// `shardgate_upstream_connects_total`: successful connects.
    pub connects: Family<NodeLabels, Counter>,
    /// `shardgate_upstream_connect_failures_total`: failed connect attempts
    /// (refused, unreachable, timed out, DNS failure).
    pub connect_failures: Family<NodeLabels, Counter>,
    /// `shardgate_upstream_connections_active`: proxied connections open to the node.
    pub active: Family<NodeLabels, Gauge>,
    /// `shardgate_upstream_local_errors_total`: connects that failed on
    /// shardgate's side (out of file descriptors, buffers or local ports),
    /// which say nothing about the node and never mark it down.
    pub local_errors: Family<UpstreamLabels, Counter>,
    /// Node-name lookups and template refusals (see [`crate::template`]).
    pub names: crate::template::NameMetrics,
    /// Health checks.
    pub health: HealthMetrics,
}

/// Labels of a probe result.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `upstreams/<id>` or `stream_routes/<id>` for an inline upstream.
    pub upstream: String,
    /// `host:port` as configured.
    pub node: String,
    /// `success`, `tcp_failure`, `timeout`, `http_failure` or `ignored`.
    pub result: &'static str,
}

/// The health-check metric families (upstreams with `checks` only).
#[derive(Debug, Clone, Default)]
pub struct HealthMetrics {
    /// `shardgate_upstream_node_healthy`: 1 while the node takes traffic
    /// (healthy or mostly healthy), 0 while it does not.
    pub node_healthy: Family<NodeLabels, Gauge>,
    /// `shardgate_upstream_health_probes_total`: active probes by result.
    pub probes: Family<ProbeLabels, Counter>,
    /// `shardgate_upstream_fail_open`: 1 while every node with a weight is
    /// unhealthy and connections go to all of them anyway.
    pub fail_open: Family<UpstreamLabels, Gauge>,
    /// `shardgate_upstream_fail_open_connects_total`: connections made while
    /// failing open.
    pub fail_open_connects: Family<UpstreamLabels, Counter>,
}

impl UpstreamMetrics {
    /// Creates the families and registers them.
    pub fn register(metrics: &Metrics) -> Self {
        let m = UpstreamMetrics::default();
        metrics.register(|r| {
            r.register("upstream_connects", "Successful connects to an upstream node", m.connects.clone());
            r.register(
                "upstream_connect_failures",
                "Failed connect attempts to an upstream node (refused, unreachable, timeout, DNS)",
                m.connect_failures.clone(),
            );
            r.register("upstream_connections_active", "Proxied connections open to an upstream node", m.active.clone());
            r.register(
                "upstream_local_errors",
                "Connects that failed on this host (file descriptors, buffers or local ports exhausted); nodes are not marked down for them",
                m.local_errors.clone(),
            );
            m.names.register(r);
            let h = &m.health;
            r.register(
                "upstream_node_healthy",
                "1 while a health-checked node takes traffic (healthy or mostly healthy), 0 while it does not",
                h.node_healthy.clone(),
            );
            r.register("upstream_health_probes", "Active health probes of a node, by result", h.probes.clone());
            r.register(
                "upstream_fail_open",
                "1 while every node of the upstream is unhealthy and connections go to all of them anyway (APISIX's behaviour)",
                h.fail_open.clone(),
            );
            r.register(
                "upstream_fail_open_connects",
                "Connections made while every node of the upstream was unhealthy",
                h.fail_open_connects.clone(),
            );
        });
        m
    }
}
