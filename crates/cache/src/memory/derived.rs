//! Derived variants: objects the edge makes from a stored object rather
//! than fetches, such as the gzip or brotli variant of an identity body it
//! compresses. Each lives under a key of its own (the caller's: the source's
//! key plus the coding plus the source's `Vary` values, so each `Vary`
//! variant of a source has its own, one link per key) and is linked to the
//! *body* of the object it was made from, so it follows that object without
//! copying its lifecycle:
//!
//! - a 304 that freshens the source keeps its body, so the link holds and
//!   the variant is reused (no new compression on every revalidation);
//! - a new 200, an invalidation or an eviction of the source gives the next
//!   source a new body, so the link no longer holds: the variant is made
//!   again (and the stale one replaced) by the first request that needs it;
//! - the variant carries the source's namespace, generation and targets, so
//!   an invalidation removes it with the source.
//!
//! A variant too large to store (over the memory tier's largest object) is
//! remembered as such, with the same link ([`Leader::unstored_derived`]):
//! until the source's body changes, requests serve the source as it is
//! ([`Derived::Unstored`]) rather than making the variant again for each
//! one. The marker is charged as an object's index entry and evicted as one.
//!
//! Freshness and headers are the source's: the caller looks the source up
//! first (and revalidates it as usual), then asks for the variant of the
//! source it got ([`Cache::derived`]). Variants are made once per source and
//! key: concurrent requests wait for the one making it, on the same
//! coalescing lock as origin fetches.
//!
//! The link is a [`Weak`](std::sync::Weak) reference to the source's body: it never keeps an
//! evicted body in memory, and while it exists its allocation cannot be
//! reused, so a pointer comparison cannot mistake a new body for the old.

use std::sync::Arc;

use super::{Cache, Leader, OVERHEAD, Object, Pending};
use crate::fill::Fill;

/// The cache's answer for a derived variant.
#[derive(Debug)]
pub enum Derived {
    /// Made from this source already.
    Found(Arc<Object>),
    /// Another request is making it: wait, then ask again.
    Wait(Arc<Pending>),
    /// Nothing made from this source, nobody making it: this request makes
    /// it and stores it with [`Leader::store_derived`] (or, too large to
    /// store, records that with [`Leader::unstored_derived`]).
    Make(Leader),
    /// Made from this source before, and too large to store: serve the
    /// source.
    Unstored,
}

impl Cache {
    /// The variant stored under `key` if it was derived from `source` (a
    /// stored object's body).
    pub fn derived(self: &Arc<Self>, key: &str, source: &Arc<Fill>) -> Derived {
        self.with_inner(|inner| {
            let slot = inner.slots.get(key);
            let same =
                slot.and_then(|s| s.source.as_ref()).is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(source)));
            if same && slot.is_some_and(|s| s.unstored) {
                inner.touch(key);
                return Derived::Unstored;
            }
            let linked = slot.filter(|_| same).and_then(|s| s.objects.first().map(|(o, _)| Arc::clone(o)));
            if let Some(object) = linked {
                inner.touch(key);
                return Derived::Found(object);
            }
            if let Some(pending) = slot.and_then(|s| s.pending.clone()) {
                return Derived::Wait(pending);
            }
            Derived::Make(self.lead(inner, key))
        })
    }
}

impl Leader {
    /// Stores `object`, derived from `source`, replacing any variant made
    /// from an earlier source, and hands it to the waiters.
    pub fn store_derived(self, object: Object, source: &Arc<Fill>) -> Arc<Object> {
        self.cache.with_inner(|inner| {
            // Old variants go first, under the same lock as the new link:
            // nobody may see an old variant linked to the new source.
            inner.remove_objects(&self.key, |_| false);
            if let Some(slot) = inner.slots.get_mut(&*self.key) {
                slot.source = Some(Arc::downgrade(source));
                if std::mem::take(&mut slot.unstored) {
                    slot.charge.mem -= OVERHEAD;
                    inner.used.mem -= OVERHEAD;
                }
            }
        });
        self.store(object)
    }

    /// Records that the variant made from `source` is too large to store
    /// (it was served to the request that made it only), replacing any
    /// variant made from an earlier source: until `source` changes,
    /// [`Cache::derived`] answers [`Derived::Unstored`]. Waiters get
    /// [`Outcome::Uncacheable`](super::Outcome::Uncacheable) and ask again.
    pub fn unstored_derived(self, source: &Arc<Fill>) {
        let (mem, disk) = self.cache.budgets();
        self.cache.with_inner(|inner| {
            inner.remove_objects(&self.key, |_| false);
            if let Some(slot) = inner.slots.get_mut(&*self.key) {
                slot.source = Some(Arc::downgrade(source));
                if !slot.unstored {
                    slot.unstored = true;
                    slot.charge.mem += OVERHEAD;
                    inner.used.mem += OVERHEAD;
                }
            }
            inner.touch(&self.key);
            inner.evict_to(mem, disk);
        });
        self.uncacheable();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::conditional::StoredDates;
    use crate::fill::FillEnd;
    use crate::memory::{CacheSettings, Lookup};

    fn cache() -> Arc<Cache> {
        Cache::new(CacheSettings { memory_bytes: 1 << 20, max_object_bytes: 1 << 20 })
    }

    fn object(body: &'static [u8], target: &str) -> Object {
        let received = SystemTime::now();
        Object {
            status: StatusCode::OK,
            dates: StoredDates::of(&HeaderMap::new(), received),
            headers: HeaderMap::new(),
            body: Arc::new(Fill::complete(vec![Bytes::from_static(body)])),
            content_length: Some(body.len() as u64),
            received,
            initial_age: Duration::ZERO,
            fresh_until: Instant::now() + Duration::from_secs(60),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            namespace: "d".into(),
            generation: 1,
            viewer_target: target.to_owned(),
            origin_target: target.to_owned(),
            vary: Vec::new(),
            disk: None,
        }
    }

    fn stored_source(cache: &Arc<Cache>, body: &'static [u8]) -> Arc<Object> {
        let Lookup::Miss(leader) = cache.lookup("k", &HeaderMap::new(), Instant::now(), |_| true) else {
            panic!("expected a miss")
        };
        leader.store(object(body, "/a"))
    }

    #[tokio::test]
    async fn made_once_per_source_and_followed_by_waiters() {
        let cache = cache();
        let source = stored_source(&cache, b"identity");
        let Derived::Make(leader) = cache.derived("k+br", &source.body) else { panic!("first request makes it") };
        let Derived::Wait(pending) = cache.derived("k+br", &source.body) else { panic!("second one waits") };
        let made = leader.store_derived(object(b"packed", "/a"), &source.body);
        assert!(matches!(pending.wait().await, crate::memory::Outcome::Stored(_)));
        let Derived::Found(found) = cache.derived("k+br", &source.body) else { panic!("then it is found") };
        assert!(Arc::ptr_eq(&found, &made));
        assert_eq!(found.body.end(), Some(FillEnd::Complete));
    }

    #[test]
    fn a_new_source_body_is_not_served_the_old_variant() {
        let cache = cache();
        let first = stored_source(&cache, b"v1");
        let Derived::Make(leader) = cache.derived("k+br", &first.body) else { panic!("make") };
        leader.store_derived(object(b"packed v1", "/a"), &first.body);
        // A new 200 for the source: a new body.
        let second = object(b"v2", "/a");
        let second_body = Arc::clone(&second.body);
        let Derived::Make(leader) = cache.derived("k+br", &second_body) else {
            panic!("the old variant must not match")
        };
        let made = leader.store_derived(object(b"packed v2", "/a"), &second_body);
        let Derived::Found(found) = cache.derived("k+br", &second_body) else { panic!("found") };
        assert!(Arc::ptr_eq(&found, &made));
        assert_eq!(cache.usage().1, 2, "the source and one variant: the old variant was replaced");
        assert!(matches!(cache.derived("k+br", &first.body), Derived::Make(_)), "nor the new one the old source");
    }

    #[tokio::test]
    async fn a_variant_too_large_to_store_is_made_once_per_source() {
        let cache = cache();
        let source = stored_source(&cache, b"identity");
        let Derived::Make(leader) = cache.derived("k+br", &source.body) else { panic!("make") };
        let Derived::Wait(pending) = cache.derived("k+br", &source.body) else { panic!("a waiter") };
        let before = cache.usage();
        leader.unstored_derived(&source.body);
        assert!(matches!(pending.wait().await, crate::memory::Outcome::Uncacheable));
        // The waiter, and every later request, serves the source.
        assert!(matches!(cache.derived("k+br", &source.body), Derived::Unstored));
        assert!(matches!(cache.derived("k+br", &source.body), Derived::Unstored));
        assert_eq!(cache.usage(), (before.0 + OVERHEAD, before.1), "the marker costs an index entry, no object");
        // Another coding is another key.
        assert!(matches!(cache.derived("k+gzip", &source.body), Derived::Make(_)));

        // A new body for the source: made again, and this time stored.
        let second = object(b"v2", "/a");
        let second_body = Arc::clone(&second.body);
        let Derived::Make(leader) = cache.derived("k+br", &second_body) else { panic!("a new source makes it") };
        let made = leader.store_derived(object(b"packed", "/a"), &second_body);
        let Derived::Found(found) = cache.derived("k+br", &second_body) else { panic!("found") };
        assert!(Arc::ptr_eq(&found, &made));
        assert_eq!(cache.usage().0, before.0 + OVERHEAD + 6, "the marker's charge went with it");
    }

    #[test]
    fn an_unstored_marker_is_evicted_like_an_object() {
        let cache = Cache::new(CacheSettings { memory_bytes: 4 * OVERHEAD, max_object_bytes: OVERHEAD });
        let source = stored_source(&cache, b"identity");
        let Derived::Make(leader) = cache.derived("k+br", &source.body) else { panic!("make") };
        leader.unstored_derived(&source.body);
        // Fill the tier with newer objects: the marker, least recently used after the source, goes.
        for key in ["x", "y", "z"] {
            let Lookup::Miss(l) = cache.lookup(key, &HeaderMap::new(), Instant::now(), |_| true) else {
                panic!("miss")
            };
            l.store(object(b"o", "/x"));
        }
        assert!(cache.usage().0 <= 4 * OVERHEAD);
        assert!(matches!(cache.derived("k+br", &source.body), Derived::Make(_)), "the marker was evicted");
    }

    #[test]
    fn purged_with_its_source() {
        let cache = cache();
        let source = stored_source(&cache, b"identity");
        let Derived::Make(leader) = cache.derived("k+gzip", &source.body) else { panic!("make") };
        leader.store_derived(object(b"packed", "/a"), &source.body);
        assert_eq!(cache.purge(|_, o| o.viewer_target == "/a"), 2);
        assert!(matches!(cache.derived("k+gzip", &source.body), Derived::Make(_)));
    }
}
