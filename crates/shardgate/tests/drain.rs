//! SIGTERM: /readyz turns unready, listeners stop accepting (after
//! `drain.delay`, which another SIGTERM does not shorten and SIGINT ends),
//! open sessions run until they end or the drain deadline, then the process
//! exits 0.

mod common;

use std::time::{Duration, Instant};

use common::gateway;
use serde_json::json;
use shardgate_e2e::tls::{roundtrip, try_roundtrip};
use shardgate_e2e::{GameServer, TestCert, TlsClient, eventually};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_sessions_until_the_deadline() {
    let mut gw = gateway().drain_timeout("2s").spawn().await;
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/ssls/1", &TestCert::ecdsa(&["gs-1.com"]).ssl_body(&["gs-1.com"])).await;
    gw.admin()
        .put_ok("/apisix/admin/stream_routes/1", &json!({"sni": "gs-1.com", "upstream": {"nodes": {gs.node(): 1}}}))
        .await;
    let addr = gw.tls_addr();
    let client = TlsClient::default();
    let mut session = eventually(5, "routed", || async { client.connect(addr, Some("gs-1.com")).await.ok() }).await;
    assert_eq!(roundtrip(&mut session, "a").await, "[gs] a");
    assert_eq!(gw.readyz().await, 200);

    gw.sigterm();
    let signalled = Instant::now();
    eventually(5, "/readyz unready", || async { (gw.readyz().await == 503).then_some(()) }).await;
    eventually(5, "listener closed", || async { tokio::net::TcpStream::connect(addr).await.err() }).await;
    // The open session keeps playing during the drain...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(roundtrip(&mut session, "b").await, "[gs] b");
    // ...and is closed at the deadline.
    let mut buf = [0u8; 16];
    let n =
        tokio::time::timeout(Duration::from_secs(10), session.read(&mut buf)).await.expect("closed by the deadline");
    assert!(matches!(n, Ok(0) | Err(_)), "the session ends: {n:?}");
    let cut_after = signalled.elapsed();
    assert!(cut_after >= Duration::from_millis(1500), "not cut before the deadline: {cut_after:?}");
    let status = gw.wait_exit(15).await;
    assert!(status.success(), "exit status {status}");
    assert!(gw.log().contains("reason=\"drain\""), "the cut session is logged as drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_as_soon_as_the_last_session_ends() {
    let mut gw = gateway().drain_timeout("60s").tls_listeners(0).plain_listeners(1).spawn().await;
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {gs.node(): 1}}})).await;
    let addr = gw.plain[0];
    let mut session = eventually(5, "routed", || async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        (try_roundtrip(&mut s, "hi").await.as_deref() == Some("[gs] hi")).then_some(s)
    })
    .await;
    gw.sigterm();
    eventually(5, "draining", || async { (gw.readyz().await == 503).then_some(()) }).await;
    assert_eq!(roundtrip(&mut session, "still").await, "[gs] still");
    let closed = Instant::now();
    drop(session);
    let status = gw.wait_exit(15).await;
    assert!(status.success());
    assert!(closed.elapsed() < Duration::from_secs(10), "exits when the last session ends, not at the 60 s deadline");
}

/// `drain.delay`: on SIGTERM the gateway turns unready at once but keeps
/// accepting players until the delay ends, so a load balancer polling
/// `/readyz` stops sending before anyone is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_delay_keeps_accepting_while_unready() {
    let mut gw = gateway().drain_timeout("5s").drain_delay("6s").tls_listeners(0).plain_listeners(1).spawn().await;
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {gs.node(): 1}}})).await;
    let addr = gw.plain[0];
    eventually(5, "routed", || async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        (try_roundtrip(&mut s, "hi").await.as_deref() == Some("[gs] hi")).then_some(())
    })
    .await;

    gw.sigterm();
    let signalled = Instant::now();
    eventually(5, "/readyz unready", || async { (gw.readyz().await == 503).then_some(()) }).await;
    // Unready, and a new player is still served (the connect itself shows
    // the listener is still open, however slow the machine).
    let mut late = tokio::net::TcpStream::connect(addr).await.expect("still accepting during the delay");
    assert_eq!(roundtrip(&mut late, "late").await, "[gs] late");
    // Then the listener closes, the open session still plays, and it exits when that session ends.
    eventually(20, "listener closed after the delay", || async { tokio::net::TcpStream::connect(addr).await.err() })
        .await;
    assert!(signalled.elapsed() >= Duration::from_millis(5500), "closed before the delay: {:?}", signalled.elapsed());
    assert_eq!(roundtrip(&mut late, "still").await, "[gs] still");
    drop(late);
    let status = gw.wait_exit(15).await;
    assert!(status.success(), "exit status {status}");
}

/// During `drain.delay` another SIGTERM (a preStop hook delivered twice, the
/// kubelet's own SIGTERM after a hook that gave up) changes nothing: players
/// are still accepted until the delay ends. SIGINT (Ctrl-C again) ends the
/// delay at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_delay_sigterm_changes_nothing_and_sigint_drains_now() {
    let mut gw = gateway().drain_timeout("5s").drain_delay("60s").tls_listeners(0).plain_listeners(1).spawn().await;
    let gs = GameServer::start("gs").await;
    gw.admin().put_ok("/apisix/admin/stream_routes/1", &json!({"upstream": {"nodes": {gs.node(): 1}}})).await;
    let addr = gw.plain[0];
    eventually(5, "routed", || async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        (try_roundtrip(&mut s, "hi").await.as_deref() == Some("[gs] hi")).then_some(())
    })
    .await;

    gw.sigterm();
    eventually(5, "/readyz unready", || async { (gw.readyz().await == 503).then_some(()) }).await;
    gw.sigterm();
    eventually(10, "the second SIGTERM is logged", || async {
        gw.log().contains("SIGTERM while already draining").then_some(())
    })
    .await;
    assert!(gw.log().contains("remaining_ms="), "the remaining delay is logged:\n{}", gw.log());
    let mut late = tokio::net::TcpStream::connect(addr).await.expect("still accepting after a second SIGTERM");
    assert_eq!(roundtrip(&mut late, "late").await, "[gs] late");
    let status = shardgate_e2e::admin::http(gw.metrics, "GET", "/status/drain", &[], None).await;
    let status: serde_json::Value = serde_json::from_str(&status.body).expect("json");
    assert_eq!(status["state"], "delaying", "{status}");

    // SIGINT: the listener closes now, well before the 60 s delay would end.
    let sent = std::process::Command::new("kill").args(["-INT", &gw.pid().to_string()]).status().expect("run kill");
    assert!(sent.success(), "kill -INT");
    eventually(20, "listener closed by SIGINT", || async { tokio::net::TcpStream::connect(addr).await.err() }).await;
    assert!(gw.log().contains("SIGINT: draining now"), "{}", gw.log());
    assert_eq!(roundtrip(&mut late, "still").await, "[gs] still", "the open session plays on");
    drop(late);
    let status = gw.wait_exit(15).await;
    assert!(status.success(), "exit status {status}");
}
