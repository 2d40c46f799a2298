//! Serving the Admin API (and the metrics and health listener) over
//! HTTP/1.1 with every network input bounded: connections at once, the time
//! to send a request head (also the idle time of a keep-alive connection),
//! the size of a head, and how long a response write may make no progress
//! ([`RESPONSE_STALL_TIMEOUT`]: a client that stops reading a large answer,
//! a listing or `/metrics`, is cut instead of holding its connection slot).
//! Body time and size are bounded per request by the handlers (`api`),
//! which know whether a request is a read or a write. The total time to
//! send a response is not bounded: a client that keeps reading, however
//! slowly, gets all of it.
//!
//! `axum::serve` has none of these bounds: a client that trickles one header
//! byte every few seconds holds its connection (and its task) forever.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use shardgate_core::Limits;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower::ServiceExt;

/// Largest request head (request line and headers) read, in bytes. Admin
/// API heads are a few hundred bytes; hyper answers a larger one with 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest a response write may wait without the client taking a byte;
/// then the connection is closed. The kernel's socket buffers take small
/// answers at once, so only a client that stops reading a large one waits.
pub const RESPONSE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How a listener serves its connections.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Time to receive a request head, and the longest a keep-alive
    /// connection may sit idle between requests (hyper starts the same
    /// timer when it waits for the next head).
    pub header_read_timeout: Duration,
    /// Connections open at once; at the limit the listener stops accepting.
    pub max_connections: usize,
    /// After the shutdown signal, how long open requests may finish before
    /// their connections are cut.
    pub shutdown_grace: Duration,
    /// Longest a response write may make no progress before the connection
    /// is closed ([`RESPONSE_STALL_TIMEOUT`]).
    pub write_stall_timeout: Duration,
}

impl ServeSettings {
    /// The settings `limits` names for the Admin API and metrics listeners.
    pub fn from_limits(limits: &Limits) -> Self {
        ServeSettings {
            header_read_timeout: limits.admin_header_read_timeout.get(),
            max_connections: limits.admin_max_connections,
            shutdown_grace: limits.admin_body_read_timeout.get() + limits.admin_request_timeout.get(),
            write_stall_timeout: RESPONSE_STALL_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open
/// requests finish (at most `shutdown_grace`) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Wait for a free connection slot before accepting: at the limit the
        // kernel's backlog holds new connections.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((socket, peer)) => {
                let router = router.clone();
                let stop = stop_rx.clone();
                let settings = settings.clone();
                connections.spawn(async move {
                    connection(socket, peer, router, &settings, stop).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    if stop_tx.send(true).is_err() {
        tracing::debug!("no connection open at shutdown");
    }
    let grace = tokio::time::sleep(settings.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() { break },
            () = &mut grace => {
                tracing::warn!(open = connections.len(), "cutting connections still open after the shutdown grace");
                connections.abort_all();
                break;
            }
        }
    }
    Ok(())
}

/// Completes when the listener stops (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        tracing::trace!("the listener is gone");
    }
}

/// Serves one connection; each request carries the peer address as
/// `ConnectInfo` (sign-in throttling counts failures per address).
async fn connection(
    socket: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    settings: &ServeSettings,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(e) = socket.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY on an admin connection");
    }
    let socket = StallTimeout::new(socket, settings.write_stall_timeout);
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        let router = router.clone();
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        async move { Ok::<_, Infallible>(router.oneshot(req.map(Body::new)).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(socket), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(&mut stop) => {
            // Idle connections close now; a request in progress finishes.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and bad requests from clients: not our failure.
        tracing::debug!(error = %e, "admin connection ended with an error");
    }
}

/// A connection whose writes fail with `TimedOut` once they have made no
/// progress for `timeout`; reads pass through.
struct StallTimeout<T> {
    io: T,
    timeout: Duration,
    /// Running while a write waits for the peer; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> StallTimeout<T> {
    fn new(io: T, timeout: Duration) -> Self {
        StallTimeout { io, timeout, stalled: None }
    }

    /// After the inner write returned `result`: progress resets the timer,
    /// waiting runs it and fails once it has fired.
    fn track<R>(&mut self, cx: &mut Context<'_>, result: Poll<std::io::Result<R>>) -> Poll<std::io::Result<R>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let timeout = self.timeout;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client took no response byte for {timeout:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallTimeout<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallTimeout<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.track(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.track(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.track(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_shutdown(cx);
        self.track(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(
        max_connections: usize,
        header_read_timeout: Duration,
    ) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new()
            .route("/", get(|| async { "hi" }))
            .route("/big", get(|| async { vec![b'x'; 64 * 1024 * 1024] }));
        let settings = ServeSettings {
            header_read_timeout,
            max_connections,
            shutdown_grace: Duration::from_secs(5),
            write_stall_timeout: Duration::from_millis(500),
        };
        let (tx, mut rx) = watch::channel(false);
        tokio::spawn(serve(listener, router, settings, async move { stopped(&mut rx).await }));
        (addr, tx)
    }

    async fn get_root(addr: std::net::SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("send");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn at_the_connection_cap_the_next_connection_waits_for_a_free_slot() {
        let (addr, _stop) = start(1, Duration::from_secs(60)).await;
        let holder = TcpStream::connect(addr).await.expect("first connection");
        // Accepted by the kernel, not served: the one slot is taken.
        let waiting = tokio::spawn(get_root(addr));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "a second connection is not served while the first holds the slot");
        drop(holder);
        let answer = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("served").expect("task");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_stops_accepting() {
        let (addr, stop) = start(8, Duration::from_secs(60)).await;
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        assert!(get_root(addr).await.starts_with("HTTP/1.1 200"));
        stop.send(true).expect("stop");
        let mut buf = [0u8; 8];
        let closed = tokio::time::timeout(Duration::from_secs(30), idle.read(&mut buf)).await.expect("closed");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    }

    /// A client that asks for a large answer and stops reading it holds its
    /// connection slot only until the write has stalled for the stall
    /// timeout; then the connection is closed and the next client served.
    #[tokio::test]
    async fn a_client_that_stops_reading_its_answer_loses_its_connection() {
        let (addr, _stop) = start(1, Duration::from_secs(60)).await;
        let mut stuck = TcpStream::connect(addr).await.expect("connect");
        stuck.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
        // Never reads: 64 MiB cannot fit in the socket buffers.
        let answer = tokio::time::timeout(Duration::from_secs(60), get_root(addr)).await.expect("the slot came free");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(stuck);
    }
}
