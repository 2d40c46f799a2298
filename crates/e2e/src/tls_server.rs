//! TLS game servers that hold their own certificate, for TLS passthrough:
//! each one terminates TLS itself (rustls) and echoes like
//! [`GameServer`](crate::GameServer), `[name] ` before the bytes read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::TestCert;

/// A running TLS echo server; stops when dropped.
#[derive(Debug)]
pub struct TlsGameServer {
    /// Where it listens.
    pub addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsGameServer {
    /// Starts a server named `name` on `bind` (e.g. `127.0.0.1:0`) that
    /// presents `cert`.
    pub async fn start(name: &str, bind: &str, cert: &TestCert) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::from_pem_slice(cert.key.as_bytes()).expect("test key");
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert.der.clone())], key)
            .expect("certificate and key");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(bind).await.expect("bind TLS game server");
        let addr = listener.local_addr().expect("address");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&handshakes);
        let prefix = format!("[{name}] ");
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counter = Arc::clone(&counter);
                let prefix = prefix.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else { return };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut reply = prefix.clone().into_bytes();
                                reply.extend_from_slice(&buf[..n]);
                                if tls.write_all(&reply).await.is_err() || tls.flush().await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        TlsGameServer { addr, handshakes, task }
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// The node key for an upstream: `ip:port`.
    pub fn node(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TlsGameServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
