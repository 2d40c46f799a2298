//! `nodes`: many upstream nodes in one process for `bench/health.sh`. It
//! listens on `count` consecutive ports of one address; every connection is
//! accepted, and one that sends an HTTP request head gets `200 OK` and is
//! closed (what an HTTP health probe expects); one that sends nothing is
//! dropped when the prober closes it (a TCP probe).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::Res;

/// Most bytes read of a probe's request.
const MAX_REQUEST: usize = 4096;

/// Serves `count` ports from `first_port` on `ip` until killed.
pub async fn nodes(ip: IpAddr, first_port: u16, count: u16) -> Res<()> {
    let mut tasks = Vec::with_capacity(usize::from(count));
    for i in 0..count {
        let port = first_port.checked_add(i).ok_or("port range past 65535")?;
        let listener =
            TcpListener::bind(SocketAddr::new(ip, port)).await.map_err(|e| format!("bind {ip}:{port}: {e}"))?;
        tasks.push(tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; MAX_REQUEST];
                    let mut len = 0;
                    // Bounded: a probe that stalls is dropped after 5 s.
                    let head = tokio::time::timeout(Duration::from_secs(5), async {
                        while len < buf.len() {
                            match s.read(&mut buf[len..]).await {
                                Ok(0) | Err(_) => return false,
                                Ok(n) => len += n,
                            }
                            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                                return true;
                            }
                        }
                        false
                    });
                    if head.await == Ok(true) {
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await.ok();
                    }
                });
            }
        }));
    }
    println!("listening on {ip}:{first_port}..{}", u32::from(first_port) + u32::from(count) - 1);
    for t in tasks {
        t.await?;
    }
    Ok(())
}
