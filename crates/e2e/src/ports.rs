//! Ports for test gateways, chosen the way sozu's e2e port registry does:
//! at random from 15000–29999, below the kernel's ephemeral range
//! (32768–60999 on Linux), so no outgoing connection of any process can take
//! a port between the moment it is picked and the moment the gateway binds
//! it. Each candidate is checked by binding it, and every port of one gateway
//! is held until all are picked, so none is handed out twice. Ports are
//! never hard-coded.

use std::net::{SocketAddr, TcpListener};
use std::time::{SystemTime, UNIX_EPOCH};

const LOW: u32 = 15_000;
const SPAN: u32 = 15_000;

/// A small xorshift seeded by time and pid: enough to spread parallel tests.
fn next(state: &mut u64) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % u64::from(SPAN)) as u32
}

/// `n` distinct free TCP ports on `ip`.
pub fn free_many(ip: &str, n: usize) -> Vec<SocketAddr> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let mut state = nanos ^ (u64::from(std::process::id()) << 32) | 1;
    let mut held = Vec::with_capacity(n);
    for _ in 0..10_000 {
        if held.len() == n {
            break;
        }
        let port = LOW + next(&mut state);
        if let Ok(l) = TcpListener::bind(format!("{ip}:{port}")) {
            held.push(l);
        }
    }
    assert_eq!(held.len(), n, "could not find {n} free ports in {LOW}-{}", LOW + SPAN - 1);
    held.iter().map(|l| l.local_addr().expect("local address")).collect()
}

/// One free TCP port on `ip`.
pub fn free(ip: &str) -> SocketAddr {
    free_many(ip, 1)[0]
}
