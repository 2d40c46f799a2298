//! `tls-proxy`: the floor for a TLS-terminating L4 proxy, for `bench/run.sh`.
//!
//! What any proxy that terminates TLS and forwards the plaintext must pay:
//! the rustls handshake (the same provider, suites and versions as
//! `tls-echo`), one upstream TCP connection, and a plain bidirectional copy
//! (`tokio::io::copy_bidirectional`), `TCP_NODELAY` on both sides, on the
//! same kind of runtime as the gateway (multi-threaded, one worker per core
//! it may run on). No routing, no SNI lookup, no metrics, no timeouts beyond
//! the handshake's, no limits: shardgate's distance to this floor is what its
//! routing, metrics and safety cost; the distance from the floor to the bare
//! `tls-echo` server is the upstream hop itself.
//!
//! The copy has one buffer per direction, 8 KiB (tokio's default) unless
//! `--copy-buffer` says otherwise. `bench/run.sh` uses 64 KiB for its bulk
//! test, where the larger buffer is cheaper per byte, and the default
//! elsewhere, where it is cheaper per connection (allocation, memory).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::Res;

/// Longest a client may take to finish its handshake (an input bound; the
/// load never comes near it).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The copy buffer `tokio::io::copy_bidirectional` uses per direction.
pub const DEFAULT_COPY_BUFFER: usize = 8 * 1024;
/// Largest copy buffer accepted.
const MAX_COPY_BUFFER: usize = 1024 * 1024;

/// Accepts TLS on `listen` with one certificate and copies each
/// connection's plaintext to and from its own connection to `upstream`,
/// through a `copy_buffer`-byte buffer each way.
pub async fn tls_proxy(
    listen: SocketAddr,
    cert: &Path,
    key: &Path,
    upstream: SocketAddr,
    copy_buffer: usize,
) -> Res<()> {
    if copy_buffer == 0 || copy_buffer > MAX_COPY_BUFFER {
        return Err(format!("--copy-buffer must be 1 to {MAX_COPY_BUFFER} bytes, not {copy_buffer}").into());
    }
    let acceptor = crate::tls_acceptor(cert, key)?;
    let l = TcpListener::bind(listen).await?;
    loop {
        let (s, _) = l.accept().await?;
        s.set_nodelay(true)?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(Ok(mut tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(s)).await else {
                return;
            };
            let Ok(mut up) = TcpStream::connect(upstream).await else { return };
            if up.set_nodelay(true).is_err() {
                return;
            }
            // Either side closing or failing ends the connection; nothing to report.
            tokio::io::copy_bidirectional_with_sizes(&mut tls, &mut up, copy_buffer, copy_buffer).await.ok();
        });
    }
}
