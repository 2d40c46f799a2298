//! Helpers for tests that run several gateways on one etcd: a loopback TCP
//! proxy the test can cut and resume, so one gateway loses its store while
//! the others keep theirs.
//!
//! [`PausableProxy`] forwards every connection to one target. [`cut`]
//! closes every proxied connection (with a reset, as a dropped network path
//! looks to the peer) and refuses new ones the same way; [`resume`] accepts
//! again. The listening socket stays bound throughout, so the port cannot be
//! taken by another process in between.
//!
//! [`cut`]: PausableProxy::cut
//! [`resume`]: PausableProxy::resume

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest time the proxy waits to connect to its target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from one side before they are written to the other.
const BUFFER: usize = 16 * 1024;

/// A running proxy; stops (and closes every connection) when dropped.
#[derive(Debug)]
pub struct PausableProxy {
    /// Where it listens (127.0.0.1, an ephemeral port).
    pub addr: SocketAddr,
    /// Where it forwards to.
    pub target: SocketAddr,
    cut: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl PausableProxy {
    /// Starts a proxy to `target` on a free loopback port.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, cut_rx) = watch::channel(false);
        let accepted = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (acc, refu) = (Arc::clone(&accepted), Arc::clone(&refused));
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (client, _) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                    // Reap finished connections so the set stays small.
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                };
                if *cut_rx.borrow() {
                    refu.fetch_add(1, Ordering::SeqCst);
                    reset(client);
                    continue;
                }
                acc.fetch_add(1, Ordering::SeqCst);
                conns.spawn(forward(client, target, cut_rx.clone()));
            }
        });
        PausableProxy { addr, target, cut, accepted, refused, task }
    }

    /// Starts a proxy to an etcd client URL (`http://127.0.0.1:2379`).
    pub async fn for_url(url: &str) -> Self {
        let hostport = url.split_once("://").map_or(url, |(_, rest)| rest).trim_end_matches('/');
        let target: SocketAddr = hostport.parse().unwrap_or_else(|e| panic!("proxy target {url}: {e}"));
        Self::start(target).await
    }

    /// The proxy as an etcd client URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every proxied connection and refuses new ones until
    /// [`PausableProxy::resume`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Accepts and forwards again.
    pub fn resume(&self) {
        self.cut.send_replace(false);
    }

    /// Connections forwarded so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused while cut.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for PausableProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every
        // connection task.
        self.task.abort();
    }
}

/// Closes `sock` with a reset (SO_LINGER 0), the way a cut path looks.
fn reset(sock: TcpStream) {
    if sock.set_zero_linger().is_err() {
        // The socket is closed below either way; a plain FIN is still a close.
    }
    drop(sock);
}

/// Copies bytes both ways until either side closes or the proxy is cut.
async fn forward(client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(Ok(server)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await else {
        reset(client);
        return;
    };
    if client.set_nodelay(true).is_err() || server.set_nodelay(true).is_err() {
        reset(client);
        return;
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; BUFFER];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; BUFFER];
        loop {
            match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let cut_now = async {
        // Ends when the proxy is cut (or dropped).
        if cut.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let was_cut = tokio::select! {
        () = up => false,
        () = down => false,
        () = cut_now => true,
    };
    if was_cut {
        // Reset both sides: neither peer sees a clean end of stream.
        if let (Ok(c), Ok(s)) = (cr.reunite(cw), sr.reunite(sw)) {
            reset(c);
            reset(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo() -> (SocketAddr, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    async fn ping(s: &mut TcpStream) -> Option<Vec<u8>> {
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await.ok()?.ok()?;
        Some(buf.to_vec())
    }

    #[tokio::test]
    async fn cut_closes_open_connections_and_refuses_new_ones_until_resumed() {
        let (target, _echo) = echo().await;
        let proxy = PausableProxy::start(target).await;
        let mut open = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(ping(&mut open).await.as_deref(), Some(&b"ping"[..]));

        proxy.cut();
        // The open connection ends (reset or EOF), within a bounded wait.
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf)).await.expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // A new one is accepted by the kernel, then closed without an answer.
        let mut late = TcpStream::connect(proxy.addr).await.expect("connect while cut");
        assert_eq!(ping(&mut late).await, None);
        assert!(proxy.refused() >= 1);

        proxy.resume();
        let mut again = TcpStream::connect(proxy.addr).await.expect("connect after resume");
        assert_eq!(ping(&mut again).await.as_deref(), Some(&b"ping"[..]));
        assert_eq!(proxy.accepted(), 2);
    }
}
