//! Ports for test gateways: the kernel picks a free ephemeral port (bind to
//! port 0), the harness releases it and hands it to the gateway. Ports are
//! never hard-coded.

use std::net::{SocketAddr, TcpListener};

/// A free TCP port on `ip`.
pub fn free(ip: &str) -> SocketAddr {
    let l = TcpListener::bind(format!("{ip}:0")).expect("bind an ephemeral port");
    l.local_addr().expect("local address")
}
