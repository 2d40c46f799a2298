//! A health endpoint a test controls: answers every HTTP/1.1 request (over
//! TLS with a self-signed certificate, if asked) with the status it is told,
//! counts requests and keeps the last request head, so a test can flip a
//! game server's health and see what the gateway's probe sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::TestCert;

/// Most bytes of a request head kept (and read).
const MAX_HEAD: usize = 8192;

#[derive(Debug, Default)]
struct Shared {
    status: AtomicU16,
    requests: AtomicUsize,
    last: Mutex<String>,
}

/// A running health endpoint; stops when dropped.
#[derive(Debug)]
pub struct HealthServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl HealthServer {
    /// Plain HTTP on `bind` (e.g. `127.0.0.1:0`), answering `status`.
    pub async fn start(bind: &str, status: u16) -> Self {
        Self::start_with(bind, status, None).await
    }

    /// HTTPS with a self-signed certificate for `cert`'s names.
    pub async fn start_tls(bind: &str, status: u16, cert: &TestCert) -> Self {
        use rustls::pki_types::pem::PemObject;
        let chain = vec![rustls::pki_types::CertificateDer::from(cert.der.clone())];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key.as_bytes()).expect("key PEM");
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server certificate");
        Self::start_with(bind, status, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(bind: &str, status: u16, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind(bind).await.expect("bind health server");
        let addr = listener.local_addr().expect("address");
        let shared = Arc::new(Shared { status: AtomicU16::new(status), ..Shared::default() });
        let s = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (s, tls) = (Arc::clone(&s), tls.clone());
                tokio::spawn(async move {
                    let served = tokio::time::timeout(Duration::from_secs(5), async move {
                        match tls {
                            None => answer(sock, &s).await,
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(sock).await {
                                    answer(stream, &s).await;
                                }
                            }
                        }
                    });
                    // A client that stalls is dropped.
                    served.await.ok();
                });
            }
        });
        HealthServer { addr, shared, task }
    }

    /// Answers `status` from now on.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The head of the last request.
    pub fn last_request(&self) -> String {
        self.shared.last.lock().expect("lock").clone()
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, shared: &Shared) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    *shared.last.lock().expect("lock") = String::from_utf8_lossy(&head).into_owned();
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let status = shared.status.load(Ordering::SeqCst);
    let reply = format!("HTTP/1.1 {status} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if s.write_all(reply.as_bytes()).await.is_ok() {
        s.flush().await.ok();
        s.shutdown().await.ok();
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
