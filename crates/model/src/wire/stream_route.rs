//! `stream_routes` on the wire (APISIX `_M.stream_route`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::UpstreamWire;

/// A stream route as the Admin API accepts and stores it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRouteWire {
    /// Resource id (string or integer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<i64>,
    /// Set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
    /// Client address filter: an IP or a CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    /// Local (gateway) address filter: an IP or a CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_addr: Option<String>,
    /// Local (gateway) port filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_port: Option<u16>,
    /// One SNI, exact or `*.wildcard` (exclusive with `snis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Several SNIs (apache/apisix PR #13911; exclusive with `sni`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snis: Option<Vec<String>>,
    /// Inline upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Box<UpstreamWire>>,
    /// Reference to an upstream resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<Value>,
    /// Services are not supported by shardgate (refused with a reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<Value>,
    /// Stream plugins: only `{}` is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<serde_json::Map<String, Value>>,
    /// xRPC protocols (not supported; refused with a reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Value>,
    /// shardgate extension: seconds without traffic in either direction after
    /// which the connection is closed. Default from the bootstrap file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<f64>,
    /// shardgate extension: a `web_acls` id run on the client address of
    /// each connection this route matches, before the TLS handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_acl_id: Option<Value>,
}
