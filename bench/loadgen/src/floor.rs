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

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use shardgate_e2e::TlsClient;
    use shardgate_e2e::certs::TestCert;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A folder removed when dropped.
    pub(crate) struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }

    /// An echo server, and the floor in front of it with a gs-1.com
    /// certificate; returns the floor's address.
    pub(crate) async fn floor_to_echo() -> (SocketAddr, TempDir) {
        let dir =
            std::env::temp_dir().join(format!("floor-test-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cert = TestCert::ecdsa(&["gs-1.com"]);
        std::fs::write(dir.join("c.pem"), &cert.cert).expect("cert");
        std::fs::write(dir.join("k.pem"), &cert.key).expect("key");
        let [echo, proxy] = shardgate_e2e::ports::free_many("127.0.0.1", 2)[..] else { panic!("two ports") };
        tokio::spawn(crate::echo(echo));
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        tokio::spawn(async move { tls_proxy(proxy, &c, &k, echo, DEFAULT_COPY_BUFFER).await });
        for _ in 0..200 {
            if TcpStream::connect(proxy).await.is_ok() {
                return (proxy, TempDir(dir));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the floor never listened on {proxy}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_go_through_tls_to_the_upstream_and_back() {
        let (proxy, _dir) = floor_to_echo().await;
        let mut s = TlsClient::default().connect(proxy, Some("gs-1.com")).await.expect("handshake");
        // More than one copy buffer and one TLS record, each byte distinct by position.
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (mut rd, mut wr) = tokio::io::split(&mut s);
        let writer = async {
            wr.write_all(&sent).await.expect("write");
            wr.flush().await.expect("flush");
        };
        let mut back = vec![0u8; sent.len()];
        let reader = async {
            tokio::time::timeout(Duration::from_secs(10), rd.read_exact(&mut back))
                .await
                .expect("echo in time")
                .expect("read")
        };
        tokio::join!(writer, reader);
        assert!(back == sent, "the echo differs from what was sent");
    }

    #[tokio::test]
    async fn a_copy_buffer_out_of_bounds_is_refused() {
        let p = std::path::Path::new("/nonexistent");
        let addr = shardgate_e2e::ports::free("127.0.0.1");
        let e = tls_proxy(addr, p, p, addr, 0).await.expect_err("zero buffer");
        assert!(e.to_string().contains("--copy-buffer"), "{e}");
    }
}
