//! The checker task of one upstream: probes each node when it is due, at
//! most `active.concurrency` at once (and at most
//! [`super::MAX_PROBES_IN_FLIGHT`] in the process), and records the results.
//!
//! A node is due `healthy.interval` after its last probe started while it
//! takes traffic, `unhealthy.interval` while it does not
//! ([`super::state::probe_interval`]). The first round starts at an offset
//! within the healthy interval derived from the upstream's name, so a
//! thousand upstreams loaded at once do not probe in one burst. The task
//! runs until aborted (the registry stops it when the runtime is replaced or
//! removed); aborting it drops the probes in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use super::Health;
use super::probe::{Probed, probe};
use super::state::probe_interval;
use crate::Resolver;

/// Runs the checks of `health` until aborted.
pub(super) async fn run(health: Arc<Health>, resolver: Arc<Resolver>, permits: Arc<Semaphore>) {
    let count = health.nodes.len();
    if count == 0 {
        return;
    }
    let active = &health.checks.active;
    let concurrency = active.concurrency as usize;
    let first = Instant::now() + spread(&health.label, active.healthy.interval);
    let mut due = vec![first; count];
    // The probe in flight for each node, if any.
    let mut running: Vec<Option<Id>> = vec![None; count];
    let mut probes: JoinSet<(usize, Instant, Probed)> = JoinSet::new();
    loop {
        let now = Instant::now();
        for i in 0..count {
            if probes.len() >= concurrency {
                break;
            }
            if running[i].is_none() && due[i] <= now {
                let (h, r, p) = (Arc::clone(&health), Arc::clone(&resolver), Arc::clone(&permits));
                let handle = probes.spawn(async move {
                    // Closed only if the registry is gone: then nothing waits
                    // for the answer anyway.
                    let _permit = p.acquire_owned().await;
                    let started = Instant::now();
                    let probed = probe(&h.targets[i], &h.checks.active, &r).await;
                    (i, started, probed)
                });
                running[i] = Some(handle.id());
            }
        }
        let next = (0..count).filter(|&i| running[i].is_none()).map(|i| due[i]).min();
        let can_start = probes.len() < concurrency;
        tokio::select! {
            Some(joined) = probes.join_next_with_id(), if !probes.is_empty() => match joined {
                Ok((_, (i, started, probed))) => {
                    running[i] = None;
                    health.probed(i, probed.outcome, probed.ip, probed.detail.as_deref());
                    due[i] = started + probe_interval(health.nodes[i].status(), active);
                }
                Err(e) => {
                    // A probe that panicked: count nothing, try again after
                    // the node's interval.
                    let id = e.id();
                    if let Some(i) = running.iter().position(|r| *r == Some(id)) {
                        running[i] = None;
                        due[i] = Instant::now() + probe_interval(health.nodes[i].status(), active);
                        tracing::error!(upstream = %health.label, node = %health.info[i].label, error = %e, "a health probe failed unexpectedly");
                    }
                }
            },
            () = sleep_until(next), if can_start && next.is_some() => {}
            else => break,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Where in `interval` an upstream's first round starts: a stable spread
/// from its name.
fn spread(label: &str, interval: Duration) -> Duration {
    let fraction = crc32fast::hash(label.as_bytes()) % 1000;
    interval.mul_f64(f64::from(fraction) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_rounds_spread_over_the_interval() {
        let interval = Duration::from_secs(2);
        let offsets: Vec<Duration> = (0..1000).map(|i| spread(&format!("upstreams/u{i}"), interval)).collect();
        assert!(offsets.iter().all(|o| *o < interval));
        // No one tenth of the interval holds more than a fifth of the upstreams.
        for slot in 0..10 {
            let lo = interval.mul_f64(f64::from(slot) / 10.0);
            let hi = interval.mul_f64(f64::from(slot + 1) / 10.0);
            let n = offsets.iter().filter(|o| **o >= lo && **o < hi).count();
            assert!(n < 200, "slot {slot}: {n}");
        }
        assert_eq!(spread("upstreams/a", interval), spread("upstreams/a", interval), "stable");
    }
}
