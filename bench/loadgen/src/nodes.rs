//! `nodes`: many upstream nodes in one process for `bench/health.sh`. It
//! listens on `count` ports of one address, chosen by the kernel (so no
//! other process's port is in the way), and writes them to a file, one a
//! line; every connection is accepted, and one that sends an HTTP request
//! head gets `200 OK` and is closed (what an HTTP health probe expects); one
//! that sends nothing is dropped when the prober closes it (a TCP probe).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::Res;

/// Most bytes read of a probe's request.
const MAX_REQUEST: usize = 4096;

/// Serves `count` ports on `ip` until killed; their numbers go to `ports_file`.
pub async fn nodes(ip: IpAddr, count: u16, ports_file: &Path) -> Res<()> {
    let mut tasks = Vec::with_capacity(usize::from(count));
    let mut ports = String::new();
    for _ in 0..count {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.map_err(|e| format!("bind {ip}:0: {e}"))?;
        ports.push_str(&format!("{}\n", listener.local_addr()?.port()));
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
    // Written whole once every port listens: the script waits for the file.
    let partial = ports_file.with_extension("partial");
    std::fs::write(&partial, ports)?;
    std::fs::rename(&partial, ports_file)?;
    println!("listening on {count} ports of {ip}");
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// `probe-floor`: what TCP probes cost at the least, for comparison with the
/// gateway's checker: one task per port of `ports_file`, each connecting
/// every `interval` (first connects spread over one interval) and closing
/// with a reset, as the gateway's TCP probe does, for `seconds`. Prints the
/// connects made and failed.
pub async fn probe_floor(ip: IpAddr, ports_file: &Path, interval: Duration, seconds: u64) -> Res<()> {
    let ports: Vec<u16> = std::fs::read_to_string(ports_file)?.lines().map(str::parse).collect::<Result<_, _>>()?;
    let start = tokio::time::Instant::now();
    let end = start + Duration::from_secs(seconds);
    let count = ports.len().max(1) as u32;
    let mut tasks = Vec::with_capacity(ports.len());
    for (i, port) in ports.into_iter().enumerate() {
        let addr = SocketAddr::new(ip, port);
        let mut next = start + interval.mul_f64(f64::from(i as u32) / f64::from(count));
        tasks.push(tokio::spawn(async move {
            let (mut made, mut failed) = (0u64, 0u64);
            while next < end {
                tokio::time::sleep_until(next).await;
                next += interval;
                match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(s)) => {
                        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).ok();
                        made += 1;
                    }
                    _ => failed += 1,
                }
            }
            (made, failed)
        }));
    }
    let (mut made, mut failed) = (0, 0);
    for t in tasks {
        let (m, f) = t.await?;
        made += m;
        failed += f;
    }
    println!("connects {made} failed {failed}");
    Ok(())
}
