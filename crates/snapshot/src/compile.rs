//! `ConfigState` → [`Snapshot`].
//!
//! The compiler resolves references (a route's `upstream_id`), takes upstream
//! runtimes from the registry (reused when unchanged), builds the certificate
//! store (reusing unchanged configs from the previous snapshot) and the route
//! table. A resource that cannot be compiled is left out and reported as a
//! [`Problem`]; everything else still applies. Stale upstream runtimes are
//! dropped from the registry at the end.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use shardgate_model::{ConfigState, Invalid, Problem, ResourceKind, UpstreamRef};
use shardgate_upstream::{Registry, UpstreamKey};

use crate::stream_router::{Filters, StreamTarget};
use crate::{CertStore, EdgeRouter, Snapshot, StreamRouter, TlsShared};

/// Settings from the bootstrap file that compiled routes fall back to.
#[derive(Debug, Clone)]
pub struct CompileDefaults {
    /// Idle timeout of stream connections whose route and upstream set none.
    pub idle_timeout: Duration,
    /// The country database for `GeoMatchStatement`s, from the bootstrap file.
    pub geo: Option<Arc<shardgate_waf::GeoDb>>,
}

/// Compiles `state` into a snapshot. Problems found in `state` (rejected
/// versions) and while compiling are all listed in `Snapshot::problems`.
pub fn compile(
    state: &ConfigState,
    registry: &Registry,
    tls: &TlsShared,
    prev: &Snapshot,
    defaults: &CompileDefaults,
) -> Snapshot {
    let mut problems: Vec<Problem> = state.problems().cloned().collect();

    let certs = CertStore::build_or_reuse(&state.ssls, tls, &prev.certs, &mut problems);

    let acls = crate::edge::compile_acls(state, defaults.geo.as_ref(), &prev.acls, &mut problems);
    let mut stream = StreamRouter::default();
    let mut used: HashSet<UpstreamKey> = HashSet::new();
    for (id, entry) in &state.stream_routes {
        let route = &entry.value;
        let problem =
            |invalid| Problem { kind: ResourceKind::StreamRoutes, id: id.clone(), revision: entry.revision, invalid };
        // Like a distribution's, a route whose ACL is missing is left out
        // rather than served unprotected.
        let waf = match &route.web_acl {
            None => None,
            Some(aid) => match acls.get(aid) {
                Some(acl) => {
                    // The Admin API refuses this pairing; a store written by
                    // other means still gets a working route, with a warning.
                    if let Some(rule) = acl.acl.request_rule() {
                        tracing::warn!(route = %id, web_acl = %aid, rule, "the route's web ACL inspects request fields, which a stream connection does not have; they match as empty");
                    }
                    Some(Arc::clone(acl))
                }
                None => {
                    problems.push(problem(Invalid::new(
                        "web_acl_id",
                        format!("web ACL {aid} does not exist or does not compile; the route is left out rather than served unprotected"),
                    )));
                    continue;
                }
            },
        };
        let (key, config) = match &route.upstream {
            UpstreamRef::Inline(config) => (UpstreamKey::InlineStream(id.clone()), Arc::clone(config)),
            UpstreamRef::Id(uid) => match state.upstreams.get(uid) {
                Some(u) => (UpstreamKey::Named(uid.clone()), Arc::clone(&u.value)),
                None => {
                    problems.push(problem(Invalid::new("upstream_id", format!("upstream {uid} does not exist"))));
                    continue;
                }
            },
        };
        let upstream = registry.get_or_create(key.clone(), &config);
        used.insert(key);
        let idle_timeout = route.idle_timeout.or(config.idle_timeout).unwrap_or(defaults.idle_timeout);
        let filters =
            Filters { server_port: route.server_port, server_addr: route.server_addr, remote_addr: route.remote_addr };
        let target = Arc::new(StreamTarget { route: Arc::clone(route), upstream, idle_timeout, waf });
        stream.insert(&route.snis, filters, target);
    }
    let edge = EdgeRouter::build(state, registry, &acls, &mut used, &mut problems);
    // Health checkers start when the configuration loads, not on first
    // traffic: an upstream with `checks` gets its runtime even before a
    // route uses it.
    for (id, entry) in state.upstreams.iter().filter(|(_, e)| e.value.checks.is_some()) {
        if used.insert(UpstreamKey::Named(id.clone())) {
            registry.get_or_create(UpstreamKey::Named(id.clone()), &entry.value);
        }
    }
    registry.retain(&used);

    let reads_tls_fingerprints = acls.values().any(|a| a.acl.uses_tls_fingerprints());
    // Routes left out above count too: that costs at most a copy of the ClientHello.
    let has_tls_passthrough = state.stream_routes.values().any(|e| e.value.tls_passthrough);
    Snapshot {
        generation: state.revision(),
        stream,
        edge,
        acls,
        reads_tls_fingerprints,
        has_tls_passthrough,
        certs,
        problems,
    }
}

#[cfg(test)]
mod tests;
