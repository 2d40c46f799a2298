//! Node templates across resources. A template renders each connection's
//! SNI (`shardgate_model::node_template`), so an upstream with templates
//! cannot serve a stream route without `sni`/`snis` nor an edge origin
//! (whose connections carry no SNI). The model refuses an inline upstream
//! of that kind; here the same is refused across references, whichever of
//! the two is written second:
//!
//! - a stream route without `sni`/`snis`, or a distribution, whose
//!   `upstream_id` names an upstream with templates;
//! - an upstream written with templates while such a route or distribution
//!   uses it.

use serde_json::Value;
use shardgate_model::resource::{Resource, Wire};
use shardgate_model::{Invalid, ResourceId, ResourceKind, Validation, json as mjson};

use super::AdminState;
use crate::ApiError;

/// Why a route without an SNI cannot use a template upstream.
const ROUTE_NEEDS_SNI: &str = "has node templates, which take the connection's SNI; give the route sni or snis";
/// Why an edge origin cannot use a template upstream.
const ORIGIN_HAS_NO_SNI: &str = "has node templates, which take a stream connection's SNI; an edge origin has none";

impl AdminState {
    /// Refuses the pairings listed in the module's documentation.
    pub(super) async fn check_templates(&self, id: &ResourceId, wire: &Wire) -> Result<(), ApiError> {
        match wire {
            Wire::StreamRoute(route) if route.sni.is_none() && route.snis.is_none() => {
                if let Some(uid) = upstream_id("upstream_id", &route.upstream_id)
                    && self.is_template_upstream(&uid).await?
                {
                    return Err(ApiError::Invalid(Invalid::new(
                        "upstream_id",
                        format!("upstream {uid} {ROUTE_NEEDS_SNI}"),
                    )));
                }
            }
            Wire::Distribution(dist) => {
                for (name, origin) in &dist.origins {
                    let field = format!("origins.{name}.upstream_id");
                    if let Some(uid) = upstream_id(&field, &origin.upstream_id)
                        && self.is_template_upstream(&uid).await?
                    {
                        return Err(ApiError::Invalid(Invalid::new(
                            field,
                            format!("upstream {uid} {ORIGIN_HAS_NO_SNI}"),
                        )));
                    }
                }
            }
            Wire::Upstream(_) => {
                let Ok(Resource::Upstream(up)) = wire.validate(id, Validation::default()) else { return Ok(()) };
                if up.is_template() {
                    self.refuse_template_users(id).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the stored upstream `id` has node templates (a missing one
    /// is reported by the reference check).
    async fn is_template_upstream(&self, id: &ResourceId) -> Result<bool, ApiError> {
        let key = ResourceKind::Upstreams.key(self.prefix(), id);
        let Some(kv) = self.store().get(&key).await? else { return Ok(false) };
        let parsed = mjson::parse(&kv.value).ok().and_then(|v| Wire::from_value(ResourceKind::Upstreams, v).ok());
        Ok(match parsed.map(|w| w.validate(id, Validation::default())) {
            Some(Ok(Resource::Upstream(up))) => up.is_template(),
            _ => false,
        })
    }

    /// Refuses an upstream with templates that a stream route without an
    /// SNI, or a distribution, uses.
    async fn refuse_template_users(&self, id: &ResourceId) -> Result<(), ApiError> {
        for kind in [ResourceKind::StreamRoutes, ResourceKind::Distributions] {
            let listing = self.store().list(&kind.key_prefix(self.prefix())).await?;
            for kv in &listing.kvs {
                let Ok(value) = mjson::parse(&kv.value) else { continue };
                let Ok(user) = Wire::from_value(kind, value) else { continue };
                let uses = user.references().iter().any(|r| r.kind == ResourceKind::Upstreams && r.id == *id);
                let why = match &user {
                    Wire::StreamRoute(r) if uses && r.sni.is_none() && r.snis.is_none() => {
                        "which has no sni or snis; a node template takes the connection's SNI"
                    }
                    Wire::Distribution(_) if uses => "whose origins' connections carry no SNI for a node template",
                    _ => continue,
                };
                let uid = kv.key.rsplit('/').next().unwrap_or_default();
                return Err(ApiError::Invalid(Invalid::new(
                    "nodes",
                    format!("{} [{uid}] uses this upstream, {why}", kind.singular()),
                )));
            }
        }
        Ok(())
    }
}

fn upstream_id(field: &str, v: &Option<Value>) -> Option<ResourceId> {
    v.as_ref().and_then(|v| ResourceId::from_json(field, v).ok())
}
