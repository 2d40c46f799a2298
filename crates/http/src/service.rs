//! The edge service: what the edge shares across requests
//! ([`EdgeService`]), the viewer's connection ([`ConnInfo`]), and the entry
//! of every request ([`EdgeService::handle`]): its span, access log entry
//! and `shardgate_edge_responses_total` around the phase pipeline
//! ([`crate::pipeline`]), and the purge of invalidated objects.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::HeaderName;
use http::request::Parts;
use http::{Request, Response};
use hyper::body::Incoming;
use shardgate_cache::Cache;
use shardgate_snapshot::SnapshotHandle;
use shardgate_waf::{Samples, TlsFingerprint};

use crate::access_log::{AccessLog, Facts, TlsSession};
use crate::body::EdgeBody;
use crate::metrics::{EdgeMetrics, Label, ResponseLabels};
pub(crate) use crate::pipeline::route::{request_host, without_userinfo};
pub(crate) use crate::pipeline::variant::splitmix64;
use crate::pipeline::{self, ViewerBody};

/// The response header naming the side that served a canary distribution.
pub const VARIANT_HEADER: &str = "x-shardgate-variant";

/// What the edge shares across requests.
#[derive(Debug)]
pub struct EdgeService {
    /// The published configuration.
    pub snapshots: Arc<SnapshotHandle>,
    /// The memory tier.
    pub cache: Arc<Cache>,
    /// Metrics.
    pub metrics: EdgeMetrics,
    /// Recent requests each web ACL matched, for the Admin API.
    pub samples: Arc<Samples>,
    /// The country database, to put a country on samples.
    pub geo: Option<Arc<shardgate_waf::GeoDb>>,
    /// The targeted cache-control fields this cache obeys, in priority order
    /// (RFC 9213 §2.1; `edge.cache.targeted_cache_control`); empty: none.
    pub targeted_cache_control: Vec<HeaderName>,
    /// One line per request (`edge.access_log`).
    pub access_log: AccessLog,
    /// Origin connections, kept alive and reused across requests.
    pub origins: crate::origin::OriginClient,
}

/// Facts about the viewer's connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The viewer.
    pub client: SocketAddr,
    /// The edge's address.
    pub local: SocketAddr,
    /// JA3 and JA4 of the connection's ClientHello (TLS listeners), computed
    /// once per connection; `Copy`, so every request carries it without an
    /// allocation.
    pub tls: Option<TlsFingerprint>,
    /// The negotiated TLS version and cipher suite (TLS listeners), for
    /// the access log.
    pub tls_session: Option<TlsSession>,
}

impl EdgeService {
    /// Serves one viewer request, and writes its access log line once the
    /// response has been sent. The response carries the request's span
    /// ([`crate::trace::RequestSpan`]) for the listener to end with the body.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> Response<EdgeBody> {
        let (parts, body) = req.into_parts();
        self.handle_parts(parts, ViewerBody::Incoming(body), conn).await
    }

    /// [`EdgeService::handle`] for a request given as its head and body: a
    /// request the edge makes up itself (e.g. to warm the cache, with
    /// [`ViewerBody::Empty`] and a `conn` naming the edge) runs the same
    /// pipeline, with its span, metrics and access log line, without a
    /// socket.
    pub async fn handle_parts(self: Arc<Self>, parts: Parts, body: ViewerBody, conn: ConnInfo) -> Response<EdgeBody> {
        // The span and the log entry read the request as the viewer sent it.
        let req = Request::from_parts(parts, ());
        let span = crate::trace::edge_request(&req, &conn);
        let mut entry = self.access_log.start(&req, &conn);
        let (parts, ()) = req.into_parts();
        let mut unlogged = Facts::default();
        let facts = entry.as_mut().map_or(&mut unlogged, |e| e.facts());
        let mut resp = pipeline::run(Arc::clone(&self), parts, body, conn, facts, &span).await;
        let distribution = Label(facts.distribution.clone().unwrap_or_else(|| Arc::from("")));
        let labels = ResponseLabels { distribution, status: ResponseLabels::class(resp.status()) };
        self.metrics.responses.get_or_create(&labels).inc();
        if !span.is_disabled() {
            crate::trace::record_status(&span, resp.status());
            resp.extensions_mut().insert(crate::trace::RequestSpan(span));
        }
        match entry {
            Some(entry) => entry.respond(resp),
            None => resp,
        }
    }
}

/// Removes cached objects as soon as a snapshot brings new invalidations,
/// so memory is freed at once and deleting an invalidation later cannot
/// bring old objects back. Lookups check invalidations too (objects whose
/// fetch raced the purge), so this is about memory, not correctness.
pub async fn purge_invalidated(snapshots: Arc<SnapshotHandle>, cache: Arc<Cache>, metrics: EdgeMetrics) {
    let mut rx = snapshots.subscribe();
    let mut seen = snapshots.load().generation;
    while rx.changed().await.is_ok() {
        let snapshot = snapshots.load();
        let mut purged = 0;
        // One sweep per distribution with new invalidations; which objects
        // they cover is the same rule lookups apply (`still_valid`).
        for dist in snapshot.edge.distributions() {
            if dist.invalidations.last().is_none_or(|(revision, _)| *revision <= seen) {
                continue;
            }
            purged += cache.purge(|_, o| {
                *o.namespace == *dist.id.as_str() && !dist.still_valid(o.generation, &o.viewer_target, &o.origin_target)
            });
        }
        if purged > 0 {
            tracing::info!(purged, generation = snapshot.generation, "invalidated objects removed from the cache");
            let (bytes, objects) = cache.usage();
            metrics.cache_bytes.set(bytes as i64);
            metrics.cache_objects.set(objects as i64);
        }
        seen = snapshot.generation;
    }
}
