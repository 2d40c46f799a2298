//! Idle keep-alive connections to origin nodes, for reuse by later fetches.
//!
//! A connection is keyed by its upstream runtime, the node address it was
//! opened to and its transport (plain, or TLS with a given name and trust
//! store), so a reused connection is one the balancer would have opened
//! anyway. Checkout takes the most recently idle connection (nginx's
//! `keepalive` cache is LIFO too: the others age out), skipping any the
//! origin closed or that idled past its timeout. Bounds: idle connections
//! per key (the origin's `max_idle_connections`), idle connections in all
//! (a process-wide setting), idle time (the origin's `keepalive_timeout`).
//! A reaper drops expired and closed connections every
//! [`REAP_INTERVAL`], so an origin's idle sockets do not outlive their
//! timeout by more than that when no fetch touches the pool.
//!
//! The pool holds only the request half (`SendRequest`) of a connection; the
//! task driving the connection holds the upstream's `PeerGuard`, so the node
//! counts the connection exactly as long as the socket is open, idle or
//! not.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use shardgate_upstream::UpstreamKey;
use tokio::time::Instant;

use crate::body::EdgeBody;

/// How often expired and closed idle connections are dropped.
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Default bound on idle origin connections of the whole process.
pub const DEFAULT_MAX_IDLE_TOTAL: usize = 1024;

/// The transport of a pooled connection: plain, or TLS with a server name
/// and a client configuration (compared by identity: a changed trust store
/// is a new configuration, whose connections are new ones; snapshots share
/// one configuration per trust store, so an unchanged origin keeps its idle
/// connections across configuration changes).
#[derive(Debug, Clone)]
pub enum Transport {
    /// Cleartext HTTP/1.1.
    Plain,
    /// HTTP/1.1 over TLS.
    Tls {
        /// The name sent as SNI and verified against the certificate.
        server_name: Arc<str>,
        /// The client configuration (trust store).
        config: Arc<rustls::ClientConfig>,
    },
}

impl PartialEq for Transport {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Transport::Plain, Transport::Plain) => true,
            (Transport::Tls { server_name: a, config: ca }, Transport::Tls { server_name: b, config: cb }) => {
                a == b && Arc::ptr_eq(ca, cb)
            }
            _ => false,
        }
    }
}

impl Eq for Transport {}

impl std::hash::Hash for Transport {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Transport::Plain => 0u8.hash(state),
            Transport::Tls { server_name, config } => {
                1u8.hash(state);
                server_name.hash(state);
                (Arc::as_ptr(config) as usize).hash(state);
            }
        }
    }
}

/// Which connections are interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The upstream runtime's key.
    pub upstream: UpstreamKey,
    /// The node address connected to.
    pub addr: SocketAddr,
    /// Plain or TLS.
    pub transport: Transport,
}

/// A keep-alive connection between requests: its request half, and the
/// node (as configured, `host:port`) it goes to.
#[derive(Debug)]
pub struct Reusable {
    /// The request half of the connection.
    pub sender: SendRequest<EdgeBody>,
    /// The node, for logs and spans.
    pub node: String,
}

struct Idle {
    conn: Reusable,
    expires: Instant,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        self.expires > now && !self.conn.sender.is_closed() && self.conn.sender.is_ready()
    }
}

#[derive(Default)]
struct Inner {
    idle: HashMap<PoolKey, VecDeque<Idle>>,
    total: usize,
    reaper: bool,
}

impl Inner {
    fn prune(&mut self, now: Instant) {
        let mut total = 0;
        self.idle.retain(|_, list| {
            list.retain(|i| i.usable(now));
            total += list.len();
            !list.is_empty()
        });
        self.total = total;
    }

    /// Drops the connection that has been idle longest (the soonest to expire).
    fn evict_oldest(&mut self) {
        let oldest = self
            .idle
            .iter()
            .filter_map(|(k, list)| list.front().map(|i| (i.expires, k)))
            .min_by_key(|(expires, _)| *expires)
            .map(|(_, k)| k.clone());
        if let Some(key) = oldest
            && let Some(list) = self.idle.get_mut(&key)
        {
            list.pop_front();
            self.total -= 1;
            if list.is_empty() {
                self.idle.remove(&key);
            }
        }
    }
}

/// The idle connections of every origin.
pub struct Pool {
    max_idle_total: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("max_idle_total", &self.max_idle_total).field("idle", &self.idle()).finish()
    }
}

impl Pool {
    /// A pool keeping at most `max_idle_total` idle connections (0: none, no pooling).
    pub fn new(max_idle_total: usize) -> Arc<Self> {
        Arc::new(Pool { max_idle_total, inner: Mutex::new(Inner::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Idle connections held now.
    pub fn idle(&self) -> usize {
        self.lock().total
    }

    /// The bound on idle connections of the whole pool.
    pub fn max_idle_total(&self) -> usize {
        self.max_idle_total
    }

    /// The most recently idle usable connection for `key`, if any.
    pub fn checkout(&self, key: &PoolKey) -> Option<Reusable> {
        let now = Instant::now();
        let mut inner = self.lock();
        let list = inner.idle.get_mut(key)?;
        let mut found = None;
        let mut taken = 0;
        while let Some(idle) = list.pop_back() {
            taken += 1;
            if idle.usable(now) {
                found = Some(idle.conn);
                break;
            }
        }
        if list.is_empty() {
            inner.idle.remove(key);
        }
        inner.total -= taken;
        found
    }

    /// Keeps `conn` for reuse until `idle_timeout`, at most `max_idle`
    /// for its key (the oldest goes first); `false` when it was not kept
    /// (it is dropped, which closes the connection).
    pub fn checkin(self: &Arc<Self>, key: PoolKey, conn: Reusable, max_idle: usize, idle_timeout: Duration) -> bool {
        if max_idle == 0 || self.max_idle_total == 0 || idle_timeout.is_zero() || conn.sender.is_closed() {
            return false;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let list = inner.idle.entry(key).or_default();
        let mut removed = 0;
        while list.len() >= max_idle {
            list.pop_front();
            removed += 1;
        }
        list.push_back(Idle { conn, expires: now + idle_timeout });
        inner.total = inner.total + 1 - removed;
        if inner.total > self.max_idle_total {
            inner.prune(now);
        }
        while inner.total > self.max_idle_total {
            inner.evict_oldest();
        }
        if !inner.reaper {
            inner.reaper = true;
            let weak = Arc::downgrade(self);
            tokio::spawn(reap(weak));
        }
        true
    }
}

/// Drops expired and closed idle connections until the pool is gone.
async fn reap(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.lock().prune(Instant::now());
    }
}
