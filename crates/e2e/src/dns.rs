//! A tiny DNS server for tests: UDP on loopback, A and AAAA answers from a
//! map the test fills, NXDOMAIN for other names, and a record of every
//! query, so a test controls name resolution (no `/etc/hosts`) and can
//! check which names reached the DNS at all. Point a gateway at it with
//! `stream.dns.nameservers` ([`TestDns::stream_yaml`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Query types answered (RFC 1035 section 3.2.2, RFC 3596).
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
/// The TTL of every answer, in seconds.
const ANSWER_TTL: u32 = 60;
/// Longest name read from a query (RFC 1035 section 2.3.4, with dots).
const MAX_NAME: usize = 255;

#[derive(Debug, Default)]
struct Shared {
    answers: HashMap<String, Vec<IpAddr>>,
    /// (name, query type), in arrival order.
    queries: Vec<(String, u16)>,
}

/// A running test DNS server; stops when dropped.
#[derive(Debug)]
pub struct TestDns {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl TestDns {
    /// Starts a server on 127.0.0.1 and an ephemeral port, knowing no name.
    pub async fn start() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind the test DNS server");
        let addr = sock.local_addr().expect("address");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let Some(reply) = answer(&buf[..n], &state) else { continue };
                if sock.send_to(&reply, from).await.is_err() {
                    break;
                }
            }
        });
        TestDns { addr, shared, task }
    }

    /// Answers `name` (case-insensitive, no trailing dot) with `ip` from now on.
    pub fn insert(&self, name: &str, ip: IpAddr) {
        let mut s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        s.answers.entry(name.to_ascii_lowercase()).or_default().push(ip);
    }

    /// Queries received for `name`, any type.
    pub fn queries_for(&self, name: &str) -> usize {
        let s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        s.queries.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count()
    }

    /// Every name asked, in arrival order, repeats included.
    pub fn names_asked(&self) -> Vec<String> {
        let s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        s.queries.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The `stream:` YAML that makes a gateway ask this server.
    pub fn stream_yaml(&self) -> String {
        format!("  dns:\n    nameservers: [\"{}\"]", self.addr)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reply to one query datagram, or `None` to ignore it (not a single
/// question, malformed).
fn answer(query: &[u8], shared: &Mutex<Shared>) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        // Queries carry no compression pointers (RFC 1035 section 4.1.4 is for answers).
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
        if i - 12 > MAX_NAME {
            return None;
        }
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question = query.get(12..i + 4)?;
    let name = labels.join(".");
    let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
    s.queries.push((name.clone(), qtype));
    let known = s.answers.get(&name);
    let records: Vec<IpAddr> = known
        .map(|ips| {
            ips.iter()
                .copied()
                .filter(|ip| (qtype == TYPE_A && ip.is_ipv4()) || (qtype == TYPE_AAAA && ip.is_ipv6()))
                .collect()
        })
        .unwrap_or_default();
    // Header: the query's id; QR, its opcode and RD, AA; RA and the rcode
    // (3, NXDOMAIN, for unknown names); one question, the answers.
    let rcode = if known.is_some() { 0 } else { 3 };
    let mut out = vec![query[0], query[1], 0x84 | (query[2] & 0x79), 0x80 | rcode, 0, 1];
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in records {
        // The name as a pointer to the question's (offset 12), class IN.
        out.extend_from_slice(&[0xc0, 12]);
        let (kind, data) = match ip {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&ANSWER_TTL.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}
