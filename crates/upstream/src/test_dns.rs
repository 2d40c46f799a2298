//! A nameserver on loopback for unit tests: answers A queries from a map
//! (NXDOMAIN for other names, an empty answer for AAAA), or nothing at all
//! when silent, and counts the queries per name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

/// Queries per name (as asked, without the final dot).
pub(crate) type Seen = Arc<Mutex<HashMap<String, usize>>>;

/// How many times `name` was asked.
pub(crate) fn asked(seen: &Seen, name: &str) -> usize {
    seen.lock().map(|m| m.get(name).copied().unwrap_or(0)).unwrap_or(0)
}

pub(crate) struct TestDns;

impl TestDns {
    /// Starts a server answering `answers` (name, IPv4 address); the task
    /// ends with the test's runtime.
    pub(crate) async fn start(answers: &[(&str, &str)], silent: bool) -> (SocketAddr, Seen) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = sock.local_addr().expect("addr");
        let map: HashMap<String, std::net::Ipv4Addr> =
            answers.iter().map(|(n, ip)| ((*n).to_owned(), ip.parse().expect("IPv4"))).collect();
        let seen: Seen = Arc::default();
        let counts = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                if n < 17 {
                    continue;
                }
                let q = &buf[12..n];
                let mut labels = Vec::new();
                let mut i = 0;
                while i < q.len() && q[i] != 0 {
                    let len = usize::from(q[i]);
                    labels.push(String::from_utf8_lossy(&q[i + 1..(i + 1 + len).min(q.len())]).into_owned());
                    i += 1 + len;
                }
                let name = labels.join(".").to_ascii_lowercase();
                if let Ok(mut m) = counts.lock() {
                    *m.entry(name.clone()).or_default() += 1;
                }
                if silent || i + 5 > q.len() {
                    continue;
                }
                // Same id, QR + RD + RA, the question echoed.
                let question = &q[..i + 5];
                let qtype = u16::from_be_bytes([question[i + 1], question[i + 2]]);
                let ip = map.get(&name);
                let answer = ip.filter(|_| qtype == 1);
                let rcode = if ip.is_some() { 0 } else { 3 };
                let mut out = vec![buf[0], buf[1], 0x81, 0x80 | rcode, 0, 1, 0, u8::from(answer.is_some()), 0, 0, 0, 0];
                out.extend_from_slice(question);
                if let Some(ip) = answer {
                    out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                    out.extend_from_slice(&ip.octets());
                }
                if sock.send_to(&out, from).await.is_err() {
                    break;
                }
            }
        });
        (addr, seen)
    }
}
