//! Phase "error response": the distribution's custom error responses
//! (CloudFront's `CustomErrorResponses`, Amazon CloudFront Developer Guide,
//! "Generate custom error responses" and "How CloudFront processes HTTP
//! 4xx and 5xx status codes from your origin").
//!
//! - Each entry names an `error_code`; its `error_caching_min_ttl` is how
//!   long the cache keeps that error (the cache decides with it, see
//!   `shardgate_cache::errors`); without one (or for a status without an
//!   entry), CloudFront's 10 seconds.
//! - With a `response_page_path`, a viewer who would get that error gets
//!   the page instead, with `response_code` as its status (the origin's
//!   status when none is set). The page is requested like any viewer
//!   request for that path: through the cache behavior its path matches,
//!   from the cache when stored there, so it costs the origin one fetch per
//!   its own lifetime. The error itself stays cached under the requested
//!   object's key for its error caching TTL, so the origin is not asked
//!   for the failing object again until that elapses.
//! - A page that cannot be had (its own fetch fails or answers anything
//!   but 2xx) leaves the original error in place; a page's own error is
//!   never replaced again.
//!
//! Costs nothing for a distribution without custom error responses: the
//! check in `run` is one length test and one status comparison.

use std::time::Duration;

use http::header;
use http::{HeaderMap, Request, Response, StatusCode};

use shardgate_model::edge::CustomErrorResponse;

use super::Ctx;
use super::behavior;
use super::compress;
use crate::body::EdgeBody;

/// The custom error responses of the distribution serving `ctx`.
pub(crate) fn custom_error_responses(ctx: &Ctx) -> &[CustomErrorResponse] {
    &ctx.dist.config.custom_error_responses
}

/// Request fields that do not go with the request for an error page: it
/// is fetched whole, whatever the viewer's validators or range said about
/// the object that failed.
const NOT_FOR_THE_PAGE: [header::HeaderName; 5] =
    [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE, header::IF_RANGE, header::RANGE, header::IF_MATCH];

impl Ctx {
    /// The error caching minimum TTLs configured for this distribution, by
    /// status, for admission (`shardgate_cache::Exchange::error_caching`).
    /// No allocation without custom error responses.
    pub(crate) fn error_caching(&self) -> Vec<(u16, Duration)> {
        custom_error_responses(self).iter().map(|r| (r.error_code, r.error_caching_min_ttl)).collect()
    }

    /// Whether `status` has a custom error page here (the fast check `run`
    /// makes). A cache warm gets the error itself: it reports what the
    /// cache holds for the path, and the page would count a failed path
    /// as fetched (or hide its status).
    pub(crate) fn has_error_page(&self, status: StatusCode) -> bool {
        !self.for_error_page
            && status.as_u16() >= 400
            && !crate::warm::is_warm(&self.conn)
            && custom_error_responses(self)
                .iter()
                .any(|r| r.error_code == status.as_u16() && r.response_page_path.is_some())
    }

    /// Phase "error response": `resp` (an error with a custom error page,
    /// see [`Ctx::has_error_page`]) replaced by its page.
    pub(crate) async fn error_page(&self, resp: Response<EdgeBody>) -> Response<EdgeBody> {
        let status = resp.status().as_u16();
        let Some(rule) = custom_error_responses(self).iter().find(|r| r.error_code == status) else { return resp };
        let Some(path) = rule.response_page_path.as_deref() else { return resp };
        let Some(page_ctx) = self.for_page(path) else {
            tracing::warn!(distribution = %self.dist.id, page = %path, "custom error page path cannot be requested");
            return resp;
        };
        let mut page = page_ctx.lookup().await;
        if !page.status().is_success() {
            tracing::warn!(distribution = %self.dist.id, page = %path, status = %page.status(), "custom error page unavailable; the original error is served");
            return resp;
        }
        let code = rule.response_code.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(resp.status());
        *page.status_mut() = code;
        page
    }

    /// The context of the request for the error page `path`: the behavior,
    /// key and origin its path gives, the viewer's other request fields.
    fn for_page(&self, path: &str) -> Option<Ctx> {
        let mut headers: HeaderMap = (*self.req_headers).clone();
        for name in &NOT_FOR_THE_PAGE {
            headers.remove(name);
        }
        // The page is fetched with GET whatever the viewer's method (a HEAD
        // stays a HEAD, answered without a body): a POST that failed must
        // not be sent again, nor its method given to the page's origin.
        let method = if self.head_only { http::Method::HEAD } else { http::Method::GET };
        let (mut parts, ()) = Request::builder().method(method).uri(path).body(()).ok()?.into_parts();
        parts.headers = headers;
        parts.version = self.version;
        let chosen = behavior::behavior(&self.dist, parts.uri.path());
        // The page's own behavior and cache policy decide its compression
        // and the Accept-Encoding in its key, as for a viewer's request.
        let encoding = compress::renegotiate(chosen.behavior, chosen.policy, &mut parts, &self.encoding);
        let mut keyed = behavior::key(self.dist.id.as_str(), chosen.behavior, chosen.policy, &parts).ok()?;
        encoding.extend_key(&mut keyed.key);
        let origin_name = chosen.behavior.origin.clone();
        let host = match self.dist.origins.get(&origin_name).and_then(|o| o.config.host.as_deref()) {
            Some(h) => h.to_owned(),
            None => self.viewer_host.clone(),
        };
        Some(Ctx {
            behavior_index: chosen.index,
            behavior_label: chosen.label,
            origin_name,
            policy: std::sync::Arc::clone(chosen.policy),
            key: keyed.key,
            viewer_target: keyed.viewer_target,
            origin_target: keyed.origin_target,
            cookies: keyed.cookies,
            host,
            method: parts.method,
            req_headers: std::sync::Arc::new(parts.headers),
            encoding,
            for_error_page: true,
            ..self.clone()
        })
    }
}
