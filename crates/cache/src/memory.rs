//! The memory tier: objects by cache key, their `Vary` variants, the
//! coalescing lock per key, and LRU eviction within a byte budget.
//!
//! One mutex guards the index; it is held only for map operations, never
//! across I/O. Bodies live in [`Fill`]s outside the lock, so a hit costs one
//! short critical section and readers of a large object never block writers
//! of another.
//!
//! Coalescing: the first request that misses (or finds a stale object)
//! becomes the [`Leader`] for its key and fetches from the origin; requests
//! for the same key that arrive meanwhile get [`Lookup::Wait`] and wait for
//! the leader's [`Outcome`]. A stored object is inserted as soon as its
//! response head arrives, body still filling, so waiters stream it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::sync::watch;

use crate::conditional::StoredDates;
use crate::disk::{Disk, DiskRef, DiskSettings};
use crate::fill::Fill;
use crate::freshness::list_members;

/// Most `Vary` variants kept per key; the oldest goes first.
const MAX_VARIANTS: usize = 16;
/// Bytes charged per object on top of its body, for its index entry and headers.
const OVERHEAD: u64 = 512;

/// Budget of the memory tier.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Bytes of bodies (plus per-object overhead) held in memory at most.
    pub memory_bytes: u64,
    /// Larger objects go to the disk tier (or, without one, are served but
    /// not stored).
    pub max_object_bytes: u64,
}

/// A stored response.
#[derive(Debug)]
pub struct Object {
    /// Status.
    pub status: StatusCode,
    /// Response headers as stored (hop-by-hop and `Age` removed).
    pub headers: HeaderMap,
    /// The body, possibly still filling.
    pub body: Arc<Fill>,
    /// `Content-Length` from the origin, if it sent one.
    pub content_length: Option<u64>,
    /// When the response was received, for `Age`.
    pub received: SystemTime,
    /// Its `Last-Modified` and `Date`, parsed once when it is stored, for
    /// conditional requests (`StoredDates::of(&headers, received)`).
    pub dates: StoredDates,
    /// Its age when it arrived (RFC 9111 §4.2.3 `corrected_initial_age`:
    /// the origin's `Age`, the fetch time and the apparent age from `Date`).
    pub initial_age: Duration,
    /// Fresh until then.
    pub fresh_until: Instant,
    /// May be served stale while revalidating until `fresh_until + this`.
    pub stale_while_revalidate: Duration,
    /// May be served stale on origin errors until `fresh_until + this`.
    pub stale_if_error: Duration,
    /// The namespace (distribution id) the object belongs to.
    pub namespace: Box<str>,
    /// Config generation when the fetch started; invalidations newer than
    /// this cover the object.
    pub generation: u64,
    /// The viewer's request target (path and query), for invalidation.
    pub viewer_target: String,
    /// The origin's request target after rewrites, for invalidation.
    pub origin_target: String,
    /// The request's values of the response's `Vary` headers.
    pub vary: Vec<(HeaderName, Option<HeaderValue>)>,
    /// The files of a disk-tier object.
    pub disk: Option<DiskRef>,
}

impl Object {
    /// Whether it is fresh at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.fresh_until
    }

    /// Whether a 304 may refresh it: only once its whole body has arrived.
    /// A body still arriving may fail, and an object merged from it would
    /// then keep a broken body; so a revalidation of an incomplete object
    /// is a full fetch (no validators).
    pub fn revalidatable(&self) -> bool {
        matches!(self.body.end(), Some(crate::fill::FillEnd::Complete))
    }

    /// Whether it may be served stale while a revalidation runs.
    pub fn within_stale_while_revalidate(&self, now: Instant) -> bool {
        self.fresh_until.checked_add(self.stale_while_revalidate).is_none_or(|until| now < until)
    }

    /// Whether it may be served stale because the origin failed.
    pub fn within_stale_if_error(&self, now: Instant) -> bool {
        self.fresh_until.checked_add(self.stale_if_error).is_none_or(|until| now < until)
    }

    /// The `Age` to send: its age on arrival plus the time held here
    /// (RFC 9111 §4.2.3 `current_age`).
    pub fn age(&self, now: SystemTime) -> u64 {
        self.initial_age.saturating_add(now.duration_since(self.received).unwrap_or(Duration::ZERO)).as_secs()
    }

    /// Whether this variant was stored for a request with `req`'s values of
    /// the `Vary` headers. Values compare as lists (RFC 9111 §4.1: "combining
    /// all field lines" and normalising whitespace): `a,b`, `a, b` and two
    /// lines `a` and `b` are the same; an absent header matches only absent.
    /// No allocation: this runs on every hit of a varying object.
    pub fn matches_vary(&self, req: &HeaderMap) -> bool {
        self.vary.iter().all(|(name, value)| match value {
            None => !req.contains_key(name),
            Some(stored) => {
                req.contains_key(name)
                    && list_members(stored.as_bytes())
                        .eq(req.get_all(name).iter().flat_map(|v| list_members(v.as_bytes())))
            }
        })
    }
}

/// The request's values for the header names a response's `Vary` lists,
/// each normalised to its list members joined by `", "` (see
/// [`Object::matches_vary`]). Names are read from every `Vary` line.
pub fn vary_values(response: &HeaderMap, request: &HeaderMap) -> Vec<(HeaderName, Option<HeaderValue>)> {
    let mut out: Vec<(HeaderName, Option<HeaderValue>)> = Vec::new();
    for v in response.get_all(http::header::VARY) {
        for name in list_members(v.as_bytes()) {
            if let Ok(name) = HeaderName::from_bytes(&name.to_ascii_lowercase())
                && !out.iter().any(|(n, _)| *n == name)
            {
                let value = request.contains_key(&name).then(|| {
                    let joined = request
                        .get_all(&name)
                        .iter()
                        .flat_map(|v| list_members(v.as_bytes()))
                        .collect::<Vec<_>>()
                        .join(&b", "[..]);
                    // Joined from valid values with ", ": always valid.
                    HeaderValue::from_bytes(&joined).unwrap_or_else(|_| HeaderValue::from_static(""))
                });
                out.push((name, value));
            }
        }
    }
    out
}

/// What the leader's fetch came to, as waiters see it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A stored (or refreshed) object: serve it if its variant fits.
    Stored(Arc<Object>),
    /// The response may not be shared: fetch on your own.
    Uncacheable,
    /// The fetch failed.
    Failed,
    /// The leader gave the lock back without fetching (a `HEAD` on a miss,
    /// forwarded to the origin as it is, never stored): take the lock or
    /// wait again.
    Withdrawn,
}

/// The coalescing lock of one key.
#[derive(Debug)]
pub struct Pending {
    outcome: watch::Sender<Option<Outcome>>,
}

impl Pending {
    /// Waits for the leader's outcome.
    pub async fn wait(&self) -> Outcome {
        let mut rx = self.outcome.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Outcome::Failed),
            Err(_) => Outcome::Failed,
        }
    }

    fn resolve(&self, outcome: Outcome) {
        self.outcome.send_replace(Some(outcome));
    }
}

/// The result of a lookup.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh object.
    Fresh(Arc<Object>),
    /// A stale object. Exactly one of `leader` (this request revalidates) and
    /// `pending` (another request already does) is set.
    Stale {
        /// The stale object.
        object: Arc<Object>,
        /// This request must revalidate.
        leader: Option<Leader>,
        /// Another request revalidates.
        pending: Option<Arc<Pending>>,
    },
    /// Another request is fetching this key: wait for it.
    Wait(Arc<Pending>),
    /// Nothing stored and nobody fetching: this request fetches.
    Miss(Leader),
}

/// Bytes an object costs in each tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Charge {
    mem: u64,
    disk: u64,
}

impl Charge {
    fn of(o: &Object) -> Self {
        let len = o.content_length.unwrap_or_else(|| o.body.len());
        match o.disk {
            // On disk, memory holds only the index entry and headers.
            Some(_) => Charge { mem: OVERHEAD, disk: len },
            None => Charge { mem: OVERHEAD + len, disk: 0 },
        }
    }
}

impl std::ops::AddAssign for Charge {
    fn add_assign(&mut self, o: Charge) {
        self.mem += o.mem;
        self.disk += o.disk;
    }
}

impl std::ops::SubAssign for Charge {
    fn sub_assign(&mut self, o: Charge) {
        self.mem -= o.mem;
        self.disk -= o.disk;
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// The key, shared with the LRU order.
    key: Arc<str>,
    /// Each object with the bytes charged for it.
    objects: Vec<(Arc<Object>, Charge)>,
    pending: Option<Arc<Pending>>,
    tick: u64,
    charge: Charge,
    /// For a derived variant's key: the body it was derived from (see [`derived`]).
    source: Option<Weak<Fill>>,
    /// For a derived variant's key: the variant made from `source` was too
    /// large to store (see [`derived`]). Charged [`OVERHEAD`] in memory, so
    /// it is evicted like an object.
    unstored: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Keys are shared between the map and the LRU order: a hit moves a
    /// reference count, not a copy of the key.
    slots: HashMap<Arc<str>, Slot>,
    lru: BTreeMap<u64, Arc<str>>,
    tick: u64,
    used: Charge,
    /// Objects held, over all slots (kept here so metrics need no scan).
    objects: usize,
    /// Disk files of removed objects, deleted once the lock is released.
    trash: Vec<DiskRef>,
}

impl Inner {
    fn touch(&mut self, key: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(slot) = self.slots.get_mut(key) {
            if slot.tick != 0 {
                self.lru.remove(&slot.tick);
            }
            slot.tick = tick;
            self.lru.insert(tick, Arc::clone(&slot.key));
        }
    }

    /// The slot of `key`, created if missing.
    fn slot_mut(&mut self, key: &str) -> &mut Slot {
        let k: Arc<str> = Arc::from(key);
        self.slots.entry(Arc::clone(&k)).or_insert_with(|| Slot { key: k, ..Slot::default() })
    }

    fn discard(trash: &mut Vec<DiskRef>, o: &Object, keep_disk: Option<&DiskRef>) {
        if let Some(d) = &o.disk
            && keep_disk.is_none_or(|k| k.id != d.id)
        {
            trash.push(d.clone());
        }
    }

    fn remove_objects(&mut self, key: &str, keep: impl Fn(&Object) -> bool) {
        let Some(slot) = self.slots.get_mut(key) else { return };
        let mut freed = Charge::default();
        let trash = &mut self.trash;
        let before = slot.objects.len();
        slot.objects.retain(|(o, charged)| {
            let k = keep(o);
            if !k {
                freed += *charged;
                Self::discard(trash, o, None);
            }
            k
        });
        self.objects -= before - slot.objects.len();
        slot.charge -= freed;
        self.used -= freed;
        self.drop_if_empty(key);
    }

    fn drop_if_empty(&mut self, key: &str) {
        if let Some(slot) = self.slots.get(key)
            && slot.objects.is_empty()
            && slot.pending.is_none()
            && !slot.unstored
        {
            let tick = slot.tick;
            self.slots.remove(key);
            self.lru.remove(&tick);
        }
    }

    /// Evicts least recently used keys until both tiers are within budget,
    /// skipping keys that hold nothing in the tier that is over.
    fn evict_to(&mut self, mem: u64, disk: u64) {
        let mut cursor = 0u64;
        while self.used.mem > mem || self.used.disk > disk {
            let over_mem = self.used.mem > mem;
            let Some((&tick, key)) = self.lru.range(cursor..).next() else { break };
            let key = key.clone();
            cursor = tick + 1;
            let Some(slot) = self.slots.get_mut(&key) else {
                self.lru.remove(&tick);
                continue;
            };
            let useful = if over_mem { slot.charge.mem > 0 } else { slot.charge.disk > 0 };
            if !useful {
                continue;
            }
            self.lru.remove(&tick);
            self.used -= slot.charge;
            slot.charge = Charge::default();
            self.objects -= slot.objects.len();
            for (o, _) in slot.objects.drain(..) {
                Self::discard(&mut self.trash, &o, None);
            }
            slot.unstored = false;
            slot.tick = 0;
            if slot.pending.is_none() {
                self.slots.remove(&key);
            }
        }
    }
}

/// The cache: the memory tier's index and budget, and the disk tier.
#[derive(Debug)]
pub struct Cache {
    inner: Mutex<Inner>,
    settings: CacheSettings,
    disk: Option<Disk>,
}

impl Cache {
    /// An empty cache with a memory tier only.
    pub fn new(settings: CacheSettings) -> Arc<Self> {
        Arc::new(Cache { inner: Mutex::new(Inner::default()), settings, disk: None })
    }

    /// A cache with a disk tier; the whole objects the tier holds from
    /// before are served again. Returns the cache and how many were found.
    pub fn with_disk(settings: CacheSettings, disk: DiskSettings) -> std::io::Result<(Arc<Self>, usize)> {
        let (disk, found) = Disk::open(disk)?;
        let cache = Arc::new(Cache { inner: Mutex::new(Inner::default()), settings, disk: Some(disk) });
        let n = found.len();
        for (key, object) in found {
            cache.insert(&key, &Arc::new(object));
        }
        Ok((cache, n))
    }

    /// The memory budget.
    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    /// The disk tier, if any.
    pub fn disk(&self) -> Option<&Disk> {
        self.disk.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the index consistent before any
        // call that could panic, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` under the lock, then deletes the files it removed.
    fn with_inner<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let (r, trash) = {
            let mut guard = self.lock();
            let r = f(&mut guard);
            (r, std::mem::take(&mut guard.trash))
        };
        for d in trash {
            d.delete();
        }
        r
    }

    /// Looks `key` up for a request with headers `req`. Objects for which
    /// `valid` returns false (invalidated) are removed first.
    pub fn lookup(
        self: &Arc<Self>,
        key: &str,
        req: &HeaderMap,
        now: Instant,
        valid: impl Fn(&Object) -> bool,
    ) -> Lookup {
        self.with_inner(|inner| {
            if inner.slots.get(key).is_some_and(|s| s.objects.iter().any(|(o, _)| !valid(o))) {
                inner.remove_objects(key, &valid);
            }
            let found = inner
                .slots
                .get(key)
                .and_then(|s| s.objects.iter().find(|(o, _)| o.matches_vary(req)).map(|(o, _)| Arc::clone(o)));
            let pending = inner.slots.get(key).and_then(|s| s.pending.clone());
            match (found, pending) {
                (Some(object), _) if object.is_fresh(now) => {
                    inner.touch(key);
                    Lookup::Fresh(object)
                }
                (Some(object), Some(pending)) => Lookup::Stale { object, leader: None, pending: Some(pending) },
                (Some(object), None) => {
                    let leader = self.lead(inner, key);
                    Lookup::Stale { object, leader: Some(leader), pending: None }
                }
                (None, Some(pending)) => Lookup::Wait(pending),
                (None, None) => Lookup::Miss(self.lead(inner, key)),
            }
        })
    }

    /// Takes the coalescing lock of `key` without a lookup (a waiter whose
    /// variant the leader's response did not fit).
    pub fn lead_or_wait(self: &Arc<Self>, key: &str) -> Result<Leader, Arc<Pending>> {
        let mut inner = self.lock();
        if let Some(p) = inner.slots.get(key).and_then(|s| s.pending.clone()) {
            return Err(p);
        }
        Ok(self.lead(&mut inner, key))
    }

    fn lead(self: &Arc<Self>, inner: &mut Inner, key: &str) -> Leader {
        let pending = Arc::new(Pending { outcome: watch::channel(None).0 });
        inner.slot_mut(key).pending = Some(Arc::clone(&pending));
        Leader { cache: Arc::clone(self), key: key.into(), pending, done: false }
    }

    fn budgets(&self) -> (u64, u64) {
        (self.settings.memory_bytes, self.disk.as_ref().map_or(0, |d| d.settings().max_bytes))
    }

    fn insert(&self, key: &str, object: &Arc<Object>) {
        let (mem, disk) = self.budgets();
        self.with_inner(|inner| {
            let charge = Charge::of(object);
            let mut trash = std::mem::take(&mut inner.trash);
            let slot = inner.slot_mut(key);
            let mut freed = Charge::default();
            let before = slot.objects.len();
            slot.objects.retain(|(o, charged)| {
                let same_variant = o.vary == object.vary;
                if same_variant {
                    freed += *charged;
                    // A refreshed object shares its predecessor's files.
                    Inner::discard(&mut trash, o, object.disk.as_ref());
                }
                !same_variant
            });
            if slot.objects.len() >= MAX_VARIANTS {
                let (o, c) = slot.objects.remove(0);
                freed += c;
                Inner::discard(&mut trash, &o, None);
            }
            slot.objects.push((Arc::clone(object), charge));
            let (before, after) = (before, slot.objects.len());
            slot.charge -= freed;
            slot.charge += charge;
            inner.trash = trash;
            inner.objects = inner.objects + after - before;
            inner.used -= freed;
            inner.used += charge;
            inner.touch(key);
            inner.evict_to(mem, disk);
        });
    }

    fn release(&self, key: &str, pending: &Arc<Pending>) {
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(key)
            && slot.pending.as_ref().is_some_and(|p| Arc::ptr_eq(p, pending))
        {
            slot.pending = None;
        }
        inner.drop_if_empty(key);
    }

    /// Re-charges an object once its body is complete (its size was a
    /// guess when stored without `Content-Length`), evicting if needed, and
    /// writes a disk object's metadata so it survives a restart.
    pub fn settle(&self, key: &str, object: &Arc<Object>) {
        if let Some(d) = &object.disk
            && let Err(e) = Disk::persist(d, &crate::disk::Meta::of(key, object))
        {
            tracing::warn!(file = %d.meta.display(), error = %e, "cannot write a cache object's metadata; it will not survive a restart");
        }
        let (mem, disk) = self.budgets();
        self.with_inner(|inner| {
            let Some(slot) = inner.slots.get_mut(key) else { return };
            let Some(entry) = slot.objects.iter_mut().find(|(o, _)| Arc::ptr_eq(o, object)) else { return };
            let (old, new) = (entry.1, Charge::of(object));
            entry.1 = new;
            slot.charge -= old;
            slot.charge += new;
            inner.used -= old;
            inner.used += new;
            inner.evict_to(mem, disk);
        });
    }

    /// Removes one object (its fill failed).
    pub fn remove(&self, key: &str, object: &Arc<Object>) {
        self.with_inner(|inner| inner.remove_objects(key, |o| !std::ptr::eq(o, Arc::as_ptr(object))));
    }

    /// Removes every object of `key` whose body is `body` (its fill failed
    /// or outgrew its tier): the object stored with it, and any object a
    /// 304 merged from it.
    pub fn remove_body(&self, key: &str, body: &Arc<Fill>) {
        self.with_inner(|inner| inner.remove_objects(key, |o| !Arc::ptr_eq(&o.body, body)));
    }

    /// The objects of `key` whose body is `body`.
    pub fn holding(&self, key: &str, body: &Arc<Fill>) -> Vec<Arc<Object>> {
        let inner = self.lock();
        inner.slots.get(key).map_or_else(Vec::new, |s| {
            s.objects.iter().filter(|(o, _)| Arc::ptr_eq(&o.body, body)).map(|(o, _)| Arc::clone(o)).collect()
        })
    }

    /// Removes every object for which `covered` is true; returns how many.
    pub fn purge(&self, covered: impl Fn(&str, &Object) -> bool) -> usize {
        self.with_inner(|inner| {
            let keys: Vec<Arc<str>> = inner
                .slots
                .iter()
                .filter(|(k, s)| s.objects.iter().any(|(o, _)| covered(k, o)))
                .map(|(k, _)| k.clone())
                .collect();
            let mut n = 0;
            for key in keys {
                let before = inner.slots.get(&key).map_or(0, |s| s.objects.len());
                inner.remove_objects(&key, |o| !covered(&key, o));
                n += before - inner.slots.get(&key).map_or(0, |s| s.objects.len());
            }
            n
        })
    }

    /// Bytes charged to memory, and number of objects.
    pub fn usage(&self) -> (u64, usize) {
        let inner = self.lock();
        (inner.used.mem, inner.objects)
    }

    /// Bytes of bodies on disk.
    pub fn disk_usage(&self) -> u64 {
        self.lock().used.disk
    }
}

/// The right to fetch one key from the origin; resolves the waiters.
/// Dropping it unresolved counts as a failure, so waiters never hang.
#[derive(Debug)]
pub struct Leader {
    cache: Arc<Cache>,
    key: Box<str>,
    pending: Arc<Pending>,
    done: bool,
}

impl Leader {
    /// The key this leader fetches.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Stores `object` (body possibly still filling) and hands it to waiters.
    pub fn store(mut self, object: Object) -> Arc<Object> {
        let object = Arc::new(object);
        self.cache.insert(&self.key, &object);
        self.finish(Outcome::Stored(Arc::clone(&object)));
        object
    }

    /// The response may not be shared or stored.
    pub fn uncacheable(mut self) {
        self.finish(Outcome::Uncacheable);
    }

    /// The fetch failed.
    pub fn failed(mut self) {
        self.finish(Outcome::Failed);
    }

    /// This request will not fetch for the key after all: waiters take the
    /// lock or wait again ([`Outcome::Withdrawn`]).
    pub fn withdraw(mut self) {
        self.finish(Outcome::Withdrawn);
    }

    fn finish(&mut self, outcome: Outcome) {
        self.done = true;
        self.cache.release(&self.key, &self.pending);
        self.pending.resolve(outcome);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Outcome::Failed);
        }
    }
}

pub mod derived;

#[cfg(test)]
mod tests;
