//! `ssls` on the wire (APISIX `_M.ssl`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An SSL object as the Admin API accepts and stores it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SslWire {
    /// Resource id (string or integer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Set by the server, in seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<i64>,
    /// Set by the server, in seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
    /// `server` (default) or `client`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub ssl_type: Option<String>,
    /// PEM certificate chain, leaf first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// PEM private key of `cert`. Never returned by GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// More chains for the same SNIs (e.g. ECDSA beside RSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certs: Option<Vec<String>>,
    /// Keys of `certs`, in the same order. Never returned by GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// One SNI (exclusive with `snis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Several SNIs (exclusive with `sni`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snis: Option<Vec<String>>,
    /// Client-certificate (mTLS) settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Value>,
    /// 1 enabled (default), 0 disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    /// Allowed protocol versions: `TLSv1.2`, `TLSv1.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_protocols: Option<Vec<String>>,
}

impl SslWire {
    /// The object as GET returns it: APISIX strips `key` and `keys`
    /// (`apisix/admin/ssl.lua`), and shardgate never echoes a private key.
    pub fn redacted(mut self) -> Self {
        self.key = None;
        self.keys = None;
        self
    }
}
