//! One stream connection, from accept to close.
//!
//! ```text
//! accept -> snapshot = handle.load()          (this connection's generation, kept to the end)
//!        -> listener's web ACL on the client address: block -> close before any byte, count waf
//!           (an ACL that reads JA3/JA4 runs after the ClientHello instead, on TLS listeners)
//!  TLS:   read ClientHello (byte cap, handshake timeout; its bytes kept only if a loaded ACL reads
//!         JA3/JA4); JA3/JA4 computed once, when the first ACL that reads them runs
//!         listener's web ACL here if it reads JA3/JA4: block -> close, count waf
//!         route by SNI (fallback SNI stands in for a missing or unserved name)
//!           none -> alert unrecognized_name, count no_route
//!         route's web ACL on the client address: block -> close, count waf
//!         certificate by SNI
//!           none -> alert unrecognized_name, count tls failure
//!         handshake with the chosen config
//!  plain: route by port and client address, then the route's web ACL
//! -> connect upstream (timeout, retry next node) -> copy both ways
//! -> close: client/upstream closed, idle timeout, error, or drain deadline
//! ```
//!
//! A listener web ACL that reads a TLS fingerprint runs whole after the
//! ClientHello, its address rules included: a client it denies by address
//! still holds a connection permit until it sends a ClientHello or the
//! handshake timeout passes, and its rate-based rules never count a
//! connection that sends no ClientHello. A listener ACL without
//! fingerprint rules runs at accept; the fingerprint rules can go in the
//! routes' ACLs, which run after the ClientHello anyway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use shardgate_core::DrainWatch;
use shardgate_snapshot::{CompiledAcl, RouteQuery, Snapshot, SnapshotHandle, StreamTarget};
use shardgate_upstream::ConnectCtx;
use shardgate_waf::TlsFingerprint;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_rustls::StartHandshake;

use crate::copy::{ByteCounters, Ended, copy_bidirectional};
use crate::hello::{read_client_hello, refuse};
use crate::metrics::{CloseLabels, CloseReason, HandshakeFailure, HandshakeLabels, RouteLabels, StreamMetrics};

/// Everything a connection needs from its listener, shared by all its connections.
pub(crate) struct ListenerCtx {
    pub(crate) name: String,
    /// The listener's address when its IP is specific.
    pub(crate) local: Option<SocketAddr>,
    pub(crate) tls: bool,
    pub(crate) fallback_sni: Option<String>,
    /// Run on the client address at accept.
    pub(crate) web_acl: Option<shardgate_model::ResourceId>,
    /// The generation for which a missing `web_acl` was last reported (one
    /// warning per generation, not one per connection).
    pub(crate) missing_acl_warned: std::sync::atomic::AtomicU64,
    pub(crate) handle: Arc<SnapshotHandle>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) client_hello_max_bytes: usize,
    pub(crate) metrics: StreamMetrics,
    pub(crate) accepted: Counter,
    pub(crate) active: Gauge,
    pub(crate) no_route: Counter,
    pub(crate) handshake_seconds: Histogram,
}

impl ListenerCtx {
    fn handshake_failed(&self, reason: HandshakeFailure) {
        self.metrics.handshake_failures.get_or_create(&HandshakeLabels { listener: self.name.clone(), reason }).inc();
    }
}

/// How a connection ended, for the metric and the access log.
struct Outcome {
    route: Option<Arc<StreamTarget>>,
    reason: CloseReason,
    node: Option<String>,
    from_client: u64,
    to_client: u64,
}

impl Outcome {
    fn early(reason: CloseReason, route: Option<Arc<StreamTarget>>) -> Self {
        Outcome { route, reason, node: None, from_client: 0, to_client: 0 }
    }
}

/// Decrements a gauge when dropped.
struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serves one accepted connection to its end.
pub(crate) async fn handle(
    sock: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    mut drain: DrainWatch,
    _permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    ctx.accepted.inc();
    ctx.active.inc();
    let _active = GaugeGuard(ctx.active.clone());

    let local = match ctx.local {
        Some(a) => a,
        None => match sock.local_addr() {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection gone before it was served");
                return;
            }
        },
    };
    // TCP_NODELAY and keepalive come from the listener (see `listener::bind`).

    let snap = ctx.handle.load();
    // A listener ACL that reads the TLS fingerprints cannot run before the
    // ClientHello: on a TLS listener it runs right after it. (On a plain
    // listener there is none; the fields' FallbackBehavior decides.)
    let deferred = ctx.tls && listener_acl(&ctx, &snap).is_some_and(|a| a.acl.uses_tls_fingerprints());
    let (outcome, sni) = if !deferred && let Some(rule) = refused_by_acl(&ctx, &snap, peer, None) {
        // Closed before a byte of TLS: a denied player costs an accept and a close.
        drop(sock);
        tracing::debug!(listener = %ctx.name, %peer, rule = %rule, "connection refused by the web ACL");
        (Outcome::early(CloseReason::waf, None), None)
    } else if ctx.tls {
        serve_tls(sock, peer, local, &ctx, &snap, &mut drain, started).await
    } else {
        (serve_plain(sock, peer, local, &ctx, &snap, &mut drain).await, None)
    };

    let route_id = outcome.route.as_ref().map(|t| t.route.id.to_string());
    ctx.metrics
        .closed
        .get_or_create(&CloseLabels {
            listener: ctx.name.clone(),
            route: route_id.clone().unwrap_or_default(),
            reason: outcome.reason,
        })
        .inc();
    tracing::info!(
        target: "shardgate::access",
        listener = %ctx.name,
        %peer,
        sni = sni.as_deref().unwrap_or(""),
        route = route_id.as_deref().unwrap_or(""),
        node = outcome.node.as_deref().unwrap_or(""),
        generation = snap.generation,
        from_client = outcome.from_client,
        to_client = outcome.to_client,
        duration_ms = started.elapsed().as_millis() as u64,
        reason = outcome.reason.as_str(),
        "stream connection closed"
    );
}

/// Runs the listener's web ACL on the client address. Returns the deciding
/// rule when the connection must be closed. A listener naming an ACL that
/// is not loaded lets connections through and says so: one missing resource
/// must not shut every player out. (A route naming a missing ACL is left out
/// of the snapshot instead: see `shardgate_snapshot::compile`.)
fn refused_by_acl(
    ctx: &ListenerCtx,
    snap: &Snapshot,
    peer: SocketAddr,
    tls: Option<&TlsFingerprint>,
) -> Option<String> {
    let compiled = listener_acl(ctx, snap)?;
    refused_by(ctx, compiled, peer, tls)
}

/// The listener's web ACL, if it names one and it is loaded (a missing one
/// is reported once per generation; see [`crate::acl::listener_acl`]).
fn listener_acl<'s>(ctx: &ListenerCtx, snap: &'s Snapshot) -> Option<&'s Arc<CompiledAcl>> {
    crate::acl::listener_acl(&ctx.name, ctx.web_acl.as_ref(), &ctx.missing_acl_warned, snap)
}

/// Runs `compiled` on the connection's client address and, when given, its
/// TLS fingerprints; the deciding rule when the connection must be closed
/// (see [`crate::acl::refused_by`]).
fn refused_by(
    ctx: &ListenerCtx,
    compiled: &CompiledAcl,
    peer: SocketAddr,
    tls: Option<&TlsFingerprint>,
) -> Option<String> {
    crate::acl::refused_by(&ctx.name, &ctx.metrics, compiled, peer, tls)
}

/// Runs the route's web ACL, if it has one; logs a refusal.
fn refused_by_route(ctx: &ListenerCtx, target: &StreamTarget, peer: SocketAddr, tls: Option<&TlsFingerprint>) -> bool {
    let Some(acl) = target.waf.as_deref() else { return false };
    match refused_by(ctx, acl, peer, tls) {
        None => false,
        Some(rule) => {
            tracing::debug!(listener = %ctx.name, %peer, route = %target.route.id, web_acl = %acl.id, rule = %rule, "connection refused by the route's web ACL");
            true
        }
    }
}

fn query<'a>(sni: Option<&'a str>, peer: SocketAddr, local: SocketAddr) -> RouteQuery<'a> {
    RouteQuery { sni, server_port: local.port(), server_addr: local.ip(), remote_addr: peer.ip() }
}

async fn serve_plain(
    sock: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    ctx: &ListenerCtx,
    snap: &Snapshot,
    drain: &mut DrainWatch,
) -> Outcome {
    let Some((target, _)) = snap.stream.find(&query(None, peer, local)) else {
        ctx.no_route.inc();
        tracing::warn!(listener = %ctx.name, %peer, port = local.port(), "no stream route matches this plain connection");
        return Outcome::early(CloseReason::no_route, None);
    };
    if refused_by_route(ctx, target, peer, None) {
        return Outcome::early(CloseReason::waf, Some(Arc::clone(target)));
    }
    proxy(sock, Arc::clone(target), peer, local, None, ctx, drain).await
}

async fn serve_tls(
    mut sock: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    ctx: &ListenerCtx,
    snap: &Snapshot,
    drain: &mut DrainWatch,
    started: Instant,
) -> (Outcome, Option<String>) {
    // See `handle`: a listener ACL that reads the fingerprints runs here.
    let listener_acl_deferred = listener_acl(ctx, snap).is_some_and(|a| a.acl.uses_tls_fingerprints());
    let deadline = started + ctx.handshake_timeout;
    // The handshake-phase futures are boxed: a future is as large as its
    // largest state, and without the boxes every idle player would keep room
    // for the ClientHello and the mid-handshake stream for its whole life.
    // The ClientHello's bytes are copied only when a loaded ACL may read
    // the fingerprints (decided once per generation).
    let keep = snap.reads_tls_fingerprints;
    let hello = Box::pin(tokio::time::timeout_at(deadline, read_client_hello(&sock, ctx.client_hello_max_bytes, keep)));
    let (accepted, hello) = match hello.await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            ctx.handshake_failed(e.failure());
            tracing::debug!(listener = %ctx.name, %peer, error = %e, "no usable ClientHello");
            return (Outcome::early(CloseReason::tls_failed, None), None);
        }
        Err(_) => {
            ctx.handshake_failed(HandshakeFailure::timeout);
            return (Outcome::early(CloseReason::tls_failed, None), None);
        }
    };

    // JA3/JA4, computed at most once and only for an ACL that reads them;
    // the ClientHello's bytes go as soon as the ACLs have run.
    let mut fingerprint: Option<Option<TlsFingerprint>> = None;
    let mut fingerprint_of = |needed: bool| -> Option<TlsFingerprint> {
        if !needed {
            return None;
        }
        *fingerprint.get_or_insert_with(|| hello.as_deref().and_then(TlsFingerprint::from_records))
    };
    if listener_acl_deferred && let Some(rule) = refused_by_acl(ctx, snap, peer, fingerprint_of(true).as_ref()) {
        tracing::debug!(listener = %ctx.name, %peer, rule = %rule, "connection refused by the web ACL after the ClientHello");
        drop(accepted);
        return (Outcome::early(CloseReason::waf, None), None);
    }

    // rustls lower-cases the SNI; a trailing dot is not part of the name (APISIX strips it too).
    let sni: Option<String> = accepted.client_hello().server_name().map(|s| s.trim_end_matches('.').to_owned());
    let fallback = ctx.fallback_sni.as_deref();

    // Without a name there is no certificate to pick: refuse unless the
    // listener has a fallback name, which stands in for a missing name and
    // for a name nothing serves (certificate and route alike).
    let Some(name) = sni.as_deref().or(fallback) else {
        ctx.handshake_failed(HandshakeFailure::no_sni);
        tracing::warn!(listener = %ctx.name, %peer, port = local.port(), "no SNI and no fallback_sni; refusing the handshake");
        drop(accepted);
        refuse(&mut sock).await;
        return (Outcome::early(CloseReason::tls_failed, None), sni);
    };
    let route = snap
        .stream
        .find(&query(Some(name), peer, local))
        .or_else(|| match (&sni, fallback) {
            (Some(_), Some(f)) => snap.stream.find(&query(Some(f), peer, local)),
            _ => None,
        })
        .map(|(t, _)| Arc::clone(t));
    let Some(route) = route else {
        ctx.no_route.inc();
        tracing::warn!(listener = %ctx.name, %peer, sni = name, port = local.port(), "no stream route matches; refusing the handshake");
        drop(accepted);
        refuse(&mut sock).await;
        return (Outcome::early(CloseReason::no_route, None), sni);
    };
    let needed = route.waf.as_deref().is_some_and(|a| a.acl.uses_tls_fingerprints());
    if refused_by_route(ctx, &route, peer, fingerprint_of(needed).as_ref()) {
        // Closed after reading the ClientHello and before any crypto or reply.
        drop(accepted);
        return (Outcome::early(CloseReason::waf, Some(route)), sni);
    }

    // Nothing else reads the ClientHello's bytes: an idle player keeps none.
    drop(hello);

    let cert = snap.certs.find(name).or_else(|| fallback.and_then(|f| snap.certs.find(f)));
    let Some(cert) = cert else {
        ctx.handshake_failed(HandshakeFailure::unknown_sni);
        tracing::warn!(listener = %ctx.name, %peer, sni = name, "no certificate for this SNI; refusing the handshake");
        drop(accepted);
        refuse(&mut sock).await;
        return (Outcome::early(CloseReason::tls_failed, Some(route)), sni);
    };

    let handshake = StartHandshake::from_parts(accepted, sock).into_stream(Arc::clone(&cert.config));
    let tls = match Box::pin(tokio::time::timeout_at(deadline, handshake)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let reason = match e.kind() {
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe => HandshakeFailure::client_closed,
                _ => HandshakeFailure::protocol_error,
            };
            ctx.handshake_failed(reason);
            tracing::debug!(listener = %ctx.name, %peer, sni = sni.as_deref().unwrap_or(""), error = %e, "TLS handshake failed");
            return (Outcome::early(CloseReason::tls_failed, Some(route)), sni);
        }
        Err(_) => {
            ctx.handshake_failed(HandshakeFailure::timeout);
            return (Outcome::early(CloseReason::tls_failed, Some(route)), sni);
        }
    };
    ctx.handshake_seconds.observe(started.elapsed().as_secs_f64());
    let outcome = proxy(tls, route, peer, local, sni.as_deref(), ctx, drain).await;
    (outcome, sni)
}

async fn proxy<D>(
    mut down: D,
    target: Arc<StreamTarget>,
    peer: SocketAddr,
    local: SocketAddr,
    sni: Option<&str>,
    ctx: &ListenerCtx,
    drain: &mut DrainWatch,
) -> Outcome
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let labels = RouteLabels { route: target.route.id.to_string() };
    let route_active = ctx.metrics.route_active.get_or_create_owned(&labels);
    route_active.inc();
    let _route_active = GaugeGuard(route_active);

    let connected = match target.upstream.connect(&ConnectCtx { client: peer, local, sni }).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(listener = %ctx.name, %peer, route = %labels.route, error = %e, side = %e.side(), "no upstream connection");
            let reason = match e {
                shardgate_upstream::ConnectError::Local { .. } => CloseReason::local_resources,
                _ => CloseReason::upstream_unavailable,
            };
            return Outcome::early(reason, Some(target));
        }
    };
    let node = connected.peer.node().to_owned();
    let mut up = connected.stream;
    let counters = ByteCounters {
        from_client: ctx.metrics.bytes_in.get_or_create_owned(&labels),
        to_client: ctx.metrics.bytes_out.get_or_create_owned(&labels),
    };

    let cut = async {
        let draining = drain.draining().await;
        tokio::time::sleep_until(draining.deadline).await;
    };
    let r = copy_bidirectional(&mut down, &mut up, target.idle_timeout, &counters, cut).await;
    let reason = match r.ended {
        Ended::ClientClosed => CloseReason::client_closed,
        Ended::UpstreamClosed => CloseReason::upstream_closed,
        Ended::IdleTimeout => CloseReason::idle_timeout,
        Ended::Cut => CloseReason::drain,
        Ended::ClientError(e) => {
            tracing::debug!(%peer, error = %e, "player side error");
            CloseReason::client_error
        }
        Ended::UpstreamError(e) => {
            tracing::debug!(%peer, node = %node, error = %e, "game server side error");
            CloseReason::upstream_error
        }
    };
    let (from_client, to_client) = (r.from_client, r.to_client);
    drop(connected.peer);
    Outcome { route: Some(target), reason, node: Some(node), from_client, to_client }
}
