//! Admission and refresh: what the cache does with an origin's response.
//!
//! ```text
//! origin response (head; body still streaming)
//!   -> Date added when missing or invalid           (RFC 9110 §6.6.1)
//!   -> 304 for a stale object: merge its headers     (RFC 9111 §4.3.4)
//!        storable: freshened object replaces it, shared with waiters
//!        not storable any more, or its body still arriving: only this
//!        request sees the merged result
//!   -> 5xx while the stale object is within stale-if-error: serve stale (RFC 5861 §4)
//!   -> storable?                                      (RFC 9111 §3, freshness::storability;
//!                                                      4xx/5xx: CloudFront's error caching, errors)
//!        no: passed through
//!   -> tier: memory up to max_object_bytes, else disk up to its limit, else passed through
//!   -> stored object (built in one place: build_object), handed to waiters
//!   -> FillWriter: the caller copies the body into it; its end settles or drops
//!      every object holding that body
//! ```
//!
//! The API is generic over the response body, so this crate needs no HTTP
//! client: the caller reads the body (with its own timeouts) and pushes
//! each chunk into the [`FillWriter`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::conditional::StoredDates;
use crate::disk::DiskRef;
use crate::errors::{self, error_storability};
use crate::fill::{Fill, FillEnd};
use crate::freshness::{Freshness, Storability, Timing, TtlBounds, initial_age, storability};
use crate::memory::{Cache, Leader, Object, vary_values};

/// Stored bodies are merged into pieces of this size once complete, so a
/// hit is written with few, large writes.
const COMPACT_PIECE: usize = 1 << 20;

/// Headers never forwarded in either direction, and never stored (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name` is one of the fixed hop-by-hop fields ([`HOP_BY_HOP`]).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes the hop-by-hop fields: the fixed ones and those `Connection`
/// names (RFC 9110 §7.6.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().to_ascii_lowercase().as_bytes()).ok())
        .collect();
    for n in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(n);
    }
}

/// Adds `Date: now` when a response has no valid `Date`. RFC 9110 §6.6.1:
/// a recipient with a clock MUST record when a response without `Date` was
/// received and add that `Date` if it caches or forwards it (and MAY
/// replace an invalid one). Without this, a 304 without `Date` would leave
/// the stored response's old `Date` in place, and the refreshed object
/// would look as old as the first fetch: stale at once, revalidated on
/// every request.
pub fn stamp_date(headers: &mut HeaderMap, now: std::time::SystemTime) {
    if crate::date::first(headers, &header::DATE).valid().is_none() {
        headers.insert(header::DATE, crate::date::format(now));
    }
}

/// The request an origin response answers, as admission needs it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// The viewer's request headers (the values of the response's `Vary`
    /// fields are stored with the object).
    pub request_headers: &'a HeaderMap,
    /// The namespace (distribution id) the object belongs to.
    pub namespace: &'a str,
    /// Configuration generation when the fetch started.
    pub generation: u64,
    /// The viewer's request target, for invalidation.
    pub viewer_target: &'a str,
    /// The origin's request target after rewrites, for invalidation.
    pub origin_target: &'a str,
    /// The cache policy's TTL bounds.
    pub bounds: TtlBounds,
    /// The targeted cache-control fields this cache obeys (RFC 9213), in
    /// priority order; empty: `Cache-Control` only.
    pub targeted: &'a [HeaderName],
    /// When the request was sent and its response head arrived; the
    /// response time is also the stored object's `received`.
    pub timing: Timing,
    /// The error caching minimum TTLs the distribution configures, by
    /// status; statuses not listed get CloudFront's default (see
    /// [`crate::errors`]). Usually empty.
    pub error_caching: &'a [(u16, Duration)],
}

impl Exchange<'_> {
    /// Whether and for how long a response of `status` with `headers` is
    /// stored: [`storability`], or for 4xx and 5xx [`error_storability`].
    pub fn decide(&self, status: StatusCode, headers: &HeaderMap) -> Storability {
        let code = status.as_u16();
        if errors::is_error(code) {
            let min_ttl = errors::error_min_ttl(self.error_caching, code);
            return error_storability(code, headers, self.bounds, self.targeted, self.timing, min_ttl);
        }
        storability(code, headers, self.bounds, self.targeted, self.timing)
    }
}

/// What the cache made of an origin's response.
#[derive(Debug)]
pub enum Admitted<B> {
    /// A new object, stored (body still empty) and handed to the waiters.
    /// The caller copies `body` into `fill`; `own` holds the fields that
    /// were not stored (`no-cache="f"`, `private="f"`) but belong to this
    /// request's response.
    Stored {
        /// The stored object.
        object: Arc<Object>,
        /// Fields for this request only.
        own: HeaderMap,
        /// The origin's body, to copy into `fill`.
        body: B,
        /// Where the body goes.
        fill: FillWriter,
    },
    /// A 304 freshened the stale object (RFC 9111 §4.3.4). The object is
    /// stored and shared, unless the merged headers forbid it (then only
    /// this request gets it).
    Refreshed {
        /// The freshened object.
        object: Arc<Object>,
        /// Fields for this request only.
        own: HeaderMap,
    },
    /// Not stored: the response, to pass through (hop-by-hop fields still in it).
    Pass(Response<B>),
    /// The origin answered this 5xx while the stale object may still be
    /// served on errors (RFC 5861 §4 `stale-if-error`): serve the stale one.
    ServeStale(StatusCode),
}

/// The result of merging a 304 into a stale object.
#[derive(Debug)]
pub struct Refresh {
    /// The object with the merged headers and new freshness; it shares the
    /// stale object's body.
    pub object: Object,
    /// Whether it may be stored and served to others; false when the
    /// merged headers forbid storing (e.g. the 304 carried `no-store` or a
    /// `Set-Cookie`).
    pub shared: bool,
    /// Fields for this request only (`no-cache="f"`, `private="f"`).
    pub own: HeaderMap,
}

/// Where a new object's body is written.
#[derive(Debug)]
pub struct Placement {
    /// The body (in memory, or writing to a disk file).
    pub fill: Fill,
    /// The files, for the disk tier.
    pub disk: Option<DiskRef>,
    /// The body may grow to this many bytes before the cache forgets the
    /// object (readers already streaming it still finish).
    pub max: u64,
}

/// The stored headers updated from a 304 (RFC 9111 §4.3.4): every field of
/// the 304 replaces the stored field of the same name, except hop-by-hop
/// fields (the fixed ones and those the 304's `Connection` names, RFC 9110
/// §7.6.1) and `Content-Length` (a 304 has no body; its length, if any, is
/// not the stored body's).
pub fn merge_not_modified(stored: &HeaderMap, update: &HeaderMap) -> HeaderMap {
    let mut update = update.clone();
    strip_hop_by_hop(&mut update);
    let mut headers = stored.clone();
    for name in update.keys() {
        if name != header::CONTENT_LENGTH {
            headers.remove(name);
            for value in update.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    headers
}

/// Merges a 304 (`update`, with its `Date`) into `stale`. The 304's `Age`
/// and `Date` say how old this validation is.
pub fn refresh(stale: &Object, update: &HeaderMap, exchange: &Exchange<'_>) -> Refresh {
    let headers = merge_not_modified(&stale.headers, update);
    // The merged headers may now forbid sharing (a Set-Cookie or no-store
    // on the 304): then only this request gets the result.
    let decision = exchange.decide(stale.status, &headers);
    let (fresh, shared) = match decision {
        Storability::Store(f) => (f, true),
        Storability::Skip(_) => {
            let none = Duration::ZERO;
            let fresh = Freshness {
                ttl: none,
                initial_age: initial_age(&headers, exchange.timing),
                stale_while_revalidate: none,
                stale_if_error: none,
                omit: Vec::new(),
            };
            (fresh, false)
        }
    };
    let stored = Stored {
        status: stale.status,
        headers,
        body: Arc::clone(&stale.body),
        content_length: stale.content_length,
        vary: Vary::Kept(stale.vary.clone()),
        disk: stale.disk.clone(),
    };
    let (object, own) = build_object(stored, &fresh, exchange);
    Refresh { object, shared, own }
}

/// The parts of a response that become a stored object.
struct Stored {
    status: StatusCode,
    headers: HeaderMap,
    body: Arc<Fill>,
    content_length: Option<u64>,
    vary: Vary,
    disk: Option<DiskRef>,
}

/// The `Vary` values of a stored object.
enum Vary {
    /// A refreshed object keeps its predecessor's.
    Kept(Vec<(HeaderName, Option<HeaderValue>)>),
    /// A new object takes the request's values of its `Vary` fields.
    FromRequest,
}

/// Builds a stored object: the one place one is made, for new responses
/// and for 304 refreshes alike. `Age` is not stored (the `Age` sent grows
/// from `initial_age`); the fields `fresh.omit` names are taken out and
/// returned, for the response of the request that fetched it only.
fn build_object(stored: Stored, fresh: &Freshness, exchange: &Exchange<'_>) -> (Object, HeaderMap) {
    let Stored { status, mut headers, body, content_length, vary, disk } = stored;
    headers.remove(header::AGE);
    let own = take_fields(&mut headers, &fresh.omit);
    let vary = match vary {
        Vary::Kept(v) => v,
        Vary::FromRequest => vary_values(&headers, exchange.request_headers),
    };
    let received = exchange.timing.response_time;
    let object = Object {
        status,
        dates: StoredDates::of(&headers, received),
        headers,
        body,
        content_length,
        received,
        initial_age: fresh.initial_age,
        fresh_until: Instant::now() + fresh.ttl,
        stale_while_revalidate: fresh.stale_while_revalidate,
        stale_if_error: fresh.stale_if_error,
        namespace: exchange.namespace.into(),
        generation: exchange.generation,
        viewer_target: exchange.viewer_target.to_owned(),
        origin_target: exchange.origin_target.to_owned(),
        vary,
        disk,
    };
    (object, own)
}

/// Removes `names` from `headers` and returns them (no allocation when
/// `names` is empty, the usual case).
fn take_fields(headers: &mut HeaderMap, names: &[HeaderName]) -> HeaderMap {
    let mut taken = HeaderMap::new();
    for name in names {
        if let header::Entry::Occupied(e) = headers.entry(name) {
            let (name, values) = e.remove_entry_mult();
            for v in values {
                taken.append(name.clone(), v);
            }
        }
    }
    taken
}

/// A response's `Content-Length`, when it has one valid value.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

impl Cache {
    /// Where a new object of `content_length` bytes (unknown: `None`) goes.
    /// Small objects, and objects of unknown length, live in memory (and
    /// are forgotten if they grow past `max_object_bytes`); larger ones go
    /// to the disk tier, written as they arrive; `None`: too large for
    /// both, or the disk file cannot be created, so the response is passed
    /// through.
    pub fn place(&self, content_length: Option<u64>) -> Option<Placement> {
        let max = self.settings().max_object_bytes;
        match content_length {
            Some(len) if len > max => {
                let d = self.disk().filter(|d| len <= d.settings().max_object_bytes)?;
                match d.create() {
                    Ok((fill, r)) => Some(Placement { fill, disk: Some(r), max: d.settings().max_object_bytes }),
                    Err(e) => {
                        tracing::warn!(dir = %d.settings().dir.display(), error = %e, "cannot create a cache file; passing the response through");
                        None
                    }
                }
            }
            _ => Some(Placement { fill: Fill::new(), disk: None, max }),
        }
    }

    /// Admits an origin's response for `leader`'s key (see the module
    /// documentation for the steps). `stale` is the object the request
    /// revalidated, if any. Resolves the leader in every case, so waiters
    /// never hang.
    pub fn admit<B>(
        self: &Arc<Self>,
        leader: Leader,
        mut response: Response<B>,
        stale: Option<&Object>,
        exchange: &Exchange<'_>,
    ) -> Admitted<B> {
        stamp_date(response.headers_mut(), exchange.timing.response_time);
        if response.status() == StatusCode::NOT_MODIFIED
            && let Some(stale) = stale
        {
            let Refresh { object, shared, own } = refresh(stale, response.headers(), exchange);
            // A body still arriving may yet fail, and its writer settles or
            // removes only the objects holding it: a merged object stored
            // now could outlive a failed body. So a 304 for an incomplete
            // object answers this request only (callers send validators
            // only for complete objects, see `Object::revalidatable`).
            if !shared || !stale.revalidatable() {
                leader.uncacheable();
                return Admitted::Refreshed { object: Arc::new(object), own };
            }
            let key = leader.key().to_owned();
            let object = leader.store(object);
            if object.body.end().is_some() {
                // Records the new freshness (and, on disk, rewrites the metadata).
                self.settle(&key, &object);
            }
            return Admitted::Refreshed { object, own };
        }
        if response.status().is_server_error() && stale.is_some_and(|s| s.within_stale_if_error(Instant::now())) {
            leader.failed();
            return Admitted::ServeStale(response.status());
        }
        let decision = exchange.decide(response.status(), response.headers());
        let Storability::Store(fresh) = decision else {
            leader.uncacheable();
            return Admitted::Pass(response);
        };
        let length = content_length(response.headers());
        let Some(placement) = self.place(length) else {
            leader.uncacheable();
            return Admitted::Pass(response);
        };
        let (parts, body) = response.into_parts();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        let stored = Stored {
            status: parts.status,
            headers,
            body: Arc::new(placement.fill),
            content_length: length,
            vary: Vary::FromRequest,
            disk: placement.disk,
        };
        let (object, own) = build_object(stored, &fresh, exchange);
        let key = leader.key().to_owned();
        let object = leader.store(object);
        let fill = FillWriter {
            cache: Arc::clone(self),
            key,
            object: Arc::clone(&object),
            max: placement.max,
            oversize: false,
            done: false,
        };
        Admitted::Stored { object, own, body, fill }
    }
}

/// Writes a stored object's body as the origin sends it. Its end decides
/// the object's fate: complete, it is compacted and settled (re-charged,
/// and on disk its metadata written); failed, short of its
/// `Content-Length`, or abandoned (dropped without [`FillWriter::finish`]),
/// the cache forgets it and readers see the failure. Grown past the tier's
/// limit, the cache forgets it at once, and readers already streaming it
/// still finish.
#[derive(Debug)]
pub struct FillWriter {
    cache: Arc<Cache>,
    key: String,
    object: Arc<Object>,
    max: u64,
    oversize: bool,
    done: bool,
}

impl FillWriter {
    /// The object being written.
    pub fn object(&self) -> &Arc<Object> {
        &self.object
    }

    /// The cache it writes into.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Appends one chunk of the body.
    pub fn push(&mut self, data: Bytes) {
        let fill = &self.object.body;
        fill.push(data);
        if !self.oversize && fill.len() > self.max {
            // Too large to keep: readers already streaming finish, the
            // cache forgets it.
            self.oversize = true;
            self.cache.remove_body(&self.key, fill);
        }
    }

    /// Ends the body.
    pub fn finish(mut self, end: FillEnd) {
        self.end(end);
    }

    fn end(&mut self, end: FillEnd) {
        self.done = true;
        let (cache, key, object) = (&self.cache, self.key.as_str(), &self.object);
        let fill = &object.body;
        let failed = matches!(end, FillEnd::Failed(_));
        if let FillEnd::Failed(reason) = &end {
            tracing::warn!(target = %object.origin_target, reason = %reason, "origin body failed; object dropped");
        }
        // Every object holding this body (the one stored first, and any
        // object a 304 merged into it) shares its fate.
        if object.content_length.is_some_and(|l| l != fill.len()) && !failed {
            fill.finish(FillEnd::Failed("the origin body was shorter than its Content-Length".into()));
            cache.remove_body(key, fill);
        } else {
            fill.finish(end);
            if failed {
                cache.remove_body(key, fill);
            } else if !self.oversize {
                fill.compact(COMPACT_PIECE);
                for holder in cache.holding(key, fill) {
                    cache.settle(key, &holder);
                }
            }
        }
    }
}

impl Drop for FillWriter {
    fn drop(&mut self) {
        if !self.done {
            self.end(FillEnd::Failed("the body's writer stopped before its end".into()));
        }
    }
}

#[cfg(test)]
mod tests;
