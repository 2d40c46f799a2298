//! One entry point for every kind: wire parsing, validation and the stored
//! form. The Admin API and the reconciler both go through here, so what the
//! Admin API accepts is exactly what the data plane can load.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use shardgate_waf::json::{IpSetJson, RegexSetJson, SetKind, WebAclJson};
use shardgate_waf::{IpSet, NoSets, RegexPatternSet, WafError, WebAcl, arn_id};

use crate::wire::{
    CachePolicyWire, CdPolicyWire, DistributionWire, InvalidationWire, SslWire, StreamRouteWire, UpstreamWire,
};
use crate::{
    CachePolicy, CdPolicy, Distribution, Invalid, Invalidation, Keyring, ResourceId, ResourceKind, Ssl, StreamRoute,
    Upstream, json, keyring,
};

/// What validation checks beyond the schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validation {
    /// When set, certificates that expired before this time (seconds since
    /// the epoch) are refused. Set by the Admin API only when
    /// `admin.refuse_expired_certificates` is on (APISIX accepts expired
    /// certificates); unset when loading stored resources.
    pub now_unix: Option<i64>,
}

/// A resource in wire form, any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    /// An SSL object.
    Ssl(SslWire),
    /// An upstream.
    Upstream(UpstreamWire),
    /// A stream route.
    StreamRoute(StreamRouteWire),
    /// A cache policy.
    CachePolicy(CachePolicyWire),
    /// A distribution.
    Distribution(DistributionWire),
    /// A continuous deployment policy.
    CdPolicy(CdPolicyWire),
    /// An invalidation.
    Invalidation(InvalidationWire),
    /// An AWS WAF IP set.
    IpSet(IpSetJson),
    /// An AWS WAF regex pattern set.
    RegexSet(RegexSetJson),
    /// An AWS WAF web ACL.
    WebAcl(WebAclJson),
}

/// A validated resource, any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// An SSL object.
    Ssl(Arc<Ssl>),
    /// An upstream.
    Upstream(Arc<Upstream>),
    /// A stream route.
    StreamRoute(Arc<StreamRoute>),
    /// A cache policy.
    CachePolicy(Arc<CachePolicy>),
    /// A distribution.
    Distribution(Arc<Distribution>),
    /// A continuous deployment policy.
    CdPolicy(Arc<CdPolicy>),
    /// An invalidation.
    Invalidation(Arc<Invalidation>),
    /// An IP set.
    IpSet(Arc<IpSet>),
    /// A regex pattern set.
    RegexSet(Arc<RegexPatternSet>),
    /// A web ACL, syntax-checked; compiled with its sets by the snapshot.
    WebAcl(Arc<WebAclJson>),
}

macro_rules! each_wire {
    ($self:expr, $w:ident => $body:expr) => {
        match $self {
            Wire::Ssl($w) => $body,
            Wire::Upstream($w) => $body,
            Wire::StreamRoute($w) => $body,
            Wire::CachePolicy($w) => $body,
            Wire::Distribution($w) => $body,
            Wire::CdPolicy($w) => $body,
            Wire::Invalidation($w) => $body,
            Wire::IpSet($w) => $body,
            Wire::RegexSet($w) => $body,
            Wire::WebAcl($w) => $body,
        }
    };
}

impl Wire {
    /// Deserializes the JSON of a `kind` (schema check, unknown fields refused).
    pub fn from_value(kind: ResourceKind, value: Value) -> Result<Self, Invalid> {
        if !value.is_object() {
            return Err(Invalid::new(
                "",
                format!("the body must be a JSON object, got {}", crate::id::json_type(&value)),
            ));
        }
        Ok(match kind {
            ResourceKind::Ssls => Wire::Ssl(json::from_value(value)?),
            ResourceKind::Upstreams => Wire::Upstream(json::from_value(value)?),
            ResourceKind::StreamRoutes => Wire::StreamRoute(json::from_value(value)?),
            ResourceKind::CachePolicies => Wire::CachePolicy(json::from_value(value)?),
            ResourceKind::Distributions => Wire::Distribution(json::from_value(value)?),
            ResourceKind::CdPolicies => Wire::CdPolicy(json::from_value(value)?),
            ResourceKind::Invalidations => Wire::Invalidation(json::from_value(value)?),
            ResourceKind::IpSets => Wire::IpSet(json::from_value(value)?),
            ResourceKind::RegexPatternSets => Wire::RegexSet(json::from_value(value)?),
            ResourceKind::WebAcls => Wire::WebAcl(json::from_value(value)?),
        })
    }

    /// The `id` field, if the body carries one.
    pub fn id(&self) -> Option<&Value> {
        each_wire!(self, w => w.id.as_ref())
    }

    /// Sets `id` (always stored as a string, as APISIX does for ids taken from the URL).
    pub fn set_id(&mut self, id: &ResourceId) {
        each_wire!(self, w => w.id = Some(Value::String(id.to_string())))
    }

    /// `create_time` and `update_time`.
    pub fn times(&self) -> (Option<i64>, Option<i64>) {
        each_wire!(self, w => (w.create_time, w.update_time))
    }

    /// Sets `create_time` and `update_time`.
    pub fn set_times(&mut self, create: i64, update: i64) {
        each_wire!(self, w => { w.create_time = Some(create); w.update_time = Some(update); })
    }

    /// Validates into a domain resource.
    pub fn validate(&self, id: &ResourceId, v: Validation) -> Result<Resource, Invalid> {
        Ok(match self {
            Wire::Ssl(w) => Resource::Ssl(Arc::new(Ssl::from_wire(id.clone(), w, v.now_unix)?)),
            Wire::Upstream(w) => Resource::Upstream(Arc::new(Upstream::from_wire(Some(id.clone()), w)?)),
            Wire::StreamRoute(w) => Resource::StreamRoute(Arc::new(StreamRoute::from_wire(id.clone(), w)?)),
            Wire::CachePolicy(w) => Resource::CachePolicy(Arc::new(CachePolicy::from_wire(w)?)),
            Wire::Distribution(w) => Resource::Distribution(Arc::new(Distribution::from_wire(id.clone(), w)?)),
            Wire::CdPolicy(w) => Resource::CdPolicy(Arc::new(CdPolicy::from_wire(w)?)),
            Wire::Invalidation(w) => Resource::Invalidation(Arc::new(Invalidation::from_wire(w)?)),
            Wire::IpSet(w) => Resource::IpSet(Arc::new(IpSet::compile(w).map_err(waf_invalid)?)),
            Wire::RegexSet(w) => Resource::RegexSet(Arc::new(RegexPatternSet::compile(w).map_err(waf_invalid)?)),
            Wire::WebAcl(w) => {
                // Syntax, regexes and structure now; references to sets are
                // checked by the Admin API and resolved by the snapshot.
                WebAcl::compile(w, &NoSets).map_err(waf_invalid)?;
                Resource::WebAcl(Arc::new(w.clone()))
            }
        })
    }

    /// The form returned to clients: private keys removed.
    pub fn redacted(self) -> Self {
        match self {
            Wire::Ssl(w) => Wire::Ssl(w.redacted()),
            other => other,
        }
    }

    /// The canonical JSON value.
    pub fn to_value(&self) -> Value {
        fn ser<T: Serialize>(t: &T) -> Value {
            // Serializing plain structs of strings, numbers and maps cannot fail.
            serde_json::to_value(t).unwrap_or(Value::Null)
        }
        each_wire!(self, w => ser(w))
    }

    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_string().into_bytes()
    }
}

fn waf_invalid(e: WafError) -> Invalid {
    Invalid::new(e.path, e.reason)
}

/// One reference from a resource to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The JSON path of the referring field.
    pub field: String,
    /// The kind referred to.
    pub kind: ResourceKind,
    /// The id referred to.
    pub id: ResourceId,
}

impl Wire {
    /// The resources this one refers to by id (ids that do not parse are
    /// left out: validation reports them).
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        let mut add = |field: String, kind: ResourceKind, v: &Option<Value>| {
            if let Some(id) = v.as_ref().and_then(|v| ResourceId::from_json(&field, v).ok()) {
                out.push(Reference { field, kind, id });
            }
        };
        match self {
            Wire::StreamRoute(w) => {
                add("upstream_id".into(), ResourceKind::Upstreams, &w.upstream_id);
                add("web_acl_id".into(), ResourceKind::WebAcls, &w.web_acl_id);
            }
            Wire::Distribution(w) => {
                for (name, o) in &w.origins {
                    add(format!("origins.{name}.upstream_id"), ResourceKind::Upstreams, &o.upstream_id);
                }
                if let Some(b) = &w.default_behavior {
                    add("default_behavior.cache_policy_id".into(), ResourceKind::CachePolicies, &b.cache_policy_id);
                }
                for (i, b) in w.behaviors.iter().flatten().enumerate() {
                    add(format!("behaviors[{i}].cache_policy_id"), ResourceKind::CachePolicies, &b.cache_policy_id);
                }
                add(
                    "continuous_deployment_policy_id".into(),
                    ResourceKind::CdPolicies,
                    &w.continuous_deployment_policy_id,
                );
                add("web_acl_id".into(), ResourceKind::WebAcls, &w.web_acl_id);
            }
            Wire::CdPolicy(w) => {
                add("staging_distribution_id".into(), ResourceKind::Distributions, &w.staging_distribution_id)
            }
            Wire::Invalidation(w) => add("distribution_id".into(), ResourceKind::Distributions, &w.distribution_id),
            Wire::WebAcl(w) => {
                // One walker over every statement at every depth (And, Or,
                // Not, a rate-based rule's scope-down), in the WAF crate.
                for r in w.references() {
                    let kind = match r.kind {
                        SetKind::IpSet => ResourceKind::IpSets,
                        SetKind::RegexPatternSet => ResourceKind::RegexPatternSets,
                    };
                    if let Ok(id) = ResourceId::parse(arn_id(&r.arn)) {
                        out.push(Reference { field: r.path, kind, id });
                    }
                }
            }
            Wire::Ssl(_) | Wire::Upstream(_) | Wire::CachePolicy(_) | Wire::IpSet(_) | Wire::RegexSet(_) => {}
        }
        out
    }
}

impl Resource {
    /// Parses and validates a stored value (no expiry check: see
    /// [`Validation`]), with no keyring: an encrypted SSL private key is
    /// refused.
    pub fn parse_stored(kind: ResourceKind, id: &ResourceId, bytes: &[u8]) -> Result<Self, Invalid> {
        Resource::parse_stored_with(kind, id, bytes, None)
    }

    /// [`Resource::parse_stored`], decrypting SSL private keys that APISIX's
    /// `data_encryption` encrypted with `keyring` first.
    pub fn parse_stored_with(
        kind: ResourceKind,
        id: &ResourceId,
        bytes: &[u8],
        keyring: Option<&Keyring>,
    ) -> Result<Self, Invalid> {
        let mut value = json::parse(bytes).map_err(|e| Invalid::new("", format!("stored value is not JSON: {e}")))?;
        if kind == ResourceKind::Ssls {
            keyring::open_ssl_value(keyring, &mut value)?;
        }
        Wire::from_value(kind, value)?.validate(id, Validation::default())
    }

    /// The kind.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::Ssl(_) => ResourceKind::Ssls,
            Resource::Upstream(_) => ResourceKind::Upstreams,
            Resource::StreamRoute(_) => ResourceKind::StreamRoutes,
            Resource::CachePolicy(_) => ResourceKind::CachePolicies,
            Resource::Distribution(_) => ResourceKind::Distributions,
            Resource::CdPolicy(_) => ResourceKind::CdPolicies,
            Resource::Invalidation(_) => ResourceKind::Invalidations,
            Resource::IpSet(_) => ResourceKind::IpSets,
            Resource::RegexSet(_) => ResourceKind::RegexPatternSets,
            Resource::WebAcl(_) => ResourceKind::WebAcls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every set reference is found, however deep: in And/Or/Not and in a
    /// rate-based rule's scope-down statement, with the JSON path of its ARN.
    #[test]
    fn web_acl_references_are_found_at_any_depth() {
        let ip = |arn: &str| serde_json::json!({"IPSetReferenceStatement": {"ARN": arn}});
        let regex = serde_json::json!({"RegexPatternSetReferenceStatement": {"ARN": "arn:aws:wafv2:us-east-1:1:global/regexpatternset/r/bots",
            "FieldToMatch": {"UriPath": {}}, "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}});
        let acl = serde_json::json!({
            "Name": "a", "DefaultAction": {"Allow": {}},
            "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "a"},
            "Rules": [{
                "Name": "flood", "Priority": 0, "Action": {"Block": {}},
                "VisibilityConfig": {"SampledRequestsEnabled": false, "CloudWatchMetricsEnabled": false, "MetricName": "flood"},
                "Statement": {"RateBasedStatement": {"Limit": 100, "AggregateKeyType": "IP",
                    "ScopeDownStatement": {"NotStatement": {"Statement": {"OrStatement": {"Statements": [
                        ip("scoped"), {"AndStatement": {"Statements": [regex, ip("deepest")]}}]}}}}}}
            }]
        });
        let wire = Wire::from_value(ResourceKind::WebAcls, acl).expect("valid");
        let refs: Vec<(String, ResourceKind, String)> =
            wire.references().into_iter().map(|r| (r.field, r.kind, r.id.to_string())).collect();
        let scope = "Rules[0].Statement.RateBasedStatement.ScopeDownStatement.NotStatement.Statement.OrStatement";
        assert_eq!(
            refs,
            vec![
                (format!("{scope}.Statements[0].IPSetReferenceStatement.ARN"), ResourceKind::IpSets, "scoped".into()),
                (
                    format!("{scope}.Statements[1].AndStatement.Statements[0].RegexPatternSetReferenceStatement.ARN"),
                    ResourceKind::RegexPatternSets,
                    "bots".into()
                ),
                (
                    format!("{scope}.Statements[1].AndStatement.Statements[1].IPSetReferenceStatement.ARN"),
                    ResourceKind::IpSets,
                    "deepest".into()
                ),
            ]
        );
    }
}
