//! The stream plane's spans: one per TCP connection (`stream.connection`,
//! from accept to close) and one per UDP session (`stream.udp_session`,
//! from its first datagram to its end), with what the access log says:
//! the player, the listener, SNI, route, game server, bytes and why it
//! ended. They are opened only when trace export is on and the sampling
//! ratio picks them (see `shardgate_core::trace`); otherwise they are
//! `Span::none()` and every record below returns at once.
//!
//! Attribute names follow OpenTelemetry's semantic conventions where one
//! fits (`client.address`, `server.address` for the SNI the player asked
//! for, `network.transport`), `shardgate.*` otherwise.

use std::net::SocketAddr;

use shardgate_core::trace::TARGET;
use tracing::Span;
use tracing::field::Empty;

use crate::metrics::CloseReason;
use crate::udp::SessionEnd;

/// A new connection's span: the socket's peer is the client until a PROXY
/// protocol header says otherwise ([`record_proxied`]). `Span::none()` when
/// export is off or the sampling ratio leaves this connection out.
pub(crate) fn connection(listener: &str, peer: SocketAddr, local: SocketAddr) -> Span {
    if !shardgate_core::trace::sample_new_trace() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "stream.connection",
        otel.kind = "server",
        otel.status_code = Empty,
        network.transport = "tcp",
        shardgate.listener = listener,
        client.address = %peer.ip(),
        client.port = peer.port(),
        network.local.port = local.port(),
        network.peer.address = Empty,
        server.address = Empty,
        shardgate.route = Empty,
        shardgate.mode = Empty,
        shardgate.upstream.node = Empty,
        shardgate.generation = Empty,
        shardgate.bytes_from_client = Empty,
        shardgate.bytes_to_client = Empty,
        shardgate.close_reason = Empty,
    )
}

/// The player's address from a PROXY protocol header; the socket's peer
/// (the load balancer) becomes `network.peer.address`.
pub(crate) fn record_proxied(span: &Span, client: SocketAddr, via: SocketAddr) {
    if span.is_disabled() || client == via {
        return;
    }
    span.record("client.address", tracing::field::display(client.ip()));
    span.record("client.port", client.port());
    span.record("network.peer.address", tracing::field::display(via));
}

/// How a connection ended, as its span records it.
pub(crate) struct Closed<'a> {
    pub(crate) sni: Option<&'a str>,
    pub(crate) route: Option<&'a str>,
    pub(crate) mode: &'static str,
    pub(crate) node: Option<&'a str>,
    pub(crate) generation: u64,
    pub(crate) from_client: u64,
    pub(crate) to_client: u64,
    pub(crate) reason: CloseReason,
}

/// Records the end of a connection (the span ends when dropped).
pub(crate) fn record_close(span: &Span, c: &Closed<'_>) {
    if span.is_disabled() {
        return;
    }
    if let Some(sni) = c.sni {
        span.record("server.address", sni);
    }
    if let Some(route) = c.route {
        span.record("shardgate.route", route);
    }
    if let Some(node) = c.node {
        span.record("shardgate.upstream.node", node);
    }
    span.record("shardgate.mode", c.mode);
    span.record("shardgate.generation", c.generation);
    span.record("shardgate.bytes_from_client", c.from_client);
    span.record("shardgate.bytes_to_client", c.to_client);
    span.record("shardgate.close_reason", c.reason.as_str());
    // The gateway's or a game server's failure, not a refusal by policy
    // nor a player leaving (as a 5xx, not a 4xx, marks an HTTP server span).
    if matches!(
        c.reason,
        CloseReason::upstream_error | CloseReason::upstream_unavailable | CloseReason::local_resources
    ) {
        span.record("otel.status_code", "ERROR");
    }
}

/// A new UDP session's span (`Span::none()` unless sampled, as [`connection`]).
pub(crate) fn udp_session(listener: &str, client: SocketAddr, local: SocketAddr, route: &str, generation: u64) -> Span {
    if !shardgate_core::trace::sample_new_trace() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "stream.udp_session",
        otel.kind = "server",
        otel.status_code = Empty,
        network.transport = "udp",
        shardgate.listener = listener,
        client.address = %client.ip(),
        client.port = client.port(),
        network.local.port = local.port(),
        shardgate.route = route,
        shardgate.generation = generation,
        shardgate.upstream.node = Empty,
        shardgate.datagrams_from_client = Empty,
        shardgate.bytes_from_client = Empty,
        shardgate.datagrams_to_client = Empty,
        shardgate.bytes_to_client = Empty,
        shardgate.close_reason = Empty,
    )
}

/// What a UDP session moved, as its span records it.
pub(crate) struct SessionTotals<'a> {
    pub(crate) node: Option<&'a str>,
    pub(crate) datagrams_from_client: u64,
    pub(crate) bytes_from_client: u64,
    pub(crate) datagrams_to_client: u64,
    pub(crate) bytes_to_client: u64,
}

/// Records the end of a UDP session.
pub(crate) fn record_session_end(span: &Span, t: &SessionTotals<'_>, reason: SessionEnd) {
    if span.is_disabled() {
        return;
    }
    if let Some(node) = t.node {
        span.record("shardgate.upstream.node", node);
    }
    span.record("shardgate.datagrams_from_client", t.datagrams_from_client);
    span.record("shardgate.bytes_from_client", t.bytes_from_client);
    span.record("shardgate.datagrams_to_client", t.datagrams_to_client);
    span.record("shardgate.bytes_to_client", t.bytes_to_client);
    span.record("shardgate.close_reason", reason.as_str());
    if matches!(
        reason,
        SessionEnd::upstream_refused
            | SessionEnd::upstream_error
            | SessionEnd::upstream_unavailable
            | SessionEnd::local_resources
    ) {
        span.record("otel.status_code", "ERROR");
    }
}
