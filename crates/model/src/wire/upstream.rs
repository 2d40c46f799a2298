//! `upstreams` on the wire (APISIX `upstream_schema`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

common_fields! {
    /// An upstream as the Admin API accepts and stores it, standalone or inline
    /// in a stream route.
    pub struct UpstreamWire {
        /// `{"host:port": weight}` or `[{"host", "port", "weight", "priority"}]`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub nodes: Option<Value>,
        /// Service discovery (not supported by shardgate; refused with a reason).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub service_name: Option<String>,
        /// Service discovery (not supported).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub discovery_type: Option<String>,
        /// Service discovery (not supported).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub discovery_args: Option<Value>,
        /// Balancer: `roundrobin` (default), `chash`, `least_conn`.
        #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
        pub balancer: Option<String>,
        /// What `chash` hashes: `vars` (default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hash_on: Option<String>,
        /// The variable `chash` hashes, e.g. `remote_addr`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub key: Option<String>,
        /// Health checks, validated by `health::HealthChecks::from_json`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub checks: Option<Value>,
        /// Retries on another node after a failed connect. Default: nodes − 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retries: Option<i64>,
        /// Total time budget for retries, in seconds (0: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retry_timeout: Option<f64>,
        /// Timeouts in seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub timeout: Option<TimeoutWire>,
        /// `tcp` for stream (`http` is rewritten to `tcp`, as APISIX does).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub scheme: Option<String>,
        /// HTTP only; kept for compatibility, unused by stream routes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pass_host: Option<String>,
        /// HTTP only; kept for compatibility, unused by stream routes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub upstream_host: Option<String>,
        /// HTTP only; kept for compatibility, unused by stream routes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub keepalive_pool: Option<Value>,
        /// TLS to the upstream (not supported yet; refused with a reason).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tls: Option<Value>,
        /// shardgate extension: `"v1"`, `"v2"` or `"off"`: connections to
        /// the nodes start with a PROXY protocol header carrying the
        /// player's address (wins over the listener's
        /// `proxy_protocol_to_upstream`; a route's setting wins over this).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub send_proxy_protocol: Option<String>,
    }
}

/// `timeout`: all three fields are required by APISIX's schema.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutWire {
    /// Connect timeout in seconds.
    pub connect: f64,
    /// Send timeout in seconds.
    pub send: f64,
    /// Read timeout in seconds.
    pub read: f64,
}
