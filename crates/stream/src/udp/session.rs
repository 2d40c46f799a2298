//! One UDP session's task: open the upstream socket (node choice, retries and
//! failure marks by `Upstream::connect_with`), relay the node's replies to the
//! client from the listener socket, end on idle, on a refusal by the node or
//! at the drain deadline, then count and log the session (and record its
//! span, when tracing is on).

use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use shardgate_core::DrainWatch;
use shardgate_snapshot::StreamTarget;
use shardgate_upstream::{ConnectCtx, ConnectError, PeerGuard};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;

use super::metrics::{SessionCloseLabels, SessionLabels};
use super::{DropReason, MAX_DATAGRAM, READ_BATCH, SessionEnd, Shared};
use crate::metrics::RouteLabels;

thread_local! {
    /// The buffer replies are read into: one per runtime thread, borrowed
    /// only between two awaits, so an idle session holds no buffer.
    static REPLY_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; MAX_DATAGRAM].into_boxed_slice());
}

/// What a session's task tells its listener.
pub(super) enum Event {
    /// The upstream socket is open: send the held datagrams, then forward.
    Opened { client: SocketAddr, id: u64, session: Arc<Session> },
    /// The session is over (or never opened): forget the entry if it is still this one.
    Ended { client: SocketAddr, id: u64 },
}

/// What the listener hands a new session's task.
pub(super) struct Start {
    pub(super) shared: Arc<Shared>,
    pub(super) client: SocketAddr,
    pub(super) id: u64,
    pub(super) target: Arc<StreamTarget>,
    pub(super) generation: u64,
    /// `limits.udp_max_sessions` and `limits.max_connections`.
    pub(super) permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    /// The route's `limit-conn` count, held until the session ends.
    pub(super) limit: Option<crate::plugins::LimitGuard>,
    pub(super) drain: DrainWatch,
    pub(super) events: mpsc::UnboundedSender<Event>,
}

/// One open session, shared by the listener (client to node) and the
/// session's task (node to client).
pub(crate) struct Session {
    pub(super) id: u64,
    pub(super) client: SocketAddr,
    /// `client` in the form a send takes.
    client_addr: socket2::SockAddr,
    /// Connected to the node: the kernel delivers only the node's datagrams.
    pub(super) up: UdpSocket,
    /// The node, counted active while the session lives.
    pub(super) peer: PeerGuard,
    /// Milliseconds (listener clock) of the last datagram either way.
    last_ms: AtomicU64,
    /// Set by the task once it has decided to end.
    closing: AtomicBool,
    /// Why the listener ended it (0: it did not); see [`Session::end`].
    ended_by_listener: AtomicU8,
    wake: Notify,
    datagrams_in: AtomicU64,
    bytes_in: AtomicU64,
    datagrams_out: AtomicU64,
    bytes_out: AtomicU64,
    route: RouteCounters,
}

/// The route's datagram and byte counters, looked up once per session.
struct RouteCounters {
    datagrams_in: Counter,
    bytes_in: Counter,
    datagrams_out: Counter,
    bytes_out: Counter,
}

impl Session {
    /// Records activity at `now` (listener clock, ms).
    pub(super) fn touch(&self, now: u64) {
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Whether the task has decided to end the session.
    pub(super) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Counts a datagram forwarded from the client.
    pub(super) fn count_from_client(&self, len: usize) {
        self.datagrams_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
        self.route.datagrams_in.inc();
        self.route.bytes_in.inc_by(len as u64);
    }

    fn count_to_client(&self, len: usize) {
        self.datagrams_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
        self.route.datagrams_out.inc();
        self.route.bytes_out.inc_by(len as u64);
    }

    /// Ends the session from the listener's side (its entry is already gone).
    pub(super) fn end(&self, reason: SessionEnd) {
        self.ended_by_listener.store(end_code(reason), Ordering::Release);
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

fn end_code(reason: SessionEnd) -> u8 {
    match reason {
        SessionEnd::idle_timeout => 1,
        SessionEnd::upstream_refused => 2,
        SessionEnd::upstream_error => 3,
        SessionEnd::upstream_unavailable => 4,
        SessionEnd::local_resources => 5,
        SessionEnd::drain => 6,
    }
}

fn end_of(code: u8) -> SessionEnd {
    match code {
        1 => SessionEnd::idle_timeout,
        2 => SessionEnd::upstream_refused,
        4 => SessionEnd::upstream_unavailable,
        5 => SessionEnd::local_resources,
        6 => SessionEnd::drain,
        _ => SessionEnd::upstream_error,
    }
}

/// Opens one upstream socket: an ephemeral port of the node's address
/// family, connected to the node, so the kernel delivers only its replies
/// and reports its ICMP errors on this socket.
async fn open_udp(node: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr =
        if node.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let sock = match UdpSocket::bind(any).await {
        Ok(s) => s,
        // Binding port 0 fails only when every local port is taken: this
        // host's shortage, which must not mark the node down (the
        // registry counts EADDRNOTAVAIL as local).
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            tracing::debug!(%node, error = %e, "no local UDP port left");
            return Err(rustix::io::Errno::ADDRNOTAVAIL.into());
        }
        Err(e) => return Err(e),
    };
    sock.connect(node).await?;
    Ok(sock)
}

/// Runs one session from its first datagram to its end.
pub(super) async fn run(start: Start) {
    let Start { shared, client, id, target, generation, permits, limit, mut drain, events } = start;
    let _limit = limit;
    let started = Instant::now();
    let route = target.route.id.to_string();
    let span = crate::trace::udp_session(&shared.name, client, shared.local, &route, generation);
    shared
        .metrics
        .sessions_created
        .get_or_create(&SessionLabels { listener: shared.name.clone(), route: route.clone() })
        .inc();
    shared.active.inc();

    let cut = async {
        let draining = drain.draining().await;
        tokio::time::sleep_until(draining.deadline).await;
    };
    tokio::pin!(cut);

    let ctx = ConnectCtx { client, local: shared.local, sni: None };
    // Boxed: a future is as large as its largest state, and without the box
    // every idle session would keep room for node choice and DNS.
    let connect = Box::pin(target.upstream.connect_with(&ctx, open_udp));
    let opened = tokio::select! {
        r = connect => r,
        () = &mut cut => {
            finish(&shared, &events, client, id, &route, SessionEnd::drain, None, generation, started, &span);
            drop(permits);
            return;
        }
    };
    let (up, peer) = match opened {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(listener = %shared.name, %client, route = %route, error = %e, side = %e.side(), "no upstream socket for a UDP session");
            let reason = match e {
                ConnectError::Local { .. } => SessionEnd::local_resources,
                _ => SessionEnd::upstream_unavailable,
            };
            finish(&shared, &events, client, id, &route, reason, None, generation, started, &span);
            drop(permits);
            return;
        }
    };
    let labels = RouteLabels { route: route.clone() };
    let session = Arc::new(Session {
        id,
        client,
        client_addr: client.into(),
        up,
        peer,
        last_ms: AtomicU64::new(shared.now_ms()),
        closing: AtomicBool::new(false),
        ended_by_listener: AtomicU8::new(0),
        wake: Notify::new(),
        datagrams_in: AtomicU64::new(0),
        bytes_in: AtomicU64::new(0),
        datagrams_out: AtomicU64::new(0),
        bytes_out: AtomicU64::new(0),
        route: RouteCounters {
            datagrams_in: shared.metrics.datagrams_in.get_or_create_owned(&labels),
            bytes_in: shared.metrics.bytes_in.get_or_create_owned(&labels),
            datagrams_out: shared.metrics.datagrams_out.get_or_create_owned(&labels),
            bytes_out: shared.metrics.bytes_out.get_or_create_owned(&labels),
        },
    });
    let reason = if events.send(Event::Opened { client, id, session: Arc::clone(&session) }).is_err() {
        // The listener task is gone (the runtime is stopping).
        SessionEnd::drain
    } else {
        let idle =
            target.route.idle_timeout.or(target.upstream.config().idle_timeout).unwrap_or(shared.settings.idle_timeout);
        relay(&shared, &session, idle, cut).await
    };
    session.closing.store(true, Ordering::Release);
    finish(&shared, &events, client, id, &route, reason, Some(&session), generation, started, &span);
    drop(permits);
}

/// Relays the node's replies until the session ends, and says why.
async fn relay(
    shared: &Shared,
    s: &Session,
    idle: Duration,
    mut cut: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> SessionEnd {
    let idle_ms = idle.as_millis() as u64;
    let expiry = tokio::time::sleep_until(shared.instant_at(s.last_ms.load(Ordering::Relaxed) + idle_ms));
    tokio::pin!(expiry);
    let ended = s.wake.notified();
    tokio::pin!(ended);
    loop {
        tokio::select! {
            biased;
            () = &mut ended => {
                return end_of(s.ended_by_listener.load(Ordering::Acquire));
            }
            () = &mut cut => return SessionEnd::drain,
            // A connected UDP socket that receives the node's ICMP error
            // (port unreachable) is only error-ready (`EPOLLERR`), not
            // readable: both are waited for.
            ready = s.up.ready(Interest::READABLE | Interest::ERROR) => {
                let ready = match ready {
                    Ok(r) => r,
                    Err(e) => return upstream_failed(shared, s, &e),
                };
                if ready.is_error() {
                    match s.up.take_error() {
                        Ok(Some(e)) | Err(e) => return upstream_failed(shared, s, &e),
                        // Already taken (the listener's send got it and
                        // ended the session): forget the readiness.
                        Ok(None) => {
                            if let Err(e) = s.up.try_io(Interest::ERROR, || Err::<(), _>(io::ErrorKind::WouldBlock.into())) {
                                tracing::trace!(error = %e, "error readiness cleared");
                            }
                        }
                    }
                }
                if ready.is_readable() {
                    if let Err(e) = relay_ready(shared, s) {
                        return upstream_failed(shared, s, &e);
                    }
                } else if ready.is_read_closed() {
                    // Not expected of a UDP socket; waiting again would spin.
                    return SessionEnd::upstream_error;
                }
            }
            () = &mut expiry => {
                // The timer is set once per idle period, not per datagram:
                // when it fires, the session is idle unless a datagram came
                // since, which moves the next check.
                let due = s.last_ms.load(Ordering::Relaxed) + idle_ms;
                if shared.now_ms() >= due {
                    return SessionEnd::idle_timeout;
                }
                expiry.as_mut().reset(shared.instant_at(due));
            }
        }
    }
}

/// Sends the replies waiting on the upstream socket to the client, at most
/// [`READ_BATCH`]; an error of the upstream socket ends the session.
fn relay_ready(shared: &Shared, s: &Session) -> io::Result<()> {
    REPLY_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        let now = shared.now_ms();
        for _ in 0..READ_BATCH {
            let n = match s.up.try_recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            s.touch(now);
            // A plain non-blocking send (see `send_up`).
            match socket2::SockRef::from(&shared.socket).send_to(&buf[..n], &s.client_addr) {
                Ok(_) => s.count_to_client(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => shared.dropped(DropReason::client_busy),
                Err(e) => {
                    tracing::debug!(listener = %shared.name, client = %s.client, error = %e, "a reply could not be sent to the client");
                    shared.dropped(DropReason::client_error);
                }
            }
        }
        Ok(())
    })
}

/// An error on the connected upstream socket: the node's ICMP error (port,
/// host or network unreachable) or a local failure. The node is marked
/// failed for the errors that say it is gone.
fn upstream_failed(shared: &Shared, s: &Session, e: &io::Error) -> SessionEnd {
    let node_gone = matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable
    );
    if node_gone {
        s.peer.mark_failed();
    }
    tracing::info!(listener = %shared.name, client = %s.client, node = %s.peer.node(), error = %e, "UDP session's game server failed");
    if e.kind() == io::ErrorKind::ConnectionRefused { SessionEnd::upstream_refused } else { SessionEnd::upstream_error }
}

/// Tells the listener, counts the session's end and writes its access-log line.
#[allow(clippy::too_many_arguments)]
fn finish(
    shared: &Shared,
    events: &mpsc::UnboundedSender<Event>,
    client: SocketAddr,
    id: u64,
    route: &str,
    reason: SessionEnd,
    session: Option<&Session>,
    generation: u64,
    started: Instant,
    span: &tracing::Span,
) {
    if events.send(Event::Ended { client, id }).is_err() {
        tracing::debug!(listener = %shared.name, %client, "the UDP listener task is gone");
    }
    shared.active.dec();
    shared
        .metrics
        .sessions_closed
        .get_or_create(&SessionCloseLabels { listener: shared.name.clone(), route: route.to_owned(), reason })
        .inc();
    let count = |a: Option<&AtomicU64>| a.map_or(0, |a| a.load(Ordering::Relaxed));
    tracing::info!(
        target: "shardgate::access",
        listener = %shared.name,
        peer = %client,
        route = route,
        node = session.map_or("", |s| s.peer.node()),
        generation,
        datagrams_from_client = count(session.map(|s| &s.datagrams_in)),
        from_client = count(session.map(|s| &s.bytes_in)),
        datagrams_to_client = count(session.map(|s| &s.datagrams_out)),
        to_client = count(session.map(|s| &s.bytes_out)),
        duration_ms = started.elapsed().as_millis() as u64,
        reason = reason.as_str(),
        "udp session closed"
    );
    let totals = crate::trace::SessionTotals {
        node: session.map(|s| s.peer.node()),
        datagrams_from_client: count(session.map(|s| &s.datagrams_in)),
        bytes_from_client: count(session.map(|s| &s.bytes_in)),
        datagrams_to_client: count(session.map(|s| &s.datagrams_out)),
        bytes_to_client: count(session.map(|s| &s.bytes_out)),
    };
    crate::trace::record_session_end(span, &totals, reason);
}
