//! UDP session metrics, named `shardgate_stream_udp_*`, with typed label sets.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Unit;
use shardgate_core::Metrics;

use crate::StreamMetrics;
use crate::metrics::{ListenerLabels, RouteLabels};

/// `{listener, route}` for sessions created.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    /// The listener, e.g. `udp/0.0.0.0:9200`.
    pub listener: String,
    /// The stream route id.
    pub route: String,
}

/// `{listener, route, reason}` for sessions closed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionCloseLabels {
    /// The listener.
    pub listener: String,
    /// The stream route id.
    pub route: String,
    /// Why it ended.
    pub reason: SessionEnd,
}

/// `{listener, reason}` for datagrams dropped.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// The listener.
    pub listener: String,
    /// Why.
    pub reason: DropReason,
}

/// Why a UDP session ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum SessionEnd {
    /// No datagram either way for the idle timeout.
    idle_timeout,
    /// The game server's host answered ICMP port unreachable (nothing listens
    /// on the node's port: a server that stopped or restarted). The node is
    /// marked failed; the client's next datagram opens a new session.
    upstream_refused,
    /// Another error on the upstream socket (host or network unreachable, ...).
    upstream_error,
    /// No upstream socket could be opened (every attempt failed).
    upstream_unavailable,
    /// This host ran out of descriptors, buffers or local ports while
    /// opening the upstream socket.
    local_resources,
    /// Cut at the drain deadline.
    drain,
}

impl SessionEnd {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::idle_timeout => "idle_timeout",
            SessionEnd::upstream_refused => "upstream_refused",
            SessionEnd::upstream_error => "upstream_error",
            SessionEnd::upstream_unavailable => "upstream_unavailable",
            SessionEnd::local_resources => "local_resources",
            SessionEnd::drain => "drain",
        }
    }
}

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DropReason {
    /// From a client without a session, and no stream route matches it.
    no_route,
    /// The listener's or the route's web ACL refused the client's address.
    waf,
    /// The route's `ip-restriction` refused the client's address, or its
    /// `limit-conn` was over `conn + burst` for the client's key.
    plugin,
    /// A new session was needed and `limits.udp_max_sessions` are open.
    session_limit,
    /// A new session was needed and `limits.max_connections` (connections
    /// and sessions together) are open.
    connection_limit,
    /// A new session was needed while the gateway drains.
    draining,
    /// A new session was needed on a listener a reload removed.
    listener_stopped,
    /// Held for a session whose upstream socket was still being opened, and
    /// the hold was full (per session or per listener).
    pending_full,
    /// The upstream socket's send buffer was full.
    upstream_busy,
    /// Held for a session whose upstream socket could not be opened.
    upstream_unavailable,
    /// The upstream socket reported an error when sending (other than
    /// `ECONNREFUSED`, after which the datagram opens a new session).
    upstream_error,
    /// A reply could not be sent to the client: the listener socket's send
    /// buffer was full.
    client_busy,
    /// A reply could not be sent to the client for another reason (too large
    /// for the client's address family, an unreachable client).
    client_error,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 13] = [
        DropReason::no_route,
        DropReason::waf,
        DropReason::plugin,
        DropReason::session_limit,
        DropReason::connection_limit,
        DropReason::draining,
        DropReason::listener_stopped,
        DropReason::pending_full,
        DropReason::upstream_busy,
        DropReason::upstream_unavailable,
        DropReason::upstream_error,
        DropReason::client_busy,
        DropReason::client_error,
    ];
}

/// The UDP metric families (and the stream families whose web ACL refusal
/// counter UDP shares).
#[derive(Debug, Clone)]
pub struct UdpMetrics {
    /// The stream families: `shardgate_stream_waf_refused_total` counts UDP
    /// refusals too, with a `udp/...` listener label.
    pub stream: StreamMetrics,
    /// `shardgate_stream_udp_sessions_active{listener}`.
    pub sessions_active: Family<ListenerLabels, Gauge>,
    /// `shardgate_stream_udp_sessions_created_total{listener, route}`.
    pub sessions_created: Family<SessionLabels, Counter>,
    /// `shardgate_stream_udp_sessions_closed_total{listener, route, reason}`.
    pub sessions_closed: Family<SessionCloseLabels, Counter>,
    /// `shardgate_stream_udp_received_datagrams_total{route}`: from players.
    pub datagrams_in: Family<RouteLabels, Counter>,
    /// `shardgate_stream_udp_sent_datagrams_total{route}`: to players.
    pub datagrams_out: Family<RouteLabels, Counter>,
    /// `shardgate_stream_udp_received_bytes_total{route}`: from players.
    pub bytes_in: Family<RouteLabels, Counter>,
    /// `shardgate_stream_udp_sent_bytes_total{route}`: to players.
    pub bytes_out: Family<RouteLabels, Counter>,
    /// `shardgate_stream_udp_dropped_datagrams_total{listener, reason}`.
    pub dropped: Family<DropLabels, Counter>,
}

impl UdpMetrics {
    /// Creates and registers the UDP families; `stream` are the registered
    /// stream families.
    pub fn register(metrics: &Metrics, stream: StreamMetrics) -> Self {
        let m = UdpMetrics {
            stream,
            sessions_active: Family::default(),
            sessions_created: Family::default(),
            sessions_closed: Family::default(),
            datagrams_in: Family::default(),
            datagrams_out: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            dropped: Family::default(),
        };
        metrics.register(|r| {
            r.register("stream_udp_sessions_active", "UDP sessions open on a listener", m.sessions_active.clone());
            r.register(
                "stream_udp_sessions_created",
                "UDP sessions created (a client's first datagram, routed and allowed)",
                m.sessions_created.clone(),
            );
            r.register("stream_udp_sessions_closed", "UDP sessions ended, by reason", m.sessions_closed.clone());
            r.register(
                "stream_udp_received_datagrams",
                "Datagrams forwarded from players to game servers, per stream route",
                m.datagrams_in.clone(),
            );
            r.register(
                "stream_udp_sent_datagrams",
                "Datagrams forwarded from game servers to players, per stream route",
                m.datagrams_out.clone(),
            );
            r.register_with_unit(
                "stream_udp_received",
                "Bytes forwarded from players to game servers, per stream route",
                Unit::Bytes,
                m.bytes_in.clone(),
            );
            r.register_with_unit(
                "stream_udp_sent",
                "Bytes forwarded from game servers to players, per stream route",
                Unit::Bytes,
                m.bytes_out.clone(),
            );
            r.register(
                "stream_udp_dropped_datagrams",
                "Datagrams not forwarded, by reason (no route, web ACL, session limits, full buffers, drain)",
                m.dropped.clone(),
            );
        });
        m
    }
}
