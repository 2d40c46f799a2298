//! Stream listeners: binding, the accept loop, the connection limit and the drain.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shardgate_core::DrainWatch;
use shardgate_snapshot::SnapshotHandle;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::StreamMetrics;
use crate::conn::{self, ListenerCtx};
use crate::metrics::ListenerLabels;

/// Pending connections the kernel queues per listener (a login storm arrives
/// faster than any accept loop).
const BACKLOG: u32 = 4096;
/// Pause after a failed accept (out of descriptors): back off, do not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// One stream listener as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Terminate TLS (and route by SNI).
    pub tls: bool,
    /// The name that stands in for a missing SNI, or one nothing serves.
    pub fallback_sni: Option<String>,
    /// A web ACL run on the client address at accept, before any TLS.
    pub web_acl: Option<String>,
    /// Every connection must start with a PROXY protocol header (v1 or
    /// v2), whose client address replaces the socket's.
    pub proxy_protocol: bool,
    /// Send a v1 PROXY protocol header to the game servers (APISIX's
    /// `proxy_protocol_to_upstream`), unless the route or upstream says otherwise.
    pub proxy_protocol_to_upstream: bool,
}

impl ListenerSpec {
    /// The metric and log label: `tls/0.0.0.0:8888` or `tcp/...`.
    pub fn label(&self) -> String {
        format!("{}/{}", if self.tls { "tls" } else { "tcp" }, self.addr)
    }
}

/// Settings shared by every stream listener.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Connections open at once over all stream listeners; accepting pauses at the limit.
    pub max_connections: Arc<Semaphore>,
    /// Time from accept to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// Most bytes read while waiting for a whole ClientHello.
    pub client_hello_max_bytes: usize,
    /// `limit-conn` counts of every route, shared by all stream listeners.
    pub limit_conn: Arc<crate::plugins::LimitConnRegistry>,
}

/// Binds a listener with `SO_REUSEADDR`, a deep backlog, and the options
/// every player socket needs: TCP_NODELAY (game messages are small and
/// latency-bound) and TCP keepalive after `keepalive` idle. Linux clones an
/// accepted socket from its listener, options included (`inet_csk_clone_lock`),
/// so accepted sockets need no setsockopt of their own.
pub fn bind(addr: SocketAddr, keepalive: Duration) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    let ka = socket2::TcpKeepalive::new().with_time(keepalive).with_interval(Duration::from_secs(10));
    socket2::SockRef::from(&socket).set_tcp_keepalive(&ka)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts connections until the drain starts or `stop` completes (a reload
/// removed or replaced this listener), serving each in its own task with a
/// context built once from `spec`. Returns when the listener has stopped
/// accepting (its socket is closed on return, unless another copy of it
/// serves on); the connections it started keep running until they end or
/// the drain deadline.
pub async fn serve(
    listener: TcpListener,
    spec: ListenerSpec,
    handle: Arc<SnapshotHandle>,
    settings: StreamSettings,
    metrics: StreamMetrics,
    drain: DrainWatch,
    stop: impl std::future::Future<Output = ()>,
) {
    let labels = ListenerLabels { listener: spec.label() };
    // The local address of every accepted socket, when the listener has a
    // specific IP (no getsockname per connection).
    let local = listener.local_addr().ok().filter(|a| !a.ip().is_unspecified());
    let ctx = Arc::new(ListenerCtx {
        name: labels.listener.clone(),
        local,
        tls: spec.tls,
        fallback_sni: spec.fallback_sni.map(|s| s.to_ascii_lowercase()),
        web_acl: spec.web_acl.as_deref().and_then(|id| shardgate_model::ResourceId::parse(id).ok()),
        missing_acl_warned: std::sync::atomic::AtomicU64::new(u64::MAX),
        handle,
        handshake_timeout: settings.handshake_timeout,
        client_hello_max_bytes: settings.client_hello_max_bytes,
        proxy_protocol: spec.proxy_protocol,
        proxy_protocol_to_upstream: spec.proxy_protocol_to_upstream,
        refusal_log: crate::proxy_protocol::RefusalLog::default(),
        refusals: crate::conn::RefusalThrottles::default(),
        limit_conn: settings.limit_conn,
        accepted: metrics.accepted.get_or_create_owned(&labels),
        active: metrics.active.get_or_create_owned(&labels),
        no_route: metrics.no_route.get_or_create_owned(&labels),
        handshake_seconds: metrics.handshake_seconds.get_or_create_owned(&labels),
        metrics,
    });
    tracing::info!(listener = %ctx.name, "stream listener accepting");
    let max = Arc::clone(&settings.max_connections);
    let label = ctx.name.clone();
    accept_loop(&listener, &label, &max, &mut drain.clone(), stop, |sock, peer, permit| {
        tokio::spawn(conn::handle(sock, peer, Arc::clone(&ctx), drain.clone(), permit));
    })
    .await;
    tracing::info!(listener = %label, "stream listener stopped accepting");
}

/// The accept loop every TCP listener runs (stream and edge): take a
/// connection permit (accepting pauses while `max_connections` are open),
/// accept, and hand the socket to `on_accept`, which spawns its task.
/// Returns when the drain starts or `stop` completes (a listener removed by
/// a reload); connections already handed over keep running.
pub async fn accept_loop<F>(
    listener: &TcpListener,
    label: &str,
    max_connections: &Arc<Semaphore>,
    drain: &mut DrainWatch,
    stop: impl std::future::Future<Output = ()>,
    mut on_accept: F,
) where
    F: FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
{
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(max_connections).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = drain.draining() => break,
            () = &mut stop => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = drain.draining() => break,
            () = &mut stop => break,
        };
        match accepted {
            Ok((sock, peer)) => on_accept(sock, peer, permit),
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning.
                tracing::warn!(listener = %label, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_and_keepalive_from_the_listener() {
        let l = bind("127.0.0.1:0".parse().expect("addr"), Duration::from_secs(42)).expect("bind");
        let addr = l.local_addr().expect("addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = l.accept().await.expect("accept");
        assert!(accepted.nodelay().expect("nodelay"), "TCP_NODELAY inherited");
        let sock = socket2::SockRef::from(&accepted);
        assert!(sock.keepalive().expect("SO_KEEPALIVE"), "SO_KEEPALIVE inherited");
        assert_eq!(sock.tcp_keepalive_time().expect("TCP_KEEPIDLE"), Duration::from_secs(42));
    }
}
