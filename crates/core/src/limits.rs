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
    /// listeners (a UDP session counts as one, see
    /// [`udp_max_sessions`](Self::udp_max_sessions)). When reached,
    /// listeners stop accepting until one closes
    /// (the kernel backlog holds the rest). At start it is lowered, with a
    /// warning, to what the open-file limit allows after
    /// [`fd_reserve`](Self::fd_reserve): two descriptors per connection (the
    /// player's and the game server's). Default 100,000.
    pub max_connections: usize,
    /// File descriptors kept out of the connection budget for everything
    /// else: the store, cache files, DNS and origin fetches, so that these
    /// keep working while players use every connection slot. The Admin API's
    /// and the metrics listener's connections (`admin_max_connections` each)
    /// are reserved on top of this. Default 256.
    pub fd_reserve: usize,
    /// Most bytes a TLS listener reads while waiting for a complete
    /// ClientHello. Real ClientHellos are under 2 KiB (a post-quantum key share
    /// adds about 1.2 KiB); 16 KiB leaves room for large extension lists.
    /// Default 16,384.
    pub client_hello_max_bytes: usize,
    /// Time a client has from accept to the end of the TLS handshake. Default 10s.
    pub handshake_timeout: ConfigDuration,
    /// Largest Admin API request body. Default 1.5 MiB, as APISIX.
    ///
    /// Bodies are read whole, after the API key is checked and before a
    /// write turn is taken (so slow senders hold no turn): with every
    /// connection sending a body at once, the Admin API listener holds up to
    /// `admin_max_connections × admin_body_max_bytes` of bodies (384 MiB
    /// with the defaults), from clients that have the key.
    pub admin_body_max_bytes: usize,
    /// Admin API reads (GET, HEAD) handled at once; more get 503 at once.
    /// Reads have their own budget and never wait for a write. Default 64.
    pub admin_max_concurrency: usize,
    /// Admin API writes (PUT, POST, PATCH, DELETE) validated and stored at
    /// once, counted once their body has arrived: a client still sending
    /// its body holds no share. More wait for a turn until
    /// `admin_request_timeout`, then get 503. Default 16.
    pub admin_max_writes: usize,
    /// Time an Admin API request has once its head (and, for a write, its
    /// whole body) has arrived; past it the answer is 503. It bounds a
    /// read from start to answer, and a write's wait for its turn and for
    /// the write lock. A write that holds the lock is not cut: its store
    /// write runs to its end (and keeps the lock) even after the client
    /// got 503, which then says to check with GET whether it was stored.
    /// Sending the response is not counted (see `RESPONSE_STALL_TIMEOUT`
    /// in the admin crate's `serve`). Default 10s.
    pub admin_request_timeout: ConfigDuration,
    /// Time a client has to send a request's head (request line and
    /// headers), which is also how long an idle keep-alive connection stays
    /// open between requests. Slower connections are closed, so clients
    /// that trickle bytes cannot hold connections. Default 10s.
    pub admin_header_read_timeout: ConfigDuration,
    /// Time a client has to send a request's whole body once its head has
    /// arrived; slower bodies get 408 and the connection is closed.
    /// Default 10s.
    pub admin_body_read_timeout: ConfigDuration,
    /// Admin API and metrics listener connections open at once (each
    /// listener); when reached, the listener stops accepting until one
    /// closes. With `admin_body_max_bytes` it bounds the memory held by
    /// request bodies being read. Default 256.
    pub admin_max_connections: usize,
    /// Largest single resource the store accepts. Default 1 MiB.
    pub store_value_max_bytes: usize,
    /// Most resources of one kind (ssls, upstreams, stream routes). Default 100,000.
    pub max_resources_per_kind: usize,
    /// Most UDP sessions (one per client address and port) open at once over
    /// all `stream.udp` listeners. A datagram that would need a new session
    /// beyond it is dropped and counted
    /// (`shardgate_stream_udp_dropped_datagrams_total{reason="session_limit"}`).
    /// UDP has no close: a session ends only when idle, so players who left
    /// hold their entry until `stream.udp_idle_timeout`; the bound keeps a
    /// flood of spoofed source addresses from taking every socket. Each
    /// session also holds one slot of `max_connections` (its upstream
    /// socket is a file descriptor). Default 50,000: an idle session holds
    /// no buffer, about 2.5 KiB of the gateway's memory (its task, its
    /// entry, the socket's registration) and about 2 KiB of the kernel's
    /// (the socket), so the full table costs about 220 MiB.
    pub udp_max_sessions: usize,
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
            admin_max_writes: 16,
            admin_request_timeout: ConfigDuration::from_secs(10),
            admin_header_read_timeout: ConfigDuration::from_secs(10),
            admin_body_read_timeout: ConfigDuration::from_secs(10),
            admin_max_connections: 256,
            store_value_max_bytes: 1024 * 1024,
            max_resources_per_kind: 100_000,
            udp_max_sessions: 50_000,
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
            ("limits.admin_max_writes", self.admin_max_writes),
            ("limits.admin_max_connections", self.admin_max_connections),
            ("limits.store_value_max_bytes", self.store_value_max_bytes),
            ("limits.max_resources_per_kind", self.max_resources_per_kind),
            ("limits.udp_max_sessions", self.udp_max_sessions),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.client_hello_max_bytes < 512 {
            return Err("limits.client_hello_max_bytes must be at least 512".into());
        }
        let timeouts = [
            ("limits.handshake_timeout", &self.handshake_timeout),
            ("limits.admin_request_timeout", &self.admin_request_timeout),
            ("limits.admin_header_read_timeout", &self.admin_header_read_timeout),
            ("limits.admin_body_read_timeout", &self.admin_body_read_timeout),
        ];
        for (name, value) in timeouts {
            if value.get().is_zero() {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        Ok(())
    }
}
