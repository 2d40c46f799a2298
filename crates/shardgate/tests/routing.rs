//! Stream routing (SNI, port, client address), upstream references and
//! balancing, retries, DNS names, idle timeout and half-close, over real sockets.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::gateway;
use serde_json::json;
use shardgate_e2e::tls::{roundtrip, try_roundtrip};
use shardgate_e2e::{GameServer, Gateway, TestCert, TlsClient, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A plain TCP connection from `source` (e.g. 127.0.0.2) to `addr`.
async fn tcp_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(format!("{source}:0").parse().expect("source address"))?;
    sock.connect(addr).await
}

/// Which server answers one plain connection from `source`, or `None` if the
/// gateway closed it.
async fn who_answers(source: &str, addr: SocketAddr) -> Option<String> {
    let mut s = tcp_from(source, addr).await.ok()?;
    s.write_all(b"who").await.ok()?;
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.ok()?.ok()?;
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    reply.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(name, _)| name.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_listeners_route_by_port_and_client_address() {
    let gw = gateway().tls_listeners(0).plain_listeners(2).spawn().await;
    let (a, b) = (gw.plain[0], gw.plain[1]);
    let lan = GameServer::start("lan").await;
    let port_b = GameServer::start("port-b").await;
    let rest = GameServer::start("rest").await;
    let admin = gw.admin();
    // Config order is id order: r1 before r2 before r3.
    admin
        .put_ok(
            "/apisix/admin/stream_routes/r1",
            &json!({"remote_addr": "127.0.0.2/32", "upstream": {"nodes": {lan.node(): 1}}}),
        )
        .await;
    admin
        .put_ok(
            "/apisix/admin/stream_routes/r2",
            &json!({"server_port": b.port(), "upstream": {"nodes": {port_b.node(): 1}}}),
        )
        .await;
    admin.put_ok("/apisix/admin/stream_routes/r3", &json!({"upstream": {"nodes": {rest.node(): 1}}})).await;

    eventually(5, "routes loaded", || async {
        (who_answers("127.0.0.1", a).await.as_deref() == Some("rest")).then_some(())
    })
    .await;
    assert_eq!(who_answers("127.0.0.2", a).await.as_deref(), Some("lan"), "remote_addr CIDR");
    assert_eq!(who_answers("127.0.0.2", b).await.as_deref(), Some("lan"), "first match in config order");
    assert_eq!(who_answers("127.0.0.1", b).await.as_deref(), Some("port-b"), "server_port");

    // Without the catch-all, an unmatched connection is closed and counted.
    assert_eq!(admin.delete("/apisix/admin/stream_routes/r3").await.status, 200);
    eventually(5, "catch-all removed", || async { who_answers("127.0.0.1", a).await.is_none().then_some(()) }).await;
    let series = format!("shardgate_stream_no_route_total{{listener=\"tcp/{a}\"}}");
    assert!(gw.metric(&series).await >= 1.0);
    assert!(gw.log().contains("no stream route matches this plain connection"), "a log line names the miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_for_an_sni_is_refused_logged_with_sni_and_port_and_counted() {
    let gw = gateway().spawn().await;
    let gs = GameServer::start("gs").await;
    let cert = TestCert::ecdsa(&["known.com", "orphan.com"]);
    gw.admin().put_ok("/apisix/admin/ssls/c", &cert.ssl_body(&["known.com", "orphan.com"])).await;
    gw.admin()
        .put_ok("/apisix/admin/stream_routes/k", &json!({"sni": "known.com", "upstream": {"nodes": {gs.node(): 1}}}))
        .await;
    let addr = gw.tls_addr();
    // Waits without connecting: a refusal before the route is loaded would
    // take the listener's one warning of the minute.
    gw.applied().await;
    TlsClient::default().connect(addr, Some("known.com")).await.expect("known.com routed");
    let series = format!("shardgate_stream_no_route_total{{listener=\"tls/{addr}\"}}");
    let before = gw.metric(&series).await;
    let err = TlsClient::default().connect(addr, Some("orphan.com")).await.expect_err("a certificate but no route");
    assert!(err.to_string().contains("UnrecognisedName"), "{err}");
    assert_eq!(gw.metric(&series).await, before + 1.0);
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("no stream route matches") && l.contains("orphan.com"))
        .expect("a no-route log line naming the SNI");
    assert!(line.contains("orphan.com") && line.contains(&format!("port={}", addr.port())), "{line}");

    // A client that keeps trying writes one warning a minute, not one per
    // connection; each refusal is still counted.
    for _ in 0..5 {
        TlsClient::default().connect(addr, Some("orphan.com")).await.expect_err("still no route");
    }
    assert_eq!(gw.metric(&series).await, before + 6.0);
    let warnings = gw.log().lines().filter(|l| l.contains("WARN") && l.contains("no stream route matches")).count();
    assert_eq!(warnings, 1, "refusals after the first within a minute are logged at debug:\n{}", gw.log());
    // Another kind of refusal has its own minute: a scanner without SNI does
    // not hide a missing route, nor the other way round.
    TlsClient::default().connect(addr, None).await.expect_err("no SNI, no fallback");
    let log = gw.log();
    assert!(log.lines().any(|l| l.contains("WARN") && l.contains("no SNI and no fallback_sni")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_references_balancers_and_retries() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let addr = gw.plain[0];
    let a = GameServer::start("a").await;
    let b = GameServer::start("b").await;
    let admin = gw.admin();

    // Round robin, equal weights: connections alternate.
    admin
        .put_ok("/apisix/admin/upstreams/u", &json!({"type": "roundrobin", "nodes": {a.node(): 1, b.node(): 1}}))
        .await;
    admin.put_ok("/apisix/admin/stream_routes/r", &json!({"upstream_id": "u"})).await;
    eventually(5, "route loaded", || async { who_answers("127.0.0.1", addr).await }).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..10 {
        *seen.entry(who_answers("127.0.0.1", addr).await.expect("answer")).or_default() += 1;
    }
    assert_eq!((seen["a"], seen["b"]), (5, 5), "round robin alternates: {seen:?}");

    // Consistent hash on the client address: one client, one server.
    admin
        .put_ok(
            "/apisix/admin/upstreams/u",
            &json!({"type": "chash", "key": "remote_addr", "nodes": {a.node(): 1, b.node(): 1}}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for source in ["127.0.0.1", "127.0.0.3"] {
        let first = who_answers(source, addr).await.expect("answer");
        for _ in 0..5 {
            assert_eq!(
                who_answers(source, addr).await.as_deref(),
                Some(first.as_str()),
                "chash is sticky for {source}"
            );
        }
    }

    // Least connections: with one session held open on a server, the next goes to the other.
    admin
        .put_ok("/apisix/admin/upstreams/u", &json!({"type": "least_conn", "nodes": {a.node(): 1, b.node(): 1}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = tcp_from("127.0.0.1", addr).await.expect("connect");
    let first = roundtrip(&mut held, "hold").await;
    let (holder, free) = if first.starts_with("[a]") { ("a", &b) } else { ("b", &a) };
    let free_active =
        format!("shardgate_upstream_connections_active{{upstream=\"upstreams/u\",node=\"{}\"}}", free.node());
    for _ in 0..3 {
        let other = who_answers("127.0.0.1", addr).await.expect("answer");
        assert_ne!(other, holder, "least_conn avoids the busy server");
        // Let the gateway see that probe's close before the next one.
        eventually(5, "probe closed", || async { (gw.metric(&free_active).await == 0.0).then_some(()) }).await;
    }
    drop(held);

    // A dead node is retried on the next one, and the failure is counted per node.
    let dead = shardgate_e2e::ports::free("127.0.0.1");
    admin.put_ok("/apisix/admin/upstreams/u", &json!({"nodes": {dead.to_string(): 1, a.node(): 1}})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..4 {
        assert_eq!(
            who_answers("127.0.0.1", addr).await.as_deref(),
            Some("a"),
            "every connection lands despite the dead node"
        );
    }
    let failures = gw
        .metric(&format!("shardgate_upstream_connect_failures_total{{upstream=\"upstreams/u\",node=\"{dead}\"}}"))
        .await;
    assert!(failures >= 1.0, "connect failures counted for {dead}");

    // The referenced upstream cannot be deleted while the route uses it.
    let r = admin.delete("/apisix/admin/upstreams/u").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error_msg"].as_str().unwrap_or_default().contains("still using it"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_names_are_resolved_by_dns() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let gs = GameServer::start_on("named", "127.0.0.1:0").await;
    gw.admin()
        .put_ok(
            "/apisix/admin/stream_routes/r",
            &json!({"upstream": {"nodes": {format!("localhost:{}", gs.addr.port()): 1}, "retries": 2}}),
        )
        .await;
    let addr = gw.plain[0];
    let who = eventually(5, "localhost resolves", || async { who_answers("127.0.0.1", addr).await }).await;
    assert_eq!(who, "named");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_per_route_and_half_close() {
    let gw = gateway().tls_listeners(0).plain_listeners(1).spawn().await;
    let addr = gw.plain[0];
    // A server that answers "bye" after the client's FIN, then closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if s.read_to_end(&mut all).await.is_ok() {
                    let reply = format!("bye after {} bytes", all.len());
                    s.write_all(reply.as_bytes()).await.ok();
                }
            });
        }
    });
    gw.admin()
        .put_ok(
            "/apisix/admin/stream_routes/r",
            &json!({"idle_timeout": 1, "upstream": {"nodes": {server_addr.to_string(): 1}}}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Half-close: the client's FIN reaches the server, whose answer still comes back.
    let mut s = eventually(5, "route loaded", || async { tcp_from("127.0.0.1", addr).await.ok() }).await;
    s.write_all(b"12345").await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut reply)).await.expect("in time").expect("read");
    assert_eq!(reply, "bye after 5 bytes");

    // Idle timeout: a silent session is closed after the route's 1 s.
    let mut idle = tcp_from("127.0.0.1", addr).await.expect("connect");
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("closed within 10s")
        .expect("read");
    assert_eq!(n, 0, "EOF from the gateway");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout: {:?}", started.elapsed());
    let closed = eventually(5, "idle close counted", || async {
        let v = gw.metric(&format!("shardgate_stream_connections_closed_total{{listener=\"tcp/{addr}\",route=\"r\",reason=\"idle_timeout\"}}")).await;
        (v >= 1.0).then_some(v)
    })
    .await;
    assert_eq!(closed, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_tls_listeners_and_sni_wildcard_routes() {
    let gw: Gateway = gateway().tls_listeners(2).spawn().await;
    let exact = GameServer::start("exact").await;
    let zone = GameServer::start("zone").await;
    let cert = TestCert::ecdsa(&["*.zone1.game.com", "gs-1.zone1.game.com"]);
    gw.admin().put_ok("/apisix/admin/ssls/z", &cert.ssl_body(&["*.zone1.game.com", "gs-1.zone1.game.com"])).await;
    gw.admin()
        .put_ok(
            "/apisix/admin/stream_routes/zone",
            &json!({"sni": "*.zone1.game.com", "upstream": {"nodes": {zone.node(): 1}}}),
        )
        .await;
    gw.admin()
        .put_ok(
            "/apisix/admin/stream_routes/exact",
            &json!({"sni": "gs-1.zone1.game.com", "server_port": gw.tls[1].port(), "upstream": {"nodes": {exact.node(): 1}}}),
        )
        .await;
    let c = TlsClient::default();
    let (l0, l1) = (gw.tls[0], gw.tls[1]);
    // Both routes loaded: the exact one answers on its port.
    eventually(5, "exact SNI on its port", || async {
        let mut s = c.connect(l1, Some("gs-1.zone1.game.com")).await.ok()?;
        (try_roundtrip(&mut s, "x").await.as_deref() == Some("[exact] x")).then_some(())
    })
    .await;
    let mut s = c.connect(l0, Some("gs-1.zone1.game.com")).await.expect("other port");
    assert_eq!(roundtrip(&mut s, "y").await, "[zone] y", "exact route filtered by port; the wildcard takes the rest");
    let mut s = c.connect(l1, Some("gs-7.zone1.game.com")).await.expect("wildcard");
    assert_eq!(roundtrip(&mut s, "z").await, "[zone] z");
}
