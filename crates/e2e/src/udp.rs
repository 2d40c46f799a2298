//! UDP for the tests: free UDP ports, echo game servers that answer with
//! their name (so a test sees which server a session reached), and a client
//! bound to a chosen loopback address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Largest datagram the helpers read.
const MAX_DATAGRAM: usize = 65_535;

/// A free UDP port on `ip`, picked at random from 15000–29999 like the TCP
/// ports (see [`crate::ports`]), checked by binding it. The TCP port of the
/// same number is left alone: UDP and TCP ports are separate.
pub fn free_port(ip: &str) -> SocketAddr {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(1);
    let mut state = u64::from(nanos) ^ (u64::from(std::process::id()) << 20) | 1;
    for _ in 0..10_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = 15_000 + (state % 15_000) as u16;
        if let Ok(s) = std::net::UdpSocket::bind(format!("{ip}:{port}")) {
            return s.local_addr().expect("local address");
        }
    }
    panic!("no free UDP port on {ip}");
}

/// A UDP echo game server: every datagram is answered, to its sender, with
/// `[name] ` followed by the datagram. Stops when dropped or [`stop`]ped.
///
/// [`stop`]: UdpGameServer::stop
#[derive(Debug)]
pub struct UdpGameServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, the reply prefix.
    pub name: String,
    received: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl UdpGameServer {
    /// Starts a server named `name` on 127.0.0.1 and an ephemeral port.
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, "127.0.0.1:0".parse().expect("address")).await
    }

    /// Starts a server named `name` on `bind` (e.g. the port of a server
    /// that was stopped, to restart it).
    pub async fn start_on(name: &str, bind: SocketAddr) -> Self {
        let sock = UdpSocket::bind(bind).await.expect("bind UDP game server");
        let addr = sock.local_addr().expect("address");
        let received = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&received);
        let prefix = format!("[{name}] ").into_bytes();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut reply = prefix.clone();
                reply.extend_from_slice(&buf[..n]);
                if sock.send_to(&reply, from).await.is_err() {
                    break;
                }
            }
        });
        UdpGameServer { addr, name: name.to_owned(), received, task }
    }

    /// Datagrams received so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// The node key for an upstream: `127.0.0.1:port`.
    pub fn node(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the server and waits until its socket is closed, so the port
    /// answers ICMP port unreachable and can be bound again.
    pub async fn stop(mut self) {
        self.task.abort();
        // Cancelled: the task and its socket are dropped before this returns.
        let ended = (&mut self.task).await;
        assert!(ended.is_err_and(|e| e.is_cancelled()), "the server task ended by itself");
    }
}

impl Drop for UdpGameServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A player's UDP socket, bound to a chosen loopback address.
#[derive(Debug)]
pub struct UdpClient {
    sock: UdpSocket,
}

impl UdpClient {
    /// A client on 127.0.0.1 and an ephemeral port.
    pub async fn new() -> Self {
        Self::from_ip("127.0.0.1").await
    }

    /// A client on `ip` (any 127.0.0.0/8 address works on Linux) and an ephemeral port.
    pub async fn from_ip(ip: &str) -> Self {
        UdpClient { sock: UdpSocket::bind(format!("{ip}:0")).await.expect("bind UDP client") }
    }

    /// The client's address and port, as the gateway sees them.
    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("address")
    }

    /// Sends one datagram to `to`.
    pub async fn send(&self, to: SocketAddr, data: &[u8]) {
        self.sock.send_to(data, to).await.expect("send datagram");
    }

    /// The next datagram within `wait`, and who sent it.
    pub async fn recv(&self, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        match tokio::time::timeout(wait, self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                buf.truncate(n);
                Some((buf, from))
            }
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// Sends `msg` to `to` and returns the first reply that ends with it
    /// (replies to earlier, lost-and-resent datagrams are skipped), as text;
    /// resends up to `tries` times, waiting `wait` each. `None` if nothing
    /// came back. Asserts that replies come from `to`.
    pub async fn roundtrip_tries(&self, to: SocketAddr, msg: &str, tries: usize, wait: Duration) -> Option<String> {
        for _ in 0..tries {
            self.send(to, msg.as_bytes()).await;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let Some((reply, from)) = self.recv(left).await else { break };
                assert_eq!(from, to, "the reply comes from the address the client sent to");
                let text = String::from_utf8_lossy(&reply).into_owned();
                if text.ends_with(msg) {
                    return Some(text);
                }
            }
        }
        None
    }

    /// [`roundtrip_tries`](Self::roundtrip_tries) with 3 tries of 2 s.
    pub async fn roundtrip(&self, to: SocketAddr, msg: &str) -> Option<String> {
        self.roundtrip_tries(to, msg, 3, Duration::from_secs(2)).await
    }
}
