//! Phase "respond": the response the viewer gets. From a stored object:
//! 304, 206, 416 or the whole body ([`answer`] chooses, without I/O), with
//! `Age`, `X-Cache` ([`CachePhase::x_cache`]), `Via` and the canary's
//! variant header and cookie; an origin response passed through; or an
//! error the edge generates. Every answer is counted here in
//! `shardgate_edge_requests_total` under its [`CachePhase::label`], and
//! carries its [`CachePhase`] as a response extension (a cache warm reads it).

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use shardgate_cache::conditional::{RangeAnswer, if_range_holds, not_modified, range};
use shardgate_cache::{CachePhase, FillEnd, Object};

use super::fetch::FetchError;
use super::{Ctx, Refused};
use crate::access_log::ErrorDetail;
use crate::body::{EdgeBody, FillBody, OriginBody};
use crate::canary::Variant;
use crate::metrics::{DistributionLabels, Label, RefusedLabels, RequestLabels};
use crate::service::{EdgeService, VARIANT_HEADER};

/// How a stored object answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 304: the viewer's validators match (RFC 9110 §13.1).
    NotModified,
    /// The whole body; `len` when known. `ranges`: the object is a 200 of
    /// known length, so `Accept-Ranges: bytes` is sent.
    Whole { len: Option<u64>, ranges: bool },
    /// 206: bytes `start..=end` of `len` (RFC 9110 §14.2).
    Partial { start: u64, end: u64, len: u64 },
    /// 416: the range lies outside the `len` bytes (RFC 9110 §15.5.17).
    Unsatisfiable { len: u64 },
}

/// How `object` answers a request with headers `req`: a 200 object answers
/// conditionals and ranges once its length is known (from its
/// `Content-Length`, or once its fill is complete); an `If-Range` that does
/// not hold gets the whole body.
pub(crate) fn answer(req: &HeaderMap, object: &Object) -> Answer {
    if object.status == StatusCode::OK && not_modified(req, &object.headers, &object.dates) {
        return Answer::NotModified;
    }
    let known_len =
        object.content_length.or_else(|| (object.body.end() == Some(FillEnd::Complete)).then(|| object.body.len()));
    match known_len {
        Some(len) if object.status == StatusCode::OK => {
            let answer =
                if if_range_holds(req, &object.headers, &object.dates) { range(req, len) } else { RangeAnswer::Full };
            match answer {
                RangeAnswer::Full => Answer::Whole { len: Some(len), ranges: true },
                RangeAnswer::Partial { start, end } => Answer::Partial { start, end, len },
                RangeAnswer::Unsatisfiable => Answer::Unsatisfiable { len },
            }
        }
        len => Answer::Whole { len, ranges: false },
    }
}

/// A refusal (before any cache or origin work), counted in
/// `shardgate_edge_refused_total` by its reason.
pub(crate) fn refuse(svc: &EdgeService, refused: Refused) -> Response<EdgeBody> {
    svc.metrics.refused.get_or_create(&RefusedLabels { reason: refused.reason }).inc();
    let mut resp = plain(refused.status, refused.message);
    resp.extensions_mut().insert(ErrorDetail::refused(refused.reason));
    resp
}

fn plain(status: StatusCode, message: String) -> Response<EdgeBody> {
    let mut resp = Response::new(EdgeBody::full(message + "\n"));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

impl Ctx {
    /// Counts the answer in `shardgate_edge_requests_total` (and the bytes
    /// of its body, when known), and records it on the request's span.
    fn count(&self, phase: CachePhase, bytes: Option<u64>) {
        let labels = RequestLabels {
            distribution: Label(Arc::clone(&self.dist.id_label)),
            behavior: self.behavior_label.clone(),
            variant: self.variant.as_str(),
            cache: phase.label(),
        };
        self.svc.metrics.requests.get_or_create(&labels).inc();
        crate::trace::record_cache(&self.span, phase.label());
        if let Some(b) = bytes {
            let labels = DistributionLabels { distribution: Label(Arc::clone(&self.dist.id_label)) };
            self.svc.metrics.response_bytes.get_or_create(&labels).inc_by(b);
        }
    }

    fn decorate(&self, headers: &mut HeaderMap, phase: CachePhase) {
        headers.insert(HeaderName::from_static("x-cache"), HeaderValue::from_static(phase.x_cache()));
        headers.insert(header::VIA, HeaderValue::from_static("1.1 shardgate"));
        if self.dist.canary.is_some() || self.variant == Variant::Staging {
            headers.insert(HeaderName::from_static(VARIANT_HEADER), HeaderValue::from_static(self.variant.as_str()));
        }
        if let Some(c) = &self.canary_cookie
            && let Ok(v) = HeaderValue::from_str(c)
        {
            headers.append(header::SET_COOKIE, v);
        }
    }

    /// An origin response passed through, not stored; its body ends with an
    /// error when the origin stalls for longer than its read timeout.
    pub(crate) fn pass(&self, resp: Response<Incoming>) -> Response<EdgeBody> {
        let (mut parts, body) = resp.into_parts();
        shardgate_cache::admit::strip_hop_by_hop(&mut parts.headers);
        // An `Age` passed on is sent as one valid delta-seconds: the first
        // member of a list, or nothing when it is invalid (RFC 9111 §5.1).
        if parts.headers.contains_key(header::AGE) {
            match shardgate_cache::age_of(&parts.headers) {
                Some(age) => {
                    parts.headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
                }
                None => {
                    parts.headers.remove(header::AGE);
                }
            }
        }
        self.decorate(&mut parts.headers, CachePhase::Pass);
        parts.extensions.insert(CachePhase::Pass);
        let len = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        self.count(CachePhase::Pass, len);
        let body = if self.head_only {
            EdgeBody::Empty
        } else {
            let origin: Arc<str> = Arc::from(self.origin_name.as_str());
            EdgeBody::Origin(OriginBody::new(body, self.read_timeout(), Arc::clone(&self.dist.id_label), origin))
        };
        Response::from_parts(parts, body)
    }

    /// Phase "respond": answers from a stored object: 304, 206, 416 or the whole body.
    pub(crate) fn respond(&self, object: &Arc<Object>, phase: CachePhase) -> Response<EdgeBody> {
        self.respond_with(object, phase, &HeaderMap::new())
    }

    /// [`Ctx::respond`], adding `own`: fields of the origin's response that
    /// were not stored (`no-cache="f"`, `private="f"`) but belong to the
    /// request that fetched it.
    pub(crate) fn respond_with(&self, object: &Arc<Object>, phase: CachePhase, own: &HeaderMap) -> Response<EdgeBody> {
        let mut headers = object.headers.clone();
        for (name, value) in own {
            headers.append(name.clone(), value.clone());
        }
        headers.insert(header::AGE, HeaderValue::from(object.age(SystemTime::now())));
        self.decorate(&mut headers, phase);

        let mut status = object.status;
        let (start, end) = match answer(&self.req_headers, object) {
            Answer::NotModified => {
                // RFC 9110 §15.4.5: a 304 carries the validators and caching headers, no body.
                headers.remove(header::CONTENT_LENGTH);
                headers.remove(header::CONTENT_TYPE);
                headers.remove(header::CONTENT_ENCODING);
                self.count(phase, Some(0));
                return empty(StatusCode::NOT_MODIFIED, headers, phase);
            }
            Answer::Unsatisfiable { len } => {
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                self.count(phase, Some(0));
                return empty(StatusCode::RANGE_NOT_SATISFIABLE, headers, phase);
            }
            Answer::Partial { start, end, len } => {
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                status = StatusCode::PARTIAL_CONTENT;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
                (start, end + 1)
            }
            Answer::Whole { len, ranges } => {
                if ranges {
                    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                }
                (0, len.unwrap_or(u64::MAX))
            }
        };
        let body_len = if end == u64::MAX { None } else { Some(end - start) };
        match body_len {
            Some(n) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            None => {
                headers.remove(header::CONTENT_LENGTH);
            }
        }
        self.count(phase, body_len);
        let body = if self.head_only || status == StatusCode::NO_CONTENT {
            EdgeBody::Empty
        } else {
            EdgeBody::Fill(FillBody::new(Arc::clone(&object.body), start, body_len.map(|n| start + n)))
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp.extensions_mut().insert(phase);
        resp
    }

    /// The viewer's answer when the origin fetch failed.
    pub(crate) fn origin_error(&self, e: &FetchError) -> Response<EdgeBody> {
        tracing::warn!(distribution = %self.dist.id, origin = %self.origin_name, target = %self.origin_target, error = %e, "origin fetch failed");
        let status = match e {
            FetchError::Origin(o) => o.status(),
            FetchError::Status(_) => StatusCode::BAD_GATEWAY,
        };
        self.error_response(status, &e.to_string(), e.detail())
    }

    /// An error the edge generates (`X-Cache: Error from shardgate`).
    pub(crate) fn error_response(&self, status: StatusCode, message: &str, detail: ErrorDetail) -> Response<EdgeBody> {
        self.count(CachePhase::Error, None);
        let mut resp = plain(status, message.to_owned());
        self.decorate(resp.headers_mut(), CachePhase::Error);
        resp.extensions_mut().insert(detail);
        resp.extensions_mut().insert(CachePhase::Error);
        resp
    }
}

fn empty(status: StatusCode, headers: HeaderMap, phase: CachePhase) -> Response<EdgeBody> {
    let mut resp = Response::new(EdgeBody::Empty);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp.extensions_mut().insert(phase);
    resp
}
