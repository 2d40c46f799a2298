//! Edge listeners: the accept loop, TLS by SNI from the `ssls` resources
//! (ALPN `h2` and `http/1.1`), HTTP/1.1 and HTTP/2 by hyper, bounded header
//! sizes and read timeouts, idle connections closed, the connection limit,
//! the drain, and the PROXY protocol header a listener may require first
//! (`shardgate_stream::proxy_protocol`; its client address is the viewer's).
//!
//! Idle connections: hyper bounds an idle HTTP/1.1 keep-alive connection
//! with its header read timeout, but has no idle timeout for HTTP/2. Each
//! connection therefore counts its requests in progress (from the head
//! until the response body is dropped, so a long download counts as busy)
//! and is shut down gracefully (GOAWAY for HTTP/2) once none has been in
//! progress for `idle_timeout`. HTTP/2 keep-alive PINGs find peers that
//! vanished while holding streams open. Not bounded: an HTTP/2 client that
//! keeps answering PINGs but holds its flow-control window at zero keeps a
//! response in progress (its body never finishes, so never drops) for as
//! long as it likes, so `idle_timeout` does not close that connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use shardgate_core::DrainWatch;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use shardgate_stream::hello::{read_client_hello, refuse};
use shardgate_stream::listener::accept_loop;
use shardgate_stream::proxy_protocol::{RefusalLog, RefusedLabels, accept_header};
use shardgate_stream::readahead::ReadAhead;
use shardgate_waf::TlsFingerprint;

use crate::access_log::TlsSession;
use crate::body::{BoxError, EdgeBody};
use crate::service::{ConnInfo, EdgeService};
use crate::streams::{ConnStreams, WithStreams};

/// Largest request head accepted (CloudFront allows 20,480 bytes without body).
const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Most request header lines HTTP/1.1 accepts (hyper's default is 100). AWS
/// WAF inspects the first 200 headers and applies `OversizeHandling` to a
/// request with more, so the edge must let such requests reach the WAF; the
/// byte bound [`MAX_HEAD_BYTES`] still holds.
const MAX_REQUEST_HEADERS: usize = 256;
/// Concurrent HTTP/2 streams per connection.
const MAX_H2_STREAMS: u32 = 128;

/// One edge listener as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpListenerSpec {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Terminate TLS (HTTPS, certificates by SNI).
    pub tls: bool,
    /// Every connection must start with a PROXY protocol header (v1 or v2);
    /// its client address is the viewer's (WAF, rate-based rules, logs).
    pub proxy_protocol: bool,
}

impl HttpListenerSpec {
    /// The log label: `https/0.0.0.0:443` or `http/...`.
    pub fn label(&self) -> String {
        format!("{}/{}", if self.tls { "https" } else { "http" }, self.addr)
    }
}

/// Settings shared by every edge listener.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Connections open at once over all edge listeners.
    pub max_connections: Arc<Semaphore>,
    /// Time from accept to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to receive a request head (and an idle keep-alive connection's next one).
    pub header_read_timeout: Duration,
    /// Most bytes read while waiting for a whole ClientHello (the stream
    /// plane's `limits.client_hello_max_bytes`).
    pub client_hello_max_bytes: usize,
    /// A connection with no request in progress for this long is closed
    /// (HTTP/2: GOAWAY, then close once nothing is left in flight).
    pub idle_timeout: Duration,
    /// HTTP/2: send a PING after this long without hearing from the client.
    pub h2_keepalive_interval: Duration,
    /// HTTP/2: close the connection when a PING is not answered within this.
    pub h2_keepalive_timeout: Duration,
    /// `shardgate_proxy_protocol_refused_total{listener, reason}`, shared
    /// with the stream listeners.
    pub proxy_protocol_refused: Family<RefusedLabels, Counter>,
}

/// What an edge listener with `proxy_protocol: true` needs per connection.
#[derive(Debug)]
struct ProxyIn {
    listener: String,
    log: RefusalLog,
}

/// Accepts connections until the drain starts or `stop` completes (a reload
/// removed or replaced this listener); the connections it started keep
/// running (see [`shardgate_stream::listener::accept_loop`]).
pub async fn serve(
    listener: TcpListener,
    spec: HttpListenerSpec,
    svc: Arc<EdgeService>,
    settings: HttpSettings,
    drain: DrainWatch,
    stop: impl std::future::Future<Output = ()>,
) {
    let label = spec.label();
    // A listener on a specific IP gives every accepted socket's local
    // address without a getsockname per connection (as the stream listener).
    let fixed_local = Some(spec.addr).filter(|a| !a.ip().is_unspecified());
    tracing::info!(listener = %label, "edge listener accepting");
    let max = Arc::clone(&settings.max_connections);
    let proxy_in =
        spec.proxy_protocol.then(|| Arc::new(ProxyIn { listener: label.clone(), log: RefusalLog::default() }));
    accept_loop(&listener, &label, &max, &mut drain.clone(), stop, |sock, peer, permit| {
        let local = match fixed_local {
            Some(a) => a,
            None => sock.local_addr().unwrap_or(spec.addr),
        };
        let conn = ConnInfo { client: peer, local, tls: None, tls_session: None };
        let proxy_in = proxy_in.clone();
        tokio::spawn(connection(
            sock,
            conn,
            spec.tls,
            proxy_in,
            Arc::clone(&svc),
            settings.clone(),
            drain.clone(),
            permit,
        ));
    })
    .await;
    tracing::info!(listener = %label, "edge listener stopped accepting");
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    mut sock: TcpStream,
    mut conn: ConnInfo,
    tls: bool,
    proxy_in: Option<Arc<ProxyIn>>,
    svc: Arc<EdgeService>,
    settings: HttpSettings,
    drain: DrainWatch,
    _permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    if let Err(e) = sock.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    if let Some(p) = &proxy_in {
        // Before TLS and HTTP, within the handshake timeout: the header's
        // client address is the viewer's for every request.
        let deadline = started + settings.handshake_timeout;
        let refused = &settings.proxy_protocol_refused;
        match accept_header(&mut sock, conn.client, deadline, &p.listener, refused, &p.log).await {
            Some(client) => conn.client = client,
            None => return,
        }
    }
    if !tls {
        serve_http(TokioIo::new(sock), conn, svc, &settings, drain).await;
        return;
    }
    let handshake = async {
        // The ClientHello is read here, under the same byte cap as the stream
        // plane's, rather than by tokio-rustls: its bytes give the
        // connection's JA3 and JA4, computed once and carried by every
        // request of the connection, and only when the generation at the
        // handshake has a web ACL that reads them (see
        // `Snapshot::reads_tls_fingerprints`); otherwise nothing is copied.
        let keep = svc.snapshots.load().reads_tls_fingerprints;
        let (accepted, hello) = read_client_hello(&sock, settings.client_hello_max_bytes, keep)
            .await
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let fingerprint = hello.as_deref().and_then(TlsFingerprint::from_records);
        drop(hello);
        let sni = accepted.client_hello().server_name().map(str::to_ascii_lowercase);
        let config =
            sni.as_deref().and_then(|name| svc.snapshots.load().certs.find(name).map(|e| Arc::clone(&e.http_config)));
        match config {
            Some(c) => {
                let stream =
                    tokio_rustls::StartHandshake::from_parts(accepted, ReadAhead::new(sock)).into_stream(c).await?;
                let session = TlsSession::of(stream.get_ref().1);
                Ok(Some((stream, fingerprint, session)))
            }
            None => {
                // As on the stream plane: `unrecognized_name` (RFC 6066 §3).
                refuse(&mut sock).await;
                tracing::info!(client = %conn.client, sni = sni.as_deref().unwrap_or(""), "edge TLS refused: no certificate for the SNI");
                Ok::<_, std::io::Error>(None)
            }
        }
    };
    match tokio::time::timeout_at(started + settings.handshake_timeout, handshake).await {
        Ok(Ok(Some((stream, tls, session)))) => {
            let conn = ConnInfo { tls, tls_session: Some(session), ..conn };
            serve_http(TokioIo::new(stream), conn, svc, &settings, drain).await
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::debug!(client = %conn.client, error = %e, "edge TLS handshake failed"),
        Err(_) => tracing::debug!(client = %conn.client, "edge TLS handshake timed out"),
    }
}

async fn serve_http<I>(io: I, conn: ConnInfo, svc: Arc<EdgeService>, settings: &HttpSettings, mut drain: DrainWatch)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // HTTP/2 streams run in this connection's task (see `crate::streams`).
    let streams = ConnStreams::default();
    let mut builder = auto::Builder::new(streams.clone());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_REQUEST_HEADERS)
        // `X-Cache: Hit from shardgate`, as CloudFront writes it: scripts
        // grep for it case-sensitively (`curl -v ... | egrep 'X-Cache|...'`).
        .title_case_headers(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .keep_alive_interval(Some(settings.h2_keepalive_interval))
        .keep_alive_timeout(settings.h2_keepalive_timeout);
    let activity = Activity::new();
    let counter = Arc::clone(&activity);
    let service = service_fn(move |req| {
        let svc = Arc::clone(&svc);
        let in_progress = InProgress::start(&counter);
        async move {
            let mut resp = svc.handle(req, conn).await;
            // The request's span ends with its body.
            let span = resp.extensions_mut().remove::<crate::trace::RequestSpan>();
            Ok::<_, Infallible>(resp.map(|body| CountedBody { body, _in_progress: in_progress, _span: span }))
        }
    });
    let mut served = WithStreams::new(builder.serve_connection(io, service), streams);
    let mut idle_closed = false;
    let result = loop {
        tokio::select! {
            r = &mut served => break r,
            d = drain.draining() => {
                // Finish the requests in flight, refuse new ones, then close.
                served.conn().graceful_shutdown();
                break match tokio::time::timeout_at(d.deadline, &mut served).await {
                    Ok(r) => r,
                    Err(_) => Ok(()),
                };
            }
            () = activity.idle_for(settings.idle_timeout), if !idle_closed => {
                // A request that raced the timer still finishes (GOAWAY names
                // the last stream served); the drain still bounds the wait.
                tracing::debug!(client = %conn.client, "closing an idle edge connection");
                served.conn().graceful_shutdown();
                idle_closed = true;
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %conn.client, error = %e, "edge connection ended with an error");
    }
}

/// Requests in progress on one connection, and when the last one ended.
#[derive(Debug)]
struct Activity {
    /// Requests between their head and the drop of their response body.
    open: AtomicUsize,
    /// When the connection was accepted; `last_end` counts from here.
    start: Instant,
    /// Nanoseconds after `start` when a request last ended.
    last_end: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity { open: AtomicUsize::new(0), start: Instant::now(), last_end: AtomicU64::new(0) })
    }

    /// Resolves once no request has been in progress for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let wait = if self.open.load(Ordering::Acquire) > 0 {
                timeout
            } else {
                let last = self.start + Duration::from_nanos(self.last_end.load(Ordering::Acquire));
                let idle = last.elapsed();
                if idle >= timeout {
                    return;
                }
                timeout - idle
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Counts one request as in progress until dropped.
struct InProgress(Arc<Activity>);

impl InProgress {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.open.fetch_add(1, Ordering::AcqRel);
        InProgress(Arc::clone(activity))
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_end.store(a.start.elapsed().as_nanos() as u64, Ordering::Release);
        a.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in progress until
/// hyper drops it (after the last byte, or when the client goes away).
struct CountedBody {
    body: EdgeBody,
    _in_progress: InProgress,
    /// The request's span, when tracing is on: it ends with the body.
    _span: Option<crate::trace::RequestSpan>,
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
