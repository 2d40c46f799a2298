//! Phase "lookup / coalesce": the cache's answer for the request's key,
//! and what follows from it. A fresh object is served; a stale one is
//! served within `stale-while-revalidate` (revalidated in the background)
//! or revalidated first; a request that finds a fetch of its key in flight
//! waits for it (collapsed forwarding); a miss makes this request the
//! leader that fetches, stores and streams to every waiter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Response, StatusCode};
use shardgate_cache::{CachePhase, Leader, Lookup, Object, Outcome};

use super::Ctx;
use super::fetch::{FetchError, Fetched};
use crate::access_log::ErrorDetail;
use crate::body::EdgeBody;

/// How many times a waiter whose variant did not fit retries before fetching alone.
const MAX_WAIT_ROUNDS: usize = 3;

impl Ctx {
    /// Whether a stored object is still valid (no newer invalidation covers it).
    fn valid(&self) -> impl Fn(&Object) -> bool + '_ {
        |o: &Object| self.dist.still_valid(o.generation, &o.viewer_target, &o.origin_target)
    }

    /// Phase "lookup": answers the request from the cache, or through the
    /// origin phase ([`Ctx::fetch_origin`]) on a miss or a revalidation.
    pub(crate) async fn lookup(&self) -> Response<EdgeBody> {
        let now = Instant::now();
        match self.svc.cache.lookup(&self.key, &self.req_headers, now, self.valid()) {
            Lookup::Fresh(object) => self.serve(&object, CachePhase::Hit).await,
            // Every other answer may wait for an origin, whose future is
            // large: boxed, so that the request's future, which hyper and
            // tokio move for every request, stays small on a hit.
            other => Box::pin(self.not_fresh(other, now)).await,
        }
    }

    /// [`Ctx::lookup`] for a key without a fresh object.
    async fn not_fresh(&self, lookup: Lookup, now: Instant) -> Response<EdgeBody> {
        match lookup {
            Lookup::Fresh(object) => self.serve(&object, CachePhase::Hit).await,
            Lookup::Miss(leader) => self.lead(leader).await,
            Lookup::Stale { object, leader, pending } => {
                if object.within_stale_while_revalidate(now)
                    && !object.is_fresh(now)
                    && object.stale_while_revalidate > Duration::ZERO
                {
                    if let Some(leader) = leader {
                        self.revalidate_in_background(leader, Arc::clone(&object));
                    }
                    return self.serve(&object, CachePhase::StaleHit).await;
                }
                match (leader, pending) {
                    (Some(leader), _) => self.fetch_and_respond(leader, Some(object)).await,
                    (None, Some(pending)) => match pending.wait().await {
                        Outcome::Stored(o) if o.matches_vary(&self.req_headers) => {
                            self.serve(&o, CachePhase::RefreshHit).await
                        }
                        Outcome::Failed if object.within_stale_if_error(Instant::now()) => {
                            self.serve(&object, CachePhase::StaleHit).await
                        }
                        _ => self.wait_or_fetch().await,
                    },
                    (None, None) => self.wait_or_fetch().await,
                }
            }
            Lookup::Wait(pending) => match pending.wait().await {
                // CloudFront logs collapsed requests as hits.
                Outcome::Stored(o) if o.matches_vary(&self.req_headers) => self.serve(&o, CachePhase::Hit).await,
                Outcome::Stored(_) | Outcome::Withdrawn => self.wait_or_fetch().await,
                // Not shareable: every waiter asks the origin itself, at once.
                Outcome::Uncacheable => self.fetch_alone().await,
                Outcome::Failed => self.error_response(
                    StatusCode::BAD_GATEWAY,
                    "the origin fetch this request waited for failed",
                    ErrorDetail::error("AbortedOrigin"),
                ),
            },
        }
    }

    /// Fetches for this request only, without storing.
    async fn fetch_alone(&self) -> Response<EdgeBody> {
        self.forward_uncached(None).await
    }

    /// A miss that made this request the leader of its key: fetch, store
    /// and answer, except for a `HEAD`, which CloudFront forwards to the
    /// origin as a `HEAD` (CloudFront Developer Guide, "Request and
    /// response behavior for custom origins", HTTP methods): the lock goes
    /// back to the waiters, and the origin's answer is passed through, not
    /// stored, so a `HEAD` never makes the edge download a body.
    async fn lead(&self, leader: Leader) -> Response<EdgeBody> {
        if self.head_only {
            leader.withdraw();
            return self.fetch_alone().await;
        }
        self.fetch_and_respond(leader, None).await
    }

    /// After a leader's outcome did not fit: take the lock or wait again a
    /// few rounds, then fetch alone without storing.
    async fn wait_or_fetch(&self) -> Response<EdgeBody> {
        for _ in 0..MAX_WAIT_ROUNDS {
            match self.svc.cache.lead_or_wait(&self.key) {
                Ok(leader) => return self.lead(leader).await,
                Err(pending) => {
                    if let Outcome::Stored(o) = pending.wait().await
                        && o.matches_vary(&self.req_headers)
                    {
                        return self.serve(&o, CachePhase::Hit).await;
                    }
                }
            }
        }
        self.fetch_alone().await
    }

    fn revalidate_in_background(&self, leader: Leader, stale: Arc<Object>) {
        let mut ctx = self.clone();
        // The viewer has its answer: the request's span must end with it,
        // not when this fetch does, so the background fetch records none.
        ctx.span = tracing::Span::none();
        tokio::spawn(async move {
            // An object whose body is still arriving is fetched whole (see
            // `Object::revalidatable`).
            let stale = Some(&*stale).filter(|s| s.revalidatable());
            match ctx.admit(leader, stale).await {
                Ok(Fetched::Stored(..) | Fetched::Pass(_)) => {}
                Err(e) => {
                    tracing::info!(distribution = %ctx.dist.id, target = %ctx.viewer_target, error = %e, "background revalidation failed")
                }
            }
        });
    }

    async fn fetch_and_respond(&self, leader: Leader, stale: Option<Arc<Object>>) -> Response<EdgeBody> {
        // The fetch runs in its own task: if this viewer leaves before the
        // origin answers, the requests waiting on this leader still get it.
        let ctx = self.clone();
        // Validators only for a complete object: one whose body is still
        // arriving is fetched whole (see `Object::revalidatable`); it may
        // still be served on an error below.
        let for_task = stale.clone().filter(|s| s.revalidatable());
        let task = tokio::spawn(async move { ctx.admit(leader, for_task.as_deref()).await });
        let fetched = match task.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "origin fetch task failed");
                Err(FetchError::Status(StatusCode::BAD_GATEWAY))
            }
        };
        match fetched {
            Ok(Fetched::Stored(o, phase, own)) => self.serve_with(&o, phase, &own).await,
            Ok(Fetched::Pass(resp)) => self.pass(resp),
            Err(e) => match stale {
                // RFC 5861 stale-if-error.
                Some(s) if s.within_stale_if_error(Instant::now()) => {
                    tracing::info!(distribution = %self.dist.id, target = %self.viewer_target, error = %e, "origin failed; serving stale");
                    self.serve(&s, CachePhase::StaleHit).await
                }
                _ => self.origin_error(&e),
            },
        }
    }
}
