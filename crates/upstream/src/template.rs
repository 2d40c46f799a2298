//! Node names at connect time: a node's DNS name, or the name a node
//! template renders from the connection's SNI (`shardgate_model::node_template`),
//! resolved through the shared [`Resolver`].
//!
//! For a template upstream, a check runs in `connect_with` before the first
//! attempt: a connection without an SNI, or whose SNI renders no valid DNS
//! name for any of the upstream's templates (a label that breaks the LDH
//! rule, a label the SNI does not have), is refused there, before any
//! lookup. It is closed, counted in
//! `shardgate_upstream_template_refused_total{upstream, reason}` and logged
//! at debug only (a player can send any SNI; the log must not be theirs to
//! flood). Each attempt then renders its node's template again (a few
//! string operations) and resolves the name.
//!
//! **Failure marks.** One dead room is not a dead fleet: a rendered name
//! that fails a connect (refused, timed out, unknown to the DNS) fails that
//! connection only. Neither the template node nor the rendered name is
//! marked down, as nginx never marks down the only server of a group
//! (ngx_http_upstream_module: with a single server, `max_fails` and
//! `fail_timeout` are ignored): for one SNI the rendered name is the only
//! server there is. Repeated asks for a name the DNS does not know cost
//! one query per [`NEGATIVE_TTL`](crate::resolver::NEGATIVE_TTL), and the
//! failures are counted per node (`shardgate_upstream_connect_failures_total`,
//! its `node` label the template, so series stay one per template, not one
//! per room) and per upstream and reason in
//! `shardgate_upstream_dns_failures_total`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry as PromRegistry;
use shardgate_model::{Host, NodeTemplate};

use crate::ConnectError;
use crate::resolver::{ResolveFailure, Resolver};

/// Why a template upstream refused a connection before any lookup.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum TemplateRefusal {
    /// The connection has no SNI to render from.
    no_sni,
    /// The SNI renders no valid DNS name (LDH rule, lengths, a missing label).
    invalid_name,
}

/// `{upstream, reason}` of template refusals.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `upstreams/<id>` or `stream_routes/<id>`.
    pub upstream: String,
    /// Why.
    pub reason: TemplateRefusal,
}

/// `{upstream, reason}` of failed name lookups.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLabels {
    /// `upstreams/<id>` or `stream_routes/<id>`.
    pub upstream: String,
    /// `not_found`, `timeout`, `busy` (too many names in flight) or `error`.
    pub reason: &'static str,
}

/// The families of node-name metrics.
#[derive(Debug, Clone, Default)]
pub struct NameMetrics {
    /// `shardgate_upstream_template_refused_total{upstream, reason}`.
    pub refused: Family<RefusedLabels, Counter>,
    /// `shardgate_upstream_dns_failures_total{upstream, reason}`.
    pub dns_failures: Family<DnsLabels, Counter>,
}

impl NameMetrics {
    /// Registers the families (names without the `shardgate_` prefix).
    pub fn register(&self, r: &mut PromRegistry) {
        r.register(
            "upstream_template_refused",
            "Connections a node template refused before any lookup: no SNI, or an SNI that renders no valid DNS name",
            self.refused.clone(),
        );
        r.register(
            "upstream_dns_failures",
            "Node name lookups that failed: not_found, timeout, busy (too many names in flight, not asked) or error",
            self.dns_failures.clone(),
        );
    }
}

/// One upstream's view of node names: its metric handles.
#[derive(Debug)]
pub(crate) struct Names {
    label: String,
    metrics: NameMetrics,
}

impl Names {
    pub(crate) fn new(label: &str, metrics: &NameMetrics) -> Self {
        Names { label: label.to_owned(), metrics: metrics.clone() }
    }

    /// For a template upstream: refuses a connection whose SNI is missing
    /// or renders no valid name for any node, before any lookup.
    pub(crate) fn precheck(&self, config: &shardgate_model::Upstream, sni: Option<&str>) -> Result<(), ConnectError> {
        if !config.is_template() {
            return Ok(());
        }
        let refuse = |reason: TemplateRefusal, why: String| {
            self.metrics.refused.get_or_create(&RefusedLabels { upstream: self.label.clone(), reason }).inc();
            tracing::debug!(upstream = %self.label, sni = sni.unwrap_or(""), reason = %why, "the node template refused the connection");
            Err(ConnectError::Refused { upstream: self.label.clone(), reason: why })
        };
        let Some(sni) = sni else {
            return refuse(TemplateRefusal::no_sni, "the connection has no SNI to render a node template from".into());
        };
        let mut last = None;
        for node in &config.nodes {
            if let Host::Template(t) = &node.host {
                match t.render(sni) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = Some(e),
                }
            }
        }
        let why = last.map_or_else(|| "no node template".to_owned(), |e| e.to_string());
        refuse(TemplateRefusal::invalid_name, why)
    }

    /// The next address of `name`'s current answer. The error says whether
    /// the failure is this host's (every lookup slot busy: the node is not
    /// to blame and must not be marked down) or the name's.
    pub(crate) async fn pick(
        &self,
        resolver: &Resolver,
        name: &str,
        next: &AtomicUsize,
    ) -> Result<IpAddr, (String, bool)> {
        let addrs = resolver.resolve(name).await.map_err(|e| {
            self.dns_failed(e.kind);
            (e.to_string(), e.kind == ResolveFailure::Busy)
        })?;
        let k = next.fetch_add(1, Ordering::Relaxed);
        Ok(addrs[k % addrs.len()])
    }

    /// The next address of the name `template` renders from `sni`.
    pub(crate) async fn pick_rendered(
        &self,
        resolver: &Resolver,
        template: &NodeTemplate,
        sni: Option<&str>,
        next: &AtomicUsize,
    ) -> Result<IpAddr, (String, bool)> {
        let sni =
            sni.ok_or_else(|| ("the connection has no SNI to render the node template from".to_owned(), false))?;
        let name = template.render(sni).map_err(|e| (format!("node template {template}: {e}"), false))?;
        self.pick(resolver, &name, next).await
    }

    fn dns_failed(&self, kind: ResolveFailure) {
        let labels = DnsLabels { upstream: self.label.clone(), reason: kind.as_str() };
        self.metrics.dns_failures.get_or_create(&labels).inc();
    }
}

#[cfg(test)]
mod tests;
