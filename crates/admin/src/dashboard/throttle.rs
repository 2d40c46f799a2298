//! Sign-in throttling: after a few failures in a row, a user name (or a
//! client address) must wait before its next attempt, and the wait doubles
//! with each further failure, as OWASP's Authentication Cheat Sheet
//! suggests against online guessing ("exponential back-off"), without
//! locking the account out for good.
//!
//! Counts are kept per user name and per client address in bounded maps
//! ([`MAX_TRACKED`]): entries are forgotten [`FORGET_AFTER`] after their last
//! failure, and when a map is full the entry that failed longest ago makes
//! room. Names that no user has are counted too, so a 429 does not tell
//! which names exist. A success clears its user name's count (not the
//! address's: one known password must not buy guesses at other names).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failures in a row a user name may have before it must wait.
pub const USER_FREE_FAILURES: u32 = 5;
/// Failures in a row a client address may have before it must wait.
pub const ADDR_FREE_FAILURES: u32 = 10;
/// The first wait; each further failure doubles it.
pub const FIRST_WAIT: Duration = Duration::from_secs(2);
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// A count is forgotten this long after its last failure.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Most user names or addresses tracked at once (per map).
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Failure counts by key (a user name or an address), bounded.
#[derive(Debug)]
pub struct Backoff<K> {
    free: u32,
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: Eq + Hash + Clone> Backoff<K> {
    /// A map that lets `free` failures in a row through without a wait.
    pub fn new(free: u32) -> Self {
        Backoff { free, entries: Mutex::new(HashMap::new()) }
    }

    /// How long `key` must still wait, if it must.
    pub fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = entries.get(key)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failure of `key`.
    pub fn fail(&self, key: &K, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !entries.contains_key(key) && entries.len() >= MAX_TRACKED {
            entries.retain(|_, e| now.saturating_duration_since(e.last) < FORGET_AFTER);
            if entries.len() >= MAX_TRACKED
                && let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry(key.clone()).or_insert(Entry { failures: 0, last: now, blocked_until: None });
        if now.saturating_duration_since(entry.last) >= FORGET_AFTER {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        if entry.failures >= self.free {
            let doublings = (entry.failures - self.free).min(16);
            let wait = FIRST_WAIT.saturating_mul(1 << doublings).min(MAX_WAIT);
            entry.blocked_until = Some(now + wait);
        }
    }

    /// Forgets `key`'s failures.
    pub fn clear(&self, key: &K) {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_start_after_the_free_failures_and_double() {
        let b = Backoff::new(3);
        let t0 = Instant::now();
        for _ in 0..2 {
            b.fail(&"ops", t0);
        }
        assert_eq!(b.wait(&"ops", t0), None);
        b.fail(&"ops", t0);
        assert_eq!(b.wait(&"ops", t0), Some(FIRST_WAIT));
        assert_eq!(b.wait(&"ops", t0 + FIRST_WAIT), None, "the wait ends");
        b.fail(&"ops", t0 + FIRST_WAIT);
        assert_eq!(b.wait(&"ops", t0 + FIRST_WAIT), Some(FIRST_WAIT * 2));
        for _ in 0..40 {
            b.fail(&"ops", t0 + FIRST_WAIT);
        }
        assert_eq!(b.wait(&"ops", t0 + FIRST_WAIT), Some(MAX_WAIT));
        assert_eq!(b.wait(&"dev", t0), None, "per key");
        b.clear(&"ops");
        assert_eq!(b.wait(&"ops", t0 + FIRST_WAIT), None);
    }

    #[test]
    fn counts_are_forgotten_after_a_quiet_spell() {
        let b = Backoff::new(2);
        let t0 = Instant::now();
        b.fail(&1u32, t0);
        b.fail(&1u32, t0 + FORGET_AFTER);
        assert_eq!(b.wait(&1u32, t0 + FORGET_AFTER), None, "the first failure was forgotten");
    }

    #[test]
    fn the_map_is_bounded() {
        let b = Backoff::new(1);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED {
            b.fail(&i, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(b.len(), MAX_TRACKED);
        let later = t0 + Duration::from_secs(60);
        b.fail(&usize::MAX, later);
        assert_eq!(b.len(), MAX_TRACKED);
        assert!(b.wait(&0, later).is_none(), "the oldest entry made room");
        assert!(b.wait(&usize::MAX, later).is_some());
    }
}
