//! Wire types: the JSON of the APISIX Admin API v3, field for field.
//!
//! Each struct mirrors one schema of apache/apisix `apisix/schema_def.lua`
//! (`_M.ssl`, `upstream_schema`, `_M.stream_route`). Those schemas set
//! `additionalProperties: false`, so every struct denies unknown fields.
//! Fields whose shape needs a better error than serde's (ids, `nodes`) are kept
//! as [`serde_json::Value`] and checked by the domain conversion, which names
//! the path. Serializing a wire struct gives the canonical stored form.

/// The fields every resource but `ssls` has (APISIX's `id`, `name`, `desc`,
/// `labels` and server-owned timestamps), first in each wire struct.
macro_rules! common_fields {
    ($(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Resource id (string or integer).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub id: Option<serde_json::Value>,
            /// Name.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            /// Free text.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub desc: Option<String>,
            /// Labels.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub labels: Option<std::collections::BTreeMap<String, String>>,
            /// Set by the server.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub create_time: Option<i64>,
            /// Set by the server.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub update_time: Option<i64>,
            $($body)*
        }
    };
}

pub mod edge;
mod ssl;
mod stream_route;
mod upstream;

pub use edge::{CachePolicyWire, CdPolicyWire, DistributionWire, InvalidationWire, OriginRequestPolicyWire};
pub use ssl::SslWire;
pub use stream_route::StreamRouteWire;
pub use upstream::{TimeoutWire, UpstreamWire};

use std::collections::BTreeMap;

use crate::Invalid;

/// Checks APISIX's `labels_def`: string keys and values, 1–256 characters, no
/// whitespace.
pub(crate) fn check_labels(labels: &Option<BTreeMap<String, String>>) -> Result<(), Invalid> {
    let Some(labels) = labels else { return Ok(()) };
    for (k, v) in labels {
        for (what, s) in [("key", k), ("value", v)] {
            if s.is_empty() || s.len() > 256 || s.chars().any(char::is_whitespace) {
                return Err(Invalid::new(
                    format!("labels.{k}"),
                    format!("label {what} must be 1 to 256 characters without whitespace"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks `name` (1–256 characters) and `desc` (at most 256).
pub(crate) fn check_name_desc(name: &Option<String>, desc: &Option<String>) -> Result<(), Invalid> {
    if let Some(name) = name
        && (name.is_empty() || name.len() > 256)
    {
        return Err(Invalid::new("name", "must be 1 to 256 characters long"));
    }
    if let Some(desc) = desc
        && desc.len() > 256
    {
        return Err(Invalid::new("desc", "must be at most 256 characters long"));
    }
    Ok(())
}
