//! Stream metrics, named `shardgate_stream_*`, with typed label sets.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use shardgate_core::Metrics;

/// `{listener}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// The listener, e.g. `tcp/0.0.0.0:8888`.
    pub listener: String,
}

/// `{route}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The stream route id.
    pub route: String,
}

/// `{listener, route, reason}` for closed connections.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    /// The listener.
    pub listener: String,
    /// The route id, empty when the connection was never routed.
    pub route: String,
    /// Why it closed.
    pub reason: CloseReason,
}

/// `{listener, route}` for connections forwarded without TLS termination.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassthroughLabels {
    /// The listener.
    pub listener: String,
    /// The `tls_passthrough` route's id.
    pub route: String,
}

/// `{listener, reason}` for TLS handshake failures.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// The listener.
    pub listener: String,
    /// Why it failed.
    pub reason: HandshakeFailure,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CloseReason {
    /// The player closed first.
    client_closed,
    /// The game server closed first.
    upstream_closed,
    /// No bytes either way for the idle timeout.
    idle_timeout,
    /// Cut at the drain deadline.
    drain,
    /// An I/O error on the player's side (reset, broken pipe).
    client_error,
    /// An I/O error on the game server's side.
    upstream_error,
    /// No stream route matched.
    no_route,
    /// The TLS handshake failed (see the handshake failure counter).
    tls_failed,
    /// No upstream node could be connected.
    upstream_unavailable,
    /// This host ran out of file descriptors, buffers or local ports while
    /// connecting upstream (see `shardgate_upstream_local_errors_total`).
    local_resources,
    /// A web ACL (the listener's, at accept or right after the ClientHello,
    /// or the route's, before the handshake) refused the connection: its
    /// client address, country or TLS fingerprint, or a rate limit.
    waf,
    /// The upstream's node template renders no valid name from the
    /// connection's SNI, or it has none (see
    /// `shardgate_upstream_template_refused_total`).
    template_refused,
    /// The listener requires a PROXY protocol header and got none, or a
    /// bad one (see `shardgate_proxy_protocol_refused_total`).
    proxy_protocol,
    /// The route's `ip-restriction` plugin refused the client address.
    ip_restricted,
    /// The route's `limit-conn` plugin: over `conn + burst` for the key.
    limit_conn,
}

impl CloseReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::client_closed => "client_closed",
            CloseReason::upstream_closed => "upstream_closed",
            CloseReason::idle_timeout => "idle_timeout",
            CloseReason::drain => "drain",
            CloseReason::client_error => "client_error",
            CloseReason::upstream_error => "upstream_error",
            CloseReason::no_route => "no_route",
            CloseReason::tls_failed => "tls_failed",
            CloseReason::upstream_unavailable => "upstream_unavailable",
            CloseReason::local_resources => "local_resources",
            CloseReason::waf => "waf",
            CloseReason::template_refused => "template_refused",
            CloseReason::proxy_protocol => "proxy_protocol",
            CloseReason::ip_restricted => "ip_restricted",
            CloseReason::limit_conn => "limit_conn",
        }
    }
}

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum HandshakeFailure {
    /// The client sent no SNI and the listener has no fallback.
    no_sni,
    /// No certificate for the SNI and no fallback.
    unknown_sni,
    /// Not done within the handshake timeout.
    timeout,
    /// The ClientHello exceeded the byte limit.
    client_hello_too_large,
    /// Not TLS, or a TLS protocol error (rustls's alert was sent).
    protocol_error,
    /// The client closed or reset during the handshake.
    client_closed,
}

impl HandshakeFailure {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::no_sni => "no_sni",
            HandshakeFailure::unknown_sni => "unknown_sni",
            HandshakeFailure::timeout => "timeout",
            HandshakeFailure::client_hello_too_large => "client_hello_too_large",
            HandshakeFailure::protocol_error => "protocol_error",
            HandshakeFailure::client_closed => "client_closed",
        }
    }
}

/// `{listener, web_acl, rule}` for connections a web ACL refused.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WafLabels {
    /// The listener.
    pub listener: String,
    /// The `web_acls` resource id.
    pub web_acl: String,
    /// The deciding rule, or `default`.
    pub rule: String,
}

/// The stream metric families.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    /// `shardgate_stream_connections_accepted_total{listener}`.
    pub accepted: Family<ListenerLabels, Counter>,
    /// `shardgate_stream_connections_active{listener}`: open, routed or not.
    pub active: Family<ListenerLabels, Gauge>,
    /// `shardgate_stream_route_connections_active{route}`: open and routed.
    pub route_active: Family<RouteLabels, Gauge>,
    /// `shardgate_stream_connections_closed_total{listener, route, reason}`.
    pub closed: Family<CloseLabels, Counter>,
    /// `shardgate_stream_no_route_total{listener}`.
    pub no_route: Family<ListenerLabels, Counter>,
    /// `shardgate_stream_tls_handshake_failures_total{listener, reason}`.
    pub handshake_failures: Family<HandshakeLabels, Counter>,
    /// `shardgate_stream_tls_handshake_duration_seconds{listener}`.
    pub handshake_seconds: Family<ListenerLabels, Histogram>,
    /// `shardgate_stream_received_bytes_total{route}`: from players.
    pub bytes_in: Family<RouteLabels, Counter>,
    /// `shardgate_stream_sent_bytes_total{route}`: to players.
    pub bytes_out: Family<RouteLabels, Counter>,
    /// `shardgate_stream_waf_refused_total{listener, web_acl, rule}`.
    pub waf_refused: Family<WafLabels, Counter>,
    /// `shardgate_stream_tls_passthrough_total{listener, route}`.
    pub passthrough: Family<PassthroughLabels, Counter>,
    /// `shardgate_proxy_protocol_refused_total{listener, reason}`: stream and
    /// edge listeners (the edge's share this family).
    pub proxy_protocol_refused: Family<crate::proxy_protocol::RefusedLabels, Counter>,
    /// `shardgate_stream_limit_conn_delayed_total{route}`.
    pub limit_conn_delayed: Family<RouteLabels, Counter>,
}

impl StreamMetrics {
    /// Creates and registers the families.
    pub fn register(metrics: &Metrics) -> Self {
        let m = StreamMetrics {
            accepted: Family::default(),
            active: Family::default(),
            route_active: Family::default(),
            closed: Family::default(),
            no_route: Family::default(),
            handshake_failures: Family::default(),
            handshake_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
            }),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            waf_refused: Family::default(),
            passthrough: Family::default(),
            proxy_protocol_refused: Family::default(),
            limit_conn_delayed: Family::default(),
        };
        metrics.register(|r| {
            r.register("stream_connections_accepted", "Connections accepted on a stream listener", m.accepted.clone());
            r.register(
                "stream_connections_active",
                "Connections open on a stream listener, routed or not",
                m.active.clone(),
            );
            r.register(
                "stream_route_connections_active",
                "Routed connections open per stream route",
                m.route_active.clone(),
            );
            r.register("stream_connections_closed", "Stream connections closed, by route and reason", m.closed.clone());
            r.register("stream_no_route", "Connections closed because no stream route matched", m.no_route.clone());
            r.register(
                "stream_tls_handshake_failures",
                "TLS handshakes that failed, by reason",
                m.handshake_failures.clone(),
            );
            r.register_with_unit(
                "stream_tls_handshake_duration",
                "Time from accept to the end of the TLS handshake",
                prometheus_client::registry::Unit::Seconds,
                m.handshake_seconds.clone(),
            );
            r.register_with_unit(
                "stream_received",
                "Bytes received from players, per stream route",
                prometheus_client::registry::Unit::Bytes,
                m.bytes_in.clone(),
            );
            r.register(
                "stream_waf_refused",
                "Connections closed because a web ACL (the listener's at accept or after the ClientHello, or the route's before the handshake) refused them (client address, country, TLS fingerprint or rate limit)",
                m.waf_refused.clone(),
            );
            r.register(
                "stream_tls_passthrough",
                "Connections routed by the SNI of their ClientHello to a tls_passthrough route and forwarded without terminating TLS",
                m.passthrough.clone(),
            );
            r.register(
                "proxy_protocol_refused",
                "Connections closed because the listener requires a PROXY protocol header and got none or a bad one, by reason",
                m.proxy_protocol_refused.clone(),
            );
            r.register(
                "stream_limit_conn_delayed",
                "Connections a route's limit-conn plugin delayed (over conn, within burst)",
                m.limit_conn_delayed.clone(),
            );
            r.register_with_unit(
                "stream_sent",
                "Bytes sent to players, per stream route",
                prometheus_client::registry::Unit::Bytes,
                m.bytes_out.clone(),
            );
        });
        m
    }
}
