//! The request pipeline of the edge: one named phase per step, each a small
//! function in the file named after it, run in this order by `run`:
//!
//! ```text
//! EdgeService::handle / handle_parts (service.rs): span, access log entry, responses metric
//!   run(parts, body)                                              (this file)
//!   -> viewer input: Host lines, path normalised in place        route::viewer_input
//!   -> route: host -> distribution                               route::route
//!   -> body: its first bytes, when the web ACL inspects them     request_body::ViewerUpload
//!   -> web ACL (the primary's, for both sides of a canary)       waf::web_acl
//!   -> variant: primary or staging (canary)                      variant::variant
//!   -> behavior + cache policy, by the viewer's path             behavior::behavior
//!   -> method: the behavior's allowed_methods                    route::allowed_method
//!   -> viewer-request function (CloudFront Functions)            function::viewer_request_function
//!   -> compress: Accept-Encoding normalised, coding chosen       compress::negotiate
//!   -> key: channel rewrite, query, cookies, cache key           behavior::key
//!   -> a method the behavior does not cache (POST, PUT, ...): the body
//!      streams to the origin, the answer is passed, never stored fetch: Ctx::forward_uncached
//!   -> lookup / coalesce                                         lookup: Ctx::lookup
//!        fresh: serve | stale: serve within stale-while-revalidate, else revalidate
//!        in flight: wait for the leader | miss: fetch, store, stream to every waiter
//!   -> origin: the request to the origin, admission by the cache fetch: Ctx::fetch_origin, Ctx::admit
//!   -> respond: 304 / 206 / 416 / 200, Age, X-Cache, variant     respond: Ctx::respond, respond::answer
//!        compressed variant of a stored object, made once         compress: Ctx::serve
//!   -> error response: a custom error page for an error          errors: Ctx::error_page
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
pub(crate) mod errors;
pub(crate) mod fetch;
pub(crate) mod function;
pub(crate) mod lookup;
pub(crate) mod request_body;
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

/// The viewer's request body. GET and HEAD forward none; other methods
/// stream it to the origin (its first bytes read earlier when the web ACL
/// inspects them, see the pipeline's `request_body` phase).
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
    /// The viewer's host (the origin's Host when the origin sets none).
    pub(crate) viewer_host: String,
    pub(crate) conn: ConnInfo,
    pub(crate) head_only: bool,
    /// The viewer's method.
    pub(crate) method: http::Method,
    pub(crate) req_headers: Arc<HeaderMap>,
    /// The viewer's HTTP version (`CloudFront-Viewer-Http-Version`).
    pub(crate) version: http::Version,
    /// `x-amzn-waf-*` headers the web ACL inserts into the origin request
    /// (`CustomRequestHandling`); usually empty.
    pub(crate) waf_headers: Vec<(HeaderName, HeaderValue)>,
    /// Compression: whether the edge compresses, and with which coding.
    pub(crate) encoding: compress::Negotiated,
    /// The request's span (disabled unless trace export is on).
    pub(crate) span: tracing::Span,
    /// This is the request for a custom error page (whose own error is
    /// not replaced again).
    pub(crate) for_error_page: bool,
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
    // does not let a staging distribution change the WAF either. A cache
    // warm (an operator's, through the Admin API) skips it: see crate::warm.
    // GET and HEAD forward no body; for other methods, the first bytes are
    // read now when the web ACL inspects them, and the rest streams later.
    let mut body = match request_body::ViewerUpload::start(body, &parts) {
        Ok(b) => b,
        Err(refused) => return respond::refuse(&svc, refused),
    };
    let waf_headers = match primary.waf.as_ref().filter(|_| !crate::warm::WarmRequest::is(&parts)) {
        Some(acl) => {
            let inspected = match body.inspect(shardgate_waf::acl::BODY_MAX_BYTES).await {
                Ok(inspected) => inspected,
                Err(refused) => return respond::refuse(&svc, refused),
            };
            match waf::web_acl(&svc, acl, &parts, inspected, conn, facts) {
                Ok(inserted) => inserted,
                Err(blocked) => return *blocked,
            }
        }
        None => Vec::new(),
    };
    let side = variant::variant(primary, &parts, variant::roll(), variant::now_unix(), facts);
    let dist = side.dist;

    let chosen = behavior::behavior(&dist, parts.uri.path());
    facts.behavior = Some(Arc::clone(&chosen.label.0));
    crate::trace::record_route(span, dist.id.as_str(), side.variant.as_str(), &chosen.label.0);
    let head_only = match route::allowed_method(&parts.method, chosen.behavior.allowed_methods) {
        Ok(head_only) => head_only,
        Err(refused) => return respond::refuse(&svc, refused),
    };
    if let Some(generated) =
        function::viewer_request_function(&svc, &dist, &host, chosen.index, &mut parts, conn, facts)
    {
        return generated;
    }
    let encoding = compress::negotiate(chosen.behavior, chosen.policy, &mut parts);
    behavior::edge_made(&mut parts, chosen.policy, &conn);
    let mut keyed = match behavior::key(dist.id.as_str(), chosen.behavior, chosen.policy, &parts) {
        Ok(k) => k,
        Err(refused) => return respond::refuse(&svc, refused),
    };
    encoding.extend_key(&mut keyed.key);
    let cached = chosen.behavior.cached_methods.caches(parts.method.as_str());
    if cached && parts.method == http::Method::OPTIONS {
        // An OPTIONS answer is another object than the GET one of the same URL.
        keyed.key.push_str("\u{0}OPTIONS");
    }
    let origin_name = chosen.behavior.origin.clone();
    let origin_host = match dist.origins.get(&origin_name).and_then(|o| o.config.host.as_deref()) {
        Some(h) => h.to_owned(),
        None => host.clone(),
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
        host: origin_host,
        viewer_host: host,
        conn,
        head_only,
        method: parts.method.clone(),
        version: parts.version,
        req_headers: Arc::new(parts.headers),
        waf_headers,
        encoding,
        span: span.clone(),
        for_error_page: false,
        dist,
    };
    // The paths that are not a cache hit are boxed: see `Ctx::lookup`.
    let mut resp = if cached { ctx.lookup().await } else { Box::pin(ctx.forward_uncached(body.into_upload())).await };
    if ctx.has_error_page(resp.status()) {
        resp = Box::pin(ctx.error_page(resp)).await;
    }
    function::viewer_response_function(&ctx, facts, &mut resp);
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
