//! One entry point for every kind: wire parsing, validation and the stored
//! form. The Admin API and the reconciler both go through here, so what the
//! Admin API accepts is exactly what the data plane can load.
//!
//! [`Wire`] and [`Resource`] and their dispatch are generated from the kind
//! table (`kind_table!` in [`kind`](crate::kind)); what differs by kind is
//! each wire type's [`WireKind`] impl, below.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use shardgate_waf::json::{IpSetJson, RegexSetJson, SetKind, WebAclJson};
use shardgate_waf::{IpSet, NoSets, RegexPatternSet, WafError, WebAcl, arn_id};

use crate::edge::OriginRequestPolicy;
use crate::kind::kind_table;
use crate::wire::{
    CachePolicyWire, CdPolicyWire, DistributionWire, InvalidationWire, OriginRequestPolicyWire, SslWire,
    StreamRouteWire, UpstreamWire,
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

/// What a kind's wire type does beyond serde: the one impl per kind that the
/// kind table cannot say.
pub trait WireKind: Sized {
    /// The validated form, held by [`Resource`] and the state.
    type Domain;

    /// Validates into the domain type; errors name the field.
    fn validate(&self, id: &ResourceId, v: Validation) -> Result<Self::Domain, Invalid>;

    /// Appends the resources this one refers to by id (ids that do not parse
    /// are left out: validation reports them).
    fn references(&self, out: &mut Vec<Reference>);

    /// The form returned to clients. Default: the value as is.
    fn redacted(self) -> Self {
        self
    }
}

/// Generates [`Wire`], [`Resource`] and their per-kind dispatch from the rows.
macro_rules! define_wire {
    ($(
        $(#[$doc:meta])*
        $kind:ident {
            plural: $plural:literal, singular: $singular:literal, label: $label:literal,
            wire: $var:ident($wire:ty) => $domain:ty,
            state: $field:ident $(,)?
        }
    ),* $(,)?) => {
        /// A resource in wire form, any kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Wire {
            $(
                #[doc = concat!("One `", $plural, "` resource (", $singular, ") as the Admin API takes and stores it.")]
                $var($wire),
            )*
        }

        /// A validated resource, any kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Resource {
            $(
                #[doc = concat!("One `", $plural, "` resource (", $singular, "), validated.")]
                $var(Arc<$domain>),
            )*
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
                    $(ResourceKind::$kind => Wire::$var(json::from_value(value)?),)*
                })
            }

            /// The kind.
            pub fn kind(&self) -> ResourceKind {
                match self {
                    $(Wire::$var(_) => ResourceKind::$kind,)*
                }
            }

            /// The `id` field, if the body carries one.
            pub fn id(&self) -> Option<&Value> {
                match self {
                    $(Wire::$var(w) => w.id.as_ref(),)*
                }
            }

            /// Sets `id` (always stored as a string, as APISIX does for ids taken from the URL).
            pub fn set_id(&mut self, id: &ResourceId) {
                match self {
                    $(Wire::$var(w) => w.id = Some(Value::String(id.to_string())),)*
                }
            }

            /// `create_time` and `update_time`.
            pub fn times(&self) -> (Option<i64>, Option<i64>) {
                match self {
                    $(Wire::$var(w) => (w.create_time, w.update_time),)*
                }
            }

            /// Sets `create_time` and `update_time`.
            pub fn set_times(&mut self, create: i64, update: i64) {
                match self {
                    $(Wire::$var(w) => {
                        w.create_time = Some(create);
                        w.update_time = Some(update);
                    })*
                }
            }

            /// Validates into a domain resource.
            pub fn validate(&self, id: &ResourceId, v: Validation) -> Result<Resource, Invalid> {
                Ok(match self {
                    $(Wire::$var(w) => {
                        let domain: $domain = WireKind::validate(w, id, v)?;
                        Resource::$var(Arc::new(domain))
                    })*
                })
            }

            /// The resources this one refers to by id (ids that do not parse
            /// are left out: validation reports them).
            pub fn references(&self) -> Vec<Reference> {
                let mut out = Vec::new();
                match self {
                    $(Wire::$var(w) => WireKind::references(w, &mut out),)*
                }
                out
            }

            /// The form returned to clients: private keys removed.
            pub fn redacted(self) -> Self {
                match self {
                    $(Wire::$var(w) => Wire::$var(WireKind::redacted(w)),)*
                }
            }

            /// The canonical JSON value.
            pub fn to_value(&self) -> Value {
                fn ser<T: Serialize>(t: &T) -> Value {
                    // Serializing plain structs of strings, numbers and maps cannot fail.
                    serde_json::to_value(t).unwrap_or(Value::Null)
                }
                match self {
                    $(Wire::$var(w) => ser(w),)*
                }
            }
        }

        impl Resource {
            /// The kind.
            pub fn kind(&self) -> ResourceKind {
                match self {
                    $(Resource::$var(_) => ResourceKind::$kind,)*
                }
            }
        }
    };
}

kind_table!(define_wire);

impl Wire {
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

/// Appends the reference held by an id field, if it holds a valid id.
fn refer(out: &mut Vec<Reference>, field: impl Into<String>, kind: ResourceKind, v: &Option<Value>) {
    let field = field.into();
    if let Some(id) = v.as_ref().and_then(|v| ResourceId::from_json(&field, v).ok()) {
        out.push(Reference { field, kind, id });
    }
}

impl WireKind for SslWire {
    type Domain = Ssl;

    fn validate(&self, id: &ResourceId, v: Validation) -> Result<Ssl, Invalid> {
        Ssl::from_wire(id.clone(), self, v.now_unix)
    }

    fn references(&self, _: &mut Vec<Reference>) {}

    fn redacted(self) -> Self {
        SslWire::redacted(self)
    }
}

impl WireKind for UpstreamWire {
    type Domain = Upstream;

    fn validate(&self, id: &ResourceId, _: Validation) -> Result<Upstream, Invalid> {
        Upstream::from_wire(Some(id.clone()), self)
    }

    fn references(&self, _: &mut Vec<Reference>) {}
}

impl WireKind for StreamRouteWire {
    type Domain = StreamRoute;

    fn validate(&self, id: &ResourceId, _: Validation) -> Result<StreamRoute, Invalid> {
        StreamRoute::from_wire(id.clone(), self)
    }

    fn references(&self, out: &mut Vec<Reference>) {
        refer(out, "upstream_id", ResourceKind::Upstreams, &self.upstream_id);
        refer(out, "web_acl_id", ResourceKind::WebAcls, &self.web_acl_id);
    }
}

impl WireKind for IpSetJson {
    type Domain = IpSet;

    fn validate(&self, _: &ResourceId, _: Validation) -> Result<IpSet, Invalid> {
        IpSet::compile(self).map_err(waf_invalid)
    }

    fn references(&self, _: &mut Vec<Reference>) {}
}

impl WireKind for RegexSetJson {
    type Domain = RegexPatternSet;

    fn validate(&self, _: &ResourceId, _: Validation) -> Result<RegexPatternSet, Invalid> {
        RegexPatternSet::compile(self).map_err(waf_invalid)
    }

    fn references(&self, _: &mut Vec<Reference>) {}
}

impl WireKind for WebAclJson {
    type Domain = WebAclJson;

    fn validate(&self, _: &ResourceId, _: Validation) -> Result<WebAclJson, Invalid> {
        // Syntax, regexes and structure now; references to sets are checked
        // by the Admin API and resolved by the snapshot.
        WebAcl::compile(self, &NoSets).map_err(waf_invalid)?;
        Ok(self.clone())
    }

    fn references(&self, out: &mut Vec<Reference>) {
        // One walker over every statement at every depth (And, Or, Not, a
        // rate-based rule's scope-down), in the WAF crate.
        for r in WebAclJson::references(self) {
            let kind = match r.kind {
                SetKind::IpSet => ResourceKind::IpSets,
                SetKind::RegexPatternSet => ResourceKind::RegexPatternSets,
            };
            if let Ok(id) = ResourceId::parse(arn_id(&r.arn)) {
                out.push(Reference { field: r.path, kind, id });
            }
        }
    }
}

impl WireKind for CachePolicyWire {
    type Domain = CachePolicy;

    fn validate(&self, _: &ResourceId, _: Validation) -> Result<CachePolicy, Invalid> {
        CachePolicy::from_wire(self)
    }

    fn references(&self, _: &mut Vec<Reference>) {}
}

impl WireKind for OriginRequestPolicyWire {
    type Domain = OriginRequestPolicy;

    fn validate(&self, _: &ResourceId, _: Validation) -> Result<OriginRequestPolicy, Invalid> {
        OriginRequestPolicy::from_wire(self)
    }

    fn references(&self, _: &mut Vec<Reference>) {}
}

impl WireKind for DistributionWire {
    type Domain = Distribution;

    fn validate(&self, id: &ResourceId, _: Validation) -> Result<Distribution, Invalid> {
        Distribution::from_wire(id.clone(), self)
    }

    fn references(&self, out: &mut Vec<Reference>) {
        for (name, o) in &self.origins {
            refer(out, format!("origins.{name}.upstream_id"), ResourceKind::Upstreams, &o.upstream_id);
        }
        if let Some(b) = &self.default_behavior {
            refer(out, "default_behavior.cache_policy_id", ResourceKind::CachePolicies, &b.cache_policy_id);
        }
        for (i, b) in self.behaviors.iter().flatten().enumerate() {
            refer(out, format!("behaviors[{i}].cache_policy_id"), ResourceKind::CachePolicies, &b.cache_policy_id);
        }
        let behaviors = self.default_behavior.iter().map(|b| ("default_behavior".to_owned(), b));
        let behaviors =
            behaviors.chain(self.behaviors.iter().flatten().enumerate().map(|(i, b)| (format!("behaviors[{i}]"), b)));
        for (field, b) in behaviors {
            let field = format!("{field}.origin_request_policy_id");
            refer(out, field, ResourceKind::OriginRequestPolicies, &b.origin_request_policy_id);
        }
        refer(out, "continuous_deployment_policy_id", ResourceKind::CdPolicies, &self.continuous_deployment_policy_id);
        refer(out, "web_acl_id", ResourceKind::WebAcls, &self.web_acl_id);
    }
}

impl WireKind for CdPolicyWire {
    type Domain = CdPolicy;

    fn validate(&self, _: &ResourceId, _: Validation) -> Result<CdPolicy, Invalid> {
        CdPolicy::from_wire(self)
    }

    fn references(&self, out: &mut Vec<Reference>) {
        refer(out, "staging_distribution_id", ResourceKind::Distributions, &self.staging_distribution_id);
    }
}

impl WireKind for InvalidationWire {
    type Domain = Invalidation;

    fn validate(&self, _: &ResourceId, _: Validation) -> Result<Invalidation, Invalid> {
        Invalidation::from_wire(self)
    }

    fn references(&self, out: &mut Vec<Reference>) {
        refer(out, "distribution_id", ResourceKind::Distributions, &self.distribution_id);
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
