//! [`LogThrottle`]: at most one `warn` line per interval for an event that
//! the network can repeat at will (a scanner, a misconfigured client or
//! load balancer), so the log stays readable and cheap. The events in
//! between go to `debug`; their number is carried by the next `warn`, and
//! the caller counts every event in a metric either way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shortest time between two `warn` lines about refused connections on one
/// listener.
pub const REFUSAL_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// One source's rate limit on `warn` lines. Lock-free: a connection asks
/// [`LogThrottle::due`] with two atomic operations.
#[derive(Debug)]
pub struct LogThrottle {
    epoch: Instant,
    interval_ms: u64,
    /// Milliseconds after `epoch` of the last `warn`; `u64::MAX`: never.
    last_warn_ms: AtomicU64,
    /// Events logged at `debug` since the last `warn`.
    suppressed: AtomicU64,
}

impl Default for LogThrottle {
    fn default() -> Self {
        LogThrottle::new(REFUSAL_WARN_INTERVAL)
    }
}

impl LogThrottle {
    /// At most one `warn` per `interval`.
    pub fn new(interval: Duration) -> Self {
        LogThrottle {
            epoch: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            last_warn_ms: AtomicU64::new(u64::MAX),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this event is to be logged at `warn`, `n` being how
    /// many were logged at `debug` since the last `warn`; `None` when it
    /// goes to `debug`.
    pub fn due(&self) -> Option<u64> {
        self.due_at(self.epoch.elapsed())
    }

    /// [`LogThrottle::due`] at `elapsed` after this throttle was made.
    fn due_at(&self, elapsed: Duration) -> Option<u64> {
        let now = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= self.interval_ms;
        if due && self.last_warn_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warn_per_interval_carrying_the_count_in_between() {
        let t = LogThrottle::new(Duration::from_secs(60));
        let at = Duration::from_secs;
        assert_eq!(t.due_at(at(5)), Some(0), "the first event warns");
        assert_eq!(t.due_at(at(6)), None);
        assert_eq!(t.due_at(at(64)), None, "59 s after the warning");
        assert_eq!(t.due_at(at(65)), Some(2), "the next warn says how many were quieter");
        assert_eq!(t.due_at(at(70)), None);
    }
}
