//! The set of running player-facing listeners (stream TCP and edge HTTP):
//! started from the bootstrap file, changed by a reload, drained on stop.
//!
//! A change is planned first and applied second, so a reload that cannot
//! be carried out changes nothing:
//!
//! ```text
//! prepare(config):  diff the file's listeners with the running ones, keyed
//!                   by transport and configured address
//!   added     -> bind now (a failure refuses the whole change, naming the address)
//!   changed   -> same address, other settings: a copy of the running socket
//!                (no rebind; the kernel's queue of pending connections is shared)
//!   removed   -> nothing yet
//!   the edge service (cache) is created the first time an edge listener is wanted
//! commit(plan):     start an accept loop for every added and changed listener,
//!                   then stop the accept loops of the changed (old settings)
//!                   and removed ones, and wait until they have returned
//! ```
//!
//! Each accept loop builds its listener context once from its spec, and
//! every connection keeps the context it was accepted with, so a changed
//! listener serves new connections with the new settings while open
//! sessions finish on the old ones. A stopped loop closes its copy of the
//! socket; once the last copy is closed the kernel refuses new connections
//! at that address. Sessions a stopped loop started keep running and hold
//! their drain watch, so the drain still waits for them.
//!
//! Listener specs are compared whole (`PartialEq`), never field by field,
//! so a field added to [`ListenerSpec`] or [`HttpListenerSpec`] is applied
//! live by a reload as soon as [`wanted`] fills it in.
//!
//! A new kind of listener is one variant in each of [`Spec`] (what the file
//! says), [`Transport`] (its key: a UDP and a TCP listener on one port are
//! two listeners), [`Socket`] (the kept copy), [`Serving`] (the loop's
//! copy), and one arm in `bind`, `serving` and `spawn` each; the diff,
//! the order of operations and the drain are shared.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use shardgate_cache::{Cache, CacheSettings, DiskSettings};
use shardgate_core::{Drain, Metrics};
use shardgate_http::{AccessLog, EdgeMetrics, EdgeService, HttpListenerSpec, HttpSettings};
use shardgate_snapshot::SnapshotHandle;
use shardgate_stream::{ListenerSpec, StreamMetrics, StreamSettings, UdpListenerSpec, UdpMetrics, UdpSettings};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

use crate::config::{AccessLogConfig, CacheConfig, Config};

/// Longest wait for a stopped accept loop to return. A loop returns as soon
/// as it sees its stop signal; this only bounds a runtime too busy to run it.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// What a listener serves, as the file describes it.
#[derive(Debug, Clone, PartialEq)]
enum Spec {
    /// `stream.tcp[]`.
    Stream(ListenerSpec),
    /// `edge.http[]`.
    Edge(HttpListenerSpec),
    /// `stream.udp[]`.
    Udp(UdpListenerSpec),
}

impl Spec {
    fn addr(&self) -> SocketAddr {
        match self {
            Spec::Stream(s) => s.addr,
            Spec::Edge(s) => s.addr,
            Spec::Udp(s) => s.addr,
        }
    }

    /// The same spec at the address actually bound (differs from the
    /// configured one when the file says port 0).
    fn at(mut self, addr: SocketAddr) -> Self {
        match &mut self {
            Spec::Stream(s) => s.addr = addr,
            Spec::Edge(s) => s.addr = addr,
            Spec::Udp(s) => s.addr = addr,
        }
        self
    }

    fn transport(&self) -> Transport {
        match self {
            Spec::Stream(_) | Spec::Edge(_) => Transport::Tcp,
            Spec::Udp(_) => Transport::Udp,
        }
    }

    /// The log and metric label (`tls/127.0.0.1:8888`, `http/...`).
    fn label(&self) -> String {
        match self {
            Spec::Stream(s) => format!("stream {}", s.label()),
            Spec::Edge(s) => format!("edge {}", s.label()),
            Spec::Udp(s) => format!("stream {}", s.label()),
        }
    }

    /// What a bind failure says (`stream listener 0.0.0.0:8888 (tls: true)`).
    fn describe(&self) -> String {
        match self {
            Spec::Stream(s) => format!("stream listener {} (tls: {})", s.addr, s.tls),
            Spec::Edge(s) => format!("edge listener {} (tls: {})", s.addr, s.tls),
            Spec::Udp(s) => format!("UDP stream listener {}", s.addr),
        }
    }
}

/// Two listeners with the same transport and configured address are the
/// same listener (its settings may change); anything else is a remove and
/// an add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// What identifies a listener across reloads: its transport and its
/// address in the file (a TCP and a UDP listener may share a port).
type Key = (SocketAddr, Transport);

/// The listeners the file asks for, in file order, at their configured
/// addresses, each with its field path (`stream.tcp[2]`) for errors. The
/// one place a listener's config becomes its spec, for the start and for
/// every reload.
fn wanted(config: &Config) -> Vec<(String, Spec)> {
    let stream = config.stream.tcp.iter().enumerate().map(|(i, l)| {
        let spec = ListenerSpec {
            addr: l.addr.0,
            tls: l.tls,
            fallback_sni: l.fallback_sni.clone(),
            web_acl: l.web_acl.clone(),
            proxy_protocol: l.proxy_protocol,
            proxy_protocol_to_upstream: l.proxy_protocol_to_upstream,
        };
        (format!("stream.tcp[{i}]"), Spec::Stream(spec))
    });
    let edge = config.edge.http.iter().enumerate().map(|(i, l)| {
        (
            format!("edge.http[{i}]"),
            Spec::Edge(HttpListenerSpec { addr: l.addr.0, tls: l.tls, proxy_protocol: l.proxy_protocol }),
        )
    });
    let udp = config.stream.udp.iter().enumerate().map(|(i, l)| {
        (format!("stream.udp[{i}]"), Spec::Udp(UdpListenerSpec { addr: l.addr.0, web_acl: l.web_acl.clone() }))
    });
    stream.chain(edge).chain(udp).collect()
}

/// The per-connection settings a reload can change: every connection reads
/// them from its listener's context, so a change restarts the accept loops
/// (on the same sockets) like any other listener change.
#[derive(Debug, Clone, PartialEq)]
struct Tuning {
    handshake_timeout: Duration,
    client_hello_max_bytes: usize,
    header_read_timeout: Duration,
    edge_idle_timeout: Duration,
    h2_keepalive_interval: Duration,
    h2_keepalive_timeout: Duration,
}

impl Tuning {
    fn from(config: &Config) -> Self {
        Tuning {
            handshake_timeout: config.limits.handshake_timeout.get(),
            client_hello_max_bytes: config.limits.client_hello_max_bytes,
            header_read_timeout: config.edge.header_read_timeout.get(),
            edge_idle_timeout: config.edge.idle_timeout.get(),
            h2_keepalive_interval: config.edge.h2_keepalive_interval.get(),
            h2_keepalive_timeout: config.edge.h2_keepalive_timeout.get(),
        }
    }
}

/// A bound socket. Its accept loop serves a copy of it (`dup`), so a
/// changed listener's next loop can take another copy without a rebind.
#[derive(Debug)]
enum Socket {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

impl Socket {
    fn try_clone(&self) -> std::io::Result<Socket> {
        match self {
            Socket::Tcp(s) => s.try_clone().map(Socket::Tcp),
            Socket::Udp(s) => s.try_clone().map(Socket::Udp),
        }
    }
}

/// What an accept loop is started with: its copy of the socket, registered
/// with the runtime, and what it serves.
enum Serving {
    Stream(tokio::net::TcpListener, ListenerSpec),
    Edge(tokio::net::TcpListener, HttpListenerSpec, Arc<EdgeService>),
    Udp(tokio::net::UdpSocket, UdpListenerSpec),
}

/// One listener with its accept loop running.
#[derive(Debug)]
struct Running {
    /// The address in the file, with the transport.
    configured: Key,
    /// What it serves; its address is the bound one.
    spec: Spec,
    tuning: Tuning,
    socket: Socket,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// An accept loop to start on commit.
struct Start {
    configured: Key,
    spec: Spec,
    /// The copy of the socket the manager keeps.
    socket: Socket,
    /// The accept loop's copy of the socket, and what it serves.
    serving: Serving,
    /// The running listener this one replaces.
    replaces: Option<Key>,
}

/// A change worked out by [`Listeners::prepare`]: sockets bound, nothing
/// serving yet. Dropping it closes what it bound and changes nothing.
pub struct Plan {
    start: Vec<Start>,
    /// Configured addresses of running listeners the file no longer has.
    remove: Vec<Key>,
    tuning: Tuning,
}

/// What a commit did, by listener label, for the log and the reload status.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Changes {
    /// Listeners bound and serving.
    pub added: Vec<String>,
    /// Listeners that stopped accepting (their sessions run on).
    pub removed: Vec<String>,
    /// Listeners serving new connections with new settings on the same socket.
    pub changed: Vec<String>,
}

/// What every listener shares, fixed for the life of the process.
pub struct Shared {
    /// The published configuration.
    pub handle: Arc<SnapshotHandle>,
    /// The metrics registry (the edge registers its families the first time
    /// an edge listener starts).
    pub metrics: Metrics,
    /// Stream metric families.
    pub stream_metrics: StreamMetrics,
    /// Connections open at once over all listeners.
    pub max_connections: Arc<Semaphore>,
    /// Web ACL samples, shared with the Admin API.
    pub samples: Arc<shardgate_waf::Samples>,
    /// The country database, if configured.
    pub geo: Option<Arc<shardgate_waf::GeoDb>>,
    /// `limit-conn` counts, shared by every stream listener and kept across
    /// reloads and snapshots.
    pub limit_conn: Arc<shardgate_stream::plugins::LimitConnRegistry>,
    /// UDP sessions open at once over all UDP listeners (`limits.udp_max_sessions`).
    pub udp_max_sessions: Arc<Semaphore>,
    /// UDP metric families.
    pub udp_metrics: UdpMetrics,
}

/// The running listeners and what it takes to start more.
pub struct Listeners {
    shared: Shared,
    /// `stream.keepalive` as started (a socket option set at bind).
    keepalive: Duration,
    /// `stream.udp_idle_timeout` as started.
    udp_idle_timeout: Duration,
    /// `edge.cache` as started (the cache is sized once).
    cache: CacheConfig,
    /// `edge.access_log` as started.
    access_log: AccessLogConfig,
    /// `store.data_dir` as started, for the default disk-cache directory.
    cache_dir: std::path::PathBuf,
    /// Created the first time an edge listener is wanted, then kept: the
    /// cache outlives the listeners that use it. Shared with the cache
    /// warm, which runs requests through it ([`Listeners::edge`]).
    edge: Arc<OnceLock<Arc<EdgeService>>>,
    /// Whether the edge's invalidation purge task runs.
    purging: bool,
    running: Vec<Running>,
}

impl Listeners {
    /// No listener yet; `started` is the file the process started with,
    /// whose settings that cannot change live (socket options, cache sizes)
    /// every listener uses.
    pub fn new(shared: Shared, started: &Config) -> Self {
        Listeners {
            shared,
            keepalive: started.stream.keepalive.get(),
            udp_idle_timeout: started.stream.udp_idle_timeout.get(),
            cache: started.edge.cache.clone(),
            access_log: started.edge.access_log.clone(),
            cache_dir: started.cache_dir(),
            edge: Arc::default(),
            purging: false,
            running: Vec::new(),
        }
    }

    /// The edge service, once the first edge listener (at start or added
    /// by a reload) has created it; empty while the gateway serves no edge.
    pub fn edge(&self) -> Arc<OnceLock<Arc<EdgeService>>> {
        Arc::clone(&self.edge)
    }

    /// Binds what `config` adds and takes copies of the sockets whose
    /// settings it changes; serves nothing yet. An error names the field
    /// and the address that could not be bound (`stream.tcp[2].addr:
    /// binding stream listener ...`), and everything bound so far is closed.
    pub fn prepare(&self, config: &Config) -> anyhow::Result<Plan> {
        let tuning = Tuning::from(config);
        let wanted = wanted(config);
        let mut start = Vec::new();
        for (field, spec) in &wanted {
            let configured = (spec.addr(), spec.transport());
            let running = self.running.iter().find(|r| r.configured == configured);
            match running {
                Some(r) => {
                    let spec = spec.clone().at(r.spec.addr());
                    if spec == r.spec && (tuning == r.tuning || spec.transport() == Transport::Udp) {
                        continue;
                    }
                    if spec.transport() == Transport::Udp {
                        // Two receive loops on one UDP socket would split a
                        // session's datagrams between two session tables.
                        anyhow::bail!(
                            "{field}: a UDP listener's settings cannot change while it runs (its sessions are bound to its socket); remove it, reload, and add it back once its sessions have ended, or restart"
                        );
                    }
                    let sharing = || format!("sharing the socket of {}", r.spec.label());
                    let socket = r.socket.try_clone().with_context(sharing)?;
                    let serving = self.serving(&r.socket, &spec).with_context(sharing)?;
                    start.push(Start { configured, spec, socket, serving, replaces: Some(configured) });
                }
                None => {
                    let bind_error = || format!("{field}.addr: binding {}", spec.describe());
                    let (socket, local) = self.bind(spec).with_context(bind_error)?;
                    let spec = spec.clone().at(local);
                    let serving = self.serving(&socket, &spec).with_context(bind_error)?;
                    start.push(Start { configured, spec, socket, serving, replaces: None });
                }
            }
        }
        let remove = self
            .running
            .iter()
            .filter(|r| !wanted.iter().any(|(_, w)| (w.addr(), w.transport()) == r.configured))
            .map(|r| r.configured)
            .collect();
        Ok(Plan { start, remove, tuning })
    }

    /// Another copy of `socket`, registered with the runtime, for an
    /// accept loop serving `spec`; the edge service is created with the
    /// first edge listener.
    fn serving(&self, socket: &Socket, spec: &Spec) -> anyhow::Result<Serving> {
        let s = match socket {
            Socket::Tcp(s) => s,
            Socket::Udp(u) => {
                let Spec::Udp(spec) = spec else { anyhow::bail!("a UDP socket for a TCP listener") };
                return Ok(Serving::Udp(tokio::net::UdpSocket::from_std(u.try_clone()?)?, spec.clone()));
            }
        };
        let copy = tokio::net::TcpListener::from_std(s.try_clone()?)?;
        Ok(match spec {
            Spec::Udp(_) => anyhow::bail!("a TCP socket for a UDP listener"),
            Spec::Stream(spec) => Serving::Stream(copy, spec.clone()),
            Spec::Edge(spec) => {
                let edge = match self.edge.get() {
                    Some(edge) => Arc::clone(edge),
                    None => {
                        let edge = self.edge_service()?;
                        if self.edge.set(Arc::clone(&edge)).is_err() {
                            tracing::debug!("the edge service was already created");
                        }
                        edge
                    }
                };
                Serving::Edge(copy, spec.clone(), edge)
            }
        })
    }

    fn bind(&self, spec: &Spec) -> std::io::Result<(Socket, SocketAddr)> {
        match spec.transport() {
            Transport::Tcp => {
                let l = shardgate_stream::bind(spec.addr(), self.keepalive)?;
                let local = l.local_addr()?;
                Ok((Socket::Tcp(l.into_std()?), local))
            }
            Transport::Udp => {
                let u = shardgate_stream::bind_udp(spec.addr())?;
                let local = u.local_addr()?;
                Ok((Socket::Udp(u.into_std()?), local))
            }
        }
    }

    /// Starts the plan's accept loops, then stops those it replaces or
    /// removes and waits until they have returned (their sockets are
    /// closed unless a new loop serves a copy).
    pub async fn commit(&mut self, plan: Plan, drain: &Drain) -> Changes {
        let mut changes = Changes::default();
        if let Some(edge) = self.edge.get()
            && !self.purging
        {
            tokio::spawn(shardgate_http::purge_invalidated(
                Arc::clone(&self.shared.handle),
                Arc::clone(&edge.cache),
                edge.metrics.clone(),
            ));
            self.purging = true;
        }
        let mut started = Vec::with_capacity(plan.start.len());
        let mut stopping: Vec<Key> = plan.remove.clone();
        for s in plan.start {
            let label = s.spec.label();
            let (stop, task) = self.spawn(s.serving, &plan.tuning, drain);
            match s.replaces.and_then(|a| self.running.iter().find(|r| r.configured == a)) {
                Some(old) if old.spec.label() != label => {
                    changes.changed.push(format!("{} -> {label}", old.spec.label()))
                }
                Some(_) => changes.changed.push(label.clone()),
                None => changes.added.push(label.clone()),
            }
            if let Some(a) = s.replaces {
                stopping.push(a);
            }
            let change = if s.replaces.is_some() { "changed" } else { "added" };
            tracing::info!(listener = %label, change, "listener serving");
            started.push(Running {
                configured: s.configured,
                spec: s.spec,
                tuning: plan.tuning.clone(),
                socket: s.socket,
                stop,
                task,
            });
        }
        let (stop, keep): (Vec<Running>, Vec<Running>) =
            std::mem::take(&mut self.running).into_iter().partition(|r| stopping.contains(&r.configured));
        self.running = keep;
        self.running.extend(started);
        for old in stop {
            let label = old.spec.label();
            if plan.remove.contains(&old.configured) {
                changes.removed.push(label.clone());
            }
            stop_loop(old).await;
            tracing::info!(listener = %label, "listener stopped accepting; its sessions run on");
        }
        changes
    }

    /// Starts one accept loop; returns its stop switch and task.
    fn spawn(&self, serving: Serving, tuning: &Tuning, drain: &Drain) -> (oneshot::Sender<()>, JoinHandle<()>) {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        // A dropped sender stops the loop too.
        let stop = async move { stop_rx.await.unwrap_or_default() };
        let task = match serving {
            Serving::Stream(socket, spec) => {
                let settings = StreamSettings {
                    max_connections: Arc::clone(&self.shared.max_connections),
                    handshake_timeout: tuning.handshake_timeout,
                    client_hello_max_bytes: tuning.client_hello_max_bytes,
                    limit_conn: Arc::clone(&self.shared.limit_conn),
                };
                tokio::spawn(shardgate_stream::serve(
                    socket,
                    spec,
                    Arc::clone(&self.shared.handle),
                    settings,
                    self.shared.stream_metrics.clone(),
                    drain.watch(),
                    stop,
                ))
            }
            Serving::Edge(socket, spec, edge) => {
                let settings = HttpSettings {
                    max_connections: Arc::clone(&self.shared.max_connections),
                    handshake_timeout: tuning.handshake_timeout,
                    header_read_timeout: tuning.header_read_timeout,
                    client_hello_max_bytes: tuning.client_hello_max_bytes,
                    idle_timeout: tuning.edge_idle_timeout,
                    h2_keepalive_interval: tuning.h2_keepalive_interval,
                    h2_keepalive_timeout: tuning.h2_keepalive_timeout,
                    proxy_protocol_refused: self.shared.stream_metrics.proxy_protocol_refused.clone(),
                };
                tokio::spawn(shardgate_http::serve(socket, spec, edge, settings, drain.watch(), stop))
            }
            Serving::Udp(socket, spec) => {
                let settings = UdpSettings {
                    idle_timeout: self.udp_idle_timeout,
                    max_sessions: Arc::clone(&self.shared.udp_max_sessions),
                    max_connections: Arc::clone(&self.shared.max_connections),
                    limit_conn: Arc::clone(&self.shared.limit_conn),
                };
                tokio::spawn(shardgate_stream::serve_udp(
                    socket,
                    spec,
                    Arc::clone(&self.shared.handle),
                    settings,
                    self.shared.udp_metrics.clone(),
                    drain.watch(),
                    stop,
                ))
            }
        };
        (stop_tx, task)
    }

    /// The edge service: the cache (memory tier, and the disk tier unless
    /// `edge.cache.disk_bytes` is 0) and the edge metric families.
    fn edge_service(&self) -> anyhow::Result<Arc<EdgeService>> {
        let c = &self.cache;
        let cache_settings = CacheSettings { memory_bytes: c.memory_bytes, max_object_bytes: c.max_object_bytes };
        let cache = if c.disk_bytes == 0 {
            Cache::new(cache_settings)
        } else {
            let dir = self.cache_dir.clone();
            let disk =
                DiskSettings { dir: dir.clone(), max_bytes: c.disk_bytes, max_object_bytes: c.disk_max_object() };
            let (cache, found) = Cache::with_disk(cache_settings, disk)
                .with_context(|| format!("opening the disk cache in {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), objects = found, bytes = cache.disk_usage(), "disk cache tier opened");
            cache
        };
        let access_log = AccessLog::new(&self.access_log.settings());
        access_log.announce();
        let metrics = EdgeMetrics::register(&self.shared.metrics);
        let origins = shardgate_http::origin::OriginClient::new(
            shardgate_http::origin::pool::DEFAULT_MAX_IDLE_TOTAL,
            Some(&metrics),
        );
        Ok(Arc::new(EdgeService {
            snapshots: Arc::clone(&self.shared.handle),
            cache,
            metrics,
            origins,
            samples: Arc::clone(&self.shared.samples),
            geo: self.shared.geo.clone(),
            targeted_cache_control: c.targeted_fields()?,
            access_log,
        }))
    }

    /// Waits until every accept loop has returned (they stop when the drain
    /// starts); the sessions they started are waited for by the drain.
    pub async fn drained(self) {
        for r in self.running {
            if let Err(e) = r.task.await {
                tracing::warn!(listener = %r.spec.label(), error = %e, "a listener task failed");
            }
        }
    }
}

/// Stops one accept loop and waits until it has returned, closing its copy
/// of the socket (and the manager's, dropped here).
async fn stop_loop(old: Running) {
    let Running { spec, socket, stop, task, .. } = old;
    if stop.send(()).is_err() {
        tracing::debug!(listener = %spec.label(), "the accept loop had already returned");
    }
    if spec.transport() == Transport::Udp {
        // A stopped UDP listener opens no session but keeps relaying its
        // open ones (their replies leave from its socket) until they idle
        // out: its task ends then, and the drain waits for it.
        return;
    }
    match tokio::time::timeout(STOP_WAIT, task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(listener = %spec.label(), error = %e, "a listener task failed"),
        Err(_) => {
            tracing::warn!(listener = %spec.label(), "the accept loop did not return in time; it stops on its own")
        }
    }
    drop(socket);
}
