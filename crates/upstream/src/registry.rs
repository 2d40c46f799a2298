//! The registry of upstream runtimes, and connecting to an upstream.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use shardgate_model::{HashKey, Host, Node, ResourceId};
use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use shardgate_core::ErrorSource;

use crate::balancer::{Balancer, Candidate};
use crate::health::{Health, MAX_PROBES_IN_FLIGHT, Outcome};
use crate::metrics::{NodeLabels, UpstreamLabels};
use crate::{Resolver, UpstreamMetrics};

/// Which upstream: a standalone resource, or the inline upstream of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamKey {
    /// `upstreams/<id>`.
    Named(ResourceId),
    /// The inline upstream of `stream_routes/<id>`.
    InlineStream(ResourceId),
    /// The inline upstream of origin `<name>` of `distributions/<id>`.
    InlineOrigin(ResourceId, String),
}

impl fmt::Display for UpstreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamKey::Named(id) => write!(f, "upstreams/{id}"),
            UpstreamKey::InlineStream(id) => write!(f, "stream_routes/{id}"),
            UpstreamKey::InlineOrigin(id, origin) => write!(f, "distributions/{id}/origins/{origin}"),
        }
    }
}

/// Defaults for settings an upstream leaves out, from the bootstrap file.
#[derive(Debug, Clone, Copy)]
pub struct ConnectDefaults {
    /// Connect timeout per attempt when the upstream sets none.
    pub connect_timeout: Duration,
    /// How long a node that failed a connect is skipped (nginx `fail_timeout`,
    /// with `max_fails=1`: nginx's defaults).
    pub fail_timeout: Duration,
    /// TCP keepalive idle time on upstream sockets (dead game servers are
    /// noticed even when the player is silent).
    pub keepalive: Duration,
}

impl Default for ConnectDefaults {
    fn default() -> Self {
        ConnectDefaults {
            connect_timeout: Duration::from_secs(5),
            fail_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(60),
        }
    }
}

/// Upstream runtimes, keyed by [`UpstreamKey`], reused while their
/// configuration is unchanged.
#[derive(Debug)]
pub struct Registry {
    map: Mutex<HashMap<UpstreamKey, Arc<Upstream>>>,
    resolver: Arc<Resolver>,
    metrics: UpstreamMetrics,
    defaults: ConnectDefaults,
    epoch: Instant,
    /// Active health probes in flight, all upstreams together.
    probe_permits: Arc<Semaphore>,
}

impl Registry {
    /// An empty registry.
    pub fn new(resolver: Arc<Resolver>, metrics: UpstreamMetrics, defaults: ConnectDefaults) -> Self {
        Registry {
            map: Mutex::new(HashMap::new()),
            resolver,
            metrics,
            defaults,
            epoch: Instant::now(),
            probe_permits: Arc::new(Semaphore::new(MAX_PROBES_IN_FLIGHT)),
        }
    }

    /// The runtime for `key` with configuration `config`: the existing one if
    /// its configuration is equal, otherwise a fresh one that replaces it
    /// (keeping the health of the nodes both have, and starting its health
    /// checker, if it has `checks`, at once).
    pub fn get_or_create(&self, key: UpstreamKey, config: &Arc<shardgate_model::Upstream>) -> Arc<Upstream> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = map.get(&key)
            && (Arc::ptr_eq(&existing.config, config) || *existing.config == **config)
        {
            return Arc::clone(existing);
        }
        let up = Arc::new(Upstream::new(key.clone(), Arc::clone(config), self, map.get(&key).map(|u| &**u)));
        if let Some(health) = &up.health {
            health.start(Arc::clone(&self.resolver), Arc::clone(&self.probe_permits));
        }
        if let Some(old) = map.insert(key, Arc::clone(&up)) {
            old.retire(up.health.as_deref());
        }
        up
    }

    /// Forgets every upstream not in `keep` (their health checkers stop).
    /// Connections still using one keep their `Arc` until they close.
    pub fn retain(&self, keep: &HashSet<UpstreamKey>) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|k, up| {
            let stays = keep.contains(k);
            if !stays {
                up.retire(None);
            }
            stays
        });
    }

    /// Every registered runtime, by key.
    pub(crate) fn entries(&self) -> Vec<(UpstreamKey, Arc<Upstream>)> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(k, u)| (k.clone(), Arc::clone(u))).collect()
    }

    /// How many upstreams are registered.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no upstream is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct NodeState {
    node: Node,
    label: String,
    active: AtomicU32,
    /// Milliseconds since the registry epoch until which the node is down.
    down_until_ms: AtomicU64,
    next_addr: AtomicUsize,
    connects: Counter,
    failures: Counter,
    active_gauge: Gauge,
}

/// One upstream's runtime: its nodes with their live state, and its balancer.
pub struct Upstream {
    key: UpstreamKey,
    label: String,
    config: Arc<shardgate_model::Upstream>,
    nodes: Box<[NodeState]>,
    local_errors: Counter,
    balancer: Balancer,
    resolver: Arc<Resolver>,
    names: crate::template::Names,
    defaults: ConnectDefaults,
    epoch: Instant,
    /// Health checks, when the upstream has `checks`: they, not the
    /// `fail_timeout` marks, decide whether a node takes traffic.
    health: Option<Arc<Health>>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream").field("key", &self.key).field("nodes", &self.nodes.len()).finish_non_exhaustive()
    }
}

/// Facts about the connection that balancing may hash.
#[derive(Debug, Clone, Copy)]
pub struct ConnectCtx<'a> {
    /// The player's address.
    pub client: SocketAddr,
    /// The gateway's local address of the connection.
    pub local: SocketAddr,
    /// The SNI, if any.
    pub sni: Option<&'a str>,
}

/// A connected upstream socket and the node it belongs to.
#[derive(Debug)]
pub struct Connected {
    /// The socket, with TCP_NODELAY and keepalive set.
    pub stream: TcpStream,
    /// Holds the node's active-connection count until dropped.
    pub peer: PeerGuard,
}

/// What one attempt of [`Upstream::connect_pooled`] produced.
enum Opened<R> {
    New(TcpStream),
    Reused(R),
}

/// What [`Upstream::connect_pooled`] returns.
#[derive(Debug)]
pub enum Pooled<R> {
    /// A new connection, with the guard that counts it on its node.
    New(Connected),
    /// An idle pooled connection (its guard lives with it).
    Reused(R),
}

/// Counts one active connection on a node while alive.
pub struct PeerGuard {
    upstream: Arc<Upstream>,
    index: usize,
    addr: SocketAddr,
}

impl fmt::Debug for PeerGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerGuard").field("node", &self.node()).field("addr", &self.addr).finish()
    }
}

impl PeerGuard {
    /// The node as configured (`host:port`).
    pub fn node(&self) -> &str {
        &self.upstream.nodes[self.index].label
    }

    /// The address connected to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node failed after the connect: a connected UDP socket reported
    /// `ECONNREFUSED` (the node's ICMP port unreachable), which a UDP
    /// "connect" cannot see. Counted as a connect failure of the node, which
    /// is skipped for `fail_timeout` (or, with `checks`, counted as a TCP
    /// failure by the passive health check), as after a refused TCP connect.
    pub fn mark_failed(&self) {
        self.upstream.failed(self.index, false, "port unreachable (ICMP) after the session started");
    }
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let n = &self.upstream.nodes[self.index];
        n.active.fetch_sub(1, Ordering::Relaxed);
        n.active_gauge.dec();
    }
}

/// Why no upstream connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The upstream has no node with a weight above 0.
    #[error("upstream {upstream} has no usable node")]
    NoNodes {
        /// The upstream.
        upstream: String,
    },
    /// Every attempt failed; `last` is the final attempt's error.
    #[error("upstream {upstream}: {attempts} connect attempt(s) failed, last to {node}: {last}")]
    Failed {
        /// The upstream.
        upstream: String,
        /// Attempts made.
        attempts: usize,
        /// The node of the last attempt.
        node: String,
        /// The last error.
        last: String,
    },
    /// Every attempt failed on this host (no file descriptor, buffer or
    /// local port left): no node is to blame, so nothing was marked down.
    #[error("upstream {upstream}: connect to {node} failed locally: {reason}")]
    Local {
        /// The upstream.
        upstream: String,
        /// The node being connected.
        node: String,
        /// What ran out.
        reason: String,
    },
    /// The upstream's node template renders no valid name from this
    /// connection's SNI (or it has none): refused before any lookup.
    #[error("upstream {upstream}: {reason}")]
    Refused {
        /// The upstream.
        upstream: String,
        /// Why.
        reason: String,
    },
}

impl ConnectError {
    /// Which side failed: the upstream's nodes, or shardgate itself (no
    /// usable node configured, local resources exhausted). Named `side` so
    /// it does not shadow `std::error::Error::source`.
    pub fn side(&self) -> ErrorSource {
        match self {
            ConnectError::Failed { .. } => ErrorSource::Upstream,
            ConnectError::NoNodes { .. } | ConnectError::Local { .. } => ErrorSource::Internal,
            ConnectError::Refused { .. } => ErrorSource::Downstream,
        }
    }
}

/// Why one connect attempt failed, and whose fault it was.
#[derive(Debug)]
struct AttemptError {
    source: ErrorSource,
    reason: String,
    /// The attempt ran out of time (a passive `timeouts` count, not `tcp_failures`).
    timed_out: bool,
}

impl AttemptError {
    fn upstream(reason: String) -> Self {
        AttemptError { source: ErrorSource::Upstream, reason, timed_out: false }
    }

    /// A failed name lookup: this host's when every lookup slot was busy
    /// (a flood of names must not mark healthy nodes down), else the node's.
    fn lookup((reason, local): (String, bool)) -> Self {
        let source = if local { ErrorSource::Internal } else { ErrorSource::Upstream };
        AttemptError { source, reason, timed_out: false }
    }

    /// An I/O error while connecting to `addr`: local when this host ran out
    /// of something (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, or
    /// `EADDRNOTAVAIL`: no local port left), else the node's.
    fn io(addr: SocketAddr, what: &str, e: &std::io::Error) -> Self {
        use rustix::io::Errno;
        let local = Errno::from_io_error(e).is_some_and(|n| {
            [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM, Errno::ADDRNOTAVAIL].contains(&n)
        });
        let source = if local { ErrorSource::Internal } else { ErrorSource::Upstream };
        AttemptError { source, reason: format!("{addr}: {what}{e}"), timed_out: false }
    }
}

impl Upstream {
    fn new(
        key: UpstreamKey,
        config: Arc<shardgate_model::Upstream>,
        reg: &Registry,
        previous: Option<&Upstream>,
    ) -> Self {
        let label = key.to_string();
        let nodes = config
            .nodes
            .iter()
            .map(|node| {
                let labels = NodeLabels { upstream: label.clone(), node: node.to_string() };
                NodeState {
                    node: node.clone(),
                    label: labels.node.clone(),
                    active: AtomicU32::new(0),
                    down_until_ms: AtomicU64::new(0),
                    next_addr: AtomicUsize::new(0),
                    connects: reg.metrics.connects.get_or_create_owned(&labels),
                    failures: reg.metrics.connect_failures.get_or_create_owned(&labels),
                    active_gauge: reg.metrics.active.get_or_create_owned(&labels),
                }
            })
            .collect();
        let balancer = Balancer::new(config.balance, &config.nodes);
        let local_errors = reg.metrics.local_errors.get_or_create_owned(&UpstreamLabels { upstream: label.clone() });
        let names = crate::template::Names::new(&label, &reg.metrics.names);
        let previous_health = previous.and_then(|p| p.health.as_deref());
        let health = Health::new(&label, &config, previous_health, &reg.metrics.health);
        Upstream {
            key,
            label,
            config,
            nodes,
            local_errors,
            balancer,
            resolver: Arc::clone(&reg.resolver),
            names,
            defaults: reg.defaults,
            epoch: reg.epoch,
            health,
        }
    }

    /// Leaves the registry, replaced by `next` (if any): the health checker
    /// stops, and the gauges of nodes `next` does not have go.
    fn retire(&self, next: Option<&Health>) {
        if let Some(h) = &self.health {
            h.stop();
            h.forget_series(next);
        }
    }

    /// The health checks, when the upstream has `checks`.
    pub fn health(&self) -> Option<&Arc<Health>> {
        self.health.as_ref()
    }

    /// The key this runtime is registered under.
    pub fn key(&self) -> &UpstreamKey {
        &self.key
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<shardgate_model::Upstream> {
        &self.config
    }

    /// Active connections per node, in configuration order.
    pub fn active_per_node(&self) -> Vec<(String, u32)> {
        self.nodes.iter().map(|n| (n.label.clone(), n.active.load(Ordering::Relaxed))).collect()
    }

    fn now_ms(&self) -> u64 {
        Instant::now().duration_since(self.epoch).as_millis() as u64
    }

    fn hash(&self, ctx: &ConnectCtx<'_>) -> u32 {
        match self.balancer.hash_key() {
            None => 0,
            Some(HashKey::RemoteAddr) => hash_ip(ctx.client.ip()),
            Some(HashKey::ServerAddr) => hash_ip(ctx.local.ip()),
            Some(HashKey::ServerPort) => crc32fast::hash(&ctx.local.port().to_be_bytes()),
            Some(HashKey::Sni) => crc32fast::hash(ctx.sni.unwrap_or_default().as_bytes()),
        }
    }

    fn select(&self, hash: u32, tried: &[usize]) -> Option<usize> {
        let now = self.now_ms();
        // With health checks an unhealthy node is out (weight 0 here), also
        // when the healthy ones have failed this connection's attempts;
        // only when no weighted node is healthy do they all count, as down
        // nodes the balancer falls back to (fail open, as APISIX).
        let all_unhealthy = self
            .health
            .as_ref()
            .is_some_and(|h| !self.nodes.iter().enumerate().any(|(i, n)| n.node.weight > 0 && h.takes_traffic(i)));
        // Small and short-lived: one entry per node, built per attempt.
        let cands: Vec<Candidate> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let (weight, down) = match &self.health {
                    Some(_) if all_unhealthy => (n.node.weight, true),
                    Some(h) if !h.takes_traffic(i) => (0, true),
                    Some(_) => (n.node.weight, false),
                    None => (n.node.weight, n.down_until_ms.load(Ordering::Relaxed) > now),
                };
                Candidate { weight, priority: n.node.priority, active: n.active.load(Ordering::Relaxed), down }
            })
            .collect();
        self.balancer.select(&cands, hash, tried)
    }

    /// Connects over TCP to a node chosen by the balancer, retrying on the
    /// next node after a failure, within the upstream's retry count and
    /// retry timeout. The socket gets TCP_NODELAY and keepalive.
    pub async fn connect(self: &Arc<Self>, ctx: &ConnectCtx<'_>) -> Result<Connected, ConnectError> {
        let keepalive = self.defaults.keepalive;
        let (stream, peer) = self.connect_with(ctx, move |addr| tcp_connect(addr, keepalive)).await?;
        Ok(Connected { stream, peer })
    }

    /// Like [`Upstream::connect`], and writes `preface` (a PROXY protocol
    /// header) on each new socket inside the attempt: a node that accepts
    /// the connect but fails the write is a failed attempt on that node,
    /// marked and retried like a refused connect.
    pub async fn connect_with_preface(
        self: &Arc<Self>,
        ctx: &ConnectCtx<'_>,
        preface: &[u8],
    ) -> Result<Connected, ConnectError> {
        let keepalive = self.defaults.keepalive;
        let (stream, peer) = self
            .connect_with(ctx, move |addr| async move {
                let mut stream = tcp_connect(addr, keepalive).await?;
                tokio::io::AsyncWriteExt::write_all(&mut stream, preface).await?;
                Ok(stream)
            })
            .await?;
        Ok(Connected { stream, peer })
    }

    /// Node choice, retries and failure marks around one transport: `open`
    /// makes one attempt to a resolved address (a TCP connect, a UDP socket,
    /// a connect followed by a PROXY protocol header) and is bounded by the
    /// per-attempt timeout here. Its I/O errors are classified as the node's
    /// or this host's (see [`ConnectError::Local`]).
    pub async fn connect_with<C, F, Fut>(
        self: &Arc<Self>,
        ctx: &ConnectCtx<'_>,
        open: F,
    ) -> Result<(C, PeerGuard), ConnectError>
    where
        F: FnMut(SocketAddr) -> Fut,
        Fut: Future<Output = std::io::Result<C>>,
    {
        let (conn, index, addr) = self.select_and_open(ctx, open).await?;
        Ok((conn, self.connected(index, addr)))
    }

    /// Node choice for a connection pool (nginx's `keepalive` does the
    /// same: the balancer picks the peer, then the cache is searched for a
    /// connection to it). `reuse` is asked for an idle connection to the
    /// chosen address first: one it returns already holds its
    /// [`PeerGuard`], so none is made and no connect is counted. Otherwise
    /// a TCP connect as [`Upstream::connect`]. `port`, when set, replaces
    /// every node's port (an origin's `https_port`: one node list serving
    /// two protocols); the returned guard keeps the node's own address.
    /// Failures, retries and down marks are the same as
    /// [`Upstream::connect`]'s.
    pub async fn connect_pooled<R, F>(
        self: &Arc<Self>,
        ctx: &ConnectCtx<'_>,
        port: Option<u16>,
        mut reuse: F,
    ) -> Result<Pooled<R>, ConnectError>
    where
        F: FnMut(SocketAddr) -> Option<R>,
    {
        let keepalive = self.defaults.keepalive;
        let open = |mut addr: SocketAddr| {
            if let Some(p) = port {
                addr.set_port(p);
            }
            let found = reuse(addr);
            async move {
                match found {
                    Some(r) => Ok(Opened::Reused(r)),
                    None => tcp_connect(addr, keepalive).await.map(Opened::New),
                }
            }
        };
        match self.select_and_open(ctx, open).await? {
            (Opened::New(stream), index, addr) => {
                Ok(Pooled::New(Connected { stream, peer: self.connected(index, addr) }))
            }
            (Opened::Reused(conn), _, _) => Ok(Pooled::Reused(conn)),
        }
    }

    /// The loop of [`Upstream::connect_with`]: the opened connection, its
    /// node's index and the address.
    async fn select_and_open<C, F, Fut>(
        self: &Arc<Self>,
        ctx: &ConnectCtx<'_>,
        mut open: F,
    ) -> Result<(C, usize, SocketAddr), ConnectError>
    where
        F: FnMut(SocketAddr) -> Fut,
        Fut: Future<Output = std::io::Result<C>>,
    {
        let node_count = self.nodes.len();
        let retries = self.config.retries.map_or(node_count.saturating_sub(1), |r| r as usize);
        let attempts_max = 1 + retries;
        let deadline = self.config.retry_timeout.map(|t| Instant::now() + t);
        let per_attempt = self.config.connect_timeout.unwrap_or(self.defaults.connect_timeout);
        let hash = self.hash(ctx);
        self.names.precheck(&self.config, ctx.sni)?;
        if let Some(h) = &self.health
            && h.failing_open()
        {
            h.count_fail_open_connect();
        }

        let mut tried: Vec<usize> = Vec::with_capacity(attempts_max.min(node_count).max(1));
        let mut last: Option<(usize, String, ErrorSource)> = None;
        let mut any_node_failed = false;
        let mut attempts = 0;
        while attempts < attempts_max {
            let index = match self.select(hash, &tried) {
                Some(i) => i,
                None if tried.is_empty() => return Err(ConnectError::NoNodes { upstream: self.label.clone() }),
                None => {
                    // Every node was tried and retries remain: start over.
                    tried.clear();
                    match self.select(hash, &tried) {
                        Some(i) => i,
                        None => break,
                    }
                }
            };
            tried.push(index);
            attempts += 1;
            let timeout = match deadline {
                Some(d) => per_attempt.min(d.saturating_duration_since(Instant::now())),
                None => per_attempt,
            };
            match self.attempt(index, ctx.sni, timeout, &mut open).await {
                Ok((conn, addr)) => return Ok((conn, index, addr)),
                Err(AttemptError { source: ErrorSource::Internal, reason, .. }) => {
                    // Out of descriptors, buffers or ports here: marking the
                    // node down would turn a local shortage into an outage
                    // of healthy game servers. The next node is still tried
                    // (an unusable source address can be specific to one
                    // destination); under a real shortage it fails at once.
                    self.local_errors.inc();
                    let n = &self.nodes[index];
                    tracing::warn!(upstream = %self.label, node = %n.label, error = %reason, attempt = attempts, "upstream connect failed on this host; the node is not marked down");
                    last = Some((index, reason, ErrorSource::Internal));
                }
                Err(AttemptError { reason, timed_out, .. }) => {
                    self.failed(index, timed_out, &reason);
                    let n = &self.nodes[index];
                    tracing::warn!(upstream = %self.label, node = %n.label, error = %reason, attempt = attempts, "upstream connect failed");
                    last = Some((index, reason, ErrorSource::Upstream));
                    any_node_failed = true;
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        let (index, last, side) = last.unwrap_or((0, "retry timeout reached".into(), ErrorSource::Upstream));
        let node = self.nodes.get(index).map_or_else(String::new, |n| n.label.clone());
        if side == ErrorSource::Internal && !any_node_failed {
            // Every attempt failed on this host: no node is to blame.
            return Err(ConnectError::Local { upstream: self.label.clone(), node, reason: last });
        }
        Err(ConnectError::Failed { upstream: self.label.clone(), attempts, node, last })
    }

    /// A successful attempt on node `index`: clears its failure mark and
    /// counts the connection until the returned guard drops.
    fn connected(self: &Arc<Self>, index: usize, addr: SocketAddr) -> PeerGuard {
        let n = &self.nodes[index];
        match &self.health {
            Some(h) => h.passive(index, Outcome::Success, Some(addr.ip()), None),
            None => n.down_until_ms.store(0, Ordering::Relaxed),
        }
        n.active.fetch_add(1, Ordering::Relaxed);
        n.active_gauge.inc();
        n.connects.inc();
        PeerGuard { upstream: Arc::clone(self), index, addr }
    }

    /// A failed attempt on node `index` (the node's fault): with health
    /// checks, a passive TCP failure or timeout; without, the node is skipped
    /// for `fail_timeout` (nginx's `max_fails=1`).
    fn failed(&self, index: usize, timed_out: bool, reason: &str) {
        let n = &self.nodes[index];
        n.failures.inc();
        if let Some(h) = &self.health {
            let outcome = if timed_out { Outcome::Timeout } else { Outcome::TcpFailure };
            h.passive(index, outcome, None, Some(reason));
            return;
        }
        if matches!(n.node.host, Host::Template(_)) {
            // One dead room is not a dead fleet (see `template`).
            return;
        }
        let until = self.now_ms() + self.defaults.fail_timeout.as_millis() as u64;
        n.down_until_ms.store(until, Ordering::Relaxed);
    }

    /// The address to use for node `index` now: its IP, or the next address
    /// of its name's (or, for a template, of the name rendered from `sni`)
    /// current answer.
    async fn resolve_node(&self, index: usize, sni: Option<&str>) -> Result<SocketAddr, AttemptError> {
        let n = &self.nodes[index];
        let ip = match &n.node.host {
            Host::Ip(ip) => *ip,
            Host::Name(name) => {
                self.names.pick(&self.resolver, name, &n.next_addr).await.map_err(AttemptError::lookup)?
            }
            Host::Template(t) => {
                self.names.pick_rendered(&self.resolver, t, sni, &n.next_addr).await.map_err(AttemptError::lookup)?
            }
        };
        Ok(SocketAddr::new(ip, n.node.port))
    }

    /// One attempt on node `index`: resolve, then `open` within `timeout`.
    async fn attempt<C, F, Fut>(
        &self,
        index: usize,
        sni: Option<&str>,
        timeout: Duration,
        open: &mut F,
    ) -> Result<(C, SocketAddr), AttemptError>
    where
        F: FnMut(SocketAddr) -> Fut,
        Fut: Future<Output = std::io::Result<C>>,
    {
        let addr = self.resolve_node(index, sni).await?;
        match tokio::time::timeout(timeout, open(addr)).await {
            Ok(Ok(conn)) => Ok((conn, addr)),
            Ok(Err(e)) => Err(AttemptError::io(addr, "", &e)),
            Err(_) => Err(AttemptError {
                timed_out: true,
                ..AttemptError::upstream(format!("{addr}: connect timed out after {timeout:?}"))
            }),
        }
    }
}

/// A TCP connect with TCP_NODELAY and keepalive after `keepalive` idle.
async fn tcp_connect(addr: SocketAddr, keepalive: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let ka = TcpKeepalive::new().with_time(keepalive).with_interval(Duration::from_secs(10));
    SockRef::from(&stream).set_tcp_keepalive(&ka)?;
    Ok(stream)
}

impl Drop for Upstream {
    /// A runtime nobody holds any more probes nothing.
    fn drop(&mut self) {
        if let Some(h) = &self.health {
            h.stop();
        }
    }
}

fn hash_ip(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => crc32fast::hash(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => crc32fast::hash(&v4.octets()),
            None => crc32fast::hash(&v6.octets()),
        },
    }
}

#[cfg(test)]
mod tests;
