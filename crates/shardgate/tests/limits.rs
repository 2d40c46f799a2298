//! The open-file limit: the connection budget leaves descriptors for the
//! health, metrics and Admin endpoints, and local shortages never mark a
//! game server down.

mod common;

use std::time::Duration;

use common::gateway;
use serde_json::json;
use shardgate_e2e::tls::try_roundtrip;
use shardgate_e2e::{GameServer, eventually};
use tokio::io::AsyncWriteExt;

/// With `ulimit -n 128` and a reserve of 48 plus 8 connections for each of
/// the Admin API and metrics listeners, at most (128 - 64) / 2 = 32 players
/// are served at once; the 40 beyond wait in the kernel's backlog
/// while `/readyz`, `/metrics` and the Admin API keep answering, and they
/// are served as soon as players leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_open_file_limit_health_and_admin_keep_answering() {
    let gw = gateway()
        .nofile(128)
        .yaml("limits:\n  fd_reserve: 48\n  admin_max_connections: 8")
        .tls_listeners(0)
        .plain_listeners(1)
        .spawn()
        .await;
    assert!(
        gw.log().contains("cannot be met with this open-file limit"),
        "the lowered budget is logged:\n{}",
        gw.log()
    );
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {gs.node(): 1}}})).await;
    let addr = gw.plain[0];
    eventually(5, "routed", || async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        (try_roundtrip(&mut s, "hi").await.as_deref() == Some("[gs] hi")).then_some(())
    })
    .await;

    // 72 players at once: the first 32 are served, 40 wait.
    let mut players = Vec::new();
    for i in 0..72 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("the kernel queues the connect");
        let msg = format!("p{i}");
        s.write_all(msg.as_bytes()).await.expect("write");
        players.push((s, msg));
    }
    let waiting = players.split_off(32);
    let mut served = Vec::new();
    for (mut s, msg) in players {
        assert_eq!(read_reply(&mut s, 10).await.as_deref(), Some(format!("[gs] {msg}").as_str()), "within the budget");
        served.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut waiting_replies = 0;
    for (s, _) in &waiting {
        let mut buf = [0u8; 1];
        if s.try_read(&mut buf).is_ok_and(|n| n > 0) {
            waiting_replies += 1;
        }
    }
    assert_eq!(waiting_replies, 0, "players beyond (128 - 64) / 2 wait in the backlog");
    assert_eq!(gw.readyz().await, 200, "/readyz answers at the limit");
    let metrics = gw.metrics_text().await;
    assert!(metrics.contains("shardgate_stream_connections_active"), "/metrics answers at the limit");
    let r = gw.admin().get("/apisix/admin/stream_routes/1").await;
    assert_eq!(r.status, 200, "the Admin API answers at the limit");
    let failures = gw
        .metric(&format!(
            "shardgate_upstream_connect_failures_total{{upstream=\"stream_routes/1\",node=\"{}\"}}",
            gs.node()
        ))
        .await;
    assert_eq!(failures, 0.0, "the game server was never blamed");

    // Players leave; the waiting ones are served.
    drop(served);
    for (mut s, msg) in waiting {
        assert_eq!(read_reply(&mut s, 10).await, Some(format!("[gs] {msg}")), "served once others left");
    }
}

/// The first reply on `s`, waiting at most `secs` seconds.
async fn read_reply(s: &mut tokio::net::TcpStream, secs: u64) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(secs), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}
