//! One stream connection, from accept to close.
//!
//! ```text
//! accept -> PROXY protocol header, if the listener requires one (handshake timeout; only the
//!           header's bytes consumed): its client address is the peer from here on;
//!           missing/bad -> close, count proxy_protocol
//!        -> snapshot = handle.load()          (this connection's generation, kept to the end)
//!        -> listener's web ACL on the client address: block -> close before any byte, count waf
//!           (an ACL that reads JA3/JA4 runs after the ClientHello instead, on TLS listeners)
//!  TLS:   a passthrough route loaded: shardgate's parser reads the ClientHello first (byte cap,
//!         handshake timeout, every byte kept); its SNI (or the fallback) leads to a passthrough
//!         route -> listener's and route's web ACLs -> connect -> the bytes read, then copy: no
//!         termination (see docs/lifecycle/passthrough-and-templates.md). Otherwise the bytes go
//!         on to rustls, as if it had read them:
//!         read ClientHello (byte cap, handshake timeout; its bytes kept only if a loaded ACL reads
//!         JA3/JA4); JA3/JA4 computed once, when the first ACL that reads them runs
//!         listener's web ACL here if it reads JA3/JA4: block -> close, count waf
//!         route by SNI (fallback SNI stands in for a missing or unserved name)
//!           none -> alert unrecognized_name, count no_route
//!         route's web ACL on the client address: block -> close, count waf
//!         route's plugins: ip-restriction -> close, count ip_restricted;
//!           limit-conn over conn + burst -> close, count limit_conn; over conn -> wait
//!         certificate by SNI
//!           none -> alert unrecognized_name, count tls failure
//!         handshake with the chosen config
//!  plain: route by port and client address, then the route's web ACL and plugins
//! -> connect upstream (timeout, retry next node; a PROXY protocol header written right
//!    after the connect when the route, upstream or listener asks) -> copy both ways
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
use crate::hello::{HelloError, read_client_hello_after, read_raw_client_hello, refuse};
use crate::metrics::{
    CloseLabels, CloseReason, HandshakeFailure, HandshakeLabels, PassthroughLabels, RouteLabels, StreamMetrics,
};
use crate::readahead::ReadAhead;

/// Why a connection was refused before its handshake, for [`refused!`]:
/// each kind has its own rate limit, so a scanner without SNI does not hide
/// the warning about a route or a certificate that is really missing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    /// A plain connection no route matches.
    PlainNoRoute = 0,
    /// No SNI and no `fallback_sni`.
    NoSni = 1,
    /// An SNI no route matches.
    NoRoute = 2,
    /// A routed SNI with no certificate.
    NoCertificate = 3,
}

/// One [`shardgate_core::LogThrottle`] per [`Refusal`] kind.
#[derive(Debug, Default)]
pub(crate) struct RefusalThrottles([shardgate_core::LogThrottle; 4]);

impl RefusalThrottles {
    pub(crate) fn due(&self, kind: Refusal) -> Option<u64> {
        self.0[kind as usize].due()
    }
}

/// Logs a connection refused for want of a route, a name or a certificate:
/// at `warn` at most once a minute per listener and kind (a scanner or a
/// client with a wrong name would otherwise write a line per connection),
/// else at `debug`. Every refusal is counted in a metric by the caller.
macro_rules! refused {
    ($ctx:expr, $kind:expr, $($fields:tt)+) => {
        match $ctx.refusals.due($kind) {
            Some(suppressed) => tracing::warn!(refused_since_last_warning = suppressed, $($fields)+),
            None => tracing::debug!($($fields)+),
        }
    };
}

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
    /// Connections start with a PROXY protocol header.
    pub(crate) proxy_protocol: bool,
    /// Send a v1 header upstream unless the route or upstream says otherwise.
    pub(crate) proxy_protocol_to_upstream: bool,
    pub(crate) refusal_log: crate::proxy_protocol::RefusalLog,
    /// Rate limit on `warn` lines about connections refused for want of a
    /// route, a name or a certificate (see [`refused!`]).
    pub(crate) refusals: RefusalThrottles,
    pub(crate) limit_conn: Arc<crate::plugins::LimitConnRegistry>,
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
    /// Routed to a `tls_passthrough` route (TLS not terminated).
    passthrough: bool,
}

impl Outcome {
    fn early(reason: CloseReason, route: Option<Arc<StreamTarget>>) -> Self {
        Outcome { route, reason, node: None, from_client: 0, to_client: 0, passthrough: false }
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
    mut sock: TcpStream,
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
    // This connection's span (exported when tracing is on; else disabled).
    let span = crate::trace::connection(&ctx.name, peer, local);

    // The PROXY protocol header, when the listener requires one: the client
    // address it carries is `peer` from here on (routing, web ACLs, plugins,
    // balancing, logs). Read within the handshake timeout, before anything.
    let via = ctx.proxy_protocol.then_some(peer);
    let carried = match via {
        None => Some(peer),
        Some(_) => {
            let deadline = started + ctx.handshake_timeout;
            let refused = &ctx.metrics.proxy_protocol_refused;
            crate::proxy_protocol::accept_header(&mut sock, peer, deadline, &ctx.name, refused, &ctx.refusal_log).await
        }
    };
    let peer = carried.unwrap_or(peer);
    if let Some(via) = via {
        crate::trace::record_proxied(&span, peer, via);
    }

    let snap = ctx.handle.load();
    // A listener ACL that reads the TLS fingerprints cannot run before the
    // ClientHello: on a TLS listener it runs right after it. (On a plain
    // listener there is none; the fields' FallbackBehavior decides.)
    let deferred = ctx.tls && listener_acl(&ctx, &snap).is_some_and(|a| a.acl.uses_tls_fingerprints());
    let (outcome, sni) = if carried.is_none() {
        (Outcome::early(CloseReason::proxy_protocol, None), None)
    } else if !deferred && let Some(rule) = refused_by_acl(&ctx, &snap, peer, None) {
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
        via = via.map(|v| v.to_string()).as_deref().unwrap_or(""),
        sni = sni.as_deref().unwrap_or(""),
        route = route_id.as_deref().unwrap_or(""),
        mode = if outcome.passthrough { "passthrough" } else if ctx.tls { "tls" } else { "plain" },
        node = outcome.node.as_deref().unwrap_or(""),
        generation = snap.generation,
        from_client = outcome.from_client,
        to_client = outcome.to_client,
        duration_ms = started.elapsed().as_millis() as u64,
        reason = outcome.reason.as_str(),
        "stream connection closed"
    );
    let closed = crate::trace::Closed {
        sni: sni.as_deref(),
        route: route_id.as_deref(),
        mode: if outcome.passthrough {
            "passthrough"
        } else if ctx.tls {
            "tls"
        } else {
            "plain"
        },
        node: outcome.node.as_deref(),
        generation: snap.generation,
        from_client: outcome.from_client,
        to_client: outcome.to_client,
        reason: outcome.reason,
    };
    crate::trace::record_close(&span, &closed);
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
        refused!(ctx, Refusal::PlainNoRoute, listener = %ctx.name, %peer, port = local.port(), "no stream route matches this plain connection");
        return Outcome::early(CloseReason::no_route, None);
    };
    if refused_by_route(ctx, target, peer, None) {
        return Outcome::early(CloseReason::waf, Some(Arc::clone(target)));
    }
    let admitted = match crate::plugins::admit(ctx, target, peer, local) {
        Ok(a) => a,
        Err(reason) => return Outcome::early(reason, Some(Arc::clone(target))),
    };
    admitted.wait().await;
    proxy(sock, Arc::clone(target), peer, local, None, ctx, drain, Vec::new()).await
}

/// Counts and logs a ClientHello that could not be read.
fn hello_failed(ctx: &ListenerCtx, peer: SocketAddr, e: Result<HelloError, tokio::time::error::Elapsed>) -> Outcome {
    match e {
        Ok(e) => {
            ctx.handshake_failed(e.failure());
            tracing::debug!(listener = %ctx.name, %peer, error = %e, "no usable ClientHello");
        }
        Err(_) => ctx.handshake_failed(HandshakeFailure::timeout),
    }
    Outcome::early(CloseReason::tls_failed, None)
}

/// The route for `name` (or, when nothing matches and the client sent a
/// name, the fallback's), as the TLS path chooses it, with the name that
/// chose it. That name, not the client's, is what the upstream sees (a
/// node template renders it): a route's `sni` bounds the names its
/// template can be given, even when the fallback stood in for the client's.
fn route_for<'n>(
    snap: &Snapshot,
    name: &'n str,
    sent: bool,
    fallback: Option<&'n str>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<(Arc<StreamTarget>, &'n str)> {
    if let Some((t, _)) = snap.stream.find(&query(Some(name), peer, local)) {
        return Some((Arc::clone(t), name));
    }
    match (sent, fallback) {
        (true, Some(f)) => snap.stream.find(&query(Some(f), peer, local)).map(|(t, _)| (Arc::clone(t), f)),
        _ => None,
    }
}

/// A connection whose ClientHello (read by shardgate's parser, `hello`
/// its bytes) chose a `tls_passthrough` route: the listener's deferred web
/// ACL and the route's run as on the terminating path, then the bytes
/// read and everything after go to the game server untouched.
#[allow(clippy::too_many_arguments)]
async fn passthrough(
    sock: TcpStream,
    hello: Vec<u8>,
    info: &shardgate_waf::ClientHelloInfo,
    (route, routed_by): (Arc<StreamTarget>, &str),
    peer: SocketAddr,
    local: SocketAddr,
    ctx: &ListenerCtx,
    snap: &Snapshot,
    drain: &mut DrainWatch,
) -> Outcome {
    let sni = info.server_name.as_deref();
    let refused = |o: Outcome| Outcome { passthrough: true, ..o };
    // JA3/JA4, computed once and only when an ACL that runs here reads them.
    let listener_reads = listener_acl(ctx, snap).is_some_and(|a| a.acl.uses_tls_fingerprints());
    let route_reads = route.waf.as_deref().is_some_and(|a| a.acl.uses_tls_fingerprints());
    let fingerprint = if listener_reads || route_reads { TlsFingerprint::from_records(&hello) } else { None };
    if listener_reads && let Some(rule) = refused_by_acl(ctx, snap, peer, fingerprint.as_ref()) {
        tracing::debug!(listener = %ctx.name, %peer, rule = %rule, "connection refused by the web ACL after the ClientHello");
        return refused(Outcome::early(CloseReason::waf, None));
    }
    if refused_by_route(ctx, &route, peer, fingerprint.filter(|_| route_reads).as_ref()) {
        // Closed with no reply: the game server never sees the ClientHello.
        return refused(Outcome::early(CloseReason::waf, Some(route)));
    }
    // ip-restriction and limit-conn, as on the terminating path.
    let admitted = match crate::plugins::admit(ctx, &route, peer, local) {
        Ok(a) => a,
        Err(reason) => return refused(Outcome::early(reason, Some(route))),
    };
    admitted.wait().await;
    let labels = PassthroughLabels { listener: ctx.name.clone(), route: route.route.id.to_string() };
    ctx.metrics.passthrough.get_or_create(&labels).inc();
    tracing::debug!(listener = %ctx.name, %peer, sni = sni.unwrap_or(""), route = %labels.route, alpn = ?info.alpn, tls_version = info.version, "TLS passthrough");
    let outcome = proxy(sock, route, peer, local, Some(routed_by), ctx, drain, hello).await;
    Outcome { passthrough: true, ..outcome }
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
    let fallback = ctx.fallback_sni.as_deref();

    // A passthrough route is loaded: shardgate's own parser reads the
    // ClientHello and decides (rustls would refuse some a game server
    // accepts); every byte is kept, to forward or to hand to rustls.
    let mut read = Vec::new();
    if snap.has_tls_passthrough {
        let raw = Box::pin(tokio::time::timeout_at(deadline, read_raw_client_hello(&sock, ctx.client_hello_max_bytes)));
        let raw = match raw.await {
            Ok(Ok(raw)) => raw,
            Ok(Err(e)) => return (hello_failed(ctx, peer, Ok(e)), None),
            Err(elapsed) => return (hello_failed(ctx, peer, Err(elapsed)), None),
        };
        if let Some(info) = &raw.info
            && let Some(name) = info.server_name.as_deref().or(fallback)
            && let Some(routed) = route_for(snap, name, info.server_name.is_some(), fallback, peer, local)
            && routed.0.route.tls_passthrough
        {
            let sni = info.server_name.clone();
            let outcome = Box::pin(passthrough(sock, raw.bytes, info, routed, peer, local, ctx, snap, drain)).await;
            return (outcome, sni);
        }
        read = raw.bytes;
    }

    let hello = Box::pin(tokio::time::timeout_at(
        deadline,
        read_client_hello_after(&sock, ctx.client_hello_max_bytes, keep, read),
    ));
    let (accepted, hello) = match hello.await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return (hello_failed(ctx, peer, Ok(e)), None),
        Err(elapsed) => return (hello_failed(ctx, peer, Err(elapsed)), None),
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

    // Without a name there is no certificate to pick: refuse unless the
    // listener has a fallback name, which stands in for a missing name and
    // for a name nothing serves (certificate and route alike).
    let Some(name) = sni.as_deref().or(fallback) else {
        ctx.handshake_failed(HandshakeFailure::no_sni);
        refused!(ctx, Refusal::NoSni, listener = %ctx.name, %peer, port = local.port(), "no SNI and no fallback_sni; refusing the handshake");
        drop(accepted);
        refuse(&mut sock).await;
        return (Outcome::early(CloseReason::tls_failed, None), sni);
    };
    let route = route_for(snap, name, sni.is_some(), fallback, peer, local);
    let Some((route, routed_by)) = route else {
        ctx.no_route.inc();
        refused!(ctx, Refusal::NoRoute, listener = %ctx.name, %peer, sni = name, port = local.port(), "no stream route matches; refusing the handshake");
        drop(accepted);
        refuse(&mut sock).await;
        return (Outcome::early(CloseReason::no_route, None), sni);
    };
    if route.route.tls_passthrough {
        // Only when rustls reads another name than shardgate's parser did
        // (which chose no passthrough route): never terminate such a route.
        ctx.handshake_failed(HandshakeFailure::protocol_error);
        tracing::warn!(listener = %ctx.name, %peer, sni = name, route = %route.route.id, "rustls and shardgate's ClientHello parser disagree on this ClientHello; a passthrough route is never terminated: refusing");
        drop(accepted);
        refuse(&mut sock).await;
        return (Outcome::early(CloseReason::tls_failed, Some(route)), sni);
    }
    let needed = route.waf.as_deref().is_some_and(|a| a.acl.uses_tls_fingerprints());
    if refused_by_route(ctx, &route, peer, fingerprint_of(needed).as_ref()) {
        // Closed after reading the ClientHello and before any crypto or reply.
        drop(accepted);
        return (Outcome::early(CloseReason::waf, Some(route)), sni);
    }
    // The route's plugins, still before any certificate work; a delay
    // pushes the handshake deadline back by as much.
    let admitted = match crate::plugins::admit(ctx, &route, peer, local) {
        Ok(a) => a,
        Err(reason) => {
            drop(accepted);
            return (Outcome::early(reason, Some(route)), sni);
        }
    };

    // Nothing else reads the ClientHello's bytes: an idle player keeps none.
    drop(hello);
    admitted.wait().await;
    let deadline = deadline + admitted.delay;

    let cert = snap.certs.find(name).or_else(|| fallback.and_then(|f| snap.certs.find(f)));
    let Some(cert) = cert else {
        ctx.handshake_failed(HandshakeFailure::unknown_sni);
        refused!(ctx, Refusal::NoCertificate, listener = %ctx.name, %peer, sni = name, "no certificate for this SNI; refusing the handshake");
        drop(accepted);
        refuse(&mut sock).await;
        return (Outcome::early(CloseReason::tls_failed, Some(route)), sni);
    };

    let handshake = StartHandshake::from_parts(accepted, ReadAhead::new(sock)).into_stream(Arc::clone(&cert.config));
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
    let outcome = proxy(tls, route, peer, local, Some(routed_by), ctx, drain, Vec::new()).await;
    (outcome, sni)
}

/// Connects the route's upstream, sends it `first` (the ClientHello's
/// records of a passthrough connection; empty otherwise), then copies both
/// ways until the connection ends.
#[allow(clippy::too_many_arguments)]
async fn proxy<D>(
    mut down: D,
    target: Arc<StreamTarget>,
    peer: SocketAddr,
    local: SocketAddr,
    sni: Option<&str>,
    ctx: &ListenerCtx,
    drain: &mut DrainWatch,
    first: Vec<u8>,
) -> Outcome
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let labels = RouteLabels { route: target.route.id.to_string() };
    let route_active = ctx.metrics.route_active.get_or_create_owned(&labels);
    route_active.inc();
    let _route_active = GaugeGuard(route_active);

    // A PROXY protocol header to the game server (route, else upstream,
    // else listener): the player's address and the one it connected to.
    let send = shardgate_model::SendProxyProtocol::effective(
        target.route.send_proxy_protocol,
        target.upstream.config().send_proxy_protocol,
        ctx.proxy_protocol_to_upstream,
    );
    let cctx = ConnectCtx { client: peer, local, sni };
    let connecting = match send {
        None => target.upstream.connect(&cctx).await,
        Some(version) => {
            let header = match version {
                shardgate_model::SendProxyProtocol::V2 => crate::proxy_protocol::encode_v2(peer, local),
                _ => crate::proxy_protocol::encode_v1(peer, local),
            };
            target.upstream.connect_with_preface(&cctx, &header).await
        }
    };
    let connected = match connecting {
        Ok(c) => c,
        Err(e @ shardgate_upstream::ConnectError::Refused { .. }) => {
            // The player's SNI names no node (counted by the upstream): debug only.
            tracing::debug!(listener = %ctx.name, %peer, route = %labels.route, error = %e, "no upstream connection");
            return Outcome::early(CloseReason::template_refused, Some(target));
        }
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
    let sent_first = first.len() as u64;
    if !first.is_empty() {
        let sent =
            tokio::time::timeout(target.idle_timeout, tokio::io::AsyncWriteExt::write_all(&mut up, &first)).await;
        drop(first);
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!(%peer, node = %node, "the game server did not take the ClientHello");
            drop(connected.peer);
            return Outcome { node: Some(node), ..Outcome::early(CloseReason::upstream_error, Some(target)) };
        }
        counters.from_client.inc_by(sent_first);
    }

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
    let (from_client, to_client) = (r.from_client + sent_first, r.to_client);
    drop(connected.peer);
    Outcome { route: Some(target), reason, node: Some(node), from_client, to_client, passthrough: false }
}
