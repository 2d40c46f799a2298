//! Phases "viewer-request function" and "viewer-response function": where
//! CloudFront Functions run, the ones associated with the request's cache
//! behavior (at most one per event type). Neither runs any code yet: both
//! leave the request and the response as they are (issue 13 adds the
//! JavaScript runtime).
//!
//! - The viewer-request function runs after the behavior is chosen from
//!   the viewer's path and before the key phase: it may rewrite the `uri`,
//!   query string, headers and cookies in `parts` (the key, the origin
//!   request and invalidation targets then use the rewritten request, while
//!   the behavior and origin stay those of the viewer's path), or answer
//!   with a response of its own (a redirect, a generated page), which is
//!   sent as is.
//! - The viewer-response function runs on the response the respond phase
//!   built (from the cache or the origin), before it is sent: it may change
//!   its status and headers; the body is never given to it.
//!
//! Source: CloudFront Developer Guide, "CloudFront Functions event
//! structure" and "Writing function code".

use http::Response;
use http::request::Parts;
use shardgate_model::edge::Behavior;
use shardgate_snapshot::{EdgeDistribution, Snapshot};

use super::Ctx;
use crate::body::EdgeBody;
use crate::service::ConnInfo;

/// Runs the viewer-request function of `behavior` (the one at
/// `behavior_index` of `dist`) on the request: `None` to go on with
/// `parts` as the function left them, or the response the function
/// generated. Does nothing yet.
pub(crate) fn viewer_request_function(
    _snapshot: &Snapshot,
    _dist: &EdgeDistribution,
    _behavior: &Behavior,
    _behavior_index: usize,
    _parts: &mut Parts,
    _conn: ConnInfo,
) -> Option<Response<EdgeBody>> {
    None
}

/// Runs the viewer-response function of the request's behavior
/// (`ctx.behavior_index` of `ctx.dist`) on `resp` before it is sent. Does
/// nothing yet.
pub(crate) fn viewer_response_function(_ctx: &Ctx, _resp: &mut Response<EdgeBody>) {}
