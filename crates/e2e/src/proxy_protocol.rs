//! PROXY protocol (HAProxy's `proxy-protocol.txt`) on the test side: headers
//! written here from the specification (not with shardgate's encoder, so
//! each side checks the other), a game server that requires a header and
//! records what it carried, and HAProxy from Debian as a real sender and
//! receiver of headers.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::ports;

/// The v2 signature (`\r\n\r\n\0\r\nQUIT\n`).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// `PROXY TCP4 ...\r\n` or `PROXY TCP6 ...\r\n` (same family on both sides).
pub fn v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {proto} {} {} {} {}\r\n", source.ip(), destination.ip(), source.port(), destination.port())
        .into_bytes()
}

/// A v2 PROXY header over TCP (INET or INET6, same family on both sides),
/// followed by `tlv` bytes.
pub fn v2_with_tlvs(source: SocketAddr, destination: SocketAddr, tlv: &[u8]) -> Vec<u8> {
    let mut addrs = Vec::new();
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            addrs.extend_from_slice(&s.octets());
            addrs.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            addrs.extend_from_slice(&s.octets());
            addrs.extend_from_slice(&d.octets());
            0x21
        }
        _ => panic!("one family on both sides"),
    };
    addrs.extend_from_slice(&source.port().to_be_bytes());
    addrs.extend_from_slice(&destination.port().to_be_bytes());
    let len = (addrs.len() + tlv.len()) as u16;
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x21);
    h.push(family);
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&addrs);
    h.extend_from_slice(tlv);
    h
}

/// A v2 PROXY header over TCP, no TLVs.
pub fn v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    v2_with_tlvs(source, destination, &[])
}

/// The v2 LOCAL header a load balancer's health check sends (no addresses).
pub fn v2_local() -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    h
}

/// Connects to `addr` (from the loopback `source` when given) and sends `header`.
pub async fn connect_with(addr: SocketAddr, source: Option<IpAddr>, header: &[u8]) -> TcpStream {
    let mut s = match source {
        None => TcpStream::connect(addr).await.expect("connect"),
        Some(ip) => {
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            sock.bind(SocketAddr::new(ip, 0)).expect("bind the source address");
            sock.connect(addr).await.expect("connect")
        }
    };
    s.write_all(header).await.expect("send the header");
    s
}

/// Whether the peer closed `s` without sending a byte (within 5 s).
pub async fn closed_without_reply(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("expected a close, got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(_) => false,
    }
}

/// `GET path` with `Host: host` on `s` (after whatever was sent first);
/// the status, or `None` when the connection is closed without an answer.
pub async fn http_status(s: &mut TcpStream, host: &str, path: &str) -> Option<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.ok()?.ok()?;
    let head = String::from_utf8_lossy(&buf);
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// What a [`PpGameServer`] read from one connection's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// 1 or 2.
    pub version: u8,
    /// The addresses it carried: `None` for v1 `UNKNOWN` or v2 `LOCAL`.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// Reads one header (v1 or v2) from `s`, written from the specification.
async fn read_header(s: &mut TcpStream) -> Result<Received, String> {
    let mut first = [0u8; 1];
    s.read_exact(&mut first).await.map_err(|e| e.to_string())?;
    if first[0] == b'P' {
        let mut line = vec![first[0]];
        while !line.ends_with(b"\r\n") {
            if line.len() > 107 {
                return Err("v1 line over 107 bytes".into());
            }
            s.read_exact(&mut first).await.map_err(|e| e.to_string())?;
            line.push(first[0]);
        }
        let line = String::from_utf8(line).map_err(|e| e.to_string())?;
        let f: Vec<&str> = line.trim_end().split(' ').collect();
        return match f.as_slice() {
            ["PROXY", "UNKNOWN", ..] => Ok(Received { version: 1, addresses: None }),
            ["PROXY", "TCP4" | "TCP6", s, d, sp, dp] => {
                let addr = |ip: &str, port: &str| -> Result<SocketAddr, String> {
                    Ok(SocketAddr::new(
                        ip.parse().map_err(|_| ip.to_owned())?,
                        port.parse().map_err(|_| port.to_owned())?,
                    ))
                };
                Ok(Received { version: 1, addresses: Some((addr(s, sp)?, addr(d, dp)?)) })
            }
            _ => Err(format!("bad v1 line {line:?}")),
        };
    }
    let mut fixed = [0u8; 16];
    fixed[0] = first[0];
    s.read_exact(&mut fixed[1..]).await.map_err(|e| e.to_string())?;
    if fixed[..12] != V2_SIGNATURE {
        return Err(format!("neither v1 nor v2: {fixed:?}"));
    }
    if fixed[12] >> 4 != 2 {
        return Err(format!("version byte {:#x}", fixed[12]));
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let mut block = vec![0u8; len];
    s.read_exact(&mut block).await.map_err(|e| e.to_string())?;
    if fixed[12] & 0x0F == 0 {
        return Ok(Received { version: 2, addresses: None });
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let addresses = match fixed[13] >> 4 {
        1 if len >= 12 => {
            let ip = |o: usize| IpAddr::from([block[o], block[o + 1], block[o + 2], block[o + 3]]);
            Some((SocketAddr::new(ip(0), port(&block[8..])), SocketAddr::new(ip(4), port(&block[10..]))))
        }
        2 if len >= 36 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&block[o..o + 16]);
                IpAddr::from(a)
            };
            Some((SocketAddr::new(ip(0), port(&block[32..])), SocketAddr::new(ip(16), port(&block[34..]))))
        }
        _ => return Err(format!("family byte {:#x} with {len} bytes", fixed[13])),
    };
    Ok(Received { version: 2, addresses })
}

/// A game server that requires a PROXY protocol header on every
/// connection, records what each carried, then echoes like
/// [`crate::GameServer`] (`[name] ` and the bytes). A connection without a
/// valid header is recorded as an error and closed.
#[derive(Debug)]
pub struct PpGameServer {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Result<Received, String>>>>,
    task: JoinHandle<()>,
}

impl PpGameServer {
    /// Starts one named `name` on 127.0.0.1 and an ephemeral port.
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let prefix = format!("[{name}] ");
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (log, prefix) = (Arc::clone(&log), prefix.clone());
                tokio::spawn(async move {
                    let header = tokio::time::timeout(Duration::from_secs(5), read_header(&mut sock))
                        .await
                        .unwrap_or_else(|_| Err("no header within 5 s".into()));
                    let ok = header.is_ok();
                    log.lock().expect("lock").push(header);
                    if !ok {
                        return;
                    }
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let reply = [prefix.as_bytes(), &buf[..n]].concat();
                                if sock.write_all(&reply).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        PpGameServer { addr, received, task }
    }

    /// The headers received so far, in arrival order.
    pub fn received(&self) -> Vec<Result<Received, String>> {
        self.received.lock().expect("lock").clone()
    }

    /// The node key for an upstream.
    pub fn node(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for PpGameServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HAProxy frontend in TCP mode, forwarding to one server.
#[derive(Debug, Clone)]
pub struct Frontend {
    /// The frontend requires a PROXY header itself (`accept-proxy`).
    pub accept_proxy: bool,
    /// Where it forwards.
    pub server: SocketAddr,
    /// The server line's option: `""`, `"send-proxy"` or `"send-proxy-v2"`.
    pub send: &'static str,
}

/// HAProxy from Debian (`/usr/sbin/haproxy`, installed by `scripts/test`),
/// started by the test on loopback ports with a generated configuration,
/// stopped (by its own PID) when dropped.
#[derive(Debug)]
pub struct Haproxy {
    /// The frontends' addresses, in the order given.
    pub frontends: Vec<SocketAddr>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Writes the configuration and starts HAProxy in the foreground.
    pub async fn start(frontends: &[Frontend]) -> Self {
        let bin = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("haproxy is not installed: scripts/test installs Debian's haproxy package");
        let dir = tempfile::tempdir().expect("tempdir");
        let addrs = ports::free_many("127.0.0.1", frontends.len());
        let mut cfg = String::from(
            "global\n    nbthread 1\n    maxconn 512\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n",
        );
        for (i, (f, addr)) in frontends.iter().zip(&addrs).enumerate() {
            let accept = if f.accept_proxy { " accept-proxy" } else { "" };
            cfg += &format!(
                "frontend f{i}\n    bind {addr}{accept}\n    default_backend b{i}\nbackend b{i}\n    server s{i} {} {}\n",
                f.server, f.send
            );
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, &cfg).expect("write haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log");
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start haproxy");
        let mut h = Haproxy { frontends: addrs, child, _dir: dir };
        // Waits for the listening sockets without connecting to them (a
        // connection would make HAProxy connect to the server behind).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for addr in h.frontends.clone() {
            while !listening(addr) {
                if let Some(status) = h.child.try_wait().expect("try_wait") {
                    panic!("haproxy exited ({status}):\n{cfg}\n{}", h.log());
                }
                assert!(tokio::time::Instant::now() < deadline, "haproxy not listening on {addr}:\n{}", h.log());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        h
    }

    /// HAProxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What HAProxy wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

/// Whether an IPv4 socket listens on `addr`, from `/proc/net/tcp` (state
/// `0A`, LISTEN; addresses in the kernel's hex notation).
fn listening(addr: SocketAddr) -> bool {
    let IpAddr::V4(ip) = addr.ip() else { return false };
    let want = format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), addr.port());
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
        t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
    })
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        // Only this test's own process, by its handle.
        if self.child.kill().is_ok() {
            drop(self.child.wait());
        }
    }
}
