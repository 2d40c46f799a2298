//! Web ACLs on the stream plane: finding a listener's ACL in the snapshot and
//! running an ACL on a client address (and, on TLS connections, its
//! fingerprints). Shared by TCP connections (`conn`) and UDP sessions
//! (`udp`), so a refusal is evaluated, counted and labelled the same way on
//! both.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use shardgate_model::ResourceId;
use shardgate_snapshot::{CompiledAcl, Snapshot};
use shardgate_waf::TlsFingerprint;

use crate::metrics::{StreamMetrics, WafLabels};

/// The listener's web ACL `id`, if it names one and it is loaded. A listener
/// naming an ACL that is not loaded lets clients through and says so once
/// per generation (`warned` holds the last generation reported): one
/// missing resource must not shut every player out. (A route naming a
/// missing ACL is left out of the snapshot instead: see
/// `shardgate_snapshot::compile`.)
pub(crate) fn listener_acl<'s>(
    listener: &str,
    id: Option<&ResourceId>,
    warned: &AtomicU64,
    snap: &'s Snapshot,
) -> Option<&'s Arc<CompiledAcl>> {
    let id = id?;
    let compiled = snap.acls.get(id);
    if compiled.is_none() {
        let before = warned.swap(snap.generation, Ordering::Relaxed);
        if before != snap.generation {
            tracing::warn!(listener = %listener, web_acl = %id, generation = snap.generation, "the listener's web ACL is not loaded; clients are let through");
        }
    }
    compiled
}

/// Runs `compiled` on a client: its address and, when given, its TLS
/// fingerprints (no request exists: header, path and body fields are empty,
/// so the statements that mean something are those on the address,
/// countries, JA3/JA4, labels and rate-based rules keyed by them). Returns
/// the deciding rule when the client must be refused, and counts it in
/// `shardgate_stream_waf_refused_total{listener, web_acl, rule}`.
pub(crate) fn refused_by(
    listener: &str,
    metrics: &StreamMetrics,
    compiled: &CompiledAcl,
    peer: SocketAddr,
    tls: Option<&TlsFingerprint>,
) -> Option<String> {
    static EMPTY: std::sync::OnceLock<http::HeaderMap> = std::sync::OnceLock::new();
    let view = shardgate_waf::RequestView {
        method: "",
        uri_path: "",
        query: "",
        headers: EMPTY.get_or_init(http::HeaderMap::new),
        body: (b"", false),
        client_ip: peer.ip(),
        tls,
    };
    let verdict = compiled.acl.evaluate(&view);
    match verdict.action {
        shardgate_waf::Action::Allow => None,
        shardgate_waf::Action::Block(_) => {
            let rule = verdict.rule.as_deref().unwrap_or("default").to_owned();
            let labels =
                WafLabels { listener: listener.to_owned(), web_acl: compiled.id_label.to_string(), rule: rule.clone() };
            metrics.waf_refused.get_or_create(&labels).inc();
            Some(rule)
        }
    }
}
