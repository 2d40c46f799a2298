//! Node selection. Pure: given each node's weight, priority, active count and
//! health, and the nodes already tried for this connection, pick the next.
//!
//! Rules shared by every algorithm:
//! - a node with weight 0, or already tried, is never picked;
//! - nodes marked down (a recent connect failure) are skipped, unless every
//!   remaining node is down: then they are tried anyway (fail open, as nginx
//!   does when all peers are marked failed);
//! - among what is left, only the highest `priority` is used (APISIX: lower
//!   priorities only after the higher ones failed).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use shardgate_model::{Balance, HashKey, Node};

/// Most points on a consistent-hash ring.
const MAX_RING_POINTS: usize = 64 * 1024;
/// Points per unit of weight on the ring.
const POINTS_PER_WEIGHT: usize = 40;

/// A node's state as selection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Configured weight.
    pub weight: u32,
    /// Configured priority.
    pub priority: i32,
    /// Connections open to it now.
    pub active: u32,
    /// Marked down by a recent failure.
    pub down: bool,
}

/// The algorithm and its state.
#[derive(Debug)]
pub enum Balancer {
    /// Smooth weighted round robin (nginx `ngx_http_upstream_get_peer`): the
    /// current weight of every eligible node grows by its weight, the largest
    /// wins and loses the total. Spreads picks evenly, not in bursts.
    RoundRobin(Mutex<Vec<i64>>),
    /// A ring of points; the hash of the connection's key picks the first
    /// point at or after it, whose node is used (or the next eligible one).
    ConsistentHash {
        /// `(point hash, node index)`, sorted by hash.
        ring: Vec<(u32, u32)>,
        /// What is hashed.
        key: HashKey,
    },
    /// Fewest `(active + 1) / weight` (APISIX `least_conn`); ties rotate.
    LeastConnections(AtomicUsize),
}

impl Balancer {
    /// Builds the balancer for `nodes`.
    pub fn new(balance: Balance, nodes: &[Node]) -> Self {
        match balance {
            Balance::RoundRobin => Balancer::RoundRobin(Mutex::new(vec![0; nodes.len()])),
            Balance::LeastConnections => Balancer::LeastConnections(AtomicUsize::new(0)),
            Balance::ConsistentHash(key) => Balancer::ConsistentHash { ring: build_ring(nodes), key },
        }
    }

    /// The hashed key, for consistent hashing.
    pub fn hash_key(&self) -> Option<HashKey> {
        match self {
            Balancer::ConsistentHash { key, .. } => Some(*key),
            _ => None,
        }
    }

    /// Picks a node index, or `None` when no eligible node is left.
    pub fn select(&self, nodes: &[Candidate], hash: u32, tried: &[usize]) -> Option<usize> {
        let eligible = |i: usize| nodes[i].weight > 0 && !tried.contains(&i);
        let any_up = (0..nodes.len()).any(|i| eligible(i) && !nodes[i].down);
        let in_health = |i: usize| eligible(i) && (!any_up || !nodes[i].down);
        let top = (0..nodes.len()).filter(|&i| in_health(i)).map(|i| nodes[i].priority).max()?;
        let pool = |i: usize| in_health(i) && nodes[i].priority == top;

        match self {
            Balancer::RoundRobin(current) => {
                let mut cw = current.lock().unwrap_or_else(PoisonError::into_inner);
                if cw.len() != nodes.len() {
                    cw.resize(nodes.len(), 0);
                }
                let mut total: i64 = 0;
                let mut best: Option<usize> = None;
                for i in (0..nodes.len()).filter(|&i| pool(i)) {
                    let w = i64::from(nodes[i].weight);
                    cw[i] += w;
                    total += w;
                    if best.is_none_or(|b| cw[i] > cw[b]) {
                        best = Some(i);
                    }
                }
                let b = best?;
                cw[b] -= total;
                Some(b)
            }
            Balancer::ConsistentHash { ring, .. } => {
                if ring.is_empty() {
                    return None;
                }
                let start = ring.partition_point(|(h, _)| *h < hash);
                (0..ring.len()).map(|k| ring[(start + k) % ring.len()].1 as usize).find(|&i| pool(i))
            }
            Balancer::LeastConnections(cursor) => {
                let n = nodes.len();
                let start = cursor.fetch_add(1, Ordering::Relaxed) % n.max(1);
                let mut best: Option<usize> = None;
                for k in 0..n {
                    let i = (start + k) % n;
                    if !pool(i) {
                        continue;
                    }
                    // (a+1)/wa < (b+1)/wb  <=>  (a+1)*wb < (b+1)*wa
                    let better = best.is_none_or(|b| {
                        let (a, wa) = (u64::from(nodes[i].active) + 1, u64::from(nodes[i].weight));
                        let (bb, wb) = (u64::from(nodes[b].active) + 1, u64::from(nodes[b].weight));
                        a * wb < bb * wa
                    });
                    if better {
                        best = Some(i);
                    }
                }
                best
            }
        }
    }
}

fn build_ring(nodes: &[Node]) -> Vec<(u32, u32)> {
    let total_weight: usize = nodes.iter().map(|n| n.weight as usize).sum();
    if total_weight == 0 {
        return Vec::new();
    }
    let per_weight = (MAX_RING_POINTS / total_weight).clamp(1, POINTS_PER_WEIGHT);
    let mut ring = Vec::with_capacity(total_weight.saturating_mul(per_weight).min(MAX_RING_POINTS + nodes.len()));
    for (i, node) in nodes.iter().enumerate() {
        let points = (node.weight as usize * per_weight).max(usize::from(node.weight > 0));
        let name = node.to_string();
        for p in 0..points {
            let mut h = crc32fast::Hasher::new();
            h.update(name.as_bytes());
            h.update(b"#");
            h.update(&(p as u32).to_le_bytes());
            ring.push((h.finalize(), i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardgate_model::Host;

    fn node(port: u16, weight: u32, priority: i32) -> Node {
        Node { host: Host::Ip([127, 0, 0, 1].into()), port, weight, priority }
    }

    fn cands(nodes: &[Node]) -> Vec<Candidate> {
        nodes.iter().map(|n| Candidate { weight: n.weight, priority: n.priority, active: 0, down: false }).collect()
    }

    #[test]
    fn smooth_round_robin_follows_weights_without_bursts() {
        let nodes = [node(1, 5, 0), node(2, 1, 0), node(3, 1, 0)];
        let b = Balancer::new(Balance::RoundRobin, &nodes);
        let c = cands(&nodes);
        let picks: Vec<usize> = (0..7).map(|_| b.select(&c, 0, &[]).expect("pick")).collect();
        // nginx's documented sequence for weights 5,1,1: a a b a c a a.
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn tried_zero_weight_down_and_priority_are_honoured() {
        let nodes = [node(1, 1, 10), node(2, 1, 10), node(3, 0, 10), node(4, 1, 0)];
        let b = Balancer::new(Balance::RoundRobin, &nodes);
        let mut c = cands(&nodes);
        for _ in 0..10 {
            let i = b.select(&c, 0, &[]).expect("pick");
            assert!(i == 0 || i == 1, "priority 10 first, weight 0 never: {i}");
        }
        assert_eq!(b.select(&c, 0, &[0, 1]), Some(3), "lower priority after the higher ones were tried");
        c[0].down = true;
        for _ in 0..5 {
            assert_eq!(b.select(&c, 0, &[]), Some(1), "down node skipped while another is up");
        }
        c[1].down = true;
        c[3].down = true;
        assert!(b.select(&c, 0, &[]).is_some(), "all down: fail open");
        assert_eq!(b.select(&c, 0, &[0, 1, 3]), None);
    }

    #[test]
    fn consistent_hash_is_stable_and_moves_only_on_failure() {
        let nodes = [node(1, 1, 0), node(2, 1, 0), node(3, 1, 0)];
        let b = Balancer::new(Balance::ConsistentHash(HashKey::RemoteAddr), &nodes);
        let c = cands(&nodes);
        let mut seen = [0usize; 3];
        for client in 0..300u32 {
            let h = crc32fast::hash(&client.to_be_bytes());
            let first = b.select(&c, h, &[]).expect("pick");
            assert_eq!(b.select(&c, h, &[]), Some(first), "same key, same node");
            let retry = b.select(&c, h, &[first]).expect("retry");
            assert_ne!(retry, first);
            seen[first] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "keys spread over nodes: {seen:?}");
    }

    #[test]
    fn least_connections_prefers_idle_capacity() {
        let nodes = [node(1, 1, 0), node(2, 2, 0)];
        let b = Balancer::new(Balance::LeastConnections, &nodes);
        let mut c = cands(&nodes);
        c[0].active = 1;
        c[1].active = 2;
        // (1+1)/1 = 2 vs (2+1)/2 = 1.5
        assert_eq!(b.select(&c, 0, &[]), Some(1));
        c[1].active = 4;
        assert_eq!(b.select(&c, 0, &[]), Some(0));
    }
}
