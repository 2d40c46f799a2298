//! Cache warm: fetch one path of a distribution through the edge, as a
//! viewer's `GET` would, and say whether the cache went to the origin for
//! it (`Fetched`), already held a fresh copy (`Fresh`), or could not store
//! it (`Failed`, with the reason). The Admin API's warm jobs call it for
//! every path of a job (`shardgate cache warm`).
//!
//! How (for now): the request is sent over loopback to one of the gateway's
//! own plain HTTP edge listeners, with a `Host` the distribution answers
//! (a wildcard host gets a `shardgate-warm` label), so it takes the very
//! path of a viewer's request: web ACL, canary, behavior, cache key, lookup
//! with coalescing, origin. The answer's `X-Cache` says what happened:
//! `Hit` is fresh; `Miss` and `RefreshHit` are fetched, except a `Miss`
//! without `Age`, which the edge passed through without storing (the cache
//! refused it: `no-store`, `private`, too large, ...); `StaleHit` and error
//! statuses are failures. The body is read to its end, so the object is
//! whole in the cache when the path counts as fetched.
//!
//! The staging side of a continuous deployment policy is reached as a
//! viewer reaches it: the policy's header for a header-based policy, a
//! session cookie naming staging for a weight-based one with cookie
//! stickiness. A weight-based policy without stickiness sends a random
//! share of requests to staging, so staging cannot be warmed on purpose
//! (refused by [`EdgeWarmer::plan`]); warming its primary retries the
//! requests that landed on staging. The answer's variant header is checked
//! either way.
//!
//! Limits: needs a plain HTTP edge listener (not TLS, not PROXY protocol)
//! among those the gateway started with; one connection per fetch in
//! flight, kept alive and reused (at most [`MAX_IDLE_CONNECTIONS`] idle);
//! [`CONNECT_TIMEOUT`], [`HEAD_TIMEOUT`] and [`BODY_IDLE_TIMEOUT`] bound each
//! fetch.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use shardgate_model::edge::Traffic;
use shardgate_model::{ResourceId, SniPattern};
use shardgate_snapshot::{EdgeDistribution, Snapshot, SnapshotHandle};

use crate::VARIANT_HEADER;
use crate::canary::{COOKIE, Variant};

/// Longest wait to connect to the edge listener.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the edge's response head (the origin's included: the
/// edge's own origin timeouts answer first, 30 s by default).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest pause between two pieces of a body being read.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections to the edge listener kept for the next fetches.
pub const MAX_IDLE_CONNECTIONS: usize = 64;
/// Times a fetch of the primary side of an unsticky weight-based canary
/// is sent again after it landed on staging.
const WRONG_SIDE_RETRIES: usize = 8;
/// The `User-Agent` of warm requests (it shows in the access log).
const USER_AGENT: &str = "shardgate-cache-warm";
/// Longest piece of an error body quoted in a failure reason.
const MAX_QUOTED: usize = 200;

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
    /// Headers that choose the side (a canary header or cookie).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The side the answer must come from.
    pub variant: Variant,
    /// Whether the answer carries the variant header (the primary has a canary).
    pub canary: bool,
}

/// Fetches paths through the edge listeners of this gateway.
#[derive(Debug)]
pub struct EdgeWarmer {
    snapshots: Arc<SnapshotHandle>,
    /// Plain HTTP edge listeners, as addresses to connect to.
    listeners: Vec<SocketAddr>,
    next: AtomicUsize,
    idle: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
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

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header name {name:?}: {e}"))?;
    let value = HeaderValue::from_str(value).map_err(|e| format!("header value for {name}: {e}"))?;
    Ok((name, value))
}

impl EdgeWarmer {
    /// A warmer that sends its requests to `listeners` (the gateway's plain
    /// HTTP edge listeners; a wildcard address is reached on loopback).
    pub fn new(snapshots: Arc<SnapshotHandle>, listeners: impl IntoIterator<Item = SocketAddr>) -> Self {
        let listeners = listeners
            .into_iter()
            .map(|mut a| {
                if a.ip().is_unspecified() {
                    a.set_ip(match a {
                        SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                a
            })
            .collect();
        EdgeWarmer { snapshots, listeners, next: AtomicUsize::new(0), idle: Mutex::new(Vec::new()) }
    }

    /// How to reach `variant` of `distribution` in the running
    /// configuration; why it cannot be reached otherwise. `distribution`
    /// may also be a staging distribution's id (with `variant` staging).
    pub fn plan(&self, distribution: &str, variant: Variant) -> Result<Plan, String> {
        if self.listeners.is_empty() {
            return Err("it needs a plain HTTP edge listener (edge.http without tls and proxy_protocol), and this gateway started with none".into());
        }
        let snapshot = self.snapshots.load();
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
        let host = host_of(&snapshot, primary)?;
        let Some(canary) = &primary.canary else {
            if variant == Variant::Staging {
                return Err(format!(
                    "distribution {id} has no enabled continuous deployment policy, so it has no staging side"
                ));
            }
            return Ok(Plan { host, headers: Vec::new(), variant, canary: false });
        };
        let side = if variant == Variant::Staging { 's' } else { 'p' };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let headers = match (&canary.traffic, variant) {
            (Traffic::Header { name, value }, Variant::Staging) => vec![header_pair(name, value)?],
            (Traffic::Header { .. }, Variant::Primary) => Vec::new(),
            (Traffic::Weight { stickiness: Some(_), .. }, _) => {
                // The session cookie `canary::choose` honours.
                let cookie = format!("{COOKIE}={}.{}.{side}.{now}", canary.policy_id, canary.revision);
                vec![header_pair(header::COOKIE.as_str(), &cookie)?]
            }
            (Traffic::Weight { stickiness: None, .. }, Variant::Primary) => Vec::new(),
            (Traffic::Weight { stickiness: None, .. }, Variant::Staging) => {
                return Err(format!(
                    "continuous deployment policy {} sends a random share of requests to staging (no session stickiness), so a request cannot choose staging; give the policy cookie stickiness, or a header, while warming",
                    canary.policy_id
                ));
            }
        };
        Ok(Plan { host, headers, variant, canary: true })
    }

    /// Fetches `target` (a path and optional query) of `distribution`'s
    /// `variant` through the edge.
    pub async fn warm(&self, distribution: &str, target: &str, variant: Variant) -> Warmed {
        let plan = match self.plan(distribution, variant) {
            Ok(p) => p,
            Err(why) => return Warmed::Failed(why),
        };
        for _ in 0..=WRONG_SIDE_RETRIES {
            match self.fetch(&plan, target).await {
                Err(why) => return Warmed::Failed(why),
                Ok(Answer { served_by: Some(side), .. }) if side != plan.variant && plan.canary => {
                    if plan.variant == Variant::Primary && plan.headers.is_empty() {
                        // A random share goes to staging: ask again.
                        continue;
                    }
                    return Warmed::Failed(format!(
                        "the edge served it from {} instead of {}",
                        side.as_str(),
                        plan.variant.as_str()
                    ));
                }
                Ok(answer) => return answer.warmed,
            }
        }
        Warmed::Failed(format!("the edge served it from staging {} times in a row", WRONG_SIDE_RETRIES + 1))
    }

    async fn fetch(&self, plan: &Plan, target: &str) -> Result<Answer, String> {
        let mut req = Request::get(target)
            .header(header::HOST, &plan.host)
            .header(header::USER_AGENT, USER_AGENT)
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("cannot build a request for {target:?}: {e}"))?;
        for (name, value) in &plan.headers {
            req.headers_mut().append(name.clone(), value.clone());
        }
        // A kept-alive connection the edge closed meanwhile (its idle
        // timeout) gives the request back unsent: send it on a new one.
        let mut req = Some(req);
        for _ in 0..MAX_IDLE_CONNECTIONS + 1 {
            let Some(r) = req.take() else { break };
            let (mut conn, reused) = match self.idle_connection() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            let resp = match tokio::time::timeout(HEAD_TIMEOUT, conn.try_send_request(r)).await {
                Err(_) => return Err(format!("no answer from the edge within {HEAD_TIMEOUT:?}")),
                Ok(Ok(resp)) => resp,
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) if reused => {
                        req = Some(unsent);
                        continue;
                    }
                    _ => return Err(format!("request to the edge failed: {}", e.error())),
                },
            };
            let answer = read_answer(resp).await?;
            if conn.is_ready() {
                let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                if idle.len() < MAX_IDLE_CONNECTIONS {
                    idle.push(conn);
                }
            }
            return Ok(answer);
        }
        Err("every kept-alive connection to the edge was closed; no new one could be used".into())
    }

    fn idle_connection(&self) -> Option<SendRequest<Empty<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(c) = idle.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        let addr = self.listeners[self.next.fetch_add(1, Ordering::Relaxed) % self.listeners.len()];
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Err(_) => return Err(format!("cannot connect to the edge listener {addr} within {CONNECT_TIMEOUT:?}")),
            Ok(Err(e)) => return Err(format!("cannot connect to the edge listener {addr}: {e}")),
            Ok(Ok(s)) => s,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(edge = %addr, error = %e, "cache warm: TCP_NODELAY not set");
        }
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with the edge listener {addr}: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(edge = %addr, error = %e, "cache warm connection ended");
            }
        });
        Ok(sender)
    }
}

/// One answer of the edge.
struct Answer {
    /// The side named by the variant header, if any.
    served_by: Option<Variant>,
    warmed: Warmed,
}

/// Reads the whole answer (so a stored object is complete) and classifies it.
async fn read_answer(resp: http::Response<hyper::body::Incoming>) -> Result<Answer, String> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut quoted = Vec::new();
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
    let served_by = match headers.get(VARIANT_HEADER).map(HeaderValue::as_bytes) {
        Some(b"staging") => Some(Variant::Staging),
        Some(b"primary") => Some(Variant::Primary),
        _ => None,
    };
    let x_cache = headers.get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let phase = x_cache.split_whitespace().next().unwrap_or_default();
    let warmed = classify(status, phase, headers.contains_key(header::AGE), &quoted);
    Ok(Answer { served_by, warmed })
}

/// What an answer says about the cache: see the module's documentation.
fn classify(status: StatusCode, phase: &str, has_age: bool, body: &[u8]) -> Warmed {
    let reason = status.canonical_reason().unwrap_or("");
    if status.is_client_error() || status.is_server_error() {
        let from = if phase == "Error" || phase.is_empty() { "the edge" } else { "the origin" };
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        return Warmed::Failed(if text.is_empty() || from == "the origin" {
            format!("{} {reason} from {from}", status.as_u16())
        } else {
            format!("{} {reason} from {from}: {text}", status.as_u16())
        });
    }
    match phase {
        "Hit" => Warmed::Fresh,
        "RefreshHit" => Warmed::Fetched,
        "Miss" if has_age => Warmed::Fetched,
        "Miss" => Warmed::Failed(format!(
            "{} {reason} from the origin, not stored: the response is not cacheable (Cache-Control, size or status)",
            status.as_u16()
        )),
        "StaleHit" => {
            Warmed::Failed("the edge served a stale copy (StaleHit): the origin did not give a fresh one".into())
        }
        other => Warmed::Failed(format!("{} {reason} with X-Cache {other:?}: not a cached answer", status.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_x_cache_status_and_age() {
        let ok = StatusCode::OK;
        assert_eq!(classify(ok, "Hit", true, b""), Warmed::Fresh);
        assert_eq!(classify(ok, "Miss", true, b""), Warmed::Fetched);
        assert_eq!(classify(ok, "RefreshHit", true, b""), Warmed::Fetched);
        let Warmed::Failed(pass) = classify(ok, "Miss", false, b"") else { panic!("a pass is a failure") };
        assert!(pass.contains("not cacheable"), "{pass}");
        let Warmed::Failed(stale) = classify(ok, "StaleHit", true, b"") else { panic!("stale is a failure") };
        assert!(stale.contains("StaleHit"), "{stale}");
        assert_eq!(
            classify(StatusCode::NOT_FOUND, "Miss", true, b"not found\n"),
            Warmed::Failed("404 Not Found from the origin".into())
        );
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, "Error", false, b"origin o: connection refused\n"),
            Warmed::Failed("502 Bad Gateway from the edge: origin o: connection refused".into())
        );
        assert_eq!(
            classify(StatusCode::FORBIDDEN, "", false, b""),
            Warmed::Failed("403 Forbidden from the edge".into())
        );
    }

    #[test]
    fn without_a_plain_listener_nothing_can_be_warmed() {
        let warmer = EdgeWarmer::new(Arc::new(SnapshotHandle::new(Snapshot::default())), []);
        let why = warmer.plan("d", Variant::Primary).expect_err("refused");
        assert!(why.contains("plain HTTP edge listener"), "{why}");
        let warmer = EdgeWarmer::new(
            Arc::new(SnapshotHandle::new(Snapshot::default())),
            ["0.0.0.0:8080".parse().expect("addr")],
        );
        assert_eq!(warmer.listeners, ["127.0.0.1:8080".parse::<SocketAddr>().expect("addr")]);
        let why = warmer.plan("d", Variant::Primary).expect_err("refused");
        assert!(why.contains("not in the running configuration"), "{why}");
    }
}
