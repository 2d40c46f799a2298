//! The edge's spans: one per viewer request (`edge.request`, from the
//! request head until the response body has been sent or dropped) and, for
//! a miss or a revalidation, one per origin fetch (`edge.origin`, its
//! child, from the connect to the origin's response head). A viewer's W3C
//! `traceparent` (and `tracestate`) continues its trace, and the origin
//! request carries the fetch span's `traceparent`, so the origin's own
//! spans join the same trace.
//!
//! Opened only when trace export is on and the request is sampled (see
//! `shardgate_core::trace`); otherwise every span here is `Span::none()`
//! and nothing is formatted.
//! The path is recorded without its query: query values can hold tokens.
//! Attribute names follow OpenTelemetry's HTTP semantic conventions, with
//! `shardgate.*` for the edge's own facts.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use shardgate_core::trace::{TARGET, TraceParent};
use tracing::Span;
use tracing::field::Empty;

use crate::origin::OriginError;
use crate::service::ConnInfo;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The request's span, carried by the response to the end of its body
/// (the listener drops it with the body).
#[derive(Debug, Clone)]
pub struct RequestSpan(pub Span);

/// The node that answered an origin request (a response extension).
#[derive(Debug, Clone)]
pub(crate) struct OriginNode(pub(crate) String);

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The span of one viewer request: opened when export is on and either
/// the viewer continues a trace (a valid `traceparent`: its sampled flag
/// decides) or the sampling ratio picks this new one; else `Span::none()`.
pub(crate) fn edge_request<B>(req: &Request<B>, conn: &ConnInfo) -> Span {
    if !shardgate_core::trace::recording() {
        return Span::none();
    }
    let header = |name: &HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    let continued = header(&TRACEPARENT).and_then(|v| TraceParent::parse(v.trim())).is_some();
    if !continued && !shardgate_core::trace::sample_new_trace() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "edge.request",
        otel.kind = "server",
        otel.status_code = Empty,
        traceparent = header(&TRACEPARENT),
        tracestate = header(&TRACESTATE),
        http.request.method = req.method().as_str(),
        url.path = req.uri().path(),
        server.address = req.uri().host().or_else(|| header(&header::HOST)),
        network.protocol.version = protocol(req.version()),
        client.address = %conn.client.ip(),
        client.port = conn.client.port(),
        http.response.status_code = Empty,
        shardgate.distribution = Empty,
        shardgate.variant = Empty,
        shardgate.behavior = Empty,
        shardgate.cache = Empty,
    )
}

/// Which distribution, side of a canary and behavior serve the request.
pub(crate) fn record_route(span: &Span, distribution: &str, variant: &str, behavior: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("shardgate.distribution", distribution);
    span.record("shardgate.variant", variant);
    span.record("shardgate.behavior", behavior);
}

/// The cache's answer (`hit`, `miss`, `refresh_hit`, `stale_hit`, `pass`,
/// `error`: the `cache` label of `shardgate_edge_requests_total`).
pub(crate) fn record_cache(span: &Span, phase: &'static str) {
    span.record("shardgate.cache", phase);
}

/// The status sent to the viewer; a 5xx marks the span failed.
pub(crate) fn record_status(span: &Span, status: http::StatusCode) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of one origin fetch, a child of the request's.
pub(crate) fn origin_fetch(parent: &Span, origin: &str, host: &str, target: &str, revalidation: bool) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    tracing::info_span!(
        target: TARGET,
        parent: parent,
        "edge.origin",
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_message = Empty,
        http.request.method = "GET",
        server.address = host,
        url.path = path,
        shardgate.origin = origin,
        shardgate.revalidation = revalidation,
        shardgate.upstream.node = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

/// Adds the fetch span's `traceparent` (and the trace's `tracestate`) to
/// the origin request (W3C Trace Context §3: the callee's parent is this
/// span). Nothing when tracing is off.
pub(crate) fn inject(span: &Span, headers: &mut HeaderMap) {
    let Some(ids) = shardgate_core::trace::span_ids(span) else { return };
    if let Ok(v) = HeaderValue::from_str(&ids.traceparent()) {
        headers.insert(TRACEPARENT, v);
    }
    match ids.trace_state.as_deref().map(HeaderValue::from_str) {
        Some(Ok(v)) => {
            headers.insert(TRACESTATE, v);
        }
        _ => {
            headers.remove(TRACESTATE);
        }
    }
}

/// What the origin answered; a 4xx or 5xx, or no answer, marks the fetch
/// failed (a client span's rule in OpenTelemetry's HTTP conventions).
pub(crate) fn record_origin(span: &Span, result: &Result<Response<Incoming>, OriginError>) {
    if span.is_disabled() {
        return;
    }
    match result {
        Ok(resp) => {
            if let Some(node) = resp.extensions().get::<OriginNode>() {
                span.record("shardgate.upstream.node", node.0.as_str());
            }
            span.record("http.response.status_code", resp.status().as_u16());
            if resp.status().is_client_error() || resp.status().is_server_error() {
                span.record("otel.status_code", "ERROR");
            }
        }
        Err(e) => {
            let (kind, node) = match e {
                OriginError::Connect(_) => ("connect", None),
                OriginError::Http { node, .. } => ("http", Some(node)),
                OriginError::Tls { node, .. } => ("tls", Some(node)),
                OriginError::Request(_) => ("request", None),
                OriginError::Timeout { node, .. } => ("timeout", Some(node)),
                OriginError::Viewer { .. } => ("viewer_body", None),
            };
            if let Some(node) = node {
                span.record("shardgate.upstream.node", node.as_str());
            }
            span.record("error.type", kind);
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_message", tracing::field::display(e));
        }
    }
}
