//! Every bound shardgate puts on input from the network, in one place, each
//! with its default and the reason for it. The bootstrap file's `limits:`
//! section deserializes into [`Limits`]; a field left out keeps its default.

use serde::{Deserialize, Serialize};

use crate::ConfigDuration;

/// Named bounds on network input. See each field for its default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most downstream connections open at once over all stream and edge
    /// listeners. When reached, listeners stop accepting until one closes
    /// (the kernel backlog holds the rest). At start it is lowered, with a
    /// warning, to what the open-file limit allows after
    /// [`fd_reserve`](Self::fd_reserve): two descriptors per connection (the
    /// player's and the game server's). Default 100,000.
    pub max_connections: usize,
    /// File descriptors kept out of the connection budget for everything
    /// else: the Admin API, `/metrics` and `/readyz`, the store, cache files,
    /// DNS and origin fetches, so that these keep working while players use
    /// every connection slot. Default 256.
    pub fd_reserve: usize,
    /// Most bytes a TLS listener reads while waiting for a complete
    /// ClientHello. Real ClientHellos are under 2 KiB (a post-quantum key share
    /// adds about 1.2 KiB); 16 KiB leaves room for large extension lists.
    /// Default 16,384.
    pub client_hello_max_bytes: usize,
    /// Time a client has from accept to the end of the TLS handshake. Default 10s.
    pub handshake_timeout: ConfigDuration,
    /// Largest Admin API request body. Default 1.5 MiB, as APISIX.
    pub admin_body_max_bytes: usize,
    /// Admin API requests handled at once; more are shed with 503. Default 64.
    pub admin_max_concurrency: usize,
    /// Time an Admin API request may take before it gets 408. Default 10s.
    pub admin_request_timeout: ConfigDuration,
    /// Largest single resource the store accepts. Default 1 MiB.
    pub store_value_max_bytes: usize,
    /// Most resources of one kind (ssls, upstreams, stream routes). Default 100,000.
    pub max_resources_per_kind: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
            fd_reserve: 256,
            client_hello_max_bytes: 16 * 1024,
            handshake_timeout: ConfigDuration::from_secs(10),
            admin_body_max_bytes: 1536 * 1024,
            admin_max_concurrency: 64,
            admin_request_timeout: ConfigDuration::from_secs(10),
            store_value_max_bytes: 1024 * 1024,
            max_resources_per_kind: 100_000,
        }
    }
}

impl Limits {
    /// Checks that every bound is usable, naming the first that is not.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("limits.max_connections", self.max_connections),
            ("limits.client_hello_max_bytes", self.client_hello_max_bytes),
            ("limits.admin_body_max_bytes", self.admin_body_max_bytes),
            ("limits.admin_max_concurrency", self.admin_max_concurrency),
            ("limits.store_value_max_bytes", self.store_value_max_bytes),
            ("limits.max_resources_per_kind", self.max_resources_per_kind),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.client_hello_max_bytes < 512 {
            return Err("limits.client_hello_max_bytes must be at least 512".into());
        }
        if self.handshake_timeout.get().is_zero() || self.admin_request_timeout.get().is_zero() {
            return Err("limits timeouts must be greater than 0".into());
        }
        Ok(())
    }
}
