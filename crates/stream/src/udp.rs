//! UDP stream listeners (`stream.udp`): per-client sessions between a
//! player's address and port and one connected UDP socket to a game server.
//!
//! ```text
//! datagram from client C on the listener socket
//!  C has a session       -> send on its upstream socket (never waits: a full buffer drops it)
//!  C has none            -> stopped or draining? drop
//!                        -> route by server_port, server_addr, remote_addr (SNI routes never match)
//!                        -> listener's web ACL, route's web ACL on C's address
//!                        -> limits.udp_max_sessions, limits.max_connections
//!                        -> session task: balancer picks a node (Upstream::connect_with),
//!                           an ephemeral socket of the node's family is connected to it;
//!                           datagrams meanwhile are held (bounded) and sent once it is open
//! reply on the upstream socket -> sent to C from the listener socket
//! no datagram either way for the idle timeout -> the session ends
//! ```
//!
//! The listener task owns the session table (no lock on the datagram path);
//! each session's task reads its upstream socket and tells the listener when
//! the session opens or ends through a channel. Nothing waits on a full
//! socket buffer: UDP may lose datagrams, and a queue would only add delay
//! to a game's traffic, so a datagram that cannot be sent at once is dropped
//! and counted (`shardgate_stream_udp_dropped_datagrams_total`).
//!
//! Memory: one 64 KiB read buffer per listener and one per runtime thread
//! for replies; an idle session holds a socket, a small shared record and a
//! task, and no buffer.
//!
//! Replies leave from the listener socket, so the client sees the address it
//! sent to when the listener is bound to a specific address. A listener bound
//! to a wildcard (`0.0.0.0`, `[::]`) sends with the source address the
//! kernel's routing picks for the client, which on a host with several
//! addresses on one interface may differ from the one the client sent to
//! (and then a client or NAT that checks it drops the reply); bind one
//! listener per address on such hosts. For the same reason a wildcard
//! listener routes with its own wildcard as `server_addr`.
//!
//! The lifecycle is in `docs/lifecycle/udp-session.md`.

mod session;

pub mod metrics;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use shardgate_core::DrainWatch;
use shardgate_model::ResourceId;
use shardgate_snapshot::{RouteQuery, SnapshotHandle};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

pub use metrics::{DropReason, SessionEnd, UdpMetrics};

use crate::metrics::ListenerLabels;
use metrics::DropLabels;
use session::{Event, Session};

/// Largest datagram read or forwarded: every UDP payload fits (at most
/// 65,507 bytes over IPv4 and 65,527 over IPv6 without jumbograms).
pub const MAX_DATAGRAM: usize = 65_535;
/// Datagrams read from one socket before the task looks at its other work
/// (session events, timers), so one busy socket cannot starve them.
const READ_BATCH: usize = 64;
/// Datagrams held for one session while its upstream socket opens (a node
/// name being resolved); more are dropped (`pending_full`).
const PENDING_MAX_DATAGRAMS: usize = 8;
/// Bytes held for all opening sessions of one listener.
const PENDING_MAX_BYTES: usize = 1 << 20;
/// Pause after a failed read on the listener socket: back off, do not spin.
const READ_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How long after the drain deadline the listener waits for its sessions to
/// report their end before it returns anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// One UDP listener as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpListenerSpec {
    /// Where to listen.
    pub addr: SocketAddr,
    /// A web ACL run on the client address when a session is created.
    pub web_acl: Option<String>,
}

impl UdpListenerSpec {
    /// The metric and log label: `udp/0.0.0.0:9200`.
    pub fn label(&self) -> String {
        format!("udp/{}", self.addr)
    }
}

/// Settings shared by every UDP listener.
#[derive(Debug, Clone)]
pub struct UdpSettings {
    /// A session with no datagram either way for this long ends, unless the
    /// route or its upstream sets a timeout (`stream.udp_idle_timeout`).
    pub idle_timeout: Duration,
    /// Sessions open at once over all UDP listeners (`limits.udp_max_sessions`).
    pub max_sessions: Arc<Semaphore>,
    /// The connection budget shared with the TCP listeners
    /// (`limits.max_connections`): a session holds one permit, for its
    /// upstream socket's file descriptor.
    pub max_connections: Arc<Semaphore>,
    /// `limit-conn` counts, shared with the TCP listeners (a route's limit
    /// counts its connections and sessions together).
    pub limit_conn: Arc<crate::plugins::LimitConnRegistry>,
}

/// Binds a UDP listener socket. No `SO_REUSEADDR`: a port another socket
/// holds fails the start instead of being shared with it.
///
/// The socket buffers keep the kernel's defaults (`net.core.rmem_default`,
/// about 208 KiB: some 270 small datagrams), as nginx does. A deeper
/// receive queue would lose fewer datagrams when the gateway falls behind,
/// but hand the game server datagrams hundreds of milliseconds old (measured:
/// p99 257 ms with an 8 MiB queue on a contended core), and for a game a
/// late datagram is worse than a lost one, which its protocol resends.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// What the listener's sessions share with it.
pub(crate) struct Shared {
    pub(crate) name: String,
    /// The listener socket: datagrams from clients arrive on it and replies
    /// leave from it. Sessions keep it alive after the listener task ends.
    pub(crate) socket: UdpSocket,
    /// The address datagrams arrive on, for routing and balancing.
    pub(crate) local: SocketAddr,
    pub(crate) settings: UdpSettings,
    pub(crate) metrics: UdpMetrics,
    pub(crate) active: Gauge,
    drops: Box<[Counter]>,
    epoch: Instant,
}

impl Shared {
    /// Counts one datagram dropped for `reason`.
    pub(crate) fn dropped(&self, reason: DropReason) {
        self.dropped_n(reason, 1);
    }

    fn dropped_n(&self, reason: DropReason, n: u64) {
        if let Some(i) = DropReason::ALL.iter().position(|r| *r == reason) {
            self.drops[i].inc_by(n);
        }
    }

    /// Milliseconds since the listener started: the clock of the sessions'
    /// last activity (an atomic integer, not an `Instant`).
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The instant `ms` milliseconds after the listener started.
    pub(crate) fn instant_at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }
}

/// A client's entry in the session table.
enum Entry {
    /// The session's task is opening its upstream socket; datagrams wait here.
    Opening { id: u64, pending: Vec<Box<[u8]>>, bytes: usize },
    /// Datagrams go straight to the upstream socket.
    Open(Arc<Session>),
}

/// Serves a UDP listener: reads datagrams, creates sessions, forwards.
///
/// When the drain starts or `stop` completes (a listener removed by a
/// reload), no new session is created (such datagrams are dropped and
/// counted) but the socket keeps being read for the open sessions, which run
/// until they go idle (or, draining, until the drain deadline); the function
/// returns once none is left. The socket stays open while a session task
/// still holds it, since replies leave from it.
pub async fn serve_udp(
    socket: UdpSocket,
    spec: UdpListenerSpec,
    handle: Arc<SnapshotHandle>,
    settings: UdpSettings,
    metrics: UdpMetrics,
    mut drain: DrainWatch,
    stop: impl Future<Output = ()>,
) {
    let session_drain = drain.clone();
    let name = spec.label();
    let local = socket.local_addr().unwrap_or(spec.addr);
    let labels = ListenerLabels { listener: name.clone() };
    let drops = DropReason::ALL
        .iter()
        .map(|&reason| metrics.dropped.get_or_create_owned(&DropLabels { listener: name.clone(), reason }))
        .collect();
    let shared = Arc::new(Shared {
        active: metrics.sessions_active.get_or_create_owned(&labels),
        name,
        socket,
        local,
        settings,
        metrics,
        drops,
        epoch: Instant::now(),
    });
    // Unbounded, yet bounded by the session limit: a session sends at most
    // two events (opened, ended) in its life.
    let (events, mut events_rx) = mpsc::unbounded_channel();
    let mut listener = Listener {
        shared: Arc::clone(&shared),
        handle,
        web_acl: spec.web_acl.as_deref().and_then(|id| ResourceId::parse(id).ok()),
        missing_acl_warned: AtomicU64::new(u64::MAX),
        no_route_warned: u64::MAX,
        sessions: HashMap::new(),
        pending_bytes: 0,
        next_id: 0,
        refusing: None,
        events,
        drain: session_drain,
    };
    tracing::info!(listener = %shared.name, "UDP listener receiving");

    tokio::pin!(stop);
    // Made once, not per datagram (each would register with the drain's watch).
    let draining = drain.draining();
    tokio::pin!(draining);
    let mut buf = vec![0u8; MAX_DATAGRAM].into_boxed_slice();
    let mut deadline: Option<Instant> = None;
    let mut stopped = false;
    loop {
        if listener.refusing.is_some() && listener.sessions.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some(event) = events_rx.recv() => listener.apply(event),
            ready = shared.socket.readable() => {
                if let Err(e) = ready.and_then(|()| listener.read_batch(&mut buf)) {
                    tracing::warn!(listener = %shared.name, error = %e, "reading the UDP listener socket failed");
                    tokio::time::sleep(READ_ERROR_PAUSE).await;
                }
            }
            started = &mut draining, if deadline.is_none() => {
                deadline = Some(started.deadline);
                listener.refusing = Some(DropReason::draining);
                tracing::info!(listener = %shared.name, open = listener.sessions.len(), "UDP listener draining: no new sessions; open ones run until idle or the drain deadline");
            }
            () = &mut stop, if !stopped => {
                stopped = true;
                if listener.refusing.is_none() {
                    listener.refusing = Some(DropReason::listener_stopped);
                }
                tracing::info!(listener = %shared.name, open = listener.sessions.len(), "UDP listener removed: no new sessions; open ones run until idle");
            }
            () = sleep_until_some(deadline.map(|d| d + DRAIN_GRACE)) => {
                tracing::warn!(listener = %shared.name, open = listener.sessions.len(), "UDP sessions still open after the drain deadline");
                break;
            }
        }
    }
    tracing::info!(listener = %shared.name, "UDP listener stopped");
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The listener task's state.
struct Listener {
    shared: Arc<Shared>,
    handle: Arc<SnapshotHandle>,
    web_acl: Option<ResourceId>,
    missing_acl_warned: AtomicU64,
    /// The generation for which "no route" was last logged.
    no_route_warned: u64,
    sessions: HashMap<SocketAddr, Entry>,
    /// Bytes held in `Entry::Opening` entries.
    pending_bytes: usize,
    next_id: u64,
    /// Set when no new session may be created, with the reason datagrams
    /// that need one are dropped for.
    refusing: Option<DropReason>,
    events: mpsc::UnboundedSender<Event>,
    drain: DrainWatch,
}

/// What happened to a datagram sent on a session's upstream socket.
enum Sent {
    Ok,
    /// Not sent; the session goes on.
    Dropped(DropReason),
    /// The node refused (ICMP port unreachable): the session is over.
    Refused,
    /// Another error: the session is over.
    Failed,
}

impl Listener {
    /// Reads the datagrams waiting on the socket, at most [`READ_BATCH`].
    fn read_batch(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let now = self.shared.now_ms();
        for _ in 0..READ_BATCH {
            match self.shared.socket.try_recv_from(buf) {
                Ok((n, client)) => self.datagram(&buf[..n], client, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn datagram(&mut self, data: &[u8], client: SocketAddr, now: u64) {
        let shared = &self.shared;
        match self.sessions.get_mut(&client) {
            Some(Entry::Open(s)) if !s.is_closing() => match send_up(shared, s, data, now) {
                Sent::Ok => return,
                Sent::Dropped(reason) => return shared.dropped(reason),
                Sent::Failed => {
                    s.end(SessionEnd::upstream_error);
                    self.sessions.remove(&client);
                    return self.shared.dropped(DropReason::upstream_error);
                }
                Sent::Refused => {
                    // The node is gone (a game server stopped or restarting):
                    // this datagram opens a new session, which the balancer
                    // sends to a node not marked failed, if there is one.
                    s.peer.mark_failed();
                    s.end(SessionEnd::upstream_refused);
                    self.sessions.remove(&client);
                }
            },
            Some(Entry::Open(_)) => {
                // Its task is ending it (idle): this datagram starts a new one.
                self.sessions.remove(&client);
            }
            Some(Entry::Opening { pending, bytes, .. }) => {
                if pending.len() >= PENDING_MAX_DATAGRAMS || self.pending_bytes + data.len() > PENDING_MAX_BYTES {
                    return shared.dropped(DropReason::pending_full);
                }
                pending.push(data.into());
                *bytes += data.len();
                self.pending_bytes += data.len();
                return;
            }
            None => {}
        }
        self.new_session(data, client);
    }

    /// A datagram from a client without a session.
    fn new_session(&mut self, data: &[u8], client: SocketAddr) {
        if let Some(reason) = self.refusing {
            return self.shared.dropped(reason);
        }
        let shared = &self.shared;
        let snap = self.handle.load();
        let local = shared.local;
        let query =
            RouteQuery { sni: None, server_port: local.port(), server_addr: local.ip(), remote_addr: client.ip() };
        let Some((target, _)) = snap.stream.find(&query) else {
            if self.no_route_warned != snap.generation {
                self.no_route_warned = snap.generation;
                tracing::warn!(listener = %shared.name, %client, port = local.port(), generation = snap.generation, "no stream route matches this UDP datagram; such datagrams are dropped (logged once per configuration generation)");
            }
            return shared.dropped(DropReason::no_route);
        };
        let stream_metrics = &shared.metrics.stream;
        if let Some(acl) =
            crate::acl::listener_acl(&shared.name, self.web_acl.as_ref(), &self.missing_acl_warned, &snap)
            && let Some(rule) = crate::acl::refused_by(&shared.name, stream_metrics, acl, client, None)
        {
            tracing::debug!(listener = %shared.name, %client, rule = %rule, "UDP session refused by the listener's web ACL");
            return shared.dropped(DropReason::waf);
        }
        if let Some(acl) = target.waf.as_deref()
            && let Some(rule) = crate::acl::refused_by(&shared.name, stream_metrics, acl, client, None)
        {
            tracing::debug!(listener = %shared.name, %client, route = %target.route.id, web_acl = %acl.id, rule = %rule, "UDP session refused by the route's web ACL");
            return shared.dropped(DropReason::waf);
        }
        let limit = match crate::plugins::admit_session(&shared.settings.limit_conn, target, client, local) {
            Ok(guard) => guard,
            Err(reason) => {
                tracing::debug!(listener = %shared.name, %client, route = %target.route.id, reason = reason.as_str(), "UDP session refused by the route's plugins");
                return shared.dropped(DropReason::plugin);
            }
        };
        let Ok(session_permit) = Arc::clone(&shared.settings.max_sessions).try_acquire_owned() else {
            return shared.dropped(DropReason::session_limit);
        };
        let Ok(connection_permit) = Arc::clone(&shared.settings.max_connections).try_acquire_owned() else {
            return shared.dropped(DropReason::connection_limit);
        };
        if self.pending_bytes + data.len() > PENDING_MAX_BYTES {
            return shared.dropped(DropReason::pending_full);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending_bytes += data.len();
        self.sessions.insert(client, Entry::Opening { id, pending: vec![data.into()], bytes: data.len() });
        tokio::spawn(session::run(session::Start {
            shared: Arc::clone(shared),
            client,
            id,
            target: Arc::clone(target),
            generation: snap.generation,
            permits: (session_permit, connection_permit),
            limit,
            drain: self.drain.clone(),
            events: self.events.clone(),
        }));
    }

    /// A session's task reports that it opened or ended.
    fn apply(&mut self, event: Event) {
        match event {
            Event::Opened { client, id, session } => {
                let Some(entry) = self.sessions.get_mut(&client) else {
                    // Not expected (only `Ended` removes an opening entry).
                    return session.end(SessionEnd::upstream_error);
                };
                let pending = match entry {
                    Entry::Opening { id: current, pending, bytes } if *current == id => {
                        self.pending_bytes -= *bytes;
                        std::mem::take(pending)
                    }
                    _ => return session.end(SessionEnd::upstream_error),
                };
                *entry = Entry::Open(Arc::clone(&session));
                let now = self.shared.now_ms();
                for (i, data) in pending.iter().enumerate() {
                    let end = match send_up(&self.shared, &session, data, now) {
                        Sent::Ok => continue,
                        Sent::Dropped(reason) => {
                            self.shared.dropped(reason);
                            continue;
                        }
                        Sent::Refused => {
                            session.peer.mark_failed();
                            SessionEnd::upstream_refused
                        }
                        Sent::Failed => SessionEnd::upstream_error,
                    };
                    // The node failed before its first datagrams were out:
                    // the rest is dropped; the client's next one opens a new session.
                    session.end(end);
                    self.sessions.remove(&client);
                    self.shared.dropped_n(DropReason::upstream_error, (pending.len() - i) as u64);
                    break;
                }
            }
            Event::Ended { client, id } => {
                let current = match self.sessions.get(&client) {
                    Some(Entry::Opening { id: current, .. }) => *current,
                    Some(Entry::Open(s)) => s.id,
                    None => return,
                };
                if current != id {
                    return;
                }
                if let Some(Entry::Opening { pending, bytes, .. }) = self.sessions.remove(&client) {
                    self.pending_bytes -= bytes;
                    self.shared.dropped_n(DropReason::upstream_unavailable, pending.len() as u64);
                }
            }
        }
    }
}

/// Sends one datagram from the client on the session's upstream socket,
/// without waiting. The send is a plain non-blocking syscall: tokio's
/// `try_send` would refuse until its reactor has seen the socket writable,
/// and nothing here ever waits for that.
fn send_up(shared: &Shared, s: &Session, data: &[u8], now: u64) -> Sent {
    s.touch(now);
    match socket2::SockRef::from(&s.up).send(data) {
        Ok(_) => {
            s.count_from_client(data.len());
            Sent::Ok
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Dropped(DropReason::upstream_busy),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Sent::Refused,
        Err(e) => {
            tracing::debug!(listener = %shared.name, client = %s.client, node = %s.peer.node(), error = %e, "sending to the game server failed");
            Sent::Failed
        }
    }
}

#[cfg(test)]
mod tests;
