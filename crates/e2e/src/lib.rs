//! shardgate-e2e is the harness of the end-to-end tests: it spawns the real
//! `shardgate` binary on allocated ports and drives it over real sockets.
//!
//! # Layout
//! - [`gateway`]: [`Gateway`] (spawn, readiness, signals, bootstrap-file rewrites, restart on the same data).
//! - [`admin`]: [`AdminClient`], a small HTTP/1.1 client for the Admin API and metrics.
//! - [`tls`]: a TLS client with SNI (rustls) that reports what the server presented.
//! - [`origin`]: [`TestOrigin`], an HTTP origin that counts requests, and a small HTTP GET client.
//! - [`servers`]: echo game servers that prefix replies with their name, as in seed 000.
//! - [`tls_server`]: TLS echo game servers with their own certificate (passthrough).
//! - [`dns`]: [`TestDns`], a DNS server whose answers the test sets and which counts queries.
//! - [`health`]: [`HealthServer`], an HTTP(S) health endpoint whose status a test sets.
//! - [`otlp`]: [`OtlpReceiver`], an OTLP/HTTP trace receiver that keeps what it is sent.
//! - [`udp`]: UDP echo game servers (named replies), a UDP client, free UDP ports.
//! - [`certs`]: self-signed certificates for test SNIs.
//! - [`proxy_protocol`]: PROXY protocol headers from the specification, a game
//!   server that requires one, and HAProxy as a real sender and receiver.
//! - [`cluster`]: [`cluster::PausableProxy`], a loopback TCP proxy a test can cut and resume.
//! - [`geo`]: a country database in MaxMind's format for loopback addresses.
//! - [`etcd`]: [`EtcdCluster`], real etcd members on loopback, driven with etcdctl.
//! - [`ports`]: port allocation.

pub mod admin;
pub mod certs;
pub mod cluster;
pub mod dns;
pub mod etcd;
pub mod gateway;
pub mod geo;
pub mod health;
pub mod origin;
pub mod otlp;
pub mod ports;
pub mod proxy_protocol;
pub mod servers;
pub mod tls;
pub mod tls_server;
pub mod udp;

pub use admin::{AdminClient, Response};
pub use certs::TestCert;
pub use dns::TestDns;
pub use etcd::EtcdCluster;
pub use gateway::{Gateway, GatewayBuilder};
pub use health::HealthServer;
pub use origin::{OriginFile, TestOrigin};
pub use otlp::OtlpReceiver;
pub use servers::GameServer;
pub use tls::TlsClient;
pub use tls_server::TlsGameServer;
pub use udp::{UdpClient, UdpGameServer};

/// The admin key every test gateway uses (the seed's key, so seed commands
/// run verbatim).
pub const ADMIN_KEY: &str = "edd1c9f034335f136f87ad84b625c8f1";

/// Polls `check` every 10 ms until it returns `Some`, for at most `secs`
/// seconds; panics naming `what` otherwise.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {secs}s waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
