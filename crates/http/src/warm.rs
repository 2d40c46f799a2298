//! Cache warm: fetch one path of a distribution through the edge, as a
//! viewer's `GET` would, and say whether the cache went to the origin for
//! it (`Fetched`), already held a fresh copy (`Fresh`), or could not store
//! it (`Failed`, with the reason). The Admin API's warm jobs call it for
//! every path of a job (`shardgate cache warm`).
//!
//! How: the request is made up in process, as [`http::request::Parts`] with
//! a `Host` the distribution answers (a wildcard host gets a
//! `shardgate-warm` label) and `User-Agent: shardgate-cache-warm`, and run
//! through the edge's phase pipeline ([`EdgeService::handle_parts`]) without
//! a socket: canary, behavior, viewer-request function, cache key, lookup
//! with coalescing, origin, respond. So it needs no edge listener of any
//! kind among those the gateway started with (a TLS-only gateway warms as
//! well), only the edge service, which the first edge listener creates (at
//! start or by a reload). Like any edge request it writes an access log
//! line (its user agent says it was a warm) and counts in the edge metrics.
//!
//! The answer's [`CachePhase`] (a response extension the respond phase
//! sets) says what happened: `Hit` is fresh; `Miss` and `RefreshHit` are
//! fetched; `Pass` was not stored (the cache refused it: `no-store`,
//! `private`, too large, ...); `StaleHit`, an error status or an answer
//! without a phase (a refusal) are failures. The body is read to its end,
//! so the object is whole in the cache when the path counts as fetched.
//!
//! Two things differ from a viewer's request, through a request extension
//! (`WarmRequest`) that only this module sets: extensions never come from
//! the wire (hyper fills them with its own types only) and the type is
//! private to this crate, so no viewer can claim to be a warm.
//! - The side of a continuous deployment policy is named, not chosen: the
//!   variant phase serves the requested side whatever the policy's traffic
//!   settings (a header, a weight with or without session stickiness), and
//!   sets no session cookie.
//! - The web ACL is skipped. A warm is an operator's fetch, started with the
//!   Admin API's key; its client address is this gateway's loopback, which
//!   would make IP, country and rate-based rules meaningless for it (and a
//!   rate-based rule would count every path of a job as one client's
//!   requests). The ACL's counters, samples and inserted origin headers are
//!   not touched by a warm.
//!
//! **Compression.** A cache policy with the gzip or brotli flag puts the
//! viewer's normalised `Accept-Encoding` (`br,gzip`, `br`, `gzip`, or none)
//! in the cache key when the behavior does not compress at the edge: one
//! object per value, each fetched from the origin with that value. So for
//! such a behavior a path is warmed once per value the policy allows (none,
//! and `gzip`, `br`, `br,gzip` as its flags allow), in turn, and counts once:
//! failed if any fetch failed (each reason names its `Accept-Encoding`),
//! else fetched if any was fetched, else fresh. A behavior that compresses
//! at the edge keys and fetches the identity object only (the compressed
//! variants are made from it at the first viewer's request), so one fetch
//! without `Accept-Encoding` warms it, as it does a path without the flags.
//! The behavior is the one the path selects (the viewer-request function
//! runs after that choice, as for a viewer).
//!
//! Limits: each fetch is bounded by [`HEAD_TIMEOUT`] for the response head
//! and [`BODY_IDLE_TIMEOUT`] between two pieces of its body (the origin's own
//! timeouts answer first); the Admin API bounds how many run at once.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use shardgate_cache::CachePhase;
use shardgate_model::{ResourceId, SniPattern};
use shardgate_snapshot::{EdgeDistribution, Snapshot};

use crate::body::EdgeBody;
use crate::canary::Variant;
use crate::compress::Codings;
use crate::pipeline::ViewerBody;
use crate::service::{ConnInfo, EdgeService, VARIANT_HEADER};

/// Longest wait for the edge's response head (the origin's included: the
/// edge's own origin timeouts answer first, 30 s by default).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest pause between two pieces of a body being read.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The `User-Agent` of warm requests (it shows in the access log).
const USER_AGENT: &str = "shardgate-cache-warm";
/// Longest piece of an error body quoted in a failure reason.
const MAX_QUOTED: usize = 200;
/// The client and local address of a warm request (access log, spans,
/// `X-Forwarded-For` to the origin): this gateway, on loopback.
const WARM_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// What fetching one path did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warmed {
    /// The edge went to the origin for it and stored it.
    Fetched,
    /// The cache already held a fresh copy.
    Fresh,
    /// Not stored; why.
    Failed(String),
}

/// How to send a warm request so it reaches the side it should.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// A `Host` the primary distribution answers.
    pub host: String,
    /// The side the answer must come from.
    pub variant: Variant,
}

/// Marks a request the edge makes itself to warm the cache, and names the
/// side of a canary it fetches: the variant phase serves that side and the
/// web ACL is skipped (see the module's documentation). Set as a request
/// extension by this module only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WarmRequest {
    /// The side to serve.
    pub(crate) variant: Variant,
}

impl WarmRequest {
    /// Whether `req` is a cache warm's request.
    pub(crate) fn is(req: &Parts) -> bool {
        req.extensions.get::<WarmRequest>().is_some()
    }
}

/// Whether `conn` is a cache warm's (see [`WARM_ADDR`]): for phases that
/// see the request's connection but not its extensions. Port 0 is never a
/// TCP peer's port, so no viewer's connection matches.
pub(crate) fn is_warm(conn: &ConnInfo) -> bool {
    conn.client == WARM_ADDR && conn.local == WARM_ADDR && conn.tls.is_none()
}

/// Fetches paths through this gateway's edge service, in process.
#[derive(Debug)]
pub struct EdgeWarmer {
    /// Set once the first edge listener has created the edge service.
    edge: Arc<OnceLock<Arc<EdgeService>>>,
}

/// A host `dist` answers that routes to it, not to another distribution.
fn host_of(snapshot: &Snapshot, dist: &Arc<EdgeDistribution>) -> Result<String, String> {
    let candidates = dist.config.hosts.iter().map(|h| match h {
        SniPattern::Exact(h) => h.to_string(),
        SniPattern::Wildcard(suffix) => format!("shardgate-warm{suffix}"),
        SniPattern::Any => "shardgate-warm.invalid".to_owned(),
    });
    let mut tried = Vec::new();
    for host in candidates {
        if snapshot.edge.find(&host).is_some_and(|d| d.id == dist.id) {
            return Ok(host);
        }
        tried.push(host);
    }
    if tried.is_empty() {
        return Err(format!("distribution {} has no hosts", dist.id));
    }
    Err(format!("none of the hosts tried ({}) routes to distribution {}", tried.join(", "), dist.id))
}

impl EdgeWarmer {
    /// A warmer running its requests through the edge service in `edge`,
    /// once there is one (the listeners create it with the first edge
    /// listener, and share the slot).
    pub fn new(edge: Arc<OnceLock<Arc<EdgeService>>>) -> Self {
        EdgeWarmer { edge }
    }

    fn edge(&self) -> Result<&Arc<EdgeService>, String> {
        self.edge.get().ok_or_else(|| {
            "this gateway serves no edge yet: it has no edge listener (edge.http), so it has no cache to warm".into()
        })
    }

    /// How to reach `variant` of `distribution` in the running
    /// configuration; why it cannot be reached otherwise. `distribution`
    /// may also be a staging distribution's id (with `variant` staging).
    pub fn plan(&self, distribution: &str, variant: Variant) -> Result<Plan, String> {
        let snapshot = self.edge()?.snapshots.load();
        let id = ResourceId::parse(distribution).map_err(|e| format!("invalid id {distribution:?}: {e}"))?;
        let Some(dist) = snapshot.edge.get(&id) else {
            return Err(format!(
                "distribution {id} is not in the running configuration (just stored and not applied yet, or refused: see the gateway's log)"
            ));
        };
        let primary = if dist.config.staging {
            let primary = snapshot
                .edge
                .distributions()
                .find(|d| d.canary.as_ref().is_some_and(|c| c.staging.id == id))
                .ok_or_else(|| format!("staging distribution {id} gets no traffic: no enabled continuous deployment policy of a primary sends requests to it"))?;
            if variant == Variant::Primary {
                return Err(format!(
                    "distribution {id} is the staging distribution of {}: warm variant staging (or the primary, {})",
                    primary.id, primary.id
                ));
            }
            primary
        } else {
            dist
        };
        if primary.canary.is_none() && variant == Variant::Staging {
            return Err(format!(
                "distribution {id} has no enabled continuous deployment policy, so it has no staging side"
            ));
        }
        Ok(Plan { host: host_of(&snapshot, primary)?, variant })
    }

    /// Fetches `target` (a path and optional query) of `distribution`'s
    /// `variant` through the edge: once, or once per normalised
    /// `Accept-Encoding` the cache key may hold (see the module's
    /// documentation).
    pub async fn warm(&self, distribution: &str, target: &str, variant: Variant) -> Warmed {
        let (edge, plan) = match self.edge().and_then(|e| Ok((Arc::clone(e), self.plan(distribution, variant)?))) {
            Ok(found) => found,
            Err(why) => return Warmed::Failed(why),
        };
        let encodings = key_encodings(&edge.snapshots.load(), &plan, target);
        let mut results = Vec::with_capacity(encodings.len());
        for ae in encodings {
            results.push((ae, fetch(&edge, &plan, target, ae).await));
        }
        combine(results)
    }
}

/// The `Accept-Encoding` values to warm `target` with on the side `plan`
/// names: `None` (no header) and, when the behavior the path selects does
/// not compress at the edge, each normalised value its cache policy's
/// flags allow (what [`crate::pipeline::compress`] puts in the key).
fn key_encodings(snapshot: &Snapshot, plan: &Plan, target: &str) -> Vec<Option<&'static str>> {
    let mut out = vec![None];
    let primary = snapshot.edge.find(&plan.host);
    let dist = match plan.variant {
        Variant::Primary => primary,
        Variant::Staging => primary.and_then(|p| p.canary.as_ref()).map(|c| &c.staging),
    };
    // A target that is no URI fails in the fetch, with its reason.
    let (Some(dist), Ok(uri)) = (dist, target.parse::<http::Uri>()) else { return out };
    let (behavior, policy, _) = dist.behavior_for(uri.path());
    if behavior.compress {
        return out;
    }
    let (br, gzip) = (policy.enable_accept_encoding_brotli, policy.enable_accept_encoding_gzip);
    for set in [Codings { br: false, gzip }, Codings { br, gzip: false }, Codings { br, gzip }] {
        if let Some(v) = set.normalised()
            && !out.contains(&Some(v))
        {
            out.push(Some(v));
        }
    }
    out
}

/// One path's outcome from its fetches, one per `Accept-Encoding`: failed
/// if any failed (with each reason), else fetched if any was, else fresh.
fn combine(results: Vec<(Option<&'static str>, Warmed)>) -> Warmed {
    let single = results.len() == 1;
    let mut failures = Vec::new();
    let mut fetched = false;
    for (ae, warmed) in results {
        match warmed {
            Warmed::Failed(why) if single => return Warmed::Failed(why),
            Warmed::Failed(why) => failures.push(format!("Accept-Encoding {}: {why}", ae.unwrap_or("none"))),
            Warmed::Fetched => fetched = true,
            Warmed::Fresh => {}
        }
    }
    if !failures.is_empty() {
        Warmed::Failed(failures.join("; "))
    } else if fetched {
        Warmed::Fetched
    } else {
        Warmed::Fresh
    }
}

/// Fetches `target` once through `edge` as `plan` says, with
/// `accept_encoding` if any.
async fn fetch(edge: &Arc<EdgeService>, plan: &Plan, target: &str, accept_encoding: Option<&str>) -> Warmed {
    let mut req = Request::get(target).header(header::HOST, &plan.host).header(header::USER_AGENT, USER_AGENT);
    if let Some(ae) = accept_encoding {
        req = req.header(header::ACCEPT_ENCODING, ae);
    }
    let mut parts = match req.body(()) {
        Ok(req) => req.into_parts().0,
        Err(e) => return Warmed::Failed(format!("cannot build a request for {target:?}: {e}")),
    };
    parts.extensions.insert(WarmRequest { variant: plan.variant });
    let conn = ConnInfo { client: WARM_ADDR, local: WARM_ADDR, tls: None, tls_session: None };
    let resp =
        match tokio::time::timeout(HEAD_TIMEOUT, Arc::clone(edge).handle_parts(parts, ViewerBody::Empty, conn)).await {
            Ok(resp) => resp,
            Err(_) => return Warmed::Failed(format!("no answer from the edge within {HEAD_TIMEOUT:?}")),
        };
    // The side that served it, from the variant header the respond
    // phase sets on a canary's answers; none: the primary.
    let served = match resp.headers().get(VARIANT_HEADER).map(HeaderValue::as_bytes) {
        Some(b"staging") => Variant::Staging,
        _ => Variant::Primary,
    };
    let warmed = match read_answer(resp).await {
        Ok(warmed) => warmed,
        Err(why) => return Warmed::Failed(why),
    };
    if served != plan.variant {
        // The policy changed between the plan and the fetch.
        return Warmed::Failed(format!(
            "the edge served it from {} instead of {}: the continuous deployment policy changed meanwhile",
            served.as_str(),
            plan.variant.as_str()
        ));
    }
    warmed
}

/// Reads the whole answer (so a stored object is complete) and classifies it.
async fn read_answer(resp: Response<EdgeBody>) -> Result<Warmed, String> {
    let status = resp.status();
    let phase = resp.extensions().get::<CachePhase>().copied();
    let mut body = resp.into_body();
    let mut quoted: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame()).await {
            Err(_) => return Err(format!("the body stalled for {BODY_IDLE_TIMEOUT:?}")),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(format!("the body ended early: {e}")),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data()
            && !status.is_success()
            && quoted.len() < MAX_QUOTED
        {
            quoted.extend_from_slice(&data[..data.len().min(MAX_QUOTED - quoted.len())]);
        }
    }
    Ok(classify(status, phase, &quoted))
}

/// What an answer says about the cache: see the module's documentation.
fn classify(status: StatusCode, phase: Option<CachePhase>, body: &[u8]) -> Warmed {
    let reason = status.canonical_reason().unwrap_or("");
    if status.is_client_error() || status.is_server_error() {
        let from = match phase {
            None | Some(CachePhase::Error) => "the edge",
            Some(_) => "the origin",
        };
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return Warmed::Failed(if text.is_empty() || from == "the origin" {
            format!("{} {reason} from {from}", status.as_u16())
        } else {
            format!("{} {reason} from {from}: {text}", status.as_u16())
        });
    }
    match phase {
        Some(CachePhase::Hit) => Warmed::Fresh,
        Some(CachePhase::Miss | CachePhase::RefreshHit) => Warmed::Fetched,
        Some(CachePhase::Pass) => Warmed::Failed(format!(
            "{} {reason} from the origin, not stored: the response is not cacheable (Cache-Control, size or status)",
            status.as_u16()
        )),
        Some(CachePhase::StaleHit) => Warmed::Failed(format!(
            "{} {reason}: the edge served a stale copy (StaleHit): the origin did not give a fresh one",
            status.as_u16()
        )),
        Some(CachePhase::Error) => {
            Warmed::Failed(format!("{} {reason}: the edge answered with an error", status.as_u16()))
        }
        None => {
            Warmed::Failed(format!("{} {reason}: not an answer of the cache (generated by the edge)", status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_cache_phase_and_status() {
        let ok = StatusCode::OK;
        assert_eq!(classify(ok, Some(CachePhase::Hit), b""), Warmed::Fresh);
        assert_eq!(classify(ok, Some(CachePhase::Miss), b""), Warmed::Fetched);
        assert_eq!(classify(ok, Some(CachePhase::RefreshHit), b""), Warmed::Fetched);
        let Warmed::Failed(pass) = classify(ok, Some(CachePhase::Pass), b"") else { panic!("a pass is a failure") };
        assert!(pass.starts_with("200 OK from the origin, not stored: the response is not cacheable"), "{pass}");
        let Warmed::Failed(stale) = classify(ok, Some(CachePhase::StaleHit), b"") else { panic!("stale fails") };
        assert!(stale.starts_with("200 OK: ") && stale.contains("StaleHit"), "{stale}");
        let Warmed::Failed(none) = classify(ok, None, b"generated") else { panic!("no phase is a failure") };
        assert!(none.contains("not an answer of the cache"), "{none}");
        assert_eq!(
            classify(StatusCode::NOT_FOUND, Some(CachePhase::Miss), b"not found\n"),
            Warmed::Failed("404 Not Found from the origin".into())
        );
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, Some(CachePhase::Error), b"origin o: connection refused\n"),
            Warmed::Failed("502 Bad Gateway from the edge: origin o: connection refused".into())
        );
        assert_eq!(classify(StatusCode::FORBIDDEN, None, b""), Warmed::Failed("403 Forbidden from the edge".into()));
    }

    #[test]
    fn a_path_warmed_per_accept_encoding_counts_once() {
        let fail = |why: &str| Warmed::Failed(why.into());
        assert_eq!(combine(vec![(None, fail("404 Not Found from the origin"))]), fail("404 Not Found from the origin"));
        assert_eq!(combine(vec![(None, Warmed::Fresh), (Some("gzip"), Warmed::Fresh)]), Warmed::Fresh);
        assert_eq!(combine(vec![(None, Warmed::Fresh), (Some("gzip"), Warmed::Fetched)]), Warmed::Fetched);
        assert_eq!(
            combine(vec![
                (None, Warmed::Fetched),
                (Some("br"), fail("502 Bad Gateway from the edge")),
                (Some("gzip"), Warmed::Fresh)
            ]),
            fail("Accept-Encoding br: 502 Bad Gateway from the edge")
        );
        assert_eq!(
            combine(vec![(None, fail("a")), (Some("br,gzip"), fail("b"))]),
            fail("Accept-Encoding none: a; Accept-Encoding br,gzip: b")
        );
    }

    #[test]
    fn without_an_edge_service_nothing_can_be_warmed() {
        let warmer = EdgeWarmer::new(Arc::default());
        let why = warmer.plan("d", Variant::Primary).expect_err("refused");
        assert!(why.contains("serves no edge yet"), "{why}");
    }
}
