//! shardgate-stream is the L4 data plane: it accepts player connections on
//! the stream listeners, reads the TLS ClientHello, routes by SNI, port and
//! client address, terminates TLS with the certificate chosen by SNI,
//! connects to the upstream and copies bytes both ways until either side
//! closes, the connection idles out, or the drain deadline passes. On UDP
//! listeners it keeps one session per client address and port, each with
//! its own connected socket to a game server, until the session idles out.
//!
//! It sees configuration only through a `SnapshotHandle` (never the store or
//! the Admin API) and loads the snapshot once per connection, so every
//! connection runs start to finish on one configuration generation.
//!
//! The lifecycle of one connection is in `docs/lifecycle/stream-connection.md`.
//!
//! # Layout
//! - [`listener`]: binding, the accept loop, the connection limit, the drain.
//! - [`conn`]: one connection from accept to close.
//! - [`hello`]: reading the ClientHello with a byte cap, refusing with an alert.
//! - [`copy`]: bidirectional copy with half-close, idle timeout and counters.
//! - [`readahead`]: large socket reads under rustls, no buffer while idle.
//! - [`proxy_protocol`]: the PROXY protocol v1/v2 header: a pure parser and
//!   encoders, and a reader that never consumes past the header.
//! - [`plugins`]: the APISIX stream plugins `ip-restriction` and `limit-conn`.
//! - [`metrics`]: the stream metric families.
//! - [`udp`]: UDP listeners and their per-client sessions.
//! - `acl`: web ACLs on a client address, shared by connections and sessions.
//! - `trace`: the spans of connections and UDP sessions (exported when tracing is on).

mod acl;
pub mod conn;
pub mod copy;
pub mod hello;
pub mod listener;
pub mod metrics;
pub mod plugins;
pub mod proxy_protocol;
pub mod readahead;
mod trace;
pub mod udp;

pub use listener::{ListenerSpec, StreamSettings, bind, serve};
pub use metrics::StreamMetrics;
pub use udp::{UdpListenerSpec, UdpMetrics, UdpSettings, bind_udp, serve_udp};
