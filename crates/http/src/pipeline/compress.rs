//! Phase "compress": `Accept-Encoding` in the key and the origin request,
//! and the compressed variants the edge serves (CloudFront Developer
//! Guide, "Serve compressed files"; the rules themselves are in
//! [`crate::compress`]).
//!
//! **Negotiation** ([`negotiate`], before the key phase). Nothing changes
//! unless the cache policy enables gzip and/or brotli; then the viewer's
//! `Accept-Encoding` is replaced, for the key, the origin and `Vary`
//! matching alike:
//! - behavior without `compress`: by the normalised value (`br,gzip`,
//!   `br`, `gzip`), which joins the cache key, or by `identity` when the
//!   viewer accepts none of the allowed codings (no header: none is sent).
//!   The origin compresses or not; what it sends is stored under that key.
//! - behavior with `compress`: by `identity`. The edge fetches and stores
//!   the identity object once, under a key without `Accept-Encoding`, and
//!   makes each compressed variant from it, once per coding. The request
//!   remembers the coding it will be served (brotli, else gzip, among those
//!   the policy allows and the viewer accepts).
//!
//! **Variants in the cache** ([`Ctx::serve`], in the respond phase). The
//! identity object is looked up (and freshened, revalidated, coalesced) as
//! any object. If it is compressible and the request has a coding, the
//! variant is looked up under the identity key plus the coding
//! ([`crate::key::compressed_key`]) plus the identity object's `Vary`
//! values (so each `Vary` variant of the identity has variants of its
//! own), linked to the identity object's body
//! ([`shardgate_cache::memory::derived`]):
//! - found for this body: served;
//! - made from this body but too large for the memory tier
//!   (`max_object_bytes`): the identity body is served, without
//!   compressing again until the body changes (the request that made it
//!   was served the variant);
//! - not made yet, or made from an older body (a new 200, an invalidation,
//!   an eviction): the first request makes it (waiting for the identity
//!   body to be complete, compressing in a blocking task) and stores it in
//!   the memory tier; concurrent requests wait for it. A 304 that freshens
//!   the identity object keeps its body, so the variant stays valid.
//! - Headers, status, `Age` and freshness are the identity object's at the
//!   time of serving, with `Content-Encoding`, the variant's
//!   `Content-Length`, a weak `ETag` and `Vary: Accept-Encoding`; a
//!   conditional request compares against the weak `ETag` (weak comparison,
//!   so `If-None-Match: W/"x"` gets a 304), and a `Range` is served from
//!   the compressed bytes (a range applies to the selected representation,
//!   RFC 9110 §14.1.1; `If-Range` needs a strong validator, so a weak
//!   `ETag` never satisfies it).
//!
//! An identity answer to a compress behavior's compressible object gets
//! `Vary: Accept-Encoding` too. Objects the origin sent with a
//! `Content-Encoding` are served as sent. Compression failures serve the
//! identity body. Without the flags, or on a behavior without `compress`,
//! serving a hit does no new work.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Response, Version};
use shardgate_cache::{CachePhase, Derived, Fill, FillEnd, Object, Read};
use shardgate_model::CachePolicy;
use shardgate_model::edge::Behavior;

use super::Ctx;
use crate::body::EdgeBody;
use crate::compress::{self, Coding, Codings};
use crate::key;

/// How many times a request that waited for another to make a variant
/// asks again before serving the identity body.
const MAX_VARIANT_ROUNDS: usize = 3;

/// What negotiation decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiated {
    /// The edge compresses for this behavior.
    pub(crate) edge: bool,
    /// The coding the viewer gets when the object is compressible.
    pub(crate) coding: Option<Coding>,
    /// The normalised `Accept-Encoding` that joins the cache key.
    pub(crate) key_value: Option<&'static str>,
    /// What the viewer's `Accept-Encoding` accepted (none for HTTP/1.0),
    /// and whether it sent one: negotiation rewrites the header, so a
    /// request made for the viewer under another behavior (a custom error
    /// page) negotiates again from these ([`renegotiate`]). Meaningless
    /// when compression is [`Negotiated::OFF`] (the header is untouched).
    pub(crate) viewer: Codings,
    /// Whether the viewer sent an `Accept-Encoding`.
    pub(crate) viewer_sent: bool,
}

impl Negotiated {
    /// Compression not configured: the request is left alone.
    pub(crate) const OFF: Negotiated =
        Negotiated { edge: false, coding: None, key_value: None, viewer: Codings::NONE, viewer_sent: false };

    /// Whether negotiation left the request alone.
    fn is_off(&self) -> bool {
        *self == Negotiated::OFF
    }

    /// Adds the normalised `Accept-Encoding` to the cache key, if it joins it.
    pub(crate) fn extend_key(&self, key: &mut String) {
        if let Some(v) = self.key_value {
            key::push_accept_encoding(key, v);
        }
    }
}

/// Phase "compress" (negotiation): see the module documentation. Rewrites
/// the request's `Accept-Encoding` in place when the policy enables gzip or
/// brotli.
pub(crate) fn negotiate(behavior: &Behavior, policy: &CachePolicy, parts: &mut Parts) -> Negotiated {
    let allowed = Codings { br: policy.enable_accept_encoding_brotli, gzip: policy.enable_accept_encoding_gzip };
    if !allowed.any() {
        return Negotiated::OFF;
    }
    let headers = &mut parts.headers;
    // CloudFront removes Accept-Encoding from HTTP/1.0 requests.
    let viewer = if parts.version == Version::HTTP_10 { Codings::NONE } else { compress::accepted(headers) };
    let viewer_sent = headers.contains_key(header::ACCEPT_ENCODING);
    let accepted = viewer.and(allowed);
    if behavior.compress {
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        return Negotiated { edge: true, coding: accepted.preferred(), key_value: None, viewer, viewer_sent };
    }
    let key_value = accepted.normalised();
    match key_value {
        Some(v) => {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
        }
        None if headers.contains_key(header::ACCEPT_ENCODING) => {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        None => {}
    }
    Negotiated { edge: false, coding: None, key_value, viewer, viewer_sent }
}

/// Negotiation for another request made on the viewer's behalf (a custom
/// error page) under its own `behavior` and `policy`: `viewer` is what the
/// viewer's request negotiated, and `parts` (headers taken from the
/// viewer's request after that negotiation) gets an `Accept-Encoding`
/// accepting what the viewer's did, then [`negotiate`] runs as for a
/// viewer's request.
pub(crate) fn renegotiate(
    behavior: &Behavior,
    policy: &CachePolicy,
    parts: &mut Parts,
    viewer: &Negotiated,
) -> Negotiated {
    if !viewer.is_off() {
        // The viewer's header was rewritten for the viewer's own policy:
        // put back an equivalent of what it accepted.
        match (viewer.viewer.normalised(), viewer.viewer_sent) {
            (Some(v), _) => {
                parts.headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            }
            (None, true) => {
                parts.headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            }
            (None, false) => {
                parts.headers.remove(header::ACCEPT_ENCODING);
            }
        }
    }
    negotiate(behavior, policy, parts)
}

impl Ctx {
    /// Phase "respond" for a stored object: [`Ctx::respond`], or its
    /// compressed variant when the edge compresses for this request.
    pub(crate) async fn serve(&self, object: &Arc<Object>, phase: CachePhase) -> Response<EdgeBody> {
        if !self.encoding.edge {
            return self.respond(object, phase);
        }
        self.serve_with(object, phase, &HeaderMap::new()).await
    }

    /// [`Ctx::serve`] with the fields only this request gets
    /// ([`Ctx::respond_with`]).
    pub(crate) async fn serve_with(
        &self,
        object: &Arc<Object>,
        phase: CachePhase,
        own: &HeaderMap,
    ) -> Response<EdgeBody> {
        if !self.encoding.edge || !compress::compressible(object.status, &object.headers, object.content_length) {
            return self.respond_with(object, phase, own);
        }
        let variant = match self.encoding.coding {
            Some(coding) => self.compressed(object, coding).await,
            None => None,
        };
        match variant {
            Some(v) => self.respond_with(&v, phase, own),
            None => {
                let mut resp = self.respond_with(object, phase, own);
                compress::add_vary(resp.headers_mut());
                resp
            }
        }
    }

    /// The `coding` variant of `identity`, as served: found, or made now
    /// (see the module documentation). `None`: serve the identity body.
    async fn compressed(&self, identity: &Arc<Object>, coding: Coding) -> Option<Arc<Object>> {
        let key = variant_key(&self.key, identity, coding);
        // A variant already made is served without the (large, boxed)
        // future that waits for one or makes it.
        match self.svc.cache.derived(&key, &identity.body) {
            Derived::Found(made) => Some(view(identity, &made, coding)),
            Derived::Unstored => None,
            answer => Box::pin(self.compressed_slowly(identity, coding, &key, answer)).await,
        }
    }

    /// [`Ctx::compressed`] when the variant is not there yet: `answer` is
    /// the cache's first answer for `key`.
    async fn compressed_slowly(
        &self,
        identity: &Arc<Object>,
        coding: Coding,
        key: &str,
        mut answer: Derived,
    ) -> Option<Arc<Object>> {
        for _ in 0..MAX_VARIANT_ROUNDS {
            match answer {
                Derived::Found(made) => return Some(view(identity, &made, coding)),
                // Too large to store when made from this body: not again.
                Derived::Unstored => return None,
                Derived::Wait(pending) => {
                    // Stored or failed, ask again: a failed maker leaves the
                    // lock free for this request to try.
                    pending.wait().await;
                }
                Derived::Make(leader) => {
                    // In a task of its own: if this viewer leaves, the
                    // requests waiting for the variant still get it.
                    let source = Arc::clone(identity);
                    let max = self.svc.cache.settings().max_object_bytes;
                    let target = self.viewer_target.clone();
                    let made = tokio::spawn(async move {
                        let packed = make(&source, coding).await;
                        match packed {
                            Ok(body) => {
                                let len = body.len() as u64;
                                let stored = len <= max;
                                tracing::debug!(target = %target, coding = coding.token(), bytes = len, stored, "made a compressed variant");
                                let fill = Arc::new(Fill::complete(vec![body]));
                                let object = variant_object(&source, fill, len, coding);
                                if stored {
                                    Some(leader.store_derived(object, &source.body))
                                } else {
                                    // Too large for the memory tier: this
                                    // request only; later ones serve the
                                    // identity body without compressing again.
                                    leader.unstored_derived(&source.body);
                                    Some(Arc::new(object))
                                }
                            }
                            Err(e) => {
                                tracing::warn!(target = %target, coding = coding.token(), error = %e, "cannot compress; serving the identity body");
                                leader.failed();
                                None
                            }
                        }
                    })
                    .await
                    .ok()
                    .flatten();
                    return made.map(|m| view(identity, &m, coding));
                }
            }
            answer = self.svc.cache.derived(key, &identity.body);
        }
        None
    }
}

/// The key of `identity`'s `coding` variant: the identity key plus the
/// coding ([`key::compressed_key`]) plus the request header values
/// `identity` was selected by (its `Vary` values). Each `Vary` variant of
/// the identity (up to the cache's variants per key) so has variants of
/// its own, each linked to its own source body: viewers that alternate
/// between them never replace each other's variant.
///
/// Fields as in [`key::cache_key`], each length-prefixed so a value cannot
/// forge another's boundary: `h` the header name, then `v` its value, `x`
/// its bytes in hex when they are not UTF-8, or `n` when the request had
/// none.
fn variant_key(identity_key: &str, identity: &Object, coding: Coding) -> String {
    use std::fmt::Write;
    let mut k = key::compressed_key(identity_key, coding.token());
    for (name, value) in &identity.vary {
        // `fmt::Write for String` only appends and always returns `Ok`.
        write!(k, "h{}:{name}", name.as_str().len()).ok();
        match value.as_ref().map(|v| std::str::from_utf8(v.as_bytes())) {
            None => k.push_str("n0:"),
            Some(Ok(text)) => {
                write!(k, "v{}:{text}", text.len()).ok();
            }
            Some(Err(_)) => {
                let raw = value.as_ref().map_or(&[][..], |v| v.as_bytes());
                write!(k, "x{}:", raw.len() * 2).ok();
                for b in raw {
                    write!(k, "{b:02x}").ok();
                }
            }
        }
    }
    k
}

/// Why a variant could not be made.
#[derive(Debug, thiserror::Error)]
enum MakeError {
    #[error("the identity body failed: {0}")]
    Source(String),
    #[error("compression: {0}")]
    Compress(#[from] std::io::Error),
    #[error("compression task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Waits for `source`'s body to be complete, then compresses it with
/// `coding` in a blocking task.
async fn make(source: &Object, coding: Coding) -> Result<bytes::Bytes, MakeError> {
    let fill = Arc::clone(&source.body);
    // The body's writer ends it (complete, failed, or on its read timeout).
    let mut seen = fill.version();
    loop {
        match fill.end() {
            Some(FillEnd::Complete) => break,
            Some(FillEnd::Failed(reason)) => return Err(MakeError::Source(reason)),
            None => seen = fill.changed(seen).await,
        }
    }
    let packed = tokio::task::spawn_blocking(move || {
        // A disk-tier body is read here, off the runtime, piece by piece.
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        loop {
            match fill.read_at(offset) {
                Read::Data(b) => {
                    offset += b.len() as u64;
                    pieces.push(b);
                }
                Read::End(FillEnd::Complete) => break,
                Read::End(FillEnd::Failed(reason)) => return Err(MakeError::Source(reason)),
                // A complete body has no pending bytes.
                Read::Pending => return Err(MakeError::Source("the body is not complete".into())),
            }
        }
        Ok(compress::compress(coding, pieces.iter().map(|b| b.as_ref()))?)
    })
    .await??;
    Ok(packed)
}

/// The stored form of a variant: `identity`'s status, targets and
/// freshness, its headers as [`compress::encoded_headers`] makes them, and
/// the compressed `body` of `len` bytes (memory tier).
fn variant_object(identity: &Object, body: Arc<Fill>, len: u64, coding: Coding) -> Object {
    Object {
        status: identity.status,
        headers: compress::encoded_headers(&identity.headers, coding, len),
        body,
        content_length: Some(len),
        received: identity.received,
        dates: identity.dates,
        initial_age: identity.initial_age,
        fresh_until: identity.fresh_until,
        stale_while_revalidate: identity.stale_while_revalidate,
        stale_if_error: identity.stale_if_error,
        namespace: identity.namespace.clone(),
        generation: identity.generation,
        viewer_target: identity.viewer_target.clone(),
        origin_target: identity.origin_target.clone(),
        vary: Vec::new(),
        disk: None,
    }
}

/// The variant as served now: the identity object's current headers and
/// freshness (a 304 may have freshened them since the variant was made)
/// over the variant's body.
fn view(identity: &Object, made: &Object, coding: Coding) -> Arc<Object> {
    let len = made.content_length.unwrap_or_else(|| made.body.len());
    Arc::new(variant_object(identity, Arc::clone(&made.body), len, coding))
}

#[cfg(test)]
mod tests {
    use http::Request;
    use shardgate_model::edge::Behavior;

    use super::*;

    fn parts(version: Version, ae: Option<&str>) -> Parts {
        let mut b = Request::builder().uri("/a").version(version);
        if let Some(v) = ae {
            b = b.header(header::ACCEPT_ENCODING, v);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn policy(gzip: bool, br: bool) -> CachePolicy {
        CachePolicy { enable_accept_encoding_gzip: gzip, enable_accept_encoding_brotli: br, ..CachePolicy::builtin() }
    }

    fn behavior(compress: bool) -> Behavior {
        Behavior {
            pattern: None,
            origin: "o".into(),
            cache_policy: None,
            origin_request_policy: None,
            allowed_methods: Default::default(),
            cached_methods: Default::default(),
            compress,
            rewrite: None,
            function_associations: Vec::new(),
        }
    }

    fn ae(p: &Parts) -> Option<&str> {
        p.headers.get(header::ACCEPT_ENCODING).map(|v| v.to_str().expect("ascii"))
    }

    #[test]
    fn flags_off_leave_the_request_alone() {
        let mut p = parts(Version::HTTP_11, Some("gzip, br"));
        assert_eq!(negotiate(&behavior(true), &policy(false, false), &mut p), Negotiated::OFF);
        assert_eq!(ae(&p), Some("gzip, br"));
    }

    #[test]
    fn origin_compression_keys_on_the_normalised_value() {
        let cases = [
            (Some("gzip, deflate, br"), (true, true), Some("br,gzip"), Some("br,gzip")),
            (Some("gzip, deflate, br"), (true, false), Some("gzip"), Some("gzip")),
            (Some("br"), (true, false), None, Some("identity")),
            (Some("deflate"), (true, true), None, Some("identity")),
            (None, (true, true), None, None),
        ];
        for (viewer, (gzip, br), key, origin) in cases {
            let mut p = parts(Version::HTTP_11, viewer);
            let n = negotiate(&behavior(false), &policy(gzip, br), &mut p);
            assert_eq!((n.edge, n.coding, n.key_value), (false, None, key), "{viewer:?}");
            assert_eq!(n.viewer_sent, viewer.is_some());
            assert_eq!(ae(&p), origin, "{viewer:?}");
        }
    }

    #[test]
    fn edge_compression_fetches_identity_and_picks_a_coding() {
        let cases = [
            (Version::HTTP_11, Some("gzip, deflate, br"), (true, true), Some(Coding::Br)),
            (Version::HTTP_11, Some("gzip, deflate, br"), (true, false), Some(Coding::Gzip)),
            (Version::HTTP_11, Some("gzip"), (true, true), Some(Coding::Gzip)),
            (Version::HTTP_11, Some("br;q=0, gzip"), (true, true), Some(Coding::Gzip)),
            (Version::HTTP_11, None, (true, true), None),
            (Version::HTTP_10, Some("gzip"), (true, true), None),
        ];
        for (version, viewer, (gzip, br), coding) in cases {
            let mut p = parts(version, viewer);
            let n = negotiate(&behavior(true), &policy(gzip, br), &mut p);
            assert_eq!((n.edge, n.coding, n.key_value), (true, coding, None), "{version:?} {viewer:?}");
            assert_eq!(ae(&p), Some("identity"));
        }
    }

    #[test]
    fn each_vary_variant_of_the_identity_has_a_key_of_its_own() {
        let with = |vary: Vec<(header::HeaderName, Option<HeaderValue>)>| {
            let o = Object {
                status: http::StatusCode::OK,
                headers: HeaderMap::new(),
                body: Arc::new(Fill::complete(Vec::new())),
                content_length: Some(0),
                received: std::time::SystemTime::now(),
                dates: shardgate_cache::StoredDates::of(&HeaderMap::new(), std::time::SystemTime::now()),
                initial_age: std::time::Duration::ZERO,
                fresh_until: std::time::Instant::now(),
                stale_while_revalidate: std::time::Duration::ZERO,
                stale_if_error: std::time::Duration::ZERO,
                namespace: "d1".into(),
                generation: 0,
                viewer_target: "/a".into(),
                origin_target: "/a".into(),
                vary,
                disk: None,
            };
            variant_key("d1:dt2:/a", &o, Coding::Br)
        };
        let lang = header::HeaderName::from_static("x-lang");
        let en = with(vec![(lang.clone(), Some(HeaderValue::from_static("en")))]);
        let de = with(vec![(lang.clone(), Some(HeaderValue::from_static("de")))]);
        let absent = with(vec![(lang.clone(), None)]);
        let empty = with(vec![(lang.clone(), Some(HeaderValue::from_static("")))]);
        let raw = with(vec![(lang.clone(), Some(HeaderValue::from_bytes(b"\xe9").expect("obs-text")))]);
        assert_eq!(with(Vec::new()), "d1:dt2:/az2:br");
        assert_eq!(en, "d1:dt2:/az2:brh6:x-langv2:en");
        assert_eq!(raw, "d1:dt2:/az2:brh6:x-langx2:e9");
        let all = [&en, &de, &absent, &empty, &raw];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn keys_of_variants_never_meet_fetched_keys() {
        let mut a = String::from("d1:dt2:/a");
        Negotiated { key_value: Some("gzip"), ..Negotiated::OFF }.extend_key(&mut a);
        assert_eq!(a, "d1:dt2:/ae4:gzip");
        assert_eq!(key::compressed_key("d1:dt2:/a", "br"), "d1:dt2:/az2:br");
        assert_ne!(key::compressed_key("d1:dt2:/a", "gzip"), a);
    }
}
