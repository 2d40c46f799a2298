//! UDP load for `bench/udp.sh`: an echo server (the game servers behind the
//! proxy) and a load of N client sockets, each its own session on the
//! proxy, sending datagrams at a fixed rate and timing each round trip.
//!
//! Each datagram carries its sequence number and send time, so a reply is
//! timed without any per-datagram state, and a late or lost one is simply
//! not counted. The load stops by itself after `seconds`, plus a short wait
//! for replies still in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::Res;

/// Header of every datagram: sequence number and send time (µs since start).
const HEADER: usize = 16;
/// How long replies are awaited after the last send.
const TAIL: Duration = Duration::from_millis(500);

/// Echoes every datagram back to its sender, unchanged.
pub async fn echo(listen: SocketAddr) -> Res<()> {
    let sock = UdpSocket::bind(listen).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await?;
        // A full send buffer drops the reply, as a real game server would.
        if let Err(e) = sock.try_send_to(&buf[..n], from)
            && e.kind() != std::io::ErrorKind::WouldBlock
        {
            return Err(e.into());
        }
    }
}

/// What one client saw.
struct ClientResult {
    sent: u64,
    samples: Vec<u32>,
}

/// `clients` sockets, each sending `rate` datagrams per second of `size`
/// bytes to `target` for `seconds`; prints counts and round-trip percentiles.
pub async fn load(target: SocketAddr, clients: usize, rate: u64, seconds: u64, size: usize) -> Res<()> {
    let size = size.max(HEADER);
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    let t0 = tokio::time::Instant::now();
    let stop_at = t0 + Duration::from_secs(seconds);
    let epoch = Arc::new(started);
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        sock.connect(target).await?;
        let epoch = Arc::clone(&epoch);
        // Clients start spread over one period, so sends do not come in bursts.
        let first = t0 + period.mul_f64(i as f64 / clients as f64);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(first, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut out = vec![b'g'; size];
            let mut buf = vec![0u8; 65_535];
            let mut result = ClientResult { sent: 0, samples: Vec::with_capacity((seconds * rate) as usize + 8) };
            let mut seq = 0u64;
            let mut sending = true;
            let tail = tokio::time::sleep_until(stop_at + TAIL);
            tokio::pin!(tail);
            loop {
                tokio::select! {
                    at = tick.tick(), if sending => {
                        if at >= stop_at {
                            sending = false;
                            continue;
                        }
                        seq += 1;
                        out[..8].copy_from_slice(&seq.to_le_bytes());
                        let now_us = epoch.elapsed().as_micros() as u64;
                        out[8..16].copy_from_slice(&now_us.to_le_bytes());
                        if sock.send(&out).await.is_ok() {
                            result.sent += 1;
                        }
                    }
                    r = sock.recv(&mut buf) => {
                        let Ok(n) = r else { continue };
                        if n < HEADER {
                            continue;
                        }
                        let mut ts = [0u8; 8];
                        ts.copy_from_slice(&buf[8..16]);
                        let rtt = (epoch.elapsed().as_micros() as u64).saturating_sub(u64::from_le_bytes(ts));
                        result.samples.push(rtt.min(u64::from(u32::MAX)) as u32);
                    }
                    () = &mut tail => break,
                }
            }
            result
        }));
    }
    let mut all: Vec<u32> = Vec::new();
    let mut sent = 0;
    for t in tasks {
        let r = t.await?;
        sent += r.sent;
        all.extend(r.samples);
    }
    all.sort_unstable();
    let pct =
        |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "sent": sent, "received": all.len(), "lost": sent.saturating_sub(all.len() as u64),
            "seconds": secs, "rate": all.len() as f64 / seconds.max(1) as f64,
            "p50_us": pct(0.50), "p90_us": pct(0.90), "p99_us": pct(0.99), "p999_us": pct(0.999),
            "max_us": all.last().copied().unwrap_or(0)
        })
    );
    Ok(())
}
