//! shardgate-snapshot owns the read side of configuration: an immutable
//! [`Snapshot`] compiled from a `ConfigState`, and the [`SnapshotHandle`]
//! through which the data plane reads it.
//!
//! Each connection calls [`SnapshotHandle::load`] once and keeps the `Arc`
//! for its whole life, so a configuration change never touches a connection
//! already open: it finishes on the generation it started with (the shape of
//! pingora's `LoadBalancer::update` over `ArcSwap`). Runtime state
//! (balancers, counters) is not in the snapshot but in `shardgate-upstream`'s
//! registry, which the compiler asks for each route's upstream, so a route
//! edit resets nothing (linkerd's backend cache, shared across routes).
//!
//! # Layout
//! - [`sni`]: [`SniTable`], exact / one-label wildcard / suffix lookups. Pure.
//! - [`stream_router`]: [`StreamRouter`], APISIX's stream-route precedence. Pure.
//! - [`certs`]: [`CertStore`], one rustls `ServerConfig` per set of SSL
//!   objects, sharing one session cache and ticketer ([`TlsShared`]).
//! - [`edge`]: [`EdgeRouter`], host → distribution with origins, cache
//!   policies, canary and invalidations resolved.
//! - [`compile`](mod@compile): `ConfigState` → `Snapshot` plus problems.
//! - [`handle`]: [`SnapshotHandle`], `ArcSwap` plus a generation watch.

pub mod certs;
pub mod compile;
pub mod edge;
pub mod handle;
pub mod sni;
pub mod stream_router;

use shardgate_model::Problem;

pub use certs::{CertStore, TlsShared};
pub use compile::{CompileDefaults, compile};
pub use edge::{Canary, CompiledAcl, EdgeDistribution, EdgeOrigin, EdgeRouter};
pub use handle::SnapshotHandle;
pub use sni::SniTable;
pub use stream_router::{MatchRank, RouteQuery, StreamRouter, StreamTarget};

/// One immutable generation of the compiled configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store revision this snapshot reflects.
    pub generation: u64,
    /// Stream routes.
    pub stream: StreamRouter,
    /// Edge distributions by host.
    pub edge: EdgeRouter,
    /// Every web ACL that compiled, by id (distributions and stream listeners refer to them).
    pub acls: std::collections::HashMap<shardgate_model::ResourceId, std::sync::Arc<CompiledAcl>>,
    /// Whether any web ACL of [`Snapshot::acls`] reads the TLS fingerprints
    /// (JA3/JA4 fields or rate keys), computed once per generation. When
    /// none does, a listener neither keeps a copy of the ClientHello nor
    /// computes a fingerprint. An edge connection carries the fingerprint
    /// computed (or not) at its handshake for its whole life: one opened
    /// while no ACL read fingerprints has none, and a fingerprint rule added
    /// later applies its `FallbackBehavior` to it until it reconnects.
    pub reads_tls_fingerprints: bool,
    /// Whether any stream route is `tls_passthrough`, computed once per
    /// generation. Only then does a TLS listener read the ClientHello with
    /// shardgate's own parser and keep its bytes (to forward them); without
    /// one, rustls reads it as before and nothing is copied.
    pub has_tls_passthrough: bool,
    /// Certificates by SNI (shared with the previous generation while the
    /// SSL objects are unchanged).
    pub certs: std::sync::Arc<CertStore>,
    /// Resources left out of this generation, and why.
    pub problems: Vec<Problem>,
}
