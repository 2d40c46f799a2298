use super::*;
use shardgate_model::Upstream as UpstreamConfig;
use shardgate_model::json::from_value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn registry() -> Registry {
    Registry::new(
        Arc::new(Resolver::new(Duration::from_secs(30), Duration::from_secs(5))),
        UpstreamMetrics::default(),
        ConnectDefaults { connect_timeout: Duration::from_secs(2), ..ConnectDefaults::default() },
    )
}

fn config(v: serde_json::Value) -> Arc<UpstreamConfig> {
    let w = from_value(v).expect("wire");
    Arc::new(UpstreamConfig::from_wire(None, &w).expect("valid"))
}

fn ctx() -> ConnectCtx<'static> {
    ConnectCtx {
        client: "127.0.0.1:40000".parse().expect("addr"),
        local: "127.0.0.1:8888".parse().expect("addr"),
        sni: None,
    }
}

/// A port that refuses connections: bound, then closed.
async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

async fn echo_server(name: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf).await {
                    let reply = format!("[{name}] {}", String::from_utf8_lossy(&buf[..n]));
                    s.write_all(reply.as_bytes()).await.ok();
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn unchanged_config_reuses_the_runtime() {
    let reg = registry();
    let key = UpstreamKey::Named(ResourceId::parse("u1").expect("id"));
    let a = reg.get_or_create(key.clone(), &config(serde_json::json!({"nodes": {"127.0.0.1:1": 1}})));
    let b = reg.get_or_create(key.clone(), &config(serde_json::json!({"nodes": {"127.0.0.1:1": 1}})));
    assert!(Arc::ptr_eq(&a, &b));
    let c = reg.get_or_create(key.clone(), &config(serde_json::json!({"nodes": {"127.0.0.1:2": 1}})));
    assert!(!Arc::ptr_eq(&a, &c));
    reg.retain(&HashSet::new());
    assert!(reg.is_empty());
}

#[tokio::test]
async fn a_refused_node_is_retried_on_the_next_and_marked_down() {
    let reg = registry();
    let dead = dead_port().await;
    let live = echo_server("gs-live").await;
    let up = reg.get_or_create(
        UpstreamKey::Named(ResourceId::parse("u").expect("id")),
        &config(serde_json::json!({"nodes": [
            {"host": "127.0.0.1", "port": dead, "weight": 100, "priority": 1},
            {"host": "127.0.0.1", "port": live, "weight": 1, "priority": 0}
        ]})),
    );
    let mut c = up.connect(&ctx()).await.expect("second node answers");
    assert_eq!(c.peer.addr().port(), live);
    c.stream.write_all(b"hi").await.expect("write");
    let mut buf = vec![0u8; 64];
    let n = c.stream.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b"[gs-live] hi");
    assert_eq!(up.active_per_node()[1].1, 1);
    drop(c);
    assert_eq!(up.active_per_node()[1].1, 0, "guard released the count");

    // The dead node is now marked down: the next connect goes straight to the live one.
    let before = reg
        .metrics
        .connect_failures
        .get_or_create_owned(&NodeLabels { upstream: "upstreams/u".into(), node: format!("127.0.0.1:{dead}") });
    assert_eq!(before.get(), 1);
    let c = up.connect(&ctx()).await.expect("live");
    assert_eq!(c.peer.addr().port(), live);
    assert_eq!(before.get(), 1, "down node not retried within fail_timeout");
}

#[tokio::test]
async fn every_node_failing_is_one_error_naming_the_upstream() {
    let reg = registry();
    let (a, b) = (dead_port().await, dead_port().await);
    let up = reg.get_or_create(
        UpstreamKey::InlineStream(ResourceId::parse("r9").expect("id")),
        &config(serde_json::json!({"nodes": {format!("127.0.0.1:{a}"): 1, format!("127.0.0.1:{b}"): 1}})),
    );
    let err = up.connect(&ctx()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("stream_routes/r9") && msg.contains("2 connect attempt"), "{msg}");

    let none = reg.get_or_create(
        UpstreamKey::Named(ResourceId::parse("empty").expect("id")),
        &config(serde_json::json!({"nodes": {}})),
    );
    assert!(matches!(none.connect(&ctx()).await, Err(ConnectError::NoNodes { .. })));
}

#[tokio::test]
async fn names_are_resolved() {
    let reg = registry();
    let live = echo_server("named").await;
    let up = reg.get_or_create(
        UpstreamKey::Named(ResourceId::parse("n").expect("id")),
        &config(serde_json::json!({"nodes": {format!("localhost:{live}"): 1}, "retries": 3})),
    );
    // localhost may resolve to ::1 first, where nothing listens: retries cover it.
    let c = up.connect(&ctx()).await.expect("localhost resolves and connects");
    assert_eq!(c.peer.addr().port(), live);
    assert_eq!(c.peer.node(), format!("localhost:{live}"));
}

#[test]
fn local_shortages_are_not_the_nodes_fault() {
    use rustix::io::Errno;
    let addr: SocketAddr = "127.0.0.1:9000".parse().expect("addr");
    for local in [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM, Errno::ADDRNOTAVAIL] {
        let e = std::io::Error::from_raw_os_error(local.raw_os_error());
        assert_eq!(AttemptError::io(addr, "", &e).source, ErrorSource::Internal, "{e}");
    }
    for remote in [Errno::CONNREFUSED, Errno::HOSTUNREACH, Errno::NETUNREACH, Errno::CONNRESET, Errno::TIMEDOUT] {
        let e = std::io::Error::from_raw_os_error(remote.raw_os_error());
        assert_eq!(AttemptError::io(addr, "", &e).source, ErrorSource::Upstream, "{e}");
    }
    let local = ConnectError::Local { upstream: "u".into(), node: "n".into(), reason: "r".into() };
    assert_eq!(local.side(), ErrorSource::Internal);
}

#[tokio::test]
async fn a_node_marked_failed_after_its_connect_is_skipped_for_fail_timeout() {
    let reg = registry();
    let up = reg.get_or_create(
        UpstreamKey::Named(ResourceId::parse("udp").expect("id")),
        &config(serde_json::json!({"nodes": {"127.0.0.1:7001": 1, "127.0.0.1:7002": 1}})),
    );
    // A transport that always "connects", as a UDP socket does.
    let open = |addr: SocketAddr| async move { Ok::<_, std::io::Error>(addr) };
    let (first, guard) = up.connect_with(&ctx(), open).await.expect("first");
    guard.mark_failed();
    drop(guard);
    for _ in 0..4 {
        let (next, _guard) = up.connect_with(&ctx(), open).await.expect("next");
        assert_ne!(next, first, "the failed node is skipped while marked down");
    }
}
