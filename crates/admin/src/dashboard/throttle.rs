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
//!
//! A client address is counted by [`addr_key`]: an IPv4 address whole, an
//! IPv6 address by its /64 prefix. A /64 is the smallest subnet an IPv6
//! network gives out (RFC 4291 §2.5.1 interface identifiers are 64 bits;
//! RFC 6177 recommends at least a /64 per end site), so one client can
//! pick any of 2^64 source addresses, and counting them one by one would
//! give it a fresh count per attempt.
//!
//! The address is the TCP peer's: `X-Forwarded-For` and `Forwarded` are not
//! trusted (anyone can send them). Behind a reverse proxy or a Kubernetes
//! ingress every user therefore shares the proxy's address, and the
//! per-address wait, once [`ADDR_FREE_FAILURES`] failures in a row have
//! started it, applies to all of them at once; the per-user-name wait
//! still applies to each name alone.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
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

/// Bits of an IPv6 address that name one client for counting: its /64.
pub const IPV6_PREFIX_BITS: u32 = 64;

/// The key failures of client address `ip` are counted under: an IPv4
/// address (or an IPv4-mapped IPv6 one) whole, an IPv6 address with all but
/// its first [`IPV6_PREFIX_BITS`] bits zeroed.
pub fn addr_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - IPV6_PREFIX_BITS);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

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
    fn ipv6_clients_are_counted_by_their_64_prefix() {
        let key = |s: &str| addr_key(s.parse().expect("address"));
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), key("2001:db8:1:2::1"), "one /64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::".parse::<IpAddr>().expect("prefix"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"), "another /64");
        assert_eq!(key("192.0.2.7"), "192.0.2.7".parse::<IpAddr>().expect("v4"), "IPv4 whole");
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"), "IPv4-mapped is IPv4");
        assert_eq!(key("::1"), "::".parse::<IpAddr>().expect("v6"));

        // Failures from many addresses of one /64 add up to one wait.
        let b = Backoff::new(3);
        let t0 = Instant::now();
        for host in 1..=3u16 {
            b.fail(&key(&format!("2001:db8:1:2::{host:x}")), t0);
        }
        assert_eq!(b.wait(&key("2001:db8:1:2::99"), t0), Some(FIRST_WAIT));
        assert_eq!(b.wait(&key("2001:db8:1:3::1"), t0), None);
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
