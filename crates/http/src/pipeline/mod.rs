//! The request pipeline of the edge: one named phase per step, each a small
//! function in the file named after it, run in this order by `run`:
//!
//! ```text
//! EdgeService::handle / handle_parts (service.rs): span, access log entry, responses metric
//!   run(parts, body)                                              (this file)
//!   -> viewer input: Host lines, path normalised in place        route::viewer_input
//!   -> route: host -> distribution                               route::route
//!   -> web ACL (the primary's, for both sides of a canary)       waf::web_acl
//!   -> method: GET and HEAD only                                 route::allowed_method
//!   -> variant: primary or staging (canary)                      variant::variant
//!   -> behavior + cache policy, by the viewer's path             behavior::behavior
//!   -> viewer-request function (CloudFront Functions)            function::viewer_request_function
//!   -> compress: Accept-Encoding normalised, coding chosen       compress::negotiate
//!   -> key: channel rewrite, query, cookies, cache key           behavior::key
//!   -> lookup / coalesce                                         lookup: Ctx::lookup
//!        fresh: serve | stale: serve within stale-while-revalidate, else revalidate
//!        in flight: wait for the leader | miss: fetch, store, stream to every waiter
//!   -> origin: the request to the origin, admission by the cache fetch: Ctx::fetch_origin, Ctx::admit
//!   -> respond: 304 / 206 / 416 / 200, Age, X-Cache, variant     respond: Ctx::respond, respond::answer
//!        compressed variant of a stored object, made once         compress: Ctx::serve
//!   -> viewer-response function (CloudFront Functions)           function::viewer_response_function
//! then shardgate_edge_responses_total, and the access log line once the
//! body has been sent or the viewer has gone (see access_log)
//! ```
//!
//! The behavior is chosen from the viewer's path *before* the
//! viewer-request function runs, and the function's changes apply to the
//! key and the origin request only: CloudFront runs the function associated
//! with the matched cache behavior, and a changed `uri` "does not change the
//! cache behavior or the origin" (CloudFront Developer Guide,
//! "CloudFront Functions event structure").
//!
//! The request travels as [`http::request::Parts`] plus a [`ViewerBody`]
//! that only the origin phase would read, so a request made up by the edge
//! itself (a cache warm) runs the same pipeline without a socket. The
//! snapshot is loaded once per request, so a configuration change never
//! alters a request in flight.

pub(crate) mod behavior;
pub(crate) mod compress;
pub(crate) mod fetch;
pub(crate) mod function;
pub(crate) mod lookup;
pub(crate) mod respond;
pub(crate) mod route;
pub(crate) mod variant;
pub(crate) mod waf;

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use shardgate_model::CachePolicy;
use shardgate_snapshot::{EdgeDistribution, Snapshot};

use crate::access_log::Facts;
use crate::body::EdgeBody;
use crate::canary::Variant;
use crate::metrics::Label;
use crate::service::{ConnInfo, EdgeService};

/// The viewer's request body. Only the origin phase would read it: GET and
/// HEAD, the methods served today, forward no body.
#[derive(Debug)]
pub enum ViewerBody {
    /// No body (a request the edge makes itself, e.g. to warm the cache).
    Empty,
    /// The body of a viewer's request, as the listener received it.
    Incoming(hyper::body::Incoming),
}

/// A request the pipeline refuses before any cache or origin work: the
/// status, the `reason` label of `shardgate_edge_refused_total` (and of
/// the access log's detailed result), and a message for the viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

impl Refused {
    pub(crate) fn new(status: StatusCode, reason: &'static str, message: String) -> Self {
        Refused { status, reason, message }
    }
}

/// One request's resolved context, from the key phase on: what the lookup,
/// origin and respond phases read. Cloned (cheaply: `Arc`s and short
/// strings) when a fetch moves to a task of its own.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) svc: Arc<EdgeService>,
    pub(crate) snapshot: Arc<Snapshot>,
    /// The distribution serving the request (the staging one for a staging request).
    pub(crate) dist: Arc<EdgeDistribution>,
    pub(crate) variant: Variant,
    /// The canary's sticky-session cookie to set, if any.
    pub(crate) canary_cookie: Option<String>,
    /// Index of the behavior in `dist.config.behaviors`; its length is the
    /// default behavior (see [`behavior::behavior_at`]).
    pub(crate) behavior_index: usize,
    pub(crate) behavior_label: Label,
    pub(crate) origin_name: String,
    pub(crate) policy: Arc<CachePolicy>,
    pub(crate) key: String,
    pub(crate) viewer_target: String,
    pub(crate) origin_target: String,
    /// Cookies in the key, forwarded to the origin.
    pub(crate) cookies: Vec<String>,
    /// The Host header for the origin.
    pub(crate) host: String,
    pub(crate) conn: ConnInfo,
    pub(crate) head_only: bool,
    pub(crate) req_headers: Arc<HeaderMap>,
    /// `x-amzn-waf-*` headers the web ACL inserts into the origin request
    /// (`CustomRequestHandling`); usually empty.
    pub(crate) waf_headers: Vec<(HeaderName, HeaderValue)>,
    /// Compression: whether the edge compresses, and with which coding.
    pub(crate) encoding: compress::Negotiated,
    /// The request's span (disabled unless trace export is on).
    pub(crate) span: tracing::Span,
}

/// Runs the pipeline for one request; `facts` collects what the access log
/// writes, `span` is the request's span.
pub(crate) async fn run(
    svc: Arc<EdgeService>,
    mut parts: Parts,
    body: ViewerBody,
    conn: ConnInfo,
    facts: &mut Facts,
    span: &tracing::Span,
) -> Response<EdgeBody> {
    // The body stays open until the response head is ready, as it always
    // has; no phase reads it yet.
    let _viewer_body = body;
    if let Err(refused) = route::viewer_input(&mut parts) {
        return respond::refuse(&svc, refused);
    }
    let snapshot = svc.snapshots.load();
    let (primary, host) = match route::route(&snapshot, &parts) {
        Ok(found) => found,
        Err(refused) => return respond::refuse(&svc, refused),
    };
    facts.distribution = Some(Arc::clone(&primary.id_label));
    // The primary's web ACL guards both sides of a canary: CloudFront
    // does not let a staging distribution change the WAF either.
    let waf_headers = match &primary.waf {
        Some(acl) => match waf::web_acl(&svc, acl, &parts, conn, facts) {
            Ok(inserted) => inserted,
            Err(blocked) => return *blocked,
        },
        None => Vec::new(),
    };
    let head_only = match route::allowed_method(&parts.method) {
        Ok(head_only) => head_only,
        Err(refused) => return respond::refuse(&svc, refused),
    };
    let side = variant::variant(primary, &parts.headers, variant::roll(), variant::now_unix(), facts);
    let dist = side.dist;

    let chosen = behavior::behavior(&dist, parts.uri.path());
    facts.behavior = Some(Arc::clone(&chosen.label.0));
    crate::trace::record_route(span, dist.id.as_str(), side.variant.as_str(), &chosen.label.0);
    if let Some(generated) =
        function::viewer_request_function(&snapshot, &dist, chosen.behavior, chosen.index, &mut parts, conn)
    {
        return generated;
    }
    let encoding = compress::negotiate(chosen.behavior, chosen.policy, &mut parts);
    let mut keyed = match behavior::key(dist.id.as_str(), chosen.behavior, chosen.policy, &parts) {
        Ok(k) => k,
        Err(refused) => return respond::refuse(&svc, refused),
    };
    encoding.extend_key(&mut keyed.key);
    let origin_name = chosen.behavior.origin.clone();
    let host = match dist.origins.get(&origin_name).and_then(|o| o.config.host.as_deref()) {
        Some(h) => h.to_owned(),
        None => host,
    };
    let ctx = Ctx {
        svc,
        snapshot,
        variant: side.variant,
        canary_cookie: side.set_cookie,
        behavior_index: chosen.index,
        behavior_label: chosen.label,
        origin_name,
        policy: Arc::clone(chosen.policy),
        key: keyed.key,
        viewer_target: keyed.viewer_target,
        origin_target: keyed.origin_target,
        cookies: keyed.cookies,
        host,
        conn,
        head_only,
        req_headers: Arc::new(parts.headers),
        waf_headers,
        encoding,
        span: span.clone(),
        dist,
    };
    let mut resp = ctx.lookup().await;
    function::viewer_response_function(&ctx, &mut resp);
    resp
}

impl Ctx {
    /// The behavior serving the request.
    pub(crate) fn behavior(&self) -> &shardgate_model::edge::Behavior {
        behavior::behavior_at(&self.dist, self.behavior_index)
    }
}

#[cfg(test)]
mod tests;
