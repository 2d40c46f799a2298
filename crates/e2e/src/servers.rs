//! Echo game servers, like seed 000's Python server: every read is answered
//! with `[name] ` followed by the bytes read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running echo game server; stops when dropped.
#[derive(Debug)]
pub struct GameServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, the reply prefix.
    pub name: String,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl GameServer {
    /// Starts a server named `name` on 127.0.0.1 and an ephemeral port.
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, "127.0.0.1:0").await
    }

    /// Starts a server named `name` on `bind`.
    pub async fn start_on(name: &str, bind: &str) -> Self {
        let listener = TcpListener::bind(bind).await.expect("bind game server");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let prefix = format!("[{name}] ");
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let prefix = prefix.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut reply = prefix.clone().into_bytes();
                                reply.extend_from_slice(&buf[..n]);
                                if sock.write_all(&reply).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        GameServer { addr, name: name.to_owned(), accepted, task }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The node key for an upstream: `127.0.0.1:port`.
    pub fn node(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for GameServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
