//! `RateBasedStatement`'s counters: requests per aggregation key over a
//! sliding window, in a bounded table (AWS WAF developer guide, "Rate-based
//! rule statement").

use std::collections::HashMap;
use std::net::IpAddr;

/// Most client addresses a rate-based rule tracks at once.
pub(super) const RATE_MAX_KEYS: usize = 100_000;

/// Requests per client address over a window, estimated from the current
/// and previous fixed windows (the sliding-window approximation: the
/// previous window's count weighs what is left of it).
#[derive(Debug)]
pub struct RateLimiter {
    window: std::time::Duration,
    limit: u64,
    epoch: std::time::Instant,
    /// Per address: (window index, count in it, count in the one before);
    /// and the window index of the last sweep of old addresses.
    pub(super) counts: std::sync::Mutex<(RateCounts, Option<u64>)>,
}

/// Per address: (window index, count in it, count in the one before).
type RateCounts = HashMap<IpAddr, (u64, u64, u64)>;

impl RateLimiter {
    pub(super) fn new(window: std::time::Duration, limit: u64) -> Self {
        RateLimiter {
            window,
            limit,
            epoch: std::time::Instant::now(),
            counts: std::sync::Mutex::new((HashMap::new(), None)),
        }
    }

    pub(super) fn same_shape(&self, other: &RateLimiter) -> bool {
        self.window == other.window && self.limit == other.limit
    }

    /// Counts one request from `ip` at `now`; whether its rate is over the limit.
    pub(super) fn hit(&self, ip: IpAddr, now: std::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.epoch);
        let w = self.window.as_nanos().max(1);
        let index = (elapsed.as_nanos() / w) as u64;
        let into = (elapsed.as_nanos() % w) as f64 / w as f64;
        let mut guard = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, swept) = &mut *guard;
        if map.len() >= RATE_MAX_KEYS && !map.contains_key(&ip) {
            // Forget addresses quiet for two windows, at most once per
            // window: a flood of new addresses must not make every request
            // scan the table under the lock.
            if *swept != Some(index) {
                map.retain(|_, (i, _, _)| *i + 1 >= index);
                *swept = Some(index);
            }
            if map.len() >= RATE_MAX_KEYS {
                // Bounded memory first: an untracked address is not limited.
                return false;
            }
        }
        let e = map.entry(ip).or_insert((index, 0, 0));
        if e.0 != index {
            e.2 = if e.0 + 1 == index { e.1 } else { 0 };
            e.1 = 0;
            e.0 = index;
        }
        e.1 += 1;
        let estimate = e.1 as f64 + e.2 as f64 * (1.0 - into);
        estimate > self.limit as f64
    }
}
