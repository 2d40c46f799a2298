//! shardgate-upstream owns the runtime side of upstreams: the state that must
//! outlive configuration snapshots. A snapshot holds `Arc<Upstream>`s taken
//! from the [`Registry`]; when a new snapshot is compiled, an upstream whose
//! configuration did not change is handed out again, so its round-robin
//! position, active-connection counts and failure marks carry over and a
//! route edit resets nothing (pingora's `Backends` kept apart from the
//! selector; linkerd's backend cache shared across routes).
//!
//! # Layout
//! - [`registry`]: [`Registry`], keyed by [`UpstreamKey`], and [`Upstream`]
//!   with `connect`: select a node, resolve it, connect with a timeout, retry
//!   on the next node.
//! - [`balancer`]: node selection (smooth weighted round robin, consistent
//!   hash, least connections), with priorities and the tried set. Pure.
//! - [`resolver`]: DNS names to addresses with a TTL and last-good fallback,
//!   negative answers, a bound on names in flight; the system resolver or
//!   the configured nameservers.
//! - [`template`]: node names at connect time, node templates rendered from
//!   the SNI, and how their failures are (not) marked.
//! - [`resolver`]: DNS names to addresses with a TTL and last-good fallback.
//! - [`health`]: health checks (APISIX's `checks`): per-node state shared
//!   across runtimes, checker tasks with active probes, passive results from
//!   connects, fail-open, and the control API's status JSON.
//! - [`metrics`]: per-node counters and gauges.

pub mod balancer;
pub mod health;
pub mod metrics;
pub mod registry;
pub mod resolver;
pub mod template;
#[cfg(test)]
mod test_dns;

pub use health::{Health, system_roots};
pub use metrics::{HealthMetrics, UpstreamMetrics};
pub use registry::{
    ConnectCtx, ConnectDefaults, ConnectError, Connected, PeerGuard, Pooled, Registry, Upstream, UpstreamKey,
};
pub use resolver::Resolver;
