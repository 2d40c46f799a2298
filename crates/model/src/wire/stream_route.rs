//! `stream_routes` on the wire (APISIX `_M.stream_route`).

use serde_json::Value;

use super::UpstreamWire;

common_fields! {
    /// A stream route as the Admin API accepts and stores it.
    pub struct StreamRouteWire {
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
        /// Stream plugins: `ip-restriction` and `limit-conn` (see `stream_plugins`).
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
        /// shardgate extension (Kong's and APISIX master's name): route by
        /// the ClientHello's SNI and forward the TLS bytes untouched to a
        /// game server that holds its own certificate. Needs `sni` or `snis`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tls_passthrough: Option<bool>,
        /// shardgate extension: `"v1"`, `"v2"` or `"off"`, the PROXY protocol
        /// header sent to the game server for this route's connections (wins
        /// over the upstream's `send_proxy_protocol` and the listener's
        /// `proxy_protocol_to_upstream`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub send_proxy_protocol: Option<String>,
    }
}
