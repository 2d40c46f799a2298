//! Fetching from an origin: the origin's upstream runtime chooses the node
//! (balancer, retries on connect, passive down marks), then an idle
//! keep-alive HTTP/1.1 connection to that node is reused or a new one is
//! opened (plain, or TLS as the origin's protocol policy says), and the
//! response head is awaited within the read timeout.
//!
//! Pooling ([`pool`]): a connection goes back to the pool only once its
//! response body was read to the end and the origin kept it open; a body
//! dropped early, a `Connection: close`, or an error closes it. A request
//! that fails on a reused connection before a response head arrived (the
//! origin closed the idle connection as the request was written: the
//! keep-alive race of RFC 9112 §9.3.1) is sent once more on a new
//! connection when that is safe: the request was not sent at all, or its
//! method is idempotent (RFC 9110 §9.2.2) and its body can be sent again, as
//! nginx's and HAProxy's retries on a reused connection do.
//!
//! [`OriginClient`] owns the pool; the edge holds one
//! ([`crate::EdgeService::origins`]). An origin with `max_idle_connections:
//! 0` gets a connection per request.

pub mod pool;
pub mod upload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use shardgate_snapshot::EdgeOrigin;
use shardgate_upstream::{ConnectCtx, PeerGuard, Pooled};

use crate::body::EdgeBody;
use crate::metrics::{EdgeMetrics, Label, OriginConnectionLabels};
pub use pool::{Pool, PoolKey, Reusable, Transport};

/// How long an idle origin connection is kept when the origin sets no
/// `keepalive_timeout` (CloudFront's default origin keep-alive timeout).
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per origin node when the origin sets no
/// `max_idle_connections`.
pub const DEFAULT_MAX_IDLE_PER_NODE: usize = 32;

/// Why an origin fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// No node could be connected.
    #[error("{0}")]
    Connect(#[from] shardgate_upstream::ConnectError),
    /// The HTTP exchange failed.
    #[error("origin {node}: {error}")]
    Http {
        /// The node.
        node: String,
        /// What failed.
        error: hyper::Error,
    },
    /// The TLS handshake with an HTTPS origin failed: certificate not
    /// trusted, name mismatch, no common protocol, or too slow.
    #[error("origin {node}: TLS handshake (server name {server_name}): {reason}")]
    Tls {
        /// The node.
        node: String,
        /// The server name sent and verified.
        server_name: String,
        /// What failed.
        reason: String,
    },
    /// The request could not be built (a bug: targets come from validated paths).
    #[error("cannot build the origin request: {0}")]
    Request(String),
    /// The viewer's request body failed on its way to the origin: larger
    /// than allowed, stalled, or cut off by the viewer. Not the origin's fault.
    #[error("the viewer's request body: {reason}")]
    Viewer {
        /// 413 (too large), 408 (stalled) or 400 (cut off).
        status: http::StatusCode,
        /// What happened.
        reason: String,
    },
    /// No response head within the read timeout.
    #[error("origin {node}: no response within {timeout:?}")]
    Timeout {
        /// The node.
        node: String,
        /// The timeout.
        timeout: Duration,
    },
}

impl OriginError {
    /// The status the viewer gets: 504 for a timeout, 503 when this host ran
    /// out of descriptors or ports (the origin is not at fault), the
    /// viewer's own fault for a failed request body, else 502 (as
    /// CloudFront).
    pub fn status(&self) -> http::StatusCode {
        match self {
            OriginError::Timeout { .. } => http::StatusCode::GATEWAY_TIMEOUT,
            OriginError::Viewer { status, .. } => *status,
            OriginError::Connect(shardgate_upstream::ConnectError::Local { .. }) => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }
}

/// One request to an origin.
#[derive(Debug)]
pub struct OriginRequest<'a> {
    /// The origin.
    pub origin: &'a EdgeOrigin,
    /// Path and query as the origin sees it (origin path included).
    pub target: String,
    /// Host header.
    pub host: HeaderValue,
    /// Headers to forward (key headers, channel header, conditionals).
    pub headers: HeaderMap,
    /// The viewer's address.
    pub client: SocketAddr,
    /// The edge's local address.
    pub local: SocketAddr,
    /// Wait at most this long for the response head.
    pub read_timeout: Duration,
}

/// What the request carries beyond [`OriginRequest`]: its method, body,
/// and the viewer's protocol (for `match-viewer` origins).
#[derive(Debug)]
pub struct Exchange {
    /// The method (GET for cacheable fetches).
    pub method: Method,
    /// A request body held whole, if any (sent with a `Content-Length`).
    pub body: Option<Bytes>,
    /// A viewer's request body, streamed (sent once: a request whose
    /// streamed body was sent is never retried).
    pub upload: Option<upload::Upload>,
    /// The viewer came over HTTPS.
    pub viewer_https: bool,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange { method: Method::GET, body: None, upload: None, viewer_https: false }
    }
}

/// Bound on a TLS handshake with an origin node when its upstream sets no
/// `timeout.connect`.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which connection served a fetch: set on the response's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginConnection {
    /// An idle pooled connection was reused (else a new one was opened).
    pub reused: bool,
    /// A request on a reused connection failed before any response and was
    /// sent again on a new one.
    pub retried: bool,
}

/// Sends requests to origins over pooled keep-alive connections.
#[derive(Debug)]
pub struct OriginClient {
    pool: Arc<Pool>,
    connections: Option<Family<OriginConnectionLabels, Counter>>,
}

/// A connection ready for one request.
struct Ready {
    sender: SendRequest<EdgeBody>,
    key: PoolKey,
    node: String,
    reused: bool,
}

impl OriginClient {
    /// A client keeping at most `max_idle_total` idle connections over all
    /// origins (0: no pooling), counting connections in
    /// `metrics.origin_connections` when given.
    pub fn new(max_idle_total: usize, metrics: Option<&EdgeMetrics>) -> Self {
        OriginClient { pool: Pool::new(max_idle_total), connections: metrics.map(|m| m.origin_connections.clone()) }
    }

    /// The idle connections held now.
    pub fn idle(&self) -> usize {
        self.pool.idle()
    }

    /// Sends `req` with `exchange`'s method and body; returns the response
    /// head with its body still streaming. The connection returns to the
    /// pool once that body was read to its end.
    pub async fn fetch(
        &self,
        req: OriginRequest<'_>,
        mut exchange: Exchange,
    ) -> Result<Response<Incoming>, OriginError> {
        let transport = transport(&req, &exchange)?;
        let mut conn = self.connect(&req, &transport, true).await?;
        let mut retried = false;
        let streamed = exchange.upload.is_some();
        let upload = exchange.upload.take();
        let mut watch = upload.as_ref().map(upload::Upload::watch);
        let mut next = Some(build(&req, &exchange, upload)?);
        let result = loop {
            let request = match next.take() {
                Some(r) => r,
                None => build(&req, &exchange, None)?,
            };
            let sent = response_head(conn.sender.try_send_request(request), req.read_timeout, watch.as_mut()).await;
            match sent {
                Ok(Ok(resp)) => break Ok(resp),
                Ok(Err(mut e)) => {
                    // A request hyper did not send comes back whole, its
                    // body (streamed or not) untouched: it is sent again as is.
                    next = e.take_message();
                    let unsent = next.is_some();
                    let error = e.into_error();
                    let replayable =
                        unsent || (idempotent(&exchange.method) && !streamed && !error.is_parse() && !error.is_user());
                    if conn.reused && !retried && replayable {
                        tracing::debug!(origin = %req.origin.name, node = %conn.node, error = %error, "reused origin connection failed before a response; retrying on a new connection");
                        retried = true;
                        conn = self.connect(&req, &transport, false).await?;
                        continue;
                    }
                    if let Some(failed) = watch.as_ref().and_then(|w| viewer_failure(*w.borrow(), &error)) {
                        break Err(failed);
                    }
                    break Err(OriginError::Http { node: conn.node.clone(), error });
                }
                Err(timeout) => break Err(OriginError::Timeout { node: conn.node.clone(), timeout }),
            }
        };
        let mut resp = result?;
        // Which node answered, for the fetch's span; which connection, for tests and logs.
        resp.extensions_mut().insert(crate::trace::OriginNode(conn.node.clone()));
        resp.extensions_mut().insert(OriginConnection { reused: conn.reused, retried });
        let config = &req.origin.config;
        let max_idle = config.max_idle_connections.map_or(DEFAULT_MAX_IDLE_PER_NODE, |n| n as usize);
        let idle_timeout = config.keepalive_timeout.unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT);
        if max_idle > 0 && self.pool.max_idle_total() > 0 {
            let pool = Arc::clone(&self.pool);
            let Ready { mut sender, key, node, .. } = conn;
            // Ready again once the body was read to its end and the origin
            // kept the connection open; an error (body dropped early,
            // `Connection: close`, a reset) closes it instead.
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.checkin(key, Reusable { sender, node }, max_idle, idle_timeout);
                }
            });
        }
        Ok(resp)
    }

    /// A connection for `req`: the balancer picks the node, then an idle
    /// one to it is taken from the pool (when `reuse`), else one is opened.
    async fn connect(&self, req: &OriginRequest<'_>, transport: &Transport, reuse: bool) -> Result<Ready, OriginError> {
        let ctx = ConnectCtx { client: req.client, local: req.local, sni: None };
        let upstream = &req.origin.upstream;
        let port = match transport {
            Transport::Plain => req.origin.config.http_port,
            Transport::Tls { .. } => req.origin.config.https_port,
        };
        let key_for = |mut addr: SocketAddr| {
            if let Some(p) = port {
                addr.set_port(p);
            }
            PoolKey { upstream: upstream.key().clone(), addr, transport: transport.clone() }
        };
        let pool = &self.pool;
        let pooled = upstream
            .connect_pooled(&ctx, port, |addr| {
                if !reuse {
                    return None;
                }
                let key = key_for(addr);
                pool.checkout(&key).map(|conn| (conn, key))
            })
            .await?;
        let ready = match pooled {
            Pooled::Reused((Reusable { sender, node }, key)) => Ready { sender, key, node, reused: true },
            Pooled::New(connected) => {
                let key = key_for(connected.peer.addr());
                let node = connected.peer.node().to_owned();
                let sender = match transport {
                    Transport::Plain => handshake(connected.stream, connected.peer, &node).await?,
                    Transport::Tls { server_name, config } => {
                        let stream = tls_handshake(req, connected.stream, server_name, config, &node).await?;
                        handshake(stream, connected.peer, &node).await?
                    }
                };
                Ready { sender, key, node, reused: false }
            }
        };
        if let Some(family) = &self.connections {
            let labels = OriginConnectionLabels {
                distribution: Label(Arc::clone(&req.origin.distribution)),
                origin: req.origin.name.clone(),
                reused: if ready.reused { "true" } else { "false" },
            };
            family.get_or_create(&labels).inc();
        }
        Ok(ready)
    }
}

/// Awaits the response head of `send`. Without a streamed body, within
/// `read_timeout`. With one (`upload`), the origin's response timeout
/// starts once the whole body was handed to the connection, as
/// CloudFront's starts once the request was forwarded; while the body
/// streams, the upload bounds the viewer's pauses
/// ([`upload::REQUEST_BODY_IDLE_TIMEOUT`]), and an origin that takes no
/// part of it for as long (or `read_timeout`, if longer) times out. The
/// error is the timeout that ran out.
async fn response_head<F: std::future::Future>(
    send: F,
    read_timeout: Duration,
    upload: Option<&mut tokio::sync::watch::Receiver<upload::UploadState>>,
) -> Result<F::Output, Duration> {
    let mut send = std::pin::pin!(send);
    if let Some(state) = upload {
        let idle = read_timeout.max(upload::REQUEST_BODY_IDLE_TIMEOUT);
        while *state.borrow_and_update() == upload::UploadState::Streaming {
            tokio::select! {
                out = &mut send => return Ok(out),
                changed = tokio::time::timeout(idle, state.changed()) => match changed {
                    Err(_) => return Err(idle),
                    // The upload was dropped: the exchange ends at once.
                    Ok(Err(_)) => break,
                    Ok(Ok(())) => {}
                },
            }
        }
    }
    tokio::time::timeout(read_timeout, send).await.map_err(|_| read_timeout)
}

/// The viewer's fault behind `error`, when its upload failed.
fn viewer_failure(state: upload::UploadState, error: &hyper::Error) -> Option<OriginError> {
    use http::StatusCode;
    let status = match state {
        upload::UploadState::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        upload::UploadState::Stalled => StatusCode::REQUEST_TIMEOUT,
        upload::UploadState::Failed => StatusCode::BAD_REQUEST,
        upload::UploadState::Streaming | upload::UploadState::Ended => return None,
    };
    let reason = std::error::Error::source(error).map_or_else(|| error.to_string(), ToString::to_string);
    Some(OriginError::Viewer { status, reason })
}

/// Plain or TLS, as the origin's protocol policy says for this viewer. The
/// TLS server name is the origin's `sni`, else the Host header sent (as
/// CloudFront's, which validates the origin's certificate against the
/// origin domain name or the forwarded Host).
fn transport(req: &OriginRequest<'_>, exchange: &Exchange) -> Result<Transport, OriginError> {
    let origin = req.origin;
    if !origin.config.protocol_policy.https(exchange.viewer_https) {
        return Ok(Transport::Plain);
    }
    let Some(config) = &origin.tls else {
        // Compiled origins that may use HTTPS always have one.
        return Err(OriginError::Request(format!("origin {} has no TLS configuration", origin.name)));
    };
    let name = match &origin.config.sni {
        Some(n) => n.as_str(),
        None => host_name(req.host.to_str().unwrap_or_default()),
    };
    Ok(Transport::Tls { server_name: Arc::from(name), config: Arc::clone(config) })
}

/// The host of a Host header value: without its port, an IPv6 literal
/// without brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
}

/// The TLS handshake on a new connection to an HTTPS origin, within the
/// upstream's connect timeout. A failure (certificate not trusted, name
/// mismatch, no common protocol) is the origin's: the fetch fails with the
/// reason, and the node is not marked down (another node of the same
/// origin has the same certificate).
async fn tls_handshake(
    req: &OriginRequest<'_>,
    stream: tokio::net::TcpStream,
    server_name: &Arc<str>,
    config: &Arc<rustls::ClientConfig>,
    node: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, OriginError> {
    let upstream = &req.origin.upstream;
    let failed =
        |reason: String| OriginError::Tls { node: node.to_owned(), server_name: server_name.to_string(), reason };
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| failed(format!("not a valid server name: {e}")))?;
    let timeout = upstream.config().connect_timeout.unwrap_or(TLS_HANDSHAKE_TIMEOUT);
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => {
            tracing::warn!(origin = %req.origin.name, node = %node, server_name = %server_name, error = %e, "TLS handshake with the origin failed");
            Err(failed(e.to_string()))
        }
        Err(_) => Err(failed(format!("timed out after {timeout:?}"))),
    }
}

/// Methods whose request may be sent twice (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

fn build(
    req: &OriginRequest<'_>,
    exchange: &Exchange,
    upload: Option<upload::Upload>,
) -> Result<Request<EdgeBody>, OriginError> {
    let mut builder = Request::builder().method(exchange.method.clone()).uri(req.target.as_str());
    if let Some(h) = builder.headers_mut() {
        *h = req.headers.clone();
        h.insert(http::header::HOST, req.host.clone());
        if req.origin.config.max_idle_connections == Some(0) {
            // Not kept for reuse: the origin closes first, as it does
            // behind nginx without `keepalive`, so TIME_WAIT stays on its
            // side instead of taking this host's ports to the origin.
            h.insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        }
    }
    let body = match (upload, &exchange.body) {
        (Some(u), _) => EdgeBody::Upload(Box::new(u)),
        (None, Some(b)) => EdgeBody::full(b.clone()),
        (None, None) => EdgeBody::Empty,
    };
    builder.body(body).map_err(|e| OriginError::Request(e.to_string()))
}

/// The HTTP/1.1 handshake on a new connection; the task driving it holds
/// `peer`, so the node counts the connection until it closes.
async fn handshake<T>(io: T, peer: PeerGuard, node: &str) -> Result<SendRequest<EdgeBody>, OriginError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake::<_, EdgeBody>(TokioIo::new(io))
        .await
        .map_err(|error| OriginError::Http { node: node.to_owned(), error })?;
    tokio::spawn(async move {
        let _peer = peer;
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "origin connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests;
