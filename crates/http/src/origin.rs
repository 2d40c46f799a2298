//! Fetching from an origin: connect through the origin's upstream runtime
//! (balancer, retries on connect, passive down marks), one HTTP/1.1 request
//! per connection, a timeout for the response head.
//!
//! Connections are not pooled yet: the edge goes to the origin only on a
//! miss or a revalidation, so hits, the hot path, never pay for it.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use shardgate_snapshot::EdgeOrigin;
use shardgate_upstream::ConnectCtx;

use crate::body::EdgeBody;

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
    /// The request could not be built (a bug: targets come from validated paths).
    #[error("cannot build the origin request: {0}")]
    Request(String),
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
    /// out of descriptors or ports (the origin is not at fault), else 502 (as
    /// CloudFront).
    pub fn status(&self) -> http::StatusCode {
        match self {
            OriginError::Timeout { .. } => http::StatusCode::GATEWAY_TIMEOUT,
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

/// Sends `req` and returns the response head with its body still streaming.
pub async fn fetch(req: OriginRequest<'_>) -> Result<Response<Incoming>, OriginError> {
    let ctx = ConnectCtx { client: req.client, local: req.local, sni: None };
    let connected = req.origin.upstream.connect(&ctx).await?;
    let node = connected.peer.node().to_owned();
    let io = TokioIo::new(connected.stream);
    let peer = connected.peer;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, EdgeBody>(io)
        .await
        .map_err(|error| OriginError::Http { node: node.clone(), error })?;
    tokio::spawn(async move {
        // The peer guard counts this connection on its node until it ends.
        let _peer = peer;
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "origin connection ended with an error");
        }
    });
    let mut builder = Request::builder().method(Method::GET).uri(req.target.as_str());
    if let Some(h) = builder.headers_mut() {
        *h = req.headers;
        h.insert(http::header::HOST, req.host);
    }
    let request = match builder.body(EdgeBody::Empty) {
        Ok(r) => r,
        Err(e) => return Err(OriginError::Request(e.to_string())),
    };
    match tokio::time::timeout(req.read_timeout, sender.send_request(request)).await {
        Ok(Ok(mut resp)) => {
            // Which node answered, for the fetch's span.
            resp.extensions_mut().insert(crate::trace::OriginNode(node));
            Ok(resp)
        }
        Ok(Err(error)) => Err(OriginError::Http { node, error }),
        Err(_) => Err(OriginError::Timeout { node, timeout: req.read_timeout }),
    }
}
