//! Health checks of upstream nodes (APISIX's `checks`): per-node health
//! state, the checker task that probes the nodes, the passive path fed by
//! real connects, fail-open, and the status APISIX's control API shows.
//!
//! The flow (docs/lifecycle/health-check.md tells it in full):
//!
//! ```text
//! config (model::HealthChecks) -> Registry::get_or_create -> Health (one per runtime)
//!   -> checker task: per node, every healthy/unhealthy interval, a probe (tcp, http, https)
//!   -> state::NodeState::record (lua-resty-healthcheck's counters) -> NodeHealth.status
//!   -> Upstream::select: a node that takes no traffic is down for the balancer
//! Upstream::connect_with -> connected/failed -> Health::passive (same counters)
//! every weighted node unhealthy -> fail open (all nodes used), a warning and a gauge
//! ```
//!
//! What outlives a change: a node's state ([`NodeHealth`]) is shared by the
//! old and the new runtime of an upstream for every node whose `host:port`
//! stays, so an edit neither forgets that a node is down nor that it was
//! healthy. The old runtime's checker stops when the registry replaces or
//! drops it, and when the runtime itself is dropped; a runtime still held by
//! open connections keeps its state but probes nothing.
//!
//! Bounds: probes of one upstream in flight at most `active.concurrency`, of
//! the whole process at most [`MAX_PROBES_IN_FLIGHT`]; each probe within
//! `active.timeout`; of an HTTP answer at most 512 bytes read, up to the end
//! of its status line.

pub mod state;

mod checker;
mod probe;
mod status;
#[cfg(test)]
mod tests;

pub use probe::system_roots;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use shardgate_model::HealthChecks;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

pub use state::{Counters, NodeState, Outcome, Status, Thresholds};

use crate::Resolver;
use crate::metrics::{HealthMetrics, NodeLabels, ProbeLabels, UpstreamLabels};

/// Most active probes in flight in the whole process (every upstream's
/// `concurrency` together); beyond it probes wait their turn.
pub const MAX_PROBES_IN_FLIGHT: usize = 1024;

/// One node's health, shared by every runtime of its upstream that has the
/// node (same `host:port`).
#[derive(Debug)]
pub struct NodeHealth {
    /// [`Status`] as a byte, read on every connect without the lock.
    status: AtomicU8,
    inner: Mutex<NodeInner>,
    gauge: Gauge,
}

#[derive(Debug, Default)]
struct NodeInner {
    state: NodeState,
    /// The address last probed or connected to.
    ip: Option<IpAddr>,
}

impl NodeHealth {
    fn new(gauge: Gauge) -> Self {
        gauge.set(1);
        NodeHealth { status: AtomicU8::new(Status::Healthy.to_u8()), inner: Mutex::new(NodeInner::default()), gauge }
    }

    /// The status now.
    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Relaxed))
    }

    /// Status and counters now.
    pub fn state(&self) -> NodeState {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).state
    }
}

/// What the health of one upstream node looks like from outside.
#[derive(Debug)]
struct NodeInfo {
    /// `host:port` as configured (the metric label).
    label: String,
    /// The host as configured (an IPv6 address without its brackets).
    hostname: String,
    port: u16,
    weight: u32,
    /// `shardgate_upstream_health_probes_total` by [`Outcome`], created on
    /// first use (a result never seen has no series).
    probes: [OnceLock<Counter>; 5],
}

/// The health checks of one upstream runtime.
#[derive(Debug)]
pub struct Health {
    /// `upstreams/<id>`, `stream_routes/<id>`, ...
    label: String,
    checks: HealthChecks,
    active: Thresholds,
    passive: Thresholds,
    nodes: Box<[Arc<NodeHealth>]>,
    info: Box<[NodeInfo]>,
    targets: Box<[probe::Target]>,
    fail_open: AtomicBool,
    fail_open_gauge: Gauge,
    fail_open_connects: Counter,
    metrics: HealthMetrics,
    task: Mutex<Option<AbortHandle>>,
}

impl Health {
    /// The health of the runtime labelled `label` with configuration
    /// `config`, or `None` when it has no `checks`. Nodes that `previous`
    /// (the runtime being replaced) also has keep their state.
    pub(crate) fn new(
        label: &str,
        config: &shardgate_model::Upstream,
        previous: Option<&Health>,
        metrics: &HealthMetrics,
    ) -> Option<Arc<Self>> {
        let checks = config.checks.clone()?;
        let mut nodes = Vec::with_capacity(config.nodes.len());
        let mut info = Vec::with_capacity(config.nodes.len());
        let mut targets = Vec::with_capacity(config.nodes.len());
        for node in &config.nodes {
            let node_label = node.to_string();
            let kept = previous.and_then(|p| p.info.iter().position(|i| i.label == node_label).map(|k| &p.nodes[k]));
            let health = match kept {
                Some(h) => Arc::clone(h),
                None => {
                    let labels = NodeLabels { upstream: label.to_owned(), node: node_label.clone() };
                    Arc::new(NodeHealth::new(metrics.node_healthy.get_or_create_owned(&labels)))
                }
            };
            nodes.push(health);
            targets.push(probe::Target::new(node, &checks.active));
            let hostname = node.host.to_string().trim_matches(['[', ']']).to_owned();
            info.push(NodeInfo {
                label: node_label,
                hostname,
                port: node.port,
                weight: node.weight,
                probes: Default::default(),
            });
        }
        let labels = UpstreamLabels { upstream: label.to_owned() };
        let health = Arc::new(Health {
            label: label.to_owned(),
            active: Thresholds::active(&checks),
            passive: Thresholds::passive(&checks),
            checks,
            nodes: nodes.into(),
            info: info.into(),
            targets: targets.into(),
            fail_open: AtomicBool::new(previous.is_some_and(|p| p.fail_open.load(Ordering::Relaxed))),
            fail_open_gauge: metrics.fail_open.get_or_create_owned(&labels),
            fail_open_connects: metrics.fail_open_connects.get_or_create_owned(&labels),
            metrics: metrics.clone(),
            task: Mutex::new(None),
        });
        health.update_fail_open();
        Some(health)
    }

    /// Starts the checker task (on the current tokio runtime; without one,
    /// as in some unit tests, nothing probes and the nodes stay as they are).
    pub(crate) fn start(self: &Arc<Self>, resolver: Arc<Resolver>, permits: Arc<Semaphore>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(upstream = %self.label, "no async runtime here; the health checker does not run");
            return;
        };
        let task = runtime.spawn(checker::run(Arc::clone(self), resolver, permits));
        *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
    }

    /// Stops the checker task, if it runs. The state stays readable.
    pub(crate) fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }

    /// Removes the series of nodes (and of the upstream) that `next` (the
    /// runtime taking over, if any) does not have, so a removed node leaves
    /// no stale `shardgate_upstream_node_healthy` behind, and a fleet of
    /// short-lived room servers no pile of probe counters.
    pub(crate) fn forget_series(&self, next: Option<&Health>) {
        for info in &self.info {
            if next.is_some_and(|n| n.info.iter().any(|i| i.label == info.label)) {
                continue;
            }
            self.metrics.node_healthy.remove(&NodeLabels { upstream: self.label.clone(), node: info.label.clone() });
            for outcome in
                [Outcome::Success, Outcome::HttpFailure, Outcome::TcpFailure, Outcome::Timeout, Outcome::Ignored]
            {
                // Also the series an older runtime of this node created.
                let labels =
                    ProbeLabels { upstream: self.label.clone(), node: info.label.clone(), result: outcome.as_str() };
                self.metrics.probes.remove(&labels);
            }
        }
        if next.is_none() {
            let labels = UpstreamLabels { upstream: self.label.clone() };
            self.metrics.fail_open.remove(&labels);
        }
    }

    /// The configuration.
    pub fn checks(&self) -> &HealthChecks {
        &self.checks
    }

    /// Node `index`'s health.
    pub fn node(&self, index: usize) -> &NodeHealth {
        &self.nodes[index]
    }

    /// Whether the balancer may pick node `index`.
    pub fn takes_traffic(&self, index: usize) -> bool {
        self.nodes[index].status().takes_traffic()
    }

    /// Whether every node with a weight is unhealthy, so connections go to
    /// all of them anyway.
    pub fn failing_open(&self) -> bool {
        self.fail_open.load(Ordering::Relaxed)
    }

    /// Counts one connection made while failing open.
    pub(crate) fn count_fail_open_connect(&self) {
        self.fail_open_connects.inc();
    }

    /// A real connect's result on node `index` (`passive` thresholds).
    pub(crate) fn passive(&self, index: usize, outcome: Outcome, ip: Option<IpAddr>, detail: Option<&str>) {
        // The common case, a connect to a fully healthy node, counts for
        // nothing (lua-resty-healthcheck skips it too): no lock.
        if outcome == Outcome::Success && self.nodes[index].status() == Status::Healthy {
            return;
        }
        self.record(index, outcome, ip, detail, Source::Traffic);
    }

    /// An active probe's result on node `index`.
    fn probed(&self, index: usize, outcome: Outcome, ip: Option<IpAddr>, detail: Option<&str>) {
        let info = &self.info[index];
        let counter = info.probes[outcome as usize].get_or_init(|| {
            let labels =
                ProbeLabels { upstream: self.label.clone(), node: info.label.clone(), result: outcome.as_str() };
            self.metrics.probes.get_or_create_owned(&labels)
        });
        counter.inc();
        self.record(index, outcome, ip, detail, Source::Probe);
    }

    fn record(&self, index: usize, outcome: Outcome, ip: Option<IpAddr>, detail: Option<&str>, source: Source) {
        let node = &self.nodes[index];
        let thresholds = match source {
            Source::Probe => &self.active,
            Source::Traffic => &self.passive,
        };
        let (before, now) = {
            let mut inner = node.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if ip.is_some() {
                inner.ip = ip;
            }
            let before = inner.state.record(outcome, thresholds);
            node.status.store(inner.state.status.to_u8(), Ordering::Relaxed);
            (before, inner.state)
        };
        let Some(before) = before else { return };
        let info = &self.info[index];
        let c = now.counters;
        match (before.takes_traffic(), now.status.takes_traffic()) {
            (true, false) => {
                node.gauge.set(0);
                tracing::warn!(
                    upstream = %self.label, node = %info.label, status = now.status.as_str(), by = source.as_str(),
                    tcp_failures = c.tcp_failure, timeouts = c.timeout_failure, http_failures = c.http_failure,
                    last_error = detail.unwrap_or(outcome.as_str()),
                    "upstream node is unhealthy: no new connections go to it"
                );
            }
            (false, true) => {
                node.gauge.set(1);
                tracing::info!(
                    upstream = %self.label, node = %info.label, status = now.status.as_str(), by = source.as_str(),
                    successes = c.success, "upstream node is healthy again"
                );
            }
            _ => tracing::debug!(
                upstream = %self.label, node = %info.label, from = before.as_str(), to = now.status.as_str(),
                by = source.as_str(), "upstream node health changed"
            ),
        }
        self.update_fail_open();
    }

    /// Fail open when every node with a weight takes no traffic (APISIX:
    /// "if there is no healthy node can be chosen, we will continue to
    /// access the upstream"), saying so once per change, not per connection.
    fn update_fail_open(&self) {
        let weighted = || self.info.iter().zip(self.nodes.iter()).filter(|(i, _)| i.weight > 0);
        let all_down = weighted().next().is_some() && weighted().all(|(_, n)| !n.status().takes_traffic());
        self.fail_open_gauge.set(i64::from(all_down));
        if self.fail_open.swap(all_down, Ordering::Relaxed) == all_down {
            return;
        }
        if all_down {
            tracing::warn!(
                upstream = %self.label, nodes = self.nodes.len(),
                "every node of the upstream is unhealthy; failing open as APISIX does: new connections go to all nodes until one is healthy again"
            );
        } else {
            tracing::info!(upstream = %self.label, "a node of the upstream is healthy again; no longer failing open");
        }
    }
}

/// Where a result came from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// An active probe.
    Probe,
    /// A real connection attempt.
    Traffic,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Probe => "probe",
            Source::Traffic => "traffic",
        }
    }
}
